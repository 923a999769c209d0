//! Tables, their DDL in two dialects, and versioned, idempotent migrations.
//!
//! One table per rollup table, in one database. Every table is a `SummingMergeTree`:
//! rows written by any number of processes for one key merge by addition, which is what
//! every metric column needs (`flags`, which must be OR-ed, is part of the sorting key and
//! read with `groupBitOr`). The histogram is a `histMap` nested column, summed by bucket
//! index. `res` is the resolution in seconds (60, 3600, 86400: minutes and the hour and day
//! tiers written with them).
//! Days are partitions (`intDiv(toUInt32(minute), 86400)`), so retention drops whole days
//! on servers without TTL.

use crate::schema::{COUNTER_COLUMNS, Table};
use crate::{Error, Result};

use super::client::Client;
use super::sql::{ident, quote};

/// ClickHouse error codes that mean "someone else created it first".
const TABLE_EXISTS: u32 = 57;
const DATABASE_EXISTS: u32 = 82;

/// ClickHouse error codes that mean the schema is gone (an operator dropped a table or the
/// database while meshscope runs): [`migrate`] again re-creates it.
pub const SCHEMA_GONE: [u32; 2] = [60, 81];

/// The schema version this code writes and reads.
pub const LATEST: u32 = 1;

/// The SQL dialect a server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// What ClickHouse 18.16 runs: no TTL, codecs or `LowCardinality`.
    Legacy,
    /// ClickHouse 23.8 and later: TTL retention, column codecs, `LowCardinality` keys.
    Modern,
}

impl Dialect {
    /// The dialect for a `SELECT version()` answer such as `18.16.1` or `24.8.4.13`.
    pub fn for_version(version: &str) -> Dialect {
        let mut parts = version
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) >= (23, 8) {
            Dialect::Modern
        } else {
            Dialect::Legacy
        }
    }

    /// The name recorded in `schema_migrations`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Legacy => "legacy",
            Dialect::Modern => "modern",
        }
    }
}

/// The column of the marker row that holds its token: the table's first key column.
pub fn marker_column(table: Table) -> &'static str {
    table.keys().first().map_or("service", |k| k.column())
}

/// The nested histogram column: bucket index → count, summed by index on merges.
pub const HISTOGRAM: &str = "histMap";

/// A rollup table's columns in storage order: SQL name (keys and counters backquoted) and
/// type. The histogram is the one `Nested` column [`HISTOGRAM`].
pub fn columns(table: Table, dialect: Dialect) -> Vec<(String, String)> {
    let modern = dialect == Dialect::Modern;
    let (key_type, minute_codec, counter_codec) = if modern {
        (
            "LowCardinality(String)",
            " CODEC(DoubleDelta, ZSTD(1))",
            " CODEC(T64, ZSTD(1))",
        )
    } else {
        ("String", "", "")
    };
    let mut cols = vec![
        ("res".to_string(), "UInt32".to_string()),
        ("minute".to_string(), format!("DateTime{minute_codec}")),
        (
            "side".to_string(),
            "Enum8('marker' = 0, 'client' = 1, 'server' = 2)".to_string(),
        ),
        (
            "source".to_string(),
            "Enum8('mesh' = 1, 'trace' = 2)".to_string(),
        ),
    ];
    cols.extend(
        table
            .keys()
            .iter()
            .map(|k| (format!("`{}`", k.column()), key_type.to_string())),
    );
    cols.push(("flags".to_string(), "UInt8".to_string()));
    cols.extend(
        COUNTER_COLUMNS
            .iter()
            .map(|c| (format!("`{c}`"), format!("UInt64{counter_codec}"))),
    );
    cols.push((
        HISTOGRAM.to_string(),
        "Nested(idx UInt16, cnt UInt64)".to_string(),
    ));
    cols
}

/// `CREATE TABLE IF NOT EXISTS` for one rollup table. The sorting key is every column up
/// to `flags` (which must be OR-ed, not summed); the rest are summed on merges.
pub fn create_table(
    db: &str,
    table: Table,
    dialect: Dialect,
    retention_days: u32,
) -> Result<String> {
    let cols = columns(table, dialect);
    let defs: Vec<String> = cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
    let order: Vec<&str> = cols
        .iter()
        .map(|(n, _)| n.as_str())
        .take_while(|n| *n != "flags")
        .chain(["flags"])
        .collect();
    let mut ddl = format!(
        "CREATE TABLE IF NOT EXISTS {}.`{}` ({}) ENGINE = SummingMergeTree PARTITION BY intDiv(toUInt32(minute), 86400) ORDER BY ({})",
        ident(db)?,
        table.name(),
        defs.join(", "),
        order.join(", ")
    );
    if dialect == Dialect::Modern && retention_days > 0 {
        ddl.push_str(&format!(
            " TTL minute + toIntervalDay({retention_days}) SETTINGS ttl_only_drop_parts = 1"
        ));
    }
    Ok(ddl)
}

