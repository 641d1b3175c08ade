//! pgrepl-apply: applying decoded pgoutput to a PostgreSQL target, exactly once and without
//! loops — links (one source into one target) and what they are made of.
//!
//! ```text
//!  source ──ReplicationStream──▶ Assembler ──RemoteTxn──▶ Applier ──▶ target
//!          (pgrepl-core)        (transaction)            (applier: fast pipelined path,
//!                                                          careful path with conflicts)
//! ```
//!
//! - [`mesh`]: every node into every other: setup (checks, publication, slots, origins,
//!   sequence strides) and teardown.
//! - [`link`]: a running link: sessions, retries, feedback to the source.
//! - [`transaction`]: messages → committed remote transactions; origin filtering (PostgreSQL
//!   15), streamed transactions via [`spool`].
//! - [`applier`]: the apply session: one pipelined segment per transaction, guarded so nothing
//!   commits out of order; failures fall back to [`careful`](crate::applier) conflict handling.
//! - [`relation_map`], [`catalog`], [`metadata`]: how a remote relation maps onto a target table.
//! - [`statements`], [`copy_format`], [`pipeline`]: the SQL, COPY data and protocol plumbing.
//! - [`history`]: `pgrepl.conflict_history`; [`names`]: slot, origin and publication names;
//!   [`stats`]: what a link reports; [`error`]: what can stop it.
//!
//! The guarantees (see each module for why they hold): every remote transaction is applied as
//! one local transaction, in source commit order, exactly once across crashes of either node or
//! of pgrepl itself; a transaction that pgrepl applied is never sent back; every conflict is
//! resolved by the configured resolver and recorded on the node where it happened.

pub mod applier;
mod careful;
pub mod catalog;
pub mod copy_format;
pub mod error;
pub mod history;
pub mod link;
pub mod mesh;
pub mod metadata;
pub mod names;
pub mod pipeline;
pub mod relation_map;
pub mod spool;
pub mod statements;
pub mod stats;
pub mod transaction;

pub use applier::{Applier, ApplierSettings};
pub use error::{ApplyError, ConflictStop};
pub use link::{Link, LinkConfig, RetryPolicy};
pub use mesh::{Mesh, MeshError, MeshSpec, NodeSpec, Problem, SetupReport, TableSelection};
pub use names::{LinkNames, NameError, validate_name};
pub use stats::{LinkState, LinkStats};
