//! [`Target`]: the database and tables the shipper writes and the store reads: the
//! dialect, schema preparation, re-creation of what an operator dropped, the insert
//! statement and the marker lookup that makes retries safe.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing::{info, warn};

use super::chunk::Chunk;
use super::client::Client;
use super::schema::{self, Dialect};
use super::sql::quote;
use crate::schema::Table;
use crate::store::tiers::Tier;
use crate::{Error, Result};

/// What the store needs from the shipper's side of the schema.
#[derive(Debug)]
pub struct Target {
    pub client: Client,
    pub database: String,
    /// `db` backquoted.
    pub db_sql: String,
    pub retention_days: u32,
    /// Set once the schema is known to be migrated.
    pub dialect: OnceLock<Dialect>,
    /// When the schema was last re-created after a drop (at most once per
    /// [`RECREATE_EVERY`]).
    pub recreated: Mutex<Option<tokio::time::Instant>>,
}

/// The shortest time between two re-creations of a dropped schema: an error that keeps
/// saying "unknown table" (a table that cannot be created here, a remote shard) does
/// not make every retry run the migration.
const RECREATE_EVERY: Duration = Duration::from_secs(5);

impl Target {
    /// Detects the server's dialect and migrates the schema (once per process).
    pub async fn prepare(&self) -> Result<Dialect> {
        if let Some(d) = self.dialect.get() {
            return Ok(*d);
        }
        let (version, dialect) = schema::detect(&self.client).await?;
        schema::migrate(&self.client, &self.database, dialect, self.retention_days).await?;
        info!(
            database = self.database,
            version,
            dialect = dialect.as_str(),
            "ClickHouse schema ready"
        );
        Ok(*self.dialect.get_or_init(|| dialect))
    }

    /// Re-creates what an operator dropped while meshscope runs (a table or the database),
    /// after `e` said it is gone; a no-op for any other error.
    pub async fn recreate_if_gone(&self, e: &Error) {
        let (
            Error::ClickHouse {
                code: Some(code), ..
            },
            Some(dialect),
        ) = (e, self.dialect.get())
        else {
            return;
        };
        if !schema::SCHEMA_GONE.contains(code) {
            return;
        }
        {
            let mut last = self.recreated.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < RECREATE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        match schema::migrate(&self.client, &self.database, *dialect, self.retention_days).await {
            Ok(_) => warn!(
                database = self.database,
                error = %e,
                "a ClickHouse table or the database was dropped while meshscope runs; re-created it (empty)"
            ),
            Err(e) => warn!(error = %e, "re-creating dropped ClickHouse tables failed; will retry"),
        }
    }

    /// `db`.`table`.
    pub fn table(&self, t: Table) -> String {
        format!("{}.`{}`", self.db_sql, t.name())
    }

    pub fn insert_sql(&self, t: Table) -> String {
        let columns: Vec<String> = schema::columns(t, Dialect::Legacy)
            .into_iter()
            .flat_map(|(name, _)| {
                if name == schema::HISTOGRAM {
                    vec![format!("{name}.idx"), format!("{name}.cnt")]
                } else {
                    vec![name]
                }
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) FORMAT TabSeparated",
            self.table(t),
            columns.join(", ")
        )
    }

    /// Whether the chunk's marker row is in ClickHouse (its insert landed).
    pub async fn landed(&self, c: &Chunk) -> Result<bool> {
        let marker = schema::marker_column(c.table);
        let minute_res = Tier::Minute.seconds();
        let answer = self
            .client
            .execute(&format!(
                "SELECT count() FROM {} WHERE res = {minute_res} AND minute = toDateTime({}) AND side = 'marker' AND `{marker}` = {} FORMAT TSV",
                self.table(c.table),
                c.minute,
                quote(&c.token)
            ))
            .await?;
        let text = String::from_utf8_lossy(&answer);
        let n: u64 = text.trim().parse().map_err(|_| Error::ClickHouse {
            code: None,
            message: format!("unexpected answer to a marker lookup: {:?}", text.trim()),
        })?;
        Ok(n > 0)
    }
}
