//! The CopyBoth stream against real servers: a workload decoded exactly, pgoutput's options
//! (binary, messages, streaming, two-phase, origin), protocol negotiation, feedback that
//! moves the slot exactly as far as the caller flushed, restarts from an LSN, a server
//! restart mid-stream, and backpressure.

use std::time::{Duration, Instant};

use pgrepl_core::Lsn;
use pgrepl_core::connection::replication::{
    CreateSlotOptions, CreatedSlot, OriginFilter, PgOutputOptions, ReplicationClient,
    ReplicationEvent, ReplicationStream, StreamSettings, Streaming,
};
use pgrepl_core::connection::{Client, Error};
use pgrepl_core::pgoutput::{LogicalMessage, ProtocolVersion};
use pgrepl_testkit::{Cluster, ClusterBuilder, Install, pg_test};

use crate::conn_util::{
    Collector, assert_no_txn, changes, config, next_txns, scalar, wait_for_value,
};

const DB: &str = "streamdb";

fn builder(pg: &Install) -> ClusterBuilder {
    pg.cluster().name("stream").database(DB)
}

/// Tables `t` (primary key) and `f` (REPLICA IDENTITY FULL), publication `p` on both.
fn schema(node: &Cluster) {
    node.psql(
        DB,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         CREATE TABLE f (id int, v text); \
         ALTER TABLE f REPLICA IDENTITY FULL; \
         CREATE PUBLICATION p FOR TABLE t, f;",
    )
    .unwrap();
}

async fn sql(node: &Cluster) -> Client {
    Client::connect(&config(&node.dsn(DB))).await.unwrap()
}

async fn create_slot(node: &Cluster, name: &str, two_phase: bool) -> CreatedSlot {
    let mut repl = ReplicationClient::connect(&config(&node.dsn(DB)))
        .await
        .unwrap();
    let slot = repl
        .create_slot(
            name,
            CreateSlotOptions {
                two_phase,
                ..CreateSlotOptions::default()
            },
        )
        .await
        .unwrap();
    repl.close().await.unwrap();
    slot
}

async fn start(
    node: &Cluster,
    slot: &str,
    from: Lsn,
    options: &PgOutputOptions,
    settings: StreamSettings,
) -> Result<ReplicationStream, Error> {
    let repl = ReplicationClient::connect(&config(&node.dsn(DB))).await?;
    repl.start_replication(slot, from, options, settings).await
}

fn publication_p() -> PgOutputOptions {
    PgOutputOptions {
        publication_names: vec!["p".into()],
        ..PgOutputOptions::default()
    }
}

fn confirmed_query(slot: &str) -> String {
    format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'")
}

