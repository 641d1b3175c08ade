//! Throw-away nodes configured as the anchors configure theirs, and the client programs
//! (`psql`, `pgbench`) run against them over TCP, as `anchors/lib.sh` does.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use pgrepl_testkit::{Cluster, Install};

use crate::{Result, fail};

/// The database every workload runs in (the anchors' `ANCHORS_DB`).
pub(crate) const DB: &str = "bench";

/// The settings the anchors append to postgresql.conf, and the overrides of the testkit's own
/// settings that are not PostgreSQL defaults (see [`cluster_conf`]).
pub(crate) fn cluster_conf(preload: &str) -> Vec<String> {
    vec![
        // The anchors' lines (lib.sh `anchors_create`).
        "wal_level = logical".into(),
        "max_replication_slots = 10".into(),
        "max_wal_senders = 10".into(),
        "max_worker_processes = 16".into(),
        "max_logical_replication_workers = 8".into(),
        "track_commit_timestamp = on".into(),
        format!("shared_preload_libraries = '{preload}'"),
        // The testkit sets these for fast tests; the anchors leave them at PostgreSQL's
        // defaults, and so does the benchmark. (`fsync` comes from `durable(true)`; the
        // testkit's logging, timezone and lc_messages lines do not change the work done.)
        "wal_sender_timeout = '60s'".into(),
        "synchronous_commit = on".into(),
        "full_page_writes = on".into(),
    ]
}

/// The settings recorded for every run (the anchors' `anchors_settings`, plus a few).
const SETTINGS_SQL: &str = "SELECT string_agg(name||'='||setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN \
    ('fsync','synchronous_commit','wal_sync_method','full_page_writes','shared_buffers','max_wal_size', \
     'checkpoint_timeout','autovacuum','wal_level','track_commit_timestamp','shared_preload_libraries', \
     'logical_decoding_work_mem','max_worker_processes','max_wal_senders','max_replication_slots', \
     'max_logical_replication_workers','wal_sender_timeout','wal_receiver_timeout', \
     'wal_retrieve_retry_interval','data_directory')";

/// Every setting that is not at its built-in default (except those PostgreSQL or initdb
/// always set), to show what the run changed.
const NONDEFAULT_SQL: &str = "SELECT string_agg(name||'='||setting, ' ' ORDER BY name) FROM pg_settings \
    WHERE source NOT IN ('default', 'override', 'client', 'session') \
      AND name NOT IN ('data_directory', 'config_file', 'hba_file', 'ident_file')";

/// A running node: a testkit cluster plus the client programs of its installation.
#[derive(Debug)]
pub(crate) struct Node {
    /// 1-based, as in the anchors (node1 publishes, node2 subscribes).
    pub(crate) index: usize,
    pub(crate) cluster: Cluster,
    psql: PathBuf,
    pgbench: PathBuf,
}

/// Starts two fresh, durable clusters on disk (the base directory is `PGREPL_TEST_TMPDIR`,
/// which `main` points at the chosen data directory), with database [`DB`].
pub(crate) fn start_nodes(install: &Install, preload: &str) -> Result<Vec<Node>> {
    let mut builder = install.cluster().name("node").database(DB).durable(true);
    for line in cluster_conf(preload) {
        builder = builder.conf(line);
    }
    let clusters = builder.start_many(2)?;
    Ok(clusters
        .into_iter()
        .enumerate()
        .map(|(i, cluster)| Node {
            index: i + 1,
            psql: install.program("psql"),
            pgbench: install.program("pgbench"),
            cluster,
        })
        .collect())
}

/// A command without the caller's `PG*` environment (so nothing redirects it).
pub(crate) fn clean(program: impl Into<PathBuf>) -> Command {
    let mut cmd = Command::new(program.into());
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").current_dir("/");
    cmd
}

