//! What a capture means once decoded: the transactions, changes and messages a subscriber
//! would act on, with the stream's shape (blocks, chunking, xids, positions) taken out.
//!
//! Both sides of every content assertion are built from these types: the workload says what
//! pgoutput must report ([`super::workload::expected`]), and [`super::stream`] turns a
//! decoded capture into the same form.

use pgrepl_core::Lsn;

/// One column value as a subscriber sees it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Val {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent.
    Unchanged,
    /// `t`: the value in its type's text output format.
    Text(String),
    /// `b`: the value in its type's binary send format.
    Binary(Vec<u8>),
}

impl std::fmt::Debug for Val {
    /// Long values are shortened, so that a failed comparison stays readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 60;
        match self {
            Self::Null => f.write_str("Null"),
            Self::Unchanged => f.write_str("Unchanged"),
            Self::Text(s) if s.len() > 2 * SHOWN => {
                let cut = (0..=SHOWN)
                    .rev()
                    .find(|&i| s.is_char_boundary(i))
                    .unwrap_or(0);
                write!(f, "Text({:?}… ({} bytes))", &s[..cut], s.len())
            }
            Self::Text(s) => write!(f, "Text({s:?})"),
            Self::Binary(b) if b.len() > SHOWN => {
                write!(
                    f,
                    "Binary(b\"{}\"… ({} bytes))",
                    b[..SHOWN].escape_ascii(),
                    b.len()
                )
            }
            Self::Binary(b) => write!(f, "Binary(b\"{}\")", b.escape_ascii()),
        }
    }
}

/// A row, in the relation's column order.
pub(crate) type Row = Vec<Val>;

/// The old values an Update or Delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Old {
    /// `K`: the replica identity key (other columns NULL).
    Key(Row),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(Row),
}

/// One change inside a transaction. Tables are named without their schema (all are `app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Insert {
        table: String,
        new: Row,
    },
    Update {
        table: String,
        old: Option<Old>,
        new: Row,
    },
    Delete {
        table: String,
        old: Old,
    },
    /// The truncated tables, sorted by name.
    Truncate {
        tables: Vec<String>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A transactional logical decoding message.
    Message {
        prefix: String,
        content: Vec<u8>,
    },
}

/// How a transaction's decoded part ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Commit or Stream Commit.
    Commit,
    /// Prepare or Stream Prepare (two-phase decoding).
    Prepare { gid: String },
}

/// One thing a subscriber acts on, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// A transaction's changes, up to its commit or prepare.
    Txn {
        /// The Origin message: origin name and the commit LSN it carries (`0/0` when sent
        /// after Stream Start).
        origin: Option<(String, Lsn)>,
        /// Whether it came in streamed blocks (Stream Start … Stream Stop).
        streamed: bool,
        /// Per Stream Abort of a subtransaction: whether it carried the abort LSN and time.
        subxact_aborts: Vec<bool>,
        changes: Vec<Change>,
        end: End,
    },
    /// A non-transactional logical decoding message (sent as it is decoded, outside any
    /// transaction).
    Message { prefix: String, content: Vec<u8> },
    /// Commit Prepared.
    CommitPrepared { gid: String },
    /// Rollback Prepared.
    RollbackPrepared { gid: String },
    /// A streamed transaction aborted (Stream Abort with subxid = xid); its streamed
    /// changes are void.
    Aborted { with_info: bool },
}

/// A text value.
pub(crate) fn text(value: &str) -> Val {
    Val::Text(value.to_owned())
}

/// A row of text values and NULLs.
pub(crate) fn row<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Row {
    values
        .into_iter()
        .map(|v| v.map_or(Val::Null, text))
        .collect()
}
