//! Fuzzes the pgoutput decoder (`pgrepl_core::pgoutput`).
//!
//! Input: one control byte, then the data.
//! - bits 0-1: protocol version (v1 to v4);
//! - bit 2: `in_stream` for single-message mode;
//! - bit 3: 0 = the data is one message for `decode`;
//!   1 = the data is a session, messages framed by a big-endian u16 length,
//!   fed in order to a stateful `Decoder`.
//!
//! Checked: no panic (and, with `-malloc_limit_mb`, no allocation sized by a
//! lying count); every message that decodes re-encodes to exactly the bytes
//! it came from, and decodes again to the same value.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgrepl_core::pgoutput::{self, Decoder, LogicalMessage, OldTuple, ProtocolVersion, TupleData};

fn touch(tuple: &TupleData) {
    for (i, column) in tuple.iter().enumerate() {
        let owned = tuple.value(i).expect("index in range");
        assert_eq!(owned.as_ref(), column);
    }
    assert!(tuple.get(tuple.len()).is_none());
}

fn check(data: &Bytes, msg: &LogicalMessage, version: ProtocolVersion, in_stream: bool) {
    match msg {
        LogicalMessage::Insert(m) => touch(&m.new),
        LogicalMessage::Update(m) => {
            if let Some(OldTuple::Key(t) | OldTuple::Full(t)) = &m.old {
                touch(t);
            }
            touch(&m.new);
        }
        LogicalMessage::Delete(m) => touch(m.old.tuple()),
        _ => {}
    }
    let mut out = BytesMut::new();
    pgoutput::encode(msg, version, &mut out).expect("a decoded message encodes");
    let out = out.freeze();
    assert_eq!(&out, data, "re-encoding differs");
    let again = pgoutput::decode(out, version, in_stream).expect("re-encoded message decodes");
    assert_eq!(&again, msg);
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let version = ProtocolVersion::ALL[usize::from(control & 3)];
    if control & 8 == 0 {
        let in_stream = control & 4 != 0;
        let data = Bytes::copy_from_slice(rest);
        if let Ok(msg) = pgoutput::decode(data.clone(), version, in_stream) {
            check(&data, &msg, version, in_stream);
        }
    } else {
        let mut decoder = Decoder::new(version);
        let mut rest = rest;
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
            let (message, tail) = tail.split_at(len);
            rest = tail;
            let in_stream = decoder.in_stream();
            let data = Bytes::copy_from_slice(message);
            let before = decoder.clone();
            match decoder.decode(data.clone()) {
                Ok(msg) => check(&data, &msg, version, in_stream),
                Err(_) => assert_eq!(decoder, before, "a failed decode changed the state"),
            }
        }
    }
});
