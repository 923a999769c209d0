//! The traffic behind `meshscope demo`: the simulated bookinfo mesh over long-lived ALS
//! streams and the traced shop over OTLP/gRPC, live, until aborted.

use std::collections::HashMap;

use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use tokio::sync::mpsc;

use crate::now_nanos;
use crate::sim::{Generator, Hop, Peer, announce, entries, send_on, stream_messages};
use crate::traces::{Exporter, Shop, Spans};

/// Streams live traffic at `rate` user requests per second over long-lived ALS streams,
/// one per proxy and logger, as Envoy does; a stream that fails is reopened on the next
/// tick. Alongside, the traced shop of [`crate::traces`] exports OTLP spans over gRPC at
/// half the rate, and `ratings` exports spans for the mesh's calls into it. Runs until
/// aborted. `peer` is the server's gRPC listener (with TLS and a token when it needs them).
pub async fn run_traffic(peer: Peer, rate: u32) {
    let mut generator = Generator::new(now_nanos() as u64);
    // Proxies open their streams when they start, before traffic flows.
    let all = 0..generator.mesh.workloads.len();
    if let Err(e) = announce(&peer, &generator.mesh, all).await {
        tracing::warn!(error = %e, "demo traffic could not announce its proxies");
    }
    let mut streams: HashMap<(usize, bool), mpsc::Sender<StreamAccessLogsMessage>> = HashMap::new();
    let ticks_per_second = 5u32;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        1000 / u64::from(ticks_per_second),
    ));
    let per_tick = (rate / ticks_per_second).max(1);
    let mut shop = Shop::new(now_nanos() as u64 ^ 0x5eed);
    let mut exporter: Option<Exporter> = None;
    loop {
        tick.tick().await;
        let now = now_nanos();
        let spread = 200_000_000 / i64::from(per_tick);
        let hops: Vec<Hop> = (0..per_tick)
            .flat_map(|i| generator.user_request(now - 200_000_000 + i64::from(i) * spread))
            .collect();
        let mut spans = Spans::default();
        shop.mesh_server_spans(&generator.mesh, &hops, &mut spans);
        for i in 0..per_tick.div_ceil(2) {
            shop.request(now - 200_000_000 + 2 * i64::from(i) * spread, &mut spans);
        }
        if exporter.is_none() {
            match Exporter::connect(&peer).await {
                Ok(e) => exporter = Some(e),
                Err(e) => tracing::warn!(error = %e, "demo traces could not connect"),
            }
        }
        if let Some(e) = exporter.as_mut() {
            for request in spans.requests(512) {
                if let Err(err) = e.export(request).await {
                    tracing::warn!(error = %err, "demo trace export failed; reconnecting");
                    exporter = None;
                    break;
                }
            }
        }
        for (proxy, log) in entries(&generator.mesh, &hops) {
            for tcp in [false, true] {
                if (tcp && log.tcp.is_empty()) || (!tcp && log.http.is_empty()) {
                    continue;
                }
                let key = (proxy, tcp);
                let fresh = streams.get(&key).is_none_or(|tx| tx.is_closed());
                if fresh {
                    let (tx, rx) = mpsc::channel(64);
                    tokio::spawn(stream(peer.clone(), rx));
                    streams.insert(key, tx);
                }
                let mut messages =
                    stream_messages(&generator.mesh.workloads[proxy], log.clone(), tcp);
                if !fresh {
                    for m in &mut messages {
                        m.identifier = None;
                    }
                }
                if let Some(tx) = streams.get(&key) {
                    for m in messages {
                        if tx.send(m).await.is_err() {
                            streams.remove(&key);
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// One proxy's long-lived access-log stream, fed from `rx`.
async fn stream(peer: Peer, rx: mpsc::Receiver<StreamAccessLogsMessage>) {
    let channel = match peer.channel().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "demo traffic could not connect");
            return;
        }
    };
    let messages = tokio_stream::wrappers::ReceiverStream::new(rx);
    if let Err(e) = send_on(channel, &peer, messages).await {
        tracing::debug!(error = %e, "demo stream ended");
    }
}
