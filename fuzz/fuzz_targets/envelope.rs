//! The Kafka envelope decoder (what the aggregator reads from the topic).
//! Invariants: no panic; whatever decodes re-encodes to something that decodes
//! to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_schemas::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let again = Envelope::decode(&envelope.encode()).expect("re-encoded envelope decodes");
        assert_eq!(again, envelope);
    }
});
