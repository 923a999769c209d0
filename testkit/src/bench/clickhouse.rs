//! The benchmarks' ClickHouse: a client as user `default` without a password, a fresh
//! database per run, and the environment that points `meshscope serve` at it.

use std::time::Duration;

use aggregator::store::clickhouse::client::Client;
use aggregator::store::clickhouse::sql::ident;

use crate::error::{During, Result};

/// A client for the benchmarks' ClickHouse, as user `default` without a password.
pub fn client(url: &str, timeout: Duration) -> Result<Client> {
    Ok(Client::new(url, "default", "", timeout)?)
}

/// Drops the benchmark's ClickHouse database `db` (as user `default`, no password), so a
/// run starts empty.
pub async fn drop_database(url: &str, db: &str) -> Result<()> {
    let db_sql = ident(db)?;
    client(url, Duration::from_secs(300))?
        .execute(&format!("DROP DATABASE IF EXISTS {db_sql}"))
        .await
        .during(format!("dropping the benchmark database {db} at {url}"))?;
    Ok(())
}

/// The environment that starts `meshscope serve` on ClickHouse database `db` at `url`.
pub fn server_env(url: &str, db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MESHSCOPE_STORE", "clickhouse".into()),
        ("MESHSCOPE_CLICKHOUSE_URL", url.to_string()),
        ("MESHSCOPE_CLICKHOUSE_DATABASE", db.to_string()),
    ]
}
