//! Decoder throughput: pgrepl's pgoutput decoder against `pg_walstream`'s
//! parser on the same stream captured from PostgreSQL 15
//! (`pgrepl-core/tests/fixtures/pg15-v1-oltp.pgoutput`: 6,000 Inserts, 3,000
//! Updates and 500 Deletes of an 8-column mostly-text table, with their
//! Begin/Commit messages; see that folder's README).
//!
//! Fairness: both decode the same `Bytes` messages, each a slice of one
//! shared buffer as a network read would give; both produce owned decoded
//! messages whose column values are `Bytes` slices of the input; both are
//! stateful (they track streamed blocks); each result is passed to
//! `black_box` and dropped inside the timed loop. Reported as bytes/s of
//! pgoutput messages (`decode/bytes`) and messages/s (`decode/messages`).
//!
//! Run: `cargo bench -p pgrepl-benches --bench decode`.

// criterion's macros generate undocumented items; a benchmark whose input
// does not decode must stop loudly, so `expect` is right here.
#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgrepl_core::pgoutput::Decoder;
use pgrepl_core::pgoutput::fixture::Fixture;

const OLTP: &[u8] = include_bytes!("../../pgrepl-core/tests/fixtures/pg15-v1-oltp.pgoutput");

/// The fixture's messages as slices of one reference-counted buffer.
fn messages() -> (u32, Vec<Bytes>) {
    let file = BytesMut::from(OLTP).freeze();
    let fixture = Fixture::parse(&file).expect("the committed fixture parses");
    let messages = fixture.messages.into_iter().map(|m| m.data).collect();
    (fixture.protocol_version.as_u32(), messages)
}

fn pgrepl(version: u32, messages: &[Bytes]) {
    let version = version.try_into().expect("known version");
    let mut decoder = Decoder::new(version);
    for m in messages {
        let decoded = decoder.decode(m.clone());
        black_box(&decoded);
    }
}

fn pg_walstream(version: u32, messages: &[Bytes]) {
    let mut parser = pg_walstream::LogicalReplicationParser::with_protocol_version(version);
    for m in messages {
        let decoded = parser.parse_wal_message_bytes(m.clone());
        black_box(&decoded);
    }
}

fn bench(c: &mut Criterion) {
    let (version, messages) = messages();
    let bytes: usize = messages.iter().map(Bytes::len).sum();

    // Both must decode the whole stream before their speed means anything.
    let mut decoder = Decoder::new(version.try_into().expect("known version"));
    let mut parser = pg_walstream::LogicalReplicationParser::with_protocol_version(version);
    for m in &messages {
        decoder
            .decode(m.clone())
            .expect("pgrepl decodes the fixture");
        parser
            .parse_wal_message_bytes(m.clone())
            .expect("pg_walstream decodes the fixture");
    }

    let mut group = c.benchmark_group("decode/bytes");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("pgrepl", |b| b.iter(|| pgrepl(version, &messages)));
    group.bench_function("pg_walstream", |b| {
        b.iter(|| pg_walstream(version, &messages))
    });
    group.finish();

    let mut group = c.benchmark_group("decode/messages");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("pgrepl", |b| b.iter(|| pgrepl(version, &messages)));
    group.bench_function("pg_walstream", |b| {
        b.iter(|| pg_walstream(version, &messages))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
