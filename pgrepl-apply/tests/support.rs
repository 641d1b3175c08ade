//! Shared set-up: throw-away nodes with a mesh on them, links run as tasks, and waiting for
//! replication to catch up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgrepl_apply::{ApplyError, Link, LinkNames, Mesh, MeshSpec, NodeSpec, TableSelection};
use pgrepl_conflict::ResolverSet;
use pgrepl_core::connection::{Client, ConnectConfig};
use pgrepl_testkit::{Cluster, Install};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const DB: &str = "pgrepl_test";
pub const CLUSTER: &str = "t";

/// Throw-away nodes and the mesh set up on them.
pub struct Nodes {
    pub clusters: Vec<Cluster>,
    pub dsns: Vec<ConnectConfig>,
    pub mesh: Mesh,
    pub names: Vec<String>,
    _spool: SpoolDir,
}

/// The links' spool directory, removed with the nodes (a failing test keeps its clusters for
/// their logs; spooled transactions tell nothing more).
struct SpoolDir(PathBuf);

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A resolver set with `name` for every kind.
pub fn resolvers(name: &str) -> Arc<ResolverSet> {
    Arc::new(ResolverSet::new(pgrepl_conflict::builtin(name).unwrap()))
}

static SPOOL: AtomicU64 = AtomicU64::new(0);

