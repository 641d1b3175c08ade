//! The systems under test and their hooks, as the anchors' drivers define them
//! (`sys_setup_oneway`, `sys_disable`, `sys_enable`, `sys_origin`, `sys_setup_bidir`).
//!
//! - **native**: `CREATE PUBLICATION` / `CREATE SUBSCRIPTION … WITH (copy_data = false)`,
//!   disabled and enabled with `ALTER SUBSCRIPTION`; bidirectional only through publication
//!   row filters on the workload's disjoint keys (`anchors/native.sh`).
//! - **pglogical**: nodes, the `default` replication set, subscriptions with
//!   `synchronize_structure/data = false` and `forward_origins = '{}'`, disabled and enabled
//!   with `alter_subscription_disable/enable(…, immediate := true)` (`anchors/pglogical.sh`).
//! - **pgrepl**: [`Mesh::setup`] creates the publication, slots and origins; a link is
//!   "disabled" by not running it and "enabled" by starting [`Link::run`] on a multi-threaded
//!   tokio runtime inside this process, with [`Mesh::link_config`]'s default settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pgrepl_apply::{
    ApplyError, Link, LinkNames, LinkStats, Mesh, MeshSpec, NodeSpec, TableSelection,
};
use pgrepl_conflict::ResolverSet;
use pgrepl_core::connection::ConnectConfig;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::Node;
use crate::{Result, fail};

/// pgrepl's cluster name: slots `pgrepl_bench_to_<node>`, origins `pgrepl_bench_from_<node>`.
pub(crate) const PGREPL_CLUSTER: &str = "bench";
/// The conflict resolver pgrepl runs with (no workload here has conflicts).
pub(crate) const PGREPL_RESOLVER: &str = "last_update_wins";
/// The name of the runtime threads that run pgrepl's links (for the CPU split).
pub(crate) const PGREPL_THREAD: &str = "pgrepl-link";

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum System {
    Pgrepl,
    Native,
    Pglogical,
}

impl System {
    pub(crate) fn parse(s: &str) -> Option<System> {
        match s {
            "pgrepl" => Some(System::Pgrepl),
            "native" => Some(System::Native),
            "pglogical" => Some(System::Pglogical),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Pgrepl => "pgrepl",
            System::Native => "native",
            System::Pglogical => "pglogical",
        }
    }

    /// `shared_preload_libraries`.
    pub(crate) fn preload(self) -> &'static str {
        match self {
            System::Pglogical => "pglogical",
            System::Pgrepl | System::Native => "",
        }
    }
}

/// A link running in this process.
#[derive(Debug)]
struct RunningLink {
    link: Arc<Link>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<std::result::Result<(), ApplyError>>,
}

/// pgrepl's state during one run.
#[derive(Debug)]
struct Pgrepl {
    runtime: Runtime,
    mesh: Mesh,
    spool: PathBuf,
    links: Vec<RunningLink>,
}

/// One system's hooks for one run (one pair of fresh nodes).
#[derive(Debug)]
pub(crate) struct Driver {
    pub(crate) system: System,
    pgrepl: Option<Pgrepl>,
}

fn node(nodes: &[Node], index: usize) -> &Node {
    &nodes[index - 1]
}

impl Driver {
    pub(crate) fn new(system: System) -> Driver {
        Driver {
            system,
            pgrepl: None,
        }
    }

