//! The replication session: `IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT … LOGICAL pgoutput`,
//! `DROP_REPLICATION_SLOT … WAIT` and `START_REPLICATION SLOT … LOGICAL` with pgoutput's
//! options (PostgreSQL documentation, "Streaming Replication Protocol" and "Logical Streaming
//! Replication Parameters").
//!
//! Slot names are checked against PostgreSQL's own rule (`[a-z0-9_]`, at most 63 bytes) before
//! anything is sent; publication names travel as double-quoted identifiers inside a
//! single-quoted literal, each quote doubled, so no name can change the command.
//!
//! The pgoutput protocol version is negotiated from the server's version: PostgreSQL 15 speaks
//! up to version 3 (two-phase), 16 and later up to 4 (parallel streaming); a caller may ask for
//! less. Options the server cannot honour (`origin` before 16, `two_phase` before 15) are
//! refused here with a message, instead of failing later inside the stream.

use std::time::Duration;

use super::client::{Client, Row};
use super::error::{Error, Result};
use super::{ConnectConfig, Connection, SessionKind};
use crate::Lsn;
use crate::pgoutput::ProtocolVersion;
use crate::sql::{quote_ident, quote_literal};

pub use super::replication_stream::{ReplicationEvent, ReplicationStream, StreamSettings};

/// Checks a replication slot name against PostgreSQL's rule.
pub fn validate_slot_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid replication slot name \"{name}\": use only lower-case letters, digits and \
             underscores, at most 63 bytes"
        )))
    }
}

/// What `IDENTIFY_SYSTEM` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's unique system identifier.
    pub system_id: String,
    /// Current timeline.
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to.
    pub dbname: Option<String>,
}

/// What to do with the snapshot a new slot exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotAction {
    /// Export it for other sessions (`pg_export_snapshot` name returned).
    Export,
    /// Use it in this session's open transaction, which must have been begun with
    /// `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` and have run no query yet
    /// (PostgreSQL 18 insists on `READ ONLY`).
    Use,
    /// No snapshot.
    #[default]
    Nothing,
}

/// Options of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreateSlotOptions {
    /// Dropped when the session ends.
    pub temporary: bool,
    /// Snapshot handling.
    pub snapshot: SnapshotAction,
    /// Decode prepared transactions at PREPARE (PostgreSQL 15+).
    pub two_phase: bool,
}

/// A slot that was just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// Its name.
    pub slot_name: String,
    /// The first LSN from which the slot can stream a consistent state.
    pub consistent_point: Lsn,
    /// The exported snapshot, with [`SnapshotAction::Export`].
    pub snapshot_name: Option<String>,
}

/// pgoutput's `streaming` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Streaming {
    /// Large transactions are sent whole at commit.
    #[default]
    Off,
    /// In-progress transactions are streamed in chunks (protocol 2+).
    On,
    /// As `On`, with the abort LSN and time in Stream Abort (protocol 4, PostgreSQL 16+).
    Parallel,
}

/// pgoutput's `origin` option (PostgreSQL 16+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginFilter {
    /// Only changes without a replication origin, i.e. made on the source itself.
    None,
    /// All changes.
    Any,
}

/// The options of `START_REPLICATION … LOGICAL` for pgoutput.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgOutputOptions {
    /// The highest protocol version to use; `None` negotiates the highest the server speaks.
    pub proto_version: Option<ProtocolVersion>,
    /// Publications whose tables are streamed.
    pub publication_names: Vec<String>,
    /// Send column values in binary (send/recv) format.
    pub binary: bool,
    /// Send `pg_logical_emit_message` messages.
    pub messages: bool,
    /// Stream in-progress transactions.
    pub streaming: Streaming,
    /// Decode two-phase transactions at PREPARE.
    pub two_phase: bool,
    /// Filter by origin (PostgreSQL 16+).
    pub origin: Option<OriginFilter>,
}

/// The highest pgoutput protocol version a server speaks, by `server_version_num`.
pub fn max_protocol_version(server_version_num: u32) -> ProtocolVersion {
    match server_version_num {
        v if v >= 160_000 => ProtocolVersion::V4,
        v if v >= 150_000 => ProtocolVersion::V3,
        v if v >= 140_000 => ProtocolVersion::V2,
        _ => ProtocolVersion::V1,
    }
}

