//! Three nodes, every one writing: six links in one process, keys from node-disjoint sequence
//! strides, and every node ends with every row.

use pgrepl_testkit::{Install, pg_test};

use crate::support;

const SCHEMA: &str =
    "CREATE TABLE events (id bigserial PRIMARY KEY, origin int NOT NULL, n int NOT NULL);";

pg_test! {
    fn three_nodes_all_writing_converge(pg: Install) {
        let nodes = support::start(&pg, 3, SCHEMA, &["events"], "");
        let out = nodes.bidir("setup", &["--partition-sequences"]);
        let text = out.ok();
        for k in 1..=3 {
            assert!(text.contains(&format!("now yields {k}, {}, … (node {k} of 3)", k + 3)), "{text}");
        }
        let mut run = nodes.run(&[]);
        run.wait_streaming(6);
        // 50 transactions of 4 rows on every node at once.
        std::thread::scope(|s| {
            for k in 0..3 {
                let nodes = &nodes;
                s.spawn(move || {
                    nodes.psql(k, &format!(
                        "DO $$ BEGIN FOR i IN 1..50 LOOP \
                           INSERT INTO events (origin, n) SELECT {}, g FROM generate_series(1, 4) g; \
                           COMMIT; \
                         END LOOP; END $$;",
                        k + 1
                    ));
                });
            }
        });
        nodes.wait_converged("events", "600 rows everywhere", |n| n.value(0, "SELECT count(*) FROM events") == "600");
        // Every node's keys came from its own stride.
        assert_eq!(nodes.value(0, "SELECT count(*) FROM events WHERE id % 3 <> origin % 3"), "0");
        // Each node updates its own rows; the updates travel too.
        let expected = nodes.value(0, "SELECT sum(CASE WHEN id % 2 = 0 THEN n + 100 ELSE n END) FROM events");
        for k in 0..3 {
            nodes.psql(k, &format!("UPDATE events SET n = n + 100 WHERE origin = {} AND id % 2 = 0;", k + 1));
        }
        nodes.wait_converged("events", "the updates everywhere", |n| {
            n.value(0, "SELECT sum(n) FROM events") == expected
        });
        let out = nodes.bidir("verify", &[]);
        assert!(out.ok().contains("identical   600 rows on each node"), "{}", out.all());
        let (out, _) = run.terminate();
        assert_eq!(out.code(), 0, "{}", out.all());
    }
}
