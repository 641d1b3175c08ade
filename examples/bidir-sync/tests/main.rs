//! End-to-end tests of the `bidir-sync` binary: every command run as a process against real
//! PostgreSQL 15 and 18 clusters, the way an operator runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod support;

mod commands;
mod config;
mod demo;
mod faults;
mod mesh;
mod privileges;
mod verify;
