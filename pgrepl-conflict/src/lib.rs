//! pgrepl-conflict: what a replication conflict is, and who decides how it ends.
//!
//! When the applier (`pgrepl-apply`) brings a remote change to a target, the target's row may
//! not be what the source saw: another node or a local session wrote it, it is gone, or the
//! change collides with a different row on a unique constraint. Those are **conflicts**, named
//! as PostgreSQL 18 names them ([`ConflictKind`]). The applier detects them — it learns who last
//! wrote a local row, and when, from `pg_xact_commit_timestamp_origin(xmin)` — and asks a
//! [`ConflictResolver`] for a [`Resolution`]:
//!
//! ```text
//!   remote change ──▶ applier probes the local row(s) ──▶ Conflict { kind, remote, locals }
//!                                                          │
//!                                    ConflictResolver::resolve ──▶ ApplyRemote | KeepLocal | Error
//!                                                          │
//!   target transaction ◀── apply / skip, and one row in pgrepl.conflict_history
//! ```
//!
//! # What a resolution does, per kind
//!
//! | kind | `ApplyRemote` | `KeepLocal` |
//! | --- | --- | --- |
//! | `insert_exists` | the existing row takes the remote values | the insert is skipped |
//! | `update_origin_differs` | the update is applied | the update is skipped |
//! | `update_exists` | the other row(s) in the way are deleted, then the update applied | the update is skipped |
//! | `update_missing` | the remote row is inserted (when every column value is known) | the update is skipped |
//! | `delete_origin_differs` | the row is deleted | the delete is skipped |
//! | `delete_missing` | nothing to do | nothing to do |
//! | `multiple_unique_conflicts` | the colliding rows are deleted, then the remote row written | the change is skipped |
//!
//! [`Resolution::Error`] stops the link at that transaction; nothing after it is applied.
//!
//! # Built-in resolvers, and which converge
//!
//! - [`LastUpdateWins`] (`last_update_wins`): the version with the later (commit timestamp,
//!   node name) wins; the node name breaks ties identically on every node, and a row with no
//!   commit timestamp (frozen, or written before `track_commit_timestamp` was on) is older than
//!   anything. Deletes win, because without tombstones a delete cannot be ordered against a
//!   concurrent update: `update_missing` is skipped and `delete_origin_differs` deletes. Every
//!   node reaches the same decision for the same pair of versions, so **nodes converge**.
//! - [`FirstUpdateWins`] (`first_update_wins`): the mirror image — the earlier version wins,
//!   a timestamp-less row counts as earliest; deletes win likewise. It converges too.
//! - [`ApplyRemote`] (`apply_remote`) and [`KeepLocal`] (`keep_local`): always the remote, or
//!   always the local version. They **do not converge** under concurrent writes to the same row:
//!   each node ends with the other's version (or its own).
//! - [`ErrorResolver`] (`error`): stop and let a person decide.
//!
//! [`ResolverSet`] picks a resolver per kind (a default plus overrides), and users plug in
//! their own by implementing [`ConflictResolver`].

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

pub use pgrepl_core::PgTimestamp;

/// The kinds of conflict, as PostgreSQL 18 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConflictKind {
    /// A remote INSERT finds a local row with the same key.
    InsertExists,
    /// A remote UPDATE finds its row, last written by another origin.
    UpdateOriginDiffers,
    /// A remote UPDATE would violate a unique constraint on another row.
    UpdateExists,
    /// A remote UPDATE finds no row.
    UpdateMissing,
    /// A remote DELETE finds its row, last written by another origin.
    DeleteOriginDiffers,
    /// A remote DELETE finds no row.
    DeleteMissing,
    /// A remote row collides with several local rows on different unique constraints.
    MultipleUniqueConflicts,
}

impl ConflictKind {
    /// Every kind, in a fixed order (used to index counters).
    pub const ALL: [ConflictKind; 7] = [
        ConflictKind::InsertExists,
        ConflictKind::UpdateOriginDiffers,
        ConflictKind::UpdateExists,
        ConflictKind::UpdateMissing,
        ConflictKind::DeleteOriginDiffers,
        ConflictKind::DeleteMissing,
        ConflictKind::MultipleUniqueConflicts,
    ];

