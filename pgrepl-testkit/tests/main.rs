//! Integration tests of pgrepl-testkit: real servers of every supported PostgreSQL version.
//!
//! One binary (see `autotests = false` in Cargo.toml); each module is one concern. Tests that
//! check what happens to a failing or killed test process run this same binary again as a
//! child process (see `support`).

mod auth;
mod cleanup;
mod install;
mod lifecycle;
mod settings;
mod support;
