//! Shared set-up: throw-away nodes, a configuration file for them, and the `bidir-sync` binary
//! run as a process — the way people run it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgrepl_testkit::{Cluster, ClusterBuilder, Install};

pub const DB: &str = "bidir";
pub const CLUSTER: &str = "t";
pub const BIN: &str = env!("CARGO_BIN_EXE_bidir-sync");

/// A directory of the test's own, removed at the end unless the test failed.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bidir-sync-test-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Nodes with a configuration file for them.
pub struct Nodes {
    pub clusters: Vec<Cluster>,
    pub names: Vec<String>,
    pub dir: TempDir,
    pub config: PathBuf,
    pub metrics: u16,
}

/// Starts `n` nodes, runs `schema` on each, and writes a configuration replicating `tables`
/// with `extra` added to `[cluster]`.
pub fn start(pg: &Install, n: usize, schema: &str, tables: &[&str], extra: &str) -> Nodes {
    start_with(pg, n, schema, tables, extra, |b| b, |c| c.dsn(DB))
}

/// As [`start`], with a hook on the cluster builder and on the DSN written for each node.
pub fn start_with(
    pg: &Install,
    n: usize,
    schema: &str,
    tables: &[&str],
    extra: &str,
    builder: impl Fn(ClusterBuilder) -> ClusterBuilder,
    dsn: impl Fn(&Cluster) -> String,
) -> Nodes {
    let clusters = builder(pg.cluster().database(DB)).start_many(n).unwrap();
    for c in &clusters {
        c.psql(DB, schema).unwrap();
    }
    let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
    let dir = TempDir::new("nodes");
    let metrics = free_port();
    let mut text = format!(
        "[cluster]\nname = \"{CLUSTER}\"\ntables = [{}]\nspool_dir = \"{}\"\n{extra}\n",
        tables
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", "),
        dir.0.join("spool").display()
    );
    for (name, c) in names.iter().zip(&clusters) {
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"{name}\"\ndsn = \"{}\"\n",
            dsn(c).replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    text.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"));
    let config = dir.0.join("pgrepl.toml");
    std::fs::write(&config, text).unwrap();
    Nodes {
        clusters,
        names,
        dir,
        config,
        metrics,
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code(), 0, "command failed:\n{}", self.all());
        &self.stdout
    }

    /// Asserts the failure shape every error must have: exit status 2, one `error:` message,
    /// no panic, no backtrace; returns stderr.
    pub fn fails_clearly(&self) -> &str {
        assert_eq!(self.code(), 2, "expected exit status 2:\n{}", self.all());
        assert!(self.stderr.contains("error: "), "{}", self.all());
        assert!(!self.all().contains("panicked"), "{}", self.all());
        assert!(!self.all().contains("RUST_BACKTRACE"), "{}", self.all());
        &self.stderr
    }
}

fn output(out: Output) -> Ran {
    Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `bidir-sync` command, with a clean environment for logs.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    cmd
}

/// Runs `bidir-sync ARGS` to the end.
pub fn bidir(args: &[&str]) -> Ran {
    output(command(args).output().unwrap())
}

impl Nodes {
    pub fn config(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// Runs `bidir-sync COMMAND --config <ours> ARGS`.
    pub fn bidir(&self, command: &str, args: &[&str]) -> Ran {
        let mut all = vec![command, "--config", self.config()];
        all.extend_from_slice(args);
        bidir(&all)
    }

    /// Starts `bidir-sync run --config <ours> ARGS` in the background.
    pub fn run(&self, args: &[&str]) -> Running {
        let mut all = vec!["run", "--config", self.config()];
        all.extend_from_slice(args);
        Running::spawn(command(&all), Some(self.metrics))
    }

    /// psql on node `i`.
    pub fn psql(&self, i: usize, sql: &str) -> String {
        self.clusters[i].psql(DB, sql).unwrap()
    }

    /// One value from node `i`.
    pub fn value(&self, i: usize, sql: &str) -> String {
        self.psql(i, sql).trim().to_owned()
    }

    /// Every row of `table` on node `i`, ordered, as one string.
    pub fn dump(&self, i: usize, table: &str) -> String {
        self.psql(
            i,
            &format!("SELECT t::text FROM {table} t ORDER BY t::text"),
        )
    }

    /// Waits until `table` is the same on every node and `check` holds on node 0's dump.
    pub fn wait_converged(&self, table: &str, what: &str, check: impl Fn(&Nodes) -> bool) {
        wait_until(what, Duration::from_secs(60), || {
            let first = self.dump(0, table);
            (1..self.clusters.len()).all(|i| self.dump(i, table) == first) && check(self)
        });
    }

    /// Runs `sql` on node `i` in a session with a replication origin of its own (`diverge`),
    /// so that no link sends it on: a divergence nobody replicates.
    pub fn psql_unreplicated(&self, i: usize, sql: &str) -> String {
        self.psql(
            i,
            &format!(
                "SELECT pg_replication_origin_create('diverge') WHERE NOT EXISTS \
                   (SELECT 1 FROM pg_replication_origin WHERE roname = 'diverge');\n\
                 SELECT pg_replication_origin_session_setup('diverge');\n\
                 {sql}\nSELECT pg_replication_origin_session_reset();"
            ),
        )
    }
}

/// Polls `check` every 50 ms until it holds, failing after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `path` from 127.0.0.1:`port`: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Sends a signal to a process.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid} failed");
}

/// A `bidir-sync` process running in the background; its stdout and stderr are collected.
pub struct Running {
    pub child: Child,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    metrics: Option<u16>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

impl Running {
    pub fn spawn(mut cmd: Command, metrics: Option<u16>) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Running {
            child,
            stdout,
            stderr,
            metrics,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The live status of `run` (its `/status.json`), once it answers.
    pub fn live(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.metrics?, "/status.json")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The state of each live link, as `source→target: state`.
    pub fn states(&self) -> Vec<String> {
        self.live()
            .map(|v| {
                v["links"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        format!(
                            "{}→{}: {}",
                            l["source"].as_str().unwrap(),
                            l["target"].as_str().unwrap(),
                            l["state"].as_str().unwrap()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `links` links report `streaming`.
    pub fn wait_streaming(&mut self, links: usize) {
        let start = Instant::now();
        loop {
            let states = self.states();
            if states.len() == links && states.iter().all(|s| s.ends_with("streaming")) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("bidir-sync run exited ({status}):\n{}", self.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "links not streaming: {states:?}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself (at most `limit`).
    pub fn wait_exit(mut self, limit: Duration) -> (Ran, Duration) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "bidir-sync did not exit within {limit:?}:\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (
            Ran {
                status,
                stdout: self.stdout(),
                stderr: self.stderr(),
            },
            start.elapsed(),
        )
    }

    /// SIGTERM, then waits for the exit; returns what it printed and how long stopping took.
    pub fn terminate(self) -> (Ran, Duration) {
        signal(self.pid(), "TERM");
        self.wait_exit(Duration::from_secs(30))
    }

    /// SIGKILL: no cleanup at all.
    pub fn kill(self) -> Ran {
        signal(self.pid(), "KILL");
        self.wait_exit(Duration::from_secs(30)).0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether some process has a file or directory under `dir` whose name contains `needle`.
pub fn entries_containing(dir: &Path, needle: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(needle))
                .collect()
        })
        .unwrap_or_default()
}
