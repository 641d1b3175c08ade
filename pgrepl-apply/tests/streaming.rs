//! Large transactions streamed before they commit (pgoutput `streaming`), spooled and applied
//! at Stream Commit; aborted ones discarded; and progress: a link whose source sends only
//! skipped (looped-back) transactions, or nothing at all, still lets the source's slot advance.

use std::time::Duration;

use crate::support;
use pgrepl_testkit::{Install, pg_test};

const SCHEMA: &str = "CREATE TABLE big (id int PRIMARY KEY, payload text);";

pg_test! {
    /// A transaction larger than `logical_decoding_work_mem` arrives in streamed chunks,
    /// interleaved with small transactions; a rolled-back subtransaction inside it and a
    /// whole aborted streamed transaction leave nothing behind.
    async fn streamed_transactions_apply_at_commit(pg: Install) {
        let nodes = support::start_with(&pg, 2, SCHEMA, &["big"], support::resolvers("apply_remote"),
            |b| b.conf("logical_decoding_work_mem = '64kB'")).await;
        let link = nodes.run(0, 1);
        let mut a = nodes.client(0).await;
        let mut side = nodes.client(0).await;
        a.batch_execute("BEGIN; INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g").await.unwrap();
        side.batch_execute("INSERT INTO big VALUES (100000, 'between')").await.unwrap();
        a.batch_execute("SAVEPOINT s; INSERT INTO big SELECT g, 'rolled back' FROM generate_series(5001, 6000) g; ROLLBACK TO SAVEPOINT s;
                         INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(3001, 4000) g; COMMIT").await.unwrap();
        a.batch_execute("BEGIN; INSERT INTO big SELECT g, repeat('z', 200) FROM generate_series(7001, 9000) g; ROLLBACK").await.unwrap();
        nodes.sync(0, 1).await;
        let rows = nodes.rows(1, "SELECT count(*), count(*) FILTER (WHERE payload LIKE 'y%'), max(id) FROM big").await;
        assert_eq!(rows[0], [Some("4001".to_owned()), Some("1000".to_owned()), Some("100000".to_owned())]);
        assert_eq!(nodes.dump(0, "big").await, nodes.dump(1, "big").await);
        let streamed = link.link.stats().streamed_txns.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(streamed, 1, "the large transaction arrived streamed");
        link.stop().await.unwrap();
    }

    /// Idle and skip-only traffic still advance the slots (bounded retained WAL): after a burst
    /// on node1 replicated to node2, node2's slot for node2 → node1 (which carried only node1's
    /// own changes back, skipped or filtered) catches up with node2's WAL.
    async fn idle_and_skipped_traffic_advance_the_slot(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &["big"], "last_update_wins").await;
        let links = nodes.run_all();
        let mut a = nodes.client(0).await;
        a.batch_execute("INSERT INTO big SELECT g, 'a' FROM generate_series(1, 2000) g").await.unwrap();
        nodes.sync(0, 1).await;
        for (node, slot) in [(1, "pgrepl_t_to_node1"), (0, "pgrepl_t_to_node2")] {
            let mut c = nodes.client(node).await;
            let target: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0).unwrap();
            let start = std::time::Instant::now();
            loop {
                let row = c.query_one("SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2",
                    &[&target, &slot]).await.unwrap();
                if row.get::<bool>(0).unwrap() {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(30), "slot {slot} on node{} stuck below {target}", node + 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for l in links {
            l.stop().await.unwrap();
        }
    }
}