    /// The name used in configuration, history and metrics, e.g. `insert_exists`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConflictKind::InsertExists => "insert_exists",
            ConflictKind::UpdateOriginDiffers => "update_origin_differs",
            ConflictKind::UpdateExists => "update_exists",
            ConflictKind::UpdateMissing => "update_missing",
            ConflictKind::DeleteOriginDiffers => "delete_origin_differs",
            ConflictKind::DeleteMissing => "delete_missing",
            ConflictKind::MultipleUniqueConflicts => "multiple_unique_conflicts",
        }
    }

    /// Position in [`ConflictKind::ALL`].
    pub const fn index(self) -> usize {
        match self {
            ConflictKind::InsertExists => 0,
            ConflictKind::UpdateOriginDiffers => 1,
            ConflictKind::UpdateExists => 2,
            ConflictKind::UpdateMissing => 3,
            ConflictKind::DeleteOriginDiffers => 4,
            ConflictKind::DeleteMissing => 5,
            ConflictKind::MultipleUniqueConflicts => 6,
        }
    }
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a conflict kind or not a resolver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    /// Not a conflict kind.
    #[error(
        "unknown conflict kind \"{0}\"; the kinds are insert_exists, update_origin_differs, \
         update_exists, update_missing, delete_origin_differs, delete_missing and \
         multiple_unique_conflicts"
    )]
    Kind(String),
    /// Not a built-in resolver.
    #[error(
        "unknown conflict resolver \"{0}\"; the built-in resolvers are apply_remote, keep_local, \
         last_update_wins, first_update_wins and error"
    )]
    Resolver(String),
}

impl FromStr for ConflictKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConflictKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName::Kind(s.to_owned()))
    }
}

/// How a conflict ends; what it means for each kind is in the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The remote change wins.
    ApplyRemote,
    /// The local row stays as it is.
    KeepLocal,
    /// Stop the link at this transaction.
    Error,
}

impl Resolution {
    /// Every resolution, in a fixed order (used to index counters).
    pub const ALL: [Resolution; 3] = [
        Resolution::ApplyRemote,
        Resolution::KeepLocal,
        Resolution::Error,
    ];

    /// The name used in history and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Resolution::ApplyRemote => "apply_remote",
            Resolution::KeepLocal => "keep_local",
            Resolution::Error => "error",
        }
    }

    /// Position in [`Resolution::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Resolution::ApplyRemote => 0,
            Resolution::KeepLocal => 1,
            Resolution::Error => 2,
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who wrote a row version last, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowVersion<'a> {
    /// The node whose transaction wrote it (for a local row: this node, or the node whose
    /// change was applied here), `None` when unknown.
    pub node: Option<&'a str>,
    /// The commit timestamp of that transaction, `None` when unknown (the row is frozen, or was
    /// written before `track_commit_timestamp` was on): such a row is older than anything.
    pub commit_time: Option<PgTimestamp>,
}

impl RowVersion<'_> {
    /// Orders two versions by (commit timestamp, node name); unknown timestamps first.
    pub fn cmp_age(&self, other: &RowVersion<'_>) -> Ordering {
        match (self.commit_time, other.commit_time) {
            (None, None) => self.node.cmp(&other.node),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(&b).then_with(|| self.node.cmp(&other.node)),
        }
    }
}

/// A detected conflict, as a resolver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict<'a> {
    /// What happened.
    pub kind: ConflictKind,
    /// The target table, schema-qualified and quoted as in SQL.
    pub relation: &'a str,
    /// The remote change's version (its source node and commit timestamp).
    pub remote: RowVersion<'a>,
    /// The local rows involved: one for most kinds, several for `update_exists` and
    /// `multiple_unique_conflicts`, none for the `*_missing` kinds.
    pub locals: &'a [RowVersion<'a>],
}

