//! The careful path: one remote transaction applied statement by statement, looking before
//! every write.
//!
//! For each change it locks and reads the local row(s) the change concerns, with who last wrote
//! them and when (`pg_xact_commit_timestamp_origin(xmin)`), and decides:
//!
//! - INSERT: every unique index the remote row fills is probed. No local row: insert. One:
//!   `insert_exists`. Several different rows: `multiple_unique_conflicts`.
//! - UPDATE: the row is found by the replica identity. None: `update_missing`. Last written by
//!   another origin (a local session, a third node): `update_origin_differs`. Then, if the new
//!   values collide with *other* rows on a unique index: `update_exists` (or
//!   `multiple_unique_conflicts`).
//! - DELETE: none: `delete_missing`; another origin: `delete_origin_differs`.
//!
//! A row last written by this link's own origin, or whose writer is unknown (frozen, or written
//! before `track_commit_timestamp` was on), is not in conflict. Each conflict asks the
//! resolver, counts in the link's metrics and writes one row of `pgrepl.conflict_history` in
//! the same transaction. A resolver's `error` rolls the transaction back, records the conflict
//! in a transaction of its own (with the origin's transaction state reset, so that record can
//! never advance the origin past the transaction it is about), and stops the link.
//!
//! Round trips are what a careful transaction costs, so only questions wait for an answer:
//! every statement travels in a segment of its own on the session's pipeline, writes (and the
//! BEGIN, the history rows) are sent without waiting and go out together with the next probe,
//! independent probes are sent together, and the origin stamp travels with the COMMIT. A
//! failing write fails everything after it in the transaction block, so the first error is the
//! one reported, wherever the path was when it arrived.

use std::sync::Arc;

use pgrepl_conflict::{Conflict, ConflictKind, Resolution, RowVersion};
use pgrepl_core::PgTimestamp;
use pgrepl_core::connection::{Error as ConnError, ErrorFields, Param};
use pgrepl_core::pgoutput::{
    ColumnRef, Delete, Insert, LogicalMessage, OldTuple, TupleData, Update,
};

use bytes::Bytes;

use crate::applier::{Applier, StatementKey, Tag, param, set_columns, value};
use crate::error::{ApplyError, ConflictStop};
use crate::history;
use crate::relation_map::RelationMap;
use crate::statements::{self, Match};
use crate::transaction::RemoteTxn;

/// The table an error of a conflict-history insert concerns.
const HISTORY_TABLE: &str = "pgrepl.conflict_history";

/// A local row as a probe returns it.
#[derive(Debug, Clone)]
struct LocalRow {
    ctid: String,
    commit_time: Option<PgTimestamp>,
    roident: Option<u32>,
    json: String,
}

/// One conflict, ready to be resolved and recorded.
struct Found<'a> {
    kind: ConflictKind,
    map: &'a RelationMap,
    locals: Vec<LocalRow>,
    key_json: String,
    remote_json: String,
}

/// Why a careful attempt ended early.
enum Stop {
    /// A definite or transient error.
    Error(ApplyError),
    /// The resolver said `error`.
    Conflict(Box<ConflictStop>, HistoryRecord),
}

/// A history row kept aside to be written after a rollback.
struct HistoryRecord {
    rows: Vec<Vec<Option<String>>>,
}

impl From<ApplyError> for Stop {
    fn from(e: ApplyError) -> Self {
        Stop::Error(e)
    }
}

/// A malformed answer to a probe (the server broke its own statement's shape).
fn malformed(applier: &Applier, what: &str) -> ApplyError {
    ApplyError::Unexpected {
        source_node: applier.names.source.clone(),
        what: format!("a careful-path probe returned {what}"),
    }
}

fn params_of<'t>(t: &'t TupleData, cols: &[usize]) -> Vec<Param<'t>> {
    cols.iter().map(|&c| param(value(t, c))).collect()
}

fn text_at(row: &[Option<Bytes>], i: usize) -> Option<&str> {
    row.get(i)
        .and_then(Option::as_ref)
        .and_then(|b| std::str::from_utf8(b).ok())
}

