//! Throw-away clusters: configure, start, stop, crash, restart, clean up.
//!
//! A cluster lives in its own directory, `<base>/pgrepl-test-<name>-<pid>-<start>-<n>`, where
//! `<base>` is `PGREPL_TEST_TMPDIR`, else `/dev/shm` (a tmpfs with 2 GiB free), else `/tmp`:
//!
//! ```text
//! pgrepl-test-node1-…/
//!   OWNER        bin directory of the installation (for the reaper)
//!   server.log   everything the server wrote (logging_collector = off)
//!   .s.PGSQL.N   the Unix socket
//!   data/        the data directory, owned by the server's OS user, mode 0700
//!     pgrepl_testkit.conf   the harness's settings, included by postgresql.conf
//! ```
//!
//! The server listens on 127.0.0.1 only, on a port picked at random from 20000–31999
//! (below Linux's ephemeral range, so outgoing connections cannot occupy it between a stop and
//! a start) after checking that it can be bound. Another process can still take the port in
//! the moment between that check and the server's bind; the server then exits with "could not
//! bind", and the start is retried on another port.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::install::Install;
use crate::process::{self, ServerUser};
use crate::reap::{self, CLUSTER_DIR_PREFIX, KEPT_FILE, OWNER_FILE};
use crate::template;

/// The database superuser the harness creates and connects as.
pub const SUPERUSER: &str = "postgres";
/// The address every cluster listens on.
pub const HOST: &str = "127.0.0.1";

/// The name of the settings file in the data directory that the harness writes.
const CONF_FILE: &str = "pgrepl_testkit.conf";
/// How many ports to try when a port is taken between the check and the server's bind.
const PORT_ATTEMPTS: usize = 20;
/// How long a server may take to start or stop.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the server log printed when a test fails.
const FAILURE_LOG_LINES: usize = 60;

/// `sh -c` script that runs `postgres "$@"` and stops it (SIGQUIT, immediate shutdown) as
/// soon as its stdin reaches EOF, which happens when the test process closes the pipe or
/// dies. It exits with the server's status when the server exits first.
///
/// Asynchronous commands of a non-interactive shell get stdin from /dev/null, so the pipe is
/// handed to the watchdog as fd 3; the server itself gets neither.
const WATCHDOG: &str = r#"exec 3<&0 </dev/null
"$@" 3<&- &
pg=$!
( read -r _ <&3; kill -QUIT "$pg" 2>/dev/null ) &
watchdog=$!
exec 3<&-
wait "$pg"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status""#;

/// Certificate and key (PEM) that a cluster serves TLS with, and optionally a CA (PEM) whose
/// client certificates it trusts (`ssl_ca_file`, for `hostssl … cert` rules).
#[derive(Debug, Clone)]
pub struct SslFiles {
    /// `server.crt`.
    pub cert_pem: Vec<u8>,
    /// `server.key` (written with mode 0600, as PostgreSQL demands).
    pub key_pem: Vec<u8>,
    /// `root.crt`, if client certificates are to be verified.
    pub ca_pem: Option<Vec<u8>>,
}

/// Configures a cluster before it starts. Made by [`Install::cluster`].
///
/// ```no_run
/// # fn main() -> Result<(), pgrepl_testkit::Error> {
/// let pg = pgrepl_testkit::Install::find(18)?;
/// let node = pg
///     .cluster()
///     .name("node1")
///     .conf("max_connections = 50")
///     .hba_prepend("host all all 127.0.0.1/32 scram-sha-256")
///     .superuser_password("s3cret")
///     .database("practice")
///     .start()?;
/// println!("{}", node.dsn("practice"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start`"]
pub struct ClusterBuilder {
    install: Install,
    name: Option<String>,
    conf: Vec<String>,
    hba_prepend: Vec<String>,
    hba_tcp: Option<Vec<String>>,
    superuser_password: Option<String>,
    ssl: Option<SslFiles>,
    databases: Vec<String>,
    durable: bool,
    initdb_args: Vec<String>,
    keep: bool,
}

