//! `meshscope bench otlp`: span ingestion throughput of a real `meshscope serve` process.
//!
//! Generates the traced shop's spans (all distinct) and encodes them as export requests
//! before the clock starts, sends them as unary `TraceService/Export` calls over several
//! gRPC connections into a child `meshscope serve`, flushes, and reads its CPU time and
//! peak RSS; fails unless the server received every span and rejected none.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::Status;

use super::secured::{Security, label};
use super::server::{Server, cpu_seconds, peak_rss_mib};
use crate::error::{During, Error, Result};
use crate::now_nanos;
use crate::scrape::metric_sum;
use crate::sim::{Peer, RawCodec, connect};
use crate::traces::{Shop, Spans};

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
    /// Plain text, TLS with tokens on every listener, or both one after the other (their
    /// cost side by side).
    #[arg(long, value_enum, default_value = "plain")]
    pub security: Security,
}

/// Encoded export requests and their span counts, in rounds of whole traces: a round's
/// caller and callee spans travel on one connection, as two SDKs flushing at about the
/// same time would send them.
fn build_rounds(spans: u64, batch: usize) -> (Vec<Vec<(Bytes, u64)>>, u64, usize) {
    let mut shop = Shop::new(42);
    let t0 = now_nanos() - 120_000_000_000;
    let mut rounds = Vec::new();
    let (mut total, mut bytes, mut request) = (0u64, 0usize, 0i64);
    while total < spans {
        let mut round = Spans::default();
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
async fn export_all(peer: Peer, requests: Vec<Bytes>) -> Result<(), Status> {
    let mut grpc = connect(&peer).await?;
    for r in requests {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary::<Bytes, (), _>(
            peer.authorize(tonic::Request::new(r))?,
            tonic::codegen::http::uri::PathAndQuery::from_static(collector::otlp::METHOD_PATH),
            RawCodec,
        )
        .await?;
    }
    Ok(())
}

/// Runs `meshscope bench otlp` and prints a report.
pub async fn run(args: OtlpArgs) -> Result<()> {
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

    let connections = args.connections.max(1);
    let mut per_connection: Vec<Vec<Bytes>> = vec![Vec::new(); connections];
    for (i, round) in rounds.into_iter().enumerate() {
        per_connection[i % connections].extend(round.into_iter().map(|(b, _)| b));
    }
    let mut runs = Vec::new();
    for &secured in args.security.runs() {
        runs.push((
            secured,
            measure(&args, &per_connection, total, secured).await?,
        ));
    }

    println!("meshscope bench otlp");
    for (secured, run) in &runs {
        println!("  -- {}", label(*secured));
        println!(
            "  spans sent            {total} over {connections} gRPC connections, {} per request",
            args.batch
        );
        println!(
            "  pairs joined          {}  (unpaired at the end: {})",
            run.paired, run.unpaired
        );
        println!("  calls aggregated      {}", run.aggregated);
        println!(
            "  wall time             {:.2} s  ({:.0} spans/s)",
            run.wall,
            total as f64 / run.wall
        );
        println!(
            "  server CPU            {:.2} s  ({:.0} spans per server CPU-second)",
            run.cpu,
            total as f64 / run.cpu
        );
        println!("  server peak RSS       {:.1} MiB", run.rss);
    }
    if let [(false, plain), (true, tls)] = runs.as_slice() {
        println!(
            "  TLS + tokens cost     {:.1} % fewer spans per server CPU-second ({:.0} vs {:.0})",
            100.0 * (1.0 - plain.cpu / tls.cpu),
            total as f64 / tls.cpu,
            total as f64 / plain.cpu
        );
    }
    println!("  decode-only floor     {floor:.0} spans/s (prost into opentelemetry-proto, 1 core)");
    Ok(())
}

/// What one server run measured.
struct Run {
    paired: f64,
    unpaired: f64,
    aggregated: f64,
    wall: f64,
    cpu: f64,
    rss: f64,
}

/// Starts a server (secured or not), sends every connection's requests, flushes and checks
/// that it received all `total` spans and refused none.
async fn measure(
    args: &OtlpArgs,
    per_connection: &[Vec<Bytes>],
    total: u64,
    secured: bool,
) -> Result<Run> {
    let server = Server::start(args.server.as_ref(), &[], secured).await?;
    let cpu_before = cpu_seconds(server.pid)?;
    let started = Instant::now();
    let tasks: Vec<_> = per_connection
        .iter()
        .map(|requests| tokio::spawn(export_all(server.peer(), requests.clone())))
        .collect();
    for t in tasks {
        t.await?.during("exporting")?;
    }
    server.flush().await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid)? - cpu_before;
    let rss = peak_rss_mib(server.pid)?;
    let text = server.metrics_text().await?;
    let received = metric_sum(&text, "meshscope_otlp_spans_received_total");
    let rejected = metric_sum(&text, "meshscope_otlp_spans_rejected_total");
    let refused = metric_sum(&text, "meshscope_auth_failures_total");
    let run = Run {
        paired: metric_sum(&text, "meshscope_otlp_spans_paired_total"),
        unpaired: metric_sum(&text, "meshscope_otlp_spans_unpaired_total"),
        aggregated: metric_sum(&text, "meshscope_aggregated_calls_total"),
        wall,
        cpu,
        rss,
    };
    server.stop().await;
    if received as u64 != total || rejected != 0.0 || refused != 0.0 {
        return Err(Error::Check(format!(
            "server received {received} spans ({rejected} rejected, {refused} auth failures) but {total} were sent"
        )));
    }
    Ok(run)
}