fn protocol_number(v: ProtocolVersion) -> u32 {
    match v {
        ProtocolVersion::V1 => 1,
        ProtocolVersion::V2 => 2,
        ProtocolVersion::V3 => 3,
        ProtocolVersion::V4 => 4,
    }
}

/// Builds the `START_REPLICATION` command and the protocol version it uses.
pub fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &PgOutputOptions,
    server_version_num: u32,
) -> Result<(String, ProtocolVersion)> {
    validate_slot_name(slot)?;
    if options.publication_names.is_empty() {
        return Err(Error::InvalidArgument(
            "pgoutput needs at least one publication name".into(),
        ));
    }
    let server_max = max_protocol_version(server_version_num);
    let version = match options.proto_version {
        Some(v) if protocol_number(v) <= protocol_number(server_max) => v,
        Some(v) => {
            return Err(Error::InvalidArgument(format!(
                "pgoutput protocol version {} needs a newer server (this one is {server_version_num} \
                 and speaks up to {})",
                protocol_number(v),
                protocol_number(server_max)
            )));
        }
        None => server_max,
    };
    let n = protocol_number(version);
    let needs = |what: &str, min: u32| -> Result<()> {
        if n < min {
            Err(Error::InvalidArgument(format!(
                "{what} needs pgoutput protocol version {min}, but {n} is in use (server \
                 {server_version_num})"
            )))
        } else {
            Ok(())
        }
    };
    let publications = options
        .publication_names
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(",");
    let mut parts = vec![
        format!("proto_version '{n}'"),
        format!("publication_names {}", quote_literal(&publications)),
    ];
    if options.binary {
        parts.push("binary 'true'".into());
    }
    if options.messages {
        parts.push("messages 'true'".into());
    }
    match options.streaming {
        Streaming::Off => {}
        Streaming::On => {
            needs("streaming", 2)?;
            parts.push("streaming 'on'".into());
        }
        Streaming::Parallel => {
            needs("streaming = parallel", 4)?;
            parts.push("streaming 'parallel'".into());
        }
    }
    if options.two_phase {
        needs("two_phase", 3)?;
        parts.push("two_phase 'on'".into());
    }
    if let Some(origin) = options.origin {
        if server_version_num < 160_000 {
            return Err(Error::InvalidArgument(format!(
                "the pgoutput origin option needs PostgreSQL 16 or later (server \
                 {server_version_num}); on 15, filter Origin messages instead"
            )));
        }
        parts.push(match origin {
            OriginFilter::None => "origin 'none'".into(),
            OriginFilter::Any => "origin 'any'".into(),
        });
    }
    Ok((
        format!(
            "START_REPLICATION SLOT {slot} LOGICAL {start} ({})",
            parts.join(", ")
        ),
        version,
    ))
}

/// A session opened with `replication=database`.
#[derive(Debug)]
pub struct ReplicationClient {
    client: Client,
}

impl ReplicationClient {
    /// Connects in logical replication mode.
    pub async fn connect(cfg: &ConnectConfig) -> Result<ReplicationClient> {
        let conn = Connection::connect(cfg, SessionKind::Replication).await?;
        Ok(ReplicationClient {
            client: Client::from_connection(conn),
        })
    }

    /// The underlying connection: whether it is encrypted, the backend's pid, the server's
    /// parameters, and [`Connection::set_max_message_len`] for the stream to come.
    pub fn connection(&mut self) -> &mut Connection {
        self.client.connection()
    }

    /// The server's `server_version_num`.
    pub fn server_version_num(&mut self) -> u32 {
        self.client.connection().server_version_num().unwrap_or(0)
    }

    /// Runs SQL or a replication command with the simple protocol (replication sessions accept
    /// no other).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>> {
        self.client.simple_query(sql).await
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity> {
        let rows = self.client.simple_query("IDENTIFY_SYSTEM").await?;
        let row = one_row(rows, "IDENTIFY_SYSTEM")?;
        Ok(SystemIdentity {
            system_id: row.get(0)?,
            timeline: row.get(1)?,
            xlogpos: row.get(2)?,
            dbname: row.get(3)?,
        })
    }

