//! From a stream of pgoutput messages to whole remote transactions.
//!
//! The [`Assembler`] collects the messages between Begin and Commit (in memory), or the chunks
//! of a streamed transaction between its first Stream Start and Stream Commit (in a spool file),
//! and hands the applier one [`RemoteTxn`] per committed transaction, in commit order — the only
//! order in which pgoutput ever commits them. Relation messages stay inside the transaction, in
//! their place, because a relation can change shape in the middle of one.
//!
//! Loop prevention for PostgreSQL 15 happens here: a transaction with an Origin message was
//! itself replicated, and is dropped whole ([`pgrepl_core::origin_filter`]). A dropped or empty
//! transaction still yields [`Assembled::Skipped`] with its end LSN, which the link may confirm
//! to the source so that a node whose traffic is all skipped still frees its WAL.

use std::borrow::Cow;

use bytes::Bytes;
use pgrepl_core::origin_filter::OriginFilter;
use pgrepl_core::pgoutput::{LogicalMessage, ProtocolVersion};
use pgrepl_core::{Lsn, PgTimestamp};

use crate::error::ApplyError;
use crate::spool::{Spool, SpooledTxn};

/// Messages kept in memory, in chunks so that a long transaction never moves what it already
/// holds when it grows.
#[derive(Debug, Default)]
pub struct MessageChunks {
    chunks: Vec<Vec<LogicalMessage>>,
}

/// Messages per chunk.
const CHUNK: usize = 512;

impl MessageChunks {
    /// Appends a message.
    pub fn push(&mut self, message: LogicalMessage) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(message),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(message);
                self.chunks.push(chunk);
            }
        }
    }

    /// The messages in order.
    pub fn iter(&self) -> impl Iterator<Item = &LogicalMessage> + Send {
        self.chunks.iter().flatten()
    }

    fn into_relations(self) -> impl Iterator<Item = LogicalMessage> {
        self.chunks
            .into_iter()
            .flatten()
            .filter(|m| matches!(m, LogicalMessage::Relation(_)))
    }
}

impl From<Vec<LogicalMessage>> for MessageChunks {
    fn from(messages: Vec<LogicalMessage>) -> Self {
        let mut chunks = MessageChunks::default();
        for m in messages {
            chunks.push(m);
        }
        chunks
    }
}

/// Where a transaction's messages are.
#[derive(Debug)]
pub enum TxnBody {
    /// In memory.
    Memory(MessageChunks),
    /// In a spool file (a streamed transaction).
    Spooled(SpooledTxn),
}

/// A committed remote transaction, ready to apply.
#[derive(Debug)]
pub struct RemoteTxn {
    /// The source's transaction id.
    pub xid: u32,
    /// Where its commit record starts on the source.
    pub commit_lsn: Lsn,
    /// Where its commit record ends: the position the target's origin advances to.
    pub end_lsn: Lsn,
    /// When it committed on the source.
    pub commit_time: PgTimestamp,
    /// Its messages: Relation, Insert, Update, Delete, Truncate.
    pub body: TxnBody,
    /// How many changes it has (rows and truncates).
    pub changes: u64,
    /// Its size in bytes as received.
    pub bytes: usize,
}

/// The messages of a [`RemoteTxn`], borrowed or read back from disk.
pub type Messages<'a> =
    Box<dyn Iterator<Item = Result<Cow<'a, LogicalMessage>, ApplyError>> + Send + 'a>;

impl RemoteTxn {
    /// Its messages in order; borrowed from memory, or read back from the spool file.
    pub fn messages(&self) -> Result<Messages<'_>, ApplyError> {
        Ok(match &self.body {
            TxnBody::Memory(msgs) => Box::new(msgs.iter().map(|m| Ok(Cow::Borrowed(m)))),
            TxnBody::Spooled(spooled) => Box::new(spooled.read()?.map(|r| r.map(Cow::Owned))),
        })
    }
}

