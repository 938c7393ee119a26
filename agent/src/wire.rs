//! Wire format of everything agents say to each other over NATS. Pure: no I/O.
//!
//! A frame is `[version][flags][rmp-serde body][HMAC-SHA256 (32 bytes) if signed]`.
//! Payloads above a threshold are snappy-compressed, flagged per envelope. Decoding
//! never panics: bad bytes become a [`DecodeError`] that callers count and drop.
//! Names inside frames are validated while decoding, so a frame that decodes cleanly
//! never carries a NATS wildcard or an over-long id.

mod codec;
mod types;

pub use codec::{Codec, DecodeError};
pub use types::{
    Ack, Announce, Bye, DataBatch, Entry, MessageBody, Nack, Packet, Receipt, ReceiptAck,
};

/// Current frame version.
pub const VERSION: u8 = 1;

/// Bytes a frame adds around its entries; used to budget batches below max payload.
pub const FRAME_OVERHEAD: usize = 256;

/// Bytes an entry adds around its payload (ids, timestamps, headers are added on top).
pub const ENTRY_OVERHEAD: usize = 96;