fn spool_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "pgrepl-apply-tests-{}-{}",
        std::process::id(),
        SPOOL.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=pgrepl_apply=debug`).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Starts `n` nodes, runs `schema` on each (it must create the tables), and sets up a mesh
/// replicating `tables` (plus the marker table every test gets).
pub async fn start(pg: &Install, n: usize, schema: &str, tables: &[&str], resolver: &str) -> Nodes {
    start_with(pg, n, schema, tables, resolvers(resolver), |b| b).await
}

/// As [`start`], with a resolver set and a hook on the cluster builder.
pub async fn start_with(
    pg: &Install,
    n: usize,
    schema: &str,
    tables: &[&str],
    resolvers: Arc<ResolverSet>,
    builder: impl Fn(pgrepl_testkit::ClusterBuilder) -> pgrepl_testkit::ClusterBuilder,
) -> Nodes {
    init_logging();
    let clusters = builder(pg.cluster().database(DB)).start_many(n).unwrap();
    let dsns: Vec<ConnectConfig> = clusters
        .iter()
        .map(|c| ConnectConfig::parse(&c.dsn(DB)).unwrap())
        .collect();
    let names: Vec<String> = (1..=n).map(|i| format!("node{i}")).collect();
    for dsn in &dsns {
        let mut c = Client::connect(dsn).await.unwrap();
        c.batch_execute(
            "CREATE TABLE marker (id bigint PRIMARY KEY, at timestamptz DEFAULT now())",
        )
        .await
        .unwrap();
        c.batch_execute(schema).await.unwrap();
    }
    let mut table_list: Vec<(String, String)> = vec![("public".into(), "marker".into())];
    for t in tables {
        let (s, n) = t.split_once('.').unwrap_or(("public", t));
        table_list.push((s.into(), n.into()));
    }
    let spool = SpoolDir(spool_dir());
    let mesh = Mesh::new(MeshSpec {
        cluster: CLUSTER.into(),
        nodes: names
            .iter()
            .zip(&dsns)
            .map(|(name, dsn)| NodeSpec {
                name: name.clone(),
                dsn: dsn.clone(),
            })
            .collect(),
        tables: TableSelection::Tables(table_list),
        resolvers,
        binary: false,
        spool_dir: spool.0.clone(),
    })
    .unwrap();
    mesh.setup(false).await.unwrap();
    Nodes {
        clusters,
        dsns,
        mesh,
        names,
        _spool: spool,
    }
}

/// A link running in a task.
pub struct Running {
    pub link: Arc<Link>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<(), ApplyError>>,
}

impl Running {
    /// Asks the link to stop and waits for it.
    pub async fn stop(self) -> Result<(), ApplyError> {
        let _ = self.stop.send(true);
        self.handle.await.unwrap()
    }

    /// Kills the link without any cleanup (its connections just drop).
    pub fn kill(self) {
        self.handle.abort();
    }

    /// Waits until the link has ended by itself (a definite error).
    pub async fn finished(self) -> Result<(), ApplyError> {
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("link did not stop")
            .unwrap()
    }
}

impl Nodes {
    /// A SQL session on node `i` (0-based).
    pub async fn client(&self, i: usize) -> Client {
        Client::connect(&self.dsns[i]).await.unwrap()
    }

    /// The link `src → dst` (0-based indexes).
    pub fn link_names(&self, src: usize, dst: usize) -> LinkNames {
        LinkNames::new(CLUSTER, &self.names[src], &self.names[dst]).unwrap()
    }

    /// Starts the link `src → dst` with `configure` applied to its configuration.
    pub fn run_with(
        &self,
        src: usize,
        dst: usize,
        configure: impl FnOnce(&mut pgrepl_apply::LinkConfig),
    ) -> Running {
        let mut cfg = self.mesh.link_config(&self.link_names(src, dst)).unwrap();
        cfg.retry.initial = Duration::from_millis(50);
        cfg.retry.max = Duration::from_millis(500);
        configure(&mut cfg);
        let link = Arc::new(Link::new(cfg));
        let (stop, rx) = watch::channel(false);
        let l = Arc::clone(&link);
        let handle = tokio::spawn(async move { l.run(rx).await });
        Running { link, stop, handle }
    }

    /// Starts the link `src → dst`.
    pub fn run(&self, src: usize, dst: usize) -> Running {
        self.run_with(src, dst, |_| {})
    }

    /// Starts every link of the mesh.
    pub fn run_all(&self) -> Vec<Running> {
        let n = self.names.len();
        let mut out = Vec::new();
        for s in 0..n {
            for d in 0..n {
                if s != d {
                    out.push(self.run(s, d));
                }
            }
        }
        out
    }

    /// Commits a marker row on `src` and waits until `dst` has it: then `dst` has applied
    /// everything `src` committed before.
    pub async fn sync(&self, src: usize, dst: usize) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = i64::try_from(NEXT.fetch_add(1, Ordering::Relaxed)).unwrap() * 1000
            + i64::try_from(src).unwrap();
        let mut s = self.client(src).await;
        s.query("INSERT INTO marker (id) VALUES ($1)", &[&id])
            .await
            .unwrap();
        let mut d = self.client(dst).await;
        let start = Instant::now();
        loop {
            let seen = d
                .query("SELECT 1 FROM marker WHERE id = $1", &[&id])
                .await
                .map(|r| !r.is_empty())
                .unwrap_or(false);
            if seen {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for marker {id} from node{} on node{}",
                src + 1,
                dst + 1
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Syncs every pair, twice (so what one node applied from a third has travelled on).
    pub async fn sync_all(&self) {
        let n = self.names.len();
        for _ in 0..2 {
            for s in 0..n {
                for d in 0..n {
                    if s != d {
                        self.sync(s, d).await;
                    }
                }
            }
        }
    }

    /// The rows of `sql` on node `i`, as text.
    pub async fn rows(&self, i: usize, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut c = self.client(i).await;
        c.query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|j| r.get_str(j).map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    /// Every row of `table` on node `i`, ordered, as one string.
    pub async fn dump(&self, i: usize, table: &str) -> String {
        let rows = self
            .rows(
                i,
                &format!("SELECT t::text FROM {table} t ORDER BY t::text"),
            )
            .await;
        rows.into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The conflict history of node `i`: (kind, resolution) pairs, in order.
    pub async fn history(&self, i: usize) -> Vec<(String, String)> {
        self.rows(
            i,
            "SELECT kind, resolution FROM pgrepl.conflict_history ORDER BY id",
        )
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
    }
}
