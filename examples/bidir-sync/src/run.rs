//! `bidir-sync run`: every link of the mesh (or only those into one node) in this process,
//! until SIGINT or SIGTERM.
//!
//! **Failures.** A transient failure (a node restarting, the network) is retried inside the
//! link with capped exponential backoff, each attempt logged with its reason. A definite one (a
//! missing table, a permission, the `error` resolver) stops *that link only*: it is logged at
//! ERROR with the fix, shown as `failed` with its error in `status`, `/metrics`
//! (`pgrepl_link_state{state="failed"} 1`) and `/healthz` (503), and the other links keep
//! running. After fixing the cause, SIGHUP starts the failed links again without touching the
//! healthy ones. If every link has failed there is nothing left to do and `run` exits. The exit
//! status is 0 after a clean stop with every link healthy, and 1 when any link had failed — so a
//! supervisor sees the failure even after a clean stop.
//!
//! **Afterwards.** Every definite failure and the final state of every link are saved to
//! `<spool_dir>/<cluster>/last-run.json` (`last-run-into-<node>.json` with `--node`), so that
//! `status` can still show each link's last error when `run` is no longer running.
//!
//! **Stopping.** SIGINT or SIGTERM tells every link to stop: in-flight transactions commit or
//! roll back (each is one local transaction, committed together with the origin's progress),
//! the durable position is reported to the source, and the process exits — within a few
//! seconds, or after at most [`GRACE`] when a node does not answer. Nothing is lost: the next
//! `run` resumes every link from its origin's durable progress on the target.

use std::time::Duration;

use pgrepl_apply::LinkConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::failure::{EXIT_DIFFERENT, Failure};
use crate::metrics::{self, Exposed, SavedRun};
use crate::runner::Runner;

/// How long links get to stop after SIGINT/SIGTERM before they are cut off.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// The link configurations of `config`, all of them or only those into `node`.
pub(crate) fn link_configs(
    config: &Config,
    node: Option<&str>,
) -> Result<Vec<LinkConfig>, Failure> {
    let mesh = &config.mesh;
    if let Some(n) = node
        && mesh.node(n).is_none()
    {
        let known: Vec<&str> = mesh.spec().nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(Failure::new(format!(
            "--node {n}: the configuration has no node named \"{n}\"; its nodes are {}",
            known.join(", ")
        )));
    }
    mesh.links()
        .iter()
        .filter(|l| node.is_none_or(|n| l.target == n))
        .map(|l| mesh.link_config(l).map_err(|e| Failure::mesh(&e)))
        .collect()
}

/// Runs until a signal (or every link failed); the exit status.
pub(crate) async fn run(config: Config, node: Option<String>) -> Result<u8, Failure> {
    let configs = link_configs(&config, node.as_deref())?;
    for warning in config.non_converging_resolvers() {
        tracing::warn!(
            setting = %warning,
            "this resolver does not make nodes converge under concurrent writes to the same row"
        );
    }
    let signal_failure = |e: std::io::Error| Failure::new(format!("cannot watch signals: {e}"));
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_failure)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_failure)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(signal_failure)?;
    let listener = match config.metrics {
        None => None,
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            Failure::new(format!(
                "cannot serve metrics on {addr}: {e}\n  fix: choose a free address in [metrics] \
                 listen (is another bidir-sync run already using it?)"
            ))
        })?),
    };

    let mesh = &config.mesh;
    let link_list: Vec<String> = configs.iter().map(|c| c.names.to_string()).collect();
    let mut runner = Runner::start(configs);
    let (stop_metrics, metrics_stop) = tokio::sync::watch::channel(false);
    let exposed = std::sync::Arc::new(Exposed::new(&mesh.spec().cluster, runner.stats()));
    let saved = SavedRun::path(
        &mesh.spec().spool_dir,
        &mesh.spec().cluster,
        node.as_deref(),
    );
    if let Some(listener) = listener {
        let exposed = std::sync::Arc::clone(&exposed);
        tracing::info!(
            listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "serving /metrics, /status.json and /healthz"
        );
        tokio::spawn(metrics::serve(listener, exposed, metrics_stop));
    }
    tracing::info!(
        cluster = %mesh.spec().cluster,
        links = %link_list.join(", "),
        "running {} link(s); SIGINT or SIGTERM stops, SIGHUP restarts failed links",
        link_list.len()
    );

    loop {
        tokio::select! {
            _ = sigint.recv() => {
                tracing::info!("SIGINT: stopping every link");
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping every link");
                break;
            }
            _ = sighup.recv() => {
                let restarted = runner.restart_failed();
                if restarted.is_empty() {
                    tracing::info!("SIGHUP: no failed link to restart");
                } else {
                    let names: Vec<String> = restarted.iter().map(ToString::to_string).collect();
                    tracing::info!(links = %names.join(", "), "SIGHUP: restarting failed links");
                }
            }
            finished = runner.next_finished() => {
                if let Some(error) = &finished.failure {
                    tracing::error!(
                        link = %finished.names,
                        error = %error,
                        "link failed and stays stopped; the other links keep running. Fix the \
                         cause, then send SIGHUP (or restart bidir-sync run) to resume it from \
                         where it stopped"
                    );
                    SavedRun::save(&saved, &exposed, false);
                } else {
                    tracing::warn!(link = %finished.names, "link stopped by itself");
                }
                if runner.running() == 0 {
                    tracing::error!("no link is running any more; exiting");
                    break;
                }
            }
        }
    }
    let clean = runner.shutdown(GRACE).await;
    let _ = stop_metrics.send(true);
    SavedRun::save(&saved, &exposed, true);
    if !clean {
        tracing::warn!(
            "some links did not stop within {}s and were cut off; their targets roll back what \
             was in flight, and the next run resumes from the durable position",
            GRACE.as_secs()
        );
    }
    let failures = runner.failures();
    if failures.is_empty() {
        tracing::info!("stopped; every link's progress is durable");
        Ok(0)
    } else {
        for (names, error) in &failures {
            tracing::error!(link = %names, error = %error, "link had failed");
        }
        Ok(EXIT_DIFFERENT)
    }
}
