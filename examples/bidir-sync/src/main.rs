//! bidir-sync: lands with issue 5.

fn main() {}
