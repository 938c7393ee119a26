//! One error type for every call: what kind of failure, the agent's code and message,
//! and the cause.

use std::sync::Arc;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The agent could not be reached (not running, wrong address, connection lost).
    Connect,
    /// The request was refused as invalid (a 4xx not listed below).
    BadRequest,
    /// No or bad credentials: 401.
    Unauthorized,
    /// Not allowed (e.g. publishing as a reader): 403.
    Forbidden,
    /// Unknown resource: 404.
    NotFound,
    /// The resource exists already or the state forbids it (e.g. a group of that
    /// name, a channel whose policy refuses unrouted messages): 409.
    Conflict,
    /// Message larger than the cluster can carry: 413.
    TooLarge,
    /// Receiver backlog full: 429. Nothing was stored; retry later.
    Backpressure,
    /// The agent failed or is unavailable (5xx).
    Server,
    /// The answer could not be understood, or a payload is not what was asked for
    /// (e.g. [`Message::json`](crate::Message::json) on another type).
    Decode,
    /// The call did not finish within its timeout. A send may still have been
    /// stored: retry with the same idempotency key.
    Timeout,
    /// The subscription or node this call needed has been closed.
    Closed,
}

/// An error from the agent or the transport: its kind, the agent's HTTP status and
/// code when it answered, a message a person can act on, and the cause
/// ([`std::error::Error::source`]).
///
/// # Examples
/// ```
/// let e = rmds::Error::from_status(409, Some("conflict".into()), "group w exists".into());
/// assert_eq!(e.kind, rmds::ErrorKind::Conflict);
/// assert_eq!(e.to_string(), "409 conflict: group w exists");
/// ```
#[derive(Debug, Clone)]
pub struct Error {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// HTTP status, when the agent answered.
    pub status: Option<u16>,
    /// The agent's error code (`backlog_full`, `forbidden`, ...), when it answered.
    pub code: Option<String>,
    /// A human-readable message.
    pub message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, "{s} {c}: {}", self.message),
            _ => write!(f, "{:?}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    /// An error of `kind` with a message and no cause.
    ///
    /// # Examples
    /// ```
    /// let e = rmds::Error::new(rmds::ErrorKind::Timeout, "no answer within 2s");
    /// assert_eq!(e.kind, rmds::ErrorKind::Timeout);
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            status: None,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    /// The error the agent answered with `status` (the kind follows from it).
    ///
    /// # Examples
    /// ```
    /// let e = rmds::Error::from_status(429, Some("backlog_full".into()), "retry later".into());
    /// assert_eq!(e.kind, rmds::ErrorKind::Backpressure);
    /// ```
    pub fn from_status(status: u16, code: Option<String>, message: String) -> Error {
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::Backpressure,
            s if s >= 500 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        Error {
            kind,
            status: Some(status),
            code,
            message,
            source: None,
        }
    }

    /// Keeps `source` as the cause.
    ///
    /// # Examples
    /// ```
    /// use std::error::Error as _;
    /// let io = std::io::Error::other("disk full");
    /// let e = rmds::Error::new(rmds::ErrorKind::Server, "cannot store").with_source(io);
    /// assert_eq!(e.source().unwrap().to_string(), "disk full");
    /// ```
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn connect(e: reqwest::Error) -> Error {
        let kind = if e.is_decode() {
            ErrorKind::Decode
        } else if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Connect
        };
        Error::new(kind, e.to_string()).with_source(e)
    }

    pub(crate) fn decode(e: serde_json::Error) -> Error {
        Error::new(ErrorKind::Decode, e.to_string()).with_source(e)
    }

    pub(crate) fn closed(what: &str) -> Error {
        Error::new(ErrorKind::Closed, format!("{what} is closed"))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