/// Output as text, or an error carrying what the program said.
fn checked(what: &str, out: Output) -> Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    fail(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

impl Node {
    /// The TCP port.
    pub(crate) fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The DSN the anchors use: `host=127.0.0.1 port=P dbname=bench user=postgres`.
    pub(crate) fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DB} user=postgres",
            self.port()
        )
    }

    /// `psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p P -U postgres -d bench` with `args`.
    pub(crate) fn psql_command(&self) -> Command {
        let mut cmd = clean(&self.psql);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port().to_string())
            .args(["-U", "postgres", "-d", DB]);
        cmd
    }

    /// One `-c` command string (one implicit transaction unless it says otherwise), as the
    /// anchors' `anchors_sql`: unaligned, tuples only; the output trimmed.
    pub(crate) fn sql(&self, sql: &str) -> Result<String> {
        let out = self
            .psql_command()
            .args(["-At", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        Ok(checked(&format!("psql on node{}: {sql}", self.index), out)?
            .trim()
            .to_owned())
    }

    /// Starts `psql -At` with `sql` written to its standard input (then closed); its output
    /// is piped.
    pub(crate) fn spawn_script(&self, sql: &str) -> Result<std::process::Child> {
        use std::io::Write as _;
        let mut child = self
            .psql_command()
            .arg("-At")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes())?;
        }
        Ok(child)
    }

    /// A script on psql's standard input (the anchors' `anchors_psql NODE <<EOF`); returns
    /// standard output and standard error.
    pub(crate) fn script(&self, sql: &str) -> Result<(String, String)> {
        let out = self.spawn_script(sql)?.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = checked(&format!("psql script on node{}", self.index), out)?;
        Ok((stdout, stderr))
    }

    /// `pgbench ARGS… -h 127.0.0.1 -p P -U postgres bench`, not yet started.
    pub(crate) fn pgbench_command(&self, args: &[&str]) -> Command {
        let mut cmd = clean(&self.pgbench);
        cmd.args(args)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port().to_string())
            .args(["-U", "postgres", DB]);
        cmd
    }

    /// Runs pgbench to completion; its output (stdout and stderr).
    pub(crate) fn pgbench(&self, args: &[&str]) -> Result<String> {
        let out = self.pgbench_command(args).stdin(Stdio::null()).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return fail(format!(
                "pgbench {args:?} on node{} failed ({}):\n{text}",
                self.index, out.status
            ));
        }
        Ok(text)
    }

    /// The relevant settings, one line.
    pub(crate) fn settings(&self) -> Result<String> {
        self.sql(SETTINGS_SQL)
    }

    /// Every setting not at its default, one line.
    pub(crate) fn nondefault_settings(&self) -> Result<String> {
        self.sql(NONDEFAULT_SQL)
    }

    /// The postmaster's pid.
    pub(crate) fn postmaster_pid(&self) -> Result<u32> {
        match self.cluster.postmaster_pid() {
            Some(pid) => Ok(pid),
            None => fail(format!("node{} has no postmaster.pid", self.index)),
        }
    }

    /// Waits until at least `want` replication slots are active (`want` = 0: none is).
    pub(crate) fn wait_slots_active(&self, want: usize) -> Result<()> {
        for _ in 0..600 {
            let active: usize = self
                .sql("SELECT count(*) FROM pg_replication_slots WHERE active")?
                .parse()
                .unwrap_or(0);
            if (want == 0 && active == 0) || (want > 0 && active >= want) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        fail(format!(
            "node{}: waited 60 s for {} active slot(s)",
            self.index,
            if want == 0 {
                "no".into()
            } else {
                want.to_string()
            }
        ))
    }

    /// Notes `pg_current_wal_lsn()` (T) and then commits marker row `id`; returns T (the
    /// anchors' `anchors_mark`).
    pub(crate) fn mark(&self, id: usize) -> Result<String> {
        let lsn = self.sql("SELECT pg_current_wal_lsn()")?;
        self.sql(&format!(
            "INSERT INTO anchors_marker VALUES ({id}, '{lsn}', clock_timestamp())"
        ))?;
        Ok(lsn)
    }

    /// The current progress of a replication origin ("0/0" if none).
    pub(crate) fn origin_lsn(&self, origin: &str) -> Result<String> {
        self.sql(&format!(
            "SELECT coalesce(pg_replication_origin_progress('{origin}', false), '0/0')"
        ))
    }
}

/// The SQL condition "origin's applied (not necessarily flushed) remote LSN ≥ LSN".
pub(crate) fn cond_origin(origin: &str, lsn: &str) -> String {
    format!("coalesce(pg_replication_origin_progress('{origin}', false), '0/0') >= '{lsn}'::pg_lsn")
}

/// The SQL condition "origin's progress moved past `first0`" (first backlog commit applied).
pub(crate) fn cond_origin_moved(origin: &str, first0: &str) -> String {
    format!(
        "coalesce(pg_replication_origin_progress('{origin}', false), '0/0') > '{first0}'::pg_lsn"
    )
}

/// The anchors' server-side waiter (`anchors_wait_until`): a DO loop on the node that
/// evaluates `done` every `poll_s`, COMMITting between polls (no snapshot or xmin held), and
/// reports the server's `clock_timestamp()` when `first`, then `done`, was first true.
pub(crate) fn waiter_script(done: &str, first: &str, timeout_s: u64, poll_s: f64) -> String {
    format!(
        r#"DO $anchors$
DECLARE
  deadline timestamptz := clock_timestamp() + make_interval(secs => {timeout_s});
  first_seen double precision;
  done_at double precision;
BEGIN
  LOOP
    IF first_seen IS NULL AND ({first}) THEN
      first_seen := extract(epoch FROM clock_timestamp());
    END IF;
    IF ({done}) THEN
      done_at := extract(epoch FROM clock_timestamp());
      EXIT;
    END IF;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'anchors: timeout after {timeout_s}s';
    END IF;
    COMMIT;
    PERFORM pg_sleep({poll_s});
  END LOOP;
  RAISE NOTICE 'ANCHORS_DONE % %', coalesce(first_seen, done_at), done_at;
END
$anchors$;
"#
    )
}

/// Parses the waiter's `ANCHORS_DONE first done` notice.
pub(crate) fn parse_waiter(stderr: &str) -> Option<(f64, f64)> {
    let line = stderr.lines().find(|l| l.contains("ANCHORS_DONE "))?;
    let rest = line.split("ANCHORS_DONE ").nth(1)?;
    let mut parts = rest.split_whitespace();
    let first = parts.next()?.parse().ok()?;
    let done = parts.next()?.parse().ok()?;
    Some((first, done))
}

/// Seconds since the Unix epoch, the clock the server's `clock_timestamp()` uses too.
pub(crate) fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
