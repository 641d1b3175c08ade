//! The pgoutput logical replication messages: model, decoder and encoder.
//!
//! `pgoutput` is PostgreSQL's built-in logical decoding output plugin, the one
//! native logical replication subscribes with. Every message it emits is one
//! [`LogicalMessage`]; their byte layout is PostgreSQL's documentation section
//! "Logical Replication Message Formats" (protocol-logicalrep-message-formats),
//! cross-checked against the server's own reader and writer in
//! `src/backend/replication/logical/proto.c`, which is precise where the
//! documentation is not:
//!
//! - The `xid` field of Relation, Type, Insert, Update, Delete, Truncate and
//!   Message exists only for changes of a *streamed* transaction, i.e. between
//!   Stream Start and Stream Stop, and only on protocol version 2 and later.
//!   Outside a streamed block those messages start directly with their
//!   payload. Nothing in the message itself says which case applies, so the
//!   decoder must be told ([`decode`]'s `in_stream`), or track it ([`Decoder`]).
//! - Stream Abort carries an abort LSN and time only when the subscriber asked
//!   for `streaming = parallel`, which needs protocol version 4. The message is
//!   self-delimiting (one message per XLogData or per row of
//!   `pg_logical_slot_peek_binary_changes`), so on version 4 the decoder reads
//!   the two extra fields when they are there and [`StreamAbort::abort`] is
//!   `None` when they are not.
//! - Commit-like messages have a flags byte that PostgreSQL currently always
//!   sends as 0 and rejects otherwise; it is kept here as sent, so nothing is
//!   lost and re-encoding is exact.
//! - A tuple's columns are `n` (NULL), `u` (unchanged TOAST value: the column
//!   was not modified and its value is not sent), `t` (text) or `b` (binary,
//!   when the subscriber asked for `binary = true`).
//!
//! # Protocol versions
//!
//! The subscriber asks for a `proto_version` in `START_REPLICATION`; what each
//! adds is on [`ProtocolVersion`]. A message kind the negotiated version cannot
//! carry is a decode error, not a guess.
//!
//! # Why the decoder is total
//!
//! These bytes come from the network. [`decode`] returns a value or a
//! [`DecodeError`] naming the message, the byte offset and what was wrong for
//! *every* input: it never panics (the decoder module denies indexing,
//! slicing and unchecked arithmetic), never allocates more than the message
//! could hold (every count is checked against the bytes left before anything
//! is reserved), and rejects trailing bytes, so a message is consumed exactly.
//! The fuzz targets under `fuzz/` hold it to that, and also check that every
//! message that decodes re-encodes to the same bytes.
//!
//! # Zero copy
//!
//! Column values and Message contents are [`Bytes`] slices of the input
//! buffer: decoding a column is a bounds check and a reference-count bump,
//! never a copy. Names (relation, column, namespace, origin, GID) are copied
//! into validated UTF-8 `String`s: they are few and live in the relation cache.

mod decode;
mod encode;
mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::lsn::Lsn;
use crate::timestamp::PgTimestamp;

pub use decode::{Decoder, decode};
pub use encode::encode;
pub use error::{DecodeError, DecodeErrorKind, EncodeError, UnsupportedProtocolVersion};

/// A pgoutput protocol version (`proto_version` in `START_REPLICATION`).
///
/// Ordered: a later version can carry everything an earlier one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// Version 1 (PostgreSQL 10+): transactions are sent whole at commit.
    V1,
    /// Version 2 (PostgreSQL 14+): adds streaming of large in-progress
    /// transactions (Stream Start/Stop/Commit/Abort, and an xid on each
    /// change inside a streamed block).
    V2,
    /// Version 3 (PostgreSQL 15+): adds two-phase commit (Begin Prepare,
    /// Prepare, Commit Prepared, Rollback Prepared, Stream Prepare).
    V3,
    /// Version 4 (PostgreSQL 16+): adds parallel apply of streamed
    /// transactions; Stream Abort then carries the abort LSN and time.
    V4,
}

impl ProtocolVersion {
    /// Every version, oldest first.
    pub const ALL: [ProtocolVersion; 4] = [Self::V1, Self::V2, Self::V3, Self::V4];