/// The slot's `confirmed_flush_lsn`.
async fn confirmed_flush(sql: &mut Client, slot: &str) -> Lsn {
    scalar(sql, &confirmed_query(slot))
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// The `sent_lsn` of pgrepl's walsender, while there is one.
async fn sent_lsn(sql: &mut Client) -> Option<Lsn> {
    scalar(
        sql,
        "SELECT sent_lsn FROM pg_stat_replication WHERE application_name = 'pgrepl'",
    )
    .await
    .map(|s| s.parse().unwrap())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

pg_test! {
    /// Inserts, updates (with and without a key change, REPLICA IDENTITY DEFAULT and FULL),
    /// deletes, a truncate of two tables, NULLs and logical messages (transactional and not)
    /// decode to exactly what was done, transaction by transaction.
    async fn workload_decodes_exactly(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "work", false).await;
        let mut w = sql(&node).await;
        for step in [
            "BEGIN; INSERT INTO t VALUES (1, 'one'), (2, 'two'); INSERT INTO f VALUES (1, 'x'); COMMIT",
            "BEGIN; UPDATE t SET v = 'uno' WHERE id = 1; UPDATE f SET v = 'y'; COMMIT",
            "UPDATE t SET id = 10 WHERE id = 2",
            "BEGIN; DELETE FROM t WHERE id = 1; DELETE FROM f; COMMIT",
            "TRUNCATE t, f",
            "BEGIN; INSERT INTO t VALUES (3, NULL); SELECT pg_logical_emit_message(true, 'pfx', 'hello'); COMMIT",
            "SELECT pg_logical_emit_message(false, 'loose', 'note')",
            "INSERT INTO t VALUES (4, 'last')",
        ] {
            w.batch_execute(step).await.unwrap();
        }
        let options = PgOutputOptions { messages: true, ..publication_p() };
        let mut stream = start(&node, "work", slot.consistent_point, &options, StreamSettings::default())
            .await
            .unwrap();
        let mut collector = Collector::default();
        let txns = next_txns(&mut stream, &mut collector, 7).await;
        let expected: Vec<Vec<String>> = vec![
            strings(&["I public.t 1,one", "I public.t 2,two", "I public.f 1,x"]),
            strings(&["U public.t 1,uno", "U public.f old 1,x 1,y"]),
            strings(&["U public.t key 2,null 10,two"]),
            strings(&["D public.t key 1,null", "D public.f old 1,y"]),
            strings(&["T public.f public.t"]),
            strings(&["I public.t 3,null", "M pfx hello"]),
            strings(&["I public.t 4,last"]),
        ];
        assert_eq!(changes(&txns), expected);
        assert_eq!(collector.loose_messages, ["M loose note"]);
        // Positions are ordered and every transaction ends after it commits.
        for pair in txns.windows(2) {
            assert!(pair[0].end_lsn <= pair[1].commit_lsn, "{pair:?}");
        }
        assert!(txns.iter().all(|t| t.commit_lsn < t.end_lsn && t.origin.is_none()));
    }

    /// The highest protocol version is negotiated (3 on PostgreSQL 15, 4 on 16+), a lower one
    /// can be asked for, a higher one is refused before it is sent; binary values arrive in
    /// the types' send format.
    async fn protocol_version_and_binary(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "proto", false).await;
        let mut w = sql(&node).await;
        w.batch_execute("INSERT INTO t VALUES (1, 'one')").await.unwrap();

        let expected = if pg.major() >= 16 { ProtocolVersion::V4 } else { ProtocolVersion::V3 };
        let binary = PgOutputOptions { binary: true, ..publication_p() };
        let mut stream = start(&node, "proto", slot.consistent_point, &binary, StreamSettings::default())
            .await
            .unwrap();
        assert_eq!(stream.protocol_version(), expected);
        let txns = next_txns(&mut stream, &mut Collector::default(), 1).await;
        assert_eq!(txns[0].changes, ["I public.t 0x00000001,0x6f6e65"]);
        stream.shutdown().await;

        let v1 = PgOutputOptions { proto_version: Some(ProtocolVersion::V1), ..publication_p() };
        let mut stream = start(&node, "proto", slot.consistent_point, &v1, StreamSettings::default())
            .await
            .unwrap();
        assert_eq!(stream.protocol_version(), ProtocolVersion::V1);
        let txns = next_txns(&mut stream, &mut Collector::default(), 1).await;
        assert_eq!(txns[0].changes, ["I public.t 1,one"]);
        stream.shutdown().await;

        if pg.major() < 16 {
            let v4 = PgOutputOptions { proto_version: Some(ProtocolVersion::V4), ..publication_p() };
            let err = start(&node, "proto", slot.consistent_point, &v4, StreamSettings::default())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains("speaks up to 3"), "{err}");
        }
    }

    /// With `streaming`, a transaction larger than `logical_decoding_work_mem` arrives in
    /// streamed blocks and completes at Stream Commit; one that aborts after it started
    /// streaming ends in Stream Abort (with its abort LSN under `streaming = parallel`,
    /// PostgreSQL 16+).
    async fn large_transactions_stream_in_chunks(pg: Install) {
        let node = builder(&pg).conf("logical_decoding_work_mem = '64kB'").start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "big", false).await;
        let parallel = pg.major() >= 16;
        let options = PgOutputOptions {
            streaming: if parallel { Streaming::Parallel } else { Streaming::On },
            ..publication_p()
        };
        let mut stream = start(&node, "big", slot.consistent_point, &options, StreamSettings::default())
            .await
            .unwrap();
        let mut collector = Collector::default();
        let mut w = sql(&node).await;
        w.batch_execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g")
            .await
            .unwrap();
        let txns = next_txns(&mut stream, &mut collector, 1).await;
        assert!(txns[0].streamed, "the large transaction was not streamed");
        assert_eq!(txns[0].changes.len(), 5000);
        assert_eq!(txns[0].changes[0], format!("I public.t 1,{}", "x".repeat(100)));
        assert_eq!(txns[0].changes[4999], format!("I public.t 5000,{}", "x".repeat(100)));

        // A large transaction still open: it streams (the walwriter flushes its WAL), then
        // aborts. (Decoded after the abort, PostgreSQL 17+ would not stream it at all.)
        w.batch_execute(
            "BEGIN; INSERT INTO t SELECT g, repeat('y', 100) FROM generate_series(5001, 10000) g",
        )
        .await
        .unwrap();
        let xid: u32 = scalar(&mut w, "SELECT txid_current()").await.unwrap().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let event = tokio::time::timeout_at(deadline.into(), stream.next_event())
                .await
                .expect("the open transaction never streamed")
                .unwrap()
                .unwrap();
            if let ReplicationEvent::Message { message, .. } = &event {
                assert_eq!(collector.feed(message), None);
                if matches!(message, LogicalMessage::StreamStart(s) if s.xid == xid) {
                    break;
                }
            }
        }
        w.batch_execute("ROLLBACK").await.unwrap();
        w.batch_execute("INSERT INTO t VALUES (0, 'small')").await.unwrap();
        let txns = next_txns(&mut stream, &mut collector, 1).await;
        assert_eq!(collector.aborted.len(), 1, "{:?}", collector.aborted);
        assert_eq!(collector.aborted[0].0, xid);
        assert_eq!(collector.aborted[0].1.is_some(), parallel);
        assert!(!txns[0].streamed);
        assert_eq!(txns[0].changes, ["I public.t 0,small"]);
    }

    /// With `two_phase`, a prepared transaction arrives at PREPARE and its COMMIT PREPARED
    /// follows.
    async fn two_phase_decodes_at_prepare(pg: Install) {
        let node = builder(&pg).conf("max_prepared_transactions = 4").start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "twophase", true).await;
        let mut w = sql(&node).await;
        w.batch_execute("BEGIN; INSERT INTO t VALUES (1, 'prepared'); PREPARE TRANSACTION 'g1'")
            .await
            .unwrap();
        w.batch_execute("COMMIT PREPARED 'g1'").await.unwrap();
        let options = PgOutputOptions { two_phase: true, ..publication_p() };
        let mut stream = start(&node, "twophase", slot.consistent_point, &options, StreamSettings::default())
            .await
            .unwrap();
        let txns = next_txns(&mut stream, &mut Collector::default(), 2).await;
        assert_eq!(txns[0].prepared.as_deref(), Some("g1"));
        assert_eq!(txns[0].changes, ["I public.t 1,prepared"]);
        assert_eq!(txns[1].changes, ["COMMIT PREPARED g1"]);
    }

    /// A transaction applied under a replication origin (as pgrepl's applier does) is left
    /// out with `origin = 'none'` on PostgreSQL 16+; PostgreSQL 15 has no such option, so
    /// asking for it fails clearly before anything is sent, and the stream marks the
    /// transaction with an Origin message instead.
    async fn origin_none_filters_replicated_transactions(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "origins", false).await;
        node.psql(
            DB,
            "INSERT INTO t VALUES (1, 'local before'); \
             SELECT pg_replication_origin_create('peer_node'); \
             SELECT pg_replication_origin_session_setup('peer_node'); \
             BEGIN; \
             SELECT pg_replication_origin_xact_setup('0/12345678', now()); \
             INSERT INTO t VALUES (2, 'replicated'); \
             COMMIT; \
             SELECT pg_replication_origin_session_reset(); \
             INSERT INTO t VALUES (3, 'local after');",
        )
        .unwrap();

        let none = PgOutputOptions { origin: Some(OriginFilter::None), ..publication_p() };
        let result = start(&node, "origins", slot.consistent_point, &none, StreamSettings::default()).await;
        if pg.major() >= 16 {
            let mut stream = result.unwrap();
            let mut collector = Collector::default();
            let txns = next_txns(&mut stream, &mut collector, 2).await;
            assert_eq!(
                changes(&txns),
                [strings(&["I public.t 1,local before"]), strings(&["I public.t 3,local after"])]
            );
            assert_no_txn(&mut stream, &mut collector, Duration::from_millis(500)).await;
            stream.shutdown().await;
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains("needs PostgreSQL 16"), "{err}");
        }

        // Without the filter (or with `any`), the replicated transaction is there, marked.
        let all = PgOutputOptions {
            origin: (pg.major() >= 16).then_some(OriginFilter::Any),
            ..publication_p()
        };
        let mut stream = start(&node, "origins", slot.consistent_point, &all, StreamSettings::default())
            .await
            .unwrap();
        let txns = next_txns(&mut stream, &mut Collector::default(), 3).await;
        let origins: Vec<Option<&str>> = txns.iter().map(|t| t.origin.as_deref()).collect();
        assert_eq!(origins, [None, Some("peer_node"), None]);
        assert_eq!(txns[1].changes, ["I public.t 2,replicated"]);
    }

    /// The slot's `confirmed_flush_lsn` moves to exactly what the caller reported with
    /// `set_flushed` (sent at once with `send_status_now`), and never past it however long
    /// the stream runs and however much it has received.
    async fn feedback_moves_the_slot_exactly_to_the_flushed_position(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "feedback", false).await;
        let mut w = sql(&node).await;
        for i in 1..=3 {
            w.batch_execute(&format!("INSERT INTO t VALUES ({i}, 'v{i}')")).await.unwrap();
        }
        let settings = StreamSettings { status_interval: Duration::from_millis(100), ..StreamSettings::default() };
        let mut stream = start(&node, "feedback", slot.consistent_point, &publication_p(), settings)
            .await
            .unwrap();
        let mut collector = Collector::default();
        let txns = next_txns(&mut stream, &mut collector, 3).await;
        assert_eq!(confirmed_flush(&mut w, "feedback").await, slot.consistent_point);

        stream.set_flushed(txns[0].end_lsn);
        stream.send_status_now();
        let target = txns[0].end_lsn;
        wait_for_value(&mut w, &confirmed_query("feedback"), &target.to_string(), Duration::from_secs(10)).await;
        // Many status updates later (100 ms apart, with the stream polled), it stays there,
        // while the server knows that more was written.
        assert_no_txn(&mut stream, &mut collector, Duration::from_secs(1)).await;
        assert_eq!(confirmed_flush(&mut w, "feedback").await, target);
        let positions = scalar(
            &mut w,
            "SELECT write_lsn || ' ' || flush_lsn FROM pg_stat_replication WHERE application_name = 'pgrepl'",
        )
        .await
        .unwrap();
        let (write, flush) = positions.split_once(' ').unwrap();
        assert!(write.parse::<Lsn>().unwrap() >= txns[2].end_lsn, "{positions}");
        assert_eq!(flush.parse::<Lsn>().unwrap(), target);

        // Positions never move backwards.
        stream.set_flushed(txns[2].end_lsn);
        stream.set_flushed(txns[1].end_lsn);
        assert_eq!(stream.flushed(), txns[2].end_lsn);
        stream.send_status_now();
        let target = txns[2].end_lsn;
        wait_for_value(&mut w, &confirmed_query("feedback"), &target.to_string(), Duration::from_secs(10)).await;
    }

    /// Starting from a transaction's end LSN re-delivers exactly the transactions after it;
    /// starting from before the slot's confirmed position resumes from that position (and
    /// does not move the slot back).
    async fn restart_from_an_lsn_redelivers_what_follows(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "restart", false).await;
        let mut w = sql(&node).await;
        for i in 1..=5 {
            w.batch_execute(&format!("INSERT INTO t VALUES ({i}, 'v{i}')")).await.unwrap();
        }
        let settings = StreamSettings { status_interval: Duration::from_millis(100), ..StreamSettings::default() };
        let mut first = start(&node, "restart", slot.consistent_point, &publication_p(), settings)
            .await
            .unwrap();
        let all = next_txns(&mut first, &mut Collector::default(), 5).await;
        first.shutdown().await;
        // Once shutdown returns, the walsender has let go of the slot.
        let active = scalar(&mut w, "SELECT active FROM pg_replication_slots WHERE slot_name = 'restart'").await;
        assert_eq!(active.as_deref(), Some("f"));
        assert_eq!(confirmed_flush(&mut w, "restart").await, slot.consistent_point);

        let mut second = start(&node, "restart", all[1].end_lsn, &publication_p(), settings)
            .await
            .unwrap();
        let mut collector = Collector::default();
        let again = next_txns(&mut second, &mut collector, 3).await;
        assert_eq!(again, all[2..].to_vec());
        assert_no_txn(&mut second, &mut collector, Duration::from_millis(500)).await;
        second.set_flushed(all[3].end_lsn);
        second.shutdown().await;
        assert_eq!(confirmed_flush(&mut w, "restart").await, all[3].end_lsn);

        // From an LSN before the confirmed position: the server resumes at the latter.
        let mut third = start(&node, "restart", all[1].end_lsn, &publication_p(), settings)
            .await
            .unwrap();
        let mut collector = Collector::default();
        let rest = next_txns(&mut third, &mut collector, 1).await;
        assert_eq!(rest, all[4..].to_vec());
        assert_no_txn(&mut third, &mut collector, Duration::from_millis(500)).await;
        third.shutdown().await;
        assert_eq!(confirmed_flush(&mut w, "restart").await, all[3].end_lsn);
    }

    /// A server that shuts down or crashes under a stream ends it with an error that says
    /// retrying can help: a fast shutdown waits until the consumer (idle, so it reports the
    /// keepalive's `wal_end` as flushed) has confirmed everything, then the walsender ends
    /// the stream; a crash drops the connection. After the restart the slot resumes where the
    /// consumer flushed, given as the start position.
    async fn server_restart_ends_the_stream_retryably(pg: Install) {
        let mut node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "survive", false).await;
        let mut from = slot.consistent_point;
        for (round, crash) in [(1, false), (2, true)] {
            node.psql(DB, &format!("INSERT INTO t VALUES ({round}, 'round {round}')")).unwrap();
            let mut stream = start(&node, "survive", from, &publication_p(), StreamSettings::default())
                .await
                .unwrap();
            let mut collector = Collector::default();
            let txns = next_txns(&mut stream, &mut collector, 1).await;
            assert_eq!(txns[0].changes, [format!("I public.t {round},round {round}")]);
            stream.set_flushed(txns[0].end_lsn);
            from = txns[0].end_lsn;

            let stopper = std::thread::spawn(move || {
                if crash {
                    node.stop_immediate().unwrap();
                } else {
                    node.stop().unwrap();
                }
                node
            });
            let err = loop {
                let item = tokio::time::timeout(Duration::from_secs(30), stream.next_event())
                    .await
                    .expect("the stream did not end")
                    .expect("the stream ended without an error");
                match item {
                    // Nothing is in flight: what the server has looked at is safely flushed.
                    Ok(ReplicationEvent::Keepalive { wal_end, .. }) => {
                        stream.set_flushed(wal_end);
                        stream.send_status_now();
                    }
                    Ok(other) => panic!("unexpected event {other:?}"),
                    Err(e) => break e,
                }
            };
            if crash {
                assert!(matches!(err, Error::Closed { .. } | Error::Io { .. }), "{err:?}");
            } else {
                assert!(matches!(err, Error::StreamEnded { .. }), "{err:?}");
                assert!(err.to_string().contains("shuts down"), "{err}");
            }
            assert!(err.is_retryable(), "crash={crash}: {err:?}");
            assert!(stream.next_event().await.is_none(), "nothing after the ending error");
            node = stopper.join().unwrap();
            node.start().unwrap();
        }
        // The slot's confirmed position need not survive: a crash loses what was not yet
        // checkpointed, and before PostgreSQL 17 even a clean shutdown does not save it. So the
        // consumer resumes from its own durable position, and gets only what follows.
        node.psql(DB, "INSERT INTO t VALUES (3, 'round 3')").unwrap();
        let mut stream = start(&node, "survive", from, &publication_p(), StreamSettings::default())
            .await
            .unwrap();
        let txns = next_txns(&mut stream, &mut Collector::default(), 1).await;
        assert_eq!(txns[0].changes, ["I public.t 3,round 3"]);
    }

    /// With a tiny buffer and a consumer that does not poll, the stream reads no further
    /// ahead than the socket buffers: the server's `sent_lsn` stays far behind a large
    /// backlog. Meanwhile status updates keep the walsender from timing out
    /// (`wal_sender_timeout` is 5 s here), so once the consumer polls, everything arrives.
    async fn backpressure_bounds_read_ahead_and_keeps_the_session(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "slow", false).await;
        let settings = StreamSettings {
            max_buffered_events: 1,
            max_buffered_bytes: 64 << 10,
            ..StreamSettings::default()
        };
        let mut stream = start(&node, "slow", slot.consistent_point, &publication_p(), settings)
            .await
            .unwrap();
        // The default of 10 s, capped at a third of the server's wal_sender_timeout (5 s).
        assert_eq!(stream.status_interval(), Duration::from_secs(5) / 3);
        // About 80 MB of changes in 80 transactions.
        node.psql(
            DB,
            "DO $$ BEGIN FOR b IN 0..79 LOOP \
               INSERT INTO t SELECT g, repeat('x', 1000) FROM generate_series(b * 1000 + 1, b * 1000 + 1000) g; \
               COMMIT; \
             END LOOP; END $$",
        )
        .unwrap();
        let end: Lsn = node.psql(DB, "SELECT pg_current_wal_lsn()").unwrap().trim().parse().unwrap();
        let backlog = end.0 - slot.consistent_point.0;
        assert!(backlog > 80_000_000, "backlog of only {backlog} bytes");

        let mut w = sql(&node).await;
        // Three times wal_sender_timeout without reading a single event.
        let mut max_sent = Lsn(0);
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = sent_lsn(&mut w).await.expect("the walsender is gone: the session timed out");
            max_sent = max_sent.max(now);
        }
        let ahead = max_sent.0.saturating_sub(slot.consistent_point.0);
        assert!(
            ahead < backlog / 4,
            "the server sent {ahead} of {backlog} bytes to a consumer that read nothing"
        );
        assert!(stream.received().0 <= max_sent.0);

        // Now read everything: the session survived.
        let mut collector = Collector::default();
        let txns = next_txns(&mut stream, &mut collector, 80).await;
        let rows: usize = txns.iter().map(|t| t.changes.len()).sum();
        assert_eq!(rows, 80_000);
    }

    /// A publication that does not exist fails inside the stream, when the first change is
    /// decoded, with the server's 42704 (not retryable). PostgreSQL 18 instead skips it with a
    /// WARNING (a NoticeResponse in the stream, which goes to `tracing`) and streams nothing.
    async fn missing_publication_fails_in_the_stream(pg: Install) {
        let node = builder(&pg).start().unwrap();
        schema(&node);
        let slot = create_slot(&node, "nopub", false).await;
        node.psql(DB, "INSERT INTO t VALUES (1, 'x')").unwrap();
        let options = PgOutputOptions { publication_names: vec!["no_such_pub".into()], ..publication_p() };
        let mut stream = start(&node, "nopub", slot.consistent_point, &options, StreamSettings::default())
            .await
            .unwrap();
        if pg.major() >= 18 {
            let mut collector = Collector::default();
            assert_no_txn(&mut stream, &mut collector, Duration::from_secs(2)).await;
            assert!(node.log().contains("skipped loading publication \"no_such_pub\""));
            return;
        }
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(30), stream.next_event()).await.unwrap() {
                Some(Ok(ReplicationEvent::Message { message: LogicalMessage::Begin(_), .. }))
                | Some(Ok(ReplicationEvent::Keepalive { .. })) => {}
                Some(Ok(other)) => panic!("unexpected {other:?}"),
                Some(Err(e)) => break e,
                None => panic!("the stream ended without an error"),
            }
        };
        assert_eq!(err.code(), Some("42704"), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("no_such_pub"), "{err}");
    }
}
