//! The least-privilege role of the README is enough for every command — setup, run (with a
//! conflict, so the careful path runs too), status, verify and teardown — and setup explains,
//! with the fix, every privilege a weaker role lacks.

use std::time::Duration;

use pgrepl_testkit::{Install, pg_test};

use crate::support::{self, DB};

const PASSWORD: &str = "Repl-pw-4-tests";

/// The README's grants, word for word (checked below), for database `bidir`.
pub const GRANTS: &str = "CREATE ROLE pgrepl LOGIN REPLICATION PASSWORD 'Repl-pw-4-tests';
GRANT CREATE ON DATABASE bidir TO pgrepl;
GRANT EXECUTE ON FUNCTION
    pg_replication_origin_create(text),
    pg_replication_origin_drop(text),
    pg_replication_origin_session_setup(text),
    pg_replication_origin_xact_setup(pg_lsn, timestamptz),
    pg_replication_origin_xact_reset(),
    pg_replication_origin_progress(text, boolean)
  TO pgrepl;
GRANT SET ON PARAMETER session_replication_role TO pgrepl;
ALTER TABLE public.items OWNER TO pgrepl;";

#[test]
fn the_readme_shows_these_grants() {
    let readme = include_str!("../../../README.md");
    let shown = GRANTS
        .replace("Repl-pw-4-tests", "choose-a-password")
        .replace(" bidir ", " practice ")
        .replace("public.items", "public.users");
    assert!(readme.contains(&shown), "README.md must show:\n{shown}");
}

pg_test! {
    fn the_least_privilege_role_can_do_everything(pg: Install) {
        let schema = format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, v text);\n{GRANTS}\n\
             CREATE ROLE weak LOGIN PASSWORD '{PASSWORD}';"
        );
        let nodes = support::start_with(
            &pg, 2, &schema, &["items"], "",
            |b| b.hba_replace([
                "host all all 127.0.0.1/32 scram-sha-256",
                "host replication all 127.0.0.1/32 scram-sha-256",
            ]),
            |c| format!("host=127.0.0.1 port={} dbname={DB} user=pgrepl password={PASSWORD}", c.port()),
        );
        // A role without the grants: setup says what is missing and how to fix it.
        let weak = nodes.dir.0.join("weak.toml");
        std::fs::write(&weak, std::fs::read_to_string(&nodes.config).unwrap().replace("user=pgrepl", "user=weak")).unwrap();
        let out = support::bidir(&["setup", "--config", weak.to_str().unwrap()]);
        let stderr = out.fails_clearly();
        for expected in [
            "role weak lacks the REPLICATION attribute",
            "ALTER ROLE weak REPLICATION;",
            "role weak may not use replication origins",
            "GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text)",
            "GRANT SET ON PARAMETER session_replication_role TO weak;",
            "GRANT CREATE ON DATABASE bidir TO weak;",
            "role weak does not own table public.items",
            "nothing was changed",
        ] {
            assert!(stderr.contains(expected), "{expected}:\n{stderr}");
        }

        // The role of the README: every command works.
        nodes.bidir("setup", &[]).ok();
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        nodes.psql(0, "INSERT INTO items SELECT g, 'v' FROM generate_series(1, 50) g;");
        nodes.wait_converged("items", "the inserts", |n| n.value(1, "SELECT count(*) FROM items") == "50");
        // node2 changes a row node1 wrote: a conflict on node1, resolved on the careful path.
        nodes.psql(1, "UPDATE items SET v = 'changed on node2' WHERE id = 7;");
        nodes.wait_converged("items", "the update", |n| {
            n.value(0, "SELECT v FROM items WHERE id = 7") == "changed on node2"
        });
        let status: serde_json::Value = serde_json::from_str(nodes.bidir("status", &["--json"]).ok()).unwrap();
        for node in status["nodes"].as_array().unwrap() {
            assert_eq!(node["error"], serde_json::Value::Null, "{node:#}");
        }
        let into1 = status["links"].as_array().unwrap().iter().find(|l| l["target"] == "node1").unwrap();
        assert_eq!(into1["state"], "streaming", "{into1:#}");
        assert_eq!(into1["conflicts"], 1, "{into1:#}");
        assert!(nodes.bidir("verify", &[]).ok().contains("identical"));
        let (out, took) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
        assert!(took < Duration::from_secs(5));
        assert!(!out.all().contains(PASSWORD));
        nodes.bidir("teardown", &[]).ok();
        for i in 0..2 {
            assert_eq!(nodes.value(i, "SELECT count(*) FROM pg_replication_slots"), "0");
            assert_eq!(nodes.value(i, "SELECT count(*) FROM pg_replication_origin"), "0");
        }
    }
}
