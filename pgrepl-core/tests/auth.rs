//! Authentication against real servers: trust, cleartext password, MD5 and SCRAM-SHA-256, for
//! SQL and replication sessions; wrong and missing passwords; passwords from `PGPASSWORD` and
//! the pgpass file; the URL form of the DSN.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use pgrepl_core::connection::config::quote_dsn_value;
use pgrepl_core::connection::replication::ReplicationClient;
use pgrepl_core::connection::{Client, ConnectConfig, Error};
use pgrepl_testkit::{Cluster, Install, pg_test};

use crate::conn_util::{assert_hides, config, config_with_env, scalar};

const DB: &str = "authdb";

/// A role, the pg_hba method it must log in with, and its password.
struct Login {
    user: &'static str,
    method: &'static str,
    password: &'static str,
}

/// Passwords with a space, quotes, a backslash, a colon and non-ASCII letters, so the DSN
/// quoting, the pgpass escapes and SCRAM's SASLprep are all exercised.
const LOGINS: [Login; 4] = [
    Login {
        user: "u_trust",
        method: "trust",
        password: "",
    },
    Login {
        user: "u_password",
        method: "password",
        password: "clear 'text' pw",
    },
    Login {
        user: "u_md5",
        method: "md5",
        password: "md5:pw\\with 'quotes'",
    },
    Login {
        user: "u_scram",
        method: "scram-sha-256",
        password: "scräm:pä ss'w\\ord",
    },
];

/// A cluster with one role per method, each allowed only its own method over TCP (for both
/// SQL and replication connections), the MD5 role's password stored as MD5, and
/// `log_connections` on so the server log names the method each login used.
fn start(pg: &Install) -> Cluster {
    let mut hba = Vec::new();
    for l in &LOGINS {
        hba.push(format!("host {DB} {} 127.0.0.1/32 {}", l.user, l.method));
        hba.push(format!(
            "host replication {} 127.0.0.1/32 {}",
            l.user, l.method
        ));
    }
    hba.push("host all postgres 127.0.0.1/32 trust".to_owned());
    hba.push("host replication postgres 127.0.0.1/32 trust".to_owned());
    let node = pg
        .cluster()
        .name("auth")
        .hba_replace(hba)
        .conf("log_connections = on")
        .database(DB)
        .start()
        .unwrap();
    for l in &LOGINS {
        let encryption = if l.method == "md5" {
            "md5"
        } else {
            "scram-sha-256"
        };
        let password = if l.password.is_empty() {
            "NULL".to_owned()
        } else {
            ":'pw'".to_owned()
        };
        node.psql_vars(
            "postgres",
            &format!(
                "SET password_encryption = '{encryption}'; \
                 CREATE ROLE :\"u\" LOGIN REPLICATION PASSWORD {password};"
            ),
            &[("u", l.user), ("pw", l.password)],
        )
        .unwrap();
    }
    node
}

fn dsn(node: &Cluster, user: &str) -> String {
    format!(
        "host=127.0.0.1 port={} dbname={DB} user={user}",
        node.port()
    )
}

fn dsn_with_password(node: &Cluster, user: &str, password: &str) -> String {
    format!("{} password={}", dsn(node, user), quote_dsn_value(password))
}

