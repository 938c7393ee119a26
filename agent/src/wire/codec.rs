//! Frame encoding, decoding and signing.

use super::{Packet, VERSION};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const FLAG_SIGNED: u8 = 0b0000_0001;
const MAC_LEN: usize = 32;

/// Why a frame was dropped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Fewer bytes than a header.
    #[error("frame too short ({0} bytes)")]
    TooShort(usize),
    /// A version this agent does not speak.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// A cluster key is configured but the frame is not signed.
    #[error("unsigned frame while a cluster key is configured")]
    Unsigned,
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The body is not a valid packet (includes invalid names).
    #[error("malformed body: {0}")]
    Body(String),
    /// A compressed payload is corrupt.
    #[error("corrupt compressed payload: {0}")]
    Compression(String),
    /// A payload would decompress past the limit.
    #[error("payload would decompress to {0} bytes, over the limit")]
    TooLarge(usize),
}

/// Encodes and decodes frames, signing them when a cluster key is set.
#[derive(Clone)]
pub struct Codec {
    key: Option<HmacSha256>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("signed", &self.key.is_some())
            .finish()
    }
}

impl Codec {
    /// A codec; with `Some(key)` every frame is signed and only valid signed frames decode.
    pub fn new(cluster_key: Option<&str>) -> Codec {
        let key = cluster_key
            .filter(|k| !k.is_empty())
            .and_then(|k| HmacSha256::new_from_slice(k.as_bytes()).ok());
        Codec { key }
    }