/// Decides how conflicts end. Implementations must be deterministic functions of the
/// conflict if the nodes are to converge.
pub trait ConflictResolver: Send + Sync + fmt::Debug {
    /// The name shown in history, logs and metrics.
    fn name(&self) -> &str;

    /// The resolution of `conflict`.
    fn resolve(&self, conflict: &Conflict<'_>) -> Resolution;
}

/// `apply_remote`: the remote change always wins. Does not converge under concurrent writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyRemote;

impl ConflictResolver for ApplyRemote {
    fn name(&self) -> &str {
        "apply_remote"
    }

    fn resolve(&self, _: &Conflict<'_>) -> Resolution {
        Resolution::ApplyRemote
    }
}

/// `keep_local`: the local row always stays. Does not converge under concurrent writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepLocal;

impl ConflictResolver for KeepLocal {
    fn name(&self) -> &str {
        "keep_local"
    }

    fn resolve(&self, _: &Conflict<'_>) -> Resolution {
        Resolution::KeepLocal
    }
}

/// `error`: every conflict stops the link.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorResolver;

impl ConflictResolver for ErrorResolver {
    fn name(&self) -> &str {
        "error"
    }

    fn resolve(&self, _: &Conflict<'_>) -> Resolution {
        Resolution::Error
    }
}

/// The decision "deletes win" shared by the timestamp resolvers, or `None` when the
/// timestamps must decide.
fn deletes_win(kind: ConflictKind) -> Option<Resolution> {
    match kind {
        ConflictKind::UpdateMissing | ConflictKind::DeleteMissing => Some(Resolution::KeepLocal),
        ConflictKind::DeleteOriginDiffers => Some(Resolution::ApplyRemote),
        ConflictKind::InsertExists
        | ConflictKind::UpdateOriginDiffers
        | ConflictKind::UpdateExists
        | ConflictKind::MultipleUniqueConflicts => None,
    }
}

/// `last_update_wins`: the later (commit timestamp, node name) wins; deletes win. Converges.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastUpdateWins;

impl ConflictResolver for LastUpdateWins {
    fn name(&self) -> &str {
        "last_update_wins"
    }

    fn resolve(&self, c: &Conflict<'_>) -> Resolution {
        if let Some(r) = deletes_win(c.kind) {
            return r;
        }
        if c.locals
            .iter()
            .all(|local| c.remote.cmp_age(local) == Ordering::Greater)
        {
            Resolution::ApplyRemote
        } else {
            Resolution::KeepLocal
        }
    }
}

/// `first_update_wins`: the earlier (commit timestamp, node name) wins; deletes win.
/// Converges.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstUpdateWins;

impl ConflictResolver for FirstUpdateWins {
    fn name(&self) -> &str {
        "first_update_wins"
    }

    fn resolve(&self, c: &Conflict<'_>) -> Resolution {
        if let Some(r) = deletes_win(c.kind) {
            return r;
        }
        if c.locals
            .iter()
            .all(|local| c.remote.cmp_age(local) == Ordering::Less)
        {
            Resolution::ApplyRemote
        } else {
            Resolution::KeepLocal
        }
    }
}

/// A built-in resolver by its configuration name.
pub fn builtin(name: &str) -> Result<Arc<dyn ConflictResolver>, UnknownName> {
    Ok(match name {
        "apply_remote" => Arc::new(ApplyRemote),
        "keep_local" => Arc::new(KeepLocal),
        "last_update_wins" => Arc::new(LastUpdateWins),
        "first_update_wins" => Arc::new(FirstUpdateWins),
        "error" => Arc::new(ErrorResolver),
        other => return Err(UnknownName::Resolver(other.to_owned())),
    })
}

/// A default resolver with per-kind overrides.
#[derive(Debug, Clone)]
pub struct ResolverSet {
    default: Arc<dyn ConflictResolver>,
    overrides: [Option<Arc<dyn ConflictResolver>>; 7],
}

impl ResolverSet {
    /// Every kind resolved by `default`.
    pub fn new(default: Arc<dyn ConflictResolver>) -> Self {
        ResolverSet {
            default,
            overrides: Default::default(),
        }
    }