    /// `CREATE_REPLICATION_SLOT <name> [TEMPORARY] LOGICAL pgoutput (…)`.
    pub async fn create_slot(
        &mut self,
        name: &str,
        options: CreateSlotOptions,
    ) -> Result<CreatedSlot> {
        validate_slot_name(name)?;
        if options.snapshot == SnapshotAction::Use
            && self.client.connection_ref().transaction_status() != b'T'
        {
            return Err(Error::InvalidArgument(
                "SNAPSHOT 'use' needs an open transaction on the replication session: run \
                 BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY on it first"
                    .into(),
            ));
        }
        let version = self.server_version_num();
        let temporary = if options.temporary { " TEMPORARY" } else { "" };
        let command = if version >= 150_000 {
            let snapshot = match options.snapshot {
                SnapshotAction::Export => "export",
                SnapshotAction::Use => "use",
                SnapshotAction::Nothing => "nothing",
            };
            let two_phase = if options.two_phase {
                ", TWO_PHASE true"
            } else {
                ""
            };
            format!(
                "CREATE_REPLICATION_SLOT {name}{temporary} LOGICAL pgoutput \
                 (SNAPSHOT '{snapshot}'{two_phase})"
            )
        } else {
            if options.two_phase {
                return Err(Error::InvalidArgument(
                    "two-phase slots need PostgreSQL 15 or later".into(),
                ));
            }
            let snapshot = match options.snapshot {
                SnapshotAction::Export => "EXPORT_SNAPSHOT",
                SnapshotAction::Use => "USE_SNAPSHOT",
                SnapshotAction::Nothing => "NOEXPORT_SNAPSHOT",
            };
            format!("CREATE_REPLICATION_SLOT {name}{temporary} LOGICAL pgoutput {snapshot}")
        };
        let rows = self.client.simple_query(&command).await?;
        let row = one_row(rows, "CREATE_REPLICATION_SLOT")?;
        Ok(CreatedSlot {
            slot_name: row.get(0)?,
            consistent_point: row.get(1)?,
            snapshot_name: row.get(2)?,
        })
    }

    /// `DROP_REPLICATION_SLOT <name> [WAIT]`: with `wait`, waits for a walsender still using
    /// the slot to let go instead of failing.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<()> {
        validate_slot_name(name)?;
        let wait = if wait { " WAIT" } else { "" };
        self.client
            .simple_query(&format!("DROP_REPLICATION_SLOT {name}{wait}"))
            .await
            .map(|_| ())
    }

    /// The server's `wal_sender_timeout` (`SHOW wal_sender_timeout`); `None` when it is 0
    /// (no timeout) or cannot be read.
    pub async fn wal_sender_timeout(&mut self) -> Result<Option<Duration>> {
        let rows = self.client.simple_query("SHOW wal_sender_timeout").await?;
        Ok(rows
            .first()
            .and_then(|r| r.get_str(0))
            .and_then(parse_guc_duration)
            .filter(|d| !d.is_zero()))
    }

    /// `START_REPLICATION SLOT <slot> LOGICAL <start> (…)`: the session switches to CopyBoth
    /// and becomes a [`ReplicationStream`]. `start` is where the caller has durably applied up
    /// to (the server resumes from the later of it and the slot's confirmed position).
    ///
    /// The status interval is capped at a third of the server's `wal_sender_timeout`: while
    /// the consumer does not poll, the stream reads nothing (that is the backpressure), so it
    /// cannot see the server's keepalives asking for a reply, and only the timer keeps the
    /// walsender from ending the session.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &PgOutputOptions,
        mut settings: StreamSettings,
    ) -> Result<ReplicationStream> {
        let server = self.server_version_num();
        let (command, version) = start_replication_command(slot, start, options, server)?;
        if let Some(timeout) = self.wal_sender_timeout().await? {
            let cap = (timeout / 3).max(Duration::from_millis(10));
            if settings.status_interval > cap {
                tracing::debug!(
                    configured = ?settings.status_interval,
                    wal_sender_timeout = ?timeout,
                    "standby status interval capped at a third of wal_sender_timeout"
                );
                settings.status_interval = cap;
            }
        }
        let mut conn = self.client.into_connection();
        postgres_protocol::message::frontend::query(&command, conn.write_buffer())
            .map_err(|e| Error::InvalidArgument(format!("START_REPLICATION: {e}")))?;
        conn.flush().await?;
        match conn.recv().await? {
            super::BackendMessage::CopyBothResponse => {}
            super::BackendMessage::ErrorResponse(fields) => return Err(conn.db_error(fields)),
            other => return Err(conn.unexpected(&other, "after START_REPLICATION")),
        }
        Ok(ReplicationStream::spawn(conn, version, start, settings))
    }

    /// Closes the session.
    pub async fn close(self) -> Result<()> {
        self.client.into_connection().close().await
    }
}