/// Opens a SQL and a replication session; returns the SQL session's `current_user`.
async fn log_in_both_ways(cfg: &ConnectConfig) -> Result<String, Error> {
    let mut sql = Client::connect(cfg).await?;
    let user = scalar(&mut sql, "SELECT current_user").await.unwrap();
    let mut repl = ReplicationClient::connect(cfg).await?;
    let id = repl.identify_system().await?;
    assert_eq!(id.dbname.as_deref(), Some(DB));
    repl.close().await?;
    Ok(user)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgrepl-auth-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Escapes `:` and `\` for a pgpass line.
fn pgpass_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

fn write_pgpass(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pg_test! {
    /// Every method logs in, for a SQL session and a replication session, and the server log
    /// confirms the method that was used.
    async fn every_method_logs_in_for_sql_and_replication(pg: Install) {
        let node = start(&pg);
        for l in &LOGINS {
            let cfg = config(&dsn_with_password(&node, l.user, l.password));
            let user = log_in_both_ways(&cfg)
                .await
                .unwrap_or_else(|e| panic!("{} ({}): {e}", l.user, l.method));
            assert_eq!(user, l.user);
        }
        let log = node.log();
        for l in LOGINS.iter().filter(|l| l.method != "trust") {
            let needle = format!("identity=\"{}\" method={}", l.user, l.method);
            // Two logins each: the SQL and the replication session.
            assert_eq!(log.matches(&needle).count(), 2, "{needle} in:\n{log}");
        }
    }

    /// A wrong password fails with the server's 28P01, which is not retryable, and neither
    /// the error's Display nor its Debug shows the password; a missing one fails before
    /// anything is sent, saying where a password can come from.
    async fn wrong_or_missing_password_fails_clearly(pg: Install) {
        let node = start(&pg);
        let wrong = "Wr0ng-Secret-42";
        for l in LOGINS.iter().filter(|l| l.method != "trust") {
            let cfg = config(&dsn_with_password(&node, l.user, wrong));
            let sql_err = Client::connect(&cfg).await.unwrap_err();
            let repl_err = ReplicationClient::connect(&cfg).await.unwrap_err();
            for err in [&sql_err, &repl_err] {
                assert_eq!(err.code(), Some("28P01"), "{} ({}): {err}", l.user, l.method);
                assert!(!err.is_retryable(), "{err}");
                let text = err.to_string();
                assert!(
                    text.contains(&format!("password authentication failed for user \"{}\"", l.user)),
                    "{text}"
                );
                assert!(text.contains(&format!("127.0.0.1:{}", node.port())), "{text}");
                assert_hides(err, wrong);
                assert_hides(err, l.password);
            }

            let cfg = config(&dsn(&node, l.user));
            let err = Client::connect(&cfg).await.unwrap_err();
            assert!(matches!(err, Error::Auth { .. }), "{err:?}");
            assert!(!err.is_retryable());
            let text = err.to_string();
            assert!(text.contains("none was given") && text.contains("PGPASSWORD"), "{text}");
        }
        // The trust role does not need one, and ignores one it is given.
        let cfg = config(&dsn_with_password(&node, "u_trust", wrong));
        assert_eq!(log_in_both_ways(&cfg).await.unwrap(), "u_trust");
    }

    /// With no password in the DSN, `PGPASSWORD` and then the pgpass file (from `passfile`,
    /// `PGPASSFILE` or `$HOME/.pgpass`) supply it, in libpq's order of precedence.
    async fn password_from_pgpassword_and_pgpass(pg: Install) {
        let node = start(&pg);
        let port = node.port().to_string();
        let scram = &LOGINS[3];
        let md5 = &LOGINS[2];
        let base = dsn(&node, scram.user);

        // PGPASSWORD.
        let cfg = config_with_env(&base, &[("PGPASSWORD", scram.password)]);
        assert_eq!(log_in_both_ways(&cfg).await.unwrap(), scram.user);
        // The DSN's password wins over PGPASSWORD.
        let cfg = config_with_env(
            &dsn_with_password(&node, scram.user, scram.password),
            &[("PGPASSWORD", "not-this-one")],
        );
        assert_eq!(log_in_both_ways(&cfg).await.unwrap(), scram.user);
        let cfg = config_with_env(
            &dsn_with_password(&node, scram.user, "not-this-one"),
            &[("PGPASSWORD", scram.password)],
        );
        assert_eq!(Client::connect(&cfg).await.unwrap_err().code(), Some("28P01"));

        // The pgpass file: lines that do not match come first, wildcards and escapes.
        let dir = temp_dir(&format!("pgpass{port}"));
        let file = dir.join("pgpass");
        write_pgpass(
            &file,
            &format!(
                "# comment\n\
                 127.0.0.1:{port}:otherdb:{u}:nope\n\
                 localhost:{port}:{DB}:{u}:nope\n\
                 127.0.0.1:{port}:{DB}:{u}:{pw}\n\
                 *:*:*:{md5u}:{md5pw}\n",
                u = scram.user,
                pw = pgpass_escape(scram.password),
                md5u = md5.user,
                md5pw = pgpass_escape(md5.password),
            ),
        );
        let file_text = file.to_str().unwrap();
        let via_key = config(&format!("{base} passfile={}", quote_dsn_value(file_text)));
        let via_env = config_with_env(&base, &[("PGPASSFILE", file_text)]);
        for cfg in [&via_key, &via_env] {
            assert_eq!(log_in_both_ways(cfg).await.unwrap(), scram.user);
        }
        let cfg = config_with_env(&dsn(&node, md5.user), &[("PGPASSFILE", file_text)]);
        assert_eq!(log_in_both_ways(&cfg).await.unwrap(), md5.user);

        // $HOME/.pgpass.
        let home = temp_dir(&format!("home{port}"));
        write_pgpass(
            &home.join(".pgpass"),
            &format!("*:{port}:*:{}:{}\n", scram.user, pgpass_escape(scram.password)),
        );
        let home_text = home.to_str().unwrap();
        let cfg = config_with_env(&base, &[("HOME", home_text)]);
        assert_eq!(log_in_both_ways(&cfg).await.unwrap(), scram.user);

        // PGPASSWORD wins over the file; an empty PGPASSWORD counts as unset (as in libpq).
        let cfg = config_with_env(&base, &[("HOME", home_text), ("PGPASSWORD", "not-this-one")]);
        assert_eq!(Client::connect(&cfg).await.unwrap_err().code(), Some("28P01"));
        let cfg = config_with_env(&base, &[("HOME", home_text), ("PGPASSWORD", "")]);
        assert_eq!(log_in_both_ways(&cfg).await.unwrap(), scram.user);

        // A file readable by others is ignored, as libpq does.
        std::fs::set_permissions(home.join(".pgpass"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let cfg = config_with_env(&base, &[("HOME", home_text)]);
        assert!(matches!(Client::connect(&cfg).await.unwrap_err(), Error::Auth { .. }));

        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&home).unwrap();
    }

    /// The URL form (percent-encoded password, query parameters) logs in, and
    /// `application_name` reaches the server (default: `pgrepl`).
    async fn url_form_and_application_name(pg: Install) {
        let node = start(&pg);
        let scram = &LOGINS[3];
        let url = format!(
            "postgresql://{}:{}@127.0.0.1:{}/{DB}?application_name=conn_test_app&sslmode=disable&connect_timeout=10",
            scram.user,
            percent_encode(scram.password),
            node.port()
        );
        let cfg = config(&url);
        let mut sql = Client::connect(&cfg).await.unwrap();
        let name = scalar(
            &mut sql,
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .await;
        assert_eq!(name.as_deref(), Some("conn_test_app"));
        let mut plain = Client::connect(&config(&dsn_with_password(&node, scram.user, scram.password)))
            .await
            .unwrap();
        let name = scalar(
            &mut plain,
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .await;
        assert_eq!(name.as_deref(), Some("pgrepl"));
        // A replication session reports it too (it is a walsender in pg_stat_activity).
        let mut repl = ReplicationClient::connect(&cfg).await.unwrap();
        repl.identify_system().await.unwrap();
        let walsenders = scalar(
            &mut plain,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'walsender' AND application_name = 'conn_test_app'",
        )
        .await;
        assert_eq!(walsenders.as_deref(), Some("1"));
    }
}
