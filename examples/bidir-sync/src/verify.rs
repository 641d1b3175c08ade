//! `bidir-sync verify`: are the replicated tables the same on every node?
//!
//! Tables are compared without pulling their rows: each node hashes its rows server-side into
//! buckets, and only buckets that differ are looked into, bucket by bucket, until the rows that
//! differ are found.
//!
//! ```text
//!  key text ──md5──▶ h (32 bits)        row text ──md5──▶ r (60 bits)
//!  level 1: per node, for b = h mod 1024:            (count(*), sum(r))   one scan
//!  level 2: inside differing level-1 buckets, b = h mod 1024²             one scan, filtered
//!  …        until a differing bucket holds few rows (≤ 2,000 on every node)
//!  leaf:    (key text, r, count) of the rows in those buckets → the differing keys
//! ```
//!
//! - **Keys.** A row is identified by its primary key, else by its replica identity index;
//!   a table with neither (REPLICA IDENTITY FULL) is compared as a multiset of rows: the whole
//!   row is the key and the count says how many times it is there.
//! - **Sums, not ordered aggregates.** `sum(r)` does not depend on the order rows are read in,
//!   so no node sorts anything, and collation differences cannot reorder chunks.
//! - **Same text everywhere.** Rows are compared as text, in sessions that fix every setting
//!   that changes how values print (`TimeZone`, `DateStyle`, `IntervalStyle`,
//!   `extra_float_digits`, `bytea_output`, `lc_monetary`). Columns are compared by name; a
//!   column missing on some node is not compared and is reported.
//! - **Snapshots.** Each table is read in one `REPEATABLE READ` snapshot per node. Nodes are
//!   not read at the same instant, so changes still in flight can show as differences: the
//!   rows found different are read again a moment later, and only the rows that still differ
//!   are reported (those that matched the second time are counted as in flight). Run it when
//!   the links have caught up (`status` shows the lag) for an exact answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use pgrepl_apply::{NodeSpec, TableSelection};
use pgrepl_core::connection::Client;
use pgrepl_core::sql::{quote_ident, quote_qualified};
use serde::Serialize;

use crate::config::Config;
use crate::failure::{EXIT_DIFFERENT, Failure, describe_node_error};

/// Buckets per level.
const FANOUT: i64 = 1024;
/// The deepest level: 1024⁴ > 2³², so its buckets are single hash values.
const MAX_LEVEL: u32 = 4;
/// A differing bucket with at most this many rows on every node is read row by row.
pub(crate) const LEAF_ROWS: i64 = 2000;
/// Leaf buckets read per query.
const LEAF_BATCH: usize = 64;

/// Settings that change how values print: fixed so that every node prints the same text.
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
    SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
    SET lc_monetary = 'C'; SET statement_timeout = 0; SET application_name = 'bidir-sync verify'";

/// How verify runs.
#[derive(Debug, Clone)]
pub(crate) struct VerifyOptions {
    /// Stop collecting differing keys of a table after this many.
    pub(crate) max_keys: usize,
    /// Read differing rows again after this long; `None`: report the first reading.
    pub(crate) recheck_after: Option<Duration>,
    /// Differing buckets with at most this many rows are read row by row ([`LEAF_ROWS`]).
    pub(crate) leaf_rows: i64,
}

/// One row that differs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyDiff {
    /// `id=7`, `(a, b)=(1,x)`, or the row text of a keyless table.
    pub(crate) key: String,
    /// What differs, e.g. `missing on node2` or `differs: node1 | node2`.
    pub(crate) how: String,
}

/// The verdict on one table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TableVerdict {
    /// `schema.table`.
    pub(crate) table: String,
    /// Rows per node, in node order (`None`: the table is missing there).
    pub(crate) rows: Vec<(String, Option<i64>)>,
    pub(crate) identical: bool,
    /// The differing rows found (at most `max_keys`).
    pub(crate) differences: Vec<KeyDiff>,
    /// More rows differ than are listed.
    pub(crate) more: bool,
    /// Rows that differed at first and matched when read again.
    pub(crate) in_flight: usize,
    /// Anything else worth knowing (columns not compared, missing tables).
    pub(crate) notes: Vec<String>,
}

