//! `meshscope bench query`: read latency over a day (or a week) of data.
//!
//! `--ingest store` (the default) writes `--hours` of per-minute rollup rows for
//! `--services` services straight into an embedded store (each service: `--instances`
//! pods, `--endpoints` endpoints, all busy every minute, 2 outgoing edges, both sides of
//! every edge reported), one file per table and hour as compaction would leave them, then
//! starts `meshscope serve` on that data dir. `--ingest als` starts the server first and
//! sends it the hours as real Envoy access logs ([`super::backfill`]: every service called
//! once a minute), checks that it counted every call, and reports its peak RSS while the
//! data arrived. Either way it then times the JSON API and PromQL queries the dashboards
//! use (one warm-up, then `--runs` runs each, median and max) and reports the server's peak
//! RSS during the queries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::histogram;
use aggregator::metrics::Metrics;
use aggregator::row::{Keys, Row, RowBatch, RowKey};
use aggregator::schema::{FLAG_CLIENT_REAL, FLAG_SERVER_REAL, Key, Table};
use aggregator::store::{Backend, ClickHouseConfig, Store, StoreConfig};
use clap::Args;
use proto::{Side, Source};

use super::backfill;
use super::clickhouse;
use super::server::{Server, peak_rss_mib};
use crate::error::{During, Error, Result};
use crate::scrape::metric_sum;

/// Options of `meshscope bench query`.
#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// Services in the generated mesh.
    #[arg(long, default_value_t = 200)]
    pub services: usize,
    /// Hours of data, ending at the current minute.
    #[arg(long, default_value_t = 24)]
    pub hours: i64,
    /// Timed runs per query (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The server binary (default: this executable).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Write into this ClickHouse (HTTP interface) instead of an embedded store, and
    /// start the server on it; reports insert rows/s.
    #[arg(long)]
    pub clickhouse_url: Option<String>,
    /// The ClickHouse database the benchmark uses (dropped and recreated).
    #[arg(long, default_value = "meshscope_bench")]
    pub clickhouse_database: String,
    /// Pods per service.
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
    /// Endpoints per service.
    #[arg(long, default_value_t = 5)]
    pub endpoints: usize,
    /// Namespaces the services are spread over (`svc-0042.ns07`); with 1, every service is
    /// in `bench` (`svc-042.bench`).
    #[arg(long, default_value_t = 1)]
    pub namespaces: usize,
    /// How the data gets in: rollup rows written into the store directly, or Envoy access
    /// logs sent to the running server.
    #[arg(long, value_enum, default_value = "store")]
    pub ingest: Ingest,
    /// Put the server's data in this new directory and keep it afterwards (to profile
    /// queries against the same data with `meshscope serve --data-dir`); by default a
    /// temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub keep_data: Option<PathBuf>,
}

/// How `bench query` loads its data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingest {
    /// Rollup rows straight into the store, every endpoint busy every minute.
    Store,
    /// Real Envoy access logs through the server, every service called once a minute.
    Als,
}

/// Keys of `table` from `(key, name)` pairs.
fn keys<const N: usize>(table: Table, pairs: [(Key, &Arc<str>); N]) -> Result<Keys> {
    Ok(Keys::new(table, pairs.map(|(k, v)| (k, v.clone())))?)
}

/// A minute's figures: `calls` calls, one in 25 failing, latencies of 5, 20 and 200 ms.
fn metrics(calls: u64) -> Metrics {
    let mut m = Metrics {
        calls,
        errors: calls / 25,
        latency_count: calls,
        ..Metrics::default()
    };
    for (nanos, share) in [(5_000_000u64, 6u64), (20_000_000, 3), (200_000_000, 1)] {
        let n = calls * share / 10;
        m.histogram.add(histogram::bucket_index(nanos), n);
        m.latency_sum_nanos += nanos * n;
    }
    let rest = calls - m.histogram.count();
    m.histogram.add(histogram::bucket_index(5_000_000), rest);
    m.latency_sum_nanos += 5_000_000 * rest;
    m
}

struct Mesh {
    services: Vec<Arc<str>>,
    instances: Vec<Vec<Arc<str>>>,
    endpoints: Vec<Vec<Arc<str>>>,
    edges: Vec<(usize, usize, Arc<str>)>,
}

