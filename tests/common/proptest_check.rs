//! The runner of the property tests (`tests/fuzz.rs`, and the router's in `src/gateway/http.rs`,
//! which includes this file): a property over 100,000 values (or `PROPTEST_CASES`), no failure
//! persisted into the repository, and a line saying how many cases ran.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
pub const CASES: u32 = 100_000;

/// Runs `property` on [`CASES`] values of `strategy` (or `PROPTEST_CASES`), then says how many ran.
pub fn check<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let ran = std::cell::Cell::new(0u32);
    let started = std::time::Instant::now();
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.set(ran.get() + 1);
        property(value)
    });
    eprintln!("{name}: {} cases in {:.1?}", ran.get(), started.elapsed());
    if let Err(err) = result {
        panic!("{name}: {err}");
    }
    assert!(ran.get() >= cases, "{name}: only {} of {cases} cases ran", ran.get());
}
