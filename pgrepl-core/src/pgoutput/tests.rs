//! Tests of the pgoutput decoder and encoder: hand-made layouts, every class
//! of malformed input, the stream-tracking [`Decoder`], the captured
//! fixtures, and proptest round-trips over every message and version.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::fixture::Fixture;
use super::*;
use crate::lsn::Lsn;
use crate::timestamp::PgTimestamp;

const ALL_VERSIONS: [ProtocolVersion; 4] = ProtocolVersion::ALL;

fn enc(msg: &LogicalMessage, version: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    encode(msg, version, &mut out).unwrap();
    out.freeze()
}

fn text(s: &'static str) -> ColumnValue {
    ColumnValue::Text(Bytes::from_static(s.as_bytes()))
}

fn tuple(columns: Vec<ColumnValue>) -> TupleData {
    TupleData::new(columns)
}

/// Whether the message has an xid field that is set.
fn stream_xid(msg: &LogicalMessage) -> Option<u32> {
    match msg {
        LogicalMessage::Message(m) => m.xid,
        LogicalMessage::Relation(m) => m.xid,
        LogicalMessage::Type(m) => m.xid,
        LogicalMessage::Insert(m) => m.xid,
        LogicalMessage::Update(m) => m.xid,
        LogicalMessage::Delete(m) => m.xid,
        LogicalMessage::Truncate(m) => m.xid,
        _ => None,
    }
}

/// One message of every kind (and of both forms where the kind has two).
fn samples() -> Vec<LogicalMessage> {
    let ts = PgTimestamp(815_000_000_123_456);
    vec![
        LogicalMessage::Begin(Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_time: ts,
            xid: 742,
        }),
        LogicalMessage::Message(Message {
            xid: None,
            transactional: true,
            lsn: Lsn(0x1BB_EF00),
            prefix: "pgrepl".into(),
            content: Bytes::from_static(b"payload"),
        }),
        LogicalMessage::Message(Message {
            xid: Some(9),
            transactional: false,
            lsn: Lsn(1),
            prefix: String::new(),
            content: Bytes::new(),
        }),
        LogicalMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x16_B374_D848),
            end_lsn: Lsn(0x16_B374_D878),
            commit_time: ts,
        }),
        LogicalMessage::Origin(Origin {
            commit_lsn: Lsn(0x1A2B_3C4D),
            name: "pgrepl_node2".into(),
        }),
        LogicalMessage::Relation(Relation {
            xid: None,
            oid: 16_384,
            namespace: "public".into(),
            name: "customers".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 20,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "naïve".into(),
                    type_oid: 1_700,
                    type_modifier: 786_438,
                },
            ],
        }),
        LogicalMessage::Relation(Relation {
            xid: Some(7),
            oid: 1,
            namespace: String::new(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![],
        }),
        LogicalMessage::Type(Type {
            xid: None,
            oid: 16_390,
            namespace: "public".into(),
            name: "mood".into(),
        }),
        LogicalMessage::Insert(Insert {
            xid: None,
            relation_oid: 16_384,
            new: tuple(vec![
                text("1"),
                ColumnValue::Null,
                ColumnValue::Binary(Bytes::from_static(b"\0\x01")),
                text(""),
            ]),
        }),
        LogicalMessage::Insert(Insert {
            xid: Some(800),
            relation_oid: 1,
            new: tuple(vec![]),
        }),
        LogicalMessage::Update(Update {
            xid: None,
            relation_oid: 16_384,
            old: None,
            new: tuple(vec![text("1"), ColumnValue::UnchangedToast]),
        }),
        LogicalMessage::Update(Update {
            xid: Some(801),
            relation_oid: 16_384,
            old: Some(OldTuple::Key(tuple(vec![text("1"), ColumnValue::Null]))),
            new: tuple(vec![text("2"), text("x")]),
        }),
        LogicalMessage::Update(Update {
            xid: None,
            relation_oid: 16_384,
            old: Some(OldTuple::Full(tuple(vec![text("1"), text("y")]))),
            new: tuple(vec![text("1"), text("x")]),
        }),
        LogicalMessage::Delete(Delete {
            xid: None,
            relation_oid: 16_384,
            old: OldTuple::Key(tuple(vec![text("1"), ColumnValue::Null])),
        }),
        LogicalMessage::Delete(Delete {
            xid: Some(5),
            relation_oid: 16_384,
            old: OldTuple::Full(tuple(vec![text("1"), text("y")])),
        }),
        LogicalMessage::Truncate(Truncate {
            xid: None,
            cascade: true,
            restart_identity: true,
            other_options: 0,
            relation_oids: vec![16_384, 16_400],
        }),
        LogicalMessage::Truncate(Truncate {
            xid: Some(3),
            cascade: false,
            restart_identity: false,
            other_options: 0x80,
            relation_oids: vec![],
        }),
        LogicalMessage::StreamStart(StreamStart {
            xid: 900,
            first_segment: true,
        }),
        LogicalMessage::StreamStop,
        LogicalMessage::StreamCommit(StreamCommit {
            xid: 900,
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(20),
            commit_time: ts,
        }),
        LogicalMessage::StreamAbort(StreamAbort {
            xid: 900,
            subxid: 901,
            abort: None,
        }),
        LogicalMessage::StreamAbort(StreamAbort {
            xid: 900,
            subxid: 900,
            abort: Some(StreamAbortInfo {
                abort_lsn: Lsn(30),
                abort_time: ts,
            }),
        }),
        LogicalMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(40),
            end_lsn: Lsn(50),
            prepare_time: ts,
            xid: 902,
            gid: "pgrepl-gid-1".into(),
        }),
        LogicalMessage::Prepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(40),
            end_lsn: Lsn(50),
            prepare_time: ts,
            xid: 902,
            gid: "pgrepl-gid-1".into(),
        }),
        LogicalMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(60),
            end_lsn: Lsn(70),
            commit_time: ts,
            xid: 902,
            gid: "pgrepl-gid-1".into(),
        }),
        LogicalMessage::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(50),
            rollback_end_lsn: Lsn(80),
            prepare_time: ts,
            rollback_time: PgTimestamp(ts.0 + 1),
            xid: 903,
            gid: "pgrepl-gid-2".into(),
        }),
        LogicalMessage::StreamPrepare(StreamPrepare {
            flags: 0,
            prepare_lsn: Lsn(40),
            end_lsn: Lsn(50),
            prepare_time: ts,
            xid: 904,
            gid: "g".into(),
        }),
    ]
}

