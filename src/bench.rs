//! `meshscope bench als`: ingestion throughput of a real `meshscope serve` process.
//!
//! Pre-encodes realistic Istio ≥ 1.24 access-log messages (peer metadata `Struct`, TLS
//! properties, 100 entries per message) with `envoy-types`, starts `meshscope serve` as a
//! child process on loopback, streams the bytes over several concurrent gRPC streams,
//! flushes, and reads the child's CPU time and peak RSS from `/proc`. Throughput is quoted
//! per server CPU-second (DESIGN § 8) so the load generator sharing the machine does not
//! distort it. It also times plain `prost` decoding of the same bytes into `envoy-types`
//! structs in this process: the decode-only floor. With `--clickhouse-url` the server runs
//! on that ClickHouse, and the run fails unless every aggregated call is there after the
//! flush.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes};
use clap::Args;
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::sim;

pub mod query;

/// Options of `meshscope bench als`.
#[derive(Args, Debug, Clone)]
pub struct AlsArgs {
    /// Entries to send in total.
    #[arg(long, default_value_t = 2_000_000)]
    pub entries: u64,
    /// Concurrent ALS streams.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// The server binary (default: this executable).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Run the server on this ClickHouse (HTTP interface) instead of the embedded store;
    /// the final flush waits until every row is inserted there.
    #[arg(long)]
    pub clickhouse_url: Option<String>,
    /// The ClickHouse database the benchmark uses (dropped and recreated).
    #[arg(long, default_value = "meshscope_bench_als")]
    pub clickhouse_database: String,
}

/// A client for the benchmarks' ClickHouse, as user `default` without a password.
fn bench_clickhouse(
    url: &str,
    timeout: Duration,
) -> anyhow::Result<aggregator::store::clickhouse::client::Client> {
    Ok(aggregator::store::clickhouse::client::Client::new(
        url, "default", "", timeout,
    )?)
}

/// Drops the benchmark's ClickHouse database `db` (as user `default`, no password), so a
/// run starts empty.
pub async fn drop_clickhouse_database(url: &str, db: &str) -> anyhow::Result<()> {
    let db_sql = aggregator::store::clickhouse::sql::ident(db)?;
    bench_clickhouse(url, Duration::from_secs(300))?
        .execute(&format!("DROP DATABASE IF EXISTS {db_sql}"))
        .await
        .with_context(|| format!("dropping the benchmark database {db} at {url}"))?;
    Ok(())
}

/// The environment that starts `meshscope serve` on ClickHouse database `db` at `url`.
pub fn clickhouse_env(url: &str, db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MESHSCOPE_STORE", "clickhouse".into()),
        ("MESHSCOPE_CLICKHOUSE_URL", url.to_string()),
        ("MESHSCOPE_CLICKHOUSE_DATABASE", db.to_string()),
    ]
}

/// Sends pre-encoded protobuf bytes as they are.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
pub struct RawEncoder;
/// Decoder half of [`RawCodec`]: the (empty) response is discarded.
pub struct DiscardDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for DiscardDecoder {
    type Item = ();
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = DiscardDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> DiscardDecoder {
        DiscardDecoder
    }
}

/// One proxy's message cycle: encoded messages and their entry counts.
struct Cycle {
    messages: Vec<(Bytes, u64)>,
}

fn build_cycles() -> (Vec<Cycle>, u64, usize) {
    let mut generator = sim::Generator::new(42);
    let t0 = sim::now_nanos() - 120_000_000_000;
    let hops: Vec<sim::Hop> = (0..4000)
        .flat_map(|i| generator.user_request(t0 + i * 10_000_000))
        .collect();
    let mut cycles = Vec::new();
    let (mut entries, mut bytes) = (0u64, 0usize);
    for (_, messages) in sim::encode(&generator.mesh, &hops) {
        let mut cycle = Cycle {
            messages: Vec::new(),
        };
        for m in messages {
            let n = match &m.log_entries {
                Some(envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries::HttpLogs(h)) => h.log_entry.len(),
                Some(envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries::TcpLogs(t)) => t.log_entry.len(),
                None => 0,
            } as u64;
            let encoded = Bytes::from(m.encode_to_vec());
            entries += n;
            bytes += encoded.len();
            cycle.messages.push((encoded, n));
        }
        cycles.push(cycle);
    }
    (cycles, entries, bytes)
}

