//! The workload: a schema and a sequence of transactions that together make a server emit
//! every pgoutput message kind it can, each written down with the changes pgoutput must
//! report for it.
//!
//! Values are written from Rust as text parameters in their type's canonical output form,
//! so the text a capture carries must equal what was written, byte for byte. Large
//! transactions get over `logical_decoding_work_mem` (64 kB, the minimum) with rows of the
//! unpublished table `public.filler`: they are streamed, yet only a few published rows end
//! up in the stream, which keeps the captures small.

use pgrepl_core::Lsn;
use pgrepl_core::pgoutput::ReplicaIdentity;

use super::Mode;
use super::model::{Change, Content, End, Old, Row, Val, row, text};

pub(crate) const PUBLICATION: &str = "pgrepl_pub";
/// The slot for captures without two-phase decoding.
pub(crate) const SLOT: &str = "pgrepl_plain";
/// The slot created with `two_phase`, for captures with `two_phase 'on'` (PostgreSQL keeps
/// decoding prepared transactions at PREPARE on such a slot whatever a session asks, so the
/// two kinds of capture need their own slots).
pub(crate) const SLOT_TWO_PHASE: &str = "pgrepl_2pc";
/// The replication origin of the "replicated" transactions.
pub(crate) const ORIGIN: &str = "pgrepl_node2";

/// Run once in a fresh database, before the slots are created.
pub(crate) const SCHEMA_SQL: &str = "
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE app.pair AS (x integer, label text);
CREATE DOMAIN app.posint AS integer CHECK (VALUE > 0);
CREATE TABLE app.kinds (
    id integer PRIMARY KEY, small smallint, big bigint, num numeric(12,3), real4 real,
    dbl double precision, flag boolean, txt text, vc varchar(16), ch char(4), raw bytea,
    day date, at timestamp(3), atz timestamptz, dur interval, uid uuid, js json, jsb jsonb,
    ints integer[], texts text[], addr inet, m app.mood, moods app.mood[], p app.pair,
    pos app.posint, doc text, ext text
);
ALTER TABLE app.kinds ALTER COLUMN ext SET STORAGE EXTERNAL;
CREATE TABLE app.audit (id bigint GENERATED ALWAYS AS IDENTITY, who text, note text, blob text);
ALTER TABLE app.audit REPLICA IDENTITY FULL;
ALTER TABLE app.audit ALTER COLUMN blob SET STORAGE EXTERNAL;
CREATE TABLE app.byidx (a integer NOT NULL, b text NOT NULL, c text);
CREATE UNIQUE INDEX byidx_ab ON app.byidx (a, b);
ALTER TABLE app.byidx REPLICA IDENTITY USING INDEX byidx_ab;
CREATE TABLE app.nokey (a integer, b text);
ALTER TABLE app.nokey REPLICA IDENTITY NOTHING;
CREATE TABLE app.parent (id integer PRIMARY KEY);
CREATE TABLE app.child (id integer PRIMARY KEY, parent_id integer REFERENCES app.parent, label text);
CREATE TABLE app.evolving (id integer PRIMARY KEY, v text);
CREATE TABLE app.wide (id integer PRIMARY KEY, payload text);
CREATE TABLE public.filler (id integer, pad text);
ALTER TABLE public.filler ALTER COLUMN pad SET STORAGE PLAIN;
CREATE PUBLICATION pgrepl_pub FOR TABLES IN SCHEMA app;
SELECT pg_replication_origin_create('pgrepl_node2');
";

/// About 97 kB of unpublished rows (50 rows of 1,900 bytes, stored inline): enough to push
/// a transaction over the 64 kB `logical_decoding_work_mem` on its own.
const FILLER: &str =
    "INSERT INTO public.filler SELECT g, repeat('f', 1900) FROM generate_series(1, 50) g";

// ---------------------------------------------------------------------------------------
// Relations and types.

/// A column of a published table as its Relation message must describe it.
#[derive(Debug)]
pub(crate) struct ColSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub type_modifier: i32,
    pub key: bool,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A built-in type: its OID is fixed.
    Builtin(u32),
    /// A type of this workload (an entry of [`USER_TYPES`]), announced by a Type message.
    User(&'static str),
}

