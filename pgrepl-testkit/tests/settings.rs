//! A cluster has the settings replication needs, and the builder's settings win.

use pgrepl_testkit::{Cluster, Install, pg_test};

#[allow(clippy::unwrap_used, reason = "test helper")]
fn show(node: &Cluster, setting: &str) -> String {
    node.psql("postgres", &format!("SHOW {setting}"))
        .unwrap()
        .trim()
        .to_owned()
}

pg_test! {
    /// The harness's defaults: logical decoding, commit timestamps, room for a mesh.
    fn has_the_required_settings(pg: Install) {
        let node = pg.start_cluster().unwrap();
        assert_eq!(show(&node, "wal_level"), "logical");
        assert_eq!(show(&node, "track_commit_timestamp"), "on");
        assert_eq!(show(&node, "max_replication_slots"), "16");
        assert_eq!(show(&node, "max_wal_senders"), "16");
        assert_eq!(show(&node, "max_worker_processes"), "16");
        assert_eq!(show(&node, "wal_sender_timeout"), "5s");
        assert_eq!(show(&node, "listen_addresses"), "127.0.0.1");
        assert_eq!(show(&node, "port"), node.port().to_string());
        assert_eq!(
            show(&node, "unix_socket_directories"),
            node.socket_dir().display().to_string()
        );
        assert_eq!(show(&node, "fsync"), "off");
        assert_eq!(show(&node, "logging_collector"), "off");
        let version: u32 = show(&node, "server_version_num").parse().unwrap();
        assert_eq!(version / 10000, pg.major());
        assert!(
            node.log().contains("database system is ready to accept connections"),
            "the server log goes to {}: {}",
            node.log_path().display(),
            node.log()
        );
    }

    /// `conf` lines override the defaults; databases get created; durability can be turned on.
    fn builder_settings_win(pg: Install) {
        let node = pg
            .cluster()
            .durable(true)
            .conf("wal_sender_timeout = '60s'")
            .conf("work_mem = '7MB'")
            .password_encryption("md5")
            .database("practice")
            .database("two words")
            .start()
            .unwrap();
        assert_eq!(show(&node, "fsync"), "on");
        assert_eq!(show(&node, "wal_sender_timeout"), "1min");
        assert_eq!(show(&node, "work_mem"), "7MB");
        assert_eq!(show(&node, "password_encryption"), "md5");
        for db in ["practice", "two words"] {
            assert_eq!(
                node.psql(db, "SELECT current_database()").unwrap(),
                format!("{db}\n")
            );
        }
        let err = node.psql("practice", "SELECT 1; SELEC 2; SELECT 3").unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
        assert_eq!(
            node.psql_vars("practice", "SELECT :'v' || '!'", &[("v", "it's")]).unwrap(),
            "it's!\n"
        );
    }

    /// The client of feature `client` connects over TCP with both DSN forms.
    async fn accepts_tcp_connections(pg: Install) {
        let node = pg.cluster().database("practice").start().unwrap();
        let client = node.connect("practice").await.unwrap();
        let row = client
            .query_one(
                "SELECT current_database(), host(inet_server_addr()), current_user",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "practice");
        assert_eq!(row.get::<_, String>(1), "127.0.0.1");
        assert_eq!(row.get::<_, String>(2), "postgres");

        let (client, connection) = tokio_postgres::connect(&node.url("practice"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client.query_one("SELECT current_setting('wal_level')", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "logical");
    }
}
