//! The link's metadata session on the target: table descriptions and replication-origin names,
//! cached. It is a connection of its own so that a lookup never has to wait for (or interleave
//! with) the apply session's pipeline, which may hold an open transaction.

use std::collections::HashMap;
use std::sync::Arc;

use pgrepl_core::connection::{Client, ConnectConfig};

use crate::catalog::{TargetTable, load_table};
use crate::error::ApplyError;
use crate::names::node_of_origin;

/// Cached lookups on the target.
#[derive(Debug)]
pub struct Metadata {
    client: Client,
    cluster: String,
    node: String,
    tables: HashMap<(String, String), Arc<TargetTable>>,
    origins: HashMap<u32, String>,
}

impl Metadata {
    /// Opens the metadata session of the link into `node`.
    pub async fn connect(
        cfg: &ConnectConfig,
        cluster: &str,
        node: &str,
    ) -> Result<Self, ApplyError> {
        let client = Client::connect(cfg)
            .await
            .map_err(|e| ApplyError::connection(node, e))?;
        Ok(Metadata {
            client,
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            tables: HashMap::new(),
            origins: HashMap::new(),
        })
    }

    /// The target table `schema.name`; a definite error if it does not exist.
    pub async fn table(
        &mut self,
        schema: &str,
        name: &str,
    ) -> Result<Arc<TargetTable>, ApplyError> {
        let key = (schema.to_owned(), name.to_owned());
        if let Some(t) = self.tables.get(&key) {
            return Ok(Arc::clone(t));
        }
        let found = load_table(&mut self.client, schema, name)
            .await
            .map_err(|e| ApplyError::connection(&self.node, e))?;
        let Some(table) = found else {
            return Err(ApplyError::MissingTable {
                node: self.node.clone(),
                table: format!("{schema}.{name}"),
            });
        };
        self.tables.insert(key, Arc::clone(&table));
        Ok(table)
    }

    /// Forgets every cached table description (after DDL may have changed one).
    pub fn forget_tables(&mut self) {
        self.tables.clear();
    }

    /// Who a replication origin id stands for: this node for 0 (a local write), the node name
    /// for one of this cluster's origins, or the origin's own name otherwise.
    pub async fn origin_label(&mut self, roident: u32) -> Result<String, ApplyError> {
        if roident == 0 {
            return Ok(self.node.clone());
        }
        if let Some(label) = self.origins.get(&roident) {
            return Ok(label.clone());
        }
        let rows = self
            .client
            .query(
                "SELECT roident, roname FROM pg_catalog.pg_replication_origin",
                &[],
            )
            .await
            .map_err(|e| ApplyError::connection(&self.node, e))?;
        for row in rows {
            let id: u32 = row
                .get(0)
                .map_err(|e| ApplyError::connection(&self.node, e))?;
            let name: String = row
                .get(1)
                .map_err(|e| ApplyError::connection(&self.node, e))?;
            let label = node_of_origin(&self.cluster, &name)
                .map(str::to_owned)
                .unwrap_or(name);
            self.origins.insert(id, label);
        }
        Ok(self
            .origins
            .get(&roident)
            .cloned()
            .unwrap_or_else(|| format!("origin {roident}")))
    }
}
