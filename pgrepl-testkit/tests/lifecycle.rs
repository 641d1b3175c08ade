//! Several clusters at once; stop, crash, start, restart, reload.

use std::collections::HashSet;
use std::net::TcpListener;
use std::time::Duration;

use pgrepl_testkit::{Install, pg_test};

use crate::support;

pg_test! {
    /// A three-node mesh's worth of clusters, each its own server.
    fn three_clusters_at_once(pg: Install) {
        let nodes = pg.cluster().database("practice").start_many(3).unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);
        let ports: HashSet<u16> = nodes.iter().map(|n| n.port()).collect();
        assert_eq!(ports.len(), 3);
        let dirs: HashSet<_> = nodes.iter().map(|n| n.data_dir().to_owned()).collect();
        assert_eq!(dirs.len(), 3);
        for (i, node) in nodes.iter().enumerate() {
            node.psql(
                "practice",
                &format!("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES ({i});"),
            )
            .unwrap();
        }
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(node.psql("practice", "SELECT id FROM t").unwrap(), format!("{i}\n"));
        }
    }

    /// `stop_immediate` is a crash (the next start recovers), and loses nothing committed.
    fn crash_and_start_keep_committed_data(pg: Install) {
        let mut node = pg.cluster().database("practice").start().unwrap();
        let port = node.port();
        node.psql(
            "practice",
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);",
        )
        .unwrap();
        let pid = node.postmaster_pid().unwrap();
        node.stop_immediate().unwrap();
        assert!(!node.is_running());
        assert!(support::process_gone(pid), "postmaster {pid} still runs");
        node.start().unwrap();
        assert_eq!(node.port(), port);
        assert!(
            node.log().contains("automatic recovery in progress"),
            "no crash recovery after an immediate stop:\n{}",
            node.log()
        );
        assert_eq!(node.psql("practice", "SELECT count(*) FROM t").unwrap(), "1000\n");
    }

    /// A fast stop shuts down cleanly; start, restart and reload work on the same port.
    fn stop_start_restart_reload(pg: Install) {
        let mut node = pg.start_cluster().unwrap();
        let port = node.port();
        node.psql("postgres", "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept');")
            .unwrap();
        node.stop().unwrap();
        assert!(!node.is_running());
        assert!(node.log().contains("database system is shut down"));
        assert!(node.psql("postgres", "SELECT 1").is_err());
        node.stop().unwrap(); // stopping a stopped cluster is fine

        node.start().unwrap();
        assert!(node.is_running());
        node.restart().unwrap();
        assert_eq!(node.port(), port);
        assert_eq!(node.psql("postgres", "SELECT v FROM t").unwrap(), "kept\n");

        node.psql("postgres", "ALTER SYSTEM SET work_mem = '3MB'").unwrap();
        node.reload().unwrap();
        assert_eq!(node.psql("postgres", "SHOW work_mem").unwrap(), "3MB\n");
    }

    /// A start whose port is taken (the server exits with "could not bind") waits for the
    /// port, on which the DSNs handed out depend, instead of failing or moving.
    fn start_waits_for_a_taken_port(pg: Install) {
        let mut node = pg.start_cluster().unwrap();
        let port = node.port();
        node.stop().unwrap();
        let squatter = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            drop(squatter);
        });
        node.start().unwrap();
        release.join().unwrap();
        assert_eq!(node.port(), port);
        assert!(
            node.log().contains("could not bind IPv4 address"),
            "the first tries should have found the port taken:\n{}",
            node.log()
        );
        assert_eq!(node.psql("postgres", "SELECT 1").unwrap(), "1\n");
    }
}
