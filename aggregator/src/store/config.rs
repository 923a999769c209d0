//! Store settings: `[store]` (which backend, where, how long) and `[clickhouse]` (the
//! ClickHouse backend's server and write path), checked here and opened by
//! [`super::open`].

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where rollups are kept.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Parquet files in the data dir, read with embedded DataFusion (no server).
    #[default]
    Parquet,
    /// A ClickHouse server shared by any number of meshscope processes.
    Clickhouse,
}

impl Backend {
    /// Every backend's name, as the config file and the command line spell them.
    pub const NAMES: [&'static str; 2] = ["parquet", "clickhouse"];

    /// The name in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Parquet => "parquet",
            Backend::Clickhouse => "clickhouse",
        }
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "parquet" => Ok(Backend::Parquet),
            "clickhouse" => Ok(Backend::Clickhouse),
            other => Err(Error::Config(format!(
                "store.backend must be parquet or clickhouse, not {other:?}"
            ))),
        }
    }
}

/// Store settings (`[store]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `parquet` (embedded, the default) or `clickhouse` (see `[clickhouse]`).
    pub backend: Backend,
    /// Where Parquet files and the manifest live; with ClickHouse, the spool of inserts
    /// it has not taken yet (`clickhouse-spool/`).
    pub data_dir: PathBuf,
    /// Days of minute rows kept (with ClickHouse: of all rows); 0 keeps everything. Calls
    /// older than this are dropped at ingest.
    pub retention_days: u32,
    /// Days of hour rows kept by the embedded store; unset: 30, and never fewer than
    /// `retention_days`. 0 keeps everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour_retention_days: Option<u32>,
    /// Days of day rows kept by the embedded store; unset: 365, and never fewer than the
    /// hour rows' days. 0 keeps everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day_retention_days: Option<u32>,
    /// A day partition with this many files is compacted into one.
    pub compact_min_files: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Parquet,
            data_dir: PathBuf::from("./data"),
            retention_days: 7,
            hour_retention_days: None,
            day_retention_days: None,
            compact_min_files: 8,
        }
    }
}

/// Days each tier is kept, 0 being forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierRetention {
    pub minute_days: u32,
    pub hour_days: u32,
    pub day_days: u32,
}

/// `a` keeps at least as long as `b` (0 is forever).
fn at_least(a: u32, b: u32) -> bool {
    a == 0 || (b != 0 && a >= b)
}

/// The longer of two retentions (0 is forever).
fn longer(a: u32, b: u32) -> u32 {
    if a == 0 || b == 0 { 0 } else { a.max(b) }
}

