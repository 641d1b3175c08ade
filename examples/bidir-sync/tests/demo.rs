//! `demo` runs to completion and leaves nothing behind; with `--keep` it serves its nodes
//! (status works against them, writes replicate) until Ctrl-C, then cleans up too.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use pgrepl_testkit::{Install, pg_test};

use crate::support::{self, Running, command, entries_containing};

/// The nodes' ports, from the demo's `nodeN: host=127.0.0.1 port=P …` lines.
fn ports(stdout: &str) -> Vec<u16> {
    stdout
        .lines()
        .filter_map(|l| l.split("port=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Nothing of the demo with process id `pid` is left: no server answers on its ports, no
/// cluster directory or work directory remains.
fn nothing_left(pid: u32, ports: &[u16]) {
    assert!(!ports.is_empty());
    for port in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still answers"
        );
    }
    let mut bases: Vec<PathBuf> = vec!["/dev/shm".into(), std::env::temp_dir()];
    if let Some(dir) = std::env::var_os("PGREPL_TEST_TMPDIR") {
        bases.push(dir.into());
    }
    for base in bases {
        let left = entries_containing(&base, &format!("-{pid}-"));
        assert!(left.is_empty(), "left in {}: {left:?}", base.display());
    }
    assert!(
        !std::env::temp_dir()
            .join(format!("bidir-sync-demo-{pid}"))
            .exists()
    );
}

pg_test! {
    fn demo_runs_to_completion_and_cleans_up(pg: Install) {
        let major = pg.major().to_string();
        for nodes in ["2", "3"] {
            let demo = Running::spawn(command(&["demo", "--pg", &major, "--nodes", nodes]), None);
            let pid = demo.pid();
            let (out, took) = demo.wait_exit(Duration::from_secs(120));
            let text = out.ok();
            for expected in [
                "update_origin_differs",
                "→ apply_remote",
                "→ keep_local",
                "All tables are identical on every node.",
                "streaming",
                "Cleaned up",
            ] {
                assert!(text.contains(expected), "{expected}:\n{}", out.all());
            }
            assert!(out.stderr.is_empty(), "{}", out.stderr);
            assert!(took < Duration::from_secs(60), "the demo took {took:?}");
            nothing_left(pid, &ports(text));
        }
    }

    fn demo_keep_serves_the_nodes_until_ctrl_c(pg: Install) {
        let major = pg.major().to_string();
        let demo = Running::spawn(command(&["demo", "--pg", &major, "--keep"]), None);
        support::wait_until("the demo to wait for Ctrl-C", Duration::from_secs(120), || {
            demo.stdout().contains("Press Ctrl-C")
        });
        let stdout = demo.stdout();
        let config = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Their configuration is ")?.strip_suffix(':'))
            .unwrap()
            .to_owned();
        let out = support::bidir(&["status", "--config", &config]);
        let status = out.ok();
        assert!(status.contains("answering on") && status.contains("streaming"), "{status}");
        // A write on node1 arrives on node2.
        let dsns: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.split("psql \"").nth(1)?.strip_suffix('"'))
            .collect();
        assert_eq!(dsns.len(), 2, "{stdout}");
        let psql = |dsn: &str, sql: &str| {
            let out = std::process::Command::new(pg.program("psql"))
                .args(["-X", "-A", "-t", "-d", dsn, "-c", sql])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        psql(dsns[0], "INSERT INTO users (name) VALUES ('zed')");
        support::wait_until("zed on node2", Duration::from_secs(30), || {
            psql(dsns[1], "SELECT count(*) FROM users WHERE name = 'zed'") == "1"
        });
        assert!(support::bidir(&["verify", "--config", &config]).ok().contains("identical"));
        let pid = demo.pid();
        support::signal(pid, "INT");
        let (out, took) = demo.wait_exit(Duration::from_secs(60));
        assert_eq!(out.code(), 0, "{}", out.all());
        assert!(took < Duration::from_secs(10), "cleaning up took {took:?}");
        assert!(out.stdout.contains("Cleaned up"), "{}", out.all());
        nothing_left(pid, &ports(&stdout));
    }
}
