//! Unique-user sketches: HyperLogLog++ (precision 14, ≈0.81 % standard error)
//! with a fixed hash, so sketches built by different processes, partitions and
//! binary versions merge correctly.
//!
//! The hash is SipHash-1-3 with the fixed keys [`SIP_KEY_0`]/[`SIP_KEY_1`] over
//! the raw UTF-8 bytes of the id (one `write` call, no length prefix or
//! terminator). Changing it invalidates every stored sketch: don't.
//!
//! Wire form (stored in Redis): one format byte ([`SKETCH_FORMAT_V1`]) followed
//! by the `postcard` encoding of the sketch.

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;
use std::hash::{BuildHasher, Hash, Hasher};

/// HLL++ precision (2^14 registers).
pub const PRECISION: u8 = 14;
/// First SipHash key. Part of the stored format.
pub const SIP_KEY_0: u64 = 0x7461_6c6c_795f_686c; // "tally_hl"
/// Second SipHash key. Part of the stored format.
pub const SIP_KEY_1: u64 = 0x6c5f_7631_5f6b_6579; // "l_v1_key"
/// Format byte of the stored sketch encoding.
pub const SKETCH_FORMAT_V1: u8 = 1;

/// `BuildHasher` with fixed keys (stable across processes and restarts).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FixedSipBuilder;

impl BuildHasher for FixedSipBuilder {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(SIP_KEY_0, SIP_KEY_1)
    }
}

/// Hashes exactly the id's bytes, independent of `str`'s own `Hash` impl.
struct IdBytes<'a>(&'a str);

impl Hash for IdBytes<'_> {
    fn hash<S: Hasher>(&self, state: &mut S) {
        state.write(self.0.as_bytes());
    }
}

/// Error decoding a stored sketch.
#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    /// Empty or unknown format byte.
    #[error("unknown sketch format")]
    UnknownFormat,
    /// Body did not decode.
    #[error("malformed sketch: {0}")]
    Malformed(#[from] postcard::Error),
    /// Precision differs from [`PRECISION`].
    #[error("incompatible sketch precision")]
    Incompatible,
    /// The body decoded but its contents are inconsistent.
    #[error("corrupt sketch")]
    Corrupt,
}

/// A mergeable distinct-count sketch of string ids.
#[derive(Debug, Clone)]
pub struct UniqueSketch(HyperLogLogPlus<String, FixedSipBuilder>);

impl Default for UniqueSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl UniqueSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        // PRECISION is within the crate's 4..=18 bounds, so `new` cannot fail.
        match HyperLogLogPlus::new(PRECISION, FixedSipBuilder) {
            Ok(hll) => UniqueSketch(hll),
            Err(_) => unreachable!("precision {PRECISION} is valid"),
        }
    }

    /// Adds one id.
    pub fn insert(&mut self, id: &str) {
        self.0.insert_any(&IdBytes(id));
    }

    /// Unions `other` into `self` (idempotent: merging twice changes nothing).
    pub fn merge(&mut self, other: &UniqueSketch) -> Result<(), SketchError> {
        self.0
            .merge(&other.0)
            .map_err(|_| SketchError::Incompatible)
    }

    /// Estimated number of distinct ids.
    pub fn estimate(&mut self) -> u64 {
        // The estimate is a non-negative float well within u64.
        self.0.count().round().max(0.0) as u64
    }

    /// Stored form: format byte + postcard body.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        // Folds the insertion buffer into the sparse list first, so the stored form is compact.
        let _ = self.0.count();
        let mut out = vec![SKETCH_FORMAT_V1];
        out.extend(postcard::to_allocvec(&self.0).unwrap_or_default());
        out
    }

    /// Parses the stored form. Never panics, whatever the bytes.
    ///
    /// The sketch crate trusts its own serialized state: a corrupt varint list
    /// makes it index out of bounds (found by the `sketch` fuzz target). Stored
    /// sketches come from Redis, which anyone with access can overwrite, so the
    /// decoded state is merged into a fresh sketch and counted under
    /// `catch_unwind`; any panic there means the bytes were corrupt.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        match bytes.split_first() {
            Some((&SKETCH_FORMAT_V1, body)) => {
                let hll: HyperLogLogPlus<String, FixedSipBuilder> = postcard::from_bytes(body)?;
                let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    let mut sketch = UniqueSketch::new();
                    let merged = sketch.0.merge(&hll);
                    let _ = sketch.0.count();
                    merged.map(|()| sketch)
                }));
                match checked {
                    Ok(Ok(sketch)) => Ok(sketch),
                    Ok(Err(_)) => Err(SketchError::Incompatible),
                    Err(_) => Err(SketchError::Corrupt),
                }
            }
            _ => Err(SketchError::UnknownFormat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOLDEN_USER_1: u64 = 1_786_690_353_096_259_954;
    const GOLDEN_EMPTY: u64 = 8_659_150_049_305_604_687;

    fn sketch_of(range: std::ops::Range<u32>) -> UniqueSketch {
        let mut sketch = UniqueSketch::new();
        for i in range {
            sketch.insert(&format!("user-{i}"));
        }
        sketch
    }

    /// Found by the `sketch` fuzz target: made the sketch crate index out of bounds.
    #[test]
    fn corrupt_stored_sketches_are_errors_not_panics() {
        const CRASH: [u8; 25] = [
            0x01, 0x0e, 0x03, 0x00, 0x01, 0x00, 0x00, 0x01, 0x0e, 0x0b, 0x00, 0x03, 0x00, 0x01,
            0x00, 0x01, 0xff, 0x01, 0x00, 0x00, 0x00, 0xfd, 0xff, 0x00, 0x00,
        ];
        assert!(UniqueSketch::from_bytes(&CRASH).is_err());
    }

    #[test]
    fn estimate_within_two_percent_at_several_sizes() {
        for n in [10u32, 1_000, 20_000, 200_000] {
            let estimate = sketch_of(0..n).estimate() as f64;
            let error = (estimate - f64::from(n)).abs() / f64::from(n);
            assert!(error < 0.02, "n={n} estimate={estimate}");
        }
    }

    #[test]
    fn hash_is_fixed_across_processes() {
        // Golden values: stored sketches depend on them. If this fails, the hash
        // changed and every sketch in Redis would silently stop merging.
        assert_eq!(FixedSipBuilder.hash_one(IdBytes("user-1")), GOLDEN_USER_1);
        assert_eq!(FixedSipBuilder.hash_one(IdBytes("")), GOLDEN_EMPTY);
    }

    #[test]
    fn round_trips_through_bytes_and_rejects_garbage() {
        let mut sketch = sketch_of(0..5_000);
        let bytes = sketch.to_bytes();
        let mut back = UniqueSketch::from_bytes(&bytes).unwrap();
        assert_eq!(back.estimate(), sketch.estimate());
        assert!(UniqueSketch::from_bytes(&[]).is_err());
        assert!(UniqueSketch::from_bytes(&[7, 1, 2]).is_err());
        assert!(UniqueSketch::from_bytes(&[SKETCH_FORMAT_V1, 0xff, 0xff]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn merge_is_union_and_idempotent(a in 0u32..3_000, b in 0u32..3_000, overlap in 0u32..1_000) {
            let mut left = sketch_of(0..a);
            let right = sketch_of(a.saturating_sub(overlap)..a + b);
            let mut union = sketch_of(0..a + b);
            left.merge(&right).unwrap();
            let once = left.estimate();
            left.merge(&right).unwrap();
            prop_assert_eq!(left.estimate(), once);
            prop_assert_eq!(once, union.estimate());
        }
    }
}
