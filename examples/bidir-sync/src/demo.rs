//! `bidir-sync demo`: the whole story on throw-away nodes, in a few seconds.
//!
//! It starts two (or `--nodes N`) PostgreSQL servers from the installed binaries
//! (`pgrepl-testkit`), creates the seed lab's `users` table on each, runs `setup
//! --partition-sequences` and the links of `run` in this process, writes on every node
//! (inserts, an update, a delete), then pauses the links — as a network partition would — while
//! two nodes change the same row, so that `last_update_wins` has a conflict to resolve and
//! record. It waits until every link has caught up, prints the tables side by side, the conflict
//! history, `verify` and `status`, and removes everything: on success, on error and on Ctrl-C.
//! With `--keep` the nodes and links stay up (with a ready-made `pgrepl.toml` for the other
//! commands) until Ctrl-C.
//!
//! It uses the same code as the commands — the configuration is parsed from TOML text, links
//! run in a [`Runner`], status and verify are the real ones — so the demo shows what the tool
//! does, not a mock of it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use pgrepl_apply::{LinkState, LinkStats};
use pgrepl_core::Lsn;
use pgrepl_core::connection::{Client, ConnectConfig};
use pgrepl_testkit::{Cluster, Install};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Config;
use crate::failure::Failure;
use crate::metrics::{self, Exposed};
use crate::redact::say;
use crate::runner::Runner;
use crate::table::Table;
use crate::verify::{self, VerifyOptions};

/// The demo's database on every node.
const DB: &str = "practice";
/// The demo's cluster name.
const CLUSTER: &str = "demo";
/// How long the demo waits for links to start or catch up.
const PATIENCE: Duration = Duration::from_secs(60);

const USERS: &str = "CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    email      text UNIQUE,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// Options of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many nodes (2 to 5); every node replicates to every other
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(2..=5))]
    nodes: u8,
    /// The PostgreSQL major version to run, e.g. 15 or 18 (default: the newest installed;
    /// PGREPL_PG_BIN chooses an installation)
    #[arg(long, value_name = "VERSION")]
    pg: Option<u32>,
    /// Leave the nodes and links running, print their DSNs and a pgrepl.toml, and wait for
    /// Ctrl-C
    #[arg(long)]
    keep: bool,
}

