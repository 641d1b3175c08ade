//! `bidir-sync status`: where every link stands, read from the nodes themselves — so it works
//! whether `run` is running or not — plus, when a `run` answers on `[metrics] listen`, its live
//! view of each link (state, last error, counters).
//!
//! | column | where it comes from |
//! | --- | --- |
//! | source LSN | `pg_current_wal_lsn()` on the source |
//! | applied | `pg_replication_origin_progress(origin, false)` on the target: the end of the last source transaction committed there |
//! | confirmed | the slot's `confirmed_flush_lsn` on the source: what the link confirmed as durable |
//! | lag | source LSN − the larger of applied and confirmed, in bytes; in seconds from the running link, else from `pg_stat_replication.flush_lag` while a walsender serves the slot |
//! | retained WAL | source LSN − the slot's `restart_lsn`: WAL the source keeps for this link |
//! | conflicts | rows of `pgrepl.conflict_history` on the target from this source |
//! | state, last error | the running `run` (`/status.json`); without one, last errors from what the last `run` on this machine saved (`<spool_dir>/<cluster>/last-run*.json`); else `active` (a walsender serves the slot: a run we cannot ask) or `stopped`; `not set up` without slot or origin; `source down` / `target down` |
//!
//! A node that cannot be reached is reported as down, with the reason; it never stops the
//! command.

use std::collections::HashMap;
use std::time::Duration;

use pgrepl_apply::NodeSpec;
use pgrepl_core::Lsn;
use pgrepl_core::connection::Client;
use serde::Serialize;

use crate::config::Config;
use crate::failure::{Failure, describe_node_error};
use crate::metrics::{LiveLink, fetch_live};
use crate::table::{Table, bytes};

/// How long status waits for a node.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything `status` reports.
#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    pub(crate) cluster: String,
    pub(crate) run: RunReport,
    pub(crate) nodes: Vec<NodeReport>,
    pub(crate) links: Vec<LinkReport>,
}

/// Whether a `run` answered.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    /// `[metrics] listen`, if configured.
    pub(crate) metrics_listen: Option<String>,
    pub(crate) answering: bool,
    pub(crate) pid: Option<u32>,
    pub(crate) uptime_seconds: Option<f64>,
    /// Why it did not answer.
    pub(crate) error: Option<String>,
    /// When no run answers: the last state a run saved on this machine.
    pub(crate) last_run: Option<LastRun>,
}

/// What the last `run` on this machine saved.
#[derive(Debug, Serialize)]
pub(crate) struct LastRun {
    pub(crate) pid: u32,
    pub(crate) ended: bool,
    pub(crate) seconds_ago: f64,
}

/// One node.
#[derive(Debug, Serialize)]
pub(crate) struct NodeReport {
    pub(crate) name: String,
    /// `user@host:port/dbname` (never a password).
    pub(crate) endpoint: String,
    pub(crate) up: bool,
    pub(crate) server_version: Option<String>,
    pub(crate) current_wal_lsn: Option<String>,
    /// Why it is down, or what could not be read.
    pub(crate) error: Option<String>,
}

/// Conflicts of one kind and resolution.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConflictCount {
    pub(crate) kind: String,
    pub(crate) resolution: String,
    pub(crate) count: u64,
    pub(crate) last_at: Option<String>,
}

/// One link.
#[derive(Debug, Serialize)]
pub(crate) struct LinkReport {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) slot: String,
    pub(crate) origin: String,
    pub(crate) state: String,
    pub(crate) source_lsn: Option<String>,
    pub(crate) applied_lsn: Option<String>,
    pub(crate) confirmed_flush_lsn: Option<String>,
    pub(crate) restart_lsn: Option<String>,
    pub(crate) lag_bytes: Option<u64>,
    pub(crate) lag_seconds: Option<f64>,
    pub(crate) retained_wal_bytes: Option<u64>,
    pub(crate) slot_active: Option<bool>,
    pub(crate) slot_wal_status: Option<String>,
    pub(crate) walsender: Option<Walsender>,
    pub(crate) conflicts: Option<u64>,
    pub(crate) conflicts_by_kind: Vec<ConflictCount>,
    pub(crate) last_error: Option<String>,
    /// The running link's own view, when a `run` answered.
    pub(crate) live: Option<LiveLink>,
}

