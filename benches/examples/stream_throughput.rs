//! Streaming throughput from a real server: MB/s of pgoutput received and decoded by pgrepl's
//! `ReplicationStream`, next to PostgreSQL's own `pg_recvlogical` writing to /dev/null, on the
//! same backlog.
//!
//! Set-up: a throw-away PostgreSQL cluster (15 unless `--pg 18`); a slot `tmpl` created
//! before a backlog of bulk inserts (`--rows`, default 1,000,000 rows of about 200 bytes in
//! transactions of 10,000, some 300 MB of WAL); then, for every run, two copies of `tmpl`
//! (`pg_copy_logical_replication_slot`), so each reader starts from the same point with the
//! whole backlog ahead of it.
//!
//! Each run times, from connecting to the end of the backlog (the LSN after the last insert):
//! - pgrepl: `ReplicationClient::start_replication` with `proto_version 1` and publication
//!   `p`; the consumer takes every event, counts the bytes of each pgoutput message and
//!   reports each commit as flushed, and stops at the first commit or keepalive at or past the
//!   end;
//! - `pg_recvlogical --start -E <end> -o proto_version=1 -o publication_names=p -f /dev/null`.
//!
//! Both read the same bytes (the slots are copies), so MB/s are computed from the pgoutput
//! volume that pgrepl counted. The two alternate (which one goes first swaps every run); the
//! report gives every run, the medians and their ratio. Numbers depend on the machine and on
//! what else runs on it: measure on an idle machine.
//!
//! Run: `cargo run --release -p pgrepl-benches --example stream_throughput -- [--runs 5]
//! [--rows 1000000] [--pg 15]`.

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use pgrepl_core::Lsn;
use pgrepl_core::connection::ConnectConfig;
use pgrepl_core::connection::replication::{
    PgOutputOptions, ReplicationClient, ReplicationEvent, StreamSettings,
};
use pgrepl_core::pgoutput::{LogicalMessage, ProtocolVersion};
use pgrepl_testkit::{Cluster, Install};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

const DB: &str = "bench";

struct Args {
    runs: usize,
    rows: u64,
    major: u32,
}

