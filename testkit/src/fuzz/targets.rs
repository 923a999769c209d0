//! The decoders `meshscope fuzz` drives, each through the code the servers run, with the
//! seeds each starts from (generated here; the shared Envoy fixtures come as extra files).

use std::sync::Arc;
use std::time::Duration;

use aggregator::rollup::{RollupSettings, Rollups};
use aggregator::row::RowBatch;
use aggregator::schema::Table;
use aggregator::store::Store;
use aggregator::store::clickhouse::{chunk, spool};
use aggregator::store::parquet::{ParquetSettings, ParquetStore, rows_of_file};
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use collector::als::address_book::AddressBook;
use collector::als::cost::message_cost;
use collector::als::entry::StreamDecoder;
use collector::als::message::decode_message;
use collector::otlp::{OtlpConfig, OtlpMetrics, OtlpReceiver};
use collector::{CollectorConfig, CollectorMetrics, DecodeBudget};
use prometheus_client::registry::Registry;
use prost::Message;
use proto::als::StreamAccessLogsMessage;
use proto::{Call, Node, Protocol, Side, Source};
use tower::ServiceExt;

use super::{Outcome, TargetName};
use crate::error::{During, Error, Result, io};
use crate::sim::{Generator, bookinfo, encode};
use crate::traces::{Shop, Spans};

/// A decoder with what it needs to run (a runtime, a router, a temp dir).
pub enum Target {
    Als(Als),
    /// OTLP/HTTP; every third body goes gzip-compressed and every seventh is labelled
    /// gzip as it is (the decompressor's own input), counted by `sent`.
    Otlp {
        http: InMemory,
        json: bool,
        sent: u64,
    },
    Promql,
    PrometheusApi(InMemory),
    Spool,
    Parquet(tempfile::TempDir),
}

impl Target {
    /// Builds the target `name`.
    pub fn new(name: TargetName) -> Result<Target> {
        Ok(match name {
            TargetName::Als => Target::Als(Als::new()),
            TargetName::OtlpProtobuf | TargetName::OtlpJson => Target::Otlp {
                http: InMemory::otlp()?,
                json: name == TargetName::OtlpJson,
                sent: 0,
            },
            TargetName::Promql => Target::Promql,
            TargetName::PrometheusApi => Target::PrometheusApi(InMemory::prometheus()?),
            TargetName::Spool => Target::Spool,
            TargetName::Parquet => {
                Target::Parquet(tempfile::tempdir().map_err(io("creating a temp dir"))?)
            }
        })
    }

    /// The inputs a campaign starts from: real shapes of each input, generated.
    pub fn seeds(&mut self) -> Result<Vec<Vec<u8>>> {
        Ok(match self {
            Target::Als(_) => als_seeds(),
            Target::Otlp { json, .. } => otlp_seeds(*json)?,
            Target::Promql | Target::PrometheusApi(_) => promql_seeds(),
            Target::Spool => spool_seeds()?,
            Target::Parquet(dir) => parquet_seeds(dir.path())?,
        })
    }

    /// Runs one input.
    pub fn run(&mut self, input: &[u8]) -> Outcome {
        match self {
            Target::Als(als) => als.run(input),
            Target::Otlp { http, json, sent } => {
                let media = if *json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                *sent += 1;
                let (body, gzip) = if *sent % 3 == 0 {
                    (gzip(input), true)
                } else {
                    (Bytes::copy_from_slice(input), *sent % 7 == 0)
                };
                http.post("/v1/traces", media, gzip, body)
            }
            Target::Promql => promql_text(input),
            Target::PrometheusApi(http) => prometheus_api(http, input),
            Target::Spool => match spool::parse(input) {
                Ok(_) => Outcome::Accepted,
                Err(_) => Outcome::Refused,
            },
            Target::Parquet(_) => parquet(input),
        }
    }
}

/// The access-log stream's per-message path: the codec's cost estimate, the decoding
/// budget, the decode, the reporter, entries into calls. Each input is a stream's second
/// message after one that identifies a sidecar (an input with an identifier of its own
/// identifies again).
pub struct Als {
    metrics: CollectorMetrics,
    budget: DecodeBudget,
    hello: Bytes,
}

