//! pgrepl-core: the sans-IO half of pgrepl and its replication connection.
//!
//! pgrepl replicates between PostgreSQL nodes by reading each source's
//! built-in `pgoutput` logical decoding stream from a replication slot and
//! applying it on the target. This crate holds the protocol code that every
//! other part builds on. Nothing here does I/O: bytes go in, typed values come
//! out, and the reverse.
//!
//! ```text
//!   source server                                              target (pgrepl-apply)
//!  ┌─────────────┐  CopyData   ┌──────────────────────┐  XLogData.data  ┌──────────────────┐
//!  │ slot +      │ ──────────► │ replication_message  │ ──────────────► │ pgoutput::Decoder│ ──► LogicalMessage
//!  │ pgoutput    │             │ ReplicationMessage   │                 │ (Begin, Relation,│     (Begin, Insert,
//!  │             │ ◄────────── │ StandbyMessage       │                 │  Insert, …)      │      Commit, …)
//!  └─────────────┘  status     └──────────────────────┘                 └──────────────────┘
//!                   update (flush LSN = what is durable on the target)
//! ```
//!
//! # Modules
//!
//! - [`lsn`]: [`Lsn`](lsn::Lsn), a WAL position, shown as `X/Y` in hex.
//! - [`timestamp`]: [`PgTimestamp`](timestamp::PgTimestamp), PostgreSQL's
//!   `TimestampTz` (microseconds since 2000-01-01 UTC), as commit times travel.
//! - [`replication_message`]: the CopyData payloads of `START_REPLICATION`
//!   (section "Streaming Replication Protocol"): XLogData and keepalives from
//!   the server, standby status updates and hot standby feedback from the
//!   client. Both directions decode and encode.
//! - [`pgoutput`]: the pgoutput messages (section "Logical Replication Message
//!   Formats") for protocol versions 1 to 4: the message model, the total
//!   decoder ([`pgoutput::decode`], [`pgoutput::Decoder`]) and the encoder
//!   ([`pgoutput::encode`]). With feature `fixtures`, `pgoutput::fixture`
//!   reads and writes captured streams.
//!
//! # Why the decoders are total
//!
//! Every byte these decoders read comes from the network. A decoder that can
//! panic, or allocate what a corrupt length asks for, turns one bad message
//! into a crashed or exhausted process for every link it serves. So each
//! decoder returns a value or a typed error (which message, which byte
//! offset, what was wrong) for *every* input: the decoding modules deny
//! panicking indexing and unchecked arithmetic, cap every allocation by the
//! bytes actually left, and reject trailing bytes. Property tests check
//! encode → decode round trips for every message and version, and the fuzz
//! targets in `fuzz/` check totality and exact re-encoding on arbitrary input.
//!
//! # Performance
//!
//! Decoding is zero-copy for row data, and cheap beyond that: a decoded
//! tuple holds one handle on the received buffer plus each column's kind and
//! byte range, so a column costs a bounds check, not a copy and not an atomic
//! reference-count bump; the only per-message allocation of an Insert,
//! Update or Delete is the one `Vec` of its columns. The `decode` benchmark
//! in `benches/` measures it on a stream captured from PostgreSQL, next to
//! `pg_walstream`'s parser.

pub mod connection;
pub mod lsn;
pub mod origin_filter;
pub mod pgoutput;
pub mod relation_cache;
pub mod replication_message;
pub mod sql;
pub mod timestamp;

pub use lsn::Lsn;
pub use timestamp::PgTimestamp;
