//! The CopyBoth phase of `START_REPLICATION`: decoded pgoutput as an async [`Stream`], with
//! standby status updates going back to the server.
//!
//! ```text
//!   server ──CopyData(XLogData 'w' | keepalive 'k')──▶ stream task ──bounded channel──▶ consumer
//!   server ◀──CopyData(standby status update 'r')──── stream task ◀──set_flushed()──── consumer
//! ```
//!
//! A task owns the connection. It reads the socket only while the channel to the consumer has
//! room (at most [`StreamSettings::max_buffered_events`] events and
//! [`StreamSettings::max_buffered_bytes`] bytes of WAL data), so it never reads ahead of its
//! consumer without bound: when the consumer is slow, TCP pushes back on the server. The task
//! keeps answering the server while the consumer is busy, so a long apply does not trip
//! `wal_sender_timeout`. While it waits for room it reads nothing, so it cannot see a keepalive
//! that asks for a reply: only its timer speaks for it then, which is why the status interval is
//! capped at a third of the server's `wal_sender_timeout` when the stream starts.
//!
//! **Feedback.** A standby status update carries three positions. *write* is the end of the
//! WAL received so far; *flush* and *apply* are what the consumer reported with
//! [`ReplicationStream::set_flushed`] — the server moves the slot's `confirmed_flush_lsn` to
//! *flush* and may then recycle WAL before it, so the consumer must only report what is durable
//! on its side (pgrepl's applier reports the target's flushed origin progress). Updates go out
//! every [`StreamSettings::status_interval`], at once when a keepalive asks for a reply, and when
//! the consumer calls [`ReplicationStream::send_status_now`].
//!
//! **Endings.** Every ending is an error item, then the end of the stream. Retryable: the
//! server's CopyDone, or the CommandComplete of a walsender that stops because the server shuts
//! down ([`Error::StreamEnded`]); an ErrorResponse of a retryable class (for example `57P01`
//! when the walsender is terminated); a dropped connection ([`Error::Closed`] /
//! [`Error::Io`]), which is what a crash looks like. Not retryable: other server errors, and
//! protocol or decoding errors.
//!
//! **Server shutdown.** A fast or smart shutdown waits for each walsender until the flush
//! position its client reports reaches everything it sent; the walsender asks for it with
//! keepalives whose `wal_end` is that position. A consumer with nothing in flight reports the
//! keepalive's `wal_end` as flushed (it is safe: no transaction is open), and the stream then
//! ends with [`Error::StreamEnded`]. A consumer that never does holds the shutdown up: the
//! stream's status updates keep the walsender from timing out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use postgres_protocol::message::frontend;
use tokio::sync::{Notify, Semaphore, TryAcquireError, mpsc};
use tokio::task::JoinHandle;

use super::Connection;
use super::backend::{BackendMessage, ProtocolError};
use super::error::{Error, Result};
use crate::pgoutput::{Decoder, LogicalMessage, ProtocolVersion};
use crate::replication_message::{ReplicationMessage, StandbyMessage, StandbyStatusUpdate};
use crate::{Lsn, PgTimestamp};

/// Tuning of a replication stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// How often a standby status update is sent when nothing else triggers one.
    /// [`ReplicationClient::start_replication`](super::replication::ReplicationClient::start_replication)
    /// caps it at a third of the server's `wal_sender_timeout`.
    pub status_interval: Duration,
    /// Events decoded ahead of the consumer, at most.
    pub max_buffered_events: usize,
    /// Bytes of WAL data decoded ahead of the consumer, at most (a single message larger than
    /// this is still delivered, alone).
    pub max_buffered_bytes: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            status_interval: Duration::from_secs(10),
            max_buffered_events: 4096,
            max_buffered_bytes: 64 << 20,
        }
    }
}

/// One item of a replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// A pgoutput message, with the position of its XLogData.
    Message {
        /// `dataStart` of the XLogData: the WAL position of the message.
        wal_start: Lsn,
        /// `walEnd`: the end of WAL on the server when it was sent.
        wal_end: Lsn,
        /// When the server sent it.
        send_time: PgTimestamp,
        /// The decoded message.
        message: LogicalMessage,
        /// The message's bytes as received (its values share this buffer), e.g. for spooling.
        raw: Bytes,
    },
    /// A primary keepalive: nothing to decode, but `wal_end` is how far the server has looked.
    Keepalive {
        /// The end of WAL on the server.
        wal_end: Lsn,
        /// When the server sent it.
        send_time: PgTimestamp,
        /// Whether the server asked for an immediate reply (already sent by the stream).
        reply_requested: bool,
    },
}

#[derive(Debug, Default)]
struct Feedback {
    flushed: AtomicU64,
    applied: AtomicU64,
    received: AtomicU64,
}

