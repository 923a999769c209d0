//! `meshscope`: the command line. `serve` runs the pipeline, `demo` runs it with simulated
//! bookinfo and traced-shop traffic, `bench als | otlp | query` measure it (the traffic and
//! the benchmark drivers come from the `testkit` crate).

use std::path::PathBuf;

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};
use meshscope::{App, Backend, Config};
use testkit::bench;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "meshscope",
    version,
    about = "Service-mesh telemetry: Envoy access logs in, exact topology and RED metrics out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector, aggregator, store and API.
    Serve(ServeArgs),
    /// Like serve, plus a built-in simulator streaming bookinfo-like traffic into it.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Simulated user requests per second (each fans out to several calls).
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// With TLS on the gRPC listener: the CA the simulated clients trust (default: the
        /// certificates in the listener's own certificate file).
        #[arg(long, env = "MESHSCOPE_DEMO_CA")]
        demo_ca: Option<PathBuf>,
    },
    /// Print the configuration `serve` would run with (defaults, config file, environment,
    /// flags) as TOML, the ClickHouse password redacted; fails as `serve` would on a bad
    /// value.
    Config(ServeArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Feed structure-aware mutants of real inputs to every decoder of outside input (ALS,
    /// OTLP protobuf and JSON, PromQL, the spool and Parquet files); fails on a panic.
    Fuzz(testkit::fuzz::FuzzArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Stream pre-encoded Envoy ALS messages over loopback gRPC into a `meshscope serve`
    /// child process and report entries per server CPU-second.
    Als(bench::AlsArgs),
    /// Send pre-encoded OTLP export requests over loopback gRPC into a `meshscope serve`
    /// child process and report spans per server CPU-second.
    Otlp(bench::OtlpArgs),
    /// Write a day of rollups for a few hundred services into an embedded store, start
    /// `meshscope serve` on it and time the JSON API and PromQL dashboard queries.
    Query(bench::QueryArgs),
    /// Write the last hour of a large mesh into an embedded store, start `meshscope serve`
    /// on it and time the console's first render in headless Chromium (needs chromium and
    /// chromedriver).
    Console(bench::ConsoleArgs),
    /// Hold thousands of quiet ALS streams open on a `meshscope serve` child process and
    /// report its memory per stream and its CPU while they idle.
    Idle(bench::IdleArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// TOML config file (see meshscope.example.toml).
    #[arg(long, env = "MESHSCOPE_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (Envoy ALS).
    #[arg(long, env = "MESHSCOPE_GRPC_ADDR")]
    grpc_addr: Option<String>,
    /// OTLP/HTTP listen address.
    #[arg(long, env = "MESHSCOPE_OTLP_HTTP_ADDR")]
    otlp_http_addr: Option<String>,
    /// HTTP API listen address.
    #[arg(long, env = "MESHSCOPE_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Data directory of the embedded store (with ClickHouse: its write spool).
    #[arg(long, env = "MESHSCOPE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store backend.
    #[arg(long, env = "MESHSCOPE_STORE", value_parser = backend())]
    store: Option<Backend>,
    /// ClickHouse HTTP interface, e.g. http://clickhouse:8123 (with --store clickhouse).
    #[arg(long, env = "MESHSCOPE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    /// ClickHouse database (created if missing).
    #[arg(long, env = "MESHSCOPE_CLICKHOUSE_DATABASE")]
    clickhouse_database: Option<String>,
    /// ClickHouse user.
    #[arg(long, env = "MESHSCOPE_CLICKHOUSE_USER")]
    clickhouse_user: Option<String>,
    /// ClickHouse password (prefer the environment variable: flags show in process lists).
    #[arg(long, env = "MESHSCOPE_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    clickhouse_password: Option<String>,
    /// File holding the ClickHouse password (its first line), e.g. a mounted Secret.
    #[arg(long, env = "MESHSCOPE_CLICKHOUSE_PASSWORD_FILE")]
    clickhouse_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates an https:// ClickHouse's certificate chains to (only
    /// these are then trusted; default: the system's roots).
    #[arg(long, env = "MESHSCOPE_CLICKHOUSE_CA_FILE")]
    clickhouse_ca_file: Option<PathBuf>,
    /// Longest a read may run, waiting for a slot included (api.query_timeout; default 2m).
    #[arg(long = "query.timeout", env = "MESHSCOPE_QUERY_TIMEOUT", value_parser = humantime::parse_duration)]
    query_timeout: Option<std::time::Duration>,
    /// Most samples one PromQL query may touch over all its steps (api.query_max_samples;
    /// default 50000000).
    #[arg(long = "query.max-samples", env = "MESHSCOPE_QUERY_MAX_SAMPLES")]
    query_max_samples: Option<usize>,
    /// Most reads evaluated at once (api.query_max_concurrency; default 20).
    #[arg(
        long = "query.max-concurrency",
        env = "MESHSCOPE_QUERY_MAX_CONCURRENCY"
    )]
    query_max_concurrency: Option<usize>,
    /// Answer the admin endpoints (POST /api/v1/admin/flush); off by default.
    #[arg(long, env = "MESHSCOPE_ENABLE_ADMIN_API")]
    enable_admin_api: bool,
    /// Grafana's address; the console links each edge to its Grafana edge dashboard
    /// (api.grafana_url).
    #[arg(long, env = "MESHSCOPE_GRAFANA_URL")]
    grafana_url: Option<String>,
    /// PEM certificate chain: every listener serves TLS (tls.cert_file).
    #[arg(long, env = "MESHSCOPE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (tls.key_file).
    #[arg(long, env = "MESHSCOPE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA: the gRPC and OTLP/HTTP listeners require client certificates it signed
    /// (tls.client_ca_file).
    #[arg(long, env = "MESHSCOPE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Tokens (one per line) that ALS and OTLP senders must present
    /// (auth.ingest_tokens_file).
    #[arg(long, env = "MESHSCOPE_INGEST_TOKENS_FILE")]
    ingest_tokens_file: Option<PathBuf>,
    /// Tokens that the JSON API, the Prometheus API and /metrics require
    /// (auth.read_tokens_file).
    #[arg(long, env = "MESHSCOPE_READ_TOKENS_FILE")]
    read_tokens_file: Option<PathBuf>,
    /// Tokens that the admin endpoints require; they read too (auth.admin_tokens_file).
    #[arg(long, env = "MESHSCOPE_ADMIN_TOKENS_FILE")]
    admin_tokens_file: Option<PathBuf>,
}

/// `--store`: one of [`Backend::NAMES`], each with a line of help.
fn backend() -> impl TypedValueParser<Value = Backend> {
    let help = |name: &str| match name {
        "parquet" => "embedded: DataFusion over Parquet files in --data-dir (the default)",
        _ => "a ClickHouse server at --clickhouse-url, with a write spool in --data-dir",
    };
    let values = Backend::NAMES.map(|n| clap::builder::PossibleValue::new(n).help(help(n)));
    clap::builder::PossibleValuesParser::new(values).try_map(|name| name.parse::<Backend>())
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        // Checked once, after the flags: a flag may mend a value the file or environment got
        // wrong (a file's stale clickhouse.url with --clickhouse-url).
        let mut config = Config::load_unchecked(self.config.as_deref(), std::env::vars())?;
        if let Some(a) = &self.grpc_addr {
            config.server.grpc_addr = a.clone();
        }
        if let Some(a) = &self.otlp_http_addr {
            config.server.otlp_http_addr = a.clone();
        }
        if let Some(a) = &self.http_addr {
            config.server.http_addr = a.clone();
        }
        if let Some(d) = &self.data_dir {
            config.store.data_dir = d.clone();
        }
        if let Some(b) = self.store {
            config.store.backend = b;
        }
        let ch = &mut config.clickhouse;
        for (flag, field) in [
            (&self.clickhouse_url, &mut ch.url),
            (&self.clickhouse_database, &mut ch.database),
            (&self.clickhouse_user, &mut ch.user),
            (&self.clickhouse_password, &mut ch.password),
        ] {
            if let Some(v) = flag {
                field.clone_from(v);
            }
        }
        // A password and a password file from any two sources is an error
        // (`Config::validate`), never a silent choice: a stale password variable must not
        // outlive a move to a mounted Secret.
        if let Some(f) = &self.clickhouse_password_file {
            ch.password_file = Some(f.clone());
        }
        if let Some(f) = &self.clickhouse_ca_file {
            ch.ca_file = Some(f.clone());
        }
        if let Some(t) = self.query_timeout {
            config.api.query_timeout = t;
        }
        if let Some(n) = self.query_max_samples {
            config.api.query_max_samples = n;
        }
        if let Some(n) = self.query_max_concurrency {
            config.api.query_max_concurrency = n;
        }
        if self.enable_admin_api {
            config.api.enable_admin_api = true;
        }
        if let Some(url) = &self.grafana_url {
            config.api.grafana_url = Some(url.clone());
        }
        for (flag, field) in [
            (&self.tls_cert, &mut config.tls.cert_file),
            (&self.tls_key, &mut config.tls.key_file),
            (&self.tls_client_ca, &mut config.tls.client_ca_file),
            (
                &self.ingest_tokens_file,
                &mut config.auth.ingest_tokens_file,
            ),
            (&self.read_tokens_file, &mut config.auth.read_tokens_file),
            (&self.admin_tokens_file, &mut config.auth.admin_tokens_file),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        config.validate()?;
        Ok(config)
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r.context("waiting for SIGINT")?; info!("SIGINT received") }
    }
    Ok(())
}

