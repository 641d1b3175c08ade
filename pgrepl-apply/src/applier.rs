//! Applying remote transactions to a target: the fast pipelined path, the careful path it falls
//! back to, and the progress that makes both exactly-once.
//!
//! ```text
//!  RemoteTxn ─▶ pending (commit order) ─▶ fast path: one pipelined segment per transaction
//!                   │                        PG16+: BEGIN; INSERT runs → COPY; UPDATE/DELETE
//!                   │                          guarded; GUARD; Sync; Query "stamp; COMMIT"
//!                   │                        PG15: changes; FINISH (guard, stamp); Sync
//!                   │
//!                   └─ a segment fails ─▶ wait for everything in flight (all later ones fail
//!                                          their guard) ─▶ careful path for the failed one
//!                                          ─▶ re-send the later ones on the fast path
//! ```
//!
//! **Session.** The apply session runs with `session_replication_role = replica` (no user or
//! foreign-key triggers fire twice), `synchronous_commit = off`, and the link's replication
//! origin set up (`pg_replication_origin_session_setup`). Every remote transaction becomes one
//! local transaction that calls `pg_replication_origin_xact_setup(end_lsn, commit_time)` before
//! it commits, so the origin's progress commits atomically with the data and the rows keep the
//! source's commit time and carry the origin.
//!
//! **Why pipelining is safe.** Segments are sent without waiting, so transaction *k+1* may reach
//! the server while *k* is still running. If *k* fails, it rolls back; *k+1* must not commit
//! ahead of it. Each segment therefore ends with a guard that fails unless the origin's progress
//! already includes the previous transaction's end LSN — so after a failure every later segment
//! rolls back too, and they are sent again, in order, after *k* has been applied carefully.
//! On PostgreSQL 16+ the origin stamp (`pg_replication_origin_xact_setup`) and the COMMIT
//! travel as one simple Query after every check has passed, and deferred constraints are made
//! immediate, because those servers advance the origin to the stamped LSN even when the
//! transaction then aborts — also when the connection is lost between the two (see
//! [`statements::COMMIT`]). PostgreSQL 15 never moves an origin on abort, so there one
//! statement ([`statements::FINISH_IN_ONE`]) checks, stamps, and the `Sync` commits: two
//! statements and one round of answers fewer per transaction.
//!
//! **Why the fast path is safe.** It only does what the careful path would decide without a
//! conflict: an UPDATE or DELETE fails (and so falls back) unless it changes exactly one row
//! whose last writer was this link's origin (or is unknown: frozen, or this transaction); an
//! INSERT fails by itself on a unique violation. Any failure at all — a conflict, a constraint,
//! a deadlock with a local session — sends the transaction to the careful path, which either
//! resolves it or stops the link with a definite error.
//!
//! **Progress.** What is *applied* (committed on the target) is known when a segment completes;
//! what is *durable* is read with `pg_replication_origin_progress(origin, true)`, which flushes
//! the target's WAL up to it. Only the durable position is ever confirmed to the source, so
//! `synchronous_commit = off` loses nothing: after a crash of the target the link resumes from
//! the origin's recovered progress, and the source still has everything after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use pgrepl_conflict::ResolverSet;
use pgrepl_core::Lsn;
use pgrepl_core::connection::{Client, ConnectConfig, Error as ConnError, ErrorFields, Param};
use pgrepl_core::pgoutput::{ColumnRef, LogicalMessage, OldTuple, TupleData};
use pgrepl_core::relation_cache::RelationCache;

use crate::copy_format::{self, CopyWriter};
use crate::error::ApplyError;
use crate::metadata::Metadata;
use crate::names::LinkNames;
use crate::pipeline::{Pipeline, Segment};
use crate::relation_map::{Lookup, RelationMap};
use crate::statements::{self, Match};
use crate::stats::LinkStats;
use crate::transaction::RemoteTxn;

/// Output buffered beyond this is sent before more is encoded.
const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// Limits of the applier.
#[derive(Debug, Clone)]
pub struct ApplierSettings {
    /// Transactions handed over and not yet committed, at most.
    pub max_pending_txns: usize,
    /// Bytes of such transactions, at most (a larger single transaction is still taken).
    pub max_pending_bytes: usize,
    /// How often the careful path retries a transaction that failed for a transient reason
    /// (deadlock, serialization failure) before giving up to the link's own retry.
    pub careful_retries: u32,
}

impl Default for ApplierSettings {
    fn default() -> Self {
        ApplierSettings {
            max_pending_txns: 10_000,
            max_pending_bytes: 64 << 20,
            careful_retries: 3,
        }
    }
}

