//! Backend (server → client) messages of the frontend/backend protocol, framed and parsed
//! without I/O (PostgreSQL documentation, "Message Formats").
//!
//! Every message is a type byte, a big-endian `Int32` length that counts itself, and a body.
//! [`parse_frame`] peeks the header of a buffer and returns `Ok(None)` until the whole message
//! is there, so a caller reads more and tries again; it refuses a length below 4 or above the
//! configured maximum *before* buffering the body, so a hostile or broken server cannot make
//! pgrepl reserve memory it never sends. [`BackendMessage::parse`] is total like the pgoutput
//! decoder: any body gives a message or a [`ProtocolError`] naming the message and the offset,
//! never a panic, and every body must be consumed exactly.
//!
//! postgres-protocol's parser is not used here because it does not know CopyBothResponse
//! (`W`), the reply to `START_REPLICATION`.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use bytes::{Buf, Bytes, BytesMut};

/// The largest message pgrepl accepts by default: PostgreSQL never sends a message over 1 GiB
/// (its `MaxAllocSize`), plus room for the headers of a CopyData carrying XLogData.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = (1 << 30) + 1024;

/// A message from the server that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {message} message from the server at byte {offset}: {reason}")]
pub struct ProtocolError {
    /// Which message (its name, or the type byte when unknown).
    pub message: String,
    /// Offset within the message body.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

impl ProtocolError {
    pub(crate) fn new(
        message: impl Into<String>,
        offset: usize,
        reason: impl Into<String>,
    ) -> Self {
        ProtocolError {
            message: message.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Takes one whole message off the front of `buf`: `Ok(None)` when more bytes are needed,
/// the type byte and body otherwise. The body shares `buf`'s allocation.
pub fn parse_frame(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<(u8, Bytes)>, ProtocolError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let tag = header.first().copied().unwrap_or_default();
    let len_bytes: [u8; 4] = header
        .get(1..5)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default();
    let len = i32::from_be_bytes(len_bytes);
    let Some(body_len) = usize::try_from(len).ok().and_then(|l| l.checked_sub(4)) else {
        return Err(ProtocolError::new(
            tag_name(tag),
            1,
            format!("message length {len} is below the minimum of 4"),
        ));
    };
    if body_len > max_len {
        return Err(ProtocolError::new(
            tag_name(tag),
            1,
            format!("message length {len} exceeds the limit of {max_len} bytes"),
        ));
    }
    let Some(total) = body_len.checked_add(5) else {
        return Err(ProtocolError::new(
            tag_name(tag),
            1,
            "message length overflows",
        ));
    };
    if buf.len() < total {
        // Let the reader know how much to reserve, bounded by the check above.
        buf.reserve(total.saturating_sub(buf.len()).min(1 << 20));
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some((tag, buf.split_to(body_len).freeze())))
}

/// The human name of a backend message type byte.
pub fn tag_name(tag: u8) -> String {
    let name = match tag {
        b'R' => "Authentication",
        b'K' => "BackendKeyData",
        b'2' => "BindComplete",
        b'3' => "CloseComplete",
        b'C' => "CommandComplete",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'G' => "CopyInResponse",
        b'H' => "CopyOutResponse",
        b'W' => "CopyBothResponse",
        b'D' => "DataRow",
        b'I' => "EmptyQueryResponse",
        b'E' => "ErrorResponse",
        b'v' => "NegotiateProtocolVersion",
        b'n' => "NoData",
        b'N' => "NoticeResponse",
        b'A' => "NotificationResponse",
        b't' => "ParameterDescription",
        b'S' => "ParameterStatus",
        b'1' => "ParseComplete",
        b's' => "PortalSuspended",
        b'Z' => "ReadyForQuery",
        b'T' => "RowDescription",
        other => return format!("unknown (type byte 0x{other:02x})"),
    };
    name.to_owned()
}

/// An authentication request from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear text.
    CleartextPassword,
    /// Send the MD5 hash of the password with this salt.
    Md5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// Start a SASL exchange with one of these mechanisms.
    Sasl {
        /// Mechanism names, e.g. `SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`.
        mechanisms: Vec<String>,
    },
    /// The next SASL challenge.
    SaslContinue(Bytes),
    /// The SASL outcome data.
    SaslFinal(Bytes),
    /// A method pgrepl does not speak (Kerberos, GSSAPI, SSPI), by its code.
    Unsupported(i32),
}

/// One field of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// `S` / `V`: ERROR, FATAL, PANIC, WARNING, NOTICE, …
    pub severity: String,
    /// `C`: the SQLSTATE code.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
    /// `P`: cursor position in the query.
    pub position: Option<String>,
    /// `W`: context.
    pub context: Option<String>,
    /// `s`: schema.
    pub schema: Option<String>,
    /// `t`: table.
    pub table: Option<String>,
    /// `c`: column.
    pub column: Option<String>,
    /// `n`: constraint.
    pub constraint: Option<String>,
}

/// The description of one result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// Table OID, or 0.
    pub table_oid: u32,
    /// Column number in that table, or 0.
    pub column_id: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type size.
    pub type_size: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// `R`.
    Authentication(AuthRequest),
    /// `K`: the process id and secret key for cancel requests.
    BackendKeyData {
        /// Backend process id.
        process_id: i32,
        /// Secret key (4 bytes in protocol 3.0, longer in 3.2).
        secret_key: Bytes,
    },
    /// `S`: a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `Z`: ready for a new query; the byte is the transaction status (`I`, `T`, `E`).
    ReadyForQuery(u8),
    /// `E`.
    ErrorResponse(ErrorFields),
    /// `N`.
    NoticeResponse(ErrorFields),
    /// `T`.
    RowDescription(Vec<FieldDescription>),
    /// `D`: one row; `None` is SQL NULL.
    DataRow(Vec<Option<Bytes>>),
    /// `C`: the command tag, e.g. `INSERT 0 1`.
    CommandComplete(String),
    /// `I`.
    EmptyQueryResponse,
    /// `1`.
    ParseComplete,
    /// `2`.
    BindComplete,
    /// `3`.
    CloseComplete,
    /// `n`.
    NoData,
    /// `t`: parameter type OIDs of a prepared statement.
    ParameterDescription(Vec<u32>),
    /// `s`.
    PortalSuspended,
    /// `G`: the server is ready for CopyData from the client.
    CopyInResponse,
    /// `H`: the server will send CopyData.
    CopyOutResponse,
    /// `W`: both directions carry CopyData (streaming replication).
    CopyBothResponse,
    /// `d`.
    CopyData(Bytes),
    /// `c`.
    CopyDone,
    /// `A`: a NOTIFY.
    NotificationResponse {
        /// Notifying backend.
        process_id: i32,
        /// Channel.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// `v`: the server supports an older minor protocol version.
    NegotiateProtocolVersion {
        /// Newest minor version the server supports.
        newest_minor: i32,
        /// Options it did not recognize.
        unrecognized: Vec<String>,
    },
}

/// A bounds-checked reader over a message body.
struct Reader<'a> {
    message: &'static str,
    body: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(message: &'static str, body: &'a Bytes) -> Self {
        Reader {
            message,
            body,
            pos: 0,
        }
    }

