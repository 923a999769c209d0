//! Builds the configured backend.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::Store;
use super::clickhouse::ClickHouseStore;
use super::config::{Backend, ClickHouseConfig, StoreConfig};
use super::parquet::{ParquetSettings, ParquetStore};
use crate::Result;

/// Opens the backend `store` names: the Parquet store in its data dir, or ClickHouse as
/// `clickhouse` says, with its write spool in the data dir. ClickHouse's self-metrics go
/// into `registry`.
pub async fn open(
    store: &StoreConfig,
    clickhouse: &ClickHouseConfig,
    registry: &mut Registry,
) -> Result<Arc<dyn Store>> {
    Ok(match store.backend {
        Backend::Parquet => {
            let retention = store.tier_retention();
            let parquet = ParquetStore::open(
                &store.data_dir,
                ParquetSettings {
                    retention_days: retention.minute_days,
                    hour_retention_days: retention.hour_days,
                    day_retention_days: retention.day_days,
                    compact_min_files: store.compact_min_files,
                    ..ParquetSettings::default()
                },
            )?;
            parquet.register_metrics(registry);
            Arc::new(parquet)
        }
        Backend::Clickhouse => Arc::new(
            ClickHouseStore::open(
                clickhouse,
                store.retention_days,
                store.data_dir.join("clickhouse-spool"),
                registry,
            )
            .await?,
        ),
    })
}
