//! What `run` tells the outside while it runs, over a tiny HTTP/1.1 server on `[metrics]
//! listen`:
//!
//! | path | what |
//! | --- | --- |
//! | `/metrics` | Prometheus text format (version 0.0.4): per link state, lag, counters, conflicts |
//! | `/status.json` | the live state of every link, with its last error (read by `bidir-sync status`) |
//! | `/healthz` | `200 ok` while no link has failed, else `503` and the failed links |
//!
//! One request per connection (`Connection: close`), GET or HEAD only, requests larger than
//! 8 KiB or slower than 5 seconds are dropped: it is for scrapers and the status command on a
//! trusted network, not for the internet. Every value comes from the links' lock-free
//! [`LinkStats`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgrepl_apply::{LinkNames, LinkState, LinkStats};
use pgrepl_conflict::{ConflictKind, Resolution};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_UNIX_SECONDS: f64 = 946_684_800.0;

/// What the server serves: the cluster and its running links.
#[derive(Debug)]
pub(crate) struct Exposed {
    /// The cluster name.
    pub(crate) cluster: String,
    /// The links of this process.
    pub(crate) links: Vec<(LinkNames, Arc<LinkStats>)>,
    /// When the process started (Unix seconds).
    pub(crate) started_unix: f64,
}

/// The live state of one link, as `/status.json` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LiveLink {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) state: String,
    pub(crate) last_error: Option<String>,
    pub(crate) received_lsn: String,
    pub(crate) applied_lsn: String,
    pub(crate) flushed_lsn: String,
    pub(crate) lag_bytes: u64,
    pub(crate) lag_seconds: f64,
    pub(crate) applied_transactions: u64,
    pub(crate) applied_changes: u64,
    pub(crate) skipped_transactions: u64,
    pub(crate) careful_transactions: u64,
    pub(crate) restarts: u64,
    pub(crate) conflicts: u64,
}

/// What a `run` left behind in `<spool_dir>/<cluster>/last-run*.json`: its last live status,
/// written at every definite link failure and when it exits, so that `status` can show last
/// errors when no `run` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SavedRun {
    /// When it was written (Unix seconds).
    pub(crate) written_unix: f64,
    /// Whether the run had exited.
    pub(crate) ended: bool,
    pub(crate) status: LiveStatus,
}

impl SavedRun {
    /// The file a `run` of the links into `node` (all links: `None`) writes.
    pub(crate) fn path(
        spool_dir: &std::path::Path,
        cluster: &str,
        node: Option<&str>,
    ) -> std::path::PathBuf {
        let name = match node {
            None => "last-run.json".to_owned(),
            Some(n) => format!("last-run-into-{n}.json"),
        };
        spool_dir.join(cluster).join(name)
    }

    /// Writes the file (best effort: a failure is logged, never fatal).
    pub(crate) fn save(path: &std::path::Path, exposed: &Exposed, ended: bool) {
        let saved = SavedRun {
            written_unix: unix_now(),
            ended,
            status: exposed.live(),
        };
        let result = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let text = serde_json::to_string_pretty(&saved).map_err(std::io::Error::other)?;
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, crate::redact::redact(&text))?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = result {
            tracing::warn!(file = %path.display(), error = %e, "cannot save the run's state");
        }
    }

    /// Every saved run of `cluster`, newest first.
    pub(crate) fn load_all(spool_dir: &std::path::Path, cluster: &str) -> Vec<SavedRun> {
        let mut out: Vec<SavedRun> = std::fs::read_dir(spool_dir.join(cluster))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with("last-run") && n.ends_with(".json")
                    })
                    .filter_map(|e| {
                        serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.written_unix.total_cmp(&a.written_unix));
        out
    }

    /// How long ago it was written, in seconds.
    pub(crate) fn age_seconds(&self) -> f64 {
        (unix_now() - self.written_unix).max(0.0)
    }
}

