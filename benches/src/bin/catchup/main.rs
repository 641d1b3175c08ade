//! `catchup`: the end-to-end benchmark of pgrepl against native logical replication and
//! pglogical, measured as catch-up from a backlog, the way `anchors/` (shared with the
//! project) measures native and pglogical. See `benches/README.md`.
//!
//! ```text
//! cargo run --release -p pgrepl-benches --bin catchup -- \
//!     [--reps 3] [--workloads bulk,oltp,bidir] [--systems pgrepl,native,pglogical] [--pg 15|18]
//! ```
//!
//! For each workload, repetition and system (the order of systems rotates from one
//! repetition to the next, to spread drifting noise), two fresh durable clusters on disk are
//! started and the anchors' method is followed step by step: schema on both nodes,
//! replication node1 → node2 set up and disabled, backlog on node1, `VACUUM ANALYZE`,
//! `T = pg_current_wal_lsn()`, a marker commit, `CHECKPOINT` on both, then `t0`, enable, and a
//! server-side poll on node2 until the origin's progress reaches `T`; then md5 fingerprints of
//! both nodes. pgrepl's link runs in this process, on a multi-threaded tokio runtime.

mod cpu;
mod node;
mod report;
mod system;
mod workload;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pgrepl_testkit::Install;

use crate::node::{Node, cond_origin, cond_origin_moved, epoch_now, parse_waiter, waiter_script};
use crate::report::{Out, RunResult};
use crate::system::{Driver, System};
use crate::workload::Workload;

/// Errors are reported to a person and end the run (or one repetition).
pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// An error with this message.
pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(msg.into().into())
}

/// The knobs, named and defaulted as the anchors' environment variables.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) reps: usize,
    pub(crate) workloads: Vec<Workload>,
    pub(crate) systems: Vec<System>,
    pub(crate) pg: u32,
    pub(crate) bulk_rows: u64,
    pub(crate) bulk_batch: u64,
    pub(crate) oltp_scale: u64,
    pub(crate) oltp_txns: u64,
    pub(crate) oltp_clients: u64,
    pub(crate) oltp_threads: u64,
    pub(crate) bidir_seconds: u64,
    pub(crate) bidir_clients: u64,
    pub(crate) timeout_s: u64,
    pub(crate) poll_s: f64,
    pub(crate) data_dir: PathBuf,
    pub(crate) results_dir: PathBuf,
    /// Results files to summarise again instead of running (`--report`).
    pub(crate) report: Vec<PathBuf>,
    /// Where `perf record` writes a system-wide profile of each timed window (`--perf`).
    pub(crate) perf: Option<PathBuf>,
}

const USAGE: &str =
    "usage: catchup [--reps N] [--workloads bulk,oltp,bidir] [--systems pgrepl,native,pglogical]
               [--pg 15|18] [--bulk-rows N] [--bulk-batch N] [--oltp-scale N] [--oltp-txns N]
               [--oltp-clients N] [--oltp-threads N] [--bidir-seconds N] [--bidir-clients N]
               [--timeout SECONDS] [--poll SECONDS] [--data-dir DIR] [--results-dir DIR]
               [--perf PREFIX]   (perf record -a -g of each timed window, to PREFIX-<run>.data)
       catchup --report FILE [--report FILE …]   (summary and table of earlier results files)
Defaults: 3 reps of bulk and oltp for every system installed for that version (pglogical
only where its extension is installed), PostgreSQL 15, the anchors' workload sizes,
clusters under /tmp/pgrepl-bench (on disk), results in benches/results/.";

