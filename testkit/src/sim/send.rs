//! Real gRPC clients for the simulated proxies: streams of encoded messages, the start-up
//! announcement, and raw bytes (valid or not) for load generators and bad-input tests.

use bytes::{Buf, BufMut, Bytes};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::Identifier;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::envoy::{encode, node};
use super::mesh::{Hop, Mesh};
use super::peer::Peer;

/// Streams `messages` as one ALS stream to `peer` (`http://127.0.0.1:4317`, or a
/// [`Peer`] with TLS and a token) and waits for the server's answer.
pub async fn send(
    peer: impl Into<Peer>,
    messages: Vec<StreamAccessLogsMessage>,
) -> Result<(), Status> {
    let peer = peer.into();
    send_on(
        peer.channel().await?,
        &peer,
        futures::stream::iter(messages),
    )
    .await
}

/// Streams `messages` as one ALS stream over an open `channel` to `peer` (with its token,
/// if any) and waits for the server's answer: many streams can share one connection.
pub async fn send_on(
    channel: tonic::transport::Channel,
    peer: &Peer,
    messages: impl futures::Stream<Item = StreamAccessLogsMessage> + Send + 'static,
) -> Result<(), Status> {
    AccessLogServiceClient::new(channel)
        .stream_access_logs(peer.authorize(tonic::Request::new(messages))?)
        .await
        .map(|_| ())
}

/// A raw gRPC client connected to `peer` (`http://127.0.0.1:4317`), for load generators
/// and tests that send hand-encoded messages (which add the token with
/// [`Peer::authorize`]).
pub async fn connect(
    peer: impl Into<Peer>,
) -> Result<tonic::client::Grpc<tonic::transport::Channel>, Status> {
    Ok(tonic::client::Grpc::new(peer.into().channel().await?))
}

/// Opens and closes one stream per proxy carrying only its identifier, as Envoy does at
/// start-up, so the server knows every proxy's addresses before any entry arrives.
pub async fn announce(
    peer: impl Into<Peer>,
    mesh: &Mesh,
    proxies: impl IntoIterator<Item = usize>,
) -> Result<(), Status> {
    let peer = peer.into();
    for p in proxies {
        let hello = StreamAccessLogsMessage {
            identifier: Some(Identifier {
                node: Some(node(&mesh.workloads[p])),
                log_name: "http_envoy_accesslog".into(),
            }),
            log_entries: None,
        };
        send(&peer, vec![hello]).await?;
    }
    Ok(())
}

/// Announces every proxy, then streams every stream of `hops` concurrently.
pub async fn send_all(peer: impl Into<Peer>, mesh: &Mesh, hops: &[Hop]) -> Result<(), Status> {
    let peer = peer.into();
    let streams = encode(mesh, hops);
    let mut proxies: Vec<usize> = streams.iter().map(|(p, _)| *p).collect();
    proxies.dedup();
    announce(&peer, mesh, proxies).await?;
    let futures = streams
        .into_iter()
        .map(|(_, messages)| send(&peer, messages));
    for r in futures::future::join_all(futures).await {
        r?;
    }
    Ok(())
}

/// Sends pre-encoded protobuf bytes as they are.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
pub struct RawEncoder;
/// Decoder half of [`RawCodec`]: the (empty) response is discarded.
pub struct DiscardDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for DiscardDecoder {
    type Item = ();
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = DiscardDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> DiscardDecoder {
        DiscardDecoder
    }
}

/// Streams already-encoded `StreamAccessLogsMessage` bytes (valid or not) as one ALS
/// stream, for load generation and bad-input tests.
pub async fn send_raw(peer: impl Into<Peer>, messages: Vec<Bytes>) -> Result<(), Status> {
    let peer = peer.into();
    let mut grpc = connect(&peer).await?;
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
    );
    grpc.client_streaming::<_, Bytes, (), _>(
        peer.authorize(tonic::Request::new(futures::stream::iter(messages)))?,
        path,
        RawCodec,
    )
    .await
    .map(|_| ())
}
