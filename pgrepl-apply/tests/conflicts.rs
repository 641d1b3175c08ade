//! Every conflict kind under every built-in resolver: the final rows on the target and the
//! history it records.
//!
//! One table per kind. The source (node1) and the target (node2) start with the same seed
//! rows; with the link stopped, node1 makes its changes and node2 its own (in one order or the
//! other, which decides which version is newer); then the link node1 → node2 runs and the
//! target's tables and `pgrepl.conflict_history` are compared with what the resolver must do.

use std::time::Duration;

use crate::support::{self, Nodes};
use pgrepl_apply::ApplyError;
use pgrepl_conflict::ConflictKind;
use pgrepl_testkit::{Install, pg_test};

const SCHEMA: &str = "
CREATE TABLE ie  (id int PRIMARY KEY, v text);
CREATE TABLE uod (id int PRIMARY KEY, v text);
CREATE TABLE ue  (id int PRIMARY KEY, u int UNIQUE, v text);
CREATE TABLE um  (id int PRIMARY KEY, v text);
CREATE TABLE dod (id int PRIMARY KEY, v text);
CREATE TABLE dm  (id int PRIMARY KEY, v text);
CREATE TABLE muc (id int PRIMARY KEY, u int UNIQUE, v text);
INSERT INTO uod VALUES (1, 'seed');
INSERT INTO ue VALUES (1, 10, 'seed');
INSERT INTO um VALUES (1, 'seed');
INSERT INTO dod VALUES (1, 'seed');
INSERT INTO dm VALUES (1, 'seed');
";

const TABLES: [&str; 7] = ["ie", "uod", "ue", "um", "dod", "dm", "muc"];

/// The source's changes, one transaction each, in this order.
const REMOTE: [&str; 7] = [
    "INSERT INTO ie VALUES (5, 'remote')",
    "UPDATE uod SET v = 'remote' WHERE id = 1",
    "UPDATE ue SET u = 20, v = 'remote' WHERE id = 1",
    "UPDATE um SET v = 'remote' WHERE id = 1",
    "DELETE FROM dod WHERE id = 1",
    "DELETE FROM dm WHERE id = 1",
    "INSERT INTO muc VALUES (5, 60, 'remote')",
];

/// The target's own changes.
const LOCAL: [&str; 7] = [
    "INSERT INTO ie VALUES (5, 'local')",
    "UPDATE uod SET v = 'local' WHERE id = 1",
    "INSERT INTO ue VALUES (2, 20, 'local')",
    "DELETE FROM um WHERE id = 1",
    "UPDATE dod SET v = 'local' WHERE id = 1",
    "DELETE FROM dm WHERE id = 1",
    "INSERT INTO muc VALUES (5, 50, 'l1'), (6, 60, 'l2')",
];

