//! A fake PostgreSQL server (a `TcpListener` speaking just enough of the protocol) that does
//! what a real one never should: absurd lengths, truncated frames, unknown tags, garbage
//! inside CopyData, hostile authentication. Every case must end in the right typed error —
//! retryable or not — promptly, without a panic and without the client buffering what a
//! lying header claims. It also checks what is hard to provoke from a real server: frames
//! split into single bytes, standby status updates on request, on the timer and on demand,
//! and NoticeResponse going to `tracing`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pgrepl_core::connection::replication::{
    PgOutputOptions, ReplicationClient, ReplicationEvent, ReplicationStream, StreamSettings,
};
use pgrepl_core::connection::{Client, Error};
use pgrepl_core::pgoutput::{self, Begin, Commit, LogicalMessage, Message, ProtocolVersion};
use pgrepl_core::replication_message::{
    PrimaryKeepalive, ReplicationMessage, StandbyMessage, StandbyStatusUpdate, XLogData,
};
use pgrepl_core::{Lsn, PgTimestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::conn_util::{assert_hides, config};

/// How long any expected reaction may take.
const PROMPTLY: Duration = Duration::from_secs(5);

/// One frame: type byte, length counting itself, body.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&i32::try_from(body.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn error_response(severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend(cstr(value));
    }
    body.push(0);
    frame(b'E', &body)
}

fn notice(message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "WARNING"),
        (b'V', "WARNING"),
        (b'C', "01000"),
        (b'M', message),
    ] {
        body.push(field);
        body.extend(cstr(value));
    }
    body.push(0);
    frame(b'N', &body)
}

fn copy_data(payload: &[u8]) -> Vec<u8> {
    frame(b'd', payload)
}

fn xlog_data(lsn: u64, data: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    ReplicationMessage::XLogData(XLogData {
        wal_start: Lsn(lsn),
        wal_end: Lsn(lsn),
        send_time: PgTimestamp::now(),
        data: Bytes::copy_from_slice(data),
    })
    .encode(&mut out);
    copy_data(&out)
}

fn keepalive(wal_end: u64, reply_requested: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
        wal_end: Lsn(wal_end),
        send_time: PgTimestamp::now(),
        reply_requested,
    })
    .encode(&mut out);
    copy_data(&out)
}

fn pgoutput(message: &LogicalMessage) -> Vec<u8> {
    let mut out = BytesMut::new();
    pgoutput::encode(message, ProtocolVersion::V3, &mut out).unwrap();
    out.to_vec()
}

fn begin(xid: u32) -> LogicalMessage {
    LogicalMessage::Begin(Begin {
        final_lsn: Lsn(0x2000),
        commit_time: PgTimestamp::now(),
        xid,
    })
}

fn commit() -> LogicalMessage {
    LogicalMessage::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(0x2000),
        end_lsn: Lsn(0x2100),
        commit_time: PgTimestamp::now(),
    })
}

/// The server side of one connection.
struct Peer {
    socket: TcpStream,
    /// The start-up packet's parameters.
    params: HashMap<String, String>,
}

impl Peer {
    async fn send(&mut self, bytes: &[u8]) {
        // The client may have hung up already (that is often the point); ignore it.
        let _ = self.socket.write_all(bytes).await;
        let _ = self.socket.flush().await;
    }

    /// Reads the SSLRequest (answered `N`) and the start-up packet.
    async fn accept_startup(&mut self) {
        loop {
            let len = self.socket.read_i32().await.unwrap();
            let mut body = vec![0; usize::try_from(len - 4).unwrap()];
            self.socket.read_exact(&mut body).await.unwrap();
            let code = u32::from_be_bytes(body[..4].try_into().unwrap());
            if code == 80_877_103 {
                self.send(b"N").await;
                continue;
            }
            assert_eq!(code, 196_608, "protocol 3.0 start-up packet");
            let fields: Vec<&[u8]> = body[4..].split(|b| *b == 0).collect();
            for pair in fields.chunks(2) {
                if let [k, v] = pair
                    && !k.is_empty()
                {
                    self.params.insert(
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    );
                }
            }
            return;
        }
    }