/// utime + stime of a process in seconds (USER_HZ = 100 on Linux).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("parsing /proc/pid/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime is 11, stime is 12.
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / 100.0)
}

fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("VmHWM missing")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib / 1024.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Sum of the samples of metric `name` (every label set) in Prometheus/OpenMetrics text.
/// `name` may include a label set (`name{reason="x"}`); a longer metric name that merely
/// starts with `name` does not match.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The server's `/metrics` text.
async fn metrics_text(http: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("{http}/metrics"))
        .await?
        .text()
        .await?)
}

/// Streams already-encoded `StreamAccessLogsMessage` bytes (valid or not) as one ALS
/// stream, for load generation and bad-input tests.
pub async fn send_raw(endpoint: &str, messages: Vec<Bytes>) -> Result<(), Status> {
    let mut grpc = sim::connect(endpoint).await?;
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
    );
    grpc.client_streaming::<_, Bytes, (), _>(
        tonic::Request::new(futures::stream::iter(messages)),
        path,
        RawCodec,
    )
    .await
    .map(|_| ())
}

async fn stream_cycle(
    endpoint: String,
    cycle: Vec<(Bytes, u64)>,
    quota: u64,
) -> anyhow::Result<u64> {
    let mut sent = 0u64;
    let mut items = Vec::new();
    'outer: loop {
        for (bytes, n) in &cycle {
            if sent >= quota {
                break 'outer;
            }
            items.push(bytes.clone());
            sent += n;
        }
    }
    send_raw(&endpoint, items).await.context("streaming")?;
    Ok(sent)
}

/// A `meshscope serve` child process on loopback ports with a temporary data dir.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    http: String,
    endpoint: String,
    dir: PathBuf,
}