impl Mesh {
    fn new(n: usize, pods: usize, endpoints: usize, namespaces: usize) -> Mesh {
        let services: Vec<Arc<str>> = (0..n)
            .map(|i| match namespaces {
                0 | 1 => Arc::from(format!("svc-{i:03}.bench")),
                k => Arc::from(format!("svc-{i:04}.ns{:02}", i % k)),
            })
            .collect();
        let instances = (0..n)
            .map(|i| {
                (0..pods)
                    .map(|j| Arc::from(format!("svc-{i:03}-{j}")))
                    .collect()
            })
            .collect();
        let endpoints = (0..n)
            .map(|_| {
                (0..endpoints)
                    .map(|k| Arc::from(format!("GET /api/v1/item{k}")))
                    .collect()
            })
            .collect();
        let (http, grpc): (Arc<str>, Arc<str>) = (Arc::from("http"), Arc::from("grpc"));
        let mut edges = Vec::new();
        for i in 0..n {
            edges.push((i, (i + 1) % n, http.clone()));
            let j = (i * 7 + 3) % n;
            if j != i && j != (i + 1) % n {
                edges.push((i, j, grpc.clone()));
            }
        }
        Mesh {
            services,
            instances,
            endpoints,
            edges,
        }
    }

    /// Every row of one minute.
    fn minute(&self, minute: i64, out: &mut [(Table, Vec<Row>)]) -> Result<()> {
        let flags = FLAG_CLIENT_REAL | FLAG_SERVER_REAL;
        let row = |keys: Keys, side: Side, calls: u64| Row {
            key: RowKey {
                minute,
                side,
                source: Source::Mesh,
                keys,
            },
            flags,
            metrics: metrics(calls),
        };
        let calls = |i: usize| 20 + ((i as i64 * 31 + minute / 60) % 40) as u64;
        for (i, s) in self.services.iter().enumerate() {
            let service = keys(Table::Service, [(Key::Service, s)])?;
            out[0].1.push(row(service, Side::Server, calls(i) * 3));
            for inst in &self.instances[i] {
                let k = keys(Table::Instance, [(Key::Service, s), (Key::Instance, inst)])?;
                out[1].1.push(row(k, Side::Server, calls(i)));
            }
            for ep in &self.endpoints[i] {
                let k = keys(Table::Endpoint, [(Key::Service, s), (Key::Endpoint, ep)])?;
                out[2].1.push(row(k, Side::Server, calls(i)));
            }
        }
        for (e, (c, s, proto)) in self.edges.iter().enumerate() {
            let (cn, sn) = (&self.services[*c], &self.services[*s]);
            let pick = (minute / 60) as usize % self.instances[0].len();
            let (ci, si) = (&self.instances[*c][pick], &self.instances[*s][pick]);
            let edge = keys(
                Table::ServiceRelation,
                [(Key::Client, cn), (Key::Server, sn), (Key::Protocol, proto)],
            )?;
            let pods = keys(
                Table::InstanceRelation,
                [
                    (Key::Client, cn),
                    (Key::ClientInstance, ci),
                    (Key::Server, sn),
                    (Key::ServerInstance, si),
                    (Key::Protocol, proto),
                ],
            )?;
            for side in [Side::Client, Side::Server] {
                out[3].1.push(row(edge.clone(), side, calls(e)));
                out[4].1.push(row(pods.clone(), side, calls(e)));
            }
        }
        Ok(())
    }
}

/// The store the data goes into: embedded, or ClickHouse (database dropped first).
async fn open_store(dir: &std::path::Path, args: &QueryArgs) -> Result<Arc<dyn Store>> {
    let mut store = StoreConfig {
        data_dir: dir.to_path_buf(),
        ..StoreConfig::default()
    };
    let mut clickhouse = ClickHouseConfig::default();
    if let Some(url) = &args.clickhouse_url {
        clickhouse::drop_database(url, &args.clickhouse_database).await?;
        store.backend = Backend::Clickhouse;
        store.retention_days = 0;
        clickhouse = ClickHouseConfig {
            url: url.clone(),
            database: args.clickhouse_database.clone(),
            timeout: Duration::from_secs(300),
            buffer_bytes: 1 << 30,
            spool_bytes: 1 << 30,
            full_wait: Duration::from_secs(600),
            ..clickhouse
        };
    }
    let registry = &mut prometheus_client::registry::Registry::default();
    Ok(aggregator::store::open(&store, &clickhouse, registry).await?)
}

/// Writes the data (each hour's batch in the store before the next: with ClickHouse,
/// `sync` waits until it is inserted); returns rows written.
pub(super) async fn load(dir: &std::path::Path, args: &QueryArgs, end_minute: i64) -> Result<u64> {
    let store = open_store(dir, args).await?;
    let mesh = Mesh::new(
        args.services,
        args.instances,
        args.endpoints,
        args.namespaces,
    );
    let mut rows = 0u64;
    for h in 0..args.hours {
        let mut tables: Vec<(Table, Vec<Row>)> =
            Table::ALL.iter().map(|t| (*t, Vec::new())).collect();
        let hour_start = end_minute - (args.hours - h) * 3600;
        for m in 0..60 {
            mesh.minute(hour_start + m * 60, &mut tables)?;
        }
        rows += tables.iter().map(|(_, r)| r.len() as u64).sum::<u64>();
        store.write(Arc::new(RowBatch { tables })).await?;
        store.sync().await?;
        eprint!("\rwriting rollups: hour {}/{}", h + 1, args.hours);
    }
    eprintln!();
    store.close().await?;
    Ok(rows)
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("q", s)])
        .map(|e| e[2..].to_string())
        .unwrap_or_default()
}

