//! Exactly once: a link killed at random points (its task and connections dropped without any
//! cleanup) and restarted, many times, during a load into a table with no unique key — and a
//! target crashed with `pg_ctl stop -m immediate` mid-apply — ends with exactly the source's
//! multiset of rows: nothing lost, nothing applied twice.

use std::time::Duration;

use crate::support::{self, Nodes};
use pgrepl_testkit::{Install, pg_test};

// No key: a duplicate or a lost row shows directly in the multiset.
const SCHEMA: &str = "CREATE TABLE log (a int, b text, n int);
                      ALTER TABLE log REPLICA IDENTITY FULL;";

/// Writes on node1: batches of inserts of duplicate rows, updates and deletes of single rows.
async fn load(nodes: &Nodes, txns: usize) {
    let mut c = nodes.client(0).await;
    for i in 0..txns {
        let sql = match i % 7 {
            // identical rows on purpose
            0..=3 => format!(
                "INSERT INTO log SELECT g % 5, 'r{i}', 0 FROM generate_series(1, {}) g",
                1 + i % 13
            ),
            4 => "UPDATE log SET n = n + 1 WHERE ctid = (SELECT ctid FROM log WHERE a = 1 LIMIT 1)"
                .to_owned(),
            5 => {
                "DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE a = 2 LIMIT 1)".to_owned()
            }
            _ => "INSERT INTO log VALUES (9, 'same', 0), (9, 'same', 0)".to_owned(),
        };
        c.batch_execute(&sql).await.unwrap();
    }
}

async fn same_rows(nodes: &Nodes) {
    let q = "SELECT a, b, n, count(*) FROM log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    assert_eq!(nodes.rows(0, q).await, nodes.rows(1, q).await);
}

pg_test! {
    /// Kill the link abruptly many times during a load; the target ends with the same rows.
    async fn killed_link_applies_everything_once(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &["log"], "apply_remote").await;
        let writer = {
            let dsn = nodes.dsns[0].clone();
            tokio::spawn(async move {
                let mut c = pgrepl_core::connection::Client::connect(&dsn).await.unwrap();
                for i in 0..600 {
                    let sql = match i % 7 {
                        0..=3 => format!("INSERT INTO log SELECT g % 5, 'w{i}', 0 FROM generate_series(1, {}) g", 1 + i % 17),
                        4 => "UPDATE log SET n = n + 1 WHERE ctid = (SELECT ctid FROM log WHERE a = 1 LIMIT 1)".to_owned(),
                        5 => "DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE a = 2 LIMIT 1)".to_owned(),
                        _ => "INSERT INTO log VALUES (9, 'same', 0), (9, 'same', 0)".to_owned(),
                    };
                    c.batch_execute(&sql).await.unwrap();
                    if i % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        };
        let mut kills = 0;
        let mut seed = 0x2545_f491u64;
        while !writer.is_finished() || kills < 15 {
            let link = nodes.run(0, 1);
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let ms = 20 + (seed >> 33) % 180;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            link.kill();
            kills += 1;
        }
        writer.await.unwrap();
        let link = nodes.run(0, 1);
        nodes.sync(0, 1).await;
        same_rows(&nodes).await;
        assert!(kills >= 15);
        link.stop().await.unwrap();
    }

    /// Crash the target with `pg_ctl stop -m immediate` mid-apply, restart it: the link
    /// reconnects by itself and the rows are exactly the source's.
    async fn crashed_target_applies_everything_once(pg: Install) {
        let mut nodes = support::start_with(&pg, 2, SCHEMA, &["log"], support::resolvers("apply_remote"), |b| b.durable(true)).await;
        load(&nodes, 300).await;
        let link = nodes.run(0, 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        nodes.clusters[1].stop_immediate().unwrap();
        load(&nodes, 100).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes.clusters[1].start().unwrap();
        load(&nodes, 100).await;
        nodes.sync(0, 1).await;
        same_rows(&nodes).await;
        let stats = link.link.stats();
        assert!(stats.restarts.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        // The crash was reported as a transient failure, and the link recovered.
        assert_eq!(stats.state(), pgrepl_apply::LinkState::Streaming);
        link.stop().await.unwrap();
    }

    /// Crash the source mid-stream: the link retries until it is back, then catches up.
    async fn crashed_source_is_survived(pg: Install) {
        let mut nodes = support::start(&pg, 2, SCHEMA, &["log"], "apply_remote").await;
        let link = nodes.run(0, 1);
        load(&nodes, 200).await;
        nodes.clusters[0].stop_immediate().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes.clusters[0].start().unwrap();
        load(&nodes, 100).await;
        nodes.sync(0, 1).await;
        same_rows(&nodes).await;
        link.stop().await.unwrap();
    }
}
