//! Three days of a generated mesh, sent as real Envoy access logs over gRPC, then JSON and
//! PromQL answers over windows within an hour, across hours, across whole days and with
//! ragged ends, each checked against counts computed here from the generated calls: before
//! maintenance (reads add the minute files not in the tiers yet), after it (hour and day
//! rows), and after a restart.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use testkit::bench::backfill::{self, Shape};
use testkit::sim::{Peer, Target};

const SHAPE: Shape = Shape {
    services: 6,
    instances: 2,
    endpoints: 3,
};
const HOURS: i64 = 72;

/// Calls per (client, server) service with a start in `[from, to)`, from the generator.
fn edges(from: i64, to: i64) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    let first = from.div_euclid(60) * 60;
    for minute in (first..to).step_by(60) {
        for hop in backfill::minute_hops(SHAPE, minute) {
            let t = hop.start_unix_nanos.div_euclid(1_000_000_000);
            if t < from || t >= to {
                continue;
            }
            let client = hop.client.expect("a client pod") / SHAPE.instances;
            let Target::Workload(server) = hop.server else {
                panic!("a workload server")
            };
            *out.entry((
                backfill::service_name(client),
                backfill::service_name(server / SHAPE.instances),
            ))
            .or_default() += 1;
        }
    }
    out
}

fn services(want: &BTreeMap<(String, String), u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((_, server), n) in want {
        *out.entry(server.clone()).or_default() += n;
    }
    out
}

/// The windows checked, as `[from, to)` in unix seconds, all inside the data.
fn windows(end: i64) -> Vec<(&'static str, i64, i64)> {
    let day = 86_400;
    let midnight = (end - 2 * day).div_euclid(day) * day + day;
    vec![
        ("the last 24 h", end - day, end),
        ("all three days", end - HOURS * 3600, end),
        (
            "within one hour",
            end - 50 * 3600 + 420,
            end - 50 * 3600 + 2220,
        ),
        ("across hours", end - 30 * 3600 + 780, end - 26 * 3600 + 120),
        ("one whole UTC day", midnight - day, midnight),
        (
            "a day and ragged ends",
            midnight - day - 3600 - 540,
            midnight + 7200 + 180,
        ),
    ]
}

