//! The embedded default store: Parquet files under the data dir, read with DataFusion.
//!
//! Layout: `<dir>/<table>/<yyyy-mm-dd>/<seq>.parquet` plus `<dir>/manifest.json`, the list
//! of live files ([`manifest`]). A file counts only once the manifest names it, and the
//! manifest is replaced atomically (write, fsync, rename), so a crash at any point neither
//! loses a committed flush nor doubles one: files the manifest does not name are deleted at
//! start ([`store`]). [`codec`] is the Arrow shape of the files; [`writer`] writes one;
//! [`read`] scans them, summing rows into a [`fold`] as they stream in.
//!
//! Rows are kept at three resolutions ([`crate::store::tiers`]): a flush writes minute
//! files; [`tiering`] adds their rows to hour and day files and marks them so, in one
//! manifest update; a merged read takes whole days and hours from those and the window's
//! ragged ends from minutes (plus any minute file not in the tiers yet). [`compaction`]
//! merges a day's small files of one tier into one, streaming, and swaps them in one
//! manifest update; [`retention`] drops each tier's expired days and deletes replaced
//! files after a grace period, so running queries can finish.

mod codec;
mod compaction;
mod fold;
mod gauges;
mod manifest;
mod read;
mod retention;
mod store;
mod tiering;
mod writer;

pub use codec::arrow_schema;
pub use read::rows_of_file;
pub use store::{ParquetSettings, ParquetStore};

#[cfg(test)]
mod test_support {
    //! Rows and requests the store's tests share.

    use std::sync::Arc;
    use std::time::Duration;

    use proto::{Call, Node, Protocol, Side, Source};

    use super::ParquetSettings;
    use crate::rollup::{RollupSettings, Rollups};
    use crate::row::RowBatch;
    use crate::schema::Table;
    use crate::store::{Resolution, ScanRequest};

    pub fn batch(minutes: &[i64], calls_per_minute: u64) -> RowBatch {
        sourced_batch(minutes, calls_per_minute, false)
    }

    /// With `mixed`, every other call is a trace report.
    pub fn sourced_batch(minutes: &[i64], calls_per_minute: u64, mixed: bool) -> RowBatch {
        let mut r = Rollups::new(RollupSettings {
            apdex_t_nanos: 500_000_000,
            max_endpoints_per_service: 10,
            max_services: 10,
            cap_forget_after: std::time::Duration::from_secs(3600),
        });
        for &m in minutes {
            for i in 0..calls_per_minute {
                let call = Call {
                    start_unix_nanos: m * 1_000_000_000,
                    side: Side::Server,
                    source: if mixed && i % 2 == 1 {
                        Source::Trace
                    } else {
                        Source::Mesh
                    },
                    client: Node::real(Arc::from("a.ns"), Some(Arc::from("a-1"))),
                    server: Node::real(Arc::from("b.ns"), Some(Arc::from("b-1"))),
                    endpoint: Some(Arc::from("GET /x")),
                    protocol: Protocol::Http,
                    latency_nanos: Some(1_000_000 * (i + 1)),
                    status_code: 200,
                    grpc_status: None,
                    error: false,
                    mtls: true,
                    request_bytes: 1,
                    response_bytes: 2,
                };
                r.apply(&call, m);
            }
        }
        r.take()
    }

    pub fn scan_all(table: Table) -> ScanRequest {
        ScanRequest {
            table,
            start_minute: 0,
            end_minute: i64::MAX / 2,
            filters: vec![],
            resolution: Resolution::Window,
            histograms: true,
            max_rows: None,
            chosen_side: false,
        }
    }

    pub fn settings(retention_days: u32) -> ParquetSettings {
        ParquetSettings {
            retention_days,
            hour_retention_days: retention_days,
            day_retention_days: retention_days,
            compact_min_files: 2,
            delete_grace: Duration::ZERO,
        }
    }
}
