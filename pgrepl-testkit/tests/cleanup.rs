//! Nothing is left behind: not by a passing test, nor a failing one (whose evidence is kept
//! and shown instead), nor a killed one.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pgrepl_testkit::{Install, pg_test, reap_stale_dirs};

use crate::support;

/// Written into the server log by the failing child test, looked for in its stderr.
const MARKER: &str = "marker_7f3a9c";

pg_test! {
    /// Dropping a cluster stops its server and removes its directory.
    fn drop_stops_the_server_and_removes_the_dir(pg: Install) {
        let node = pg.start_cluster().unwrap();
        let dir = node.dir().to_owned();
        let port = node.port();
        let pid = node.postmaster_pid().unwrap();
        assert!(dir.exists());
        drop(node);
        assert!(!dir.exists(), "{} is still there", dir.display());
        assert!(support::process_gone(pid), "postmaster {pid} still runs");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// A test that panics keeps its cluster's directory and prints the server log's tail.
    fn failed_test_keeps_the_dir_and_prints_the_log(pg: Install) {
        let out = support::child("cleanup::child_fails_with_a_cluster", pg.major())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child test should fail:\n{stdout}\n{stderr}");
        let dir = stdout
            .lines()
            .find_map(|l| l.split_once("CLUSTER_DIR ").map(|(_, dir)| dir))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("the child printed no dir:\n{stdout}\n{stderr}"));
        let kept = dir.exists();
        let marker_printed = stderr.contains(MARKER);
        let report_printed = stderr.contains("the thread panicked; cluster `victim`")
            && stderr.contains(&dir.display().to_string());
        let server_stopped = !dir.join("data/postmaster.pid").exists();
        let marked_kept = dir.join("KEPT").exists();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(kept, "{} was removed", dir.display());
        assert!(marked_kept, "no KEPT marker in {}", dir.display());
        assert!(server_stopped, "the server in {} still runs", dir.display());
        assert!(report_printed, "no report on stderr:\n{stderr}");
        assert!(marker_printed, "the log tail was not printed:\n{stderr}");
    }

    /// A test process killed with SIGKILL (no destructors) leaves no server running, and its
    /// directory is removed by the next reaping.
    fn killed_test_leaves_no_server(pg: Install) {
        let mut child = support::child("cleanup::child_is_killed_with_a_cluster", pg.major())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        let mut cluster = None;
        for line in stdout.lines() {
            let line = line.unwrap();
            // libtest prints "test NAME ... " without a newline before the test's output.
            if let Some((_, rest)) = line.split_once("CLUSTER ") {
                let (pid, dir) = rest.split_once(' ').unwrap();
                cluster = Some((pid.parse::<u32>().unwrap(), PathBuf::from(dir)));
                break;
            }
            seen.push(line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (pid, dir) = cluster.unwrap_or_else(|| panic!("the child started no cluster: {seen:?}"));
        assert!(
            support::wait_until(Duration::from_secs(30), || support::process_gone(pid)),
            "postmaster {pid} outlived its test process"
        );
        assert!(dir.exists());
        reap_stale_dirs();
        assert!(!dir.exists(), "{} was not reaped", dir.display());
    }
}

/// Run by `failed_test_keeps_the_dir_and_prints_the_log` in a child process: logs an error
/// with a marker, then fails.
#[test]
#[ignore = "runs in a child process of failed_test_keeps_the_dir_and_prints_the_log"]
fn child_fails_with_a_cluster() {
    let Some(major) = support::child_major() else {
        return;
    };
    let node = Install::require(major)
        .cluster()
        .name("victim")
        .start()
        .unwrap();
    println!("CLUSTER_DIR {}", node.dir().display());
    let _ = node.psql("postgres", &format!("SELECT 1/0 AS {MARKER}"));
    panic!("deliberate failure with a cluster running");
}

/// Run by `killed_test_leaves_no_server` in a child process, which kills it.
#[test]
#[ignore = "runs in a child process of killed_test_leaves_no_server"]
fn child_is_killed_with_a_cluster() {
    let Some(major) = support::child_major() else {
        return;
    };
    let node = Install::require(major).start_cluster().unwrap();
    println!(
        "CLUSTER {} {}",
        node.postmaster_pid().unwrap(),
        node.dir().display()
    );
    // Bounded: the parent kills us long before this ends.
    std::thread::sleep(Duration::from_secs(120));
}
