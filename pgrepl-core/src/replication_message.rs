//! The messages inside CopyData during `START_REPLICATION`.
//!
//! Once a replication connection has sent `START_REPLICATION … LOGICAL`, the
//! server and the client exchange CopyData messages whose payloads are the
//! messages of PostgreSQL's documentation section "Streaming Replication
//! Protocol" (protocol-replication):
//!
//! - server → client, [`ReplicationMessage`]: `XLogData` (`w`), whose data is
//!   one pgoutput message for [`crate::pgoutput`], and `Primary keepalive
//!   message` (`k`);
//! - client → server, [`StandbyMessage`]: `Standby status update` (`r`), which
//!   tells the server how far the client has written, flushed and applied (the
//!   slot's `confirmed_flush_lsn` follows the flush position), and `Hot standby
//!   feedback message` (`h`).
//!
//! Both directions decode and encode: the client needs half of each, a fake
//! server in tests the other half.
//!
//! All four have fixed layouts (XLogData a fixed header before its data).
//! Decoding is total like the pgoutput decoder: bytes in, a value or a
//! [`ReplicationMessageError`] out, never a panic, trailing bytes rejected.
//!
//! Why a keepalive matters for progress: its `wal_end` is the server's
//! current end of WAL. When the client has applied everything it received and
//! has no transaction in flight, nothing before `wal_end` can still concern it,
//! so reporting `wal_end` as flushed is safe and lets the slot advance (and the
//! server free WAL) even when no published table changes.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::lsn::Lsn;
use crate::timestamp::PgTimestamp;

/// The kind of a streaming replication message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplicationMessageKind {
    /// `w`, server → client.
    XLogData,
    /// `k`, server → client.
    PrimaryKeepalive,
    /// `r`, client → server.
    StandbyStatusUpdate,
    /// `h`, client → server.
    HotStandbyFeedback,
}

impl ReplicationMessageKind {
    /// The message's first byte.
    #[must_use]
    pub const fn tag(self) -> u8 {
        match self {
            Self::XLogData => b'w',
            Self::PrimaryKeepalive => b'k',
            Self::StandbyStatusUpdate => b'r',
            Self::HotStandbyFeedback => b'h',
        }
    }

    /// The name PostgreSQL's documentation uses.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::XLogData => "XLogData",
            Self::PrimaryKeepalive => "Primary keepalive",
            Self::StandbyStatusUpdate => "Standby status update",
            Self::HotStandbyFeedback => "Hot standby feedback",
        }
    }

    /// The size of the message without XLogData's data.
    const fn fixed_len(self) -> usize {
        match self {
            Self::XLogData => 1 + 8 + 8 + 8,
            Self::PrimaryKeepalive => 1 + 8 + 8 + 1,
            Self::StandbyStatusUpdate => 1 + 8 + 8 + 8 + 8 + 1,
            Self::HotStandbyFeedback => 1 + 8 + 4 + 4 + 4 + 4,
        }
    }
}

impl fmt::Display for ReplicationMessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A streaming replication message that could not be decoded. Like pgoutput
/// decode errors, these are definite: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationMessageError {
    /// The CopyData payload is empty.
    #[error("replication message at offset 0: empty message")]
    Empty,
    /// The tag is not one this direction of the stream carries.
    #[error("replication message at offset 0: unknown tag {tag:#04x}, expected {expected}")]
    UnknownTag {
        /// The byte found.
        tag: u8,
        /// The tags allowed, e.g. `"'w' or 'k'"`.
        expected: &'static str,
    },
    /// The message is shorter than its fixed layout.
    #[error("replication {message} at offset {len}: truncated, needs {needed} bytes, has {len}")]
    Truncated {
        /// The message kind.
        message: ReplicationMessageKind,
        /// The bytes the layout needs.
        needed: usize,
        /// The bytes received.
        len: usize,
    },
    /// The message is longer than its fixed layout.
    #[error("replication {message} at offset {offset}: {count} trailing bytes")]
    TrailingBytes {
        /// The message kind.
        message: ReplicationMessageKind,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// A boolean byte is neither 0 nor 1.
    #[error("replication {message} at offset {offset}: {field} has invalid value {value:#04x}")]
    InvalidFlag {
        /// The message kind.
        message: ReplicationMessageKind,
        /// The field's offset.
        offset: usize,
        /// The field.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
}

/// A message from the server during `START_REPLICATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationMessage {
    /// `w`: WAL data; for logical replication, one pgoutput message.
    XLogData(XLogData),
    /// `k`: the server is alive, and may want a status update.
    PrimaryKeepalive(PrimaryKeepalive),
}