/// Decoded pgoutput from a replication slot; see the module documentation.
#[derive(Debug)]
pub struct ReplicationStream {
    events: mpsc::Receiver<ItemBox>,
    ready: std::collections::VecDeque<Result<ReplicationEvent>>,
    budget: Arc<Semaphore>,
    feedback: Arc<Feedback>,
    status_now: Arc<Notify>,
    stop: Arc<Notify>,
    task: JoinHandle<()>,
    version: ProtocolVersion,
    status_interval: Duration,
    finished: bool,
}

/// `Item` boxed so the channel's slots stay small.
type ItemBox = Batch;

/// Events decoded from what one read brought, handed over together: one channel operation
/// (and at most one wake-up) for many small messages.
#[derive(Debug)]
struct Batch {
    events: Vec<Result<ReplicationEvent>>,
    bytes: u32,
}

/// Events in one batch, at most.
const BATCH_EVENTS: usize = 256;

impl ReplicationStream {
    pub(crate) fn spawn(
        conn: Connection,
        version: ProtocolVersion,
        start: Lsn,
        settings: StreamSettings,
    ) -> ReplicationStream {
        // Batches of up to half the event limit: the channel holds at most the limit, and one
        // more batch may wait decoded for room.
        let batch_events = (settings.max_buffered_events / 2).clamp(1, BATCH_EVENTS);
        let capacity = settings.max_buffered_events.div_ceil(batch_events).max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let budget_bytes = settings
            .max_buffered_bytes
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let budget = Arc::new(Semaphore::new(budget_bytes));
        let feedback = Arc::new(Feedback::default());
        feedback.flushed.store(start.0, Ordering::Relaxed);
        feedback.applied.store(start.0, Ordering::Relaxed);
        feedback.received.store(start.0, Ordering::Relaxed);
        let status_now = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        // A zero period would make tokio's interval panic.
        let interval = settings.status_interval.max(Duration::from_millis(1));
        let task = StreamTask {
            batch_events,
            stop: Arc::clone(&stop),
            conn,
            decoder: Decoder::new(version),
            tx,
            budget: Arc::clone(&budget),
            budget_bytes,
            feedback: Arc::clone(&feedback),
            status_now: Arc::clone(&status_now),
            interval,
        };
        let task = tokio::spawn(task.run());
        ReplicationStream {
            events: rx,
            ready: std::collections::VecDeque::new(),
            budget,
            feedback,
            status_now,
            stop,
            task,
            version,
            status_interval: interval,
            finished: false,
        }
    }