/// Expected final rows of each table (as `row::text`, sorted, joined by newlines) and the
/// history as sorted (kind, resolution) pairs.
struct Expected {
    tables: [&'static str; 7],
    history: &'static [(&'static str, &'static str)],
}

const REMOTE_WINS: [&str; 7] = [
    "(5,remote)",
    "(1,remote)",
    "(1,20,remote)",
    "(1,remote)",
    "",
    "",
    "(5,60,remote)",
];

const LOCAL_STAYS: [&str; 7] = [
    "(5,local)",
    "(1,local)",
    "(1,10,seed)\n(2,20,local)",
    "",
    "(1,local)",
    "",
    "(5,50,l1)\n(6,60,l2)",
];

async fn changes(nodes: &Nodes, remote_first: bool) {
    let mut source = nodes.client(0).await;
    let mut target = nodes.client(1).await;
    let run_remote = async |c: &mut pgrepl_core::connection::Client| {
        for sql in REMOTE {
            c.batch_execute(sql).await.unwrap();
        }
    };
    let run_local = async |c: &mut pgrepl_core::connection::Client| {
        for sql in LOCAL {
            c.batch_execute(sql).await.unwrap();
        }
    };
    if remote_first {
        run_remote(&mut source).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        run_local(&mut target).await;
    } else {
        run_local(&mut target).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        run_remote(&mut source).await;
    }
}

async fn check(nodes: &Nodes, expected: &Expected) {
    for (table, want) in TABLES.iter().zip(expected.tables) {
        assert_eq!(nodes.dump(1, table).await, want, "table {table}");
    }
    let mut history = nodes.history(1).await;
    history.sort();
    let mut want: Vec<(String, String)> = expected
        .history
        .iter()
        .map(|(k, r)| ((*k).to_owned(), (*r).to_owned()))
        .collect();
    want.sort();
    assert_eq!(history, want);
}

async fn scenario(pg: &Install, resolver: &str, remote_first: bool, expected: Expected) {
    let nodes = support::start(pg, 2, SCHEMA, &TABLES, resolver).await;
    changes(&nodes, remote_first).await;
    let link = nodes.run(0, 1);
    nodes.sync(0, 1).await;
    check(&nodes, &expected).await;
    let stats = link.link.stats();
    assert!(stats.last_error().is_none(), "{:?}", stats.last_error());
    // Every conflict was counted too (one decision, even when it is recorded once per
    // colliding local row).
    let multiple = expected
        .history
        .iter()
        .filter(|(k, _)| *k == "multiple_unique_conflicts")
        .count();
    let decisions = expected.history.len() - multiple.saturating_sub(1);
    assert_eq!(stats.conflicts.total(), u64::try_from(decisions).unwrap());
    link.stop().await.unwrap();
}

pg_test! {
    /// `apply_remote`: the source's change always wins.
    async fn apply_remote(pg: Install) {
        scenario(&pg, "apply_remote", true, Expected {
            tables: REMOTE_WINS,
            history: &[
                ("insert_exists", "apply_remote"),
                ("update_origin_differs", "apply_remote"),
                ("update_origin_differs", "apply_remote"),
                ("update_exists", "apply_remote"),
                ("update_missing", "apply_remote"),
                ("delete_origin_differs", "apply_remote"),
                ("delete_missing", "apply_remote"),
                ("multiple_unique_conflicts", "apply_remote"),
                ("multiple_unique_conflicts", "apply_remote"),
            ],
        }).await;
    }

    /// `keep_local`: the target's rows always stay.
    async fn keep_local(pg: Install) {
        scenario(&pg, "keep_local", true, Expected {
            tables: LOCAL_STAYS,
            history: &[
                ("insert_exists", "keep_local"),
                ("update_origin_differs", "keep_local"),
                ("update_origin_differs", "keep_local"),
                ("update_missing", "keep_local"),
                ("delete_origin_differs", "keep_local"),
                ("delete_missing", "keep_local"),
                ("multiple_unique_conflicts", "keep_local"),
                ("multiple_unique_conflicts", "keep_local"),
            ],
        }).await;
    }

    /// `last_update_wins`, the target's versions newer: they stay, but deletes win.
    async fn last_update_wins_local_newer(pg: Install) {
        scenario(&pg, "last_update_wins", true, Expected {
            tables: ["(5,local)", "(1,local)", "(1,10,seed)\n(2,20,local)", "", "", "", "(5,50,l1)\n(6,60,l2)"],
            history: &[
                ("insert_exists", "keep_local"),
                ("update_origin_differs", "keep_local"),
                // ue: the seed row is older than the remote update, the colliding row newer
                ("update_origin_differs", "apply_remote"),
                ("update_exists", "keep_local"),
                ("update_missing", "keep_local"),
                ("delete_origin_differs", "apply_remote"),
                ("delete_missing", "keep_local"),
                ("multiple_unique_conflicts", "keep_local"),
                ("multiple_unique_conflicts", "keep_local"),
            ],
        }).await;
    }

    /// `last_update_wins`, the source's versions newer: they win, and deletes win.
    async fn last_update_wins_remote_newer(pg: Install) {
        scenario(&pg, "last_update_wins", false, Expected {
            tables: ["(5,remote)", "(1,remote)", "(1,20,remote)", "", "", "", "(5,60,remote)"],
            history: &[
                ("insert_exists", "apply_remote"),
                ("update_origin_differs", "apply_remote"),
                ("update_origin_differs", "apply_remote"),
                ("update_exists", "apply_remote"),
                ("update_missing", "keep_local"),
                ("delete_origin_differs", "apply_remote"),
                ("delete_missing", "keep_local"),
                ("multiple_unique_conflicts", "apply_remote"),
                ("multiple_unique_conflicts", "apply_remote"),
            ],
        }).await;
    }

    /// `first_update_wins`, the source's versions older: they win, and deletes win.
    async fn first_update_wins_remote_older(pg: Install) {
        scenario(&pg, "first_update_wins", true, Expected {
            // ue: the seed row is older than the remote update, so the update loses.
            tables: ["(5,remote)", "(1,remote)", "(1,10,seed)\n(2,20,local)", "", "", "", "(5,60,remote)"],
            history: &[
                ("insert_exists", "apply_remote"),
                ("update_origin_differs", "apply_remote"),
                ("update_origin_differs", "keep_local"),
                ("update_missing", "keep_local"),
                ("delete_origin_differs", "apply_remote"),
                ("delete_missing", "keep_local"),
                ("multiple_unique_conflicts", "apply_remote"),
                ("multiple_unique_conflicts", "apply_remote"),
            ],
        }).await;
    }

    /// `first_update_wins`, the target's versions older: they stay, but deletes win.
    async fn first_update_wins_local_older(pg: Install) {
        scenario(&pg, "first_update_wins", false, Expected {
            tables: ["(5,local)", "(1,local)", "(1,10,seed)\n(2,20,local)", "", "", "", "(5,50,l1)\n(6,60,l2)"],
            history: &[
                ("insert_exists", "keep_local"),
                ("update_origin_differs", "keep_local"),
                ("update_origin_differs", "keep_local"),
                ("update_missing", "keep_local"),
                ("delete_origin_differs", "apply_remote"),
                ("delete_missing", "keep_local"),
                ("multiple_unique_conflicts", "keep_local"),
                ("multiple_unique_conflicts", "keep_local"),
            ],
        }).await;
    }

    /// `error`: the link stops at the first conflicting transaction, names it, applies nothing
    /// after it; with another resolver it resumes from that transaction.
    async fn error_stops_then_resumes(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &TABLES, "error").await;
        changes(&nodes, true).await;
        let stopped = nodes.run(0, 1).finished().await;
        let Err(ApplyError::Conflict { target, stop }) = stopped else {
            panic!("expected a conflict stop, got {stopped:?}");
        };
        assert_eq!(target, "node2");
        assert_eq!(stop.kind, ConflictKind::InsertExists);
        assert_eq!(stop.table, "\"public\".\"ie\"");
        assert_eq!(stop.key, "{\"id\": 5}");
        assert!(stop.local.contains("local") && stop.remote.contains("remote"), "{stop:?}");
        let message = ApplyError::Conflict { target, stop }.to_string();
        for part in ["insert_exists", "\"public\".\"ie\"", "{\"id\": 5}", "node1", "node2"] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
        // Nothing at or after the conflicting transaction was applied.
        for (table, want) in TABLES.iter().zip(LOCAL_STAYS) {
            assert_eq!(nodes.dump(1, table).await, want, "table {table}");
        }
        assert_eq!(nodes.history(1).await, [("insert_exists".to_owned(), "error".to_owned())]);
        // The operator changes the resolver: the link resumes from that transaction.
        let link = nodes.run_with(0, 1, |cfg| cfg.resolvers = support::resolvers("apply_remote"));
        nodes.sync(0, 1).await;
        for (table, want) in TABLES.iter().zip(REMOTE_WINS) {
            assert_eq!(nodes.dump(1, table).await, want, "table {table}");
        }
        assert_eq!(nodes.history(1).await.len(), 10);
        link.stop().await.unwrap();
    }