/// `w`: one chunk of WAL data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// The WAL position of the start of `data`.
    pub wal_start: Lsn,
    /// The current end of WAL on the server.
    pub wal_end: Lsn,
    /// The server's clock when it sent the message.
    pub send_time: PgTimestamp,
    /// The data: for logical replication, one pgoutput message (a slice of
    /// the CopyData payload).
    pub data: Bytes,
}

/// `k`: a keepalive from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The current end of WAL on the server.
    pub wal_end: Lsn,
    /// The server's clock when it sent the message.
    pub send_time: PgTimestamp,
    /// Whether the client should reply with a status update at once, to
    /// avoid a timeout disconnect.
    pub reply_requested: bool,
}

/// A message from the client during `START_REPLICATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StandbyMessage {
    /// `r`: progress report.
    StandbyStatusUpdate(StandbyStatusUpdate),
    /// `h`: the client's oldest needed transaction ids.
    HotStandbyFeedback(HotStandbyFeedback),
}

/// `r`: how far the client has received, made durable, and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// The position after the last WAL byte received and written.
    pub write_lsn: Lsn,
    /// The position after the last WAL byte durably stored; for logical
    /// replication the slot's `confirmed_flush_lsn` advances to it, so it must
    /// never be ahead of what is durable on the target.
    pub flush_lsn: Lsn,
    /// The position after the last WAL byte applied.
    pub apply_lsn: Lsn,
    /// The client's clock when it sent the message.
    pub send_time: PgTimestamp,
    /// Whether the client asks the server to reply at once.
    pub reply_requested: bool,
}

/// `h`: hot standby feedback (for physical standbys; a logical client has no
/// use for it, but the protocol has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotStandbyFeedback {
    /// The client's clock when it sent the message.
    pub send_time: PgTimestamp,
    /// The standby's current global xmin, 0 when none.
    pub xmin: u32,
    /// The epoch of `xmin`.
    pub xmin_epoch: u32,
    /// The lowest catalog xmin of any replication slot on the standby.
    pub catalog_xmin: u32,
    /// The epoch of `catalog_xmin`.
    pub catalog_xmin_epoch: u32,
}

/// A cursor over a message whose length has already been checked against its
/// fixed layout, so the reads below cannot run short; they return zeros if
/// they ever did rather than panic.
struct Fields<'a> {
    rest: &'a [u8],
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                *head
            }
            None => [0; N],
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }

    fn lsn(&mut self) -> Lsn {
        Lsn(u64::from_be_bytes(self.take()))
    }

    fn timestamp(&mut self) -> PgTimestamp {
        PgTimestamp(i64::from_be_bytes(self.take()))
    }
}

/// Checks `data`'s length against `kind`'s layout and returns a cursor after
/// the tag. `exact` is false for XLogData, whose data follows the header.
fn fields(
    data: &[u8],
    kind: ReplicationMessageKind,
    exact: bool,
) -> Result<Fields<'_>, ReplicationMessageError> {
    let needed = kind.fixed_len();
    if data.len() < needed {
        return Err(ReplicationMessageError::Truncated {
            message: kind,
            needed,
            len: data.len(),
        });
    }
    if exact && data.len() > needed {
        return Err(ReplicationMessageError::TrailingBytes {
            message: kind,
            offset: needed,
            count: data.len().wrapping_sub(needed),
        });
    }
    Ok(Fields {
        rest: data.get(1..).unwrap_or_default(),
    })
}

/// Reads the final boolean byte of a fixed-size message.
fn flag(
    f: &mut Fields<'_>,
    kind: ReplicationMessageKind,
    field: &'static str,
) -> Result<bool, ReplicationMessageError> {
    match f.take::<1>() {
        [0] => Ok(false),
        [1] => Ok(true),
        [value] => Err(ReplicationMessageError::InvalidFlag {
            message: kind,
            offset: kind.fixed_len().wrapping_sub(1),
            field,
            value,
        }),
    }
}

