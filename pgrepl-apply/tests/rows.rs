//! What rows look like on the target: a wide table of common types in text and binary mode,
//! unchanged TOAST values, every replica identity, TRUNCATE, a relation that changes shape
//! mid-stream, columns mapped by name, and what happens when the target lacks a table or a
//! column.

use crate::support;
use pgrepl_apply::ApplyError;
use pgrepl_testkit::{Install, pg_test};

const WIDE: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (x int, label text);
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE wide (
    id bigint PRIMARY KEY,
    i2 smallint, i4 int, f4 real, f8 double precision,
    num numeric(20, 6), cash money, flag boolean,
    t text, vc varchar(20), ch char(5), raw bytea, u uuid,
    d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval,
    ip inet, net cidr, mac macaddr, bits bit(8), vbits varbit,
    ints int[], texts text[], j json, jb jsonb,
    m mood, p pair, pos positive, r int4range, tr tstzrange,
    pt point, tv tsvector,
    big text
);";

const WIDE_ROWS: &str = "
INSERT INTO wide VALUES
 (1, 1, -2, 1.5, 3.14159265358979, 12345.678901, 99.95, true,
  'tab\there\nnewline ünïcode \\ backslash', 'varchar', 'ab', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2026-11-21', '23:59:59.123456', '12:00:00+02', '2000-01-01 00:00:00', '2026-11-21 23:17:18.123456+00', '1 year 2 mons 3 days 04:05:06.789',
  '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'10101010', B'101',
  '{1,2,NULL,4}', '{\"a b\",NULL,\"c,d\"}', '{\"k\": [1, 2]}', '{\"k\": {\"z\": null}}',
  'happy', ROW(7, 'seven'), 42, '[1,10)', '[2026-01-01 00:00:00+00,2026-02-01 00:00:00+00)',
  '(1.5,-2)', 'a fat cat sat on a mat', repeat(md5('x'), 1000)),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 32767, 2147483647, 'NaN', '-Infinity', -0.000001, -1, false, '', '', '', '', '00000000-0000-0000-0000-000000000000',
  'infinity', '00:00', '00:00+00', '-infinity', 'infinity', '-1 days', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', B'00000000', B'',
  '{}', '{}', 'null', '[]', 'sad', ROW(NULL, NULL), 1, 'empty', '(,)', '(0,0)', '', '');
UPDATE wide SET i4 = i4 + 1 WHERE id = 1;        -- leaves `big` (TOASTed) unchanged
UPDATE wide SET big = big || 'more' WHERE id = 3;
DELETE FROM wide WHERE id = 2;
INSERT INTO wide (id, t) SELECT g, 'bulk ' || g FROM generate_series(10, 400) g;";

async fn wide_round_trip(pg: &Install, binary: bool) {
    let nodes = support::start(pg, 2, WIDE, &["wide"], "apply_remote").await;
    let link = nodes.run_with(0, 1, |cfg| cfg.binary = binary);
    let mut c = nodes.client(0).await;
    c.batch_execute(WIDE_ROWS).await.unwrap();
    nodes.sync(0, 1).await;
    assert_eq!(
        nodes.dump(0, "wide").await,
        nodes.dump(1, "wide").await,
        "binary = {binary}"
    );
    let big = nodes
        .rows(1, "SELECT length(big), i4 FROM wide WHERE id = 1")
        .await;
    assert_eq!(big[0], [Some("32000".to_owned()), Some("-1".to_owned())]);
    let stats = link.link.stats();
    assert_eq!(
        stats
            .careful_txns
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "{:?}",
        stats.last_error()
    );
    link.stop().await.unwrap();
}

