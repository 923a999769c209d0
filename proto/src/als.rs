//! A field subset of Envoy's access-log service v3 messages.
//!
//! Field numbers follow `envoy/service/accesslog/v3/als.proto` and
//! `envoy/data/accesslog/v3/accesslog.proto`. Fields meshscope does not read are simply not
//! declared, so prost skips them on the wire instead of allocating them; this is what keeps
//! decoding well above a full decode into `envoy-types` structs. The end-to-end tests
//! encode with the complete `envoy-types` definitions, which checks these numbers.

use std::collections::HashMap;

use bytes::Bytes;

/// `envoy.service.accesslog.v3.StreamAccessLogsMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAccessLogsMessage {
    /// Only present in the first message of a stream.
    #[prost(message, optional, tag = "1")]
    pub identifier: Option<Identifier>,
    #[prost(message, optional, tag = "2")]
    pub http_logs: Option<HttpAccessLogEntries>,
    #[prost(message, optional, tag = "3")]
    pub tcp_logs: Option<TcpAccessLogEntries>,
}

/// `StreamAccessLogsMessage.Identifier`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Identifier {
    #[prost(message, optional, tag = "1")]
    pub node: Option<EnvoyNode>,
    #[prost(string, tag = "2")]
    pub log_name: String,
}

/// `envoy.config.core.v3.Node` (id, cluster, metadata).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EnvoyNode {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub cluster: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<prost_types::Struct>,
}

/// `StreamAccessLogsMessage.HTTPAccessLogEntries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpAccessLogEntries {
    #[prost(message, repeated, tag = "1")]
    pub log_entry: Vec<HttpAccessLogEntry>,
}

/// `StreamAccessLogsMessage.TCPAccessLogEntries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TcpAccessLogEntries {
    #[prost(message, repeated, tag = "1")]
    pub log_entry: Vec<TcpAccessLogEntry>,
}

/// `envoy.data.accesslog.v3.HTTPAccessLogEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpAccessLogEntry {
    #[prost(message, optional, tag = "1")]
    pub common_properties: Option<AccessLogCommon>,
    /// `HTTPVersion`: 0 unspecified, 1 HTTP/1.0, 2 HTTP/1.1, 3 HTTP/2, 4 HTTP/3.
    #[prost(int32, tag = "2")]
    pub protocol_version: i32,
    #[prost(message, optional, tag = "3")]
    pub request: Option<HttpRequestProperties>,
    #[prost(message, optional, tag = "4")]
    pub response: Option<HttpResponseProperties>,
}

/// `envoy.data.accesslog.v3.TCPAccessLogEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TcpAccessLogEntry {
    #[prost(message, optional, tag = "1")]
    pub common_properties: Option<AccessLogCommon>,
    #[prost(message, optional, tag = "2")]
    pub connection_properties: Option<ConnectionProperties>,
}

/// `envoy.data.accesslog.v3.ConnectionProperties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionProperties {
    #[prost(uint64, tag = "1")]
    pub received_bytes: u64,
    #[prost(uint64, tag = "2")]
    pub sent_bytes: u64,
}

/// `envoy.data.accesslog.v3.AccessLogCommon`, the fields meshscope reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AccessLogCommon {
    #[prost(message, optional, tag = "2")]
    pub downstream_remote_address: Option<Address>,
    #[prost(message, optional, tag = "4")]
    pub tls_properties: Option<TlsProperties>,
    #[prost(message, optional, tag = "5")]
    pub start_time: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "10")]
    pub time_to_last_upstream_rx_byte: Option<prost_types::Duration>,
    #[prost(message, optional, tag = "12")]
    pub time_to_last_downstream_tx_byte: Option<prost_types::Duration>,
    #[prost(message, optional, tag = "13")]
    pub upstream_remote_address: Option<Address>,
    #[prost(string, tag = "15")]
    pub upstream_cluster: String,
    #[prost(message, optional, tag = "16")]
    pub response_flags: Option<ResponseFlags>,
    /// Values are `Any`; kept as raw bytes so repeated peers can be resolved from a cache.
    #[prost(map = "string, message", tag = "21")]
    pub filter_state_objects: HashMap<String, Any>,
    #[prost(message, optional, tag = "23")]
    pub duration: Option<prost_types::Duration>,
    /// Set on periodic or start-of-request entries; the final entry follows later with
    /// cumulative figures, so intermediate entries must not be counted.
    #[prost(bool, tag = "27")]
    pub intermediate_log_entry: bool,
    /// `AccessLogType` (Envoy ≥ 1.26): which log point wrote the entry. 0 = not set.
    #[prost(int32, tag = "33")]
    pub access_log_type: i32,
}

/// `AccessLogType` values written at the end of an HTTP request (or not set).
pub const HTTP_FINAL_LOG_TYPES: [i32; 2] = [0, 6];
/// `AccessLogType` values written by network filters (TCP proxy, UDP) rather than HTTP.
pub const NETWORK_LOG_TYPES: [i32; 7] = [1, 2, 3, 11, 12, 13, 14];
/// `AccessLogType` values written at the end of a TCP connection (or not set).
pub const TCP_FINAL_LOG_TYPES: [i32; 2] = [0, 3];

/// `google.protobuf.Any` with the payload left undecoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `envoy.config.core.v3.Address` (socket addresses only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress` (address and numeric port).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    #[prost(string, tag = "2")]
    pub address: String,
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `envoy.data.accesslog.v3.TLSProperties`, enough to tell whether a peer certificate was
/// presented (mutual TLS).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TlsProperties {
    #[prost(message, optional, tag = "5")]
    pub peer_certificate_properties: Option<CertificateProperties>,
}

