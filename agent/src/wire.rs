//! Wire format of everything agents say to each other over NATS. Pure: no I/O.
//!
//! A frame is `[version][flags][rmp-serde body][HMAC-SHA256 (32 bytes) if signed]`.
//! Payloads above a threshold are snappy-compressed, flagged per envelope. Decoding
//! never panics: bad bytes become a [`DecodeError`] that callers count and drop.
//! Names inside frames are validated while decoding, so a frame that decodes cleanly
//! never carries a NATS wildcard or an over-long id.

//!
//! Frames that change state at their receiver when replayed (hello, keepalive, bye,
//! nack) carry a [`Stamp`]: the sender's persisted boot counter and a counter that
//! grows within the boot, handed out by a [`Stamper`].

mod codec;
mod stamp;
mod types;

pub use codec::{Codec, DecodeError};
pub use stamp::Stamper;
pub use types::{
    Ack, Announce, Bye, DataBatch, Digest, Entry, MessageBody, Nack, Packet, Receipt, ReceiptAck,
    Stamp, StatePage, StateRequest,
};

/// Current frame version. 2: stamps on announces, byes and nacks; announces carry a
/// membership digest instead of the list (fetched with `StateRequest`).
pub const VERSION: u8 = 2;

/// Bytes a frame adds around its entries; used to budget batches below max payload.
/// The most a data frame needs: version and flags (2), the batch's array header (1),
/// three names of up to 64 bytes with their headers (3 × 66), epoch and base (2 × 9),
/// the entries' array header (5) and the HMAC (32) = 256; rounded up for headroom.
pub const FRAME_OVERHEAD: usize = 320;

/// Bytes an entry adds around its payload (ids, timestamps, headers are added on top).
pub const ENTRY_OVERHEAD: usize = 96;

/// Most framing MessagePack adds to one string or binary value (a str32/bin32 header).
const VALUE_HEADER_MAX: usize = 5;

/// Most skipped sequences one ACK reports as had (delivered before the skip).
pub const MAX_HAD: usize = 1024;

/// Highest sequence number a stream can have: sequences are stored as SQLite's signed
/// 64-bit integers, so anything above is forged or corrupt and refused while decoding.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// An upper bound of the encoded size of one entry carrying a message with these
/// field lengths: never below what rmp-serde writes, so batches budgeted with it
/// always fit under the max payload. Each header pair is a 2-array (1 byte) of two
/// strings of up to [`VALUE_HEADER_MAX`] bytes of framing each.
pub fn body_size_bound(
    id: usize,
    content_type: usize,
    headers: impl Iterator<Item = (usize, usize)>,
    payload: usize,
) -> usize {
    ENTRY_OVERHEAD
        + id
        + content_type
        + payload
        + headers
            .map(|(k, v)| 1 + 2 * VALUE_HEADER_MAX + k + v)
            .sum::<usize>()
}
