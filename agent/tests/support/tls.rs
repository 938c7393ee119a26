//! A test CA with a server certificate (for one DNS name only) and a client
//! certificate, written as PEM files.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// PEM files of one test PKI.
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

impl Pki {
    /// A CA, a server certificate for `server_name` (DNS only, no IP) and a client
    /// certificate, in `dir`.
    pub fn new(dir: &Path, server_name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "rmds test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (sc, sk) = leaf(
            vec![server_name.into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cc, ck) = leaf(
            vec!["rmds-agent".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca_pem: write(dir, "ca.pem", ca_cert.pem()),
            server_cert: write(dir, "server.pem", sc),
            server_key: write(dir, "server-key.pem", sk),
            client_cert: write(dir, "client.pem", cc),
            client_key: write(dir, "client-key.pem", ck),
        }
    }

    /// nats-server `tls { }` block; `verify` asks every client for a certificate.
    pub fn server_conf(&self, verify: bool) -> String {
        format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: {verify}\n  timeout: 2\n}}\n",
            self.server_cert.display().to_string(),
            self.server_key.display().to_string(),
            self.ca_pem.display().to_string(),
        )
    }

    /// An agent's `[nats.tls]` table trusting `ca`, with this PKI's client
    /// certificate and an optional server-name override.
    pub fn client_table(&self, ca: &Path, server_name: Option<&str>) -> toml::Value {
        let mut t = toml::Table::new();
        let s = |p: &Path| toml::Value::String(p.display().to_string());
        t.insert("ca".into(), s(ca));
        t.insert("cert".into(), s(&self.client_cert));
        t.insert("key".into(), s(&self.client_key));
        if let Some(n) = server_name {
            t.insert("server_name".into(), toml::Value::String(n.into()));
        }
        toml::Value::Table(t)
    }
}