    /// AuthenticationOk, then the usual greeting of a PostgreSQL 15 server.
    async fn greet(&mut self) {
        self.send(&frame(b'R', &0i32.to_be_bytes())).await;
        self.greet_after_auth().await;
    }

    async fn greet_after_auth(&mut self) {
        let mut out = Vec::new();
        out.extend(frame(
            b'S',
            &[cstr("server_version"), cstr("15.4")].concat(),
        ));
        out.extend(frame(
            b'K',
            &[7i32.to_be_bytes(), 99i32.to_be_bytes()].concat(),
        ));
        out.extend(frame(b'Z', b"I"));
        self.send(&out).await;
    }

    /// The next frontend message, `None` at EOF.
    async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let tag = self.socket.read_u8().await.ok()?;
        let len = self.socket.read_i32().await.ok()?;
        let mut body = vec![0; usize::try_from(len - 4).ok()?];
        self.socket.read_exact(&mut body).await.ok()?;
        Some((tag, body))
    }

    /// Answers queries until START_REPLICATION, which gets CopyBothResponse.
    /// `SHOW wal_sender_timeout` gets `wal_sender_timeout`.
    async fn until_copy_both(&mut self, wal_sender_timeout: &str) {
        loop {
            let (tag, body) = self
                .recv()
                .await
                .expect("the client hung up before streaming");
            assert_eq!(tag, b'Q', "only simple queries in a replication session");
            let query = String::from_utf8_lossy(&body[..body.len() - 1]).into_owned();
            if query.starts_with("START_REPLICATION") {
                self.send(&frame(b'W', &[0, 0, 0])).await;
                return;
            }
            assert_eq!(query, "SHOW wal_sender_timeout");
            let mut row_desc = vec![0, 1];
            row_desc.extend(cstr("wal_sender_timeout"));
            row_desc.extend([
                0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
            ]);
            let mut row = vec![0, 1];
            row.extend(
                i32::try_from(wal_sender_timeout.len())
                    .unwrap()
                    .to_be_bytes(),
            );
            row.extend(wal_sender_timeout.as_bytes());
            let mut out = frame(b'T', &row_desc);
            out.extend(frame(b'D', &row));
            out.extend(frame(b'C', &cstr("SHOW")));
            out.extend(frame(b'Z', b"I"));
            self.send(&out).await;
        }
    }

    /// The next standby status update from the client, skipping nothing else (the client
    /// sends nothing else during CopyBoth).
    async fn status_update(&mut self) -> Option<StandbyStatusUpdate> {
        let (tag, body) = self.recv().await?;
        assert_eq!(
            tag, b'd',
            "only CopyData during CopyBoth, got {}",
            tag as char
        );
        match StandbyMessage::decode(Bytes::from(body)).unwrap() {
            StandbyMessage::StandbyStatusUpdate(u) => Some(u),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A fake server on a free port that runs `script` for its first connection.
async fn fake_server<F, Fut, T>(script: F) -> (u16, JoinHandle<T>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        script(Peer {
            socket,
            params: HashMap::new(),
        })
        .await
    });
    (port, handle)
}

fn dsn(port: u16, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user=fake dbname=fakedb {extra}")
}

fn options() -> PgOutputOptions {
    PgOutputOptions {
        publication_names: vec!["p".into()],
        ..PgOutputOptions::default()
    }
}

/// Connects a replication session to a fake server that, once streaming, sends `bytes` and
/// then either hangs up or keeps the connection open (sending nothing more).
async fn stream_from(
    bytes: Vec<u8>,
    hang_up: bool,
    max_message_len: Option<usize>,
) -> (ReplicationStream, JoinHandle<()>) {
    stream_with(bytes, hang_up, max_message_len, StreamSettings::default()).await
}

