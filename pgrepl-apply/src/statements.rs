//! The SQL the applier runs, built from a [`RelationMap`].
//!
//! Every identifier is quoted (the map holds quoted names); every value is a parameter
//! (`$n`), never text. Parameter types come from the target columns: either inferred by the
//! server from the column they are compared with or assigned to, or cast explicitly to the
//! column's type where there is no such context. Each builder documents its parameter order.
//!
//! Two families:
//!
//! - the **fast path**, pipelined, which must *fail* rather than silently do the wrong thing:
//!   an UPDATE or DELETE that would touch no row, or a row last written by another origin, is
//!   turned into an error (`1 / count(*)` over the rows it changed) so the transaction rolls back
//!   and is replayed on the careful path. An INSERT that collides fails by itself with a unique
//!   violation.
//! - the **careful path**, one statement at a time, which looks before it writes: it locks and
//!   reads the local row(s) with their last writer (`pg_xact_commit_timestamp_origin(xmin)`),
//!   lets the resolver decide, then writes by `ctid`.

use std::fmt::Write as _;

use crate::catalog::UniqueIndex;
use crate::relation_map::RelationMap;

/// How the statement finds its row: which remote columns' values are bound, and how they are
/// compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match<'a> {
    /// `column = $n` for each listed remote column (a key).
    Equal(&'a [usize]),
    /// `column::text IS NOT DISTINCT FROM ($n::type)::text` for each listed remote column, one
    /// row (REPLICA IDENTITY FULL without a usable key).
    AllText(&'a [usize]),
}

impl Match<'_> {
    /// The remote columns whose values are bound, in order.
    pub fn columns(&self) -> &[usize] {
        match self {
            Match::Equal(c) | Match::AllText(c) => c,
        }
    }
}

fn column(map: &RelationMap, remote: usize) -> (&str, &str) {
    map.target_column(remote)
        .map(|c| (c.quoted.as_str(), c.type_sql.as_str()))
        .unwrap_or(("\"?\"", "text"))
}

/// `alias.col = $n AND …` (or the text form); returns the clause and the next parameter number.
fn condition(map: &RelationMap, m: Match<'_>, alias: &str, first: usize) -> (String, usize) {
    let mut sql = String::new();
    let mut n = first;
    match m {
        Match::Equal(cols) => {
            for (i, &c) in cols.iter().enumerate() {
                let (name, _) = column(map, c);
                if i > 0 {
                    sql.push_str(" AND ");
                }
                let _ = write!(sql, "{alias}.{name} = ${n}");
                n += 1;
            }
        }
        Match::AllText(cols) => {
            // Find one row with exactly these values, compared through the same text cast on
            // both sides (types without an equality operator, such as json or point, included).
            let _ = write!(
                sql,
                "{alias}.ctid = (SELECT s.ctid FROM {} AS s WHERE ",
                map.target.quoted
            );
            if cols.is_empty() {
                sql.push_str("true");
            }
            for (i, &c) in cols.iter().enumerate() {
                let (name, ty) = column(map, c);
                if i > 0 {
                    sql.push_str(" AND ");
                }
                let _ = write!(
                    sql,
                    "s.{name}::text IS NOT DISTINCT FROM (${n}::{ty})::text"
                );
                n += 1;
            }
            sql.push_str(" LIMIT 1)");
        }
    }
    (sql, n)
}

