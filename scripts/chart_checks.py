#!/usr/bin/env python3
"""Checks behind scripts/validate-chart.sh, run with the tools virtualenv's python.

  chart_checks.py manifests RENDERED.yaml...   every object against the Kubernetes schemas
                                               (kubernetes-validate, strict) or our CRD schema,
                                               plus cross-object references and config.toml
  chart_checks.py dashboard DASHBOARD.json     parses; every PromQL metric exists in the code
  chart_checks.py dockerfile Dockerfile        stages, COPY sources, EXPOSE, USER, ENTRYPOINT
  chart_checks.py docs docs/operations.md      every `flashnode node` flag documented
  chart_checks.py extract-config RENDERED OUT  the render's config.toml, to run the binary on

Exits non-zero with one line per problem.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KUBE_VERSION = "1.33.0"

# Metric families of work landing in the same release as the chart (issue 7: RPC per method;
# the gossip crate: peers, validation outcomes, alt-sync, bans). Everything else must be found in
# the Rust sources; once those land these names are found there too.
ANNOUNCED_METRICS = {
    "flashnode_rpc_requests_total",
    "flashnode_rpc_request_duration_seconds",
    "flashnode_gossip_peers",
    "flashnode_gossip_messages_total",
    "flashnode_gossip_published_total",
    "flashnode_altsync_requests_total",
    "flashnode_altsync_served_total",
    "flashnode_gossip_bans_total",
}
# `flashnode node` flags of the gossip work (P2pArgs, flattened into NodeArgs) landing in the
# same release; read from bin/src like the others once they are there.
ANNOUNCED_FLAGS = {
    "p2p-disable": "bool",
    "p2p-addr": "Option<SocketAddr>",
    "p2p-static": "Vec<String>",
    "p2p-bootnodes": "Vec<String>",
    "p2p-sequencer-address": "Option<Address>",
    "p2p-key-path": "Option<PathBuf>",
    "p2p-data-dir": "Option<PathBuf>",
    "p2p-message-id": "MessageIdArg",
}

# The Prometheus Operator ServiceMonitor: not in the Kubernetes schemas, so its shape here.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                    "additionalProperties": False,
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h))+)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h))+)$"},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
}


def rust_sources():
    for sub in ("bin", "overlay", "rpc", "fanout", "tasks", "exec", "devnet", "p2p", "gossip", "crates"):
        base = ROOT / sub
        if base.is_dir():
            yield from base.rglob("*.rs")


def metric_names_in_code() -> set[str]:
    names = set()
    for path in rust_sources():
        names.update(re.findall(r'"(flashnode_[a-z0-9_]+)"', path.read_text(errors="replace")))
    return names


def node_flags() -> dict[str, str]:
    """Long flag name -> Rust type of `flashnode node`: the fields of NodeArgs in bin/src and
    of every struct flattened into it (`#[command(flatten)]`)."""
    return command_flags("NodeArgs", dict(ANNOUNCED_FLAGS))


def relay_flags() -> dict[str, str]:
    """Long flag name -> Rust type of `flashnode relay` (RelayArgs and what it flattens)."""
    return command_flags("RelayArgs", {})


def command_flags(root: str, announced: dict[str, str]) -> dict[str, str]:
    """The flags of the clap struct `root` in bin/src, with `announced` ones added."""
    structs: dict[str, str] = {}
    for path in (ROOT / "bin" / "src").rglob("*.rs"):
        for name, body in re.findall(r"pub struct (\w+) \{(.*?)\n\}", path.read_text(), re.S):
            structs[name] = body
    # Attributes may span lines (rustfmt wraps a long `#[arg(...)]`) and hold `[...]` lists.
    field = re.compile(
        r"((?:\s*(?:///[^\n]*|#\[(?:[^\[\]]|\[[^\]]*\])*\]))*)\s*pub (\w+): ([^,\n]+),"
    )
    flags = dict(announced)

    def walk(name: str, seen: set[str]) -> None:
        if name in seen or name not in structs:
            return
        seen.add(name)
        for attrs, fname, ty in field.findall(structs[name]):
            ty = ty.strip()
            if "flatten" in attrs:
                walk(ty, seen)
                continue
            arg = re.search(r"#\[arg\((.*?)\)\]", attrs, re.S)
            if not arg or not re.search(r"\blong\b", arg.group(1)):
                continue
            explicit = re.search(r'\blong\s*=\s*"([^"]+)"', arg.group(1))
            flags[explicit.group(1) if explicit else fname.replace("_", "-")] = ty

    walk(root, set())
    if len(flags) <= len(announced):
        raise SystemExit(f"found no flags of {root} in bin/src (moved?)")
    return flags


def toml_type_ok(rust_type: str, value) -> bool:
    inner = re.sub(r"^Option<(.*)>$", r"\1", rust_type)
    if inner == "bool":
        return isinstance(value, bool)
    if re.fullmatch(r"u8|u16|u32|u64|u128|usize|i32|i64", inner):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if inner.startswith("Vec<"):
        return isinstance(value, list) or isinstance(value, str)
    if inner == "SocketAddr":
        return isinstance(value, str) and re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[0-9.]+):[0-9]{1,5}", value) is not None
    # Strings, durations ("2s"), URLs, enums: TOML strings.
    return isinstance(value, str)


def check_config_toml(text: str, where: str, errors: list[str]) -> None:
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        errors.append(f"{where}: config.toml does not parse: {e}")
        return
    flags = node_flags()
    for key, value in cfg.items():
        if key not in flags:
            errors.append(f"{where}: config.toml key `{key}` is not a `flashnode node` flag")
        elif not toml_type_ok(flags[key], value):
            errors.append(f"{where}: config.toml `{key}` = {value!r} does not fit the flag's type {flags[key]}")
    for required in ("flashblocks-url", "upstream-rpc", "metrics-addr"):
        if required not in cfg:
            errors.append(f"{where}: config.toml has no `{required}`")


def pod_spec(obj):
    if obj.get("kind") in ("Deployment", "StatefulSet"):
        return obj["spec"]["template"]
    return None


def is_relay(o) -> bool:
    return o.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component") == "relay"


def relay_check(objs, errors: list[str]) -> None:
    """The relay tier of a render: its Deployment runs `flashnode relay` with flags that exist
    (and fit their types), and its Service, HPA and PDB point at its pods only."""
    by_kind: dict[str, list] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        errors.append(f"relay: expected one Deployment, got {len(deployments)}")
        return
    wl = deployments[0]
    tpl = wl["spec"]["template"]
    labels = tpl["metadata"].get("labels", {})
    sel = wl["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in sel.items()):
        errors.append(f"relay Deployment selector {sel} does not match its pod labels {labels}")
    containers = tpl["spec"]["containers"]
    main = next((c for c in containers if c["name"] == "relay"), None)
    if main is None:
        errors.append("relay: no container named relay")
        return
    port_names = {p["name"] for p in main.get("ports", [])}
    args = main.get("args", [])
    if args[:1] != ["relay"]:
        errors.append(f"relay args must start with relay, got {args}")
    flags = relay_flags()
    for a in args[1:]:
        if not a.startswith("--"):
            errors.append(f"relay arg {a!r} is not a --flag")
            continue
        key, _, value = a[2:].partition("=")
        if key not in flags:
            errors.append(f"relay arg `--{key}` is not a `flashnode relay` flag")
        elif flags[key] == "bool" and value:
            errors.append(f"relay arg `--{key}` is a switch and takes no value")
        elif re.fullmatch(r"u8|u16|u32|u64|usize", flags[key]) and not value.isdigit():
            errors.append(f"relay arg `--{key}={value}` does not fit the flag's type {flags[key]}")
    for needed in ("flashblocks-url", "flashblocks-addr", "metrics-addr"):
        if not any(a.startswith(f"--{needed}=") for a in args):
            errors.append(f"relay args have no --{needed}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        p = main.get(probe, {}).get("httpGet")
        if not p:
            errors.append(f"relay container has no {probe}")
        elif p["path"] != path or p["port"] not in port_names:
            errors.append(f"relay {probe} must be {path} on a named port of the container")
    sc = main.get("securityContext", {})
    if not (sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")):
        errors.append("relay container must run as non-root with a read-only root filesystem")
    for svc in by_kind.get("Service", []):
        if any(labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()):
            errors.append(f"Service {svc['metadata']['name']} selects no relay pod")
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names:
                errors.append(f"Service {svc['metadata']['name']} targets unknown port {p['targetPort']}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("Deployment", wl["metadata"]["name"]):
            errors.append(f"relay HPA targets {ref['kind']}/{ref['name']}, not the relay Deployment")
        if "replicas" in wl["spec"]:
            errors.append("relay Deployment sets replicas while an HPA owns them")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
            errors.append("relay PodDisruptionBudget selects no relay pod")


def cross_check(objs, errors: list[str]) -> None:
    """References between the objects of one render: what the schemas cannot see."""
    relay = [o for o in objs if is_relay(o)]
    if relay:
        relay_check(relay, errors)
        relay_pods = [r["spec"]["template"]["metadata"]["labels"] for r in relay if r["kind"] == "Deployment"]
        for o in objs:
            if o["kind"] != "Service" or is_relay(o):
                continue
            sel = o["spec"].get("selector", {})
            if sel and any(all(pod.get(k) == v for k, v in sel.items()) for pod in relay_pods):
                errors.append(f"Service {o['metadata']['name']} of the nodes also selects relay pods")
        objs = [o for o in objs if not is_relay(o)]
    by_kind: dict[str, list] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    if len(workloads) != 1:
        errors.append(f"expected exactly one Deployment or StatefulSet, got {len(workloads)}")
        return
    wl = workloads[0]
    tpl = pod_spec(wl)
    labels = tpl["metadata"].get("labels", {})
    sel = wl["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in sel.items()):
        errors.append(f"{wl['kind']} selector {sel} does not match its pod labels {labels}")
    spec = tpl["spec"]
    port_names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
    volumes = {v["name"] for v in spec.get("volumes", [])}
    volumes |= {t["metadata"]["name"] for t in wl["spec"].get("volumeClaimTemplates", [])}
    configmaps = {o["metadata"]["name"] for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    chart_secrets = {wl["metadata"]["name"] + "-api-keys", wl["metadata"]["name"] + "-jwt"}
    main = next((c for c in spec["containers"] if c["name"] == "flashnode"), None)
    if main is None:
        errors.append("no container named flashnode")
        return
    for c in spec["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                errors.append(f"container {c['name']} mounts undefined volume {m['name']}")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(probe, {}).get("httpGet")
            if p and isinstance(p["port"], str) and p["port"] not in port_names:
                errors.append(f"{c['name']} {probe} uses unknown port {p['port']}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", None)):
        if probe not in main:
            errors.append(f"flashnode container has no {probe}")
        elif path and main[probe]["httpGet"]["path"] != path:
            errors.append(f"flashnode {probe} is not on {path}")
    sc = main.get("securityContext", {})
    if not (sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")):
        errors.append("flashnode container must run as non-root with a read-only root filesystem")
    args = main.get("args", [])
    if args[:3] != ["node", "--config", "/etc/flashnode/config.toml"]:
        errors.append(f"flashnode args must start with node --config /etc/flashnode/config.toml, got {args}")
    if not any(m["mountPath"] == "/etc/flashnode" for m in main.get("volumeMounts", [])):
        errors.append("config is not mounted at /etc/flashnode")
    for v in spec.get("volumes", []):
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            errors.append(f"volume {v['name']} refers to missing ConfigMap {v['configMap']['name']}")
        # Secrets the chart makes are named after the release; others are the operator's.
        if "secret" in v and v["secret"]["secretName"] not in secrets and v["secret"]["secretName"] in chart_secrets:
            errors.append(f"volume {v['name']} refers to Secret {v['secret']['secretName']} not in the chart")
    for e in main.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] not in secrets:
            if ref["name"] in chart_secrets:
                errors.append(f"env {e['name']} refers to missing Secret {ref['name']}")
    for svc in by_kind.get("Service", []):
        if any(labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()):
            errors.append(f"Service {svc['metadata']['name']} selects no pod of the workload")
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names:
                errors.append(f"Service {svc['metadata']['name']} targets unknown port {p['targetPort']}")
    if wl["kind"] == "StatefulSet":
        svc_names = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
        if wl["spec"]["serviceName"] not in svc_names:
            errors.append(f"StatefulSet serviceName {wl['spec']['serviceName']} has no Service")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != (wl["kind"], wl["metadata"]["name"]):
            errors.append(f"HPA targets {ref['kind']}/{ref['name']}, not the workload")
        if "replicas" in wl["spec"]:
            errors.append("workload sets replicas while an HPA owns them")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
            errors.append("PodDisruptionBudget selects no pod of the workload")
    for sm in by_kind.get("ServiceMonitor", []):
        match = sm["spec"]["selector"].get("matchLabels", {})
        targets = [s for s in by_kind.get("Service", [])
                   if all(s["metadata"].get("labels", {}).get(k) == v for k, v in match.items())]
        if len(targets) != 1:
            errors.append(f"ServiceMonitor selects {len(targets)} Services, expected the metrics one")
        for ep in sm["spec"]["endpoints"]:
            if targets and ep["port"] not in {p["name"] for p in targets[0]["spec"]["ports"]}:
                errors.append(f"ServiceMonitor endpoint port {ep['port']} is not on {targets[0]['metadata']['name']}")
    env = {e["name"]: e.get("value") for e in main.get("env", [])}
    for cm in by_kind.get("ConfigMap", []):
        data = cm.get("data", {})
        if "config.toml" in data:
            p2p_on = "p2p-addr" in tomllib.loads(data["config.toml"])
            if p2p_on == (env.get("FLASHNODE_P2P_DISABLE") == "true"):
                errors.append(f"p2p is {'on' if p2p_on else 'off'} in config.toml but FLASHNODE_P2P_DISABLE is {env.get('FLASHNODE_P2P_DISABLE')}")
            if p2p_on and "p2p" not in port_names:
                errors.append("p2p-addr is set but the container has no p2p port")
            check_config_toml(data["config.toml"], f"ConfigMap {cm['metadata']['name']}", errors)
        if "flashnode.json" in data:
            shipped = json.loads((ROOT / "charts/flashnode/dashboards/flashnode.json").read_text())
            if json.loads(data["flashnode.json"]) != shipped:
                errors.append("dashboard ConfigMap differs from dashboards/flashnode.json")
            if cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
                errors.append("dashboard ConfigMap lacks the grafana_dashboard: \"1\" label")


def cmd_manifests(paths: list[str]) -> list[str]:
    import jsonschema
    import kubernetes_validate
    import yaml

    errors: list[str] = []
    for path in paths:
        objs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        if not objs:
            errors.append(f"{path}: rendered nothing")
            continue
        for o in objs:
            what = f"{path}: {o.get('kind')}/{o.get('metadata', {}).get('name')}"
            if o.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                try:
                    jsonschema.validate(o, SERVICE_MONITOR_SCHEMA)
                except jsonschema.ValidationError as e:
                    errors.append(f"{what}: {e.message} at {'/'.join(map(str, e.absolute_path))}")
                continue
            try:
                kubernetes_validate.validate(o, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{what}: {e.message} at {'/'.join(map(str, e.path))}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                errors.append(f"{what}: no Kubernetes {KUBE_VERSION} schema: {e}")
        if not errors:
            cross_check(objs, errors)
        print(f"{path}: {len(objs)} objects: " + ", ".join(sorted(f"{o['kind']}" for o in objs)))
    return errors


def exprs(panels):
    for p in panels:
        yield from exprs(p.get("panels", []))
        for t in p.get("targets", []):
            if "expr" in t:
                yield p.get("title", "?"), t["expr"]


REQUIRED_PANELS = [
    "Readiness", "Flashblocks / s", "Stream bytes", "Stream reconnects", "Apply latency",
    "Receipt mismatches", "Reorgs", "RPC requests / s by method", "RPC latency by method",
    "RPC errors by method", "Subscriptions", "Lagged disconnects", "Fan-out clients",
    "Fan-out bytes / s", "Gossip peers", "Gossip messages", "Cache hit rate",
]


def cmd_dashboard(path: str) -> list[str]:
    errors: list[str] = []
    try:
        dash = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [f"{path}: not JSON: {e}"]
    known = metric_names_in_code() | ANNOUNCED_METRICS
    suffixes = ("_bucket", "_sum", "_count")
    titles = set()
    n = 0
    for title, expr in exprs(dash.get("panels", [])):
        n += 1
        titles.add(title)
        for name in set(re.findall(r"\bflashnode_[a-z0-9_]+", expr)):
            base = next((name[: -len(s)] for s in suffixes if name.endswith(s) and name[: -len(s)] in known), name)
            if base not in known:
                errors.append(f"{path}: panel '{title}' uses {name}, which no code records")
        if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
            errors.append(f"{path}: panel '{title}' has unbalanced brackets: {expr}")
    all_titles = {p.get("title") for p in dash.get("panels", [])} | titles
    for t in REQUIRED_PANELS:
        if not any(x and x.startswith(t) for x in all_titles):
            errors.append(f"{path}: no panel titled '{t}'")
    if n == 0:
        errors.append(f"{path}: no PromQL queries")
    if not any(v.get("type") == "datasource" for v in dash.get("templating", {}).get("list", [])):
        errors.append(f"{path}: no datasource variable")
    print(f"{path}: {n} queries over {len(known)} known metric names")
    return errors


def dockerignored(rel: str, patterns: list[str]) -> bool:
    import fnmatch
    excluded = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        if fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/"):
            excluded = not neg
    return excluded


def cmd_dockerfile(path: str) -> list[str]:
    errors: list[str] = []
    text = Path(path).read_text()
    ignore_file = Path(path).parent / ".dockerignore"
    ignores = [l.strip() for l in ignore_file.read_text().splitlines() if l.strip() and not l.startswith("#")] \
        if ignore_file.exists() else []
    # Join continuation lines, drop comments.
    lines, cur = [], ""
    for raw in text.splitlines():
        if raw.strip().startswith("#") and not cur:
            continue
        cur += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    known = {"FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT",
             "CMD", "LABEL", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD"}
    stages: list[str] = []
    final_user = None
    built_paths, copied_artifacts = set(), []
    exposed, entrypoint = set(), None
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr not in known:
            errors.append(f"{path}: unknown instruction {instr}")
            continue
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            if not m:
                errors.append(f"{path}: bad FROM {rest}")
                continue
            stages.append(m.group(2) or str(len(stages)))
            final_user = None
        elif instr == "USER":
            final_user = rest.strip()
        elif instr == "RUN" and "cargo build" in rest:
            if "--locked" not in rest or "--release" not in rest or "--bin flashnode" not in rest:
                errors.append(f"{path}: cargo build must be --release --locked --bin flashnode")
            built_paths.add("target/release/flashnode")
        elif instr in ("COPY", "ADD"):
            parts = rest.split()
            opts = [p for p in parts if p.startswith("--")]
            args = [p for p in parts if not p.startswith("--")]
            src, frm = args[:-1], next((o.split("=", 1)[1] for o in opts if o.startswith("--from=")), None)
            if frm is not None:
                if frm not in stages[:-1]:
                    errors.append(f"{path}: COPY --from={frm} names no earlier stage")
                copied_artifacts.extend(src)
                continue
            for s in src:
                rel = s.strip("./") or "."
                if rel != "." and not (ROOT / rel).exists():
                    errors.append(f"{path}: COPY source {s} does not exist in the repository")
                elif rel != "." and dockerignored(rel, ignores):
                    errors.append(f"{path}: COPY source {s} is excluded by .dockerignore")
        elif instr == "EXPOSE":
            exposed |= {p.split("/")[0] for p in rest.split()}
        elif instr == "ENTRYPOINT":
            entrypoint = rest
    if len(stages) < 2:
        errors.append(f"{path}: expected a multi-stage build, got {len(stages)} stage(s)")
    if not final_user or final_user.split(":")[0] in ("root", "0"):
        errors.append(f"{path}: the final stage must set a non-root USER")
    if not any(a.endswith("target/release/flashnode") for a in copied_artifacts):
        errors.append(f"{path}: the final stage does not copy target/release/flashnode from the builder")
    if not built_paths:
        errors.append(f"{path}: no cargo build of the flashnode binary")
    if not entrypoint or "flashnode" not in entrypoint:
        errors.append(f"{path}: ENTRYPOINT must run flashnode")
    values = (ROOT / "charts/flashnode/values.yaml").read_text()
    for port in ("8545", "8546", "9090", "9222"):
        if port not in exposed:
            errors.append(f"{path}: port {port} not EXPOSEd")
        if port not in values:
            errors.append(f"{path}: port {port} is not the chart's")
    for needed in ("target", "tools"):
        if not dockerignored(needed, ignores):
            errors.append(f".dockerignore should exclude {needed}/ (build output, test tools)")
    print(f"{path}: {len(stages)} stages ({', '.join(stages)}), exposes {', '.join(sorted(exposed))}, user {final_user}")
    return errors


def cmd_docs(path: str) -> list[str]:
    """Every `flashnode node` flag is documented on the operations page."""
    text = Path(path).read_text()
    flags = node_flags()
    missing = [f for f in sorted(flags) if f"`--{f}" not in text]
    print(f"{path}: documents {len(flags) - len(missing)} of {len(flags)} `flashnode node` flags")
    return [f"{path} does not document --{f} (flashnode node --help lists every flag)" for f in missing]


def cmd_extract_config(rendered: str, out: str) -> list[str]:
    """Writes the config.toml of a render to `out` (for running the real binary on it)."""
    import yaml

    for o in yaml.safe_load_all(Path(rendered).read_text()):
        if o and o.get("kind") == "ConfigMap" and "config.toml" in o.get("data", {}):
            Path(out).write_text(o["data"]["config.toml"])
            return []
    return [f"{rendered}: no ConfigMap with config.toml"]


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "manifests":
        errors = cmd_manifests(args)
    elif cmd == "dashboard":
        errors = cmd_dashboard(args[0])
    elif cmd == "dockerfile":
        errors = cmd_dockerfile(args[0])
    elif cmd == "docs":
        errors = cmd_docs(args[0])
    elif cmd == "extract-config":
        errors = cmd_extract_config(args[0], args[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