    /// The number sent as `proto_version`.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V4 => 4,
        }
    }

    /// Whether in-progress transactions can be streamed (version 2+).
    #[must_use]
    pub const fn supports_streaming(self) -> bool {
        !matches!(self, Self::V1)
    }

    /// Whether prepared transactions are decoded at PREPARE (version 3+).
    #[must_use]
    pub const fn supports_two_phase(self) -> bool {
        matches!(self, Self::V3 | Self::V4)
    }

    /// Whether Stream Abort can carry the abort LSN and time (version 4).
    #[must_use]
    pub const fn supports_parallel_streaming(self) -> bool {
        matches!(self, Self::V4)
    }
}

impl TryFrom<u32> for ProtocolVersion {
    type Error = UnsupportedProtocolVersion;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            3 => Ok(Self::V3),
            4 => Ok(Self::V4),
            other => Err(UnsupportedProtocolVersion(other)),
        }
    }
}

impl From<ProtocolVersion> for u32 {
    fn from(value: ProtocolVersion) -> Self {
        value.as_u32()
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.as_u32())
    }
}

/// The kind of a pgoutput message, named as PostgreSQL's documentation names
/// it; each has a one-byte tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// `B`
    Begin,
    /// `M`
    Message,
    /// `C`
    Commit,
    /// `O`
    Origin,
    /// `R`
    Relation,
    /// `Y`
    Type,
    /// `I`
    Insert,
    /// `U`
    Update,
    /// `D`
    Delete,
    /// `T`
    Truncate,
    /// `S`
    StreamStart,
    /// `E`
    StreamStop,
    /// `c`
    StreamCommit,
    /// `A`
    StreamAbort,
    /// `b`
    BeginPrepare,
    /// `P`
    Prepare,
    /// `K`
    CommitPrepared,
    /// `r`
    RollbackPrepared,
    /// `p`
    StreamPrepare,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 19] = [
        Self::Begin,
        Self::Message,
        Self::Commit,
        Self::Origin,
        Self::Relation,
        Self::Type,
        Self::Insert,
        Self::Update,
        Self::Delete,
        Self::Truncate,
        Self::StreamStart,
        Self::StreamStop,
        Self::StreamCommit,
        Self::StreamAbort,
        Self::BeginPrepare,
        Self::Prepare,
        Self::CommitPrepared,
        Self::RollbackPrepared,
        Self::StreamPrepare,
    ];

    /// The message's first byte.
    #[must_use]
    pub const fn tag(self) -> u8 {
        match self {
            Self::Begin => b'B',
            Self::Message => b'M',
            Self::Commit => b'C',
            Self::Origin => b'O',
            Self::Relation => b'R',
            Self::Type => b'Y',
            Self::Insert => b'I',
            Self::Update => b'U',
            Self::Delete => b'D',
            Self::Truncate => b'T',
            Self::StreamStart => b'S',
            Self::StreamStop => b'E',
            Self::StreamCommit => b'c',
            Self::StreamAbort => b'A',
            Self::BeginPrepare => b'b',
            Self::Prepare => b'P',
            Self::CommitPrepared => b'K',
            Self::RollbackPrepared => b'r',
            Self::StreamPrepare => b'p',
        }
    }

    /// The kind a tag byte names, if any.
    #[must_use]
    pub const fn from_tag(tag: u8) -> Option<MessageKind> {
        Some(match tag {
            b'B' => Self::Begin,
            b'M' => Self::Message,
            b'C' => Self::Commit,
            b'O' => Self::Origin,
            b'R' => Self::Relation,
            b'Y' => Self::Type,
            b'I' => Self::Insert,
            b'U' => Self::Update,
            b'D' => Self::Delete,
            b'T' => Self::Truncate,
            b'S' => Self::StreamStart,
            b'E' => Self::StreamStop,
            b'c' => Self::StreamCommit,
            b'A' => Self::StreamAbort,
            b'b' => Self::BeginPrepare,
            b'P' => Self::Prepare,
            b'K' => Self::CommitPrepared,
            b'r' => Self::RollbackPrepared,
            b'p' => Self::StreamPrepare,
            _ => return None,
        })
    }

    /// The first protocol version that carries this kind.
    #[must_use]
    pub const fn min_version(self) -> ProtocolVersion {
        match self {
            Self::StreamStart | Self::StreamStop | Self::StreamCommit | Self::StreamAbort => {
                ProtocolVersion::V2
            }
            Self::BeginPrepare
            | Self::Prepare
            | Self::CommitPrepared
            | Self::RollbackPrepared
            | Self::StreamPrepare => ProtocolVersion::V3,
            _ => ProtocolVersion::V1,
        }
    }

    /// Whether messages of this kind have an `xid` field inside a streamed
    /// block (Relation, Type, Insert, Update, Delete, Truncate, Message).
    #[must_use]
    pub const fn has_stream_xid(self) -> bool {
        matches!(
            self,
            Self::Message
                | Self::Relation
                | Self::Type
                | Self::Insert
                | Self::Update
                | Self::Delete
                | Self::Truncate
        )
    }

    /// Whether this kind may appear between Stream Start and Stream Stop:
    /// the changes of the streamed transaction (the kinds with a stream xid),
    /// and Origin, which follows the first Stream Start of a transaction that
    /// has one.
    #[must_use]
    pub const fn allowed_in_stream(self) -> bool {
        self.has_stream_xid() || matches!(self, Self::Origin | Self::StreamStop)
    }

    /// The name PostgreSQL's documentation uses, e.g. `"Stream Commit"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Begin => "Begin",
            Self::Message => "Message",
            Self::Commit => "Commit",
            Self::Origin => "Origin",
            Self::Relation => "Relation",
            Self::Type => "Type",
            Self::Insert => "Insert",
            Self::Update => "Update",
            Self::Delete => "Delete",
            Self::Truncate => "Truncate",
            Self::StreamStart => "Stream Start",
            Self::StreamStop => "Stream Stop",
            Self::StreamCommit => "Stream Commit",
            Self::StreamAbort => "Stream Abort",
            Self::BeginPrepare => "Begin Prepare",
            Self::Prepare => "Prepare",
            Self::CommitPrepared => "Commit Prepared",
            Self::RollbackPrepared => "Rollback Prepared",
            Self::StreamPrepare => "Stream Prepare",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogicalMessage {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `M`: a logical decoding message (`pg_logical_emit_message`).
    Message(Message),
    /// `C`: the transaction commits.
    Commit(Commit),
    /// `O`: the transaction was made by a replication origin (it was itself
    /// replicated from somewhere). pgrepl skips such transactions on
    /// PostgreSQL 15 to avoid loops.
    Origin(Origin),
    /// `R`: the description of a relation, sent before its first change.
    Relation(Relation),
    /// `Y`: the description of a non-built-in data type.
    Type(Type),
    /// `I`: a row is inserted.
    Insert(Insert),
    /// `U`: a row is updated.
    Update(Update),
    /// `D`: a row is deleted.
    Delete(Delete),
    /// `T`: relations are truncated.
    Truncate(Truncate),
    /// `S`: a block of a streamed (in-progress) transaction starts (v2+).
    StreamStart(StreamStart),
    /// `E`: the block of a streamed transaction ends (v2+).
    StreamStop,
    /// `c`: a streamed transaction commits (v2+).
    StreamCommit(StreamCommit),
    /// `A`: a streamed transaction or subtransaction aborts (v2+).
    StreamAbort(StreamAbort),
    /// `b`: a prepared transaction starts (v3+).
    BeginPrepare(BeginPrepare),
    /// `P`: the transaction is prepared (v3+).
    Prepare(Prepare),
    /// `K`: a prepared transaction commits (v3+).
    CommitPrepared(CommitPrepared),
    /// `r`: a prepared transaction is rolled back (v3+).
    RollbackPrepared(RollbackPrepared),
    /// `p`: a streamed transaction is prepared (v3+).
    StreamPrepare(StreamPrepare),
}