    /// Encodes a packet into a frame.
    pub fn encode(&self, packet: &Packet) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(VERSION);
        out.push(if self.key.is_some() { FLAG_SIGNED } else { 0 });
        // Serializing our own plain data types into a Vec cannot fail.
        if let Err(e) = rmp_serde::encode::write(&mut out, packet) {
            tracing::error!(error = %e, "encoding a packet failed");
        }
        if let Some(key) = &self.key {
            let mut mac = key.clone();
            mac.update(&out);
            out.extend_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    /// Decodes a frame; never panics on any input.
    pub fn decode(&self, frame: &[u8]) -> Result<Packet, DecodeError> {
        if frame.len() < 3 {
            return Err(DecodeError::TooShort(frame.len()));
        }
        if frame[0] != VERSION {
            return Err(DecodeError::Version(frame[0]));
        }
        let signed = frame[1] & FLAG_SIGNED != 0;
        let body = match (&self.key, signed) {
            (Some(_), false) => return Err(DecodeError::Unsigned),
            (Some(key), true) => {
                if frame.len() < 2 + MAC_LEN + 1 {
                    return Err(DecodeError::TooShort(frame.len()));
                }
                let (signed_part, mac) = frame.split_at(frame.len() - MAC_LEN);
                let mut m = key.clone();
                m.update(signed_part);
                m.verify_slice(mac).map_err(|_| DecodeError::BadSignature)?;
                &signed_part[2..]
            }
            // Without a key, signed frames are accepted with the MAC ignored.
            (None, true) => {
                if frame.len() < 2 + MAC_LEN + 1 {
                    return Err(DecodeError::TooShort(frame.len()));
                }
                &frame[2..frame.len() - MAC_LEN]
            }
            (None, false) => &frame[2..],
        };
        let packet: Packet =
            rmp_serde::from_slice(body).map_err(|e| DecodeError::Body(e.to_string()))?;
        packet.check_sequences().map_err(DecodeError::Body)?;
        Ok(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{Channel, NodeId};
    use crate::wire::{Ack, Announce, DataBatch, Digest, Entry, MessageBody, Stamp};

    fn batch() -> Packet {
        Packet::Data(DataBatch {
            sender: NodeId::new("alice").unwrap(),
            epoch: 7,
            receiver: NodeId::new("bob").unwrap(),
            channel: Channel::new("chat").unwrap(),
            base: 1,
            entries: vec![
                Entry {
                    seq: 1,
                    body: Some(MessageBody::new(
                        "01J".into(),
                        1,
                        1000,
                        "text/plain".into(),
                        vec![("k".into(), "v".into())],
                        &[b'a'; 1000],
                        Some(256),
                    )),
                    skipped: None,
                },
                Entry {
                    seq: 2,
                    body: None,
                    skipped: None,
                },
            ],
        })
    }

    #[test]
    fn given_packets_when_round_tripped_then_equal() {
        let c = Codec::new(None);
        let p = batch();
        assert_eq!(c.decode(&c.encode(&p)).unwrap(), p);
        let a = Packet::Keepalive(Announce {
            node: NodeId::new("n").unwrap(),
            epoch: 1,
            stamp: Stamp {
                boot: 2,
                counter: 3,
            },
            digest: Digest::default(),
            pending: 0,
            api: "127.0.0.1:1".into(),
        });
        assert_eq!(c.decode(&c.encode(&a)).unwrap(), a);
    }

    #[test]
    fn given_large_payload_when_compressed_then_flagged_and_restored() {
        let Packet::Data(b) = batch() else {
            unreachable!()
        };
        let body = b.entries[0].body.as_ref().unwrap();
        assert!(body.compressed);
        assert!(body.payload.len() < 1000);
        assert_eq!(body.decompressed(1 << 20).unwrap(), vec![b'a'; 1000]);
        assert!(matches!(
            body.decompressed(10),
            Err(DecodeError::TooLarge(1000))
        ));
    }

    #[test]
    fn given_cluster_key_when_frame_unsigned_forged_or_tampered_then_refused() {
        let signed = Codec::new(Some("secret"));
        let plain = Codec::new(None);
        let other = Codec::new(Some("other"));
        let p = Packet::Ack(Ack {
            receiver: NodeId::new("b").unwrap(),
            sender: NodeId::new("a").unwrap(),
            channel: Channel::new("c").unwrap(),
            epoch: 1,
            acked: 5,
            had: vec![],
        });
        let frame = signed.encode(&p);
        assert_eq!(signed.decode(&frame).unwrap(), p);
        assert_eq!(signed.decode(&plain.encode(&p)), Err(DecodeError::Unsigned));
        assert_eq!(
            signed.decode(&other.encode(&p)),
            Err(DecodeError::BadSignature)
        );
        let mut tampered = frame.clone();
        let i = tampered.len() - 40;
        tampered[i] ^= 1;
        assert_eq!(signed.decode(&tampered), Err(DecodeError::BadSignature));
    }

    #[test]
    fn given_long_names_and_headers_when_encoded_then_the_size_bound_holds() {
        let codec = Codec::new(Some("k"));
        let name = "n".repeat(64);
        for len in [0usize, 31, 32, 255, 256, 65_535, 65_536] {
            let headers: Vec<(String, String)> = (0..20)
                .map(|i| (format!("{i}{}", "h".repeat(len)), "v".repeat(len)))
                .collect();
            let body = MessageBody::new(
                "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
                i64::MIN,
                u64::MAX,
                "c".repeat(len),
                headers,
                &vec![7u8; len],
                None,
            );
            let bound = crate::wire::FRAME_OVERHEAD + body.approx_size();
            let p = Packet::Data(DataBatch {
                sender: NodeId::new(name.clone()).unwrap(),
                epoch: u64::MAX,
                receiver: NodeId::new(name.clone()).unwrap(),
                channel: Channel::new(name.clone()).unwrap(),
                base: crate::wire::MAX_SEQ,
                entries: vec![Entry {
                    seq: crate::wire::MAX_SEQ,
                    body: Some(body),
                    skipped: None,
                }],
            });
            let frame = codec.encode(&p);
            assert!(frame.len() <= bound, "{len}: {} > {bound}", frame.len());
        }
    }

    #[test]
    fn given_sequences_above_the_maximum_when_decoding_then_refused() {
        let codec = Codec::new(None);
        for (base, seq) in [
            (0, 1),
            (u64::MAX, 1),
            (1, u64::MAX),
            (1, crate::wire::MAX_SEQ + 1),
        ] {
            let p = Packet::Data(DataBatch {
                sender: NodeId::new("a").unwrap(),
                epoch: 1,
                receiver: NodeId::new("b").unwrap(),
                channel: Channel::new("c").unwrap(),
                base,
                entries: vec![Entry {
                    seq,
                    body: None,
                    skipped: None,
                }],
            });
            assert!(matches!(
                codec.decode(&codec.encode(&p)),
                Err(DecodeError::Body(_))
            ));
        }
    }

    #[test]
    fn given_garbage_when_decoding_then_error_never_panic() {
        let c = Codec::new(None);
        let good = c.encode(&batch());
        // Every truncation and a sweep of single-byte corruptions.
        for n in 0..good.len() {
            let _ = c.decode(&good[..n]);
        }
        for i in 0..good.len() {
            for x in [0x00u8, 0xff, 0x80, 0x7f] {
                let mut bad = good.clone();
                bad[i] = x;
                let _ = c.decode(&bad);
            }
        }
        // Pseudo-random frames.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000 {
            let mut f = vec![VERSION, 0];
            for _ in 0..(len % 97) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                f.push(s as u8);
            }
            let _ = c.decode(&f);
        }
        assert!(matches!(c.decode(&[9, 0, 0]), Err(DecodeError::Version(9))));
    }

    #[test]
    fn given_wildcard_in_name_when_decoding_then_refused() {
        // A hand-built Ack whose sender id carries a NATS wildcard.
        let mut frame = vec![VERSION, 0];
        rmp_serde::encode::write(
            &mut frame,
            &serde_json::json!({"Ack": ["b", "a*", "c", 1, 5]}),
        )
        .unwrap();
        assert!(matches!(
            Codec::new(None).decode(&frame),
            Err(DecodeError::Body(_))
        ));
    }
}
