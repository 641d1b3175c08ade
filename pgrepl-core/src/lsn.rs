//! Log sequence numbers: positions in PostgreSQL's write-ahead log.
//!
//! An LSN (PostgreSQL's `XLogRecPtr`, SQL type `pg_lsn`) is a 64-bit byte
//! position in the WAL. Every position pgrepl tracks is one: a slot's
//! `confirmed_flush_lsn`, a replication origin's progress, the `final_lsn` of
//! a Begin message, the `wal_end` of a keepalive, the flush position sent back
//! in a standby status update.
//!
//! PostgreSQL shows an LSN as two 32-bit halves in upper-case hexadecimal
//! separated by a slash, `16/B374D848` (see the `pg_lsn` type in the
//! documentation, section "pg_lsn Type"). [`Lsn`]'s `Display` writes that form
//! and its `FromStr` reads it the way the server's `pg_lsn_in` does: one to
//! eight hex digits (either case), a slash, one to eight hex digits, nothing
//! else. Parsing never panics; bad input is a [`ParseLsnError`].
//!
//! `0/0` is `InvalidXLogRecPtr`, PostgreSQL's "no position" value; it is
//! [`Lsn::ZERO`] here.

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log (`XLogRecPtr`, `pg_lsn`).
///
/// Ordered as the WAL is: a larger LSN is later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, PostgreSQL's `InvalidXLogRecPtr`: no position.
    pub const ZERO: Lsn = Lsn(0);

    /// `FFFFFFFF/FFFFFFFF`, the largest LSN.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// The LSN as a plain byte position.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether this is `0/0` (`InvalidXLogRecPtr`).
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Bytes of WAL from `earlier` to `self`, or `None` when `earlier` is
    /// later than `self`.
    #[must_use]
    pub const fn checked_sub(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// Bytes of WAL from `earlier` to `self`, or 0 when `earlier` is later
    /// (a lag that cannot be negative).
    #[must_use]
    pub const fn saturating_sub(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The position `bytes` further on, or `None` past [`Lsn::MAX`].
    #[must_use]
    pub const fn checked_add(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }

    /// The position `bytes` further on, stopping at [`Lsn::MAX`].
    #[must_use]
    pub const fn saturating_add(self, bytes: u64) -> Lsn {
        Lsn(self.0.saturating_add(bytes))
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(value: Lsn) -> Self {
        value.0
    }
}

impl fmt::Display for Lsn {
    /// Writes `X/Y` in upper-case hex, as PostgreSQL's `pg_lsn_out` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {input:?}: {reason}")]
pub struct ParseLsnError {
    input: String,
    reason: ParseLsnErrorReason,
}

impl ParseLsnError {
    /// What was wrong with the input.
    #[must_use]
    pub fn reason(&self) -> ParseLsnErrorReason {
        self.reason
    }
}

/// What was wrong with a string that should have been an LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseLsnErrorReason {
    /// There is no `/` between the two halves.
    #[error("expected two hex numbers separated by '/'")]
    MissingSlash,
    /// A half is empty or has more than eight digits.
    #[error("each half must have 1 to 8 hex digits")]
    BadLength,
    /// A half has a character that is not a hex digit.
    #[error("found a character that is not a hex digit")]
    NotHex,
}

/// Parses one half of an LSN: 1 to 8 hex digits, nothing else (no sign).
fn parse_half(s: &str) -> Result<u64, ParseLsnErrorReason> {
    if s.is_empty() || s.len() > 8 {
        return Err(ParseLsnErrorReason::BadLength);
    }
    let mut value: u64 = 0;
    for c in s.bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(ParseLsnErrorReason::NotHex),
        };
        // At most 8 digits: the value stays below 2^32, no overflow.
        value = (value << 4) | u64::from(digit);
    }
    Ok(value)
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Parses `X/Y` (upper- or lower-case hex, 1 to 8 digits each).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseLsnError {
            input: s.chars().take(64).collect(),
            reason,
        };
        let (hi, lo) = s
            .split_once('/')
            .ok_or_else(|| fail(ParseLsnErrorReason::MissingSlash))?;
        let hi = parse_half(hi).map_err(fail)?;
        let lo = parse_half(lo).map_err(fail)?;
        Ok(Lsn((hi << 32) | lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_postgres() {
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
    }

    #[test]
    fn parses_either_case() {
        assert_eq!("16/B374D848".parse::<Lsn>(), Ok(Lsn(0x16_B374_D848)));
        assert_eq!("16/b374d848".parse::<Lsn>(), Ok(Lsn(0x16_B374_D848)));
        assert_eq!("0/0".parse::<Lsn>(), Ok(Lsn::ZERO));
        assert_eq!("00000000/00000001".parse::<Lsn>(), Ok(Lsn(1)));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>(), Ok(Lsn::MAX));
    }

    #[test]
    fn rejects_garbage() {
        let reason = |s: &str| s.parse::<Lsn>().map_err(|e| e.reason());
        assert_eq!(reason(""), Err(ParseLsnErrorReason::MissingSlash));
        assert_eq!(reason("16"), Err(ParseLsnErrorReason::MissingSlash));
        assert_eq!(reason("/1"), Err(ParseLsnErrorReason::BadLength));
        assert_eq!(reason("1/"), Err(ParseLsnErrorReason::BadLength));
        assert_eq!(reason("123456789/0"), Err(ParseLsnErrorReason::BadLength));
        assert_eq!(reason("+1/0"), Err(ParseLsnErrorReason::NotHex));
        assert_eq!(reason("1/-0"), Err(ParseLsnErrorReason::NotHex));
        assert_eq!(reason(" 1/0"), Err(ParseLsnErrorReason::NotHex));
        assert_eq!(reason("1/0/0"), Err(ParseLsnErrorReason::NotHex));
        assert_eq!(reason("g/0"), Err(ParseLsnErrorReason::NotHex));
        assert_eq!(reason("é/0"), Err(ParseLsnErrorReason::NotHex));
        let err = "x/y".parse::<Lsn>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid LSN \"x/y\": found a character that is not a hex digit"
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Lsn(10).checked_sub(Lsn(4)), Some(6));
        assert_eq!(Lsn(4).checked_sub(Lsn(10)), None);
        assert_eq!(Lsn(4).saturating_sub(Lsn(10)), 0);
        assert_eq!(Lsn::MAX.checked_add(1), None);
        assert_eq!(Lsn::MAX.saturating_add(1), Lsn::MAX);
        assert_eq!(Lsn(1).checked_add(2), Some(Lsn(3)));
        assert!(Lsn(1) < Lsn(2));
        assert!(Lsn::ZERO.is_zero());
    }

    #[test]
    fn round_trips_through_text() {
        for v in [
            0,
            1,
            0xFFFF_FFFF,
            0x1_0000_0000,
            0xDEAD_BEEF_0BAD_F00D,
            u64::MAX,
        ] {
            let lsn = Lsn(v);
            assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        }
    }
}