impl Server {
    /// Starts `exe` (default: this executable) on a fresh temporary data dir with `env`
    /// set and waits until it is healthy.
    async fn start(exe: Option<&PathBuf>, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let dir = std::env::temp_dir().join(format!("meshscope-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Server::start_in(exe, dir, env).await
    }

    /// Starts `exe` on `dir` (removed by [`Server::stop`]) with `env` set and waits until
    /// it is healthy.
    async fn start_in(
        exe: Option<&PathBuf>,
        dir: PathBuf,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let (grpc_port, http_port) = (free_port()?, free_port()?);
        let exe = match exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let child = tokio::process::Command::new(&exe)
            .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--otlp-http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().context("child pid")?;
        let http = format!("http://127.0.0.1:{http_port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::get(format!("{http}/healthz"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("server did not become healthy within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Server {
            child,
            pid,
            http,
            endpoint: format!("http://127.0.0.1:{grpc_port}"),
            dir,
        })
    }

    /// `POST /api/v1/admin/flush`.
    async fn flush(&self) -> anyhow::Result<()> {
        let flush = reqwest::Client::new()
            .post(format!("{}/api/v1/admin/flush", self.http))
            .send()
            .await?;
        if !flush.status().is_success() {
            bail!("flush failed: {}", flush.status());
        }
        Ok(())
    }

    /// SIGTERM, wait, remove the data dir.
    async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the benchmark and prints a report.
pub async fn als(args: AlsArgs) -> anyhow::Result<()> {
    let (cycles, cycle_entries, cycle_bytes) = build_cycles();
    eprintln!(
        "prepared {} streams' worth of messages: {cycle_entries} entries, {:.0} bytes/entry",
        cycles.len(),
        cycle_bytes as f64 / cycle_entries as f64
    );

    // Decode-only floor: plain prost into envoy-types structs, one core, same bytes.
    let all: Vec<&(Bytes, u64)> = cycles.iter().flat_map(|c| c.messages.iter()).collect();
    let started = Instant::now();
    let mut decoded = 0u64;
    while decoded < 1_000_000 {
        for (bytes, n) in &all {
            let m =
                envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage::decode(
                    bytes.clone(),
                )?;
            std::hint::black_box(&m);
            decoded += n;
        }
    }
    let floor = decoded as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut slim = 0u64;
    while slim < 1_000_000 {
        for (bytes, n) in &all {
            let m = proto::als::StreamAccessLogsMessage::decode(bytes.clone())?;
            std::hint::black_box(&m);
            slim += n;
        }
    }
    let slim_rate = slim as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "decode-only floor: {floor:.0} entries/s (envoy-types), {slim_rate:.0} entries/s (meshscope field subset)"
    );

    let env = match &args.clickhouse_url {
        Some(url) => {
            drop_clickhouse_database(url, &args.clickhouse_database).await?;
            clickhouse_env(url, &args.clickhouse_database)
        }
        None => Vec::new(),
    };
    let server = Server::start(args.server.as_ref(), &env).await?;
    let (pid, http, endpoint) = (server.pid, server.http.clone(), server.endpoint.clone());
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let per_stream = args.entries / args.streams.max(1) as u64;
    let tasks: Vec<_> = (0..args.streams.max(1))
        .map(|i| {
            let cycle = cycles[i % cycles.len()].messages.clone();
            tokio::spawn(stream_cycle(endpoint.clone(), cycle, per_stream))
        })
        .collect();
    let mut sent = 0u64;
    for t in tasks {
        sent += t.await??;
    }
    server.flush().await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu_before;
    let rss = peak_rss_mib(pid)?;
    let text = metrics_text(&http).await?;
    let decoded_entries = metric_sum(&text, "meshscope_als_entries_decoded_total");
    let aggregated = metric_sum(&text, "meshscope_aggregated_calls_total");
    let ch_rows = metric_sum(&text, "meshscope_clickhouse_rows_inserted_total");
    let ch_inserts = metric_sum(&text, "meshscope_clickhouse_inserts_total");
    let ch_lost = metric_sum(&text, "meshscope_clickhouse_dropped_rows_total")
        + metric_sum(&text, "meshscope_clickhouse_buffered_bytes")
        + metric_sum(&text, "meshscope_clickhouse_spooled_bytes");
    server.stop().await;

    if (decoded_entries as u64) != sent {
        bail!("server decoded {decoded_entries} entries but {sent} were sent");
    }
    if let Some(url) = &args.clickhouse_url {
        if ch_lost != 0.0 {
            bail!("after the flush ClickHouse rows were dropped or still queued ({ch_lost})");
        }
        // Every aggregated call is one reporting side's call in the service table.
        let db = aggregator::store::clickhouse::sql::ident(&args.clickhouse_database)?;
        let answer = bench_clickhouse(url, Duration::from_secs(60))?
            .execute(&format!(
                "SELECT sum(calls) FROM {db}.service WHERE res = 60 AND side != 'marker' FORMAT TSV"
            ))
            .await?;
        let in_clickhouse: f64 = String::from_utf8_lossy(&answer).trim().parse()?;
        if in_clickhouse != aggregated {
            bail!("ClickHouse holds {in_clickhouse} calls, the server aggregated {aggregated}");
        }
    }
    println!("meshscope bench als");
    let store = match &args.clickhouse_url {
        Some(url) => format!("ClickHouse at {url}"),
        None => "embedded Parquet store".into(),
    };
    println!("  store                 {store}");
    println!(
        "  entries sent          {sent} over {} streams",
        args.streams
    );
    println!("  calls aggregated      {aggregated}");
    if args.clickhouse_url.is_some() {
        println!(
            "  ClickHouse            {ch_rows} rows in {ch_inserts} inserts, every aggregated call in them (the server's CPU below excludes ClickHouse's)"
        );
    }
    println!(
        "  wall time             {wall:.2} s  ({:.0} entries/s)",
        sent as f64 / wall
    );
    println!(
        "  server CPU            {cpu:.2} s  ({:.0} entries per server CPU-second)",
        sent as f64 / cpu
    );
    println!("  server peak RSS       {rss:.1} MiB");
    println!("  decode-only floor     {floor:.0} entries/s (prost into envoy-types, 1 core)");
    println!("  field-subset decode   {slim_rate:.0} entries/s (meshscope's proto::als, 1 core)");
    Ok(())
}

/// Options of `meshscope bench otlp`.
#[derive(Args, Debug, Clone)]
pub struct OtlpArgs {
    /// Spans to send in total (all distinct: generated and encoded before the clock starts).
    #[arg(long, default_value_t = 1_000_000)]
    pub spans: u64,
    /// Concurrent gRPC connections, each sending export requests one after another.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Spans per export request (the SDK batch processor's default is 512).
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// The server binary (default: this executable).
    #[arg(long)]
    pub server: Option<PathBuf>,
}

/// Encoded export requests and their span counts, in rounds of whole traces: a round's
/// caller and callee spans travel on one connection, as two SDKs flushing at about the
/// same time would send them.
fn build_rounds(spans: u64, batch: usize) -> (Vec<Vec<(Bytes, u64)>>, u64, usize) {
    let mut shop = crate::traces::Shop::new(42);
    let t0 = sim::now_nanos() - 120_000_000_000;
    let mut rounds = Vec::new();
    let (mut total, mut bytes, mut request) = (0u64, 0usize, 0i64);
    while total < spans {
        let mut round = crate::traces::Spans::default();
        for _ in 0..200 {
            shop.request(t0 + request * 300_000, &mut round);
            request += 1;
        }
        let mut encoded = Vec::new();
        for r in round.requests(batch) {
            let n: usize = r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum();
            let b = Bytes::from(r.encode_to_vec());
            bytes += b.len();
            total += n as u64;
            encoded.push((b, n as u64));
        }
        rounds.push(encoded);
    }
    (rounds, total, bytes)
}

/// Sends encoded export requests one after another on one connection.
async fn export_all(endpoint: String, requests: Vec<Bytes>) -> Result<(), Status> {
    let mut grpc = sim::connect(&endpoint).await?;
    for r in requests {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary::<Bytes, (), _>(
            tonic::Request::new(r),
            tonic::codegen::http::uri::PathAndQuery::from_static(collector::otlp::METHOD_PATH),
            RawCodec,
        )
        .await?;
    }
    Ok(())
}

/// Runs `meshscope bench otlp` and prints a report.
pub async fn otlp(args: OtlpArgs) -> anyhow::Result<()> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    let (rounds, total, bytes) = build_rounds(args.spans, args.batch);
    eprintln!(
        "prepared {total} spans in {} export requests, {:.0} bytes/span",
        rounds.iter().map(Vec::len).sum::<usize>(),
        bytes as f64 / total as f64
    );
    let started = Instant::now();
    let mut decoded = 0u64;
    'floor: for round in &rounds {
        for (b, n) in round {
            let r = ExportTraceServiceRequest::decode(b.clone())?;
            std::hint::black_box(&r);
            decoded += n;
            if decoded >= 500_000 {
                break 'floor;
            }
        }
    }
    let floor = decoded as f64 / started.elapsed().as_secs_f64();
    eprintln!("decode-only floor: {floor:.0} spans/s (prost into opentelemetry-proto)");

