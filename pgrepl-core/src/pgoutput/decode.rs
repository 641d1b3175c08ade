//! The pgoutput decoder: bytes in, [`LogicalMessage`] or [`DecodeError`] out.
//!
//! Implements PostgreSQL's "Logical Replication Message Formats" as the
//! server's `proto.c` writes them (see the [module docs](super) for where the
//! two differ).
//!
//! The decoder is total. All reads go through [`Reader`], which only uses
//! checked slice operations (`split_first_chunk`, `split_at_checked`); this
//! module denies `clippy::indexing_slicing` and
//! `clippy::arithmetic_side_effects` so that no panicking index or
//! overflowing sum can creep in. Counts read from the message (columns,
//! relations) only size an allocation after being capped by what the bytes
//! left could hold, so a lying count costs nothing before it fails.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytes::Bytes;

use super::error::{DecodeError, DecodeErrorKind};
use super::{
    Begin, BeginPrepare, ColumnValue, Commit, CommitPrepared, Delete, Insert, LogicalMessage,
    Message, MessageKind, OldTuple, Origin, Prepare, ProtocolVersion, Relation, RelationColumn,
    ReplicaIdentity, RollbackPrepared, StreamAbort, StreamAbortInfo, StreamCommit, StreamPrepare,
    StreamStart, Truncate, TupleData, Type, Update,
};
use crate::lsn::Lsn;
use crate::timestamp::PgTimestamp;

/// Decodes one pgoutput message.
///
/// `version` is the negotiated `proto_version`. `in_stream` says whether the
/// message sits between Stream Start and Stream Stop: on version 2 and later
/// the change messages (Relation, Type, Insert, Update, Delete, Truncate,
/// Message) then begin with the xid of their (sub)transaction. It is ignored
/// on version 1, which has no streaming. [`Decoder`] keeps track of it.
///
/// `data` must hold exactly one message, as one XLogData or one row of
/// `pg_logical_slot_peek_binary_changes` does. Column values and Message
/// content in the result are slices of `data`.
///
/// # Errors
///
/// A [`DecodeError`] for every input that is not exactly one well-formed
/// message of `version`: unknown or version-foreign tag, truncation, trailing
/// bytes, bad lengths, unknown tuple or column kinds, invalid UTF-8 in names.
pub fn decode(
    data: Bytes,
    version: ProtocolVersion,
    in_stream: bool,
) -> Result<LogicalMessage, DecodeError> {
    decode_message(&data, version, in_stream)
}

/// Decodes pgoutput messages in order, keeping track of streamed blocks.
///
/// Feed it every message of one replication session in order. It knows when a
/// streamed block is open (between Stream Start and Stream Stop), so the xid
/// of streamed changes is read where it exists, and it rejects a flow that
/// PostgreSQL never produces: a Stream Start inside an open block, a Stream
/// Stop outside one, or a transaction boundary (Begin, Commit, Stream
/// Commit/Abort/Prepare, the two-phase messages) inside one.
///
/// After a reconnect, call [`Decoder::reset`]: the server resumes from a
/// transaction boundary, never inside a streamed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    version: ProtocolVersion,
    stream_xid: Option<u32>,
}

