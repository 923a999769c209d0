#!/usr/bin/env python3
"""Check the configuration snippets in docs/snippets/ and that the docs quote them.
(Not named validate.py: that would shadow the `validate` package of xds-protos.)

    python3 docs/snippets/check_snippets.py

- envoy-*.yaml: parsed into Envoy's `envoy.config.bootstrap.v3.Bootstrap` with the
  protobuf descriptors of Envoy's API (PyPI `xds-protos`, generated from envoyproxy/envoy's
  api/), strictly: an unknown field, a wrong type or an unknown `@type` fails. Then: every
  gRPC access logger names a defined cluster, that cluster speaks HTTP/2, and in the
  secured snippet it has a TLS transport socket and sends `authorization: Bearer …`.
- istio-*.yaml, otelcol-*.yaml, grafana-*.yaml: checked against the schemas below,
  written from the products' API definitions (sources beside each) and limited to the
  fields the snippets use: unknown fields and wrong types fail (no Istio, Collector or
  Grafana runs here). Then: Collector pipelines name defined components and every
  exporter sends `authorization: Bearer …` over TLS; a Telemetry resource names only
  providers that istio-providers.yaml registers.
- Every fenced block in README.md and docs/*.md preceded by
  `<!-- snippet: docs/snippets/NAME -->` equals that file, byte for byte.

Prints "ok: <file>" per good snippet and every problem; exits 1 on any problem.
Needs `pip install pyyaml jsonschema xds-protos`.
"""

import re
import sys
from pathlib import Path

try:
    import jsonschema
    import yaml
    from google.protobuf import json_format

    # Registering every message an `@type` in the snippets names.
    import envoy.config.bootstrap.v3.bootstrap_pb2 as bootstrap_pb2
    import envoy.extensions.access_loggers.grpc.v3.als_pb2  # noqa: F401
    import envoy.extensions.filters.http.router.v3.router_pb2  # noqa: F401
    import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2  # noqa: F401
    import envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2  # noqa: F401
    import envoy.extensions.transport_sockets.tls.v3.tls_pb2  # noqa: F401
    import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
except ImportError as e:  # pragma: no cover
    sys.exit(f"check_snippets.py needs pyyaml, jsonschema and xds-protos ({e}): pip install pyyaml jsonschema xds-protos")

SNIPPETS = Path(__file__).resolve().parent
REPO = SNIPPETS.parent.parent

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


# --- Envoy -------------------------------------------------------------------------


def walk(node, path=""):
    """Every (path, dict) in a YAML tree."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def check_envoy(name, doc):
    try:
        json_format.ParseDict(doc, bootstrap_pb2.Bootstrap(), ignore_unknown_fields=False)
    except json_format.ParseError as e:
        problem(name, f"not an Envoy v3 Bootstrap: {e}")
        return
    clusters = {c["name"]: c for c in doc.get("static_resources", {}).get("clusters", [])}
    loggers = [
        (p, n)
        for p, n in walk(doc)
        if n.get("name") in ("envoy.access_loggers.http_grpc", "envoy.access_loggers.tcp_grpc")
    ]
    if not loggers:
        problem(name, "no gRPC access logger")
    for path, logger in loggers:
        common = logger["typed_config"]["common_config"]
        if common.get("transport_api_version") != "V3":
            problem(name, f"{path}: transport_api_version must be V3")
        service = common["grpc_service"]
        cluster = clusters.get(service.get("envoy_grpc", {}).get("cluster_name"))
        if cluster is None:
            problem(name, f"{path}: the logger's cluster is not defined")
            continue
        options = cluster.get("typed_extension_protocol_options", {}).get(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}
        )
        if "http2_protocol_options" not in options.get("explicit_http_config", {}):
            problem(name, f"cluster {cluster['name']}: gRPC needs http2_protocol_options")
        if "tls" in name:
            metadata = {m["key"]: m["value"] for m in service.get("initial_metadata", [])}
            if not metadata.get("authorization", "").startswith("Bearer "):
                problem(name, f"{path}: no `authorization: Bearer …` initial metadata")
            socket = cluster.get("transport_socket", {})
            if socket.get("name") != "envoy.transport_sockets.tls":
                problem(name, f"cluster {cluster['name']}: no TLS transport socket")
                continue
            tls = socket["typed_config"]
            if "h2" not in tls["common_tls_context"].get("alpn_protocols", []):
                problem(name, f"cluster {cluster['name']}: TLS without ALPN h2")
            # The names Envoy checks are ones deploy/kubernetes's certificate holds.
            names = certificate_names()
            sans = [
                m["matcher"]["exact"]
                for m in tls["common_tls_context"]["validation_context"].get("match_typed_subject_alt_names", [])
            ]
            for n in [tls.get("sni"), *sans]:
                if n not in names:
                    problem(name, f"cluster {cluster['name']}: {n} is not a name of the certificate in deploy/kubernetes/optional/certificate.yaml")


def certificate_names():
    cert = yaml.safe_load((REPO / "deploy/kubernetes/optional/certificate.yaml").read_text())
    return set(cert["spec"]["dnsNames"])


def service_hosts():
    """The in-cluster names of deploy/kubernetes's Services."""
    hosts = set()
    for f in (REPO / "deploy/kubernetes").glob("*.yaml"):
        for d in yaml.safe_load_all(f.read_text()):
            if d and d.get("kind") == "Service":
                n, ns = d["metadata"]["name"], d["metadata"]["namespace"]
                hosts |= {f"{n}.{ns}.svc.cluster.local", f"{ns}/{n}.{ns}.svc.cluster.local"}
    return hosts