/// `pg_stat_replication` of the walsender serving a slot.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Walsender {
    pub(crate) pid: i32,
    pub(crate) state: Option<String>,
    pub(crate) sent_lsn: Option<String>,
    pub(crate) write_lag_seconds: Option<f64>,
    pub(crate) flush_lag_seconds: Option<f64>,
    pub(crate) replay_lag_seconds: Option<f64>,
}

#[derive(Debug, Clone)]
struct Slot {
    active: bool,
    active_pid: Option<i32>,
    confirmed_flush: Option<Lsn>,
    restart: Option<Lsn>,
    wal_status: Option<String>,
}

/// What one node told us.
#[derive(Debug, Default)]
struct Facts {
    version: Option<String>,
    current: Option<Lsn>,
    slots: HashMap<String, Slot>,
    walsenders: HashMap<i32, Walsender>,
    origins: HashMap<String, Option<Lsn>>,
    /// By source node; `None` when the history table is missing (setup not run).
    conflicts: Option<HashMap<String, Vec<ConflictCount>>>,
    problems: Vec<String>,
}

async fn node_facts(cluster: &str, node: &NodeSpec) -> Result<Facts, String> {
    let mut dsn = node.dsn.clone();
    dsn.connect_timeout = Some(
        dsn.connect_timeout
            .map_or(NODE_TIMEOUT, |t| t.min(NODE_TIMEOUT)),
    );
    let endpoint = dsn.to_string();
    let mut client = Client::connect(&dsn)
        .await
        .map_err(|e| describe_node_error(&node.name, &endpoint, &e))?;
    let mut facts = Facts::default();
    let note = |facts: &mut Facts, what: &str, e: pgrepl_core::connection::Error| {
        facts.problems.push(format!("{what}: {e}"));
    };
    match client
        .query_one(
            "SELECT pg_catalog.current_setting('server_version'), pg_catalog.pg_current_wal_lsn()::text",
            &[],
        )
        .await
    {
        Ok(row) => {
            facts.version = row.get(0).ok();
            facts.current = row.get(1).ok();
        }
        Err(e) => note(&mut facts, "server position", e),
    }
    match client
        .query(
            "SELECT slot_name::text, active, active_pid, confirmed_flush_lsn::text, \
                    restart_lsn::text, wal_status \
             FROM pg_catalog.pg_replication_slots WHERE slot_name LIKE $1",
            &[&format!("pgrepl\\_{cluster}\\_to\\_%")],
        )
        .await
    {
        Ok(rows) => {
            for row in rows {
                let Ok(name) = row.get::<String>(0) else {
                    continue;
                };
                facts.slots.insert(
                    name,
                    Slot {
                        active: row.get(1).unwrap_or(false),
                        active_pid: row.get(2).ok().flatten(),
                        confirmed_flush: row.get(3).ok().flatten(),
                        restart: row.get(4).ok().flatten(),
                        wal_status: row.get(5).ok().flatten(),
                    },
                );
            }
        }
        Err(e) => note(&mut facts, "replication slots", e),
    }
    match client
        .query(
            "SELECT pid, state, sent_lsn::text, \
                    extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, \
                    extract(epoch FROM replay_lag)::float8 \
             FROM pg_catalog.pg_stat_replication",
            &[],
        )
        .await
    {
        Ok(rows) => {
            for row in rows {
                let Ok(pid) = row.get::<i32>(0) else {
                    continue;
                };
                facts.walsenders.insert(
                    pid,
                    Walsender {
                        pid,
                        state: row.get(1).ok().flatten(),
                        sent_lsn: row.get(2).ok().flatten(),
                        write_lag_seconds: row.get(3).ok().flatten(),
                        flush_lag_seconds: row.get(4).ok().flatten(),
                        replay_lag_seconds: row.get(5).ok().flatten(),
                    },
                );
            }
        }
        Err(e) => note(&mut facts, "pg_stat_replication", e),
    }
    match client
        .query(
            "SELECT roname::text, pg_catalog.pg_replication_origin_progress(roname, false)::text \
             FROM pg_catalog.pg_replication_origin WHERE roname LIKE $1",
            &[&format!("pgrepl\\_{cluster}\\_from\\_%")],
        )
        .await
    {
        Ok(rows) => {
            for row in rows {
                if let Ok(name) = row.get::<String>(0) {
                    facts.origins.insert(name, row.get(1).ok().flatten());
                }
            }
        }
        Err(e) => note(&mut facts, "replication origins", e),
    }
    match client
        .query(
            "SELECT source_node, kind, resolution, count(*), max(recorded_at)::text \
             FROM pgrepl.conflict_history WHERE target_node = $1 \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            &[&node.name],
        )
        .await
    {
        Ok(rows) => {
            let mut by_source: HashMap<String, Vec<ConflictCount>> = HashMap::new();
            for row in rows {
                let source: String = row.get(0).unwrap_or_default();
                by_source.entry(source).or_default().push(ConflictCount {
                    kind: row.get(1).unwrap_or_default(),
                    resolution: row.get(2).unwrap_or_default(),
                    count: row.get(3).unwrap_or(0),
                    last_at: row.get(4).ok().flatten(),
                });
            }
            facts.conflicts = Some(by_source);
        }
        // No schema or table pgrepl.conflict_history: setup has not run here.
        Err(e) if matches!(e.code(), Some("42P01" | "3F000")) => {}
        Err(e) => note(&mut facts, "conflict history", e),
    }
    Ok(facts)
}