impl Install {
    /// A builder for a cluster of this installation.
    pub fn cluster(&self) -> ClusterBuilder {
        ClusterBuilder {
            install: self.clone(),
            name: None,
            conf: Vec::new(),
            hba_prepend: Vec::new(),
            hba_tcp: None,
            superuser_password: None,
            ssl: None,
            databases: Vec::new(),
            durable: false,
            initdb_args: Vec::new(),
            keep: false,
        }
    }

    /// Starts a cluster with the default configuration.
    ///
    /// # Errors
    /// See [`ClusterBuilder::start`].
    pub fn start_cluster(&self) -> Result<Cluster> {
        self.cluster().start()
    }
}

impl ClusterBuilder {
    /// Names the cluster, for its directory and messages (letters, digits and `_` are kept,
    /// at most 20 of them).
    pub fn name(mut self, name: &str) -> Self {
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(20)
            .collect();
        self.name = (!clean.is_empty()).then_some(clean);
        self
    }

    /// Adds a line to the server's configuration, after the harness's own settings (so it
    /// overrides them), e.g. `conf("wal_sender_timeout = '60s'")`.
    pub fn conf(mut self, line: impl Into<String>) -> Self {
        self.conf.push(line.into());
        self
    }

    /// Adds a pg_hba.conf rule before the default TCP rules (the first matching rule wins),
    /// e.g. `hba_prepend("host all all 127.0.0.1/32 md5")`.
    pub fn hba_prepend(mut self, line: impl Into<String>) -> Self {
        self.hba_prepend.push(line.into());
        self
    }

    /// Replaces the default TCP rules of pg_hba.conf (`host all all 127.0.0.1/32 trust` and
    /// `host replication all 127.0.0.1/32 trust`) with `lines`. The harness's own rules for
    /// the Unix socket (`local all all trust`, `local replication all trust`) always stay
    /// first, so `psql` and setup keep working whatever the test does to TCP.
    pub fn hba_replace<I, S>(mut self, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.hba_tcp = Some(lines.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `password_encryption` (`md5` or `scram-sha-256`), which decides how
    /// [`superuser_password`](Self::superuser_password) is stored.
    pub fn password_encryption(self, method: &str) -> Self {
        self.conf(format!("password_encryption = '{}'", conf_escape(method)))
    }

    /// Gives the superuser `postgres` this password once the server is up (over the Unix
    /// socket). [`Cluster::dsn`] does not include it.
    pub fn superuser_password(mut self, password: impl Into<String>) -> Self {
        self.superuser_password = Some(password.into());
        self
    }

    /// Serves TLS with these files: they are written into the data directory, owned by the
    /// server's OS user with the modes PostgreSQL requires, and `ssl = on` is set.
    /// Starting fails with [`Error::Unsupported`] if the installation lacks SSL support
    /// (see [`Install::supports_ssl`]).
    pub fn ssl(mut self, files: SslFiles) -> Self {
        self.ssl = Some(files);
        self
    }

    /// Creates this database once the server is up.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.databases.push(name.into());
        self
    }

    /// Turns `fsync` on. By default it is off, which is safe against the server crashing
    /// ([`Cluster::stop_immediate`]) but not against the machine crashing, and much faster.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Passes an extra option to initdb (e.g. `--data-checksums`). Each distinct set of
    /// options gets its own cached template.
    pub fn initdb_arg(mut self, arg: impl Into<String>) -> Self {
        self.initdb_args.push(arg.into());
        self
    }

    /// Keeps the cluster's directory when the [`Cluster`] is dropped (it is always kept when
    /// the thread is panicking). `PGREPL_KEEP=1` does this for every cluster.
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Creates the cluster (a copy of a cached initdb template), starts it and waits until
    /// it accepts connections, then sets the password and creates the databases.
    ///
    /// # Errors
    /// When the server user is missing, a file cannot be written, initdb or the server fails
    /// (the error carries the end of the server log), or psql fails.
    pub fn start(self) -> Result<Cluster> {
        let user = ServerUser::get()?;
        if self.ssl.is_some() && !self.install.supports_ssl() {
            return Err(Error::Unsupported {
                version: self.install.version().to_owned(),
                bin_dir: self.install.bin_dir().to_owned(),
                reason: "was built without SSL support, so it cannot serve TLS; check \
                         `Install::supports_ssl()` first (Debian's PostgreSQL 15 has SSL)"
                    .to_owned(),
            });
        }
        reap::reap_once();
        let template = template::ensure(&self.install, &self.initdb_args, user)?;

        let name = self.name.clone().unwrap_or_else(|| "pg".to_owned());
        let base = fsutil::base_dir();
        fsutil::ensure_public_dir(&base)?;
        let dir = base.join(format!(
            "{CLUSTER_DIR_PREFIX}{name}-{}",
            fsutil::unique_suffix()
        ));
        fsutil::create_dir(&dir, 0o700, user.owner())
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let keep = self.keep || std::env::var_os("PGREPL_KEEP").is_some_and(|v| v != "0");
        // From here on, Drop cleans up whatever happens.
        let mut cluster = Cluster {
            install: self.install.clone(),
            name,
            data_dir: dir.join("data"),
            log_path: dir.join("server.log"),
            dir,
            port: 0,
            server: None,
            keep,
        };
        cluster.prepare(&self, &template, user)?;

        let mut last_conflict = String::new();
        let mut started = false;
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = pick_port();
            cluster.write_conf(&self, user)?;
            match cluster.spawn(user)? {
                Spawn::Ready => {
                    started = true;
                    break;
                }
                Spawn::PortTaken(log) => last_conflict = log,
            }
        }
        if !started {
            return Err(Error::Start {
                data_dir: cluster.data_dir.clone(),
                reason: format!("every one of {PORT_ATTEMPTS} ports tried was taken"),
                log: cluster.log_path.clone(),
                log_tail: last_conflict,
            });
        }
        if let Some(password) = &self.superuser_password {
            cluster.psql_vars(
                "postgres",
                "ALTER ROLE postgres PASSWORD :'password';",
                &[("password", password)],
            )?;
        }
        for db in &self.databases {
            cluster.psql_vars("postgres", "CREATE DATABASE :\"db\";", &[("db", db)])?;
        }
        Ok(cluster)
    }

