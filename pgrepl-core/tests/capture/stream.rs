//! Decoding a capture, checking its structure, and reducing it to [`Content`].
//!
//! [`analyze`] feeds every captured message to a [`Decoder`] (any error fails the test),
//! re-encodes it and demands the server's exact bytes, then walks the stream as a
//! subscriber would. On the way it checks what holds in every capture, whatever the mode:
//!
//! - Begin/Commit, Begin Prepare/Prepare and Stream Start/Stop pair up and never nest;
//!   Commit repeats its Begin's LSN and time; Prepare repeats its Begin Prepare; Commit
//!   Prepared and Rollback Prepared name the xid, end LSN and time of the Prepare with
//!   their GID; a streamed block's first Stream Start has `first_segment` set, the others
//!   not.
//! - Positions move forward: every commit, prepare, rollback and non-transactional message
//!   is later than the one before; each end LSN is after its record's LSN. The `lsn` column
//!   of `pg_logical_slot_peek_binary_changes` equals the end LSN of commits and the LSN of
//!   messages and of Stream Abort's abort position.
//! - Changes inside a streamed block carry the xid of their (sub)transaction, which is the
//!   block's xid or a later one; outside a block none do.
//! - Every Relation message matches the workload's table ([`workload::tables`]): name,
//!   namespace, replica identity, columns, key flags, type OIDs and modifiers; the columns
//!   of user-defined types name a Type message, and exactly those Type messages, in column
//!   order, precede the Relation. Every change names a relation already described, with as
//!   many columns.
//! - An Origin message directly follows Begin, Begin Prepare or a first Stream Start.
//!
//! Stream Abort of a subtransaction drops the changes carrying its xid; of a whole
//! transaction, all of them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::BytesMut;
use pgrepl_core::pgoutput::{
    self, ColumnRef, Decoder, LogicalMessage, MessageKind, OldTuple, Relation, StreamAbortInfo,
    TupleData, Type,
};
use pgrepl_core::{Lsn, PgTimestamp};

use super::model::{Change, Content, End, Old, Row, Val};
use super::workload::{self, Ty, USER_TYPES};
use super::{Capture, Mode, Streaming};

/// One item of [`Content`] with the positions it was found with.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub content: Content,
    /// The transaction's xid; `None` for a non-transactional message.
    pub xid: Option<u32>,
    /// The subtransactions whose Stream Abort was received, with the abort position.
    pub subxact_aborts: Vec<(u32, Option<StreamAbortInfo>)>,
    /// The commit, prepare or message LSN, or the abort LSN when sent.
    pub lsn: Option<Lsn>,
    /// The end of the commit, prepare or rollback record.
    pub end_lsn: Option<Lsn>,
    /// The commit, prepare, rollback or abort time.
    pub time: Option<PgTimestamp>,
}

/// A decoded, checked capture.
#[derive(Debug)]
pub(crate) struct Analysis {
    pub messages: Vec<LogicalMessage>,
    pub events: Vec<Event>,
    /// The last Relation message per OID.
    pub relations: HashMap<u32, Relation>,
    pub types: HashMap<u32, Type>,
    /// How many messages of each kind.
    pub kinds: BTreeMap<&'static str, usize>,
    /// The truncated relations' OIDs, by table name.
    pub truncated: HashMap<String, u32>,
}

/// A transaction block being read: Begin … Commit or Begin Prepare … Prepare.
struct Open {
    xid: u32,
    lsn: Lsn,
    end_lsn: Option<Lsn>,
    time: PgTimestamp,
    gid: Option<String>,
    origin: Option<(String, Lsn)>,
    changes: Vec<Change>,
}

/// A streamed transaction whose blocks are being received.
#[derive(Default)]
struct Pending {
    origin: Option<(String, Lsn)>,
    changes: Vec<(u32, Change)>,
    subxact_aborts: Vec<(u32, Option<StreamAbortInfo>)>,
}