/// A published table as its Relation message must describe it (namespace `app`).
#[derive(Debug)]
pub(crate) struct TableSpec {
    pub name: &'static str,
    pub identity: ReplicaIdentity,
    pub columns: Vec<ColSpec>,
}

/// The workload's own types: SQL name, and the namespace and name their Type message
/// carries. A domain is described by its base type, and `pg_catalog` is sent as "".
pub(crate) const USER_TYPES: &[(&str, &str, &str)] = &[
    ("app.mood", "app", "mood"),
    ("app._mood", "app", "_mood"),
    ("app.pair", "app", "pair"),
    ("app.posint", "", "int4"),
];

pub(crate) const BOOL: u32 = 16;
pub(crate) const BYTEA: u32 = 17;
pub(crate) const INT8: u32 = 20;
pub(crate) const INT2: u32 = 21;
pub(crate) const INT4: u32 = 23;
pub(crate) const TEXT: u32 = 25;
pub(crate) const JSON: u32 = 114;
pub(crate) const FLOAT4: u32 = 700;
pub(crate) const FLOAT8: u32 = 701;
pub(crate) const INET: u32 = 869;
pub(crate) const INT4_ARRAY: u32 = 1007;
pub(crate) const TEXT_ARRAY: u32 = 1009;
pub(crate) const BPCHAR: u32 = 1042;
pub(crate) const VARCHAR: u32 = 1043;
pub(crate) const DATE: u32 = 1082;
pub(crate) const TIMESTAMP: u32 = 1114;
pub(crate) const TIMESTAMPTZ: u32 = 1184;
pub(crate) const INTERVAL: u32 = 1186;
pub(crate) const NUMERIC: u32 = 1700;
pub(crate) const UUID: u32 = 2950;
pub(crate) const JSONB: u32 = 3802;

fn col(name: &'static str, ty: Ty, type_modifier: i32, key: bool) -> ColSpec {
    ColSpec {
        name,
        ty,
        type_modifier,
        key,
    }
}

fn plain(name: &'static str, oid: u32) -> ColSpec {
    col(name, Ty::Builtin(oid), -1, false)
}

fn key(name: &'static str, oid: u32) -> ColSpec {
    col(name, Ty::Builtin(oid), -1, true)
}

