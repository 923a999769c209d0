//! meshscope against a real Prometheus (Debian's 2.42): the raw samples meshscope serves,
//! read back through a range selector, are written as OpenMetrics, loaded with `promtool
//! tsdb create-blocks-from openmetrics`, and served by `prometheus` on loopback. The
//! evaluator's supported expressions then run on both at times off the minute grid (2.x
//! range selectors include a sample at exactly `t − range`; meshscope's do not), after
//! traffic that starts, pauses, resumes with fewer requests and stops, so that quiet
//! series are read by short and long windows alike.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::sim::{self, Generator, Hop};

use super::{
    Labels, common, enc, instant, labels_of, matrix_of, number, prom_get, range, same, seconds,
};

/// A `prometheus` process, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` on the TSDB in `dir` (no scrapes) and waits until it is ready.
    async fn start(dir: &std::path::Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus runs (Debian package `prometheus`; `.ci/deps` installs it)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{}/-/ready", p.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return p;
            }
            assert!(Instant::now() < deadline, "prometheus not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The JSON answer to `GET path_and_query`, which must be a success.
    async fn get(&self, path_and_query: &str) -> Value {
        let body: Value = reqwest::get(format!("{}{path_and_query}", self.url))
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("json");
        assert_eq!(
            body["status"], "success",
            "prometheus {path_and_query}: {body}"
        );
        body
    }

    /// An instant query's vector (or scalar), by label set.
    async fn instant(&self, q: &str, t: f64) -> BTreeMap<Labels, f64> {
        let body = self
            .get(&format!("/api/v1/query?query={}&time={t}", enc(q)))
            .await;
        let result = &body["data"]["result"];
        match body["data"]["resultType"].as_str() {
            Some("vector") => result
                .as_array()
                .expect("result")
                .iter()
                .map(|s| (labels_of(&s["metric"]), number(&s["value"][1])))
                .collect(),
            Some("scalar") => [(Labels::new(), number(&result[1]))].into(),
            other => panic!("prometheus {q}: result type {other:?}"),
        }
    }

    /// A range query's matrix: per label set, `(unix seconds, value)`.
    async fn range(
        &self,
        q: &str,
        (start, end, step): (i64, i64, i64),
    ) -> BTreeMap<Labels, Vec<(i64, f64)>> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            enc(q)
        );
        seconds(matrix_of(&self.get(&path).await))
    }
}

/// Every sample meshscope serves in `(at − range, at]`, as OpenMetrics text (one family
/// after another, each series' samples in time order), and how many there are.
async fn openmetrics(stack: &common::Stack, at: i64, range_m: i64) -> (String, usize) {
    let q = format!("{{__name__=~\".+\"}}[{range_m}m]");
    let (status, body) =
        prom_get(stack, &format!("/api/v1/query?query={}&time={at}", enc(&q))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    let mut families: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for s in body["data"]["result"].as_array().expect("result") {
        let name = s["metric"]["__name__"]
            .as_str()
            .expect("a name")
            .to_string();
        families.entry(name).or_default().push(s);
    }
    let (mut text, mut samples) = (String::new(), 0);
    for (name, series) in &families {
        for s in series {
            let labels: Vec<String> = labels_of(&s["metric"])
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', r"\\")
                        .replace('"', "\\\"")
                        .replace('\n', r"\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            for p in s["values"].as_array().expect("values") {
                let t = p[0].as_f64().expect("time");
                let v = p[1].as_str().expect("value");
                let _ = writeln!(text, "{name}{{{}}} {v} {t}", labels.join(","));
                samples += 1;
            }
        }
    }
    text.push_str("# EOF\n");
    (text, samples)
}

/// Traffic from `base` (unix seconds): 25 minutes of 6 requests a minute, a 10-minute
/// pause, then 10 minutes of 2 a minute.
fn traffic(base: i64) -> (Generator, Vec<Hop>) {
    let mut g = Generator::new(42);
    let mut hops = Vec::new();
    for minute in (0..25).chain(35..45) {
        let per_minute = if minute < 25 { 6 } else { 2 };
        for j in 0..per_minute {
            let t = base + minute * 60 + j * (60 / per_minute) + 3;
            hops.extend(g.user_request(t * 1_000_000_000));
        }
    }
    (g, hops)
}

/// Expressions whose answers must be equal on both (sample values and the samples a
/// selector sees).
fn same_everywhere(t0: i64) -> Vec<String> {
    [
        "meshscope_service_calls_total",
        "sum(meshscope_service_calls_total)",
        "sum by (service) (meshscope_endpoint_calls_total)",
        "count(meshscope_endpoint_calls_total)",
        "count by (service) (meshscope_instance_calls_total)",
        "traces_service_graph_request_total{connection_type=\"http\"}",
        "sum without (client) (traces_service_graph_request_failed_total)",
        "topk(2, sum by (service) (meshscope_service_latency_seconds_sum))",
        "bottomk(2, sum by (service) (meshscope_service_latency_seconds_sum))",
        "meshscope_service_errors_total / meshscope_service_calls_total",
        "meshscope_service_calls_total > 100",
        "meshscope_service_calls_total and meshscope_service_errors_total > 0",
        "meshscope_service_calls_total unless meshscope_service_errors_total > 3",
        "abs(meshscope_service_calls_total - 200)",
        "clamp_max(meshscope_endpoint_calls_total, 50)",
        "vector(1) + sum(meshscope_service_errors_total)",
        "meshscope_service_calls_total offset 10m",
        "max_over_time(meshscope_service_calls_total[10m])",
        "count_over_time(meshscope_endpoint_calls_total[15m])",
        "avg_over_time(meshscope_service_latency_quantile_seconds{quantile=\"0.5\"}[5m])",
        "sum_over_time(meshscope_service_latency_quantile_seconds{quantile=\"0.99\"}[10m])",
        "histogram_quantile(0.9, sum by (le) (meshscope_service_latency_seconds_bucket))",
        "meshscope_endpoint_calls_total / on (service) group_left meshscope_service_calls_total",
        "meshscope_service_errors_total / on (service) group_right meshscope_instance_errors_total",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("meshscope_instance_calls_total @ {t0}")])
    .collect()
}

