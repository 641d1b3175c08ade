//! A link replicates one source node into one target node.
//!
//! ```text
//!   source: slot pgrepl_<cluster>_to_<target>            target: origin pgrepl_<cluster>_from_<source>
//!   ReplicationStream ──▶ Assembler ──▶ Applier ──▶ one local transaction per remote one
//!          ▲                                             │
//!          └──── standby status update (flush = durable origin progress) ◀──┘
//! ```
//!
//! A session resumes from the origin's durable progress on the target, asks the source for
//! the link's publication (pgoutput streaming on; `origin 'none'` on PostgreSQL 16+), and
//! applies transactions in commit order until told to stop. The flush position it reports to
//! the source is the target's *durable* origin progress, or — when nothing is in flight and
//! everything applied is durable — the furthest position the source has shown to hold nothing
//! else for this link (a keepalive's WAL end, or the end of a skipped transaction), so idle and
//! skip-only periods still let the source recycle WAL.
//!
//! [`Link::run`] repeats sessions: a transient failure (a node restarting, a dropped
//! connection, a slot still held by a dying walsender) reconnects after a capped exponential
//! backoff, logging why; a definite failure stops the link, with the error kept in its
//! [`LinkStats`]. Stopping is graceful: the session stops reading, waits (a few seconds at most)
//! for what is in flight, reports the durable position and ends the stream.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgrepl_conflict::ResolverSet;
use pgrepl_core::Lsn;
use pgrepl_core::connection::ConnectConfig;
use pgrepl_core::connection::replication::{
    OriginFilter, PgOutputOptions, ReplicationClient, ReplicationEvent, StreamSettings, Streaming,
};
use tokio::sync::watch;

use crate::applier::{Applier, ApplierSettings};
use crate::error::ApplyError;
use crate::names::LinkNames;
use crate::spool::Spool;
use crate::stats::{LinkState, LinkStats};
use crate::transaction::{Assembled, Assembler};

/// Backoff between sessions after transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// Everything a link needs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Names of the link's objects.
    pub names: LinkNames,
    /// The source node.
    pub source: ConnectConfig,
    /// The target node.
    pub target: ConnectConfig,
    /// Conflict resolution.
    pub resolvers: Arc<ResolverSet>,
    /// Ask pgoutput for binary values (the types must match on both nodes).
    pub binary: bool,
    /// Where streamed transactions are spooled (a directory of this link's own).
    pub spool_dir: PathBuf,
    /// Limits of the applier.
    pub applier: ApplierSettings,
    /// Tuning of the replication stream.
    pub stream: StreamSettings,
    /// How often the target's durable progress is read while applying.
    pub progress_interval: Duration,
    /// Reconnection backoff.
    pub retry: RetryPolicy,
}

impl LinkConfig {
    /// A configuration with default tuning.
    pub fn new(
        names: LinkNames,
        source: ConnectConfig,
        target: ConnectConfig,
        resolvers: Arc<ResolverSet>,
        spool_dir: PathBuf,
    ) -> Self {
        LinkConfig {
            names,
            source,
            target,
            resolvers,
            binary: false,
            spool_dir,
            applier: ApplierSettings::default(),
            stream: StreamSettings::default(),
            progress_interval: Duration::from_millis(500),
            retry: RetryPolicy::default(),
        }
    }
}

/// One source → target link.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    stats: Arc<LinkStats>,
}

impl Link {
    /// A link that is not running yet.
    pub fn new(config: LinkConfig) -> Self {
        Link {
            config,
            stats: Arc::new(LinkStats::default()),
        }
    }

    /// Its names.
    pub fn names(&self) -> &LinkNames {
        &self.config.names
    }

    /// Its live statistics.
    pub fn stats(&self) -> Arc<LinkStats> {
        Arc::clone(&self.stats)
    }