impl StoreConfig {
    /// The retention as a duration; `None` keeps everything.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0)
            .then(|| Duration::from_secs(u64::from(self.retention_days) * 86_400))
    }

    /// Days each tier is kept: the settings, or their defaults (hours 30 days, days 365,
    /// each at least as long as the finer tier).
    pub fn tier_retention(&self) -> TierRetention {
        let minute_days = self.retention_days;
        let hour_days = self
            .hour_retention_days
            .unwrap_or_else(|| longer(30, minute_days));
        let day_days = self
            .day_retention_days
            .unwrap_or_else(|| longer(365, hour_days));
        TierRetention {
            minute_days,
            hour_days,
            day_days,
        }
    }

    /// Rejects values that parse but cannot work; `clickhouse` only matters with the
    /// ClickHouse backend.
    pub fn validate(&self, clickhouse: &ClickHouseConfig) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.compact_min_files < 2 {
            return bad("store.compact_min_files must be at least 2");
        }
        let r = self.tier_retention();
        if !at_least(r.hour_days, r.minute_days) || !at_least(r.day_days, r.hour_days) {
            return Err(Error::Config(format!(
                "store retention must not shorten as rows get coarser (0 is forever): minutes {} days (store.retention_days), hours {} days (store.hour_retention_days), days {} days (store.day_retention_days)",
                r.minute_days, r.hour_days, r.day_days
            )));
        }
        if self.backend == Backend::Clickhouse
            && (self.hour_retention_days.is_some() || self.day_retention_days.is_some())
        {
            return bad(
                "store.hour_retention_days and store.day_retention_days are for the embedded store; with ClickHouse every tier is kept for store.retention_days",
            );
        }
        if self.backend == Backend::Clickhouse {
            let ch = clickhouse;
            if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "clickhouse.url must be ClickHouse's HTTP interface, like http://clickhouse:8123 (got {:?})",
                    ch.url
                )));
            }
            if let Some((scheme, rest)) = ch.url.split_once("://")
                && rest
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default()
                    .contains('@')
            {
                // It would be logged and printed with the URL: credentials have their own
                // settings.
                return Err(Error::Config(format!(
                    "clickhouse.url must not hold a user or password ({scheme}://…@…): use clickhouse.user and clickhouse.password_file (or clickhouse.password)"
                )));
            }
            if !ch.password.is_empty() && ch.password_file.is_some() {
                return bad(
                    "the ClickHouse password is given twice: clickhouse.password (--clickhouse-password, MESHSCOPE_CLICKHOUSE_PASSWORD, MESHSCOPE__CLICKHOUSE__PASSWORD) and clickhouse.password_file (--clickhouse-password-file, MESHSCOPE_CLICKHOUSE_PASSWORD_FILE); keep one",
                );
            }
            if ch.password == REDACTED {
                return bad(
                    "clickhouse.password is \"<redacted>\", as `meshscope config` prints it: put the real password back (or use clickhouse.password_file)",
                );
            }
            if ch.ca_file.is_some() && !ch.url.starts_with("https://") {
                return bad("clickhouse.ca_file is for an https:// clickhouse.url");
            }
            // The files must be readable now, not at the first insert.
            ch.password()?;
            ch.ca_roots()?;
            if ch.timeout.is_zero() || ch.full_wait.is_zero() {
                return bad("clickhouse.timeout and clickhouse.full_wait must be longer than zero");
            }
            if ch.buffer_bytes < 1 << 20 {
                return bad("clickhouse.buffer_bytes must be at least 1 MiB (1048576)");
            }
        }
        Ok(())
    }
}

/// A string setting that also accepts a bare number from the environment
/// (`MESHSCOPE__CLICKHOUSE__PASSWORD=1234`), written back exactly as TOML reads it.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
        Raw::F(f) => toml::Value::Float(f).to_string(),
        Raw::B(b) => b.to_string(),
    })
}

/// How `meshscope config` prints a secret that is set.
const REDACTED: &str = "<redacted>";

/// A secret as `meshscope config` prints it: [`REDACTED`] unless empty.
fn redacted<S: serde::Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_empty() { "" } else { REDACTED })
}

/// ClickHouse backend settings (`[clickhouse]`), used with `store.backend = "clickhouse"`.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface, `http://host:8123` or `https://host:8443`.
    pub url: String,
    /// PEM file of the CA certificates that sign an `https://` server's certificate; when
    /// set, only these are trusted (otherwise the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Database of meshscope's tables; created if missing.
    #[serde(deserialize_with = "string_or_number")]
    pub database: String,
    #[serde(deserialize_with = "string_or_number")]
    pub user: String,
    /// Printed as `<redacted>` when set (`meshscope config`).
    #[serde(deserialize_with = "string_or_number", serialize_with = "redacted")]
    pub password: String,
    /// A file holding the password (its first line; a Kubernetes Secret mounted as a
    /// file), instead of `password`. Read when the store opens.
    pub password_file: Option<PathBuf>,
    /// Per request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Insert bytes queued in memory (while ClickHouse answers, and when the spool is full).
    pub buffer_bytes: u64,
    /// Insert bytes spooled to `<data_dir>/clickhouse-spool/`: past the memory queue, and
    /// first while ClickHouse fails.
    pub spool_bytes: u64,
    /// With both full, how long a flush waits for room before its rows are refused (the
    /// aggregator then keeps them up to `aggregator.max_pending_rows`).
    #[serde(with = "humantime_serde")]
    pub full_wait: Duration,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            ca_file: None,
            database: "meshscope".into(),
            user: "default".into(),
            password: String::new(),
            password_file: None,
            timeout: Duration::from_secs(30),
            buffer_bytes: 256 << 20,
            spool_bytes: 4 << 30,
            full_wait: Duration::from_secs(30),
        }
    }
}

