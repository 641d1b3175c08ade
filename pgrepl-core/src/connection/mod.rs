//! Connections to PostgreSQL over the frontend/backend protocol (PostgreSQL documentation,
//! "Frontend/Backend Protocol"), for both kinds of session pgrepl needs:
//!
//! - **replication** sessions (`replication=database` in the start-up packet) that run
//!   `IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, `START_REPLICATION … LOGICAL` and stream
//!   pgoutput in CopyBoth mode — see [`replication`];
//! - **SQL** sessions for catalog queries, setup and the applier — see [`client`]. The applier
//!   pipelines the extended protocol directly on a [`Connection`] (one `Sync` per remote
//!   transaction, COPY inside the pipeline), which is why pgrepl has its own connection instead
//!   of tokio-postgres: tokio-postgres ends every statement with a `Sync` and cannot pipeline
//!   COPY, and it has no replication mode at all.
//!
//! ```text
//!  ConnectConfig (DSN, env, pgpass)
//!        │
//!        ▼
//!  TCP / Unix socket ──SSLRequest──▶ TLS (rustls, ring)          [tls]
//!        │
//!        ▼
//!  StartupMessage ──▶ trust | password | MD5 | SCRAM-SHA-256(-PLUS)   [auth]
//!        │
//!        ▼
//!  Connection: frontend messages out (postgres-protocol encoders),
//!              backend messages in (framed and parsed here, total)  [backend]
//! ```
//!
//! Everything the server sends goes through [`backend::parse_frame`] and
//! [`backend::BackendMessage::parse`], which never panic and never buffer more than a message's
//! checked length. NoticeResponse goes to `tracing`; ParameterStatus updates
//! [`Connection::parameter`].

pub mod auth;
pub mod backend;
pub mod client;
pub mod config;
pub mod error;
mod pgpass;
pub mod replication;
mod replication_stream;
mod socket;
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

pub use backend::{BackendMessage, DEFAULT_MAX_MESSAGE_LEN, ErrorFields, ProtocolError};
pub use client::{Client, FromSqlText, Param, Row, ToSqlText, encode_bind};
pub use config::{ChannelBindingMode, ConfigError, ConnectConfig, Host, SslMode};
pub use error::{DbError, Error, Result};

use socket::Socket;

/// Which kind of session to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// An ordinary SQL session.
    Sql,
    /// A logical replication session (`replication=database`): replication commands and
    /// simple-protocol SQL.
    Replication,
}

/// One authenticated session with a server, ready for queries.
#[derive(Debug)]
pub struct Connection {
    socket: Socket,
    read_buf: BytesMut,
    write_buf: BytesMut,
    endpoint: String,
    user: String,
    parameters: HashMap<String, String>,
    process_id: i32,
    max_message_len: usize,
    transaction_status: u8,
    needs_flush: bool,
}

/// The version number the server reports, as `server_version_num` (e.g. `150018`, `180006`).
pub fn parse_server_version(text: &str) -> Option<u32> {
    let numeric: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major >= 10 {
        major.checked_mul(10_000)?.checked_add(minor)
    } else {
        let patch: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        major
            .checked_mul(10_000)?
            .checked_add(minor.checked_mul(100)?)?
            .checked_add(patch)
    }
}

impl Connection {
    /// Connects, negotiates TLS, authenticates and waits until the server is ready.
    pub async fn connect(cfg: &ConnectConfig, kind: SessionKind) -> Result<Connection> {
        let attempt = Self::connect_inner(cfg, kind);
        match cfg.connect_timeout {
            None => attempt.await,
            Some(limit) => {
                tokio::time::timeout(limit, attempt)
                    .await
                    .map_err(|_| Error::ConnectTimeout {
                        endpoint: cfg.endpoint(),
                        seconds: limit.as_secs(),
                    })?
            }
        }
    }

