//! `meshscope bench idle`: what open, quiet access-log streams cost a `meshscope serve`
//! child process. Envoy keeps one ALS stream per proxy and logger open for as long as it
//! runs, so a mesh of N proxies holds about 2 N streams that mostly wait.
//!
//! Opens `--streams` streams spread over connections of `--per-connection` streams each
//! (under `collector.max_concurrent_streams`), each sending its proxy's identifier and
//! then nothing, waits until the server counts them all open, then holds them for
//! `--hold` seconds and reads the server's resident memory and CPU time from `/proc`
//! before, while open, and after they close.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::server::{Server, cpu_seconds, rss_mib};
use crate::error::{Error, Result};
use crate::scrape::metric_sum;
use crate::sim;

/// Options of `meshscope bench idle`.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Streams to hold open.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// Streams per HTTP/2 connection (at most `collector.max_concurrent_streams`).
    #[arg(long, default_value_t = 100)]
    pub per_connection: usize,
    /// Seconds to hold them open while measuring the server's CPU.
    #[arg(long, default_value_t = 30)]
    pub hold: u64,
    /// The server binary (default: this executable).
    #[arg(long)]
    pub server: Option<PathBuf>,
}

/// Waits (60 s at most) until the server reports `want` open streams.
async fn wait_open(server: &Server, want: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = server.metrics_text().await?;
        let open = metric_sum(&text, "meshscope_als_streams_open");
        if (open - want).abs() < 0.5 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Check(format!(
                "{open} streams open after 60 s, expected {want}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the benchmark and prints what it measured.
pub async fn run(args: IdleArgs) -> Result<()> {
    let server = Server::start(args.server.as_ref(), &[], false).await?;
    let result = measure(&server, &args).await;
    server.stop().await;
    result
}

async fn measure(server: &Server, args: &IdleArgs) -> Result<()> {
    let mesh = sim::bookinfo();
    let per = args.per_connection.max(1);
    let rss_before = rss_mib(server.pid)?;
    let opened = Instant::now();
    let mut senders = Vec::with_capacity(args.streams);
    let mut calls = Vec::with_capacity(args.streams);
    let mut channel = None;
    for i in 0..args.streams {
        if i % per == 0 {
            let c = tonic::transport::Endpoint::from_shared(server.endpoint.clone())
                .map_err(|e| Error::Check(e.to_string()))?
                .connect()
                .await
                .map_err(|e| Error::Check(format!("connecting: {e}")))?;
            channel = Some(c);
        }
        let Some(c) = channel.clone() else {
            return Err(Error::Check("no connection".into()));
        };
        let (tx, rx) = mpsc::channel(1);
        let w = &mesh.workloads[i % mesh.workloads.len()];
        let hello = StreamAccessLogsMessage {
            identifier: Some(Identifier {
                node: Some(sim::envoy::node(w)),
                log_name: "http_envoy_accesslog".into(),
            }),
            log_entries: None,
        };
        tx.send(hello)
            .await
            .map_err(|_| Error::Check("stream closed".into()))?;
        senders.push(tx);
        calls.push(tokio::spawn(async move {
            AccessLogServiceClient::new(c)
                .stream_access_logs(ReceiverStream::new(rx))
                .await
                .map(|_| ())
        }));
    }
    wait_open(server, args.streams as f64).await?;
    let open_seconds = opened.elapsed().as_secs_f64();
    let rss_open = rss_mib(server.pid)?;
    let cpu_start = cpu_seconds(server.pid)?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let cpu_idle = cpu_seconds(server.pid)? - cpu_start;
    let rss_held = rss_mib(server.pid)?;
    drop(senders);
    let mut failed = 0;
    for call in calls {
        if !matches!(call.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    wait_open(server, 0.0).await?;
    let rss_after = rss_mib(server.pid)?;
    let connections = args.streams.div_ceil(per);
    let streams = args.streams.max(1) as f64;
    println!(
        "idle ALS streams: {} over {connections} connections",
        args.streams
    );
    println!("  opened (identified, counted open) in {open_seconds:.2} s");
    println!(
        "  server RSS: {rss_before:.1} MiB before, {rss_open:.1} MiB with them open, {rss_held:.1} MiB after {} s, {rss_after:.1} MiB after they closed",
        args.hold
    );
    println!(
        "  per open stream: {:.1} KiB",
        (rss_held - rss_before) * 1024.0 / streams
    );
    println!(
        "  server CPU while they idled: {:.2} s over {} s ({:.2} % of one core)",
        cpu_idle,
        args.hold,
        100.0 * cpu_idle / args.hold.max(1) as f64
    );
    if failed > 0 {
        return Err(Error::Check(format!(
            "{failed} streams did not end with OK"
        )));
    }
    Ok(())
}
