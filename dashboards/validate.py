#!/usr/bin/env python3
"""Check meshscope's Grafana dashboards and provisioning files.

    python3 dashboards/validate.py [--schemas DIR]

DIR defaults to <repo>/../shared/grafana-schemas: draft-07 JSON Schemas copied from
grafana/grafana-foundation-sdk (see SOURCES.txt there). Needs `pip install jsonschema
pyyaml`.

For every dashboards/*.json (with the export-only "__inputs"/"__requires" stripped):
- the dashboard against dashboard.jsonschema.json;
- each panel, rows' panels included: "options" against the Options definition and
  "fieldConfig.defaults.custom" against the FieldConfig definition of the panel type's
  schema (<type>.jsonschema.json, lower-cased: nodeGraph -> nodegraph.jsonschema.json),
  and each field override's value against the property it sets; a panel type without a
  schema file is an error;
- each target against <datasource type>.jsonschema.json (prometheus, tempo);
- every data source uid used is provisioned in provisioning/datasources/*.yaml, with the
  same type; every query variable uses label_values(...); dashboard uids and titles are
  unique; every Prometheus target has an expr, stays within the PromQL meshscope
  evaluates (see PROMQL_* below), names only series meshscope serves, and has the query
  shape its panel needs; every $variable used is defined (or one of Grafana's $__*).

Prints "ok: <file> (N panels, M queries)" per good dashboard, every problem as
"<file>: <where>: <what>", and exits 1 if there was any problem (2 if it cannot run).

Where the schemas and Grafana disagree, the schema is corrected in memory, never relaxed
further than that; see patch_schemas().
"""

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"validate.py needs jsonschema and pyyaml ({e}): pip install jsonschema pyyaml")

DASHBOARDS = Path(__file__).resolve().parent
REPO = DASHBOARDS.parent
DEFAULT_SCHEMAS = REPO.parent / "shared" / "grafana-schemas"

# Grafana's own pseudo data sources, which are never provisioned.
BUILTIN_DATASOURCE_UIDS = {"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"}

# The PromQL meshscope's /prometheus API evaluates (ui-api/src/prom/eval/).
PROMQL_FUNCTIONS = {
    "rate",
    "increase",
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "count_over_time",
    "histogram_quantile",
    "vector",
    "scalar",
    "time",
    "abs",
    "ceil",
    "floor",
    "round",
    "sqrt",
    "clamp_min",
    "clamp_max",
}
PROMQL_AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "topk", "bottomk"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "bool", "and", "or", "unless"}

