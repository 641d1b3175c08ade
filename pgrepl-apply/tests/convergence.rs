//! Convergence under `last_update_wins`: random concurrent inserts, updates and deletes on two
//! nodes over a small key space, with the links stopped and restarted at random (a partition);
//! after draining, both nodes hold identical tables.
//!
//! Inserts take fresh keys from a node-disjoint sequence (odd keys on node1, even on node2), as
//! `setup --partition-sequences` arranges; updates and deletes hit random existing keys on
//! either node. Without tombstones, a key that is deleted and inserted again while another node
//! concurrently updates or inserts it can diverge (see the README's limitations), so the
//! workload never reuses a key. `PGREPL_CONVERGENCE_SEEDS` sets how many seeds run (default 6
//! per version), `PGREPL_CONVERGENCE_BASE` the first one.

use crate::support::{self, Nodes, Running};
use pgrepl_testkit::{Install, pg_test};

const SCHEMA: &str = "CREATE TABLE kv (k int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0);";

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seeds() -> u64 {
    std::env::var("PGREPL_CONVERGENCE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

async fn one_seed(pg: &Install, seed: u64) {
    let nodes: Nodes = support::start_with(
        pg,
        2,
        SCHEMA,
        &["kv"],
        support::resolvers("last_update_wins"),
        |b| {
            if std::env::var_os("PGREPL_LOG_STATEMENTS").is_some() {
                b.conf("log_statement = 'all'")
            } else {
                b
            }
        },
    )
    .await;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut clients = [nodes.client(0).await, nodes.client(1).await];
    // links[0] is node1 → node2, links[1] node2 → node1
    let mut links: [Option<Running>; 2] = [Some(nodes.run(0, 1)), Some(nodes.run(1, 0))];
    // The next key of each node's sequence: node1 1, 3, 5, …; node2 2, 4, 6, …
    let mut next_key = [1u64, 2u64];
    for step in 0..250 {
        if rng.below(100) < 6 {
            let which = usize::try_from(rng.below(2)).unwrap();
            match links[which].take() {
                Some(link) => {
                    if rng.below(2) == 0 {
                        link.stop().await.unwrap();
                    } else {
                        link.kill();
                    }
                }
                None => {
                    links[which] = Some(if which == 0 {
                        nodes.run(0, 1)
                    } else {
                        nodes.run(1, 0)
                    })
                }
            }
        }
        let node = usize::try_from(rng.below(2)).unwrap();
        let statements = 1 + rng.below(3);
        let mut sql = String::from("BEGIN;");
        for _ in 0..statements {
            // any key issued so far, by either node
            let k = 1 + rng.below(next_key[0].max(next_key[1]));
            match rng.below(10) {
                0..=3 => {
                    let key = next_key[node];
                    next_key[node] += 2;
                    sql.push_str(&format!(
                        "INSERT INTO kv VALUES ({key}, 's{seed}-{step}-n{node}');"
                    ));
                }
                4..=7 => sql.push_str(&format!(
                    "UPDATE kv SET v = 's{seed}-{step}-n{node}', n = n + 1 WHERE k = {k};"
                )),
                _ => sql.push_str(&format!("DELETE FROM kv WHERE k = {k};")),
            }
        }
        sql.push_str("COMMIT;");
        clients[node].batch_execute(&sql).await.unwrap();
        if rng.below(4) == 0 {
            tokio::task::yield_now().await;
        }
    }
    for (i, slot) in links.iter_mut().enumerate() {
        if slot.is_none() {
            *slot = Some(if i == 0 {
                nodes.run(0, 1)
            } else {
                nodes.run(1, 0)
            });
        }
    }
    nodes.sync_all().await;
    let a = nodes.dump(0, "kv").await;
    let b = nodes.dump(1, "kv").await;
    if a != b {
        let la: Vec<&str> = a.lines().collect();
        let lb: Vec<&str> = b.lines().collect();
        let only_a: Vec<&&str> = la.iter().filter(|l| !lb.contains(l)).collect();
        let only_b: Vec<&&str> = lb.iter().filter(|l| !la.contains(l)).collect();
        let mut history = String::new();
        for i in 0..2 {
            for r in nodes
                .rows(i, "SELECT kind, resolution, key::text, local_row::text, local_commit_time::text, remote_row::text, remote_commit_time::text FROM pgrepl.conflict_history ORDER BY id")
                .await
            {
                history.push_str(&format!("node{}: {:?}\n", i + 1, r));
            }
        }
        panic!(
            "seed {seed}: the nodes diverged\nonly on node1: {only_a:?}\nonly on node2: {only_b:?}\nhistory:\n{history}"
        );
    }
    for link in links.into_iter().flatten() {
        let stats = link.link.stats();
        link.stop().await.unwrap();
        assert!(
            stats.last_error().is_none()
                || stats.restarts.load(std::sync::atomic::Ordering::Relaxed) > 0
        );
    }
}

pg_test! {
    /// Random concurrent writes on both nodes, with partitions, converge.
    async fn random_writes_with_partitions_converge(pg: Install) {
        let base = std::env::var("PGREPL_CONVERGENCE_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(1u64);
        for seed in base..base + seeds() {
            one_seed(&pg, seed).await;
        }
    }
}
