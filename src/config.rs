//! The process configuration: defaults → TOML file → `MESHSCOPE__SECTION__KEY` environment
//! → command-line flags (which also read `MESHSCOPE_GRPC_ADDR` and friends).

use std::path::Path;
use std::time::Duration;

use aggregator::AggregatorConfig;
use aggregator::query::Dedup;
use aggregator::store::{ClickHouseConfig, StoreConfig};
use anyhow::{Context, bail};
use collector::CollectorConfig;
use collector::otlp::OtlpConfig;
use serde::{Deserialize, Serialize};

/// Listener addresses and shutdown behaviour (`[server]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listener: Envoy ALS and OTLP/gRPC.
    pub grpc_addr: String,
    /// OTLP/HTTP listener.
    pub otlp_http_addr: String,
    /// HTTP API listener.
    pub http_addr: String,
    /// How long open streams get to end after SIGTERM before they are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: "0.0.0.0:4317".into(),
            otlp_http_addr: "0.0.0.0:4318".into(),
            http_addr: "0.0.0.0:8080".into(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything the process reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub clickhouse: ClickHouseConfig,
    pub collector: CollectorConfig,
    pub otlp: OtlpConfig,
    pub aggregator: AggregatorConfig,
    pub dedup: Dedup,
    pub api: ui_api::ApiConfig,
    pub http: listen::HttpConfig,
    pub tls: listen::TlsConfig,
    pub auth: listen::AuthConfig,
}

/// The environment prefix of nested keys: `MESHSCOPE__STORE__DATA_DIR=/var/lib/meshscope`.
pub const ENV_PREFIX: &str = "MESHSCOPE__";

