//! PostgreSQL timestamps as they travel in the replication protocols.
//!
//! Every time in the pgoutput messages (commit, prepare and rollback times,
//! section "Logical Replication Message Formats") and in the streaming
//! replication messages (`send_time` of XLogData, keepalives and standby
//! replies, section "Streaming Replication Protocol") is a `TimestampTz`: a
//! signed 64-bit count of microseconds since the PostgreSQL epoch,
//! 2000-01-01 00:00:00 UTC. [`PgTimestamp`] holds exactly that integer, so a
//! commit timestamp read from the stream can be handed back to the server
//! (`pg_replication_origin_xact_setup`) without rounding.
//!
//! Conversions to and from [`SystemTime`] are checked and never panic. The
//! `Display` form is RFC 3339 in UTC with microseconds
//! (`2026-11-21T23:17:18.123456Z`), written here by hand to avoid a date
//! library dependency. PostgreSQL's special values `-infinity` (`i64::MIN`)
//! and `infinity` (`i64::MAX`) display as such; years outside 0000–9999,
//! which RFC 3339 cannot express, are written with an explicit sign as
//! ISO 8601 allows (`+12345-01-01T00:00:00.000000Z`).

use std::fmt;
use std::time::{Duration, SystemTime};

/// Seconds from the Unix epoch (1970-01-01) to the PostgreSQL epoch (2000-01-01).
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
/// Microseconds from the Unix epoch to the PostgreSQL epoch.
const PG_EPOCH_UNIX_MICROS: i64 = PG_EPOCH_UNIX_SECS * 1_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_UNIX_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A PostgreSQL `TimestampTz`: microseconds since 2000-01-01 00:00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

/// A time that cannot be represented on the other side of a conversion
/// (before 1970 or after the year 294,000 or so, depending on direction and
/// platform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timestamp out of range")]
pub struct TimestampOutOfRange;

impl PgTimestamp {
    /// 2000-01-01 00:00:00 UTC, the PostgreSQL epoch.
    pub const EPOCH: PgTimestamp = PgTimestamp(0);
    /// PostgreSQL's `-infinity` (`DT_NOBEGIN`).
    pub const NEG_INFINITY: PgTimestamp = PgTimestamp(i64::MIN);
    /// PostgreSQL's `infinity` (`DT_NOEND`).
    pub const INFINITY: PgTimestamp = PgTimestamp(i64::MAX);

    /// Microseconds since the PostgreSQL epoch.
    #[must_use]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Microseconds since the Unix epoch, or `None` if that overflows `i64`.
    #[must_use]
    pub const fn to_unix_micros(self) -> Option<i64> {
        self.0.checked_add(PG_EPOCH_UNIX_MICROS)
    }

    /// The timestamp `unix_micros` microseconds after the Unix epoch, or
    /// `None` if that overflows `i64`.
    #[must_use]
    pub const fn from_unix_micros(unix_micros: i64) -> Option<PgTimestamp> {
        match unix_micros.checked_sub(PG_EPOCH_UNIX_MICROS) {
            Some(v) => Some(PgTimestamp(v)),
            None => None,
        }
    }

    /// The same instant as a [`SystemTime`], or `None` when the platform's
    /// `SystemTime` cannot hold it.
    #[must_use]
    pub fn to_system_time(self) -> Option<SystemTime> {
        let unix = self.to_unix_micros()?;
        let magnitude = Duration::from_micros(unix.unsigned_abs());
        if unix >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(magnitude)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// The instant `time`, truncated to the microsecond (towards the past),
    /// or `None` when it is outside the `i64` microsecond range.
    #[must_use]
    pub fn from_system_time(time: SystemTime) -> Option<PgTimestamp> {
        let unix_micros: i64 = match time.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).ok()?,
            Err(before) => {
                let before = before.duration();
                let mut micros = i64::try_from(before.as_micros()).ok()?;
                if before.subsec_nanos() % 1_000 != 0 {
                    // Round towards the past, as for times after the epoch.
                    micros = micros.checked_add(1)?;
                }
                micros.checked_neg()?
            }
        };
        Self::from_unix_micros(unix_micros)
    }

    /// The current time, as the server would stamp a message now.
    ///
    /// A clock beyond the representable range gives [`PgTimestamp::INFINITY`]
    /// (or `-infinity` before it), never a panic.
    #[must_use]
    pub fn now() -> PgTimestamp {
        let now = SystemTime::now();
        Self::from_system_time(now).unwrap_or(if now >= SystemTime::UNIX_EPOCH {
            Self::INFINITY
        } else {
            Self::NEG_INFINITY
        })
    }
}

impl TryFrom<SystemTime> for PgTimestamp {
    type Error = TimestampOutOfRange;

    fn try_from(value: SystemTime) -> Result<Self, Self::Error> {
        Self::from_system_time(value).ok_or(TimestampOutOfRange)
    }
}

