//! End to end with generated bookinfo traffic: real ALS over gRPC in, JSON API out, every
//! figure checked against values computed here from the generated hops.

mod common;

use std::collections::BTreeMap;

use common::truth::{APDEX_T, Expect, check_all_edges, check_metrics, expected, scenario, window};
use serde_json::Value;
use testkit::sim::{self, Hop, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_mesh_gives_exact_topology_services_and_endpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let (mesh, hops, start) = scenario(7, 300);
    sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    let (edges, services, endpoints) = expected(&mesh, &hops);

    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    check_all_edges(&topo, &edges);
    // Every node of the graph is either a real workload or one of the virtual nodes.
    for n in topo["nodes"].as_array().expect("nodes") {
        let name = n["name"].as_str().expect("name");
        let real = n["real"].as_bool().expect("real");
        assert_eq!(
            real,
            name != "unknown" && name != "api.example.com:443",
            "{n}"
        );
    }

    let list = stack
        .ok(&format!("/api/v1/services?{}", window(start)))
        .await;
    for (name, want) in &services {
        let s = list["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("missing service {name}"));
        check_metrics(&format!("service {name}"), s, want);
    }

    for ((service, endpoint), want) in &endpoints {
        let eps = stack
            .ok(&format!(
                "/api/v1/services/{service}/endpoints?{}",
                window(start)
            ))
            .await;
        let e = eps["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .find(|e| e["name"] == *endpoint)
            .unwrap_or_else(|| panic!("missing endpoint {service} {endpoint}: {eps}"));
        check_metrics(&format!("endpoint {service} {endpoint}"), e, want);
    }

    // Instances of reviews: one per pod that served requests, calls summing to the service.
    let inst = stack
        .ok(&format!(
            "/api/v1/services/reviews.default/instances?{}",
            window(start)
        ))
        .await;
    let total: u64 = inst["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["calls"].as_u64().expect("calls"))
        .sum();
    assert_eq!(total, services["reviews.default"].calls);

    // Time series of one edge sums to the edge's calls; per-minute points are whole minutes.
    let pts = stack
        .ok(&format!(
            "/api/v1/timeseries?entity=edge&client=productpage.default&server=details.default&metric=calls&step=60&{}",
            window(start)
        ))
        .await;
    let sum: f64 = pts["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p[1].as_f64().expect("v"))
        .sum();
    let key = (
        "productpage.default".to_string(),
        "details.default".to_string(),
        "http".to_string(),
    );
    assert_eq!(sum as u64, edges[&key].calls);

    // Per-minute service series: every point is the calls whose start fell in that
    // minute, counted from the generated hops.
    let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for hop in &hops {
        if mesh.server_name(hop) == "reviews.default" {
            *per_minute
                .entry(hop.start_unix_nanos.div_euclid(60_000_000_000) * 60)
                .or_default() += 1;
        }
    }
    let pts = stack
        .ok(&format!(
            "/api/v1/timeseries?entity=service&service=reviews.default&metric=calls&step=60&{}",
            window(start)
        ))
        .await;
    let got: BTreeMap<i64, u64> = pts["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p[0].as_i64().expect("t"), p[1].as_f64().expect("v") as u64))
        .filter(|(_, v)| *v > 0)
        .collect();
    assert_eq!(got, per_minute);

    // Instance topology: one edge per (client pod, server pod), counted once.
    let mut pods: BTreeMap<(String, String), u64> = BTreeMap::new();
    for hop in hops.iter().filter(|h| {
        mesh.client_name(h) == "productpage.default" && mesh.server_name(h) == "reviews.default"
    }) {
        let (Some(c), Target::Workload(s)) = (hop.client, &hop.server) else {
            continue;
        };
        let key = (
            format!("productpage.default/{}", mesh.workloads[c].pod),
            format!("reviews.default/{}", mesh.workloads[*s].pod),
        );
        *pods.entry(key).or_default() += 1;
    }
    let inst = stack
        .ok(&format!(
            "/api/v1/topology/instances?client=productpage.default&server=reviews.default&{}",
            window(start)
        ))
        .await;
    assert_eq!(common::truth::edge_calls(&inst), pods, "{inst}");

    // Focus on ratings with depth 1: its callers and its database, nothing else.
    let focus = stack
        .ok(&format!(
            "/api/v1/topology?service=ratings.default&depth=1&{}",
            window(start)
        ))
        .await;
    let focus_edges = focus["edges"].as_array().expect("edges");
    let want: Vec<_> = edges
        .keys()
        .filter(|(c, s, _)| c == "ratings.default" || s == "ratings.default")
        .collect();
    assert_eq!(focus_edges.len(), want.len(), "{focus}");
    for e in focus_edges {
        assert!(
            e["source"] == "ratings.default" || e["target"] == "ratings.default",
            "{e}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mesh, hops, start) = scenario(11, 200);
    let (first, second) = hops.split_at(hops.len() / 2);
    let (edges, _, _) = expected(&mesh, &hops);
    let key = (
        "productpage.default".to_string(),
        "reviews.default".to_string(),
        "http".to_string(),
    );

    let stack = common::start(common::config(dir.path())).await;
    sim::send_all(&stack.grpc, &mesh, first)
        .await
        .expect("send first half");
    // No explicit flush: shutdown must flush what it received.
    stack.stop().await;

    let stack = common::start(common::config(dir.path())).await;
    sim::send_all(&stack.grpc, &mesh, second)
        .await
        .expect("send second half");
    stack.flush().await;
    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    check_all_edges(&topo, &edges);
    assert!(edges.contains_key(&key));
    stack.stop().await;

    // A third start with nothing new reads the same numbers.
    let stack = common::start(common::config(dir.path())).await;
    let again = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    assert_eq!(topo["edges"], again["edges"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_many_small_flushes_merge_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.store.compact_min_files = 3;
    let stack = common::start(config).await;
    let (mesh, hops, start) = scenario(5, 120);
    let (edges, services, _) = expected(&mesh, &hops);
    // Ten slices, each flushed to its own files: late data lands in minutes already on disk.
    for chunk in hops.chunks(hops.len().div_ceil(10)) {
        sim::send_all(&stack.grpc, &mesh, chunk)
            .await
            .expect("send");
        stack.flush().await;
    }
    stack.app.aggregator.maintain().await.expect("maintenance");
    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    check_all_edges(&topo, &edges);
    let list = stack
        .ok(&format!("/api/v1/services?{}", window(start)))
        .await;
    let pp = list["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "productpage.default")
        .cloned()
        .expect("productpage");
    check_metrics("productpage", &pp, &services["productpage.default"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("manifest"))
            .expect("json");
    let files = manifest["files"].as_array().expect("files").len();
    // 5 tables x 10 flushes are 50 files (more where a flush spans minutes of two days);
    // maintenance adds them to one hour and one day file per table and day, and
    // compaction leaves one minute file per table and day beside those.
    assert!(
        files <= 30,
        "expected compaction to leave few files, found {files}"
    );
    // Replaced files stay until the grace period ends; every live file exists.
    let on_disk = walk(dir.path());
    for f in manifest["files"].as_array().expect("files") {
        let path = dir.path().join(f["path"].as_str().expect("path"));
        assert!(
            on_disk.contains(&path.to_string_lossy().into_owned()),
            "{path:?} missing"
        );
    }
    stack.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Istio < 1.24 proxies (details here) log peers as FlatBuffers under `wasm.*_peer`.
/// Without any announced addresses, only that metadata can name the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_flatbuffers_peers_name_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let (mesh, hops, start) = scenario(13, 200);
    let details = mesh
        .workloads
        .iter()
        .position(|w| w.app == "details")
        .expect("details");
    assert!(mesh.workloads[details].legacy_proxy);
    // Only the details proxy's stream, and no announcements.
    for (proxy, messages) in sim::encode(&mesh, &hops) {
        if proxy == details {
            sim::send(&stack.grpc, messages).await.expect("send");
        }
    }
    stack.flush().await;
    let into_details: Vec<&Hop> = hops
        .iter()
        .filter(|h| h.server == Target::Workload(details))
        .collect();
    let named = into_details
        .iter()
        .filter(|h| h.client.is_some() && h.peer_metadata)
        .count() as u64;
    let anonymous = into_details.len() as u64 - named;
    assert!(named > 0 && anonymous > 0);
    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    let calls = |source: &str| {
        topo["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .find(|e| e["source"] == source && e["target"] == "details.default")
            .and_then(|e| e["calls"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(calls("productpage.default"), named, "{topo}");
    assert_eq!(calls("unknown"), anonymous, "{topo}");
    stack.stop().await;
}

/// `ratings.default` is meshed *and* instrumented: its sidecar and its spans report every
/// call into it. By default the mesh counts (one source per destination), so ratings and
/// its inbound edges show the mesh's figures exactly once; the spans still add what only
/// they know: ratings' MongoDB queries. With `[dedup.services] "ratings.default" = "trace"`
/// the spans count instead, and the mesh's edges into ratings give way to the trace's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrumented_meshed_service_is_counted_once() {
    use common::otel;
    use opentelemetry::trace::{
        Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};

    for prefer_trace in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = common::config(dir.path());
        if prefer_trace {
            config
                .dedup
                .services
                .insert("ratings.default".into(), proto::Source::Trace);
        }
        let stack = common::start(config).await;
        let (mesh, hops, start) = scenario(11, 200);
        sim::send_all(&stack.grpc, &mesh, &hops)
            .await
            .expect("send");

        let into_ratings: Vec<&Hop> = hops
            .iter()
            .filter(
                |h| matches!(h.server, Target::Workload(w) if mesh.workloads[w].app == "ratings"),
            )
            .collect();
        assert!(into_ratings.len() > 20, "the scenario calls ratings");
        let mut providers = BTreeMap::new();
        for hop in &into_ratings {
            let Target::Workload(w) = hop.server else {
                unreachable!()
            };
            let pod = mesh.workloads[w].pod.clone();
            providers.entry(pod.clone()).or_insert_with(|| {
                otel::provider(&stack, otel::Transport::Grpc, "ratings", "default", &pod)
            });
        }
        let mut db = Expect {
            client_seen: true,
            ..Expect::default()
        };
        let mut traced = Expect {
            server_seen: true,
            ..Expect::default()
        };
        for (i, hop) in into_ratings.iter().enumerate() {
            let Target::Workload(w) = hop.server else {
                unreachable!()
            };
            let tracer = providers[&mesh.workloads[w].pod].tracer("ratings");
            // The caller's span belongs to a tracer that exports elsewhere.
            let parent =
                Context::new().with_remote_span_context(otel::foreign_parent(i as u64 + 1));
            let t = hop.start_unix_nanos;
            let mut server = tracer
                .span_builder("GET /ratings/{id}")
                .with_kind(SpanKind::Server)
                .with_start_time(otel::at(t))
                .with_attributes(vec![
                    KeyValue::new("http.request.method", hop.method),
                    KeyValue::new("http.route", "/ratings/{id}"),
                ])
                .start_with_context(&tracer, &parent);
            if hop.is_error() {
                server.set_status(Status::error("failed"));
            }
            let cx = Context::new().with_remote_span_context(server.span_context().clone());
            let query = hop.server_latency_nanos / 2;
            let mut q = tracer
                .span_builder("find ratings")
                .with_kind(SpanKind::Client)
                .with_start_time(otel::at(t + 1000))
                .with_attributes(vec![
                    KeyValue::new("db.system", "mongodb"),
                    KeyValue::new("db.namespace", "ratings"),
                ])
                .start_with_context(&tracer, &cx);
            q.end_with_timestamp(otel::at(t + 1000 + query as i64));
            server.end_with_timestamp(otel::at(t + hop.server_latency_nanos as i64));
            for (e, latency, error) in [
                (&mut db, query, false),
                (&mut traced, hop.server_latency_nanos, hop.is_error()),
            ] {
                e.calls += 1;
                e.errors += u64::from(error);
                e.latencies.push(latency);
                if !error {
                    e.apdex_points += if latency <= APDEX_T {
                        1.0
                    } else if latency <= 4 * APDEX_T {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        otel::finish(providers.into_values().collect()).await;
        stack.flush().await;

        let (mut edges, services, _) = expected(&mesh, &hops);
        edges.insert(
            (
                "ratings.default".into(),
                "mongodb/ratings".into(),
                "database".into(),
            ),
            db.clone(),
        );
        if prefer_trace {
            edges.retain(|(_, s, _), _| s != "ratings.default");
            edges.insert(
                ("unknown".into(), "ratings.default".into(), "http".into()),
                traced.clone(),
            );
        }
        let topo = stack
            .ok(&format!("/api/v1/topology?{}", window(start)))
            .await;
        check_all_edges(&topo, &edges);
        for e in topo["edges"].as_array().expect("edges") {
            let traced_edge = e["target"] == "mongodb/ratings"
                || (prefer_trace && e["target"] == "ratings.default");
            let want = if traced_edge { "trace" } else { "mesh" };
            assert_eq!(e["telemetry"], want, "{e}");
        }
        let listed = stack
            .ok(&format!("/api/v1/services?{}", window(start)))
            .await;
        let ratings = listed["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == "ratings.default")
            .expect("ratings listed")
            .clone();
        let want = if prefer_trace {
            traced.clone()
        } else {
            services["ratings.default"].clone()
        };
        assert_eq!(want.calls, into_ratings.len() as u64);
        check_metrics("service ratings.default", &ratings, &want);
        stack.stop().await;
    }
}
