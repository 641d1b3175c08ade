//! The workloads, statement for statement as in `anchors/lib.sh`: schemas, backlog
//! generators and md5 fingerprints.

use crate::node::Node;
use crate::{Params, Result, fail};

/// The marker table every workload replicates (the anchors' `ANCHORS_MARKER_DDL`).
const MARKER_DDL: &str =
    "CREATE TABLE anchors_marker(id int PRIMARY KEY, target_lsn pg_lsn, ts timestamptz)";

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    /// 1M rows in 10k-row transactions into one table.
    Bulk,
    /// 100k pgbench simple-update (-N) transactions.
    Oltp,
    /// Both nodes run pgbench on disjoint keys at once.
    Bidir,
    /// `oltp`, with each node's initial pgbench rows written while `track_commit_timestamp`
    /// was off (so their last writer is unknown, not "a local session"): not the anchors'
    /// method; shows pgrepl without `update_origin_differs` on every first update of a row.
    OltpUntracked,
    /// `bidir`, with the initial rows loaded as in `oltp-untracked`.
    BidirUntracked,
    /// `oltp`, with every account row rewritten by a local session on each node before the
    /// backlog: every replicated UPDATE then meets a row another origin wrote last
    /// (`update_origin_differs`), so every transaction is a conflict to detect, resolve and
    /// (for pgrepl) record. Not the anchors' method.
    OltpConflicts,
}

impl Workload {
    pub(crate) fn parse(s: &str) -> Option<Workload> {
        match s {
            "bulk" => Some(Workload::Bulk),
            "oltp" => Some(Workload::Oltp),
            "bidir" => Some(Workload::Bidir),
            "oltp-untracked" => Some(Workload::OltpUntracked),
            "bidir-untracked" => Some(Workload::BidirUntracked),
            "oltp-conflicts" => Some(Workload::OltpConflicts),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Bulk => "bulk",
            Workload::Oltp => "oltp",
            Workload::Bidir => "bidir",
            Workload::OltpUntracked => "oltp-untracked",
            Workload::BidirUntracked => "bidir-untracked",
            Workload::OltpConflicts => "oltp-conflicts",
        }
    }

    /// Whether both nodes write (the bidir driver).
    pub(crate) fn is_bidir(self) -> bool {
        matches!(self, Workload::Bidir | Workload::BidirUntracked)
    }

    /// Whether the one-way backlog is `pgbench -N` transactions.
    pub(crate) fn is_oltp(self) -> bool {
        matches!(
            self,
            Workload::Oltp | Workload::OltpUntracked | Workload::OltpConflicts
        )
    }

    /// Whether the initial rows are loaded with `track_commit_timestamp = off`.
    pub(crate) fn untracked(self) -> bool {
        matches!(self, Workload::OltpUntracked | Workload::BidirUntracked)
    }

