//! pg_hba rules, passwords and TLS as tests of authentication need them.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use pgrepl_testkit::{Error, Install, TestCa, pg_test};

pg_test! {
    /// `hba_replace` with scram-sha-256 on TCP: a password is needed and works; psql over the
    /// socket still works.
    async fn scram_password_on_tcp(pg: Install) {
        let node = pg
            .cluster()
            .hba_replace([
                "host all all 127.0.0.1/32 scram-sha-256",
                "host replication all 127.0.0.1/32 scram-sha-256",
            ])
            .superuser_password("s3cret 'pass'")
            .start()
            .unwrap();
        assert!(node.connect("postgres").await.is_err());
        let dsn = format!("{} password='s3cret \\'pass\\''", node.dsn("postgres"));
        let client = node.connect_dsn(&dsn).await.unwrap();
        let stored: String = client
            .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'", &[])
            .await
            .unwrap()
            .get(0);
        assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
        assert_eq!(node.psql("postgres", "SELECT 1").unwrap(), "1\n");
    }

    /// `password_encryption = md5` and an md5 rule put before the default trust rules.
    async fn md5_password_on_tcp(pg: Install) {
        let node = pg
            .cluster()
            .password_encryption("md5")
            .hba_prepend("host all all 127.0.0.1/32 md5")
            .superuser_password("pw")
            .start()
            .unwrap();
        assert!(node.connect("postgres").await.is_err());
        let client = node
            .connect_dsn(&format!("{} password=pw", node.dsn("postgres")))
            .await
            .unwrap();
        let stored: String = client
            .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'", &[])
            .await
            .unwrap()
            .get(0);
        assert!(stored.starts_with("md5"), "{stored}");
    }

    /// Where the installation has SSL, a cluster serves TLS that verifies against the test CA
    /// (`sslmode=verify-full`); where it has not, asking for TLS is a clear error.
    fn tls_where_supported(pg: Install) {
        let ca = TestCa::generate().unwrap();
        let builder = pg
            .cluster()
            .ssl(ca.server_files().unwrap())
            .hba_replace(["hostssl all all 127.0.0.1/32 trust"]);
        if !pg.supports_ssl() {
            let err = builder.start().unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err}");
            assert!(err.to_string().contains("without SSL"), "{err}");
            return;
        }
        let node = builder.start().unwrap();
        let root = node.dir().join("client-root.crt");
        std::fs::write(&root, ca.cert_pem()).unwrap();
        let query = |sslmode: &str| {
            Command::new(pg.program("psql"))
                .args(["-X", "-A", "-t", "-c"])
                .arg("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .arg(format!(
                    "{} sslmode={sslmode} sslrootcert={}",
                    node.dsn("postgres"),
                    root.display()
                ))
                .output()
                .unwrap()
        };
        let out = query("verify-full");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "t\n");
        // hostssl only: a plain connection is refused.
        assert!(!query("disable").status.success());
    }

    /// `hostssl … cert`: a client certificate from the test CA, named after the user, logs in;
    /// without one the server refuses.
    fn client_certificate_where_supported(pg: Install) {
        let ca = TestCa::generate().unwrap();
        let builder = pg
            .cluster()
            .ssl(ca.server_files().unwrap())
            .hba_replace(["hostssl all all 127.0.0.1/32 cert"]);
        if !pg.supports_ssl() {
            let err = builder.start().unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err}");
            return;
        }
        let node = builder.start().unwrap();
        let client = ca.client_cert("postgres").unwrap();
        let (root, cert, key) = (
            node.dir().join("client-root.crt"),
            node.dir().join("client.crt"),
            node.dir().join("client.key"),
        );
        std::fs::write(&root, ca.cert_pem()).unwrap();
        std::fs::write(&cert, &client.cert_pem).unwrap();
        std::fs::write(&key, &client.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let query = |with_cert: bool| {
            let mut dsn = format!(
                "{} sslmode=verify-full sslrootcert={}",
                node.dsn("postgres"),
                root.display()
            );
            if with_cert {
                dsn.push_str(&format!(" sslcert={} sslkey={}", cert.display(), key.display()));
            }
            Command::new(pg.program("psql"))
                .args(["-X", "-A", "-t", "-c", "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
                .arg(dsn)
                .output()
                .unwrap()
        };
        let out = query(true);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/CN=postgres\n");
        assert!(!query(false).status.success());
    }
}
