//! `meshscope bench als`: ingestion throughput of a real `meshscope serve` process.
//!
//! Pre-encodes realistic Istio ≥ 1.24 access-log messages (peer metadata `Struct`, TLS
//! properties, 100 entries per message) with `envoy-types`, starts `meshscope serve` as a
//! child process on loopback, streams the bytes over several concurrent gRPC streams,
//! flushes, and reads the child's CPU time and peak RSS from `/proc`. Throughput is quoted
//! per server CPU-second (calls processed ÷ the CPU time the server process used) so the
//! load generator sharing the machine does not distort it. It also times plain `prost`
//! decoding of the same bytes into `envoy-types` structs in this process: the decode-only
//! floor. With `--clickhouse-url` the server runs on that ClickHouse, and the run fails
//! unless every aggregated call is there after the flush.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use prost::Message;

use super::clickhouse;
use super::secured::{Security, label};
use super::server::{Server, cpu_seconds, peak_rss_mib};
use crate::error::{During, Error, Result};
use crate::scrape::metric_sum;
use crate::{now_nanos, sim};

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
    /// Plain text, TLS with tokens on every listener, or both one after the other (their
    /// cost side by side).
    #[arg(long, value_enum, default_value = "plain")]
    pub security: Security,
}

/// One proxy's message cycle: encoded messages and their entry counts.
struct Cycle {
    messages: Vec<(Bytes, u64)>,
}

fn build_cycles() -> (Vec<Cycle>, u64, usize) {
    let mut generator = sim::Generator::new(42);
    let t0 = now_nanos() - 120_000_000_000;
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
                Some(LogEntries::HttpLogs(h)) => h.log_entry.len(),
                Some(LogEntries::TcpLogs(t)) => t.log_entry.len(),
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

async fn stream_cycle(peer: sim::Peer, cycle: Vec<(Bytes, u64)>, quota: u64) -> Result<u64> {
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
    sim::send_raw(peer, items).await.during("streaming")?;
    Ok(sent)
}

/// Runs the benchmark and prints a report.
pub async fn run(args: AlsArgs) -> Result<()> {
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
            let m = StreamAccessLogsMessage::decode(bytes.clone())?;
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

    let mut runs = Vec::new();
    for &secured in args.security.runs() {
        runs.push((secured, measure(&args, &cycles, secured).await?));
    }

    println!("meshscope bench als");
    let store = match &args.clickhouse_url {
        Some(url) => format!("ClickHouse at {url}"),
        None => "embedded Parquet store".into(),
    };
    println!("  store                 {store}");
    for (secured, run) in &runs {
        println!("  -- {}", label(*secured));
        println!(
            "  entries sent          {} over {} streams",
            run.sent, args.streams
        );
        println!("  calls aggregated      {}", run.aggregated);
        if let Some((rows, inserts)) = run.clickhouse {
            println!(
                "  ClickHouse            {rows} rows in {inserts} inserts, every aggregated call in them (the server's CPU below excludes ClickHouse's)"
            );
        }
        println!(
            "  wall time             {:.2} s  ({:.0} entries/s)",
            run.wall,
            run.sent as f64 / run.wall
        );
        println!(
            "  server CPU            {:.2} s  ({:.0} entries per server CPU-second)",
            run.cpu,
            run.per_cpu_second()
        );
        println!("  server peak RSS       {:.1} MiB", run.rss);
    }
    if let [(false, plain), (true, tls)] = runs.as_slice() {
        println!(
            "  TLS + tokens cost     {:.1} % fewer entries per server CPU-second ({:.0} vs {:.0})",
            100.0 * (1.0 - tls.per_cpu_second() / plain.per_cpu_second()),
            tls.per_cpu_second(),
            plain.per_cpu_second()
        );
    }
    println!("  decode-only floor     {floor:.0} entries/s (prost into envoy-types, 1 core)");
    println!("  field-subset decode   {slim_rate:.0} entries/s (meshscope's proto::als, 1 core)");
    Ok(())
}

/// What one server run measured.
struct Run {
    sent: u64,
    aggregated: f64,
    wall: f64,
    cpu: f64,
    rss: f64,
    /// ClickHouse rows and inserts, with `--clickhouse-url`.
    clickhouse: Option<(f64, f64)>,
}

impl Run {
    fn per_cpu_second(&self) -> f64 {
        self.sent as f64 / self.cpu
    }
}

/// Starts a server (secured or not), streams `args.entries` entries into it, flushes and
/// checks that it decoded every one (and, with ClickHouse, stored every call).
async fn measure(args: &AlsArgs, cycles: &[Cycle], secured: bool) -> Result<Run> {
    let env = match &args.clickhouse_url {
        Some(url) => {
            clickhouse::drop_database(url, &args.clickhouse_database).await?;
            clickhouse::server_env(url, &args.clickhouse_database)
        }
        None => Vec::new(),
    };
    let server = Server::start(args.server.as_ref(), &env, secured).await?;
    let pid = server.pid;
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let per_stream = args.entries / args.streams.max(1) as u64;
    let tasks: Vec<_> = (0..args.streams.max(1))
        .map(|i| {
            let cycle = cycles[i % cycles.len()].messages.clone();
            tokio::spawn(stream_cycle(server.peer(), cycle, per_stream))
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
    let text = server.metrics_text().await?;
    let decoded_entries = metric_sum(&text, "meshscope_als_entries_decoded_total");
    let aggregated = metric_sum(&text, "meshscope_aggregated_calls_total");
    let ch_rows = metric_sum(&text, "meshscope_clickhouse_rows_inserted_total");
    let ch_inserts = metric_sum(&text, "meshscope_clickhouse_inserts_total");
    let ch_lost = metric_sum(&text, "meshscope_clickhouse_dropped_rows_total")
        + metric_sum(&text, "meshscope_clickhouse_buffered_bytes")
        + metric_sum(&text, "meshscope_clickhouse_spooled_bytes");
    let refused = metric_sum(&text, "meshscope_auth_failures_total");
    server.stop().await;

    if (decoded_entries as u64) != sent || refused != 0.0 {
        return Err(Error::Check(format!(
            "server decoded {decoded_entries} entries but {sent} were sent ({refused} auth failures)"
        )));
    }
    if let Some(url) = &args.clickhouse_url {
        if ch_lost != 0.0 {
            return Err(Error::Check(format!(
                "after the flush ClickHouse rows were dropped or still queued ({ch_lost})"
            )));
        }
        // Every aggregated call is one reporting side's call in the service table.
        let db = aggregator::store::clickhouse::sql::ident(&args.clickhouse_database)?;
        let answer = clickhouse::client(url, Duration::from_secs(60))?
            .execute(&format!(
                "SELECT sum(calls) FROM {db}.service WHERE res = 60 AND side != 'marker' FORMAT TSV"
            ))
            .await?;
        let answer = String::from_utf8_lossy(&answer);
        let in_clickhouse: f64 = answer.trim().parse().map_err(|_| {
            Error::Check(format!("ClickHouse answered {:?} to a sum", answer.trim()))
        })?;
        if in_clickhouse != aggregated {
            return Err(Error::Check(format!(
                "ClickHouse holds {in_clickhouse} calls, the server aggregated {aggregated}"
            )));
        }
    }
    Ok(Run {
        sent,
        aggregated,
        wall,
        cpu,
        rss,
        clickhouse: args.clickhouse_url.as_ref().map(|_| (ch_rows, ch_inserts)),
    })
}
