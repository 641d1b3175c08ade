//! Replication commands against real servers: `IDENTIFY_SYSTEM`, the slot lifecycle
//! (`CREATE_REPLICATION_SLOT … LOGICAL pgoutput`, temporary or permanent, each snapshot
//! action, two-phase; `DROP_REPLICATION_SLOT … WAIT`), and their errors.

use std::time::Duration;

use pgrepl_core::Lsn;
use pgrepl_core::connection::replication::{
    CreateSlotOptions, PgOutputOptions, ReplicationClient, SnapshotAction, StreamSettings,
};
use pgrepl_core::connection::{Client, Error};
use pgrepl_testkit::{Cluster, Install, pg_test};

use crate::conn_util::{Collector, config, next_txns, scalar, wait_for_value};

const DB: &str = "slotdb";

fn start(pg: &Install) -> Cluster {
    let node = pg.cluster().name("slots").database(DB).start().unwrap();
    node.psql(
        DB,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t VALUES (1, 'one'), (2, 'two'); \
         CREATE PUBLICATION p FOR TABLE t;",
    )
    .unwrap();
    node
}

async fn repl(node: &Cluster) -> ReplicationClient {
    ReplicationClient::connect(&config(&node.dsn(DB)))
        .await
        .unwrap()
}

async fn sql(node: &Cluster) -> Client {
    Client::connect(&config(&node.dsn(DB))).await.unwrap()
}

/// `slot_type|plugin|temporary|database|two_phase|confirmed_flush_lsn` of a slot, or `None`.
async fn slot_row(sql: &mut Client, name: &str) -> Option<String> {
    scalar(
        sql,
        &format!(
            "SELECT concat_ws('|', slot_type, plugin, temporary, database, two_phase, \
             confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = '{name}'"
        ),
    )
    .await
}

fn options() -> PgOutputOptions {
    PgOutputOptions {
        publication_names: vec!["p".into()],
        ..PgOutputOptions::default()
    }
}