/// What one message completed.
#[derive(Debug)]
pub enum Assembled {
    /// Nothing yet.
    Nothing,
    /// A transaction to apply.
    Txn(RemoteTxn),
    /// A transaction that is not applied (replicated from elsewhere, or empty): its end.
    Skipped {
        /// Its end LSN.
        end_lsn: Lsn,
        /// Whether it was skipped for carrying an origin (rather than for being empty).
        foreign: bool,
    },
}

#[derive(Debug)]
struct OpenTxn {
    xid: u32,
    commit_time: PgTimestamp,
    messages: MessageChunks,
    changes: u64,
    bytes: usize,
}

/// Turns messages into transactions; see the module documentation.
#[derive(Debug)]
pub struct Assembler {
    source: String,
    version: ProtocolVersion,
    filter: OriginFilter,
    open: Option<OpenTxn>,
    stream_xid: Option<u32>,
    stream_changes: std::collections::HashMap<u32, u64>,
    spool: Spool,
    pending_relations: Vec<LogicalMessage>,
}

impl Assembler {
    /// An assembler for a session with `source`, spooling into `spool`.
    pub fn new(source: &str, version: ProtocolVersion, spool: Spool) -> Self {
        Assembler {
            source: source.to_owned(),
            version,
            filter: OriginFilter::new(),
            open: None,
            stream_xid: None,
            stream_changes: std::collections::HashMap::new(),
            spool,
            pending_relations: Vec::new(),
        }
    }

    /// Whether no transaction is being assembled (so a keepalive position is safe to confirm
    /// once everything applied is durable).
    pub fn is_idle(&self) -> bool {
        self.open.is_none() && self.stream_xid.is_none() && !self.spool.has_open()
    }

    /// How many transactions were skipped for carrying an origin.
    pub fn skipped_foreign(&self) -> u64 {
        self.filter.skipped()
    }

    fn unexpected(&self, what: impl Into<String>) -> ApplyError {
        ApplyError::Unexpected {
            source_node: self.source.clone(),
            what: what.into(),
        }
    }

