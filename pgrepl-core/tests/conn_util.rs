//! Helpers shared by the connection tests (`auth`, `tls`, `slots`, `stream`, `conn_errors`):
//! configurations that never read the process environment, a small SQL shortcut, and a
//! collector that turns a replication stream into whole transactions described as text.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrepl_core::Lsn;
use pgrepl_core::connection::replication::{ReplicationEvent, ReplicationStream};
use pgrepl_core::connection::{Client, ConnectConfig, Error};
use pgrepl_core::pgoutput::{ColumnRef, LogicalMessage, OldTuple, TupleData};

/// Parses a DSN with an empty environment, so no test depends on (or races over) the
/// process's `PG*` variables, `HOME` or `~/.pgpass`.
pub(crate) fn config(dsn: &str) -> ConnectConfig {
    ConnectConfig::parse_with_env(dsn, &|_| None).unwrap()
}

/// Parses a DSN with exactly these environment variables.
pub(crate) fn config_with_env(dsn: &str, vars: &[(&str, &str)]) -> ConnectConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ConnectConfig::parse_with_env(dsn, &move |k| vars.get(k).cloned()).unwrap()
}

/// The first column of the first row of `query`, as text (`None` for NULL or no row).
pub(crate) async fn scalar(client: &mut Client, query: &str) -> Option<String> {
    let rows = client.simple_query(query).await.unwrap();
    rows.first().and_then(|r| r.get_str(0).map(str::to_owned))
}

/// Runs `query` until its first value is `expected`, for at most `limit`.
pub(crate) async fn wait_for_value(
    client: &mut Client,
    query: &str,
    expected: &str,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let got = scalar(client, query).await;
        if got.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {query} to return {expected}; it returns {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that neither the `Display` nor the `Debug` form of `err` contains `secret`.
pub(crate) fn assert_hides(err: &Error, secret: &str) {
    let shown = format!("{err} / {err:?}");
    assert!(
        !shown.contains(secret),
        "the error shows the password: {shown}"
    );
}

/// One decoded transaction, with its changes as text such as `I public.t 1,one`,
/// `U public.t 1,uno`, `D public.t key 1`, `T public.t`, `M prefix content`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Txn {
    /// The transaction id.
    pub(crate) xid: u32,
    /// The replication origin named by an Origin message, if any.
    pub(crate) origin: Option<String>,
    /// Its changes, in order.
    pub(crate) changes: Vec<String>,
    /// The commit record's LSN.
    pub(crate) commit_lsn: Lsn,
    /// The end of the commit record: the position to report as flushed once applied.
    pub(crate) end_lsn: Lsn,
    /// Whether it arrived in streamed blocks (`streaming`).
    pub(crate) streamed: bool,
    /// Whether it arrived as a two-phase PREPARE (its changes; committed later).
    pub(crate) prepared: Option<String>,
}

/// Turns pgoutput messages into [`Txn`]s.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    relations: HashMap<u32, String>,
    current: Option<Txn>,
    streamed: HashMap<u32, Txn>,
    open_stream: Option<u32>,
    /// Non-transactional logical messages, as `M prefix content`.
    pub(crate) loose_messages: Vec<String>,
    /// Streamed transactions that were aborted: xid, and the abort LSN when the protocol
    /// sends it (version 4 with `streaming = parallel`).
    pub(crate) aborted: Vec<(u32, Option<Lsn>)>,
}

