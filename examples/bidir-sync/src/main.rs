//! bidir-sync: active-active PostgreSQL replication between two or more nodes, built on pgrepl.
//!
//! ```text
//! bidir-sync demo     [--nodes N] [--pg 15|18] [--keep]   throw-away nodes, two-way sync, convergence shown
//! bidir-sync setup    --config pgrepl.toml [--partition-sequences]
//! bidir-sync run      --config pgrepl.toml [--node NAME]
//! bidir-sync status   --config pgrepl.toml [--json]
//! bidir-sync verify   --config pgrepl.toml [--json] [--max-keys N]
//! bidir-sync teardown --config pgrepl.toml
//! ```
//!
//! Modules: [`config`] reads `pgrepl.toml` into a [`pgrepl_apply::Mesh`]; [`setup`] creates and
//! removes what replication needs on the nodes; [`run`] runs the links ([`runner`]) and serves
//! [`metrics`]; [`status`] and [`verify`] look at the nodes; [`demo`] puts it all together on
//! throw-away nodes. Every failure is a [`failure::Failure`]: one message with the fix, and an
//! exit status (0 done, 1 differences or a failed link, 2 could not do the job). Everything
//! printed goes through [`redact`], so no password is ever shown.

/// `println!`, through [`redact`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::redact::say(format!($($arg)*))
    };
}

mod config;
mod demo;
mod failure;
mod metrics;
mod redact;
mod run;
mod runner;
mod setup;
mod status;
mod table;
mod verify;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::failure::{EXIT_TROUBLE, Failure};

/// Active-active replication for PostgreSQL: every node writable, changes flowing both ways.
#[derive(Debug, Parser)]
#[command(
    name = "bidir-sync",
    version,
    after_help = "Logs go to stderr; RUST_LOG sets their level (default: info for run, warn \
                  otherwise).\nExit status: 0 done; 1 verify found differences, or run ended with \
                  a failed link; 2 the command could not do its job."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, value_name = "FILE", default_value = "pgrepl.toml")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start throw-away local nodes, sync them both ways, write on each, show they converge
    Demo(demo::DemoArgs),
    /// Check every node and create what replication needs (idempotent)
    Setup {
        #[command(flatten)]
        config: ConfigArg,
        /// Give every sequence of the replicated tables a node-disjoint stride (node k of N:
        /// INCREMENT BY N, values ≡ k mod N), so inserts on different nodes never collide
        #[arg(long)]
        partition_sequences: bool,
    },
    /// Replicate: every link of the mesh in this process, until SIGINT or SIGTERM
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Run only the links into this node
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Show every link: state, positions, lag, retained WAL, conflicts, last error
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
    },
    /// Compare the replicated tables on every node; exit status 1 when they differ
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// List at most this many differing rows per table
        #[arg(long, value_name = "N", default_value_t = 100)]
        max_keys: usize,
        /// Seconds to wait before reading differing rows again (0: report the first reading)
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        recheck_after: f64,
        /// Read differing buckets row by row once they hold at most this many rows (tests use
        /// small values to exercise the descent on small tables)
        #[arg(long, value_name = "N", default_value_t = verify::LEAF_ROWS, hide = true)]
        leaf_rows: i64,
    },
    /// Drop the slots, origins and publications, so no node retains WAL for pgrepl
    Teardown {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Log lines go through [`redact`] to stderr.
#[derive(Debug, Clone, Copy)]
struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn dispatch(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Demo(args) => demo::demo(args).await,
        Command::Setup {
            config,
            partition_sequences,
        } => setup::setup(&Config::load(&config.config)?, partition_sequences).await,
        Command::Run { config, node } => run::run(Config::load(&config.config)?, node).await,
        Command::Status { config, json } => {
            status::status(&Config::load(&config.config)?, json).await
        }
        Command::Verify {
            config,
            json,
            max_keys,
            recheck_after,
            leaf_rows,
        } => {
            let options = verify::VerifyOptions {
                max_keys: max_keys.max(1),
                recheck_after: (recheck_after > 0.0 && recheck_after.is_finite())
                    .then(|| Duration::from_secs_f64(recheck_after.min(3600.0))),
                leaf_rows: leaf_rows.max(1),
            };
            verify::run(&Config::load(&config.config)?, &options, json).await
        }
        Command::Teardown { config } => setup::teardown(&Config::load(&config.config)?).await,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_TROUBLE);
        }
    };
    let outcome = runtime.block_on(dispatch(cli.command));
    // Links and servers that are still winding down get a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            let _ = std::io::stdout().flush();
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", redact::redact(&failure.message));
            ExitCode::from(failure.status)
        }
    }
}