/// Waits until the server's store reports no file awaiting the tiers or compaction
/// (`meshscope_store_files_awaiting_*`), printing progress, so the queries are timed on a
/// settled store rather than beside its maintenance. Returns the seconds waited, or
/// `None` when the server does not report them (ClickHouse, or an older meshscope).
async fn settle(server: &Server) -> Result<Option<f64>> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let text = server.metrics_text().await?;
        if !text.contains("meshscope_store_files_awaiting_tiers") {
            return Ok(None);
        }
        let tiers = metric_sum(&text, "meshscope_store_files_awaiting_tiers");
        let compaction = metric_sum(&text, "meshscope_store_files_awaiting_compaction");
        if tiers == 0.0 && compaction == 0.0 {
            return Ok(Some(started.elapsed().as_secs_f64()));
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(Error::Check(format!(
                "the store did not settle in an hour: {tiers} files awaiting the tiers, {compaction} awaiting compaction"
            )));
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            println!(
                "  … store maintenance: {tiers} files awaiting the tiers, {compaction} awaiting compaction ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Resets the process's peak RSS to its current RSS (`/proc/PID/clear_refs`), so the next
/// [`peak_rss_mib`] covers only what follows.
fn reset_peak_rss(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(crate::error::io("resetting the server's peak RSS"))
}

/// Runs the benchmark and prints a report.
pub async fn run(args: QueryArgs) -> Result<()> {
    if args.services < 2 || args.hours < 1 || args.instances < 1 || args.endpoints < 1 {
        return Err(Error::Check(
            "--services must be at least 2, --hours, --instances and --endpoints at least 1".into(),
        ));
    }
    let dir = match &args.keep_data {
        Some(dir) if dir.exists() => {
            return Err(Error::Check(format!(
                "--keep-data {}: it exists; name a new directory",
                dir.display()
            )));
        }
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("meshscope-bench-query-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .map_err(crate::error::io(format!("creating {}", dir.display())))?;
    let end = (crate::now_nanos() / 1_000_000_000).div_euclid(60) * 60;
    let mut env = match &args.clickhouse_url {
        Some(url) => clickhouse::server_env(url, &args.clickhouse_database),
        None => Vec::new(),
    };
    // Keep every generated hour (and a day more) whatever the default retention.
    env.push((
        "MESHSCOPE__STORE__RETENTION_DAYS",
        (args.hours / 24 + 2).to_string(),
    ));
    let started = Instant::now();
    let (mut server, loaded, ingest_rss) = match args.ingest {
        Ingest::Store => {
            let rows = load(&dir, &args, end).await.during("writing the rollups")?;
            let server = Server::start_in(args.server.as_ref(), dir, &env, false).await?;
            (server, format!("{rows} rollup rows"), None)
        }
        Ingest::Als => {
            if let Some(url) = &args.clickhouse_url {
                clickhouse::drop_database(url, &args.clickhouse_database).await?;
            }
            let server = Server::start_in(args.server.as_ref(), dir, &env, false).await?;
            reset_peak_rss(server.pid)?;
            let shape = backfill::Shape {
                services: args.services,
                instances: args.instances,
                endpoints: args.endpoints,
            };
            let calls = backfill::send(&server.peer(), shape, args.hours, end)
                .await
                .during("sending access logs")?;
            server.flush().await?;
            let rss = peak_rss_mib(server.pid)?;
            let text = server.metrics_text().await?;
            let counted = metric_sum(&text, "meshscope_aggregated_calls_total");
            // Both sides log every call: the server aggregates each side once.
            if counted != 2.0 * calls as f64 {
                return Err(Error::Check(format!(
                    "the server aggregated {counted} call reports, {} were sent",
                    2 * calls
                )));
            }
            (
                server,
                format!("{calls} calls as Envoy access logs"),
                Some(rss),
            )
        }
    };
    let load_secs = started.elapsed().as_secs_f64();
    let settled = settle(&server).await?;
    let settle_rss = peak_rss_mib(server.pid)?;
    reset_peak_rss(server.pid)?;
    let start = end - args.hours * 3600;
    let s0 = match args.ingest {
        Ingest::Store => "svc-000.bench".to_string(),
        Ingest::Als => backfill::service_name(0),
    };
    let w = format!("start={start}&end={end}");
    let prom = |q: &str| format!("/prometheus/api/v1/query?time={end}&query={}", enc(q));
    let prom_range = |q: &str, from: i64, step: i64| {
        format!(
            "/prometheus/api/v1/query_range?start={from}&end={end}&step={step}&query={}",
            enc(q)
        )
    };
    let hours = args.hours;
    let mut queries: Vec<(String, String)> = vec![
        (
            format!("topology, {hours} h (JSON)"),
            format!("/api/v1/topology?{w}"),
        ),
        (
            "topology, 1 h (JSON)".into(),
            format!("/api/v1/topology?start={}&end={end}", end - 3600),
        ),
        (
            "topology, 15 min (JSON)".into(),
            format!("/api/v1/topology?start={}&end={end}", end - 900),
        ),
        (
            format!("topology around one service, depth 2, {hours} h (JSON)"),
            format!("/api/v1/topology?service={s0}&depth=2&{w}"),
        ),
        (
            format!("services, {hours} h (JSON)"),
            format!("/api/v1/services?{w}"),
        ),
    ];
    if hours > 24 {
        let day = format!("start={}&end={end}", end - 86_400);
        queries.push((
            "topology, 24 h (JSON)".into(),
            format!("/api/v1/topology?{day}"),
        ));
        queries.push((
            "services, 24 h (JSON)".into(),
            format!("/api/v1/services?{day}"),
        ));
    }
    queries.extend([
        (
            format!("one service's p99 per minute, {hours} h (JSON)"),
            format!("/api/v1/timeseries?entity=service&service={s0}&metric=p99_ms&step=60&{w}"),
        ),
        (
            "service graph rate [1h] (PromQL instant)".into(),
            prom("sum by (client, server) (rate(traces_service_graph_request_total[1h]))"),
        ),
        (
            format!("service graph increase [{hours}h] (PromQL instant)"),
            prom(&format!(
                "sum by (client, server) (increase(traces_service_graph_request_total[{hours}h]))"
            )),
        ),
        (
            "p99 per service from buckets [1h] (PromQL instant)".into(),
            prom(
                "histogram_quantile(0.99, sum by (le, service) (increase(meshscope_service_latency_seconds_bucket[1h])))",
            ),
        ),
        (
            format!("calls/s per service, {hours} h step 5m (PromQL range)"),
            prom_range(
                "sum by (service) (rate(meshscope_service_calls_total[5m]))",
                start,
                300,
            ),
        ),
        (
            "one service's precise p99, 1 h step 1m (PromQL range)".into(),
            prom_range(
                &format!(
                    "meshscope_service_latency_quantile_seconds{{service=\"{s0}\", quantile=\"0.99\"}}"
                ),
                end - 3600,
                60,
            ),
        ),
    ]);
    let client = reqwest::Client::new();
    println!("meshscope bench query");
    let store = match &args.clickhouse_url {
        Some(url) => format!("ClickHouse at {url}"),
        None => "embedded Parquet store".into(),
    };
    println!(
        "  data                  {} services × {} pods × {} endpoints, {hours} h: {loaded} into the {store} in {load_secs:.1} s",
        args.services, args.instances, args.endpoints
    );
    if let Some(rss) = ingest_rss {
        println!("  server peak RSS while the data arrived   {rss:.1} MiB");
    }
    match settled {
        Some(secs) => println!(
            "  store maintenance (tiers, compaction) settled {secs:.1} s later; peak RSS meanwhile {settle_rss:.1} MiB"
        ),
        None => println!(
            "  store maintenance not reported by this server: queries may run beside it (peak RSS so far {settle_rss:.1} MiB)"
        ),
    }
    println!("  {:<60} {:>10} {:>10}", "query", "median ms", "max ms");
    for (name, path) in &queries {
        let url = format!("{}{path}", server.http);
        let mut times = Vec::with_capacity(args.runs);
        for run in 0..=args.runs {
            let t = Instant::now();
            let resp = client.get(&url).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            if !status.is_success() {
                return Err(Error::Check(format!(
                    "{name}: {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            if run > 0 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
        let max = times.last().copied().unwrap_or(f64::NAN);
        println!("  {name:<60} {median:>10.1} {max:>10.1}");
    }
    println!(
        "  server peak RSS during the queries       {:.1} MiB",
        peak_rss_mib(server.pid)?
    );
    if let Some(dir) = &args.keep_data {
        server.keep_dir();
        println!(
            "  data kept in {} (window {start}..{end}, unix seconds)",
            dir.display()
        );
    }
    server.stop().await;
    Ok(())
}
