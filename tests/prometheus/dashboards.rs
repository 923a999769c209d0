//! Every query of the shipped dashboards, and of Grafana's service-graph view, returns
//! data on what `meshscope demo` sends.

use super::*;

/// Every panel of a dashboard, rows' nested panels included.
fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    // What `meshscope demo` sends: mesh traffic over ALS and the shop's spans over OTLP,
    // seven minutes ending about now.
    let now = common::now_nanos() / 1_000_000_000;
    let start = now - 7 * 60;
    let mut g = Generator::new(21);
    let hops: Vec<Hop> = (0..280)
        .flat_map(|i| g.user_request((start * 1000 + i * 1500) * 1_000_000))
        .collect();
    sim::send_all(&stack.grpc, &g.mesh, &hops)
        .await
        .expect("send");
    let mut shop = testkit::traces::Shop::new(3);
    let mut spans = testkit::traces::Spans::default();
    for i in 0..60 {
        shop.request((start + i * 7) * 1_000_000_000, &mut spans);
    }
    let mut exporter = testkit::traces::Exporter::connect(&stack.grpc)
        .await
        .expect("connect");
    for r in spans.requests(256) {
        exporter.export(r).await.expect("export");
    }
    stack.flush().await;

    let vars = [
        ("$__rate_interval", "4m"),
        ("$__range", "15m"),
        ("$__interval", "1m"),
        ("${service}", "reviews.default"),
        ("$service", "reviews.default"),
        ("${client}", "productpage.default"),
        ("$client", "productpage.default"),
        ("${server}", "reviews.default"),
        ("$server", "reviews.default"),
    ];
    let subst = |q: &str| vars.iter().fold(q.to_string(), |q, (k, v)| q.replace(k, v));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let mut ran = 0;
    for file in &files {
        let name = file.display().to_string();
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("json");
        // Template variables: label_values(selector, label) must list values.
        for var in d["templating"]["list"].as_array().into_iter().flatten() {
            if var["type"] != "query" {
                continue;
            }
            let q = var["query"].as_str().expect("variable query is a string");
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: {q} is not label_values"));
            let (selector, label) = inner.rsplit_once(',').expect("label_values(sel, label)");
            let path = format!(
                "/api/v1/label/{}/values?match[]={}&start={}&end={now}",
                label.trim(),
                enc(&subst(selector.trim())),
                now - 900
            );
            let (status, got) = prom_get(&stack, &path).await;
            assert_eq!(status, 200, "{name} {q}: {got}");
            assert!(!strings(&got).is_empty(), "{name} {q}: no values");
            ran += 1;
        }
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("");
            for target in p["targets"].as_array().into_iter().flatten() {
                let ds = if target["datasource"]["type"].is_string() {
                    &target["datasource"]["type"]
                } else {
                    &p["datasource"]["type"]
                };
                if ds == "tempo" {
                    assert_eq!(target["queryType"], "serviceMap", "{name} {title}");
                    for q in SERVICE_GRAPH_QUERIES {
                        assert!(
                            !instant_both_ways(&stack, q, now).await.is_empty(),
                            "{name} {title}: {q}"
                        );
                        ran += 1;
                    }
                    continue;
                }
                assert_eq!(ds, "prometheus", "{name} {title}");
                let q = subst(target["expr"].as_str().expect("expr"));
                assert!(!q.contains('$'), "{name} {title}: unknown variable in {q}");
                if target["instant"] == true {
                    let got = instant_both_ways(&stack, &q, now).await;
                    assert!(!got.is_empty(), "{name} {title}: {q} returned nothing");
                } else {
                    // Mesh and trace sources both report here: the merged instant reads
                    // keep to the source and side rules.
                    instant_both_ways(&stack, &q, now).await;
                    let got = range(&stack, &q, now - 900, now, 60).await;
                    assert!(!got.is_empty(), "{name} {title}: {q} returned nothing");
                }
                ran += 1;
            }
        }
    }
    assert!(ran >= 60, "only {ran} queries ran");
    // Before drawing, Grafana's service-graph view checks the series exist (label names
    // of a `__name__` regex).
    let sel = enc(
        r#"{__name__=~"traces_service_graph_request_server_seconds_sum|traces_service_graph_request_total|traces_service_graph_request_failed_total"}"#,
    );
    let (status, got) = prom_get(
        &stack,
        &format!("/api/v1/labels?match[]={sel}&start={}&end={now}", now - 900),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert!(strings(&got).contains("client"), "{got}");
    stack.stop().await;
}
