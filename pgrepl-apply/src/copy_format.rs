//! Rows for `COPY … FROM STDIN`, written straight into the connection's output as CopyData
//! messages (PostgreSQL documentation, "COPY", sections "Text Format" and "Binary Format").
//!
//! Consecutive inserts into one table are the bulk of most replication traffic, and COPY is the
//! server's fastest way in. pgoutput already hands the applier each value in the format COPY
//! wants: text values are the type's output (COPY text needs only `\`, newline, carriage return
//! and tab escaped), and binary values are the type's send format, which is exactly what a binary
//! COPY field holds. So a row is re-framed, never re-encoded.

use bytes::{BufMut, BytesMut};
use pgrepl_core::pgoutput::{ColumnRef, TupleData};

/// The signature, flags and header extension of a binary COPY stream.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// How large one CopyData message grows before another is started.
const MESSAGE_TARGET: usize = 64 * 1024;

/// Appends COPY rows to an output buffer as CopyData messages.
#[derive(Debug)]
pub struct CopyWriter {
    binary: bool,
    /// Where the open CopyData message starts in the buffer, if one is open.
    open_at: Option<usize>,
    rows: usize,
}

impl CopyWriter {
    /// Starts a COPY stream in text or binary format.
    pub fn new(out: &mut BytesMut, binary: bool) -> Self {
        let mut w = CopyWriter {
            binary,
            open_at: None,
            rows: 0,
        };
        if binary {
            w.open(out);
            out.put_slice(BINARY_HEADER);
        }
        w
    }

    fn open(&mut self, out: &mut BytesMut) {
        if self.open_at.is_none() {
            self.open_at = Some(out.len());
            out.put_u8(b'd');
            out.put_u32(0); // length, patched when the message closes
        }
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some(at) = self.open_at.take() {
            let len = out.len().saturating_sub(at).saturating_sub(1);
            let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
            if let Some(slot) = out.get_mut(at + 1..at + 5) {
                slot.copy_from_slice(&len);
            }
        }
    }

    /// Appends one row: the values of `cols`, in that order.
    pub fn row(&mut self, out: &mut BytesMut, values: &TupleData, cols: &[usize]) {
        self.open(out);
        // All of the row's columns in order (the usual case): walk the row instead of looking
        // each column up.
        let in_order = cols.len() == values.len() && cols.iter().enumerate().all(|(i, &c)| i == c);
        if in_order {
            self.put_row(out, values.iter(), cols.len());
        } else {
            self.put_row(
                out,
                cols.iter()
                    .map(|&c| values.get(c).unwrap_or(ColumnRef::Null)),
                cols.len(),
            );
        }
        self.rows += 1;
        if let Some(at) = self.open_at
            && out.len().saturating_sub(at) >= MESSAGE_TARGET
        {
            self.close(out);
        }
    }

    fn put_row<'a>(
        &self,
        out: &mut BytesMut,
        values: impl Iterator<Item = ColumnRef<'a>>,
        count: usize,
    ) {
        if self.binary {
            out.put_i16(i16::try_from(count).unwrap_or(i16::MAX));
            for v in values {
                match v {
                    ColumnRef::Binary(v) | ColumnRef::Text(v) => {
                        out.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                        out.put_slice(v);
                    }
                    ColumnRef::Null | ColumnRef::UnchangedToast => out.put_i32(-1),
                }
            }
        } else {
            for (i, v) in values.enumerate() {
                if i > 0 {
                    out.put_u8(b'\t');
                }
                match v {
                    ColumnRef::Text(v) | ColumnRef::Binary(v) => escape_text(out, v),
                    ColumnRef::Null | ColumnRef::UnchangedToast => out.put_slice(b"\\N"),
                }
            }
            out.put_u8(b'\n');
        }
    }

    /// Closes the open CopyData message, if any; the next row starts a new one. Call it before
    /// any of the buffer is sent: the writer patches an open message's length at an offset into
    /// the buffer, which is wrong once the bytes before it have been consumed.
    pub fn seal(&mut self, out: &mut BytesMut) {
        self.close(out);
    }

    /// How many rows were written.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Ends the stream: the binary trailer, the last CopyData, and CopyDone.
    pub fn finish(mut self, out: &mut BytesMut) {
        if self.binary {
            self.open(out);
            out.put_i16(-1);
        }
        self.close(out);
        out.put_u8(b'c');
        out.put_u32(4);
    }
}

/// Whether every value in `cols` of `values` can go into a COPY of this format (binary COPY
/// needs every value in binary; text COPY every value in text; NULL fits both).
pub fn fits(values: &TupleData, cols: &[usize], binary: bool) -> bool {
    cols.iter().all(|&c| match values.get(c) {
        Some(ColumnRef::Null) => true,
        Some(ColumnRef::Binary(_)) => binary,
        Some(ColumnRef::Text(_)) => !binary,
        _ => false,
    })
}

