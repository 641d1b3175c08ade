//! Errors of connections, sessions and replication streams, classified by what the caller
//! should do.
//!
//! [`Error::is_retryable`] is the only question retry logic asks: *transient* failures (the
//! connection dropped, the server is restarting or shutting down, a serialization failure, a
//! slot still held by a dying walsender) can succeed on the next attempt; *definite* ones (a bad
//! DSN, a wrong password, a certificate that does not verify, a missing table, a permission, a
//! server that breaks the protocol) will fail again the same way and must reach a person. Server
//! errors are classified by SQLSTATE class, never by matching message text.
//!
//! No error ever carries a password: configuration errors name keys, authentication errors name
//! the user and the server, and the server itself never echoes a password back.

use std::fmt;
use std::io;

use super::backend::{ErrorFields, ProtocolError};
use super::config::ConfigError;

/// An error reported by the server (ErrorResponse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub ErrorFields);

impl DbError {
    /// The SQLSTATE code, e.g. `28P01`.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The primary message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    /// Whether trying again may succeed, from the SQLSTATE class (PostgreSQL documentation,
    /// "PostgreSQL Error Codes").
    pub fn is_retryable(&self) -> bool {
        let code = self.code();
        let class = code.get(..2).unwrap_or_default();
        match class {
            // connection exception, transaction rollback (serialization, deadlock),
            // insufficient resources, operator intervention (shutdown, crash recovery),
            // system error (I/O), internal error.
            "08" | "40" | "53" | "57" | "58" | "XX" => true,
            // object in use (a replication slot still active for a dying walsender) and
            // lock not available.
            "55" => matches!(code, "55006" | "55P03"),
            _ => false,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(f, "{} {}: {}", e.severity, e.code, e.message)?;
        if let Some(d) = &e.detail {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = &e.hint {
            write!(f, "; HINT: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// Anything that can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The DSN could not be understood.
    #[error("invalid connection settings: {0}")]
    Config(#[from] ConfigError),
    /// The server could not be reached.
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        /// host:port or socket path.
        endpoint: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Connecting took longer than `connect_timeout`.
    #[error("timed out after {seconds}s connecting to {endpoint}")]
    ConnectTimeout {
        /// host:port or socket path.
        endpoint: String,
        /// The timeout.
        seconds: u64,
    },
    /// TLS could not be set up or the server's certificate was refused.
    #[error("TLS with {endpoint} failed: {reason}")]
    Tls {
        /// host:port.
        endpoint: String,
        /// What failed, with the fix where there is one.
        reason: String,
    },
    /// `sslmode` requires TLS and the server does not offer it.
    #[error(
        "{endpoint} does not accept TLS connections, but sslmode={sslmode} requires TLS; \
         enable ssl on the server or use sslmode=prefer/disable"
    )]
    TlsRefused {
        /// host:port.
        endpoint: String,
        /// The mode that required TLS.
        sslmode: &'static str,
    },
    /// Authentication could not proceed on our side (no password, an unsupported method, a
    /// server that skips channel binding when it is required).
    #[error("cannot authenticate as \"{user}\" to {endpoint}: {reason}")]
    Auth {
        /// host:port.
        endpoint: String,
        /// The role.
        user: String,
        /// What is missing, and how to fix it.
        reason: String,
    },
    /// The server reported an error.
    #[error("{endpoint}: {error}")]
    Db {
        /// host:port.
        endpoint: String,
        /// The server's error.
        error: Box<DbError>,
    },
    /// The server broke the protocol.
    #[error("{endpoint}: {source}")]
    Protocol {
        /// host:port.
        endpoint: String,
        /// What was malformed.
        source: ProtocolError,
    },
    /// The server sent something legal but unexpected here.
    #[error("{endpoint}: unexpected {what} from the server")]
    Unexpected {
        /// host:port.
        endpoint: String,
        /// What arrived, and in which state.
        what: String,
    },
    /// The connection failed while in use.
    #[error("connection to {endpoint} lost: {source}")]
    Io {
        /// host:port.
        endpoint: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The server closed the connection.
    #[error("{endpoint} closed the connection")]
    Closed {
        /// host:port.
        endpoint: String,
    },
    /// The server ended a replication stream: with CopyDone, or with the CommandComplete a
    /// walsender sends when it stops because the server is shutting down.
    #[error("{endpoint} ended the replication stream: {reason}")]
    StreamEnded {
        /// host:port.
        endpoint: String,
        /// How it ended.
        reason: &'static str,
    },
    /// A caller passed an argument that cannot be sent (an invalid slot or publication name, a
    /// statement with a NUL byte).
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether trying again may succeed; see the module documentation.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Io { .. }
            | Error::Closed { .. }
            | Error::StreamEnded { .. } => true,
            Error::Db { error, .. } => error.is_retryable(),
            Error::Config(_)
            | Error::Tls { .. }
            | Error::TlsRefused { .. }
            | Error::Auth { .. }
            | Error::Protocol { .. }
            | Error::Unexpected { .. }
            | Error::InvalidArgument(_) => false,
        }
    }

    /// The server's error, if this is one.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            Error::Db { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// The SQLSTATE, if the server reported this error.
    pub fn code(&self) -> Option<&str> {
        self.db_error().map(DbError::code)
    }
}

/// A `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn db(code: &str) -> Error {
        Error::Db {
            endpoint: "h:1".into(),
            error: Box::new(DbError(ErrorFields {
                severity: "ERROR".into(),
                code: code.into(),
                message: "m".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn classification_follows_sqlstate_classes() {
        for code in [
            "08006", "40001", "40P01", "53300", "57P01", "57P03", "55006", "XX000",
        ] {
            assert!(db(code).is_retryable(), "{code}");
        }
        for code in [
            "28P01", "28000", "3D000", "42P01", "42501", "23505", "22P02", "55000",
        ] {
            assert!(!db(code).is_retryable(), "{code}");
        }
        assert!(
            Error::Closed {
                endpoint: "x".into()
            }
            .is_retryable()
        );
        assert!(!Error::InvalidArgument("x".into()).is_retryable());
    }
}
