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
pub const FRAME_OVERHEAD: usize = 256;

/// Bytes an entry adds around its payload (ids, timestamps, headers are added on top).
pub const ENTRY_OVERHEAD: usize = 96;
