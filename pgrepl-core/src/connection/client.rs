//! A small SQL client on a [`Connection`]: simple-protocol scripts and parameterized
//! extended-protocol queries, all values as text.
//!
//! pgrepl's own SQL (catalog queries, setup, status, conflict history) is modest and
//! text-shaped, so parameters are sent as text with their types left to the server to infer
//! (cast in the SQL where inference cannot work, e.g. `$1::pg_lsn`) and results come back as
//! text. A value never becomes part of the SQL text: [`Client::query`] sends it as a Bind
//! parameter. The applier's pipelined path lives in `pgrepl-apply` and uses
//! [`Client::connection`] directly.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use super::backend::{BackendMessage, FieldDescription};
use super::config::ConnectConfig;
use super::error::{Error, Result};
use super::{Connection, SessionKind};
use crate::Lsn;

/// A query parameter as it goes on the wire: NULL, or bytes in text or binary format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    /// SQL NULL.
    Null,
    /// Text format (the type's input function reads it).
    Text(&'a [u8]),
    /// Binary format (the type's receive function reads it).
    Binary(&'a [u8]),
}

/// Appends a Bind message for `statement` (unnamed portal) with `params`, asking for text
/// results.
pub fn encode_bind(buf: &mut BytesMut, statement: &str, params: &[Param<'_>]) -> Result<()> {
    let formats = params
        .iter()
        .map(|p| i16::from(matches!(p, Param::Binary(_))));
    let bound = frontend::bind(
        "",
        statement,
        formats,
        params.iter(),
        |p, out| match p {
            Param::Null => Ok(IsNull::Yes),
            Param::Text(v) | Param::Binary(v) => {
                out.extend_from_slice(v);
                Ok(IsNull::No)
            }
        },
        std::iter::empty(),
        buf,
    );
    bound.map_err(|_| {
        Error::InvalidArgument(
            "a statement with more than 65535 parameters or a value over 2 GiB".into(),
        )
    })
}

/// A value that can be sent as a text-format query parameter.
pub trait ToSqlText {
    /// The text form, or `None` for SQL NULL.
    fn to_sql_text(&self) -> Option<Cow<'_, str>>;
}

impl ToSqlText for str {
    fn to_sql_text(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self))
    }
}

impl ToSqlText for String {
    fn to_sql_text(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self))
    }
}

impl<T: ToSqlText + ?Sized> ToSqlText for &T {
    fn to_sql_text(&self) -> Option<Cow<'_, str>> {
        (**self).to_sql_text()
    }
}

impl<T: ToSqlText> ToSqlText for Option<T> {
    fn to_sql_text(&self) -> Option<Cow<'_, str>> {
        self.as_ref().and_then(ToSqlText::to_sql_text)
    }
}

macro_rules! to_sql_text_display {
    ($($t:ty),*) => {$(
        impl ToSqlText for $t {
            fn to_sql_text(&self) -> Option<Cow<'_, str>> {
                Some(Cow::Owned(self.to_string()))
            }
        }
    )*};
}
to_sql_text_display!(i16, i32, i64, u32, u64, bool, f64, Lsn);

/// A value that can be read from a text-format result column.
pub trait FromSqlText: Sized {
    /// Converts the column's text, or `None` for SQL NULL.
    fn from_sql_text(text: Option<&str>) -> Result<Self, String>;
}

impl<T: FromSqlText> FromSqlText for Option<T> {
    fn from_sql_text(text: Option<&str>) -> Result<Self, String> {
        text.map(|t| T::from_sql_text(Some(t))).transpose()
    }
}

impl FromSqlText for String {
    fn from_sql_text(text: Option<&str>) -> Result<Self, String> {
        text.map(str::to_owned)
            .ok_or_else(|| "unexpected NULL".into())
    }
}

impl FromSqlText for bool {
    fn from_sql_text(text: Option<&str>) -> Result<Self, String> {
        match text {
            Some("t") => Ok(true),
            Some("f") => Ok(false),
            Some(other) => Err(format!("\"{other}\" is not a boolean")),
            None => Err("unexpected NULL".into()),
        }
    }
}

macro_rules! from_sql_text_parse {
    ($($t:ty),*) => {$(
        impl FromSqlText for $t {
            fn from_sql_text(text: Option<&str>) -> Result<Self, String> {
                let t = text.ok_or_else(|| String::from("unexpected NULL"))?;
                t.parse().map_err(|_| format!("\"{t}\" is not a valid {}", stringify!($t)))
            }
        }
    )*};
}
from_sql_text_parse!(i16, i32, i64, u32, u64, f64, Lsn);

/// One result row; values are text (`None` is NULL).
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<Vec<FieldDescription>>,
    values: Vec<Option<Bytes>>,
}

impl Row {
    /// The number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Column descriptions.
    pub fn columns(&self) -> &[FieldDescription] {
        &self.columns
    }

    /// The raw text of column `idx` (`None` for NULL or a missing column).
    pub fn get_str(&self, idx: usize) -> Option<&str> {
        self.values
            .get(idx)
            .and_then(Option::as_ref)
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Converts column `idx`.
    pub fn get<T: FromSqlText>(&self, idx: usize) -> Result<T> {
        let name = self
            .columns
            .get(idx)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| format!("#{idx}"));
        if idx >= self.values.len() {
            return Err(Error::InvalidArgument(format!(
                "result has no column {idx} (it has {})",
                self.values.len()
            )));
        }
        let raw = self.values.get(idx).and_then(Option::as_ref);
        let text = match raw {
            None => None,
            Some(b) => Some(std::str::from_utf8(b).map_err(|_| {
                Error::InvalidArgument(format!("column \"{name}\" is not valid UTF-8"))
            })?),
        };
        T::from_sql_text(text)
            .map_err(|reason| Error::InvalidArgument(format!("column \"{name}\": {reason}")))
    }

