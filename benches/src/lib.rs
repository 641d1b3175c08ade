//! Benchmarks of pgrepl.
