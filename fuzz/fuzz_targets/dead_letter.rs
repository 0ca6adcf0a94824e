//! The dead-letter record decoder (operators' tools read the DLQ topic).
//! Invariant: no panic; a decoded record round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_schemas::DeadLetter;

fuzz_target!(|data: &[u8]| {
    if let Ok(letter) = DeadLetter::decode(data) {
        assert_eq!(DeadLetter::decode(&letter.encode()).expect("round trip"), letter);
    }
});