# --- Istio, the OpenTelemetry Collector, Grafana -----------------------------------


def obj(properties, required=()):
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STR = {"type": "string"}
STRS = {"type": "array", "items": STR}
BOOL = {"type": "boolean"}
LABELS = {"type": "object", "additionalProperties": STR}
META = obj({"name": STR, "namespace": STR, "labels": LABELS, "annotations": LABELS}, ["name"])

# Istio (istio/api: security/v1beta1/{peer_authentication,authorization_policy}.proto,
# telemetry/v1alpha1/telemetry.proto, mesh/v1alpha1/config.proto; the v1 kinds share the
# v1beta1 schema). Ports in authorization rules are strings.
SELECTOR = obj({"matchLabels": LABELS}, ["matchLabels"])
MTLS_MODE = {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}
SOURCE = obj(
    {
        k: STRS
        for k in [
            "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals",
            "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks",
            "remoteIpBlocks", "notRemoteIpBlocks",
        ]
    }
)
PORTS = {"type": "array", "items": {"type": "string", "pattern": "^[0-9]{1,5}$"}}
OPERATION = obj(
    {
        "hosts": STRS, "notHosts": STRS, "ports": PORTS, "notPorts": PORTS,
        "methods": STRS, "notMethods": STRS, "paths": STRS, "notPaths": STRS,
    }
)
RULE = obj(
    {
        "from": {"type": "array", "items": obj({"source": SOURCE}, ["source"])},
        "to": {"type": "array", "items": obj({"operation": OPERATION}, ["operation"])},
        "when": {"type": "array", "items": obj({"key": STR, "values": STRS, "notValues": STRS}, ["key"])},
    }
)
ALS = {
    "service": STR,
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "logName": STR,
    "filterStateObjectsToLog": STRS,
}
PROVIDER = obj(
    {
        "name": STR,
        "envoyHttpAls": obj(
            {
                **ALS,
                "additionalRequestHeadersToLog": STRS,
                "additionalResponseHeadersToLog": STRS,
                "additionalResponseTrailersToLog": STRS,
            },
            ["service", "port"],
        ),
        "envoyTcpAls": obj(ALS, ["service", "port"]),
    },
    ["name"],
)
ACCESS_LOGGING = obj(
    {
        "providers": {"type": "array", "items": obj({"name": {"type": "string", "minLength": 1}}, ["name"])},
        "disabled": BOOL,
        "match": obj({"mode": {"enum": ["CLIENT_AND_SERVER", "CLIENT", "SERVER"]}}),
    }
)