impl ClickHouseConfig {
    /// The password: the first line of `password_file` when set, else `password`.
    pub fn password(&self) -> Result<String> {
        let Some(path) = &self.password_file else {
            return Ok(self.password.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("clickhouse.password_file {}: {e}", path.display()))
        })?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(Error::Config(format!(
                "clickhouse.password_file {} is empty",
                path.display()
            )));
        }
        Ok(line.to_string())
    }

    /// The CA certificates of `ca_file`, when set: the only roots an `https://` server's
    /// certificate may chain to.
    pub fn ca_roots(&self) -> Result<Option<Vec<reqwest::Certificate>>> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("clickhouse.ca_file {}: {e}", path.display())))?;
        pem_roots(&pem)
            .map(Some)
            .map_err(|m| Error::Config(format!("clickhouse.ca_file {}: {m}", path.display())))
    }
}

/// The certificates of a PEM bundle; an error says why there are none.
pub(crate) fn pem_roots(pem: &[u8]) -> std::result::Result<Vec<reqwest::Certificate>, String> {
    let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| crate::error::chain(&e))?;
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(roots)
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("database", &self.database)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("password_file", &self.password_file)
            .field("timeout", &self.timeout)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("spool_bytes", &self.spool_bytes)
            .field("full_wait", &self.full_wait)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tier_keeps_at_least_as_long_as_the_finer_one() {
        let ch = ClickHouseConfig::default();
        let with = |minute: u32, hour: Option<u32>, day: Option<u32>| StoreConfig {
            retention_days: minute,
            hour_retention_days: hour,
            day_retention_days: day,
            ..StoreConfig::default()
        };
        let r = |c: &StoreConfig| {
            let t = c.tier_retention();
            (t.minute_days, t.hour_days, t.day_days)
        };
        assert_eq!(r(&StoreConfig::default()), (7, 30, 365));
        // Unset tiers follow a longer minute retention, and forever.
        assert_eq!(r(&with(90, None, None)), (90, 90, 365));
        assert_eq!(r(&with(0, None, None)), (0, 0, 0));
        assert_eq!(r(&with(7, Some(0), None)), (7, 0, 0));
        for ok in [
            with(7, Some(7), Some(7)),
            with(7, Some(0), Some(0)),
            with(3, Some(14), None),
        ] {
            ok.validate(&ch).expect("valid");
        }
        for bad in [
            with(7, Some(3), None),
            with(7, Some(30), Some(10)),
            with(0, Some(30), None),
            with(7, Some(0), Some(400)),
        ] {
            let e = bad
                .validate(&ch)
                .expect_err("shorter coarse retention")
                .to_string();
            assert!(e.contains("store.hour_retention_days"), "{e}");
        }
        let mut ch_store = with(7, Some(30), None);
        ch_store.backend = Backend::Clickhouse;
        let e = ch_store.validate(&ch).expect_err("ClickHouse").to_string();
        assert!(e.contains("embedded store"), "{e}");
    }

    #[test]
    fn backends_parse_by_their_names() {
        for name in Backend::NAMES {
            assert_eq!(
                name.parse::<Backend>().map(Backend::as_str).ok(),
                Some(name)
            );
        }
        assert!("mysql".parse::<Backend>().is_err());
    }
}
