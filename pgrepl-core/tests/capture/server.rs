//! Against live PostgreSQL 15 and 18 servers: run the workload, capture it in every mode the
//! server accepts, and check each capture's content and, with the server's help, its
//! positions, xids, times, OIDs and binary values (`every_message_kind`). Two smaller tests
//! pin down what the SQL interface accepts (`protocol_options`) and what a two-phase slot
//! sends at protocol version 1 (`two_phase_slot_ignores_protocol_version`).
//!
//! `pg_logical_slot_peek_binary_changes` returns `bytea`, which pgrepl's SQL client reads
//! as text (`\x` and hex); the test decodes the hex. Peeking leaves the slots where they
//! are, so one workload is read as many times as there are modes.

use std::collections::{BTreeSet, HashMap};

use bytes::{Bytes, BytesMut};
use pgrepl_core::connection::client::Param;
use pgrepl_core::connection::{Client, ConnectConfig};
use pgrepl_core::pgoutput::fixture::{Fixture, FixtureMessage};
use pgrepl_core::pgoutput::{DecodeErrorKind, Decoder, MessageKind, ProtocolVersion};
use pgrepl_core::sql::quote_literal;
use pgrepl_core::{Lsn, PgTimestamp};
use pgrepl_testkit::{Install, pg_test};

use super::model::{Content, End};
use super::stream::{self, Analysis, Event};
use super::values::{self, BinaryValue};
use super::workload::{self, ORIGIN, Op, TxKind};
use super::{COMMITTED, Capture, Mode, fixtures_dir, updating};

/// Output settings of the decoding session: text values depend on them.
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
    SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'";

/// Microseconds since 2000-01-01 of a `timestamptz` expression.
fn micros(expr: &str) -> String {
    format!("SELECT ((extract(epoch FROM {expr}) * 1000000)::bigint - 946684800000000)::text")
}