impl Als {
    fn new() -> Als {
        let metrics = CollectorMetrics::register(&mut Registry::default());
        let config = CollectorConfig::default();
        let budget = DecodeBudget::new(
            config.max_decoding_bytes,
            config.max_items_per_message,
            metrics.decoding_bytes.clone(),
        );
        let hello = als_messages()
            .into_iter()
            .find_map(|m| {
                m.identifier.map(|id| StreamAccessLogsMessage {
                    identifier: Some(id),
                    ..Default::default()
                })
            })
            .unwrap_or_default();
        Als {
            metrics,
            budget,
            hello: Bytes::from(hello.encode_to_vec()),
        }
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        let Ok(cost) = message_cost(input) else {
            return Outcome::Refused;
        };
        let Ok(_charge) = self.budget.charge(cost, "the fuzzed message") else {
            return Outcome::Refused;
        };
        // A fresh book per input: what one input teaches it cannot change the next.
        let book = Arc::new(AddressBook::new(&Default::default(), self.metrics.clone()));
        let mut decoder = StreamDecoder::new(book);
        if decode_message(&mut decoder, self.hello.clone(), &self.metrics).is_err() {
            return Outcome::Refused;
        }
        match decode_message(&mut decoder, Bytes::copy_from_slice(input), &self.metrics) {
            Ok(_) => Outcome::Accepted,
            Err(_) => Outcome::Refused,
        }
    }
}

/// A minute of bookinfo traffic as the proxies' access-log messages (protobuf, as
/// `envoy-types` encodes them).
fn als_messages() -> Vec<StreamAccessLogsMessage> {
    let mesh = bookinfo();
    let mut generator = Generator::new(7);
    let hops: Vec<_> = (0..20)
        .flat_map(|i| generator.user_request(1_700_000_000_000_000_000 + i * 1_000_000_000))
        .collect();
    encode(&mesh, &hops)
        .into_iter()
        .flat_map(|(_, messages)| messages)
        .map(|m| {
            // From envoy-types' full definitions to the collector's field subset: the
            // same bytes.
            StreamAccessLogsMessage::decode(m.encode_to_vec().as_slice()).unwrap_or_default()
        })
        .collect()
}

fn als_seeds() -> Vec<Vec<u8>> {
    als_messages().iter().map(Message::encode_to_vec).collect()
}

/// An axum router served in memory on a single-threaded runtime. The OTLP receiver keeps
/// state between inputs (spans waiting for their pair, span ids seen), as a server does.
pub struct InMemory {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// Keeps the store's directory for the router's lifetime.
    _dir: Option<tempfile::TempDir>,
}

impl InMemory {
    /// The OTLP/HTTP receiver, its calls drained and dropped.
    fn otlp() -> Result<InMemory> {
        let runtime = current_thread()?;
        let mut registry = Registry::default();
        let collector = CollectorMetrics::register(&mut registry);
        let config = CollectorConfig::default();
        let budget = DecodeBudget::new(
            config.max_decoding_bytes,
            config.max_items_per_message,
            collector.decoding_bytes.clone(),
        );
        let (calls, mut drain) = proto::channel::call_channel(1024, 1_000_000);
        runtime.spawn(async move { while drain.recv().await.is_some() {} });
        let receiver = OtlpReceiver::new(
            &OtlpConfig::default(),
            config.max_message_bytes,
            calls,
            collector,
            OtlpMetrics::register(&mut registry),
            budget,
        );
        Ok(InMemory {
            router: receiver.http_router(),
            runtime,
            _dir: None,
        })
    }

    /// The HTTP API (Prometheus-compatible routes included) over an empty embedded store.
    fn prometheus() -> Result<InMemory> {
        let runtime = current_thread()?;
        let dir = tempfile::tempdir().map_err(io("creating a temp dir"))?;
        let store: Arc<dyn Store> =
            Arc::new(ParquetStore::open(dir.path(), ParquetSettings::default())?);
        let mut registry = Registry::default();
        // Bounds tighter than a server's, so a costly input cannot stall the campaign.
        let config = ui_api::ApiConfig {
            query_timeout: Duration::from_secs(2),
            query_max_samples: 1_000_000,
            ..ui_api::ApiConfig::default()
        };
        let limits = Arc::new(ui_api::Limits::new(&config, &mut registry));
        let router = ui_api::router(ui_api::ApiState {
            store,
            registry: Arc::new(registry),
            aggregator: None,
            before_flush: None,
            dedup: Arc::default(),
            limits,
            admin: Arc::default(),
            info: Arc::new(ui_api::ServerInfo::unbound("parquet")),
        });
        Ok(InMemory {
            runtime,
            router,
            _dir: Some(dir),
        })
    }