fn tuple_text(t: &TupleData) -> String {
    t.iter()
        .map(|c| match c {
            ColumnRef::Null => "null".to_owned(),
            ColumnRef::UnchangedToast => "toast".to_owned(),
            ColumnRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
            ColumnRef::Binary(b) => format!("0x{}", hex(b)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Collector {
    fn name(&self, oid: u32) -> String {
        self.relations
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| format!("oid{oid}"))
    }

    /// The transaction a change belongs to: the open streamed block's top-level transaction
    /// (changes inside it carry the xid of their subtransaction), else the current one.
    fn txn(&mut self, _xid: Option<u32>) -> &mut Txn {
        match self.open_stream {
            Some(x) => self.streamed.entry(x).or_insert_with(|| Txn {
                xid: x,
                streamed: true,
                ..Txn::default()
            }),
            None => self
                .current
                .as_mut()
                .expect("a change outside any transaction"),
        }
    }

    /// Feeds one message; returns the transaction it completes, if any.
    pub(crate) fn feed(&mut self, message: &LogicalMessage) -> Option<Txn> {
        match message {
            LogicalMessage::Begin(b) => {
                self.current = Some(Txn {
                    xid: b.xid,
                    ..Txn::default()
                });
                None
            }
            LogicalMessage::BeginPrepare(b) => {
                self.current = Some(Txn {
                    xid: b.xid,
                    ..Txn::default()
                });
                None
            }
            LogicalMessage::Origin(o) => {
                self.current
                    .as_mut()
                    .expect("Origin outside a transaction")
                    .origin = Some(o.name.clone());
                None
            }
            LogicalMessage::Relation(r) => {
                self.relations
                    .insert(r.oid, format!("{}.{}", r.namespace, r.name));
                None
            }
            LogicalMessage::Type(_) => None,
            LogicalMessage::Insert(i) => {
                let line = format!("I {} {}", self.name(i.relation_oid), tuple_text(&i.new));
                self.txn(i.xid).changes.push(line);
                None
            }
            LogicalMessage::Update(u) => {
                let old = match &u.old {
                    None => String::new(),
                    Some(OldTuple::Key(t)) => format!(" key {}", tuple_text(t)),
                    Some(OldTuple::Full(t)) => format!(" old {}", tuple_text(t)),
                };
                let line = format!(
                    "U {}{old} {}",
                    self.name(u.relation_oid),
                    tuple_text(&u.new)
                );
                self.txn(u.xid).changes.push(line);
                None
            }
            LogicalMessage::Delete(d) => {
                let old = match &d.old {
                    OldTuple::Key(t) => format!("key {}", tuple_text(t)),
                    OldTuple::Full(t) => format!("old {}", tuple_text(t)),
                };
                let line = format!("D {} {old}", self.name(d.relation_oid));
                self.txn(d.xid).changes.push(line);
                None
            }
            LogicalMessage::Truncate(t) => {
                let mut names: Vec<String> =
                    t.relation_oids.iter().map(|o| self.name(*o)).collect();
                names.sort();
                let line = format!("T {}", names.join(" "));
                self.txn(t.xid).changes.push(line);
                None
            }
            LogicalMessage::Message(m) => {
                let line = format!("M {} {}", m.prefix, String::from_utf8_lossy(&m.content));
                if m.transactional {
                    self.txn(m.xid).changes.push(line);
                } else {
                    self.loose_messages.push(line);
                }
                None
            }
            LogicalMessage::Commit(c) => {
                let mut t = self.current.take().expect("Commit without Begin");
                t.commit_lsn = c.commit_lsn;
                t.end_lsn = c.end_lsn;
                Some(t)
            }
            LogicalMessage::Prepare(p) => {
                let mut t = self.current.take().expect("Prepare without BeginPrepare");
                t.commit_lsn = p.prepare_lsn;
                t.end_lsn = p.end_lsn;
                t.prepared = Some(p.gid.clone());
                Some(t)
            }
            LogicalMessage::CommitPrepared(c) => Some(Txn {
                xid: c.xid,
                changes: vec![format!("COMMIT PREPARED {}", c.gid)],
                commit_lsn: c.commit_lsn,
                end_lsn: c.end_lsn,
                ..Txn::default()
            }),
            LogicalMessage::RollbackPrepared(r) => Some(Txn {
                xid: r.xid,
                changes: vec![format!("ROLLBACK PREPARED {}", r.gid)],
                end_lsn: r.rollback_end_lsn,
                ..Txn::default()
            }),
            LogicalMessage::StreamStart(s) => {
                self.open_stream = Some(s.xid);
                None
            }
            LogicalMessage::StreamStop => {
                self.open_stream = None;
                None
            }
            LogicalMessage::StreamCommit(c) => {
                let mut t = self.streamed.remove(&c.xid).unwrap_or(Txn {
                    xid: c.xid,
                    streamed: true,
                    ..Txn::default()
                });
                t.commit_lsn = c.commit_lsn;
                t.end_lsn = c.end_lsn;
                Some(t)
            }
            LogicalMessage::StreamAbort(a) => {
                if a.xid == a.subxid {
                    self.streamed.remove(&a.xid);
                    self.aborted
                        .push((a.xid, a.abort.as_ref().map(|i| i.abort_lsn)));
                }
                None
            }
            LogicalMessage::StreamPrepare(p) => {
                let mut t = self.streamed.remove(&p.xid).unwrap_or_default();
                t.end_lsn = p.end_lsn;
                t.prepared = Some(p.gid.clone());
                Some(t)
            }
            other => panic!("a message the tests do not know: {other:?}"),
        }
    }
}

/// Reads `stream` until `n` transactions have completed (keepalives skipped), failing the
/// test on an error item or after a minute.
pub(crate) async fn next_txns(
    stream: &mut ReplicationStream,
    collector: &mut Collector,
    n: usize,
) -> Vec<Txn> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, stream.next_event())
            .await
            .unwrap_or_else(|_| {
                panic!("timed out with {} of {n} transactions: {out:#?}", out.len())
            })
            .expect("the stream ended")
            .expect("the stream failed");
        if let ReplicationEvent::Message { message, .. } = event
            && let Some(t) = collector.feed(&message)
        {
            out.push(t);
        }
    }
    out
}

/// Polls `stream` for `quiet`, asserting that no transaction completes meanwhile (keepalives
/// and Relation messages are fine), and that the stream stays healthy.
pub(crate) async fn assert_no_txn(
    stream: &mut ReplicationStream,
    collector: &mut Collector,
    quiet: Duration,
) {
    let deadline = Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match tokio::time::timeout(left, stream.next_event()).await {
            Err(_) => return,
            Ok(item) => {
                let event = item.expect("the stream ended").expect("the stream failed");
                if let ReplicationEvent::Message { message, .. } = event {
                    assert_eq!(collector.feed(&message), None, "an unexpected transaction");
                }
            }
        }
    }
}

/// Changes of transactions, for comparisons.
pub(crate) fn changes(txns: &[Txn]) -> Vec<Vec<String>> {
    txns.iter().map(|t| t.changes.clone()).collect()
}