pg_test! {
    /// The server emits every message kind its protocol versions carry; each capture
    /// decodes, re-encodes to the server's bytes, and holds exactly what the workload
    /// wrote, at the positions, with the xids, times and OIDs the server reports.
    async fn every_message_kind(pg: Install) {
        let major = pg.major();
        let node = pg
            .cluster()
            .name("capture")
            .database("capture")
            .conf("logical_decoding_work_mem = '64kB'")
            .conf("max_prepared_transactions = 10")
            .start()
            .unwrap();
        let cfg = ConnectConfig::parse(&node.dsn("capture")).unwrap();
        let mut sql = Client::connect(&cfg).await.unwrap();
        sql.batch_execute(SESSION).await.unwrap();
        sql.batch_execute(workload::SCHEMA_SQL).await.unwrap();
        sql.batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{}', 'pgoutput');
             SELECT pg_create_logical_replication_slot('{}', 'pgoutput', false, true);",
            workload::SLOT,
            workload::SLOT_TWO_PHASE
        ))
        .await
        .unwrap();
        let facts = run_workload(&mut sql).await;
        check_toast(&mut sql).await;

        let server_version_num: u32 = sql
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await
            .unwrap()
            .get(0)
            .unwrap();
        assert_eq!(server_version_num / 10_000, major);
        let mut captures = Vec::new();
        for mode in Mode::all(major) {
            captures.push(capture(&mut sql, mode, server_version_num).await);
        }

        let mut analyses = HashMap::new();
        let mut kinds = BTreeSet::new();
        for capture in &captures {
            let name = capture.name();
            let analysis = stream::analyze(capture);
            assert_eq!(
                analysis.kinds.keys().copied().collect::<BTreeSet<_>>(),
                stream::required_kinds(&capture.mode),
                "{name}: message kinds"
            );
            kinds.extend(analysis.kinds.keys().copied());
            if !capture.mode.binary {
                let expected = workload::expected(&capture.mode);
                stream::assert_content(&name, &analysis.events, &expected);
                check_facts(&name, &analysis.events, &expected, &facts);
            }
            check_catalog(&mut sql, &name, &analysis).await;
            analyses.insert(name, analysis);
        }
        assert_eq!(
            kinds,
            MessageKind::ALL.iter().map(|k| k.name()).collect::<BTreeSet<_>>(),
            "PostgreSQL {major} emits every kind"
        );

        for binary in captures.iter().filter(|c| c.mode.binary) {
            let text = captures
                .iter()
                .find(|c| c.mode == binary.mode.text_twin())
                .unwrap();
            let pairs = values::pair(
                text,
                &analyses[&text.name()],
                binary,
                &analyses[&binary.name()],
            );
            check_binary_values(&mut sql, &binary.name(), &pairs).await;
        }

        if updating() {
            for capture in captures.iter().filter(|c| COMMITTED.contains(&&*c.name())) {
                let mut out = BytesMut::new();
                capture.fixture.write(&mut out);
                let path = fixtures_dir().join(format!("{}.pgoutput", capture.name()));
                std::fs::write(&path, &out).unwrap();
            }
        }
    }

    /// Which pgoutput options the SQL interface accepts, per server: PostgreSQL 15 knows
    /// protocol versions 1 to 3 and a boolean `streaming`; 18 knows 1 to 4 and
    /// `streaming 'parallel'`, which needs version 4. Version checks of the other options
    /// are the same on both.
    async fn protocol_options(pg: Install) {
        let major = pg.major();
        let node = pg.cluster().name("options").database("options").start().unwrap();
        let cfg = ConnectConfig::parse(&node.dsn("options")).unwrap();
        let mut sql = Client::connect(&cfg).await.unwrap();
        // Two statements: a slot cannot be created in a transaction that has written.
        sql.batch_execute("CREATE PUBLICATION p FOR ALL TABLES").await.unwrap();
        sql.batch_execute("SELECT pg_create_logical_replication_slot('s', 'pgoutput')")
            .await
            .unwrap();
        // The SQLSTATE and the part of the message that names the limit (the wording
        // varies between versions).
        let mut peek = async |options: &[(&str, &str)]| {
            let mut array: Vec<&str> = vec!["publication_names", "p"];
            for (k, v) in options {
                array.extend([*k, *v]);
            }
            sql.query(
                "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, VARIADIC $1::text[])",
                &[&text_array(&array)],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                let e = e.db_error().unwrap();
                (e.code().to_owned(), e.message().to_owned())
            })
        };
        let refused = |result: Result<(), (String, String)>, code: &str, says: &str| {
            let (sqlstate, message) = result.unwrap_err();
            assert_eq!(sqlstate, code, "{message}");
            assert!(message.contains(says), "{message}");
        };
        let max = if major >= 16 { "4" } else { "3" };
        peek(&[("proto_version", max)]).await.unwrap();
        let too_new = if major >= 16 { "5" } else { "4" };
        refused(
            peek(&[("proto_version", too_new)]).await,
            "0A000",
            &format!("protocol {max} or lower"),
        );
        refused(
            peek(&[("proto_version", "1"), ("streaming", "on")]).await,
            "22023",
            "does not support streaming, need 2 or higher",
        );
        refused(
            peek(&[("proto_version", "2"), ("two_phase", "on")]).await,
            "22023",
            "does not support two-phase commit, need 3 or higher",
        );
        let parallel = peek(&[("proto_version", "3"), ("streaming", "parallel")]).await;
        if major >= 16 {
            refused(parallel, "22023", "does not support parallel streaming, need 4 or higher");
            peek(&[("proto_version", "4"), ("streaming", "parallel")]).await.unwrap();
        } else {
            refused(parallel, "42601", "streaming requires a Boolean value");
        }
    }

    /// A slot created with `two_phase` decodes prepared transactions at PREPARE whatever
    /// protocol version a session asks for: at version 1 the server sends Begin Prepare,
    /// Prepare and Commit Prepared, which version 1 does not have. The decoder refuses them
    /// rather than guess (a link must ask for version 3 on such a slot); read as version 3,
    /// the same bytes are a well-formed prepared transaction.
    async fn two_phase_slot_ignores_protocol_version(pg: Install) {
        let node = pg
            .cluster()
            .name("twophase")
            .database("twophase")
            .conf("max_prepared_transactions = 10")
            .start()
            .unwrap();
        let cfg = ConnectConfig::parse(&node.dsn("twophase")).unwrap();
        let mut sql = Client::connect(&cfg).await.unwrap();
        for statement in [
            "CREATE TABLE t (id integer PRIMARY KEY)",
            "CREATE PUBLICATION p FOR TABLE t",
            "SELECT pg_create_logical_replication_slot('s', 'pgoutput', false, true)",
            "BEGIN",
            "INSERT INTO t VALUES (1)",
            "PREPARE TRANSACTION 'g'",
            "COMMIT PREPARED 'g'",
        ] {
            execute(&mut sql, statement).await;
        }
        let rows = sql
            .query(
                "SELECT data FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL,
                     'proto_version', '1', 'publication_names', 'p')",
                &[],
            )
            .await
            .unwrap();
        let messages: Vec<Bytes> = rows
            .iter()
            .map(|row| Bytes::from(unhex(&row.get::<String>(0).unwrap())))
            .collect();
        let tags: Vec<u8> = messages.iter().map(|m| m[0]).collect();
        assert_eq!(tags, b"bRIPK", "Begin Prepare, Relation, Insert, Prepare, Commit Prepared");
        let err = Decoder::new(ProtocolVersion::V1)
            .decode(messages[0].clone())
            .unwrap_err();
        assert!(
            matches!(err.kind(), DecodeErrorKind::NotInProtocolVersion { .. }),
            "{err}"
        );
        let mut decoder = Decoder::new(ProtocolVersion::V3);
        for m in messages {
            decoder.decode(m).unwrap();
        }
    }
}