async fn serve(args: ServeArgs, demo: Option<(u32, Option<PathBuf>)>) -> anyhow::Result<()> {
    let config = args.config()?;
    // The demo's TLS and token files are read before anything starts, so a bad one stops
    // nothing half-started.
    let demo_tls = match &demo {
        Some((_, ca)) => Some(DemoTls::read(&config, ca.as_deref())?),
        None => None,
    };
    let app = App::start(config.clone()).await?;
    let demo = match (demo, demo_tls) {
        (Some((rate, _)), Some(tls)) => {
            let peer = tls.peer(app.grpc_addr.port());
            let (scheme, ca_hint) = match config.tls.files(listen::Listener::Api) {
                Some(_) => ("https", " --cacert CA_FILE"),
                None => ("http", ""),
            };
            let api = format!("{scheme}://localhost:{}", app.http_addr.port());
            let auth = if config.auth.read_tokens_file.is_some()
                || config.auth.admin_tokens_file.is_some()
            {
                " -H \"Authorization: Bearer $READ_TOKEN\""
            } else {
                ""
            };
            info!(
                rate,
                endpoint = peer.endpoint,
                "demo traffic starting; try: curl -s {api}/api/v1/topology"
            );
            eprintln!(
                "meshscope demo: simulated bookinfo mesh traffic (Envoy ALS) and a traced shop (OTLP) are flowing. In a few seconds open the console at {api}/ or:\n  curl -s{ca_hint}{auth} {api}/api/v1/topology\n  curl -s{ca_hint}{auth} {api}/api/v1/services"
            );
            Some(tokio::spawn(testkit::demo::run_traffic(peer, rate)))
        }
        _ => None,
    };
    let signal = shutdown_signal().await;
    if let Some(d) = demo {
        d.abort();
    }
    let result = app.shutdown().await;
    signal?;
    result
}