/// `/status.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LiveStatus {
    pub(crate) cluster: String,
    pub(crate) pid: u32,
    pub(crate) uptime_seconds: f64,
    pub(crate) links: Vec<LiveLink>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Exposed {
    /// For the links of a runner, from now.
    pub(crate) fn new(cluster: &str, links: Vec<(LinkNames, Arc<LinkStats>)>) -> Self {
        Exposed {
            cluster: cluster.to_owned(),
            links,
            started_unix: unix_now(),
        }
    }

    /// The live status of every link.
    pub(crate) fn live(&self) -> LiveStatus {
        use std::sync::atomic::Ordering::Relaxed;
        LiveStatus {
            cluster: self.cluster.clone(),
            pid: std::process::id(),
            uptime_seconds: (unix_now() - self.started_unix).max(0.0),
            links: self
                .links
                .iter()
                .map(|(n, s)| LiveLink {
                    source: n.source.clone(),
                    target: n.target.clone(),
                    state: s.state().as_str().to_owned(),
                    last_error: s.last_error(),
                    received_lsn: LinkStats::lsn(&s.received_lsn).to_string(),
                    applied_lsn: LinkStats::lsn(&s.applied_lsn).to_string(),
                    flushed_lsn: LinkStats::lsn(&s.flushed_lsn).to_string(),
                    lag_bytes: s.lag_bytes(),
                    lag_seconds: s.lag_seconds(),
                    applied_transactions: s.applied_txns.load(Relaxed),
                    applied_changes: s.applied_changes.load(Relaxed),
                    skipped_transactions: s.skipped_txns.load(Relaxed),
                    careful_transactions: s.careful_txns.load(Relaxed),
                    restarts: s.restarts.load(Relaxed),
                    conflicts: s.conflicts.total(),
                })
                .collect(),
        }
    }

    /// Prometheus text format.
    pub(crate) fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::with_capacity(4096 + self.links.len() * 4096);
        let labels = |n: &LinkNames| {
            format!(
                "cluster=\"{}\",source=\"{}\",target=\"{}\"",
                escape(&self.cluster),
                escape(&n.source),
                escape(&n.target)
            )
        };
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {}", number(value));
            }
        };
        let per_link = |f: &dyn Fn(&LinkStats) -> f64| {
            self.links
                .iter()
                .map(|(n, s)| (labels(n), f(s)))
                .collect::<Vec<_>>()
        };
        family(
            "pgrepl_link_state",
            "gauge",
            "1 for the state the link is in (idle, connecting, streaming, retrying, failed, stopped), 0 for the others.",
            self.links
                .iter()
                .flat_map(|(n, s)| {
                    let current = s.state();
                    LinkState::ALL.iter().map(move |state| {
                        (
                            format!("{},state=\"{}\"", labels(n), state.as_str()),
                            if *state == current { 1.0 } else { 0.0 },
                        )
                    })
                })
                .collect(),
        );
        family(
            "pgrepl_link_lag_bytes",
            "gauge",
            "Bytes of source WAL received by the link and not yet applied on the target.",
            per_link(&|s| s.lag_bytes() as f64),
        );
        family(
            "pgrepl_link_lag_seconds",
            "gauge",
            "Seconds since the source committed the last applied transaction, while the link is behind; 0 when caught up.",
            per_link(&|s| s.lag_seconds()),
        );
        family(
            "pgrepl_link_applied_transactions_total",
            "counter",
            "Remote transactions applied on the target.",
            per_link(&|s| s.applied_txns.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_applied_changes_total",
            "counter",
            "Row changes (and truncates) applied on the target.",
            per_link(&|s| s.applied_changes.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_skipped_transactions_total",
            "counter",
            "Transactions skipped because another node wrote them (loop prevention on PostgreSQL 15).",
            per_link(&|s| s.skipped_txns.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_careful_transactions_total",
            "counter",
            "Transactions applied on the careful path (conflict checks): after the fast path declined one, or directly during a run of conflicts.",
            per_link(&|s| s.careful_txns.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_fast_path_declined_total",
            "counter",
            "Transactions the fast path sent and gave up on (a conflict or an error), each then applied on the careful path.",
            per_link(&|s| s.declined_txns.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_conflicts_total",
            "counter",
            "Conflicts detected on the target, by kind and resolution.",
            self.links
                .iter()
                .flat_map(|(n, s)| {
                    ConflictKind::ALL.iter().flat_map(move |kind| {
                        Resolution::ALL.iter().map(move |resolution| {
                            (
                                format!(
                                    "{},kind=\"{}\",resolution=\"{}\"",
                                    labels(n),
                                    kind.as_str(),
                                    resolution.as_str()
                                ),
                                s.conflicts.get(*kind, *resolution) as f64,
                            )
                        })
                    })
                })
                .collect(),
        );
        family(
            "pgrepl_link_restarts_total",
            "counter",
            "Reconnections after transient failures.",
            per_link(&|s| s.restarts.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_received_lsn",
            "gauge",
            "The furthest source WAL position the link has received (as a number).",
            per_link(&|s| s.received_lsn.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_applied_lsn",
            "gauge",
            "The source WAL position of the last transaction committed on the target.",
            per_link(&|s| s.applied_lsn.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_flushed_lsn",
            "gauge",
            "The source WAL position confirmed to the source as durable on the target.",
            per_link(&|s| s.flushed_lsn.load(Relaxed) as f64),
        );
        family(
            "pgrepl_link_last_commit_timestamp_seconds",
            "gauge",
            "Source commit time of the last applied transaction (Unix seconds; 0 before the first).",
            per_link(&|s| {
                let t = s.last_commit_time.load(Relaxed);
                if t == 0 {
                    0.0
                } else {
                    t as f64 / 1e6 + PG_EPOCH_UNIX_SECONDS
                }
            }),
        );
        family(
            "pgrepl_process_start_time_seconds",
            "gauge",
            "When this bidir-sync process started (Unix seconds).",
            vec![(
                format!("cluster=\"{}\"", escape(&self.cluster)),
                self.started_unix,
            )],
        );
        out
    }

    /// `/healthz`: no failed link.
    fn health(&self) -> (bool, String) {
        let failed: Vec<String> = self
            .links
            .iter()
            .filter(|(_, s)| s.state() == LinkState::Failed)
            .map(|(n, s)| format!("{n}: {}\n", s.last_error().unwrap_or_default()))
            .collect();
        if failed.is_empty() {
            (true, "ok\n".to_owned())
        } else {
            (false, format!("failed links:\n{}", failed.concat()))
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".to_owned()
    }
}

/// Serves until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    exposed: Arc<Exposed>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let exposed = Arc::clone(&exposed);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            answer(stream, &exposed),
                        )
                        .await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn answer(mut stream: TcpStream, exposed: &Exposed) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(buf.get(..n).unwrap_or_default());
        if request.len() > 8192 {
            return respond(&mut stream, 431, "text/plain", "request too large\n", false).await;
        }
    }
    let text = String::from_utf8_lossy(&request);
    let mut first = text.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(&mut stream, 405, "text/plain", "only GET and HEAD\n", head).await;
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let body = exposed.render();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head,
            )
            .await
        }
        "/status.json" => {
            let body = serde_json::to_string_pretty(&exposed.live()).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body, head).await
        }
        "/healthz" => {
            let (ok, body) = exposed.health();
            let status = if ok { 200 } else { 503 };
            respond(
                &mut stream,
                status,
                "text/plain; charset=utf-8",
                &body,
                head,
            )
            .await
        }
        "/" => {
            respond(
                &mut stream,
                200,
                "text/plain; charset=utf-8",
                "bidir-sync: /metrics (Prometheus), /status.json, /healthz\n",
                head,
            )
            .await
        }
        _ => respond(&mut stream, 404, "text/plain", "not found\n", head).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let body = crate::redact::redact(body);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// Asks a running `bidir-sync run` at `addr` for its live status; `Err` says why not (nothing
/// listening, not bidir-sync, …).
pub(crate) async fn fetch_live(addr: SocketAddr) -> Result<LiveStatus, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("nothing answers on {addr} ({e})"))?;
        stream
            .write_all(
                format!("GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(16 << 20)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{addr} did not answer with HTTP"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "{addr} answered {}",
                head.lines().next().unwrap_or_default()
            ));
        }
        serde_json::from_str::<LiveStatus>(body)
            .map_err(|e| format!("{addr} is not a bidir-sync run ({e})"))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within 3 seconds"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_every_family_for_every_link() {
        let names = LinkNames::new("c", "a", "b").unwrap();
        let stats = Arc::new(LinkStats::default());
        stats.set_state(LinkState::Streaming);
        stats
            .conflicts
            .record(ConflictKind::InsertExists, Resolution::ApplyRemote);
        let exposed = Exposed::new("c", vec![(names, stats)]);
        let text = exposed.render();
        assert!(text.contains(
            "pgrepl_link_state{cluster=\"c\",source=\"a\",target=\"b\",state=\"streaming\"} 1"
        ));
        assert!(text.contains(
            "pgrepl_link_conflicts_total{cluster=\"c\",source=\"a\",target=\"b\",kind=\"insert_exists\",resolution=\"apply_remote\"} 1"
        ));
        assert!(text.contains("# TYPE pgrepl_link_applied_transactions_total counter"));
        let live = exposed.live();
        assert_eq!(live.links[0].state, "streaming");
        assert_eq!(live.links[0].conflicts, 1);
    }
}