/// A `text[]` literal of simple words.
fn text_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Reads the whole stream of `mode`'s slot without consuming it.
async fn capture(sql: &mut Client, mode: Mode, server_version_num: u32) -> Capture {
    let mut array: Vec<String> = Vec::new();
    for (k, v) in mode.pgoutput_options() {
        array.extend([k.to_owned(), v]);
    }
    let array: Vec<&str> = array.iter().map(String::as_str).collect();
    if mode.immediate {
        sql.batch_execute("SET debug_logical_replication_streaming = immediate")
            .await
            .unwrap();
    }
    let rows = sql
        .query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, VARIADIC $2::text[])",
            &[&mode.slot(), &text_array(&array)],
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", mode.name()));
    if mode.immediate {
        sql.batch_execute("RESET debug_logical_replication_streaming")
            .await
            .unwrap();
    }
    let messages = rows
        .iter()
        .map(|row| FixtureMessage {
            lsn: row.get::<Lsn>(0).unwrap(),
            data: Bytes::from(unhex(&row.get::<String>(1).unwrap())),
        })
        .collect();
    Capture {
        mode,
        fixture: Fixture {
            protocol_version: mode.version,
            server_version_num,
            options: mode.fixture_options(),
            messages,
        },
    }
}

/// `\x0a1b…` (bytea's hex output) to bytes.
fn unhex(text: &str) -> Vec<u8> {
    let hex = text.strip_prefix("\\x").expect("bytea in hex format");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Running the workload.

/// What the server said about one step while it ran.
#[derive(Debug, Default)]
struct Facts {
    xid: Option<u32>,
    /// Xids of its rolled-back subtransactions.
    subxids: Vec<u32>,
    /// `pg_current_wal_insert_lsn()` before it started, after PREPARE TRANSACTION, and
    /// after it ended.
    start_lsn: Lsn,
    prepare_end_lsn: Option<Lsn>,
    end_lsn: Lsn,
    /// `clock_timestamp()` before it started and after it ended.
    started: PgTimestamp,
    ended: PgTimestamp,
    /// `pg_xact_commit_timestamp(xid)`, once committed.
    commit_time: Option<PgTimestamp>,
    /// `pg_prepared_xacts.prepared`.
    prepared_at: Option<PgTimestamp>,
    /// The remote commit time given to `pg_replication_origin_xact_setup`.
    origin_time: Option<PgTimestamp>,
}

async fn query_text(sql: &mut Client, query: &str, params: &[&str]) -> String {
    let params: Vec<&(dyn pgrepl_core::connection::client::ToSqlText + Sync)> = params
        .iter()
        .map(|p| p as &(dyn pgrepl_core::connection::client::ToSqlText + Sync))
        .collect();
    sql.query_one(query, &params)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get::<String>(0)
        .unwrap()
}

async fn insert_lsn(sql: &mut Client) -> Lsn {
    query_text(sql, "SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .parse()
        .unwrap()
}

async fn timestamp(sql: &mut Client, expr: &str, params: &[&str]) -> PgTimestamp {
    PgTimestamp(
        query_text(sql, &micros(expr), params)
            .await
            .parse()
            .unwrap(),
    )
}

async fn execute(sql: &mut Client, statement: &str) {
    sql.batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn run_ops(sql: &mut Client, ops: &[Op], facts: &mut Facts) {
    for op in ops {
        match op {
            Op::Sql {
                sql: text, params, ..
            } => {
                let params: Vec<&(dyn pgrepl_core::connection::client::ToSqlText + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn pgrepl_core::connection::client::ToSqlText + Sync))
                    .collect();
                sql.query(text, &params)
                    .await
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
            }
            Op::Message {
                transactional,
                prefix,
                content,
            } => {
                let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
                query_text(
                    sql,
                    "SELECT pg_logical_emit_message($1::boolean, $2, $3::bytea)::text",
                    &[&transactional.to_string(), prefix, &format!("\\x{hex}")],
                )
                .await;
            }
            Op::RolledBackSavepoint { ops, xmin_of } => {
                execute(sql, "SAVEPOINT s").await;
                Box::pin(run_ops(sql, ops, facts)).await;
                facts
                    .subxids
                    .push(query_text(sql, xmin_of, &[]).await.parse().unwrap());
                execute(sql, "ROLLBACK TO SAVEPOINT s").await;
            }
        }
    }
}

/// Runs the workload, step by step, noting what the server says about each.
async fn run_workload(sql: &mut Client) -> HashMap<&'static str, Facts> {
    let mut all = HashMap::new();
    for tx in workload::transactions() {
        let mut facts = Facts {
            start_lsn: insert_lsn(sql).await,
            started: timestamp(sql, "clock_timestamp()", &[]).await,
            ..Facts::default()
        };
        if tx.origin.is_some() {
            query_text(
                sql,
                "SELECT pg_replication_origin_session_setup($1)::text",
                &[ORIGIN],
            )
            .await;
        }
        if tx.kind == TxKind::Autocommit {
            run_ops(sql, &tx.ops, &mut facts).await;
        } else {
            execute(sql, "BEGIN").await;
            let xid: u64 = query_text(sql, "SELECT pg_current_xact_id()::text", &[])
                .await
                .parse()
                .unwrap();
            facts.xid = Some(u32::try_from(xid).expect("a fresh cluster is in xid epoch 0"));
            if let Some((lsn, time)) = tx.origin {
                query_text(
                    sql,
                    "SELECT pg_replication_origin_xact_setup($1::pg_lsn, $2::timestamptz)::text",
                    &[lsn, time],
                )
                .await;
                facts.origin_time = Some(timestamp(sql, "$1::timestamptz", &[time]).await);
            }
            run_ops(sql, &tx.ops, &mut facts).await;
            match tx.kind {
                TxKind::Commit => execute(sql, "COMMIT").await,
                TxKind::Rollback => execute(sql, "ROLLBACK").await,
                TxKind::PrepareCommit(gid) | TxKind::PrepareRollback(gid) => {
                    let gid = quote_literal(gid);
                    execute(sql, &format!("PREPARE TRANSACTION {gid}")).await;
                    facts.prepare_end_lsn = Some(insert_lsn(sql).await);
                    facts.prepared_at = Some(
                        timestamp(
                            sql,
                            "(SELECT prepared FROM pg_prepared_xacts WHERE gid = $1)",
                            &[&gid[1..gid.len() - 1]],
                        )
                        .await,
                    );
                    let end = if matches!(tx.kind, TxKind::PrepareCommit(_)) {
                        "COMMIT"
                    } else {
                        "ROLLBACK"
                    };
                    execute(sql, &format!("{end} PREPARED {gid}")).await;
                }
                TxKind::Autocommit => unreachable!(),
            }
        }
        if tx.origin.is_some() {
            query_text(
                sql,
                "SELECT pg_replication_origin_session_reset()::text",
                &[],
            )
            .await;
        }
        facts.end_lsn = insert_lsn(sql).await;
        facts.ended = timestamp(sql, "clock_timestamp()", &[]).await;
        if matches!(tx.kind, TxKind::Commit | TxKind::PrepareCommit(_)) {
            let xid = facts.xid.unwrap().to_string();
            facts.commit_time =
                Some(timestamp(sql, "pg_xact_commit_timestamp($1::text::xid)", &[&xid]).await);
        }
        all.insert(tx.label, facts);
    }
    all
}

/// The large values of `app.kinds` row 1 are stored out of line, one of them compressed:
/// the update that leaves them alone must send them as `u`.
async fn check_toast(sql: &mut Client) {
    let row = sql
        .query_one(
            "SELECT pg_column_compression(doc) IS NOT NULL, pg_column_compression(ext) IS NULL,
                    (SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'app.kinds'::regclass)
             FROM app.kinds WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<bool>(0).unwrap(), "doc is compressed");
    assert!(row.get::<bool>(1).unwrap(), "ext is not compressed");
    let toast = row.get::<String>(2).unwrap();
    let values: i64 = query_text(
        sql,
        &format!("SELECT count(DISTINCT chunk_id)::text FROM {toast}"),
        &[],
    )
    .await
    .parse()
    .unwrap();
    assert_eq!(values, 2, "doc and ext of row 1 are out of line");
}

// ---------------------------------------------------------------------------------------
// Checks with the server's view.

/// Positions, xids and times of each item agree with what the server reported while the
/// step ran: commit and prepare LSNs fall within the step, xids are the step's, commit
/// times are `pg_xact_commit_timestamp` (the remote commit time for replicated steps),
/// prepare times are `pg_prepared_xacts.prepared`.
fn check_facts(
    name: &str,
    events: &[Event],
    expected: &[workload::Expected],
    facts: &HashMap<&str, Facts>,
) {
    for (event, expected) in events.iter().zip(expected) {
        let f = &facts[expected.label];
        let at = format!("{name}, step {}", expected.label);
        let within = |lsn: Option<Lsn>, from: Lsn, to: Lsn| {
            let lsn = lsn.unwrap();
            assert!(from <= lsn && lsn <= to, "{at}: {lsn} not in {from}..={to}");
        };
        let during = |time: Option<PgTimestamp>| {
            let time = time.unwrap();
            assert!(f.started <= time && time <= f.ended, "{at}: time {time}");
        };
        if event.xid.is_some() {
            assert_eq!(event.xid, f.xid, "{at}: xid");
        }
        match &event.content {
            Content::Message { .. } => within(event.lsn, f.start_lsn, f.end_lsn),
            Content::Txn { end, .. } => {
                let until = match end {
                    End::Commit => {
                        assert_eq!(event.time, f.commit_time, "{at}: commit time");
                        if f.origin_time.is_some() {
                            assert_eq!(event.time, f.origin_time, "{at}: the remote commit time");
                        }
                        f.end_lsn
                    }
                    End::Prepare { .. } => {
                        assert_eq!(event.time, f.prepared_at, "{at}: prepare time");
                        f.prepare_end_lsn.unwrap()
                    }
                };
                within(event.lsn, f.start_lsn, until);
                within(event.end_lsn, f.start_lsn, until);
                for (subxid, info) in &event.subxact_aborts {
                    assert!(f.subxids.contains(subxid), "{at}: subxid {subxid}");
                    if let Some(info) = info {
                        within(Some(info.abort_lsn), f.start_lsn, until);
                        during(Some(info.abort_time));
                    }
                }
            }
            Content::CommitPrepared { .. } => {
                assert_eq!(event.time, f.commit_time, "{at}: commit time");
                within(event.lsn, f.prepare_end_lsn.unwrap(), f.end_lsn);
                within(event.end_lsn, f.prepare_end_lsn.unwrap(), f.end_lsn);
            }
            Content::RollbackPrepared { .. } => {
                within(event.end_lsn, f.prepare_end_lsn.unwrap(), f.end_lsn);
                during(event.time);
            }
            Content::Aborted { with_info } => {
                if *with_info {
                    within(event.lsn, f.start_lsn, f.end_lsn);
                    during(event.time);
                }
            }
        }
    }
}

/// Relation, type and truncated-relation OIDs, column types and modifiers and replica
/// identities are the server's.
async fn check_catalog(sql: &mut Client, name: &str, analysis: &Analysis) {
    for (oid, relation) in &analysis.relations {
        let at = format!("{name}: relation {}", relation.name);
        let qualified = format!("app.{}", relation.name);
        let row = sql
            .query_one(
                "SELECT oid::text, relreplident::text FROM pg_class WHERE oid = $1::regclass",
                &[&qualified],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<String>(0).unwrap(), oid.to_string(), "{at}");
        assert_eq!(
            row.get::<String>(1).unwrap().as_bytes(),
            [relation.replica_identity.as_byte()],
            "{at}"
        );
        // The last description of each relation is its final shape.
        let columns = sql
            .query(
                "SELECT attname::text, atttypid::text, atttypmod::text FROM pg_attribute
                 WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&qualified],
            )
            .await
            .unwrap();
        let catalog: Vec<(String, u32, i32)> = columns
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
            .collect();
        let sent: Vec<(String, u32, i32)> = relation
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
            .collect();
        assert_eq!(sent, catalog, "{at}: columns");
    }
    for (oid, ty) in &analysis.types {
        let sql_name = workload::USER_TYPES
            .iter()
            .find(|(_, namespace, name)| (*namespace, *name) == (&*ty.namespace, &*ty.name))
            .map(|(sql_name, _, _)| *sql_name)
            .unwrap();
        let catalog = query_text(sql, "SELECT $1::regtype::oid::text", &[sql_name]).await;
        assert_eq!(catalog, oid.to_string(), "{name}: type {sql_name}");
    }
    for (table, oid) in &analysis.truncated {
        let catalog = query_text(
            sql,
            "SELECT $1::regclass::oid::text",
            &[&format!("app.{table}")],
        )
        .await;
        assert_eq!(catalog, oid.to_string(), "{name}: truncated {table}");
    }
}