pg_test! {
    /// Every common type round-trips identically in text mode.
    async fn wide_table_text(pg: Install) {
        wide_round_trip(&pg, false).await;
    }

    /// … and in binary mode.
    async fn wide_table_binary(pg: Install) {
        wide_round_trip(&pg, true).await;
    }

    /// REPLICA IDENTITY DEFAULT (with a key change), USING INDEX, FULL with and without a key
    /// on the target, and TRUNCATE with RESTART IDENTITY.
    async fn replica_identities_and_truncate(pg: Install) {
        let schema = "
            CREATE TABLE by_pk (id int PRIMARY KEY, v text);
            CREATE TABLE by_index (a int NOT NULL, b int NOT NULL, v text);
            CREATE UNIQUE INDEX by_index_ab ON by_index (a, b);
            ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_ab;
            CREATE TABLE full_keyed (id int PRIMARY KEY, v text);
            ALTER TABLE full_keyed REPLICA IDENTITY FULL;
            CREATE TABLE full_bare (v text, j json, p point);
            ALTER TABLE full_bare REPLICA IDENTITY FULL;
            CREATE TABLE counted (id bigserial PRIMARY KEY, v text);";
        let tables = ["by_pk", "by_index", "full_keyed", "full_bare", "counted"];
        let nodes = support::start(&pg, 2, schema, &tables, "apply_remote").await;
        let link = nodes.run(0, 1);
        let mut c = nodes.client(0).await;
        c.batch_execute("
            INSERT INTO by_pk VALUES (1, 'a'), (2, 'b');
            UPDATE by_pk SET id = 10, v = 'moved' WHERE id = 1;
            DELETE FROM by_pk WHERE id = 2;
            INSERT INTO by_index VALUES (1, 1, 'x'), (1, 2, 'y');
            UPDATE by_index SET b = 3, v = 'z' WHERE a = 1 AND b = 2;
            DELETE FROM by_index WHERE a = 1 AND b = 1;
            INSERT INTO full_keyed VALUES (1, 'a'), (2, NULL);
            UPDATE full_keyed SET v = 'b' WHERE id = 2;
            DELETE FROM full_keyed WHERE id = 1;
            INSERT INTO full_bare VALUES ('dup', '{}', '(1,1)'), ('dup', '{}', '(1,1)'), (NULL, NULL, NULL);
            UPDATE full_bare SET v = 'one' WHERE ctid = (SELECT ctid FROM full_bare WHERE v = 'dup' LIMIT 1);
            DELETE FROM full_bare WHERE v IS NULL;
            INSERT INTO counted (v) VALUES ('1'), ('2');").await.unwrap();
        nodes.sync(0, 1).await;
        for t in tables {
            assert_eq!(nodes.dump(0, t).await, nodes.dump(1, t).await, "table {t}");
        }
        // The target's own sequence moved too (it inserted its own rows).
        let mut target = nodes.client(1).await;
        target.batch_execute("SELECT setval('counted_id_seq', 100)").await.unwrap();
        c.batch_execute("TRUNCATE by_pk, counted RESTART IDENTITY").await.unwrap();
        nodes.sync(0, 1).await;
        assert_eq!(nodes.dump(1, "by_pk").await, "");
        assert_eq!(nodes.dump(1, "counted").await, "");
        let seq = nodes.rows(1, "SELECT nextval('counted_id_seq')").await;
        assert_eq!(seq[0][0].as_deref(), Some("1"), "RESTART IDENTITY replayed");
        link.stop().await.unwrap();
    }

    /// Columns map by name; the target may have extra (defaulted) columns in another order;
    /// a new column on the source mid-stream gets a new Relation message.
    async fn columns_map_by_name_and_shapes_change(pg: Install) {
        let nodes = support::start(&pg, 2, "SELECT 1", &[], "apply_remote").await;
        let mut s = nodes.client(0).await;
        let mut t = nodes.client(1).await;
        s.batch_execute("CREATE TABLE shape (id int PRIMARY KEY, a text, b int)").await.unwrap();
        t.batch_execute("CREATE TABLE shape (extra text DEFAULT 'target', b int, c int, id int PRIMARY KEY, a text,
                         g int GENERATED ALWAYS AS (b * 2) STORED)").await.unwrap();
        for c in [&mut s, &mut t] {
            c.batch_execute("ALTER PUBLICATION pgrepl_t ADD TABLE shape").await.unwrap();
        }
        let link = nodes.run(0, 1);
        s.batch_execute("INSERT INTO shape VALUES (1, 'one', 10), (2, 'two', 20)").await.unwrap();
        s.batch_execute("ALTER TABLE shape ADD COLUMN c int; UPDATE shape SET c = 5 WHERE id = 1").await.unwrap();
        s.batch_execute("INSERT INTO shape VALUES (3, 'three', 30, 33)").await.unwrap();
        nodes.sync(0, 1).await;
        let rows = nodes.rows(1, "SELECT id, a, b, c, extra, g FROM shape ORDER BY id").await;
        let want: Vec<Vec<Option<String>>> = [
            ["1", "one", "10", "5", "target", "20"],
            ["2", "two", "20", "", "target", "40"],
            ["3", "three", "30", "33", "target", "60"],
        ]
        .iter()
        .map(|r| r.iter().map(|v| (!v.is_empty()).then(|| (*v).to_owned())).collect())
        .collect();
        assert_eq!(rows, want);
        link.stop().await.unwrap();
    }

    /// A replicated table or column missing on the target stops the link with an error that
    /// names it; once created, the link resumes and applies everything.
    async fn missing_table_or_column_is_named(pg: Install) {
        let nodes = support::start(&pg, 2, "SELECT 1", &[], "apply_remote").await;
        let mut s = nodes.client(0).await;
        let mut t = nodes.client(1).await;
        s.batch_execute("CREATE TABLE only_here (id int PRIMARY KEY, v text, w int);
                         ALTER PUBLICATION pgrepl_t ADD TABLE only_here;
                         INSERT INTO only_here VALUES (1, 'x', 2)").await.unwrap();
        let err = nodes.run(0, 1).finished().await.unwrap_err();
        assert!(matches!(err, ApplyError::MissingTable { .. }), "{err}");
        assert!(err.to_string().contains("public.only_here") && err.to_string().contains("node2"), "{err}");
        t.batch_execute("CREATE TABLE only_here (id int PRIMARY KEY, v text)").await.unwrap();
        let err = nodes.run(0, 1).finished().await.unwrap_err();
        assert!(matches!(err, ApplyError::MissingColumn { ref column, .. } if column == "w"), "{err}");
        assert!(!err.is_retryable());
        t.batch_execute("ALTER TABLE only_here ADD COLUMN w int").await.unwrap();
        let link = nodes.run(0, 1);
        nodes.sync(0, 1).await;
        assert_eq!(nodes.dump(1, "only_here").await, "(1,x,2)");
        link.stop().await.unwrap();
    }
}
