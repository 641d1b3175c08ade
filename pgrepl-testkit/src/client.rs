//! A tokio-postgres client for a cluster (feature `client`): the independent oracle that later
//! crates' tests check pgrepl's work with.

use crate::cluster::Cluster;
use crate::error::{Error, Result};

impl Cluster {
    /// Connects to database `db` as the superuser over TCP (no TLS), and spawns the
    /// connection's task on the current tokio runtime. A connection error after connecting is
    /// printed to stderr; the client then returns errors.
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
            if let Err(e) = connection.await {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "pgrepl-testkit: connection to cluster `{name}` ended: {e}"
                );
            }
        });
        Ok(client)
    }
}