fn args() -> Result<Args> {
    let mut out = Args {
        runs: 5,
        rows: 1_000_000,
        major: 15,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => out.runs = value.parse()?,
            "--rows" => out.rows = value.parse()?,
            "--pg" => out.major = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(out)
}

fn psql_lsn(node: &Cluster, sql: &str) -> Result<Lsn> {
    Ok(node.psql(DB, sql)?.trim().parse()?)
}

/// pgrepl: returns (seconds, bytes of pgoutput, messages).
async fn run_pgrepl(dsn: &str, slot: &str, end: Lsn) -> Result<(f64, u64, u64)> {
    let started = Instant::now();
    let cfg = ConnectConfig::parse_with_env(dsn, &|_| None)?;
    let repl = ReplicationClient::connect(&cfg).await?;
    let options = PgOutputOptions {
        proto_version: Some(ProtocolVersion::V1),
        publication_names: vec!["p".into()],
        ..PgOutputOptions::default()
    };
    let mut stream = repl
        .start_replication(slot, Lsn(0), &options, StreamSettings::default())
        .await?;
    let (mut bytes, mut messages) = (0u64, 0u64);
    while let Some(event) = stream.next_event().await {
        match event? {
            ReplicationEvent::Message { message, raw, .. } => {
                bytes += raw.len() as u64;
                messages += 1;
                if let LogicalMessage::Commit(c) = &message {
                    stream.set_flushed(c.end_lsn);
                    if c.end_lsn >= end {
                        break;
                    }
                }
            }
            ReplicationEvent::Keepalive { wal_end, .. } if wal_end >= end => break,
            ReplicationEvent::Keepalive { .. } => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stream.shutdown().await;
    Ok((seconds, bytes, messages))
}

/// pg_recvlogical: returns seconds.
fn run_recvlogical(pg: &Install, dsn: &str, slot: &str, end: Lsn) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new(pg.program("pg_recvlogical"))
        .arg("--dbname")
        .arg(format!("{dsn} replication=database"))
        .args(["--slot", slot, "--start", "--no-loop", "--endpos"])
        .arg(end.to_string())
        .args([
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=p",
            "--file",
            "/dev/null",
        ])
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "pg_recvlogical failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(seconds)
}

/// CPU seconds (user + system) of this process and of its waited-for children, from
/// `/proc/self/stat` (clock ticks of 1/100 s on Linux).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after the name.
    (tick(11) + tick(12), tick(13) + tick(14))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() -> Result<()> {
    let args = args()?;
    let pg = Install::find(args.major)?;
    println!("PostgreSQL: {}", pg.version());
    let node = pg
        .cluster()
        .name("throughput")
        .database(DB)
        .conf("max_wal_size = '8GB'")
        .conf("wal_sender_timeout = '60s'")
        .conf("max_replication_slots = 32")
        .conf("shared_buffers = '256MB'")
        .start()?;
    node.psql(
        DB,
        "CREATE TABLE bench (id bigint PRIMARY KEY, account int, note text, amount numeric, \
         at timestamptz); \
         CREATE PUBLICATION p FOR TABLE bench; \
         SELECT pg_create_logical_replication_slot('tmpl', 'pgoutput');",
    )?;
    for run in 1..=args.runs {
        node.psql(
            DB,
            &format!(
                "SELECT pg_copy_logical_replication_slot('tmpl', 'pgrepl_{run}'); \
                 SELECT pg_copy_logical_replication_slot('tmpl', 'recvlogical_{run}');"
            ),
        )?;
    }
    let start = psql_lsn(&node, "SELECT pg_current_wal_lsn()")?;
    let t = Instant::now();
    let batches = args.rows.div_ceil(10_000);
    node.psql(
        DB,
        &format!(
            "DO $$ BEGIN FOR b IN 0..{last} LOOP \
               INSERT INTO bench SELECT g, g % 1000, repeat(md5(g::text), 4), g * 1.25, now() \
               FROM generate_series(b * 10000 + 1, b * 10000 + 10000) g; \
               COMMIT; \
             END LOOP; END $$",
            last = batches - 1
        ),
    )?;
    let end = psql_lsn(&node, "SELECT pg_current_wal_lsn()")?;
    let wal_mb = (end.0 - start.0) as f64 / 1e6;
    println!(
        "backlog: {} rows in {batches} transactions, {wal_mb:.0} MB of WAL ({start} to {end}), \
         made in {:.1}s",
        batches * 10_000,
        t.elapsed().as_secs_f64()
    );
    node.psql(DB, "CHECKPOINT")?;

    let dsn = node.dsn(DB);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut volume = 0u64;
    println!("run   pgrepl: s   MB/s  CPU s    pg_recvlogical: s   MB/s  CPU s");
    for run in 1..=args.runs {
        let mut pgrepl = || -> Result<(f64, f64)> {
            let (cpu, _) = cpu_seconds();
            let (s, bytes, _messages) =
                runtime.block_on(run_pgrepl(&dsn, &format!("pgrepl_{run}"), end))?;
            volume = bytes;
            Ok((s, cpu_seconds().0 - cpu))
        };
        let recvlogical = || -> Result<(f64, f64)> {
            let (_, cpu) = cpu_seconds();
            let s = run_recvlogical(&pg, &dsn, &format!("recvlogical_{run}"), end)?;
            Ok((s, cpu_seconds().1 - cpu))
        };
        let ((a, a_cpu), (b, b_cpu)) = if run % 2 == 1 {
            let a = pgrepl()?;
            (a, recvlogical()?)
        } else {
            let b = recvlogical()?;
            (pgrepl()?, b)
        };
        let mb = volume as f64 / 1e6;
        println!(
            "{run:>3}   {a:>9.2}  {:>5.1}  {a_cpu:>5.2}    {b:>17.2}  {:>5.1}  {b_cpu:>5.2}",
            mb / a,
            mb / b
        );
        ours.push(mb / a);
        theirs.push(mb / b);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (m_ours, m_theirs) = (median(&ours), median(&theirs));
    println!(
        "pgoutput volume: {:.0} MB per run ({:.0} MB of WAL)",
        volume as f64 / 1e6,
        wal_mb
    );
    println!(
        "median: pgrepl {m_ours:.1} MB/s, pg_recvlogical {m_theirs:.1} MB/s, ratio pgrepl / \
         pg_recvlogical = {:.2}",
        m_ours / m_theirs
    );
    Ok(())
}