    /// Starts `n` clusters with this configuration, named `node1` … `nodeN` (or
    /// `<name>1` … if [`name`](Self::name) was set), in parallel.
    ///
    /// # Errors
    /// The first error of any of them; the others are stopped and removed.
    pub fn start_many(self, n: usize) -> Result<Vec<Cluster>> {
        let prefix = self.name.clone().unwrap_or_else(|| "node".to_owned());
        let results: Vec<Result<Cluster>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=n)
                .map(|i| {
                    let builder = self.clone().name(&format!("{prefix}{i}"));
                    scope.spawn(move || builder.start())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Server {
                            data_dir: PathBuf::new(),
                            reason: "the thread starting this cluster panicked".to_owned(),
                        })
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }
}

/// Ports handed out in this process, never handed out twice.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that could be bound just now and was not handed out before in this
/// process, from 20000–31999.
fn pick_port() -> u16 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut used = PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    let used = used.get_or_insert_with(HashSet::new);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut state = fsutil::stable_hash(&[
        &std::process::id().to_le_bytes(),
        &nanos.to_le_bytes(),
        &SEQ.fetch_add(1, Ordering::Relaxed).to_le_bytes(),
    ]);
    let mut candidate = 20000;
    for _ in 0..1000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // 20000 + (0..12000): the top bits of an LCG are the good ones.
        candidate = 20000 + u16::try_from((state >> 33) % 12000).unwrap_or(0);
        if !used.contains(&candidate) && TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)).is_ok()
        {
            break;
        }
    }
    used.insert(candidate);
    candidate
}

/// How a spawn ended.
enum Spawn {
    Ready,
    /// The port was taken; the log lines that say so.
    PortTaken(String),
}

