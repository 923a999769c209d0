//! The Prometheus-compatible API under `/prometheus` (metadata endpoints, PromQL, the
//! shipped dashboards' queries, promtool), over real HTTP against a stack loaded with simulated mesh
//! traffic; expected label values are computed from the generated hops.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::truth::{Expect, Expected, expected};

use serde_json::Value;
use testkit::sim::{self, Generator, Hop, Target};

async fn prom_get(stack: &common::Stack, path_and_query: &str) -> (u16, Value) {
    stack.get(&format!("/prometheus{path_and_query}")).await
}

async fn prom_post(stack: &common::Stack, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/prometheus{path}", stack.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).expect("encode")[2..].to_string()
}

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

/// One series of a query result: labels (`__name__` included when kept) and value.
type Labels = BTreeMap<String, String>;

fn number(v: &Value) -> f64 {
    match v.as_str().expect("sample value is a string") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().expect("number"),
    }
}

fn labels_of(v: &Value) -> Labels {
    v.as_object()
        .expect("metric")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
        .collect()
}

/// An instant query's vector, by label set.
async fn instant(stack: &common::Stack, q: &str, t: i64) -> BTreeMap<Labels, f64> {
    let (status, got) = prom_post(
        stack,
        "/api/v1/query",
        &[("query", q), ("time", &t.to_string())],
    )
    .await;
    assert_eq!(status, 200, "{q}: {got}");
    assert_eq!(got["data"]["resultType"], "vector", "{q}: {got}");
    let mut out = BTreeMap::new();
    for s in got["data"]["result"].as_array().expect("result") {
        assert_eq!(s["value"][0].as_f64(), Some(t as f64), "{q}");
        let prev = out.insert(labels_of(&s["metric"]), number(&s["value"][1]));
        assert!(prev.is_none(), "{q}: duplicate series");
    }
    out
}

/// A range query's matrix: per label set, `(unix seconds, value)`.
async fn range(
    stack: &common::Stack,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let (status, got) = prom_get(
        stack,
        &format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            enc(q)
        ),
    )
    .await;
    assert_eq!(status, 200, "{q}: {got}");
    assert_eq!(got["data"]["resultType"], "matrix", "{q}: {got}");
    got["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| (p[0].as_f64().expect("time") as i64, number(&p[1])))
                .collect();
            (labels_of(&s["metric"]), points)
        })
        .collect()
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Exact equality of two result maps (values compared to 1e-12 relative).
fn same(q: &str, got: &BTreeMap<Labels, f64>, want: &BTreeMap<Labels, f64>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{q}: series"
    );
    for (k, w) in want {
        assert!(
            common::rel(got[k], *w) < 1e-12,
            "{q} {k:?}: {} != {w}",
            got[k]
        );
    }
}

/// An instant query's vector at `t`, checked against the general path. `read_at` is when
/// its selectors read (`t` unless `offset`/`@` move it). The general path gets the same
/// query `or`-ed with an `increase` matching nothing that reads 1 ms before `read_at`:
/// selectors reading at different times make the evaluator load every minute, while an
/// instant query of `rate`/`increase` at one time alone reads merged totals. The extra
/// selector's window lies inside the query's, so both paths decide the source and side
/// rules over the same window, and must give the same series and values.
async fn instant_both_ways(
    stack: &common::Stack,
    q: &str,
    t: i64,
    read_at: i64,
) -> BTreeMap<Labels, f64> {
    let got = instant(stack, q, t).await;
    let general = format!(
        "({q}) or increase(meshscope_service_calls_total{{service=\"no such service\"}}[1ms] @ {}.999)",
        read_at - 1
    );
    same(
        &format!("{q} (merged reads vs every minute)"),
        &got,
        &instant(stack, &general, t).await,
    );
    got
}

