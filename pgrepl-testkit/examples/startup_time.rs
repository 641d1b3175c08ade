//! Measures what a cluster costs: finding (and, the first time on a machine, relocating) the
//! installation; the first cluster, which runs initdb into the cached template; and every
//! later cluster, a copy of that template and a server start.
//!
//! ```text
//! PGREPL_TEST_TMPDIR=$(mktemp -d) cargo run -p pgrepl-testkit --example startup_time [MAJOR…]
//! ```
//!
//! With a fresh `PGREPL_TEST_TMPDIR` the cache is empty, so the first numbers include
//! relocation and initdb; without, they show the warm cache.

use std::time::{Duration, Instant};

use pgrepl_testkit::{Install, Result};

const CLUSTERS: usize = 10;

fn main() -> Result<()> {
    let majors: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let majors = if majors.is_empty() {
        pgrepl_testkit::SUPPORTED_MAJORS.to_vec()
    } else {
        majors
    };
    for major in majors {
        let t = Instant::now();
        let pg = Install::find(major)?;
        let find = t.elapsed();
        let t = Instant::now();
        drop(pg.start_cluster()?);
        let first = t.elapsed();
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..CLUSTERS {
            let t = Instant::now();
            let cluster = pg.start_cluster()?;
            starts.push(t.elapsed());
            let t = Instant::now();
            drop(cluster);
            stops.push(t.elapsed());
        }
        let t = Instant::now();
        let three = pg.cluster().start_many(3)?;
        let three_time = t.elapsed();
        drop(three);
        println!(
            "{} in {}\n  find: {} ms; first cluster (template, initdb if not cached): {} ms\n  \
             per cluster from the template: start median {} ms (min {}, max {}), stop and \
             remove median {} ms; three at once (start_many): {} ms",
            pg.version(),
            pg.bin_dir().display(),
            find.as_millis(),
            first.as_millis(),
            median(&mut starts).as_millis(),
            starts.iter().min().copied().unwrap_or_default().as_millis(),
            starts.iter().max().copied().unwrap_or_default().as_millis(),
            median(&mut stops).as_millis(),
            three_time.as_millis(),
        );
    }
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