/// Every shape a published table has during the workload: `evolving` and `wide` gain a
/// column mid-session (`ALTER TABLE … ADD COLUMN`), so they appear twice, before and after.
pub(crate) fn tables() -> Vec<TableSpec> {
    use ReplicaIdentity::{Default, Full, Index, Nothing};
    let table = |name, identity, columns| TableSpec {
        name,
        identity,
        columns,
    };
    vec![
        table(
            "kinds",
            Default,
            vec![
                key("id", INT4),
                plain("small", INT2),
                plain("big", INT8),
                // numeric(12,3): ((precision << 16) | scale) + VARHDRSZ
                col("num", Ty::Builtin(NUMERIC), ((12 << 16) | 3) + 4, false),
                plain("real4", FLOAT4),
                plain("dbl", FLOAT8),
                plain("flag", BOOL),
                plain("txt", TEXT),
                col("vc", Ty::Builtin(VARCHAR), 16 + 4, false),
                col("ch", Ty::Builtin(BPCHAR), 4 + 4, false),
                plain("raw", BYTEA),
                plain("day", DATE),
                col("at", Ty::Builtin(TIMESTAMP), 3, false),
                plain("atz", TIMESTAMPTZ),
                plain("dur", INTERVAL),
                plain("uid", UUID),
                plain("js", JSON),
                plain("jsb", JSONB),
                plain("ints", INT4_ARRAY),
                plain("texts", TEXT_ARRAY),
                plain("addr", INET),
                col("m", Ty::User("app.mood"), -1, false),
                col("moods", Ty::User("app._mood"), -1, false),
                col("p", Ty::User("app.pair"), -1, false),
                col("pos", Ty::User("app.posint"), -1, false),
                plain("doc", TEXT),
                plain("ext", TEXT),
            ],
        ),
        // REPLICA IDENTITY FULL: every column is part of the key.
        table(
            "audit",
            Full,
            vec![
                key("id", INT8),
                key("who", TEXT),
                key("note", TEXT),
                key("blob", TEXT),
            ],
        ),
        table(
            "byidx",
            Index,
            vec![key("a", INT4), key("b", TEXT), plain("c", TEXT)],
        ),
        table("nokey", Nothing, vec![plain("a", INT4), plain("b", TEXT)]),
        table("parent", Default, vec![key("id", INT4)]),
        table(
            "child",
            Default,
            vec![
                key("id", INT4),
                plain("parent_id", INT4),
                plain("label", TEXT),
            ],
        ),
        table("evolving", Default, vec![key("id", INT4), plain("v", TEXT)]),
        table(
            "evolving",
            Default,
            vec![key("id", INT4), plain("v", TEXT), plain("extra", TEXT)],
        ),
        table(
            "wide",
            Default,
            vec![key("id", INT4), plain("payload", TEXT)],
        ),
        table(
            "wide",
            Default,
            vec![key("id", INT4), plain("payload", TEXT), plain("note", TEXT)],
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Transactions.

/// One step of the workload, run in one session.
#[derive(Debug)]
pub(crate) struct Tx {
    /// Names the step in assertion messages and facts.
    pub label: &'static str,
    pub kind: TxKind,
    /// Run as a replicated transaction: `pg_replication_origin_session_setup(ORIGIN)` and
    /// `pg_replication_origin_xact_setup(lsn, time)`, with this remote commit LSN and time.
    pub origin: Option<(&'static str, &'static str)>,
    /// Whether it gets over `logical_decoding_work_mem` (it contains [`FILLER`]).
    pub big: bool,
    pub ops: Vec<Op>,
}

/// How a step ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKind {
    /// `BEGIN … COMMIT`.
    Commit,
    /// `BEGIN … ROLLBACK`.
    Rollback,
    /// No transaction block: each op on its own (only non-transactional messages).
    Autocommit,
    /// `BEGIN … PREPARE TRANSACTION gid`, then `COMMIT PREPARED gid`.
    PrepareCommit(&'static str),
    /// `BEGIN … PREPARE TRANSACTION gid`, then `ROLLBACK PREPARED gid`.
    PrepareRollback(&'static str),
}

/// One statement of a step.
#[derive(Debug)]
pub(crate) enum Op {
    /// A statement with text parameters, and the changes pgoutput reports for it.
    Sql {
        sql: String,
        params: Vec<Option<String>>,
        changes: Vec<Change>,
    },
    /// `pg_logical_emit_message(transactional, prefix, content)`.
    Message {
        transactional: bool,
        prefix: &'static str,
        content: &'static [u8],
    },
    /// `SAVEPOINT s`, the ops, `ROLLBACK TO SAVEPOINT s`: nothing inside survives.
    /// `xmin_of` reads the subtransaction's xid (the `xmin` of a row written inside).
    RolledBackSavepoint { ops: Vec<Op>, xmin_of: &'static str },
}

fn sql(statement: &str, changes: Vec<Change>) -> Op {
    Op::Sql {
        sql: statement.to_owned(),
        params: Vec::new(),
        changes,
    }
}

fn filler() -> Op {
    sql(FILLER, Vec::new())
}

fn insert(table: &str, new: Row) -> Change {
    Change::Insert {
        table: table.to_owned(),
        new,
    }
}

fn update(table: &str, old: Option<Old>, new: Row) -> Change {
    Change::Update {
        table: table.to_owned(),
        old,
        new,
    }
}

fn delete(table: &str, old: Old) -> Change {
    Change::Delete {
        table: table.to_owned(),
        old,
    }
}

/// A one-table `TRUNCATE` with its options.
fn truncate(statement: &str, table: &str, cascade: bool, restart_identity: bool) -> Op {
    sql(
        statement,
        vec![Change::Truncate {
            tables: vec![table.to_owned()],
            cascade,
            restart_identity,
        }],
    )
}

fn message(transactional: bool, prefix: &'static str, content: &'static [u8]) -> Op {
    Op::Message {
        transactional,
        prefix,
        content,
    }
}

/// About 9.6 kB of six-digit groups, each repeated four times: pglz compresses it to about
/// 3.3 kB, still over the 2 kB TOAST threshold, so it is stored compressed *and* out of line.
pub(crate) fn compressible_doc() -> String {
    (0..400u32)
        .map(|i| format!("{:06}", (i * 7919 + 17) % 1_000_000).repeat(4))
        .collect()
}

/// `len` pseudo-random letters and digits: stored out of line, uncompressed, in a column
/// with `STORAGE EXTERNAL`.
pub(crate) fn incompressible(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(ALPHABET[usize::try_from((x >> 33) % 36).unwrap()])
        })
        .collect()
}

/// The number of columns of `app.kinds`.
const KINDS_COLUMNS: usize = 27;

/// Rows of `app.kinds`, every value in its type's canonical text output form.
fn kinds_rows() -> [Vec<Option<String>>; 4] {
    let owned = |values: &[Option<&str>]| -> Vec<Option<String>> {
        assert_eq!(values.len(), KINDS_COLUMNS);
        values.iter().map(|v| v.map(str::to_owned)).collect()
    };
    let mut full = owned(&[
        Some("1"),
        Some("-32768"),
        Some("9223372036854775807"),
        Some("12345.678"),
        Some("1.5"),
        Some("3.141592653589793"),
        Some("t"),
        Some("grüße, 日本語, emoji 🐘, 'quotes', back\\slash, tab\tand newline\n"),
        Some("varchar"),
        Some("ab  "),
        Some("\\x00ff10"),
        Some("2026-11-21"),
        Some("2026-11-21 12:34:56.789"),
        Some("2026-11-21 12:34:56.789+00"),
        Some("1 day 02:03:04"),
        Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Some("{\"a\": [1, 2, {\"b\": null}]}"),
        Some("{\"k\": \"v\", \"n\": [1, 2.5, true, null]}"),
        Some("{1,2,3}"),
        Some("{a,\"b c\",\"d\\\"e\",NULL}"),
        Some("192.168.0.1/24"),
        Some("happy"),
        Some("{sad,happy}"),
        Some("(7,\"seven days\")"),
        Some("5"),
        None,
        None,
    ]);
    full[25] = Some(compressible_doc());
    full[26] = Some(incompressible(3_000, 1));
    let mut nulls = vec![None; KINDS_COLUMNS];
    nulls[0] = Some("2".to_owned());
    let edges = owned(&[
        Some("3"),
        Some("0"),
        Some("-1"),
        Some("NaN"),
        Some("Infinity"),
        Some("-0"),
        Some("f"),
        Some(""),
        Some(""),
        Some("    "),
        Some("\\x"),
        Some("infinity"),
        Some("-infinity"),
        Some("infinity"),
        Some("00:00:00"),
        Some("00000000-0000-0000-0000-000000000000"),
        Some("[]"),
        Some("{}"),
        Some("{}"),
        Some("{\"\"}"),
        Some("::1"),
        Some("sad"),
        Some("{}"),
        Some("(,)"),
        Some("1"),
        Some("short"),
        Some(""),
    ]);
    let mut streamed = vec![None; KINDS_COLUMNS];
    for (i, v) in [
        (0, "4"),
        (21, "ok"),
        (22, "{ok}"),
        (23, "(1,one)"),
        (24, "4"),
    ] {
        streamed[i] = Some(v.to_owned());
    }
    [full, nulls, edges, streamed]
}

fn kinds_insert(values: &[Option<String>]) -> Op {
    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
    Op::Sql {
        sql: format!("INSERT INTO app.kinds VALUES ({})", placeholders.join(", ")),
        params: values.to_vec(),
        changes: vec![insert("kinds", row(values.iter().map(Option::as_deref)))],
    }
}

/// A key tuple: `key` values first, NULL for the remaining columns.
fn key_tuple(key: &[&str], columns: usize) -> Old {
    let mut values: Row = key.iter().map(|k| text(k)).collect();
    values.resize(columns, Val::Null);
    Old::Key(values)
}

/// The workload, in the order it runs.
#[allow(clippy::too_many_lines)]
pub(crate) fn transactions() -> Vec<Tx> {
    let [full, nulls, edges, streamed_row] = kinds_rows();
    let blob = incompressible(2_500, 2);
    let tx = |label, kind, ops| Tx {
        label,
        kind,
        origin: None,
        big: false,
        ops,
    };
    let big = |label, kind, ops| Tx {
        label,
        kind,
        origin: None,
        big: true,
        ops,
    };

    // After `UPDATE … SET small = 1`, the two out-of-line values are not sent.
    let mut full_updated = row(full.iter().map(Option::as_deref));
    full_updated[1] = text("1");
    full_updated[25] = Val::Unchanged;
    full_updated[26] = Val::Unchanged;
    let mut edges_rekeyed = row(edges.iter().map(Option::as_deref));
    edges_rekeyed[0] = text("30");

    vec![
        tx(
            "kinds-insert",
            TxKind::Commit,
            vec![
                kinds_insert(&full),
                kinds_insert(&nulls),
                kinds_insert(&edges),
            ],
        ),
        tx(
            "kinds-update-unchanged-toast",
            TxKind::Commit,
            vec![sql(
                "UPDATE app.kinds SET small = 1 WHERE id = 1",
                vec![update("kinds", None, full_updated)],
            )],
        ),
        tx(
            "kinds-update-key",
            TxKind::Commit,
            vec![sql(
                "UPDATE app.kinds SET id = 30 WHERE id = 3",
                vec![update(
                    "kinds",
                    Some(key_tuple(&["3"], KINDS_COLUMNS)),
                    edges_rekeyed,
                )],
            )],
        ),
        tx(
            "kinds-delete",
            TxKind::Commit,
            vec![sql(
                "DELETE FROM app.kinds WHERE id = 2",
                vec![delete("kinds", key_tuple(&["2"], KINDS_COLUMNS))],
            )],
        ),
        tx(
            "audit-insert",
            TxKind::Commit,
            vec![Op::Sql {
                sql: "INSERT INTO app.audit (who, note, blob) VALUES ('alice', 'login', $1), ('bob', NULL, NULL)".into(),
                params: vec![Some(blob.clone())],
                changes: vec![
                    insert("audit", row([Some("1"), Some("alice"), Some("login"), Some(&*blob)])),
                    insert("audit", row([Some("2"), Some("bob"), None, None])),
                ],
            }],
        ),
        // REPLICA IDENTITY FULL: the old row comes whole, its out-of-line value inline; the
        // new row leaves that value out.
        tx(
            "audit-update",
            TxKind::Commit,
            vec![sql(
                "UPDATE app.audit SET note = 'logout' WHERE who = 'alice'",
                vec![update(
                    "audit",
                    Some(Old::Full(row([
                        Some("1"),
                        Some("alice"),
                        Some("login"),
                        Some(&*blob),
                    ]))),
                    vec![text("1"), text("alice"), text("logout"), Val::Unchanged],
                )],
            )],
        ),
        tx(
            "audit-delete",
            TxKind::Commit,
            vec![sql(
                "DELETE FROM app.audit WHERE who = 'bob'",
                vec![delete(
                    "audit",
                    Old::Full(row([Some("2"), Some("bob"), None, None])),
                )],
            )],
        ),
        tx(
            "replica-identity-index",
            TxKind::Commit,
            vec![
                sql(
                    "INSERT INTO app.byidx VALUES (1, 'x', 'c1')",
                    vec![insert("byidx", row([Some("1"), Some("x"), Some("c1")]))],
                ),
                sql(
                    "UPDATE app.byidx SET b = 'y' WHERE a = 1",
                    vec![update(
                        "byidx",
                        Some(key_tuple(&["1", "x"], 3)),
                        row([Some("1"), Some("y"), Some("c1")]),
                    )],
                ),
                sql(
                    "UPDATE app.byidx SET c = 'c2' WHERE a = 1",
                    vec![update("byidx", None, row([Some("1"), Some("y"), Some("c2")]))],
                ),
                sql(
                    "DELETE FROM app.byidx WHERE a = 1",
                    vec![delete("byidx", key_tuple(&["1", "y"], 3))],
                ),
            ],
        ),
        // A new Relation message for the same OID, mid-transaction.
        tx(
            "alter-table",
            TxKind::Commit,
            vec![
                sql(
                    "INSERT INTO app.evolving VALUES (1, 'before')",
                    vec![insert("evolving", row([Some("1"), Some("before")]))],
                ),
                sql(
                    "ALTER TABLE app.evolving ADD COLUMN extra text DEFAULT 'dflt'",
                    vec![],
                ),
                sql(
                    "INSERT INTO app.evolving VALUES (2, 'after', 'x')",
                    vec![insert("evolving", row([Some("2"), Some("after"), Some("x")]))],
                ),
                sql(
                    "INSERT INTO app.evolving (id, v) VALUES (3, 'default')",
                    vec![insert(
                        "evolving",
                        row([Some("3"), Some("default"), Some("dflt")]),
                    )],
                ),
            ],
        ),
        tx(
            "messages-transactional",
            TxKind::Commit,
            vec![
                message(true, "pgrepl", b"transactional payload"),
                sql(
                    "INSERT INTO app.nokey VALUES (1, 'a')",
                    vec![insert("nokey", row([Some("1"), Some("a")]))],
                ),
                message(true, "pgrepl.bytes", b"\x00\xff\x00binary"),
                message(true, "pgrepl.empty", b""),
            ],
        ),
        tx(
            "message-non-transactional",
            TxKind::Autocommit,
            vec![message(false, "pgrepl.nontx", b"\x00\x01\x02\x03")],
        ),
        // A non-transactional message is sent even though its transaction rolls back.
        tx(
            "rolled-back-with-message",
            TxKind::Rollback,
            vec![
                message(
                    false,
                    "pgrepl.nontx.rolledback",
                    b"kept although its transaction rolled back",
                ),
                sql(
                    "INSERT INTO app.nokey VALUES (2, 'rolled back')",
                    vec![insert("nokey", row([Some("2"), Some("rolled back")]))],
                ),
            ],
        ),
        tx(
            "truncate-setup",
            TxKind::Commit,
            vec![
                sql(
                    "INSERT INTO app.parent VALUES (1), (2)",
                    vec![
                        insert("parent", row([Some("1")])),
                        insert("parent", row([Some("2")])),
                    ],
                ),
                sql(
                    "INSERT INTO app.child VALUES (1, 1, 'c'), (2, 2, 'd')",
                    vec![
                        insert("child", row([Some("1"), Some("1"), Some("c")])),
                        insert("child", row([Some("2"), Some("2"), Some("d")])),
                    ],
                ),
            ],
        ),
        tx(
            "truncate-cascade-restart-identity",
            TxKind::Commit,
            vec![sql(
                "TRUNCATE app.parent, app.audit RESTART IDENTITY CASCADE",
                vec![Change::Truncate {
                    tables: vec!["audit".into(), "child".into(), "parent".into()],
                    cascade: true,
                    restart_identity: true,
                }],
            )],
        ),
        // Each flag alone, and none: the WAL records the options as given, whether or not
        // anything cascades or has a sequence.
        tx(
            "truncate-cascade",
            TxKind::Commit,
            vec![truncate("TRUNCATE app.evolving CASCADE", "evolving", true, false)],
        ),
        tx(
            "truncate-restart-identity",
            TxKind::Commit,
            vec![truncate("TRUNCATE app.nokey RESTART IDENTITY", "nokey", false, true)],
        ),
        tx(
            "truncate-plain",
            TxKind::Commit,
            vec![truncate("TRUNCATE app.byidx", "byidx", false, false)],
        ),
        Tx {
            origin: Some(("0/1A2B3C4D", "2026-11-21 12:00:00+00")),
            ..tx(
                "replicated",
                TxKind::Commit,
                vec![sql(
                    "INSERT INTO app.wide VALUES (100, 'from node2')",
                    vec![insert("wide", row([Some("100"), Some("from node2")]))],
                )],
            )
        },
        Tx {
            origin: Some(("0/1A2B3C5D", "2026-11-21 12:00:01.5+00")),
            ..big(
                "replicated-streamed",
                TxKind::Commit,
                vec![
                    sql(
                        "INSERT INTO app.wide VALUES (101, 'from node2, streamed')",
                        vec![insert("wide", row([Some("101"), Some("from node2, streamed")]))],
                    ),
                    filler(),
                    sql(
                        "INSERT INTO app.wide VALUES (102, 'from node2, streamed')",
                        vec![insert("wide", row([Some("102"), Some("from node2, streamed")]))],
                    ),
                ],
            )
        },
        big(
            "streamed",
            TxKind::Commit,
            vec![
                sql(
                    "INSERT INTO app.wide VALUES (1, 'one'), (2, 'two'), (3, 'three')",
                    vec![
                        insert("wide", row([Some("1"), Some("one")])),
                        insert("wide", row([Some("2"), Some("two")])),
                        insert("wide", row([Some("3"), Some("three")])),
                    ],
                ),
                filler(),
                sql(
                    "INSERT INTO app.wide VALUES (4, 'four')",
                    vec![insert("wide", row([Some("4"), Some("four")]))],
                ),
                // Streamed while open (the filler gets it over the limit), then rolled
                // back: a Stream Abort with subxid != xid.
                Op::RolledBackSavepoint {
                    ops: vec![
                        sql("INSERT INTO app.wide VALUES (5, 'five, rolled back')", vec![]),
                        filler(),
                        sql("INSERT INTO app.wide VALUES (6, 'six, rolled back')", vec![]),
                    ],
                    xmin_of: "SELECT xmin::text FROM app.wide WHERE id = 5",
                },
                message(true, "pgrepl.stream", b"inside a streamed transaction"),
                // User-defined types: Type messages inside a streamed block.
                kinds_insert(&streamed_row),
                sql(
                    "UPDATE app.wide SET payload = 'two, updated' WHERE id = 2",
                    vec![update("wide", None, row([Some("2"), Some("two, updated")]))],
                ),
                sql(
                    "DELETE FROM app.wide WHERE id = 3",
                    vec![delete("wide", key_tuple(&["3"], 2))],
                ),
                // A new Relation message inside a streamed block.
                sql("ALTER TABLE app.wide ADD COLUMN note text", vec![]),
                sql(
                    "INSERT INTO app.wide VALUES (7, 'seven', 'after ALTER TABLE')",
                    vec![insert(
                        "wide",
                        row([Some("7"), Some("seven"), Some("after ALTER TABLE")]),
                    )],
                ),
            ],
        ),
        big(
            "streamed-rolled-back",
            TxKind::Rollback,
            vec![
                sql(
                    "INSERT INTO app.wide VALUES (200, 'rolled back')",
                    vec![insert("wide", row([Some("200"), Some("rolled back"), None]))],
                ),
                filler(),
            ],
        ),
        tx(
            "prepared-committed",
            TxKind::PrepareCommit("pgrepl-gid-1"),
            vec![sql(
                "INSERT INTO app.wide VALUES (300, 'prepared, committed')",
                vec![insert("wide", row([Some("300"), Some("prepared, committed"), None]))],
            )],
        ),
        tx(
            "prepared-rolled-back",
            TxKind::PrepareRollback("pgrepl-gid-2"),
            vec![sql(
                "INSERT INTO app.wide VALUES (301, 'prepared, rolled back')",
                vec![insert("wide", row([Some("301"), Some("prepared, rolled back"), None]))],
            )],
        ),
        big(
            "prepared-streamed-committed",
            TxKind::PrepareCommit("pgrepl-gid-3"),
            vec![
                sql(
                    "INSERT INTO app.wide VALUES (302, 'prepared, streamed')",
                    vec![insert("wide", row([Some("302"), Some("prepared, streamed"), None]))],
                ),
                filler(),
                sql(
                    "INSERT INTO app.wide VALUES (303, 'prepared, streamed')",
                    vec![insert("wide", row([Some("303"), Some("prepared, streamed"), None]))],
                ),
            ],
        ),
        big(
            "prepared-streamed-rolled-back",
            TxKind::PrepareRollback("pgrepl-gid-4"),
            vec![
                sql(
                    "INSERT INTO app.wide VALUES (304, 'prepared, streamed, rolled back')",
                    vec![insert(
                        "wide",
                        row([Some("304"), Some("prepared, streamed, rolled back"), None]),
                    )],
                ),
                filler(),
            ],
        ),
    ]
}

impl Tx {
    /// The changes that reach the stream's content if the transaction's decoded part is
    /// kept: everything but rolled-back savepoints and non-transactional messages.
    pub(crate) fn changes(&self) -> Vec<Change> {
        fn collect(ops: &[Op], out: &mut Vec<Change>) {
            for op in ops {
                match op {
                    Op::Sql { changes, .. } => out.extend(changes.iter().cloned()),
                    Op::Message {
                        transactional: true,
                        prefix,
                        content,
                    } => out.push(Change::Message {
                        prefix: (*prefix).to_owned(),
                        content: content.to_vec(),
                    }),
                    Op::Message { .. } | Op::RolledBackSavepoint { .. } => {}
                }
            }
        }
        let mut out = Vec::new();
        collect(&self.ops, &mut out);
        out
    }

    /// Its non-transactional messages, sent as they are decoded.
    pub(crate) fn non_transactional_messages(&self) -> Vec<Content> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Message {
                    transactional: false,
                    prefix,
                    content,
                } => Some(Content::Message {
                    prefix: (*prefix).to_owned(),
                    content: content.to_vec(),
                }),
                _ => None,
            })
            .collect()
    }

    fn rolled_back_savepoints(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| matches!(op, Op::RolledBackSavepoint { .. }))
            .count()
    }
}

