//! Fuzzes the CopyData payloads of `START_REPLICATION`
//! (`pgrepl_core::replication_message`).
//!
//! Input: one control byte, then a CopyData payload. Bit 0 selects the
//! direction: 0 = from the server (`ReplicationMessage`: XLogData,
//! keepalive), 1 = from the client (`StandbyMessage`: status update, hot
//! standby feedback). An XLogData's data is then decoded as a pgoutput
//! message of the version in bits 1-2.
//!
//! Checked: no panic, and every payload that decodes re-encodes to exactly
//! the same bytes.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgrepl_core::pgoutput::{self, ProtocolVersion};
use pgrepl_core::replication_message::{ReplicationMessage, StandbyMessage};

fuzz_target!(|input: &[u8]| {
    let Some((&control, payload)) = input.split_first() else {
        return;
    };
    let payload = Bytes::copy_from_slice(payload);
    let mut out = BytesMut::new();
    if control & 1 == 0 {
        let Ok(msg) = ReplicationMessage::decode(payload.clone()) else {
            return;
        };
        msg.encode(&mut out);
        if let ReplicationMessage::XLogData(x) = &msg {
            let version = ProtocolVersion::ALL[usize::from((control >> 1) & 3)];
            if let Ok(logical) = pgoutput::decode(x.data.clone(), version, false) {
                let mut again = BytesMut::new();
                pgoutput::encode(&logical, version, &mut again).expect("decoded message encodes");
                assert_eq!(again.freeze(), x.data);
            }
        }
    } else {
        let Ok(msg) = StandbyMessage::decode(payload.clone()) else {
            return;
        };
        msg.encode(&mut out);
    }
    assert_eq!(out.freeze(), payload, "re-encoding differs");
});
