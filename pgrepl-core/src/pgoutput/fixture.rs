//! Captured pgoutput streams: the fixture file format (feature `fixtures`).
//!
//! Tests, benchmarks and fuzz seeds use streams captured from real
//! PostgreSQL servers with `pg_logical_slot_peek_binary_changes` (see
//! `pgrepl-core/tests/fixtures/README.md`). A fixture file holds one stream:
//!
//! ```text
//! magic           8 bytes   "PGOUTFX1"
//! proto_version   u32 BE    the pgoutput protocol version of the capture
//! server_version  u32 BE    the server's server_version_num, e.g. 150018
//! options_len     u16 BE
//! options         UTF-8     the pgoutput options used, "key=value" separated by spaces
//!                           (an entry "+name=value" is a setting of the decoding session)
//! then, until the end of the file, one record per message:
//!   lsn           u64 BE    the message's LSN (the `lsn` column of the capture)
//!   len           u32 BE
//!   data          len bytes one pgoutput message
//! ```
//!
//! All integers are big-endian, as on the wire. Reading is total, like the
//! decoder: a damaged file is a [`FixtureError`], never a panic.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolVersion;
use crate::lsn::Lsn;

/// The first eight bytes of a fixture file.
pub const MAGIC: &[u8; 8] = b"PGOUTFX1";

/// A captured pgoutput stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// The protocol version the stream was captured with.
    pub protocol_version: ProtocolVersion,
    /// The server's `server_version_num`.
    pub server_version_num: u32,
    /// The pgoutput options of the capture, e.g.
    /// `proto_version=2 publication_names=p streaming=on`; an entry starting with `+` is a
    /// setting of the decoding session that shaped it, e.g.
    /// `+debug_logical_replication_streaming=immediate`.
    pub options: String,
    /// The messages, in stream order.
    pub messages: Vec<FixtureMessage>,
}

/// One captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureMessage {
    /// The LSN the server reported with it.
    pub lsn: Lsn,
    /// The pgoutput message (a slice of the fixture file's bytes).
    pub data: Bytes,
}

/// A fixture file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The file does not start with [`MAGIC`].
    #[error("not a pgoutput fixture (bad magic)")]
    BadMagic,
    /// The file ends inside a header or record.
    #[error("fixture truncated at offset {offset}")]
    Truncated {
        /// Where the incomplete part starts.
        offset: usize,
    },
    /// The header names a protocol version this crate does not know.
    #[error("fixture has unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u32),
    /// The options are not UTF-8.
    #[error("fixture options are not valid UTF-8")]
    InvalidOptions,
}

struct Cursor<'a> {
    src: &'a Bytes,
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn offset(&self) -> usize {
        self.src.len().wrapping_sub(self.rest.len())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], FixtureError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(FixtureError::Truncated {
                offset: self.offset(),
            })?;
        self.rest = tail;
        Ok(*head)
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, FixtureError> {
        let start = self.offset();
        let (_, tail) = self
            .rest
            .split_at_checked(len)
            .ok_or(FixtureError::Truncated { offset: start })?;
        self.rest = tail;
        Ok(self.src.slice(start..start.wrapping_add(len)))
    }
}

impl Fixture {
    /// Reads a fixture file. The messages are slices of `file`.
    ///
    /// # Errors
    ///
    /// A [`FixtureError`] when the file is not a complete fixture.
    pub fn parse(file: &Bytes) -> Result<Fixture, FixtureError> {
        let mut c = Cursor {
            src: file,
            rest: file,
        };
        if &c.take::<8>().map_err(|_| FixtureError::BadMagic)? != MAGIC {
            return Err(FixtureError::BadMagic);
        }
        let version = u32::from_be_bytes(c.take()?);
        let protocol_version = ProtocolVersion::try_from(version)
            .map_err(|_| FixtureError::UnsupportedProtocolVersion(version))?;
        let server_version_num = u32::from_be_bytes(c.take()?);
        let options_len = usize::from(u16::from_be_bytes(c.take()?));
        let options = String::from_utf8(c.bytes(options_len)?.to_vec())
            .map_err(|_| FixtureError::InvalidOptions)?;
        let mut messages = Vec::new();
        while !c.rest.is_empty() {
            let lsn = Lsn(u64::from_be_bytes(c.take()?));
            let len = u32::from_be_bytes(c.take()?);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            messages.push(FixtureMessage {
                lsn,
                data: c.bytes(len)?,
            });
        }
        Ok(Fixture {
            protocol_version,
            server_version_num,
            options,
            messages,
        })
    }

    /// Writes the fixture in the file format [`Fixture::parse`] reads.
    ///
    /// Options longer than 65535 bytes and messages longer than 4 GiB cannot
    /// be written and are cut short; neither occurs in practice.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(MAGIC);
        out.put_u32(self.protocol_version.as_u32());
        out.put_u32(self.server_version_num);
        let options = self.options.as_bytes();
        let options = options.get(..usize::from(u16::MAX)).unwrap_or(options);
        out.put_u16(u16::try_from(options.len()).unwrap_or(u16::MAX));
        out.put_slice(options);
        for m in &self.messages {
            let data = m.data.get(..u32::MAX as usize).unwrap_or(&m.data);
            out.put_u64(m.lsn.0);
            out.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
            out.put_slice(data);
        }
    }

    /// The total size of the messages, in bytes (what a decoder reads).
    #[must_use]
    pub fn message_bytes(&self) -> usize {
        self.messages.iter().map(|m| m.data.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fixture {
        Fixture {
            protocol_version: ProtocolVersion::V2,
            server_version_num: 150_018,
            options: "proto_version=2 streaming=on".into(),
            messages: vec![
                FixtureMessage {
                    lsn: Lsn(0x1_0000_0010),
                    data: Bytes::from_static(b"E"),
                },
                FixtureMessage {
                    lsn: Lsn(7),
                    data: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn writes_and_parses() {
        let mut out = BytesMut::new();
        sample().write(&mut out);
        let file = out.freeze();
        assert_eq!(Fixture::parse(&file), Ok(sample()));
        assert_eq!(sample().message_bytes(), 1);
    }

    #[test]
    fn rejects_damaged_files_at_every_length() {
        let mut out = BytesMut::new();
        sample().write(&mut out);
        let file = out.freeze();
        for len in 0..file.len() {
            let cut = file.slice(..len);
            // Cutting exactly between records leaves a valid, shorter fixture.
            if let Ok(f) = Fixture::parse(&cut) {
                assert!(f.messages.len() < 2, "cut at {len}");
            }
        }
        assert_eq!(
            Fixture::parse(&Bytes::from_static(b"PGOUTFX2\0\0\0\x01")),
            Err(FixtureError::BadMagic)
        );
        let mut bad_version = BytesMut::new();
        bad_version.put_slice(MAGIC);
        bad_version.put_u32(9);
        assert_eq!(
            Fixture::parse(&bad_version.freeze()),
            Err(FixtureError::UnsupportedProtocolVersion(9))
        );
    }
}