    async fn connect_inner(cfg: &ConnectConfig, kind: SessionKind) -> Result<Connection> {
        let endpoint = cfg.endpoint();
        let connect_err = |source| Error::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let socket = match &cfg.host {
            Host::Unix(dir) => Socket::Unix(
                UnixStream::connect(dir.join(format!(".s.PGSQL.{}", cfg.port)))
                    .await
                    .map_err(connect_err)?,
            ),
            Host::Tcp(host) => {
                let addr = cfg.hostaddr.as_deref().unwrap_or(host);
                let tcp = TcpStream::connect((addr, cfg.port))
                    .await
                    .map_err(connect_err)?;
                tcp.set_nodelay(true).map_err(connect_err)?;
                Self::negotiate_tls(cfg, tcp).await?
            }
        };
        let mut conn = Connection {
            socket,
            read_buf: BytesMut::with_capacity(64 * 1024),
            write_buf: BytesMut::with_capacity(8 * 1024),
            endpoint,
            user: cfg.user.clone(),
            parameters: HashMap::new(),
            process_id: 0,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            transaction_status: b'I',
            needs_flush: false,
        };
        let application_name = cfg.application_name.as_deref().unwrap_or("pgrepl");
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &cfg.user),
            ("database", &cfg.dbname),
            ("application_name", application_name),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
        ];
        if kind == SessionKind::Replication {
            params.push(("replication", "database"));
        }
        if let Some(options) = &cfg.options {
            params.push(("options", options));
        }
        if params
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(Error::InvalidArgument(
                "connection settings must not contain NUL bytes".into(),
            ));
        }
        frontend::startup_message(params.iter().copied(), &mut conn.write_buf)
            .map_err(|e| Error::InvalidArgument(format!("start-up packet: {e}")))?;
        conn.flush().await?;
        auth::authenticate(&mut conn, cfg).await?;
        loop {
            match conn.recv().await? {
                BackendMessage::BackendKeyData { process_id, .. } => conn.process_id = process_id,
                BackendMessage::ReadyForQuery(status) => {
                    conn.transaction_status = status;
                    break;
                }
                BackendMessage::ErrorResponse(fields) => return Err(conn.db_error(fields)),
                BackendMessage::NegotiateProtocolVersion { .. } => {}
                other => return Err(conn.unexpected(&other, "during start-up")),
            }
        }
        Ok(conn)
    }

    async fn negotiate_tls(cfg: &ConnectConfig, mut tcp: TcpStream) -> Result<Socket> {
        let Some(tls_config) = tls::client_config(cfg)? else {
            return Ok(Socket::Tcp(tcp));
        };
        let endpoint = cfg.endpoint();
        let io_err = |source| Error::Io {
            endpoint: endpoint.clone(),
            source,
        };
        let mut request = BytesMut::new();
        frontend::ssl_request(&mut request);
        tcp.write_all(&request).await.map_err(io_err)?;
        // Exactly one byte: anything the server sends before the TLS handshake must not be
        // taken as coming from inside the encrypted channel (CVE-2021-23222).
        let answer = tcp.read_u8().await.map_err(io_err)?;
        match answer {
            b'S' => {
                let connector = tokio_rustls::TlsConnector::from(tls_config);
                let tls = connector
                    .connect(tls::server_name(cfg)?, tcp)
                    .await
                    .map_err(|e| tls::describe_handshake_error(cfg, &e))?;
                Ok(Socket::Tls(Box::new(tls)))
            }
            b'N' if cfg.ssl_mode == SslMode::Prefer => Ok(Socket::Tcp(tcp)),
            b'N' => Err(Error::TlsRefused {
                endpoint,
                sslmode: cfg.ssl_mode.as_str(),
            }),
            other => Err(Error::Protocol {
                endpoint,
                source: ProtocolError::new(
                    "SSLRequest answer",
                    0,
                    format!("expected 'S' or 'N', got 0x{other:02x}"),
                ),
            }),
        }
    }

    /// `host:port` (or socket path) of the server, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The role this session is logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A run-time parameter the server reported (`server_version`, `integer_datetimes`, …).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The server's version as `server_version_num` (e.g. `150018`).
    pub fn server_version_num(&self) -> Option<u32> {
        self.parameter("server_version")
            .and_then(parse_server_version)
    }

    /// The backend's process id.
    pub fn backend_pid(&self) -> i32 {
        self.process_id
    }

    /// Whether the session is encrypted with TLS.
    pub fn is_tls(&self) -> bool {
        self.socket.is_tls()
    }

    /// The transaction status from the last ReadyForQuery: `I` idle, `T` in a transaction,
    /// `E` in a failed transaction.
    pub fn transaction_status(&self) -> u8 {
        self.transaction_status
    }

    /// The buffer that frontend messages are encoded into; [`flush`](Self::flush) sends it.
    pub fn write_buffer(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    /// How many bytes wait in the write buffer.
    pub fn pending_write_len(&self) -> usize {
        self.write_buf.len()
    }

    /// Sends everything in the write buffer.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.write_buf.is_empty() {
            let res = self.socket.write_all(&self.write_buf).await;
            self.write_buf.clear();
            res.map_err(|e| self.io_error(e))?;
        }
        self.socket.flush().await.map_err(|e| self.io_error(e))
    }

    /// The next message, reading from the socket as needed. NoticeResponse is logged,
    /// ParameterStatus recorded, NotificationResponse dropped; everything else is returned,
    /// ErrorResponse included (the caller knows what it means in its state).
    pub async fn recv(&mut self) -> Result<BackendMessage> {
        loop {
            if let Some(msg) = self.try_recv_buffered()? {
                return Ok(msg);
            }
            self.fill().await?;
        }
    }

    /// The next message if one is already buffered, without reading the socket.
    pub fn try_recv_buffered(&mut self) -> Result<Option<BackendMessage>> {
        loop {
            let frame = backend::parse_frame(&mut self.read_buf, self.max_message_len)
                .map_err(|source| self.protocol_error(source))?;
            let Some((tag, body)) = frame else {
                return Ok(None);
            };
            let msg =
                BackendMessage::parse(tag, body).map_err(|source| self.protocol_error(source))?;
            match msg {
                BackendMessage::NoticeResponse(n) => log_notice(&self.endpoint, &n),
                BackendMessage::ParameterStatus { name, value } => {
                    self.parameters.insert(name, value);
                }
                BackendMessage::NotificationResponse { .. } => {}
                BackendMessage::ReadyForQuery(status) => {
                    self.transaction_status = status;
                    return Ok(Some(msg));
                }
                other => return Ok(Some(other)),
            }
        }
    }

    /// Reads more bytes from the socket into the read buffer. Cancel-safe: if the future is
    /// dropped before it completes, no data is lost.
    pub async fn fill(&mut self) -> Result<()> {
        if self.read_buf.capacity() - self.read_buf.len() < 8 * 1024 {
            self.read_buf.reserve(64 * 1024);
        }
        let n = self
            .socket
            .read_buf(&mut self.read_buf)
            .await
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Err(Error::Closed {
                endpoint: self.endpoint.clone(),
            });
        }
        Ok(())
    }

    /// Makes progress in both directions at once: writes as much of the write buffer as the
    /// socket takes while reading whatever has arrived, so a long pipeline can never deadlock
    /// with both sides' send buffers full. Returns once something was read, or once the write
    /// buffer has been sent completely (when it was not empty). Cancel-safe.
    pub async fn exchange(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_exchange(cx)).await
    }

    /// [`exchange`](Self::exchange) without waiting: sends what the socket takes and reads
    /// what has arrived, now. Returns whether anything moved.
    pub fn exchange_now(&mut self) -> Result<bool> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.poll_exchange(&mut cx) {
            std::task::Poll::Ready(Ok(())) => Ok(true),
            std::task::Poll::Ready(Err(e)) => Err(e),
            std::task::Poll::Pending => Ok(false),
        }
    }

    fn poll_exchange(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::Poll;
        use tokio::io::AsyncWrite;
        let had_output = !self.write_buf.is_empty() || self.needs_flush;
        while !self.write_buf.is_empty() {
            match Pin::new(&mut self.socket).poll_write(cx, &self.write_buf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Error::Closed {
                        endpoint: self.endpoint.clone(),
                    }));
                }
                Poll::Ready(Ok(n)) => {
                    self.write_buf.advance(n);
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_error(e))),
                Poll::Pending => break,
            }
        }
        if self.write_buf.is_empty() && self.needs_flush {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_error(e))),
                Poll::Pending => {}
            }
        }
        if self.read_buf.capacity() - self.read_buf.len() < 8 * 1024 {
            self.read_buf.reserve(64 * 1024);
        }
        let read = {
            let fut = self.socket.read_buf(&mut self.read_buf);
            tokio::pin!(fut);
            fut.poll(cx)
        };
        match read {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(Error::Closed {
                endpoint: self.endpoint.clone(),
            })),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.io_error(e))),
            Poll::Pending if had_output && self.write_buf.is_empty() && !self.needs_flush => {
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether output waits to be sent.
    pub fn has_pending_output(&self) -> bool {
        !self.write_buf.is_empty() || self.needs_flush
    }

    /// How many received bytes wait to be parsed.
    pub fn buffered_read_len(&self) -> usize {
        self.read_buf.remaining()
    }

    /// Sets the largest message accepted from the server (default
    /// [`DEFAULT_MAX_MESSAGE_LEN`]).
    pub fn set_max_message_len(&mut self, len: usize) {
        self.max_message_len = len;
    }

    /// Says goodbye (Terminate) and closes the socket.
    pub async fn close(mut self) -> Result<()> {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.shutdown()).await;
        Ok(())
    }

    /// The server's certificate (DER) if TLS is in use.
    pub(crate) fn peer_certificate(&self) -> Option<&[u8]> {
        self.socket.peer_certificate()
    }

    /// Wraps a server error with this connection's endpoint.
    pub fn db_error(&self, fields: ErrorFields) -> Error {
        Error::Db {
            endpoint: self.endpoint.clone(),
            error: Box::new(DbError(fields)),
        }
    }

    /// An error for a legal message that makes no sense in the current state.
    pub fn unexpected(&self, msg: &BackendMessage, state: &str) -> Error {
        let name = format!("{msg:?}");
        let short: String = name.chars().take(80).collect();
        Error::Unexpected {
            endpoint: self.endpoint.clone(),
            what: format!("{short} {state}"),
        }
    }

    fn protocol_error(&self, source: ProtocolError) -> Error {
        Error::Protocol {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        if matches!(
            source.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ) {
            return Error::Closed {
                endpoint: self.endpoint.clone(),
            };
        }
        Error::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }
}

/// A NoticeResponse, to `tracing`: the server's WARNINGs as warnings, the rest (NOTICE, INFO,
/// LOG, DEBUG) as information.
fn log_notice(endpoint: &str, n: &ErrorFields) {
    let detail = n.detail.as_deref().unwrap_or("");
    if n.severity == "WARNING" {
        tracing::warn!(server = %endpoint, severity = %n.severity, code = %n.code, detail, "{}", n.message);
    } else {
        tracing::info!(server = %endpoint, severity = %n.severity, code = %n.code, detail, "{}", n.message);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_server_version;

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            Some(150018)
        );
        assert_eq!(parse_server_version("18.6"), Some(180006));
        assert_eq!(parse_server_version("16beta1"), Some(160000));
        assert_eq!(parse_server_version("9.6.24"), Some(90624));
        assert_eq!(parse_server_version("x"), None);
    }
}