    fn err(&self, reason: impl Into<String>) -> ProtocolError {
        ProtocolError::new(self.message, self.pos, reason)
    }

    fn remaining(&self) -> usize {
        self.body.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.body.len());
        match end.and_then(|e| self.body.get(self.pos..e)) {
            Some(s) => {
                self.pos = self.pos.saturating_add(n);
                Ok(s)
            }
            None => Err(self.err(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.remaining()
            ))),
        }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes, ProtocolError> {
        let start = self.pos;
        self.take(n, what)?;
        Ok(self.body.slice(start..self.pos))
    }

    fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    fn i16(&mut self, what: &str) -> Result<i16, ProtocolError> {
        let s = self.take(2, what)?;
        Ok(i16::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ProtocolError> {
        let s = self.take(4, what)?;
        Ok(i32::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ProtocolError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    fn cstr(&mut self, what: &str) -> Result<String, ProtocolError> {
        let rest = self.body.get(self.pos..).unwrap_or_default();
        let Some(nul) = rest.iter().position(|b| *b == 0) else {
            return Err(self.err(format!("{what} has no terminating NUL")));
        };
        let raw = rest.get(..nul).unwrap_or_default();
        let s = String::from_utf8_lossy(raw).into_owned();
        self.pos = self.pos.saturating_add(nul).saturating_add(1);
        Ok(s)
    }

    /// A count of items each at least `min_item` bytes long, checked against what is left so
    /// that no allocation is sized by an unchecked length.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize, ProtocolError> {
        let n = self.i16(what)?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("negative {what} {n}")))?;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(self.err(format!(
                "{what} {n} cannot fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    fn finish(self) -> Result<(), ProtocolError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.err(format!("{} unexpected trailing bytes", self.remaining())))
        }
    }
}

impl BackendMessage {
    /// Parses the body of a message with type byte `tag`.
    pub fn parse(tag: u8, body: Bytes) -> Result<BackendMessage, ProtocolError> {
        let msg = match tag {
            b'R' => {
                let mut r = Reader::new("Authentication", &body);
                let code = r.i32("authentication code")?;
                let req = match code {
                    0 => AuthRequest::Ok,
                    3 => AuthRequest::CleartextPassword,
                    5 => {
                        let s = r.take(4, "MD5 salt")?;
                        AuthRequest::Md5Password {
                            salt: s.try_into().unwrap_or_default(),
                        }
                    }
                    10 => {
                        let mut mechanisms = Vec::new();
                        loop {
                            let m = r.cstr("SASL mechanism")?;
                            if m.is_empty() {
                                break;
                            }
                            mechanisms.push(m);
                        }
                        AuthRequest::Sasl { mechanisms }
                    }
                    11 => AuthRequest::SaslContinue(r.bytes(r.remaining(), "SASL data")?),
                    12 => AuthRequest::SaslFinal(r.bytes(r.remaining(), "SASL data")?),
                    other => {
                        // Other methods carry data we do not read.
                        let _ = r.bytes(r.remaining(), "authentication data")?;
                        AuthRequest::Unsupported(other)
                    }
                };
                r.finish()?;
                BackendMessage::Authentication(req)
            }
            b'K' => {
                let mut r = Reader::new("BackendKeyData", &body);
                let process_id = r.i32("process id")?;
                let secret_key = r.bytes(r.remaining(), "secret key")?;
                if secret_key.len() < 4 || secret_key.len() > 256 {
                    return Err(r.err("secret key must be 4 to 256 bytes"));
                }
                BackendMessage::BackendKeyData {
                    process_id,
                    secret_key,
                }
            }
            b'S' => {
                let mut r = Reader::new("ParameterStatus", &body);
                let name = r.cstr("parameter name")?;
                let value = r.cstr("parameter value")?;
                r.finish()?;
                BackendMessage::ParameterStatus { name, value }
            }
            b'Z' => {
                let mut r = Reader::new("ReadyForQuery", &body);
                let status = r.u8("transaction status")?;
                if !matches!(status, b'I' | b'T' | b'E') {
                    return Err(r.err(format!("unknown transaction status 0x{status:02x}")));
                }
                r.finish()?;
                BackendMessage::ReadyForQuery(status)
            }
            b'E' => BackendMessage::ErrorResponse(parse_error_fields("ErrorResponse", &body)?),
            b'N' => BackendMessage::NoticeResponse(parse_error_fields("NoticeResponse", &body)?),
            b'T' => {
                let mut r = Reader::new("RowDescription", &body);
                // name (≥1 byte NUL) + 18 bytes of fixed fields
                let n = r.count("field count", 19)?;
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    fields.push(FieldDescription {
                        name: r.cstr("field name")?,
                        table_oid: r.u32("table OID")?,
                        column_id: r.i16("column number")?,
                        type_oid: r.u32("type OID")?,
                        type_size: r.i16("type size")?,
                        type_modifier: r.i32("type modifier")?,
                        format: r.i16("format code")?,
                    });
                }
                r.finish()?;
                BackendMessage::RowDescription(fields)
            }
            b'D' => {
                let mut r = Reader::new("DataRow", &body);
                let n = r.count("column count", 4)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.i32("value length")?;
                    if len == -1 {
                        values.push(None);
                    } else {
                        let len = usize::try_from(len)
                            .map_err(|_| r.err(format!("negative value length {len}")))?;
                        values.push(Some(r.bytes(len, "column value")?));
                    }
                }
                r.finish()?;
                BackendMessage::DataRow(values)
            }
            b'C' => {
                let mut r = Reader::new("CommandComplete", &body);
                let tag = r.cstr("command tag")?;
                r.finish()?;
                BackendMessage::CommandComplete(tag)
            }
            b'I' => empty(
                "EmptyQueryResponse",
                &body,
                BackendMessage::EmptyQueryResponse,
            )?,
            b'1' => empty("ParseComplete", &body, BackendMessage::ParseComplete)?,
            b'2' => empty("BindComplete", &body, BackendMessage::BindComplete)?,
            b'3' => empty("CloseComplete", &body, BackendMessage::CloseComplete)?,
            b'n' => empty("NoData", &body, BackendMessage::NoData)?,
            b's' => empty("PortalSuspended", &body, BackendMessage::PortalSuspended)?,
            b'c' => empty("CopyDone", &body, BackendMessage::CopyDone)?,
            b't' => {
                let mut r = Reader::new("ParameterDescription", &body);
                let n = r.count("parameter count", 4)?;
                let mut oids = Vec::with_capacity(n);
                for _ in 0..n {
                    oids.push(r.u32("parameter type")?);
                }
                r.finish()?;
                BackendMessage::ParameterDescription(oids)
            }
            b'G' => {
                copy_response("CopyInResponse", &body)?;
                BackendMessage::CopyInResponse
            }
            b'H' => {
                copy_response("CopyOutResponse", &body)?;
                BackendMessage::CopyOutResponse
            }
            b'W' => {
                copy_response("CopyBothResponse", &body)?;
                BackendMessage::CopyBothResponse
            }
            b'd' => BackendMessage::CopyData(body),
            b'A' => {
                let mut r = Reader::new("NotificationResponse", &body);
                let process_id = r.i32("process id")?;
                let channel = r.cstr("channel")?;
                let payload = r.cstr("payload")?;
                r.finish()?;
                BackendMessage::NotificationResponse {
                    process_id,
                    channel,
                    payload,
                }
            }
            b'v' => {
                let mut r = Reader::new("NegotiateProtocolVersion", &body);
                let newest_minor = r.i32("minor version")?;
                let n = r.i32("option count")?;
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= r.remaining())
                    .ok_or_else(|| r.err(format!("bad option count {n}")))?;
                let mut unrecognized = Vec::with_capacity(n);
                for _ in 0..n {
                    unrecognized.push(r.cstr("option name")?);
                }
                r.finish()?;
                BackendMessage::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized,
                }
            }
            other => {
                return Err(ProtocolError::new(
                    tag_name(other),
                    0,
                    "unexpected message type",
                ));
            }
        };
        Ok(msg)
    }
}

