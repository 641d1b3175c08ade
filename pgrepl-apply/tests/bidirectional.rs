//! Two nodes writing the same tables through two links: changes converge, each is applied
//! exactly once on the peer, and nothing comes back.

use crate::support;
use pgrepl_testkit::{Install, pg_test};

const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, v text, n int);";

pg_test! {
    /// Inserts, updates and deletes on both nodes end up on both, each applied once.
    async fn both_directions_converge(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &["items"], "last_update_wins").await;
        let links = nodes.run_all();
        let mut a = nodes.client(0).await;
        let mut b = nodes.client(1).await;
        a.batch_execute("INSERT INTO items SELECT g, 'a' || g, g FROM generate_series(1, 500) g").await.unwrap();
        b.batch_execute("INSERT INTO items SELECT g, 'b' || g, g FROM generate_series(1001, 1500) g").await.unwrap();
        nodes.sync_all().await;
        a.batch_execute("UPDATE items SET n = n + 1 WHERE id % 2 = 0 AND id > 1000").await.unwrap();
        b.batch_execute("DELETE FROM items WHERE id <= 10; UPDATE items SET v = 'x' WHERE id BETWEEN 11 AND 20").await.unwrap();
        nodes.sync_all().await;
        let da = nodes.dump(0, "items").await;
        let db = nodes.dump(1, "items").await;
        assert_eq!(da, db);
        let count = nodes.rows(0, "SELECT count(*), sum(n) FROM items").await;
        assert_eq!(count[0][0].as_deref(), Some("990"));
        // Nothing came back: every row's last writer on each node is either local or the
        // peer's origin, and rows written locally still carry no origin.
        let origins = nodes
            .rows(0, "SELECT (pg_xact_commit_timestamp_origin(xmin)).roident, count(*) FROM items GROUP BY 1 ORDER BY 1")
            .await;
        assert_eq!(origins.len(), 2, "{origins:?}");
        assert_eq!(origins[0][0].as_deref(), Some("0"));
        // Changing a row another node wrote last is `*_origin_differs` (PostgreSQL 18's
        // taxonomy), recorded and, the remote version being newer, applied: node1 updated 250 of
        // node2's rows; node2 deleted 10 and updated 10 of node1's.
        let count = |h: &[(String, String)], kind: &str| {
            h.iter().filter(|(k, r)| k == kind && r == "apply_remote").count()
        };
        let h2 = nodes.history(1).await;
        assert_eq!((h2.len(), count(&h2, "update_origin_differs")), (250, 250), "{h2:?}");
        let h1 = nodes.history(0).await;
        assert_eq!(h1.len(), 20, "{h1:?}");
        assert_eq!(count(&h1, "update_origin_differs"), 10);
        assert_eq!(count(&h1, "delete_origin_differs"), 10);
        // Each link applied each remote transaction once; on PG15 the loop filter skipped what
        // came back, on 16+ the server did not send it.
        for l in &links {
            let s = l.link.stats();
            assert!(s.last_error().is_none(), "{:?}", s.last_error());
        }
        let skipped: u64 = links.iter().map(|l| l.link.stats().skipped_txns.load(std::sync::atomic::Ordering::Relaxed)).sum();
        if pg.major() >= 16 {
            assert_eq!(skipped, 0);
        } else {
            assert!(skipped > 0);
        }
        for l in links {
            l.stop().await.unwrap();
        }
    }
}

pg_test! {
    /// A 3-node mesh where every node writes (its own keys, from a partitioned sequence):
    /// every node ends with every row, each applied once, none travelling back.
    async fn three_node_mesh_converges(pg: Install) {
        let schema = "CREATE TABLE items (id bigserial PRIMARY KEY, v text, n int);";
        let nodes = support::start(&pg, 3, schema, &["items"], "last_update_wins").await;
        nodes.mesh.setup(true).await.unwrap(); // --partition-sequences
        let links = nodes.run_all();
        assert_eq!(links.len(), 6);
        for i in 0..3 {
            let mut c = nodes.client(i).await;
            c.batch_execute(&format!(
                "INSERT INTO items (v, n) SELECT 'node{i}-' || g, g FROM generate_series(1, 300) g"
            ))
            .await
            .unwrap();
        }
        nodes.sync_all().await;
        // node2 updates rows node1 wrote, node3 deletes some of node2's.
        nodes.client(1).await.batch_execute("UPDATE items SET n = -n WHERE v LIKE 'node0-%' AND n <= 50").await.unwrap();
        nodes.client(2).await.batch_execute("DELETE FROM items WHERE v LIKE 'node1-%' AND n <= 20").await.unwrap();
        nodes.sync_all().await;
        let first = nodes.dump(0, "items").await;
        for i in 1..3 {
            assert_eq!(nodes.dump(i, "items").await, first, "node{}", i + 1);
        }
        let counts = nodes.rows(0, "SELECT count(*), count(DISTINCT id), sum(CASE WHEN n < 0 THEN 1 END) FROM items").await;
        assert_eq!(counts[0], [Some("880".to_owned()), Some("880".to_owned()), Some("50".to_owned())]);
        // Keys from the partitioned sequences never collided: no insert conflicts anywhere.
        for i in 0..3 {
            assert!(nodes.history(i).await.iter().all(|(k, _)| k != "insert_exists"));
        }
        for l in links {
            let s = l.link.stats();
            assert!(s.last_error().is_none(), "{:?}", s.last_error());
            l.stop().await.unwrap();
        }
    }
}
