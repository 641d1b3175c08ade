//! The committed captures, checked without a server, and the fuzz seeds made from them.
//!
//! Each fixture gets the checks [`super::server`] runs on a fresh capture, except those that
//! need the server: it decodes and re-encodes exactly, its structure holds, it contains the
//! message kinds of its mode, its content is what the workload wrote; a binary fixture is
//! its text twin with binary values, the simple ones converted and compared here.
//!
//! The fuzz seeds named `fixture-*` under `fuzz/seeds/` are a function of the fixtures
//! ([`seeds`]); this test fails when they are out of step, and rewrites them with
//! `PGREPL_UPDATE_FIXTURES=1`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use pgrepl_core::PgTimestamp;
use pgrepl_core::pgoutput::fixture::Fixture;
use pgrepl_core::pgoutput::{ColumnRef, Decoder, LogicalMessage, MessageKind, OldTuple};
use pgrepl_core::replication_message::{ReplicationMessage, XLogData};

use super::stream::{self, Analysis};
use super::{COMMITTED, Capture, Mode, updating, values, workload};

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../fixtures/", $name, ".pgoutput")).as_slice(),
        )
    };
}

/// The committed captures ([`COMMITTED`]), compiled in.
const FILES: &[(&str, &[u8])] = &[
    fixture!("pg15-v1"),
    fixture!("pg15-v2"),
    fixture!("pg15-v3"),
    fixture!("pg15-v3-binary"),
    fixture!("pg18-v1"),
    fixture!("pg18-v2"),
    fixture!("pg18-v3"),
    fixture!("pg18-v4-parallel"),
    fixture!("pg18-v4-parallel-binary"),
    fixture!("pg18-v4-on"),
    fixture!("pg18-v4-parallel-immediate"),
];

