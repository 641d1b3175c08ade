//! The extended-protocol pipeline of an apply session (PostgreSQL documentation, "Extended
//! Query" and "Pipelining").
//!
//! Work is written as **segments**: a run of Parse/Bind/Execute (and COPY data) closed by one
//! `Sync` — and, for a remote transaction, followed by one simple Query that commits it (see
//! [`Pipeline::end_with`]). Segments are sent without waiting for the previous one's answer.
//! Responses come back in order; a segment completes with its last ReadyForQuery, carrying the
//! first ErrorResponse seen inside it if it failed.
//!
//! Statements are prepared once per session and shape, under generated names. A Parse travels
//! in the same segment as its first use; if that segment fails, the server may or may not have
//! kept the statement, so its name is forgotten and the next use prepares it again under a new
//! name (a stale name on the server is harmless).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use bytes::{Bytes, BytesMut};
use pgrepl_core::connection::{
    BackendMessage, Client, Error as ConnError, ErrorFields, Param, encode_bind,
};
use postgres_protocol::message::frontend;

/// A completed segment.
#[derive(Debug)]
pub struct Segment<T, K> {
    /// What the caller attached to it.
    pub tag: T,
    /// The first error inside it, if it failed (and was rolled back).
    pub error: Option<ErrorFields>,
    /// The rows it returned (only collected when asked for).
    pub rows: Vec<Vec<Option<Bytes>>>,
    collect_rows: bool,
    /// The segment's Parse messages not yet answered by ParseComplete, in order: the key of
    /// a statement it prepares, or `None` for the unnamed statement. After an error the server
    /// skips the rest of the segment, so the keys still here were never prepared.
    parses: VecDeque<Option<K>>,
    ready_for_query_left: u8,
}

/// A pipeline over an apply session.
#[derive(Debug)]
pub struct Pipeline<T, K> {
    client: Client,
    statements: HashMap<K, String>,
    next_name: u64,
    closed: VecDeque<Segment<T, K>>,
    open: Option<Segment<T, K>>,
}

fn encode_err(what: &str, e: impl std::fmt::Display) -> ConnError {
    ConnError::InvalidArgument(format!("{what}: {e}"))
}

impl<T, K: Hash + Eq + Clone> Pipeline<T, K> {
    /// A pipeline on an open session.
    pub fn new(client: Client) -> Self {
        Pipeline {
            client,
            statements: HashMap::new(),
            next_name: 0,
            closed: VecDeque::new(),
            open: None,
        }
    }

    /// The session, for one-at-a-time work; only while nothing is in flight.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether no segment is open or awaiting its answer.
    pub fn is_idle(&self) -> bool {
        self.open.is_none() && self.closed.is_empty()
    }