    /// Runs sessions until `shutdown` turns true (`Ok`) or a definite error (`Err`).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), ApplyError> {
        let policy = self.config.retry;
        let mut backoff = policy.initial;
        loop {
            if *shutdown.borrow() {
                self.stats.set_state(LinkState::Stopped);
                return Ok(());
            }
            self.stats.set_state(LinkState::Connecting);
            let started = Instant::now();
            match self.run_session(&mut shutdown).await {
                Ok(()) => {
                    self.stats.set_state(LinkState::Stopped);
                    return Ok(());
                }
                Err(e) if e.is_retryable() => {
                    if started.elapsed() > policy.max {
                        backoff = policy.initial;
                    }
                    self.stats.set_last_error(Some(e.to_string()));
                    self.stats.set_state(LinkState::Retrying);
                    self.stats
                        .restarts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        link = %self.config.names,
                        error = %e,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        "link interrupted; reconnecting"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(policy.max);
                }
                Err(e) => {
                    self.stats.set_last_error(Some(e.to_string()));
                    self.stats.set_state(LinkState::Failed);
                    tracing::error!(link = %self.config.names, error = %e, "link stopped");
                    return Err(e);
                }
            }
        }
    }

    /// One session, until `shutdown` (`Ok`) or an error.
    pub async fn run_session(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ApplyError> {
        let cfg = &self.config;
        let names = &cfg.names;
        let stats = &self.stats;
        let (mut applier, start) = Applier::connect(
            names.clone(),
            &cfg.target,
            Arc::clone(&cfg.resolvers),
            Arc::clone(stats),
            cfg.applier.clone(),
        )
        .await?;
        let source_err = |e| ApplyError::connection(&names.source, e);
        let mut source = ReplicationClient::connect(&cfg.source)
            .await
            .map_err(source_err)?;
        let server = source.server_version_num();
        if server < 140_000 {
            return Err(ApplyError::NotSetUp {
                node: names.source.clone(),
                what: format!(
                    "PostgreSQL {server} is too old; pgrepl needs 14 or later (15+ supported)"
                ),
            });
        }
        let options = PgOutputOptions {
            proto_version: None,
            publication_names: vec![names.publication.clone()],
            binary: cfg.binary,
            messages: false,
            streaming: Streaming::On,
            two_phase: false,
            origin: (server >= 160_000).then_some(OriginFilter::None),
        };
        let mut stream = source
            .start_replication(&names.slot, start, &options, cfg.stream)
            .await
            .map_err(source_err)?;
        let spool = Spool::new(cfg.spool_dir.clone())?;
        let assembler = Assembler::new(&names.source, stream.protocol_version(), spool);
        stats.set_state(LinkState::Streaming);
        tracing::info!(link = %names, start = %start, server, "streaming");

        let mut next_progress = tokio::time::Instant::now() + cfg.progress_interval;
        let mut session = Session {
            stats: Arc::clone(stats),
            assembler,
            idle_position: start,
        };
        let mut reported = start;
        let mut last_status = Instant::now();
        loop {
            // Take what the stream already has, up to a budget, before talking to the target:
            // many transactions then travel in one write, and the server reads them in one go.
            let mut budget = EVENT_BUDGET;
            while budget > 0 && applier.has_room() && applier.pipeline_output() < OUTPUT_BATCH {
                let Some(ev) = stream.try_next_event() else {
                    break;
                };
                session
                    .handle(&mut applier, ev.map_err(source_err)?)
                    .await?;
                budget -= 1;
            }
            if budget == EVENT_BUDGET
                || !applier.has_room()
                || applier.pipeline_output() >= OUTPUT_BATCH
            {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    () = std::future::ready(()), if applier.has_careful_work() => {}
                    r = applier.pump(), if applier.wants_io() => r?,
                    ev = stream.next_event(), if applier.has_room() => {
                        let Some(ev) = ev else {
                            return Err(ApplyError::Unexpected {
                                source_node: names.source.clone(),
                                what: "the replication stream ended without an error".into(),
                            });
                        };
                        session.handle(&mut applier, ev.map_err(source_err)?).await?;
                    }
                    _ = tokio::time::sleep_until(next_progress) => {}
                }
            } else if applier.wants_io() {
                // Events are flowing: send what they produced, and read answers, without waiting.
                applier.pump_ready()?;
            }
            if *shutdown.borrow() {
                break;
            }
            if tokio::time::Instant::now() >= next_progress {
                applier.request_progress()?;
                next_progress = tokio::time::Instant::now() + cfg.progress_interval;
            }
            if applier.needs_recovery() {
                applier.recover().await?;
            }
            if applier.can_send() {
                applier.emit_waiting().await?;
            }
            let flush = flush_position(&applier, &session.assembler, session.idle_position);
            if session.assembler.is_idle() && applier.is_drained() {
                LinkStats::raise(&stats.caught_up_lsn, flush);
            }
            if flush > reported {
                stream.set_flushed(flush);
                LinkStats::raise(&stats.flushed_lsn, flush);
                reported = flush;
                if last_status.elapsed() >= Duration::from_secs(1) {
                    stream.send_status_now();
                    last_status = Instant::now();
                }
            }
        }
        // Stop: let what is in flight finish (nothing new is sent), report it, end the stream.
        let drained = tokio::time::timeout(Duration::from_secs(5), applier.settle()).await;
        if let Ok(Err(e)) = &drained {
            tracing::warn!(link = %names, error = %e, "while stopping");
        }
        let flush = flush_position(&applier, &session.assembler, session.idle_position);
        stream.set_flushed(flush);
        LinkStats::raise(&stats.flushed_lsn, flush);
        stream.shutdown().await;
        tracing::info!(link = %names, flushed = %flush, "stopped");
        Ok(())
    }
}