/// Runs Debian's `promtool` against the API; its stdout.
fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (Debian package `prometheus`; `.ci/deps` installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "promtool {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `promtool query instant` lines: `{a="b", c="d"} => 12 @[1700000000]`.
fn promtool_vector(text: &str) -> BTreeMap<Labels, f64> {
    text.lines()
        .filter_map(|line| line.split_once(" => "))
        .map(|(metric, rest)| {
            let labels = metric
                .trim_matches(|c| c == '{' || c == '}')
                .split(", ")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("label");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            let value = rest.split(" @[").next().expect("value").trim();
            (labels, value.parse().expect("number"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_counts_exactly_at_minute_resolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let mut g = Generator::new(11);
    // Five minutes of traffic starting twelve minutes ago, one user request a second.
    let m0 = (common::now_nanos() / 60_000_000_000 - 12) * 60;
    let hops: Vec<Hop> = (0..300)
        .flat_map(|i| g.user_request((m0 + i) * 1_000_000_000))
        .collect();
    sim::send_all(&stack.grpc, &g.mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;

    // The truth per minute (a call belongs to the minute it started in).
    let mut by_minute: BTreeMap<i64, Vec<Hop>> = BTreeMap::new();
    for h in &hops {
        by_minute
            .entry(h.start_unix_nanos.div_euclid(60_000_000_000) * 60)
            .or_default()
            .push(h.clone());
    }
    let truth: BTreeMap<i64, Expected> = by_minute
        .iter()
        .map(|(m, hs)| (*m, expected(&g.mesh, hs)))
        .collect();
    // Minutes that ended in (t − r, t].
    let minutes = |t: i64, r: i64| {
        truth
            .iter()
            .filter(move |(m, _)| **m + 60 > t - r && **m + 60 <= t)
            .map(|(_, e)| e)
    };
    let edge_sums = |t: i64, r: i64, f: &dyn Fn(&Expect) -> f64| {
        let mut out: BTreeMap<Labels, f64> = BTreeMap::new();
        for (edges, _, _) in minutes(t, r) {
            for ((c, s, p), e) in edges {
                *out.entry(l(&[("client", c), ("server", s), ("connection_type", p)]))
                    .or_default() += f(e);
            }
        }
        out
    };
    let t = m0 + 7 * 60;

    // increase over the whole traffic: every edge's exact call count.
    let q = "increase(traces_service_graph_request_total[7m])";
    let want = edge_sums(t, 420, &|e| e.calls as f64);
    assert!(want.len() > 8);
    same(q, &instant(&stack, q, t).await, &want);
    let q = "increase(traces_service_graph_request_failed_total[7m])";
    let errors = edge_sums(t, 420, &|e| e.errors as f64);
    assert!(errors.values().sum::<f64>() > 0.0);
    same(q, &instant(&stack, q, t).await, &errors);
    // A range selector not on a minute end covers the minutes that ended inside it.
    let q = "increase(traces_service_graph_request_total[150s])";
    same(
        q,
        &instant(&stack, q, t - 30).await,
        &edge_sums(t - 30, 150, &|e| e.calls as f64),
    );

    // rate over two minutes, per server, at every minute of a range query.
    let q = "sum by (server) (rate(traces_service_graph_request_total[2m]))";
    let got = range(&stack, q, m0, m0 + 8 * 60, 60).await;
    for step in 0..=8 {
        let at = m0 + step * 60;
        let mut want: BTreeMap<Labels, f64> = BTreeMap::new();
        for (k, v) in edge_sums(at, 120, &|e| e.calls as f64) {
            *want.entry(l(&[("server", &k["server"])])).or_default() += v / 120.0;
        }
        let got_at: BTreeMap<Labels, f64> = got
            .iter()
            .filter_map(|(k, pts)| {
                pts.iter()
                    .find(|(ts, _)| *ts == at)
                    .map(|(_, v)| (k.clone(), *v))
            })
            .filter(|(_, v)| *v != 0.0)
            .collect();
        same(&format!("{q} @ {at}"), &got_at, &want);
    }

    // Aggregations and binary operators over services.
    let services = |f: &dyn Fn(&Expect) -> f64| {
        let mut out: BTreeMap<Labels, f64> = BTreeMap::new();
        for (_, svc, _) in minutes(t, 420) {
            for (s, e) in svc {
                *out.entry(l(&[("service", s)])).or_default() += f(e);
            }
        }
        out
    };
    let calls = services(&|e| e.calls as f64);
    let errs = services(&|e| e.errors as f64);
    let q = "sum by (service) (increase(meshscope_service_errors_total[7m])) / sum by (service) (increase(meshscope_service_calls_total[7m]))";
    let ratio: BTreeMap<Labels, f64> = calls
        .iter()
        .map(|(k, c)| (k.clone(), errs[k] / c))
        .collect();
    same(q, &instant(&stack, q, t).await, &ratio);
    let q = "sum(increase(meshscope_service_calls_total[7m]))";
    same(
        q,
        &instant(&stack, q, t).await,
        &[(Labels::new(), calls.values().sum())].into(),
    );
    let q = "count(increase(meshscope_service_calls_total[7m]))";
    same(
        q,
        &instant(&stack, q, t).await,
        &[(Labels::new(), calls.len() as f64)].into(),
    );
    let q = "topk(3, increase(meshscope_service_calls_total[7m]))";
    let mut ranked: Vec<(&Labels, f64)> = calls.iter().map(|(k, v)| (k, *v)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got = instant(&stack, q, t).await;
    assert_eq!(got.len(), 3, "{q}");
    assert_eq!(
        got.values().sum::<f64>(),
        ranked[..3].iter().map(|r| r.1).sum::<f64>(),
        "{q}"
    );
    let q = "bottomk(1, increase(meshscope_service_calls_total[7m]))";
    assert_eq!(
        instant(&stack, q, t).await.values().next().copied(),
        ranked.last().map(|r| r.1)
    );
    let failing: BTreeMap<Labels, f64> = errs
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let q = "sum by (service) (increase(meshscope_service_errors_total[7m])) > 0";
    same(q, &instant(&stack, q, t).await, &failing);
    let q = "sum by (service) (increase(meshscope_service_calls_total[7m])) unless on (service) (sum by (service) (increase(meshscope_service_errors_total[7m])) > 0)";
    let clean: BTreeMap<Labels, f64> = calls
        .iter()
        .filter(|(k, _)| !failing.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    same(q, &instant(&stack, q, t).await, &clean);
    let q = "max(increase(meshscope_service_calls_total[7m])) - min(increase(meshscope_service_calls_total[7m])) >= bool 0";
    same(
        q,
        &instant(&stack, q, t).await,
        &[(Labels::new(), 1.0)].into(),
    );
    // `offset`: the minute that ended two minutes before t.
    let q = "sum(increase(meshscope_service_calls_total[1m] offset 2m))";
    let want: f64 = minutes(t - 120, 60)
        .map(|(_, s, _)| s.values().map(|e| e.calls as f64).sum::<f64>())
        .sum();
    same(
        q,
        &instant(&stack, q, t).await,
        &[(Labels::new(), want)].into(),
    );

    // Instant `rate`/`increase` queries read merged totals; they equal the general path
    // (every minute loaded) for every family, range, offset and side rule.
    for (q, at, read_at) in [
        ("increase(traces_service_graph_request_total[7m])".to_string(), t, t),
        ("rate(traces_service_graph_request_failed_total[150s])".to_string(), t - 30, t - 30),
        ("sum by (le) (increase(traces_service_graph_request_server_seconds_bucket[5m]))".to_string(), t, t),
        ("increase(traces_service_graph_request_client_seconds_sum[5m])".to_string(), t - 90, t - 90),
        ("rate(traces_service_graph_request_client_seconds_count[3m] offset 1m)".to_string(), t, t - 60),
        ("histogram_quantile(0.9, sum by (le, service) (rate(meshscope_service_latency_seconds_bucket[7m])))".to_string(), t, t),
        ("rate(meshscope_endpoint_calls_total{service=~\"rev.*\"}[3m])".to_string(), t - 120, t - 120),
        ("increase(meshscope_instance_errors_total[7m]) / increase(meshscope_instance_calls_total[2m])".to_string(), t - 180, t - 180),
        ("increase(meshscope_instance_latency_seconds_sum[7m]) / increase(meshscope_instance_latency_seconds_count[7m])".to_string(), t, t),
        ("increase(meshscope_endpoint_calls_total[50s])".to_string(), t - 150, t - 150),
        ("increase({__name__=~\"meshscope_(service|endpoint)_calls_total\"}[4m])".to_string(), t - 60, t - 60),
        // One selector under two ranges, and `@`.
        (
            "increase(meshscope_service_calls_total[7m]) / increase(meshscope_service_calls_total[2m])".to_string(),
            t - 180,
            t - 180,
        ),
        (
            format!("sum by (service) (increase(meshscope_service_calls_total[3m] @ {}))", t - 120),
            t + 600,
            t - 120,
        ),
    ] {
        let got = instant_both_ways(&stack, &q, at, read_at).await;
        assert!(!got.is_empty(), "{q} @ {at}: nothing");
    }
    // A gauge under `rate` is still refused.
    let (status, got) = prom_post(
        &stack,
        "/api/v1/query",
        &[
            (
                "query",
                "rate(meshscope_service_latency_quantile_seconds[5m])",
            ),
            ("time", &t.to_string()),
        ],
    )
    .await;
    assert_eq!(status, 422, "{got}");

    // `@` with `offset`: the same minute as `offset` alone at t.
    let q = format!("sum(increase(meshscope_service_calls_total[1m] @ {t} offset 2m))");
    same(
        &q,
        &instant(&stack, &q, t + 3600).await,
        &[(Labels::new(), want)].into(),
    );
    // A bare counter reads the calls since 00:00 UTC, the same in instant and range queries.
    let day = (t - 1).div_euclid(86_400) * 86_400;
    let since_midnight: f64 = minutes(t, t - day)
        .map(|(_, s, _)| s.values().map(|e| e.calls as f64).sum::<f64>())
        .sum();
    let q = "sum(meshscope_service_calls_total)";
    same(
        q,
        &instant(&stack, q, t).await,
        &[(Labels::new(), since_midnight)].into(),
    );
    let got = range(&stack, q, t - 3600, t, 60).await;
    assert_eq!(
        got[&Labels::new()].last(),
        Some(&(t, since_midnight)),
        "{q}"
    );

    // Buckets: a call counts under `le` when its histogram bucket does, so a bucket's count
    // lies between the exact counts at le/1.02 and le/0.98 (2 % relative error).
    let reviews = "reviews.default";
    let mut lat: Vec<u64> = minutes(t, 420)
        .flat_map(|(_, s, _)| {
            s.get(reviews)
                .map(|e| e.latencies.clone())
                .unwrap_or_default()
        })
        .collect();
    let q = format!(
        "sum by (le) (increase(meshscope_service_latency_seconds_bucket{{service=\"{reviews}\"}}[7m]))"
    );
    let got = instant(&stack, &q, t).await;
    assert_eq!(got.len(), 12, "{q}");
    for (k, v) in &got {
        let le: f64 = if k["le"] == "+Inf" {
            f64::INFINITY
        } else {
            k["le"].parse().expect("le")
        };
        let below = |bound: f64| lat.iter().filter(|x| (**x as f64) <= bound * 1e9).count() as f64;
        assert!(
            below(le / 1.02) <= *v && *v <= below(le / 0.98),
            "{q} le={le}: {v}"
        );
    }
    assert_eq!(got[&l(&[("le", "+Inf")])], lat.len() as f64);
    let q = format!(
        "sum(increase(meshscope_service_latency_seconds_sum{{service=\"{reviews}\"}}[7m])) / sum(increase(meshscope_service_latency_seconds_count{{service=\"{reviews}\"}}[7m]))"
    );
    let mean = lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1e9;
    let got = instant(&stack, &q, t).await;
    assert!(common::rel(got[&Labels::new()], mean) < 1e-9, "{q}");
    // histogram_quantile lands in the bucket that holds the exact quantile (or a
    // neighbour, when the exact value is within 2 % of a bound).
    let q = format!(
        "histogram_quantile(0.9, sum by (le) (rate(meshscope_service_latency_seconds_bucket{{service=\"{reviews}\"}}[7m])))"
    );
    let p90 = instant(&stack, &q, t).await[&Labels::new()];
    let exact = common::exact_quantile(&mut lat, 0.9) / 1e9;
    let bounds: Vec<f64> = [
        0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .to_vec();
    let bucket = |v: f64| bounds.iter().filter(|b| **b < v).count();
    assert!(
        bucket(p90).abs_diff(bucket(exact)) <= 1,
        "{q}: {p90} vs exact {exact}"
    );
    // The precise quantile series: each minute's p99 within 2 % of the exact one.
    let q = format!(
        "meshscope_service_latency_quantile_seconds{{service=\"{reviews}\", quantile=\"0.99\"}}"
    );
    let got = range(&stack, &q, m0, t, 60).await;
    let pts = got.values().next().expect("one series");
    let mut checked = 0;
    for (ts, v) in pts {
        let Some(mut l) = truth
            .get(&(ts - 60))
            .and_then(|(_, s, _)| s.get(reviews))
            .map(|e| e.latencies.clone())
        else {
            continue;
        };
        let want = common::exact_quantile(&mut l, 0.99) / 1e9;
        assert!(
            common::rel(*v, want) <= 0.02 + 1e-9,
            "{q} at {ts}: {v} vs {want}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "{q}: {pts:?}");

    // Grafana's service-graph view.
    let q = "sum by (client, server) (rate(traces_service_graph_request_total[7m]))";
    let mut want: BTreeMap<Labels, f64> = BTreeMap::new();
    for (k, v) in edge_sums(t, 420, &|e| e.calls as f64) {
        *want
            .entry(l(&[("client", &k["client"]), ("server", &k["server"])]))
            .or_default() += v / 420.0;
    }
    same(q, &instant(&stack, q, t).await, &want);
    let q = "group by (client, connection_type, server) (traces_service_graph_request_total)";
    let got = instant(&stack, q, t).await;
    let want_edges: BTreeSet<Labels> = edge_sums(t, 420, &|_| 1.0).into_keys().collect();
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        want_edges,
        "{q}"
    );
    assert!(got.values().all(|v| *v == 1.0));
    let q = "histogram_quantile(0.9, sum by (client, server, le) (rate(traces_service_graph_request_server_seconds_bucket[7m])))";
    let got = instant(&stack, q, t).await;
    assert!(
        !got.is_empty() && got.values().all(|v| v.is_finite() && *v > 0.0),
        "{q}: {got:?}"
    );

    // promtool, Debian's Prometheus client, against the same API.
    let server = format!("{}/prometheus", stack.http);
    let q = "sum by (client, server) (increase(traces_service_graph_request_total[7m]))";
    let out = promtool(&["query", "instant", "--time", &t.to_string(), &server, q]);
    let mut want: BTreeMap<Labels, f64> = BTreeMap::new();
    for (k, v) in edge_sums(t, 420, &|e| e.calls as f64) {
        *want
            .entry(l(&[("client", &k["client"]), ("server", &k["server"])]))
            .or_default() += v;
    }
    same(&format!("promtool {q}"), &promtool_vector(&out), &want);
    let q = "sum(increase(meshscope_service_calls_total[1m]))";
    let out = promtool(&[
        "query",
        "range",
        "--start",
        &(m0 + 60).to_string(),
        "--end",
        &(m0 + 360).to_string(),
        "--step",
        "1m",
        &server,
        q,
    ]);
    // One block: `{} =>` then `value @[time]` per step.
    let got: Vec<(i64, f64)> = out
        .lines()
        .filter_map(|line| {
            let (v, ts) = line.trim().split_once(" @[")?;
            Some((
                ts.trim_end_matches(']').parse::<f64>().ok()? as i64,
                v.parse().ok()?,
            ))
        })
        .collect();
    let want: Vec<(i64, f64)> = (1..=6)
        .map(|i| {
            let at = m0 + i * 60;
            (
                at,
                minutes(at, 60)
                    .map(|(_, s, _)| s.values().map(|e| e.calls as f64).sum::<f64>())
                    .sum(),
            )
        })
        // After the last minute with calls the series ends (no samples past its data).
        .filter(|(_, v)| *v > 0.0)
        .collect();
    assert_eq!(got, want, "promtool range: {out}");

    // Hostile label values are data: no match, no error.
    for q in [
        r#"traces_service_graph_request_total{client="a\" OR 1=1 --"}"#,
        r#"sum(rate(traces_service_graph_request_total{server=~".*'; DROP TABLE service; --"}[5m]))"#,
        r#"meshscope_service_calls_total{service="ñ'\"`;--\\"}"#,
        r#"meshscope_service_calls_total{service=~"(?i)REVIEWS\\.DEFAULT' OR '1'='1"}"#,
    ] {
        assert!(instant(&stack, q, t).await.is_empty(), "{q}");
    }
    // …while regex and negative matchers work.
    let q =
        r#"count(meshscope_service_calls_total{service=~"(?i)REVIEWS\\.default", service!="x"})"#;
    same(
        q,
        &instant(&stack, q, t).await,
        &[(Labels::new(), 1.0)].into(),
    );

    // Unsupported → 422 naming it; malformed → 400.
    for (q, status) in [
        ("quantile(0.5, meshscope_service_calls_total)", 422),
        (
            r#"label_replace(meshscope_service_calls_total, "a", "$1", "service", "(.*)")"#,
            422,
        ),
        (
            "max_over_time(rate(meshscope_service_calls_total[1m])[5m:1m])",
            422,
        ),
        (
            r#"rate(meshscope_service_latency_quantile_seconds{quantile="0.5"}[5m])"#,
            422,
        ),
        (
            "meshscope_service_calls_total + on (service) group_left meshscope_service_errors_total",
            422,
        ),
        (
            "rate({__name__=~\"meshscope_service_calls_total|meshscope_service_errors_total\"}[5m])",
            422,
        ),
        ("sum(", 400),
    ] {
        let (got_status, got) = prom_post(
            &stack,
            "/api/v1/query",
            &[("query", q), ("time", &t.to_string())],
        )
        .await;
        assert_eq!(got_status, status, "{q}: {got}");
        assert!(
            got["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{q}: {got}"
        );
    }
    let (status, got) = prom_get(
        &stack,
        &format!(
            "/api/v1/query_range?query={}&start={m0}&end={t}&step=60",
            enc("meshscope_service_calls_total[5m]")
        ),
    )
    .await;
    assert_eq!(status, 400, "{got}");
    // Hostile shapes: deep nesting, a parser-panicking duration, a huge window, a tiny
    // step — each a 400/422 answer, and the server keeps answering.
    let deep = format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let chain = format!("1{}", "+1".repeat(30_000));
    for (q, status) in [
        (deep.as_str(), 400),
        (chain.as_str(), 400),
        ("meshscope_service_calls_total[1e30]", 400),
        ("rate(meshscope_service_calls_total[500d])", 422),
        ("rate(meshscope_service_calls_total[5m] offset 1000y)", 200),
        ("sum(rate(meshscope_service_calls_total[5m] @ 1e15))", 200),
    ] {
        let (got_status, got) = prom_post(
            &stack,
            "/api/v1/query",
            &[("query", q), ("time", &t.to_string())],
        )
        .await;
        assert_eq!(got_status, status, "{}: {got}", &q[..q.len().min(80)]);
    }
    let (status, got) = prom_get(
        &stack,
        &format!(
            "/api/v1/query_range?query=1&start={m0}&end={}&step=0.0001",
            m0 + 1
        ),
    )
    .await;
    assert_eq!(status, 400, "{got}");
    assert_eq!(instant(&stack, "vector(1+1)", t).await[&Labels::new()], 2.0);
    stack.stop().await;
}

/// The queries Grafana's service-graph view (Tempo data source with `serviceMap`) sends to
/// the linked Prometheus data source, with `$__range` = 15m.
const SERVICE_GRAPH_QUERIES: [&str; 5] = [
    "sum by (client, server) (rate(traces_service_graph_request_total[15m]))",
    "sum by (client, server) (rate(traces_service_graph_request_failed_total[15m]))",
    "sum by (client, server) (rate(traces_service_graph_request_server_seconds_sum[15m]))",
    "histogram_quantile(0.9, sum by (client, server, le) (rate(traces_service_graph_request_server_seconds_bucket[15m])))",
    "group by (client, connection_type, server) (traces_service_graph_request_total)",
];

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
                            !instant_both_ways(&stack, q, now, now).await.is_empty(),
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
                    let got = instant_both_ways(&stack, &q, now, now).await;
                    assert!(!got.is_empty(), "{name} {title}: {q} returned nothing");
                } else {
                    // Mesh and trace sources both report here: the merged instant reads
                    // keep to the source and side rules.
                    instant_both_ways(&stack, &q, now, now).await;
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