    /// Sends one request; 2xx is accepted, anything else refused.
    fn request(&self, request: http::Request<Body>) -> Outcome {
        let router = self.router.clone();
        let answered = self.runtime.block_on(async move {
            let response = router.oneshot(request).await.ok()?;
            let ok = response.status().is_success();
            // The answer is encoded too: read it whole.
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .ok()
                .map(|_| ok)
        });
        match answered {
            Some(true) => Outcome::Accepted,
            _ => Outcome::Refused,
        }
    }

    fn post(&self, path: &str, media: &str, gzip: bool, body: Bytes) -> Outcome {
        let mut request = http::Request::post(path).header(http::header::CONTENT_TYPE, media);
        if gzip {
            request = request.header(http::header::CONTENT_ENCODING, "gzip");
        }
        match request.body(Body::from(body)) {
            Ok(request) => self.request(request),
            Err(_) => Outcome::Refused,
        }
    }
}

/// `input` gzip-compressed, as an exporter with compression on sends it.
fn gzip(input: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(input);
    Bytes::from(encoder.finish().unwrap_or_default())
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting a runtime"))
}

fn otlp_seeds(json: bool) -> Result<Vec<Vec<u8>>> {
    let mut shop = Shop::new(11);
    let mut spans = Spans::default();
    for i in 0..8 {
        shop.request(1_700_000_000_000_000_000 + i * 1_000_000_000, &mut spans);
    }
    spans
        .requests(16)
        .into_iter()
        .map(|r| {
            if json {
                serde_json::to_vec(&r).map_err(|e| Error::Check(format!("OTLP JSON: {e}")))
            } else {
                Ok(r.encode_to_vec())
            }
        })
        .collect()
}

/// PromQL's parsing path: the first byte picks a `query` (even) or a `match[]` selector
/// (odd), the rest is its text (refused unless UTF-8, as the API's form decoding does).
fn promql_text(input: &[u8]) -> Outcome {
    let (which, text) = match input.split_first() {
        Some((w, t)) => (*w, t),
        None => (0, input),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return Outcome::Refused;
    };
    let parsed = if which % 2 == 0 {
        ui_api::prom::parse_query_text(text).map(|_| ())
    } else {
        ui_api::prom::parse_selector(text).map(|_| ())
    };
    match parsed {
        Ok(()) => Outcome::Accepted,
        Err(_) => Outcome::Refused,
    }
}

/// The Prometheus API's input path: the first byte picks the endpoint, the rest is the
/// query (or `match[]` selector), sent form-encoded byte for byte.
fn prometheus_api(http: &InMemory, input: &[u8]) -> Outcome {
    let (which, text) = match input.split_first() {
        Some((w, t)) => (*w, t),
        None => (0, input),
    };
    let text = percent_encode(text);
    let (path, body) = match which % 4 {
        0 => (
            "/prometheus/api/v1/query",
            format!("query={text}&time=1700000000"),
        ),
        1 => (
            "/prometheus/api/v1/query_range",
            format!("query={text}&start=1699996400&end=1700000000&step=60"),
        ),
        2 => ("/prometheus/api/v1/series", format!("match[]={text}")),
        _ => (
            "/prometheus/api/v1/labels",
            format!("match[]={text}&match[]={text}"),
        ),
    };
    http.post(
        path,
        "application/x-www-form-urlencoded",
        false,
        Bytes::from(body),
    )
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn promql_seeds() -> Vec<Vec<u8>> {
    let queries = [
        "sum by (client, server) (rate(traces_service_graph_request_total[5m]))",
        "histogram_quantile(0.99, sum by (server, le) (rate(traces_service_graph_request_server_seconds_bucket[5m])))",
        "sum(increase(meshscope_service_calls_total{service=~\"rev.*\"}[1h] offset 1h))",
        "topk(3, meshscope_service_latency_quantile_seconds{quantile=\"0.99\"} @ 1700000000)",
        "sum by (service) (rate(meshscope_service_errors_total[5m])) / sum by (service) (rate(meshscope_service_calls_total[5m])) > bool 0.1",
        "{__name__=~\"traces_service_graph.+\", client!=\"user\"}",
        "vector(1) + scalar(count(meshscope_endpoint_calls_total)) unless on (service) absent_over_time(x[1m])",
    ];
    let mut out = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        for which in 0..4u8 {
            if which >= 2 && i > 5 {
                continue;
            }
            let mut input = vec![which];
            input.extend_from_slice(q.as_bytes());
            out.push(input);
        }
    }
    out
}

