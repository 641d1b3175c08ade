//! Binary column values (`binary 'true'`): a binary capture must be its text twin, message
//! for message, with each value in its type's binary send format instead of its text
//! output.
//!
//! [`pair`] checks the structure and returns every (binary, text) value pair;
//! [`local_text`] turns the send format of the simple types into their text output here
//! (integers big-endian, booleans, text bytes, bytea, uuid, json/jsonb, dates and
//! timestamps as integer counts, floats); the test against a live server has the server
//! convert the rest.

use std::collections::HashMap;

use pgrepl_core::PgTimestamp;
use pgrepl_core::pgoutput::{ColumnRef, LogicalMessage, OldTuple, Relation, TupleData, Type};

use super::Capture;
use super::stream::Analysis;
use super::workload::{
    BOOL, BPCHAR, BYTEA, DATE, FLOAT4, FLOAT8, INT2, INT4, INT8, JSON, JSONB, TEXT, TIMESTAMP,
    TIMESTAMPTZ, UUID, VARCHAR,
};

/// One value of a binary capture with its twin from the text capture.
#[derive(Debug, Clone)]
pub(crate) struct BinaryValue {
    /// Where it was found, for messages.
    pub at: String,
    pub type_oid: u32,
    /// The namespace and name of the Type message for a user-defined type.
    pub user_type: Option<(String, String)>,
    pub binary: Vec<u8>,
    pub text: String,
}

/// Checks that `binary` is `text` with binary values, and returns every value pair.
pub(crate) fn pair(
    text: &Capture,
    text_analysis: &Analysis,
    binary: &Capture,
    binary_analysis: &Analysis,
) -> Vec<BinaryValue> {
    let name = binary.name();
    assert_eq!(binary.mode.text_twin(), text.mode, "{name}");
    assert_eq!(
        binary_analysis.messages.len(),
        text_analysis.messages.len(),
        "{name}: message count differs from {}",
        text.name()
    );
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    let mut types: HashMap<u32, Type> = HashMap::new();
    let mut values = Vec::new();
    for (i, (b, t)) in binary_analysis
        .messages
        .iter()
        .zip(&text_analysis.messages)
        .enumerate()
    {
        let at = format!("{name}, message {i}");
        let tuples: Vec<(&TupleData, &TupleData)> = match (b, t) {
            (LogicalMessage::Insert(b), LogicalMessage::Insert(t)) => {
                assert_eq!((b.xid, b.relation_oid), (t.xid, t.relation_oid), "{at}");
                vec![(&b.new, &t.new)]
            }
            (LogicalMessage::Update(b), LogicalMessage::Update(t)) => {
                assert_eq!((b.xid, b.relation_oid), (t.xid, t.relation_oid), "{at}");
                let old = match (&b.old, &t.old) {
                    (None, None) => None,
                    (Some(OldTuple::Key(b)), Some(OldTuple::Key(t)))
                    | (Some(OldTuple::Full(b)), Some(OldTuple::Full(t))) => Some((b, t)),
                    other => panic!("{at}: old tuples differ: {other:?}"),
                };
                old.into_iter().chain([(&b.new, &t.new)]).collect()
            }
            (LogicalMessage::Delete(b), LogicalMessage::Delete(t)) => {
                assert_eq!((b.xid, b.relation_oid), (t.xid, t.relation_oid), "{at}");
                match (&b.old, &t.old) {
                    (OldTuple::Key(b), OldTuple::Key(t))
                    | (OldTuple::Full(b), OldTuple::Full(t)) => {
                        vec![(b, t)]
                    }
                    other => panic!("{at}: old tuples differ: {other:?}"),
                }
            }
            _ => {
                // Everything but row data is the same, down to LSNs and xids: one slot,
                // the same WAL, the same options but `binary`.
                assert_eq!(b, t, "{at}: differs from the text capture");
                match b {
                    LogicalMessage::Relation(r) => {
                        relations.insert(r.oid, r.clone());
                    }
                    LogicalMessage::Type(ty) => {
                        types.insert(ty.oid, ty.clone());
                    }
                    _ => {}
                }
                continue;
            }
        };
        let relation_oid = match b {
            LogicalMessage::Insert(m) => m.relation_oid,
            LogicalMessage::Update(m) => m.relation_oid,
            LogicalMessage::Delete(m) => m.relation_oid,
            _ => unreachable!(),
        };
        let relation = &relations[&relation_oid];
        for (b, t) in tuples {
            for (column, (bv, tv)) in relation.columns.iter().zip(b.iter().zip(t.iter())) {
                match (bv, tv) {
                    (ColumnRef::Null, ColumnRef::Null)
                    | (ColumnRef::UnchangedToast, ColumnRef::UnchangedToast) => {}
                    (ColumnRef::Binary(bv), ColumnRef::Text(tv)) => values.push(BinaryValue {
                        at: format!("{at}, {}.{}", relation.name, column.name),
                        type_oid: column.type_oid,
                        user_type: types
                            .get(&column.type_oid)
                            .map(|ty| (ty.namespace.clone(), ty.name.clone())),
                        binary: bv.to_vec(),
                        text: String::from_utf8(tv.to_vec()).unwrap(),
                    }),
                    other => panic!("{at}, column {}: {other:?}", column.name),
                }
            }
        }
    }
    values
}

