//! The one error type of the testkit.
//!
//! Every variant says what a person can do about it: which package to install, which command
//! failed with what output, where the server log is.

use std::io;
use std::path::PathBuf;

/// Why the testkit could not find an installation, or start, stop or talk to a cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No installation of the requested major version was found.
    #[error(
        "PostgreSQL {major} is not installed where pgrepl looks for it.\n\
         Searched: {searched}\n\
         To fix: {hint}\n\
         (`.ci/run` installs everything the test suite needs on a Debian 12 machine.)"
    )]
    InstallNotFound {
        /// The major version that was asked for.
        major: u32,
        /// The places that were searched, in order, and what was wrong with each.
        searched: String,
        /// What to install, or which environment variable to set.
        hint: String,
    },

    /// A directory named as a PostgreSQL installation is not one, or not the expected version.
    #[error("{path} is not a usable PostgreSQL bin directory: {reason}")]
    InvalidInstall {
        /// The bin directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The OS user that must run the server (when the tests run as root) is missing.
    #[error(
        "running as root, and PostgreSQL refuses to run as root: the server must run as OS user \
         `{user}`, but {reason}. Install Debian's `postgresql-15` (it creates the user) or run \
         `useradd --system --create-home {user}`, or set PGREPL_PG_OS_USER to another user."
    )]
    ServerUser {
        /// The user name that was looked up.
        user: String,
        /// What went wrong looking it up.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An external program (initdb, pg_ctl, psql, openssl, …) failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stderr, then stdout).
        output: String,
    },

    /// The installation cannot do what the cluster was configured for.
    #[error("PostgreSQL {version} at {bin_dir} {reason}")]
    Unsupported {
        /// The full version of the installation.
        version: String,
        /// Its bin directory.
        bin_dir: PathBuf,
        /// What it lacks (e.g. "was built without SSL support").
        reason: String,
    },

    /// The server did not start, or did not become ready in time.
    #[error(
        "PostgreSQL server in {data_dir} did not start: {reason}\n--- last lines of {log} ---\n{log_tail}"
    )]
    Start {
        /// The data directory.
        data_dir: PathBuf,
        /// Why (timeout, exit status, port taken).
        reason: String,
        /// Path of the server log.
        log: PathBuf,
        /// The end of the server log.
        log_tail: String,
    },

    /// The server did not do what was asked in time (stop, reload).
    #[error("PostgreSQL server in {data_dir}: {reason}")]
    Server {
        /// The data directory.
        data_dir: PathBuf,
        /// What did not happen.
        reason: String,
    },

    /// A client connection failed (feature `client`).
    #[cfg(feature = "client")]
    #[error("connecting to cluster `{cluster}` on port {port}: {source}")]
    Connect {
        /// The cluster's name.
        cluster: String,
        /// Its port.
        port: u16,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The testkit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
