//! The HyperLogLog sketch decoder (sketches are read back from Redis).
//! Invariants: no panic on any bytes; a decoded sketch estimates, merges and
//! re-serialises to bytes that decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_schemas::sketch::UniqueSketch;

fuzz_target!(init: {
    // `from_bytes` turns the sketch crate's panics on corrupt state into errors
    // (catch_unwind); libFuzzer's hook would abort on them before they are caught.
    // Panics that escape still abort through libfuzzer-sys's own catch_unwind.
    std::panic::set_hook(Box::new(|_| {}));
}, |data: &[u8]| {
    if let Ok(mut sketch) = UniqueSketch::from_bytes(data) {
        let _ = sketch.estimate();
        let mut copy = UniqueSketch::from_bytes(&sketch.to_bytes()).expect("round trip");
        let _ = copy.merge(&sketch);
        let _ = copy.estimate();
    }
});