/// What a pipelined segment is.
#[derive(Debug)]
pub(crate) enum Tag {
    Txn(Arc<RemoteTxn>),
    Progress,
    /// One statement of the careful path, which waits for these itself: its number, and the
    /// table it concerns (for the error).
    Careful(u64, Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Insert,
    CopyText,
    CopyBinary,
    UpdateEqual,
    UpdateText,
    DeleteEqual,
    DeleteText,
    Begin,
    Guard,
    FinishInOne,
    /// A statement of the careful path, identified by its text.
    Careful,
}

/// Identifies a prepared statement: the mapping, the kind, and which columns it sets and
/// matches (`None`: the mapping's default columns); or, for the careful path, its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StatementKey {
    map: u64,
    kind: Kind,
    set: Option<Box<[usize]>>,
    matched: Option<Box<[usize]>>,
    text: Option<Box<str>>,
}

impl StatementKey {
    /// A statement that belongs to no relation.
    fn plain(kind: Kind) -> Self {
        StatementKey {
            map: 0,
            kind,
            set: None,
            matched: None,
            text: None,
        }
    }

    /// A careful-path statement: its text is the key (a bounded set — a few per relation and
    /// column set — so each is parsed and planned once per session, not once per change).
    pub(crate) fn careful(sql: &str) -> Self {
        StatementKey {
            text: Some(sql.into()),
            ..StatementKey::plain(Kind::Careful)
        }
    }
}

enum Batch {
    None,
    One(Arc<RelationMap>, TupleData),
    Copy(Arc<RelationMap>, CopyWriter, bool),
}

enum Emitted {
    Whole,
    Abandoned,
}

/// Applies one link's transactions to its target; see the module documentation.
#[derive(Debug)]
pub struct Applier {
    pub(crate) names: LinkNames,
    pub(crate) origin_id: String,
    pub(crate) pipeline: Pipeline<Tag, StatementKey>,
    pub(crate) meta: Metadata,
    pub(crate) relations: RelationCache,
    maps: HashMap<u32, (u64, Arc<RelationMap>)>,
    next_map_id: u64,
    pub(crate) resolvers: Arc<ResolverSet>,
    pub(crate) stats: Arc<LinkStats>,
    pub(crate) settings: ApplierSettings,
    pending: VecDeque<Arc<RemoteTxn>>,
    in_pipeline: usize,
    /// How many transactions may be in the pipeline at once: halved when one fails (each
    /// failure costs a replay of everything behind it), grown by one per success.
    window: usize,
    /// Whether the target moves origins on abort (PostgreSQL 16+), which makes pipelined
    /// transactions end with the stamped-COMMIT query.
    stamped_commit: bool,
    pending_bytes: usize,
    failure: Option<ErrorFields>,
    last_sent_end: Lsn,
    applied: Lsn,
    durable: Lsn,
    progress_in_flight: bool,
    /// Transactions in a row that met a conflict (see [`CONFLICT_RUN`]); reset by one that
    /// commits on the fast path (see [`CONFLICT_RUN`] for one without a conflict on the careful path).
    conflict_run: u32,
    /// The careful path's statements sent so far (each one's number in its [`Tag::Careful`]).
    pub(crate) careful_sent: u64,
    /// The first error among the careful path's statements not yet reported, with its table.
    pub(crate) careful_error: Option<(Arc<str>, ErrorFields)>,
}

/// After this many transactions in a row met a conflict, the next ones go straight to the
/// careful path: in a run of conflicts (both nodes writing the same rows) the fast path only
/// fails — an error, a rollback and a round trip per transaction — before the careful path
/// does the work anyway. Every [`CONFLICT_RUN_PROBE`]-th transaction of a run still tries the
/// fast path, and so does the one after a careful transaction that found no conflict: if that
/// one commits on the fast path the run is over, if it declines the run goes on.
const CONFLICT_RUN: u32 = 4;
/// See [`CONFLICT_RUN`].
const CONFLICT_RUN_PROBE: u32 = 32;
/// How often [`Applier::settle`] asks for the durable progress before it gives up (the
/// flush position then stays at what was known durable before, which is always safe).
const SETTLE_ASKS: u32 = 3;
/// How long one call of [`Applier::emit_waiting`] applies transactions of a run of conflicts
/// before it returns, so the link gets to report progress and to notice a shutdown.
const CAREFUL_SLICE: std::time::Duration = std::time::Duration::from_millis(50);

/// The most transactions in the pipeline at once. Enough to keep the target busy through the
/// round trip (a few hundred microseconds here, a few milliseconds across a network); more only
/// raises what one conflict costs, since everything behind a failing transaction is replayed.
const MAX_WINDOW: usize = 256;

impl ApplierSettings {
    fn max_window(&self) -> usize {
        self.max_pending_txns.clamp(1, MAX_WINDOW)
    }
}

