//! A tokio-postgres client for a cluster (feature `client`): the independent oracle that later
//! crates' tests check pgrepl's work with.

use crate::cluster::Cluster;
use crate::error::{Error, Result};

impl Cluster {
    /// Connects to database `db` as the superuser over TCP (no TLS), and spawns the
    /// connection's task on the current tokio runtime. When the connection ends with an error
    /// later, the client's calls return errors; an error message from the server (other than
    /// the shutdown notices of a stopping cluster) is also printed to stderr.
    ///
    /// # Errors
    /// [`Error::Connect`] when the connection cannot be made.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        self.connect_dsn(&self.dsn(db)).await
    }

    /// Connects with a DSN of the caller's (e.g. `self.dsn(db)` plus a `password=…`).
    ///
    /// # Errors
    /// [`Error::Connect`] when the connection cannot be made.
    pub async fn connect_dsn(&self, dsn: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .map_err(|source| Error::Connect {
                cluster: self.name().to_owned(),
                port: self.port(),
                source,
            })?;
        let name = self.name().to_owned();
        tokio::spawn(async move {
            // A connection cut because the cluster stopped or crashed (I/O errors, SQLSTATE
            // class 57 "operator intervention") is what tests do on purpose; the client's
            // next call reports it anyway. Anything else the server says is worth a line.
            if let Err(e) = connection.await
                && let Some(db) = e.as_db_error()
                && !db.code().code().starts_with("57")
            {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "pgrepl-testkit: connection to cluster `{name}` ended: {db}"
                );
            }
        });
        Ok(client)
    }
}