    /// The pgoutput protocol version in use.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.version
    }

    /// The interval of standby status updates in use (after the cap of
    /// [`StreamSettings::status_interval`]).
    pub fn status_interval(&self) -> Duration {
        self.status_interval
    }

    /// Reports that everything up to `lsn` is durable on the consumer's side. The server may
    /// then discard WAL before it. Positions never move backwards.
    pub fn set_flushed(&self, lsn: Lsn) {
        self.feedback.flushed.fetch_max(lsn.0, Ordering::AcqRel);
        self.feedback.applied.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// Reports that everything up to `lsn` is applied (visible) on the consumer's side, which
    /// may be ahead of what is flushed.
    pub fn set_applied(&self, lsn: Lsn) {
        self.feedback.applied.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// The flush position last reported.
    pub fn flushed(&self) -> Lsn {
        Lsn(self.feedback.flushed.load(Ordering::Acquire))
    }

    /// The end of the WAL received so far.
    pub fn received(&self) -> Lsn {
        Lsn(self.feedback.received.load(Ordering::Acquire))
    }

    /// Sends a standby status update now, without waiting for the interval.
    pub fn send_status_now(&self) {
        self.status_now.notify_one();
    }

    /// Ends the stream cleanly: a last standby status update with the positions reported so
    /// far, CopyDone, and the end of the session. Waits (at most five seconds) until the
    /// server has closed the connection, so the slot is free for the next
    /// `START_REPLICATION` when this returns; past that, the connection is dropped.
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }

    /// The next event; `None` after the stream has ended (an ending is always reported as an
    /// error item first).
    pub async fn next_event(&mut self) -> Option<Result<ReplicationEvent>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next event if one is already buffered, without waiting: `None` when none is (or
    /// the stream has ended — [`next_event`](Self::next_event) tells which).
    pub fn try_next_event(&mut self) -> Option<Result<ReplicationEvent>> {
        if let Some(event) = self.take_ready() {
            return Some(event);
        }
        if self.finished {
            return None;
        }
        match self.events.try_recv() {
            Ok(batch) => {
                self.receive(batch);
                self.take_ready()
            }
            Err(_) => None,
        }
    }

    fn receive(&mut self, batch: Batch) {
        self.budget.add_permits(batch.bytes as usize);
        self.ready.extend(batch.events);
    }

    fn take_ready(&mut self) -> Option<Result<ReplicationEvent>> {
        let event = self.ready.pop_front()?;
        if event.is_err() {
            self.finished = true;
            self.ready.clear();
        }
        Some(event)
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ReplicationEvent>>> {
        loop {
            if let Some(event) = self.take_ready() {
                return Poll::Ready(Some(event));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.receive(batch),
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Stream for ReplicationStream {
    type Item = Result<ReplicationEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct StreamTask {
    batch_events: usize,
    conn: Connection,
    decoder: Decoder,
    tx: mpsc::Sender<ItemBox>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    feedback: Arc<Feedback>,
    status_now: Arc<Notify>,
    stop: Arc<Notify>,
    interval: Duration,
}

enum Step {
    Continue,
    Stop,
}

impl StreamTask {
    async fn run(mut self) {
        let result = self.pump().await;
        if let Err(e) = result {
            // The consumer may be gone; then there is nobody to tell.
            let _ = self
                .tx
                .send(Batch {
                    events: vec![Err(e)],
                    bytes: 0,
                })
                .await;
        }
    }

    async fn pump(&mut self) -> Result<()> {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        loop {
            // Decode everything already buffered (up to a batch) before reading more, and hand
            // it over in one piece. An error ends the stream after what came before it.
            let mut events = Vec::new();
            let mut bytes = 0usize;
            let mut failure = None;
            while events.len() < self.batch_events && bytes < self.budget_bytes / 2 + 1 {
                let msg = match self.conn.try_recv_buffered() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                match self.decode(msg, &mut ticker).await {
                    Ok((event, size)) => {
                        events.push(Ok(event));
                        bytes = bytes.saturating_add(size);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if !events.is_empty()
                && let Step::Stop = self.deliver(events, bytes, &mut ticker).await?
            {
                return Ok(());
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if self.conn.buffered_read_len() > 0 && bytes > 0 {
                continue;
            }
            tokio::select! {
                read = self.conn.fill() => read?,
                _ = ticker.tick() => self.send_status(false).await?,
                _ = self.status_now.notified() => self.send_status(false).await?,
                _ = self.stop.notified() => return self.finish().await,
                _ = self.tx.closed() => return Ok(()),
            }
        }
    }

    /// One event from one message, with its size for the byte budget.
    async fn decode(
        &mut self,
        msg: BackendMessage,
        ticker: &mut tokio::time::Interval,
    ) -> Result<(ReplicationEvent, usize)> {
        let payload = match msg {
            BackendMessage::CopyData(payload) => payload,
            BackendMessage::CopyDone => {
                return Err(Error::StreamEnded {
                    endpoint: self.conn.endpoint().to_owned(),
                    reason: "the server sent CopyDone",
                });
            }
            // A walsender told to stop (fast or smart shutdown) waits until the flush position
            // reported covers everything it sent, then ends the COPY with CommandComplete
            // alone and exits (walsender.c, WalSndDone).
            BackendMessage::CommandComplete(_) => {
                return Err(Error::StreamEnded {
                    endpoint: self.conn.endpoint().to_owned(),
                    reason: "the walsender stopped (CommandComplete), as it does when the server \
                             shuts down",
                });
            }
            BackendMessage::ErrorResponse(fields) => return Err(self.conn.db_error(fields)),
            other => return Err(self.conn.unexpected(&other, "during START_REPLICATION")),
        };
        let decoded = ReplicationMessage::decode(payload).map_err(|e| Error::Protocol {
            endpoint: self.conn.endpoint().to_owned(),
            source: ProtocolError::new("CopyData", 0, e.to_string()),
        })?;
        let (event, bytes) = match decoded {
            ReplicationMessage::XLogData(x) => {
                self.feedback
                    .received
                    .fetch_max(x.wal_end.0.max(x.wal_start.0), Ordering::AcqRel);
                let bytes = x.data.len();
                let raw = x.data.clone();
                let message = self.decoder.decode(x.data).map_err(|e| Error::Protocol {
                    endpoint: self.conn.endpoint().to_owned(),
                    source: ProtocolError::new("XLogData", 0, e.to_string()),
                })?;
                (
                    ReplicationEvent::Message {
                        wal_start: x.wal_start,
                        wal_end: x.wal_end,
                        send_time: x.send_time,
                        message,
                        raw,
                    },
                    bytes,
                )
            }
            ReplicationMessage::PrimaryKeepalive(k) => {
                self.feedback
                    .received
                    .fetch_max(k.wal_end.0, Ordering::AcqRel);
                if k.reply_requested {
                    self.send_status(false).await?;
                    ticker.reset();
                }
                (
                    ReplicationEvent::Keepalive {
                        wal_end: k.wal_end,
                        send_time: k.send_time,
                        reply_requested: k.reply_requested,
                    },
                    0,
                )
            }
        };
        Ok((event, bytes))
    }

    /// Hands a batch to the consumer once there is room for it, still answering the server
    /// meanwhile.
    async fn deliver(
        &mut self,
        events: Vec<Result<ReplicationEvent>>,
        bytes: usize,
        ticker: &mut tokio::time::Interval,
    ) -> Result<Step> {
        // Room in the byte budget and a slot in the channel. When the consumer keeps up both
        // are there at once: take them without a select!, which costs more than decoding.
        let charge = bytes.min(self.budget_bytes);
        let charge32 = u32::try_from(charge).unwrap_or(u32::MAX);
        let have_budget = match self.budget.try_acquire_many(charge32) {
            Ok(p) => {
                p.forget();
                true
            }
            Err(TryAcquireError::NoPermits) => false,
            Err(TryAcquireError::Closed) => return Ok(Step::Stop),
        };
        if !have_budget {
            let permit = loop {
                tokio::select! {
                    p = Arc::clone(&self.budget).acquire_many_owned(charge32) => break p,
                    _ = ticker.tick() => self.send_status(false).await?,
                    _ = self.status_now.notified() => self.send_status(false).await?,
                    _ = self.stop.notified() => {
                        self.finish().await?;
                        return Ok(Step::Stop);
                    }
                    _ = self.tx.closed() => return Ok(Step::Stop),
                }
            };
            match permit {
                Ok(p) => p.forget(),
                Err(_) => return Ok(Step::Stop),
            }
        }
        let item = Batch {
            events,
            bytes: charge32,
        };
        let item = match self.tx.try_send(item) {
            Ok(()) => return Ok(Step::Continue),
            Err(mpsc::error::TrySendError::Full(item)) => item,
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(Step::Stop),
        };
        let tx = self.tx.clone();
        let slot = loop {
            tokio::select! {
                s = tx.reserve() => break s,
                _ = ticker.tick() => self.send_status(false).await?,
                _ = self.status_now.notified() => self.send_status(false).await?,
                _ = self.stop.notified() => {
                    self.finish().await?;
                    return Ok(Step::Stop);
                }
            }
        };
        match slot {
            Ok(slot) => {
                slot.send(item);
                Ok(Step::Continue)
            }
            Err(_) => Ok(Step::Stop),
        }
    }

    /// A last status update, then CopyDone; then the session ends the way the protocol
    /// says, so that the walsender has released the slot when this returns.
    async fn finish(&mut self) -> Result<()> {
        self.send_status(false).await?;
        frontend::copy_done(self.conn.write_buffer());
        self.conn.flush().await?;
        // The server answers with its own CopyDone (after whatever CopyData was already on its
        // way, which nobody wants any more), CommandComplete and ReadyForQuery.
        loop {
            match self.conn.recv().await {
                Ok(BackendMessage::ReadyForQuery(_)) => break,
                Ok(BackendMessage::ErrorResponse(fields)) => {
                    return Err(self.conn.db_error(fields));
                }
                Ok(_) => {}
                Err(Error::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        // Terminate, then wait for the server to close the socket: a backend closes it only
        // after its shared-memory exit callbacks, which release the slot, so a new
        // START_REPLICATION on it cannot fail with "slot is active" (55006).
        frontend::terminate(self.conn.write_buffer());
        self.conn.flush().await?;
        loop {
            match self.conn.recv().await {
                Ok(_) => {}
                Err(Error::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_status(&mut self, reply_requested: bool) -> Result<()> {
        let flushed = self.feedback.flushed.load(Ordering::Acquire);
        let applied = self.feedback.applied.load(Ordering::Acquire).max(flushed);
        let written = self.feedback.received.load(Ordering::Acquire).max(applied);
        let update = StandbyStatusUpdate {
            write_lsn: Lsn(written),
            flush_lsn: Lsn(flushed),
            apply_lsn: Lsn(applied),
            send_time: PgTimestamp::now(),
            reply_requested,
        };
        let mut payload = BytesMut::with_capacity(34);
        StandbyMessage::StandbyStatusUpdate(update).encode(&mut payload);
        frontend::CopyData::new(&payload[..])
            .map_err(|e| Error::InvalidArgument(format!("status update: {e}")))?
            .write(self.conn.write_buffer());
        self.conn.flush().await?;
        tracing::trace!(write = %Lsn(written), flush = %Lsn(flushed), apply = %Lsn(applied), "standby status update");
        Ok(())
    }
}
