//! TupleData: the column values of a row, as Insert, Update and Delete carry
//! them ("TupleData" in section "Logical Replication Message Formats").
//!
//! A decoded tuple keeps one [`Bytes`] handle on the message it came from and,
//! per column, a kind and a byte range in it. That is what makes decoding
//! fast: a column costs a bounds check and a 16-byte entry, where a `Bytes`
//! per column would cost an atomic reference-count increment when decoded and
//! a decrement when dropped (measured at 60% of decode time on a typical
//! stream). Callers read columns as borrowed [`ColumnRef`]s, or take owned
//! [`ColumnValue`]s (`Bytes` slices of the same buffer, still no copy) for
//! the values they keep.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The column values of a row, in the relation's column order.
///
/// Build one from owned values with [`TupleData::new`] (or `collect()`);
/// decoded ones share the message's buffer. Two tuples are equal when their
/// columns are, wherever their bytes live.
#[derive(Clone, Default)]
pub struct TupleData {
    buf: Bytes,
    columns: Vec<Column>,
}

/// One column of a tuple: its kind and where its value is in `buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Column {
    start: usize,
    len: u32,
    kind: u8,
}

impl Column {
    pub(super) const NULL: Column = Column {
        start: 0,
        len: 0,
        kind: b'n',
    };
    pub(super) const UNCHANGED_TOAST: Column = Column {
        start: 0,
        len: 0,
        kind: b'u',
    };

    /// A text (`t`) or binary (`b`) value at `start..start + len` of the
    /// tuple's buffer; the caller has checked the range.
    pub(super) const fn value(kind: u8, start: usize, len: u32) -> Column {
        Column { start, len, kind }
    }
}

/// A column value borrowed from a [`TupleData`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRef<'a> {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value, not sent; the target keeps its own.
    UnchangedToast,
    /// `t`: the value in the type's text output format.
    Text(&'a [u8]),
    /// `b`: the value in the type's binary send format (`binary = true`).
    Binary(&'a [u8]),
}

impl<'a> ColumnRef<'a> {
    /// The value's bytes, for text and binary values.
    #[must_use]
    pub const fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Self::Text(b) | Self::Binary(b) => Some(b),
            Self::Null | Self::UnchangedToast => None,
        }
    }
}

impl fmt::Debug for ColumnRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("Null"),
            Self::UnchangedToast => f.write_str("UnchangedToast"),
            Self::Text(b) => write!(f, "Text(b\"{}\")", b.escape_ascii()),
            Self::Binary(b) => write!(f, "Binary(b\"{}\")", b.escape_ascii()),
        }
    }
}

/// An owned column value: text and binary values are `Bytes`, slices of the
/// decoded message when they come from [`TupleData::value`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

impl ColumnValue {
    /// The value, borrowed.
    #[must_use]
    pub fn as_ref(&self) -> ColumnRef<'_> {
        match self {
            Self::Null => ColumnRef::Null,
            Self::UnchangedToast => ColumnRef::UnchangedToast,
            Self::Text(b) => ColumnRef::Text(b),
            Self::Binary(b) => ColumnRef::Binary(b),
        }
    }
}

impl TupleData {
    /// A tuple of these values (their bytes are copied into one buffer).
    ///
    /// A value longer than `u32::MAX` bytes cannot be sent in pgoutput (the
    /// length is an `Int32`) and is cut to that length here.
    pub fn new(values: impl IntoIterator<Item = ColumnValue>) -> TupleData {
        let values = values.into_iter();
        let mut buf = BytesMut::new();
        let mut columns = Vec::with_capacity(values.size_hint().0);
        for value in values {
            let (kind, bytes) = match &value {
                ColumnValue::Null => {
                    columns.push(Column::NULL);
                    continue;
                }
                ColumnValue::UnchangedToast => {
                    columns.push(Column::UNCHANGED_TOAST);
                    continue;
                }
                ColumnValue::Text(b) => (b't', b),
                ColumnValue::Binary(b) => (b'b', b),
            };
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            let kept = bytes.get(..len as usize).unwrap_or_default();
            columns.push(Column::value(kind, buf.len(), len));
            buf.put_slice(kept);
        }
        TupleData {
            buf: buf.freeze(),
            columns,
        }
    }