/// [`stream_from`] with stream settings of the caller's.
async fn stream_with(
    bytes: Vec<u8>,
    hang_up: bool,
    max_message_len: Option<usize>,
    settings: StreamSettings,
) -> (ReplicationStream, JoinHandle<()>) {
    let (port, server) = fake_server(move |mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
        peer.until_copy_both("60s").await;
        peer.send(&bytes).await;
        if hang_up {
            return;
        }
        // Keep the connection open, reading (and dropping) status updates, until the client
        // goes away.
        while peer.recv().await.is_some() {}
    })
    .await;
    let mut repl = ReplicationClient::connect(&config(&dsn(port, "")))
        .await
        .unwrap();
    if let Some(len) = max_message_len {
        repl.connection().set_max_message_len(len);
    }
    let stream = repl
        .start_replication("s", Lsn(0), &options(), settings)
        .await
        .unwrap();
    (stream, server)
}

/// The error that ends the stream; keepalives and messages before it are skipped.
async fn ending(stream: &mut ReplicationStream) -> Error {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next_event()).await {
            Err(_) => panic!("no error within {PROMPTLY:?}: the client is waiting for data"),
            Ok(None) => panic!("the stream ended without an error"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                assert!(
                    stream.next_event().await.is_none(),
                    "events after the ending error"
                );
                return e;
            }
        }
    }
}

/// What a hostile server sends once streaming, and what the client must make of it.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    hang_up: bool,
    max_message_len: Option<usize>,
    check: fn(&Error) -> bool,
    retryable: bool,
}

fn protocol_error(err: &Error, needle: &str) -> bool {
    matches!(err, Error::Protocol { .. }) && err.to_string().contains(needle)
}

fn hostile_cases() -> Vec<Case> {
    let mut truncated = frame(b'd', &[0; 1000]);
    truncated.truncate(15);
    let mut lying_relation = vec![b'R'];
    lying_relation.extend(7u32.to_be_bytes()); // relation oid
    lying_relation.extend(cstr("public"));
    lying_relation.extend(cstr("t"));
    lying_relation.push(b'd');
    lying_relation.extend(u16::MAX.to_be_bytes()); // 65535 columns, none sent
    vec![
        Case {
            name: "length 0x7fffffff, nothing after",
            bytes: vec![b'd', 0x7f, 0xff, 0xff, 0xff],
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "exceeds the limit"),
            retryable: false,
        },
        Case {
            name: "100 MB claimed over a 1 MiB limit, 1 KiB sent",
            bytes: [&[b'd'][..], &(100i32 << 20).to_be_bytes(), &[0; 1024]].concat(),
            hang_up: false,
            max_message_len: Some(1 << 20),
            check: |e| protocol_error(e, "exceeds the limit of 1048576 bytes"),
            retryable: false,
        },
        Case {
            name: "negative length",
            bytes: vec![b'd', 0xff, 0xff, 0xff, 0xf0],
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "below the minimum"),
            retryable: false,
        },
        Case {
            name: "length 3",
            bytes: vec![b'd', 0, 0, 0, 3],
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "below the minimum"),
            retryable: false,
        },
        Case {
            name: "truncated frame, then EOF",
            bytes: truncated,
            hang_up: true,
            max_message_len: None,
            check: |e| matches!(e, Error::Closed { .. }),
            retryable: true,
        },
        Case {
            name: "EOF right after CopyBothResponse",
            bytes: Vec::new(),
            hang_up: true,
            max_message_len: None,
            check: |e| matches!(e, Error::Closed { .. }),
            retryable: true,
        },
        Case {
            name: "unknown message type",
            bytes: frame(b'?', b"whatever"),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "unknown (type byte 0x3f)"),
            retryable: false,
        },
        Case {
            name: "malformed known message (ReadyForQuery with a bad status)",
            bytes: frame(b'Z', b"Q"),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "ReadyForQuery"),
            retryable: false,
        },
        Case {
            name: "legal but out-of-place message (ReadyForQuery)",
            bytes: frame(b'Z', b"I"),
            hang_up: false,
            max_message_len: None,
            check: |e| matches!(e, Error::Unexpected { .. }),
            retryable: false,
        },
        Case {
            name: "XLogData shorter than its header",
            bytes: copy_data(&[b'w', 0, 0, 0]),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "CopyData"),
            retryable: false,
        },
        Case {
            name: "unknown CopyData kind",
            bytes: copy_data(b"zzz"),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "CopyData"),
            retryable: false,
        },
        Case {
            name: "empty CopyData",
            bytes: copy_data(b""),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "CopyData"),
            retryable: false,
        },
        Case {
            name: "undecodable pgoutput",
            bytes: xlog_data(0x1000, b"\xffjunk"),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "XLogData"),
            retryable: false,
        },
        Case {
            name: "pgoutput Relation claiming 65535 columns",
            bytes: xlog_data(0x1000, &lying_relation),
            hang_up: false,
            max_message_len: None,
            check: |e| protocol_error(e, "XLogData"),
            retryable: false,
        },
        Case {
            name: "ErrorResponse 57P01 (walsender terminated)",
            bytes: error_response(
                "FATAL",
                "57P01",
                "terminating connection due to administrator command",
            ),
            hang_up: true,
            max_message_len: None,
            check: |e| {
                e.code() == Some("57P01")
                    && e.to_string()
                        .contains("terminating connection due to administrator command")
            },
            retryable: true,
        },
        Case {
            name: "ErrorResponse 42501 (permission)",
            bytes: error_response("ERROR", "42501", "permission denied for table t"),
            hang_up: true,
            max_message_len: None,
            check: |e| e.code() == Some("42501"),
            retryable: false,
        },
        Case {
            name: "CopyDone",
            bytes: frame(b'c', b""),
            hang_up: false,
            max_message_len: None,
            check: |e| matches!(e, Error::StreamEnded { .. }),
            retryable: true,
        },
        Case {
            name: "CommandComplete of a stopping walsender",
            bytes: frame(b'C', &cstr("COPY 0")),
            hang_up: true,
            max_message_len: None,
            check: |e| matches!(e, Error::StreamEnded { .. }),
            retryable: true,
        },
    ]
}