def kind(api, name, spec, required_spec=()):
    return obj(
        {
            "apiVersion": {"const": api},
            "kind": {"const": name},
            "metadata": META,
            "spec": obj(spec, required_spec),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


# The OpenTelemetry Collector (opentelemetry-collector: config/configtls, configgrpc,
# confighttp, exporter/otlpexporter, exporter/otlphttpexporter): the exporters to meshscope.
COLLECTOR_TLS = obj(
    {
        "ca_file": STR, "cert_file": STR, "key_file": STR, "insecure": BOOL,
        "insecure_skip_verify": BOOL, "server_name_override": STR,
        "min_version": {"enum": ["1.2", "1.3"]},
    }
)
HEADERS = {"type": "object", "additionalProperties": STR}
OTLP_GRPC = obj(
    {
        "endpoint": {"type": "string", "pattern": "^[^/]+:[0-9]+$"},
        "headers": HEADERS,
        "tls": COLLECTOR_TLS,
        "compression": {"enum": ["gzip", "snappy", "zstd", "none"]},
    },
    ["endpoint"],
)
OTLP_HTTP = obj(
    {
        "endpoint": {"type": "string", "pattern": "^https?://[^/]+:[0-9]+$"},
        "headers": HEADERS,
        "tls": COLLECTOR_TLS,
        "compression": {"enum": ["gzip", "zstd", "none"]},
        "encoding": {"enum": ["proto", "json"]},
    },
    ["endpoint"],
)
COLLECTOR = obj(
    {
        "receivers": {"type": "object"},
        "processors": {"type": "object"},
        "extensions": {"type": "object"},
        "exporters": {
            "type": "object",
            "patternProperties": {
                r"^(otlp|otlp_grpc)(/[\w-]+)?$": OTLP_GRPC,
                r"^(otlphttp|otlp_http)(/[\w-]+)?$": OTLP_HTTP,
            },
            "additionalProperties": False,
        },
        "service": obj(
            {
                "extensions": STRS,
                "pipelines": {
                    "type": "object",
                    "additionalProperties": obj(
                        {"receivers": STRS, "processors": STRS, "exporters": STRS},
                        ["receivers", "exporters"],
                    ),
                },
            },
            ["pipelines"],
        ),
    },
    ["exporters", "service"],
)

# Grafana data source provisioning (grafana/grafana: pkg/services/provisioning/datasources
# types.go; the Prometheus data source's jsonData and secureJsonData keys).
DATASOURCE = obj(
    {
        "name": STR, "uid": STR, "type": {"enum": ["prometheus", "tempo"]},
        "access": {"enum": ["proxy"]}, "url": STR, "isDefault": BOOL, "editable": BOOL,
        "orgId": {"type": "integer"}, "basicAuth": BOOL, "basicAuthUser": STR,
        "jsonData": obj(
            {
                "timeInterval": STR, "httpMethod": {"enum": ["GET", "POST"]},
                "prometheusType": STR, "prometheusVersion": STR, "manageAlerts": BOOL,
                "tlsAuth": BOOL, "tlsAuthWithCACert": BOOL, "tlsSkipVerify": BOOL,
                "serverName": STR, "httpHeaderName1": STR,
                "serviceMap": obj({"datasourceUid": STR}),
                "nodeGraph": obj({"enabled": BOOL}),
            }
        ),
        "secureJsonData": obj(
            {
                "basicAuthPassword": STR, "tlsCACert": STR, "tlsClientCert": STR,
                "tlsClientKey": STR, "httpHeaderValue1": STR,
            }
        ),
    },
    ["name", "type", "url"],
)
GRAFANA = obj(
    {"apiVersion": {"const": 1}, "datasources": {"type": "array", "items": DATASOURCE}},
    ["apiVersion", "datasources"],
)

SCHEMAS = {
    ("security.istio.io/v1", "PeerAuthentication"): kind(
        "security.istio.io/v1",
        "PeerAuthentication",
        {"selector": SELECTOR, "mtls": obj({"mode": MTLS_MODE}, ["mode"])},
    ),
    ("security.istio.io/v1", "AuthorizationPolicy"): kind(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        {
            "selector": SELECTOR,
            "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
            "rules": {"type": "array", "items": RULE},
        },
    ),
    ("telemetry.istio.io/v1", "Telemetry"): kind(
        "telemetry.istio.io/v1",
        "Telemetry",
        {"selector": SELECTOR, "accessLogging": {"type": "array", "items": ACCESS_LOGGING}},
    ),
    ("install.istio.io/v1alpha1", "IstioOperator"): obj(
        {
            "apiVersion": {"const": "install.istio.io/v1alpha1"},
            "kind": {"const": "IstioOperator"},
            "spec": obj(
                {"meshConfig": obj({"extensionProviders": {"type": "array", "items": PROVIDER}})},
                ["meshConfig"],
            ),
        },
        ["apiVersion", "kind", "spec"],
    ),
}


def schema_for(name, doc):
    if name.startswith("otelcol-"):
        return COLLECTOR
    if name.startswith("grafana-"):
        return GRAFANA
    return SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))