fn escape_text(out: &mut BytesMut, value: &[u8]) {
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.put_slice(value.get(start..i).unwrap_or_default());
        out.put_slice(escaped);
        start = i + 1;
    }
    out.put_slice(value.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pgrepl_core::pgoutput::ColumnValue;

    #[test]
    fn text_rows_are_escaped_and_framed() {
        let mut out = BytesMut::new();
        let mut w = CopyWriter::new(&mut out, false);
        let row = TupleData::new([
            ColumnValue::Text(Bytes::from_static(b"a\tb\\c\nd\re")),
            ColumnValue::Null,
            ColumnValue::Text(Bytes::from_static(b"\\.")),
        ]);
        w.row(&mut out, &row, &[0, 1, 2]);
        w.finish(&mut out);
        let body = b"a\\tb\\\\c\\nd\\re\t\\N\t\\\\.\n";
        let mut expected = vec![b'd'];
        expected.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        expected.extend_from_slice(body);
        expected.extend_from_slice(&[b'c', 0, 0, 0, 4]);
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn binary_rows_have_header_lengths_and_trailer() {
        let mut out = BytesMut::new();
        let mut w = CopyWriter::new(&mut out, true);
        let row = TupleData::new([
            ColumnValue::Binary(Bytes::from_static(&[0, 0, 0, 7])),
            ColumnValue::Null,
        ]);
        w.row(&mut out, &row, &[1, 0]);
        w.finish(&mut out);
        let mut body = BINARY_HEADER.to_vec();
        body.extend_from_slice(&[
            0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff,
        ]);
        assert_eq!(out[0], b'd');
        assert_eq!(
            &out[1..5],
            &u32::try_from(body.len() + 4).unwrap().to_be_bytes()
        );
        assert_eq!(&out[5..5 + body.len()], &body[..]);
        assert_eq!(&out[5 + body.len()..], &[b'c', 0, 0, 0, 4]);
    }

    #[test]
    fn large_batches_split_into_several_messages() {
        let mut out = BytesMut::new();
        let mut w = CopyWriter::new(&mut out, false);
        let row = TupleData::new([ColumnValue::Text(Bytes::from(vec![b'x'; 1000]))]);
        for _ in 0..200 {
            w.row(&mut out, &row, &[0]);
        }
        assert_eq!(w.rows(), 200);
        w.finish(&mut out);
        // walk the frames
        let mut pos = 0;
        let mut data = 0;
        let mut frames = 0;
        while pos < out.len() {
            let tag = out[pos];
            let len = u32::from_be_bytes(out[pos + 1..pos + 5].try_into().unwrap()) as usize;
            if tag == b'd' {
                data += len - 4;
                frames += 1;
            }
            pos += 1 + len;
        }
        assert_eq!(pos, out.len());
        assert_eq!(data, 200 * 1001);
        assert!(frames >= 3, "{frames}");
    }

    /// The buffer may be sent (and consumed) between rows once the writer is sealed: every
    /// message is still framed right.
    #[test]
    fn sealed_messages_survive_the_buffer_being_sent() {
        let mut out = BytesMut::new();
        let mut sent = Vec::new();
        let mut w = CopyWriter::new(&mut out, false);
        let row = TupleData::new([ColumnValue::Text(Bytes::from(vec![b'x'; 100]))]);
        for i in 0..50 {
            w.row(&mut out, &row, &[0]);
            if i % 7 == 3 {
                w.seal(&mut out);
                sent.extend_from_slice(&out.split());
            }
        }
        w.finish(&mut out);
        sent.extend_from_slice(&out);
        let (mut pos, mut data) = (0, 0);
        while pos < sent.len() {
            let len = u32::from_be_bytes(sent[pos + 1..pos + 5].try_into().unwrap()) as usize;
            if sent[pos] == b'd' {
                data += len - 4;
            } else {
                assert_eq!((sent[pos], len), (b'c', 4));
            }
            pos += 1 + len;
        }
        assert_eq!((pos, data), (sent.len(), 50 * 101));
    }

    #[test]
    fn formats_must_match() {
        let t = TupleData::new([ColumnValue::Text(Bytes::new()), ColumnValue::Null]);
        assert!(fits(&t, &[0, 1], false));
        assert!(!fits(&t, &[0, 1], true));
        assert!(!fits(
            &TupleData::new([ColumnValue::UnchangedToast]),
            &[0],
            false
        ));
    }
}