/// Valid traffic that must get through before the hostile bytes: the client reports the
/// error only after the messages that came first.
fn valid_prefix() -> Vec<u8> {
    [
        keepalive(0x1000, false),
        xlog_data(0, &pgoutput(&begin(42))),
        xlog_data(0x2100, &pgoutput(&commit())),
    ]
    .concat()
}

#[tokio::test]
async fn hostile_frames_end_the_stream_with_typed_errors() {
    for case in hostile_cases() {
        let mut bytes = valid_prefix();
        bytes.extend(&case.bytes);
        let (mut stream, server) = stream_from(bytes, case.hang_up, case.max_message_len).await;
        // The valid messages arrive first, in order.
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            match tokio::time::timeout(PROMPTLY, stream.next_event())
                .await
                .unwrap()
                .unwrap()
            {
                Ok(ReplicationEvent::Keepalive { .. }) => kinds.push("keepalive"),
                Ok(ReplicationEvent::Message { message, .. }) => kinds.push(match message {
                    LogicalMessage::Begin(_) => "begin",
                    LogicalMessage::Commit(_) => "commit",
                    _ => "other",
                }),
                Err(e) => panic!("{}: error before the valid messages: {e:?}", case.name),
            }
        }
        assert_eq!(kinds, ["keepalive", "begin", "commit"], "{}", case.name);
        let err = ending(&mut stream).await;
        assert!((case.check)(&err), "{}: {err:?}", case.name);
        assert_eq!(err.is_retryable(), case.retryable, "{}: {err:?}", case.name);
        assert!(
            err.to_string().contains("127.0.0.1:"),
            "{}: names the server: {err}",
            case.name
        );
        drop(stream);
        tokio::time::timeout(PROMPTLY, server)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A valid stream written one byte at a time (each in its own TCP segment) decodes the same.
#[tokio::test]
async fn frames_split_into_single_bytes_decode() {
    let bytes = [
        xlog_data(0, &pgoutput(&begin(7))),
        keepalive(0x1800, false),
        xlog_data(0x2100, &pgoutput(&commit())),
    ]
    .concat();
    let (port, server) = fake_server(move |mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
        peer.until_copy_both("60s").await;
        peer.socket.set_nodelay(true).unwrap();
        for b in bytes {
            peer.send(&[b]).await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        while peer.recv().await.is_some() {}
    })
    .await;
    let repl = ReplicationClient::connect(&config(&dsn(port, "")))
        .await
        .unwrap();
    let mut stream = repl
        .start_replication("s", Lsn(0), &options(), StreamSettings::default())
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(PROMPTLY, stream.next_event())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        matches!(&got[0], ReplicationEvent::Message { message: LogicalMessage::Begin(b), .. } if b.xid == 7)
    );
    assert!(matches!(
        got[1],
        ReplicationEvent::Keepalive {
            wal_end: Lsn(0x1800),
            ..
        }
    ));
    assert!(matches!(
        &got[2],
        ReplicationEvent::Message { message: LogicalMessage::Commit(c), wal_start: Lsn(0x2100), .. }
            if c.end_lsn == Lsn(0x2100)
    ));
    assert_eq!(stream.received(), Lsn(0x2100));
    drop(stream);
    server.await.unwrap();
}

