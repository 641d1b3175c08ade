#![allow(missing_docs, clippy::unwrap_used)]
use pgrepl_core::connection::replication::*;
use pgrepl_core::connection::*;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cfg =
        ConnectConfig::parse("host=127.0.0.1 port=56400 user=postgres dbname=postgres").unwrap();
    let mut c = Client::connect(&cfg).await.unwrap();
    c.batch_execute("DROP TABLE IF EXISTS t; CREATE TABLE t(id int primary key, v text); DROP PUBLICATION IF EXISTS p; CREATE PUBLICATION p FOR TABLE t").await.unwrap();
    let rows = c
        .query("SELECT $1::int + 1, $2::text", &[&41i32, &"x"])
        .await
        .unwrap();
    println!(
        "{:?} {:?}",
        rows[0].get::<i32>(0).unwrap(),
        rows[0].get::<String>(1).unwrap()
    );
    println!(
        "err: {}",
        c.query("SELECT * FROM nope", &[]).await.unwrap_err()
    );
    let mut r = ReplicationClient::connect(&cfg).await.unwrap();
    println!("{:?}", r.identify_system().await.unwrap());
    let _ = r.drop_slot("s1", false).await;
    let slot = r
        .create_slot("s1", CreateSlotOptions::default())
        .await
        .unwrap();
    println!("{slot:?}");
    c.batch_execute("INSERT INTO t VALUES (1, 'a'), (2, NULL); UPDATE t SET v = 'b' WHERE id = 1; DELETE FROM t WHERE id = 2").await.unwrap();
    let opts = PgOutputOptions {
        publication_names: vec!["p".into()],
        ..Default::default()
    };
    let mut s = r
        .start_replication(
            "s1",
            slot.consistent_point,
            &opts,
            StreamSettings::default(),
        )
        .await
        .unwrap();
    for _ in 0..8 {
        let ev = s.next_event().await.unwrap().unwrap();
        println!("{ev:?}");
    }
}
