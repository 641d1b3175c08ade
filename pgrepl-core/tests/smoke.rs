//! The smallest end-to-end check: connect, query, create a slot, stream one transaction.

use pgrepl_core::connection::replication::{
    CreateSlotOptions, PgOutputOptions, ReplicationClient, ReplicationEvent, StreamSettings,
};
use pgrepl_core::connection::{Client, ConnectConfig};
use pgrepl_core::pgoutput::LogicalMessage;
use pgrepl_testkit::{Install, pg_test};

pg_test! {
    /// A SQL session and a replication session work against a real server.
    async fn connect_query_and_stream(pg: Install) {
        let node = pg.cluster().database("smoke").start().unwrap();
        let cfg = ConnectConfig::parse(&node.dsn("smoke")).unwrap();
        let mut sql = Client::connect(&cfg).await.unwrap();
        sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t")
            .await
            .unwrap();
        let rows = sql.query("SELECT $1::int + 1", &[&41i32]).await.unwrap();
        assert_eq!(rows[0].get::<i32>(0).unwrap(), 42);
        let mut repl = ReplicationClient::connect(&cfg).await.unwrap();
        let slot = repl.create_slot("s", CreateSlotOptions::default()).await.unwrap();
        sql.batch_execute("INSERT INTO t VALUES (1, 'one')").await.unwrap();
        let options = PgOutputOptions {
            publication_names: vec!["p".into()],
            ..Default::default()
        };
        let mut stream = repl
            .start_replication("s", slot.consistent_point, &options, StreamSettings::default())
            .await
            .unwrap();
        let mut kinds = Vec::new();
        while kinds.last() != Some(&"commit") {
            if let ReplicationEvent::Message { message, .. } = stream.next_event().await.unwrap().unwrap() {
                kinds.push(match message {
                    LogicalMessage::Begin(_) => "begin",
                    LogicalMessage::Relation(_) => "relation",
                    LogicalMessage::Insert(_) => "insert",
                    LogicalMessage::Commit(_) => "commit",
                    _ => "other",
                });
            }
        }
        assert_eq!(kinds, ["begin", "relation", "insert", "commit"]);
    }
}