/// Standby status updates go out when a keepalive asks (at once, though the interval is a
/// minute), when the consumer asks (`send_status_now`, with what it `set_flushed`), and on
/// the timer — whose period is capped at a third of the server's `wal_sender_timeout`.
#[tokio::test]
async fn status_updates_on_request_on_demand_and_on_timer() {
    // On request and on demand, with no timer in sight (wal_sender_timeout 0: no cap).
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
        peer.until_copy_both("0").await;
        peer.send(&keepalive(0x5000, true)).await;
        let asked = Instant::now();
        let on_request = peer.status_update().await.unwrap();
        let request_latency = asked.elapsed();
        let on_demand = peer.status_update().await.unwrap();
        (on_request, request_latency, on_demand)
    })
    .await;
    let repl = ReplicationClient::connect(&config(&dsn(port, "")))
        .await
        .unwrap();
    let settings = StreamSettings {
        status_interval: Duration::from_secs(60),
        ..StreamSettings::default()
    };
    let mut stream = repl
        .start_replication("s", Lsn(0x100), &options(), settings)
        .await
        .unwrap();
    assert_eq!(stream.status_interval(), Duration::from_secs(60));
    let event = tokio::time::timeout(PROMPTLY, stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        event,
        ReplicationEvent::Keepalive {
            reply_requested: true,
            ..
        }
    ));
    stream.set_flushed(Lsn(0x4000));
    stream.send_status_now();
    let (on_request, latency, on_demand) = tokio::time::timeout(PROMPTLY, server)
        .await
        .unwrap()
        .unwrap();
    assert!(latency < Duration::from_secs(2), "reply after {latency:?}");
    // Written up to what the keepalive said; flushed only what the caller had reported (the
    // start position).
    assert_eq!(
        (
            on_request.write_lsn,
            on_request.flush_lsn,
            on_request.apply_lsn
        ),
        (Lsn(0x5000), Lsn(0x100), Lsn(0x100))
    );
    assert_eq!(
        (
            on_demand.write_lsn,
            on_demand.flush_lsn,
            on_demand.apply_lsn
        ),
        (Lsn(0x5000), Lsn(0x4000), Lsn(0x4000))
    );
    assert!(!on_demand.reply_requested);

    // On the timer: a configured minute capped to 200 ms by a wal_sender_timeout of 600 ms.
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
        peer.until_copy_both("600ms").await;
        let start = Instant::now();
        let mut updates = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            peer.status_update().await.unwrap();
            updates += 1;
        }
        updates
    })
    .await;
    let repl = ReplicationClient::connect(&config(&dsn(port, "")))
        .await
        .unwrap();
    let stream = repl
        .start_replication("s", Lsn(0), &options(), settings)
        .await
        .unwrap();
    assert_eq!(stream.status_interval(), Duration::from_millis(200));
    let updates = tokio::time::timeout(PROMPTLY, server)
        .await
        .unwrap()
        .unwrap();
    // About 7; a configured minute would give none. Loose bounds: the machine may be busy.
    assert!((3..=12).contains(&updates), "{updates} updates in 1.5 s");
    drop(stream);
}