impl LogicalMessage {
    /// This message's kind.
    #[must_use]
    pub const fn kind(&self) -> MessageKind {
        match self {
            Self::Begin(_) => MessageKind::Begin,
            Self::Message(_) => MessageKind::Message,
            Self::Commit(_) => MessageKind::Commit,
            Self::Origin(_) => MessageKind::Origin,
            Self::Relation(_) => MessageKind::Relation,
            Self::Type(_) => MessageKind::Type,
            Self::Insert(_) => MessageKind::Insert,
            Self::Update(_) => MessageKind::Update,
            Self::Delete(_) => MessageKind::Delete,
            Self::Truncate(_) => MessageKind::Truncate,
            Self::StreamStart(_) => MessageKind::StreamStart,
            Self::StreamStop => MessageKind::StreamStop,
            Self::StreamCommit(_) => MessageKind::StreamCommit,
            Self::StreamAbort(_) => MessageKind::StreamAbort,
            Self::BeginPrepare(_) => MessageKind::BeginPrepare,
            Self::Prepare(_) => MessageKind::Prepare,
            Self::CommitPrepared(_) => MessageKind::CommitPrepared,
            Self::RollbackPrepared(_) => MessageKind::RollbackPrepared,
            Self::StreamPrepare(_) => MessageKind::StreamPrepare,
        }
    }
}

