//! [`AlsServer`]: the hand-written tonic service for `StreamAccessLogs`. Each stream runs
//! its own loop: identify the reporter from the first message, decode every message's
//! entries into one batch, hand it to the aggregator (waiting while the channel is full),
//! and end with OK at shutdown. Refusals are [`Rejection`]s.

use std::sync::Arc;
use std::task::{Context, Poll};

use proto::channel::CallSender;
use tokio::sync::{Semaphore, watch};
use tonic::Status;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tracing::{debug, trace, warn};

use super::address_book::AddressBook;
use super::cost::message_cost;
use super::entry::StreamDecoder;
use super::message::decode_message;
use crate::budget::DecodeBudget;
use crate::codec::{Measured, MeasuringCodec};
use crate::deliver::deliver;
use crate::metrics::CollectorMetrics;
use crate::reject::Rejection;

/// gRPC service name of the access-log service.
pub const SERVICE_NAME: &str = "envoy.service.accesslog.v3.AccessLogService";
const METHOD_PATH: &str = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

/// `envoy.service.accesslog.v3.StreamAccessLogsResponse` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAccessLogsResponse {}

/// The ALS gRPC service: a `tower::Service` answering the one client-streaming method.
#[derive(Clone)]
pub struct AlsServer {
    inner: Arc<AlsInner>,
}

struct AlsInner {
    calls: CallSender,
    book: Arc<AddressBook>,
    metrics: CollectorMetrics,
    shutdown: watch::Receiver<bool>,
    max_message_bytes: usize,
    budget: DecodeBudget,
    /// One permit per open stream (`collector.max_als_streams`).
    streams: Arc<Semaphore>,
}

impl AlsServer {
    /// A server sending call batches into `calls`; open streams end when `shutdown` turns
    /// true.
    pub fn new(
        calls: CallSender,
        book: Arc<AddressBook>,
        metrics: CollectorMetrics,
        shutdown: watch::Receiver<bool>,
        max_message_bytes: usize,
        budget: DecodeBudget,
        max_streams: usize,
    ) -> AlsServer {
        AlsServer {
            inner: Arc::new(AlsInner {
                calls,
                book,
                metrics,
                shutdown,
                max_message_bytes,
                budget,
                streams: Arc::new(Semaphore::new(max_streams)),
            }),
        }
    }
}

impl tonic::server::NamedService for AlsServer {
    const NAME: &'static str = SERVICE_NAME;
}

struct StreamSvc(Arc<AlsInner>);

impl tonic::server::ClientStreamingService<Measured> for StreamSvc {
    type Response = StreamAccessLogsResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Measured>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.stream(request.into_inner()).await })
    }
}

impl<B> tower::Service<http::Request<B>> for AlsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != METHOD_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented(
                    "unknown method of envoy.service.accesslog.v3.AccessLogService",
                )
                .into_http())
            });
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let limit = inner.max_message_bytes;
            let codec =
                MeasuringCodec::<StreamAccessLogsResponse>::new(message_cost, "access-log message");
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(limit), None);
            Ok(grpc.client_streaming(StreamSvc(inner), req).await)
        })
    }
}

struct StreamGuard(CollectorMetrics);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams_open.dec();
    }
}

impl AlsInner {
    /// Counts and logs a stream error, and answers it.
    fn reject(&self, status: Status) -> Status {
        self.refuse(Rejection::of_stream_error(&status))
    }

    /// Counts and logs a refusal (a client's cancel at DEBUG only), and answers it.
    fn refuse(&self, rejection: Rejection) -> Status {
        self.metrics.messages_rejected(rejection.reason());
        if matches!(rejection, Rejection::Cancelled(_)) {
            debug!(message = %rejection, "access-log stream cancelled by the client");
        } else {
            warn!(reason = rejection.reason(), message = %rejection, "access-log message rejected");
        }
        rejection.status_of("access-log message rejected")
    }

    async fn stream(
        &self,
        mut stream: tonic::Streaming<Measured>,
    ) -> Result<tonic::Response<StreamAccessLogsResponse>, Status> {
        // Each open stream costs about 10 KiB while it waits (BENCHMARKS.md): their
        // number is bounded, past it a stream is refused UNAVAILABLE and Envoy retries.
        let Ok(_slot) = self.streams.clone().try_acquire_owned() else {
            return Err(self.refuse(Rejection::Busy(
                "too many access-log streams are open (collector.max_als_streams)".into(),
            )));
        };
        self.metrics.streams_open.inc();
        self.metrics.streams_total.inc();
        let _guard = StreamGuard(self.metrics.clone());
        let mut shutdown = self.shutdown.clone();
        let mut decoder = StreamDecoder::new(self.book.clone());
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = shutdown.wait_for(|s| *s) => {
                    debug!("ending access-log stream for shutdown");
                    return Ok(tonic::Response::new(StreamAccessLogsResponse {}));
                }
            };
            let measured = match message {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(tonic::Response::new(StreamAccessLogsResponse {})),
                Err(status) => return Err(self.reject(status)),
            };
            // Waits while other messages hold the budget: the stream waits with it.
            // Refused busy only when the waiting messages already hold as much again.
            let charge = match self
                .budget
                .charge_waiting(
                    measured.cost,
                    measured.bytes.len(),
                    "the access-log message",
                )
                .await
            {
                Ok(c) => c,
                Err(rejection) => return Err(self.refuse(rejection)),
            };
            let batch = match decode_message(&mut decoder, measured.bytes, &self.metrics) {
                Ok(batch) => batch,
                Err(Rejection::NoIdentifier) => {
                    self.metrics
                        .messages_rejected(Rejection::NoIdentifier.reason());
                    return Err(Rejection::NoIdentifier.status());
                }
                Err(rejection) => return Err(self.refuse(rejection)),
            };
            // The calls own what they need: the message is gone; free its share of the
            // decoding budget before waiting for the channel.
            drop(charge);
            if batch.is_empty() {
                continue;
            }
            trace!(calls = batch.len(), "access-log batch decoded");
            if let Err(rejection) = deliver(&self.calls, &self.metrics, batch).await {
                return Err(rejection.status());
            }
        }
    }
}