    /// Replication `publisher → subscriber` of `tables`, running (native, pglogical) or ready
    /// to run (pgrepl) once this returns.
    pub(crate) fn setup_oneway(
        &mut self,
        nodes: &[Node],
        publisher: usize,
        subscriber: usize,
        tables: &[&str],
        spool: PathBuf,
    ) -> Result<()> {
        let (p, s) = (node(nodes, publisher), node(nodes, subscriber));
        match self.system {
            System::Native => {
                p.sql(&format!(
                    "CREATE PUBLICATION anchors_pub FOR TABLE {}",
                    tables.join(",")
                ))?;
                native_sub(s, p)?;
                p.wait_slots_active(1)?;
            }
            System::Pglogical => {
                pgl_node(p, tables)?;
                pgl_node(s, &[])?;
                pgl_sub(s, p)?;
                p.wait_slots_active(1)?;
            }
            System::Pgrepl => {
                let state = self.pgrepl_setup(nodes, tables, spool)?;
                // One-way, like the others: the reverse link's slot would only hold back
                // node2's catalog xmin.
                let reverse = LinkNames::new(
                    PGREPL_CLUSTER,
                    &format!("node{subscriber}"),
                    &format!("node{publisher}"),
                )?;
                s.sql(&format!(
                    "SELECT pg_drop_replication_slot('{}')",
                    reverse.slot
                ))?;
                self.pgrepl = Some(state);
            }
        }
        Ok(())
    }

