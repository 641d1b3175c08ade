//! The committed captures, checked without a server.
//!
//! Each fixture gets the checks [`super::server`] runs on a fresh capture, except those that
//! need the server: it decodes and re-encodes exactly, its structure holds, it contains the
//! message kinds of its mode, its content is what the workload wrote; a binary fixture is
//! its text twin with binary values, the simple ones converted and compared here.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use pgrepl_core::pgoutput::MessageKind;
use pgrepl_core::pgoutput::fixture::Fixture;

use super::stream::{self, Analysis};
use super::{COMMITTED, Capture, Mode, values, workload};

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
