//! Stopping and killing `run` under load loses nothing and applies nothing twice; a link that
//! fails for good stops alone, visibly, and resumes once fixed.

use std::time::Duration;

use pgrepl_testkit::{Install, pg_test};

use crate::support;

/// No key at all: a transaction applied twice would leave a second copy of its row.
const LEDGER: &str =
    "CREATE TABLE ledger (node int NOT NULL, seq int NOT NULL, amount int NOT NULL);
ALTER TABLE ledger REPLICA IDENTITY FULL;";

const ROWS: i64 = 1500;

pg_test! {
    /// SIGTERM and SIGKILL while both nodes insert, one row per transaction; each restart
    /// resumes where the last durable position was: every row arrives exactly once.
    fn stopping_and_killing_run_under_load_loses_and_duplicates_nothing(pg: Install) {
        let nodes = support::start(&pg, 2, LEDGER, &["ledger"], "");
        nodes.bidir("setup", &[]).ok();
        let mut first = nodes.run(&[]);
        first.wait_streaming(2);
        let run = std::thread::scope(|s| {
            for k in 0..2 {
                let nodes = &nodes;
                s.spawn(move || {
                    nodes.psql(k, &format!(
                        "DO $$ BEGIN FOR i IN 1..{ROWS} LOOP \
                           INSERT INTO ledger VALUES ({}, i, i % 97); COMMIT; \
                           IF i % 20 = 0 THEN PERFORM pg_sleep(0.01); END IF; \
                         END LOOP; END $$;",
                        k + 1
                    ));
                });
            }
            std::thread::sleep(Duration::from_millis(400));
            let (out, took) = first.terminate();
            assert_eq!(out.code(), 0, "{}", out.all());
            assert!(took < Duration::from_secs(5), "stopping took {took:?}");
            std::thread::sleep(Duration::from_millis(200));
            let mut again = nodes.run(&[]);
            again.wait_streaming(2);
            std::thread::sleep(Duration::from_millis(300));
            again.kill();
            let mut last = nodes.run(&[]);
            last.wait_streaming(2);
            last
        });
        let expected = format!("{}|{}|{}", 2 * ROWS, 2 * ROWS, 2 * (1..=ROWS).map(|i| i % 97).sum::<i64>());
        nodes.wait_converged("ledger", "every row on both nodes", |n| {
            n.value(0, "SELECT count(*) FROM ledger") == (2 * ROWS).to_string()
        });
        for i in 0..2 {
            assert_eq!(
                nodes.value(i, "SELECT count(*), count(DISTINCT (node, seq)), sum(amount) FROM ledger"),
                expected
            );
        }
        let out = nodes.bidir("verify", &[]);
        assert!(out.ok().contains("identical"), "{}", out.all());
        let (out, _) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
    }

    /// With the `error` resolver, a conflict stops its link only: the other direction keeps
    /// replicating, status, /healthz and the log say so, SIGHUP retries, the exit status is 1;
    /// once the row is fixed the link resumes at the transaction it stopped at.
    fn a_failed_link_stops_alone_and_resumes_when_fixed(pg: Install) {
        let nodes = support::start(
            &pg, 2, "CREATE TABLE items (id bigint PRIMARY KEY, v text);", &["items"],
            "conflict_resolver = \"error\"",
        );
        nodes.bidir("setup", &[]).ok();
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        // A row only node2 has; node1's insert of the same key is an insert_exists there.
        nodes.psql_unreplicated(1, "INSERT INTO items VALUES (1, 'node2 only');");
        nodes.psql(0, "INSERT INTO items VALUES (1, 'from node1');");
        support::wait_until("node1→node2 to fail", Duration::from_secs(30), || {
            run.states().contains(&"node1→node2: failed".to_owned())
        });
        nodes.psql(1, "INSERT INTO items VALUES (2, 'from node2');");
        support::wait_until("node2's row on node1", Duration::from_secs(30), || {
            nodes.value(0, "SELECT count(*) FROM items WHERE id = 2") == "1"
        });
        assert!(run.child.try_wait().unwrap().is_none(), "run exited:\n{}", run.stderr());
        assert!(run.stderr().contains("link failed and stays stopped"), "{}", run.stderr());
        let (code, body) = support::http_get(nodes.metrics, "/healthz").unwrap();
        assert_eq!(code, 503);
        assert!(body.contains("insert_exists"), "{body}");
        let text = nodes.bidir("status", &[]).ok().to_owned();
        assert!(text.contains("last errors:") && text.contains("insert_exists"), "{text}");

        support::signal(run.pid(), "HUP");
        support::wait_until("a second failure after SIGHUP", Duration::from_secs(30), || {
            run.stderr().matches("link failed and stays stopped").count() >= 2
        });
        assert!(run.stderr().contains("SIGHUP: restarting failed links"), "{}", run.stderr());
        let (out, _) = run.terminate();
        assert_eq!(out.code(), 1, "a failed link must show in the exit status:\n{}", out.all());
        // With run gone, status still shows why the link stopped (saved by run).
        let status: serde_json::Value = serde_json::from_str(nodes.bidir("status", &["--json"]).ok()).unwrap();
        let failed = status["links"].as_array().unwrap().iter().find(|l| l["target"] == "node2").unwrap();
        let error = failed["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("insert_exists") && error.contains("saved by run"), "{failed:#}");
        assert_eq!(status["run"]["last_run"]["ended"], true, "{status:#}");

        nodes.psql_unreplicated(1, "DELETE FROM items WHERE id = 1;");
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        nodes.wait_converged("items", "the fixed link to catch up", |n| {
            n.value(1, "SELECT v FROM items WHERE id = 1") == "from node1"
        });
        assert!(nodes.bidir("verify", &[]).ok().contains("identical"));
        let (out, _) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
    }
}
