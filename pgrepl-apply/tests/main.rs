//! Integration tests of pgrepl-apply against real PostgreSQL 15 and 18 clusters: links in both
//! directions, every conflict kind under every resolver, convergence, exactly-once delivery
//! across crashes, and data types.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod support;

mod bidirectional;
mod conflicts;
mod convergence;
mod exactly_once;
mod rows;
mod streaming;
