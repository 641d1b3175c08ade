//! Both versions are found, runnable by the server's OS user, and described correctly.

use std::process::Command;

use pgrepl_testkit::{Install, SUPPORTED_MAJORS, pg_test};

pg_test! {
    /// The installation is the version asked for and its programs run.
    fn finds_the_version(pg: Install) {
        assert!(SUPPORTED_MAJORS.contains(&pg.major()));
        assert!(
            pg.version().contains(&format!("PostgreSQL) {}.", pg.major())),
            "{}",
            pg.version()
        );
        for program in ["postgres", "initdb", "pg_ctl", "psql", "pg_recvlogical"] {
            assert!(pg.program(program).exists(), "{} has no {program}", pg.bin_dir().display());
        }
        let out = Command::new(pg.program("psql")).arg("--version").output().unwrap();
        assert!(out.status.success());
        // Found once per process: the same answer again.
        assert_eq!(Install::find(pg.major()).unwrap().bin_dir(), pg.bin_dir());
    }

    /// SSL support is read from how the server was built.
    fn knows_whether_it_has_ssl(pg: Install) {
        let configure = Command::new(pg.source_bin_dir().join("pg_config"))
            .arg("--configure")
            .output()
            .unwrap();
        let configure = String::from_utf8_lossy(&configure.stdout);
        let built_with_ssl =
            configure.contains("--with-openssl") || configure.contains("--with-ssl=openssl");
        assert_eq!(pg.supports_ssl(), built_with_ssl, "{configure}");
    }

    /// A version variable naming the wrong version fails the test instead of skipping it.
    fn wrong_version_variable_fails_the_test(pg: Install) {
        let other = SUPPORTED_MAJORS.iter().copied().find(|m| *m != pg.major()).unwrap();
        let other_install = Install::require(other);
        let var = format!("PGREPL_PG{}_BIN", pg.major());
        let test = format!("install::finds_the_version::pg{}", pg.major());
        let out = Command::new(std::env::current_exe().unwrap())
            .args([test.as_str(), "--exact", "--nocapture"])
            .env(&var, other_install.source_bin_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("{var} must name PostgreSQL {}", pg.major())),
            "{stderr}"
        );
    }
}
