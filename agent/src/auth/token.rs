//! JWT sessions (HS256, signed with a key kept in this node's store): an access token
//! for requests and a refresh token that buys new access tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// `access` or `refresh`.
    pub typ: String,
    /// Issued at (s since the Unix epoch).
    pub iat: i64,
    /// Expires at (s since the Unix epoch).
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of ours.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// A refresh token used as an access token, or the other way round.
    #[error("wrong kind of token")]
    WrongType,
}

const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Signs `claims`.
pub fn sign(key: &[u8], claims: &Claims) -> String {
    let body = serde_json::to_vec(claims).unwrap_or_default();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(body)
    );
    let sig = URL_SAFE_NO_PAD.encode(mac(key, input.as_bytes()));
    format!("{input}.{sig}")
}

/// Verifies `token` at `now` (s) and that it is of kind `typ`.
pub fn verify(key: &[u8], token: &str, typ: &str, now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(format!("{h}.{b}").as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    if URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?
        != HEADER
    {
        return Err(TokenError::Malformed);
    }
    let body = URL_SAFE_NO_PAD
        .decode(b)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
    if claims.typ != typ {
        return Err(TokenError::WrongType);
    }
    if now >= claims.exp {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(typ: &str, exp: i64) -> Claims {
        Claims {
            sub: "ann".into(),
            typ: typ.into(),
            iat: 0,
            exp,
            jti: "j".into(),
        }
    }

    #[test]
    fn given_a_signed_token_when_verified_then_its_claims_until_it_expires() {
        let t = sign(b"k", &claims("access", 100));
        assert_eq!(verify(b"k", &t, "access", 99).unwrap().sub, "ann");
        assert_eq!(verify(b"k", &t, "access", 100), Err(TokenError::Expired));
        assert_eq!(verify(b"k", &t, "refresh", 99), Err(TokenError::WrongType));
        assert_eq!(
            verify(b"other", &t, "access", 99),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn given_a_tampered_or_malformed_token_then_refused() {
        let t = sign(b"k", &claims("access", 100));
        let forged = sign(b"k", &claims("access", 1_000_000));
        let (head, _) = t.rsplit_once('.').unwrap();
        let (_, fsig) = forged.rsplit_once('.').unwrap();
        assert_eq!(
            verify(b"k", &format!("{head}.{fsig}"), "access", 1),
            Err(TokenError::BadSignature)
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(verify(b"k", bad, "access", 1).is_err(), "{bad}");
        }
    }
}
