#!/usr/bin/env bash
# step: Kubernetes manifests (deploy/kubernetes): schema-valid with unknown fields refused, zones alike, probes and ports as the node serves them
set -euo pipefail

# Pinned: the validator (it carries the schemas) and the Kubernetes versions checked against.
# 1.32 is the oldest the manifests need (StatefulSet persistentVolumeClaimRetentionPolicy GA).
KV_VERSION=1.37.0
K8S_VERSIONS=(1.32.0 1.36.0)

manifests=(deploy/kubernetes/*/*.yaml)
[ -e "${manifests[0]}" ] || { echo "no manifests under deploy/kubernetes/"; exit 1; }

venv="${TMPDIR:-/tmp}/ftz-ci-kubernetes-validate-$KV_VERSION"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "installing kubernetes-validate==$KV_VERSION (PyPI) into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian's python3 has venv without ensurepip until python3-venv is installed.
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3-venv >/dev/null
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi

for v in "${K8S_VERSIONS[@]}"; do
    echo "-- schemas of Kubernetes $v, --strict (unknown fields are errors)"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
    echo "ok: ${#manifests[@]} files"
done

echo "-- consistency: zones alike, ports and probes as the config and the node say"
"$venv/bin/python" - <<'PY'
import pathlib, re, sys, tomllib
import yaml

root = pathlib.Path("deploy/kubernetes")
errors = []
def fail(msg):
    errors.append(msg)

zones = sorted(p.name for p in root.iterdir() if p.is_dir())
ref = "shanghai"
if ref not in zones:
    sys.exit(f"deploy/kubernetes/{ref}/ is missing (the reference zone)")
ref_files = sorted(p.name for p in (root / ref).glob("*.yaml"))
for z in zones:
    files = sorted(p.name for p in (root / z).glob("*.yaml"))
    if files != ref_files:
        fail(f"{z}: files {files} differ from {ref}'s {ref_files}")
        continue
    for f in files:
        want = (root / ref / f).read_text().replace(ref, z)
        if (root / z / f).read_text() != want:
            fail(f"{z}/{f} is not {ref}/{f} with the zone's name (regenerate it with sed s/{ref}/{z}/g)")

ops_rs = pathlib.Path("crates/ftz-node/src/ops.rs")
served = None
if ops_rs.exists():
    served = set(re.findall(r'"(/[a-z]+)"\s*=>', ops_rs.read_text()))
    print(f"the node's ops listener serves {sorted(served)} ({ops_rs})")
else:
    print(f"note: {ops_rs} not found; probe paths checked among the manifests only")

for z in zones:
    docs = {}
    for f in (root / z).glob("*.yaml"):
        for d in yaml.safe_load_all(f.read_text()):
            docs[(d["kind"], d["metadata"]["name"])] = d
    where = f"{z}:"
    ns = f"ftz-{z}"
    for (kind, name), d in docs.items():
        if kind != "Namespace" and d["metadata"].get("namespace") != ns:
            fail(f"{where} {kind}/{name} is not in namespace {ns}")
    cm = docs[("ConfigMap", "ftz-node-config")]
    cfg = tomllib.loads(cm["data"]["node.toml"])
    if cfg["zone_id"] != z:
        fail(f"{where} node.toml zone_id is {cfg['zone_id']!r}")
    port_of = lambda addr: int(addr.rsplit(":", 1)[1])
    listen = {"grpc": port_of(cfg["listen"]), "https": port_of(cfg["http"]["listen"]), "ops": port_of(cfg["ops"]["listen"])}
    if listen["ops"] != 9464:
        fail(f"{where} [ops] listen port is {listen['ops']}, not 9464")
    sts = docs[("StatefulSet", "ftz-node")]
    spec = sts["spec"]
    if spec["replicas"] != 1:
        fail(f"{where} replicas is {spec['replicas']}: a zone's node is one process with one store")
    pod = spec["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "ftz-node")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports != listen:
        fail(f"{where} container ports {ports} differ from node.toml's listen addresses {listen}")
    for probe, path in [("livenessProbe", "/healthz"), ("startupProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        g = c.get(probe, {}).get("httpGet")
        if not g or g.get("path") != path or g.get("port") != "ops":
            fail(f"{where} {probe} is not httpGet {path} on port ops: {g}")
        if served is not None and path not in served:
            fail(f"{where} {probe} probes {path}, which {ops_rs} does not serve")
    drain_ms = cfg["ops"].get("drain_ms", 5000)
    grace = pod["terminationGracePeriodSeconds"]
    if grace * 1000 <= drain_ms + 30_000:
        fail(f"{where} terminationGracePeriodSeconds {grace} does not cover drain_ms {drain_ms} + request_timeout_ms 30000")
    sc = pod["securityContext"]
    if not (sc.get("runAsNonRoot") and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        fail(f"{where} pod securityContext lacks runAsNonRoot or seccomp RuntimeDefault")
    for cc in pod["containers"] + pod.get("initContainers", []):
        s = cc.get("securityContext", {})
        if not (s.get("readOnlyRootFilesystem") and s.get("allowPrivilegeEscalation") is False and s.get("capabilities", {}).get("drop") == ["ALL"]):
            fail(f"{where} container {cc['name']}: not read-only root, no escalation, capabilities dropped")
        if "resources" not in cc:
            fail(f"{where} container {cc['name']} has no resources")
    for v in pod["volumes"]:
        if "secret" in v and v["secret"].get("defaultMode") not in (0o400, 0o444):
            fail(f"{where} secret volume {v['name']} has defaultMode {v['secret'].get('defaultMode')}")
    # Every file node.toml names is on a volume the container mounts.
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    for path in [cfg["tls"]["cert"], cfg["tls"]["key"], cfg["keys"]["node_signing_key"], cfg["keys"]["issuing_key"], cfg["registry"]["file"], cfg["data_dir"]]:
        if not any(path.startswith(m.rstrip("/") + "/") for m in mounts):
            fail(f"{where} {path} (node.toml) is on no volume the container mounts")
    if c["args"][-1] not in [m + "/node.toml" for m in mounts]:
        fail(f"{where} --config {c['args'][-1]} is on no mounted volume")
    svc_ports = {}
    for name in ["ftz-node", "ftz-node-public", "ftz-node-ops"]:
        for p in docs[("Service", name)]["spec"]["ports"]:
            svc_ports[(name, p["name"])] = (p["port"], p["targetPort"])
            if p["targetPort"] not in ports:
                fail(f"{where} Service {name} targets {p['targetPort']}, no container port of that name")
            elif p["port"] != ports[p["targetPort"]] or p["name"] != p["targetPort"]:
                fail(f"{where} Service {name} port {p['name']} {p['port']} is not the container's {p['targetPort']} {ports[p['targetPort']]}")
    if ("ftz-node-ops", "ops") not in svc_ports:
        fail(f"{where} the ops port must be on its own ClusterIP Service ftz-node-ops")
    if any(n != "ftz-node-ops" and pn == "ops" for n, pn in svc_ports):
        fail(f"{where} the ops port is exposed by a Service other than ftz-node-ops")
    pdb = docs[("PodDisruptionBudget", "ftz-node")]["spec"]
    if pdb.get("maxUnavailable") != 0 and pdb.get("minAvailable") != 1:
        fail(f"{where} PodDisruptionBudget allows an eviction: {pdb}")
    np = docs[("NetworkPolicy", "ftz-node")]["spec"]
    ops_rules = [r for r in np["ingress"] if any(p.get("port") == "ops" for p in r.get("ports", []))]
    if not ops_rules or any("from" not in r for r in ops_rules):
        fail(f"{where} NetworkPolicy admits the ops port from anywhere")
    labels = sts["spec"]["selector"]["matchLabels"]
    if docs[("PodDisruptionBudget", "ftz-node")]["spec"]["selector"]["matchLabels"] != labels:
        fail(f"{where} the PodDisruptionBudget selects other pods than the StatefulSet")
    for name in ["ftz-node", "ftz-node-public", "ftz-node-ops"]:
        if docs[("Service", name)]["spec"]["selector"] != labels:
            fail(f"{where} Service {name} selects other pods than the StatefulSet")
    if np["podSelector"]["matchLabels"] != labels:
        fail(f"{where} NetworkPolicy selects other pods than the StatefulSet")

if errors:
    print("\n".join("FAIL " + e for e in errors))
    sys.exit(1)
print(f"ok: zones {', '.join(zones)}")
PY
