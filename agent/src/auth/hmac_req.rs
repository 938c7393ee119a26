//! HMAC-SHA256 signed requests of service accounts: the canonical string, the check,
//! the timestamp window and the nonces seen within it (a replayed request is refused).
//!
//! Headers: `X-Service-ID`, `X-Timestamp` (seconds since the Unix epoch), `X-Nonce`
//! (unique per request, 8–128 chars), `X-Signature` = hex HMAC-SHA256 with the
//! account's secret over `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nhex(SHA-256(body))`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Why a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HmacError {
    /// A header is missing or malformed.
    #[error("signed request: {0}")]
    Malformed(&'static str),
    /// The timestamp is outside the window.
    #[error("signed request: timestamp outside the allowed window")]
    Stale,
    /// The signature does not match.
    #[error("signed request: bad signature")]
    BadSignature,
    /// This nonce was used already.
    #[error("signed request: replayed (nonce already used)")]
    Replayed,
}

/// The string that is signed.
pub fn canonical(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let digest = hex(&Sha256::digest(body));
    format!(
        "{}\n{path_and_query}\n{timestamp}\n{nonce}\n{digest}",
        method.to_ascii_uppercase()
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature a client sends.
pub fn sign(secret: &[u8], canonical: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    m.update(canonical.as_bytes());
    hex(&m.finalize().into_bytes())
}

/// Checks the signature (constant time).
pub fn check(secret: &[u8], canonical: &str, signature: &str) -> Result<(), HmacError> {
    let sig = (0..signature.len())
        .step_by(2)
        .map(|i| {
            signature
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|s| s.len() == 32)
        .ok_or(HmacError::Malformed("X-Signature must be 64 hex digits"))?;
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    m.update(canonical.as_bytes());
    m.verify_slice(&sig).map_err(|_| HmacError::BadSignature)
}

/// Whether `timestamp` (s) is within `window` (s) of `now` (s).
pub fn in_window(timestamp: &str, now: i64, window: i64) -> Result<i64, HmacError> {
    let t: i64 = timestamp
        .parse()
        .map_err(|_| HmacError::Malformed("X-Timestamp must be seconds since the Unix epoch"))?;
    if (now - t).abs() > window {
        return Err(HmacError::Stale);
    }
    Ok(t)
}

/// (account, nonce) → when seen, and the same in the order seen.
type Seen = (
    HashMap<(String, String), i64>,
    VecDeque<(i64, String, String)>,
);

/// Nonces seen within the window, per account; bounded.
#[derive(Debug)]
pub struct Nonces {
    inner: Mutex<Seen>,
    max: usize,
}

impl Nonces {
    /// Remembers at most `max` nonces.
    pub fn new(max: usize) -> Nonces {
        Nonces {
            inner: Mutex::default(),
            max,
        }
    }

    /// Records `nonce` of `account` seen at `now`; refused when already seen within
    /// `window`. Older entries are forgotten (their timestamps fall outside the window).
    pub fn first_use(
        &self,
        account: &str,
        nonce: &str,
        now: i64,
        window: i64,
    ) -> Result<(), HmacError> {
        if !(8..=128).contains(&nonce.len()) {
            return Err(HmacError::Malformed("X-Nonce must be 8 to 128 characters"));
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, order) = &mut *g;
        while let Some((at, a, n)) = order.front().cloned() {
            if now - at > 2 * window || seen.len() > self.max {
                order.pop_front();
                seen.remove(&(a, n));
            } else {
                break;
            }
        }
        let key = (account.to_string(), nonce.to_string());
        if seen.contains_key(&key) {
            return Err(HmacError::Replayed);
        }
        seen.insert(key.clone(), now);
        order.push_back((now, key.0, key.1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_signed_request_when_checked_then_any_change_is_refused() {
        let c = canonical(
            "post",
            "/v1/channels/chat/messages?ttl=1m",
            "1000",
            "nonce-123",
            b"{}",
        );
        assert!(c.starts_with("POST\n/v1/channels/chat/messages?ttl=1m\n1000\nnonce-123\n"));
        let s = sign(b"secret", &c);
        assert_eq!(check(b"secret", &c, &s), Ok(()));
        let other = canonical(
            "post",
            "/v1/channels/chat/messages?ttl=1m",
            "1000",
            "nonce-123",
            b"{ }",
        );
        assert_eq!(check(b"secret", &other, &s), Err(HmacError::BadSignature));
        assert_eq!(check(b"wrong", &c, &s), Err(HmacError::BadSignature));
        assert!(matches!(
            check(b"secret", &c, "zz"),
            Err(HmacError::Malformed(_))
        ));
    }

    #[test]
    fn given_timestamps_and_nonces_then_the_window_and_replays_are_enforced() {
        assert_eq!(in_window("1000", 1300, 300), Ok(1000));
        assert_eq!(in_window("1000", 1301, 300), Err(HmacError::Stale));
        assert!(in_window("soon", 1, 300).is_err());
        let n = Nonces::new(10);
        assert_eq!(n.first_use("svc", "abcdefgh", 1000, 300), Ok(()));
        assert_eq!(
            n.first_use("svc", "abcdefgh", 1001, 300),
            Err(HmacError::Replayed)
        );
        assert_eq!(
            n.first_use("other", "abcdefgh", 1001, 300),
            Ok(()),
            "per account"
        );
        assert!(n.first_use("svc", "short", 1001, 300).is_err());
        // Past twice the window the nonce is forgotten (its timestamp is refused anyway).
        assert_eq!(n.first_use("svc", "abcdefgh", 1700, 300), Ok(()));
    }
}