    fn pgrepl_setup(&self, nodes: &[Node], tables: &[&str], spool: PathBuf) -> Result<Pgrepl> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(PGREPL_THREAD)
            .enable_all()
            .build()?;
        let mut specs = Vec::new();
        for n in nodes {
            specs.push(NodeSpec {
                name: format!("node{}", n.index),
                dsn: ConnectConfig::parse(&n.dsn())?,
            });
        }
        let mesh = Mesh::new(MeshSpec {
            cluster: PGREPL_CLUSTER.into(),
            nodes: specs,
            tables: TableSelection::Tables(
                tables
                    .iter()
                    .map(|t| ("public".to_owned(), (*t).to_owned()))
                    .collect(),
            ),
            resolvers: Arc::new(ResolverSet::new(pgrepl_conflict::builtin(PGREPL_RESOLVER)?)),
            binary: false,
            spool_dir: spool.clone(),
        })?;
        // Sequences keep the anchors' node-disjoint strides (`setup(false)`).
        runtime.block_on(mesh.setup(false))?;
        Ok(Pgrepl {
            runtime,
            mesh,
            spool,
            links: Vec::new(),
        })
    }

    /// Stops applying `publisher → subscriber` and waits until the slot on the publisher is
    /// inactive (pgrepl: its link has not run, so there is nothing to do).
    pub(crate) fn disable(
        &mut self,
        nodes: &[Node],
        subscriber: usize,
        publisher: usize,
    ) -> Result<()> {
        let (p, s) = (node(nodes, publisher), node(nodes, subscriber));
        match self.system {
            System::Native => {
                s.sql(&format!(
                    "ALTER SUBSCRIPTION anchors_sub_from_{publisher} DISABLE"
                ))?;
            }
            System::Pglogical => {
                s.sql(&format!("SELECT pglogical.alter_subscription_disable('anchors_sub_from_{publisher}', immediate := true)"))?;
            }
            System::Pgrepl => {}
        }
        p.wait_slots_active(0)
    }

    /// Starts applying `publisher → subscriber`.
    pub(crate) fn enable(
        &mut self,
        nodes: &[Node],
        subscriber: usize,
        publisher: usize,
    ) -> Result<()> {
        let s = node(nodes, subscriber);
        match self.system {
            System::Native => {
                s.sql(&format!(
                    "ALTER SUBSCRIPTION anchors_sub_from_{publisher} ENABLE"
                ))?;
            }
            System::Pglogical => {
                s.sql(&format!("SELECT pglogical.alter_subscription_enable('anchors_sub_from_{publisher}', immediate := true)"))?;
            }
            System::Pgrepl => self.start_link(publisher, subscriber)?,
        }
        Ok(())
    }

    fn start_link(&mut self, publisher: usize, subscriber: usize) -> Result<()> {
        let Some(state) = self.pgrepl.as_mut() else {
            return fail("pgrepl was not set up");
        };
        let names = LinkNames::new(
            PGREPL_CLUSTER,
            &format!("node{publisher}"),
            &format!("node{subscriber}"),
        )?;
        let cfg = state.mesh.link_config(&names)?;
        let link = Arc::new(Link::new(cfg));
        let (stop, rx) = watch::channel(false);
        let running = Arc::clone(&link);
        let handle = state.runtime.spawn(async move { running.run(rx).await });
        state.links.push(RunningLink { link, stop, handle });
        Ok(())
    }

    /// The replication origin on `subscriber` that tracks changes from `publisher`.
    pub(crate) fn origin(
        &self,
        nodes: &[Node],
        subscriber: usize,
        publisher: usize,
    ) -> Result<String> {
        let s = node(nodes, subscriber);
        match self.system {
            System::Native => s.sql(&format!(
                "SELECT 'pg_' || oid FROM pg_subscription WHERE subname = 'anchors_sub_from_{publisher}'"
            )),
            System::Pglogical => s.sql(&format!(
                "SELECT o.roname FROM pglogical.subscription s
                 JOIN pg_replication_origin o ON o.roname = s.sub_slot_name
                 WHERE s.sub_name = 'anchors_sub_from_{publisher}'"
            )),
            System::Pgrepl => Ok(LinkNames::new(
                PGREPL_CLUSTER,
                &format!("node{publisher}"),
                &format!("node{subscriber}"),
            )?
            .origin),
        }
    }

    /// node1 ↔ node2 for the pgbench tables, running once this returns.
    pub(crate) fn setup_bidir(
        &mut self,
        nodes: &[Node],
        half: u64,
        spool: PathBuf,
    ) -> Result<String> {
        let (n1, n2) = (node(nodes, 1), node(nodes, 2));
        let mut note = String::new();
        match self.system {
            System::Native => {
                // PG15 has no origin filter; publication row filters keep each node's own keys.
                let probe = n2.sql(&format!(
                    "CREATE SUBSCRIPTION probe CONNECTION '{}' PUBLICATION x WITH (connect = false, origin = none)",
                    n1.dsn()
                ));
                note = match probe {
                    Ok(_) => {
                        n2.sql("DROP SUBSCRIPTION probe")?;
                        "origin=none accepted (not used: row filters as on PG15)".into()
                    }
                    Err(e) => format!(
                        "origin=none refused: {}",
                        e.to_string()
                            .lines()
                            .find(|l| l.contains("ERROR"))
                            .unwrap_or("?")
                            .trim()
                    ),
                };
                n1.sql(&format!("CREATE PUBLICATION anchors_pub FOR TABLE pgbench_accounts WHERE (aid <= {half}),
                 pgbench_history WHERE (hid % 10 = 1), anchors_marker WHERE (id = 1)"))?;
                n2.sql(&format!("CREATE PUBLICATION anchors_pub FOR TABLE pgbench_accounts WHERE (aid > {half}),
                 pgbench_history WHERE (hid % 10 = 2), anchors_marker WHERE (id = 2)"))?;
                native_sub(n1, n2)?;
                native_sub(n2, n1)?;
                n1.wait_slots_active(1)?;
                n2.wait_slots_active(1)?;
            }
            System::Pglogical => {
                let tables = crate::workload::Workload::Bidir.tables();
                pgl_node(n1, tables)?;
                pgl_node(n2, tables)?;
                pgl_sub(n1, n2)?;
                pgl_sub(n2, n1)?;
                n1.wait_slots_active(1)?;
                n2.wait_slots_active(1)?;
            }
            System::Pgrepl => {
                let state =
                    self.pgrepl_setup(nodes, crate::workload::Workload::Bidir.tables(), spool)?;
                self.pgrepl = Some(state);
                self.start_link(1, 2)?;
                self.start_link(2, 1)?;
                n1.wait_slots_active(1)?;
                n2.wait_slots_active(1)?;
            }
        }
        Ok(note)
    }

    /// An error if a pgrepl link has stopped by itself.
    pub(crate) fn check_running(&self) -> Result<()> {
        if let Some(state) = &self.pgrepl {
            for l in &state.links {
                if l.handle.is_finished() {
                    return fail(format!(
                        "pgrepl link {} stopped: {}",
                        l.link.names(),
                        l.link
                            .stats()
                            .last_error()
                            .unwrap_or_else(|| "no error recorded".into())
                    ));
                }
            }
        }
        Ok(())
    }

    /// pgrepl's counters per link (`pgrepl12_applied_txns` for node1 → node2, …); empty for
    /// the others.
    pub(crate) fn stats(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Some(state) = &self.pgrepl else {
            return out;
        };
        for l in &state.links {
            let s: Arc<LinkStats> = l.link.stats();
            let n = l.link.names();
            let tag = format!(
                "pgrepl{}{}",
                n.source.trim_start_matches("node"),
                n.target.trim_start_matches("node")
            );
            let mut put = |k: &str, v: String| out.push((format!("{tag}_{k}"), v));
            put(
                "applied_txns",
                s.applied_txns.load(Ordering::Relaxed).to_string(),
            );
            put(
                "careful_txns",
                s.careful_txns.load(Ordering::Relaxed).to_string(),
            );
            put(
                "skipped_txns",
                s.skipped_txns.load(Ordering::Relaxed).to_string(),
            );
            put(
                "streamed_txns",
                s.streamed_txns.load(Ordering::Relaxed).to_string(),
            );
            put("restarts", s.restarts.load(Ordering::Relaxed).to_string());
            put("conflicts", s.conflicts.total().to_string());
            put("state", s.state().as_str().to_owned());
            if let Some(e) = s.last_error() {
                put("last_error", format!("\"{}\"", crate::one_line(&e)));
            }
        }
        out
    }

    /// Stops pgrepl's links (gracefully, as `Link::run` does on shutdown) and its runtime.
    pub(crate) fn shutdown(&mut self) -> Result<()> {
        let Some(state) = self.pgrepl.take() else {
            return Ok(());
        };
        let mut problem = None;
        for l in state.links {
            let _ = l.stop.send(true);
            let names = l.link.names().to_string();
            match state
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), l.handle).await })
            {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => problem = Some(format!("link {names} ended with: {e}")),
                Ok(Err(e)) => problem = Some(format!("link {names} task: {e}")),
                Err(_) => problem = Some(format!("link {names} did not stop within 30 s")),
            }
        }
        state.runtime.shutdown_timeout(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&state.spool);
        match problem {
            Some(p) => fail(p),
            None => Ok(()),
        }
    }
}