fn env_value(raw: &str) -> toml::Value {
    // Numbers and booleans when TOML reads the value back exactly (`30`, `1.5`, `true`);
    // anything else, including `1#x`, `+5` or `1_000`, stays the string it is, so string
    // settings such as passwords arrive unchanged.
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) if v.to_string() == raw => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then `MESHSCOPE__…` variables from `env`, and
    /// checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let config = Config::load_unchecked(file, env)?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::load`] without the final [`Config::validate`], for callers that override
    /// values afterwards (command-line flags) and check the result themselves.
    pub fn load_unchecked(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            // SECTION__KEY, or SECTION__SUBSECTION__KEY (`MESHSCOPE__TLS__API__CERT_FILE`).
            let (Some((field, sections)), 2..=3) = (parts.split_last(), parts.len()) else {
                bail!(
                    "{key}: expected {ENV_PREFIX}SECTION__KEY or {ENV_PREFIX}SECTION__SUBSECTION__KEY"
                );
            };
            let mut at = &mut table;
            for section in sections {
                let entry = at
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(inner) = entry.as_table_mut() else {
                    bail!("{key}: [{section}] is not a table in the config file");
                };
                at = inner;
            }
            at.insert(field.clone(), env_value(&value));
        }
        toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")
    }

    /// The configuration as TOML that [`Config::load`] reads back to the same values,
    /// except secrets, which read `<redacted>` (the ClickHouse password; tokens are never
    /// in the configuration, only their files' paths).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("writing the configuration as TOML")
    }

    /// Rejects values that parse but cannot work: each section's own checks.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.aggregator.validate()?;
        self.collector.validate()?;
        self.otlp.validate()?;
        self.store.validate(&self.clickhouse)?;
        self.api.validate().map_err(anyhow::Error::msg)?;
        self.http.validate().map_err(anyhow::Error::msg)?;
        self.tls.validate().map_err(anyhow::Error::msg)?;
        self.auth.validate().map_err(anyhow::Error::msg)?;
        if self.http.request_timeout <= self.api.query_timeout {
            bail!(
                "http.request_timeout ({:?}) must be longer than api.query_timeout ({:?})",
                self.http.request_timeout,
                self.api.query_timeout
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregator::store::Backend;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("meshscope.example.toml");
        let config = Config::load(Some(&path), []).expect("example config");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same_without_its_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("in.toml");
        std::fs::write(
            &file,
            "[clickhouse]\npassword = \"hunter2-secret\"\n[auth]\nread_tokens_file = \"/run/tokens/read\"\n[tls]\ncert_file = \"/run/tls/tls.crt\"\nkey_file = \"/run/tls/tls.key\"\n[tls.api]\nclient_ca_file = \"/run/tls/ca.crt\"\n[collector.addresses]\n\"10.0.0.1\" = \"db.prod\"\n[dedup.services]\n\"checkout.shop\" = \"trace\"\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), []).expect("config");
        let printed = config.to_toml().expect("toml");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("password = \"<redacted>\""), "{printed}");
        let again = dir.path().join("out.toml");
        std::fs::write(&again, &printed).expect("write");
        let mut back = Config::load(Some(&again), []).expect("the printed config loads");
        assert_eq!(back.clickhouse.password, "<redacted>");
        back.clickhouse.password = config.clickhouse.password.clone();
        assert_eq!(back, config, "{printed}");
        // The defaults print and read back too.
        let printed = Config::default().to_toml().expect("toml");
        std::fs::write(&again, &printed).expect("write");
        assert_eq!(
            Config::load(Some(&again), []).expect("loads"),
            Config::default()
        );
    }

    #[test]
    fn clickhouse_credentials_have_one_place_each() {
        let load = |pairs: &[(&str, &str)]| {
            let mut env = vec![(
                "MESHSCOPE__STORE__BACKEND".to_string(),
                "clickhouse".to_string(),
            )];
            env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Config::load(None, env).map_err(|e| format!("{e:#}"))
        };
        let err = load(&[(
            "MESHSCOPE__CLICKHOUSE__URL",
            "https://writer:s3cret@ch:8443",
        )])
        .expect_err("credentials in the url");
        assert!(err.contains("clickhouse.url must not hold"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").expect("write");
        let path = file.display().to_string();
        let err = load(&[
            ("MESHSCOPE__CLICKHOUSE__PASSWORD", "x"),
            ("MESHSCOPE__CLICKHOUSE__PASSWORD_FILE", &path),
        ])
        .expect_err("two passwords");
        assert!(err.contains("given twice"), "{err}");
        let err = load(&[("MESHSCOPE__CLICKHOUSE__PASSWORD", "<redacted>")])
            .expect_err("a printed password");
        assert!(err.contains("<redacted>"), "{err}");
        let err = load(&[("MESHSCOPE__CLICKHOUSE__PASSWORD_FILE", "/nowhere/pw")])
            .expect_err("a missing file");
        assert!(
            err.contains("clickhouse.password_file /nowhere/pw"),
            "{err}"
        );
        let config = load(&[("MESHSCOPE__CLICKHOUSE__PASSWORD_FILE", &path)]).expect("ok");
        assert_eq!(config.clickhouse.password().expect("read"), "from-file");
    }

    #[test]
    fn environment_overrides_file_values() {
        let config = Config::load(
            None,
            [
                (
                    "MESHSCOPE__STORE__DATA_DIR".to_string(),
                    "/tmp/x".to_string(),
                ),
                (
                    "MESHSCOPE__STORE__RETENTION_DAYS".to_string(),
                    "3".to_string(),
                ),
                (
                    "MESHSCOPE__AGGREGATOR__FLUSH_INTERVAL".to_string(),
                    "2s".to_string(),
                ),
                ("UNRELATED".to_string(), "1".to_string()),
            ],
        )
        .expect("config");
        assert_eq!(config.store.data_dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(config.store.retention_days, 3);
        assert_eq!(config.aggregator.flush_interval, Duration::from_secs(2));
    }

    #[test]
    fn clickhouse_keys_come_from_file_and_environment_and_the_password_is_not_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.toml");
        std::fs::write(
            &file,
            "[store]\nbackend = \"clickhouse\"\n[clickhouse]\nurl = \"http://ch:8123\"\ndatabase = \"mesh\"\n",
        )
        .expect("write");
        let config = Config::load(
            Some(&file),
            [
                (
                    "MESHSCOPE__CLICKHOUSE__PASSWORD".to_string(),
                    "12345".to_string(),
                ),
                (
                    "MESHSCOPE__CLICKHOUSE__USER".to_string(),
                    "writer".to_string(),
                ),
            ],
        )
        .expect("config");
        assert_eq!(config.store.backend, Backend::Clickhouse);
        assert_eq!(config.clickhouse.url, "http://ch:8123");
        assert_eq!(config.clickhouse.database, "mesh");
        assert_eq!(config.clickhouse.user, "writer");
        assert_eq!(config.clickhouse.password, "12345");
        assert!(!format!("{config:?}").contains("12345"));
        for password in [
            "1#abc", "+5", "1_000", "0x1F", "1e3", "1.50", "1.5", "true", "007",
        ] {
            let config = Config::load(
                None,
                [(
                    "MESHSCOPE__CLICKHOUSE__PASSWORD".to_string(),
                    password.to_string(),
                )],
            )
            .expect("config");
            assert_eq!(config.clickhouse.password, password);
        }
        let err = Config::load(
            None,
            [
                (
                    "MESHSCOPE__STORE__BACKEND".to_string(),
                    "clickhouse".to_string(),
                ),
                (
                    "MESHSCOPE__CLICKHOUSE__URL".to_string(),
                    "ch:9000".to_string(),
                ),
            ],
        )
        .expect_err("not an HTTP url");
        assert!(format!("{err:#}").contains("clickhouse.url"), "{err:#}");
        let err = Config::load(
            None,
            [("MESHSCOPE__STORE__BACKEND".to_string(), "mysql".to_string())],
        )
        .expect_err("unknown backend");
        assert!(format!("{err:#}").contains("mysql"), "{err:#}");
    }

    #[test]
    fn the_kubernetes_example_config_loads() {
        // The `meshscope.toml: |` block of the ConfigMap, indented four spaces.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/config.yaml");
        let yaml = std::fs::read_to_string(&path).expect("config.yaml");
        let toml: String = yaml
            .lines()
            .skip_while(|l| l.trim() != "meshscope.toml: |")
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        assert!(toml.contains("[clickhouse]"), "{toml}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("meshscope.toml");
        std::fs::write(&file, toml).expect("write");
        let mut config = Config::load_unchecked(Some(&file), []).expect("the example parses");
        assert_eq!(config.store.backend, Backend::Clickhouse);
        assert_eq!(config.clickhouse.url, "http://clickhouse:8123");
        assert_eq!(
            config.collector.max_connection_age,
            Duration::from_secs(600)
        );
        // The paths the Secret volumes in collector.yaml and api.yaml are mounted at.
        use std::path::PathBuf;
        assert_eq!(
            config.tls.cert_file,
            Some(PathBuf::from("/etc/meshscope/tls/tls.crt"))
        );
        assert_eq!(
            config.auth.ingest_tokens_file,
            Some(PathBuf::from("/etc/meshscope/tokens/ingest"))
        );
        assert_eq!(
            config
                .clickhouse
                .password_file
                .replace(dir.path().join("password")),
            Some(PathBuf::from("/etc/meshscope/clickhouse/password"))
        );
        // With the Secret's file in place (here: a temp file), the example passes every check.
        std::fs::write(dir.path().join("password"), "change-me\n").expect("write");
        config.validate().expect("the example is valid");
    }

    #[test]
    fn zero_intervals_are_errors() {
        let err = Config::load(
            None,
            [(
                "MESHSCOPE__AGGREGATOR__FLUSH_INTERVAL".to_string(),
                "0s".to_string(),
            )],
        )
        .expect_err("zero interval");
        assert!(format!("{err:#}").contains("flush_interval"), "{err:#}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::load(
            None,
            [("MESHSCOPE__STORE__NOPE".to_string(), "1".to_string())],
        )
        .expect_err("unknown key");
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }
}
