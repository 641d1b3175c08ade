//! Every command on a two-node mesh, in the order an operator uses them: setup (twice),
//! status before, run, writes on both nodes, status and metrics while running, verify, SIGTERM,
//! status after, teardown (twice).

use std::time::Duration;

use pgrepl_testkit::{Install, pg_test};

use crate::support::{self, CLUSTER, http_get};

const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, v text, n int);";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn link<'a>(status: &'a serde_json::Value, source: &str, target: &str) -> &'a serde_json::Value {
    status["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source"] == source && l["target"] == target)
        .unwrap()
}

pg_test! {
    /// The whole life of a mesh through the binary.
    fn every_command_in_order(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &["items"], "");

        // setup: creates everything, then finds everything in place.
        let out = nodes.bidir("setup", &[]);
        let text = out.ok();
        assert!(text.contains(&format!("created slot pgrepl_{CLUSTER}_to_node2")), "{text}");
        assert!(text.contains(&format!("created replication origin pgrepl_{CLUSTER}_from_node1")), "{text}");
        let text = nodes.bidir("setup", &[]).ok().to_owned();
        assert!(text.contains("already in place"), "{text}");

        // status before run: set up, stopped, nobody answering.
        let status = json(nodes.bidir("status", &["--json"]).ok());
        assert_eq!(status["run"]["answering"], false);
        assert_eq!(link(&status, "node1", "node2")["state"], "stopped", "{status:#}");
        assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["up"] == true));

        // run, and write on both nodes.
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        nodes.psql(0, "INSERT INTO items SELECT g, 'a' || g, g FROM generate_series(1, 100) g;");
        nodes.psql(1, "INSERT INTO items SELECT g, 'b' || g, g FROM generate_series(101, 200) g;");
        nodes.wait_converged("items", "the inserts", |n| n.value(0, "SELECT count(*) FROM items") == "200");
        nodes.psql(0, "UPDATE items SET n = n * 10 WHERE id > 150;");
        nodes.psql(1, "DELETE FROM items WHERE id <= 10;");
        nodes.wait_converged("items", "the update and delete", |n| {
            n.value(0, "SELECT count(*), sum(n) FROM items")
                == n.value(0, "SELECT 190, sum(CASE WHEN g > 150 THEN g * 10 ELSE g END) FROM generate_series(11, 200) g")
        });

        // status while running: live state from run, positions from the nodes.
        let status = json(nodes.bidir("status", &["--json"]).ok());
        assert_eq!(status["run"]["answering"], true, "{status:#}");
        for (s, t) in [("node1", "node2"), ("node2", "node1")] {
            let l = link(&status, s, t);
            assert_eq!(l["state"], "streaming", "{l:#}");
            assert!(l["live"]["applied_transactions"].as_u64().unwrap() >= 1, "{l:#}");
            assert!(l["retained_wal_bytes"].as_u64().is_some(), "{l:#}");
            assert!(l["applied_lsn"].as_str().is_some(), "{l:#}");
            assert_eq!(l["slot_active"], true);
        }
        // node1 updated 50 of node2's rows, node2 deleted 10 of node1's: recorded as conflicts.
        assert_eq!(link(&status, "node1", "node2")["conflicts"], 50, "{status:#}");
        assert_eq!(link(&status, "node2", "node1")["conflicts"], 10, "{status:#}");
        let table = nodes.bidir("status", &[]).ok().to_owned();
        for expected in ["node1→node2", "node2→node1", "streaming", "RETAINED WAL", "answering on"] {
            assert!(table.contains(expected), "{expected}:\n{table}");
        }

        // metrics and health.
        let (code, metrics) = http_get(nodes.metrics, "/metrics").unwrap();
        assert_eq!(code, 200);
        for expected in [
            "pgrepl_link_state{cluster=\"t\",source=\"node1\",target=\"node2\",state=\"streaming\"} 1",
            "pgrepl_link_lag_bytes{",
            "pgrepl_link_lag_seconds{",
            "pgrepl_link_applied_transactions_total{",
            "pgrepl_link_applied_changes_total{",
            "pgrepl_link_skipped_transactions_total{",
            "pgrepl_link_restarts_total{",
            "pgrepl_link_conflicts_total{cluster=\"t\",source=\"node1\",target=\"node2\",kind=\"update_origin_differs\",resolution=\"apply_remote\"} 50",
        ] {
            assert!(metrics.contains(expected), "{expected}:\n{metrics}");
        }
        assert_eq!(http_get(nodes.metrics, "/healthz").unwrap().0, 200);
        assert_eq!(http_get(nodes.metrics, "/nope").unwrap().0, 404);

        // verify: identical.
        let out = nodes.bidir("verify", &[]);
        assert!(out.ok().contains("public.items  identical   190 rows on each node"), "{}", out.all());

        // SIGTERM: a clean, quick stop.
        let (out, took) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
        assert!(took < Duration::from_secs(5), "stopping took {took:?}");
        assert!(out.stderr.contains("SIGTERM"), "{}", out.stderr);
        assert!(!out.stderr.contains("ERROR"), "{}", out.stderr);

        // status after: stopped, not answering, nothing left behind.
        let status = json(nodes.bidir("status", &["--json"]).ok());
        assert_eq!(status["run"]["answering"], false);
        for (s, t) in [("node1", "node2"), ("node2", "node1")] {
            let l = link(&status, s, t);
            assert_eq!(l["state"], "stopped", "{l:#}");
            assert_eq!(l["slot_active"], false);
        }

        // teardown: slots, origins and publications gone; again: nothing to do.
        let text = nodes.bidir("teardown", &[]).ok().to_owned();
        assert!(text.contains("dropped slot"), "{text}");
        for i in 0..2 {
            assert_eq!(nodes.value(i, "SELECT count(*) FROM pg_replication_slots"), "0");
            assert_eq!(nodes.value(i, "SELECT count(*) FROM pg_replication_origin"), "0");
            assert_eq!(nodes.value(i, "SELECT count(*) FROM pg_publication"), "0");
        }
        let text = nodes.bidir("teardown", &[]).ok().to_owned();
        assert!(text.contains("Nothing to remove"), "{text}");
        let status = json(nodes.bidir("status", &["--json"]).ok());
        assert_eq!(link(&status, "node1", "node2")["state"], "not set up", "{status:#}");
    }

    /// `run --node NAME` runs only the links into NAME.
    fn run_node_runs_only_the_links_into_it(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &["items"], "");
        nodes.bidir("setup", &[]).ok();
        let mut run = nodes.run(&["--node", "node2"]);
        run.wait_streaming(1);
        assert_eq!(run.states(), vec!["node1→node2: streaming".to_owned()]);
        nodes.psql(0, "INSERT INTO items VALUES (1, 'from node1', 1);");
        nodes.psql(1, "INSERT INTO items VALUES (2, 'from node2', 2);");
        support::wait_until("node1's row on node2", Duration::from_secs(30), || {
            nodes.value(1, "SELECT count(*) FROM items") == "2"
        });
        assert_eq!(nodes.value(0, "SELECT count(*) FROM items"), "1");
        let status = json(nodes.bidir("status", &["--json"]).ok());
        assert_eq!(link(&status, "node2", "node1")["state"], "stopped");
        let (out, _) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
        // node2's row was waiting in its slot: a full run brings it over.
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        nodes.wait_converged("items", "node2's row on node1", |n| n.value(0, "SELECT count(*) FROM items") == "2");
        run.terminate();
    }
}