impl ReplicationMessage {
    /// Decodes a CopyData payload sent by the server.
    ///
    /// # Errors
    ///
    /// A [`ReplicationMessageError`] for an empty payload, a tag other than
    /// `w` or `k`, a payload shorter than the layout, trailing bytes after a
    /// keepalive, or a `reply_requested` byte other than 0 or 1.
    pub fn decode(data: Bytes) -> Result<ReplicationMessage, ReplicationMessageError> {
        match data.first() {
            None => Err(ReplicationMessageError::Empty),
            Some(b'w') => {
                let kind = ReplicationMessageKind::XLogData;
                let mut f = fields(&data, kind, false)?;
                Ok(ReplicationMessage::XLogData(XLogData {
                    wal_start: f.lsn(),
                    wal_end: f.lsn(),
                    send_time: f.timestamp(),
                    data: data.slice(kind.fixed_len()..),
                }))
            }
            Some(b'k') => {
                let kind = ReplicationMessageKind::PrimaryKeepalive;
                let mut f = fields(&data, kind, true)?;
                Ok(ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                    wal_end: f.lsn(),
                    send_time: f.timestamp(),
                    reply_requested: flag(&mut f, kind, "reply_requested")?,
                }))
            }
            Some(&tag) => Err(ReplicationMessageError::UnknownTag {
                tag,
                expected: "'w' or 'k'",
            }),
        }
    }

    /// This message's kind.
    #[must_use]
    pub const fn kind(&self) -> ReplicationMessageKind {
        match self {
            Self::XLogData(_) => ReplicationMessageKind::XLogData,
            Self::PrimaryKeepalive(_) => ReplicationMessageKind::PrimaryKeepalive,
        }
    }

    /// Appends the message, as a CopyData payload, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.kind().tag());
        match self {
            Self::XLogData(m) => {
                out.put_u64(m.wal_start.0);
                out.put_u64(m.wal_end.0);
                out.put_i64(m.send_time.0);
                out.put_slice(&m.data);
            }
            Self::PrimaryKeepalive(m) => {
                out.put_u64(m.wal_end.0);
                out.put_i64(m.send_time.0);
                out.put_u8(u8::from(m.reply_requested));
            }
        }
    }
}

impl StandbyMessage {
    /// Decodes a CopyData payload sent by the client.
    ///
    /// # Errors
    ///
    /// A [`ReplicationMessageError`] for an empty payload, a tag other than
    /// `r` or `h`, a payload whose length is not the layout's, or a
    /// `reply_requested` byte other than 0 or 1.
    pub fn decode(data: Bytes) -> Result<StandbyMessage, ReplicationMessageError> {
        match data.first() {
            None => Err(ReplicationMessageError::Empty),
            Some(b'r') => {
                let kind = ReplicationMessageKind::StandbyStatusUpdate;
                let mut f = fields(&data, kind, true)?;
                Ok(StandbyMessage::StandbyStatusUpdate(StandbyStatusUpdate {
                    write_lsn: f.lsn(),
                    flush_lsn: f.lsn(),
                    apply_lsn: f.lsn(),
                    send_time: f.timestamp(),
                    reply_requested: flag(&mut f, kind, "reply_requested")?,
                }))
            }
            Some(b'h') => {
                let kind = ReplicationMessageKind::HotStandbyFeedback;
                let mut f = fields(&data, kind, true)?;
                Ok(StandbyMessage::HotStandbyFeedback(HotStandbyFeedback {
                    send_time: f.timestamp(),
                    xmin: f.u32(),
                    xmin_epoch: f.u32(),
                    catalog_xmin: f.u32(),
                    catalog_xmin_epoch: f.u32(),
                }))
            }
            Some(&tag) => Err(ReplicationMessageError::UnknownTag {
                tag,
                expected: "'r' or 'h'",
            }),
        }
    }

    /// This message's kind.
    #[must_use]
    pub const fn kind(&self) -> ReplicationMessageKind {
        match self {
            Self::StandbyStatusUpdate(_) => ReplicationMessageKind::StandbyStatusUpdate,
            Self::HotStandbyFeedback(_) => ReplicationMessageKind::HotStandbyFeedback,
        }
    }

    /// Appends the message, as a CopyData payload, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.kind().tag());
        match self {
            Self::StandbyStatusUpdate(m) => {
                out.put_u64(m.write_lsn.0);
                out.put_u64(m.flush_lsn.0);
                out.put_u64(m.apply_lsn.0);
                out.put_i64(m.send_time.0);
                out.put_u8(u8::from(m.reply_requested));
            }
            Self::HotStandbyFeedback(m) => {
                out.put_i64(m.send_time.0);
                out.put_u32(m.xmin);
                out.put_u32(m.xmin_epoch);
                out.put_u32(m.catalog_xmin);
                out.put_u32(m.catalog_xmin_epoch);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut BytesMut)) -> Bytes {
        let mut out = BytesMut::new();
        f(&mut out);
        out.freeze()
    }

