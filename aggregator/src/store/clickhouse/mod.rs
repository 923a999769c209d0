//! The ClickHouse backend (work in progress: schema, migrations, writes and reads of
//! minute rows; buffering, tiers and configuration come next). It speaks ClickHouse's HTTP interface through [`client::Client`],
//! generates one of two SQL dialects ([`schema::Dialect`]): the conservative one that
//! Debian's ClickHouse 18.16 runs, and extras (TTL, codecs, `LowCardinality`) for servers
//! from 23.8 on. Values never enter SQL text unescaped: [`sql::quote`] for literals,
//! [`sql::ident`] for names.

pub mod client;
pub mod schema;
pub mod sql;
mod store;

pub use store::{ClickHouseSettings, ClickHouseStore};