impl Decoder {
    /// A decoder for the negotiated protocol version, outside any stream.
    #[must_use]
    pub const fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            stream_xid: None,
        }
    }

    /// The protocol version it decodes.
    #[must_use]
    pub const fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Whether a streamed block is open.
    #[must_use]
    pub const fn in_stream(&self) -> bool {
        self.stream_xid.is_some()
    }

    /// The xid of the transaction whose streamed block is open, if any.
    #[must_use]
    pub const fn stream_xid(&self) -> Option<u32> {
        self.stream_xid
    }

    /// Forgets any open streamed block (use after reconnecting).
    pub fn reset(&mut self) {
        self.stream_xid = None;
    }

    /// Decodes the next message of the session.
    ///
    /// On error the decoder's state is unchanged.
    ///
    /// # Errors
    ///
    /// Everything [`decode`] rejects, and the flow errors
    /// [`DecodeErrorKind::StreamStartInStream`],
    /// [`DecodeErrorKind::StreamStopOutsideStream`] and
    /// [`DecodeErrorKind::NotAllowedInStream`].
    pub fn decode(&mut self, data: Bytes) -> Result<LogicalMessage, DecodeError> {
        let message = decode_message(&data, self.version, self.stream_xid.is_some())?;
        let flow_error = |kind| Err(DecodeError::new(Some(message.kind()), 0, kind));
        match (&message, self.stream_xid) {
            (LogicalMessage::StreamStart(start), None) => self.stream_xid = Some(start.xid),
            (LogicalMessage::StreamStart(_), Some(open_xid)) => {
                return flow_error(DecodeErrorKind::StreamStartInStream { open_xid });
            }
            (LogicalMessage::StreamStop, Some(_)) => self.stream_xid = None,
            (LogicalMessage::StreamStop, None) => {
                return flow_error(DecodeErrorKind::StreamStopOutsideStream);
            }
            (other, Some(_)) if !other.kind().allowed_in_stream() => {
                return flow_error(DecodeErrorKind::NotAllowedInStream);
            }
            _ => {}
        }
        Ok(message)
    }
}