/// Gathers the report.
pub(crate) async fn gather(config: &Config) -> StatusReport {
    let mesh = &config.mesh;
    let spec = mesh.spec();
    let cluster = spec.cluster.clone();

    let mut tasks = tokio::task::JoinSet::new();
    for (i, node) in spec.nodes.iter().enumerate() {
        let node = node.clone();
        let cluster = cluster.clone();
        tasks.spawn(async move { (i, node_facts(&cluster, &node).await) });
    }
    let live = async {
        match config.metrics {
            None => (None, None),
            Some(addr) => match fetch_live(connectable(addr)).await {
                Ok(live) => (Some(live), None),
                Err(e) => (None, Some(e)),
            },
        }
    };
    let (live, live_error) = live.await;
    // No run answers: what runs on this machine saved, newest first.
    let saved = if live.is_none() {
        crate::metrics::SavedRun::load_all(&spec.spool_dir, &spec.cluster)
    } else {
        Vec::new()
    };
    let mut facts: Vec<Result<Facts, String>> = (0..spec.nodes.len())
        .map(|_| Err("not asked".to_owned()))
        .collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, f)) = joined
            && let Some(slot) = facts.get_mut(i)
        {
            *slot = f;
        }
    }

    let nodes: Vec<NodeReport> = spec
        .nodes
        .iter()
        .zip(&facts)
        .map(|(node, f)| NodeReport {
            name: node.name.clone(),
            endpoint: node.dsn.to_string(),
            up: f.is_ok(),
            server_version: f.as_ref().ok().and_then(|f| f.version.clone()),
            current_wal_lsn: f
                .as_ref()
                .ok()
                .and_then(|f| f.current.map(|l| l.to_string())),
            error: match f {
                Err(e) => Some(e.clone()),
                Ok(f) if !f.problems.is_empty() => Some(f.problems.join("; ")),
                Ok(_) => None,
            },
        })
        .collect();

    let index: HashMap<&str, usize> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let facts_of = |name: &str| index.get(name).and_then(|i| facts.get(*i)?.as_ref().ok());

    let mut links = Vec::new();
    for names in mesh.links() {
        let source = facts_of(&names.source);
        let target = facts_of(&names.target);
        let slot = source.and_then(|f| f.slots.get(&names.slot));
        let origin = target.and_then(|f| f.origins.get(&names.origin));
        let live_link = live.as_ref().and_then(|l| {
            l.links
                .iter()
                .find(|x| x.source == names.source && x.target == names.target)
                .cloned()
        });
        let current = source.and_then(|f| f.current);
        let confirmed = slot.and_then(|s| s.confirmed_flush);
        // Everything up to the origin's progress is applied; everything up to the confirmed
        // position is applied or had nothing for this link.
        let applied = origin.copied().flatten();
        let done = match (confirmed, applied) {
            (Some(c), Some(a)) => Some(c.max(a)),
            (c, a) => c.or(a),
        };
        let lag_bytes = current.zip(done).map(|(c, d)| c.0.saturating_sub(d.0));
        let walsender = slot
            .and_then(|s| s.active_pid)
            .and_then(|pid| source?.walsenders.get(&pid).cloned());
        let lag_seconds = match (&live_link, &walsender, lag_bytes) {
            (Some(l), _, _) => Some(l.lag_seconds),
            (None, Some(w), _) if w.flush_lag_seconds.is_some() => w.flush_lag_seconds,
            (None, _, Some(0)) => Some(0.0),
            _ => None,
        };
        let conflicts_by_kind: Vec<ConflictCount> = target
            .and_then(|f| f.conflicts.as_ref())
            .and_then(|c| c.get(&names.source))
            .cloned()
            .unwrap_or_default();
        let conflicts = target
            .and_then(|f| f.conflicts.as_ref())
            .map(|_| conflicts_by_kind.iter().map(|c| c.count).sum());
        let state = match (&live_link, source, target) {
            (Some(l), _, _) => l.state.clone(),
            (None, None, None) => "nodes down".to_owned(),
            (None, None, Some(_)) => "source down".to_owned(),
            (None, Some(_), None) => "target down".to_owned(),
            (None, Some(_), Some(_)) if slot.is_none() || origin.is_none() => {
                "not set up".to_owned()
            }
            (None, Some(_), Some(_)) if slot.is_some_and(|s| s.active) => "active".to_owned(),
            (None, Some(_), Some(_)) => "stopped".to_owned(),
        };
        let mut last_error = live_link.as_ref().and_then(|l| l.last_error.clone());
        if live.is_none()
            && let Some((run, error)) = saved.iter().find_map(|run| {
                let l = run
                    .status
                    .links
                    .iter()
                    .find(|l| l.source == names.source && l.target == names.target)?;
                Some((run, l.last_error.clone()?))
            })
        {
            last_error = Some(format!(
                "{error} (saved by run pid {} {} ago)",
                run.status.pid,
                duration(run.age_seconds())
            ));
        }
        if last_error.is_none() && state == "not set up" {
            let mut missing = Vec::new();
            if slot.is_none() {
                missing.push(format!("slot {} on {}", names.slot, names.source));
            }
            if origin.is_none() {
                missing.push(format!("origin {} on {}", names.origin, names.target));
            }
            last_error = Some(format!(
                "missing {}: run bidir-sync setup",
                missing.join(" and ")
            ));
        }
        links.push(LinkReport {
            source: names.source.clone(),
            target: names.target.clone(),
            slot: names.slot.clone(),
            origin: names.origin.clone(),
            state,
            source_lsn: current.map(|l| l.to_string()),
            applied_lsn: applied.map(|l| l.to_string()),
            confirmed_flush_lsn: confirmed.map(|l| l.to_string()),
            restart_lsn: slot.and_then(|s| s.restart).map(|l| l.to_string()),
            lag_bytes,
            lag_seconds,
            retained_wal_bytes: current
                .zip(slot.and_then(|s| s.restart))
                .map(|(c, r)| c.0.saturating_sub(r.0)),
            slot_active: slot.map(|s| s.active),
            slot_wal_status: slot.and_then(|s| s.wal_status.clone()),
            walsender,
            conflicts,
            conflicts_by_kind,
            last_error,
            live: live_link,
        });
    }

    StatusReport {
        cluster,
        run: RunReport {
            metrics_listen: config.metrics.map(|a| a.to_string()),
            answering: live.is_some(),
            pid: live.as_ref().map(|l| l.pid),
            uptime_seconds: live.as_ref().map(|l| l.uptime_seconds),
            error: live_error,
            last_run: saved.first().map(|r| LastRun {
                pid: r.status.pid,
                ended: r.ended,
                seconds_ago: r.age_seconds(),
            }),
        },
        nodes,
        links,
    }
}

