//! The pgoutput encoder: writes a [`LogicalMessage`] the way PostgreSQL's
//! `proto.c` does (section "Logical Replication Message Formats").
//!
//! The server is the only real producer of these bytes; the encoder exists so
//! tests, fuzz targets, benchmarks and fake servers can make them. It is the
//! exact inverse of the decoder: for every message `m` it accepts,
//! `decode(encode(m))` is `m`, and for every byte string `b` that decodes,
//! `encode(decode(b))` is `b`. Optional fields (`xid` of streamed changes,
//! Stream Abort's abort info) are written when they are `Some`; a message or
//! field the protocol version cannot carry is an [`EncodeError`], as is any
//! value the wire format cannot hold (a NUL inside a name, more than 65535
//! columns, a value longer than `i32::MAX` bytes).

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::{
    ColumnValue, LogicalMessage, MessageKind, OldTuple, ProtocolVersion, Truncate, TupleData,
};

/// Appends `msg`, encoded for protocol `version`, to `out`.
///
/// On error nothing is appended.
///
/// # Errors
///
/// An [`EncodeError`] when `version` lacks the message kind or one of its
/// present optional fields, or a value does not fit the wire format.
pub fn encode(
    msg: &LogicalMessage,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    check(msg, version)?;
    write(msg, out);
    Ok(())
}

/// Everything that can make a message unencodable, checked before writing.
fn check(msg: &LogicalMessage, version: ProtocolVersion) -> Result<(), EncodeError> {
    let message = msg.kind();
    if version < message.min_version() {
        return Err(EncodeError::NotInProtocolVersion { message, version });
    }
    let xid = match msg {
        LogicalMessage::Message(m) => m.xid,
        LogicalMessage::Relation(m) => m.xid,
        LogicalMessage::Type(m) => m.xid,
        LogicalMessage::Insert(m) => m.xid,
        LogicalMessage::Update(m) => m.xid,
        LogicalMessage::Delete(m) => m.xid,
        LogicalMessage::Truncate(m) => m.xid,
        _ => None,
    };
    if xid.is_some() && !version.supports_streaming() {
        return Err(EncodeError::XidNotInProtocolVersion { message, version });
    }
    let name = |field: &'static str, value: &str| {
        if value.as_bytes().contains(&0) {
            Err(EncodeError::InteriorNul { message, field })
        } else {
            Ok(())
        }
    };
    let tuple = |t: &TupleData| -> Result<(), EncodeError> {
        if t.columns.len() > usize::from(u16::MAX) {
            return Err(EncodeError::TooManyColumns {
                message,
                count: t.columns.len(),
            });
        }
        for c in &t.columns {
            if let ColumnValue::Text(v) | ColumnValue::Binary(v) = c {
                length(message, "tuple column value", v.len())?;
            }
        }
        Ok(())
    };
    match msg {
        LogicalMessage::Message(m) => {
            name("prefix", &m.prefix)?;
            length(message, "content", m.content.len())?;
        }
        LogicalMessage::Origin(m) => name("origin name", &m.name)?,
        LogicalMessage::Relation(m) => {
            name("namespace", &m.namespace)?;
            name("relation name", &m.name)?;
            if m.columns.len() > usize::from(u16::MAX) {
                return Err(EncodeError::TooManyColumns {
                    message,
                    count: m.columns.len(),
                });
            }
            for c in &m.columns {
                name("column name", &c.name)?;
            }
        }
        LogicalMessage::Type(m) => {
            name("namespace", &m.namespace)?;
            name("type name", &m.name)?;
        }
        LogicalMessage::Insert(m) => tuple(&m.new)?,
        LogicalMessage::Update(m) => {
            if let Some(old) = &m.old {
                tuple(old.tuple())?;
            }
            tuple(&m.new)?;
        }
        LogicalMessage::Delete(m) => tuple(m.old.tuple())?,
        LogicalMessage::Truncate(m) => {
            if m.other_options & (Truncate::OPTION_CASCADE | Truncate::OPTION_RESTART_IDENTITY) != 0
            {
                return Err(EncodeError::InvalidTruncateOptions {
                    other_options: m.other_options,
                });
            }
            if u32::try_from(m.relation_oids.len()).is_err() {
                return Err(EncodeError::TooManyRelations {
                    count: m.relation_oids.len(),
                });
            }
        }
        LogicalMessage::StreamAbort(m) => {
            if m.abort.is_some() && !version.supports_parallel_streaming() {
                return Err(EncodeError::AbortInfoNotInProtocolVersion { version });
            }
        }
        LogicalMessage::BeginPrepare(m) => name("gid", &m.gid)?,
        LogicalMessage::Prepare(m) => name("gid", &m.gid)?,
        LogicalMessage::CommitPrepared(m) => name("gid", &m.gid)?,
        LogicalMessage::RollbackPrepared(m) => name("gid", &m.gid)?,
        LogicalMessage::StreamPrepare(m) => name("gid", &m.gid)?,
        LogicalMessage::Begin(_)
        | LogicalMessage::Commit(_)
        | LogicalMessage::StreamStart(_)
        | LogicalMessage::StreamStop
        | LogicalMessage::StreamCommit(_) => {}
    }
    Ok(())
}