    let server = Server::start(args.server.as_ref(), &[]).await?;
    let connections = args.connections.max(1);
    let mut per_connection: Vec<Vec<Bytes>> = vec![Vec::new(); connections];
    for (i, round) in rounds.into_iter().enumerate() {
        per_connection[i % connections].extend(round.into_iter().map(|(b, _)| b));
    }
    let cpu_before = cpu_seconds(server.pid)?;
    let started = Instant::now();
    let tasks: Vec<_> = per_connection
        .into_iter()
        .map(|requests| tokio::spawn(export_all(server.endpoint.clone(), requests)))
        .collect();
    for t in tasks {
        t.await?.context("exporting")?;
    }
    server.flush().await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid)? - cpu_before;
    let rss = peak_rss_mib(server.pid)?;
    let text = metrics_text(&server.http).await?;
    let received = metric_sum(&text, "meshscope_otlp_spans_received_total");
    let rejected = metric_sum(&text, "meshscope_otlp_spans_rejected_total");
    let paired = metric_sum(&text, "meshscope_otlp_spans_paired_total");
    let unpaired = metric_sum(&text, "meshscope_otlp_spans_unpaired_total");
    let aggregated = metric_sum(&text, "meshscope_aggregated_calls_total");
    server.stop().await;

    if received as u64 != total || rejected != 0.0 {
        bail!("server received {received} spans ({rejected} rejected) but {total} were sent");
    }
    println!("meshscope bench otlp");
    println!(
        "  spans sent            {total} over {connections} gRPC connections, {} per request",
        args.batch
    );
    println!("  pairs joined          {paired}  (unpaired at the end: {unpaired})");
    println!("  calls aggregated      {aggregated}");
    println!(
        "  wall time             {wall:.2} s  ({:.0} spans/s)",
        total as f64 / wall
    );
    println!(
        "  server CPU            {cpu:.2} s  ({:.0} spans per server CPU-second)",
        total as f64 / cpu
    );
    println!("  server peak RSS       {rss:.1} MiB");
    println!("  decode-only floor     {floor:.0} spans/s (prost into opentelemetry-proto, 1 core)");
    Ok(())
}