impl Applier {
    fn parse_local(&self, row: &[Option<Bytes>]) -> Result<LocalRow, ApplyError> {
        if row.len() != 4 {
            return Err(malformed(
                self,
                &format!("{} columns instead of 4", row.len()),
            ));
        }
        let ctid = text_at(row, 0).ok_or_else(|| malformed(self, "a row without a ctid"))?;
        let unix_micros = match text_at(row, 1) {
            None => None,
            Some(t) => Some(
                t.parse::<i64>()
                    .map_err(|_| malformed(self, "a commit time that is not a number"))?,
            ),
        };
        let roident = match text_at(row, 2) {
            None => None,
            Some(t) => Some(
                t.parse::<u32>()
                    .map_err(|_| malformed(self, "an origin id that is not a number"))?,
            ),
        };
        Ok(LocalRow {
            ctid: ctid.to_owned(),
            commit_time: unix_micros.and_then(PgTimestamp::from_unix_micros),
            roident,
            json: text_at(row, 3).unwrap_or("null").to_owned(),
        })
    }

    /// Sends `statements` as one segment of the careful path without waiting for the answer
    /// (closed by `then_query`, a simple query, if given); returns the segment's number for
    /// [`careful_wait`](Self::careful_wait). `table` names what an error concerns.
    fn careful_send(
        &mut self,
        table: &str,
        statements: &[(&str, &[Param<'_>])],
        then_query: Option<&str>,
    ) -> Result<u64, ApplyError> {
        self.careful_sent += 1;
        let seq = self.careful_sent;
        self.pipeline
            .begin(Tag::Careful(seq, Arc::from(table)), true);
        let mut written = Ok(());
        for (sql, params) in statements {
            written = self
                .pipeline
                .prepare(&StatementKey::careful(sql), || (*sql).to_owned())
                .and_then(|name| self.pipeline.execute(&name, params));
            if written.is_err() {
                break;
            }
        }
        let closed = match then_query {
            Some(query) => match self.pipeline.end_with(query) {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.pipeline.end();
                    Err(e)
                }
            },
            None => {
                self.pipeline.end();
                Ok(())
            }
        };
        written.and(closed).map_err(|e| self.conn_err(e))?;
        Ok(seq)
    }

    /// Sends one statement (see [`careful_send`](Self::careful_send)).
    fn careful_send_one(
        &mut self,
        table: &str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, ApplyError> {
        self.careful_send(table, &[(sql, params)], None)
    }

    /// Waits for segment `seq` and returns its rows — or the first error of any segment sent
    /// before it, which failed the transaction block.
    async fn careful_wait(
        &mut self,
        txn: &RemoteTxn,
        seq: u64,
    ) -> Result<Vec<Vec<Option<Bytes>>>, ApplyError> {
        loop {
            while let Some(seg) = self
                .pipeline
                .next_completed()
                .map_err(|e| self.conn_err(e))?
            {
                let Tag::Careful(done, table) = seg.tag else {
                    self.completed(seg)?;
                    continue;
                };
                if let Some(fields) = seg.error
                    && self.careful_error.is_none()
                {
                    self.careful_error = Some((table, fields));
                }
                if done >= seq {
                    if let Some((table, fields)) = self.careful_error.take() {
                        return Err(self.careful_refused(txn, &table, fields));
                    }
                    return Ok(seg.rows);
                }
            }
            self.pipeline
                .exchange()
                .await
                .map_err(|e| self.conn_err(e))?;
        }
    }

    fn careful_refused(&mut self, txn: &RemoteTxn, table: &str, fields: ErrorFields) -> ApplyError {
        if table == HISTORY_TABLE {
            let hint = if fields.code == "42P01" {
                " (run `bidir-sync setup` to create pgrepl.conflict_history)"
            } else {
                ""
            };
            return ApplyError::NotSetUp {
                node: self.names.target.clone(),
                what: format!("cannot record a conflict: {}{hint}", fields.message),
            };
        }
        let cause = self.client().connection_ref().db_error(fields);
        self.refused(txn, table, cause)
    }

    /// Waits until no segment of the careful path is in flight, forgetting how they ended (after
    /// a failure, before the rollback).
    async fn careful_settle(&mut self) -> Result<(), ApplyError> {
        loop {
            while let Some(seg) = self
                .pipeline
                .next_completed()
                .map_err(|e| self.conn_err(e))?
            {
                if !matches!(seg.tag, Tag::Careful(..)) {
                    self.completed(seg)?;
                }
            }
            if self.pipeline.in_flight() == 0 {
                break;
            }
            self.pipeline
                .exchange()
                .await
                .map_err(|e| self.conn_err(e))?;
        }
        self.careful_error = None;
        Ok(())
    }

    /// Applies `txn` on the careful path, retrying transient failures a few times.
    pub(crate) async fn apply_carefully(&mut self, txn: &RemoteTxn) -> Result<(), ApplyError> {
        let mut attempt = 0;
        loop {
            let result = self.careful_once(txn).await;
            match result {
                Ok(()) => return Ok(()),
                Err(stop) => {
                    // Whatever happened, leave nothing in flight and no transaction open.
                    if self.careful_settle().await.is_ok() {
                        let _ = self.client().batch_execute("ROLLBACK").await;
                    }
                    match stop {
                        Stop::Conflict(stop, record) => {
                            self.record_after_rollback(txn, record).await?;
                            return Err(ApplyError::Conflict {
                                target: self.names.target.clone(),
                                stop,
                            });
                        }
                        Stop::Error(e) => {
                            let transient = match &e {
                                ApplyError::Refused { cause, .. } => cause.is_retryable(),
                                _ => false,
                            };
                            if transient && attempt < self.settings.careful_retries {
                                attempt += 1;
                                tracing::info!(link = %self.names, xid = txn.xid, error = %e, attempt, "retrying transaction");
                                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt))
                                    .await;
                                continue;
                            }
                            if matches!(e, ApplyError::Refused { ref cause, .. } if matches!(cause.code(), Some("42703" | "42P01" | "42804")))
                            {
                                // The target's tables may have changed: look again next time.
                                self.forget_mappings();
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    fn refused(&self, txn: &RemoteTxn, table: &str, cause: ConnError) -> ApplyError {
        match cause {
            ConnError::Db { .. } => ApplyError::Refused {
                target: self.names.target.clone(),
                source_node: self.names.source.clone(),
                xid: txn.xid,
                commit_lsn: txn.commit_lsn,
                table: table.to_owned(),
                cause: Box::new(cause),
            },
            other => self.conn_err(other),
        }
    }

    async fn careful_once(&mut self, txn: &RemoteTxn) -> Result<(), Stop> {
        self.careful_error = None;
        // A failed pipelined transaction leaves its block open (its final query stops at the
        // first statement): end it.
        let open = self.client().connection_ref().transaction_status() != b'I';
        let mut start: Vec<(&str, &[Param<'_>])> = Vec::with_capacity(3);
        if open {
            start.push(("ROLLBACK", &[]));
        }
        start.push(("BEGIN", &[]));
        start.push((statements::CONSTRAINTS_IMMEDIATE, &[]));
        self.careful_send("-", &start, None)?;
        for msg in Applier::messages(txn)? {
            let msg = msg?;
            match msg.as_ref() {
                LogicalMessage::Relation(r) => {
                    self.relations.insert(r.clone());
                }
                LogicalMessage::Insert(i) => self.careful_insert(txn, i).await?,
                LogicalMessage::Update(u) => self.careful_update(txn, u).await?,
                LogicalMessage::Delete(d) => self.careful_delete(txn, d).await?,
                LogicalMessage::Truncate(t) => {
                    let mut tables = Vec::with_capacity(t.relation_oids.len());
                    for oid in &t.relation_oids {
                        tables.push(self.map_for(*oid).await?.target.quoted.clone());
                    }
                    let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
                    let sql = statements::truncate(&refs, t.restart_identity);
                    self.careful_send_one(&tables.join(", "), &sql, &[])?;
                }
                _ => {}
            }
        }
        let end = txn.end_lsn.to_string();
        let time = txn.commit_time.to_string();
        // The stamp's settings and the COMMIT query (one message: the origin stamp and the
        // COMMIT run together or not at all) in one segment.
        let done = self.careful_send(
            "-",
            &[(
                statements::STAMP,
                &[Param::Text(end.as_bytes()), Param::Text(time.as_bytes())],
            )],
            Some(statements::COMMIT),
        )?;
        self.careful_wait(txn, done).await?;
        Ok(())
    }

    /// Locks and reads the local rows `sql` finds (sent by [`careful_send_one`]).
    async fn probe_rows(&mut self, txn: &RemoteTxn, seq: u64) -> Result<Vec<LocalRow>, ApplyError> {
        let rows = self.careful_wait(txn, seq).await?;
        rows.iter().map(|r| self.parse_local(r)).collect()
    }

    /// The local rows that hold `tuple`'s values on any unique index (other than the row at
    /// `except`), each once. `unchanged`: the columns (and their values) by which the row at
    /// `except` was found — an index on those alone, whose values `tuple` keeps, can only hold
    /// that row, and is not probed.
    async fn unique_collisions(
        &mut self,
        txn: &RemoteTxn,
        map: &RelationMap,
        tuple: &TupleData,
        except: Option<&str>,
        unchanged: Option<(&[usize], &TupleData)>,
    ) -> Result<Vec<LocalRow>, ApplyError> {
        let mut sent = Vec::new();
        for index in &map.target.unique_indexes {
            let Some(remote_cols) = index
                .columns
                .iter()
                .map(|t| map.remote_column_for(*t))
                .collect::<Option<Vec<usize>>>()
            else {
                continue;
            };
            let fillable = remote_cols.iter().all(|&c| match value(tuple, c) {
                ColumnRef::UnchangedToast => false,
                ColumnRef::Null => index.nulls_not_distinct,
                _ => true,
            });
            if !fillable {
                continue;
            }
            if let Some((matched, old)) = unchanged
                && remote_cols
                    .iter()
                    .all(|c| matched.contains(c) && value(tuple, *c) == value(old, *c))
            {
                continue;
            }
            let sql = statements::probe_unique(map, index, &remote_cols, except.is_some());
            let mut params = params_of(tuple, &remote_cols);
            if let Some(ctid) = except {
                params.push(Param::Text(ctid.as_bytes()));
            }
            sent.push(self.careful_send_one(&map.target.quoted, &sql, &params)?);
        }
        let mut found: Vec<LocalRow> = Vec::new();
        for seq in sent {
            for row in self.probe_rows(txn, seq).await? {
                if !found.iter().any(|f| f.ctid == row.ctid) {
                    found.push(row);
                }
            }
        }
        Ok(found)
    }

    /// Sends the query for the remote values of `cols` in `tuple` as JSON (see
    /// [`statements::values_json`]); its answer is read by [`json_of`](Self::json_of).
    fn send_json(
        &mut self,
        map: &RelationMap,
        tuple: &TupleData,
        cols: &[usize],
    ) -> Result<u64, ApplyError> {
        let cols: Vec<usize> = cols
            .iter()
            .copied()
            .filter(|&c| !matches!(value(tuple, c), ColumnRef::UnchangedToast))
            .collect();
        let sql = statements::values_json(map, &cols);
        self.careful_send_one(&map.target.quoted, &sql, &params_of(tuple, &cols))
    }

    async fn json_of(&mut self, txn: &RemoteTxn, seq: u64) -> Result<String, ApplyError> {
        let rows = self.careful_wait(txn, seq).await?;
        Ok(rows
            .first()
            .and_then(|r| text_at(r, 0))
            .unwrap_or("null")
            .to_owned())
    }

    /// The key's and the remote row's JSON for a conflict record, in one round trip.
    async fn jsons(
        &mut self,
        txn: &RemoteTxn,
        map: &RelationMap,
        key: (&TupleData, &[usize]),
        remote: (&TupleData, &[usize]),
    ) -> Result<(String, String), ApplyError> {
        let sent = self.send_jsons(map, key, remote)?;
        self.await_jsons(txn, sent).await
    }

    /// Asks for the key's and the remote row's JSON without waiting. Sent together with a
    /// probe, they are at hand when the probe finds a conflict, a round trip earlier; when it
    /// finds none, their answers are passed over (they read nothing and lock nothing).
    fn send_jsons(
        &mut self,
        map: &RelationMap,
        key: (&TupleData, &[usize]),
        remote: (&TupleData, &[usize]),
    ) -> Result<(u64, u64), ApplyError> {
        Ok((
            self.send_json(map, key.0, key.1)?,
            self.send_json(map, remote.0, remote.1)?,
        ))
    }

    /// The answers to [`send_jsons`](Self::send_jsons).
    async fn await_jsons(
        &mut self,
        txn: &RemoteTxn,
        (k, r): (u64, u64),
    ) -> Result<(String, String), ApplyError> {
        Ok((self.json_of(txn, k).await?, self.json_of(txn, r).await?))
    }

    /// Asks the resolver and records the conflict; `Err(Stop::Conflict)` for `error`.
    async fn resolve(&mut self, txn: &RemoteTxn, found: Found<'_>) -> Result<Resolution, Stop> {
        let mut labels = Vec::with_capacity(found.locals.len());
        for local in &found.locals {
            labels.push(match local.roident {
                Some(id) => Some(self.meta.origin_label(id).await?),
                None => None,
            });
        }
        let versions: Vec<RowVersion<'_>> = found
            .locals
            .iter()
            .zip(&labels)
            .map(|(l, label)| RowVersion {
                node: label.as_deref(),
                commit_time: l.commit_time,
            })
            .collect();
        let relation = found.map.target.quoted.clone();
        let conflict = Conflict {
            kind: found.kind,
            relation: &relation,
            remote: RowVersion {
                node: Some(&self.names.source),
                commit_time: Some(txn.commit_time),
            },
            locals: &versions,
        };
        let resolver = Arc::clone(self.resolvers.for_kind(found.kind));
        let resolution = resolver.resolve(&conflict);
        self.stats.conflicts.record(found.kind, resolution);
        tracing::info!(
            link = %self.names,
            kind = %found.kind,
            resolution = %resolution,
            table = %relation,
            key = %found.key_json,
            "conflict"
        );
        let mut rows = Vec::new();
        let locals: Vec<Option<&LocalRow>> = if found.locals.is_empty() {
            vec![None]
        } else {
            found.locals.iter().map(Some).collect()
        };
        for (i, local) in locals.into_iter().enumerate() {
            rows.push(vec![
                Some(self.names.source.clone()),
                Some(self.names.target.clone()),
                Some(found.kind.as_str().to_owned()),
                Some(resolution.as_str().to_owned()),
                Some(resolver.name().to_owned()),
                Some(relation.clone()),
                Some(found.key_json.clone()),
                local.map(|l| l.json.clone()),
                labels.get(i).cloned().flatten(),
                local.and_then(|l| l.commit_time).map(|t| t.0.to_string()),
                Some(found.remote_json.clone()),
                Some(self.names.source.clone()),
                Some(txn.commit_time.0.to_string()),
                Some(txn.commit_lsn.0.to_string()),
                Some(txn.xid.to_string()),
            ]);
        }
        let record = HistoryRecord { rows };
        if resolution == Resolution::Error {
            let local_json = match found.locals.as_slice() {
                [] => "null".to_owned(),
                [one] => one.json.clone(),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(|l| l.json.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            return Err(Stop::Conflict(
                Box::new(ConflictStop {
                    kind: found.kind,
                    table: relation,
                    key: found.key_json,
                    local: local_json,
                    remote: found.remote_json,
                    source: self.names.source.clone(),
                    commit_lsn: txn.commit_lsn,
                }),
                record,
            ));
        }
        self.send_history(&record)?;
        Ok(resolution)
    }

    /// Sends the inserts of `record` into the conflict history (without waiting); returns the
    /// last segment's number, if any.
    fn send_history(&mut self, record: &HistoryRecord) -> Result<Option<u64>, ApplyError> {
        let mut last = None;
        for row in &record.rows {
            // Columns 9, 12 and 13 are binary (timestamptz, timestamptz, pg_lsn); the others text.
            let binaries: Vec<Option<[u8; 8]>> = row
                .iter()
                .enumerate()
                .map(|(i, v)| match (i, v) {
                    (9 | 12, Some(t)) => t.parse::<i64>().ok().map(i64::to_be_bytes),
                    (13, Some(t)) => t.parse::<u64>().ok().map(u64::to_be_bytes),
                    _ => None,
                })
                .collect();
            let params: Vec<Param<'_>> = row
                .iter()
                .zip(&binaries)
                .enumerate()
                .map(|(i, (v, b))| match (i, v, b) {
                    (9 | 12 | 13, _, Some(bytes)) => Param::Binary(bytes),
                    (9 | 12 | 13, _, None) => Param::Null,
                    (_, Some(text), _) => Param::Text(text.as_bytes()),
                    (_, None, _) => Param::Null,
                })
                .collect();
            last = Some(self.careful_send_one(HISTORY_TABLE, history::INSERT_HISTORY, &params)?);
        }
        Ok(last)
    }

    /// Records an `error` conflict after the transaction was rolled back, in a transaction of
    /// its own whose commit cannot move the origin.
    async fn record_after_rollback(
        &mut self,
        txn: &RemoteTxn,
        record: HistoryRecord,
    ) -> Result<(), ApplyError> {
        self.careful_error = None;
        self.careful_send(
            "-",
            &[
                ("SELECT pg_catalog.pg_replication_origin_xact_reset()", &[]),
                ("BEGIN", &[]),
            ],
            None,
        )?;
        self.send_history(&record)?;
        let done = self.careful_send("-", &[("COMMIT", &[])], None)?;
        let written = self.careful_wait(txn, done).await.map(drop);
        if written.is_err() {
            self.careful_settle().await?;
            self.client()
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| self.conn_err(e))?;
        }
        written
    }

    async fn careful_insert(&mut self, txn: &RemoteTxn, insert: &Insert) -> Result<(), Stop> {
        let map = self.map_for(insert.relation_oid).await?;
        let cols = map.writable_columns().to_vec();
        let new = &insert.new;
        let locals = self.unique_collisions(txn, &map, new, None, None).await?;
        if locals.is_empty() {
            return self.insert_row(&map, new);
        }
        let kind = if locals.len() == 1 {
            ConflictKind::InsertExists
        } else {
            ConflictKind::MultipleUniqueConflicts
        };
        let key_cols = self.key_columns(&map);
        let (key_json, remote_json) = self
            .jsons(txn, &map, (new, &key_cols), (new, &cols))
            .await?;
        let found = Found {
            kind,
            map: &map,
            key_json,
            remote_json,
            locals: locals.clone(),
        };
        match self.resolve(txn, found).await? {
            Resolution::ApplyRemote if locals.len() == 1 => {
                let ctid = locals.first().map(|l| l.ctid.clone()).unwrap_or_default();
                self.update_row(&map, new, &cols, &ctid)
            }
            Resolution::ApplyRemote => {
                for l in &locals {
                    self.delete_row(&map, &l.ctid)?;
                }
                self.insert_row(&map, new)
            }
            Resolution::KeepLocal | Resolution::Error => Ok(()),
        }
    }

    async fn careful_update(&mut self, txn: &RemoteTxn, update: &Update) -> Result<(), Stop> {
        let map = self.map_for(update.relation_oid).await?;
        let (text, matched, source) = self.match_for(&map, update.old.as_ref(), &update.new)?;
        let m = if text {
            Match::AllText(&matched)
        } else {
            Match::Equal(&matched)
        };
        let sql = statements::probe(&map, m);
        let probe =
            self.careful_send_one(&map.target.quoted, &sql, &params_of(source, &matched))?;
        let set = set_columns(&map, &update.new);
        let jsons = self.send_jsons(&map, (source, &matched), (&update.new, &set))?;
        let row = self.probe_rows(txn, probe).await?.into_iter().next();
        let Some(row) = row else {
            let (key_json, remote_json) = self.await_jsons(txn, jsons).await?;
            let found = Found {
                kind: ConflictKind::UpdateMissing,
                map: &map,
                key_json,
                remote_json,
                locals: vec![],
            };
            let resolution = self.resolve(txn, found).await?;
            let complete = map.writable_columns().len() == set.len();
            if resolution == Resolution::ApplyRemote && complete {
                return self.insert_row(&map, &update.new);
            }
            return Ok(());
        };
        if !self.is_ours(row.roident) {
            let (key_json, remote_json) = self.await_jsons(txn, jsons).await?;
            let found = Found {
                kind: ConflictKind::UpdateOriginDiffers,
                map: &map,
                key_json,
                remote_json,
                locals: vec![row.clone()],
            };
            if self.resolve(txn, found).await? != Resolution::ApplyRemote {
                return Ok(());
            }
        }
        let others = self
            .unique_collisions(
                txn,
                &map,
                &update.new,
                Some(&row.ctid),
                Some((&matched, source)),
            )
            .await?;
        if !others.is_empty() {
            let kind = if others.len() == 1 {
                ConflictKind::UpdateExists
            } else {
                ConflictKind::MultipleUniqueConflicts
            };
            let (key_json, remote_json) = self
                .jsons(txn, &map, (source, &matched), (&update.new, &set))
                .await?;
            let found = Found {
                kind,
                map: &map,
                key_json,
                remote_json,
                locals: others.clone(),
            };
            if self.resolve(txn, found).await? != Resolution::ApplyRemote {
                return Ok(());
            }
            for o in &others {
                self.delete_row(&map, &o.ctid)?;
            }
        }
        if set.is_empty() {
            return Ok(());
        }
        self.update_row(&map, &update.new, &set, &row.ctid)
    }

    async fn careful_delete(&mut self, txn: &RemoteTxn, delete: &Delete) -> Result<(), Stop> {
        let map = self.map_for(delete.relation_oid).await?;
        let old = match &delete.old {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        };
        let (text, matched, source) = self.match_for(&map, Some(&delete.old), old)?;
        let m = if text {
            Match::AllText(&matched)
        } else {
            Match::Equal(&matched)
        };
        let sql = statements::probe(&map, m);
        let probe =
            self.careful_send_one(&map.target.quoted, &sql, &params_of(source, &matched))?;
        let row = self.probe_rows(txn, probe).await?.into_iter().next();
        let Some(row) = row else {
            let seq = self.send_json(&map, source, &matched)?;
            let key_json = self.json_of(txn, seq).await?;
            let found = Found {
                kind: ConflictKind::DeleteMissing,
                map: &map,
                remote_json: key_json.clone(),
                key_json,
                locals: vec![],
            };
            self.resolve(txn, found).await?;
            return Ok(());
        };
        if !self.is_ours(row.roident) {
            let all: Vec<usize> = (0..map.remote.columns.len()).collect();
            let (key_json, remote_json) = self
                .jsons(txn, &map, (source, &matched), (source, &all))
                .await?;
            let found = Found {
                kind: ConflictKind::DeleteOriginDiffers,
                map: &map,
                remote_json,
                key_json,
                locals: vec![row.clone()],
            };
            if self.resolve(txn, found).await? != Resolution::ApplyRemote {
                return Ok(());
            }
        }
        self.delete_row(&map, &row.ctid)
    }

    /// Whether a row last written by `roident` needs no conflict: this link's origin, or an
    /// unknown writer (frozen, no commit timestamp, or this very transaction).
    fn is_ours(&self, roident: Option<u32>) -> bool {
        match roident {
            None => true,
            Some(id) => id.to_string() == self.origin_id,
        }
    }

    fn key_columns(&self, map: &RelationMap) -> Vec<usize> {
        match &map.lookup {
            crate::relation_map::Lookup::Key(c) | crate::relation_map::Lookup::FullByKey(c) => {
                c.clone()
            }
            _ => map
                .target
                .unique_indexes
                .first()
                .and_then(|i| {
                    i.columns
                        .iter()
                        .map(|t| map.remote_column_for(*t))
                        .collect::<Option<Vec<_>>>()
                })
                .unwrap_or_else(|| map.writable_columns().to_vec()),
        }
    }

    // The writes: sent without waiting (see the module documentation).

    fn insert_row(&mut self, map: &RelationMap, new: &TupleData) -> Result<(), Stop> {
        let cols = map.writable_columns();
        let sql = statements::insert(map, cols);
        self.careful_send_one(&map.target.quoted, &sql, &params_of(new, cols))?;
        Ok(())
    }

    fn update_row(
        &mut self,
        map: &RelationMap,
        new: &TupleData,
        set: &[usize],
        ctid: &str,
    ) -> Result<(), Stop> {
        let set: Vec<usize> = set
            .iter()
            .copied()
            .filter(|&c| !matches!(value(new, c), ColumnRef::UnchangedToast))
            .collect();
        if set.is_empty() {
            return Ok(());
        }
        let sql = statements::update_by_ctid(map, &set);
        let mut params = params_of(new, &set);
        params.push(Param::Text(ctid.as_bytes()));
        self.careful_send_one(&map.target.quoted, &sql, &params)?;
        Ok(())
    }

    fn delete_row(&mut self, map: &RelationMap, ctid: &str) -> Result<(), Stop> {
        let sql = statements::delete_by_ctid(map);
        self.careful_send_one(&map.target.quoted, &sql, &[Param::Text(ctid.as_bytes())])?;
        Ok(())
    }
}
