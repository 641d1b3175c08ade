//! pgrepl-core: the sans-IO half of pgrepl and its replication connection.

pub mod connection;
pub mod lsn;

pub use lsn::Lsn;
