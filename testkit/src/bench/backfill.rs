//! A large generated mesh sent to a server as real Envoy access logs, hours of it as fast
//! as the server takes them (a backfill): `bench query --ingest als`.
//!
//! `services` services of `instances` pods each and `endpoints` endpoints each; every
//! minute every service is called once, by its neighbour (`i + 1`) on even minutes and by
//! `7i + 3` on odd ones (about two edges per service), on an endpoint and a pod that rotate
//! with the minute; both proxies log every call. So the server counts exactly
//! `services × minutes` calls.

use std::time::Instant;

use futures::StreamExt;

use crate::error::{During, Result};
use crate::sim::{self, Hop, Mesh, Peer, Proto, Target, Workload};

/// The size of the generated mesh.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub services: usize,
    pub instances: usize,
    pub endpoints: usize,
}

/// A name that lives as long as the process (the simulator's workloads hold `&'static
/// str`; a benchmark makes its few thousand once).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Service `i`'s name as meshscope reports it (`svc-0042.bench`).
pub fn service_name(i: usize) -> String {
    format!("svc-{i:04}.bench")
}

/// The mesh: `services × instances` workloads, service `i`'s pods at `i * instances ..`.
pub fn mesh(shape: Shape) -> Mesh {
    let mut workloads = Vec::with_capacity(shape.services * shape.instances);
    for i in 0..shape.services {
        let app = leak(format!("svc-{i:04}"));
        for j in 0..shape.instances {
            let n = workloads.len();
            workloads.push(Workload {
                app,
                version: "v1",
                namespace: "bench",
                pod: format!("{app}-{j}-7c9f8d6b5-x{n:05}"),
                ip: format!("10.{}.{}.{}", 100 + n / 65_536, (n / 256) % 256, n % 256),
                gateway: false,
                port: 8080,
                legacy_proxy: false,
            });
        }
    }
    Mesh { workloads }
}

/// The client of service `server` in minute `m`.
fn client_of(shape: Shape, server: usize, m: i64) -> usize {
    let n = shape.services;
    let other = (server * 7 + 3) % n;
    if m % 2 == 1 && other != server {
        other
    } else {
        (server + 1) % n
    }
}

/// Every call of the minute starting at `minute` (Unix seconds).
pub fn minute_hops(shape: Shape, minute: i64) -> Vec<Hop> {
    let m = minute / 60;
    (0..shape.services)
        .map(|s| {
            let c = client_of(shape, s, m);
            let pod = |service: usize, turn: i64| {
                service * shape.instances + (turn.rem_euclid(shape.instances as i64)) as usize
            };
            let k = (m + s as i64).rem_euclid(shape.endpoints as i64);
            let server_ms = 5 + (s % 50) as u64;
            let error = (m + s as i64) % 25 == 0;
            Hop {
                start_unix_nanos: minute * 1_000_000_000 + (s as i64 % 60) * 1_000_000_000,
                client: Some(pod(c, m / 2)),
                server: Target::Workload(pod(s, m)),
                proto: Proto::Http,
                method: "GET",
                path: format!("/api/item{k}?q=1"),
                endpoint: format!("GET /api/item{k}"),
                status: if error { 503 } else { 200 },
                grpc_status: None,
                failed: false,
                client_latency_nanos: (server_ms + 1) * 1_000_000,
                server_latency_nanos: server_ms * 1_000_000,
                request_bytes: 120,
                response_bytes: 900,
                mtls: true,
                client_reports: true,
                server_reports: true,
                peer_metadata: true,
            }
        })
        .collect()
}

/// Sends `hours` of calls ending at `end_minute` to `peer`, an hour at a time (one stream
/// per proxy and hour, 64 at once, over one connection); returns the calls sent.
pub async fn send(peer: &Peer, shape: Shape, hours: i64, end_minute: i64) -> Result<u64> {
    let mesh = mesh(shape);
    sim::announce(peer, &mesh, 0..mesh.workloads.len())
        .await
        .during("announcing the proxies")?;
    let channel = peer.channel().await?;
    let started = Instant::now();
    let mut calls = 0u64;
    for h in 0..hours {
        let hour_start = end_minute - (hours - h) * 3600;
        let hops: Vec<Hop> = (0..60)
            .flat_map(|m| minute_hops(shape, hour_start + m * 60))
            .collect();
        calls += hops.len() as u64;
        let sends = sim::encode(&mesh, &hops).into_iter().map(|(_, messages)| {
            sim::send_on(channel.clone(), peer, futures::stream::iter(messages))
        });
        let results: Vec<std::result::Result<(), tonic::Status>> = futures::stream::iter(sends)
            .buffer_unordered(64)
            .collect()
            .await;
        for r in results {
            r.during("streaming access logs")?;
        }
        eprint!(
            "\rsending access logs: hour {}/{hours}, {calls} calls, {:.0} calls/s",
            h + 1,
            calls as f64 / started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    Ok(calls)
}