    /// Takes the next message (`raw` is its bytes as received, for spooling).
    pub fn push(&mut self, message: LogicalMessage, raw: &Bytes) -> Result<Assembled, ApplyError> {
        use LogicalMessage as M;
        let is_change = matches!(
            message,
            M::Insert(_) | M::Update(_) | M::Delete(_) | M::Truncate(_)
        );
        match message {
            M::Begin(b) => {
                if self.open.is_some() {
                    return Err(self.unexpected("Begin inside a transaction"));
                }
                self.filter.begin();
                self.open = Some(OpenTxn {
                    xid: b.xid,
                    commit_time: b.commit_time,
                    messages: std::mem::take(&mut self.pending_relations).into(),
                    changes: 0,
                    bytes: 0,
                });
                Ok(Assembled::Nothing)
            }
            M::Origin(_) => {
                self.filter.origin(self.stream_xid);
                Ok(Assembled::Nothing)
            }
            M::Relation(_) | M::Insert(_) | M::Update(_) | M::Delete(_) | M::Truncate(_) => {
                // A Relation message is sent once per session and relation: it must reach the
                // applier even inside a transaction that is skipped, or later transactions
                // would refer to a relation never described.
                let is_relation = matches!(message, M::Relation(_));
                if let Some(xid) = self.stream_xid {
                    if !self.filter.is_foreign(Some(xid)) {
                        self.spool.append(xid, raw)?;
                        if is_change {
                            *self.stream_changes.entry(xid).or_default() += 1;
                        }
                    } else if is_relation {
                        self.pending_relations.push(message);
                    }
                } else if let Some(open) = self.open.as_mut() {
                    if !self.filter.is_foreign(None) || is_relation {
                        open.bytes += raw.len();
                        open.changes += u64::from(is_change);
                        open.messages.push(message);
                    }
                } else if is_relation {
                    self.pending_relations.push(message);
                } else {
                    return Err(self.unexpected("a change outside any transaction"));
                }
                Ok(Assembled::Nothing)
            }
            M::Type(_) | M::Message(_) => Ok(Assembled::Nothing),
            M::Commit(c) => {
                let Some(open) = self.open.take() else {
                    return Err(self.unexpected("Commit without Begin"));
                };
                let foreign = self.filter.end(None);
                if foreign || open.changes == 0 {
                    self.pending_relations
                        .extend(open.messages.into_relations());
                    return Ok(Assembled::Skipped {
                        end_lsn: c.end_lsn,
                        foreign,
                    });
                }
                Ok(Assembled::Txn(RemoteTxn {
                    xid: open.xid,
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_time: open.commit_time,
                    body: TxnBody::Memory(open.messages),
                    changes: open.changes,
                    bytes: open.bytes,
                }))
            }
            M::StreamStart(s) => {
                if self.stream_xid.is_some() {
                    return Err(self.unexpected("Stream Start inside a streamed block"));
                }
                self.stream_xid = Some(s.xid);
                if s.first_segment {
                    self.spool.begin(s.xid)?;
                    self.stream_changes.insert(s.xid, 0);
                }
                Ok(Assembled::Nothing)
            }
            M::StreamStop => {
                self.stream_xid = None;
                Ok(Assembled::Nothing)
            }
            M::StreamCommit(c) => {
                let foreign = self.filter.end(Some(c.xid));
                let spooled = self.spool.finish(c.xid, self.version)?;
                let changes = self.stream_changes.remove(&c.xid).unwrap_or(0);
                if foreign || changes == 0 {
                    return Ok(Assembled::Skipped {
                        end_lsn: c.end_lsn,
                        foreign,
                    });
                }
                let bytes = usize::try_from(spooled.bytes()).unwrap_or(usize::MAX);
                Ok(Assembled::Txn(RemoteTxn {
                    xid: c.xid,
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_time: c.commit_time,
                    body: TxnBody::Spooled(spooled),
                    changes,
                    bytes,
                }))
            }
            M::StreamAbort(a) => {
                self.spool.abort(a.xid, a.subxid);
                if a.xid == a.subxid {
                    self.filter.end(Some(a.xid));
                    self.stream_changes.remove(&a.xid);
                }
                Ok(Assembled::Nothing)
            }
            M::BeginPrepare(_)
            | M::Prepare(_)
            | M::CommitPrepared(_)
            | M::RollbackPrepared(_)
            | M::StreamPrepare(_) => {
                Err(self.unexpected("a two-phase message, although two_phase was not requested"))
            }
            other => Err(self.unexpected(format!("message {:?}", other.kind()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use pgrepl_core::pgoutput::{
        Begin, ColumnValue, Commit, Insert, Origin, StreamAbort, StreamCommit, StreamStart,
        TupleData, encode,
    };

    fn raw(m: &LogicalMessage) -> Bytes {
        let mut out = BytesMut::new();
        encode(m, ProtocolVersion::V2, &mut out).unwrap();
        out.freeze()
    }

    fn push(a: &mut Assembler, m: LogicalMessage) -> Assembled {
        let r = raw(&m);
        a.push(m, &r).unwrap()
    }

    fn insert(xid: Option<u32>) -> LogicalMessage {
        LogicalMessage::Insert(Insert {
            xid,
            relation_oid: 1,
            new: TupleData::new([ColumnValue::Null]),
        })
    }

    fn assembler(name: &str) -> Assembler {
        let dir = std::env::temp_dir().join(format!("pgrepl-asm-{name}-{}", std::process::id()));
        Assembler::new("src", ProtocolVersion::V2, Spool::new(dir).unwrap())
    }

    fn begin() -> LogicalMessage {
        LogicalMessage::Begin(Begin {
            final_lsn: Lsn(10),
            commit_time: PgTimestamp(5),
            xid: 3,
        })
    }

    fn commit(end: u64) -> LogicalMessage {
        LogicalMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(end),
            commit_time: PgTimestamp(5),
        })
    }

    #[test]
    fn transactions_with_an_origin_are_skipped_whole() {
        let mut a = assembler("origin");
        push(&mut a, begin());
        assert!(!a.is_idle());
        push(
            &mut a,
            LogicalMessage::Origin(Origin {
                commit_lsn: Lsn(1),
                name: "pgrepl_c_from_x".into(),
            }),
        );
        push(&mut a, insert(None));
        match push(&mut a, commit(20)) {
            Assembled::Skipped { end_lsn, foreign } => {
                assert_eq!(end_lsn, Lsn(20));
                assert!(foreign);
            }
            other => panic!("{other:?}"),
        }
        assert!(a.is_idle());
        push(&mut a, begin());
        push(&mut a, insert(None));
        match push(&mut a, commit(30)) {
            Assembled::Txn(t) => {
                assert_eq!(t.end_lsn, Lsn(30));
                assert_eq!(t.changes, 1);
                assert_eq!(t.messages().unwrap().count(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.skipped_foreign(), 1);
    }

    #[test]
    fn relations_described_in_skipped_transactions_reach_the_next_one() {
        use pgrepl_core::pgoutput::{Relation, ReplicaIdentity};
        let mut a = assembler("relation");
        push(&mut a, begin());
        push(
            &mut a,
            LogicalMessage::Origin(Origin {
                commit_lsn: Lsn(1),
                name: "elsewhere".into(),
            }),
        );
        push(
            &mut a,
            LogicalMessage::Relation(Relation {
                xid: None,
                oid: 1,
                namespace: "public".into(),
                name: "t".into(),
                replica_identity: ReplicaIdentity::Default,
                columns: vec![],
            }),
        );
        push(&mut a, insert(None));
        assert!(matches!(
            push(&mut a, commit(20)),
            Assembled::Skipped { foreign: true, .. }
        ));
        push(&mut a, begin());
        push(&mut a, insert(None));
        let Assembled::Txn(t) = push(&mut a, commit(30)) else {
            panic!()
        };
        let kinds: Vec<_> = t.messages().unwrap().map(|m| m.unwrap().kind()).collect();
        assert_eq!(kinds.len(), 2);
        assert!(matches!(
            kinds[0],
            pgrepl_core::pgoutput::MessageKind::Relation
        ));
    }

    #[test]
    fn streamed_transactions_are_spooled_and_aborts_discard() {
        let mut a = assembler("stream");
        push(
            &mut a,
            LogicalMessage::StreamStart(StreamStart {
                xid: 7,
                first_segment: true,
            }),
        );
        push(&mut a, insert(Some(7)));
        push(&mut a, LogicalMessage::StreamStop);
        push(
            &mut a,
            LogicalMessage::StreamStart(StreamStart {
                xid: 8,
                first_segment: true,
            }),
        );
        push(&mut a, insert(Some(8)));
        push(&mut a, LogicalMessage::StreamStop);
        // an ordinary transaction in between
        push(&mut a, begin());
        push(&mut a, insert(None));
        assert!(matches!(push(&mut a, commit(40)), Assembled::Txn(_)));
        push(
            &mut a,
            LogicalMessage::StreamStart(StreamStart {
                xid: 7,
                first_segment: false,
            }),
        );
        push(&mut a, insert(Some(9))); // a subtransaction of 7
        push(&mut a, insert(Some(7)));
        push(&mut a, LogicalMessage::StreamStop);
        push(
            &mut a,
            LogicalMessage::StreamAbort(StreamAbort {
                xid: 7,
                subxid: 9,
                abort: None,
            }),
        );
        push(
            &mut a,
            LogicalMessage::StreamAbort(StreamAbort {
                xid: 8,
                subxid: 8,
                abort: None,
            }),
        );
        assert!(!a.is_idle());
        let done = push(
            &mut a,
            LogicalMessage::StreamCommit(StreamCommit {
                xid: 7,
                flags: 0,
                commit_lsn: Lsn(50),
                end_lsn: Lsn(60),
                commit_time: PgTimestamp(9),
            }),
        );
        let Assembled::Txn(t) = done else {
            panic!("{done:?}")
        };
        assert_eq!(t.end_lsn, Lsn(60));
        assert_eq!(
            t.messages().unwrap().count(),
            2,
            "the aborted subtransaction's insert is gone"
        );
        assert!(a.is_idle());
    }
}
