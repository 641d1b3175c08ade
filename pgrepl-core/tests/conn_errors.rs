//! Connection errors a person has to act on, and whether retrying can help: nothing listening
//! on the port, a server that never answers (`connect_timeout`), a database or role that does
//! not exist, a role without the REPLICATION attribute.

use std::time::{Duration, Instant};

use pgrepl_core::connection::replication::ReplicationClient;
use pgrepl_core::connection::{Client, Error};
use pgrepl_testkit::{Install, pg_test};
use tokio::net::TcpListener;

use crate::conn_util::{config, scalar};

/// Nothing listens on the port: a connect error naming the endpoint, retryable (the server
/// may be starting).
#[tokio::test]
async fn unreachable_port_is_a_retryable_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = Client::connect(&config(&format!(
        "host=127.0.0.1 port={port} user=u dbname=d"
    )))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

/// A listener that accepts TCP but never says a word: `connect_timeout` (libpq's minimum is
/// two seconds) ends the attempt with a retryable timeout, for SQL and replication sessions,
/// whether the first thing sent is the SSLRequest (`prefer`) or the start-up packet
/// (`disable`).
#[tokio::test]
async fn connect_timeout_against_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, saying nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    for sslmode in ["prefer", "disable"] {
        let cfg = config(&format!(
            "host=127.0.0.1 port={port} user=u dbname=d connect_timeout=1 sslmode={sslmode}"
        ));
        let started = Instant::now();
        let err = Client::connect(&cfg).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, Error::ConnectTimeout { seconds: 2, .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert!(err.to_string().contains(&format!(
            "timed out after 2s connecting to 127.0.0.1:{port}"
        )));
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "{took:?}"
        );

        let err = ReplicationClient::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, Error::ConnectTimeout { .. }), "{err:?}");
    }
    silent.abort();
}

pg_test! {
    /// A database that does not exist is the server's 3D000, a role that does not exist its
    /// 28000; neither is retryable, and both say what is missing.
    async fn missing_database_and_role_are_definite(pg: Install) {
        let node = pg.cluster().name("errors").start().unwrap();
        let port = node.port();
        let cfg = config(&format!("host=127.0.0.1 port={port} user=postgres dbname=no_such_db"));
        for err in [
            Client::connect(&cfg).await.unwrap_err(),
            ReplicationClient::connect(&cfg).await.unwrap_err(),
        ] {
            assert_eq!(err.code(), Some("3D000"), "{err}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("database \"no_such_db\" does not exist"), "{err}");
            assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
        }
        let cfg = config(&format!("host=127.0.0.1 port={port} user=no_such_role dbname=postgres"));
        for err in [
            Client::connect(&cfg).await.unwrap_err(),
            ReplicationClient::connect(&cfg).await.unwrap_err(),
        ] {
            assert_eq!(err.code(), Some("28000"), "{err}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("role \"no_such_role\" does not exist"), "{err}");
        }
    }

    /// A role without the REPLICATION attribute opens SQL sessions but not replication
    /// sessions: 42501, not retryable, saying what is missing. (pg_hba.conf matches a logical
    /// replication session by its database, like a SQL session: `host all …` lets it in.)
    async fn role_without_replication_is_refused(pg: Install) {
        let node = pg
            .cluster()
            .name("errors")
            .hba_replace(["host all all 127.0.0.1/32 trust"])
            .start()
            .unwrap();
        node.psql("postgres", "CREATE ROLE plain LOGIN; CREATE ROLE replicator LOGIN REPLICATION")
            .unwrap();
        let dsn = |user: &str| {
            config(&format!("host=127.0.0.1 port={} user={user} dbname=postgres", node.port()))
        };
        Client::connect(&dsn("plain")).await.unwrap();
        let err = ReplicationClient::connect(&dsn("plain")).await.unwrap_err();
        assert_eq!(err.code(), Some("42501"), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().to_lowercase().contains("replication"), "{err}");
        let mut repl = ReplicationClient::connect(&dsn("replicator")).await.unwrap();
        repl.identify_system().await.unwrap();
    }

    /// A server error is typed: SQLSTATE, message, detail and hint are there to read, the
    /// Display shows them, and the session stays usable after it.
    async fn server_errors_carry_sqlstate_detail_and_hint(pg: Install) {
        let node = pg.cluster().name("errors").start().unwrap();
        let mut c = Client::connect(&config(&node.dsn("postgres"))).await.unwrap();
        let err = c.simple_query("SELECT lenght('x')").await.unwrap_err();
        let db = err.db_error().expect("a server error");
        assert_eq!(db.code(), "42883");
        assert!(db.message().contains("function lenght(unknown) does not exist"), "{err}");
        assert!(db.hint().unwrap().starts_with("No function matches"), "{err}");
        assert!(err.to_string().contains("; HINT: No function matches"), "{err}");
        assert!(!err.is_retryable());

        c.batch_execute("CREATE TEMP TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1)")
            .await
            .unwrap();
        let err = c.execute("INSERT INTO u VALUES ($1)", &[&1i32]).await.unwrap_err();
        let db = err.db_error().expect("a server error");
        assert_eq!(db.code(), "23505");
        assert_eq!(db.detail(), Some("Key (id)=(1) already exists."));
        assert!(err.to_string().contains("; DETAIL: Key (id)=(1) already exists."), "{err}");
        assert!(!err.is_retryable());

        assert_eq!(c.execute("INSERT INTO u VALUES ($1)", &[&2i32]).await.unwrap(), 1);
        assert_eq!(scalar(&mut c, "SELECT count(*) FROM u").await.as_deref(), Some("2"));
    }
}