fn column_list(map: &RelationMap, cols: &[usize]) -> String {
    cols.iter()
        .map(|&c| column(map, c).0)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO t (cols) VALUES ($1, …)`; parameters: the values of `cols`.
pub fn insert(map: &RelationMap, cols: &[usize]) -> String {
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        map.target.quoted,
        column_list(map, cols),
        params.join(", ")
    )
}

/// `COPY t (cols) FROM STDIN`, in text or binary format; no parameters.
pub fn copy(map: &RelationMap, cols: &[usize], binary: bool) -> String {
    format!(
        "COPY {} ({}) FROM STDIN{}",
        map.target.quoted,
        column_list(map, cols),
        if binary { " WITH (FORMAT binary)" } else { "" }
    )
}

const LAST_WRITER_IS: &str = "pg_catalog.pg_xact_commit_timestamp_origin(r.xmin)";

/// True when row `r` is frozen for sure: its inserting transaction is older than its table's
/// `relfrozenxid`. (The `xmin` column shows the original transaction id even after freezing,
/// so its commit timestamp and origin still read as those of that old local write; a frozen
/// row is treated as older than anything instead, as DESIGN.md says — the data that both nodes
/// started from.)
const FROZEN: &str = "pg_catalog.age(r.xmin) > (SELECT pg_catalog.age(fc.relfrozenxid) \
     FROM pg_catalog.pg_class fc WHERE fc.oid = r.tableoid)";

/// Fast UPDATE that fails unless exactly one row, last written by this link's origin (or of
/// unknown origin: frozen, or this transaction's own write), was updated.
/// Parameters: the values of `set`, then those of `m`, then the link's origin id.
pub fn update_fast(map: &RelationMap, set: &[usize], m: Match<'_>) -> String {
    let mut sql = format!("WITH u AS (UPDATE {} AS r SET ", map.target.quoted);
    let mut n = 1;
    for (i, &c) in set.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{} = ${n}", column(map, c).0);
        n += 1;
    }
    let (cond, n) = condition(map, m, "r", n);
    let _ = write!(
        sql,
        " WHERE {cond} AND (coalesce(({LAST_WRITER_IS}).roident, ${n}::oid) = ${n}::oid \
         OR {FROZEN}) RETURNING 1) SELECT 1 / count(*)::int FROM u"
    );
    sql
}

/// Fast DELETE with the same rule as [`update_fast`].
/// Parameters: the values of `m`, then the link's origin id.
pub fn delete_fast(map: &RelationMap, m: Match<'_>) -> String {
    let (cond, n) = condition(map, m, "r", 1);
    format!(
        "WITH d AS (DELETE FROM {} AS r WHERE {cond} AND \
         (coalesce(({LAST_WRITER_IS}).roident, ${n}::oid) = ${n}::oid OR {FROZEN}) \
         RETURNING 1) SELECT 1 / count(*)::int FROM d",
        map.target.quoted
    )
}

/// `TRUNCATE ONLY a, b [RESTART IDENTITY]`: like native logical replication, CASCADE is not
/// replayed (it could reach tables that are not replicated).
pub fn truncate(tables: &[&str], restart_identity: bool) -> String {
    format!(
        "TRUNCATE ONLY {}{}",
        tables.join(", "),
        if restart_identity {
            " RESTART IDENTITY"
        } else {
            ""
        }
    )
}

/// Begins a pipelined transaction (an explicit block: its end is the [`COMMIT`] query).
pub const BEGIN: &str = "BEGIN";

/// The last statement inside a remote transaction before it commits: fails if the previous
/// transaction in the pipeline did not commit (the origin's progress does not include its end
/// LSN), so nothing after a failed transaction can commit ahead of it; gives the transaction an
/// id (so its commit is recorded with the origin even if it changed nothing); and leaves the
/// remote end LSN and commit time for [`COMMIT`] in transaction-local settings.
/// Parameters: origin name, the previous transaction's end LSN (pg_lsn, binary), the end LSN
/// (text), the commit time (text, RFC 3339).
pub const GUARD: &str = "SELECT 1 / (coalesce(pg_catalog.pg_replication_origin_progress($1, false), \
     '0/0'::pg_lsn) >= $2::pg_lsn)::int, pg_catalog.pg_current_xact_id(), \
     pg_catalog.set_config('pgrepl.end_lsn', $3, true), \
     pg_catalog.set_config('pgrepl.commit_time', $4, true)";

/// Ends a pipelined transaction in one statement, for servers whose aborts never move a
/// replication origin (PostgreSQL 15 and older): the guard of [`GUARD`] in the `WHERE` clause
/// — evaluated first, so a failing guard never reaches the stamp — then the origin stamp; the
/// segment's `Sync` commits. Parameters: end LSN (pg_lsn, binary), commit time (timestamptz,
/// binary), origin name, the previous transaction's end LSN (pg_lsn, binary).
pub const FINISH_IN_ONE: &str = "SELECT pg_catalog.pg_current_xact_id(), \
     pg_catalog.pg_replication_origin_xact_setup($1::pg_lsn, $2::timestamptz) \
     WHERE 1 / (coalesce(pg_catalog.pg_replication_origin_progress($3, false), '0/0'::pg_lsn) \
     >= $4::pg_lsn)::int = 1";

/// [`GUARD`] without the guard, for the careful path (which runs alone).
/// Parameters: the end LSN (text), the commit time (text, RFC 3339).
pub const STAMP: &str = "SELECT pg_catalog.pg_current_xact_id(), \
     pg_catalog.set_config('pgrepl.end_lsn', $1, true), \
     pg_catalog.set_config('pgrepl.commit_time', $2, true)";

/// Prepared once per apply session, for [`COMMIT`].
pub const PREPARE_ORIGIN_STAMP: &str = "PREPARE pgrepl_origin_stamp AS \
     SELECT pg_catalog.pg_replication_origin_xact_setup(\
     pg_catalog.current_setting('pgrepl.end_lsn')::pg_lsn, \
     pg_catalog.current_setting('pgrepl.commit_time')::timestamptz)";

/// Commits a remote transaction with its origin LSN and commit time — as one simple Query, so
/// that `pg_replication_origin_xact_setup` and the COMMIT arrive and run together or not at all.
/// Used on PostgreSQL 16 and later, and by the careful path everywhere.
///
/// This matters because the LSN given to `pg_replication_origin_xact_setup` is session state
/// that PostgreSQL 16 and later also applies when a transaction *aborts*: had it run in a
/// statement of its own, a connection lost before the COMMIT would abort the transaction *and*
/// move the origin past it, and the link would resume after a transaction that never
/// committed. In a failed transaction block the query fails at its first statement and the
/// block stays open, so every later pipelined transaction fails too, until the careful path
/// rolls it back.
pub const COMMIT: &str = "EXECUTE pgrepl_origin_stamp; COMMIT";

/// Makes deferred constraints be checked now, so that no transaction can fail at COMMIT after
/// its origin LSN is set (its abort would advance the origin past it).
pub const CONSTRAINTS_IMMEDIATE: &str = "SET CONSTRAINTS ALL IMMEDIATE";

/// How far this target has durably applied the link (forces the WAL of that progress to disk).
/// Parameter: origin name.
pub const DURABLE_PROGRESS: &str =
    "SELECT pg_catalog.pg_replication_origin_progress($1, true)::text";

/// The columns a careful probe returns: ctid, last writer's commit time in Unix microseconds,
/// last writer's origin id (both NULL when unknown or the row is frozen), and the row as JSON.
const PROBE_COLUMNS: &str = "r.ctid::text, \
     CASE WHEN NOT (SELECT pg_catalog.age(r.xmin) > pg_catalog.age(fc.relfrozenxid) \
                    FROM pg_catalog.pg_class fc WHERE fc.oid = r.tableoid) \
          THEN (extract(epoch FROM x.timestamp) * 1000000)::int8 END, \
     CASE WHEN NOT (SELECT pg_catalog.age(r.xmin) > pg_catalog.age(fc.relfrozenxid) \
                    FROM pg_catalog.pg_class fc WHERE fc.oid = r.tableoid) \
          THEN x.roident END, \
     pg_catalog.to_jsonb(r.*)::text";

/// Locks and reads the row(s) `m` finds, with their last writer.
/// Parameters: the values of `m`.
pub fn probe(map: &RelationMap, m: Match<'_>) -> String {
    let (cond, _) = condition(map, m, "r", 1);
    format!(
        "SELECT {PROBE_COLUMNS} FROM {} AS r \
         LEFT JOIN LATERAL pg_catalog.pg_xact_commit_timestamp_origin(r.xmin) AS x ON true \
         WHERE {cond} LIMIT 1 FOR UPDATE OF r",
        map.target.quoted
    )
}

/// Locks and reads the rows that hold the values `remote_cols` (one remote column per index
/// column, in index order) in `index`, except the row at ctid `$last` when `exclude_ctid`.
/// Parameters: the values, then (when `exclude_ctid`) a ctid.
pub fn probe_unique(
    map: &RelationMap,
    index: &UniqueIndex,
    remote_cols: &[usize],
    exclude_ctid: bool,
) -> String {
    let mut cond = String::new();
    let mut n = 1;
    for (i, &c) in remote_cols.iter().enumerate() {
        let (name, _) = column(map, c);
        if i > 0 {
            cond.push_str(" AND ");
        }
        if index.nulls_not_distinct {
            let _ = write!(cond, "r.{name} IS NOT DISTINCT FROM ${n}");
        } else {
            let _ = write!(cond, "r.{name} = ${n}");
        }
        n += 1;
    }
    if exclude_ctid {
        let _ = write!(cond, " AND r.ctid <> ${n}::tid");
    }
    format!(
        "SELECT {PROBE_COLUMNS} FROM {} AS r \
         LEFT JOIN LATERAL pg_catalog.pg_xact_commit_timestamp_origin(r.xmin) AS x ON true \
         WHERE {cond} FOR UPDATE OF r",
        map.target.quoted
    )
}

/// `UPDATE t SET … WHERE ctid = $n`; parameters: the values of `set`, then the ctid.
pub fn update_by_ctid(map: &RelationMap, set: &[usize]) -> String {
    let mut sql = format!("UPDATE {} AS r SET ", map.target.quoted);
    for (i, &c) in set.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{} = ${}", column(map, c).0, i + 1);
    }
    let _ = write!(sql, " WHERE r.ctid = ${}::tid", set.len() + 1);
    sql
}

/// `DELETE FROM t WHERE ctid = $1`.
pub fn delete_by_ctid(map: &RelationMap) -> String {
    format!(
        "DELETE FROM {} AS r WHERE r.ctid = $1::tid",
        map.target.quoted
    )
}

/// The remote values of `cols` as one JSON object, typed by the target's columns (numbers stay
/// numbers). Parameters: the values of `cols`.
pub fn values_json(map: &RelationMap, cols: &[usize]) -> String {
    let mut sql = String::from("SELECT pg_catalog.to_jsonb(v.*)::text FROM (SELECT ");
    if cols.is_empty() {
        sql.push_str("1 WHERE false");
    }
    for (i, &c) in cols.iter().enumerate() {
        let (name, ty) = column(map, c);
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${}::{ty} AS {name}", i + 1);
    }
    sql.push_str(") AS v");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{TargetColumn, TargetTable};
    use pgrepl_core::pgoutput::{Relation, RelationColumn, ReplicaIdentity};
    use std::sync::Arc;

    fn map() -> RelationMap {
        let remote = Arc::new(Relation {
            xid: None,
            oid: 1,
            namespace: "public".into(),
            name: "My Table".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: ["id", "na\"me"]
                .iter()
                .enumerate()
                .map(|(i, n)| RelationColumn {
                    flags: u8::from(i == 0),
                    name: (*n).into(),
                    type_oid: 23,
                    type_modifier: -1,
                })
                .collect(),
        });
        let target = Arc::new(TargetTable {
            oid: 2,
            schema: "public".into(),
            name: "My Table".into(),
            quoted: "\"public\".\"My Table\"".into(),
            columns: vec![
                TargetColumn {
                    name: "id".into(),
                    quoted: "\"id\"".into(),
                    type_oid: 20,
                    type_sql: "bigint".into(),
                    generated: false,
                },
                TargetColumn {
                    name: "na\"me".into(),
                    quoted: "\"na\"\"me\"".into(),
                    type_oid: 25,
                    type_sql: "text".into(),
                    generated: false,
                },
            ],
            unique_indexes: vec![],
            deferrable: false,
        });
        RelationMap::new(7, "n", remote, target).unwrap()
    }

    #[test]
    fn statements_quote_names_and_number_parameters() {
        let m = map();
        assert_eq!(
            insert(&m, &[0, 1]),
            "INSERT INTO \"public\".\"My Table\" (\"id\", \"na\"\"me\") VALUES ($1, $2)"
        );
        assert_eq!(
            copy(&m, &[0, 1], true),
            "COPY \"public\".\"My Table\" (\"id\", \"na\"\"me\") FROM STDIN WITH (FORMAT binary)"
        );
        let u = update_fast(&m, &[0, 1], Match::Equal(&[0]));
        assert!(u.starts_with("WITH u AS (UPDATE \"public\".\"My Table\" AS r SET \"id\" = $1, \"na\"\"me\" = $2 WHERE r.\"id\" = $3 AND (coalesce"), "{u}");
        assert!(u.contains("OR pg_catalog.age(r.xmin) > "), "{u}");
        assert!(u.contains("$4::oid) = $4::oid"), "{u}");
        let d = delete_fast(&m, Match::AllText(&[0, 1]));
        assert!(d.contains("s.\"id\"::text IS NOT DISTINCT FROM ($1::bigint)::text AND s.\"na\"\"me\"::text IS NOT DISTINCT FROM ($2::text)::text LIMIT 1)"), "{d}");
        assert!(d.contains("$3::oid"), "{d}");
        assert_eq!(
            update_by_ctid(&m, &[1]),
            "UPDATE \"public\".\"My Table\" AS r SET \"na\"\"me\" = $1 WHERE r.ctid = $2::tid"
        );
        assert_eq!(
            values_json(&m, &[0, 1]),
            "SELECT pg_catalog.to_jsonb(v.*)::text FROM (SELECT $1::bigint AS \"id\", $2::text AS \"na\"\"me\") AS v"
        );
        assert_eq!(
            truncate(&["\"a\"", "\"b\""], true),
            "TRUNCATE ONLY \"a\", \"b\" RESTART IDENTITY"
        );
    }
}