/// Events recorded by a tiny `tracing` subscriber: level and rendered fields.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// NoticeResponse, during start-up or in the middle of the stream, goes to `tracing` with its
/// severity and code (a WARNING as a warning), and changes nothing else.
#[tokio::test(flavor = "current_thread")]
async fn notices_go_to_tracing() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.clone());
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.send(&frame(b'R', &0i32.to_be_bytes())).await;
        peer.send(&notice("notice during start-up")).await;
        peer.greet_after_auth().await;
        peer.until_copy_both("60s").await;
        peer.send(
            &[
                notice("notice while streaming"),
                xlog_data(0, &pgoutput(&begin(5))),
            ]
            .concat(),
        )
        .await;
        while peer.recv().await.is_some() {}
    })
    .await;
    let repl = ReplicationClient::connect(&config(&dsn(port, "")))
        .await
        .unwrap();
    let mut stream = repl
        .start_replication("s", Lsn(0), &options(), StreamSettings::default())
        .await
        .unwrap();
    let event = tokio::time::timeout(PROMPTLY, stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        event,
        ReplicationEvent::Message {
            message: LogicalMessage::Begin(_),
            ..
        }
    ));
    let lines = captured.0.lock().unwrap().clone();
    for text in ["notice during start-up", "notice while streaming"] {
        assert!(
            lines.iter().any(|l| l.starts_with("WARN ")
                && l.contains(text)
                && l.contains("severity=WARNING")
                && l.contains("code=01000")),
            "{text} not in {lines:#?}"
        );
    }
    drop(stream);
    server.await.unwrap();
}

/// The start-up packet carries what the DSN says, and `replication=database` for a
/// replication session; an `N` to SSLRequest falls back to plaintext under `prefer` and is
/// `TlsRefused` under `require`; an answer that is neither `S` nor `N` is a protocol error.
#[tokio::test]
async fn startup_packet_and_ssl_request_answers() {
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
        peer.params
    })
    .await;
    let repl = ReplicationClient::connect(&config(&dsn(port, "application_name=fake_app")))
        .await
        .unwrap();
    let params = server.await.unwrap();
    assert_eq!(params.get("user").map(String::as_str), Some("fake"));
    assert_eq!(params.get("database").map(String::as_str), Some("fakedb"));
    assert_eq!(
        params.get("replication").map(String::as_str),
        Some("database")
    );
    assert_eq!(
        params.get("application_name").map(String::as_str),
        Some("fake_app")
    );
    drop(repl);

    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
        peer.params
    })
    .await;
    let mut client = Client::connect(&config(&dsn(port, "sslmode=prefer")))
        .await
        .unwrap();
    assert!(!client.connection_ref().is_tls());
    assert_eq!(client.connection().server_version_num(), Some(150_004));
    assert_eq!(server.await.unwrap().get("replication"), None);

    let (port, server) = fake_server(|mut peer| async move {
        let _ = peer.socket.read_i32().await;
        let _ = peer.socket.read_i32().await;
        peer.send(b"N").await;
    })
    .await;
    let err = Client::connect(&config(&dsn(port, "sslmode=require")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TlsRefused { .. }), "{err:?}");
    assert!(!err.is_retryable());
    server.await.unwrap();

    let (port, server) = fake_server(|mut peer| async move {
        let _ = peer.socket.read_i32().await;
        let _ = peer.socket.read_i32().await;
        peer.send(b"E").await;
    })
    .await;
    let err = Client::connect(&config(&dsn(port, "sslmode=prefer")))
        .await
        .unwrap_err();
    assert!(
        protocol_error(&err, "expected 'S' or 'N', got 0x45"),
        "{err:?}"
    );
    server.await.unwrap();
}