    /// Converts the column named `name`.
    pub fn get_by_name<T: FromSqlText>(&self, name: &str) -> Result<T> {
        let idx = self
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::InvalidArgument(format!("result has no column \"{name}\"")))?;
        self.get(idx)
    }
}

/// A SQL session.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    last_affected: u64,
}

impl Client {
    /// Opens an ordinary SQL session.
    pub async fn connect(cfg: &ConnectConfig) -> Result<Client> {
        Ok(Client::from_connection(
            Connection::connect(cfg, SessionKind::Sql).await?,
        ))
    }

    /// Wraps an open connection (SQL or replication; replication sessions accept only the
    /// simple protocol).
    pub fn from_connection(conn: Connection) -> Client {
        Client {
            conn,
            last_affected: 0,
        }
    }

    /// The underlying connection, for pipelined work.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The underlying connection, read-only.
    pub fn connection_ref(&self) -> &Connection {
        &self.conn
    }

    /// Gives the connection back.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// Runs one or more statements with the simple protocol and returns the rows of all of
    /// them. Use it for scripts without parameters (DDL, `SET`, replication commands).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>> {
        if sql.contains('\0') {
            return Err(Error::InvalidArgument(
                "SQL text must not contain NUL bytes".into(),
            ));
        }
        frontend::query(sql, self.conn.write_buffer())
            .map_err(|e| Error::InvalidArgument(format!("query: {e}")))?;
        self.conn.flush().await?;
        self.collect_rows("simple query").await
    }

    /// Runs a script and discards its rows.
    pub async fn batch_execute(&mut self, sql: &str) -> Result<()> {
        self.simple_query(sql).await.map(|_| ())
    }

    /// Runs one statement with text parameters (`$1`, `$2`, …) and returns its rows.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSqlText + Sync)],
    ) -> Result<Vec<Row>> {
        let texts: Vec<Option<Cow<'_, str>>> = params.iter().map(|p| p.to_sql_text()).collect();
        let raw: Vec<Param<'_>> = texts
            .iter()
            .map(|t| match t {
                Some(t) => Param::Text(t.as_bytes()),
                None => Param::Null,
            })
            .collect();
        self.query_params(sql, &raw).await
    }

    /// Runs one statement with parameters in text or binary format and returns its rows
    /// (text format).
    pub async fn query_params(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        if sql.contains('\0') {
            return Err(Error::InvalidArgument(
                "SQL text must not contain NUL bytes".into(),
            ));
        }
        let buf = self.conn.write_buffer();
        frontend::parse("", sql, std::iter::empty(), buf)
            .map_err(|e| Error::InvalidArgument(format!("parse: {e}")))?;
        encode_bind(buf, "", params)?;
        frontend::describe(b'P', "", buf)
            .map_err(|e| Error::InvalidArgument(format!("describe: {e}")))?;
        frontend::execute("", 0, buf)
            .map_err(|e| Error::InvalidArgument(format!("execute: {e}")))?;
        frontend::sync(buf);
        self.conn.flush().await?;
        self.collect_rows("query").await
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSqlText + Sync)]) -> Result<u64> {
        self.query(sql, params).await?;
        Ok(self.last_affected)
    }

    /// Runs a query that must return exactly one row.
    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSqlText + Sync)],
    ) -> Result<Row> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() != 1 {
            return Err(Error::InvalidArgument(format!(
                "expected one row, got {}: {sql}",
                rows.len()
            )));
        }
        rows.pop()
            .ok_or_else(|| Error::InvalidArgument("expected one row".into()))
    }

    /// Runs a query that returns at most one row.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSqlText + Sync)],
    ) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() > 1 {
            return Err(Error::InvalidArgument(format!(
                "expected at most one row, got {}: {sql}",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// Reads the responses up to ReadyForQuery; the first error is returned after the session
    /// is ready again, so the client stays usable.
    async fn collect_rows(&mut self, what: &str) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let mut columns = Arc::new(Vec::new());
        let mut error = None;
        self.last_affected = 0;
        loop {
            match self.conn.recv().await? {
                BackendMessage::ReadyForQuery(_) => break,
                BackendMessage::RowDescription(fields) => columns = Arc::new(fields),
                BackendMessage::DataRow(values) => rows.push(Row {
                    columns: Arc::clone(&columns),
                    values,
                }),
                BackendMessage::CommandComplete(tag) => {
                    self.last_affected = tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                BackendMessage::ErrorResponse(fields) => {
                    if error.is_none() {
                        error = Some(self.conn.db_error(fields));
                    }
                }
                BackendMessage::ParseComplete
                | BackendMessage::BindComplete
                | BackendMessage::NoData
                | BackendMessage::EmptyQueryResponse
                | BackendMessage::CloseComplete
                | BackendMessage::ParameterDescription(_) => {}
                BackendMessage::CopyInResponse => {
                    // A COPY FROM STDIN through this API: refuse it and stay usable.
                    frontend::copy_fail(
                        "COPY FROM STDIN is not supported by this client",
                        self.conn.write_buffer(),
                    )
                    .map_err(|e| Error::InvalidArgument(format!("copy fail: {e}")))?;
                    self.conn.flush().await?;
                }
                other => return Err(self.conn.unexpected(&other, &format!("in a {what}"))),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }
}