impl TryFrom<PgTimestamp> for SystemTime {
    type Error = TimestampOutOfRange;

    fn try_from(value: PgTimestamp) -> Result<Self, Self::Error> {
        value.to_system_time().ok_or(TimestampOutOfRange)
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01, after
/// Howard Hinnant's `civil_from_days`. Exact for every `i64` day count whose
/// magnitude is below 2^50 (ours are below 2^27).
fn civil_from_days(days_since_unix_epoch: i64) -> (i64, u32, u32) {
    let z = days_since_unix_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are within small positive ranges (see the comments above).
    let month = u32::try_from(month).unwrap_or(1);
    let day = u32::try_from(day).unwrap_or(1);
    (year, month, day)
}

impl fmt::Display for PgTimestamp {
    /// RFC 3339, UTC, microseconds: `2026-11-21T23:17:18.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::INFINITY => return f.write_str("infinity"),
            Self::NEG_INFINITY => return f.write_str("-infinity"),
            _ => {}
        }
        // |self.0 / MICROS_PER_DAY| < 2^27: none of the sums below overflow.
        let days = self.0.div_euclid(MICROS_PER_DAY) + PG_EPOCH_UNIX_DAYS;
        let micros_of_day = self.0.rem_euclid(MICROS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs_of_day = micros_of_day / 1_000_000;
        let micros = micros_of_day % 1_000_000;
        let (hour, minute, second) = (secs_of_day / 3_600, secs_of_day / 60 % 60, secs_of_day % 60);
        if (0..=9_999).contains(&year) {
            write!(f, "{year:04}")?;
        } else {
            write!(f, "{year:+05}")?;
        }
        write!(
            f,
            "-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_utc_micros() {
        assert_eq!(PgTimestamp(0).to_string(), "2000-01-01T00:00:00.000000Z");
        assert_eq!(PgTimestamp(-1).to_string(), "1999-12-31T23:59:59.999999Z");
        assert_eq!(
            PgTimestamp(-PG_EPOCH_UNIX_MICROS).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        // 2026-11-21T23:17:18.123456Z = Unix 1795303038.123456
        let ts = PgTimestamp::from_unix_micros(1_795_303_038_123_456).unwrap();
        assert_eq!(ts.to_string(), "2026-11-21T23:17:18.123456Z");
        // leap day
        let ts = PgTimestamp::from_unix_micros(951_782_400_000_000).unwrap();
        assert_eq!(ts.to_string(), "2000-02-29T00:00:00.000000Z");
        assert_eq!(PgTimestamp::INFINITY.to_string(), "infinity");
        assert_eq!(PgTimestamp::NEG_INFINITY.to_string(), "-infinity");
    }

    #[test]
    fn displays_extreme_years_without_panic() {
        let high = PgTimestamp(i64::MAX - 1).to_string();
        assert!(high.starts_with("+294277-01-09T04:00:54.775806Z"), "{high}");
        let low = PgTimestamp(i64::MIN + 1).to_string();
        assert!(low.starts_with("-290278-12-22T"), "{low}");
        // year 0 and year -1 (proleptic Gregorian, astronomical numbering)
        let y0 = PgTimestamp(-730_485 * MICROS_PER_DAY).to_string();
        assert_eq!(y0, "0000-01-01T00:00:00.000000Z");
        let y_neg = PgTimestamp(-730_486 * MICROS_PER_DAY).to_string();
        assert_eq!(y_neg, "-0001-12-31T00:00:00.000000Z");
    }

    #[test]
    fn converts_to_and_from_system_time() {
        let ts = PgTimestamp(815_000_000_123_456);
        let st = ts.to_system_time().unwrap();
        assert_eq!(PgTimestamp::from_system_time(st), Some(ts));
        assert_eq!(PgTimestamp::try_from(st), Ok(ts));
        assert_eq!(SystemTime::try_from(ts), Ok(st));

        // before the Unix epoch
        let ts = PgTimestamp(-PG_EPOCH_UNIX_MICROS - 1_500_000);
        let st = ts.to_system_time().unwrap();
        assert_eq!(PgTimestamp::from_system_time(st), Some(ts));

        // sub-microsecond parts round towards the past
        let st = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_999);
        assert_eq!(
            PgTimestamp::from_system_time(st).unwrap().to_unix_micros(),
            Some(1)
        );
        let st = SystemTime::UNIX_EPOCH - Duration::from_nanos(1_001);
        assert_eq!(
            PgTimestamp::from_system_time(st).unwrap().to_unix_micros(),
            Some(-2)
        );
    }

    #[test]
    fn conversions_are_checked() {
        assert_eq!(PgTimestamp::INFINITY.to_unix_micros(), None);
        assert_eq!(PgTimestamp::from_unix_micros(i64::MIN), None);
        assert_eq!(PgTimestamp::INFINITY.to_system_time(), None);
        assert!(PgTimestamp::now() > PgTimestamp(0));
    }
}