    /// Segments sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.closed.len()
    }

    /// Bytes written and not yet sent.
    pub fn pending_output(&self) -> usize {
        self.client.connection_ref().pending_write_len()
    }

    /// Opens a segment.
    pub fn begin(&mut self, tag: T, collect_rows: bool) {
        debug_assert!(self.open.is_none(), "a segment is already open");
        self.open = Some(Segment {
            tag,
            error: None,
            rows: Vec::new(),
            collect_rows,
            parses: VecDeque::new(),
            ready_for_query_left: 1,
        });
    }

    /// The name of the statement for `key`, preparing it (in the open segment) with the SQL
    /// from `sql` if this session has not prepared it yet.
    pub fn prepare(&mut self, key: &K, sql: impl FnOnce() -> String) -> Result<String, ConnError> {
        if let Some(name) = self.statements.get(key) {
            return Ok(name.clone());
        }
        self.next_name += 1;
        let name = format!("pgrepl_{}", self.next_name);
        let text = sql();
        if text.contains('\0') {
            return Err(ConnError::InvalidArgument(
                "statement text contains a NUL byte".into(),
            ));
        }
        frontend::parse(
            &name,
            &text,
            std::iter::empty(),
            self.client.connection().write_buffer(),
        )
        .map_err(|e| encode_err("parse", e))?;
        self.statements.insert(key.clone(), name.clone());
        if let Some(open) = self.open.as_mut() {
            open.parses.push_back(Some(key.clone()));
        }
        Ok(name)
    }

    /// Binds `params` to a prepared statement and executes it.
    pub fn execute(&mut self, statement: &str, params: &[Param<'_>]) -> Result<(), ConnError> {
        let buf = self.client.connection().write_buffer();
        encode_bind(buf, statement, params)?;
        frontend::execute("", 0, buf).map_err(|e| encode_err("execute", e))
    }

    /// Parses, binds and executes `sql` as the unnamed statement.
    pub fn execute_unnamed(&mut self, sql: &str, params: &[Param<'_>]) -> Result<(), ConnError> {
        if sql.contains('\0') {
            return Err(ConnError::InvalidArgument(
                "statement text contains a NUL byte".into(),
            ));
        }
        let buf = self.client.connection().write_buffer();
        frontend::parse("", sql, std::iter::empty(), buf).map_err(|e| encode_err("parse", e))?;
        if let Some(open) = self.open.as_mut() {
            open.parses.push_back(None);
        }
        self.execute("", params)
    }

    /// The output buffer, for COPY data that follows an executed `COPY … FROM STDIN`.
    pub fn output(&mut self) -> &mut BytesMut {
        self.client.connection().write_buffer()
    }

    /// Closes the open segment with `Sync`.
    pub fn end(&mut self) {
        frontend::sync(self.client.connection().write_buffer());
        if let Some(open) = self.open.take() {
            self.closed.push_back(open);
        }
    }

    /// Closes the open segment with `Sync` and then the simple query `sql`, as one more round
    /// of the same segment: the server answers both with a ReadyForQuery each, in every case
    /// (after an error the `Sync` ends the skipping, and the query then fails or ends the
    /// failed transaction block). A simple Query is one protocol message, executed only once
    /// it has arrived whole — which is what makes it the place for the final statements of a
    /// transaction that must not run without its COMMIT.
    pub fn end_with(&mut self, sql: &str) -> Result<(), ConnError> {
        if sql.contains('\0') {
            return Err(ConnError::InvalidArgument(
                "statement text contains a NUL byte".into(),
            ));
        }
        let buf = self.client.connection().write_buffer();
        frontend::sync(buf);
        frontend::query(sql, buf).map_err(|e| encode_err("query", e))?;
        if let Some(mut open) = self.open.take() {
            open.ready_for_query_left = 2;
            self.closed.push_back(open);
        }
        Ok(())
    }

    /// Closes the open transaction segment so that it certainly rolls back: used when a
    /// transaction cannot be finished (its predecessor failed). `in_block`: the segment began
    /// with BEGIN, so its end is a query rather than the `Sync` alone.
    pub fn abandon(&mut self, in_block: bool) -> Result<(), ConnError> {
        self.execute_unnamed("SELECT 1 / 0 /* pgrepl: abandoned transaction */", &[])?;
        if in_block {
            self.end_with("ROLLBACK")
        } else {
            self.end();
            Ok(())
        }
    }

    /// Sends and receives; cancel-safe.
    pub async fn exchange(&mut self) -> Result<(), ConnError> {
        self.client.connection().exchange().await
    }

    /// Sends and receives what can be, without waiting.
    pub fn exchange_now(&mut self) -> Result<bool, ConnError> {
        self.client.connection().exchange_now()
    }

    /// Sends everything written so far and waits until it is out.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        self.client.connection().flush().await
    }

    /// The next completed segment among the responses already received.
    pub fn next_completed(&mut self) -> Result<Option<Segment<T, K>>, ConnError> {
        loop {
            let Some(msg) = self.client.connection().try_recv_buffered()? else {
                return Ok(None);
            };
            let current = match self.closed.front_mut() {
                Some(s) => s,
                None => match self.open.as_mut() {
                    Some(s) => s,
                    None => {
                        let conn = self.client.connection();
                        return Err(conn.unexpected(&msg, "with no statement in flight"));
                    }
                },
            };
            match msg {
                BackendMessage::ErrorResponse(fields) => {
                    if current.error.is_none() {
                        current.error = Some(fields);
                    }
                }
                BackendMessage::DataRow(values) => {
                    if current.collect_rows {
                        current.rows.push(values);
                    }
                }
                BackendMessage::ReadyForQuery(_) => {
                    match self.closed.front_mut() {
                        Some(front) if front.ready_for_query_left > 1 => {
                            front.ready_for_query_left -= 1;
                            continue;
                        }
                        _ => {}
                    }
                    let Some(done) = self.closed.pop_front() else {
                        let conn = self.client.connection();
                        return Err(conn.unexpected(&msg, "before the end of a pipelined segment"));
                    };
                    // A statement whose Parse succeeded exists on the server even when the
                    // segment failed later, and stays known; only unanswered ones are gone.
                    for key in done.parses.iter().flatten() {
                        self.statements.remove(key);
                    }
                    return Ok(Some(done));
                }
                BackendMessage::ParseComplete => {
                    current.parses.pop_front();
                }
                BackendMessage::BindComplete
                | BackendMessage::CommandComplete(_)
                | BackendMessage::NoData
                | BackendMessage::EmptyQueryResponse
                | BackendMessage::CopyInResponse
                | BackendMessage::CloseComplete
                | BackendMessage::RowDescription(_)
                | BackendMessage::ParameterDescription(_) => {}
                other => {
                    let conn = self.client.connection();
                    return Err(conn.unexpected(&other, "in a pipelined segment"));
                }
            }
        }
    }

    /// Forgets every prepared statement (the session's statements stay on the server).
    pub fn forget_statements(&mut self) {
        self.statements.clear();
    }
}
