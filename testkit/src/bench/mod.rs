//! The benchmark drivers behind `meshscope bench`: each starts a real `meshscope serve`
//! child process ([`server`]), drives it over loopback and prints what it measured.
//! Numbers are never asserted: they go into BENCHMARKS.md with the command.

pub mod als;
pub mod backfill;
pub mod clickhouse;
pub mod console;
pub mod idle;
pub mod otlp;
pub mod query;
pub mod secured;
pub mod server;

pub use als::AlsArgs;
pub use console::ConsoleArgs;
pub use idle::IdleArgs;
pub use otlp::OtlpArgs;
pub use query::QueryArgs;