/// Every binary value reads back, through the type's receive and output functions (a
/// parameter in binary format, a result in text format), as its text twin; the simple types
/// are also checked here without the server.
async fn check_binary_values(sql: &mut Client, name: &str, pairs: &[BinaryValue]) {
    let mut local = 0;
    let mut by_server: HashMap<(u32, Vec<u8>), &BinaryValue> = HashMap::new();
    for value in pairs {
        if let Some(text) = values::local_text(value) {
            assert_eq!(text, value.text, "{}: {:?}", value.at, value);
            local += 1;
        }
        by_server.insert((value.type_oid, value.binary.clone()), value);
    }
    let mut type_names = HashMap::new();
    for ((type_oid, binary), value) in &by_server {
        if !type_names.contains_key(type_oid) {
            // The internal name: `character` would mean `character(1)`.
            let type_name = query_text(
                sql,
                "SELECT format('%I.%I', nspname, typname) FROM pg_type t
                 JOIN pg_namespace n ON n.oid = typnamespace WHERE t.oid = $1::oid",
                &[&type_oid.to_string()],
            )
            .await;
            type_names.insert(*type_oid, type_name);
        }
        let rows = sql
            .query_params(
                &format!("SELECT $1::{}", type_names[type_oid]),
                &[Param::Binary(binary)],
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", value.at));
        assert_eq!(
            rows[0].get::<String>(0).unwrap(),
            value.text,
            "{}",
            value.at
        );
    }
    assert!(
        local * 2 > pairs.len(),
        "{name}: {local} of {} converted here",
        pairs.len()
    );
}
