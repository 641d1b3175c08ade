//! TLS against real servers: every `sslmode`, certificate and host-name checks, SCRAM channel
//! binding. PostgreSQL 15 (Debian's, built with OpenSSL) serves TLS with a throw-away CA; the
//! PostgreSQL 18 wheel is built without SSL, so against it the same tests check the other
//! half of the contract: modes that require TLS fail with the typed "server does not accept
//! TLS" error, `prefer` falls back to plaintext.

use std::path::{Path, PathBuf};

use pgrepl_core::connection::config::quote_dsn_value;
use pgrepl_core::connection::replication::ReplicationClient;
use pgrepl_core::connection::{Client, ConnectConfig, Error};
use pgrepl_testkit::{Cluster, Install, SslFiles, TestCa, pg_test};

use crate::conn_util::{config, scalar};

const DB: &str = "tlsdb";
const SCRAM_PW: &str = "tls scram pw";
const CLEAR_PW: &str = "tls clear pw";

/// A cluster serving TLS with `files` when the installation can, accepting only TLS
/// connections over TCP (`hostssl`); without SSL support, the same rules as `host`.
fn start(pg: &Install, files: Option<SslFiles>) -> Cluster {
    let kind = if files.is_some() { "hostssl" } else { "host" };
    let mut builder = pg.cluster().name("tls").database(DB).hba_replace([
        format!("{kind} all u_scram 127.0.0.1/32 scram-sha-256"),
        format!("{kind} replication u_scram 127.0.0.1/32 scram-sha-256"),
        format!("{kind} all u_password 127.0.0.1/32 password"),
        format!("{kind} all postgres 127.0.0.1/32 trust"),
        format!("{kind} replication postgres 127.0.0.1/32 trust"),
    ]);
    if let Some(files) = files {
        builder = builder.ssl(files);
    }
    let node = builder.start().unwrap();
    node.psql_vars(
        "postgres",
        "CREATE ROLE u_scram LOGIN REPLICATION PASSWORD :'s'; \
         CREATE ROLE u_password LOGIN PASSWORD :'c';",
        &[("s", SCRAM_PW), ("c", CLEAR_PW)],
    )
    .unwrap();
    node
}

/// Writes a CA certificate where `sslrootcert` can point.
fn root_cert_file(ca: &TestCa, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgrepl-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("root.crt");
    std::fs::write(&path, ca.cert_pem()).unwrap();
    path
}

fn dsn(node: &Cluster, host: &str, extra: &str) -> String {
    format!(
        "host={host} port={} dbname={DB} user=postgres {extra}",
        node.port()
    )
}

fn with_root(path: &Path) -> String {
    format!("sslrootcert={}", quote_dsn_value(path.to_str().unwrap()))
}

/// Whether the server sees the session with backend pid `pid` as encrypted.
async fn server_says_tls(observer: &mut Client, pid: i32) -> bool {
    let q = format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {pid}");
    scalar(observer, &q).await.as_deref() == Some("t")
}

/// Opens a SQL and a replication session with `cfg`; returns whether each is encrypted, as
/// the client and as the server see it (they must agree).
async fn sessions_encrypted(cfg: &ConnectConfig, observer: &mut Client) -> Result<bool, Error> {
    let sql = Client::connect(cfg).await?;
    let sql_tls = sql.connection_ref().is_tls();
    let pid = sql.connection_ref().backend_pid();
    assert_eq!(server_says_tls(observer, pid).await, sql_tls, "{cfg:?}");
    let mut repl = ReplicationClient::connect(cfg).await?;
    repl.identify_system().await?;
    let repl_tls = repl.connection().is_tls();
    let pid = repl.connection().backend_pid();
    assert_eq!(server_says_tls(observer, pid).await, repl_tls, "{cfg:?}");
    assert_eq!(sql_tls, repl_tls);
    repl.close().await?;
    Ok(sql_tls)
}