/// A time setting as `SHOW` prints it (`0`, `500ms`, `5s`, `1min`, `2h`, `1d`).
fn parse_guc_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        // A time setting without a unit is in its base unit: milliseconds for this one.
        "" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis)
}

fn one_row(mut rows: Vec<Row>, command: &str) -> Result<Row> {
    if rows.len() != 1 {
        return Err(Error::InvalidArgument(format!(
            "{command} returned {} rows instead of one",
            rows.len()
        )));
    }
    rows.pop()
        .ok_or_else(|| Error::InvalidArgument(format!("{command} returned no row")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guc_durations() {
        assert_eq!(parse_guc_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_guc_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_guc_duration("1500ms"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_guc_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_guc_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_guc_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_guc_duration("x"), None);
        assert_eq!(parse_guc_duration("5 fortnights"), None);
        assert_eq!(parse_guc_duration("99999999999999999999d"), None);
    }

    #[test]
    fn slot_names_follow_postgres_rules() {
        validate_slot_name("pgrepl_practice_node1_to_node2").unwrap();
        for bad in [
            "",
            "Upper",
            "with space",
            "semi;colon",
            "x\"y",
            &"a".repeat(64),
        ] {
            assert!(validate_slot_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn start_command_quotes_and_negotiates() {
        let opts = PgOutputOptions {
            publication_names: vec!["p'1".into(), "we\"ird".into()],
            binary: true,
            messages: true,
            streaming: Streaming::On,
            ..Default::default()
        };
        let (cmd, v) = start_replication_command("s", Lsn(0x1_0000_0010), &opts, 150_018).unwrap();
        assert_eq!(v, ProtocolVersion::V3);
        assert_eq!(
            cmd,
            "START_REPLICATION SLOT s LOGICAL 1/10 (proto_version '3', publication_names \
             '\"p''1\",\"we\"\"ird\"', binary 'true', messages 'true', streaming 'on')"
        );
        let (_, v) = start_replication_command("s", Lsn(0), &opts, 180_006).unwrap();
        assert_eq!(v, ProtocolVersion::V4);
        let with_origin = PgOutputOptions {
            origin: Some(OriginFilter::None),
            ..opts.clone()
        };
        assert!(start_replication_command("s", Lsn(0), &with_origin, 150_018).is_err());
        let (cmd, _) = start_replication_command("s", Lsn(0), &with_origin, 160_000).unwrap();
        assert!(cmd.ends_with("origin 'none')"), "{cmd}");
        let parallel = PgOutputOptions {
            streaming: Streaming::Parallel,
            ..opts.clone()
        };
        assert!(start_replication_command("s", Lsn(0), &parallel, 150_018).is_err());
        let v1 = PgOutputOptions {
            proto_version: Some(ProtocolVersion::V1),
            ..opts
        };
        assert!(
            start_replication_command("s", Lsn(0), &v1, 150_018).is_err(),
            "streaming on v1"
        );
        assert!(
            start_replication_command("bad name", Lsn(0), &PgOutputOptions::default(), 150_018)
                .is_err()
        );
    }
}
