//! The metadata endpoints Grafana's editors use (`labels`, `label/{name}/values`,
//! `series`, `metadata`, `status/buildinfo`), scalar queries, and refusals of bad input.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_endpoints_and_scalar_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let mut g = Generator::new(5);
    let start = (common::now_nanos() / 60_000_000_000 - 4) * 60;
    let hops: Vec<Hop> = (0..120)
        .flat_map(|i| g.user_request(start * 1_000_000_000 + i * 1_000_000_000))
        .collect();
    sim::send_all(&stack.grpc, &g.mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    let window = format!("start={}&end={}", start - 60, start + 600);

    // Destinations and edges, from the ground truth (a gateway's hop is also the call it
    // received from outside: `unknown → gateway`).
    let mut servers = BTreeSet::new();
    let mut into_reviews = BTreeSet::new();
    for h in &hops {
        let server = g.mesh.server_name(h);
        if server == "reviews.default" {
            into_reviews.insert((g.mesh.client_name(h), h.proto.as_str().to_string()));
        }
        servers.insert(server);
        if let Some(c) = h.client.filter(|c| g.mesh.workloads[*c].gateway) {
            servers.insert(g.mesh.workloads[c].service());
        }
    }
    assert!(
        hops.iter()
            .any(|h| matches!(h.server, Target::External { .. }))
    );

    let (status, info) = prom_get(&stack, "/api/v1/status/buildinfo").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["status"], "success");
    assert!(
        info["data"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2."))
    );

    // Grafana's health check, as GET and as a form POST.
    let (status, q) = prom_get(&stack, "/api/v1/query?query=1%2B1&time=1700000000").await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["data"]["resultType"], "scalar");
    assert_eq!(q["data"]["result"][1], "2");
    let (status, q) = prom_post(&stack, "/api/v1/query", &[("query", "1+1")]).await;
    assert_eq!(
        (status, &q["data"]["result"][1]),
        (200, &Value::from("2")),
        "{q}"
    );
    let (status, q) = prom_post(
        &stack,
        "/api/v1/query_range",
        &[
            ("query", "2*3"),
            ("start", "1700000000"),
            ("end", "1700000600"),
            ("step", "1m"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["data"]["resultType"], "matrix");
    assert_eq!(
        q["data"]["result"][0]["values"].as_array().map(Vec::len),
        Some(11)
    );
    assert_eq!(q["data"]["result"][0]["values"][3][1], "6");

    let (status, labels) = prom_get(&stack, "/api/v1/labels").await;
    assert_eq!(status, 200);
    let want: BTreeSet<String> = [
        "__name__",
        "client",
        "connection_type",
        "endpoint",
        "instance",
        "le",
        "quantile",
        "server",
        "service",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(strings(&labels), want);

    let (_, names) = prom_get(&stack, &format!("/api/v1/label/__name__/values?{window}")).await;
    let names = strings(&names);
    for n in [
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_server_seconds_bucket",
        "traces_service_graph_request_client_seconds_count",
        "meshscope_service_calls_total",
        "meshscope_endpoint_latency_seconds_sum",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }

    let (_, got) = prom_get(&stack, &format!("/api/v1/label/server/values?{window}")).await;
    assert_eq!(strings(&got), servers);
    let (_, got) = prom_get(&stack, &format!("/api/v1/label/service/values?{window}")).await;
    assert_eq!(strings(&got), servers);

    // Series of one edge family into reviews: one per caller and protocol.
    let sel = enc(r#"traces_service_graph_request_total{server="reviews.default"}"#);
    let (status, got) = prom_get(&stack, &format!("/api/v1/series?match[]={sel}&{window}")).await;
    assert_eq!(status, 200, "{got}");
    let edges: BTreeSet<(String, String)> = got["data"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            assert_eq!(s["__name__"], "traces_service_graph_request_total");
            assert_eq!(s["server"], "reviews.default");
            (
                s["client"].as_str().expect("client").to_string(),
                s["connection_type"].as_str().expect("type").to_string(),
            )
        })
        .collect();
    assert_eq!(edges, into_reviews);

    // Regex matchers and OR across match[], as a form POST.
    let (status, got) = prom_post(
        &stack,
        "/api/v1/series",
        &[
            ("match[]", r#"{__name__=~"meshscope_service_calls_total|meshscope_service_errors_total", service=~"rev.*"}"#),
            ("match[]", r#"meshscope_service_calls_total{service="details.default"}"#),
            ("start", &(start - 60).to_string()),
            ("end", &(start + 600).to_string()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["data"].as_array().map(Vec::len), Some(3), "{got}");

    // Buckets carry `le` up to +Inf.
    let sel = enc(
        r#"traces_service_graph_request_server_seconds_bucket{server="details.default",client="productpage.default"}"#,
    );
    let (_, got) = prom_get(&stack, &format!("/api/v1/series?match[]={sel}&{window}")).await;
    let les: Vec<&str> = got["data"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| s["le"].as_str().expect("le"))
        .collect();
    assert_eq!(les.len(), 12, "{got}");
    assert!(les.contains(&"+Inf"));

    // What Grafana also asks: no exemplars, rules or alerts are kept (empty, not 404).
    let (status, got) = prom_get(
        &stack,
        &format!(
            "/api/v1/query_exemplars?query={}&{window}",
            enc("meshscope_service_calls_total")
        ),
    )
    .await;
    assert_eq!(
        (status, got["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{got}"
    );
    let (status, got) = prom_get(&stack, "/api/v1/rules").await;
    assert_eq!(
        (status, &got["data"]["groups"]),
        (200, &Value::Array(vec![])),
        "{got}"
    );
    let (status, got) = prom_get(&stack, "/api/v1/alerts").await;
    assert_eq!(
        (status, &got["data"]["alerts"]),
        (200, &Value::Array(vec![])),
        "{got}"
    );

    let (_, meta) = prom_get(
        &stack,
        "/api/v1/metadata?metric=traces_service_graph_request_server_seconds",
    )
    .await;
    assert_eq!(
        meta["data"]["traces_service_graph_request_server_seconds"][0]["type"],
        "histogram"
    );

    // Hostile and bad input: clear errors in Prometheus' shape, never a wrong answer.
    let hostile = enc(
        r#"traces_service_graph_request_total{client="a\" OR 1=1 --", server=~".*'; DROP TABLE x; --"}"#,
    );
    let (status, got) = prom_get(
        &stack,
        &format!("/api/v1/series?match[]={hostile}&{window}"),
    )
    .await;
    assert_eq!(
        (status, got["data"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{got}"
    );
    for (path, status_want, kind) in [
        ("/api/v1/series".to_string(), 400, "bad_data"),
        (
            format!("/api/v1/series?match[]={}", enc("sum(x)")),
            400,
            "bad_data",
        ),
        (
            format!("/api/v1/series?match[]={}", enc("{a=~\"(\"}")),
            400,
            "bad_data",
        ),
        ("/api/v1/label/a-b/values".to_string(), 400, "bad_data"),
        (
            "/api/v1/query?query=".to_string() + &enc("rate(x[5m]"),
            400,
            "bad_data",
        ),
        (
            "/api/v1/query?query=".to_string()
                + &enc("quantile(0.5, rate(traces_service_graph_request_total[5m]))"),
            422,
            "execution",
        ),
        (
            "/api/v1/query_range?query=1&start=0&end=100000&step=1".to_string(),
            400,
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=1&start=0&end=10&step=0".to_string(),
            400,
            "bad_data",
        ),
        (
            "/api/v1/query?query=1&time=1e300".to_string(),
            400,
            "bad_data",
        ),
    ] {
        let (status, got) = prom_get(&stack, &path).await;
        assert_eq!(status, status_want, "{path}: {got}");
        assert_eq!(got["status"], "error", "{path}: {got}");
        assert_eq!(got["errorType"], kind, "{path}: {got}");
        assert!(
            got["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {got}"
        );
    }
    stack.stop().await;
}