/// Events taken from the stream in a row before the target is served.
const EVENT_BUDGET: usize = 256;

/// Output to the target gathered before it is sent.
const OUTPUT_BATCH: usize = 256 * 1024;

/// What one session tracks about the source's stream.
struct Session {
    stats: Arc<LinkStats>,
    assembler: Assembler,
    /// The furthest source position known to hold nothing more for this link while the
    /// assembler was idle (a keepalive's WAL end, a skipped transaction's end).
    idle_position: Lsn,
}

impl Session {
    async fn handle(
        &mut self,
        applier: &mut Applier,
        ev: ReplicationEvent,
    ) -> Result<(), ApplyError> {
        let stats = &self.stats;
        match ev {
            ReplicationEvent::Keepalive { wal_end, .. } => {
                LinkStats::raise(&stats.received_lsn, wal_end);
                if self.assembler.is_idle() {
                    self.idle_position = self.idle_position.max(wal_end);
                }
            }
            ReplicationEvent::Message {
                message,
                raw,
                wal_end,
                ..
            } => {
                LinkStats::raise(&stats.received_lsn, wal_end);
                match self.assembler.push(message, &raw)? {
                    Assembled::Txn(txn) => {
                        LinkStats::raise(&stats.received_lsn, txn.end_lsn);
                        if matches!(txn.body, crate::transaction::TxnBody::Spooled(_)) {
                            stats
                                .streamed_txns
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        applier.push(txn).await?;
                    }
                    Assembled::Skipped { end_lsn, foreign } => {
                        LinkStats::raise(&stats.received_lsn, end_lsn);
                        if foreign {
                            stats
                                .skipped_txns
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        self.idle_position = self.idle_position.max(end_lsn);
                    }
                    Assembled::Nothing => {}
                }
            }
        }
        Ok(())
    }
}

/// The position that may be confirmed to the source; see the module documentation.
fn flush_position(applier: &Applier, assembler: &Assembler, idle_position: Lsn) -> Lsn {
    let durable = applier.durable();
    if assembler.is_idle() && applier.is_drained() && durable >= applier.applied() {
        durable.max(idle_position)
    } else {
        durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link must be able to run on any runtime thread.
    #[test]
    fn a_running_link_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let names = LinkNames::new("c", "a", "b").unwrap();
        let dsn = ConnectConfig::parse_with_env("host=h user=u", &|_| None).unwrap();
        let resolvers = Arc::new(ResolverSet::new(Arc::new(pgrepl_conflict::LastUpdateWins)));
        let link = Link::new(LinkConfig::new(
            names,
            dsn.clone(),
            dsn,
            resolvers,
            "/tmp/x".into(),
        ));
        let (_tx, rx) = watch::channel(false);
        let fut = async move { link.run(rx).await };
        assert_send(&fut);
    }
}
