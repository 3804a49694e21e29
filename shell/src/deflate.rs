//! permessage-deflate (RFC 7692) messages, with no context takeover either way.
//!
//! Each worker thread keeps one compressor and one decompressor, made the first time one of
//! its connections needs them and reset for every message: without context takeover a
//! message depends on nothing before it, so the state need not outlive it, nor be kept per
//! connection (a zlib compressor is ~300 KB). A broadcast frame is compressed once, by the
//! first worker that queues it for a deflate connection, and the result rides in the shared
//! [`Frame`](ferrocast_engine::Frame) to every other recipient (see `Frame::deflated`).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// Payloads shorter than this go out plain: most Pusher protocol messages are a few dozen
/// bytes, which deflate barely shrinks, and compressing them costs more than it saves
/// (measured with `cargo bench -p ferrocast-benches --bench deflate`; see README).
pub(crate) const MIN_COMPRESS_BYTES: usize = 256;

/// The compression level. On Pusher JSON events level 4 comes within 2–5% of level 6's size
/// and makes 28–36% fewer bytes than level 1, for about 2.5 times level 1's time; since a
/// broadcast is compressed once for all its recipients, the bytes saved for each of them
/// outweigh that (measured as above; see README).
const LEVEL: u32 = 4;

/// What every sync-flushed message ends with, removed on the wire (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

thread_local! {
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// The compressed message of `payload` (raw deflate without [`TAIL`]), or `None` when the
/// payload is too short to be worth it. Whether it came out smaller is the caller's check.
pub(crate) fn compress(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < MIN_COMPRESS_BYTES {
        return None;
    }
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = cell.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        compressor.reset();
        deflate(compressor, payload)
    })
}

/// Runs `payload` through `compressor` with a sync flush, and strips the flush's tail.
fn deflate(compressor: &mut Compress, payload: &[u8]) -> Option<Vec<u8>> {
    // Room for the usual case at once; incompressible input grows by a few bytes a block.
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        let before = compressor.total_in();
        compressor
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .ok()?;
        input = &input[(compressor.total_in() - before) as usize..];
        // The flush is complete once a call leaves output room unused.
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if !out.ends_with(&TAIL) {
        return None;
    }
    out.truncate(out.len() - TAIL.len());
    Some(out)
}

/// Why a compressed message could not be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the message size cap (a decompression bomb or just too large).
    TooLarge,
    /// It is not valid deflate data.
    Corrupt,
}

/// The message `data` (a compressed message as received, without [`TAIL`]) inflates to,
/// at most `max` bytes.
pub(crate) fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = cell.get_or_insert_with(|| Decompress::new(false));
        decompressor.reset(false);
        inflate_with(decompressor, data, max)
    })
}

fn inflate_with(
    decompressor: &mut Decompress,
    data: &[u8],
    max: usize,
) -> Result<Vec<u8>, InflateError> {
    // Never more room than the cap allows, so a bomb stops at `max + 1` bytes.
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).clamp(64, max + 1));
    for part in [data, &TAIL[..]] {
        let mut input = part;
        loop {
            if out.len() == out.capacity() {
                out.reserve_exact(out.capacity().min(max + 1 - out.len()).max(1));
            }
            let (in_before, out_before) = (decompressor.total_in(), decompressor.total_out());
            let status = decompressor
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > max {
                return Err(InflateError::TooLarge);
            }
            input = &input[(decompressor.total_in() - in_before) as usize..];
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends the message; what follows it is ignored.
                return Ok(out);
            }
            let room = out.len() < out.capacity();
            if input.is_empty() && room {
                break;
            }
            let progress =
                decompressor.total_in() != in_before || decompressor.total_out() != out_before;
            if !progress && room {
                return Err(InflateError::Corrupt);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_event(len: usize) -> Vec<u8> {
        let data = "{\\\"price\\\":12.5,\\\"symbol\\\":\\\"FERR\\\"},".repeat(len / 34 + 1);
        format!("{{\"event\":\"tick\",\"channel\":\"prices\",\"data\":\"{data}\"}}").into_bytes()
    }

    #[test]
    fn a_message_round_trips_without_the_tail() {
        let payload = json_event(2000);
        let compressed = compress(&payload).expect("long enough to compress");
        assert!(compressed.len() < payload.len() / 4, "{}", compressed.len());
        assert!(!compressed.ends_with(&TAIL));
        assert_eq!(inflate(&compressed, 10_000), Ok(payload.clone()));
        // The same input gives the same bytes every time: nothing carries over.
        assert_eq!(compress(&payload), Some(compressed));
    }

    #[test]
    fn short_payloads_are_left_alone() {
        assert_eq!(compress(&[b'a'; MIN_COMPRESS_BYTES - 1]), None);
        assert!(compress(&[b'a'; MIN_COMPRESS_BYTES]).is_some());
    }

    #[test]
    fn incompressible_and_large_payloads_compress_completely() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let compressed = compress(&noise).expect("long enough");
        assert!(compressed.len() > noise.len());
        assert_eq!(inflate(&compressed, noise.len()), Ok(noise));
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 1_000_000];
        let compressed = compress(&zeros).expect("long enough");
        assert!(compressed.len() < 10_000, "{}", compressed.len());
        assert_eq!(inflate(&compressed, 1_000_000), Ok(zeros));
        assert_eq!(inflate(&compressed, 10_240), Err(InflateError::TooLarge));
    }

    #[test]
    fn corrupt_data_is_refused() {
        // Block type 3 is reserved.
        assert_eq!(
            inflate(&[0xFF, 0xFF, 0xFF], 1000),
            Err(InflateError::Corrupt)
        );
        // The decompressor recovers for the next message.
        let payload = json_event(300);
        let compressed = compress(&payload).expect("long enough");
        assert_eq!(inflate(&compressed, 1000), Ok(payload));
    }

    #[test]
    fn a_final_block_and_an_empty_message_inflate() {
        let mut finished = Vec::with_capacity(64);
        let mut compressor = Compress::new(Compression::new(1), false);
        compressor
            .compress_vec(b"hello", &mut finished, FlushCompress::Finish)
            .unwrap();
        compressor
            .compress_vec(b"", &mut finished, FlushCompress::Finish)
            .unwrap();
        assert_eq!(inflate(&finished, 100), Ok(b"hello".to_vec()));
        assert_eq!(inflate(&[0x00], 100), Ok(Vec::new()));
        assert_eq!(inflate(&[], 100), Ok(Vec::new()));
    }
}