fn committed() -> Vec<Capture> {
    assert_eq!(
        FILES.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        COMMITTED,
        "FILES and COMMITTED name the same fixtures"
    );
    FILES
        .iter()
        .map(|(name, file)| {
            let fixture =
                Fixture::parse(&Bytes::from_static(file)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mode = Mode::of_fixture(&fixture);
            assert_eq!(mode.name(), *name, "the file name says how it was captured");
            Capture { mode, fixture }
        })
        .collect()
}

/// Every committed capture holds what the workload wrote; together, those of each server
/// contain every message kind.
#[test]
fn committed_captures_hold_the_workload() {
    let captures = committed();
    let analyses: HashMap<String, Analysis> = captures
        .iter()
        .map(|c| (c.name(), stream::analyze(c)))
        .collect();
    let mut kinds: HashMap<u32, BTreeSet<&str>> = HashMap::new();
    for capture in &captures {
        let name = capture.name();
        let analysis = &analyses[&name];
        assert_eq!(
            analysis.kinds.keys().copied().collect::<BTreeSet<_>>(),
            stream::required_kinds(&capture.mode),
            "{name}: message kinds"
        );
        kinds
            .entry(capture.mode.major)
            .or_default()
            .extend(analysis.kinds.keys().copied());
        if capture.mode.binary {
            let text = captures
                .iter()
                .find(|c| c.mode == capture.mode.text_twin())
                .unwrap_or_else(|| panic!("{name}: its text twin is committed too"));
            let pairs = values::pair(text, &analyses[&text.name()], capture, analysis);
            let mut local = 0;
            for value in &pairs {
                if let Some(text) = values::local_text(value) {
                    assert_eq!(text, value.text, "{}", value.at);
                    local += 1;
                }
            }
            assert!(
                local * 2 > pairs.len(),
                "{name}: {local} of {}",
                pairs.len()
            );
        } else {
            stream::assert_content(&name, &analysis.events, &workload::expected(&capture.mode));
        }
    }
    let all: BTreeSet<&str> = MessageKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(kinds.len(), 2);
    for (major, kinds) in kinds {
        assert_eq!(
            kinds, all,
            "the PostgreSQL {major} fixtures hold every kind"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Fuzz seeds.

/// The fuzz seed directories, by target.
const PGOUTPUT_DECODE: &str = "pgoutput_decode";
const REPLICATION_MESSAGE: &str = "replication_message";

/// Sessions are cut into pieces of about this size, at points outside streamed blocks.
const SESSION_PIECE: usize = 8 * 1024;

/// A seed: its target and its bytes (the file name is derived from them).
type Seed = (&'static str, Vec<u8>);

/// A short description of a message's shape, so that one seed is kept per shape: the kind,
/// whether it is inside a streamed block, and what varies within a kind (tuple and column
/// kinds, flags, optional fields).
fn shape(message: &LogicalMessage, in_stream: bool) -> String {
    let columns = |tuples: &[&pgrepl_core::pgoutput::TupleData]| -> String {
        let kinds: BTreeSet<char> = tuples
            .iter()
            .flat_map(|t| t.iter())
            .map(|c| match c {
                ColumnRef::Null => 'n',
                ColumnRef::UnchangedToast => 'u',
                ColumnRef::Text(_) => 't',
                ColumnRef::Binary(_) => 'b',
            })
            .collect();
        kinds.into_iter().collect()
    };
    let old_tag = |old: Option<&OldTuple>| match old {
        None => "-",
        Some(OldTuple::Key(_)) => "K",
        Some(OldTuple::Full(_)) => "O",
    };
    let detail = match message {
        LogicalMessage::Insert(m) => columns(&[&m.new]),
        LogicalMessage::Update(m) => {
            let mut tuples = vec![&m.new];
            tuples.extend(m.old.as_ref().map(OldTuple::tuple));
            format!("{} {}", old_tag(m.old.as_ref()), columns(&tuples))
        }
        LogicalMessage::Delete(m) => {
            format!("{} {}", old_tag(Some(&m.old)), columns(&[m.old.tuple()]))
        }
        LogicalMessage::Relation(r) => format!("{:?}", r.replica_identity),
        LogicalMessage::Truncate(t) => format!("{} {}", t.cascade, t.restart_identity),
        LogicalMessage::Message(m) => format!("{} {}", m.transactional, m.content.is_empty()),
        LogicalMessage::StreamStart(s) => s.first_segment.to_string(),
        LogicalMessage::StreamAbort(a) => format!("{} {}", a.xid == a.subxid, a.abort.is_some()),
        LogicalMessage::Origin(o) => o.commit_lsn.is_zero().to_string(),
        _ => String::new(),
    };
    format!("{} {in_stream} {detail}", message.kind().name())
}

/// The seeds made from the committed captures, in a fixed order:
///
/// - `pgoutput_decode`, one message: the first message of each shape per protocol version;
///   control byte = version − 1, plus 4 when inside a streamed block.
/// - `pgoutput_decode`, a session: each capture cut into pieces of about 8 kB between
///   streamed blocks, each message framed by a big-endian u16 length; control byte =
///   version − 1, plus 8.
/// - `replication_message`: each single-message seed outside a streamed block, wrapped in an
///   XLogData (its LSN as WAL start and end, send time 0); control byte = (version − 1) × 2.
///
/// See the doc comments of the targets in `fuzz/fuzz_targets/`.
fn seeds(captures: &[Capture]) -> Vec<Seed> {
    let mut single = Vec::new();
    let mut sessions = Vec::new();
    let mut wrapped = Vec::new();
    let mut shapes = HashSet::new();
    for capture in captures {
        let version = capture.fixture.protocol_version;
        let version_bits = u8::try_from(version.as_u32() - 1).unwrap();
        let mut decoder = Decoder::new(version);
        let mut piece = vec![version_bits | 8];
        for m in &capture.fixture.messages {
            let in_stream = decoder.in_stream();
            if !in_stream && piece.len() >= SESSION_PIECE {
                sessions.push((
                    PGOUTPUT_DECODE,
                    std::mem::replace(&mut piece, vec![version_bits | 8]),
                ));
            }
            piece.extend_from_slice(&u16::try_from(m.data.len()).unwrap().to_be_bytes());
            piece.extend_from_slice(&m.data);
            let decoded = decoder.decode(m.data.clone()).unwrap();
            if shapes.insert(format!("{version} {}", shape(&decoded, in_stream))) {
                let mut seed = vec![version_bits | (u8::from(in_stream) << 2)];
                seed.extend_from_slice(&m.data);
                single.push((PGOUTPUT_DECODE, seed));
                if !in_stream {
                    let mut payload = BytesMut::new();
                    ReplicationMessage::XLogData(XLogData {
                        wal_start: m.lsn,
                        wal_end: m.lsn,
                        send_time: PgTimestamp(0),
                        data: m.data.clone(),
                    })
                    .encode(&mut payload);
                    let mut seed = vec![version_bits << 1];
                    seed.extend_from_slice(&payload);
                    wrapped.push((REPLICATION_MESSAGE, seed));
                }
            }
        }
        sessions.push((PGOUTPUT_DECODE, piece));
    }
    single.into_iter().chain(sessions).chain(wrapped).collect()
}

/// A seed's file name: `fixture-` and the FNV-1a hash of its bytes.
fn seed_name(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("fixture-{hash:016x}")
}

/// The `fixture-*` files of a seed directory.
fn generated_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("fixture-"))
        .collect()
}

/// `fuzz/seeds/*/fixture-*` are exactly the seeds made from the committed fixtures.
#[test]
fn fuzz_seeds_come_from_the_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let seeds = seeds(&committed());
    let mut by_dir: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for (dir, bytes) in &seeds {
        by_dir.entry(dir).or_default().insert(seed_name(bytes));
    }
    if updating() {
        for dir in [PGOUTPUT_DECODE, REPLICATION_MESSAGE] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            for stale in generated_files(&root.join(dir)) {
                std::fs::remove_file(root.join(dir).join(stale)).unwrap();
            }
        }
        for (dir, bytes) in &seeds {
            std::fs::write(root.join(dir).join(seed_name(bytes)), bytes).unwrap();
        }
    }
    let fix = format!(
        "run `{}=1 cargo test -p pgrepl-core --test integration -- capture::fixtures::`",
        super::UPDATE_ENV
    );
    for (dir, bytes) in &seeds {
        let path = root.join(dir).join(seed_name(bytes));
        let on_disk =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; {fix}", path.display()));
        assert!(on_disk == *bytes, "{} differs; {fix}", path.display());
    }
    for dir in [PGOUTPUT_DECODE, REPLICATION_MESSAGE] {
        assert_eq!(
            generated_files(&root.join(dir)),
            by_dir.remove(dir).unwrap_or_default(),
            "fuzz/seeds/{dir}: stale or missing seeds; {fix}"
        );
    }
}
