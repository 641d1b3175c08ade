//! pgrepl-core: the sans-IO half of pgrepl and its replication connection.
//!
//! Work in progress: the modules land with issues 2 and 3.

pub mod lsn;
pub mod pgoutput;
pub mod timestamp;
