//! Real bytes: what PostgreSQL 15 and 18 actually send, decoded and checked against what was
//! written.
//!
//! A workload ([`workload`]) makes the server emit every pgoutput message kind it can:
//! many column types, NULLs, out-of-line TOAST values left unchanged by an update (`u`),
//! REPLICA IDENTITY DEFAULT / USING INDEX / FULL / NOTHING with old keys (`K`) and old rows
//! (`O`), a Relation message renewed by ALTER TABLE (also inside a streamed block), Type
//! messages for an enum, its array, a composite and a domain, a multi-table TRUNCATE with
//! CASCADE and RESTART IDENTITY (and each option alone), logical decoding messages (transactional, empty, and
//! non-transactional ones, one from a transaction that rolls back), replicated transactions
//! with an Origin, large transactions that are streamed (a rolled-back savepoint inside one,
//! another rolled back whole) and two-phase transactions (committed and rolled back,
//! small and streamed).
//!
//! Each stream is read with `pg_logical_slot_peek_binary_changes` in every protocol version
//! the server accepts (15: 1–3, 18: 1–4), as text and as binary values ([`Mode::all`]).
//! [`stream`] decodes it, re-encodes every message to the server's exact bytes, checks the
//! stream's structure (xids, LSN order, blocks, Relation and Type messages) and reduces it
//! to [`model::Content`], which must equal what the workload wrote
//! ([`workload::expected`]). Against a live server ([`server`]) the positions, xids, commit
//! times, OIDs and binary values are also checked against the server's own view.
//!
//! The captures named in [`COMMITTED`] are committed under `tests/fixtures/`; [`fixtures`]
//! checks them the same way without a server, and keeps the fuzz seeds made from them in
//! step. To regenerate both, in this order (the second run compiles the new fixtures in):
//!
//! ```sh
//! PGREPL_UPDATE_FIXTURES=1 cargo test -p pgrepl-core --test integration -- capture::server::
//! PGREPL_UPDATE_FIXTURES=1 cargo test -p pgrepl-core --test integration -- capture::fixtures::
//! ```
//!
//! The new files differ from the old in positions, xids, OIDs and times only, unless
//! PostgreSQL or the workload changed.

mod fixtures;
mod model;
mod server;
mod stream;
mod values;
mod workload;

use pgrepl_core::pgoutput::ProtocolVersion;
use pgrepl_core::pgoutput::fixture::Fixture;

/// The captures committed under `tests/fixtures/` (`<name>.pgoutput`): every text capture,
/// and the binary twin of the highest protocol version of each server.
pub(crate) const COMMITTED: &[&str] = &[
    "pg15-v1",
    "pg15-v2",
    "pg15-v3",
    "pg15-v3-binary",
    "pg18-v1",
    "pg18-v2",
    "pg18-v3",
    "pg18-v4-parallel",
    "pg18-v4-parallel-binary",
    "pg18-v4-on",
    "pg18-v4-parallel-immediate",
];

/// Set to `1` to rewrite the committed fixtures (and then the fuzz seeds) from a new run.
pub(crate) const UPDATE_ENV: &str = "PGREPL_UPDATE_FIXTURES";

pub(crate) fn updating() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1")
}

/// The `tests/fixtures` directory.
pub(crate) fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// pgoutput's `streaming` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Streaming {
    Off,
    On,
    /// `parallel` (protocol 4, PostgreSQL 16+): Stream Abort carries the abort LSN and time.
    Parallel,
}

impl Streaming {
    pub(crate) fn is_on(self) -> bool {
        self != Self::Off
    }
}

/// How a stream is read: server, protocol version and pgoutput options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// The server's major version.
    pub major: u32,
    pub version: ProtocolVersion,
    pub streaming: Streaming,
    pub two_phase: bool,
    pub binary: bool,
    /// `SET debug_logical_replication_streaming = immediate` (PostgreSQL 16+): every change
    /// is streamed as soon as it is decoded.
    pub immediate: bool,
}

/// The setting behind [`Mode::immediate`], as written in a fixture's options.
const IMMEDIATE_OPTION: &str = "+debug_logical_replication_streaming=immediate";

