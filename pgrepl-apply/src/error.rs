//! Errors of links, classified for the retry logic: transient ones (a connection dropped, a
//! node restarting, a slot or origin still held by a dying session, a serialization failure)
//! are retried with capped backoff; definite ones (a table or column missing on the target, a
//! permission, a value the target refuses, the `error` resolver) stop the link with a message
//! that names the table, the key and what to do. No error carries a password.

use pgrepl_conflict::ConflictKind;
use pgrepl_core::Lsn;
use pgrepl_core::connection::Error as ConnError;

/// A conflict that the `error` resolver turned into a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictStop {
    /// The kind of conflict.
    pub kind: ConflictKind,
    /// The target table, quoted and schema-qualified.
    pub table: String,
    /// The key of the row, as JSON.
    pub key: String,
    /// The local row(s), as JSON (`null` when missing).
    pub local: String,
    /// The remote row, as JSON.
    pub remote: String,
    /// The source node.
    pub source: String,
    /// The remote transaction's commit LSN.
    pub commit_lsn: Lsn,
}

/// What can stop a link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A connection to a node failed or the node reported an error.
    #[error("node {node}: {source}")]
    Connection {
        /// The node.
        node: String,
        /// What happened.
        #[source]
        source: Box<ConnError>,
    },
    /// A replicated table is missing on the target.
    #[error(
        "table {table} does not exist on node {node}; create it there with the same columns \
         (pgrepl does not replicate DDL)"
    )]
    MissingTable {
        /// The target node.
        node: String,
        /// The table, schema-qualified.
        table: String,
    },
    /// A replicated column is missing on the target.
    #[error(
        "column \"{column}\" of table {table} does not exist on node {node}; add it there \
         (pgrepl does not replicate DDL)"
    )]
    MissingColumn {
        /// The target node.
        node: String,
        /// The table, schema-qualified.
        table: String,
        /// The column.
        column: String,
    },
    /// An UPDATE or DELETE arrived for a table whose rows cannot be identified.
    #[error(
        "table {table} has no usable replica identity, so updates and deletes cannot be \
         matched on node {node}; add a primary key or set REPLICA IDENTITY FULL on the source"
    )]
    NoReplicaIdentity {
        /// The target node.
        node: String,
        /// The table.
        table: String,
    },
    /// The `error` resolver stopped the link at a conflict.
    #[error(
        "{} conflict on {} applying a change from {} (commit {}) to node {target}: key {}; local \
         version {}; remote version {}. Fix the row on {target} or change the resolver for {}, \
         then the link resumes from this transaction",
        .stop.kind, .stop.table, .stop.source, .stop.commit_lsn, .stop.key, .stop.local,
        .stop.remote, .stop.kind
    )]
    Conflict {
        /// The target node.
        target: String,
        /// The conflict.
        stop: Box<ConflictStop>,
    },
    /// The target refused a change for a reason that will not go away by retrying.
    #[error(
        "node {target} refused transaction {xid} from {source_node} (commit {commit_lsn}) on \
         {table}: {cause}"
    )]
    Refused {
        /// The target node.
        target: String,
        /// The source node.
        source_node: String,
        /// The remote transaction id.
        xid: u32,
        /// Its commit LSN.
        commit_lsn: Lsn,
        /// The table being changed, if known.
        table: String,
        /// The server's error.
        #[source]
        cause: Box<ConnError>,
    },
    /// A node is not prepared for replication (origin or slot missing, a setting off).
    #[error("node {node} is not set up: {what}")]
    NotSetUp {
        /// The node.
        node: String,
        /// What is missing and how to fix it.
        what: String,
    },
    /// Spooling a streamed transaction to disk failed.
    #[error("spool file {path}: {reason}")]
    Spool {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The source sent something the applier cannot follow.
    #[error("unexpected stream from {source_node}: {what}")]
    Unexpected {
        /// The source node.
        source_node: String,
        /// What was unexpected.
        what: String,
    },
}

impl ApplyError {
    /// Whether restarting the link may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Connection { source, .. } => source.is_retryable(),
            ApplyError::Refused { cause, .. } => cause.is_retryable(),
            ApplyError::Spool { .. } => true,
            ApplyError::MissingTable { .. }
            | ApplyError::MissingColumn { .. }
            | ApplyError::NoReplicaIdentity { .. }
            | ApplyError::Conflict { .. }
            | ApplyError::NotSetUp { .. }
            | ApplyError::Unexpected { .. } => false,
        }
    }

    /// A connection error on `node`.
    pub fn connection(node: &str, source: ConnError) -> Self {
        ApplyError::Connection {
            node: node.to_owned(),
            source: Box::new(source),
        }
    }
}

/// A `Result` with [`ApplyError`].
pub type Result<T, E = ApplyError> = std::result::Result<T, E>;
