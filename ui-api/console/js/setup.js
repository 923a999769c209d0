// What the console shows when the window has no calls: how to point Envoy/Istio and OTLP
// exporters at this server, with this server's own addresses.

import { h } from './dom.js';

/** `host:port` of a listener as a client reaches it: an unspecified host is this page's. */
export function reachable(address, pageHost) {
  const m = /^(.*):(\d+)$/.exec(address ?? '');
  if (!m) return address ?? '';
  let host = m[1];
  if (host === '0.0.0.0' || host === '[::]' || host === '::' || host === '') host = pageHost;
  return `${host}:${m[2]}`;
}

/** The filter state Istio's peer-metadata plugin leaves: names each call's peer workload. */
const PEER_STATE = '["wasm.upstream_peer", "wasm.downstream_peer", "upstream_peer", "downstream_peer"]';

function code(text) {
  return h('pre', null, h('code', null, text));
}

/** The empty state: `status` is `/api/v1/status`, `span` the window in words ("the last 15m"). */
export function emptyState(status, span, pageHost) {
  const grpc = reachable(status?.grpc?.address, pageHost);
  const otlpHttp = reachable(status?.otlp_http?.address, pageHost);
  const grpcScheme = status?.grpc?.tls ? 'https' : 'http';
  const httpScheme = status?.otlp_http?.tls ? 'https' : 'http';
  const [grpcHost, grpcPort] = [grpc.replace(/:\d+$/, ''), grpc.replace(/^.*:/, '')];
  const token = status?.ingest_tokens ? '\n# this server needs an ingest token: add the header  authorization: Bearer <token>' : '';
  return h(
    'section',
    { class: 'empty', 'aria-labelledby': 'empty-title' },
    h('h2', { id: 'empty-title' }, `No calls in ${span}`),
    h('p', null, 'meshscope has received no telemetry for this window. Point your mesh and your OpenTelemetry SDKs at this server, or pick a longer window. This page looks again every few seconds.'),
    h('h3', null, 'Istio: Envoy access logs (ALS)'),
    code(
      `meshConfig:
  extensionProviders:
  - name: meshscope-http
    envoyHttpAls:
      service: ${grpcHost}
      port: ${grpcPort}
      logName: meshscope_http
      additionalRequestHeadersToLog: ["content-type"]
      additionalResponseHeadersToLog: ["grpc-status"]
      additionalResponseTrailersToLog: ["grpc-status"]
      filterStateObjectsToLog: ${PEER_STATE}
  - name: meshscope-tcp
    envoyTcpAls:
      service: ${grpcHost}
      port: ${grpcPort}
      logName: meshscope_tcp
      filterStateObjectsToLog: ${PEER_STATE}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  accessLogging:
  - providers: [{ name: meshscope-http }, { name: meshscope-tcp }]${token}`,
    ),
    h('p', { class: 'muted' }, 'In a cluster, use the Service name that reaches this server (e.g. meshscope-collector.meshscope.svc.cluster.local) rather than the address it listens on.'),
    h('h3', null, 'Envoy: the gRPC access log service'),
    code(
      `access_log:
- name: envoy.access_loggers.http_grpc
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig
    common_config:
      log_name: meshscope_http
      transport_api_version: V3
      grpc_service: { envoy_grpc: { cluster_name: meshscope } }
    additional_request_headers_to_log: ["content-type"]
    additional_response_headers_to_log: ["grpc-status"]
    additional_response_trailers_to_log: ["grpc-status"]
# clusters: "meshscope", HTTP/2 (explicit_http_config: { http2_protocol_options: {} }) to ${grpc}`,
    ),
    h('h3', null, 'OpenTelemetry SDKs: OTLP traces'),
    code(
      `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=${grpcScheme}://${grpc}          # OTLP/gRPC
# or OTLP/HTTP:
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=${httpScheme}://${otlpHttp}/v1/traces
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf${status?.ingest_tokens ? '\nOTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>' : ''}`,
    ),
    h('p', null, 'Try it without a mesh: ', h('code', null, 'meshscope demo'), ' streams simulated bookinfo and shop traffic into its own server. Full, commented configurations are in the README ("Connecting Envoy and Istio", "Sending OpenTelemetry traces") and docs/envoy-istio.md.'),
  );
}