/// Ctrl-C and SIGTERM.
struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    fn new() -> Result<Self, Failure> {
        let e = |e: std::io::Error| Failure::new(format!("cannot watch signals: {e}"));
        Ok(Interrupts {
            int: signal(SignalKind::interrupt()).map_err(e)?,
            term: signal(SignalKind::terminate()).map_err(e)?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// Everything the demo made, so that it can be removed whatever happens.
#[derive(Default)]
struct Demo {
    clusters: Vec<Cluster>,
    names: Vec<String>,
    dsns: Vec<ConnectConfig>,
    workdir: Option<PathBuf>,
    config: Option<Config>,
    config_text: String,
    runner: Option<Runner>,
    metrics: Option<(std::net::SocketAddr, tokio::sync::watch::Sender<bool>)>,
    major: u32,
}

fn step(n: u32, text: &str) {
    say(format!("\n{n}. {text}"));
}

impl Demo {
    async fn client(&self, i: usize) -> Result<Client, Failure> {
        let dsn = self
            .dsns
            .get(i)
            .ok_or_else(|| Failure::new("no such demo node"))?;
        let name = self.names.get(i).map_or("?", String::as_str);
        Client::connect(dsn)
            .await
            .map_err(|e| Failure::node(name, &dsn.to_string(), &e))
    }

    async fn sql(&self, i: usize, sql: &str) -> Result<(), Failure> {
        let name = self.names.get(i).cloned().unwrap_or_default();
        say(format!("     {name}> {sql}"));
        self.client(i)
            .await?
            .batch_execute(sql)
            .await
            .map_err(|e| Failure::new(format!("node {name}: {e}")))
    }

    fn config(&self) -> Result<&Config, Failure> {
        self.config
            .as_ref()
            .ok_or_else(|| Failure::new("the demo has no configuration yet"))
    }

    /// Starts the links of every node and waits until all stream.
    async fn start_links(&mut self) -> Result<(), Failure> {
        let mut configs = crate::run::link_configs(self.config()?, None)?;
        for c in &mut configs {
            c.retry.initial = Duration::from_millis(100);
            c.retry.max = Duration::from_secs(2);
            c.progress_interval = Duration::from_millis(100);
            // Confirm positions to the sources promptly, so that status shows them caught up.
            c.stream.status_interval = Duration::from_millis(100);
        }
        let runner = Runner::start(configs);
        let stats = runner.stats();
        if let Some((_, old)) = self.metrics.take() {
            let _ = old.send(true);
        }
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Failure::new(format!("cannot listen on 127.0.0.1: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::new(format!("cannot listen on 127.0.0.1: {e}")))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(metrics::serve(
            listener,
            Arc::new(Exposed::new(CLUSTER, stats.clone())),
            stopped,
        ));
        self.metrics = Some((addr, stop));
        self.runner = Some(runner);
        // Status reads the live state from this address.
        if let Some(c) = self.config.as_mut() {
            c.metrics = Some(addr);
        }
        let started = Instant::now();
        loop {
            if stats.iter().all(|(_, s)| s.state() == LinkState::Streaming) {
                return Ok(());
            }
            if let Some((n, s)) = stats.iter().find(|(_, s)| s.state() == LinkState::Failed) {
                return Err(Failure::new(format!(
                    "link {n} failed: {}",
                    s.last_error().unwrap_or_default()
                )));
            }
            if started.elapsed() > PATIENCE {
                return Err(Failure::new(
                    "the links did not start streaming within a minute",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop_links(&mut self) {
        if let Some(mut runner) = self.runner.take() {
            runner.shutdown(Duration::from_secs(10)).await;
        }
        if let Some((_, stop)) = self.metrics.take() {
            let _ = stop.send(true);
        }
    }

    /// Waits until every link has applied (or skipped) everything its source had written when
    /// this was called; returns how long that took.
    async fn wait_caught_up(&self) -> Result<Duration, Failure> {
        let started = Instant::now();
        let mut goal = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            let row = self
                .client(i)
                .await?
                .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
                .await
                .map_err(|e| Failure::new(format!("node {name}: {e}")))?;
            let lsn: Lsn = row
                .get(0)
                .map_err(|e| Failure::new(format!("node {name}: {e}")))?;
            goal.push((name.clone(), lsn));
        }
        let runner = self
            .runner
            .as_ref()
            .ok_or_else(|| Failure::new("the links are not running"))?;
        let stats = runner.stats();
        loop {
            let behind: Vec<String> = stats
                .iter()
                .filter(|(n, s)| {
                    let want = goal
                        .iter()
                        .find(|(g, _)| *g == n.source)
                        .map_or(Lsn::ZERO, |(_, l)| *l);
                    LinkStats::lsn(&s.caught_up_lsn) < want
                })
                .map(|(n, _)| n.to_string())
                .collect();
            if behind.is_empty() {
                return Ok(started.elapsed());
            }
            if let Some((n, s)) = stats.iter().find(|(_, s)| s.state() == LinkState::Failed) {
                return Err(Failure::new(format!(
                    "link {n} failed: {}",
                    s.last_error().unwrap_or_default()
                )));
            }
            if started.elapsed() > PATIENCE {
                return Err(Failure::new(format!(
                    "links {} did not catch up within a minute",
                    behind.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn users(&self, i: usize) -> Result<Vec<Vec<String>>, Failure> {
        let rows = self
            .client(i)
            .await?
            .query(
                "SELECT id::text, name, coalesce(email, ''), \
                        to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') \
                 FROM users ORDER BY id",
                &[],
            )
            .await
            .map_err(|e| {
                let name = self.names.get(i).map_or("?", String::as_str);
                Failure::new(format!("node {name}: {e}"))
            })?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..4)
                    .map(|j| r.get_str(j).unwrap_or("").to_owned())
                    .collect()
            })
            .collect())
    }

    /// The demo, up to the point where it would wait (`--keep`) or clean up.
    async fn steps(&mut self, args: &DemoArgs) -> Result<(), Failure> {
        let n = usize::from(self_nodes(args));
        let names = self.names.clone();
        let list = names.join(", ");

        step(2, &format!("Create the seed lab's users table on {list}:"));
        for line in USERS.lines() {
            say(format!("     {line}"));
        }
        for (i, name) in names.iter().enumerate() {
            self.client(i)
                .await?
                .batch_execute(USERS)
                .await
                .map_err(|e| Failure::new(format!("node {name}: {e}")))?;
        }

        step(
            3,
            "bidir-sync setup --partition-sequences: check the nodes, create schema pgrepl, the \
             publication, a slot per link on its source and an origin per link on its target",
        );
        let report = self
            .config()?
            .mesh
            .setup(true)
            .await
            .map_err(|e| Failure::mesh(&e))?;
        for action in &report.actions {
            say(format!("     {action}"));
        }

        let links: Vec<String> = self
            .config()?
            .mesh
            .links()
            .iter()
            .map(ToString::to_string)
            .collect();
        step(
            4,
            &format!(
                "bidir-sync run: {} links, every node into every other ({})",
                links.len(),
                links.join(", ")
            ),
        );
        self.start_links().await?;
        say("     all streaming");

        step(5, "Write on every node:");
        let people = [
            ("alice", "bob"),
            ("carol", "dave"),
            ("erin", "frank"),
            ("grace", "heidi"),
            ("ivan", "judy"),
        ];
        for (i, (a, b)) in people.iter().enumerate().take(n) {
            self.sql(
                i,
                &format!(
                    "INSERT INTO users (name, email) VALUES ('{a}', '{a}@example.com'), \
                     ('{b}', '{b}@example.com');"
                ),
            )
            .await?;
        }
        let took = self.wait_caught_up().await?;
        say(format!(
            "     … every node has every row ({} ms)",
            took.as_millis()
        ));
        self.sql(
            0,
            "UPDATE users SET email = 'bob@example.org', updated_at = now() WHERE name = 'bob';",
        )
        .await?;
        self.sql(1, "DELETE FROM users WHERE name = 'dave';")
            .await?;
        let took = self.wait_caught_up().await?;
        say(format!("     … replicated ({} ms)", took.as_millis()));

        step(
            6,
            "A conflict: the links pause — as in a network partition — while node1 and node2 \
             both change alice's email:",
        );
        self.stop_links().await;
        self.sql(
            0,
            "UPDATE users SET email = 'alice@node1.example', updated_at = now() WHERE name = 'alice';",
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.sql(
            1,
            "UPDATE users SET email = 'alice@node2.example', updated_at = now() WHERE name = 'alice';",
        )
        .await?;
        say(
            "     The links resume; each node receives the other's version of the row. The \
             resolver is last_update_wins:\n     both keep the version committed last \
             (node2's), whichever order they see them in.",
        );
        self.start_links().await?;
        let took = self.wait_caught_up().await?;
        say(format!("     … converged ({} ms)", took.as_millis()));

        step(7, "The users table on every node:");
        let mut tables = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut t = Table::new(&["id", "name", "email", "updated (UTC)"]);
            for row in self.users(i).await? {
                t.row(row);
            }
            tables.push((name.clone(), t.lines()));
        }
        print_side_by_side(&tables);

        step(
            8,
            "The conflict history (pgrepl.conflict_history, on the node where each happened):",
        );
        for (i, name) in names.iter().enumerate() {
            let rows = self
                .client(i)
                .await?
                .query(
                    "SELECT kind, resolution, source_node, key::text, \
                            coalesce(local_row->>'email', '-'), coalesce(remote_row->>'email', '-') \
                     FROM pgrepl.conflict_history ORDER BY id",
                    &[],
                )
                .await
                .map_err(|e| Failure::new(format!("node {name}: {e}")))?;
            for r in rows {
                let f = |j| r.get_str(j).unwrap_or("").to_owned();
                say(format!(
                    "     on {}: {} for users {}: local {} vs {} from {} → {}",
                    name,
                    f(0),
                    f(3),
                    f(4),
                    f(5),
                    f(2),
                    f(1)
                ));
            }
        }

        step(
            9,
            "bidir-sync verify: compare the tables on every node, by hashes of key ranges",
        );
        let report = verify::verify(
            self.config()?,
            &VerifyOptions {
                max_keys: 20,
                recheck_after: None,
                leaf_rows: verify::LEAF_ROWS,
            },
        )
        .await?;
        for line in verify::render(&report).lines() {
            say(format!("     {line}"));
        }
        if !report.identical() {
            return Err(Failure::new(
                "the nodes did not converge: this is a bug, please report it with the output above",
            ));
        }

        step(10, "bidir-sync status:");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = crate::status::gather(self.config()?).await;
        for line in crate::status::render(&status).lines() {
            say(format!("     {line}"));
        }
        Ok(())
    }

    /// Stops the links and removes the nodes and files.
    async fn cleanup(&mut self) {
        self.stop_links().await;
        let clusters = std::mem::take(&mut self.clusters);
        let count = clusters.len();
        // Stopping a server waits for it: not on the async threads.
        let _ = tokio::task::spawn_blocking(move || drop(clusters)).await;
        if let Some(dir) = self.workdir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if count > 0 {
            say(format!(
                "\nCleaned up: the links are stopped and the {count} throw-away nodes removed."
            ));
        }
    }
}

fn self_nodes(args: &DemoArgs) -> u8 {
    args.nodes.clamp(2, 5)
}

/// Node tables next to each other when two fit in a terminal, else one after the other.
fn print_side_by_side(tables: &[(String, Vec<String>)]) {
    let width = tables
        .iter()
        .flat_map(|(_, lines)| lines.iter().map(|l| crate::table::width(l)))
        .max()
        .unwrap_or(0)
        .max(8);
    if tables.len() == 2 && width * 2 + 9 <= 120 {
        let empty = Vec::new();
        let (a, la) = tables
            .first()
            .map_or(("", &empty), |(n, l)| (n.as_str(), l));
        let (b, lb) = tables.get(1).map_or(("", &empty), |(n, l)| (n.as_str(), l));
        say(format!("     {a:<width$}    {b}"));
        for i in 0..la.len().max(lb.len()) {
            let left = la.get(i).map_or("", String::as_str);
            let right = lb.get(i).map_or("", String::as_str);
            say(format!("     {left:<width$}    {right}"));
        }
    } else {
        for (name, lines) in tables {
            say(format!("     {name}"));
            for l in lines {
                say(format!("     {l}"));
            }
        }
    }
}

/// A basic TOML string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The demo's configuration, as a user would write it.
fn config_text(names: &[String], dsns: &[String], spool: &std::path::Path) -> String {
    let mut t = format!(
        "# bidir-sync configuration for the demo's throw-away nodes.\n\
         [cluster]\n\
         name = \"{CLUSTER}\"\n\
         tables = [\"public.users\"]\n\
         conflict_resolver = \"last_update_wins\"\n\
         spool_dir = {}\n",
        toml_string(&spool.display().to_string())
    );
    for (n, d) in names.iter().zip(dsns) {
        let _ = write!(t, "\n[[nodes]]\nname = \"{n}\"\ndsn = {}\n", toml_string(d));
    }
    t
}

/// `demo`.
pub(crate) async fn demo(args: DemoArgs) -> Result<u8, Failure> {
    let started = Instant::now();
    let mut interrupts = Interrupts::new()?;
    let mut demo = Demo::default();
    let outcome = prepare(&mut demo, &args).await;
    let outcome = match outcome {
        Err(e) => Err(e),
        Ok(()) => tokio::select! {
            r = demo.steps(&args) => r,
            s = interrupts.recv() => Err(Failure {
                status: 130,
                message: format!("interrupted ({s}); the demo stops and removes its nodes"),
            }),
        },
    };
    if outcome.is_ok() {
        if args.keep {
            keep(&demo, &mut interrupts).await;
        } else {
            say(format!(
                "\nDone in {:.1} s. (bidir-sync demo --keep leaves the nodes running, with a \
                 pgrepl.toml for them.)",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    demo.cleanup().await;
    outcome.map(|()| 0)
}

/// Finds PostgreSQL and starts the nodes (not interruptible: it takes a second or two, and a
/// Ctrl-C meanwhile is handled right after).
async fn prepare(demo: &mut Demo, args: &DemoArgs) -> Result<(), Failure> {
    let n = usize::from(self_nodes(args));
    let pg = args.pg;
    let install = tokio::task::spawn_blocking(move || match pg {
        Some(major) => Install::find(major),
        None => Install::find_default(),
    })
    .await
    .map_err(|e| Failure::new(format!("finding PostgreSQL failed: {e}")))?
    .map_err(|e| Failure::new(format!("no PostgreSQL to run the demo with: {e}")))?;
    demo.major = install.major();
    say(format!(
        "bidir-sync demo: two-way replication between {n} throw-away PostgreSQL {} nodes\n\
         (binaries in {})",
        install.version().rsplit(' ').next().unwrap_or_default(),
        install.source_bin_dir().display()
    ));
    step(1, &format!("Start {n} nodes, each with database {DB}:"));
    let builder = install.cluster().database(DB);
    let clusters = tokio::task::spawn_blocking(move || builder.start_many(n))
        .await
        .map_err(|e| Failure::new(format!("starting the nodes failed: {e}")))?
        .map_err(|e| Failure::new(format!("starting the nodes failed: {e}")))?;
    demo.names = (1..=n).map(|i| format!("node{i}")).collect();
    let dsn_texts: Vec<String> = clusters.iter().map(|c| c.dsn(DB)).collect();
    demo.clusters = clusters;
    for (name, dsn) in demo.names.iter().zip(&dsn_texts) {
        say(format!("     {name}: {dsn}"));
    }
    let workdir = std::env::temp_dir().join(format!("bidir-sync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", workdir.display())))?;
    demo.workdir = Some(workdir.clone());
    demo.config_text = config_text(&demo.names, &dsn_texts, &workdir.join("spool"));
    let config = Config::parse(&demo.config_text, "the demo's configuration")?;
    demo.dsns = config
        .mesh
        .spec()
        .nodes
        .iter()
        .map(|n| n.dsn.clone())
        .collect();
    demo.config = Some(config);
    Ok(())
}

/// `--keep`: shows how to reach the nodes and waits for Ctrl-C.
async fn keep(demo: &Demo, interrupts: &mut Interrupts) {
    let Some(dir) = demo.workdir.as_ref() else {
        return;
    };
    let path = dir.join("pgrepl.toml");
    let mut text = demo.config_text.clone();
    if let Some((addr, _)) = &demo.metrics {
        let _ = write!(text, "\n[metrics]\nlisten = \"{addr}\"\n");
    }
    let written = std::fs::write(&path, &text).is_ok();
    say("\nThe nodes and links keep running (--keep). Write on one node, read on another:");
    for (name, cluster) in demo.names.iter().zip(&demo.clusters) {
        say(format!(
            "     {name}: {}/psql \"{}\"",
            cluster.install().bin_dir().display(),
            cluster.dsn(DB)
        ));
    }
    if written {
        say(format!(
            "\nTheir configuration is {}:\n\n{text}\nIn another terminal:\n     \
             bidir-sync status --config {p}\n     bidir-sync verify --config {p}\n     \
             curl http://{m}/metrics",
            path.display(),
            p = path.display(),
            m = demo
                .metrics
                .as_ref()
                .map_or_else(String::new, |(a, _)| a.to_string())
        ));
    }
    say("\nPress Ctrl-C to stop the links and remove the nodes.");
    let _ = interrupts.recv().await;
}