/// `B`: the start of a transaction (sent when it has committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the commit record: where the transaction ends in the WAL.
    pub final_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
    /// The transaction's id.
    pub xid: u32,
}

/// `M`: a logical decoding message written with `pg_logical_emit_message`
/// (sent only when the subscriber asked for `messages = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The streamed transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// Whether the message is part of its transaction (sent at commit) or
    /// was emitted immediately.
    pub transactional: bool,
    /// The LSN of the message.
    pub lsn: Lsn,
    /// The prefix given by the writer, naming who the message is for.
    pub prefix: String,
    /// The content, arbitrary bytes.
    pub content: Bytes,
}

/// `C`: the commit of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Flags; currently always 0.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record: the position to confirm once applied.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
}

/// `O`: the replication origin a transaction came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN of the transaction on the origin server (`0/0` after
    /// Stream Start).
    pub commit_lsn: Lsn,
    /// The name of the origin.
    pub name: String,
}

/// The replica identity of a relation (`pg_class.relreplident`): which old
/// values updates and deletes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key, if any.
    Default,
    /// `n`: nothing; updates and deletes cannot be replicated.
    Nothing,
    /// `f`: all columns (`REPLICA IDENTITY FULL`).
    Full,
    /// `i`: the columns of a chosen unique index (`REPLICA IDENTITY USING INDEX`).
    Index,
}

impl ReplicaIdentity {
    /// The `relreplident` byte.
    #[must_use]
    pub const fn as_byte(self) -> u8 {
        match self {
            Self::Default => b'd',
            Self::Nothing => b'n',
            Self::Full => b'f',
            Self::Index => b'i',
        }
    }

    /// The replica identity a `relreplident` byte names, if any.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<ReplicaIdentity> {
        match byte {
            b'd' => Some(Self::Default),
            b'n' => Some(Self::Nothing),
            b'f' => Some(Self::Full),
            b'i' => Some(Self::Index),
            _ => None,
        }
    }
}

/// `R`: the description of a relation, sent before the first change to it in
/// a session and again whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The streamed transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// The relation's OID, which the change messages refer to.
    pub oid: u32,
    /// The schema; the empty string stands for `pg_catalog`.
    pub namespace: String,
    /// The relation's name.
    pub name: String,
    /// The replica identity.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in the order tuples carry them.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags: bit 0 marks a column of the replica identity key.
    pub flags: u8,
    /// The column's name.
    pub name: String,
    /// The OID of the column's data type.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
}

impl RelationColumn {
    /// The flag bit marking a replica identity key column.
    pub const FLAG_KEY: u8 = 1;

    /// Whether the column is part of the replica identity key.
    #[must_use]
    pub const fn is_key(&self) -> bool {
        self.flags & Self::FLAG_KEY != 0
    }
}

/// `Y`: the description of a data type that is not built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// The streamed transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// The type's OID.
    pub oid: u32,
    /// The schema; the empty string stands for `pg_catalog`.
    pub namespace: String,
    /// The type's name.
    pub name: String,
}

/// `I`: an inserted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The streamed (sub)transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// The OID of the relation, described by an earlier [`Relation`].
    pub relation_oid: u32,
    /// The new row.
    pub new: TupleData,
}

/// `U`: an updated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The streamed (sub)transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// The OID of the relation, described by an earlier [`Relation`].
    pub relation_oid: u32,
    /// The old key or row: present when the replica identity is FULL, or
    /// when the update changed a key column.
    pub old: Option<OldTuple>,
    /// The new row.
    pub new: TupleData,
}

