//! `verify` finds rows that differ — changed, missing on either side, duplicated in a keyless
//! table — names their keys, and exits 1; it says the tables are identical once they are.

use std::time::Duration;

use pgrepl_testkit::{Install, pg_test};

use crate::support;

const SCHEMA: &str = "
CREATE TABLE items (id bigint PRIMARY KEY, v text, at timestamptz DEFAULT now(), f float8);
CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
CREATE TABLE notes (body text, n int);
ALTER TABLE notes REPLICA IDENTITY FULL;";

pg_test! {
    /// Divergence nobody replicates (written in a session with the peer's origin) is found, row
    /// by row, at every level of the bucket descent; a divergence written while run is stopped
    /// is found, and gone once run has brought it over.
    fn verify_finds_the_rows_that_differ(pg: Install) {
        let nodes = support::start(&pg, 2, SCHEMA, &["items", "pairs", "notes"], "");
        nodes.bidir("setup", &[]).ok();
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        nodes.psql(0, "INSERT INTO items SELECT g, 'v' || g, now(), g / 7.0 FROM generate_series(1, 20000) g;
                       INSERT INTO pairs SELECT g % 10, 'k' || g, 'x' FROM generate_series(1, 500) g;
                       INSERT INTO notes SELECT 'note ' || (g % 50), g % 3 FROM generate_series(1, 300) g;");
        nodes.wait_converged("items", "the rows", |n| {
            n.value(1, "SELECT count(*) FROM items") == "20000"
                && n.value(1, "SELECT count(*) FROM notes") == "300"
                && n.dump(0, "pairs") == n.dump(1, "pairs")
        });
        let out = nodes.bidir("verify", &[]);
        assert!(out.ok().contains("All tables are identical"), "{}", out.all());

        // Diverge node2 without replicating it.
        nodes.psql_unreplicated(1, "
            UPDATE items SET v = 'changed' WHERE id = 42;
            DELETE FROM items WHERE id = 4000;
            INSERT INTO items VALUES (999999, 'only on node2', now(), 0);
            UPDATE pairs SET v = 'y' WHERE a = 3 AND b = 'k13';
            INSERT INTO notes VALUES ('note 7', 1);");
        for leaf in ["2000", "3"] {
            let out = nodes.bidir("verify", &["--leaf-rows", leaf, "--recheck-after", "0"]);
            assert_eq!(out.code(), 1, "{}", out.all());
            for expected in [
                "public.items  DIFFERENT   20000 rows on each node",
                "id=42: differs: node1 | node2",
                "id=4000: missing on node2",
                "id=999999: missing on node1",
                "(a, b)=(3,k13): differs: node1 | node2",
                "row (\"note 7\",1): ×2 on node1, ×3 on node2",
                "3 of 3 tables differ.",
            ] {
                assert!(out.stdout.contains(expected), "--leaf-rows {leaf}: {expected}:\n{}", out.all());
            }
        }
        let json: serde_json::Value = serde_json::from_str(&nodes.bidir("verify", &["--json"]).stdout).unwrap();
        let items = &json["tables"].as_array().unwrap()[0];
        assert_eq!(items["identical"], false);
        assert_eq!(items["differences"].as_array().unwrap().len(), 3, "{items:#}");
        let out = nodes.bidir("verify", &["--max-keys", "1"]);
        assert!(out.stdout.contains("more rows differ"), "{}", out.all());

        // Repair node2 the same way, then diverge while run is stopped: verify sees it until
        // run has replicated it.
        nodes.psql_unreplicated(1, "UPDATE items SET v = 'v42' WHERE id = 42;");
        let (out, _) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
        nodes.psql(0, "UPDATE items SET v = 'while stopped' WHERE id = 7;");
        let out = nodes.bidir("verify", &[]);
        assert_eq!(out.code(), 1, "{}", out.all());
        assert!(out.stdout.contains("id=7: differs: node1 | node2"), "{}", out.all());
        let mut run = nodes.run(&[]);
        run.wait_streaming(2);
        support::wait_until("id 7 on node2", Duration::from_secs(30), || {
            nodes.value(1, "SELECT v FROM items WHERE id = 7") == "while stopped"
        });
        let out = nodes.bidir("verify", &[]);
        assert!(!out.stdout.contains("id=7"), "{}", out.all());
        run.terminate();
    }
}