def check_collector(name, doc):
    """Pipelines name only components that are defined."""
    for pipeline, p in doc.get("service", {}).get("pipelines", {}).items():
        for section in ("receivers", "processors", "exporters"):
            for component in p.get(section, []):
                if component not in doc.get(section, {}):
                    problem(name, f"pipeline {pipeline}: {section[:-1]} {component} is not defined")
    for exporter, e in doc.get("exporters", {}).items():
        if not e.get("headers", {}).get("authorization", "").startswith("Bearer "):
            problem(name, f"exporter {exporter}: no `authorization: Bearer …` header")
        if e.get("tls", {}).get("insecure"):
            problem(name, f"exporter {exporter}: TLS turned off")


def check_istio(name, doc):
    """Providers send to a Service deploy/kubernetes defines; every provider a Telemetry
    resource names is one the providers snippet registers."""
    if doc.get("kind") == "IstioOperator":
        for p in doc["spec"]["meshConfig"]["extensionProviders"]:
            service = next(v["service"] for k, v in p.items() if k != "name")
            if service not in service_hosts():
                problem(name, f"provider {p['name']}: no Service {service} in deploy/kubernetes")
    if doc.get("kind") != "Telemetry":
        return
    providers = yaml.safe_load((SNIPPETS / "istio-providers.yaml").read_text())
    known = {p["name"] for p in providers["spec"]["meshConfig"]["extensionProviders"]}
    for logging in doc["spec"].get("accessLogging", []):
        for p in logging.get("providers", []):
            if p["name"] not in known:
                problem(name, f"provider {p['name']} is not registered in istio-providers.yaml")


def check_schema(name, doc, schema):
    v = jsonschema.Draft7Validator(schema)
    for e in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in e.path) or "(top)"
        problem(name, f"{where}: {e.message}")


# --- the docs quote the snippets ----------------------------------------------------

MARK = re.compile(r"<!-- snippet: (docs/snippets/[\w.-]+) -->\n```[a-z]*\n(.*?)```", re.S)


def check_quotes():
    quoted = set()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        for m in MARK.finditer(text):
            path, block = m.group(1), m.group(2)
            quoted.add(path)
            target = REPO / path
            if not target.exists():
                problem(doc.name, f"quotes {path}, which does not exist")
            elif target.read_text() != block:
                problem(doc.name, f"its quote of {path} differs from the file")
        if text.count("<!-- snippet:") != len(MARK.findall(text)):
            problem(doc.name, "a snippet mark not followed by a fenced block")
    return quoted


def main():
    quoted = check_quotes()
    for path in sorted(SNIPPETS.glob("*.yaml")):
        name = path.name
        before = len(problems)
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        for doc in docs:
            if name.startswith("envoy-"):
                check_envoy(name, doc)
            else:
                schema = schema_for(name, doc)
                if schema is None:
                    problem(name, f"no schema for {doc.get('apiVersion')} {doc.get('kind')}")
                    continue
                check_schema(name, doc, schema)
                if name.startswith("otelcol-"):
                    check_collector(name, doc)
                elif name.startswith("istio-"):
                    check_istio(name, doc)
        if f"docs/snippets/{name}" not in quoted:
            problem(name, "not quoted in README.md or docs/*.md")
        if len(problems) == before:
            print(f"ok: {name} ({len(docs)} document{'s' if len(docs) != 1 else ''})")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