/// A server that authenticates in ways it should not: an unsupported method, skipping the
/// SCRAM exchange when channel binding is required, a SCRAM iteration count meant to burn
/// CPU, a SCRAM signature that proves nothing, an absurd length. Each is refused with a
/// typed error that never shows the password.
#[tokio::test]
async fn hostile_authentication_is_refused() {
    const PASSWORD: &str = "hunter2-Secret";

    // An unsupported method (GSSAPI).
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.send(&frame(b'R', &7i32.to_be_bytes())).await;
    })
    .await;
    let err = Client::connect(&config(&dsn(port, &format!("password={PASSWORD}"))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("does not support"), "{err}");
    assert_hides(&err, PASSWORD);
    server.await.unwrap();

    // AuthenticationOk without any exchange, while channel binding is required.
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.greet().await;
    })
    .await;
    let err = Client::connect(&config(&dsn(
        port,
        &format!("password={PASSWORD} channel_binding=require"),
    )))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(
        err.to_string().contains("without SCRAM channel binding"),
        "{err}"
    );
    server.await.unwrap();

    // SCRAM: a huge iteration count, then (second run) a server signature that is wrong.
    for hostile_iterations in [true, false] {
        let (port, server) = fake_server(move |mut peer| async move {
            peer.accept_startup().await;
            let mut sasl = 10i32.to_be_bytes().to_vec();
            sasl.extend(cstr("SCRAM-SHA-256"));
            sasl.push(0);
            peer.send(&frame(b'R', &sasl)).await;
            let (tag, body) = peer.recv().await.unwrap();
            assert_eq!(tag, b'p');
            let text = String::from_utf8_lossy(&body).into_owned();
            let nonce = text
                .split("r=")
                .nth(1)
                .unwrap()
                .trim_end_matches('\0')
                .to_owned();
            let iterations = if hostile_iterations {
                2_000_000_000
            } else {
                4096
            };
            let mut cont = 11i32.to_be_bytes().to_vec();
            cont.extend(format!("r={nonce}server,s=c2FsdHNhbHRzYWx0,i={iterations}").as_bytes());
            peer.send(&frame(b'R', &cont)).await;
            if hostile_iterations {
                // The client must give up on its own, without answering.
                return peer.recv().await.is_none();
            }
            peer.recv().await.unwrap();
            let mut fin = 12i32.to_be_bytes().to_vec();
            fin.extend(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
            peer.send(&frame(b'R', &fin)).await;
            peer.recv().await.is_none()
        })
        .await;
        let started = Instant::now();
        let err = tokio::time::timeout(
            PROMPTLY,
            Client::connect(&config(&dsn(port, &format!("password={PASSWORD}")))),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
        assert!(!err.is_retryable());
        let expected = if hostile_iterations {
            "challenge is invalid"
        } else {
            "could not prove"
        };
        assert!(err.to_string().contains(expected), "{err}");
        if hostile_iterations {
            // Refused before any PBKDF2 round: 2e9 of them would take minutes.
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "took {:?}",
                started.elapsed()
            );
        }
        assert_hides(&err, PASSWORD);
        assert!(
            tokio::time::timeout(PROMPTLY, server)
                .await
                .unwrap()
                .unwrap(),
            "client hung up"
        );
    }

    // An absurd length where the authentication request should be.
    let (port, server) = fake_server(|mut peer| async move {
        peer.accept_startup().await;
        peer.send(&[b'R', 0x7f, 0xff, 0xff, 0xff]).await;
        while peer.recv().await.is_some() {}
    })
    .await;
    let err = tokio::time::timeout(PROMPTLY, Client::connect(&config(&dsn(port, ""))))
        .await
        .unwrap()
        .unwrap_err();
    assert!(protocol_error(&err, "exceeds the limit"), "{err:?}");
    assert!(!err.is_retryable());
    server.await.unwrap();
}

