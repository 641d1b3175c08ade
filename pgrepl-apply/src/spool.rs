//! Spool files for streamed transactions.
//!
//! With pgoutput `streaming` on, a transaction larger than the source's
//! `logical_decoding_work_mem` arrives in chunks *before* it commits, interleaved with other
//! transactions, and may still abort. The applier cannot apply it until Stream Commit, and must
//! not hold it in memory, so each chunk's messages go to a file of their own transaction,
//! appended as they arrive; Stream Commit hands the file over for applying (and for replaying,
//! should the first attempt need the careful path), Stream Abort deletes it — or, for an aborted
//! subtransaction, remembers its xid so its changes are skipped when the file is read.
//!
//! Each record is `length: u32 BE | CRC-32 of the payload: u32 BE | payload`, the payload being
//! the pgoutput message exactly as received. Reading checks every length against what is left in
//! the file and every checksum, so a truncated or corrupted file is an error, never a wrong
//! transaction.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pgrepl_core::pgoutput::{self, LogicalMessage, ProtocolVersion};

use crate::error::ApplyError;

/// The largest record accepted when reading back (PostgreSQL never sends more than 1 GiB).
const MAX_RECORD: usize = 1 << 30;

fn spool_error(path: &Path, reason: impl std::fmt::Display) -> ApplyError {
    ApplyError::Spool {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[derive(Debug)]
struct Open {
    path: PathBuf,
    writer: BufWriter<File>,
    aborted: HashSet<u32>,
    records: u64,
    bytes: u64,
}

/// The open spool files of one link.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    open: HashMap<u32, Open>,
}

impl Spool {
    /// Spools into `dir`, created if missing; files left there by an earlier run of the link are
    /// removed (the source streams those transactions again from the start).
    pub fn new(dir: PathBuf) -> Result<Spool, ApplyError> {
        std::fs::create_dir_all(&dir).map_err(|e| spool_error(&dir, e))?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "spool") {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        Ok(Spool {
            dir,
            open: HashMap::new(),
        })
    }

    /// Starts (or restarts) the file of transaction `xid`.
    pub fn begin(&mut self, xid: u32) -> Result<(), ApplyError> {
        let path = self.dir.join(format!("xid-{xid}.spool"));
        let file = File::create(&path).map_err(|e| spool_error(&path, e))?;
        self.open.insert(
            xid,
            Open {
                path,
                writer: BufWriter::with_capacity(256 * 1024, file),
                aborted: HashSet::new(),
                records: 0,
                bytes: 0,
            },
        );
        Ok(())
    }

    /// Appends one message of transaction `xid` (as received).
    pub fn append(&mut self, xid: u32, message: &[u8]) -> Result<(), ApplyError> {
        if !self.open.contains_key(&xid) {
            self.begin(xid)?;
        }
        let Some(open) = self.open.get_mut(&xid) else {
            return Ok(());
        };
        let len = u32::try_from(message.len())
            .map_err(|_| spool_error(&open.path, "message over 4 GiB"))?;
        let crc = crc32fast::hash(message);
        let w = &mut open.writer;
        w.write_all(&len.to_be_bytes())
            .and_then(|()| w.write_all(&crc.to_be_bytes()))
            .and_then(|()| w.write_all(message))
            .map_err(|e| spool_error(&open.path, e))?;
        open.records += 1;
        open.bytes += u64::from(len) + 8;
        Ok(())
    }

    /// Stream Abort: the whole transaction (`subxid == xid`) or one subtransaction.
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if xid == subxid {
            if let Some(open) = self.open.remove(&xid) {
                drop(open.writer);
                let _ = std::fs::remove_file(&open.path);
            }
        } else if let Some(open) = self.open.get_mut(&xid) {
            open.aborted.insert(subxid);
        }
    }

    /// Stream Commit: closes the file of `xid` and hands it over.
    pub fn finish(&mut self, xid: u32, version: ProtocolVersion) -> Result<SpooledTxn, ApplyError> {
        let Some(mut open) = self.open.remove(&xid) else {
            // A streamed transaction with no spooled change (all of it filtered).
            return Ok(SpooledTxn {
                path: None,
                aborted: HashSet::new(),
                records: 0,
                bytes: 0,
                version,
            });
        };
        open.writer
            .flush()
            .map_err(|e| spool_error(&open.path, e))?;
        Ok(SpooledTxn {
            path: Some(open.path),
            aborted: open.aborted,
            records: open.records,
            bytes: open.bytes,
            version,
        })
    }

    /// Whether any streamed transaction is open.
    pub fn has_open(&self) -> bool {
        !self.open.is_empty()
    }
}

/// A committed streamed transaction, on disk until dropped.
#[derive(Debug)]
pub struct SpooledTxn {
    path: Option<PathBuf>,
    aborted: HashSet<u32>,
    records: u64,
    bytes: u64,
    version: ProtocolVersion,
}

