//! How a command fails: one message for a person — what is wrong and how to fix it — and an
//! exit status for scripts.
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | done (for `verify`: every table is identical on every node) |
//! | 1 | `verify` found differences; `run` ended with at least one failed link |
//! | 2 | the command could not do its job: a bad configuration, an unreachable node, a setting that blocks replication, … (also clap's status for a bad command line) |

use pgrepl_apply::MeshError;
use pgrepl_core::connection::Error as ConnError;

/// Exit status: differences found (`verify`), or a link failed (`run`).
pub(crate) const EXIT_DIFFERENT: u8 = 1;
/// Exit status: the command could not do its job.
pub(crate) const EXIT_TROUBLE: u8 = 2;

/// Why a command stopped.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit status.
    pub(crate) status: u8,
    /// What happened and what to do, possibly several lines.
    pub(crate) message: String,
}

impl Failure {
    /// A failure with exit status 2.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            status: EXIT_TROUBLE,
            message: message.into(),
        }
    }

    /// A connection or SQL error on `node`, with advice where the error has an obvious fix.
    pub(crate) fn node(node: &str, endpoint: &str, error: &ConnError) -> Self {
        Failure::new(describe_node_error(node, endpoint, error))
    }

    /// A failed mesh operation (setup, check, teardown).
    pub(crate) fn mesh(error: &MeshError) -> Self {
        match error {
            MeshError::Connection { node, source } => Failure::new(format!(
                "node {node}: {source}{}",
                advice(source)
                    .map(|a| format!("\n  fix: {a}"))
                    .unwrap_or_default()
            )),
            other => Failure::new(other.to_string()),
        }
    }
}

/// `node NAME (user@host:port/db): error`, plus the usual fix on a second line.
pub(crate) fn describe_node_error(node: &str, endpoint: &str, error: &ConnError) -> String {
    let mut out = format!("node {node} ({endpoint}): {error}");
    if let Some(a) = advice(error) {
        out.push_str("\n  fix: ");
        out.push_str(a);
    }
    out
}

/// What usually fixes a connection error, by its kind (never by message text).
pub(crate) fn advice(error: &ConnError) -> Option<&'static str> {
    match error {
        ConnError::Connect { .. } | ConnError::ConnectTimeout { .. } => Some(
            "check that the server is running and that host and port in this node's dsn are \
             right (and that listen_addresses and the firewall let this machine in)",
        ),
        ConnError::Config(_) => Some("correct this node's dsn in the configuration file"),
        ConnError::Tls { .. } | ConnError::TlsRefused { .. } => {
            Some("check sslmode and sslrootcert in this node's dsn, and the server's ssl settings")
        }
        ConnError::Db { .. } => match error.code() {
            Some("28P01") => Some(
                "check the password: in the dsn (password=…), in PGPASSWORD, or in the pgpass \
                 file (PGPASSFILE, ~/.pgpass)",
            ),
            Some("28000") => Some(
                "allow this role from this host in the server's pg_hba.conf (for ordinary and \
                 replication connections), then reload the server",
            ),
            Some("3D000") => Some("create the database, or correct dbname in this node's dsn"),
            Some("42501") => Some(
                "grant the role what pgrepl needs (see the README: \"A least-privilege role\")",
            ),
            Some("53300") => Some("raise max_connections or max_wal_senders on the server"),
            _ => None,
        },
        _ => None,
    }
}