fn length(message: MessageKind, field: &'static str, len: usize) -> Result<(), EncodeError> {
    if i32::try_from(len).is_err() {
        Err(EncodeError::TooLong {
            message,
            field,
            len,
        })
    } else {
        Ok(())
    }
}

/// Writes a checked message. Lengths and counts were checked by [`check`],
/// so the narrowing conversions below cannot fail; they saturate anyway
/// rather than panic.
fn write(msg: &LogicalMessage, out: &mut BytesMut) {
    out.put_u8(msg.kind().tag());
    match msg {
        LogicalMessage::Begin(m) => {
            out.put_u64(m.final_lsn.0);
            out.put_i64(m.commit_time.0);
            out.put_u32(m.xid);
        }
        LogicalMessage::Message(m) => {
            put_xid(out, m.xid);
            out.put_u8(u8::from(m.transactional));
            out.put_u64(m.lsn.0);
            put_string(out, &m.prefix);
            put_i32_len(out, m.content.len());
            out.put_slice(&m.content);
        }
        LogicalMessage::Commit(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_time.0);
        }
        LogicalMessage::Origin(m) => {
            out.put_u64(m.commit_lsn.0);
            put_string(out, &m.name);
        }
        LogicalMessage::Relation(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.oid);
            put_string(out, &m.namespace);
            put_string(out, &m.name);
            out.put_u8(m.replica_identity.as_byte());
            out.put_u16(u16::try_from(m.columns.len()).unwrap_or(u16::MAX));
            for c in &m.columns {
                out.put_u8(c.flags);
                put_string(out, &c.name);
                out.put_u32(c.type_oid);
                out.put_i32(c.type_modifier);
            }
        }
        LogicalMessage::Type(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.oid);
            put_string(out, &m.namespace);
            put_string(out, &m.name);
        }
        LogicalMessage::Insert(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.relation_oid);
            out.put_u8(b'N');
            put_tuple(out, &m.new);
        }
        LogicalMessage::Update(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.relation_oid);
            if let Some(old) = &m.old {
                put_old(out, old);
            }
            out.put_u8(b'N');
            put_tuple(out, &m.new);
        }
        LogicalMessage::Delete(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.relation_oid);
            put_old(out, &m.old);
        }
        LogicalMessage::Truncate(m) => {
            put_xid(out, m.xid);
            out.put_u32(u32::try_from(m.relation_oids.len()).unwrap_or(u32::MAX));
            let mut options = m.other_options;
            if m.cascade {
                options |= Truncate::OPTION_CASCADE;
            }
            if m.restart_identity {
                options |= Truncate::OPTION_RESTART_IDENTITY;
            }
            out.put_u8(options);
            for oid in &m.relation_oids {
                out.put_u32(*oid);
            }
        }
        LogicalMessage::StreamStart(m) => {
            out.put_u32(m.xid);
            out.put_u8(u8::from(m.first_segment));
        }
        LogicalMessage::StreamStop => {}
        LogicalMessage::StreamCommit(m) => {
            out.put_u32(m.xid);
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_time.0);
        }
        LogicalMessage::StreamAbort(m) => {
            out.put_u32(m.xid);
            out.put_u32(m.subxid);
            if let Some(abort) = &m.abort {
                out.put_u64(abort.abort_lsn.0);
                out.put_i64(abort.abort_time.0);
            }
        }
        LogicalMessage::BeginPrepare(m) => {
            out.put_u64(m.prepare_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.prepare_time.0);
            out.put_u32(m.xid);
            put_string(out, &m.gid);
        }
        LogicalMessage::Prepare(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.prepare_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.prepare_time.0);
            out.put_u32(m.xid);
            put_string(out, &m.gid);
        }
        LogicalMessage::CommitPrepared(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_time.0);
            out.put_u32(m.xid);
            put_string(out, &m.gid);
        }
        LogicalMessage::RollbackPrepared(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.prepare_end_lsn.0);
            out.put_u64(m.rollback_end_lsn.0);
            out.put_i64(m.prepare_time.0);
            out.put_i64(m.rollback_time.0);
            out.put_u32(m.xid);
            put_string(out, &m.gid);
        }
        LogicalMessage::StreamPrepare(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.prepare_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.prepare_time.0);
            out.put_u32(m.xid);
            put_string(out, &m.gid);
        }
    }
}

fn put_xid(out: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        out.put_u32(xid);
    }
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn put_i32_len(out: &mut BytesMut, len: usize) {
    out.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

fn put_old(out: &mut BytesMut, old: &OldTuple) {
    match old {
        OldTuple::Key(t) => {
            out.put_u8(b'K');
            put_tuple(out, t);
        }
        OldTuple::Full(t) => {
            out.put_u8(b'O');
            put_tuple(out, t);
        }
    }
}

fn put_tuple(out: &mut BytesMut, tuple: &TupleData) {
    out.put_u16(u16::try_from(tuple.columns.len()).unwrap_or(u16::MAX));
    for c in &tuple.columns {
        match c {
            ColumnValue::Null => out.put_u8(b'n'),
            ColumnValue::UnchangedToast => out.put_u8(b'u'),
            ColumnValue::Text(v) => {
                out.put_u8(b't');
                put_i32_len(out, v.len());
                out.put_slice(v);
            }
            ColumnValue::Binary(v) => {
                out.put_u8(b'b');
                put_i32_len(out, v.len());
                out.put_slice(v);
            }
        }
    }
}