/// The text output of a value in binary send format, for the types simple enough to
/// convert here; `None` for the others.
pub(crate) fn local_text(value: &BinaryValue) -> Option<String> {
    let b = value.binary.as_slice();
    let user = value
        .user_type
        .as_ref()
        .map(|(namespace, name)| (namespace.as_str(), name.as_str()));
    let type_oid = match user {
        // A domain's Type message names its base type, and its values are sent as such.
        Some(("", "int4")) => INT4,
        // An enum is sent as its label.
        Some(("app", "mood")) => TEXT,
        Some(_) => return None,
        None => value.type_oid,
    };
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    Some(match type_oid {
        BOOL => match b {
            [0] => "f".into(),
            [1] => "t".into(),
            _ => panic!("{}: bool {b:?}", value.at),
        },
        INT2 => i16::from_be_bytes(b.try_into().unwrap()).to_string(),
        INT4 => i32::from_be_bytes(b.try_into().unwrap()).to_string(),
        INT8 => i64::from_be_bytes(b.try_into().unwrap()).to_string(),
        TEXT | VARCHAR | BPCHAR | JSON => utf8(b),
        // jsonb: a version byte, 1, then the text.
        JSONB => {
            let (version, text) = b.split_first().unwrap();
            assert_eq!(*version, 1, "{}: jsonb version", value.at);
            utf8(text)
        }
        BYTEA => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("\\x{hex}")
        }
        UUID => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
        FLOAT4 => {
            let x = f32::from_be_bytes(b.try_into().unwrap());
            float(f64::from(x), x.to_string())?
        }
        FLOAT8 => {
            let x = f64::from_be_bytes(b.try_into().unwrap());
            float(x, x.to_string())?
        }
        // Days since 2000-01-01.
        DATE => match i32::from_be_bytes(b.try_into().unwrap()) {
            i32::MAX => "infinity".into(),
            i32::MIN => "-infinity".into(),
            days => PgTimestamp(i64::from(days) * 86_400_000_000).to_string()[..10].to_owned(),
        },
        // Microseconds since 2000-01-01 (UTC for timestamptz).
        TIMESTAMP | TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(b.try_into().unwrap());
            match micros {
                i64::MAX => "infinity".into(),
                i64::MIN => "-infinity".into(),
                _ => {
                    // "2026-11-21T12:34:56.789000Z" → "2026-11-21 12:34:56.789"
                    let rfc3339 = PgTimestamp(micros).to_string();
                    let (seconds, fraction) = rfc3339.trim_end_matches('Z').split_once('.')?;
                    let fraction = fraction.trim_end_matches('0');
                    let mut out = seconds.replacen('T', " ", 1);
                    if !fraction.is_empty() {
                        out = format!("{out}.{fraction}");
                    }
                    if type_oid == TIMESTAMPTZ {
                        out.push_str("+00");
                    }
                    out
                }
            }
        }
        _ => return None,
    })
}

/// A float as PostgreSQL writes it (the shortest digits that read back exactly), from
/// Rust's `shortest` form of the same value, where the two agree: not in the ranges where
/// PostgreSQL switches to an exponent.
fn float(x: f64, shortest: String) -> Option<String> {
    Some(if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if x == 0.0 || (1e-4..1e15).contains(&x.abs()) {
        shortest
    } else {
        return None;
    })
}