    /// The replicated tables.
    pub(crate) fn tables(self) -> &'static [&'static str] {
        match self {
            Workload::Bulk => &["t", "anchors_marker"],
            _ => &[
                "pgbench_accounts",
                "pgbench_branches",
                "pgbench_tellers",
                "pgbench_history",
                "anchors_marker",
            ],
        }
    }

    /// Creates the schema (and, for pgbench, the initial data) on a node.
    pub(crate) fn schema(self, node: &mut Node, p: &Params) -> Result<()> {
        match self {
            Workload::Bulk => {
                node.sql(&format!(
                    "CREATE TABLE t(id bigint PRIMARY KEY, payload text, n int, ts timestamptz);
                     {MARKER_DDL}"
                ))?;
            }
            _ => {
                if self.untracked() {
                    node.sql("ALTER SYSTEM SET track_commit_timestamp = off")?;
                    node.cluster.restart()?;
                }
                node.pgbench(&["-i", "-q", "-s", &p.oltp_scale.to_string()])?;
                if self.untracked() {
                    node.sql("ALTER SYSTEM RESET track_commit_timestamp")?;
                    node.cluster.restart()?;
                    if node.sql("SHOW track_commit_timestamp")? != "on" {
                        return fail("track_commit_timestamp did not come back on");
                    }
                }
                // pgbench_history gets a primary key whose sequence is node-disjoint (node k
                // generates k, k+10, …), as in the anchors.
                node.sql(&format!(
                    "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY;
                     ALTER SEQUENCE pgbench_history_hid_seq INCREMENT BY 10 RESTART WITH {};
                     {MARKER_DDL}",
                    node.index
                ))?;
                node.sql("VACUUM ANALYZE pgbench_history")?;
                if self == Workload::OltpConflicts {
                    // `pgbench -i` loads with COPY FREEZE, and a frozen row has no known
                    // last writer; rewriting every row makes a local session its writer.
                    node.sql("UPDATE pgbench_accounts SET abalance = abalance")?;
                    node.sql("VACUUM ANALYZE pgbench_accounts")?;
                }
            }
        }
        Ok(())
    }

    /// Generates the one-way backlog on `node`; a line for the log.
    pub(crate) fn generate(self, node: &Node, p: &Params) -> Result<String> {
        match self {
            Workload::Bulk => {
                let (rows, batch) = (p.bulk_rows, p.bulk_batch);
                node.script(&format!(
                    "DO $$
BEGIN
  FOR b IN 0 .. ({rows} / {batch}) - 1 LOOP
    INSERT INTO t
      SELECT g, repeat(md5(g::text), 2), (g % 1000)::int, now()
      FROM generate_series(b::bigint * {batch} + 1, (b + 1)::bigint * {batch}) g;
    COMMIT;
  END LOOP;
END
$$;
"
                ))?;
                Ok(format!(
                    "{rows} rows in {} transactions",
                    rows / batch.max(1)
                ))
            }
            Workload::Oltp | Workload::OltpUntracked | Workload::OltpConflicts => {
                // -n: no vacuum, and no TRUNCATE of pgbench_history (it would replicate).
                let per_client = (p.oltp_txns / p.oltp_clients.max(1)).to_string();
                let out = node.pgbench(&[
                    "-n",
                    "-N",
                    "-c",
                    &p.oltp_clients.to_string(),
                    "-j",
                    &p.oltp_threads.to_string(),
                    "-t",
                    &per_client,
                ])?;
                let want = format!("actually processed: {0}/{0}", p.oltp_txns);
                if !out.contains(&want) {
                    return fail(format!("pgbench incomplete (wanted `{want}`):\n{out}"));
                }
                Ok(out
                    .lines()
                    .find(|l| l.starts_with("tps"))
                    .unwrap_or("")
                    .to_owned())
            }
            Workload::Bidir | Workload::BidirUntracked => fail("bidir has no one-way backlog"),
        }
    }

    /// The md5 fingerprint of the replicated data on a node.
    pub(crate) fn fingerprint(self, node: &Node) -> Result<String> {
        node.sql(match self {
            Workload::Bulk => {
                "SELECT count(*) || ':' || md5(string_agg(md5(t::text), '' ORDER BY id)) FROM t"
            }
            _ => {
                "SELECT
     (SELECT md5(string_agg(aid||':'||bid||':'||abalance, ',' ORDER BY aid)) FROM pgbench_accounts) || '/' ||
     (SELECT md5(string_agg(tid||':'||bid||':'||tbalance, ',' ORDER BY tid)) FROM pgbench_tellers) || '/' ||
     (SELECT md5(string_agg(bid||':'||bbalance, ',' ORDER BY bid)) FROM pgbench_branches) || '/' ||
     (SELECT count(*) || ':' || coalesce(md5(string_agg(hid||':'||tid||':'||bid||':'||aid||':'||delta||':'||mtime, ',' ORDER BY hid)), '-')
        FROM pgbench_history)"
            }
        })
    }
}

/// The bidir pgbench script: the built-in simple-update (-N) with `aid` restricted to
/// `[:lo, :hi]` (the anchors' `anchors_bidir_script`).
pub(crate) const BIDIR_SCRIPT: &str = r"\set aid random(:lo, :hi)
\set bid random(1, :nbranches)
\set tid random(1, 10 * :nbranches)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
";