    /// Resolves `kind` with `resolver` instead of the default.
    #[must_use]
    pub fn with_override(
        mut self,
        kind: ConflictKind,
        resolver: Arc<dyn ConflictResolver>,
    ) -> Self {
        if let Some(slot) = self.overrides.get_mut(kind.index()) {
            *slot = Some(resolver);
        }
        self
    }

    /// The resolver used for `kind`.
    pub fn for_kind(&self, kind: ConflictKind) -> &Arc<dyn ConflictResolver> {
        self.overrides
            .get(kind.index())
            .and_then(Option::as_ref)
            .unwrap_or(&self.default)
    }
}

impl ConflictResolver for ResolverSet {
    fn name(&self) -> &str {
        self.default.name()
    }

    fn resolve(&self, conflict: &Conflict<'_>) -> Resolution {
        self.for_kind(conflict.kind).resolve(conflict)
    }
}

/// Conflicts counted by kind and resolution, for metrics.
#[derive(Debug, Default)]
pub struct ConflictCounters {
    counts: [[AtomicU64; 3]; 7],
}

impl ConflictCounters {
    /// Counts one conflict.
    pub fn record(&self, kind: ConflictKind, resolution: Resolution) {
        if let Some(c) = self
            .counts
            .get(kind.index())
            .and_then(|row| row.get(resolution.index()))
        {
            c.fetch_add(1, AtomicOrdering::Relaxed);
        }
    }

    /// How many conflicts of `kind` ended with `resolution`.
    pub fn get(&self, kind: ConflictKind, resolution: Resolution) -> u64 {
        self.counts
            .get(kind.index())
            .and_then(|row| row.get(resolution.index()))
            .map_or(0, |c| c.load(AtomicOrdering::Relaxed))
    }

    /// All non-zero counts.
    pub fn snapshot(&self) -> Vec<(ConflictKind, Resolution, u64)> {
        let mut out = Vec::new();
        for kind in ConflictKind::ALL {
            for resolution in Resolution::ALL {
                let n = self.get(kind, resolution);
                if n > 0 {
                    out.push((kind, resolution, n));
                }
            }
        }
        out
    }