/// Rollup rows of a few calls with awkward names, for the file formats.
fn rows() -> RowBatch {
    let mut rollups = Rollups::new(RollupSettings {
        apdex_t_nanos: 500_000_000,
        max_endpoints_per_service: 100,
        max_services: 100,
        cap_forget_after: Duration::from_secs(3600),
    });
    let names = [
        "reviews.default",
        "a\tb\nc.ns",
        "'; DROP TABLE x; --",
        "ünï\u{202e}.ns",
    ];
    for (i, name) in names.iter().enumerate() {
        let minute = 1_700_000_000 / 60 * 60 + 60 * i as i64;
        let call = Call {
            start_unix_nanos: minute * 1_000_000_000,
            side: if i % 2 == 0 {
                Side::Server
            } else {
                Side::Client
            },
            source: if i % 3 == 0 {
                Source::Trace
            } else {
                Source::Mesh
            },
            client: Node::real(Arc::from("productpage.default"), Some(Arc::from("pp-1"))),
            server: Node::real(Arc::from(*name), Some(Arc::from("pod-0"))),
            endpoint: Some(Arc::from("GET /reviews/{id}")),
            protocol: if i % 2 == 0 {
                Protocol::Http
            } else {
                Protocol::Grpc
            },
            latency_nanos: Some(1_000_000 * (i as u64 + 1)),
            status_code: 200 + 100 * i as u32,
            grpc_status: None,
            error: i == 3,
            mtls: true,
            request_bytes: 10,
            response_bytes: 20,
        };
        rollups.apply(&call, minute);
    }
    rollups.take()
}

fn spool_seeds() -> Result<Vec<Vec<u8>>> {
    let dir = tempfile::tempdir().map_err(io("creating a temp dir"))?;
    let (mut spool, _) = spool::Spool::open(dir.path())?;
    let chunks = chunk::encode(&rows());
    let mut out = Vec::new();
    for part in [&chunks[..], &chunks[..1]] {
        let file = spool.write(part)?;
        out.push(std::fs::read(&file.path).map_err(io("reading a spool file"))?);
    }
    Ok(out)
}

/// The table a Parquet input is read as: its first byte picks it, the rest is the file.
fn parquet(input: &[u8]) -> Outcome {
    let Some((which, file)) = input.split_first() else {
        return Outcome::Refused;
    };
    let table = Table::ALL[usize::from(*which) % Table::ALL.len()];
    match rows_of_file(table, Bytes::copy_from_slice(file)) {
        Ok(_) => Outcome::Accepted,
        Err(_) => Outcome::Refused,
    }
}

fn parquet_seeds(dir: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let runtime = current_thread()?;
    let store = ParquetStore::open(dir, ParquetSettings::default())?;
    runtime
        .block_on(store.write(Arc::new(rows())))
        .during("writing the seed files")?;
    let mut out = Vec::new();
    for (i, table) in Table::ALL.iter().enumerate() {
        for day in read_dir(&dir.join(table.name()))? {
            for file in read_dir(&day)? {
                let mut input = vec![u8::try_from(i).unwrap_or(0)];
                input.extend(std::fs::read(&file).map_err(io("reading a Parquet file"))?);
                out.push(input);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Check("the store wrote no Parquet file".into()));
    }
    Ok(out)
}

fn read_dir(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(format!("reading {}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths)
}