    /// A decoded tuple: `columns`' ranges lie within `buf` (the decoder
    /// checked each against the message).
    pub(super) const fn from_parts(buf: Bytes, columns: Vec<Column>) -> TupleData {
        TupleData { buf, columns }
    }

    /// The number of columns.
    #[must_use]
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the tuple has no columns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    fn column_ref(&self, c: Column) -> ColumnRef<'_> {
        let bytes = || {
            // In range by construction (see `from_parts` and `new`).
            let end = c.start.saturating_add(c.len as usize);
            self.buf.get(c.start..end).unwrap_or_default()
        };
        match c.kind {
            b'n' => ColumnRef::Null,
            b'u' => ColumnRef::UnchangedToast,
            b'b' => ColumnRef::Binary(bytes()),
            _ => ColumnRef::Text(bytes()),
        }
    }

    /// Column `index`, borrowed, or `None` past the last column.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<ColumnRef<'_>> {
        self.columns.get(index).map(|c| self.column_ref(*c))
    }

    /// The columns in order, borrowed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ColumnRef<'_>> + '_ {
        self.columns.iter().map(|c| self.column_ref(*c))
    }

    /// Column `index` as an owned value (a `Bytes` slice of the tuple's
    /// buffer, not a copy), or `None` past the last column.
    #[must_use]
    pub fn value(&self, index: usize) -> Option<ColumnValue> {
        let c = *self.columns.get(index)?;
        let end = c.start.saturating_add(c.len as usize);
        Some(match c.kind {
            b'n' => ColumnValue::Null,
            b'u' => ColumnValue::UnchangedToast,
            b'b' => ColumnValue::Binary(self.buf.slice(c.start..end)),
            _ => ColumnValue::Text(self.buf.slice(c.start..end)),
        })
    }

    /// Every column as an owned value.
    #[must_use]
    pub fn to_values(&self) -> Vec<ColumnValue> {
        (0..self.len()).filter_map(|i| self.value(i)).collect()
    }
}

impl PartialEq for TupleData {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for TupleData {}

impl fmt::Debug for TupleData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<ColumnValue>> for TupleData {
    fn from(values: Vec<ColumnValue>) -> Self {
        TupleData::new(values)
    }
}

impl FromIterator<ColumnValue> for TupleData {
    fn from_iter<I: IntoIterator<Item = ColumnValue>>(iter: I) -> Self {
        TupleData::new(iter)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn builds_reads_and_compares() {
        let values = vec![
            ColumnValue::Text(Bytes::from_static(b"abc")),
            ColumnValue::Null,
            ColumnValue::UnchangedToast,
            ColumnValue::Binary(Bytes::from_static(b"\x00\x01")),
            ColumnValue::Text(Bytes::new()),
        ];
        let tuple = TupleData::new(values.clone());
        assert_eq!(tuple.len(), 5);
        assert_eq!(tuple.get(0), Some(ColumnRef::Text(b"abc")));
        assert_eq!(tuple.get(1), Some(ColumnRef::Null));
        assert_eq!(tuple.get(3), Some(ColumnRef::Binary(b"\x00\x01")));
        assert_eq!(tuple.get(4), Some(ColumnRef::Text(b"")));
        assert_eq!(tuple.get(5), None);
        assert_eq!(tuple.to_values(), values);
        assert_eq!(tuple.value(0), Some(values[0].clone()));
        let collected: TupleData = values.iter().cloned().collect();
        assert_eq!(collected, tuple);
        assert_ne!(TupleData::new(values[..4].to_vec()), tuple);
        assert_eq!(
            format!("{tuple:?}"),
            r#"[Text(b"abc"), Null, UnchangedToast, Binary(b"\x00\x01"), Text(b"")]"#
        );
        assert!(TupleData::default().is_empty());
        assert_eq!(values[3].as_ref().bytes(), Some(&b"\x00\x01"[..]));
    }
}
