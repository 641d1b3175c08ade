//! Errors of the pgoutput decoder and encoder.
//!
//! A [`DecodeError`] always says which message was being decoded (when the
//! tag byte was readable), at which byte offset of the message the problem
//! is, and what it is, as a [`DecodeErrorKind`] a caller can match on:
//!
//! ```text
//! pgoutput Update at offset 9: tuple column 3 has unknown kind 0x7a ('z')
//! ```
//!
//! Every decode error is *definite*: the same bytes will fail the same way
//! again, so a link that meets one must stop and report it, not retry.

use std::fmt;

use super::{MessageKind, ProtocolVersion};

/// A pgoutput message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    message: Option<MessageKind>,
    offset: usize,
    kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) const fn new(
        message: Option<MessageKind>,
        offset: usize,
        kind: DecodeErrorKind,
    ) -> Self {
        Self {
            message,
            offset,
            kind,
        }
    }

    /// The kind of message being decoded, or `None` when the tag byte was
    /// missing or unknown.
    #[must_use]
    pub const fn message(&self) -> Option<MessageKind> {
        self.message
    }

    /// The byte offset in the message where the problem was found (0 is the
    /// tag byte).
    #[must_use]
    pub const fn offset(&self) -> usize {
        self.offset
    }

    /// What was wrong.
    #[must_use]
    pub const fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message {
            Some(message) => write!(f, "pgoutput {message}")?,
            None => f.write_str("pgoutput message")?,
        }
        write!(f, " at offset {}: {}", self.offset, self.kind)
    }
}

/// A byte shown as hex, and as a character when it is printable ASCII.
pub(crate) struct ShowByte(pub(crate) u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)?;
        if self.0.is_ascii_graphic() {
            write!(f, " ('{}')", char::from(self.0))?;
        }
        Ok(())
    }
}

/// What was wrong with a pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The message has no bytes at all.
    #[error("empty message")]
    Empty,
    /// The first byte is not the tag of any pgoutput message.
    #[error("unknown message tag {}", ShowByte(*tag))]
    UnknownTag {
        /// The byte found.
        tag: u8,
    },
    /// The message kind does not exist in the negotiated protocol version.
    #[error("not part of protocol {version} (needs {min_version} or later)")]
    NotInProtocolVersion {
        /// The negotiated version.
        version: ProtocolVersion,
        /// The first version that has the message.
        min_version: ProtocolVersion,
    },
    /// The message ends inside a field.
    #[error("truncated: {field} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// The bytes it needs.
        needed: usize,
        /// The bytes left in the message.
        available: usize,
    },
    /// Bytes are left after the last field.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A string field has no NUL terminator before the end of the message.
    #[error("{field} has no NUL terminator")]
    UnterminatedString {
        /// The field being read.
        field: &'static str,
    },
    /// A string field is not valid UTF-8 (the replication connection asks
    /// for `client_encoding = UTF8`, so this is corruption).
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A length field is negative.
    #[error("{field} has negative length {length}")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// The length found.
        length: i32,
    },
    /// A tuple column's kind byte is not `n`, `u`, `t` or `b`.
    #[error("tuple column {column} has unknown kind {}", ShowByte(*kind))]
    UnknownColumnKind {
        /// The column's index in the tuple, from 0.
        column: usize,
        /// The byte found.
        kind: u8,
    },
    /// The byte announcing a tuple (`N`, `K` or `O`) is not one allowed here.
    #[error("expected {expected}, found {}", ShowByte(*found))]
    UnexpectedTupleTag {
        /// What was allowed, e.g. `"'K', 'O' or 'N'"`.
        expected: &'static str,
        /// The byte found.
        found: u8,
    },
    /// A Relation's replica identity byte is not `d`, `n`, `f` or `i`.
    #[error("unknown replica identity {}", ShowByte(*byte))]
    UnknownReplicaIdentity {
        /// The byte found.
        byte: u8,
    },
    /// A flags or boolean byte has a value PostgreSQL never sends.
    #[error("{field} has invalid value {}", ShowByte(*value))]
    InvalidFlags {
        /// The field being read.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A Stream Start arrived while a streamed block was still open.
    #[error("Stream Start while the streamed block of transaction {open_xid} is still open")]
    StreamStartInStream {
        /// The xid of the open block's transaction.
        open_xid: u32,
    },
    /// A Stream Stop arrived outside a streamed block.
    #[error("Stream Stop outside a streamed block")]
    StreamStopOutsideStream,
    /// A message that ends, starts or prepares a transaction arrived between
    /// Stream Start and Stream Stop.
    #[error("not allowed between Stream Start and Stream Stop")]
    NotAllowedInStream,
}

/// A [`LogicalMessage`](super::LogicalMessage) that cannot be written in the
/// requested protocol version or wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message kind does not exist in the protocol version.
    #[error("pgoutput {message} is not part of protocol {version}")]
    NotInProtocolVersion {
        /// The message kind.
        message: MessageKind,
        /// The requested version.
        version: ProtocolVersion,
    },
    /// An `xid` was given, but version 1 has no streamed transactions.
    #[error("pgoutput {message} cannot carry an xid in protocol {version}")]
    XidNotInProtocolVersion {
        /// The message kind.
        message: MessageKind,
        /// The requested version.
        version: ProtocolVersion,
    },
    /// Stream Abort's abort LSN and time exist only in version 4.
    #[error("pgoutput Stream Abort cannot carry the abort LSN and time in protocol {version}")]
    AbortInfoNotInProtocolVersion {
        /// The requested version.
        version: ProtocolVersion,
    },
    /// More columns than the 16-bit count can say.
    #[error("pgoutput {message} has {count} columns, more than 65535")]
    TooManyColumns {
        /// The message kind.
        message: MessageKind,
        /// The number of columns.
        count: usize,
    },
    /// A Truncate of more relations than the 32-bit count can say.
    #[error("pgoutput Truncate of {count} relations, more than 4294967295")]
    TooManyRelations {
        /// The number of relations.
        count: usize,
    },
    /// A value longer than the 32-bit signed length can say.
    #[error("pgoutput {message}: {field} is {len} bytes, more than 2147483647")]
    TooLong {
        /// The message kind.
        message: MessageKind,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A string contains a NUL byte, which cannot be sent as a C string.
    #[error("pgoutput {message}: {field} contains a NUL byte")]
    InteriorNul {
        /// The message kind.
        message: MessageKind,
        /// The field.
        field: &'static str,
    },
    /// Truncate's `other_options` has the bits of `cascade` or
    /// `restart_identity` set.
    #[error("pgoutput Truncate: other_options {other_options:#04x} overlaps the known option bits")]
    InvalidTruncateOptions {
        /// The value given.
        other_options: u8,
    },
}

/// A `proto_version` this crate does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported pgoutput protocol version {0} (1 to 4 are supported)")]
pub struct UnsupportedProtocolVersion(pub u32);