impl SpooledTxn {
    /// How many messages were spooled.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The size of the file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the transaction's messages back in order, without those of aborted
    /// subtransactions.
    pub fn read(&self) -> Result<SpoolReader<'_>, ApplyError> {
        let reader = match &self.path {
            None => None,
            Some(path) => Some(BufReader::with_capacity(
                256 * 1024,
                File::open(path).map_err(|e| spool_error(path, e))?,
            )),
        };
        Ok(SpoolReader { txn: self, reader })
    }
}

impl Drop for SpooledTxn {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Iterates a spooled transaction's messages.
#[derive(Debug)]
pub struct SpoolReader<'a> {
    txn: &'a SpooledTxn,
    reader: Option<BufReader<File>>,
}

impl SpoolReader<'_> {
    fn path(&self) -> &Path {
        self.txn.path.as_deref().unwrap_or(Path::new("-"))
    }

    fn next_record(&mut self) -> Result<Option<Bytes>, ApplyError> {
        let path = self.path().to_path_buf();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(spool_error(&path, e)),
        }
        let (len, crc) = header.split_at(4);
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default()) as usize;
        let crc = u32::from_be_bytes(crc.try_into().unwrap_or_default());
        if len > MAX_RECORD {
            return Err(spool_error(
                &path,
                format!("record length {len} is corrupt"),
            ));
        }
        let mut payload = Vec::new();
        let got = reader
            .by_ref()
            .take(len as u64)
            .read_to_end(&mut payload)
            .map_err(|e| spool_error(&path, e))?;
        if got != len {
            return Err(spool_error(&path, "truncated record"));
        }
        if crc32fast::hash(&payload) != crc {
            return Err(spool_error(&path, "checksum mismatch"));
        }
        Ok(Some(Bytes::from(payload)))
    }
}

impl Iterator for SpoolReader<'_> {
    type Item = Result<LogicalMessage, ApplyError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let raw = match self.next_record() {
                Ok(Some(raw)) => raw,
                Ok(None) => return None,
                Err(e) => {
                    self.reader = None;
                    return Some(Err(e));
                }
            };
            let msg = match pgoutput::decode(raw, self.txn.version, true) {
                Ok(m) => m,
                Err(e) => {
                    self.reader = None;
                    return Some(Err(spool_error(self.path(), e)));
                }
            };
            let xid = match &msg {
                LogicalMessage::Insert(m) => m.xid,
                LogicalMessage::Update(m) => m.xid,
                LogicalMessage::Delete(m) => m.xid,
                LogicalMessage::Truncate(m) => m.xid,
                _ => None,
            };
            if xid.is_some_and(|x| self.txn.aborted.contains(&x)) {
                continue;
            }
            return Some(Ok(msg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use pgrepl_core::pgoutput::{ColumnValue, Insert, TupleData, encode};

    fn insert(xid: u32, v: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(
            &LogicalMessage::Insert(Insert {
                xid: Some(xid),
                relation_oid: 5,
                new: TupleData::new([ColumnValue::Text(Bytes::copy_from_slice(v.as_bytes()))]),
            }),
            ProtocolVersion::V2,
            &mut out,
        )
        .unwrap();
        out.to_vec()
    }

    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pgrepl-spool-{name}-{}", std::process::id()))
    }

    #[test]
    fn spooled_messages_come_back_without_aborted_subtransactions() {
        let d = dir("roundtrip");
        let mut spool = Spool::new(d.clone()).unwrap();
        spool.begin(10).unwrap();
        spool.append(10, &insert(10, "a")).unwrap();
        spool.append(10, &insert(11, "sub")).unwrap();
        spool.append(10, &insert(12, "kept")).unwrap();
        spool.abort(10, 11);
        spool.begin(20).unwrap();
        spool.append(20, &insert(20, "gone")).unwrap();
        spool.abort(20, 20);
        let txn = spool.finish(10, ProtocolVersion::V2).unwrap();
        assert!(!spool.has_open());
        let values: Vec<String> = txn
            .read()
            .unwrap()
            .map(|m| match m.unwrap() {
                LogicalMessage::Insert(i) => match i.new.value(0).unwrap() {
                    ColumnValue::Text(b) => String::from_utf8(b.to_vec()).unwrap(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, ["a", "kept"]);
        // a second read replays the same
        assert_eq!(txn.read().unwrap().count(), 2);
        let path = d.join("xid-10.spool");
        assert!(path.exists());
        drop(txn);
        assert!(!path.exists());
        assert!(!d.join("xid-20.spool").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corruption_is_detected() {
        let d = dir("corrupt");
        let mut spool = Spool::new(d.clone()).unwrap();
        spool.append(1, &insert(1, "value")).unwrap();
        let txn = spool.finish(1, ProtocolVersion::V2).unwrap();
        let path = d.join("xid-1.spool");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = txn.read().unwrap().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, &bytes).unwrap();
        let err = txn.read().unwrap().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        drop(txn);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