/// The running server: the watchdog shell and the pipe that keeps it from stopping the server.
#[derive(Debug)]
struct Server {
    child: Child,
    lifeline: Option<ChildStdin>,
}

/// A throw-away PostgreSQL cluster. Stopped and removed on drop; kept (and its log printed to
/// stderr) if the thread is panicking, so a failed test leaves its evidence.
#[derive(Debug)]
pub struct Cluster {
    install: Install,
    name: String,
    dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    server: Option<Server>,
    keep: bool,
}

impl Cluster {
    /// The installation it runs.
    pub fn install(&self) -> &Install {
        &self.install
    }

    /// Its name (as given to the builder, or `pg`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on [`HOST`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A key=value DSN for database `dbname` as [`SUPERUSER`] over TCP on [`HOST`], e.g.
    /// `host=127.0.0.1 port=23456 user=postgres dbname=practice`.
    pub fn dsn(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={}",
            self.port,
            dsn_value(dbname)
        )
    }

    /// The same as [`dsn`](Self::dsn) in URL form: `postgresql://postgres@127.0.0.1:23456/db`.
    pub fn url(&self, dbname: &str) -> String {
        let mut db = String::new();
        for byte in dbname.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                db.push(char::from(byte));
            } else {
                let _ = write!(db, "%{byte:02X}");
            }
        }
        format!("postgresql://{SUPERUSER}@{HOST}:{}/{db}", self.port)
    }

    /// The cluster's directory (data directory, log and socket inside).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the server has logged so far (lossy UTF-8; empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        fsutil::tail(&self.log_path, lines)
    }

    /// Whether the server is running (as far as this handle started it).
    pub fn is_running(&self) -> bool {
        self.server.is_some()
            && self
                .postmaster_pid()
                .is_some_and(|pid| process::process_alive(pid, None))
    }

    /// The postmaster's pid, from `postmaster.pid`, while it exists.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Runs the SQL script `sql` in database `db` with the installation's `psql`, over the
    /// Unix socket, with `-X -v ON_ERROR_STOP=1` (stops at the first error and fails).
    /// Returns what it printed: unaligned, tuples only (`-A -t`), fields separated by `|`,
    /// one row per line, no command tags.
    ///
    /// # Errors
    /// [`Error::Command`] with psql's output when any statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        self.psql_vars(db, sql, &[])
    }

    /// Like [`psql`](Self::psql), with psql variables set (`-v name=value`), which the script
    /// can interpolate safely quoted as `:'name'` (a literal) or `:"name"` (an identifier).
    ///
    /// # Errors
    /// [`Error::Command`] with psql's output when any statement fails.
    pub fn psql_vars(&self, db: &str, sql: &str, vars: &[(&str, &str)]) -> Result<String> {
        let mut cmd = process::clean_command(self.install.program("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db])
            .env("PGAPPNAME", "pgrepl-testkit")
            .env("PGCONNECT_TIMEOUT", "30");
        for (name, value) in vars {
            cmd.arg("-v").arg(format!("{name}={value}"));
        }
        cmd.args(["-f", "-"]);
        process::run(&mut cmd, Some(sql.as_bytes()))
    }

    /// Stops the server (fast shutdown: sessions are disconnected, a shutdown checkpoint is
    /// written). Does nothing if it is not running.
    ///
    /// # Errors
    /// When pg_ctl fails and the server is still running.
    pub fn stop(&mut self) -> Result<()> {
        self.stop_mode("fast")
    }

    /// Crashes the server: `pg_ctl stop -m immediate` (every process quits at once, no
    /// checkpoint; the next start runs crash recovery). Committed data survives, since the
    /// files stay in the OS cache even with `fsync = off`.
    ///
    /// # Errors
    /// When pg_ctl fails and the server is still running.
    pub fn stop_immediate(&mut self) -> Result<()> {
        self.stop_mode("immediate")
    }

    /// Starts the server again after a stop, on the same port (waiting up to a minute for
    /// the port if something else holds it). Does nothing if it is running.
    ///
    /// # Errors
    /// When the server does not start.
    pub fn start(&mut self) -> Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        let user = ServerUser::get()?;
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            match self.spawn(user)? {
                Spawn::Ready => return Ok(()),
                Spawn::PortTaken(log) if Instant::now() >= deadline => {
                    return Err(Error::Start {
                        data_dir: self.data_dir.clone(),
                        reason: format!("port {} stayed taken", self.port),
                        log: self.log_path.clone(),
                        log_tail: log,
                    });
                }
                Spawn::PortTaken(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Stops (fast) and starts the server.
    ///
    /// # Errors
    /// When either fails.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Makes the server re-read its configuration files (`pg_ctl reload`) and waits until the
    /// postmaster has done so. Sessions apply it before their next statement.
    ///
    /// # Errors
    /// When pg_ctl fails or the postmaster does not reload within a minute.
    pub fn reload(&self) -> Result<()> {
        const RELOADED: &str = "received SIGHUP, reloading configuration files";
        let before = self.log().matches(RELOADED).count();
        let user = ServerUser::get()?;
        let mut cmd = user.command(self.install.program("pg_ctl"));
        cmd.arg("reload")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg("--silent");
        process::run(&mut cmd, None)?;
        let deadline = Instant::now() + SERVER_TIMEOUT;
        while self.log().matches(RELOADED).count() <= before {
            if Instant::now() >= deadline {
                return Err(Error::Server {
                    data_dir: self.data_dir.clone(),
                    reason: "the postmaster did not log that it reloaded its configuration"
                        .to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Keeps the cluster's directory after drop (see [`ClusterBuilder::keep`]), and returns
    /// its path.
    pub fn keep(&mut self) -> &Path {
        self.keep = true;
        &self.dir
    }

    /// Copies the template, writes the owner file, pg_hba.conf and TLS files.
    fn prepare(&self, builder: &ClusterBuilder, template: &Path, user: &ServerUser) -> Result<()> {
        let owner = user.owner();
        fsutil::write_file(
            &self.dir.join(OWNER_FILE),
            format!("{}\n", self.install.bin_dir().display()).as_bytes(),
            0o644,
            None,
        )?;
        fsutil::copy_tree(template, &self.data_dir, owner)?;

        let mut hba = String::from(
            "# Written by pgrepl-testkit. The harness's own access over the Unix socket first:\n\
             local all all trust\n\
             local replication all trust\n",
        );
        if !builder.hba_prepend.is_empty() {
            hba.push_str("# The test's rules:\n");
            for line in &builder.hba_prepend {
                hba.push_str(line);
                hba.push('\n');
            }
        }
        match &builder.hba_tcp {
            Some(lines) => {
                hba.push_str("# The test's TCP rules:\n");
                for line in lines {
                    hba.push_str(line);
                    hba.push('\n');
                }
            }
            None => hba.push_str(
                "# Default TCP rules:\n\
                 host all all 127.0.0.1/32 trust\n\
                 host replication all 127.0.0.1/32 trust\n",
            ),
        }
        fsutil::write_file(
            &self.data_dir.join("pg_hba.conf"),
            hba.as_bytes(),
            0o600,
            owner,
        )?;

        if let Some(ssl) = &builder.ssl {
            let data = &self.data_dir;
            fsutil::write_file(&data.join("server.crt"), &ssl.cert_pem, 0o644, owner)?;
            fsutil::write_file(&data.join("server.key"), &ssl.key_pem, 0o600, owner)?;
            if let Some(ca) = &ssl.ca_pem {
                fsutil::write_file(&data.join("root.crt"), ca, 0o644, owner)?;
            }
        }

        let conf_path = self.data_dir.join("postgresql.conf");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(|e| Error::io(format!("opening {}", conf_path.display()), e))?;
        writeln!(conf, "\ninclude '{CONF_FILE}'")
            .map_err(|e| Error::io(format!("writing {}", conf_path.display()), e))?;
        Ok(())
    }

    /// Writes the harness's settings, with the current port.
    fn write_conf(&self, builder: &ClusterBuilder, user: &ServerUser) -> Result<()> {
        let mut conf = format!(
            "# Written by pgrepl-testkit; the test's own lines come last and win.\n\
             listen_addresses = '{HOST}'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             wal_level = logical\n\
             track_commit_timestamp = on\n\
             max_replication_slots = 16\n\
             max_wal_senders = 16\n\
             max_worker_processes = 16\n\
             max_logical_replication_workers = 8\n\
             wal_sender_timeout = '5s'\n\
             fsync = {fsync}\n\
             logging_collector = off\n\
             log_destination = 'stderr'\n\
             log_line_prefix = '%m [%p] %q%a '\n\
             log_timezone = 'UTC'\n\
             timezone = 'UTC'\n\
             lc_messages = 'C'\n",
            port = self.port,
            socket = conf_escape(&self.dir.to_string_lossy()),
            fsync = if builder.durable { "on" } else { "off" },
        );
        if builder.ssl.is_some() {
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            if builder.ssl.as_ref().is_some_and(|s| s.ca_pem.is_some()) {
                conf.push_str("ssl_ca_file = 'root.crt'\n");
            }
        }
        if !builder.conf.is_empty() {
            conf.push_str("# The test's settings:\n");
            for line in &builder.conf {
                conf.push_str(line);
                conf.push('\n');
            }
        }
        fsutil::write_file(
            &self.data_dir.join(CONF_FILE),
            conf.as_bytes(),
            0o600,
            user.owner(),
        )
    }

    /// Starts `postgres` under the watchdog and waits until it is ready or has exited.
    fn spawn(&mut self, user: &ServerUser) -> Result<Spawn> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| Error::io(format!("opening {}", self.log_path.display()), e))?;
        let log_start = log.metadata().map_or(0, |m| m.len());
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", self.log_path.display()), e))?;
        let mut cmd = user.command("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("pgrepl-testkit-watchdog")
            .arg(self.install.program("postgres"))
            .arg("-D")
            .arg(&self.data_dir)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting `{}`", process::display(&cmd)), e))?;
        let lifeline = child.stdin.take();
        let mut server = Server { child, lifeline };
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Some(status) = server
                .child
                .try_wait()
                .map_err(|e| Error::io("waiting for postgres", e))?
            {
                let new_log = self.log_since(log_start);
                if PORT_TAKEN.iter().any(|m| new_log.contains(m)) {
                    return Ok(Spawn::PortTaken(new_log));
                }
                return Err(self.start_error(format!("postgres exited ({status})")));
            }
            if self.ready(server.child.id()) {
                self.server = Some(server);
                return Ok(Spawn::Ready);
            }
            if Instant::now() >= deadline {
                self.server = Some(server);
                let _ = self.stop_immediate();
                return Err(
                    self.start_error(format!("not ready after {} s", SERVER_TIMEOUT.as_secs()))
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether `postmaster.pid` says "ready" and names a postmaster started by `watchdog`
    /// (not a stale file left by a killed server).
    fn ready(&self, watchdog: u32) -> bool {
        let Ok(text) = std::fs::read_to_string(self.data_dir.join("postmaster.pid")) else {
            return false;
        };
        let lines: Vec<&str> = text.lines().collect();
        let (Some(pid), Some(status)) = (lines.first(), lines.get(7)) else {
            return false;
        };
        status.trim() == "ready"
            && pid
                .trim()
                .parse()
                .ok()
                .and_then(process::proc_parent)
                .is_some_and(|parent| parent == watchdog)
    }

    fn log_since(&self, offset: u64) -> String {
        let text = self.log();
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        text.get(offset..).unwrap_or(&text).to_owned()
    }

    fn start_error(&self, reason: String) -> Error {
        Error::Start {
            data_dir: self.data_dir.clone(),
            reason,
            log: self.log_path.clone(),
            log_tail: self.log_tail(30),
        }
    }

    fn stop_mode(&mut self, mode: &str) -> Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let user = ServerUser::get()?;
        let mut cmd = user.command(self.install.program("pg_ctl"));
        cmd.arg("stop")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg(format!("--mode={mode}"))
            .arg("--wait")
            .arg(format!("--timeout={}", SERVER_TIMEOUT.as_secs()))
            .arg("--silent");
        let out = process::output(
            &mut cmd,
            None,
            Some(SERVER_TIMEOUT + Duration::from_secs(10)),
        )?;
        if !out.status.success() && !matches!(server.child.try_wait(), Ok(Some(_))) {
            let err = process::command_failed(&cmd, &out);
            self.server = Some(server);
            return Err(err);
        }
        release(&mut server);
        Ok(())
    }

    /// Stops the server however it can; never panics. A directory about to be removed needs
    /// no clean shutdown: closing the lifeline makes the watchdog SIGQUIT the server, which
    /// takes milliseconds where `pg_ctl stop` polls in steps of 100 ms. A directory that is
    /// kept gets a fast (clean) stop.
    fn shut_down_for_drop(&mut self, keep: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.server.is_none() {
            return problems;
        }
        if keep && let Err(e) = self.stop_mode("fast") {
            problems.push(format!("fast stop failed: {e}"));
        }
        if let Some(mut server) = self.server.take() {
            release(&mut server);
        }
        problems
    }

    /// What a failed test should see of this cluster.
    fn failure_report(&self, problems: &[String]) -> String {
        let mut report = format!(
            "\npgrepl-testkit: the thread panicked; cluster `{}` ({}, port {}) is kept in {}\n",
            self.name,
            self.install.version(),
            self.port,
            self.dir.display()
        );
        for problem in problems {
            let _ = writeln!(report, "pgrepl-testkit: while stopping it: {problem}");
        }
        let _ = writeln!(
            report,
            "--- last {FAILURE_LOG_LINES} lines of {} ---\n{}\n--- end of server log of `{}` ---",
            self.log_path.display(),
            self.log_tail(FAILURE_LOG_LINES),
            self.name
        );
        report
    }
}

/// Log lines of a server that could not listen on its port.
const PORT_TAKEN: [&str; 3] = [
    "could not bind IPv4 address",
    "Address already in use",
    "could not create any TCP/IP sockets",
];

/// Closes the watchdog's lifeline and reaps it (it exits once the server has).
fn release(server: &mut Server) {
    drop(server.lifeline.take());
    let deadline = Instant::now() + SERVER_TIMEOUT;
    loop {
        match server.child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let keep = panicking || self.keep;
        let problems = self.shut_down_for_drop(keep);
        // Straight to the process's stderr: `eprintln!` would go through the test harness's
        // capture, but panics if stderr is gone, and a panic in drop while unwinding aborts.
        let mut stderr = std::io::stderr().lock();
        if panicking {
            let _ = stderr.write_all(self.failure_report(&problems).as_bytes());
        } else {
            for problem in &problems {
                let _ = writeln!(stderr, "pgrepl-testkit: cluster `{}`: {problem}", self.name);
            }
        }
        if keep {
            let _ = std::fs::write(self.dir.join(KEPT_FILE), b"");
            if !panicking {
                let _ = writeln!(
                    stderr,
                    "pgrepl-testkit: cluster `{}` kept in {}",
                    self.name,
                    self.dir.display()
                );
            }
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            let _ = writeln!(
                stderr,
                "pgrepl-testkit: cannot remove {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// A value for a key=value DSN, quoted if it must be.
fn dsn_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '=']) {
        return value.to_owned();
    }
    let mut quoted = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// A string for inside single quotes in postgresql.conf.
fn conf_escape(value: &str) -> String {
    value.replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_values_are_quoted_when_needed() {
        assert_eq!(dsn_value("practice"), "practice");
        assert_eq!(dsn_value("two words"), "'two words'");
        assert_eq!(dsn_value("it's"), "'it\\'s'");
        assert_eq!(dsn_value(""), "''");
    }

    #[test]
    fn ports_are_not_handed_out_twice() {
        let ports: HashSet<u16> = (0..200).map(|_| pick_port()).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports.iter().all(|p| (20000..32000).contains(p)));
    }
}