    /// A history row holds both versions, their origins and commit times, and the remote LSN.
    async fn history_rows_are_complete(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &TABLES, "last_update_wins").await;
        changes(&nodes, false).await;
        let link = nodes.run(0, 1);
        nodes.sync(0, 1).await;
        let rows = nodes.rows(1, "SELECT source_node, target_node, resolver, relation, key::text, \
            local_row::text, local_origin, local_commit_time IS NOT NULL, remote_row::text, \
            remote_origin, remote_commit_time IS NOT NULL, remote_commit_lsn > '0/0', remote_xid > 0 \
            FROM pgrepl.conflict_history WHERE kind = 'insert_exists'").await;
        assert_eq!(rows.len(), 1);
        let r: Vec<&str> = rows[0].iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
        assert_eq!(r, [
            "node1", "node2", "last_update_wins", "\"public\".\"ie\"", "{\"id\": 5}",
            "{\"v\": \"local\", \"id\": 5}", "node2", "t",
            "{\"v\": \"remote\", \"id\": 5}", "node1", "t", "t", "t",
        ]);
        // The table is never published.
        let published = nodes.rows(0, "SELECT count(*) FROM pg_publication_tables WHERE schemaname = 'pgrepl'").await;
        assert_eq!(published[0][0].as_deref(), Some("0"));
        link.stop().await.unwrap();
    }

    /// A run of conflicting transactions (both nodes writing the same rows) goes to the careful
    /// path directly after a few, rather than failing on the fast path every time; a
    /// transaction without a conflict ends the run; every change lands as `last_update_wins`
    /// says and every conflict is recorded.
    async fn a_run_of_conflicts_goes_careful_directly(pg: Install) {
        let schema = "CREATE TABLE hot (id int PRIMARY KEY, v text);
                      INSERT INTO hot SELECT g, 'seed' FROM generate_series(1, 200) g;";
        let nodes = support::start(&pg, 2, schema, &["hot"], "last_update_wins").await;
        nodes.client(1).await.batch_execute("UPDATE hot SET v = 'local'").await.unwrap();
        let mut source = nodes.client(0).await;
        // 100 conflicting updates, 20 plain inserts, 100 more conflicting updates: one
        // transaction each, all newer than the target's local rewrite.
        for id in 1..=100 {
            source.batch_execute(&format!("UPDATE hot SET v = 'remote {id}' WHERE id = {id}")).await.unwrap();
        }
        for id in 1001..=1020 {
            source.batch_execute(&format!("INSERT INTO hot VALUES ({id}, 'new')")).await.unwrap();
        }
        for id in 101..=200 {
            source.batch_execute(&format!("UPDATE hot SET v = 'remote {id}' WHERE id = {id}")).await.unwrap();
        }
        let link = nodes.run(0, 1);
        nodes.sync(0, 1).await;
        assert_eq!(nodes.dump(0, "hot").await, nodes.dump(1, "hot").await);
        let history = nodes.history(1).await;
        assert_eq!(history.len(), 200);
        assert!(history.iter().all(|(k, r)| k == "update_origin_differs" && r == "apply_remote"), "{history:?}");
        let stats = link.link.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stats.conflicts.total(), 200);
        assert!(load(&stats.careful_txns) >= 200);
        // Each run declines a few before it goes careful directly, then one per probe of the
        // fast path (and what was in the pipeline behind a declined one, while it shrinks).
        let declined = load(&stats.declined_txns);
        assert!(declined < 60, "{declined} transactions declined on the fast path");
        link.stop().await.unwrap();
    }

    /// A link stopped in the middle of a long run of conflicts stops at once (the careful path
    /// hands control back between slices of the run, and a stop sends nothing new), and,
    /// started again, applies each remaining transaction exactly once.
    async fn a_run_of_conflicts_stops_promptly_and_resumes(pg: Install) {
        let schema = "CREATE TABLE hot (id int PRIMARY KEY, v text);
                      INSERT INTO hot SELECT g, 'seed' FROM generate_series(1, 4000) g;";
        let nodes = support::start(&pg, 2, schema, &["hot"], "last_update_wins").await;
        nodes.client(1).await.batch_execute("UPDATE hot SET v = 'local'").await.unwrap();
        nodes.client(0).await.batch_execute(
            "DO $$ BEGIN FOR i IN 1..4000 LOOP
                 UPDATE hot SET v = 'remote ' || i WHERE id = i; COMMIT;
             END LOOP; END $$").await.unwrap();
        let link = nodes.run(0, 1);
        let recorded = async || nodes.rows(1, "SELECT count(*) FROM pgrepl.conflict_history").await[0][0].clone().unwrap().parse::<usize>().unwrap();
        let start = std::time::Instant::now();
        while recorded().await < 50 {
            assert!(start.elapsed() < Duration::from_secs(60), "no conflicts applied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopping = std::time::Instant::now();
        link.stop().await.unwrap();
        // What is in flight finishes; nothing new is sent (the rest comes again after the
        // restart), so stopping does not wait for the run of conflicts to be worked off.
        let took = stopping.elapsed();
        assert!(took < Duration::from_secs(3), "stopping took {took:?}");
        let link = nodes.run(0, 1);
        nodes.sync(0, 1).await;
        assert_eq!(nodes.dump(0, "hot").await, nodes.dump(1, "hot").await);
        assert_eq!(recorded().await, 4000);
        link.stop().await.unwrap();
    }

    /// Rows both nodes started from and that have been frozen count as older than anything:
    /// changing them is not a conflict, and the fast path applies it.
    async fn frozen_rows_are_not_conflicts(pg: Install) {
        let schema = "CREATE TABLE base (id int PRIMARY KEY, v text);
                      INSERT INTO base SELECT g, 'seed' FROM generate_series(1, 100) g;";
        let nodes = support::start(&pg, 2, schema, &["base"], "last_update_wins").await;
        for i in 0..2 {
            nodes.client(i).await.batch_execute("VACUUM FREEZE base").await.unwrap();
        }
        let link = nodes.run(0, 1);
        let mut source = nodes.client(0).await;
        source.batch_execute("UPDATE base SET v = 'changed' WHERE id <= 50; DELETE FROM base WHERE id > 90").await.unwrap();
        nodes.sync(0, 1).await;
        assert_eq!(nodes.dump(0, "base").await, nodes.dump(1, "base").await);
        assert!(nodes.history(1).await.is_empty());
        let careful = link.link.stats().careful_txns.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(careful, 0);
        // A row written locally after freezing is a conflict again.
        nodes.client(1).await.batch_execute("UPDATE base SET v = 'local' WHERE id = 1").await.unwrap();
        source.batch_execute("UPDATE base SET v = 'remote' WHERE id = 1").await.unwrap();
        nodes.sync(0, 1).await;
        assert_eq!(nodes.history(1).await, [("update_origin_differs".to_owned(), "apply_remote".to_owned())]);
        link.stop().await.unwrap();
    }
}