async fn tolerate(client: &Client, sql: &str, exists: u32) -> Result<()> {
    match client.execute(sql).await {
        Ok(_) => Ok(()),
        Err(Error::ClickHouse {
            code: Some(code), ..
        }) if code == exists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The server's dialect.
pub async fn detect(client: &Client) -> Result<(String, Dialect)> {
    let version = client.execute("SELECT version() FORMAT TSV").await?;
    let version = String::from_utf8_lossy(&version).trim().to_string();
    let dialect = Dialect::for_version(&version);
    Ok((version, dialect))
}

/// Creates or upgrades the schema in `db` to [`LATEST`]. Idempotent, and safe when several
/// processes start at once: every step is `IF NOT EXISTS` and "already exists" errors from
/// a race count as success. The latest version's tables are created whenever missing, also
/// in a database already at [`LATEST`] (one table dropped by hand comes back empty).
/// Refuses a database written by a newer meshscope.
pub async fn migrate(
    client: &Client,
    db: &str,
    dialect: Dialect,
    retention_days: u32,
) -> Result<u32> {
    let d = ident(db)?;
    tolerate(
        client,
        &format!("CREATE DATABASE IF NOT EXISTS {d}"),
        DATABASE_EXISTS,
    )
    .await?;
    tolerate(
        client,
        &format!(
            "CREATE TABLE IF NOT EXISTS {d}.schema_migrations (version UInt32, dialect String, applied DateTime) ENGINE = MergeTree ORDER BY version"
        ),
        TABLE_EXISTS,
    )
    .await?;
    let current = client
        .execute(&format!(
            "SELECT max(version) FROM {d}.schema_migrations FORMAT TSV"
        ))
        .await?;
    let current: u32 = String::from_utf8_lossy(&current)
        .trim()
        .parse()
        .unwrap_or(0);
    if current > LATEST {
        return Err(Error::Config(format!(
            "ClickHouse database {db} has schema version {current}; this meshscope knows up to {LATEST}: upgrade meshscope"
        )));
    }
    // Version 1: the rollup tables, ensured on every run. A later version's steps go in
    // the loop below and must be idempotent against these latest tables too (`ADD COLUMN
    // IF NOT EXISTS` and the like): a new database gets the latest DDL here first.
    for table in Table::ALL {
        tolerate(
            client,
            &create_table(db, table, dialect, retention_days)?,
            TABLE_EXISTS,
        )
        .await?;
    }
    for version in current + 1..=LATEST {
        client
            .execute(&format!(
                "INSERT INTO {d}.schema_migrations (version, dialect, applied) VALUES ({version}, {}, now())",
                quote(dialect.as_str())
            ))
            .await?;
        tracing::info!(
            database = db,
            version,
            dialect = dialect.as_str(),
            "ClickHouse schema migrated"
        );
    }
    Ok(LATEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_choose_the_dialect() {
        assert_eq!(Dialect::for_version("18.16.1"), Dialect::Legacy);
        assert_eq!(Dialect::for_version("23.3.1.1"), Dialect::Legacy);
        assert_eq!(Dialect::for_version("23.8.2.7"), Dialect::Modern);
        assert_eq!(Dialect::for_version("26.1.1.1\n"), Dialect::Modern);
        assert_eq!(Dialect::for_version("garbage"), Dialect::Legacy);
    }

    #[test]
    fn legacy_ddl_has_no_modern_extras() {
        let ddl =
            create_table("meshscope", Table::ServiceRelation, Dialect::Legacy, 7).expect("ddl");
        for absent in ["TTL", "CODEC", "LowCardinality"] {
            assert!(!ddl.contains(absent), "{absent} in {ddl}");
        }
        assert!(
            ddl.contains(
                "ORDER BY (res, minute, side, source, `client`, `server`, `protocol`, flags)"
            ),
            "{ddl}"
        );
        let modern = create_table("meshscope", Table::Service, Dialect::Modern, 7).expect("ddl");
        assert!(modern.contains("TTL minute + toIntervalDay(7)"), "{modern}");
        assert!(create_table("bad-name", Table::Service, Dialect::Legacy, 7).is_err());
    }
}