/// One expected item of a capture: what it holds, and which step it comes from.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub label: &'static str,
    pub content: Content,
}

/// What a capture in `mode` must contain, in order.
///
/// The rules, each a fact about PostgreSQL's logical decoding that the captures confirm:
/// - A transaction is streamed when streaming is on and it gets over
///   `logical_decoding_work_mem` (or always, with `debug_logical_replication_streaming =
///   immediate`). Otherwise it is sent whole at commit.
/// - A streamed transaction's Origin message follows its first Stream Start and carries
///   commit LSN `0/0`; otherwise it follows Begin with the remote commit LSN.
/// - A rolled-back transaction leaves nothing, unless it was streamed: then a Stream Abort.
///   PostgreSQL 18 checks, when the memory limit is reached, whether the largest transaction
///   has already aborted, and then drops it instead of streaming it (15 does not; the
///   versions between are not tested). Through the SQL interface decoding always runs after the fact, so on 18 an
///   aborted transaction is only streamed in `immediate` mode. The same check empties a
///   prepared-then-rolled-back transaction that is decoded at PREPARE: Begin Prepare and
///   Prepare, with no changes between them.
/// - With two-phase decoding a prepared transaction is sent at PREPARE (Begin Prepare …
///   Prepare, or Stream Prepare), then Commit Prepared or Rollback Prepared; without it,
///   at COMMIT PREPARED as an ordinary transaction, and not at all when rolled back.
/// - Non-transactional messages are sent as they are decoded, even from transactions that
///   roll back.
pub(crate) fn expected(mode: &Mode) -> Vec<Expected> {
    let streaming = mode.streaming.is_on();
    let with_info = mode.streaming == super::Streaming::Parallel;
    // Whether a transaction that ends up rolled back was streamed before its end.
    let aborted_streams = |big: bool| streaming && (mode.immediate || (big && mode.major < 18));
    let mut out = Vec::new();
    for tx in transactions() {
        let mut push = |content| {
            out.push(Expected {
                label: tx.label,
                content,
            });
        };
        for m in tx.non_transactional_messages() {
            push(m);
        }
        let txn = |streamed: bool, changes: Vec<Change>, end: End| Content::Txn {
            origin: tx.origin.map(|(lsn, _)| {
                let lsn = if streamed {
                    Lsn::ZERO
                } else {
                    lsn.parse().unwrap()
                };
                (ORIGIN.to_owned(), lsn)
            }),
            streamed,
            subxact_aborts: if streamed {
                vec![with_info; tx.rolled_back_savepoints()]
            } else {
                Vec::new()
            },
            changes,
            end,
        };
        let committed_streams = streaming && (tx.big || mode.immediate);
        match tx.kind {
            TxKind::Autocommit => {}
            TxKind::Commit => push(txn(committed_streams, tx.changes(), End::Commit)),
            TxKind::Rollback => {
                if aborted_streams(tx.big) {
                    push(Content::Aborted { with_info });
                }
            }
            TxKind::PrepareCommit(gid) => {
                if mode.two_phase {
                    let end = End::Prepare { gid: gid.into() };
                    push(txn(committed_streams, tx.changes(), end));
                    push(Content::CommitPrepared { gid: gid.into() });
                } else {
                    push(txn(committed_streams, tx.changes(), End::Commit));
                }
            }
            TxKind::PrepareRollback(gid) => {
                if mode.two_phase {
                    let emptied = tx.big && mode.major >= 18 && !mode.immediate;
                    let changes = if emptied { Vec::new() } else { tx.changes() };
                    let end = End::Prepare { gid: gid.into() };
                    push(txn(aborted_streams(tx.big), changes, end));
                    push(Content::RollbackPrepared { gid: gid.into() });
                } else if aborted_streams(tx.big) {
                    push(Content::Aborted { with_info });
                }
            }
        }
    }
    out
}