fn decode_message(
    data: &Bytes,
    version: ProtocolVersion,
    in_stream: bool,
) -> Result<LogicalMessage, DecodeError> {
    let Some((&tag, body)) = data.split_first() else {
        return Err(DecodeError::new(None, 0, DecodeErrorKind::Empty));
    };
    let Some(kind) = MessageKind::from_tag(tag) else {
        return Err(DecodeError::new(
            None,
            0,
            DecodeErrorKind::UnknownTag { tag },
        ));
    };
    if version < kind.min_version() {
        return Err(DecodeError::new(
            Some(kind),
            0,
            DecodeErrorKind::NotInProtocolVersion {
                version,
                min_version: kind.min_version(),
            },
        ));
    }
    let mut r = Reader {
        src: data,
        rest: body,
        kind,
    };
    let streamed = in_stream && version.supports_streaming();
    let message = match kind {
        MessageKind::Insert => LogicalMessage::Insert(r.insert(streamed)?),
        MessageKind::Update => LogicalMessage::Update(r.update(streamed)?),
        MessageKind::Delete => LogicalMessage::Delete(r.delete(streamed)?),
        MessageKind::Begin => LogicalMessage::Begin(Begin {
            final_lsn: r.lsn("final_lsn")?,
            commit_time: r.timestamp("commit_time")?,
            xid: r.u32("xid")?,
        }),
        MessageKind::Commit => LogicalMessage::Commit(Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit_lsn")?,
            end_lsn: r.lsn("end_lsn")?,
            commit_time: r.timestamp("commit_time")?,
        }),
        MessageKind::Message => LogicalMessage::Message(r.message(streamed)?),
        MessageKind::Origin => LogicalMessage::Origin(Origin {
            commit_lsn: r.lsn("commit_lsn")?,
            name: r.string("origin name")?,
        }),
        MessageKind::Relation => LogicalMessage::Relation(r.relation(streamed)?),
        MessageKind::Type => LogicalMessage::Type(Type {
            xid: r.stream_xid(streamed)?,
            oid: r.u32("type oid")?,
            namespace: r.string("namespace")?,
            name: r.string("type name")?,
        }),
        MessageKind::Truncate => LogicalMessage::Truncate(r.truncate(streamed)?),
        MessageKind::StreamStart => LogicalMessage::StreamStart(StreamStart {
            xid: r.u32("xid")?,
            first_segment: r.boolean("first_segment")?,
        }),
        MessageKind::StreamStop => LogicalMessage::StreamStop,
        MessageKind::StreamCommit => LogicalMessage::StreamCommit(StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit_lsn")?,
            end_lsn: r.lsn("end_lsn")?,
            commit_time: r.timestamp("commit_time")?,
        }),
        MessageKind::StreamAbort => LogicalMessage::StreamAbort(StreamAbort {
            xid: r.u32("xid")?,
            subxid: r.u32("subxid")?,
            // v4 with streaming = parallel adds two fields; the message is
            // self-delimiting, so their presence is read off its length.
            abort: if version.supports_parallel_streaming() && !r.rest.is_empty() {
                Some(StreamAbortInfo {
                    abort_lsn: r.lsn("abort_lsn")?,
                    abort_time: r.timestamp("abort_time")?,
                })
            } else {
                None
            },
        }),
        MessageKind::BeginPrepare => LogicalMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: r.lsn("prepare_lsn")?,
            end_lsn: r.lsn("end_lsn")?,
            prepare_time: r.timestamp("prepare_time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
        MessageKind::Prepare => LogicalMessage::Prepare(Prepare {
            flags: r.u8("flags")?,
            prepare_lsn: r.lsn("prepare_lsn")?,
            end_lsn: r.lsn("end_lsn")?,
            prepare_time: r.timestamp("prepare_time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
        MessageKind::CommitPrepared => LogicalMessage::CommitPrepared(CommitPrepared {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit_lsn")?,
            end_lsn: r.lsn("end_lsn")?,
            commit_time: r.timestamp("commit_time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
        MessageKind::RollbackPrepared => LogicalMessage::RollbackPrepared(RollbackPrepared {
            flags: r.u8("flags")?,
            prepare_end_lsn: r.lsn("prepare_end_lsn")?,
            rollback_end_lsn: r.lsn("rollback_end_lsn")?,
            prepare_time: r.timestamp("prepare_time")?,
            rollback_time: r.timestamp("rollback_time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
        MessageKind::StreamPrepare => LogicalMessage::StreamPrepare(StreamPrepare {
            flags: r.u8("flags")?,
            prepare_lsn: r.lsn("prepare_lsn")?,
            end_lsn: r.lsn("end_lsn")?,
            prepare_time: r.timestamp("prepare_time")?,
            xid: r.u32("xid")?,
            gid: r.string("gid")?,
        }),
    };
    r.finish()?;
    Ok(message)
}

/// A cursor over one message. `rest` is always a suffix of `src`, so the
/// current offset is `src.len() - rest.len()`, which cannot underflow.
struct Reader<'a> {
    src: &'a Bytes,
    rest: &'a [u8],
    kind: MessageKind,
}

impl<'a> Reader<'a> {
    #[inline]
    fn offset_of(&self, rest: &[u8]) -> usize {
        // `rest` is a suffix of `src`: never wraps.
        self.src.len().wrapping_sub(rest.len())
    }

    #[cold]
    #[inline(never)]
    fn error_at(&self, rest: &[u8], kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(Some(self.kind), self.offset_of(rest), kind)
    }

    #[cold]
    #[inline(never)]
    fn truncated_at(&self, rest: &[u8], field: &'static str, needed: usize) -> DecodeError {
        self.error_at(
            rest,
            DecodeErrorKind::Truncated {
                field,
                needed,
                available: rest.len(),
            },
        )
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error_at(
                self.rest,
                DecodeErrorKind::TrailingBytes {
                    count: self.rest.len(),
                },
            ))
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(*head)
            }
            None => Err(self.truncated_at(self.rest, field, N)),
        }
    }

    #[inline]
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(field).map(|[b]| b)
    }

    #[inline]
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    #[inline]
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    #[inline]
    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    #[inline]
    fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        self.array(field).map(|b| Lsn(u64::from_be_bytes(b)))
    }

    #[inline]
    fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp, DecodeError> {
        self.array(field)
            .map(|b| PgTimestamp(i64::from_be_bytes(b)))
    }

    /// A byte that must be 0 or 1.
    fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let at = self.rest;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(self.error_at(at, DecodeErrorKind::InvalidFlags { field, value })),
        }
    }

    /// The xid of a change inside a streamed block, if there is one.
    #[inline]
    fn stream_xid(&mut self, streamed: bool) -> Result<Option<u32>, DecodeError> {
        if streamed {
            self.u32("xid").map(Some)
        } else {
            Ok(None)
        }
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let at = self.rest;
        let Some(nul) = at.iter().position(|&b| b == 0) else {
            return Err(self.error_at(at, DecodeErrorKind::UnterminatedString { field }));
        };
        let Some((text, tail)) = at.split_at_checked(nul) else {
            return Err(self.error_at(at, DecodeErrorKind::UnterminatedString { field }));
        };
        let Ok(text) = std::str::from_utf8(text) else {
            return Err(self.error_at(at, DecodeErrorKind::InvalidUtf8 { field }));
        };
        // `tail` starts with the NUL found above.
        self.rest = tail.get(1..).unwrap_or_default();
        Ok(text.to_owned())
    }

    /// An `Int32` length (which must not be negative) and that many bytes,
    /// as a slice of the input.
    #[inline]
    fn counted_bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let at = self.rest;
        let length = self.i32(field)?;
        let Ok(len) = usize::try_from(length) else {
            return Err(self.error_at(at, DecodeErrorKind::NegativeLength { field, length }));
        };
        let Some((_, tail)) = self.rest.split_at_checked(len) else {
            return Err(self.truncated_at(self.rest, field, len));
        };
        let start = self.offset_of(self.rest);
        self.rest = tail;
        // start + len is within `src`: `split_at_checked` just proved it.
        Ok(self.src.slice(start..start.wrapping_add(len)))
    }

    fn message(&mut self, streamed: bool) -> Result<Message, DecodeError> {
        let xid = self.stream_xid(streamed)?;
        let at = self.rest;
        let transactional = match self.u8("flags")? {
            0 => false,
            1 => true,
            value => {
                return Err(self.error_at(
                    at,
                    DecodeErrorKind::InvalidFlags {
                        field: "flags",
                        value,
                    },
                ));
            }
        };
        Ok(Message {
            xid,
            transactional,
            lsn: self.lsn("lsn")?,
            prefix: self.string("prefix")?,
            content: self.counted_bytes("content")?,
        })
    }

    fn relation(&mut self, streamed: bool) -> Result<Relation, DecodeError> {
        let xid = self.stream_xid(streamed)?;
        let oid = self.u32("relation oid")?;
        let namespace = self.string("namespace")?;
        let name = self.string("relation name")?;
        let at = self.rest;
        let byte = self.u8("replica identity")?;
        let Some(replica_identity) = ReplicaIdentity::from_byte(byte) else {
            return Err(self.error_at(at, DecodeErrorKind::UnknownReplicaIdentity { byte }));
        };
        let count = usize::from(self.u16("column count")?);
        // A column takes at least 10 bytes: flags, an empty name's NUL,
        // type OID and modifier.
        let mut columns = Vec::with_capacity(count.min(self.rest.len() / 10));
        for _ in 0..count {
            columns.push(RelationColumn {
                flags: self.u8("column flags")?,
                name: self.string("column name")?,
                type_oid: self.u32("column type oid")?,
                type_modifier: self.i32("column type modifier")?,
            });
        }
        Ok(Relation {
            xid,
            oid,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn truncate(&mut self, streamed: bool) -> Result<Truncate, DecodeError> {
        let xid = self.stream_xid(streamed)?;
        let count = self.u32("relation count")?;
        let options = self.u8("options")?;
        // Four bytes per OID: cap the reservation by what is left.
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let mut relation_oids = Vec::with_capacity(count.min(self.rest.len() / 4));
        for _ in 0..count {
            relation_oids.push(self.u32("relation oid")?);
        }
        Ok(Truncate {
            xid,
            cascade: options & Truncate::OPTION_CASCADE != 0,
            restart_identity: options & Truncate::OPTION_RESTART_IDENTITY != 0,
            other_options: options
                & !(Truncate::OPTION_CASCADE | Truncate::OPTION_RESTART_IDENTITY),
            relation_oids,
        })
    }

    fn insert(&mut self, streamed: bool) -> Result<Insert, DecodeError> {
        let xid = self.stream_xid(streamed)?;
        let relation_oid = self.u32("relation oid")?;
        let at = self.rest;
        match self.u8("tuple tag")? {
            b'N' => {}
            found => {
                return Err(self.error_at(
                    at,
                    DecodeErrorKind::UnexpectedTupleTag {
                        expected: "'N'",
                        found,
                    },
                ));
            }
        }
        Ok(Insert {
            xid,
            relation_oid,
            new: self.tuple()?,
        })
    }

    fn update(&mut self, streamed: bool) -> Result<Update, DecodeError> {
        let xid = self.stream_xid(streamed)?;
        let relation_oid = self.u32("relation oid")?;
        let at = self.rest;
        let old = match self.u8("tuple tag")? {
            b'N' => None,
            b'K' => Some(OldTuple::Key(self.tuple_then_new()?)),
            b'O' => Some(OldTuple::Full(self.tuple_then_new()?)),
            found => {
                return Err(self.error_at(
                    at,
                    DecodeErrorKind::UnexpectedTupleTag {
                        expected: "'K', 'O' or 'N'",
                        found,
                    },
                ));
            }
        };
        Ok(Update {
            xid,
            relation_oid,
            old,
            new: self.tuple()?,
        })
    }

    /// An old tuple, then the `N` that announces the new one.
    fn tuple_then_new(&mut self) -> Result<TupleData, DecodeError> {
        let old = self.tuple()?;
        let at = self.rest;
        match self.u8("new tuple tag")? {
            b'N' => Ok(old),
            found => Err(self.error_at(
                at,
                DecodeErrorKind::UnexpectedTupleTag {
                    expected: "'N'",
                    found,
                },
            )),
        }
    }

    fn delete(&mut self, streamed: bool) -> Result<Delete, DecodeError> {
        let xid = self.stream_xid(streamed)?;
        let relation_oid = self.u32("relation oid")?;
        let at = self.rest;
        let old = match self.u8("tuple tag")? {
            b'K' => OldTuple::Key(self.tuple()?),
            b'O' => OldTuple::Full(self.tuple()?),
            found => {
                return Err(self.error_at(
                    at,
                    DecodeErrorKind::UnexpectedTupleTag {
                        expected: "'K' or 'O'",
                        found,
                    },
                ));
            }
        };
        Ok(Delete {
            xid,
            relation_oid,
            old,
        })
    }

    /// TupleData: an `Int16` column count, then per column a kind byte and,
    /// for text and binary values, an `Int32` length and the bytes.
    ///
    /// The hot loop of the decoder: it works on a local copy of the cursor
    /// and hands out values as `Bytes` slices of the input.
    #[inline]
    fn tuple(&mut self) -> Result<TupleData, DecodeError> {
        let count = usize::from(self.u16("tuple column count")?);
        // Every column takes at least its kind byte.
        let mut columns = Vec::with_capacity(count.min(self.rest.len()));
        let mut rest = self.rest;
        for column in 0..count {
            let Some((&kind, after_kind)) = rest.split_first() else {
                return Err(self.truncated_at(rest, "tuple column kind", 1));
            };
            let value = match kind {
                b'n' => {
                    rest = after_kind;
                    ColumnValue::Null
                }
                b'u' => {
                    rest = after_kind;
                    ColumnValue::UnchangedToast
                }
                b't' | b'b' => {
                    let Some((length, after_length)) = after_kind.split_first_chunk::<4>() else {
                        return Err(self.truncated_at(after_kind, "tuple column length", 4));
                    };
                    let length = i32::from_be_bytes(*length);
                    let Ok(len) = usize::try_from(length) else {
                        return Err(self.error_at(
                            after_kind,
                            DecodeErrorKind::NegativeLength {
                                field: "tuple column value",
                                length,
                            },
                        ));
                    };
                    let Some((_, after_value)) = after_length.split_at_checked(len) else {
                        return Err(self.truncated_at(after_length, "tuple column value", len));
                    };
                    let start = self.offset_of(after_length);
                    rest = after_value;
                    // Within `src`: `split_at_checked` just proved it.
                    let bytes = self.src.slice(start..start.wrapping_add(len));
                    if kind == b't' {
                        ColumnValue::Text(bytes)
                    } else {
                        ColumnValue::Binary(bytes)
                    }
                }
                kind => {
                    return Err(
                        self.error_at(rest, DecodeErrorKind::UnknownColumnKind { column, kind })
                    );
                }
            };
            columns.push(value);
        }
        self.rest = rest;
        Ok(TupleData { columns })
    }
}
