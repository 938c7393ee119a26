//! Just enough of the NATS JWT format (v2, `ed25519-nkey`) to run a nats-server in
//! operator mode with a memory resolver and to write `.creds` files for its users.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde_json::{json, Value};
use std::path::Path;

fn encode(signer: &KeyPair, mut claims: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["iat"] = json!(now);
    claims["iss"] = json!(signer.public_key());
    claims["jti"] = json!(format!("{:X}", rand::random::<u128>()));
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let signing_input = format!("{header}.{body}");
    let sig = signer.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An operator and its JWT.
pub struct Operator {
    key: KeyPair,
    jwt: String,
}

/// An account signed by an operator.
pub struct Account {
    key: KeyPair,
    jwt: String,
}

impl Operator {
    /// A fresh operator.
    pub fn new() -> Operator {
        let key = KeyPair::new_operator();
        let jwt = encode(
            &key,
            json!({"sub": key.public_key(), "name": "rmds-test",
                   "nats": {"type": "operator", "version": 2}}),
        );
        Operator { key, jwt }
    }

    /// An account of this operator without limits.
    pub fn account(&self, name: &str) -> Account {
        let key = KeyPair::new_account();
        let jwt = encode(
            &self.key,
            json!({"sub": key.public_key(), "name": name,
                   "nats": {"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                                       "exports": -1, "wildcards": true, "conn": -1, "leaf": -1},
                            "default_permissions": {"pub": {}, "sub": {}},
                            "type": "account", "version": 2}}),
        );
        Account { key, jwt }
    }

    /// Server config text: this operator, a memory resolver preloaded with `accounts`.
    pub fn server_conf(&self, dir: &Path, accounts: &[&Account]) -> String {
        let path = dir.join("operator.jwt");
        std::fs::write(&path, &self.jwt).unwrap();
        let preload: Vec<String> = accounts
            .iter()
            .map(|a| format!("  {}: \"{}\"", a.key.public_key(), a.jwt))
            .collect();
        format!(
            "operator: {:?}\nresolver: MEMORY\nresolver_preload: {{\n{}\n}}\n",
            path.display().to_string(),
            preload.join("\n")
        )
    }
}

impl Account {
    /// A `.creds` file for a new user of this account, and the user's seed.
    pub fn user_creds(&self, name: &str) -> (String, String) {
        let user = KeyPair::new_user();
        let jwt = encode(
            &self.key,
            json!({"sub": user.public_key(), "name": name,
                   "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                            "type": "user", "version": 2}}),
        );
        let seed = user.seed().unwrap();
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        );
        (creds, seed)
    }
}
