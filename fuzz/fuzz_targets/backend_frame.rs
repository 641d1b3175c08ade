//! Fuzzes what every connection reads from a server: the framing of backend messages
//! (`pgrepl_core::connection::backend::parse_frame`) and their parsing
//! (`BackendMessage::parse`), then, for CopyData, the replication payload and pgoutput
//! inside it, as a replication stream does.
//!
//! Input: one control byte, then the bytes the server sends.
//! - bits 0-1: the message length limit: 64 B, 4 KiB, 1 MiB, or the default
//!   (`DEFAULT_MAX_MESSAGE_LEN`, 1 GiB);
//! - bits 2-4: how the bytes arrive: in reads of 1, 2, 3, 7, 64, 512 or 4096 bytes, or all
//!   at once.
//!
//! Checked: no panic, and (with `-malloc_limit_mb`) no allocation sized by a lying length;
//! the read buffer never grows much beyond what arrived; every frame is exactly as long as its
//! header says, and the frames put back together are the bytes they were taken from;
//! arriving in pieces gives the same frames and the same outcome (the same error, or the same
//! bytes left waiting) as arriving at once; every error and message can be displayed.

#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgrepl_core::connection::backend::{
    BackendMessage, DEFAULT_MAX_MESSAGE_LEN, ProtocolError, parse_frame,
};
use pgrepl_core::pgoutput::{Decoder, ProtocolVersion};
use pgrepl_core::replication_message::ReplicationMessage;

const LIMITS: [usize; 4] = [64, 4096, 1 << 20, DEFAULT_MAX_MESSAGE_LEN];
const READS: [usize; 8] = [1, 2, 3, 7, 64, 512, 4096, usize::MAX];

/// How a byte stream ended: an error, or waiting for more with this many bytes buffered.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Error(ProtocolError),
    NeedMore(usize),
}

/// Frames `stream` arriving in reads of `read` bytes, as `Connection` does.
fn frames(stream: &[u8], max_len: usize, read: usize) -> (Vec<(u8, Bytes)>, Outcome) {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Vec::new();
    loop {
        match parse_frame(&mut buf, max_len) {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) if fed == stream.len() => return (out, Outcome::NeedMore(buf.len())),
            Ok(None) => {
                let end = fed.saturating_add(read).min(stream.len());
                buf.extend_from_slice(&stream[fed..end]);
                fed = end;
            }
            Err(e) => return (out, Outcome::Error(e)),
        }
        // parse_frame reserves at most 1 MiB ahead of what is buffered; growth may double.
        assert!(
            buf.capacity() <= 2 * (stream.len() + (1 << 20)) + 4096,
            "read buffer of {} bytes for {} bytes of input",
            buf.capacity(),
            stream.len()
        );
    }
}

/// Parses a frame as a connection and then a replication stream would.
fn parse(tag: u8, body: Bytes, decoder: &mut Decoder) {
    match BackendMessage::parse(tag, body) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(BackendMessage::CopyData(payload)) => match ReplicationMessage::decode(payload) {
            Ok(ReplicationMessage::XLogData(x)) => {
                let _ = format!("{:?}", decoder.decode(x.data));
            }
            Ok(other) => {
                let _ = format!("{other:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Ok(msg) => {
            let _ = format!("{msg:?}");
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, stream)) = input.split_first() else {
        return;
    };
    let max_len = LIMITS[usize::from(control & 3)];
    let read = READS[usize::from((control >> 2) & 7)];

    let (at_once, outcome) = frames(stream, max_len, usize::MAX);
    let (in_pieces, pieces_outcome) = frames(stream, max_len, read);
    assert_eq!(
        at_once, in_pieces,
        "arriving in reads of {read} changed the frames"
    );
    assert_eq!(
        outcome, pieces_outcome,
        "arriving in reads of {read} changed the outcome"
    );

    let mut rebuilt = BytesMut::new();
    for (tag, body) in &at_once {
        assert!(body.len() <= max_len);
        rebuilt.put_u8(*tag);
        rebuilt.put_i32(i32::try_from(body.len() + 4).expect("a frame's length fits"));
        rebuilt.put_slice(body);
    }
    assert_eq!(
        &rebuilt[..],
        &stream[..rebuilt.len()],
        "frames differ from their bytes"
    );
    match &outcome {
        Outcome::NeedMore(left) => assert_eq!(rebuilt.len() + left, stream.len()),
        Outcome::Error(e) => {
            let _ = e.to_string();
        }
    }

    let mut decoder = Decoder::new(ProtocolVersion::V4);
    for (tag, body) in at_once {
        parse(tag, body, &mut decoder);
    }
});