    #[test]
    fn xlogdata_layout_and_round_trip() {
        let msg = ReplicationMessage::XLogData(XLogData {
            wal_start: Lsn(0x0102_0304_0506_0708),
            wal_end: Lsn(0x1112_1314_1516_1718),
            send_time: PgTimestamp(-2),
            data: Bytes::from_static(b"E"),
        });
        let bytes = encoded(|o| msg.encode(o));
        assert_eq!(
            &bytes[..],
            b"w\x01\x02\x03\x04\x05\x06\x07\x08\x11\x12\x13\x14\x15\x16\x17\x18\xff\xff\xff\xff\xff\xff\xff\xfeE"
        );
        assert_eq!(ReplicationMessage::decode(bytes), Ok(msg));
        // empty data is allowed
        let empty = Bytes::from_static(&[b'w'; 25]);
        assert!(matches!(
            ReplicationMessage::decode(empty),
            Ok(ReplicationMessage::XLogData(XLogData { data, .. })) if data.is_empty()
        ));
    }

    #[test]
    fn keepalive_layout_and_round_trip() {
        for reply_requested in [false, true] {
            let msg = ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(0x16_B374_D848),
                send_time: PgTimestamp(815_000_000_000_000),
                reply_requested,
            });
            let bytes = encoded(|o| msg.encode(o));
            assert_eq!(bytes.len(), 18);
            assert_eq!(bytes[0], b'k');
            assert_eq!(ReplicationMessage::decode(bytes), Ok(msg));
        }
        let mut bad = encoded(|o| {
            ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(1),
                send_time: PgTimestamp(2),
                reply_requested: true,
            })
            .encode(o);
        })
        .to_vec();
        bad[17] = 2;
        let err = ReplicationMessage::decode(Bytes::from(bad)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "replication Primary keepalive at offset 17: reply_requested has invalid value 0x02"
        );
    }

    #[test]
    fn standby_messages_round_trip() {
        let update = StandbyMessage::StandbyStatusUpdate(StandbyStatusUpdate {
            write_lsn: Lsn(3),
            flush_lsn: Lsn(2),
            apply_lsn: Lsn(1),
            send_time: PgTimestamp(42),
            reply_requested: true,
        });
        let bytes = encoded(|o| update.encode(o));
        assert_eq!(bytes.len(), 34);
        assert_eq!(StandbyMessage::decode(bytes), Ok(update));

        let feedback = StandbyMessage::HotStandbyFeedback(HotStandbyFeedback {
            send_time: PgTimestamp(42),
            xmin: 1,
            xmin_epoch: 2,
            catalog_xmin: 3,
            catalog_xmin_epoch: 4,
        });
        let bytes = encoded(|o| feedback.encode(o));
        assert_eq!(bytes.len(), 25);
        assert_eq!(
            &bytes[..],
            b"h\0\0\0\0\0\0\0\x2a\0\0\0\x01\0\0\0\x02\0\0\0\x03\0\0\0\x04"
        );
        assert_eq!(StandbyMessage::decode(bytes), Ok(feedback));
    }

    #[test]
    fn rejects_every_truncation_and_trailing_bytes() {
        let samples: [(Bytes, bool); 4] = [
            (
                encoded(|o| {
                    ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                        wal_end: Lsn(1),
                        send_time: PgTimestamp(2),
                        reply_requested: false,
                    })
                    .encode(o);
                }),
                true,
            ),
            (Bytes::from_static(&[b'w'; 25]), true),
            (
                encoded(|o| {
                    StandbyMessage::StandbyStatusUpdate(StandbyStatusUpdate {
                        write_lsn: Lsn(3),
                        flush_lsn: Lsn(2),
                        apply_lsn: Lsn(1),
                        send_time: PgTimestamp(0),
                        reply_requested: true,
                    })
                    .encode(o);
                }),
                false,
            ),
            (Bytes::from_static(&[b'h'; 25]), false),
        ];
        for (bytes, server) in samples {
            let decode = |b: Bytes| {
                if server {
                    ReplicationMessage::decode(b).map(|_| ())
                } else {
                    StandbyMessage::decode(b).map(|_| ())
                }
            };
            for len in 0..bytes.len() {
                assert!(
                    decode(bytes.slice(..len)).is_err(),
                    "{bytes:?} cut at {len}"
                );
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            let longer_ok = decode(Bytes::from(longer)).is_ok();
            // Only XLogData has a variable part.
            assert_eq!(longer_ok, bytes[0] == b'w', "{bytes:?} + 1 byte");
        }
        assert_eq!(
            ReplicationMessage::decode(Bytes::from_static(b"r")),
            Err(ReplicationMessageError::UnknownTag {
                tag: b'r',
                expected: "'w' or 'k'"
            })
        );
        assert_eq!(
            StandbyMessage::decode(Bytes::new()),
            Err(ReplicationMessageError::Empty)
        );
        let err = ReplicationMessage::decode(Bytes::from_static(b"k\0\0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "replication Primary keepalive at offset 3: truncated, needs 18 bytes, has 3"
        );
    }
}