pub(crate) fn param(v: ColumnRef<'_>) -> Param<'_> {
    match v {
        ColumnRef::Text(b) => Param::Text(b),
        ColumnRef::Binary(b) => Param::Binary(b),
        ColumnRef::Null | ColumnRef::UnchangedToast => Param::Null,
    }
}

pub(crate) fn value(t: &TupleData, i: usize) -> ColumnRef<'_> {
    t.get(i).unwrap_or(ColumnRef::Null)
}

impl Applier {
    /// Opens the apply and metadata sessions on the target, sets the apply session up and
    /// reads where the link resumes (the origin's durable progress).
    pub async fn connect(
        names: LinkNames,
        target: &ConnectConfig,
        resolvers: Arc<ResolverSet>,
        stats: Arc<LinkStats>,
        settings: ApplierSettings,
    ) -> Result<(Applier, Lsn), ApplyError> {
        let node = names.target.clone();
        let conn_err = |e: ConnError| ApplyError::connection(&node, e);
        let mut client = Client::connect(target).await.map_err(conn_err)?;
        let track = client
            .query_one(
                "SELECT pg_catalog.current_setting('track_commit_timestamp')",
                &[],
            )
            .await
            .map_err(conn_err)?;
        if track.get_str(0) != Some("on") {
            return Err(ApplyError::NotSetUp {
                node: node.clone(),
                what: "track_commit_timestamp is off; conflict detection needs it: set \
                       track_commit_timestamp = on in postgresql.conf and restart the server"
                    .into(),
            });
        }
        let origin = client
            .query_opt(
                "SELECT roident::text FROM pg_catalog.pg_replication_origin WHERE roname = $1",
                &[&names.origin],
            )
            .await
            .map_err(conn_err)?;
        let Some(origin) = origin else {
            return Err(ApplyError::NotSetUp {
                node: node.clone(),
                what: format!(
                    "replication origin \"{}\" does not exist; run `bidir-sync setup` first",
                    names.origin
                ),
            });
        };
        let origin_id: String = origin.get(0).map_err(conn_err)?;
        client
            .batch_execute(
                "SET session_replication_role = replica; SET synchronous_commit = off; \
                 SET plan_cache_mode = force_generic_plan; SET statement_timeout = 0; \
                 SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0",
            )
            .await
            .map_err(conn_err)?;
        client
            .query(
                "SELECT pg_catalog.set_config('application_name', $1, false)",
                &[&crate::mesh::apply_session_name(&names.origin)],
            )
            .await
            .map_err(conn_err)?;
        client
            .query(
                "SELECT pg_catalog.pg_replication_origin_session_setup($1)",
                &[&names.origin],
            )
            .await
            .map_err(conn_err)?;
        client
            .batch_execute(statements::PREPARE_ORIGIN_STAMP)
            .await
            .map_err(conn_err)?;
        let start: Option<Lsn> = client
            .query_one(statements::DURABLE_PROGRESS, &[&names.origin])
            .await
            .and_then(|r| r.get(0))
            .map_err(conn_err)?;
        let start = start.unwrap_or(Lsn::ZERO);
        let stamped_commit = client
            .connection_ref()
            .server_version_num()
            .is_none_or(|v| v >= 160_000);
        let meta = Metadata::connect(target, &names.cluster, &names.target).await?;
        LinkStats::raise(&stats.applied_lsn, start);
        LinkStats::raise(&stats.caught_up_lsn, start);
        Ok((
            Applier {
                names,
                origin_id,
                pipeline: Pipeline::new(client),
                meta,
                relations: RelationCache::new(),
                maps: HashMap::new(),
                next_map_id: 0,
                resolvers,
                stats,
                settings: settings.clone(),
                pending: VecDeque::new(),
                in_pipeline: 0,
                window: settings.max_window(),
                stamped_commit,
                pending_bytes: 0,
                failure: None,
                last_sent_end: start,
                applied: start,
                durable: start,
                progress_in_flight: false,
                conflict_run: 0,
                careful_sent: 0,
                careful_error: None,
            },
            start,
        ))
    }

    pub(crate) fn conn_err(&self, e: ConnError) -> ApplyError {
        ApplyError::connection(&self.names.target, e)
    }

