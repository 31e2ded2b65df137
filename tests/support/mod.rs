//! `benches/hot_path.rs` and `examples/bench_kit.rs` include this file with
//! `#[path = "../tests/support/mod.rs"] mod support;`. The fixtures themselves are the
//! `scrape-guard-testkit` crate beside it (`src/`); new code should use that crate.

pub(crate) use scrape_guard_testkit::*;
