//! The test kit: traffic that looks real, and the drivers that measure meshscope with it.
//!
//! - [`sim`]: a bookinfo-like mesh, seeded traffic through it as ground-truth hops, the
//!   Envoy access-log messages each proxy would write (complete `envoy-types`
//!   definitions), and real gRPC clients that stream them;
//! - [`traces`]: a traced shop exporting OTLP spans as instrumented services do;
//! - [`demo`]: both, live, for `meshscope demo`;
//! - [`bench`]: `meshscope bench als | otlp | query` against a child `meshscope serve`;
//! - [`fuzz`]: `meshscope fuzz`, structure-aware mutants into every decoder of outside
//!   input;
//! - [`scrape`]: reading a server's `/metrics` text;
//! - [`browser`]: headless Chromium over WebDriver, for the console's tests and benchmark.
//!
//! The binary uses it for `demo` and `bench`; the end-to-end tests use it to generate input
//! and compute the figures they expect from it, independently of the pipeline.

pub mod bench;
pub mod browser;
pub mod demo;
mod error;
pub mod fuzz;
pub mod scrape;
pub mod sim;
pub mod traces;

pub use error::{Error, Result};

/// Now, in unix nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