impl Mode {
    /// Every capture taken from a server of this major version: each protocol version it
    /// accepts in text and binary, with streaming from version 2 (`parallel` on 4) and
    /// two-phase decoding from version 3; on 18 also version 4 with `streaming 'on'`, and
    /// with `immediate` streaming.
    pub(crate) fn all(major: u32) -> Vec<Mode> {
        let max = if major >= 16 { 4 } else { 3 };
        let mut modes = Vec::new();
        for version in &ProtocolVersion::ALL[..max] {
            let version = *version;
            for binary in [false, true] {
                modes.push(Mode {
                    major,
                    version,
                    streaming: match version {
                        ProtocolVersion::V1 => Streaming::Off,
                        ProtocolVersion::V4 => Streaming::Parallel,
                        _ => Streaming::On,
                    },
                    two_phase: version.supports_two_phase(),
                    binary,
                    immediate: false,
                });
            }
        }
        if major >= 16 {
            let v4 = Mode {
                major,
                version: ProtocolVersion::V4,
                streaming: Streaming::On,
                two_phase: true,
                binary: false,
                immediate: false,
            };
            modes.push(v4);
            modes.push(Mode {
                streaming: Streaming::Parallel,
                immediate: true,
                ..v4
            });
        }
        modes
    }

    /// `pg18-v4-parallel-binary` and the like; the fixture's file stem.
    pub(crate) fn name(&self) -> String {
        let mut name = format!("pg{}-v{}", self.major, self.version.as_u32());
        if self.version == ProtocolVersion::V4 {
            name.push_str(match self.streaming {
                Streaming::Off => "-off",
                Streaming::On => "-on",
                Streaming::Parallel => "-parallel",
            });
        }
        if self.immediate {
            name.push_str("-immediate");
        }
        if self.binary {
            name.push_str("-binary");
        }
        name
    }

    pub(crate) fn slot(&self) -> &'static str {
        if self.two_phase {
            workload::SLOT_TWO_PHASE
        } else {
            workload::SLOT
        }
    }

    /// The pgoutput options, in the order they are passed.
    pub(crate) fn pgoutput_options(&self) -> Vec<(&'static str, String)> {
        let mut options = vec![
            ("proto_version", self.version.as_u32().to_string()),
            ("publication_names", workload::PUBLICATION.to_owned()),
            ("messages", "true".to_owned()),
        ];
        match self.streaming {
            Streaming::Off => {}
            Streaming::On => options.push(("streaming", "on".to_owned())),
            Streaming::Parallel => options.push(("streaming", "parallel".to_owned())),
        }
        if self.two_phase {
            options.push(("two_phase", "on".to_owned()));
        }
        if self.binary {
            options.push(("binary", "true".to_owned()));
        }
        options
    }

    /// The options as a fixture records them: `key=value` pairs, then a `+setting=value`
    /// entry for a server setting of the decoding session that shaped the capture.
    pub(crate) fn fixture_options(&self) -> String {
        let mut parts: Vec<String> = self
            .pgoutput_options()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.immediate {
            parts.push(IMMEDIATE_OPTION.to_owned());
        }
        parts.join(" ")
    }

    /// The mode a fixture was captured in.
    pub(crate) fn of_fixture(fixture: &Fixture) -> Mode {
        let options: Vec<&str> = fixture.options.split(' ').collect();
        let has = |entry: &str| options.contains(&entry);
        let mode = Mode {
            major: fixture.server_version_num / 10_000,
            version: fixture.protocol_version,
            streaming: if has("streaming=parallel") {
                Streaming::Parallel
            } else if has("streaming=on") {
                Streaming::On
            } else {
                Streaming::Off
            },
            two_phase: has("two_phase=on"),
            binary: has("binary=true"),
            immediate: has(IMMEDIATE_OPTION),
        };
        assert_eq!(
            mode.fixture_options(),
            fixture.options,
            "fixture options not understood"
        );
        mode
    }

    /// The same capture with text values (the one a binary capture is compared with).
    pub(crate) fn text_twin(&self) -> Mode {
        Mode {
            binary: false,
            ..*self
        }
    }
}

/// One captured stream.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub mode: Mode,
    pub fixture: Fixture,
}

impl Capture {
    pub(crate) fn name(&self) -> String {
        self.mode.name()
    }
}
