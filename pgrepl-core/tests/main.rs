//! Integration tests of pgrepl-core against real PostgreSQL 15 and 18 servers (one test
//! binary; each module is one area).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod auth;
mod capture;
mod conn_errors;
mod conn_util;
mod fake_server;
mod slots;
mod smoke;
mod stream;
mod tls;