/// `D`: a deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The streamed (sub)transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// The OID of the relation, described by an earlier [`Relation`].
    pub relation_oid: u32,
    /// The old key or row.
    pub old: OldTuple,
}

/// The old values an Update or Delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity key columns have values; the others
    /// are sent as NULL.
    Key(TupleData),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData),
}

impl OldTuple {
    /// The tuple, whichever kind it is.
    #[must_use]
    pub const fn tuple(&self) -> &TupleData {
        match self {
            Self::Key(t) | Self::Full(t) => t,
        }
    }
}

/// `T`: relations truncated together by one `TRUNCATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// The streamed (sub)transaction's xid, inside a streamed block on v2+.
    pub xid: Option<u32>,
    /// `TRUNCATE … CASCADE` (option bit 0).
    pub cascade: bool,
    /// `TRUNCATE … RESTART IDENTITY` (option bit 1).
    pub restart_identity: bool,
    /// Option bits PostgreSQL does not define today (bits 2–7), kept as
    /// received so that nothing is silently dropped; the applier decides
    /// what an unknown option means. Must not have bits 0 or 1 set.
    pub other_options: u8,
    /// The OIDs of the truncated relations.
    pub relation_oids: Vec<u32>,
}

impl Truncate {
    /// Option bit for `CASCADE`.
    pub const OPTION_CASCADE: u8 = 1;
    /// Option bit for `RESTART IDENTITY`.
    pub const OPTION_RESTART_IDENTITY: u8 = 2;
}

/// `S`: a block of changes of a streamed in-progress transaction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// The top-level transaction's xid.
    pub xid: u32,
    /// Whether this is the transaction's first block.
    pub first_segment: bool,
}

/// `c`: a streamed transaction commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommit {
    /// The transaction's xid.
    pub xid: u32,
    /// Flags; currently always 0.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: PgTimestamp,
}

/// `A`: a streamed transaction, or one of its subtransactions, aborts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level transaction's xid.
    pub xid: u32,
    /// The aborted subtransaction's xid; equal to `xid` when the whole
    /// transaction aborts.
    pub subxid: u32,
    /// Where and when it aborted: sent only on protocol v4 with
    /// `streaming = parallel`.
    pub abort: Option<StreamAbortInfo>,
}

/// The abort position and time of a [`StreamAbort`] (v4, parallel streaming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAbortInfo {
    /// The LSN of the abort record.
    pub abort_lsn: Lsn,
    /// When the transaction aborted.
    pub abort_time: PgTimestamp,
}

/// `b`: the start of a prepared transaction (v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare {
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: u32,
    /// The global transaction identifier given to `PREPARE TRANSACTION`.
    pub gid: String,
}

/// `P`: a transaction is prepared (v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// Flags; currently always 0.
    pub flags: u8,
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `K`: a prepared transaction commits (`COMMIT PREPARED`, v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared {
    /// Flags; currently always 0.
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit record.
    pub end_lsn: Lsn,
    /// When it committed.
    pub commit_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `r`: a prepared transaction is rolled back (`ROLLBACK PREPARED`, v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared {
    /// Flags; currently always 0.
    pub flags: u8,
    /// The end of the prepared transaction.
    pub prepare_end_lsn: Lsn,
    /// The end of the rollback record.
    pub rollback_end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// When it was rolled back.
    pub rollback_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// `p`: a streamed transaction is prepared (v3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPrepare {
    /// Flags; currently always 0.
    pub flags: u8,
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction.
    pub end_lsn: Lsn,
    /// When the transaction was prepared.
    pub prepare_time: PgTimestamp,
    /// The transaction's xid.
    pub xid: u32,
    /// The global transaction identifier.
    pub gid: String,
}

/// The column values of a row, in the relation's column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TupleData {
    /// One value per published column.
    pub columns: Vec<ColumnValue>,
}

/// One column value of a [`TupleData`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value, not sent; the target keeps its own.
    UnchangedToast,
    /// `t`: the value in the type's text output format.
    Text(Bytes),
    /// `b`: the value in the type's binary send format (`binary = true`).
    Binary(Bytes),
}
