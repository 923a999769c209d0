//! Whole meshscope processes on one ClickHouse: two collectors and a reader, a ClickHouse
//! outage mid-stream, and a meshscope restart while ClickHouse is down.

use super::*;

/// A `meshscope serve --store clickhouse` child process.
struct Proc {
    child: tokio::process::Child,
    grpc: String,
    http: String,
}

impl Proc {
    async fn start(url: &str, dir: &Path) -> Proc {
        let (grpc, http) = (common::free_port(), common::free_port());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
            .args(["serve", "--store", "clickhouse", "--clickhouse-url", url])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn meshscope");
        common::wait_healthy(&format!("http://127.0.0.1:{http}")).await;
        Proc {
            child,
            grpc: format!("http://127.0.0.1:{grpc}"),
            http: format!("http://127.0.0.1:{http}"),
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        listen::tls::install_default_provider();
        let resp = reqwest::get(format!("{}{path}", self.http))
            .await
            .expect("get");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    /// SIGTERM; the process must flush, hand everything to ClickHouse and exit 0.
    async fn stop(mut self) {
        common::sigterm(&self.child).await;
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exit in time")
            .expect("wait");
        assert!(exit.success(), "exit status {exit:?}");
    }
}

/// Streams the proxies in `proxies` of `hops` to `endpoint`, after announcing every proxy
/// (as each proxy's addresses would be known from peer metadata or static addresses).
async fn send_proxies(endpoint: &str, mesh: &Mesh, hops: &[Hop], keep: impl Fn(usize) -> bool) {
    sim::announce(endpoint, mesh, 0..mesh.workloads.len())
        .await
        .expect("announce");
    let sends = sim::encode(mesh, hops)
        .into_iter()
        .filter(|(p, _)| keep(*p))
        .map(|(_, messages)| sim::send(endpoint, messages));
    for r in futures::future::join_all(sends).await {
        r.expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_and_a_reader_give_the_single_process_numbers() {
    let ch = ClickHouse::start();
    let (mesh, hops, start) = scenario(31, 300);
    let (edges, services, _) = expected(&mesh, &hops);
    let (a_dir, b_dir, r_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    // Two collectors start at once (their migrations race) and each gets half of the
    // proxies: a call's client-side report and its server-side report usually land in
    // different processes, and only ClickHouse sees both.
    let (a, b) = tokio::join!(
        Proc::start(&ch.url, a_dir.path()),
        Proc::start(&ch.url, b_dir.path())
    );
    tokio::join!(
        send_proxies(&a.grpc, &mesh, &hops, |p| p % 2 == 0),
        send_proxies(&b.grpc, &mesh, &hops, |p| p % 2 == 1)
    );
    tokio::join!(a.stop(), b.stop());

    // The same traffic through one process on the embedded store.
    let single_dir = tempfile::tempdir().expect("tempdir");
    let single = common::start(common::config(single_dir.path())).await;
    sim::send_all(&single.grpc, &mesh, &hops)
        .await
        .expect("send");
    single.flush().await;

    let reader = Proc::start(&ch.url, r_dir.path()).await;
    let w = window(start);
    let topo = reader.get(&format!("/api/v1/topology?{w}")).await;
    check_all_edges(&topo, &edges);
    let want_topo = single.ok(&format!("/api/v1/topology?{w}")).await;
    assert_eq!(
        topo, want_topo,
        "topology: ClickHouse reader vs one embedded process"
    );
    let list = reader.get(&format!("/api/v1/services?{w}")).await;
    assert_eq!(list, single.ok(&format!("/api/v1/services?{w}")).await);
    for (name, want) in &services {
        let got = list["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("service {name} missing: {list}"));
        assert_eq!(got["calls"].as_u64(), Some(want.calls), "{name}");
        assert_eq!(got["errors"].as_u64(), Some(want.errors), "{name}");
    }
    // Time series and PromQL read through ClickHouse too.
    let q =
        "/prometheus/api/v1/query?query=sum(increase(traces_service_graph_request_total%5B20m%5D))";
    let total: f64 = reader.get(q).await["data"]["result"][0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("number");
    assert_eq!(total, edges.values().map(|e| e.calls).sum::<u64>() as f64);
    reader.stop().await;
    single.stop().await;
}

/// An in-process meshscope on ClickHouse with a 1 s flush interval and a small memory
/// queue, so an outage fills the disk spool quickly.
pub(crate) fn clickhouse_config(url: &str, dir: &Path) -> meshscope::Config {
    let mut c = common::config(dir);
    c.store.backend = meshscope::Backend::Clickhouse;
    c.clickhouse.url = url.to_string();
    c.clickhouse.buffer_bytes = 16 << 10;
    c.clickhouse.timeout = Duration::from_secs(5);
    c.clickhouse.full_wait = Duration::from_secs(60);
    c.aggregator.flush_interval = Duration::from_secs(1);
    c
}

/// Polls `/metrics` until `cond` holds for the named metric (60 s at most).
async fn wait_metric(stack: &common::Stack, name: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = common::metric_value(&stack.metrics().await, name);
        if cond(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("clickhouse-spool"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spool"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_mid_stream_loses_nothing() {
    let mut ch = ClickHouse::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(clickhouse_config(&ch.url, dir.path())).await;
    let (mesh, hops, start) = scenario(41, 300);
    let (edges, _, _) = expected(&mesh, &hops);
    let thirds: Vec<&[Hop]> = hops.chunks(hops.len().div_ceil(3)).collect();

    sim::send_all(&stack.grpc, &mesh, thirds[0])
        .await
        .expect("send");
    stack.flush().await;

    ch.stop();
    // Two flushes during the outage: the first waits in the (empty) memory queue, the
    // second does not fit beside it and spills to disk.
    let (early, late) = thirds[1].split_at(thirds[1].len() / 2);
    sim::send_all(&stack.grpc, &mesh, early)
        .await
        .expect("send during the outage");
    wait_metric(&stack, "meshscope_clickhouse_insert_failures_total", |v| {
        v > 0.0
    })
    .await;
    wait_metric(&stack, "meshscope_clickhouse_buffered_bytes", |v| v > 0.0).await;
    sim::send_all(&stack.grpc, &mesh, late)
        .await
        .expect("send during the outage");
    wait_metric(&stack, "meshscope_clickhouse_spilled_batches_total", |v| {
        v > 0.0
    })
    .await;
    assert!(spool_files(dir.path()) > 0, "nothing spooled");
    let calls = common::metric_value(&stack.metrics().await, "meshscope_aggregated_calls_total");

    ch.restart();
    sim::send_all(&stack.grpc, &mesh, thirds[2])
        .await
        .expect("send after");
    // An explicit flush waits until memory and spool are in ClickHouse.
    stack.flush().await;
    assert_eq!(spool_files(dir.path()), 0);
    check_topology(&stack, &edges, start).await;
    let m = stack.metrics().await;
    assert!(calls > 0.0);
    assert_eq!(
        common::metric_value(&m, "meshscope_clickhouse_dropped_rows_total"),
        0.0
    );
    assert_eq!(
        common::metric_value(&m, "meshscope_dropped_calls_total"),
        0.0,
        "the aggregator dropped calls"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_meshscope_while_clickhouse_is_down_loses_nothing() {
    let mut ch = ClickHouse::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mesh, hops, start) = scenario(43, 300);
    let (edges, _, _) = expected(&mesh, &hops);
    let thirds: Vec<&[Hop]> = hops.chunks(hops.len().div_ceil(3)).collect();

    // Only the shutdown flush writes the second third, into a roomy memory queue.
    let mut config = clickhouse_config(&ch.url, dir.path());
    config.aggregator.flush_interval = Duration::from_secs(3600);
    config.clickhouse.buffer_bytes = 64 << 20;
    let stack = common::start(config).await;
    sim::send_all(&stack.grpc, &mesh, thirds[0])
        .await
        .expect("send");
    stack.flush().await;
    ch.stop();
    sim::send_all(&stack.grpc, &mesh, thirds[1])
        .await
        .expect("send");
    // Shutdown cannot reach ClickHouse: what the queue holds goes to the spool.
    stack.stop().await;
    assert!(spool_files(dir.path()) > 0, "shutdown spooled nothing");

    // A new process starts although ClickHouse is still down, takes more traffic, and
    // sends the old spool and the new rows once ClickHouse is back.
    let stack = common::start(clickhouse_config(&ch.url, dir.path())).await;
    sim::send_all(&stack.grpc, &mesh, thirds[2])
        .await
        .expect("send");
    ch.restart();
    stack.flush().await;
    assert_eq!(spool_files(dir.path()), 0);
    check_topology(&stack, &edges, start).await;
    stack.stop().await;
}

/// A store that cannot answer now is a 503 on both APIs, with the reason, not a 500; the
/// process keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_clickhouse_is_unavailable_not_an_internal_error() {
    // Nothing listens there: open tolerates it, every read fails to connect.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(clickhouse_config(&url, dir.path())).await;
    for path in ["/api/v1/services", "/api/v1/topology"] {
        let (status, body) = stack.get(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("ClickHouse")),
            "{path}: {body}"
        );
    }
    let (status, body) = stack
        .get("/prometheus/api/v1/query?query=sum(meshscope_service_calls_total)")
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "unavailable", "{body}");
    let (status, _) = stack.get("/api/v1/services?start=x").await;
    assert_eq!(status, 400, "bad input is still the client's fault");
    stack.stop().await;
}