async fn check(stack: &common::Stack, end: i64, when: &str) {
    for (name, from, to) in windows(end) {
        let from = from.max(end - HOURS * 3600);
        let want = edges(from, to);
        assert!(!want.is_empty(), "{name}: no generated calls");
        let topo = stack
            .ok(&format!("/api/v1/topology?start={from}&end={to}"))
            .await;
        assert_eq!(
            common::truth::edge_calls(&topo),
            want,
            "{when}: topology over {name}"
        );

        let list = stack
            .ok(&format!("/api/v1/services?start={from}&end={to}"))
            .await;
        let got: BTreeMap<String, u64> = list["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().expect("name").to_string(),
                    s["calls"].as_u64().expect("calls"),
                )
            })
            .collect();
        assert_eq!(got, services(&want), "{when}: services over {name}");
    }
    // PromQL `increase` over (t − r, t] counts the minutes [t − r, t): at minute-aligned
    // times it is exact, and long ranges read the tiers.
    for (t, range_h) in [(end, 24), (end - 3600 * 5 - 600, 40), (end, HOURS)] {
        let q = format!(
            "sum by (client, server) (increase(traces_service_graph_request_total[{range_h}h]))"
        );
        let answer = stack
            .ok(&format!(
                "/prometheus/api/v1/query?time={t}&query={}",
                common::enc(&q)
            ))
            .await;
        let got: BTreeMap<(String, String), u64> = answer["data"]["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|s| {
                let value: f64 = s["value"][1]
                    .as_str()
                    .expect("value")
                    .parse()
                    .expect("number");
                (
                    (
                        s["metric"]["client"].as_str().expect("client").to_string(),
                        s["metric"]["server"].as_str().expect("server").to_string(),
                    ),
                    value as u64,
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        assert_eq!(
            got,
            edges(t - range_h * 3600, t),
            "{when}: increase[{range_h}h] at {t}"
        );
    }
    // Range queries read their counters in parts cut at the steps: hourly steps over two
    // days off the minute grid (parts of whole hours, read from hour rows once there),
    // and 5-minute steps with overlapping 10-minute ranges over six hours.
    let hour = end.div_euclid(3600) * 3600;
    check_range(stack, (hour - 47 * 3600 + 30, hour - 30, 3600), 3600).await;
    check_range(stack, (end - 6 * 3600 - 17, end - 17, 300), 600).await;
}

/// A PromQL range query of `increase(traces_service_graph_request_total[range])` per
/// edge from `start` to `end` every `step` (seconds): at each step `t` it counts the
/// calls of the minutes in `[⌊t⌋ − range, ⌊t⌋)` (`⌊t⌋` the minute of `t`), as the
/// generator says; steps where an edge counts nothing have no point or a 0.
async fn check_range(stack: &common::Stack, (start, end, step): (i64, i64, i64), range: i64) {
    let q =
        format!("sum by (client, server) (increase(traces_service_graph_request_total[{range}s]))");
    let answer = stack
        .ok(&format!(
            "/prometheus/api/v1/query_range?start={start}&end={end}&step={step}&query={}",
            common::enc(&q)
        ))
        .await;
    let mut got: BTreeMap<i64, BTreeMap<(String, String), u64>> = BTreeMap::new();
    for s in answer["data"]["result"].as_array().expect("result") {
        let edge = (
            s["metric"]["client"].as_str().expect("client").to_string(),
            s["metric"]["server"].as_str().expect("server").to_string(),
        );
        for p in s["values"].as_array().expect("values") {
            let t = p[0].as_f64().expect("time") as i64;
            let v: f64 = p[1].as_str().expect("value").parse().expect("number");
            assert_eq!(v.fract(), 0.0, "{q} at {t}: {v}");
            if v > 0.0 {
                got.entry(t).or_default().insert(edge.clone(), v as u64);
            }
        }
    }
    let mut t = start;
    while t <= end {
        let minute = t.div_euclid(60) * 60;
        let want = edges(minute - range, minute);
        assert_eq!(
            got.remove(&t).unwrap_or_default(),
            want,
            "{q} from {start} every {step} s, at {t}"
        );
        t += step;
    }
    assert!(got.is_empty(), "{q}: points off the steps: {got:?}");
}

/// `meshscope_store_files_awaiting_tiers` on the stack's `/metrics`.
async fn awaiting_tiers(stack: &common::Stack) -> f64 {
    let text = reqwest::get(format!("{}/metrics", stack.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("meshscope_store_files_awaiting_tiers"),
        "{text}"
    );
    testkit::scrape::metric_sum(&text, "meshscope_store_files_awaiting_tiers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_days_read_exactly_from_minutes_hours_and_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    // Every maintenance is the test's own.
    config.aggregator.maintenance_interval = std::time::Duration::from_secs(86_400);
    let stack = common::start(config.clone()).await;
    let end = (testkit::now_nanos() / 1_000_000_000).div_euclid(60) * 60;
    let peer = Peer {
        endpoint: stack.grpc.clone(),
        ca_pem: None,
        identity: None,
        server_name: None,
        token: None,
    };
    let sent = backfill::send(&peer, SHAPE, HOURS, end)
        .await
        .expect("send");
    assert_eq!(sent, (SHAPE.services as u64) * (HOURS as u64) * 60);
    stack.flush().await;
    check(&stack, end, "before maintenance").await;
    assert!(awaiting_tiers(&stack).await > 0.0);

    stack.app.aggregator.maintain().await.expect("maintenance");
    assert_eq!(awaiting_tiers(&stack).await, 0.0);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("manifest"))
            .expect("json");
    let files = manifest["files"].as_array().expect("files");
    assert!(
        files.iter().all(|f| f["in_tiers"] == true),
        "every minute file is in the tiers after maintenance"
    );
    for res in [3600, 86_400] {
        assert!(
            files.iter().any(|f| f["res"] == res),
            "no file of {res} s rows"
        );
    }
    check(&stack, end, "after maintenance").await;
    stack.stop().await;

    let stack = common::start(config).await;
    check(&stack, end, "after a restart").await;
    stack.stop().await;
}