pg_test! {
    /// `IDENTIFY_SYSTEM` reports this cluster's identifier, timeline, WAL position and
    /// database.
    async fn identify_system_reports_the_cluster(pg: Install) {
        let node = start(&pg);
        let mut repl = repl(&node).await;
        let before: Lsn = node
            .psql("postgres", "SELECT pg_current_wal_flush_lsn()")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let id = repl.identify_system().await.unwrap();
        let system_id = node
            .psql("postgres", "SELECT system_identifier FROM pg_control_system()")
            .unwrap();
        assert_eq!(id.system_id, system_id.trim());
        assert_eq!(id.timeline, 1);
        assert_eq!(id.dbname.as_deref(), Some(DB));
        assert!(id.xlogpos >= before && id.xlogpos > Lsn(0), "{} < {before}", id.xlogpos);
        assert_eq!(repl.server_version_num() / 10_000, pg.major());
    }

    /// Permanent, temporary and two-phase slots appear in `pg_replication_slots` as created,
    /// at their consistent point; a temporary slot goes with its session; `DROP … WAIT`
    /// removes a permanent one; bad names and duplicates fail clearly.
    async fn slot_lifecycle(pg: Install) {
        let node = start(&pg);
        let mut sql = sql(&node).await;
        let mut owner = repl(&node).await;

        let perm = owner.create_slot("perm_slot", CreateSlotOptions::default()).await.unwrap();
        assert_eq!(perm.slot_name, "perm_slot");
        assert_eq!(perm.snapshot_name, None);
        assert!(perm.consistent_point > Lsn(0));
        assert_eq!(
            slot_row(&mut sql, "perm_slot").await.unwrap(),
            format!("logical|pgoutput|f|{DB}|f|{}", perm.consistent_point)
        );

        let temp = owner
            .create_slot(
                "temp_slot",
                CreateSlotOptions { temporary: true, ..CreateSlotOptions::default() },
            )
            .await
            .unwrap();
        assert_eq!(
            slot_row(&mut sql, "temp_slot").await.unwrap(),
            format!("logical|pgoutput|t|{DB}|f|{}", temp.consistent_point)
        );

        let two = owner
            .create_slot(
                "two_phase_slot",
                CreateSlotOptions { two_phase: true, ..CreateSlotOptions::default() },
            )
            .await
            .unwrap();
        assert_eq!(
            slot_row(&mut sql, "two_phase_slot").await.unwrap(),
            format!("logical|pgoutput|f|{DB}|t|{}", two.consistent_point)
        );

        // Errors: a name PostgreSQL would refuse is refused before anything is sent (the
        // session stays usable), a duplicate is the server's 42710.
        let err = owner.create_slot("Bad-Name", CreateSlotOptions::default()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("invalid replication slot name \"Bad-Name\""), "{err}");
        let err = owner.create_slot("perm_slot", CreateSlotOptions::default()).await.unwrap_err();
        assert_eq!(err.code(), Some("42710"), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("already exists"), "{err}");
        let err = owner.drop_slot("no_such_slot", true).await.unwrap_err();
        assert_eq!(err.code(), Some("42704"), "{err}");
        assert!(!err.is_retryable());

        // The temporary slot ends with its session; the others stay.
        owner.close().await.unwrap();
        wait_for_value(
            &mut sql,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'temp_slot'",
            "0",
            Duration::from_secs(10),
        )
        .await;
        assert!(slot_row(&mut sql, "perm_slot").await.is_some());

        let mut other = repl(&node).await;
        other.drop_slot("perm_slot", true).await.unwrap();
        other.drop_slot("two_phase_slot", false).await.unwrap();
        assert_eq!(slot_row(&mut sql, "perm_slot").await, None);
        assert_eq!(slot_row(&mut sql, "two_phase_slot").await, None);
    }

    /// `SNAPSHOT 'export'` returns a snapshot name that another session adopts with
    /// `SET TRANSACTION SNAPSHOT`: it sees exactly the rows the slot will not stream.
    async fn exported_snapshot_matches_the_slot(pg: Install) {
        let node = start(&pg);
        let mut repl = repl(&node).await;
        let slot = repl
            .create_slot(
                "export_slot",
                CreateSlotOptions { snapshot: SnapshotAction::Export, ..CreateSlotOptions::default() },
            )
            .await
            .unwrap();
        let name = slot.snapshot_name.clone().expect("an exported snapshot name");
        let mut writer = sql(&node).await;
        writer.batch_execute("INSERT INTO t VALUES (3, 'three')").await.unwrap();

        let mut reader = sql(&node).await;
        reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        reader
            .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{name}'"))
            .await
            .unwrap();
        let ids = scalar(&mut reader, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t").await;
        assert_eq!(ids.as_deref(), Some("1,2"));
        reader.batch_execute("COMMIT").await.unwrap();
        let now = scalar(&mut reader, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t").await;
        assert_eq!(now.as_deref(), Some("1,2,3"));

        // The slot streams what the snapshot did not see, and nothing else.
        let mut stream = repl
            .start_replication("export_slot", slot.consistent_point, &options(), StreamSettings::default())
            .await
            .unwrap();
        let txns = next_txns(&mut stream, &mut Collector::default(), 1).await;
        assert_eq!(txns[0].changes, ["I public.t 3,three"]);
    }

    /// `SNAPSHOT 'use'` inside `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` on the replication
    /// session makes that transaction see the slot's consistent point. Outside a transaction
    /// it is refused before anything is sent; in a transaction of the wrong isolation level
    /// the server refuses it.
    async fn use_snapshot_in_the_replication_session(pg: Install) {
        let node = start(&pg);
        let mut repl = repl(&node).await;
        let use_snapshot =
            CreateSlotOptions { snapshot: SnapshotAction::Use, ..CreateSlotOptions::default() };
        let err = repl.create_slot("use_slot", use_snapshot).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), "{err}");

        repl.simple_query("BEGIN").await.unwrap();
        let err = repl.create_slot("use_slot", use_snapshot).await.unwrap_err();
        assert!(err.db_error().is_some(), "{err:?}");
        assert!(err.to_string().contains("REPEATABLE READ"), "{err}");
        repl.simple_query("ROLLBACK").await.unwrap();

        repl.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.unwrap();
        let slot = repl.create_slot("use_slot", use_snapshot).await.unwrap();
        assert_eq!(slot.snapshot_name, None);
        let mut writer = sql(&node).await;
        writer.batch_execute("INSERT INTO t VALUES (3, 'three')").await.unwrap();
        let rows = repl
            .simple_query("SELECT string_agg(id::text, ',' ORDER BY id) FROM t")
            .await
            .unwrap();
        assert_eq!(rows[0].get_str(0), Some("1,2"));
        repl.simple_query("COMMIT").await.unwrap();

        let mut stream = repl
            .start_replication("use_slot", slot.consistent_point, &options(), StreamSettings::default())
            .await
            .unwrap();
        let txns = next_txns(&mut stream, &mut Collector::default(), 1).await;
        assert_eq!(txns[0].changes, ["I public.t 3,three"]);
    }

    /// Dropping a slot a walsender is streaming from fails with 55006 (retryable: the
    /// walsender may go away) without `WAIT`, and with `WAIT` blocks until it does.
    async fn drop_slot_wait_waits_for_the_walsender(pg: Install) {
        let node = start(&pg);
        let mut owner = repl(&node).await;
        let slot = owner.create_slot("busy_slot", CreateSlotOptions::default()).await.unwrap();
        let stream = owner
            .start_replication("busy_slot", slot.consistent_point, &options(), StreamSettings::default())
            .await
            .unwrap();

        let mut dropper = repl(&node).await;
        let err = dropper.drop_slot("busy_slot", false).await.unwrap_err();
        assert_eq!(err.code(), Some("55006"), "{err}");
        assert!(err.is_retryable(), "{err}");

        let waiting = tokio::spawn(async move {
            dropper.drop_slot("busy_slot", true).await.unwrap();
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "DROP_REPLICATION_SLOT WAIT did not wait");
        stream.shutdown().await;
        tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap();
        let mut sql = sql(&node).await;
        assert_eq!(slot_row(&mut sql, "busy_slot").await, None);
    }
}