/// A pgoutput Message of `size` content bytes, in an XLogData whose `wal_end` is `lsn`.
fn sized_message(lsn: u64, size: usize) -> Vec<u8> {
    xlog_data(
        lsn,
        &pgoutput(&LogicalMessage::Message(Message {
            xid: None,
            transactional: false,
            lsn: Lsn(lsn),
            prefix: "p".into(),
            content: Bytes::from(vec![b'x'; size]),
        })),
    )
}

/// The next item, through `futures_core::Stream` rather than `next_event`.
async fn next_via_stream_trait(
    stream: &mut ReplicationStream,
) -> Option<Result<ReplicationEvent, Error>> {
    use futures_core::Stream;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

/// Waits until `stream.received()` reaches `lsn`, then checks that it stays there: the task
/// decodes no further ahead of a consumer that does not poll.
async fn received_settles_at(stream: &ReplicationStream, lsn: u64) {
    let deadline = Instant::now() + PROMPTLY;
    while stream.received() < Lsn(lsn) {
        assert!(
            Instant::now() < deadline,
            "received {} < {}",
            stream.received(),
            Lsn(lsn)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stream.received(), Lsn(lsn), "decoded ahead of the consumer");
}

/// `max_buffered_events` and `max_buffered_bytes` bound what the task decodes ahead of a
/// consumer that does not poll: with room for 2 events, the 3rd is decoded and waits; with
/// 1000 bytes, a second 600-byte message waits for the first to be taken. A message larger
/// than the whole budget still gets through, alone. Nothing is lost or reordered, and the
/// stream is a `futures_core::Stream`.
#[tokio::test]
async fn buffer_limits_bound_what_is_decoded_ahead() {
    // Events: 50 small messages, room for 2.
    let bytes: Vec<u8> = (1..=50).flat_map(|i| sized_message(i, 10)).collect();
    let settings = StreamSettings {
        max_buffered_events: 2,
        ..StreamSettings::default()
    };
    let (mut stream, server) = stream_with(bytes, false, None, settings).await;
    received_settles_at(&stream, 3).await;
    for i in 1..=50 {
        match tokio::time::timeout(PROMPTLY, next_via_stream_trait(&mut stream))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            ReplicationEvent::Message { wal_end, .. } => assert_eq!(wal_end, Lsn(i)),
            other => panic!("{other:?}"),
        }
    }
    drop(stream);
    server.await.unwrap();

    // Bytes: 600-byte messages against a budget of 1000, then one of 5000.
    let mut bytes: Vec<u8> = (1..=5).flat_map(|i| sized_message(i, 600)).collect();
    bytes.extend(sized_message(6, 5000));
    let settings = StreamSettings {
        max_buffered_events: 1000,
        max_buffered_bytes: 1000,
        ..StreamSettings::default()
    };
    let (mut stream, server) = stream_with(bytes, false, None, settings).await;
    received_settles_at(&stream, 2).await;
    let first = tokio::time::timeout(PROMPTLY, stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        first,
        ReplicationEvent::Message {
            wal_end: Lsn(1),
            ..
        }
    ));
    received_settles_at(&stream, 3).await;
    for i in 2..=6 {
        match tokio::time::timeout(PROMPTLY, stream.next_event())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            ReplicationEvent::Message { wal_end, raw, .. } => {
                assert_eq!(wal_end, Lsn(i));
                assert!(raw.len() > if i == 6 { 5000 } else { 600 });
            }
            other => panic!("{other:?}"),
        }
    }
    drop(stream);
    server.await.unwrap();
}
