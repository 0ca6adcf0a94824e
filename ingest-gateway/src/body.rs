//! Reading a request body under the in-flight budget, and draining a refused one.
//!
//! * [`read`] reserves the body's buffer in a [`Reservation`] as bytes actually
//!   arrive (never from a declared length) and stops at the size limit.
//! * [`drain`] reads and discards the body of a request refused before it was
//!   read (too large, unknown header key), up to [`DRAIN_MAX_BYTES`], so a client
//!   still sending gets the answer instead of a connection reset. Discarded bytes
//!   are never buffered, so they hold no budget.

use crate::error::GatewayError;
use crate::overload::{Refusal, Reservation};
use http_body_util::BodyExt;
use std::time::Duration;

/// Largest body read and discarded before a refusal is sent.
pub const DRAIN_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Reads and discards a refused request's body (up to [`DRAIN_MAX_BYTES`] and `timeout`).
pub async fn drain(body: axum::body::Body, declared: usize, timeout: Duration) {
    if declared > DRAIN_MAX_BYTES {
        return;
    }
    let mut body = body;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len());
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// A cap of the in-flight budget would be passed.
    Refused(Refusal),
    /// Anything else (too large, broken connection).
    Gateway(GatewayError),
}

/// Reads a body of at most `limit` bytes, reserving its buffer in `reservation`
/// as it grows.
pub async fn read(
    body: axum::body::Body,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, ReadError> {
    let mut body = body;
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| ReadError::Gateway(GatewayError::MalformedBody(err.to_string())))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buffer.len() + data.len();
        if needed > limit {
            return Err(ReadError::Gateway(GatewayError::PayloadTooLarge(limit)));
        }
        if needed > buffer.capacity() {
            let target = needed.max(buffer.capacity().saturating_mul(2)).min(limit);
            reservation
                .grow(target - buffer.capacity())
                .map_err(ReadError::Refused)?;
            buffer.reserve_exact(target - buffer.len());
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer)
}