/// A prepared transaction, as its Prepare described it.
struct Prepared {
    xid: u32,
    end_lsn: Lsn,
    time: PgTimestamp,
}

/// The state of the walk through one capture.
struct Walk<'a> {
    mode: &'a Mode,
    relations: HashMap<u32, Relation>,
    types: HashMap<u32, Type>,
    /// OIDs of the Type messages since the last other message.
    recent_types: Vec<u32>,
    open: Option<Open>,
    block: Option<u32>,
    streams: HashMap<u32, Pending>,
    seen_stream_xids: HashSet<u32>,
    prepared: HashMap<String, Prepared>,
    last_position: Lsn,
    column_kinds: HashSet<u8>,
    truncated: HashMap<String, u32>,
    events: Vec<Event>,
}

/// Decodes `capture`, checks it (see the module docs) and reduces it to events.
pub(crate) fn analyze(capture: &Capture) -> Analysis {
    let name = capture.name();
    let version = capture.fixture.protocol_version;
    assert_eq!(version, capture.mode.version, "{name}");
    let mut decoder = Decoder::new(version);
    let mut walk = Walk {
        mode: &capture.mode,
        relations: HashMap::new(),
        types: HashMap::new(),
        recent_types: Vec::new(),
        open: None,
        block: None,
        streams: HashMap::new(),
        seen_stream_xids: HashSet::new(),
        prepared: HashMap::new(),
        last_position: Lsn::ZERO,
        column_kinds: HashSet::new(),
        truncated: HashMap::new(),
        events: Vec::new(),
    };
    let mut messages = Vec::with_capacity(capture.fixture.messages.len());
    let mut kinds = BTreeMap::new();
    let mut previous = None;
    for (i, m) in capture.fixture.messages.iter().enumerate() {
        let at = format!("{name}, message {i} at {}", m.lsn);
        let decoded = decoder
            .decode(m.data.clone())
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        let mut out = BytesMut::new();
        pgoutput::encode(&decoded, version, &mut out).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(
            out.freeze(),
            m.data,
            "{at}: re-encoding {:?} differs from the server's bytes",
            decoded.kind()
        );
        *kinds.entry(decoded.kind().name()).or_default() += 1;
        walk.message(&at, m.lsn, &decoded, previous.as_ref());
        previous = Some(decoded.clone());
        messages.push(decoded);
    }
    assert!(walk.open.is_none(), "{name}: ends inside a transaction");
    assert!(walk.block.is_none(), "{name}: ends inside a streamed block");
    assert!(
        walk.streams.is_empty(),
        "{name}: streamed transactions never ended: {:?}",
        walk.streams.keys().collect::<Vec<_>>()
    );
    let expected_value_kind = if capture.mode.binary { b'b' } else { b't' };
    let other_value_kind = if capture.mode.binary { b't' } else { b'b' };
    assert!(
        walk.column_kinds.contains(&expected_value_kind)
            && !walk.column_kinds.contains(&other_value_kind),
        "{name}: column kinds {:?}",
        walk.column_kinds
    );
    Analysis {
        messages,
        events: walk.events,
        relations: walk.relations,
        types: walk.types,
        kinds,
        truncated: walk.truncated,
    }
}

