//! The Kafka envelope decoder (what the aggregator reads from the topic), for
//! every format it knows (JSON, format 1; binary, format 2).
//! Invariants: no panic; whatever decodes re-encodes, in either format, to
//! something that decodes to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_schemas::{Envelope, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        for format in [Format::Json, Format::Binary] {
            let again =
                Envelope::decode(&envelope.encode_as(format)).expect("re-encoded envelope decodes");
            assert_eq!(again, envelope);
        }
    }
});
