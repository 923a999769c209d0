//! Many concurrent, long-lived ALS streams: entries are rolled up as they arrive, not when
//! a stream ends, and every stream's entries count exactly once.

mod common;

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use testkit::sim::{self, Generator};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const STREAMS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_open_streams_are_counted_while_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let mut g = Generator::new(17);
    let now = common::now_nanos();
    let hops: Vec<_> = (0..5)
        .flat_map(|i| g.user_request(now - 120_000_000_000 + i * 1_000_000))
        .collect();
    let details = g
        .mesh
        .workloads
        .iter()
        .position(|w| w.app == "details")
        .expect("details");
    // The details proxy's server-side entries for these hops: one round per stream.
    let log = sim::entries(&g.mesh, &hops)
        .remove(&details)
        .expect("details log");
    let per_round = log.http.len() as u64;
    assert!(per_round > 0);
    let round = sim::stream_messages(&g.mesh.workloads[details], log, false);

    let mut senders = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let (tx, rx) = mpsc::channel(4);
        let mut client = AccessLogServiceClient::connect(stack.grpc.clone())
            .await
            .expect("connect");
        streams.push(tokio::spawn(async move {
            client.stream_access_logs(ReceiverStream::new(rx)).await
        }));
        senders.push(tx);
    }
    let details_calls = |json: &serde_json::Value| {
        json["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == "details.default")
            .and_then(|s| s["calls"].as_u64())
            .unwrap_or(0)
    };
    for r in 1..=2u64 {
        for tx in &senders {
            for (i, m) in round.iter().enumerate() {
                let mut m = m.clone();
                if r > 1 && i == 0 {
                    m.identifier = None; // only the first message of a stream carries it
                }
                tx.send(m).await.expect("stream open");
            }
        }
        // Wait until the server has taken every message of this round off the wire,
        // then flush: the streams are still open.
        let want = r * per_round * STREAMS as u64;
        let mut decoded = 0.0;
        for _ in 0..200 {
            decoded = common::metric_value(
                &stack.metrics().await,
                "meshscope_als_entries_decoded_total",
            );
            if decoded as u64 >= want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(decoded as u64, want, "round {r}");
        stack.flush().await;
        let services = stack.ok("/api/v1/services").await;
        assert_eq!(details_calls(&services), want, "round {r}");
        let text = stack.metrics().await;
        assert_eq!(
            common::metric_value(&text, "meshscope_als_streams_open"),
            STREAMS as f64
        );
    }
    drop(senders);
    for s in streams {
        s.await.expect("task").expect("stream ends with OK");
    }
    let text = stack.metrics().await;
    assert_eq!(
        common::metric_value(&text, "meshscope_als_streams_open"),
        0.0
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_connections_are_sent_away_so_clients_reconnect() {
    // With a maximum connection age, the server sends GOAWAY and, after the grace period,
    // closes the connection even though its ALS stream never ends on its own: the client
    // has to reconnect (through the load balancer, in a real deployment). Without one,
    // the same stream stays open.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.collector.max_connection_age = std::time::Duration::from_secs(1);
    config.collector.max_connection_age_grace = std::time::Duration::from_secs(1);
    let aged = common::start(config).await;
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let plain = common::start(common::config(plain_dir.path())).await;

    let mut g = Generator::new(5);
    let now = common::now_nanos();
    let hops = g.user_request(now - 60_000_000_000);
    let (proxy, log) = sim::entries(&g.mesh, &hops)
        .into_iter()
        .next()
        .expect("a proxy log");
    let messages = sim::stream_messages(&g.mesh.workloads[proxy], log, false);
    let aged_call = open(aged.grpc.clone(), messages.clone()).await;
    let plain_call = open(plain.grpc.clone(), messages).await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), aged_call)
        .await
        .expect("the aged connection was closed by the server")
        .expect("task");
    assert!(
        ended.is_err(),
        "a cut connection is an error for the client"
    );
    assert!(
        !plain_call.is_finished(),
        "without an age limit the stream stays open"
    );
    // What the stream delivered before the cut counts.
    aged.flush().await;
    let decoded =
        common::metric_value(&aged.metrics().await, "meshscope_als_entries_decoded_total");
    assert!(decoded > 0.0);
    plain_call.abort();
    aged.stop().await;
    plain.stop().await;
}

type StreamCall = tokio::task::JoinHandle<
    Result<
        tonic::Response<envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsResponse>,
        tonic::Status,
    >,
>;

/// Opens an ALS stream, sends `messages` and keeps the stream open (the client never ends
/// it); the handle ends when the server ends or cuts it.
async fn open(
    endpoint: String,
    messages: Vec<envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage>,
) -> StreamCall {
    let (tx, rx) = mpsc::channel(4);
    let mut client = AccessLogServiceClient::connect(endpoint)
        .await
        .expect("connect");
    for m in messages {
        tx.send(m).await.expect("send");
    }
    tokio::spawn(async move {
        let _keep = tx;
        client.stream_access_logs(ReceiverStream::new(rx)).await
    })
}

/// Past `collector.max_als_streams` a new stream is refused `UNAVAILABLE` (which Envoy
/// retries) and counted; once an open stream ends, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_until_one_ends() {
    use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
    use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.collector.max_als_streams = 2;
    let stack = common::start(config).await;
    let mesh = sim::bookinfo();
    let hello = StreamAccessLogsMessage {
        identifier: Some(Identifier {
            node: Some(sim::envoy::node(&mesh.workloads[0])),
            log_name: "http_envoy_accesslog".into(),
        }),
        log_entries: None,
    };
    let first = open(stack.grpc.clone(), vec![hello.clone()]).await;
    let _second = open(stack.grpc.clone(), vec![hello.clone()]).await;
    stack
        .wait_metric("meshscope_als_streams_open", |v| v == 2.0)
        .await;
    let third = open(stack.grpc.clone(), vec![hello.clone()]).await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), third)
        .await
        .expect("the third stream is answered")
        .expect("task");
    let status = answer.expect_err("the third stream is refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let text = stack.metrics().await;
    assert_eq!(
        common::metric_value(
            &text,
            "meshscope_als_messages_rejected_total{reason=\"busy\"}"
        ),
        1.0,
        "{text}"
    );
    // The client of the first goes away: its slot frees and a new stream is served.
    first.abort();
    stack
        .wait_metric("meshscope_als_streams_open", |v| v == 1.0)
        .await;
    let _fourth = open(stack.grpc.clone(), vec![hello]).await;
    stack
        .wait_metric("meshscope_als_streams_open", |v| v == 2.0)
        .await;
    stack.stop().await;
}