/// What the demo's simulated proxies and exporters need to reach this process's gRPC
/// listener: its TLS (trusting `--demo-ca`, or else the certificates of the listener's own
/// certificate file, which then must hold its CA or be self-signed; checked under the first
/// DNS name the certificate holds) and the first ingest token when tokens are needed.
struct DemoTls {
    /// The CA PEM and the server name, when the listener serves TLS.
    tls: Option<(Vec<u8>, String)>,
    token: Option<String>,
}

impl DemoTls {
    fn read(config: &Config, ca: Option<&std::path::Path>) -> anyhow::Result<DemoTls> {
        let token = match &config.auth.ingest_tokens_file {
            Some(file) => listen::tokens::first_in_file(file)?,
            None => None,
        };
        let Some(files) = config.tls.files(listen::Listener::Grpc) else {
            return Ok(DemoTls { tls: None, token });
        };
        if files.client_ca.is_some() {
            tracing::warn!(
                "the gRPC listener requires client certificates and the demo traffic has none: it will be refused"
            );
        }
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let chain = read(&files.cert)?;
        let ca_pem = match ca {
            Some(path) => read(path)?,
            None => chain.clone(),
        };
        let name = testkit::sim::peer::first_dns_name(&chain).unwrap_or_else(|| "localhost".into());
        Ok(DemoTls {
            tls: Some((ca_pem, name)),
            token,
        })
    }

    fn peer(self, port: u16) -> testkit::sim::Peer {
        match self.tls {
            None => testkit::sim::Peer {
                endpoint: format!("http://127.0.0.1:{port}"),
                token: self.token,
                ..Default::default()
            },
            Some((ca_pem, name)) => testkit::sim::Peer {
                endpoint: format!("https://127.0.0.1:{port}"),
                ca_pem: Some(ca_pem),
                server_name: Some(name),
                token: self.token,
                ..Default::default()
            },
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // A fuzzing campaign's refusals would each log a warning: only its
                // own progress and errors by default.
                tracing_subscriber::EnvFilter::new(match cli.command {
                    Command::Fuzz(_) => "error,testkit=info",
                    _ => "info",
                })
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Every TLS client and server of the process (the HTTP clients of the benches and of
    // the ClickHouse store included) uses ring.
    listen::tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Command::Fuzz(args) = cli.command {
        // Runs its own single-threaded runtimes, one per target.
        return Ok(testkit::fuzz::run(args)?);
    }
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args, None).await,
            Command::Config(args) => {
                print!("{}", args.config()?.to_toml()?);
                Ok(())
            }
            Command::Demo {
                serve: args,
                rate,
                demo_ca,
            } => serve(args, Some((rate, demo_ca))).await,
            Command::Bench {
                which: BenchCommand::Als(args),
            } => Ok(bench::als::run(args).await?),
            Command::Bench {
                which: BenchCommand::Otlp(args),
            } => Ok(bench::otlp::run(args).await?),
            Command::Bench {
                which: BenchCommand::Query(args),
            } => Ok(bench::query::run(args).await?),
            Command::Bench {
                which: BenchCommand::Console(args),
            } => Ok(bench::console::run(args).await?),
            Command::Bench {
                which: BenchCommand::Idle(args),
            } => Ok(bench::idle::run(args).await?),
            Command::Fuzz(_) => Ok(()),
        }
    })
}
