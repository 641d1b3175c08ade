//! What a running link reports about itself: state, positions, counters and the last error,
//! shared lock-free (atomics) with whoever reads it — metrics, the status command, tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

use pgrepl_conflict::ConflictCounters;
use pgrepl_core::{Lsn, PgTimestamp};

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not started yet.
    Idle,
    /// Connecting to its nodes.
    Connecting,
    /// Streaming and applying.
    Streaming,
    /// Waiting to reconnect after a transient failure.
    Retrying,
    /// Stopped on a definite error; needs a person.
    Failed,
    /// Stopped because it was asked to.
    Stopped,
}

impl LinkState {
    /// The name used in logs, status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Idle => "idle",
            LinkState::Connecting => "connecting",
            LinkState::Streaming => "streaming",
            LinkState::Retrying => "retrying",
            LinkState::Failed => "failed",
            LinkState::Stopped => "stopped",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [LinkState; 6] = [
        LinkState::Idle,
        LinkState::Connecting,
        LinkState::Streaming,
        LinkState::Retrying,
        LinkState::Failed,
        LinkState::Stopped,
    ];

    fn from_u8(v: u8) -> LinkState {
        LinkState::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(LinkState::Idle)
    }

    fn to_u8(self) -> u8 {
        LinkState::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }
}

/// Counters and positions of one link.
#[derive(Debug, Default)]
pub struct LinkStats {
    state: AtomicU8,
    /// Remote transactions applied.
    pub applied_txns: AtomicU64,
    /// Row changes (and truncates) applied.
    pub applied_changes: AtomicU64,
    /// Transactions skipped because they came from another origin (loop prevention).
    pub skipped_txns: AtomicU64,
    /// Transactions that took the careful (conflict-checking) path.
    pub careful_txns: AtomicU64,
    /// Transactions the fast path sent and gave up on (a conflict, or an error it leaves to
    /// the careful path). Low during a run of conflicts: the link then goes careful directly.
    pub declined_txns: AtomicU64,
    /// Transactions that arrived streamed (before their commit) and were spooled to disk.
    pub streamed_txns: AtomicU64,
    /// Conflicts by kind and resolution.
    pub conflicts: ConflictCounters,
    /// How far the source has sent (the largest WAL end seen).
    pub received_lsn: AtomicU64,
    /// The end of the last transaction committed on the target.
    pub applied_lsn: AtomicU64,
    /// The position confirmed to the source as durable.
    pub flushed_lsn: AtomicU64,
    /// Up to where everything from the source is applied (applied, or skipped while idle).
    pub caught_up_lsn: AtomicU64,
    /// Source commit time of the last applied transaction (PostgreSQL microseconds).
    pub last_commit_time: AtomicI64,
    /// Reconnections after transient failures.
    pub restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LinkStats {
    /// The state.
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state.
    pub fn set_state(&self, state: LinkState) {
        self.state.store(state.to_u8(), Ordering::Relaxed);
    }

    /// The last error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Records an error.
    pub fn set_last_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }

    /// Raises a position (never lowers it).
    pub fn raise(position: &AtomicU64, lsn: Lsn) {
        position.fetch_max(lsn.0, Ordering::Relaxed);
    }

    /// Reads a position.
    pub fn lsn(position: &AtomicU64) -> Lsn {
        Lsn(position.load(Ordering::Relaxed))
    }

    /// Bytes of source WAL not yet applied.
    pub fn lag_bytes(&self) -> u64 {
        let received = self.received_lsn.load(Ordering::Relaxed);
        let done = self
            .caught_up_lsn
            .load(Ordering::Relaxed)
            .max(self.applied_lsn.load(Ordering::Relaxed));
        received.saturating_sub(done)
    }

    /// Seconds between now and the source commit of the last applied transaction, while the
    /// link is behind; zero when it has caught up.
    pub fn lag_seconds(&self) -> f64 {
        if self.lag_bytes() == 0 {
            return 0.0;
        }
        let last = self.last_commit_time.load(Ordering::Relaxed);
        if last == 0 {
            return 0.0;
        }
        let now = PgTimestamp::now().0;
        (now.saturating_sub(last).max(0) as f64) / 1e6
    }
}
