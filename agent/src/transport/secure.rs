//! How the agent proves who it is to a secured nats-server: user/password, token,
//! nkey, credentials file, and TLS (its own CA, a client certificate, a server name
//! other than the URL's host).
//!
//! Everything is read once at start (a bad file fails the start with the key named;
//! [`crate::config::NatsConfig::validate_security`] has already checked it). What the
//! server then says about the credentials is not a start failure: the agent keeps
//! running, keeps accepting publishes into SQLite, and reports the reason
//! ([`super::status`]).

use crate::config::NatsConfig;
use async_nats::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// Why the security settings could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct SecureError {
    /// The config key.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn err(key: &'static str, message: impl std::fmt::Display) -> SecureError {
    SecureError {
        key,
        message: message.to_string(),
    }
}

/// Which way of authenticating the config chose, for logs and `/healthz` (never the
/// secret itself).
pub fn auth_method(config: &NatsConfig) -> &'static str {
    if config.user.is_some() {
        "user_password"
    } else if config.token.is_some() {
        "token"
    } else if config.nkey_seed.is_some() {
        "nkey"
    } else if config.credentials.is_some() {
        "credentials"
    } else {
        "none"
    }
}

/// `options` with the configured authentication and TLS applied.
pub fn apply(
    config: &NatsConfig,
    mut options: async_nats::ConnectOptions,
) -> Result<async_nats::ConnectOptions, SecureError> {
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_string());
    }
    if let Some(path) = &config.nkey_seed {
        let seed = std::fs::read_to_string(path)
            .map_err(|e| err("nats.nkey_seed", format!("{}: {e}", path.display())))?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(path) = &config.credentials {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("nats.credentials", format!("{}: {e}", path.display())))?;
        options = options
            .credentials(&text)
            .map_err(|e| err("nats.credentials", format!("{}: {e}", path.display())))?;
    }
    let tls = &config.tls;
    if tls.required || config.urls.iter().any(|u| u.starts_with("tls://")) {
        options = options.require_tls(true);
    }
    if tls.configured() {
        options = options.tls_client_config(client_config(config)?);
    }
    Ok(options)
}

/// The TLS configuration the diagnosis uses: the agent's own when configured, else
/// the system's roots without a client certificate (what async-nats uses then).
pub fn tls_probe(config: &NatsConfig) -> Result<super::diagnose::TlsProbe, SecureError> {
    let client = if config.tls.configured() {
        client_config(config)?
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_roots());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("nats.tls", e))?
        .with_root_certificates(roots)
        .with_no_client_auth()
    };
    Ok(super::diagnose::TlsProbe {
        config: Arc::new(client),
        required: config.tls.required,
    })
}

fn read_certs(
    key: &'static str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, SecureError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(key, format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(key, format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

/// The rustls configuration: the configured CA (or the system's roots), the client
/// certificate when set, and the server-name override when set.
fn client_config(config: &NatsConfig) -> Result<rustls::ClientConfig, SecureError> {
    let tls = &config.tls;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(path) => {
            for cert in read_certs("nats.tls.ca", path)? {
                roots
                    .add(cert)
                    .map_err(|e| err("nats.tls.ca", format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let native = rustls_native_roots();
            roots.add_parsable_certificates(native);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("nats.tls", e))?;
    let roots = Arc::new(roots);
    let builder = match &tls.server_name {
        Some(name) => {
            let inner =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| err("nats.tls.ca", e))?;
            let name =
                ServerName::try_from(name.clone()).map_err(|e| err("nats.tls.server_name", e))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NamedVerifier { inner, name }))
        }
        None => builder.with_root_certificates(roots),
    };
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("nats.tls.cert", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| err("nats.tls.key", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| err("nats.tls.key", format!("does not match nats.tls.cert: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The system's trusted roots, when no CA is configured (the same as async-nats does
/// without a custom configuration). Unreadable system certificates are skipped.
fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    let dirs = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ];
    dirs.iter()
        .filter_map(|p| CertificateDer::pem_file_iter(p).ok())
        .flat_map(|it| it.filter_map(Result::ok))
        .collect()
}

/// Verifies the server's certificate as WebPKI does, against a configured name
/// instead of the URL's host.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