/// All subscription options at their defaults except `copy_data = false` (both nodes start
/// with identical data).
fn native_sub(sub: &Node, publisher: &Node) -> Result<()> {
    sub.sql(&format!(
        "CREATE SUBSCRIPTION anchors_sub_from_{} CONNECTION '{}' PUBLICATION anchors_pub WITH (copy_data = false)",
        publisher.index,
        publisher.dsn()
    ))?;
    Ok(())
}

/// The pglogical extension, the node and `tables` in the `default` replication set.
fn pgl_node(n: &Node, tables: &[&str]) -> Result<()> {
    n.sql(&format!(
        "CREATE EXTENSION pglogical;
         SELECT pglogical.create_node(node_name := 'node{}', dsn := '{}')",
        n.index,
        n.dsn()
    ))?;
    for t in tables {
        n.sql(&format!(
            "SELECT pglogical.replication_set_add_table('default', '{t}', synchronize_data := false)"
        ))?;
    }
    Ok(())
}

/// A pglogical subscription `publisher → sub`, waited for until it replicates.
fn pgl_sub(sub: &Node, publisher: &Node) -> Result<()> {
    let name = format!("anchors_sub_from_{}", publisher.index);
    sub.sql(&format!(
        "SELECT pglogical.create_subscription(
      subscription_name := '{name}', provider_dsn := '{}',
      replication_sets := '{{default}}', synchronize_structure := false,
      synchronize_data := false, forward_origins := '{{}}')",
        publisher.dsn()
    ))?;
    let mut status = String::new();
    for _ in 0..600 {
        status = sub.sql(&format!(
            "SELECT status FROM pglogical.show_subscription_status('{name}')"
        ))?;
        if status == "replicating" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    fail(format!(
        "pglogical subscription {name} on node{} is '{status}' after 60 s",
        sub.index
    ))
}
