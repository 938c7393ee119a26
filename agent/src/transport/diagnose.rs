//! What exactly went wrong when async-nats can only say "IO error": this module
//! repeats the first steps of a connection itself (TCP, the server's INFO, the TLS
//! handshake with the agent's own TLS configuration) and names the step that failed,
//! with the TLS library's own words (`UnknownIssuer`, `NotValidForName`, the alert
//! the server sent) and the setting to check.
//!
//! It runs on a blocking thread, at most once every few seconds, only while the agent
//! cannot connect; it sends nothing but a TLS handshake (no CONNECT, no credentials).

use async_nats::rustls;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// The TLS setup the connection uses, kept for diagnosis.
#[derive(Clone)]
pub struct TlsProbe {
    /// The client configuration (the agent's own when configured, else the system's roots).
    pub config: Arc<rustls::ClientConfig>,
    /// TLS even when the server does not ask for it.
    pub required: bool,
}

/// Why connecting to `url` fails, when one of the first steps does; `None` when TCP,
/// INFO and (when asked for) the TLS handshake all succeed.
pub fn diagnose(url: &str, probe: &TlsProbe) -> Option<String> {
    let addr: async_nats::ServerAddr = url.parse().ok()?;
    let host = addr.host().to_string();
    let port = addr.port();
    let target = format!("{host}:{port}");
    let sock = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(s)) => s,
        _ => return Some(format!("{target}: cannot resolve the host")),
    };
    let mut tcp = match TcpStream::connect_timeout(&sock, STEP_TIMEOUT) {
        Ok(t) => t,
        Err(e) => return Some(format!("{target}: {e}")),
    };
    let _ = tcp.set_read_timeout(Some(STEP_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(STEP_TIMEOUT));
    let info = match read_line(&mut tcp) {
        Ok(line) => line,
        Err(e) => return Some(format!("{target}: no INFO from the server: {e}")),
    };
    if !info.starts_with("INFO ") {
        return Some(format!(
            "{target}: not a NATS server (it said {:?})",
            truncate(&info)
        ));
    }
    let tls_asked = info.contains("\"tls_required\":true") || info.contains("\"tls_verify\":true");
    if !tls_asked && !probe.required && !addr.tls_required() {
        return None;
    }
    if !tls_asked {
        return Some(format!(
            "{target}: the server does not offer TLS but nats.tls.required or a tls:// URL asks for it"
        ));
    }
    let name = match rustls::pki_types::ServerName::try_from(host.clone()) {
        Ok(n) => n,
        Err(e) => return Some(format!("{target}: {host:?} is not a TLS server name: {e}")),
    };
    let mut conn = match rustls::ClientConnection::new(probe.config.clone(), name) {
        Ok(c) => c,
        Err(e) => return Some(format!("{target}: TLS setup: {e}")),
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Some(tls_reason(&target, &e.to_string()));
        }
    }
    // TLS 1.3: a server that refuses the client certificate says so after the
    // client's side of the handshake is done, in an alert on the next read.
    let mut buf = [0u8; 512];
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let _ = stream.write_all(b"PING\r\n");
    match stream.read(&mut buf) {
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut =>
        {
            Some(tls_reason(&target, &e.to_string()))
        }
        _ => None,
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

fn read_line(tcp: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 * 1024 {
        if tcp.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// A TLS failure in words, with the setting to check.
pub fn tls_reason(target: &str, error: &str) -> String {
    let hint = if error.contains("UnknownIssuer")
        || error.contains("BadSignature")
        || (error.contains("UnknownCA") && !error.contains("alert"))
    {
        "the server's certificate is not signed by a CA in nats.tls.ca (or the system's roots)"
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        "the server's certificate does not carry the name connected to; set nats.tls.server_name \
         to a name it carries or use that name in nats.urls"
    } else if error.contains("Expired") || error.contains("NotValidYet") {
        "the server's certificate is outside its validity period (or this host's clock is wrong)"
    } else if error.contains("alert") {
        "the server refused this agent's client certificate (nats.tls.cert, nats.tls.key): missing, \
         or not signed by a CA the server trusts"
    } else {
        "check nats.tls.ca, nats.tls.cert, nats.tls.key and nats.tls.server_name"
    };
    format!("TLS handshake with {target} failed: {error}: {hint}")
}

#[cfg(test)]
mod tests {
    use super::tls_reason;

    #[test]
    fn given_each_tls_failure_when_explained_then_the_setting_is_named() {
        let r = tls_reason("h:1", "invalid peer certificate: UnknownIssuer");
        assert!(r.contains("nats.tls.ca"), "{r}");
        let r = tls_reason("h:1", "invalid peer certificate: BadSignature");
        assert!(r.contains("nats.tls.ca"), "{r}");
        let r = tls_reason("h:1", "invalid peer certificate: NotValidForName");
        assert!(r.contains("nats.tls.server_name"), "{r}");
        let r = tls_reason("h:1", "received fatal alert: CertificateRequired");
        assert!(r.contains("nats.tls.cert"), "{r}");
        let r = tls_reason("h:1", "received fatal alert: UnknownCA");
        assert!(r.contains("client certificate"), "{r}");
    }
}