    /// The total over all kinds and resolutions.
    pub fn total(&self) -> u64 {
        self.snapshot().iter().map(|(_, _, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(node: &str, t: Option<i64>) -> RowVersion<'_> {
        RowVersion {
            node: Some(node),
            commit_time: t.map(PgTimestamp),
        }
    }

    fn resolve(
        r: &dyn ConflictResolver,
        kind: ConflictKind,
        remote: RowVersion<'_>,
        locals: &[RowVersion<'_>],
    ) -> Resolution {
        r.resolve(&Conflict {
            kind,
            relation: "\"public\".\"t\"",
            remote,
            locals,
        })
    }

    #[test]
    fn names_round_trip() {
        for k in ConflictKind::ALL {
            assert_eq!(k.as_str().parse::<ConflictKind>().unwrap(), k);
            assert_eq!(ConflictKind::ALL[k.index()], k);
        }
        for name in [
            "apply_remote",
            "keep_local",
            "last_update_wins",
            "first_update_wins",
            "error",
        ] {
            assert_eq!(builtin(name).unwrap().name(), name);
        }
        assert!(
            builtin("newest")
                .unwrap_err()
                .to_string()
                .contains("last_update_wins")
        );
        assert!("insert".parse::<ConflictKind>().is_err());
    }

    #[test]
    fn last_update_wins_rules() {
        let lww = LastUpdateWins;
        use ConflictKind::*;
        assert_eq!(
            resolve(
                &lww,
                UpdateOriginDiffers,
                v("a", Some(2)),
                &[v("b", Some(1))]
            ),
            Resolution::ApplyRemote
        );
        assert_eq!(
            resolve(
                &lww,
                UpdateOriginDiffers,
                v("a", Some(1)),
                &[v("b", Some(2))]
            ),
            Resolution::KeepLocal
        );
        // ties: the node name decides, the same way on both nodes
        assert_eq!(
            resolve(&lww, InsertExists, v("b", Some(5)), &[v("a", Some(5))]),
            Resolution::ApplyRemote
        );
        assert_eq!(
            resolve(&lww, InsertExists, v("a", Some(5)), &[v("b", Some(5))]),
            Resolution::KeepLocal
        );
        // frozen rows are older than anything
        let frozen = RowVersion {
            node: None,
            commit_time: None,
        };
        assert_eq!(
            resolve(&lww, UpdateOriginDiffers, v("a", Some(i64::MIN)), &[frozen]),
            Resolution::ApplyRemote
        );
        // deletes win
        assert_eq!(
            resolve(&lww, UpdateMissing, v("a", Some(9)), &[]),
            Resolution::KeepLocal
        );
        assert_eq!(
            resolve(
                &lww,
                DeleteOriginDiffers,
                v("a", Some(1)),
                &[v("b", Some(9))]
            ),
            Resolution::ApplyRemote
        );
        // several locals: the remote must be newer than all of them
        assert_eq!(
            resolve(
                &lww,
                MultipleUniqueConflicts,
                v("a", Some(5)),
                &[v("b", Some(1)), v("c", Some(6))]
            ),
            Resolution::KeepLocal
        );
        assert_eq!(
            resolve(
                &lww,
                MultipleUniqueConflicts,
                v("a", Some(7)),
                &[v("b", Some(1)), v("c", Some(6))]
            ),
            Resolution::ApplyRemote
        );
    }

    #[test]
    fn overrides_pick_per_kind() {
        let set = ResolverSet::new(Arc::new(LastUpdateWins))
            .with_override(ConflictKind::UpdateMissing, Arc::new(ErrorResolver));
        assert_eq!(
            resolve(&set, ConflictKind::UpdateMissing, v("a", Some(1)), &[]),
            Resolution::Error
        );
        assert_eq!(
            resolve(&set, ConflictKind::DeleteMissing, v("a", Some(1)), &[]),
            Resolution::KeepLocal
        );
    }

    #[test]
    fn counters_count() {
        let c = ConflictCounters::default();
        c.record(ConflictKind::InsertExists, Resolution::ApplyRemote);
        c.record(ConflictKind::InsertExists, Resolution::ApplyRemote);
        c.record(ConflictKind::DeleteMissing, Resolution::KeepLocal);
        assert_eq!(
            c.get(ConflictKind::InsertExists, Resolution::ApplyRemote),
            2
        );
        assert_eq!(c.total(), 3);
        assert_eq!(c.snapshot().len(), 2);
    }

    proptest! {
        /// Two nodes that see the same pair of concurrent versions, each as (remote, local),
        /// must keep the same one: that is what makes the timestamp resolvers converge.
        #[test]
        fn timestamp_resolvers_agree_on_both_nodes(
            ta in proptest::option::of(any::<i64>()), tb in proptest::option::of(any::<i64>()),
            na in "[a-c]", nb in "[a-c]",
            kind in prop::sample::select(vec![ConflictKind::InsertExists, ConflictKind::UpdateOriginDiffers, ConflictKind::UpdateExists, ConflictKind::MultipleUniqueConflicts]),
        ) {
            prop_assume!(na != nb);
            let a = RowVersion { node: Some(na.as_str()), commit_time: ta.map(PgTimestamp) };
            let b = RowVersion { node: Some(nb.as_str()), commit_time: tb.map(PgTimestamp) };
            for r in [&LastUpdateWins as &dyn ConflictResolver, &FirstUpdateWins] {
                // on node B: remote a vs local b; on node A: remote b vs local a
                let on_b = resolve(r, kind, a, &[b]);
                let on_a = resolve(r, kind, b, &[a]);
                let b_keeps = if on_b == Resolution::ApplyRemote { "a" } else { "b" };
                let a_keeps = if on_a == Resolution::ApplyRemote { "b" } else { "a" };
                prop_assert_eq!(b_keeps, a_keeps, "{} disagrees", r.name());
            }
        }
    }
}
