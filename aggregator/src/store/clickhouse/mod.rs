//! The ClickHouse backend (work in progress: the schema and its migrations; writes and
//! reads come next). It speaks ClickHouse's HTTP interface through [`client::Client`],
//! generates one of two SQL dialects ([`schema::Dialect`]): the conservative one that
//! Debian's ClickHouse 18.16 runs, and extras (TTL, codecs, `LowCardinality`) for servers
//! from 23.8 on. Values never enter SQL text unescaped: [`sql::quote`] for literals,
//! [`sql::ident`] for names.

pub mod client;
pub mod schema;
pub mod sql;
