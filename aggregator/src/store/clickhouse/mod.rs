//! The ClickHouse backend. It speaks ClickHouse's HTTP interface through
//! [`client::Client`] and generates one of two SQL dialects ([`schema::Dialect`]): the
//! conservative one that Debian's ClickHouse 18.16 runs, and extras (TTL, codecs,
//! `LowCardinality`) for servers from 23.8 on. Writes become [`chunk`]s (one insert per
//! table and UTC day, minute/hour/day rows and a marker row) that the [`shipper`] gets
//! into ClickHouse through a bounded memory queue, the disk [`spool`] and retries. Values
//! never enter SQL text unescaped: [`sql::quote`] for literals, [`sql::ident`] for names.

pub mod chunk;
pub mod client;
pub mod schema;
pub mod shipper;
pub mod spool;
pub mod sql;
mod store;
mod target;

pub use shipper::ShipperSettings;
pub use store::ClickHouseStore;