/// An address to connect to for one we listen on: `0.0.0.0` and `::` become loopback.
fn connectable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

/// `status`: prints the report as a table, or as JSON.
pub(crate) async fn status(config: &Config, json: bool) -> Result<u8, Failure> {
    let report = gather(config).await;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::new(format!("cannot write the status as JSON: {e}")))?;
        crate::redact::say(text);
    } else {
        crate::redact::say(render(&report).trim_end());
    }
    Ok(0)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The report for people.
pub(crate) fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let up = r.nodes.iter().filter(|n| n.up).count();
    out.push_str(&format!(
        "cluster {}: {} nodes ({up} up), {} links\n",
        r.cluster,
        r.nodes.len(),
        r.links.len()
    ));
    out.push_str(&match (&r.run.metrics_listen, r.run.answering) {
        (None, _) => {
            "run: live state unknown ([metrics] listen is not configured); positions below are \
             read from the nodes\n"
                .to_owned()
        }
        (Some(addr), true) => format!(
            "run: answering on {addr} (pid {}, up {})\n",
            opt(r.run.pid),
            duration(r.run.uptime_seconds.unwrap_or(0.0))
        ),
        (Some(addr), false) => format!(
            "run: not answering on {addr} ({}); positions below are read from the nodes\n",
            r.run.error.as_deref().unwrap_or("no answer")
        ),
    });
    if let Some(last) = &r.run.last_run {
        out.push_str(&format!(
            "last run on this machine: pid {}, {} {} ago\n",
            last.pid,
            if last.ended {
                "ended"
            } else {
                "last saved its state"
            },
            duration(last.seconds_ago)
        ));
    }
    out.push('\n');

    let mut nodes = Table::new(&["NODE", "ENDPOINT", "STATE", "VERSION", "WAL LSN"]);
    for n in &r.nodes {
        nodes.row(vec![
            n.name.clone(),
            n.endpoint.clone(),
            if n.up { "up" } else { "down" }.to_owned(),
            opt(n
                .server_version
                .as_deref()
                .map(|v| v.split(' ').next().unwrap_or(v))),
            opt(n.current_wal_lsn.clone()),
        ]);
    }
    out.push_str(&nodes.render());
    for n in &r.nodes {
        if let Some(e) = &n.error {
            let label = if n.up {
                "could not read everything"
            } else {
                "down"
            };
            out.push_str(&format!(
                "  {} {label}: {}\n",
                n.name,
                e.replace('\n', "\n    ")
            ));
        }
    }
    out.push('\n');

    let mut links = Table::new(&[
        "LINK",
        "STATE",
        "SOURCE LSN",
        "APPLIED",
        "CONFIRMED",
        "LAG",
        "LAG TIME",
        "RETAINED WAL",
        "CONFLICTS",
    ]);
    for l in &r.links {
        links.row(vec![
            format!("{}→{}", l.source, l.target),
            l.state.clone(),
            opt(l.source_lsn.clone()),
            opt(l.applied_lsn.clone()),
            opt(l.confirmed_flush_lsn.clone()),
            opt(l.lag_bytes.map(bytes)),
            opt(l.lag_seconds.map(|s| format!("{s:.1}s"))),
            opt(l.retained_wal_bytes.map(bytes)),
            opt(l.conflicts),
        ]);
    }
    out.push_str(&links.render());

    let errors: Vec<&LinkReport> = r.links.iter().filter(|l| l.last_error.is_some()).collect();
    if !errors.is_empty() {
        out.push_str("\nlast errors:\n");
        for l in errors {
            out.push_str(&format!(
                "  {}→{} ({}): {}\n",
                l.source,
                l.target,
                l.state,
                l.last_error.as_deref().unwrap_or_default()
            ));
        }
    }
    let with_conflicts: Vec<&LinkReport> = r
        .links
        .iter()
        .filter(|l| !l.conflicts_by_kind.is_empty())
        .collect();
    if !with_conflicts.is_empty() {
        out.push_str("\nconflicts (pgrepl.conflict_history on the target):\n");
        for l in with_conflicts {
            for c in &l.conflicts_by_kind {
                out.push_str(&format!(
                    "  {}→{}: {} × {}, resolved {} (last at {})\n",
                    l.source,
                    l.target,
                    c.count,
                    c.kind,
                    c.resolution,
                    c.last_at.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    out
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}