/// `rate`/`increase` on meshscope, and on Prometheus the difference of its own sample
/// values at the range's two ends (or the value itself for a series whose first sample of
/// the day is inside the range): exactly meshscope's answer, which Prometheus' own
/// `increase` extrapolates from the samples inside the range instead.
fn differences() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "increase(traces_service_graph_request_total[5m])",
            "(traces_service_graph_request_total - traces_service_graph_request_total offset 5m) or (traces_service_graph_request_total * 1)",
        ),
        (
            "sum by (service) (rate(meshscope_endpoint_calls_total[10m]))",
            "sum by (service) ((meshscope_endpoint_calls_total - meshscope_endpoint_calls_total offset 10m) or (meshscope_endpoint_calls_total * 1)) / 600",
        ),
        (
            "sum by (le) (increase(meshscope_service_latency_seconds_bucket[15m]))",
            "sum by (le) ((meshscope_service_latency_seconds_bucket - meshscope_service_latency_seconds_bucket offset 15m) or (meshscope_service_latency_seconds_bucket * 1))",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_samples_give_the_same_answers_in_prometheus() {
    // Yesterday from 10:00 UTC: inside the retention, far from midnight (where counters
    // reset and a 2.x range could see the previous day's samples).
    let day = (common::now_nanos() / 1_000_000_000).div_euclid(86_400) * 86_400 - 86_400;
    let base = day + 10 * 3600;
    let (g, hops) = traffic(base);
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    sim::send_all(&stack.grpc, &g.mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;

    let (text, samples) = openmetrics(&stack, base + 3630, 61).await;
    assert!(samples > 10_000, "{samples} samples");
    let prom_dir = tempfile::tempdir().expect("tempdir");
    let input = prom_dir.path().join("samples.om");
    std::fs::write(&input, &text).expect("write samples");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(prom_dir.path().join("tsdb"))
        .output()
        .expect("promtool runs (Debian package `prometheus`; `.ci/deps` installs it)");
    assert!(
        out.status.success(),
        "promtool tsdb create-blocks-from openmetrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let prometheus = Prometheus::start(prom_dir.path()).await;

    // Prometheus holds exactly meshscope's samples.
    let q = "{__name__=~\".+\"}[61m]";
    let url = format!("/api/v1/query?query={}&time={}", enc(q), base + 3630);
    let (status, ours) = prom_get(&stack, &url).await;
    assert_eq!(status, 200, "{ours}");
    let loaded = matrix_of(&prometheus.get(&url).await);
    assert_eq!(loaded.values().map(Vec::len).sum::<usize>(), samples);
    assert_eq!(matrix_of(&ours), loaded, "the samples Prometheus loaded");

    // During traffic, in the pause, after it resumed, and 15 minutes after it stopped.
    let times = [
        base + 17 * 60 + 13,
        base + 31 * 60 + 47,
        base + 43 * 60 + 29,
        base + 59 * 60 + 41,
    ];
    let mut compared = 0;
    for &t in &times {
        for q in same_everywhere(base + 20 * 60 + 30) {
            let want = prometheus.instant(&q, t as f64).await;
            same(&format!("{q} at {t}"), &instant(&stack, &q, t).await, &want);
            compared += usize::from(!want.is_empty());
        }
        for (ours, theirs) in differences() {
            let want = prometheus.instant(theirs, t as f64).await;
            same(
                &format!("{ours} at {t}"),
                &instant(&stack, ours, t).await,
                &want,
            );
            compared += usize::from(!want.is_empty());
        }
    }
    assert!(compared > 90, "only {compared} non-empty comparisons");

    // Range queries, steps off the minute grid.
    for q in [
        "sum by (service) (meshscope_endpoint_calls_total)",
        "count(meshscope_endpoint_calls_total)",
    ] {
        let window = (base + 10 * 60 + 7, base + 58 * 60 + 7, 97);
        assert_eq!(
            range(&stack, q, window.0, window.1, window.2).await,
            prometheus.range(q, window).await,
            "{q}"
        );
    }
    stack.stop().await;
}