fn empty(
    name: &'static str,
    body: &Bytes,
    msg: BackendMessage,
) -> Result<BackendMessage, ProtocolError> {
    Reader::new(name, body).finish()?;
    Ok(msg)
}

fn copy_response(name: &'static str, body: &Bytes) -> Result<(), ProtocolError> {
    let mut r = Reader::new(name, body);
    let format = r.u8("overall format")?;
    if format > 1 {
        return Err(r.err(format!("unknown copy format {format}")));
    }
    let n = r.count("column count", 2)?;
    for _ in 0..n {
        r.i16("column format")?;
    }
    r.finish()
}

fn parse_error_fields(name: &'static str, body: &Bytes) -> Result<ErrorFields, ProtocolError> {
    let mut r = Reader::new(name, body);
    let mut f = ErrorFields::default();
    let mut localized_severity = None;
    loop {
        let code = r.u8("field type")?;
        if code == 0 {
            break;
        }
        let value = r.cstr("field value")?;
        match code {
            b'V' => f.severity = value,
            b'S' => localized_severity = Some(value),
            b'C' => f.code = value,
            b'M' => f.message = value,
            b'D' => f.detail = Some(value),
            b'H' => f.hint = Some(value),
            b'P' => f.position = Some(value),
            b'W' => f.context = Some(value),
            b's' => f.schema = Some(value),
            b't' => f.table = Some(value),
            b'c' => f.column = Some(value),
            b'n' => f.constraint = Some(value),
            _ => {} // fields we do not use: internal query, file, line, routine, …
        }
    }
    r.finish()?;
    if f.severity.is_empty() {
        f.severity = localized_severity.unwrap_or_default();
    }
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_i32(i32::try_from(body.len() + 4).unwrap());
        b.put_slice(body);
        b
    }

    #[test]
    fn frames_wait_for_whole_messages() {
        let mut whole = frame(b'Z', b"I");
        whole.extend_from_slice(&frame(b'C', b"INSERT 0 1\0"));
        let full = whole.clone();
        for cut in 0..full.len() {
            let mut part = BytesMut::from(full.get(..cut).unwrap());
            let mut got = 0;
            while let Some((tag, body)) = parse_frame(&mut part, 1024).unwrap() {
                BackendMessage::parse(tag, body).unwrap();
                got += 1;
            }
            assert!(got <= 2);
        }
        let (tag, body) = parse_frame(&mut whole, 1024).unwrap().unwrap();
        assert_eq!(
            BackendMessage::parse(tag, body).unwrap(),
            BackendMessage::ReadyForQuery(b'I')
        );
        let (tag, body) = parse_frame(&mut whole, 1024).unwrap().unwrap();
        assert_eq!(
            BackendMessage::parse(tag, body).unwrap(),
            BackendMessage::CommandComplete("INSERT 0 1".into())
        );
        assert!(whole.is_empty());
    }

    #[test]
    fn absurd_lengths_are_refused_before_buffering() {
        let mut b = BytesMut::from(&[b'd', 0x7f, 0xff, 0xff, 0xff][..]);
        let e = parse_frame(&mut b, 1 << 20).unwrap_err();
        assert!(e.reason.contains("exceeds the limit"), "{e}");
        assert!(b.capacity() < 1 << 21);
        let mut b = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(parse_frame(&mut b, 1 << 20).is_err());
        let mut b = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(parse_frame(&mut b, 1 << 20).is_err());
    }

    #[test]
    fn messages_parse_and_must_be_consumed_exactly() {
        let ok = |tag, body: &[u8]| BackendMessage::parse(tag, Bytes::copy_from_slice(body));
        assert_eq!(
            ok(b'R', &[0, 0, 0, 10, b'A', 0, b'B', 0, 0]).unwrap(),
            BackendMessage::Authentication(AuthRequest::Sasl {
                mechanisms: vec!["A".into(), "B".into()]
            })
        );
        assert!(ok(b'R', &[0, 0, 0, 10, b'A', 0]).is_err());
        assert!(ok(b'R', &[0, 0, 0, 0, 1]).is_err());
        assert!(ok(b'Z', b"Ix").is_err());
        assert!(ok(b'Z', b"Q").is_err());
        assert_eq!(
            ok(b'D', &[0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, b'x']).unwrap(),
            BackendMessage::DataRow(vec![None, Some(Bytes::from_static(b"x"))])
        );
        assert!(
            ok(b'D', &[0x7f, 0xff]).is_err(),
            "count larger than the body"
        );
        assert!(ok(b'D', &[0, 1, 0x80, 0, 0, 0]).is_err(), "negative length");
        let e = ok(
            b'E',
            b"SERROR\0VERROR\0C28P01\0Mpassword authentication failed\0\0",
        )
        .unwrap();
        let BackendMessage::ErrorResponse(f) = e else {
            panic!("not an error: {e:?}")
        };
        assert_eq!(f.code, "28P01");
        assert_eq!(f.severity, "ERROR");
        assert!(ok(b'E', b"CXX\0").is_err(), "missing final NUL");
        assert!(ok(b'?', b"").is_err());
        assert_eq!(
            ok(b'W', &[0, 0, 0]).unwrap(),
            BackendMessage::CopyBothResponse
        );
    }

    #[test]
    fn every_truncation_of_valid_messages_is_an_error_not_a_panic() {
        let samples: &[(u8, &[u8])] = &[
            (
                b'T',
                b"\0\x01a\0\0\0\0\x01\0\x02\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
            ),
            (b'R', &[0, 0, 0, 5, 1, 2, 3, 4]),
            (b'K', &[0, 0, 0, 1, 0, 0, 0, 2]),
            (b'S', b"a\0b\0"),
            (b'A', b"\0\0\0\x01ch\0pl\0"),
            (b'v', b"\0\0\0\0\0\0\0\x01x\0"),
        ];
        for (tag, body) in samples {
            let body = Bytes::copy_from_slice(body);
            BackendMessage::parse(*tag, body.clone()).unwrap();
            for cut in 0..body.len() {
                let r = BackendMessage::parse(*tag, body.slice(..cut));
                assert!(r.is_err(), "tag {} cut {cut}: {r:?}", *tag as char);
            }
        }
    }
}