# The series meshscope serves (ui-api/src/prom/catalog.rs).
_COUNTERS = [
    "traces_service_graph_request_total",
    "traces_service_graph_request_failed_total",
    "meshscope_service_calls_total",
    "meshscope_service_errors_total",
    "meshscope_instance_calls_total",
    "meshscope_instance_errors_total",
    "meshscope_endpoint_calls_total",
    "meshscope_endpoint_errors_total",
]
_HISTOGRAMS = [
    "traces_service_graph_request_server_seconds",
    "traces_service_graph_request_client_seconds",
    "meshscope_service_latency_seconds",
    "meshscope_instance_latency_seconds",
    "meshscope_endpoint_latency_seconds",
]
_GAUGES = [
    "meshscope_edge_latency_quantile_seconds",
    "meshscope_service_latency_quantile_seconds",
    "meshscope_instance_latency_quantile_seconds",
    "meshscope_endpoint_latency_quantile_seconds",
]
KNOWN_SERIES = (
    set(_COUNTERS)
    | set(_GAUGES)
    | {h + s for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
)
SERIES_PREFIX = re.compile(r"\b(?:traces_service_graph_|meshscope_)[A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------
def patch_schemas(docs):
    """Correct two places where the generated schemas reject what Grafana itself writes.

    1. dashboard.jsonschema.json, DynamicConfigValue.value (a field override's value) is
       `value?: any` in Grafana (and `Optional[object]` in the SDK's Python types), but the
       generator rendered "any" as "a JSON object", so every override that sets a unit,
       display name, decimals or links ({"id": "unit", "value": "s"}) fails. It is opened
       up to any JSON value here; check_override() then validates each value against the
       schema of the property its id names, which is stricter than the original.
    2. Discriminated unions whose variants lost their discriminating constant: in
       table.jsonschema.json each TableCellOptions variant's "type" is "any cell display
       mode" with the variant's own mode only as its "default", so {"type": "auto"} (or any
       other) matches several variants at once and "oneOf" rejects every value. Each such
       variant's "type" is pinned to its default, which is its discriminator in Grafana's
       types (TableAutoCellOptions is {type: "auto"}, TableColorTextCellOptions {type:
       "color-text"}, ...). The same pattern, and the same pin, applies to the cell
       options in common.jsonschema.json and to dashboard.jsonschema.json's ValueMapping
       (ValueMap {type: "value"}, RangeMap {type: "range"}, ...).

    Not patched: MatcherConfig.options (an override's matcher) has the same "any rendered
    as object" defect, so byName's plain-string options fail; the dashboards use the
    byNames matcher, whose options are an object, instead. FieldConfig.links is typed as
    DashboardLink (the SDK's own typing); the dashboards' data links carry its fields.
    """
    dash = docs.get("dashboard.jsonschema.json")
    if dash:
        dcv = dash.get("definitions", {}).get("DynamicConfigValue", {})
        if "value" in dcv.get("properties", {}):
            dcv["properties"]["value"] = {}
    for doc in docs.values():
        defs = doc.get("definitions", {})
        for union in defs.values():
            variants = union.get("oneOf") if isinstance(union, dict) else None
            if not variants or not all("$ref" in v for v in variants):
                continue
            targets = []
            for v in variants:
                ref = v["$ref"]
                if not ref.startswith("#/definitions/"):
                    break
                target = defs.get(ref[len("#/definitions/") :], {})
                tag = target.get("properties", {}).get("type", {})
                if "const" in tag or "enum" in tag or not isinstance(tag.get("default"), str):
                    break
                targets.append(tag)
            else:
                defaults = [t["default"] for t in targets]
                if len(set(defaults)) == len(defaults):  # a real discriminator
                    for t in targets:
                        t["const"] = t["default"]


class Schemas:
    """The schema files of one directory, with $refs resolving within and across them."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.docs = {}
        self.uris = {}
        for path in sorted(self.dir.glob("*.jsonschema.json")):
            self.docs[path.name] = json.loads(path.read_text())
            self.uris[path.name] = path.resolve().as_uri()
        if not self.docs:
            raise SystemExit(f"no *.jsonschema.json files in {self.dir}")
        patch_schemas(self.docs)
        self._validators = {}
        try:  # jsonschema >= 4.18
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT7

            self._registry = Registry().with_resources(
                (self.uris[n], Resource.from_contents(d, default_specification=DRAFT7))
                for n, d in self.docs.items()
            )
        except ImportError:
            self._registry = None

    def has(self, name):
        return name in self.docs

    def locate(self, name, pointer):
        """Follow `pointer` ("/definitions/X/properties/y") in file `name`, jumping through
        local $refs on the way. Returns the final pointer and node, or (None, None)."""
        doc = self.docs[name]
        node, at = doc, ""
        for part in [p for p in pointer.split("/") if p]:
            for _ in range(16):  # through chains of local $refs
                if (
                    isinstance(node, dict)
                    and part not in node
                    and node.get("$ref", "").startswith("#/")
                ):
                    at = node["$ref"][1:]
                    node = self._walk(doc, at)
                else:
                    break
            if not isinstance(node, dict) or part not in node:
                return None, None
            node, at = node[part], f"{at}/{part}"
        return at, node

    @staticmethod
    def _walk(doc, pointer):
        node = doc
        for part in [p for p in pointer.split("/") if p]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node

    def validator(self, name, pointer=""):
        key = (name, pointer)
        if key not in self._validators:
            schema = {"$ref": f"{self.uris[name]}#{pointer}"}
            cls = jsonschema.Draft7Validator
            if self._registry is not None:
                v = cls(schema, registry=self._registry)
            else:  # older jsonschema
                resolver = jsonschema.RefResolver(
                    base_uri="",
                    referrer=schema,
                    store={self.uris[n]: d for n, d in self.docs.items()},
                )
                v = cls(schema, resolver=resolver)
            self._validators[key] = v
        return self._validators[key]

    def errors(self, name, pointer, instance, where):
        """Problems of `instance` against `name#pointer`, as "where.path: message"."""
        out = []
        for err in sorted(self.validator(name, pointer).iter_errors(instance), key=_path_key):
            out.append(describe(err, where))
        return out


def _path_key(err):
    return [str(p) for p in err.absolute_path]


def path_str(parts):
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else f".{p}"
    return s


def describe(err, where):
    msg = err.message
    if err.context:  # oneOf/anyOf: name the closest miss too
        best = err
        while best.context:
            # A branch that only failed on the instance's type (e.g. "null" in
            # "anyOf: [X, null]") says least; prefer the others.
            branches = [e for e in best.context if e.validator != "type"] or list(best.context)
            best = jsonschema.exceptions.best_match(branches)
        sub = path_str(list(best.absolute_path)[len(err.absolute_path) :])
        msg = f"{_clip(msg)} (closest: {sub + ': ' if sub else ''}{_clip(best.message)})"
    return f"{where}{path_str(err.absolute_path)}: {_clip(msg, 400)}"


def _clip(s, n=160):
    return s if len(s) <= n else s[: n - 1] + "…"


# ---------------------------------------------------------------------------------------
# Provisioning
# ---------------------------------------------------------------------------------------
def provisioning_files(kind, what, problems):
    """(path, parsed YAML) of each provisioning/<kind>/*.yaml with apiVersion 1."""
    folder = DASHBOARDS / "provisioning" / kind
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        problems.append(f"{folder.relative_to(REPO)}: no {what}")
    for f in files:
        rel = f.relative_to(DASHBOARDS)
        try:
            doc = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as e:
            problems.append(f"{rel}: not YAML: {e}")
            continue
        if doc.get("apiVersion") != 1:
            problems.append(f"{rel}: apiVersion must be 1")
        yield rel, doc


def load_provisioning(problems):
    """The provisioned data sources, uid -> type; checks both provisioning folders."""
    datasources = {}
    for rel, doc in provisioning_files("datasources", "data source provisioning file", problems):
        for i, ds in enumerate(doc.get("datasources") or []):
            for k in ("name", "type", "uid", "url"):
                if not ds.get(k):
                    problems.append(f"{rel}: datasources[{i}]: no {k}")
            uid = ds.get("uid")
            if uid in datasources:
                problems.append(f"{rel}: datasources[{i}]: uid {uid!r} provisioned twice")
            if uid:
                datasources[uid] = ds.get("type")
            ref = ((ds.get("jsonData") or {}).get("serviceMap") or {}).get("datasourceUid")
            if ref is not None and ref not in {d.get("uid") for d in doc["datasources"]}:
                problems.append(
                    f"{rel}: datasources[{i}]: serviceMap.datasourceUid {ref!r} "
                    "is not provisioned here"
                )
    for rel, doc in provisioning_files("dashboards", "dashboard provider file", problems):
        providers = doc.get("providers") or []
        if not providers:
            problems.append(f"{rel}: no providers")
        for i, p in enumerate(providers):
            if p.get("type") != "file" or not (p.get("options") or {}).get("path"):
                problems.append(f"{rel}: providers[{i}]: needs type file and options.path")
    return datasources


# ---------------------------------------------------------------------------------------
# PromQL
# ---------------------------------------------------------------------------------------
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_.]*)(?::[^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


def promql_problems(expr):
    """What in `expr` meshscope's evaluator does not do (a lexical check, not a parser)."""
    out = []
    code = STRING.sub('""', expr)
    code = re.sub(r"\$\{?__[A-Za-z_]+\}?", "1m", code)  # $__range etc. -> a duration
    for m in re.finditer(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", code):
        name = m.group(1)
        if name not in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS | PROMQL_KEYWORDS:
            out.append(f"{name}() is not supported by meshscope")
    for word in ("group_left", "group_right"):
        if re.search(rf"\b{word}\b", code):
            out.append(f"{word} is not supported by meshscope (one-to-one matching only)")
    if re.search(r"\[[^\]]*:[^\]]*\]", code):
        out.append("subqueries are not supported by meshscope")
    if "@" in code:
        out.append("the @ modifier is not supported by meshscope")
    out.extend(series_problems(expr))
    return out


def series_problems(text):
    code = STRING.sub('""', text)
    return [
        f"{name} is not a series meshscope serves"
        for name in sorted(set(SERIES_PREFIX.findall(code)) - KNOWN_SERIES)
    ]


def variables_used(text):
    return {a or b for a, b in VARIABLE.findall(text or "")}


# ---------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------
def panel_schema_name(panel_type):
    return panel_type.lower().replace("-", "") + ".jsonschema.json"


class DashboardCheck:
    def __init__(self, path, schemas, datasources):
        self.path = path
        self.name = path.name
        self.schemas = schemas
        self.datasources = datasources
        self.problems = []
        self.variables = set()
        self.panels = 0
        self.queries = 0

    def problem(self, where, what):
        self.problems.append(f"{self.name}: {where}: {what}" if where else f"{self.name}: {what}")

    def run(self):
        try:
            d = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            self.problem("", f"not JSON: {e}")
            return None
        if not isinstance(d, dict):
            self.problem("", "not a JSON object")
            return None
        for k in ("__inputs", "__requires"):  # export-only keys
            d.pop(k, None)
        self.validate_dashboard(d)
        if d.get("id") is not None:
            self.problem("id", "must be null or absent (Grafana assigns it)")
        for k in ("uid", "title"):
            if not isinstance(d.get(k), str) or not d.get(k):
                self.problem(k, "missing")
        self.check_templating(d)
        for i, a in enumerate((d.get("annotations") or {}).get("list") or []):
            self.check_datasource(a.get("datasource"), f"annotations.list[{i}]")
        for i, link in enumerate(d.get("links") or []):
            self.check_variables(link.get("url"), f"links[{i}].url")
        ids = set()
        for where, panel in self.walk_panels(d.get("panels")):
            if not isinstance(panel, dict):
                continue  # reported by the schema
            pid = panel.get("id")
            if pid in ids:
                self.problem(where, f"panel id {pid} used twice")
            ids.add(pid)
            if "gridPos" not in panel:
                self.problem(where, "no gridPos")
            if panel.get("type") != "row":
                self.panels += 1
                self.check_panel(panel, where)
        self.check_layout(d.get("panels"))
        return d

    def check_layout(self, panels):
        """Top-level panels (row headers included) must not overlap on the grid."""
        boxes = []
        for i, p in enumerate(panels or []):
            g = p.get("gridPos") if isinstance(p, dict) else None
            if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "xywh"):
                continue
            for j, (x, y, w, h) in boxes:
                if (
                    g["x"] < x + w
                    and x < g["x"] + g["w"]
                    and g["y"] < y + h
                    and y < g["y"] + g["h"]
                ):
                    self.problem(f"panels[{i}].gridPos", f"overlaps panels[{j}]")
            boxes.append((i, (g["x"], g["y"], g["w"], g["h"])))

    def walk_panels(self, panels, prefix="panels"):
        for i, p in enumerate(panels or []):
            where = f"{prefix}[{i}]"
            yield where, p
            if isinstance(p, dict) and p.get("type") == "row":
                yield from self.walk_panels(p.get("panels"), f"{where}.panels")

    def validate_dashboard(self, d):
        s = self.schemas
        # Panels are "oneOf: Panel | RowPanel", which reports any problem in a panel only
        # as "not valid under any of the given schemas": check each panel against the one
        # it means instead, and the rest of the dashboard with panels set aside.
        rest = dict(d)
        rest.pop("panels", None)
        self.problems += [
            f"{self.name}: {e}"
            for e in s.errors(
                "dashboard.jsonschema.json", "/definitions/Dashboard", rest, "dashboard"
            )
        ]
        panels = d.get("panels", [])
        if not isinstance(panels, list):
            self.problem("panels", "must be a list")
            return
        for i, p in enumerate(panels):
            kind = "RowPanel" if isinstance(p, dict) and p.get("type") == "row" else "Panel"
            self.problems += [
                f"{self.name}: {e}"
                for e in s.errors(
                    "dashboard.jsonschema.json", f"/definitions/{kind}", p, f"panels[{i}]"
                )
            ]

    def check_templating(self, d):
        variables = (d.get("templating") or {}).get("list") or []
        self.variables = {v.get("name") for v in variables}
        for i, v in enumerate(variables):
            where = f"templating.list[{i}] ({v.get('name')})"
            self.check_datasource(v.get("datasource"), where)
            if v.get("type") == "query":
                q = v.get("query")
                if isinstance(q, dict):
                    q = q.get("query")
                if not isinstance(q, str) or "label_values(" not in q:
                    self.problem(where, "a query variable must use label_values(...)")
                else:
                    for p in series_problems(q):
                        self.problem(where, p)
                    self.check_variables(q, where)

    def check_variables(self, text, where):
        for name in sorted(variables_used(text)):
            if not name.startswith("__") and name not in self.variables:
                self.problem(where, f"${name} is not a variable of this dashboard")

    def check_datasource(self, ds, where):
        """The data source type of a reference, if it is a provisioned one."""
        if ds is None:
            return None
        if not isinstance(ds, dict):
            self.problem(where, f"datasource must be {{type, uid}}, not {ds!r}")
            return None
        uid = ds.get("uid")
        if uid in BUILTIN_DATASOURCE_UIDS or ds.get("type") in ("grafana", "datasource"):
            return ds.get("type")
        if uid not in self.datasources:
            self.problem(
                where, f"data source uid {uid!r} is not provisioned in provisioning/datasources/"
            )
            return ds.get("type")
        kind = self.datasources[uid]
        if ds.get("type") not in (None, kind):
            self.problem(
                where, f"data source {uid!r} is provisioned as {kind}, not {ds.get('type')}"
            )
        return kind

    def check_panel(self, panel, where):
        s = self.schemas
        ptype = panel.get("type", "")
        sname = panel_schema_name(ptype)
        if not s.has(sname):
            self.problem(where, f"panel type {ptype!r} has no schema ({sname} not in {s.dir})")
        else:
            if s.locate(sname, "/definitions/Options")[0] is None:
                self.problem(where, f"{sname} defines no Options")
            else:
                self.problems += [
                    f"{self.name}: {e}"
                    for e in s.errors(
                        sname, "/definitions/Options", panel.get("options", {}), f"{where}.options"
                    )
                ]
            custom = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("custom")
            if s.locate(sname, "/definitions/FieldConfig")[0] is not None:
                self.problems += [
                    f"{self.name}: {e}"
                    for e in s.errors(
                        sname,
                        "/definitions/FieldConfig",
                        custom if custom is not None else {},
                        f"{where}.fieldConfig.defaults.custom",
                    )
                ]
            elif custom:
                self.problem(
                    f"{where}.fieldConfig.defaults.custom",
                    f"{ptype} has no custom field config ({sname} defines no FieldConfig)",
                )
        fc = panel.get("fieldConfig") or {}
        for link_where, link in self.links_of(fc, where):
            self.check_variables(link.get("url") if isinstance(link, dict) else None, link_where)
        for i, o in enumerate(fc.get("overrides") or []):
            for j, prop in enumerate(o.get("properties") or []):
                self.check_override(
                    ptype, sname, prop, f"{where}.fieldConfig.overrides[{i}].properties[{j}]"
                )
        for i, link in enumerate(panel.get("links") or []):
            self.check_variables(link.get("url"), f"{where}.links[{i}].url")
        panel_ds = panel.get("datasource")
        self.check_datasource(panel_ds, f"{where}.datasource")
        for i, t in enumerate(panel.get("targets") or []):
            self.queries += 1
            self.check_target(panel, t, panel_ds, f"{where}.targets[{i}]")

    @staticmethod
    def links_of(fc, where):
        for i, link in enumerate((fc.get("defaults") or {}).get("links") or []):
            yield f"{where}.fieldConfig.defaults.links[{i}].url", link
        for i, o in enumerate(fc.get("overrides") or []):
            for j, prop in enumerate(o.get("properties") or []):
                if prop.get("id") == "links" and isinstance(prop.get("value"), list):
                    for k, link in enumerate(prop["value"]):
                        yield (
                            f"{where}.fieldConfig.overrides[{i}].properties[{j}].value[{k}].url",
                            link,
                        )

    def check_override(self, ptype, sname, prop, where):
        """An override's value against the schema of the field property its id sets."""
        s = self.schemas
        pid = prop.get("id", "")
        if pid.startswith("custom."):
            if not s.has(sname):
                return  # already reported
            pointer = "/definitions/FieldConfig/properties/" + "/properties/".join(
                pid.split(".")[1:]
            )
            at, _ = s.locate(sname, pointer)
            if at is None:
                self.problem(where, f"{pid!r}: no such custom field option for {ptype} in {sname}")
                return
            self.problems += [
                f"{self.name}: {e}"
                for e in s.errors(sname, at, prop.get("value"), f"{where}.value")
            ]
        else:
            at, _ = s.locate(
                "dashboard.jsonschema.json", f"/definitions/FieldConfig/properties/{pid}"
            )
            if at is None:
                self.problem(where, f"{pid!r}: no such field option")
                return
            self.problems += [
                f"{self.name}: {e}"
                for e in s.errors(
                    "dashboard.jsonschema.json", at, prop.get("value"), f"{where}.value"
                )
            ]

    def check_target(self, panel, target, panel_ds, where):
        ds = target.get("datasource") or panel_ds
        if not ds:
            self.problem(where, "no datasource on the target or its panel")
            return
        kind = self.check_datasource(ds, f"{where}.datasource")
        if not kind:
            self.problem(where, "data source type unknown")
            return
        sname = f"{kind}.jsonschema.json"
        if not self.schemas.has(sname):
            self.problem(where, f"no query schema for data source type {kind!r} ({sname})")
            return
        self.problems += [
            f"{self.name}: {e}" for e in self.schemas.errors(sname, "", target, where)
        ]
        if not target.get("refId"):
            self.problem(where, "no refId")
        if kind != "prometheus":
            return
        expr = target.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            self.problem(where, "empty expr")
            return
        for p in promql_problems(expr):
            self.problem(f"{where}.expr", p)
        self.check_variables(expr, f"{where}.expr")
        ptype = panel.get("type")
        if ptype == "table" and not (
            target.get("format") == "table"
            and target.get("instant") is True
            and target.get("range") is False
        ):
            self.problem(
                where, 'a table query must be "format": "table", "instant": true, "range": false'
            )
        if ptype == "timeseries" and not (
            target.get("range") is True and target.get("instant") is False
        ):
            self.problem(where, 'a time series query must be "range": true, "instant": false')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--schemas",
        type=Path,
        default=DEFAULT_SCHEMAS,
        help=f"directory of *.jsonschema.json files (default: {DEFAULT_SCHEMAS})",
    )
    args = ap.parse_args(argv)
    if not args.schemas.is_dir():
        print(f"schema directory {args.schemas} not found (use --schemas DIR)", file=sys.stderr)
        return 2
    schemas = Schemas(args.schemas)
    problems = []
    datasources = load_provisioning(problems)
    for p in problems:
        print(f"FAIL: {p}")
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        print(f"FAIL: no dashboards in {DASHBOARDS}")
        return 1
    uids, titles = {}, {}
    failed = bool(problems)
    for f in files:
        check = DashboardCheck(f, schemas, datasources)
        d = check.run()
        if d is not None:
            for key, seen in (("uid", uids), ("title", titles)):
                v = d.get(key)
                if v in seen:
                    check.problem(key, f"{v!r} is also the {key} of {seen[v]}")
                elif v:
                    seen[v] = f.name
        if check.problems:
            failed = True
            print(f"FAIL: {f.name}")
            for p in check.problems:
                print(f"  {p}")
        else:
            print(f"ok: {f.name} ({check.panels} panels, {check.queries} queries)")
    if failed:
        print("validation failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