fn parse_args(args: &[String]) -> Result<(Params, bool)> {
    let mut p = Params {
        reps: 3,
        workloads: vec![Workload::Bulk, Workload::Oltp],
        systems: Vec::new(),
        pg: 15,
        bulk_rows: 1_000_000,
        bulk_batch: 10_000,
        oltp_scale: 10,
        oltp_txns: 100_000,
        oltp_clients: 4,
        oltp_threads: 2,
        bidir_seconds: 30,
        bidir_clients: 4,
        timeout_s: 1200,
        poll_s: 0.01,
        data_dir: PathBuf::from("/tmp/pgrepl-bench"),
        results_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")),
        report: Vec::new(),
        perf: None,
    };
    let mut systems_given = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let Some(value) = it.next() else {
            return fail(format!("{flag} needs a value\n{USAGE}"));
        };
        let num = || -> Result<u64> {
            value
                .parse()
                .map_err(|_| format!("{flag}: `{value}` is not a number").into())
        };
        match flag.as_str() {
            "--reps" => p.reps = usize::try_from(num()?)?,
            "--workloads" => {
                p.workloads = value
                    .split(',')
                    .map(|w| {
                        Workload::parse(w.trim()).ok_or_else(|| format!("unknown workload `{w}`"))
                    })
                    .collect::<std::result::Result<_, _>>()?;
            }
            "--systems" => {
                systems_given = true;
                p.systems = value
                    .split(',')
                    .map(|s| System::parse(s.trim()).ok_or_else(|| format!("unknown system `{s}`")))
                    .collect::<std::result::Result<_, _>>()?;
            }
            "--pg" => p.pg = u32::try_from(num()?)?,
            "--bulk-rows" => p.bulk_rows = num()?,
            "--bulk-batch" => p.bulk_batch = num()?.max(1),
            "--oltp-scale" => p.oltp_scale = num()?,
            "--oltp-txns" => p.oltp_txns = num()?,
            "--oltp-clients" => p.oltp_clients = num()?.max(1),
            "--oltp-threads" => p.oltp_threads = num()?.max(1),
            "--bidir-seconds" => p.bidir_seconds = num()?,
            "--bidir-clients" => p.bidir_clients = num()?.max(1),
            "--timeout" => p.timeout_s = num()?,
            "--poll" => {
                p.poll_s = value
                    .parse()
                    .map_err(|_| format!("--poll: `{value}` is not a number"))?;
            }
            "--data-dir" => p.data_dir = PathBuf::from(value),
            "--results-dir" => p.results_dir = PathBuf::from(value),
            "--report" => p.report.push(PathBuf::from(value)),
            "--perf" => p.perf = Some(PathBuf::from(value)),
            _ => return fail(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok((p, systems_given))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = real_main(&args) {
        eprintln!("catchup: {e}");
        std::process::exit(1);
    }
}

fn real_main(args: &[String]) -> Result<()> {
    let (mut p, systems_given) = parse_args(args)?;
    if !p.report.is_empty() {
        return report_again(&p.report);
    }
    // The testkit puts clusters under PGREPL_TEST_TMPDIR (else /dev/shm). Environment
    // variables cannot be set safely in a running process, so run again with it set. A
    // directory of its own: nothing else's clean-up of /tmp/pgrepl-test-* can reach it.
    std::fs::create_dir_all(&p.data_dir)?;
    if std::env::var_os("PGREPL_TEST_TMPDIR").as_deref() != Some(p.data_dir.as_os_str()) {
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(args)
            .env("PGREPL_TEST_TMPDIR", &p.data_dir)
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let install = Install::find(p.pg)?;
    let pglogical = pglogical_installed(&install);
    if !systems_given {
        p.systems = vec![System::Pgrepl, System::Native];
        if pglogical {
            p.systems.push(System::Pglogical);
        }
    } else if p.systems.contains(&System::Pglogical) && !pglogical {
        return fail(format!(
            "pglogical is not installed for {} (apt-get install postgresql-15-pglogical)",
            install.version()
        ));
    }
    let stamp = clean_output("date", &["+%Y%m%d-%H%M%S"]);
    let out_path = p
        .results_dir
        .join(format!("catchup-pg{}-{stamp}.txt", install.major()));
    let mut out = Out::create(&out_path)?;

    out.line(&machine_info());
    out.line(&format!(
        "VERSIONS postgres=\"{}\" pgbench=\"{}\" pglogical_pkg={} pgrepl={} (git {})",
        install.version(),
        clean_output(
            &install.program("pgbench").to_string_lossy(),
            &["--version"]
        ),
        if pglogical {
            clean_output(
                "dpkg-query",
                &[
                    "-W",
                    "-f=${Version}",
                    &format!("postgresql-{}-pglogical", install.major()),
                ],
            )
        } else {
            "none".into()
        },
        env!("CARGO_PKG_VERSION"),
        clean_output(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "rev-parse",
                "--short",
                "HEAD"
            ]
        ),
    ));
    out.line(&format!(
        "PARAMS reps={} workloads={} systems={} bulk_rows={} bulk_batch={} oltp_scale={} oltp_txns={} oltp_clients={} oltp_threads={} bidir_seconds={} bidir_clients={} poll_s={} data_dir={} data_fs={}",
        p.reps,
        p.workloads.iter().map(|w| w.name()).collect::<Vec<_>>().join(","),
        p.systems.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        p.bulk_rows,
        p.bulk_batch,
        p.oltp_scale,
        p.oltp_txns,
        p.oltp_clients,
        p.oltp_threads,
        p.bidir_seconds,
        p.bidir_clients,
        p.poll_s,
        p.data_dir.display(),
        clean_output("stat", &["-f", "-c", "%T", &p.data_dir.to_string_lossy()]),
    ));
    out.line(&format!(
        "PGREPL in-process: Link::run on a multi-threaded tokio runtime ({} worker threads named `{}`) in this process; default LinkConfig from Mesh::link_config (apply session synchronous_commit=off, text pgoutput, streaming on); resolver {}; engine_cpu_s = CPU of this whole process during the window",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        system::PGREPL_THREAD,
        system::PGREPL_RESOLVER
    ));

    let mut results = Vec::new();
    let mut settings_done = Vec::new();
    for &wl in &p.workloads {
        for rep in 1..=p.reps {
            for k in 0..p.systems.len() {
                let sys = p.systems[(k + rep - 1) % p.systems.len()];
                log(&format!("[{}/{}/{rep}] start", sys.name(), wl.name()));
                let show_settings = !settings_done.contains(&sys);
                settings_done.push(sys);
                let r = run(&install, &p, sys, wl, rep, show_settings, &mut out);
                out.line(&r.line());
                results.push(r);
            }
        }
    }
    for line in report::summary_lines(&results) {
        out.line(&line);
    }
    let header = format!(
        "## {} on {} — durable clusters on {} ({}), {} rep(s)",
        install.version(),
        short_machine(),
        p.data_dir.display(),
        clean_output("stat", &["-f", "-c", "%T", &p.data_dir.to_string_lossy()]),
        p.reps
    );
    for line in report::table(&results, &header) {
        out.line(&line);
    }
    out.line("");
    out.line(&format!("results: {}", out.path().display()));
    Ok(())
}

/// Starts `perf record -a -g -e cpu-clock` into `<prefix>-<tag>.data` when `--perf` is given.
fn start_perf(p: &Params, tag: &str) -> Result<Option<std::process::Child>> {
    let Some(prefix) = &p.perf else {
        return Ok(None);
    };
    let out = format!("{}-{tag}.data", prefix.display());
    let child = node::clean("perf")
        .args([
            "record",
            "-a",
            "-g",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "-o",
            &out,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Let it set up before the window starts.
    std::thread::sleep(Duration::from_millis(500));
    log(&format!("perf recording to {out}"));
    Ok(Some(child))
}

/// Stops a `perf record` started by [`start_perf`] (SIGINT, so it writes its file).
fn stop_perf(perf: Option<std::process::Child>) {
    if let Some(mut child) = perf {
        let _ = node::clean("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

/// Prints the summary and table of the `RESULT` lines in earlier results files.
fn report_again(files: &[PathBuf]) -> Result<()> {
    let mut results = Vec::new();
    let mut header = String::new();
    for f in files {
        let text = std::fs::read_to_string(f)?;
        if let Some(v) = text.lines().find(|l| l.starts_with("VERSIONS ")) {
            header.push_str(&format!("<!-- {}: {v} -->\n", f.display()));
        }
        results.extend(report::parse_results(&text));
    }
    for line in report::summary_lines(&results) {
        println!("{line}");
    }
    for line in report::table(&results, header.trim_end()) {
        println!("{line}");
    }
    Ok(())
}

/// Whether the installation has the pglogical extension.
fn pglogical_installed(install: &Install) -> bool {
    let pkglib = clean_output(
        &install.program("pg_config").to_string_lossy(),
        &["--pkglibdir"],
    );
    let mut dirs = vec![PathBuf::from(pkglib)];
    if let Some(parent) = install.source_bin_dir().parent() {
        dirs.push(parent.join("lib"));
    }
    dirs.iter().any(|d| d.join("pglogical.so").is_file())
}

/// A program's trimmed standard output, or `?`.
fn clean_output(program: &str, args: &[&str]) -> String {
    node::clean(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn mem_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1_048_576.0)
}

fn machine_info() -> String {
    format!(
        "MACHINE nproc={} mem_total={:.1}GiB cpu=\"{}\" kernel={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib(),
        cpu_model(),
        clean_output("uname", &["-r"])
    )
}

fn short_machine() -> String {
    format!(
        "{} vCPU \"{}\", {:.1} GiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        mem_gib()
    )
}

/// The 1-minute load average (other work on the machine shows here).
fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Progress on standard error, `[HH:MM:SS] …` (UTC).
pub(crate) fn log(msg: &str) {
    let secs = epoch_now() as u64;
    eprintln!(
        "[{:02}:{:02}:{:02}] {msg}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    );
}

/// A fresh spool directory for pgrepl's streamed transactions, beside the clusters.
fn spool_dir(p: &Params) -> PathBuf {
    p.data_dir.join(format!(
        "pgrepl-bench-spool-{}-{}",
        std::process::id(),
        epoch_now() as u64
    ))
}

/// Runs the anchors' server-side waiter on `node` until `done` holds, watching pgrepl's
/// links meanwhile; returns (first, done) as epoch seconds from the server's clock, or `None`
/// after `--timeout` seconds.
fn wait_until(
    node: &Node,
    done: &str,
    first: &str,
    p: &Params,
    driver: &Driver,
) -> Result<Option<(f64, f64)>> {
    let mut child = node.spawn_script(&waiter_script(done, first, p.timeout_s, p.poll_s))?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if let Err(e) = driver.check_running() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut stderr)?;
    }
    if stderr.contains("anchors: timeout") {
        return Ok(None);
    }
    match parse_waiter(&stderr) {
        Some(v) => Ok(Some(v)),
        None => fail(format!(
            "waiter on node{} failed: {}",
            node.index,
            stderr.trim()
        )),
    }
}

/// Copies the server logs of a failed, timed-out or mismatched run next to the results: the
/// first and last MiB of each (a pgrepl run that keeps failing statements can log gigabytes).
fn save_logs(nodes: &[Node], p: &Params, tag: &str) {
    const KEEP: usize = 1 << 20;
    let _ = std::fs::create_dir_all(&p.results_dir);
    for n in nodes {
        let Ok(text) = head_and_tail(n.cluster.log_path(), KEEP) else {
            continue;
        };
        let _ = std::fs::write(
            p.results_dir.join(format!("{tag}-node{}.log", n.index)),
            text,
        );
    }
}

fn run(
    install: &Install,
    p: &Params,
    sys: System,
    wl: Workload,
    rep: usize,
    show_settings: bool,
    out: &mut Out,
) -> RunResult {
    let mut r = RunResult::new(sys, wl, rep);
    let mut nodes = match node::start_nodes(install, sys.preload()) {
        Ok(n) => n,
        Err(e) => {
            r.set("status", "failed");
            r.set("error", format!("\"{}\"", one_line(&e.to_string())));
            return r;
        }
    };
    let mut driver = Driver::new(sys);
    let tag = format!("{}-{}-{rep}", sys.name(), wl.name());
    let result = if wl.is_bidir() {
        bidir_inner(
            p,
            &mut nodes,
            &mut driver,
            wl,
            rep,
            show_settings,
            out,
            &mut r,
        )
    } else {
        oneway_inner(
            p,
            &mut nodes,
            &mut driver,
            wl,
            rep,
            show_settings,
            out,
            &mut r,
        )
    };
    if let Err(e) = result {
        log(&format!("[{tag}] FAILED: {e}"));
        save_logs(&nodes, p, &format!("{tag}-FAILED"));
        r.set("status", "failed");
        r.set("error", format!("\"{}\"", one_line(&e.to_string())));
    } else if r.get("status") == Some("timeout") {
        save_logs(&nodes, p, &format!("{tag}-TIMEOUT"));
    } else if r.get("verified").or(r.get("converged")) != Some("yes") {
        save_logs(&nodes, p, &format!("{tag}-MISMATCH"));
    }
    if let Err(e) = driver.shutdown() {
        log(&format!("[{tag}] while stopping pgrepl: {e}"));
    }
    drop(nodes);
    r
}

/// The first and last `keep` bytes of a file, with a note of what was left out between.
fn head_and_tail(path: &std::path::Path, keep: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    if len <= 2 * keep {
        let mut all = Vec::new();
        f.read_to_end(&mut all)?;
        return Ok(all);
    }
    let mut head = vec![0; keep];
    f.read_exact(&mut head)?;
    f.seek(SeekFrom::Start(u64::try_from(len - keep).unwrap_or(0)))?;
    let mut tail = vec![0; keep];
    f.read_exact(&mut tail)?;
    head.extend_from_slice(format!("\n[… {} bytes left out …]\n", len - 2 * keep).as_bytes());
    head.extend_from_slice(&tail);
    Ok(head)
}

/// Lines of a node's server log that report an error, and lines that mention a conflict
/// (PostgreSQL 18 logs the conflicts its apply workers detect).
fn log_counts(n: &Node) -> (usize, usize) {
    use std::io::BufRead as _;
    let Ok(f) = std::fs::File::open(n.cluster.log_path()) else {
        return (0, 0);
    };
    let (mut errors, mut conflicts) = (0, 0);
    for line in std::io::BufReader::new(f)
        .split(b'\n')
        .map_while(std::result::Result::ok)
    {
        if line.windows(8).any(|w| w == b" ERROR: ") {
            errors += 1;
        }
        if line.windows(8).any(|w| w.eq_ignore_ascii_case(b"conflict")) {
            conflicts += 1;
        }
    }
    (errors, conflicts)
}

/// Lines of a node's server log that report an error.
fn log_errors(n: &Node) -> usize {
    log_counts(n).0
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('"', "'")
        .chars()
        .take(300)
        .collect()
}

/// Creates the workload's schema on both nodes and reads node2's settings, which the results
/// record once per system (`show_settings`); returns them.
fn prepare_nodes(
    p: &Params,
    nodes: &mut [Node],
    wl: Workload,
    sys: System,
    show_settings: bool,
    out: &mut Out,
) -> Result<String> {
    for node in nodes.iter_mut().take(2) {
        wl.schema(node, p)?;
    }
    let n2 = nodes.get(1).ok_or("two nodes are needed")?;
    let settings = n2.settings()?;
    if show_settings {
        out.line(&format!("SETTINGS system={} {settings}", sys.name()));
        out.line(&format!(
            "NONDEFAULT system={} {}",
            sys.name(),
            n2.nondefault_settings()?
        ));
    }
    Ok(settings)
}

#[allow(clippy::too_many_arguments)]
fn oneway_inner(
    p: &Params,
    nodes: &mut [Node],
    driver: &mut Driver,
    wl: Workload,
    rep: usize,
    show_settings: bool,
    out: &mut Out,
    r: &mut RunResult,
) -> Result<()> {
    let sys = driver.system;
    let tag = format!("[{}/{}/{rep}]", sys.name(), wl.name());
    let settings = prepare_nodes(p, nodes, wl, sys, show_settings, out)?;
    log(&format!("{tag} settings node2: {settings}"));
    let nodes: &[Node] = nodes;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    driver.setup_oneway(nodes, 1, 2, wl.tables(), spool_dir(p))?;
    let created = Instant::now();
    driver.disable(nodes, 2, 1)?;
    log(&format!(
        "{tag} replication disabled; generating backlog on node1"
    ));
    let generated = wl.generate(n1, p)?;
    log(&format!("{tag} generator: {generated}"));
    // Publisher-side maintenance stays out of the timed window.
    n1.sql("VACUUM ANALYZE")?;
    let target = n1.mark(1)?;
    n1.sql("CHECKPOINT")?;
    n2.sql("CHECKPOINT")?;
    let origin = driver.origin(nodes, 2, 1)?;
    let first0 = n2.origin_lsn(&origin)?;
    let done_cond = cond_origin(&origin, &target);
    let first_cond = cond_origin_moved(&origin, &first0);
    // The native launcher starts a worker no sooner than wal_retrieve_retry_interval (5 s)
    // after the last start: at least 6 s between creating and enabling, for every system.
    let since = created.elapsed();
    if since < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_secs(6) - since);
    }
    let backlog = n1.sql(
        "SELECT pg_size_pretty(pg_current_wal_lsn() - confirmed_flush_lsn) || ' ' || (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots LIMIT 1",
    )?;
    let (backlog_pretty, backlog_bytes) = backlog.rsplit_once(' ').unwrap_or((&backlog, "?"));
    let load = load1();
    log(&format!(
        "{tag} backlog up to {target} ({backlog_pretty} of WAL), load {load}; enabling"
    ));
    let (pm1, pm2) = (n1.postmaster_pid()?, n2.postmaster_pid()?);
    let (c1, c2) = (cpu::snapshot_server(pm1), cpu::snapshot_server(pm2));
    let (own0, threads0) = (cpu::self_total_s(), cpu::snapshot_self());
    let (errors0, conflicts0) = log_counts(n2);
    let perf = start_perf(p, &format!("{}-{}-{rep}", sys.name(), wl.name()))?;
    let t0 = epoch_now();
    driver.enable(nodes, 2, 1)?;
    let waited = wait_until(n2, &done_cond, &first_cond, p, driver)?;
    stop_perf(perf);
    let (d1, d2) = (
        cpu::diff(&c1, &cpu::snapshot_server(pm1)),
        cpu::diff(&c2, &cpu::snapshot_server(pm2)),
    );
    let own = cpu::self_total_s() - own0;
    let threads = cpu::diff(&threads0, &cpu::snapshot_self());
    let stats = driver.stats();
    let cpu_fields = |r: &mut RunResult| {
        r.set("pub_cpu_s", format!("{:.2}", d1.total_s));
        r.set("sub_cpu_s", format!("{:.2}", d2.total_s));
        let engine = if sys == System::Pgrepl { own } else { 0.0 };
        if sys == System::Pgrepl {
            r.set("engine_cpu_s", format!("{own:.2}"));
        }
        r.set(
            "total_cpu_s",
            format!("{:.2}", d1.total_s + d2.total_s + engine),
        );
        r.set("pub_busiest", d1.busiest());
        r.set("sub_busiest", d2.busiest());
        r.set("pub_split", d1.split());
        r.set("sub_split", d2.split());
        if sys == System::Pgrepl {
            r.set("engine_threads", threads.split());
        }
    };
    let Some((first, fin)) = waited else {
        log(&format!("{tag} TIMEOUT after {} s", p.timeout_s));
        r.set("status", "timeout");
        r.set("timeout_s", p.timeout_s);
        r.set("applied_lsn", n2.origin_lsn(&origin)?);
        r.set("target_lsn", &target);
        cpu_fields(r);
        let (errors, conflicts) = log_counts(n2);
        r.set("sub_log_errors", errors - errors0);
        r.set("sub_conflict_log_lines", conflicts - conflicts0);
        r.set("backlog_bytes", backlog_bytes);
        r.set("load1", load);
        for (k, v) in stats {
            r.set(&k, v);
        }
        return Ok(());
    };
    let secs = fin - t0;
    log(&format!(
        "{tag} enable_at={t0:.3} first_commit_at={first:.3} done_at={fin:.3} origin={origin}"
    ));
    if n2.sql("SELECT count(*) FROM anchors_marker WHERE id = 1")? != "1" {
        log(&format!(
            "{tag} WARNING: marker not yet visible at completion"
        ));
    }
    driver.shutdown()?;
    let ok = wl.fingerprint(n1)? == wl.fingerprint(n2)?;
    let oltp = wl.is_oltp();
    let rows = if oltp { 2 * p.oltp_txns } else { p.bulk_rows };
    if oltp {
        r.set("txns", p.oltp_txns);
    }
    r.set("rows", rows);
    r.set("seconds", format!("{secs:.3}"));
    if oltp {
        r.set("txns_per_s", format!("{:.0}", p.oltp_txns as f64 / secs));
    }
    r.set("rows_per_s", format!("{:.0}", rows as f64 / secs));
    r.set("first_commit_s", format!("{:.3}", first - t0));
    r.set("verified", if ok { "yes" } else { "NO" });
    cpu_fields(r);
    let (errors, conflicts) = log_counts(n2);
    r.set("sub_log_errors", errors - errors0);
    r.set("sub_conflict_log_lines", conflicts - conflicts0);
    r.set("backlog_bytes", backlog_bytes);
    r.set("load1", load);
    for (k, v) in stats {
        r.set(&k, v);
    }
    Ok(())
}

fn pgbench_value(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(|s| s.split_whitespace().next().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "?".into())
}

#[allow(clippy::too_many_arguments)]
fn bidir_inner(
    p: &Params,
    nodes: &mut [Node],
    driver: &mut Driver,
    wl: Workload,
    rep: usize,
    show_settings: bool,
    out: &mut Out,
    r: &mut RunResult,
) -> Result<()> {
    let sys = driver.system;
    let tag = format!("[{}/{}/{rep}]", sys.name(), wl.name());
    prepare_nodes(p, nodes, wl, sys, show_settings, out)?;
    let nodes: &[Node] = nodes;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let naccts = 100_000 * p.oltp_scale;
    let half = naccts / 2;
    let note = driver.setup_bidir(nodes, half, spool_dir(p))?;
    if !note.is_empty() {
        log(&format!("{tag} {note}"));
    }
    if wl.fingerprint(n1)? != wl.fingerprint(n2)? {
        return fail("nodes differ before the bidir run");
    }
    let script = p
        .data_dir
        .join(format!("pgrepl-bench-bidir-{}.sql", std::process::id()));
    std::fs::write(&script, workload::BIDIR_SCRIPT)?;
    n1.sql("CHECKPOINT")?;
    n2.sql("CHECKPOINT")?;
    log(&format!(
        "{tag} running pgbench {} s on both nodes",
        p.bidir_seconds
    ));
    let load = load1();
    let (pm1, pm2) = (n1.postmaster_pid()?, n2.postmaster_pid()?);
    let (c1, c2) = (cpu::snapshot_server(pm1), cpu::snapshot_server(pm2));
    let own0 = cpu::self_total_s();
    let errors0 = log_errors(n1) + log_errors(n2);
    let bench = |n: &Node, lo: u64, hi: u64| {
        let (c, j, t) = (
            p.bidir_clients.to_string(),
            p.oltp_threads.to_string(),
            p.bidir_seconds.to_string(),
        );
        let (lo, hi, nb) = (
            format!("lo={lo}"),
            format!("hi={hi}"),
            format!("nbranches={}", p.oltp_scale),
        );
        n.pgbench_command(&[
            "-n",
            "-c",
            &c,
            "-j",
            &j,
            "-T",
            &t,
            "-f",
            &script.to_string_lossy(),
            "-D",
            &lo,
            "-D",
            &hi,
            "-D",
            &nb,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    };
    let b1 = bench(n1, 1, half)?;
    let b2 = bench(n2, half + 1, naccts)?;
    let o1 = b1.wait_with_output()?;
    let o2 = b2.wait_with_output()?;
    let _ = std::fs::remove_file(&script);
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let (out1, out2) = (text(&o1), text(&o2));
    if !o1.status.success() {
        return fail(format!("pgbench node1 failed:\n{out1}"));
    }
    if !o2.status.success() {
        return fail(format!("pgbench node2 failed:\n{out2}"));
    }
    let t0 = epoch_now();
    let tps = |o: &str| {
        pgbench_value(o, "tps = ")
            .parse::<f64>()
            .map_or_else(|_| "?".into(), |v| format!("{v:.0}"))
    };
    let processed = |o: &str| {
        pgbench_value(o, "number of transactions actually processed:")
            .split('/')
            .next()
            .unwrap_or("?")
            .to_owned()
    };
    r.set("seconds", p.bidir_seconds);
    r.set("clients_per_node", p.bidir_clients);
    r.set("tps_a", tps(&out1));
    r.set("tps_b", tps(&out2));
    r.set("txns_a", processed(&out1));
    r.set("txns_b", processed(&out2));
    let ta = n1.mark(1)?;
    let tb = n2.mark(2)?;
    let o21 = driver.origin(nodes, 2, 1)?;
    let o12 = driver.origin(nodes, 1, 2)?;
    let w2 = wait_until(n2, &cond_origin(&o21, &ta), "false", p, driver)?;
    let w1 = wait_until(n1, &cond_origin(&o12, &tb), "false", p, driver)?;
    let (u1, u2) = (
        cpu::diff(&c1, &cpu::snapshot_server(pm1)),
        cpu::diff(&c2, &cpu::snapshot_server(pm2)),
    );
    let own = cpu::self_total_s() - own0;
    let stats = driver.stats();
    let (Some((_, d2)), Some((_, d1))) = (w2, w1) else {
        log(&format!("{tag} TIMEOUT after {} s", p.timeout_s));
        r.set("status", "timeout");
        r.set("timeout_s", p.timeout_s);
        r.set("log_errors", log_errors(n1) + log_errors(n2) - errors0);
        for (k, v) in stats {
            r.set(&k, v);
        }
        return Ok(());
    };
    let secs = d1.max(d2) - t0;
    driver.shutdown()?;
    let ok = wl.fingerprint(n1)? == wl.fingerprint(n2)?;
    let conflicts = nodes.iter().map(|n| log_counts(n).1).sum::<usize>();
    r.set("catchup_s", format!("{secs:.3}"));
    r.set("converged", if ok { "yes" } else { "NO" });
    r.set("conflict_log_lines", conflicts);
    r.set("log_errors", log_errors(n1) + log_errors(n2) - errors0);
    if sys == System::Pgrepl {
        let history = n1
            .sql("SELECT count(*) FROM pgrepl.conflict_history")?
            .parse::<u64>()
            .unwrap_or(0)
            + n2.sql("SELECT count(*) FROM pgrepl.conflict_history")?
                .parse::<u64>()
                .unwrap_or(0);
        r.set("conflict_history_rows", history);
    }
    r.set("pub_cpu_s", format!("{:.2}", u1.total_s));
    r.set("sub_cpu_s", format!("{:.2}", u2.total_s));
    if sys == System::Pgrepl {
        r.set("engine_cpu_s", format!("{own:.2}"));
    }
    r.set("load1", load);
    for (k, v) in stats {
        r.set(&k, v);
    }
    Ok(())
}