fn assert_tls_refused(err: &Error, mode: &str) {
    assert!(
        matches!(err, Error::TlsRefused { sslmode, .. } if *sslmode == mode),
        "sslmode={mode}: {err:?}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("does not accept TLS"), "{err}");
}

pg_test! {
    /// `require`, `verify-ca` and `verify-full` (by IP address and by name) give encrypted
    /// SQL and replication sessions, and so does the default `prefer`; `disable` against a
    /// server that accepts only TLS fails with the server's clear refusal. Without TLS on the
    /// server, the modes that require it fail with `TlsRefused` and `prefer` falls back.
    async fn sslmodes_encrypt_or_fail_clearly(pg: Install) {
        let ca = TestCa::generate().unwrap();
        let ssl = pg.supports_ssl();
        let node = start(&pg, ssl.then(|| ca.server_files().unwrap()));
        let root = root_cert_file(&ca, &format!("modes{}", node.port()));
        let mut observer = Client::connect(&config(&dsn(&node, "127.0.0.1", ""))).await.unwrap();
        assert_eq!(observer.connection_ref().is_tls(), ssl, "prefer uses TLS when offered");

        let requiring = [
            ("require", "127.0.0.1", String::new()),
            ("verify-ca", "127.0.0.1", with_root(&root)),
            ("verify-full", "127.0.0.1", with_root(&root)),
            ("verify-full", "localhost", with_root(&root)),
        ];
        for (mode, host, extra) in &requiring {
            let cfg = config(&dsn(&node, host, &format!("sslmode={mode} {extra}")));
            let result = sessions_encrypted(&cfg, &mut observer).await;
            if ssl {
                assert!(result.unwrap(), "sslmode={mode} host={host}");
            } else {
                assert_tls_refused(&result.unwrap_err(), mode);
            }
        }

        let prefer = config(&dsn(&node, "127.0.0.1", "sslmode=prefer"));
        assert_eq!(sessions_encrypted(&prefer, &mut observer).await.unwrap(), ssl);

        let disable = config(&dsn(&node, "127.0.0.1", "sslmode=disable"));
        let result = sessions_encrypted(&disable, &mut observer).await;
        if ssl {
            let err = result.unwrap_err();
            assert_eq!(err.code(), Some("28000"), "{err}");
            assert!(!err.is_retryable());
            let text = err.to_string();
            assert!(text.contains("no pg_hba.conf entry") && text.contains("no encryption"), "{text}");
        } else {
            assert!(!result.unwrap());
        }
        std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    /// `verify-full` refuses a certificate from another CA and a certificate for another
    /// name, each with an error that says which and what to do; `verify-ca` accepts the
    /// other name; `require` with an explicit `sslrootcert` checks the chain (as libpq).
    async fn verify_full_refuses_wrong_ca_and_wrong_name(pg: Install) {
        let ca = TestCa::generate().unwrap();
        let other_ca = TestCa::generate().unwrap();
        let ssl = pg.supports_ssl();
        // A certificate only for db.example.test: connecting by 127.0.0.1 or localhost is
        // connecting by a name it does not list.
        let node = start(&pg, ssl.then(|| ca.server_files_for(&["db.example.test"]).unwrap()));
        let root = root_cert_file(&ca, &format!("right{}", node.port()));
        let wrong_root = root_cert_file(&other_ca, &format!("wrong{}", node.port()));

        let connect = |host: &str, extra: String| {
            let cfg = config(&dsn(&node, host, &extra));
            async move { Client::connect(&cfg).await }
        };
        let wrong_ca = [
            ("verify-full", connect("127.0.0.1", format!("sslmode=verify-full {}", with_root(&wrong_root))).await),
            ("verify-ca", connect("127.0.0.1", format!("sslmode=verify-ca {}", with_root(&wrong_root))).await),
            ("require", connect("127.0.0.1", format!("sslmode=require {}", with_root(&wrong_root))).await),
        ];
        for (mode, result) in wrong_ca {
            let err = result.unwrap_err();
            if !ssl {
                assert_tls_refused(&err, mode);
                continue;
            }
            assert!(matches!(err, Error::Tls { .. }), "{mode}: {err:?}");
            assert!(!err.is_retryable());
            let text = err.to_string();
            assert!(text.contains("not signed by a CA in sslrootcert"), "{mode}: {text}");
            assert!(text.contains(wrong_root.to_str().unwrap()), "{text}");
        }

        for host in ["127.0.0.1", "localhost"] {
            let err = connect(host, format!("sslmode=verify-full {}", with_root(&root)))
                .await
                .unwrap_err();
            if !ssl {
                assert_tls_refused(&err, "verify-full");
                continue;
            }
            assert!(matches!(err, Error::Tls { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("not valid for the host name \"{host}\"")),
                "{text}"
            );
        }

        // The name the certificate lists, reached through hostaddr: verify-full passes.
        let by_name = connect(
            "db.example.test",
            format!("hostaddr=127.0.0.1 sslmode=verify-full {}", with_root(&root)),
        )
        .await;
        let by_ip_ca_only = connect("127.0.0.1", format!("sslmode=verify-ca {}", with_root(&root))).await;
        let unchecked = connect("127.0.0.1", "sslmode=require".to_owned()).await;
        for (what, result) in [("verify-full by name", by_name), ("verify-ca", by_ip_ca_only), ("require", unchecked)] {
            if ssl {
                assert!(result.unwrap().connection_ref().is_tls(), "{what}");
            } else {
                let mode = what.split(' ').next().unwrap();
                assert_tls_refused(&result.unwrap_err(), mode);
            }
        }
        std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
        std::fs::remove_dir_all(wrong_root.parent().unwrap()).unwrap();
    }

    /// SCRAM over TLS binds to the channel (SCRAM-SHA-256-PLUS): `channel_binding=require`
    /// logs in, for SQL and replication sessions, and refuses a method that cannot bind.
    /// Without TLS, `require` fails clearly and the default (`prefer`) logs in unbound.
    async fn scram_channel_binding_over_tls(pg: Install) {
        let ca = TestCa::generate().unwrap();
        let ssl = pg.supports_ssl();
        let node = start(&pg, ssl.then(|| ca.server_files().unwrap()));
        let mut observer = Client::connect(&config(&dsn(&node, "127.0.0.1", ""))).await.unwrap();
        let scram = |extra: &str| {
            config(&format!(
                "host=127.0.0.1 port={} dbname={DB} user=u_scram password={} {extra}",
                node.port(),
                quote_dsn_value(SCRAM_PW)
            ))
        };
        let required = sessions_encrypted(&scram("channel_binding=require"), &mut observer).await;
        if ssl {
            assert!(required.unwrap());
        } else {
            let err = required.unwrap_err();
            assert!(matches!(err, Error::Auth { .. }), "{err:?}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("channel binding is not possible here"), "{err}");
        }
        // Binding off, or preferred: logs in either way.
        for mode in ["disable", "prefer"] {
            let encrypted = sessions_encrypted(&scram(&format!("channel_binding={mode}")), &mut observer)
                .await
                .unwrap();
            assert_eq!(encrypted, ssl);
        }
        // A cleartext password cannot be bound: refused before it is sent.
        let cfg = config(&format!(
            "host=127.0.0.1 port={} dbname={DB} user=u_password password={} channel_binding=require",
            node.port(),
            quote_dsn_value(CLEAR_PW)
        ));
        let err = Client::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot be bound"), "{err}");
        assert!(!err.to_string().contains(CLEAR_PW));
        let cfg = config(&format!(
            "host=127.0.0.1 port={} dbname={DB} user=u_password password={}",
            node.port(),
            quote_dsn_value(CLEAR_PW)
        ));
        let mut cleartext = Client::connect(&cfg).await.unwrap();
        assert_eq!(cleartext.connection_ref().is_tls(), ssl);
        assert_eq!(scalar(&mut cleartext, "SELECT current_user").await.as_deref(), Some("u_password"));
    }
}