/// Every (message, version) pair the version can carry, with its encoding.
fn encodable_samples() -> Vec<(LogicalMessage, ProtocolVersion, Bytes)> {
    let mut out = Vec::new();
    for msg in samples() {
        for version in ALL_VERSIONS {
            let mut buf = BytesMut::new();
            if encode(&msg, version, &mut buf).is_ok() {
                out.push((msg.clone(), version, buf.freeze()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Layouts, checked byte by byte against proto.c's writers.

#[test]
fn begin_layout() {
    let msg = &samples()[0];
    let bytes = enc(msg, ProtocolVersion::V1);
    let mut want = BytesMut::new();
    want.put_u8(b'B');
    want.put_u64(0x16_B374_D848);
    want.put_i64(815_000_000_123_456);
    want.put_u32(742);
    assert_eq!(bytes, want.freeze());
}

#[test]
fn insert_layout_with_and_without_stream_xid() {
    let msg = LogicalMessage::Insert(Insert {
        xid: None,
        relation_oid: 0x0102_0304,
        new: tuple(vec![
            text("ab"),
            ColumnValue::Null,
            ColumnValue::UnchangedToast,
        ]),
    });
    let bytes = enc(&msg, ProtocolVersion::V1);
    assert_eq!(
        &bytes[..],
        b"I\x01\x02\x03\x04N\x00\x03t\x00\x00\x00\x02abnu"
    );
    let LogicalMessage::Insert(mut streamed) = msg else {
        unreachable!()
    };
    streamed.xid = Some(0x0A0B_0C0D);
    let streamed = LogicalMessage::Insert(streamed);
    let bytes = enc(&streamed, ProtocolVersion::V2);
    assert_eq!(
        &bytes[..],
        b"I\x0a\x0b\x0c\x0d\x01\x02\x03\x04N\x00\x03t\x00\x00\x00\x02abnu"
    );
    assert_eq!(
        decode(bytes.clone(), ProtocolVersion::V2, true),
        Ok(streamed)
    );
    // Outside a stream the same bytes mean something else (and do not parse).
    assert!(decode(bytes, ProtocolVersion::V2, false).is_err());
}

#[test]
fn message_layout() {
    let bytes = enc(&samples()[1], ProtocolVersion::V1);
    assert_eq!(
        &bytes[..],
        b"M\x01\x00\x00\x00\x00\x01\xbb\xef\x00pgrepl\x00\x00\x00\x00\x07payload"
    );
}

#[test]
fn stream_abort_abort_info_only_on_v4() {
    let with_info = samples()
        .into_iter()
        .find(|m| matches!(m, LogicalMessage::StreamAbort(a) if a.abort.is_some()))
        .unwrap();
    assert_eq!(enc(&with_info, ProtocolVersion::V4).len(), 25);
    for version in [ProtocolVersion::V2, ProtocolVersion::V3] {
        assert_eq!(
            encode(&with_info, version, &mut BytesMut::new()),
            Err(EncodeError::AbortInfoNotInProtocolVersion { version })
        );
    }
    // The 25-byte form is trailing garbage before v4.
    let bytes = enc(&with_info, ProtocolVersion::V4);
    let err = decode(bytes, ProtocolVersion::V3, false).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::TrailingBytes { count: 16 });
    assert_eq!(err.offset(), 9);
}

#[test]
fn values_share_the_input_buffer() {
    let bytes = enc(&samples()[8], ProtocolVersion::V1);
    let LogicalMessage::Insert(insert) = decode(bytes.clone(), ProtocolVersion::V1, false).unwrap()
    else {
        unreachable!()
    };
    let start = bytes.as_ptr() as usize;
    let end = start + bytes.len();
    let within = |p: *const u8| (start..end).contains(&(p as usize));
    let Some(ColumnRef::Text(borrowed)) = insert.new.get(0) else {
        unreachable!()
    };
    assert!(within(borrowed.as_ptr()), "column value was copied");
    let Some(ColumnValue::Text(owned)) = insert.new.value(0) else {
        unreachable!()
    };
    assert!(within(owned.as_ptr()), "owned column value was copied");
}

// ---------------------------------------------------------------------------
// Round trips of the samples, in every version that can carry them.

#[test]
fn samples_round_trip_in_every_version() {
    let pairs = encodable_samples();
    assert!(
        pairs.len() > samples().len(),
        "most samples fit several versions"
    );
    for (msg, version, bytes) in pairs {
        let in_stream = stream_xid(&msg).is_some();
        assert_eq!(
            decode(bytes, version, in_stream).as_ref(),
            Ok(&msg),
            "{msg:?} in {version}"
        );
    }
}

#[test]
fn encode_rejects_what_the_version_cannot_carry() {
    for msg in samples() {
        for version in ALL_VERSIONS {
            let result = encode(&msg, version, &mut BytesMut::new());
            let kind = msg.kind();
            let abort_info = matches!(&msg, LogicalMessage::StreamAbort(a) if a.abort.is_some());
            let expected = if version < kind.min_version() {
                Err(EncodeError::NotInProtocolVersion {
                    message: kind,
                    version,
                })
            } else if stream_xid(&msg).is_some() && version == ProtocolVersion::V1 {
                Err(EncodeError::XidNotInProtocolVersion {
                    message: kind,
                    version,
                })
            } else if abort_info && version < ProtocolVersion::V4 {
                Err(EncodeError::AbortInfoNotInProtocolVersion { version })
            } else {
                Ok(())
            };
            assert_eq!(result, expected, "{msg:?} in {version}");
        }
    }
}

#[test]
fn encode_rejects_unrepresentable_values() {
    let mut out = BytesMut::new();
    let nul = LogicalMessage::Origin(Origin {
        commit_lsn: Lsn(1),
        name: "a\0b".into(),
    });
    assert_eq!(
        encode(&nul, ProtocolVersion::V1, &mut out),
        Err(EncodeError::InteriorNul {
            message: MessageKind::Origin,
            field: "origin name"
        })
    );
    let wide = LogicalMessage::Insert(Insert {
        xid: None,
        relation_oid: 1,
        new: tuple(vec![ColumnValue::Null; 65_536]),
    });
    assert_eq!(
        encode(&wide, ProtocolVersion::V1, &mut out),
        Err(EncodeError::TooManyColumns {
            message: MessageKind::Insert,
            count: 65_536
        })
    );
    let overlapping = LogicalMessage::Truncate(Truncate {
        xid: None,
        cascade: false,
        restart_identity: false,
        other_options: Truncate::OPTION_CASCADE,
        relation_oids: vec![],
    });
    assert_eq!(
        encode(&overlapping, ProtocolVersion::V1, &mut out),
        Err(EncodeError::InvalidTruncateOptions { other_options: 1 })
    );
    assert!(out.is_empty(), "nothing is written on error");
    // 65535 columns is the limit, and fits.
    let widest = LogicalMessage::Insert(Insert {
        xid: None,
        relation_oid: 1,
        new: tuple(vec![ColumnValue::Null; 65_535]),
    });
    let bytes = enc(&widest, ProtocolVersion::V1);
    assert_eq!(decode(bytes, ProtocolVersion::V1, false), Ok(widest));
}

// ---------------------------------------------------------------------------
// Malformed input, class by class.

#[test]
fn truncation_at_every_offset_is_an_error() {
    for (msg, version, bytes) in encodable_samples() {
        let in_stream = stream_xid(&msg).is_some();
        for len in 0..bytes.len() {
            let result = decode(bytes.slice(..len), version, in_stream);
            match result {
                Err(e) => assert!(e.offset() <= len, "{e} for {len}-byte prefix"),
                // The only prefix that is itself a message: a v4 Stream Abort
                // without its optional abort info.
                Ok(LogicalMessage::StreamAbort(StreamAbort { abort: None, .. })) => {
                    assert_eq!((version, len), (ProtocolVersion::V4, 9));
                }
                Ok(other) => panic!("{len}-byte prefix of {msg:?} decoded as {other:?}"),
            }
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for (msg, version, bytes) in encodable_samples() {
        let in_stream = stream_xid(&msg).is_some();
        let mut longer = BytesMut::from(&bytes[..]);
        longer.put_u8(0);
        let err = decode(longer.freeze(), version, in_stream).unwrap_err();
        if matches!(&msg, LogicalMessage::StreamAbort(a) if a.abort.is_none())
            && version == ProtocolVersion::V4
        {
            // One more byte starts the optional abort info.
            assert!(matches!(err.kind(), DecodeErrorKind::Truncated { .. }));
        } else {
            assert_eq!(
                (err.offset(), err.kind()),
                (bytes.len(), &DecodeErrorKind::TrailingBytes { count: 1 }),
                "{msg:?} in {version}"
            );
        }
    }
}

#[test]
fn empty_and_unknown_tags() {
    let err = decode(Bytes::new(), ProtocolVersion::V4, false).unwrap_err();
    assert_eq!((err.message(), err.kind()), (None, &DecodeErrorKind::Empty));
    for tag in 0..=u8::MAX {
        let known = MessageKind::from_tag(tag);
        let err = decode(Bytes::from(vec![tag]), ProtocolVersion::V4, false);
        match known {
            None => assert_eq!(
                err.unwrap_err().kind(),
                &DecodeErrorKind::UnknownTag { tag }
            ),
            Some(kind) => assert_eq!(kind.tag(), tag),
        }
    }
    let err = decode(Bytes::from_static(b"z"), ProtocolVersion::V1, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pgoutput message at offset 0: unknown message tag 0x7a ('z')"
    );
}

#[test]
fn kinds_outside_the_negotiated_version() {
    for kind in MessageKind::ALL {
        for version in ALL_VERSIONS {
            let result = decode(Bytes::from(vec![kind.tag()]), version, false);
            let foreign = DecodeErrorKind::NotInProtocolVersion {
                version,
                min_version: kind.min_version(),
            };
            assert_eq!(
                result.as_ref().err().map(DecodeError::kind) == Some(&foreign),
                version < kind.min_version(),
                "{kind} in {version}: {result:?}"
            );
        }
    }
    let err = decode(Bytes::from_static(b"E"), ProtocolVersion::V1, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pgoutput Stream Stop at offset 0: not part of protocol v1 (needs v2 or later)"
    );
    assert_eq!(
        decode(Bytes::from_static(b"E"), ProtocolVersion::V2, false),
        Ok(LogicalMessage::StreamStop)
    );
}

#[test]
fn unknown_column_kind_names_column_and_offset() {
    // 'U', oid, 'N', 4 columns: n n n z
    let bytes = Bytes::from_static(b"U\0\0\0\x01N\x00\x04nnnz");
    let err = decode(bytes, ProtocolVersion::V1, false).unwrap_err();
    assert_eq!(
        err.kind(),
        &DecodeErrorKind::UnknownColumnKind {
            column: 3,
            kind: b'z'
        }
    );
    assert_eq!(
        err.to_string(),
        "pgoutput Update at offset 11: tuple column 3 has unknown kind 0x7a ('z')"
    );
}

#[test]
fn unexpected_tuple_tags() {
    let cases: [(&'static [u8], &str, usize); 4] = [
        (b"I\0\0\0\x01K\0\0", "'N'", 5),
        (b"U\0\0\0\x01X\0\0", "'K', 'O' or 'N'", 5),
        (b"U\0\0\0\x01K\0\0K\0\0", "'N'", 8),
        (b"D\0\0\0\x01N\0\0", "'K' or 'O'", 5),
    ];
    for (bytes, expected, offset) in cases {
        let err = decode(Bytes::from_static(bytes), ProtocolVersion::V1, false).unwrap_err();
        assert!(
            matches!(err.kind(), DecodeErrorKind::UnexpectedTupleTag { expected: e, .. } if *e == expected),
            "{err}"
        );
        assert_eq!(err.offset(), offset, "{err}");
    }
}

#[test]
fn absurd_counts_fail_without_reserving_them() {
    // 65535 columns announced in a 10-byte Insert.
    let err = decode(
        Bytes::from_static(b"I\0\0\0\x01N\xff\xffnn"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        (err.offset(), err.kind()),
        (
            10,
            &DecodeErrorKind::Truncated {
                field: "tuple column kind",
                needed: 1,
                available: 0
            }
        )
    );
    // 4 billion relations announced in a Truncate.
    let err = decode(
        Bytes::from_static(b"T\xff\xff\xff\xff\x00\0\0\0\x01"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(err.kind(), DecodeErrorKind::Truncated { .. }),
        "{err}"
    );
    assert_eq!(err.offset(), 10);
    // 65535 columns announced in a Relation.
    let err = decode(
        Bytes::from_static(b"R\0\0\0\x01\0t\0d\xff\xff"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(err.kind(), DecodeErrorKind::Truncated { .. }),
        "{err}"
    );
    // A 2 GB value announced in a 20-byte message.
    let err = decode(
        Bytes::from_static(b"I\0\0\0\x01N\0\x01t\x7f\xff\xff\xffabcdefg"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.kind(),
        &DecodeErrorKind::Truncated {
            field: "tuple column value",
            needed: 0x7fff_ffff,
            available: 7
        }
    );
}

#[test]
fn negative_lengths() {
    let err = decode(
        Bytes::from_static(b"I\0\0\0\x01N\0\x01b\xff\xff\xff\xff"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        (err.offset(), err.kind()),
        (
            9,
            &DecodeErrorKind::NegativeLength {
                field: "tuple column value",
                length: -1
            }
        )
    );
    let err = decode(
        Bytes::from_static(b"M\0\0\0\0\0\0\0\0\0p\0\x80\0\0\0"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert!(matches!(
        err.kind(),
        DecodeErrorKind::NegativeLength {
            field: "content",
            ..
        }
    ));
}

#[test]
fn strings_must_be_terminated_utf8() {
    let err = decode(
        Bytes::from_static(b"O\0\0\0\0\0\0\0\x01node"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        (err.offset(), err.kind()),
        (
            9,
            &DecodeErrorKind::UnterminatedString {
                field: "origin name"
            }
        )
    );
    let err = decode(
        Bytes::from_static(b"R\0\0\0\x01public\0t\xff\xfe\0d\0\0"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        (err.offset(), err.kind()),
        (
            12,
            &DecodeErrorKind::InvalidUtf8 {
                field: "relation name"
            }
        )
    );
}

#[test]
fn invalid_flag_bytes() {
    let err = decode(
        Bytes::from_static(b"R\0\0\0\x01\0t\0x\0\0"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.kind(),
        &DecodeErrorKind::UnknownReplicaIdentity { byte: b'x' }
    );
    let err = decode(
        Bytes::from_static(b"S\0\0\0\x01\x02"),
        ProtocolVersion::V2,
        false,
    )
    .unwrap_err();
    assert_eq!(
        (err.offset(), err.kind()),
        (
            5,
            &DecodeErrorKind::InvalidFlags {
                field: "first_segment",
                value: 2
            }
        )
    );
    let err = decode(
        Bytes::from_static(b"M\x03\0\0\0\0\0\0\0\0p\0\0\0\0\0"),
        ProtocolVersion::V1,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.kind(),
        &DecodeErrorKind::InvalidFlags {
            field: "flags",
            value: 3
        }
    );
}

#[test]
fn truncate_keeps_unknown_option_bits() {
    let bytes = Bytes::from_static(b"T\0\0\0\x01\x86\0\0\x40\x00");
    let msg = decode(bytes.clone(), ProtocolVersion::V1, false).unwrap();
    assert_eq!(
        msg,
        LogicalMessage::Truncate(Truncate {
            xid: None,
            cascade: false,
            restart_identity: true,
            other_options: 0x84,
            relation_oids: vec![0x4000],
        })
    );
    assert_eq!(enc(&msg, ProtocolVersion::V1), bytes);
}

// ---------------------------------------------------------------------------
// The stream-tracking decoder.

fn feed(decoder: &mut Decoder, msg: &LogicalMessage) -> Result<LogicalMessage, DecodeError> {
    decoder.decode(enc(msg, decoder.version()))
}

#[test]
fn decoder_tracks_streamed_blocks() {
    let mut d = Decoder::new(ProtocolVersion::V2);
    let start = LogicalMessage::StreamStart(StreamStart {
        xid: 900,
        first_segment: true,
    });
    let streamed_insert = LogicalMessage::Insert(Insert {
        xid: Some(901),
        relation_oid: 1,
        new: tuple(vec![text("a")]),
    });
    let plain_insert = LogicalMessage::Insert(Insert {
        xid: None,
        relation_oid: 1,
        new: tuple(vec![text("a")]),
    });
    assert_eq!(feed(&mut d, &start), Ok(start.clone()));
    assert_eq!(d.stream_xid(), Some(900));
    assert_eq!(feed(&mut d, &streamed_insert), Ok(streamed_insert.clone()));
    // Nested Stream Start: error, state unchanged.
    let err = feed(&mut d, &start).unwrap_err();
    assert_eq!(
        err.kind(),
        &DecodeErrorKind::StreamStartInStream { open_xid: 900 }
    );
    assert!(d.in_stream());
    // Transaction boundaries are not allowed inside a block.
    let begin = samples()[0].clone();
    let err = feed(&mut d, &begin).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::NotAllowedInStream);
    assert_eq!(
        err.to_string(),
        "pgoutput Begin at offset 0: not allowed between Stream Start and Stream Stop"
    );
    assert_eq!(
        feed(&mut d, &LogicalMessage::StreamStop),
        Ok(LogicalMessage::StreamStop)
    );
    assert!(!d.in_stream());
    // Outside the block, no xid.
    assert_eq!(feed(&mut d, &plain_insert), Ok(plain_insert));
    let err = feed(&mut d, &LogicalMessage::StreamStop).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::StreamStopOutsideStream);
    // Reset forgets an open block.
    feed(&mut d, &start).unwrap();
    d.reset();
    assert!(!d.in_stream());
}

// ---------------------------------------------------------------------------
// The benchmark stream captured from PostgreSQL 15 (see tests/fixtures/README.md). The
// captures of every message kind from PostgreSQL 15 and 18 are checked by the integration
// tests (`tests/capture/`).

const FIXTURES: [(&str, &[u8]); 1] = [(
    "pg15-v1-oltp",
    include_bytes!("../../tests/fixtures/pg15-v1-oltp.pgoutput"),
)];

fn fixture(name: &str) -> (Fixture, Vec<LogicalMessage>) {
    let (_, file) = FIXTURES.iter().find(|(n, _)| *n == name).unwrap();
    let fixture = Fixture::parse(&Bytes::from_static(file)).unwrap();
    assert_eq!(fixture.server_version_num / 10_000, 15);
    let mut decoder = Decoder::new(fixture.protocol_version);
    let messages = fixture
        .messages
        .iter()
        .map(|m| {
            decoder
                .decode(m.data.clone())
                .unwrap_or_else(|e| panic!("{name} at {}: {e}", m.lsn))
        })
        .collect();
    assert!(!decoder.in_stream());
    (fixture, messages)
}

fn count(messages: &[LogicalMessage], kind: MessageKind) -> usize {
    messages.iter().filter(|m| m.kind() == kind).count()
}

fn column_text(value: ColumnRef<'_>) -> &str {
    match value {
        ColumnRef::Text(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn fixtures_decode_and_re_encode_exactly() {
    for (name, _) in FIXTURES {
        let (fixture, messages) = fixture(name);
        for (m, decoded) in fixture.messages.iter().zip(&messages) {
            let mut out = BytesMut::new();
            encode(decoded, fixture.protocol_version, &mut out).unwrap();
            assert_eq!(out.freeze(), m.data, "{name} at {}", m.lsn);
        }
    }
}

#[test]
fn oltp_fixture_content() {
    let (fixture, messages) = fixture("pg15-v1-oltp");
    assert_eq!(fixture.protocol_version, ProtocolVersion::V1);
    assert_eq!(count(&messages, MessageKind::Insert), 6_000);
    assert_eq!(count(&messages, MessageKind::Update), 3_000);
    assert_eq!(count(&messages, MessageKind::Delete), 500);
    assert_eq!(count(&messages, MessageKind::Begin), 190);
    assert_eq!(count(&messages, MessageKind::Commit), 190);
    let LogicalMessage::Relation(rel) = &messages[1] else {
        panic!("{:?}", messages[1])
    };
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "customers")
    );
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    let names: Vec<_> = rel.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "name",
            "email",
            "city",
            "status",
            "balance",
            "created_at",
            "notes"
        ]
    );
    assert!(rel.columns[0].is_key() && !rel.columns[1].is_key());
    assert_eq!(rel.columns[0].type_oid, 20);
    assert_eq!(rel.columns[5].type_modifier, (12 << 16) + 2 + 4);
    let LogicalMessage::Insert(first) = &messages[2] else {
        panic!("{:?}", messages[2])
    };
    assert_eq!(first.relation_oid, rel.oid);
    let values: Vec<_> = first.new.iter().map(column_text).collect();
    assert_eq!(
        values,
        [
            "1",
            "Customer 1",
            "user1@example.com",
            "Lisbon",
            "pending",
            "0.37",
            "2026-01-01 00:01:00+00",
            "note c4ca4238a0b923820dcc509a6f75849b for 1"
        ]
    );
    // Commit follows its Begin with the same LSN.
    let (LogicalMessage::Begin(b), Some(LogicalMessage::Commit(c))) = (
        &messages[0],
        messages.iter().find(|m| m.kind() == MessageKind::Commit),
    ) else {
        panic!()
    };
    assert_eq!(b.final_lsn, c.commit_lsn);
    assert_eq!(b.commit_time, c.commit_time);
    // Deletes carry the key only.
    let delete = messages
        .iter()
        .find_map(|m| match m {
            LogicalMessage::Delete(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let OldTuple::Key(key) = &delete.old else {
        panic!("{delete:?}")
    };
    assert_eq!(column_text(key.get(0).unwrap()), "5001");
    assert!(key.iter().skip(1).all(|c| c == ColumnRef::Null));
}

// ---------------------------------------------------------------------------
// Property tests.

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

/// Names as PostgreSQL sends them: any UTF-8 without NUL.
fn arb_name() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn arb_lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn arb_time() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

fn arb_tuple() -> impl Strategy<Value = TupleData> {
    prop::collection::vec(
        prop_oneof![
            Just(ColumnValue::Null),
            Just(ColumnValue::UnchangedToast),
            arb_bytes().prop_map(ColumnValue::Text),
            arb_bytes().prop_map(ColumnValue::Binary),
        ],
        0..10,
    )
    .prop_map(TupleData::new)
}

fn arb_old() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        arb_tuple().prop_map(OldTuple::Key),
        arb_tuple().prop_map(OldTuple::Full)
    ]
}

fn arb_replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn arb_message() -> impl Strategy<Value = LogicalMessage> {
    let xid = || any::<Option<u32>>();
    prop_oneof![
        (arb_lsn(), arb_time(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
            LogicalMessage::Begin(Begin {
                final_lsn,
                commit_time,
                xid,
            })
        }),
        (xid(), any::<bool>(), arb_lsn(), arb_name(), arb_bytes()).prop_map(
            |(xid, transactional, lsn, prefix, content)| LogicalMessage::Message(Message {
                xid,
                transactional,
                lsn,
                prefix,
                content,
            })
        ),
        (any::<u8>(), arb_lsn(), arb_lsn(), arb_time()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time)| LogicalMessage::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time,
            })
        ),
        (arb_lsn(), arb_name())
            .prop_map(|(commit_lsn, name)| LogicalMessage::Origin(Origin { commit_lsn, name })),
        (
            xid(),
            any::<u32>(),
            arb_name(),
            arb_name(),
            arb_replica_identity(),
            prop::collection::vec(
                (any::<u8>(), arb_name(), any::<u32>(), any::<i32>()).prop_map(
                    |(flags, name, type_oid, type_modifier)| RelationColumn {
                        flags,
                        name,
                        type_oid,
                        type_modifier,
                    }
                ),
                0..6
            )
        )
            .prop_map(|(xid, oid, namespace, name, replica_identity, columns)| {
                LogicalMessage::Relation(Relation {
                    xid,
                    oid,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }),
        (xid(), any::<u32>(), arb_name(), arb_name()).prop_map(|(xid, oid, namespace, name)| {
            LogicalMessage::Type(Type {
                xid,
                oid,
                namespace,
                name,
            })
        }),
        (xid(), any::<u32>(), arb_tuple()).prop_map(|(xid, relation_oid, new)| {
            LogicalMessage::Insert(Insert {
                xid,
                relation_oid,
                new,
            })
        }),
        (
            xid(),
            any::<u32>(),
            prop::option::of(arb_old()),
            arb_tuple()
        )
            .prop_map(
                |(xid, relation_oid, old, new)| LogicalMessage::Update(Update {
                    xid,
                    relation_oid,
                    old,
                    new,
                })
            ),
        (xid(), any::<u32>(), arb_old()).prop_map(|(xid, relation_oid, old)| {
            LogicalMessage::Delete(Delete {
                xid,
                relation_oid,
                old,
            })
        }),
        (
            xid(),
            any::<bool>(),
            any::<bool>(),
            any::<u8>(),
            prop::collection::vec(any::<u32>(), 0..6)
        )
            .prop_map(|(xid, cascade, restart_identity, other, relation_oids)| {
                LogicalMessage::Truncate(Truncate {
                    xid,
                    cascade,
                    restart_identity,
                    other_options: other & !3,
                    relation_oids,
                })
            }),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            LogicalMessage::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(LogicalMessage::StreamStop),
        (any::<u32>(), any::<u8>(), arb_lsn(), arb_lsn(), arb_time()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| {
                LogicalMessage::StreamCommit(StreamCommit {
                    xid,
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                })
            }
        ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::option::of((arb_lsn(), arb_time()))
        )
            .prop_map(|(xid, subxid, abort)| {
                LogicalMessage::StreamAbort(StreamAbort {
                    xid,
                    subxid,
                    abort: abort.map(|(abort_lsn, abort_time)| StreamAbortInfo {
                        abort_lsn,
                        abort_time,
                    }),
                })
            }),
        (arb_lsn(), arb_lsn(), arb_time(), any::<u32>(), arb_name()).prop_map(
            |(prepare_lsn, end_lsn, prepare_time, xid, gid)| {
                LogicalMessage::BeginPrepare(BeginPrepare {
                    prepare_lsn,
                    end_lsn,
                    prepare_time,
                    xid,
                    gid,
                })
            }
        ),
        (
            any::<u8>(),
            arb_lsn(),
            arb_lsn(),
            arb_time(),
            any::<u32>(),
            arb_name()
        )
            .prop_map(|(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| {
                LogicalMessage::Prepare(Prepare {
                    flags,
                    prepare_lsn,
                    end_lsn,
                    prepare_time,
                    xid,
                    gid,
                })
            }),
        (
            any::<u8>(),
            arb_lsn(),
            arb_lsn(),
            arb_time(),
            any::<u32>(),
            arb_name()
        )
            .prop_map(|(flags, commit_lsn, end_lsn, commit_time, xid, gid)| {
                LogicalMessage::CommitPrepared(CommitPrepared {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid,
                })
            }),
        (
            any::<u8>(),
            arb_lsn(),
            arb_lsn(),
            arb_time(),
            arb_time(),
            any::<u32>(),
            arb_name()
        )
            .prop_map(
                |(
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid,
                )| {
                    LogicalMessage::RollbackPrepared(RollbackPrepared {
                        flags,
                        prepare_end_lsn,
                        rollback_end_lsn,
                        prepare_time,
                        rollback_time,
                        xid,
                        gid,
                    })
                }
            ),
        (
            any::<u8>(),
            arb_lsn(),
            arb_lsn(),
            arb_time(),
            any::<u32>(),
            arb_name()
        )
            .prop_map(|(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| {
                LogicalMessage::StreamPrepare(StreamPrepare {
                    flags,
                    prepare_lsn,
                    end_lsn,
                    prepare_time,
                    xid,
                    gid,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// encode → decode → equal, in every version that can carry the message;
    /// and the encoder refuses exactly the versions that cannot.
    #[test]
    fn round_trip_every_message_in_every_version(msg in arb_message()) {
        let xid = stream_xid(&msg);
        let mut carried = 0;
        for version in ALL_VERSIONS {
            let mut out = BytesMut::new();
            let abort_info = matches!(&msg, LogicalMessage::StreamAbort(a) if a.abort.is_some());
            let fits = version >= msg.kind().min_version()
                && (xid.is_none() || version.supports_streaming())
                && (!abort_info || version.supports_parallel_streaming());
            match encode(&msg, version, &mut out) {
                Ok(()) => {
                    prop_assert!(fits, "{:?} encoded in {}", msg, version);
                    carried += 1;
                    let bytes = out.freeze();
                    let decoded = decode(bytes.clone(), version, xid.is_some());
                    prop_assert_eq!(decoded.as_ref(), Ok(&msg), "in {}", version);
                    // Messages without a stream xid field decode the same
                    // inside and outside a streamed block.
                    if !msg.kind().has_stream_xid() {
                        prop_assert_eq!(decode(bytes, version, true), Ok(msg.clone()));
                    }
                }
                Err(e) => prop_assert!(!fits, "{:?} refused in {}: {}", msg, version, e),
            }
        }
        prop_assert!(carried > 0);
    }

    /// Any bytes: no panic, and whatever decodes re-encodes to the same bytes.
    #[test]
    fn arbitrary_bytes_decode_totally(
        data in prop::collection::vec(any::<u8>(), 0..64),
        version_index in 0usize..4,
        in_stream in any::<bool>(),
    ) {
        let version = ALL_VERSIONS[version_index];
        let data = Bytes::from(data);
        if let Ok(msg) = decode(data.clone(), version, in_stream) {
            let mut out = BytesMut::new();
            prop_assert_eq!(encode(&msg, version, &mut out), Ok(()));
            prop_assert_eq!(out.freeze(), data);
        }
    }

    /// Valid messages with one byte changed: no panic, and exact re-encoding.
    #[test]
    fn mutated_messages_decode_totally(
        msg in arb_message(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let version = ProtocolVersion::V4;
        let mut out = BytesMut::new();
        prop_assume!(encode(&msg, version, &mut out).is_ok());
        let mut data = out.to_vec();
        let i = position.index(data.len());
        data[i] = byte;
        let data = Bytes::from(data);
        let in_stream = stream_xid(&msg).is_some();
        if let Ok(decoded) = decode(data.clone(), version, in_stream) {
            let mut again = BytesMut::new();
            prop_assert_eq!(encode(&decoded, version, &mut again), Ok(()));
            prop_assert_eq!(again.freeze(), data);
        }
    }
}
