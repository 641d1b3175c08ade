//! Loop prevention on PostgreSQL 15: skip every transaction that carries an Origin message.
//!
//! A transaction that pgrepl applies on a node is tagged with a replication origin
//! (`pg_replication_origin_session_setup`). When that node is itself the source of a link, its
//! pgoutput stream would carry the transaction again, back to where it came from, forever. On
//! PostgreSQL 16 and later the link asks pgoutput for `origin 'none'` and such transactions are
//! never sent. PostgreSQL 15's pgoutput has no such option, but it announces a replicated
//! transaction with an Origin message right after Begin (or after the first Stream Start of a
//! streamed transaction), and this filter remembers that, so the applier drops the whole
//! transaction. Dropped transactions still count for progress: their end LSN may be confirmed to
//! the source, so a node's retained WAL stays bounded however much of its traffic is skipped.

use std::collections::HashSet;

/// Remembers which transactions of a session came from a replication origin.
#[derive(Debug, Default, Clone)]
pub struct OriginFilter {
    current_foreign: bool,
    foreign_streams: HashSet<u32>,
    skipped: u64,
}

impl OriginFilter {
    /// A filter for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transaction (Begin, or Begin Prepare) starts.
    pub fn begin(&mut self) {
        self.current_foreign = false;
    }

    /// An Origin message arrived: the open transaction (or the streamed transaction `stream_xid`
    /// whose block is open) was replicated from elsewhere.
    pub fn origin(&mut self, stream_xid: Option<u32>) {
        match stream_xid {
            Some(xid) => {
                self.foreign_streams.insert(xid);
            }
            None => self.current_foreign = true,
        }
    }

    /// Whether the open transaction (or streamed transaction `stream_xid`) is to be skipped.
    pub fn is_foreign(&self, stream_xid: Option<u32>) -> bool {
        match stream_xid {
            Some(xid) => self.foreign_streams.contains(&xid),
            None => self.current_foreign,
        }
    }

    /// The transaction ends (commit, abort, prepare); returns whether it was skipped, and
    /// counts it if so.
    pub fn end(&mut self, stream_xid: Option<u32>) -> bool {
        let foreign = match stream_xid {
            Some(xid) => self.foreign_streams.remove(&xid),
            None => std::mem::take(&mut self.current_foreign),
        };
        if foreign {
            self.skipped = self.skipped.saturating_add(1);
        }
        foreign
    }

    /// How many transactions were skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_forgets_transactions() {
        let mut f = OriginFilter::new();
        f.begin();
        assert!(!f.is_foreign(None));
        f.origin(None);
        assert!(f.is_foreign(None));
        assert!(f.end(None));
        f.begin();
        assert!(!f.end(None));
        f.origin(Some(7));
        assert!(f.is_foreign(Some(7)));
        assert!(!f.is_foreign(Some(8)));
        assert!(f.end(Some(7)));
        assert!(!f.is_foreign(Some(7)));
        assert_eq!(f.skipped(), 2);
    }
}
