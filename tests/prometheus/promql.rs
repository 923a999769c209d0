//! PromQL answers exact at minute resolution: counters, rates, aggregations and operators,
//! offsets and `@`, merged reads, buckets and quantiles within the histogram's error,
//! Grafana's service-graph queries, promtool, and hostile queries.

use super::promtool::{promtool, promtool_vector};
use super::*;

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

    // Instant `rate`/`increase` queries read their counters in parts cut at the ranges'
    // ends; they equal the same queries with every minute loaded, for every family, range,
    // offset and side rule (the third figure is when the selectors read).
    for (q, at, _read_at) in [
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
        let got = instant_both_ways(&stack, &q, at).await;
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
    // A series has samples from its first minute with calls in a UTC day to midnight: the
    // sum is there at `at` when some service had calls since 00:00 UTC of the range's
    // first day that ended by `at` (0 once the traffic stopped).
    let want: Vec<(i64, f64)> = (1..=6)
        .map(|i| m0 + i * 60)
        .filter(|at| {
            let day = (at - 60).div_euclid(86_400) * 86_400;
            truth.keys().any(|m| *m >= day && m + 60 <= *at)
        })
        .map(|at| {
            (
                at,
                minutes(at, 60)
                    .map(|(_, s, _)| s.values().map(|e| e.calls as f64).sum::<f64>())
                    .sum(),
            )
        })
        .collect();
    assert_eq!(got, want, "promtool range: {out}");

    // Many-to-one and one-to-many matching: each endpoint's share of its service's calls
    // over the whole traffic, and its inverse, from the generated calls.
    let (mut endpoint_calls, mut service_calls) = (BTreeMap::new(), BTreeMap::new());
    for (_, services, endpoints) in minutes(t, 420) {
        for (s, e) in services {
            *service_calls.entry(s.clone()).or_insert(0u64) += e.calls;
        }
        for ((s, ep), e) in endpoints {
            *endpoint_calls
                .entry((s.clone(), ep.clone()))
                .or_insert(0u64) += e.calls;
        }
    }
    let share = |inverse: bool| -> BTreeMap<Labels, f64> {
        endpoint_calls
            .iter()
            .map(|((s, ep), n)| {
                let (n, total) = (*n as f64, service_calls[s] as f64);
                let v = if inverse { total / n } else { n / total };
                (l(&[("service", s), ("endpoint", ep)]), v)
            })
            .collect()
    };
    assert!(endpoint_calls.len() > 5);
    let q = "increase(meshscope_endpoint_calls_total[7m]) / on (service) group_left increase(meshscope_service_calls_total[7m])";
    same(q, &instant(&stack, q, t).await, &share(false));
    let q = "increase(meshscope_service_calls_total[7m]) / on (service) group_right increase(meshscope_endpoint_calls_total[7m])";
    same(q, &instant(&stack, q, t).await, &share(true));

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