/// `TLSProperties.CertificateProperties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CertificateProperties {
    #[prost(message, repeated, tag = "1")]
    pub subject_alt_name: Vec<SubjectAltName>,
    #[prost(string, tag = "2")]
    pub subject: String,
}

/// `CertificateProperties.SubjectAltName` (`uri` = 1, `dns` = 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubjectAltName {
    #[prost(string, tag = "1")]
    pub uri: String,
    #[prost(string, tag = "2")]
    pub dns: String,
}

/// `envoy.data.accesslog.v3.ResponseFlags`: the failure flags that explain a call with no
/// response code. Flags that are not failures (delay or fault injected, served from cache)
/// are not declared.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseFlags {
    #[prost(bool, tag = "1")]
    pub failed_local_healthcheck: bool,
    #[prost(bool, tag = "2")]
    pub no_healthy_upstream: bool,
    #[prost(bool, tag = "3")]
    pub upstream_request_timeout: bool,
    #[prost(bool, tag = "4")]
    pub local_reset: bool,
    #[prost(bool, tag = "5")]
    pub upstream_remote_reset: bool,
    #[prost(bool, tag = "6")]
    pub upstream_connection_failure: bool,
    #[prost(bool, tag = "7")]
    pub upstream_connection_termination: bool,
    #[prost(bool, tag = "8")]
    pub upstream_overflow: bool,
    #[prost(bool, tag = "9")]
    pub no_route_found: bool,
    #[prost(bool, tag = "12")]
    pub rate_limited: bool,
    #[prost(bool, tag = "14")]
    pub rate_limit_service_error: bool,
    #[prost(bool, tag = "15")]
    pub downstream_connection_termination: bool,
    #[prost(bool, tag = "16")]
    pub upstream_retry_limit_exceeded: bool,
    #[prost(bool, tag = "17")]
    pub stream_idle_timeout: bool,
    #[prost(bool, tag = "18")]
    pub invalid_envoy_request_headers: bool,
    #[prost(bool, tag = "19")]
    pub downstream_protocol_error: bool,
    #[prost(bool, tag = "20")]
    pub upstream_max_stream_duration_reached: bool,
    #[prost(bool, tag = "22")]
    pub no_filter_config_found: bool,
    #[prost(bool, tag = "23")]
    pub duration_timeout: bool,
    #[prost(bool, tag = "24")]
    pub upstream_protocol_error: bool,
    #[prost(bool, tag = "25")]
    pub no_cluster_found: bool,
    #[prost(bool, tag = "26")]
    pub overload_manager: bool,
    #[prost(bool, tag = "27")]
    pub dns_resolution_failure: bool,
    #[prost(bool, tag = "28")]
    pub downstream_remote_reset: bool,
}

impl ResponseFlags {
    /// Whether any failure flag is set.
    pub fn any_failure(&self) -> bool {
        [
            self.failed_local_healthcheck,
            self.no_healthy_upstream,
            self.upstream_request_timeout,
            self.local_reset,
            self.upstream_remote_reset,
            self.upstream_connection_failure,
            self.upstream_connection_termination,
            self.upstream_overflow,
            self.no_route_found,
            self.rate_limited,
            self.rate_limit_service_error,
            self.downstream_connection_termination,
            self.upstream_retry_limit_exceeded,
            self.stream_idle_timeout,
            self.invalid_envoy_request_headers,
            self.downstream_protocol_error,
            self.upstream_max_stream_duration_reached,
            self.no_filter_config_found,
            self.duration_timeout,
            self.upstream_protocol_error,
            self.no_cluster_found,
            self.overload_manager,
            self.dns_resolution_failure,
            self.downstream_remote_reset,
        ]
        .into_iter()
        .any(|f| f)
    }
}

/// `envoy.data.accesslog.v3.HTTPRequestProperties`, the fields meshscope reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequestProperties {
    /// `envoy.config.core.v3.RequestMethod` as its number (see [`method_name`]).
    #[prost(int32, tag = "1")]
    pub request_method: i32,
    #[prost(string, tag = "3")]
    pub authority: String,
    #[prost(string, tag = "5")]
    pub path: String,
    #[prost(uint64, tag = "12")]
    pub request_body_bytes: u64,
    #[prost(map = "string, string", tag = "13")]
    pub request_headers: HashMap<String, String>,
}

/// `envoy.data.accesslog.v3.HTTPResponseProperties`, the fields meshscope reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpResponseProperties {
    /// `google.protobuf.UInt32Value`: absent or 0 means no response was sent.
    #[prost(message, optional, tag = "1")]
    pub response_code: Option<u32>,
    #[prost(uint64, tag = "3")]
    pub response_body_bytes: u64,
    #[prost(map = "string, string", tag = "4")]
    pub response_headers: HashMap<String, String>,
    #[prost(map = "string, string", tag = "5")]
    pub response_trailers: HashMap<String, String>,
}

/// The name of an `envoy.config.core.v3.RequestMethod` number; `None` for unspecified or
/// unknown numbers.
pub fn method_name(method: i32) -> Option<&'static str> {
    Some(match method {
        1 => "GET",
        2 => "HEAD",
        3 => "POST",
        4 => "PUT",
        5 => "DELETE",
        6 => "CONNECT",
        7 => "OPTIONS",
        8 => "TRACE",
        9 => "PATCH",
        _ => return None,
    })
}
