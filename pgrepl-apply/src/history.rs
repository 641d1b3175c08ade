//! `pgrepl.conflict_history`: one row per conflict, on the node where it happened, written in
//! the same transaction as the change it is about — so the record and the decision it records
//! commit or vanish together. The table is never replicated: it is in schema `pgrepl`, which no
//! pgrepl publication includes, and it is written by the apply session, whose transactions carry
//! a replication origin and are therefore never sent on.

/// Creates the schema and table (idempotent).
pub const CREATE_HISTORY: &str = "\
CREATE SCHEMA IF NOT EXISTS pgrepl;
CREATE TABLE IF NOT EXISTS pgrepl.conflict_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    source_node text NOT NULL,
    target_node text NOT NULL,
    kind text NOT NULL,
    resolution text NOT NULL,
    resolver text NOT NULL,
    relation text NOT NULL,
    key jsonb,
    local_row jsonb,
    local_origin text,
    local_commit_time timestamptz,
    remote_row jsonb,
    remote_origin text NOT NULL,
    remote_commit_time timestamptz,
    remote_commit_lsn pg_lsn NOT NULL,
    remote_xid bigint
);
COMMENT ON TABLE pgrepl.conflict_history IS
    'Replication conflicts detected by pgrepl on this node; never replicated.';";

/// Inserts one record. Parameters: source node, target node, kind, resolution, resolver,
/// relation, key (json text), local row (json text), local origin, local commit time
/// (timestamptz, binary), remote row (json text), remote origin, remote commit time
/// (timestamptz, binary), remote commit LSN (pg_lsn, binary), remote xid.
pub const INSERT_HISTORY: &str = "\
INSERT INTO pgrepl.conflict_history (source_node, target_node, kind, resolution, resolver,
    relation, key, local_row, local_origin, local_commit_time, remote_row, remote_origin,
    remote_commit_time, remote_commit_lsn, remote_xid)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10::timestamptz, $11::jsonb, $12,
    $13::timestamptz, $14::pg_lsn, $15::bigint)";