impl Walk<'_> {
    #[allow(clippy::too_many_lines)]
    fn message(
        &mut self,
        at: &str,
        row_lsn: Lsn,
        message: &LogicalMessage,
        previous: Option<&LogicalMessage>,
    ) {
        if !matches!(
            message,
            LogicalMessage::Type(_) | LogicalMessage::Relation(_)
        ) {
            self.recent_types.clear();
        }
        match message {
            LogicalMessage::Begin(b) => {
                self.outside_blocks(at);
                self.open = Some(Open {
                    xid: b.xid,
                    lsn: b.final_lsn,
                    end_lsn: None,
                    time: b.commit_time,
                    gid: None,
                    origin: None,
                    changes: Vec::new(),
                });
            }
            LogicalMessage::BeginPrepare(b) => {
                self.outside_blocks(at);
                assert!(b.end_lsn > b.prepare_lsn, "{at}: {b:?}");
                self.open = Some(Open {
                    xid: b.xid,
                    lsn: b.prepare_lsn,
                    end_lsn: Some(b.end_lsn),
                    time: b.prepare_time,
                    gid: Some(b.gid.clone()),
                    origin: None,
                    changes: Vec::new(),
                });
            }
            LogicalMessage::Origin(o) => {
                let origin = Some((o.name.clone(), o.commit_lsn));
                match (previous, self.block) {
                    (Some(LogicalMessage::StreamStart(s)), Some(xid)) if s.first_segment => {
                        self.streams.entry(xid).or_default().origin = origin;
                    }
                    (Some(LogicalMessage::Begin(_) | LogicalMessage::BeginPrepare(_)), None) => {
                        self.open.as_mut().unwrap().origin = origin;
                    }
                    _ => panic!("{at}: Origin after {previous:?}"),
                }
            }
            LogicalMessage::Type(t) => {
                self.stream_xid(at, t.xid);
                self.types.insert(t.oid, t.clone());
                self.recent_types.push(t.oid);
            }
            LogicalMessage::Relation(r) => {
                self.stream_xid(at, r.xid);
                self.check_relation(at, r);
                self.recent_types.clear();
                self.relations.insert(r.oid, r.clone());
            }
            LogicalMessage::Insert(m) => {
                let table = self.table_of(at, m.relation_oid, &[&m.new]);
                let new = self.row(&m.new);
                self.change(at, m.xid, Change::Insert { table, new });
            }
            LogicalMessage::Update(m) => {
                let mut tuples = vec![&m.new];
                tuples.extend(m.old.as_ref().map(OldTuple::tuple));
                let table = self.table_of(at, m.relation_oid, &tuples);
                let old = m.old.as_ref().map(|o| self.old(o));
                let new = self.row(&m.new);
                self.change(at, m.xid, Change::Update { table, old, new });
            }
            LogicalMessage::Delete(m) => {
                let table = self.table_of(at, m.relation_oid, &[m.old.tuple()]);
                let old = self.old(&m.old);
                self.change(at, m.xid, Change::Delete { table, old });
            }
            LogicalMessage::Truncate(t) => {
                assert_eq!(t.other_options, 0, "{at}");
                let mut tables: Vec<String> = t
                    .relation_oids
                    .iter()
                    .map(|oid| self.table_of(at, *oid, &[]))
                    .collect();
                for (table, oid) in tables.iter().zip(&t.relation_oids) {
                    self.truncated.insert(table.clone(), *oid);
                }
                tables.sort();
                let change = Change::Truncate {
                    tables,
                    cascade: t.cascade,
                    restart_identity: t.restart_identity,
                };
                self.change(at, t.xid, change);
            }
            LogicalMessage::Message(m) => {
                assert_eq!(m.lsn, row_lsn, "{at}: a message's LSN is its row's");
                let content = m.content.to_vec();
                if m.transactional {
                    let change = Change::Message {
                        prefix: m.prefix.clone(),
                        content,
                    };
                    self.change(at, m.xid, change);
                } else {
                    self.outside_blocks(at);
                    assert_eq!(m.xid, None, "{at}");
                    self.advance(at, m.lsn);
                    self.events.push(Event {
                        content: Content::Message {
                            prefix: m.prefix.clone(),
                            content,
                        },
                        xid: None,
                        subxact_aborts: Vec::new(),
                        lsn: Some(m.lsn),
                        end_lsn: None,
                        time: None,
                    });
                }
            }
            LogicalMessage::Commit(c) => {
                assert!(self.block.is_none(), "{at}: Commit in a streamed block");
                let open = self.open.take().unwrap_or_else(|| panic!("{at}: no Begin"));
                assert!(open.gid.is_none(), "{at}: Commit after Begin Prepare");
                assert_eq!(
                    (c.commit_lsn, c.commit_time),
                    (open.lsn, open.time),
                    "{at}: Commit and Begin disagree"
                );
                assert_eq!(c.flags, 0, "{at}");
                assert!(c.end_lsn > c.commit_lsn, "{at}: {c:?}");
                assert_eq!(row_lsn, c.end_lsn, "{at}: a commit's row LSN is its end");
                self.advance(at, c.end_lsn);
                self.events.push(Event {
                    content: Content::Txn {
                        origin: open.origin,
                        streamed: false,
                        subxact_aborts: Vec::new(),
                        changes: open.changes,
                        end: End::Commit,
                    },
                    xid: Some(open.xid),
                    subxact_aborts: Vec::new(),
                    lsn: Some(c.commit_lsn),
                    end_lsn: Some(c.end_lsn),
                    time: Some(c.commit_time),
                });
            }
            LogicalMessage::Prepare(p) => {
                assert!(self.block.is_none(), "{at}: Prepare in a streamed block");
                let open = self
                    .open
                    .take()
                    .unwrap_or_else(|| panic!("{at}: no Begin Prepare"));
                assert_eq!(
                    (
                        Some(p.gid.clone()),
                        p.xid,
                        p.prepare_lsn,
                        Some(p.end_lsn),
                        p.prepare_time
                    ),
                    (open.gid, open.xid, open.lsn, open.end_lsn, open.time),
                    "{at}: Prepare and Begin Prepare disagree"
                );
                assert_eq!(p.flags, 0, "{at}");
                self.prepared(
                    at,
                    row_lsn,
                    &p.gid,
                    p.xid,
                    p.prepare_lsn,
                    p.end_lsn,
                    p.prepare_time,
                );
                self.events.push(Event {
                    content: Content::Txn {
                        origin: open.origin,
                        streamed: false,
                        subxact_aborts: Vec::new(),
                        changes: open.changes,
                        end: End::Prepare { gid: p.gid.clone() },
                    },
                    xid: Some(p.xid),
                    subxact_aborts: Vec::new(),
                    lsn: Some(p.prepare_lsn),
                    end_lsn: Some(p.end_lsn),
                    time: Some(p.prepare_time),
                });
            }
            LogicalMessage::StreamStart(s) => {
                self.outside_blocks(at);
                let first = self.seen_stream_xids.insert(s.xid);
                assert_eq!(
                    s.first_segment, first,
                    "{at}: first_segment of xid {}",
                    s.xid
                );
                self.streams.entry(s.xid).or_default();
                self.block = Some(s.xid);
            }
            LogicalMessage::StreamStop => {
                assert!(
                    self.block.take().is_some(),
                    "{at}: Stream Stop outside a block"
                );
            }
            LogicalMessage::StreamCommit(c) => {
                self.outside_blocks(at);
                let pending = self.take_stream(at, c.xid);
                assert_eq!(c.flags, 0, "{at}");
                assert!(c.end_lsn > c.commit_lsn, "{at}: {c:?}");
                assert_eq!(row_lsn, c.end_lsn, "{at}: a commit's row LSN is its end");
                self.advance(at, c.end_lsn);
                self.events.push(Event {
                    content: Content::Txn {
                        origin: pending.origin,
                        streamed: true,
                        subxact_aborts: abort_flags(&pending.subxact_aborts),
                        changes: pending.changes.into_iter().map(|(_, c)| c).collect(),
                        end: End::Commit,
                    },
                    xid: Some(c.xid),
                    subxact_aborts: pending.subxact_aborts,
                    lsn: Some(c.commit_lsn),
                    end_lsn: Some(c.end_lsn),
                    time: Some(c.commit_time),
                });
            }
            LogicalMessage::StreamAbort(a) => {
                self.outside_blocks(at);
                assert_eq!(
                    a.abort.is_some(),
                    self.mode.streaming == Streaming::Parallel,
                    "{at}: abort LSN and time come with streaming = parallel"
                );
                if let Some(info) = &a.abort {
                    assert_eq!(info.abort_lsn, row_lsn, "{at}: abort LSN is the row's");
                    self.advance(at, info.abort_lsn);
                }
                if a.subxid == a.xid {
                    self.take_stream(at, a.xid);
                    self.events.push(Event {
                        content: Content::Aborted {
                            with_info: a.abort.is_some(),
                        },
                        xid: Some(a.xid),
                        subxact_aborts: Vec::new(),
                        lsn: a.abort.as_ref().map(|i| i.abort_lsn),
                        end_lsn: None,
                        time: a.abort.as_ref().map(|i| i.abort_time),
                    });
                } else {
                    assert!(a.subxid > a.xid, "{at}: subxid before its top xid: {a:?}");
                    let pending = self
                        .streams
                        .get_mut(&a.xid)
                        .unwrap_or_else(|| panic!("{at}: Stream Abort of unknown xid {}", a.xid));
                    pending.changes.retain(|(xid, _)| *xid != a.subxid);
                    pending.subxact_aborts.push((a.subxid, a.abort.clone()));
                }
            }
            LogicalMessage::StreamPrepare(p) => {
                self.outside_blocks(at);
                let pending = self.take_stream(at, p.xid);
                assert_eq!(p.flags, 0, "{at}");
                self.prepared(
                    at,
                    row_lsn,
                    &p.gid,
                    p.xid,
                    p.prepare_lsn,
                    p.end_lsn,
                    p.prepare_time,
                );
                self.events.push(Event {
                    content: Content::Txn {
                        origin: pending.origin,
                        streamed: true,
                        subxact_aborts: abort_flags(&pending.subxact_aborts),
                        changes: pending.changes.into_iter().map(|(_, c)| c).collect(),
                        end: End::Prepare { gid: p.gid.clone() },
                    },
                    xid: Some(p.xid),
                    subxact_aborts: pending.subxact_aborts,
                    lsn: Some(p.prepare_lsn),
                    end_lsn: Some(p.end_lsn),
                    time: Some(p.prepare_time),
                });
            }
            LogicalMessage::CommitPrepared(k) => {
                self.outside_blocks(at);
                assert_eq!(k.flags, 0, "{at}");
                assert!(k.end_lsn > k.commit_lsn, "{at}: {k:?}");
                if let Some(p) = self.prepared.get(&k.gid) {
                    assert_eq!(k.xid, p.xid, "{at}: Commit Prepared xid");
                    assert!(k.commit_lsn >= p.end_lsn, "{at}: committed before prepared");
                }
                assert_eq!(row_lsn, k.end_lsn, "{at}: a commit's row LSN is its end");
                self.advance(at, k.end_lsn);
                self.events.push(Event {
                    content: Content::CommitPrepared { gid: k.gid.clone() },
                    xid: Some(k.xid),
                    subxact_aborts: Vec::new(),
                    lsn: Some(k.commit_lsn),
                    end_lsn: Some(k.end_lsn),
                    time: Some(k.commit_time),
                });
            }
            LogicalMessage::RollbackPrepared(r) => {
                self.outside_blocks(at);
                assert_eq!(r.flags, 0, "{at}");
                assert!(r.rollback_end_lsn > r.prepare_end_lsn, "{at}: {r:?}");
                assert!(r.rollback_time >= r.prepare_time, "{at}: {r:?}");
                if let Some(p) = self.prepared.get(&r.gid) {
                    assert_eq!(
                        (r.xid, r.prepare_end_lsn, r.prepare_time),
                        (p.xid, p.end_lsn, p.time),
                        "{at}: Rollback Prepared and Prepare disagree"
                    );
                }
                assert_eq!(
                    row_lsn, r.rollback_end_lsn,
                    "{at}: a rollback's row LSN is its end"
                );
                self.advance(at, r.rollback_end_lsn);
                self.events.push(Event {
                    content: Content::RollbackPrepared { gid: r.gid.clone() },
                    xid: Some(r.xid),
                    subxact_aborts: Vec::new(),
                    lsn: None,
                    end_lsn: Some(r.rollback_end_lsn),
                    time: Some(r.rollback_time),
                });
            }
            other => panic!("{at}: a message kind this test does not know: {other:?}"),
        }
    }

    /// Transaction boundaries and non-transactional messages come outside any block.
    fn outside_blocks(&self, at: &str) {
        assert!(self.open.is_none(), "{at}: inside a transaction");
        assert!(self.block.is_none(), "{at}: inside a streamed block");
    }

    /// Commits, prepares, rollbacks and messages come in WAL order.
    fn advance(&mut self, at: &str, position: Lsn) {
        assert!(
            position > self.last_position,
            "{at}: position {position} is not after {}",
            self.last_position
        );
        self.last_position = position;
    }

    #[allow(clippy::too_many_arguments)]
    fn prepared(
        &mut self,
        at: &str,
        row_lsn: Lsn,
        gid: &str,
        xid: u32,
        prepare_lsn: Lsn,
        end_lsn: Lsn,
        time: PgTimestamp,
    ) {
        assert!(end_lsn > prepare_lsn, "{at}");
        assert_eq!(row_lsn, end_lsn, "{at}: a prepare's row LSN is its end");
        self.advance(at, end_lsn);
        let previous = self
            .prepared
            .insert(gid.to_owned(), Prepared { xid, end_lsn, time });
        assert!(previous.is_none(), "{at}: GID {gid} prepared twice");
    }

    fn take_stream(&mut self, at: &str, xid: u32) -> Pending {
        self.streams
            .remove(&xid)
            .unwrap_or_else(|| panic!("{at}: no streamed block of xid {xid}"))
    }

    /// Checks the xid of a message that has one inside streamed blocks.
    fn stream_xid(&self, at: &str, xid: Option<u32>) {
        match (self.block, xid) {
            (None, None) => {}
            (Some(block), Some(xid)) => {
                assert!(xid >= block, "{at}: xid {xid} in the block of {block}");
            }
            (block, xid) => panic!("{at}: xid {xid:?} in block {block:?}"),
        }
    }

    fn change(&mut self, at: &str, xid: Option<u32>, change: Change) {
        self.stream_xid(at, xid);
        match (self.block, xid) {
            (Some(block), Some(xid)) => {
                self.streams
                    .get_mut(&block)
                    .unwrap()
                    .changes
                    .push((xid, change));
            }
            _ => self
                .open
                .as_mut()
                .unwrap_or_else(|| panic!("{at}: a change outside any transaction"))
                .changes
                .push(change),
        }
    }

    /// The table a change names, checking each tuple has its relation's column count.
    fn table_of(&self, at: &str, oid: u32, tuples: &[&TupleData]) -> String {
        let relation = self
            .relations
            .get(&oid)
            .unwrap_or_else(|| panic!("{at}: relation {oid} was not described"));
        for tuple in tuples {
            assert_eq!(
                tuple.len(),
                relation.columns.len(),
                "{at}: a tuple of {} has the wrong column count",
                relation.name
            );
        }
        relation.name.clone()
    }

    fn row(&mut self, tuple: &TupleData) -> Row {
        tuple
            .iter()
            .map(|c| match c {
                ColumnRef::Null => {
                    self.column_kinds.insert(b'n');
                    Val::Null
                }
                ColumnRef::UnchangedToast => {
                    self.column_kinds.insert(b'u');
                    Val::Unchanged
                }
                ColumnRef::Text(b) => {
                    self.column_kinds.insert(b't');
                    Val::Text(String::from_utf8(b.to_vec()).expect("text values are UTF-8"))
                }
                ColumnRef::Binary(b) => {
                    self.column_kinds.insert(b'b');
                    Val::Binary(b.to_vec())
                }
            })
            .collect()
    }

    fn old(&mut self, old: &OldTuple) -> Old {
        match old {
            OldTuple::Key(t) => Old::Key(self.row(t)),
            OldTuple::Full(t) => Old::Full(self.row(t)),
        }
    }

    /// A Relation message describes one of the workload's tables exactly.
    fn check_relation(&self, at: &str, r: &Relation) {
        assert_eq!(r.namespace, "app", "{at}");
        let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
        let tables = workload::tables();
        let spec = tables
            .iter()
            .find(|t| {
                t.name == r.name && t.columns.iter().map(|c| c.name).eq(names.iter().copied())
            })
            .unwrap_or_else(|| panic!("{at}: no table {} with columns {names:?}", r.name));
        assert_eq!(r.replica_identity, spec.identity, "{at}: {}", r.name);
        let mut user_type_oids = Vec::new();
        for (c, s) in r.columns.iter().zip(&spec.columns) {
            let what = format!("{at}: column {}.{}", r.name, c.name);
            assert_eq!(c.flags, u8::from(s.key), "{what}: flags");
            assert_eq!(c.type_modifier, s.type_modifier, "{what}: type modifier");
            match s.ty {
                Ty::Builtin(oid) => assert_eq!(c.type_oid, oid, "{what}: type"),
                Ty::User(sql_name) => {
                    let (_, namespace, name) =
                        USER_TYPES.iter().find(|(n, _, _)| *n == sql_name).unwrap();
                    let t = self
                        .types
                        .get(&c.type_oid)
                        .unwrap_or_else(|| panic!("{what}: no Type message for {sql_name}"));
                    assert_eq!(
                        (t.namespace.as_str(), t.name.as_str()),
                        (*namespace, *name),
                        "{what}: Type message"
                    );
                    assert_eq!(t.xid, r.xid, "{what}: Type and Relation xids");
                    user_type_oids.push(c.type_oid);
                }
            }
        }
        assert_eq!(
            self.recent_types, user_type_oids,
            "{at}: the Type messages before Relation {}",
            r.name
        );
    }
}

