//! Every bad configuration ends the command with exit status 2 and one clear message that names
//! the problem and the fix — no panic, no backtrace — and no password ever appears.

use pgrepl_testkit::{Cluster, Install, pg_test};

use crate::support::{self, DB, TempDir, free_port};

const PASSWORD: &str = "Sup3r-s3cret-pw";
const WRONG: &str = "Wr0ng-guess-pw";

fn dsn(c: &Cluster, password: &str) -> String {
    format!("{} password={password}", c.dsn(DB))
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn config(tables: &str, node1: &str, node2: &str, extra: &str) -> String {
    format!(
        "[cluster]\nname = \"t\"\n{tables}\n{extra}\n\
         [[nodes]]\nname = \"node1\"\ndsn = \"{node1}\"\n\
         [[nodes]]\nname = \"node2\"\ndsn = \"{node2}\"\n"
    )
}

/// Runs `command --config file`, checks the failure's shape and that no password shows, and
/// returns stderr.
fn fails(command: &str, file: &str, expected: &[&str]) -> String {
    let out = support::bidir(&[command, "--config", file]);
    let stderr = out.fails_clearly().to_owned();
    for secret in [PASSWORD, WRONG] {
        assert!(
            !out.all().contains(secret),
            "{command}: password shown:\n{}",
            out.all()
        );
    }
    for e in expected {
        assert!(
            stderr.contains(e),
            "{command}: expected {e:?} in:\n{}",
            out.all()
        );
    }
    stderr
}

pg_test! {
    fn bad_configurations_fail_clearly_without_showing_passwords(pg: Install) {
        let node = pg
            .cluster()
            .database(DB)
            .hba_replace([
                "host all all 127.0.0.1/32 scram-sha-256",
                "host replication all 127.0.0.1/32 scram-sha-256",
            ])
            .superuser_password(PASSWORD)
            .start()
            .unwrap();
        node.psql(DB, "CREATE TABLE items (id int PRIMARY KEY);").unwrap();
        let good = dsn(&node, PASSWORD);
        let dir = TempDir::new("config");
        let tables = "tables = [\"items\"]";

        // The file itself.
        fails("setup", dir.0.join("missing.toml").to_str().unwrap(), &["cannot read the configuration file", "fix:"]);
        let f = write(&dir, "malformed.toml", &format!(
            "[cluster]\nname = \"t\"\ntables = [\"items\"]\n[[nodes]]\nname = \"node1\"\ndsn = \"{good}\n"
        ));
        fails("setup", &f, &["malformed.toml, line 6", "fix:"]);
        let f = write(&dir, "typo.toml", &config("tabels = [\"items\"]", &good, &good, ""));
        fails("status", &f, &["unknown field `tabels`"]);
        let f = write(&dir, "resolver.toml", &config(tables, &good, &good, "conflict_resolver = \"newest\""));
        fails("run", &f, &["unknown conflict resolver \"newest\"", "last_update_wins"]);
        let f = write(&dir, "kind.toml", &config(tables, &good, &good, "[cluster.conflict_resolvers]\nupdate_gone = \"error\""));
        fails("setup", &f, &["unknown conflict kind \"update_gone\""]);
        let f = write(&dir, "dup.toml", &config(tables, &good, &good, "").replace("node2", "node1"));
        fails("setup", &f, &["node name \"node1\" is used twice"]);
        let f = write(&dir, "name.toml", &config(tables, &good, &good, "").replace("\"node2\"", "\"Node-2\""));
        fails("verify", &f, &["invalid node name \"Node-2\"", "lower-case letters"]);
        let f = write(&dir, "dsn.toml", &config(tables, &good, &format!("{good} sslmode=sometimes"), ""));
        fails("setup", &f, &["node \"node2\"", "invalid value \"sometimes\" for connection option \"sslmode\""]);
        let f = write(&dir, "url.toml", &config(
            tables,
            &good,
            &format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{DB}?sslmode=maybe", node.port()),
            "",
        ));
        fails("setup", &f, &["invalid value \"maybe\""]);

        // The nodes.
        let f = write(&dir, "table.toml", &config("tables = [\"public.nope\"]", &good, &good, ""));
        fails("setup", &f, &["table public.nope does not exist", "fix:"]);
        let down = format!("host=127.0.0.1 port={} dbname={DB} user=postgres password={PASSWORD}", free_port());
        let f = write(&dir, "down.toml", &config(tables, &good, &down, ""));
        for command in ["setup", "verify", "teardown"] {
            fails(command, &f, &["node node2", "could not connect", "fix: check that the server is running"]);
        }
        // status reports a node that is down; it does not fail.
        let out = support::bidir(&["status", "--config", &f]);
        assert!(out.ok().contains("node2 down:"), "{}", out.all());
        assert!(!out.all().contains(PASSWORD));
        let f = write(&dir, "password.toml", &config(tables, &good, &dsn(&node, WRONG), ""));
        fails("setup", &f, &["password authentication failed", "fix: check the password"]);
        // run: a wrong password is a definite failure of every link into or out of node2.
        let running = support::Running::spawn(support::command(&["run", "--config", &f]), None);
        let (out, _) = running.wait_exit(std::time::Duration::from_secs(60));
        assert_eq!(out.code(), 1, "{}", out.all());
        assert!(out.stderr.contains("password authentication failed"), "{}", out.all());
        assert!(out.stderr.contains("no link is running any more"), "{}", out.all());
        for secret in [PASSWORD, WRONG] {
            assert!(!out.all().contains(secret), "password shown:\n{}", out.all());
        }
        // --node must name a node.
        let f = write(&dir, "good.toml", &config(tables, &good, &good, ""));
        let out = support::bidir(&["run", "--config", &f, "--node", "node9"]);
        assert!(out.fails_clearly().contains("no node named \"node9\""), "{}", out.all());
        // A bad command line is clap's usage error (status 2), not a panic.
        let out = support::bidir(&["setup", "--config", &f, "--bogus"]);
        assert_eq!(out.code(), 2);
        assert!(out.stderr.contains("--bogus"), "{}", out.all());
    }
}