    /// Whether another transaction may be handed over now.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.settings.max_pending_txns
            && self.pending_bytes < self.settings.max_pending_bytes
    }

    /// Whether anything is in flight or waiting to be sent.
    pub fn wants_io(&self) -> bool {
        !self.pipeline.is_idle() || self.pipeline.pending_output() > 0
    }

    /// Whether every transaction handed over is committed.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.pipeline.is_idle()
    }

    /// The end LSN of the last transaction committed on the target.
    pub fn applied(&self) -> Lsn {
        self.applied
    }

    /// The origin's last known durable progress.
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    /// Hands over a committed remote transaction; it is sent at once on the fast path.
    pub async fn push(&mut self, txn: RemoteTxn) -> Result<(), ApplyError> {
        let txn = Arc::new(txn);
        self.pending_bytes = self.pending_bytes.saturating_add(txn.bytes);
        self.pending.push_back(txn);
        self.emit_waiting().await
    }

    /// Whether pending transactions wait for room in the pipeline window.
    pub fn can_send(&self) -> bool {
        self.failure.is_none()
            && self.in_pipeline < self.window
            && self.pending.len() > self.in_pipeline
    }

    /// Asks the target how far it has durably applied (answered through [`pump`](Self::pump)).
    pub fn request_progress(&mut self) -> Result<(), ApplyError> {
        if self.progress_in_flight || self.applied <= self.durable {
            return Ok(());
        }
        self.pipeline.begin(Tag::Progress, true);
        let origin = self.names.origin.clone();
        self.pipeline
            .execute_unnamed(
                statements::DURABLE_PROGRESS,
                &[Param::Text(origin.as_bytes())],
            )
            .map_err(|e| self.conn_err(e))?;
        self.pipeline.end();
        self.progress_in_flight = true;
        Ok(())
    }

    /// Sends and receives once and handles what completed. Cancel-safe: it may be dropped
    /// at any await point without losing anything.
    pub async fn pump(&mut self) -> Result<(), ApplyError> {
        self.pipeline
            .exchange()
            .await
            .map_err(|e| self.conn_err(e))?;
        self.collect()
    }

    /// [`pump`](Self::pump) without waiting: sends and reads what can be, now.
    pub fn pump_ready(&mut self) -> Result<(), ApplyError> {
        self.pipeline.exchange_now().map_err(|e| self.conn_err(e))?;
        self.collect()
    }

    /// Bytes written for the target and not yet sent.
    pub fn pipeline_output(&self) -> usize {
        self.pipeline.pending_output()
    }

    /// Whether a transaction failed on the fast path and everything in flight has answered,
    /// so [`recover`](Self::recover) can run.
    pub fn needs_recovery(&self) -> bool {
        self.failure.is_some() && self.pipeline.in_flight() == 0
    }

    /// Stops sending and settles: waits for the answers to what is in flight (a transaction
    /// behind a failed one rolls back and stays pending), then learns the durable progress.
    /// Transactions not yet sent stay unapplied; nothing is lost, since the flush position
    /// reported to the source never covers them and the source sends them again.
    pub async fn settle(&mut self) -> Result<(), ApplyError> {
        let mut asked = 0;
        loop {
            if self.pipeline.is_idle() {
                if self.applied <= self.durable || asked == SETTLE_ASKS {
                    return Ok(());
                }
                // A transaction that failed on the fast path leaves its block open (aborted):
                // end it, or the question fails too.
                if self.client().connection_ref().transaction_status() != b'I' {
                    self.client()
                        .batch_execute("ROLLBACK")
                        .await
                        .map_err(|e| self.conn_err(e))?;
                }
                self.request_progress()?;
                asked += 1;
            }
            self.pump().await?;
        }
    }

    fn collect(&mut self) -> Result<(), ApplyError> {
        while let Some(seg) = self
            .pipeline
            .next_completed()
            .map_err(|e| self.conn_err(e))?
        {
            self.completed(seg)?;
        }
        Ok(())
    }

    /// Handles one completed segment. The careful path, which waits for its own segments,
    /// hands the others here too, so a progress answer is never lost.
    pub(crate) fn completed(&mut self, seg: Segment<Tag, StatementKey>) -> Result<(), ApplyError> {
        match seg.tag {
            Tag::Progress => {
                self.progress_in_flight = false;
                if seg.error.is_none() {
                    let lsn = seg
                        .rows
                        .first()
                        .and_then(|r| r.first())
                        .and_then(Option::as_ref)
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse::<Lsn>().ok());
                    if let Some(lsn) = lsn {
                        self.durable = self.durable.max(lsn);
                    }
                }
            }
            Tag::Txn(txn) => self.txn_completed(&txn, seg.error)?,
            // Only ever in flight while the careful path runs, which collects its own.
            Tag::Careful(..) => {}
        }
        Ok(())
    }

    fn txn_completed(
        &mut self,
        txn: &Arc<RemoteTxn>,
        error: Option<ErrorFields>,
    ) -> Result<(), ApplyError> {
        self.in_pipeline = self.in_pipeline.saturating_sub(1);
        match (error, self.failure.is_some()) {
            (None, false) => {
                self.window = (self.window + 1).min(self.settings.max_window());
                self.conflict_run = 0;
                let front = self.pending.pop_front();
                if !front.as_ref().is_some_and(|f| Arc::ptr_eq(f, txn)) {
                    return Err(ApplyError::Unexpected {
                        source_node: self.names.source.clone(),
                        what: "a transaction completed out of order".into(),
                    });
                }
                self.committed(txn);
            }
            (Some(e), false) => {
                // Halved: every transaction sent behind a failing one is work done twice (on
                // PostgreSQL 15 it even runs to its guard).
                self.window = (self.window / 2).max(1);
                self.stats
                    .declined_txns
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(end = %txn.end_lsn, front = ?self.pending.front().map(|t| t.xid),
                    link = %self.names,
                    xid = txn.xid,
                    code = %e.code,
                    error = %e.message,
                    "fast path declined; the transaction goes to the careful path"
                );
                self.failure = Some(e);
            }
            (Some(_), true) => {} // rolled back behind the failed one; sent again later
            (None, true) => {
                tracing::error!(link = %self.names, xid = txn.xid, end = %txn.end_lsn, pending = ?self.pending.iter().map(|t| (t.xid, t.end_lsn)).collect::<Vec<_>>(), "committed after a failure");
                return Err(ApplyError::Unexpected {
                    source_node: self.names.source.clone(),
                    what: format!(
                        "transaction {} committed after an earlier one failed; the pipeline \
                         guard did not hold",
                        txn.xid
                    ),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn committed(&mut self, txn: &RemoteTxn) {
        self.pending_bytes = self.pending_bytes.saturating_sub(txn.bytes);
        self.applied = self.applied.max(txn.end_lsn);
        let s = &self.stats;
        s.applied_txns
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.applied_changes
            .fetch_add(txn.changes, std::sync::atomic::Ordering::Relaxed);
        s.last_commit_time
            .store(txn.commit_time.0, std::sync::atomic::Ordering::Relaxed);
        LinkStats::raise(&s.applied_lsn, txn.end_lsn);
        LinkStats::raise(&s.caught_up_lsn, txn.end_lsn);
    }

    /// Applies the failed transaction on the careful path, then sends the ones after it again.
    /// Not cancel-safe: run it to completion (or drop the whole applier).
    pub async fn recover(&mut self) -> Result<(), ApplyError> {
        let error = self.failure.take();
        let Some(txn) = self.pending.front().cloned() else {
            return Ok(());
        };
        if let Some(e) = &error {
            tracing::debug!(link = %self.names, xid = txn.xid, code = %e.code, "applying carefully");
        }
        self.apply_front_carefully(&txn).await?;
        self.emit_waiting().await
    }

    /// Applies `txn`, the front pending transaction, on the careful path, and keeps count of
    /// runs of conflicts.
    async fn apply_front_carefully(&mut self, txn: &Arc<RemoteTxn>) -> Result<(), ApplyError> {
        self.stats
            .careful_txns
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let before = self.stats.conflicts.total();
        self.apply_carefully(txn).await?;
        if self.stats.conflicts.total() > before {
            self.conflict_run = self.conflict_run.saturating_add(1);
        } else {
            // The next transaction tries the fast path; one more conflict resumes the run.
            self.conflict_run = self.conflict_run.min(CONFLICT_RUN - 1);
        }
        self.pending.pop_front();
        self.committed(txn);
        self.last_sent_end = self.applied;
        Ok(())
    }

    /// Whether [`emit_waiting`](Self::emit_waiting) has transactions of a run of conflicts to
    /// apply on the careful path: the link's loop calls it again without waiting for anything.
    pub fn has_careful_work(&self) -> bool {
        self.careful_first() && self.can_send()
    }

    /// Whether the front transaction should skip the fast path: a run of conflicts is on, it
    /// is not this run's probe of the fast path, and no transaction is in the pipeline.
    fn careful_first(&self) -> bool {
        self.conflict_run >= CONFLICT_RUN
            && !(self.conflict_run - CONFLICT_RUN + 1).is_multiple_of(CONFLICT_RUN_PROBE)
            && self.in_pipeline == 0
    }

    /// Sends pending transactions that are not in the pipeline, in order, while the window
    /// allows and nothing has failed. Not cancel-safe.
    pub async fn emit_waiting(&mut self) -> Result<(), ApplyError> {
        let started = std::time::Instant::now();
        while self.can_send() {
            if self.careful_first()
                && let Some(txn) = self.pending.front().cloned()
            {
                if started.elapsed() >= CAREFUL_SLICE {
                    break; // see `has_careful_work`
                }
                // A progress question may still be out; the careful path wants the session.
                while self.pipeline.in_flight() > 0 {
                    self.pump().await?;
                }
                self.apply_front_carefully(&txn).await?;
                continue;
            }
            let Some(txn) = self.pending.get(self.in_pipeline).cloned() else {
                break;
            };
            self.emit(&txn).await?;
            self.in_pipeline += 1;
        }
        Ok(())
    }

    /// The mapping of remote relation `oid` (described earlier in this session).
    pub(crate) async fn map_for(&mut self, oid: u32) -> Result<Arc<RelationMap>, ApplyError> {
        let Some(cached) = self.relations.get(oid) else {
            return Err(ApplyError::Unexpected {
                source_node: self.names.source.clone(),
                what: format!("a change for relation {oid}, which was never described"),
            });
        };
        if let Some((generation, map)) = self.maps.get(&oid)
            && *generation == cached.generation
        {
            return Ok(Arc::clone(map));
        }
        let (relation, generation) = (Arc::clone(&cached.relation), cached.generation);
        let schema = if relation.namespace.is_empty() {
            "pg_catalog".to_owned()
        } else {
            relation.namespace.clone()
        };
        let table = self.meta.table(&schema, &relation.name).await?;
        self.next_map_id += 1;
        let map = Arc::new(RelationMap::new(
            self.next_map_id,
            &self.names.target,
            relation,
            table,
        )?);
        self.maps.insert(oid, (generation, Arc::clone(&map)));
        Ok(map)
    }

    /// Forgets table descriptions and mappings (a statement failed in a way that suggests the
    /// target's tables changed).
    pub(crate) fn forget_mappings(&mut self) {
        self.maps.clear();
        self.meta.forget_tables();
    }

    async fn emit(&mut self, txn: &Arc<RemoteTxn>) -> Result<Emitted, ApplyError> {
        self.pipeline.begin(Tag::Txn(Arc::clone(txn)), false);
        if self.stamped_commit {
            let begin = self
                .pipeline
                .prepare(&StatementKey::plain(Kind::Begin), || {
                    statements::BEGIN.to_owned()
                })
                .map_err(|e| self.conn_err(e))?;
            self.pipeline
                .execute(&begin, &[])
                .map_err(|e| self.conn_err(e))?;
        }
        let mut batch = Batch::None;
        let mut deferrable = false;
        for msg in txn.messages()? {
            let msg = msg?;
            match msg.as_ref() {
                LogicalMessage::Relation(r) => {
                    self.flush_batch(&mut batch)?;
                    self.relations.insert(r.clone());
                }
                LogicalMessage::Insert(i) => {
                    let map = self.map_for(i.relation_oid).await?;
                    deferrable |= map.target.deferrable;
                    self.add_insert(&mut batch, map, &i.new)?;
                }
                LogicalMessage::Update(u) => {
                    self.flush_batch(&mut batch)?;
                    let map = self.map_for(u.relation_oid).await?;
                    deferrable |= map.target.deferrable;
                    self.encode_update(&map, u.old.as_ref(), &u.new)?;
                }
                LogicalMessage::Delete(d) => {
                    self.flush_batch(&mut batch)?;
                    let map = self.map_for(d.relation_oid).await?;
                    deferrable |= map.target.deferrable;
                    self.encode_delete(&map, &d.old)?;
                }
                LogicalMessage::Truncate(t) => {
                    self.flush_batch(&mut batch)?;
                    let mut tables = Vec::with_capacity(t.relation_oids.len());
                    for oid in &t.relation_oids {
                        tables.push(self.map_for(*oid).await?.target.quoted.clone());
                    }
                    let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
                    let sql = statements::truncate(&refs, t.restart_identity);
                    self.pipeline
                        .execute_unnamed(&sql, &[])
                        .map_err(|e| self.conn_err(e))?;
                }
                _ => {}
            }
            drop(msg);
            if self.pipeline.pending_output() > OUTPUT_HIGH_WATER {
                // Sending consumes the buffer: an open CopyData message must be closed first.
                if let Batch::Copy(_, writer, _) = &mut batch {
                    writer.seal(self.pipeline.output());
                }
                self.pipeline
                    .exchange()
                    .await
                    .map_err(|e| self.conn_err(e))?;
                self.collect()?;
                if self.failure.is_some() {
                    // An earlier transaction failed: this one cannot commit; make sure it
                    // rolls back, and send it again later.
                    self.flush_batch(&mut batch)?;
                    self.pipeline
                        .abandon(self.stamped_commit)
                        .map_err(|e| self.conn_err(e))?;
                    return Ok(Emitted::Abandoned);
                }
            }
        }
        self.flush_batch(&mut batch)?;
        if deferrable {
            self.pipeline
                .execute_unnamed(statements::CONSTRAINTS_IMMEDIATE, &[])
                .map_err(|e| self.conn_err(e))?;
        }
        let prev = self.last_sent_end.0.to_be_bytes();
        let origin = self.names.origin.clone();
        if self.stamped_commit {
            let guard = self
                .pipeline
                .prepare(&StatementKey::plain(Kind::Guard), || {
                    statements::GUARD.to_owned()
                })
                .map_err(|e| self.conn_err(e))?;
            let end = txn.end_lsn.to_string();
            let time = txn.commit_time.to_string();
            self.pipeline
                .execute(
                    &guard,
                    &[
                        Param::Text(origin.as_bytes()),
                        Param::Binary(&prev),
                        Param::Text(end.as_bytes()),
                        Param::Text(time.as_bytes()),
                    ],
                )
                .map_err(|e| self.conn_err(e))?;
            self.pipeline
                .end_with(statements::COMMIT)
                .map_err(|e| self.conn_err(e))?;
        } else {
            let finish = self
                .pipeline
                .prepare(&StatementKey::plain(Kind::FinishInOne), || {
                    statements::FINISH_IN_ONE.to_owned()
                })
                .map_err(|e| self.conn_err(e))?;
            let end = txn.end_lsn.0.to_be_bytes();
            let time = txn.commit_time.0.to_be_bytes();
            self.pipeline
                .execute(
                    &finish,
                    &[
                        Param::Binary(&end),
                        Param::Binary(&time),
                        Param::Text(origin.as_bytes()),
                        Param::Binary(&prev),
                    ],
                )
                .map_err(|e| self.conn_err(e))?;
            self.pipeline.end();
        }
        tracing::trace!(link = %self.names, xid = txn.xid, end = %txn.end_lsn, after = %self.last_sent_end, "sent");
        self.last_sent_end = txn.end_lsn;
        Ok(Emitted::Whole)
    }

    fn add_insert(
        &mut self,
        batch: &mut Batch,
        map: Arc<RelationMap>,
        row: &TupleData,
    ) -> Result<(), ApplyError> {
        let cols = map.writable_columns();
        match std::mem::replace(batch, Batch::None) {
            Batch::One(m, first) if m.id == map.id => {
                let binary = if copy_format::fits(&first, cols, false)
                    && copy_format::fits(row, cols, false)
                {
                    Some(false)
                } else if copy_format::fits(&first, cols, true)
                    && copy_format::fits(row, cols, true)
                {
                    Some(true)
                } else {
                    None
                };
                let Some(binary) = binary else {
                    self.encode_insert(&m, &first)?;
                    *batch = Batch::One(map, row.clone());
                    return Ok(());
                };
                let key = StatementKey {
                    map: m.id,
                    kind: if binary {
                        Kind::CopyBinary
                    } else {
                        Kind::CopyText
                    },
                    set: None,
                    matched: None,
                    text: None,
                };
                let name = self
                    .pipeline
                    .prepare(&key, || statements::copy(&m, m.writable_columns(), binary))
                    .map_err(|e| self.conn_err(e))?;
                self.pipeline
                    .execute(&name, &[])
                    .map_err(|e| self.conn_err(e))?;
                let out = self.pipeline.output();
                let mut writer = CopyWriter::new(out, binary);
                writer.row(out, &first, cols);
                writer.row(out, row, cols);
                *batch = Batch::Copy(m, writer, binary);
            }
            // The formats of a relation's columns do not change within a stream; a row that
            // does not fit makes the COPY fail, and the careful path takes over.
            Batch::Copy(m, mut writer, binary) if m.id == map.id => {
                writer.row(self.pipeline.output(), row, cols);
                *batch = Batch::Copy(m, writer, binary);
            }
            other => {
                self.finish_batch(other)?;
                *batch = Batch::One(map, row.clone());
            }
        }
        Ok(())
    }

    fn flush_batch(&mut self, batch: &mut Batch) -> Result<(), ApplyError> {
        let b = std::mem::replace(batch, Batch::None);
        self.finish_batch(b)
    }

    fn finish_batch(&mut self, batch: Batch) -> Result<(), ApplyError> {
        match batch {
            Batch::None => Ok(()),
            Batch::One(map, row) => self.encode_insert(&map, &row),
            Batch::Copy(_, writer, _) => {
                writer.finish(self.pipeline.output());
                Ok(())
            }
        }
    }

    fn encode_insert(&mut self, map: &RelationMap, row: &TupleData) -> Result<(), ApplyError> {
        let key = StatementKey {
            map: map.id,
            kind: Kind::Insert,
            set: None,
            matched: None,
            text: None,
        };
        let cols = map.writable_columns();
        let name = self
            .pipeline
            .prepare(&key, || statements::insert(map, cols))
            .map_err(|e| self.conn_err(e))?;
        let params: Vec<Param<'_>> = cols.iter().map(|&c| param(value(row, c))).collect();
        self.pipeline
            .execute(&name, &params)
            .map_err(|e| self.conn_err(e))
    }

    fn encode_update(
        &mut self,
        map: &RelationMap,
        old: Option<&OldTuple>,
        new: &TupleData,
    ) -> Result<(), ApplyError> {
        let (text, matched, source) = self.match_for(map, old, new)?;
        let set = set_columns(map, new);
        if set.is_empty() {
            return Ok(());
        }
        let key = StatementKey {
            map: map.id,
            kind: if text {
                Kind::UpdateText
            } else {
                Kind::UpdateEqual
            },
            set: shape(&set, map.writable_columns()),
            matched: Some(matched.clone().into()),
            text: None,
        };
        let m = if text {
            Match::AllText(&matched)
        } else {
            Match::Equal(&matched)
        };
        let name = self
            .pipeline
            .prepare(&key, || statements::update_fast(map, &set, m))
            .map_err(|e| self.conn_err(e))?;
        let origin = self.origin_id.clone();
        let mut params: Vec<Param<'_>> = Vec::with_capacity(set.len() + matched.len() + 1);
        params.extend(set.iter().map(|&c| param(value(new, c))));
        params.extend(matched.iter().map(|&c| param(value(source, c))));
        params.push(Param::Text(origin.as_bytes()));
        self.pipeline
            .execute(&name, &params)
            .map_err(|e| self.conn_err(e))
    }

    fn encode_delete(&mut self, map: &RelationMap, old: &OldTuple) -> Result<(), ApplyError> {
        let old_tuple = match old {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        };
        let (text, matched, source) = self.match_for(map, Some(old), old_tuple)?;
        let key = StatementKey {
            map: map.id,
            kind: if text {
                Kind::DeleteText
            } else {
                Kind::DeleteEqual
            },
            set: None,
            matched: Some(matched.clone().into()),
            text: None,
        };
        let m = if text {
            Match::AllText(&matched)
        } else {
            Match::Equal(&matched)
        };
        let name = self
            .pipeline
            .prepare(&key, || statements::delete_fast(map, m))
            .map_err(|e| self.conn_err(e))?;
        let origin = self.origin_id.clone();
        let mut params: Vec<Param<'_>> = Vec::with_capacity(matched.len() + 1);
        params.extend(matched.iter().map(|&c| param(value(source, c))));
        params.push(Param::Text(origin.as_bytes()));
        self.pipeline
            .execute(&name, &params)
            .map_err(|e| self.conn_err(e))
    }

    /// How the row of an UPDATE or DELETE is found: whether by text comparison, which remote
    /// columns are matched, and the tuple their values come from.
    pub(crate) fn match_for<'t>(
        &self,
        map: &RelationMap,
        old: Option<&'t OldTuple>,
        new: &'t TupleData,
    ) -> Result<(bool, Vec<usize>, &'t TupleData), ApplyError> {
        let usable = |t: &TupleData, c: usize| {
            !matches!(value(t, c), ColumnRef::UnchangedToast | ColumnRef::Null)
        };
        match &map.lookup {
            Lookup::Key(cols) => {
                let source = match old {
                    Some(OldTuple::Key(t) | OldTuple::Full(t)) => t,
                    None => new,
                };
                if cols.iter().all(|&c| usable(source, c)) {
                    Ok((false, cols.clone(), source))
                } else {
                    Err(ApplyError::Unexpected {
                        source_node: self.names.source.clone(),
                        what: format!(
                            "a change to {} without the values of its replica identity key",
                            map.remote_name()
                        ),
                    })
                }
            }
            Lookup::FullByKey(cols) => {
                let Some(OldTuple::Full(t)) = old else {
                    return self.full_row(map, old, new);
                };
                if cols.iter().all(|&c| usable(t, c)) {
                    Ok((false, cols.clone(), t))
                } else {
                    self.full_row(map, old, new)
                }
            }
            Lookup::FullRow => self.full_row(map, old, new),
            Lookup::None => Err(ApplyError::NoReplicaIdentity {
                node: self.names.target.clone(),
                table: map.target.quoted.clone(),
            }),
        }
    }

    fn full_row<'t>(
        &self,
        map: &RelationMap,
        old: Option<&'t OldTuple>,
        new: &'t TupleData,
    ) -> Result<(bool, Vec<usize>, &'t TupleData), ApplyError> {
        let source = match old {
            Some(OldTuple::Full(t) | OldTuple::Key(t)) => t,
            None => new,
        };
        let cols: Vec<usize> = (0..map.remote.columns.len())
            .filter(|&c| !matches!(value(source, c), ColumnRef::UnchangedToast))
            .collect();
        Ok((true, cols, source))
    }

    /// The link's origin name, for messages.
    pub fn origin_name(&self) -> &str {
        &self.names.origin
    }

    /// The remote transactions handed over and not yet committed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn client(&mut self) -> &mut Client {
        self.pipeline.client()
    }

    pub(crate) fn messages(
        txn: &RemoteTxn,
    ) -> Result<crate::transaction::Messages<'_>, ApplyError> {
        txn.messages()
    }
}

/// The remote columns an UPDATE writes: written to the target and not unchanged TOAST.
pub(crate) fn set_columns(map: &RelationMap, new: &TupleData) -> Vec<usize> {
    map.writable_columns()
        .iter()
        .copied()
        .filter(|&c| !matches!(value(new, c), ColumnRef::UnchangedToast))
        .collect()
}

fn shape(cols: &[usize], default: &[usize]) -> Option<Box<[usize]>> {
    (cols != default).then(|| cols.into())
}