fn abort_flags(aborts: &[(u32, Option<StreamAbortInfo>)]) -> Vec<bool> {
    aborts.iter().map(|(_, info)| info.is_some()).collect()
}

/// The kinds a capture in `mode` must contain: all it can carry, except that with
/// `immediate` streaming every transaction is streamed (no Begin, Commit, Begin Prepare or
/// Prepare).
pub(crate) fn required_kinds(mode: &Mode) -> BTreeSet<&'static str> {
    use MessageKind::{
        Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, Message, Origin, Prepare,
        Relation, RollbackPrepared, StreamAbort, StreamCommit, StreamPrepare, StreamStart,
        StreamStop, Truncate, Type, Update,
    };
    let mut kinds = vec![
        Message, Origin, Relation, Type, Insert, Update, Delete, Truncate,
    ];
    if !mode.immediate {
        kinds.extend([Begin, Commit]);
    }
    if mode.streaming.is_on() {
        kinds.extend([StreamStart, StreamStop, StreamCommit, StreamAbort]);
    }
    if mode.two_phase {
        kinds.extend([CommitPrepared, RollbackPrepared]);
        if !mode.immediate {
            kinds.extend([BeginPrepare, Prepare]);
        }
        if mode.streaming.is_on() {
            kinds.push(StreamPrepare);
        }
    }
    kinds.into_iter().map(MessageKind::name).collect()
}

/// Compares a capture's content with what the workload wrote, item by item, with the
/// workload's step names in the message.
pub(crate) fn assert_content(name: &str, events: &[Event], expected: &[workload::Expected]) {
    for (i, (event, expected)) in events.iter().zip(expected).enumerate() {
        assert_eq!(
            event.content, expected.content,
            "{name}: item {i} (step {:?}) differs",
            expected.label
        );
    }
    assert_eq!(
        events.len(),
        expected.len(),
        "{name}: {} items, expected {}; the steps were {:?}, the items {:#?}",
        events.len(),
        expected.len(),
        expected.iter().map(|e| e.label).collect::<Vec<_>>(),
        events.iter().map(|e| &e.content).collect::<Vec<_>>()
    );
}