/// The verdict on every table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VerifyReport {
    pub(crate) cluster: String,
    pub(crate) nodes: Vec<String>,
    pub(crate) tables: Vec<TableVerdict>,
}

impl VerifyReport {
    /// Whether every table is identical on every node.
    pub(crate) fn identical(&self) -> bool {
        self.tables.iter().all(|t| t.identical)
    }
}

/// One node's session.
struct Session {
    name: String,
    client: Client,
}

fn sql_err(node: &str) -> impl Fn(pgrepl_core::connection::Error) -> Failure + '_ {
    move |e| Failure::new(format!("verify on node {node}: {e}"))
}

async fn connect(node: &NodeSpec) -> Result<Session, Failure> {
    let mut client = Client::connect(&node.dsn)
        .await
        .map_err(|e| Failure::node(&node.name, &node.dsn.to_string(), &e))?;
    client
        .batch_execute(SESSION)
        .await
        .map_err(|e| Failure::new(describe_node_error(&node.name, &node.dsn.to_string(), &e)))?;
    Ok(Session {
        name: node.name.clone(),
        client,
    })
}

/// The tables to compare, as (schema, name).
async fn tables(
    selection: &TableSelection,
    sessions: &mut [Session],
) -> Result<Vec<(String, String)>, Failure> {
    match selection {
        TableSelection::Tables(t) => Ok(t.clone()),
        TableSelection::Schemas(schemas) => {
            let list = format!(
                "{{{}}}",
                schemas
                    .iter()
                    .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut all = BTreeSet::new();
            for s in sessions.iter_mut() {
                let rows = s
                    .client
                    .query(
                        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                           AND n.nspname = ANY ($1::text[])",
                        &[&list],
                    )
                    .await
                    .map_err(sql_err(&s.name))?;
                for r in rows {
                    all.insert((
                        r.get::<String>(0).map_err(sql_err(&s.name))?,
                        r.get::<String>(1).map_err(sql_err(&s.name))?,
                    ));
                }
            }
            Ok(all.into_iter().collect())
        }
    }
}

/// A table as one node has it.
struct Shape {
    columns: Vec<String>,
    /// Primary key or replica identity index columns; empty: compare whole rows.
    key: Vec<String>,
}

async fn shape(s: &mut Session, schema: &str, table: &str) -> Result<Option<Shape>, Failure> {
    let err = sql_err(&s.name);
    let Some(row) = s
        .client
        .query_opt(
            "SELECT c.oid::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &table],
        )
        .await
        .map_err(&err)?
    else {
        return Ok(None);
    };
    let oid: String = row.get(0).map_err(&err)?;
    let columns = s
        .client
        .query(
            "SELECT attname::text FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(&err)?
        .iter()
        .map(|r| r.get::<String>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&err)?;
    let mut key = Vec::new();
    for which in ["i.indisprimary", "i.indisreplident"] {
        key = s
            .client
            .query(
                &format!(
                    "SELECT a.attname::text FROM pg_catalog.pg_index i \
                     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                     JOIN pg_catalog.pg_attribute a \
                       ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                     WHERE i.indrelid = $1::oid AND {which} ORDER BY k.ord"
                ),
                &[&oid],
            )
            .await
            .map_err(&err)?
            .iter()
            .map(|r| r.get::<String>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        if !key.is_empty() {
            break;
        }
    }
    Ok(Some(Shape { columns, key }))
}

/// Per node, a row's (hash, count), `None` where the node lacks it.
type Versions = Vec<Option<(i64, i64)>>;

/// The SQL expressions of a comparison.
struct Exprs {
    table: String,
    /// The key as text.
    key: String,
    /// 32-bit bucket hash of the key.
    h: String,
    /// 60-bit hash of the row.
    r: String,
    /// How to show a key: `id=` or `(a, b)=`; empty for whole rows.
    key_label: String,
    /// Whole rows (no key): the count says how often a row is there.
    multiset: bool,
}

fn exprs(schema: &str, table: &str, columns: &[String], key: &[String]) -> Exprs {
    let col = |c: &String| format!("t.{}", quote_ident(c));
    let row = format!(
        "ROW({})::text",
        columns.iter().map(col).collect::<Vec<_>>().join(", ")
    );
    let (key_text, key_label) = match key {
        [] => (row.clone(), String::new()),
        [one] => (format!("{}::text", col(one)), format!("{one}=")),
        many => (
            format!(
                "ROW({})::text",
                many.iter().map(col).collect::<Vec<_>>().join(", ")
            ),
            format!("({})=", many.join(", ")),
        ),
    };
    Exprs {
        table: quote_qualified(schema, table),
        h: format!("('x' || substr(md5({key_text}), 1, 8))::bit(32)::bigint"),
        r: format!("('x' || substr(md5({row}), 1, 15))::bit(60)::bigint"),
        key: key_text,
        key_label,
        multiset: key.is_empty(),
    }
}

fn modulus(level: u32) -> i64 {
    FANOUT.saturating_pow(level)
}

fn bigint_array(values: &[i64]) -> String {
    format!(
        "{{{}}}",
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Per bucket of `level`: (rows, sum of row hashes), inside the `parents` buckets of the level
/// above (all rows at level 1).
async fn buckets(
    s: &mut Session,
    e: &Exprs,
    level: u32,
    parents: &[i64],
) -> Result<BTreeMap<i64, (i64, String)>, Failure> {
    let err = sql_err(&s.name);
    let filter = if level > 1 {
        format!(
            "WHERE {} % {} = ANY ($1::bigint[])",
            e.h,
            modulus(level - 1)
        )
    } else {
        "WHERE $1::text IS NULL".to_owned()
    };
    let sql = format!(
        "SELECT b, count(*), sum(r)::text FROM \
           (SELECT {h} % {m} AS b, {r} AS r FROM {t} t {filter}) s GROUP BY b",
        h = e.h,
        r = e.r,
        m = modulus(level),
        t = e.table,
    );
    let param: Option<String> = (level > 1).then(|| bigint_array(parents));
    let rows = s.client.query(&sql, &[&param]).await.map_err(&err)?;
    let mut out = BTreeMap::new();
    for row in rows {
        out.insert(
            row.get::<i64>(0).map_err(&err)?,
            (
                row.get::<i64>(1).map_err(&err)?,
                row.get::<String>(2).map_err(&err)?,
            ),
        );
    }
    Ok(out)
}

/// Rows of the `leaves` buckets of `level`: key → (row hash, count).
async fn leaf_rows(
    s: &mut Session,
    e: &Exprs,
    level: u32,
    leaves: &[i64],
) -> Result<HashMap<String, (i64, i64)>, Failure> {
    let err = sql_err(&s.name);
    let sql = format!(
        "SELECT {k}, {r}, count(*) FROM {t} t WHERE {h} % {m} = ANY ($1::bigint[]) GROUP BY 1, 2",
        k = e.key,
        r = e.r,
        h = e.h,
        m = modulus(level),
        t = e.table,
    );
    let rows = s
        .client
        .query(&sql, &[&bigint_array(leaves)])
        .await
        .map_err(&err)?;
    let mut out = HashMap::new();
    for row in rows {
        out.insert(
            row.get::<String>(0).map_err(&err)?,
            (
                row.get::<i64>(1).map_err(&err)?,
                row.get::<i64>(2).map_err(&err)?,
            ),
        );
    }
    Ok(out)
}

async fn begin(sessions: &mut [Session]) -> Result<(), Failure> {
    for s in sessions.iter_mut() {
        s.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(sql_err(&s.name))?;
    }
    Ok(())
}

async fn end(sessions: &mut [Session]) -> Result<(), Failure> {
    for s in sessions.iter_mut() {
        s.client
            .batch_execute("COMMIT")
            .await
            .map_err(sql_err(&s.name))?;
    }
    Ok(())
}

/// Every node's leaf rows of `leaves` at `level`, merged: key → per-node (hash, count).
async fn read_leaves(
    sessions: &mut [Session],
    e: &Exprs,
    level: u32,
    leaves: &[i64],
) -> Result<BTreeMap<String, Versions>, Failure> {
    let n = sessions.len();
    let mut merged: BTreeMap<String, Versions> = BTreeMap::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        for (key, v) in leaf_rows(s, e, level, leaves).await? {
            let slot = merged.entry(key).or_insert_with(|| vec![None; n]);
            if let Some(x) = slot.get_mut(i) {
                *x = Some(v);
            }
        }
    }
    merged.retain(|_, versions| versions.windows(2).any(|w| w.first() != w.get(1)));
    Ok(merged)
}

fn describe(nodes: &[String], versions: &[Option<(i64, i64)>], multiset: bool) -> String {
    if multiset {
        return nodes
            .iter()
            .zip(versions)
            .map(|(n, v)| format!("×{} on {n}", v.map_or(0, |(_, c)| c)))
            .collect::<Vec<_>>()
            .join(", ");
    }
    let missing: Vec<&str> = nodes
        .iter()
        .zip(versions)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let mut groups: Vec<(i64, Vec<&str>)> = Vec::new();
    for (n, v) in nodes.iter().zip(versions) {
        if let Some((h, _)) = v {
            match groups.iter_mut().find(|(g, _)| g == h) {
                Some((_, members)) => members.push(n),
                None => groups.push((*h, vec![n])),
            }
        }
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing on {}", missing.join(", ")));
    }
    if groups.len() > 1 {
        parts.push(format!(
            "differs: {}",
            groups
                .iter()
                .map(|(_, m)| m.join(", "))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    parts.join("; ")
}

/// Orders keys as people expect: whole numbers by value, anything else as text.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Compares one table on every node.
async fn verify_table(
    sessions: &mut [Session],
    schema: &str,
    table: &str,
    options: &VerifyOptions,
) -> Result<TableVerdict, Failure> {
    let name = format!("{schema}.{table}");
    let nodes: Vec<String> = sessions.iter().map(|s| s.name.clone()).collect();
    let mut verdict = TableVerdict {
        table: name.clone(),
        rows: Vec::new(),
        identical: true,
        differences: Vec::new(),
        more: false,
        in_flight: 0,
        notes: Vec::new(),
    };
    let mut shapes = Vec::new();
    for s in sessions.iter_mut() {
        shapes.push(shape(s, schema, table).await?);
    }
    let missing: Vec<&str> = nodes
        .iter()
        .zip(&shapes)
        .filter(|(_, sh)| sh.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        verdict.identical = false;
        verdict.notes.push(format!(
            "the table does not exist on {}: create it there (pgrepl does not replicate DDL)",
            missing.join(", ")
        ));
        verdict.rows = nodes.iter().map(|n| (n.clone(), None)).collect();
        return Ok(verdict);
    }
    let shapes: Vec<Shape> = shapes.into_iter().flatten().collect();
    let Some(first) = shapes.first() else {
        return Ok(verdict);
    };
    let common: Vec<String> = first
        .columns
        .iter()
        .filter(|c| shapes.iter().all(|s| s.columns.contains(c)))
        .cloned()
        .collect();
    for (n, sh) in nodes.iter().zip(&shapes) {
        let only: Vec<&str> = sh
            .columns
            .iter()
            .filter(|c| !common.contains(c))
            .map(String::as_str)
            .collect();
        if !only.is_empty() {
            verdict.notes.push(format!(
                "column(s) {} only on {n}: not compared",
                only.join(", ")
            ));
        }
    }
    let key: Vec<String> = if first.key.iter().all(|k| common.contains(k)) {
        first.key.clone()
    } else {
        Vec::new()
    };
    let e = exprs(schema, table, &common, &key);

    begin(sessions).await?;
    // Level by level, following only the buckets that differ.
    let mut level = 1;
    let mut parents: Vec<i64> = Vec::new();
    let mut leaves: Vec<(u32, i64)> = Vec::new();
    loop {
        let mut per_node = Vec::new();
        for s in sessions.iter_mut() {
            per_node.push(buckets(s, &e, level, &parents).await?);
        }
        if level == 1 {
            verdict.rows = nodes
                .iter()
                .zip(&per_node)
                .map(|(n, b)| (n.clone(), Some(b.values().map(|(c, _)| c).sum())))
                .collect();
        }
        let all: BTreeSet<i64> = per_node.iter().flat_map(|b| b.keys().copied()).collect();
        let mut deeper = Vec::new();
        for b in all {
            let values: Vec<Option<&(i64, String)>> = per_node.iter().map(|m| m.get(&b)).collect();
            if values.windows(2).all(|w| w.first() == w.get(1)) {
                continue;
            }
            let most = values
                .iter()
                .map(|v| v.map_or(0, |(c, _)| *c))
                .max()
                .unwrap_or(0);
            if most <= options.leaf_rows || level >= MAX_LEVEL {
                leaves.push((level, b));
            } else {
                deeper.push(b);
            }
        }
        if deeper.is_empty() {
            break;
        }
        parents = deeper;
        level += 1;
    }

    // The rows of the differing buckets.
    let mut found: BTreeMap<String, Versions> = BTreeMap::new();
    let mut read: Vec<(u32, Vec<i64>)> = Vec::new();
    let mut by_level: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for (l, b) in leaves {
        by_level.entry(l).or_default().push(b);
    }
    'levels: for (l, buckets) in &by_level {
        for chunk in buckets.chunks(LEAF_BATCH) {
            found.extend(read_leaves(sessions, &e, *l, chunk).await?);
            read.push((*l, chunk.to_vec()));
            if found.len() > options.max_keys {
                verdict.more = true;
                break 'levels;
            }
        }
    }
    end(sessions).await?;

    if !found.is_empty()
        && let Some(pause) = options.recheck_after
    {
        tokio::time::sleep(pause).await;
        begin(sessions).await?;
        let mut again: BTreeMap<String, Versions> = BTreeMap::new();
        for (l, chunk) in &read {
            again.extend(read_leaves(sessions, &e, *l, chunk).await?);
        }
        end(sessions).await?;
        let before = found.len();
        found.retain(|k, _| again.contains_key(k));
        for (k, v) in found.iter_mut() {
            if let Some(now) = again.get(k) {
                v.clone_from(now);
            }
        }
        verdict.in_flight = before - found.len();
    }

    verdict.identical = found.is_empty() && !verdict.more;
    let mut keys: Vec<(&String, &Versions)> = found.iter().collect();
    keys.sort_by(|a, b| natural(a.0, b.0));
    verdict.differences = keys
        .into_iter()
        .take(options.max_keys)
        .map(|(k, v)| KeyDiff {
            key: if e.multiset {
                format!("row {k}")
            } else {
                format!("{}{k}", e.key_label)
            },
            how: describe(&nodes, v, e.multiset),
        })
        .collect();
    if verdict.differences.len() < found.len() {
        verdict.more = true;
    }
    if e.multiset {
        verdict
            .notes
            .push("no key: compared as a multiset of whole rows".to_owned());
    }
    Ok(verdict)
}

/// Compares every replicated table on every node.
pub(crate) async fn verify(
    config: &Config,
    options: &VerifyOptions,
) -> Result<VerifyReport, Failure> {
    let spec = config.mesh.spec();
    let mut sessions = Vec::new();
    for node in &spec.nodes {
        sessions.push(connect(node).await?);
    }
    let list = tables(&spec.tables, &mut sessions).await?;
    let mut report = VerifyReport {
        cluster: spec.cluster.clone(),
        nodes: spec.nodes.iter().map(|n| n.name.clone()).collect(),
        tables: Vec::new(),
    };
    for (schema, table) in &list {
        report
            .tables
            .push(verify_table(&mut sessions, schema, table, options).await?);
    }
    Ok(report)
}

/// The report for people.
pub(crate) fn render(report: &VerifyReport) -> String {
    let mut out = format!(
        "verify: cluster {}, {} on {}\n",
        report.cluster,
        plural(report.tables.len(), "table"),
        report.nodes.join(", ")
    );
    let width = report
        .tables
        .iter()
        .map(|t| crate::table::width(&t.table))
        .max()
        .unwrap_or(0);
    for t in &report.tables {
        let counts: Vec<Option<i64>> = t.rows.iter().map(|(_, c)| *c).collect();
        let rows = if counts.windows(2).all(|w| w.first() == w.get(1)) {
            match counts.first().copied().flatten() {
                Some(c) => format!("{c} rows on each node"),
                None => String::new(),
            }
        } else {
            t.rows
                .iter()
                .map(|(n, c)| {
                    format!(
                        "{n} {}",
                        c.map_or("missing".to_owned(), |c| format!("{c} rows"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let pad = " ".repeat(width.saturating_sub(crate::table::width(&t.table)));
        if t.identical {
            out.push_str(&format!("  {}{pad}  identical   {rows}\n", t.table));
        } else {
            out.push_str(&format!("  {}{pad}  DIFFERENT   {rows}\n", t.table));
            for d in &t.differences {
                out.push_str(&format!("      {}: {}\n", d.key, d.how));
            }
            if t.more {
                out.push_str(&format!(
                    "      … more rows differ (listing stops at {}; --max-keys shows more)\n",
                    t.differences.len()
                ));
            }
        }
        for note in &t.notes {
            out.push_str(&format!("      note: {note}\n"));
        }
        if t.in_flight > 0 {
            out.push_str(&format!(
                "      note: {} row(s) differed at first and matched when read again (changes \
                 in flight)\n",
                t.in_flight
            ));
        }
    }
    let differing = report.tables.iter().filter(|t| !t.identical).count();
    if differing == 0 {
        out.push_str("All tables are identical on every node.\n");
    } else {
        out.push_str(&format!(
            "{differing} of {} {} differ.\n",
            report.tables.len(),
            if report.tables.len() == 1 {
                "table"
            } else {
                "tables"
            }
        ));
    }
    out
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `verify`: prints the report; exit status 1 when anything differs.
pub(crate) async fn run(
    config: &Config,
    options: &VerifyOptions,
    json: bool,
) -> Result<u8, Failure> {
    let report = verify(config, options).await?;
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::new(format!("cannot write JSON: {e}")))?
        );
    } else {
        crate::redact::say(render(&report).trim_end());
    }
    Ok(if report.identical() {
        0
    } else {
        EXIT_DIFFERENT
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_described_by_node() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            describe(&nodes, &[Some((1, 1)), None, Some((1, 1))], false),
            "missing on b"
        );
        assert_eq!(
            describe(&nodes, &[Some((1, 1)), Some((2, 1)), Some((1, 1))], false),
            "differs: a, c | b"
        );
        assert_eq!(
            describe(&nodes, &[Some((1, 2)), Some((1, 1)), None], true),
            "×2 on a, ×1 on b, ×0 on c"
        );
    }

    #[test]
    fn numeric_keys_sort_by_value() {
        let mut keys = vec!["4000", "42", "x", "999999", "-1"];
        keys.sort_by(|a, b| natural(a, b));
        assert_eq!(keys, ["-1", "42", "4000", "999999", "x"]);
    }

    #[test]
    fn expressions_quote_names() {
        let e = exprs("s", "T", &["id".into(), "we\"ird".into()], &["id".into()]);
        assert_eq!(e.table, "\"s\".\"T\"");
        assert!(
            e.r.contains("ROW(t.\"id\", t.\"we\"\"ird\")::text"),
            "{}",
            e.r
        );
        assert_eq!(e.key, "t.\"id\"::text");
        assert_eq!(e.key_label, "id=");
    }
}
