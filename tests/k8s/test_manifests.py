#!/usr/bin/env python3
"""Renders the Kubernetes manifests (deploy/k8s/base and every overlay) offline
and checks what they promise:

- they render: with deploy/k8s/render.py always, and with `kubectl kustomize`
  when a recent enough kubectl is installed, and the two renders agree;
- the ConfigMap carries deploy/trellis.yml unchanged, plus kubernetes.yml whose
  keys all exist in trellis.yml;
- every container has readiness and liveness probes on its metrics port,
  resource requests and limits, the image tag of this version, and runs as
  the image's unprivileged user without privileges;
- the effective configuration of every container (config files from the
  ConfigMap, then its arguments with the pod's variables expanded; checked
  against the daemon's own --print-config when the binary is built) agrees
  with the container ports, the probes and the Services;
- storage nodes: identity from the pod name and its stable DNS name, shard
  threads pinned, RocksDB's data directory on a persistent volume (disk tier),
  memory limits and volumes consistent with --capacity, a CPU limit equal to
  the request (the allotment nodes report busy against), a grace period long
  enough for the departure, a PodDisruptionBudget;
- routers: the peer list names every router pod;
- the monitor: one replica, a ServiceAccount whose Role allows only reading
  and scaling the two storage StatefulSets named in its configuration.

usage: python3 tests/k8s/test_manifests.py      (exit 0 ok, 1 failures, 77 skipped)
  TRELLIS_BIN=DIR          where trellis-kvs etc. are (default: build/bin)
  TRELLIS_K8S_NO_TOOLS=1   neither kubectl nor yamllint, even when installed
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("TRELLIS_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("TRELLIS_BIN") or os.path.join(SRC, "build", "bin")
K8S = os.path.join(SRC, "deploy", "k8s")

try:
    import yaml
except ImportError:
    print("skipped: PyYAML is missing (Debian: apt-get install python3-yaml); "
          "the manifests were not checked")
    sys.exit(77)

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, K8S)
import render  # noqa: E402  (deploy/k8s/render.py)

RUN_AS = 10001  # the image's user (deploy/container/Dockerfile: USER)
DRAIN_PHASES = 2  # a departure: hand-off, then a last pass, each up to drain_timeout_ms
# Flags the manifests may use, per role, and the key each sets (see --help).
FLAGS = {
    "kvs": {"tier": "kvs.tier", "threads": "kvs.threads", "id": "kvs.id",
            "listen": "kvs.listen", "advertise": "kvs.advertise",
            "port-base": "kvs.port_base", "admin-port": "kvs.admin_port",
            "data-port": "kvs.data_port",
            "data-dir": "kvs.data_dir", "capacity": "kvs.capacity",
            "metrics-port": "kvs.metrics_port", "router": "cluster.routers",
            "monitor": "cluster.monitor", "log-level": "log.level"},
    "route": {"id": "route.id", "listen": "route.listen", "port": "route.port",
              "peer": "route.peers", "metrics-port": "route.metrics_port",
              "resp-port": "route.resp_port", "log-level": "log.level"},
    "monitor": {"log-level": "log.level"},
}
LIST_KEYS = {"cluster.routers", "route.peers"}
SIZE_KEYS = {"kvs.capacity", "kvs.rocksdb_cache_bytes", "kvs.rocksdb_write_buffer_bytes"}

failures = []
notes = []


def fail(where, text):
    failures.append(f"{where}: {text}")


def check(cond, where, text):
    if not cond:
        fail(where, text)
    return cond


# ---- quantities ------------------------------------------------------------------------

def config_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*(KiB|MiB|GiB|TiB|K|M|G|T|B)?\s*", str(text))
    if not m:
        raise ValueError(f"not a size: {text!r}")
    mult = {None: 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
            "G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40}[m.group(2)]
    return int(m.group(1)) * mult


def k8s_bytes(q):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    if not m:
        raise ValueError(f"not a byte quantity: {q!r}")
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(float(m.group(1)) * mult)


def k8s_cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


MiB = 1 << 20


# ---- rendering -------------------------------------------------------------------------

def kustomize_dirs():
    dirs = [os.path.join(K8S, "base")]
    dirs += sorted(os.path.dirname(p) for p in glob.glob(os.path.join(K8S, "overlays", "*",
                                                                      "kustomization.yaml")))
    return dirs


def kubectl_usable():
    """kubectl with kustomize 4 or later (kubectl 1.21+), or None."""
    if os.environ.get("TRELLIS_K8S_NO_TOOLS"):
        return None
    kubectl = shutil.which("kubectl")
    if not kubectl:
        notes.append("kubectl not installed: rendered with deploy/k8s/render.py only")
        return None
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=30).stdout
        info = json.loads(out)
        minor = int(re.match(r"\d+", info["clientVersion"]["minor"]).group(0))
    except (OSError, ValueError, KeyError, AttributeError, subprocess.TimeoutExpired):
        notes.append("kubectl's version unreadable: rendered with deploy/k8s/render.py only")
        return None
    if minor < 21:
        notes.append(f"kubectl 1.{minor} embeds a kustomize too old for these kustomizations: "
                     "rendered with deploy/k8s/render.py only")
        return None
    return kubectl


def by_id(docs):
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}


def first_difference(a, b, path=""):
    if type(a) is not type(b):
        return f"{path}: {a!r:.60} vs {b!r:.60}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'kubectl' if k in a else 'render.py'}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r:.60} vs {b!r:.60}"


def render_all():
    kubectl = kubectl_usable()
    renders = {}
    for d in kustomize_dirs():
        name = os.path.relpath(d, SRC)
        try:
            docs = render.render(d)
        except render.RenderError as e:
            fail(name, f"render.py: {e}")
            continue
        # Through YAML and back, as kubectl would read the output.
        docs = list(render.load_all(render.dump(docs)))
        renders[name] = docs
        if kubectl:
            p = subprocess.run([kubectl, "kustomize", d], capture_output=True, text=True,
                               timeout=120)
            if p.returncode != 0:
                fail(name, f"kubectl kustomize failed: {p.stderr.strip()}")
                continue
            theirs = by_id(d2 for d2 in render.load_all(p.stdout) if d2)
            ours = by_id(docs)
            if set(theirs) != set(ours):
                fail(name, f"kubectl kustomize and render.py disagree on the resources: "
                           f"{sorted(set(theirs) ^ set(ours))}")
            for k in set(theirs) & set(ours):
                diff = first_difference(theirs[k], ours[k])
                if diff:
                    fail(name, f"kubectl kustomize and render.py disagree on {k}: {diff}")
    if kubectl:
        notes.append("kubectl kustomize and render.py agree")
    return renders


# ---- pods and their configuration --------------------------------------------------------

def pod_template(res):
    if res["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return res["spec"]["template"]
    return None


def expand(text, env):
    """Kubernetes' $(VAR) expansion ($$ escapes)."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


def pod_env(res, container):
    ns = res["metadata"].get("namespace", "default")
    name = res["metadata"]["name"]
    field = {"metadata.name": f"{name}-0", "metadata.namespace": ns,
             "status.podIP": "10.0.0.10", "spec.nodeName": "node-1"}
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
        else:
            ref = (e.get("valueFrom") or {}).get("fieldRef")
            if ref:
                env[e["name"]] = field.get(ref["fieldPath"], f"<{ref['fieldPath']}>")
    return env


def mounted_files(res, container, configmaps):
    """{path: content} of the files the container sees from ConfigMaps."""
    spec = pod_template(res)["spec"]
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    files = {}
    for m in container.get("volumeMounts") or []:
        v = vols.get(m["name"])
        if v and "configMap" in v:
            cm = configmaps.get(v["configMap"]["name"])
            if cm is None:
                continue
            for key, content in (cm.get("data") or {}).items():
                files[os.path.join(m["mountPath"], key)] = content
    return files


def python_config(role, args, files, where):
    """The effective configuration, as the daemon computes it (daemon_parse)."""
    cfg = {}

    def load(text):
        doc = render.load(text) or {}
        for section, keys in doc.items():
            for k, v in (keys or {}).items():
                cfg[f"{section}.{k}"] = v

    for a in args:
        if a.startswith("--config="):
            path = a.split("=", 1)[1]
            if check(path in files, where, f"--config {path} is not a file mounted from a "
                                           "ConfigMap"):
                load(files[path])
    reset = set()
    for a in args:
        if a.startswith("--config="):
            continue
        if not check(a.startswith("--") and "=" in a, where,
                     f"argument {a!r}: use --name=value (one argument per flag)"):
            continue
        name, value = a[2:].split("=", 1)
        if name == "set":
            key, value = value.split("=", 1)
        elif "." in name:
            key = name.replace("-", "_")
        else:
            key = FLAGS.get(role, {}).get(name)
            if not check(key, where, f"flag --{name} unknown to this test (add it to FLAGS)"):
                continue
        check(key in cfg, where, f"{a}: {key} is not a configuration key")
        if key in LIST_KEYS:
            items = [] if key not in reset else list(cfg.get(key) or [])
            reset.add(key)
            cfg[key] = items + [value]
        else:
            cfg[key] = value
    for k in SIZE_KEYS:
        if k in cfg:
            cfg[k] = config_size(cfg[k])
    return cfg


def daemon_config(role, args, files, where):
    """The daemon's own --print-config, when the binary is built; else None."""
    exe = os.path.join(BIN, f"trellis-{role}")
    if not os.access(exe, os.X_OK):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        real = {}
        for i, (path, content) in enumerate(sorted(files.items())):
            p = os.path.join(tmp, f"{i}-{os.path.basename(path)}")
            with open(p, "w", encoding="utf-8") as f:
                f.write(content)
            real[path] = p
        argv = [exe] + [f"--config={real.get(a.split('=', 1)[1], a.split('=', 1)[1])}"
                        if a.startswith("--config=") else a for a in args] + ["--print-config"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if not check(p.returncode == 0, where, f"trellis-{role} refuses the arguments: "
                                           f"{p.stderr.strip()}"):
        return None
    cfg = {}
    for section, keys in (render.load(p.stdout) or {}).items():
        for k, v in (keys or {}).items():
            cfg[f"{section}.{k}"] = v
    return cfg


class Pod:
    """One container of a workload, with its effective configuration."""

    def __init__(self, res, container, configmaps, where):
        self.res = res
        self.c = container
        self.where = where
        self.spec = pod_template(res)["spec"]
        args = list(container.get("args") or [])
        self.role = args[0] if args else ""
        self.env = pod_env(res, container)
        self.args = [expand(a, self.env) for a in args[1:]]
        files = mounted_files(res, container, configmaps)
        self.cfg = python_config(self.role, self.args, files, where)
        theirs = daemon_config(self.role, self.args, files, where)
        if theirs is not None:
            notes.append(f"{where}: checked against trellis-{self.role} --print-config")
            for k, v in self.cfg.items():
                tv = theirs.get(k)
                if k in LIST_KEYS:
                    tv = [x for x in (tv or []) if x != ""]
                same = (str(tv) == str(v) or (isinstance(v, bool) and str(tv).lower() == str(v).lower())
                        or (isinstance(tv, (int, float)) and not isinstance(tv, bool)
                            and str(v).replace(".0", "") == str(tv).replace(".0", "")))
                if not same and k in LIST_KEYS:
                    same = [str(x) for x in tv] == [str(x) for x in v]
                check(same, where, f"{k}: this test computes {v!r}, trellis-{self.role} "
                                   f"--print-config says {tv!r}")

    def port(self, name):
        for p in self.c.get("ports") or []:
            if p.get("name") == name:
                return p["containerPort"]
        return None

    def ports(self):
        return {p["containerPort"]: p.get("name") for p in self.c.get("ports") or []}

    def int(self, key):
        return int(self.cfg[key])


def url_host_port(url):
    m = re.fullmatch(r"(?:tls\+)?tcp://([^:/]+):(\d+)", url)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


# ---- the checks --------------------------------------------------------------------------

def check_config_sync(name, docs):
    with open(os.path.join(SRC, "deploy", "trellis.yml"), encoding="utf-8") as f:
        default = f.read()
    with open(os.path.join(K8S, "base", "trellis.yml"), encoding="utf-8") as f:
        copy_ = f.read()
    check(copy_ == default, "deploy/k8s/base/trellis.yml",
          "differs from deploy/trellis.yml; refresh it: "
          "cp deploy/trellis.yml deploy/k8s/base/trellis.yml")
    cms = [d for d in docs if d["kind"] == "ConfigMap"
           and d["metadata"]["name"].startswith("trellis-config")]
    if not check(len(cms) == 1, name, "one ConfigMap trellis-config expected"):
        return
    data = cms[0].get("data") or {}
    check(data.get("trellis.yml") == default, name,
          "the ConfigMap's trellis.yml is not deploy/trellis.yml")
    known = {(s, k) for s, keys in render.load(default).items() for k in keys}
    for key, text in data.items():
        for section, keys in (render.load(text) or {}).items():
            for k in keys or {}:
                check((section, k) in known, name,
                      f"ConfigMap {key}: {section}.{k} is not a key of deploy/trellis.yml")


def check_container_basics(name, res, c, version):
    where = f"{name} {res['kind']}/{res['metadata']['name']} container {c['name']}"
    for probe in ("readinessProbe", "livenessProbe"):
        check(probe in c, where, f"no {probe}")
    r = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            check(what in (r.get(kind) or {}), where, f"no resources.{kind}.{what}")
    if "cpu" in (r.get("requests") or {}) and "cpu" in (r.get("limits") or {}):
        check(k8s_cpu(r["requests"]["cpu"]) <= k8s_cpu(r["limits"]["cpu"]), where,
              "cpu request above the limit")
    if "memory" in (r.get("requests") or {}) and "memory" in (r.get("limits") or {}):
        check(k8s_bytes(r["requests"]["memory"]) <= k8s_bytes(r["limits"]["memory"]), where,
              "memory request above the limit")
    image = c.get("image", "")
    check(image.rsplit("/", 1)[-1] == f"trellis:{version}", where,
          f"image {image!r}: expected trellis:{version} (CMakeLists.txt's version, the tag "
          "deploy/container/build.sh gives)")
    sc = c.get("securityContext") or {}
    check(sc.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation not false")
    check(sc.get("readOnlyRootFilesystem") is True, where, "root file system not read-only")
    check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), where,
          "capabilities not dropped")
    check(not sc.get("privileged"), where, "privileged")
    args = c.get("args") or []
    check(not c.get("command"), where, "command set: the image's entry point picks the role "
                                       "from the first argument")
    check(bool(args) and args[0] in ("kvs", "route", "monitor"), where,
          f"first argument {args[:1]} is not a role")
    return where


def check_pod_basics(name, res):
    where = f"{name} {res['kind']}/{res['metadata']['name']}"
    spec = pod_template(res)["spec"]
    psc = spec.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True, where, "runAsNonRoot not set")
    check(psc.get("runAsUser") == RUN_AS, where, f"runAsUser is not the image's user {RUN_AS}")
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        check(not spec.get(f), where, f"{f} set")
    for v in spec.get("volumes") or []:
        check("hostPath" not in v, where, f"hostPath volume {v['name']}")
    for m in ("app.kubernetes.io/name", "app.kubernetes.io/component"):
        check(m in (pod_template(res)["metadata"].get("labels") or {}), where,
              f"pod label {m} missing")


def check_probes(pod, metrics_key):
    where = pod.where
    mport = pod.int(metrics_key)
    check(mport > 0, where, f"{metrics_key} is 0: no /healthz to probe")
    for probe, path in (("readinessProbe", "/healthz"), ("livenessProbe", "/livez"),
                        ("startupProbe", "/livez")):
        p = pod.c.get(probe)
        if p is None:
            continue
        get = p.get("httpGet") or {}
        check(get.get("path") == path, where, f"{probe} path {get.get('path')} (want {path})")
        port = get.get("port")
        number = pod.port(port) if isinstance(port, str) else port
        check(number == mport, where, f"{probe} port {port} is not {metrics_key} {mport}")


def services_for(docs, res):
    labels = pod_template(res)["metadata"].get("labels") or {}
    return [d for d in docs if d["kind"] == "Service"
            and d["spec"].get("selector") and selects(d["spec"]["selector"], labels)]


def check_service_ports(name, docs, pods):
    """Every Service selects pods of one workload, on ports its containers have."""
    for svc in (d for d in docs if d["kind"] == "Service"):
        where = f"{name} Service/{svc['metadata']['name']}"
        targets = [p for p in pods if selects(svc["spec"].get("selector"),
                                              pod_template(p.res)["metadata"].get("labels") or {})]
        if not check(targets, where, "selects no pod"):
            continue
        check(len({id(p.res) for p in targets}) == 1, where, "selects pods of several workloads")
        for sp in svc["spec"].get("ports") or []:
            tp = sp.get("targetPort", sp["port"])
            for p in targets:
                number = p.port(tp) if isinstance(tp, str) else tp
                check(number is not None and number in p.ports(), where,
                      f"port {sp.get('name')} targets {tp}, not a port of {p.where}")
                if isinstance(tp, str) and number is not None:
                    check(sp["port"] == number, where,
                          f"port {sp.get('name')} {sp['port']} differs from the container's "
                          f"{number} (clients use the configured port)")


def check_storage(name, docs, pod, version_ns):
    res, where, cfg = pod.res, pod.where, pod.cfg
    sts = res["metadata"]["name"]
    spec = res["spec"]
    tier = cfg["kvs.tier"]
    check(res["kind"] == "StatefulSet", where, "storage nodes belong in a StatefulSet")
    svc_name = spec.get("serviceName")
    svc = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == svc_name),
               None)
    if check(svc is not None, where, f"no headless Service {svc_name}"):
        check(svc["spec"].get("clusterIP") == "None", where, f"Service {svc_name} is not headless")
        check(svc["spec"].get("publishNotReadyAddresses") is True, where,
              f"Service {svc_name}: a joining node (not Ready yet) must be resolvable for the "
              "hand-off: set publishNotReadyAddresses")
    # Identity: the pod name, and its stable DNS name under the headless Service.
    check(cfg["kvs.id"] == f"{sts}-0", where, f"kvs.id {cfg['kvs.id']!r} is not the pod name")
    adv = str(cfg["kvs.advertise"])
    labels = adv.split(".")
    check(labels[:3] == [f"{sts}-0", svc_name, version_ns] and labels[3:4] == ["svc"], where,
          f"kvs.advertise {adv!r} is not POD.{svc_name}.NAMESPACE.svc...")
    check(len(adv) <= 200, where, "kvs.advertise longer than 200 bytes")
    check(cfg["kvs.listen"] in ("0.0.0.0", "::"), where, "kvs.listen must bind the pod's interfaces")
    threads = pod.int("kvs.threads")
    check(threads > 0, where, "kvs.threads must be pinned (0 means the machine's CPU count, "
                              "which differs between machines and must not change for a disk node)")
    # Ports: one per shard, the control port, one data-plane port per shard,
    # the metrics port.
    base = pod.int("kvs.port_base")
    admin = pod.int("kvs.admin_port") or base + threads
    data = pod.int("kvs.data_port") or base + threads + 1
    want = {base + i for i in range(threads)} | {data + i for i in range(threads)} | \
        {admin, pod.int("kvs.metrics_port")}
    check(set(pod.ports()) == want, where,
          f"container ports {sorted(pod.ports())} are not the shard ports, the control port, "
          f"the data-plane ports and the metrics port {sorted(want)}")
    check_probes(pod, "kvs.metrics_port")
    check(pod.c["readinessProbe"].get("httpGet", {}).get("path") == "/healthz", where,
          "readiness must be /healthz (200 once ACTIVE in the ring)")
    # Departure: SIGTERM hands the keys off, within the grace period.
    grace = pod_template(res)["spec"].get("terminationGracePeriodSeconds", 30)
    need = DRAIN_PHASES * int(cfg["kvs.drain_timeout_ms"]) / 1000 + 10
    check(grace >= need, where, f"terminationGracePeriodSeconds {grace} < {need:.0f} "
                                "(two drain phases of kvs.drain_timeout_ms, plus margin)")
    pre = ((pod.c.get("lifecycle") or {}).get("preStop") or {})
    check(not pre, where, "a preStop hook: SIGTERM already makes the node depart")
    check(spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady", where,
          "storage StatefulSets add and remove one node at a time (OrderedReady)")
    # Resources follow the capacity.
    cap = cfg["kvs.capacity"]
    lim = pod.c["resources"]["limits"]
    mem = k8s_bytes(lim["memory"])
    check(k8s_cpu(lim["cpu"]) >= 0.5 * threads, where,
          f"cpu limit {lim['cpu']} below half a core per shard thread ({threads})")
    req = pod.c["resources"]["requests"]
    check(k8s_bytes(req["memory"]) == mem, where,
          "storage pods request their memory limit (no overcommit, no OOM eviction first)")
    # The CPU limit is the allotment a node measures its busy figure against
    # (docs/kubernetes.md, the autoscaling signal): set, and what it gets.
    check("cpu" in req and k8s_cpu(req["cpu"]) == k8s_cpu(lim["cpu"]), where,
          "storage pods request their CPU limit: the monitor's busy figure is CPU used over it")
    check(not cfg.get("kvs.cpu_limit"), where,
          "kvs.cpu_limit set: the kubelet sets the quota; a container cannot write its cgroup")
    mounts = {m["mountPath"]: m["name"] for m in pod.c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.spec.get("volumes") or []}
    vcts = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates") or []}
    if tier == "memory":
        need = int(1.5 * cap) + 256 * MiB
        check(mem >= need, where, f"memory limit {lim['memory']} below 1.5 x capacity "
                                  f"({cap >> 20} MiB) + 256 MiB")
    else:
        cache = cfg["kvs.rocksdb_cache_bytes"]
        wb = cfg["kvs.rocksdb_write_buffer_bytes"]
        need = cache + 2 * threads * wb + cap // 4 + 256 * MiB
        check(mem >= need, where, f"memory limit {lim['memory']} below block cache + two "
                                  f"memtables per shard + type index (capacity/4) + 256 MiB = "
                                  f"{need >> 20} MiB")
        data_dir = os.path.normpath(str(cfg["kvs.data_dir"]))
        check(data_dir.startswith("/"), where, f"kvs.data_dir {data_dir} is relative")
        mount = max((p for p in mounts if data_dir == p or data_dir.startswith(p.rstrip("/") + "/")),
                    key=len, default=None)
        if check(mount is not None, where, f"kvs.data_dir {data_dir} is on no volume"):
            vname = mounts[mount]
            if check(vname in vcts, where,
                     f"kvs.data_dir {data_dir} is on volume {vname}, not a persistent volume "
                     "claim of the StatefulSet"):
                pvc = vcts[vname]["spec"]
                check("ReadWriteOnce" in pvc.get("accessModes", []), where, "PVC not ReadWriteOnce")
                size = k8s_bytes(pvc["resources"]["requests"]["storage"])
                check(size >= 2 * cap, where, f"volume {pvc['resources']['requests']['storage']} "
                                              f"below twice the capacity ({cap >> 20} MiB)")
                check(pod.spec.get("securityContext", {}).get("fsGroup") == RUN_AS, where,
                      "fsGroup must make the volume writable by the image's user")
    # Writable state directory and a read-only configuration.
    check("/var/lib/trellis" in mounts, where, "no volume on /var/lib/trellis (read-only root)")
    for path, vname in mounts.items():
        if vname in vols and "configMap" in vols[vname]:
            m = next(m for m in pod.c["volumeMounts"] if m["mountPath"] == path)
            check(m.get("readOnly") is True, where, f"ConfigMap mount {path} not read-only")
    # A PodDisruptionBudget for the tier.
    labels = pod_template(res)["metadata"]["labels"]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"
            and selects(d["spec"]["selector"].get("matchLabels"), labels)]
    if check(len(pdbs) == 1, where, "no PodDisruptionBudget (or several)"):
        check(pdbs[0]["spec"].get("maxUnavailable") == 1, where,
              "PodDisruptionBudget: one node of a tier at a time (maxUnavailable: 1)")
    # Storage nodes reach the routers and the monitor through their Services.
    return tier


def service_named(docs, host):
    short = host.split(".")[0]
    return next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == short),
                None)


def check_route(name, docs, pods):
    routers = [p for p in pods if p.role == "route"]
    if not check(routers, name, "no router"):
        return
    for p in routers:
        where, res = p.where, p.res
        check(res["kind"] == "StatefulSet", where,
              "routers need stable names for route.peers: a StatefulSet")
        check(p.cfg["route.id"] == f"{res['metadata']['name']}-0", where,
              "route.id is not the pod name (routers must have distinct ids)")
        check(p.cfg["route.listen"] in ("0.0.0.0", "::"), where, "route.listen must bind the pod")
        check(set(p.ports()) == {p.int("route.port"), p.int("route.metrics_port")}, where,
              f"container ports {sorted(p.ports())} are not route.port and route.metrics_port")
        check_probes(p, "route.metrics_port")
        n = res["spec"].get("replicas", 1)
        svc = res["spec"].get("serviceName")
        want = [f"{res['metadata']['name']}-{i}.{svc}" for i in range(n)]
        peers = [url_host_port(u) for u in p.cfg["route.peers"]]
        hosts = [h.split(".svc")[0] for h, _ in peers]
        got = [".".join(h.split(".")[:2]) for h in hosts]
        check(sorted(got) == sorted(want), where,
              f"route.peers {p.cfg['route.peers']} do not name the {n} router pods {want}")
        check(all(port == p.int("route.port") for _, port in peers), where,
              "route.peers use another port than route.port")
        headless = next((d for d in docs if d["kind"] == "Service"
                         and d["metadata"]["name"] == svc), None)
        if check(headless is not None, where, f"no Service {svc}"):
            check(headless["spec"].get("clusterIP") == "None", where, f"Service {svc} not headless")
            check(headless["spec"].get("publishNotReadyAddresses") is True, where,
                  f"Service {svc}: routers must find each other before they are Ready")


def check_cluster_urls(name, docs, pods):
    """cluster.routers and cluster.monitor name Services that reach those pods."""
    for p in pods:
        for key, role, port_key in (("cluster.routers", "route", "route.port"),
                                    ("cluster.monitor", "monitor", "monitor.port")):
            urls = p.cfg.get(key) or []
            urls = [urls] if isinstance(urls, str) else urls
            targets = [q for q in pods if q.role == role]
            for u in (u for u in urls if u):
                host, port = url_host_port(u)
                svc = service_named(docs, host or "")
                if not check(svc is not None, p.where, f"{key} {u}: no Service {host}"):
                    continue
                sel = [q for q in targets if selects(svc["spec"].get("selector"),
                                                     pod_template(q.res)["metadata"]["labels"])]
                if check(sel, p.where, f"{key} {u}: Service {host} selects no {role} pod"):
                    check(port == sel[0].int(port_key), p.where,
                          f"{key} {u}: port is not {port_key} {sel[0].int(port_key)}")
                    check(any(sp["port"] == port for sp in svc["spec"]["ports"]), p.where,
                          f"{key} {u}: Service {host} has no port {port}")
            if role == "monitor" and not targets:
                continue
            check(urls and any(urls), p.where, f"{key} is empty")


def check_monitor(name, docs, pods, namespace):
    mons = [p for p in pods if p.role == "monitor"]
    if not check(len(mons) == 1, name, "one monitor container expected"):
        return
    m = mons[0]
    res, where, cfg = m.res, m.where, m.cfg
    check(res["kind"] == "Deployment" and res["spec"].get("replicas", 1) == 1, where,
          "the monitor is a Deployment of one replica")
    check((res["spec"].get("strategy") or {}).get("type") == "Recreate", where,
          "two monitors must never run at once: strategy Recreate")
    check(cfg["monitor.provisioner"] == "kubernetes", where, "monitor.provisioner not kubernetes")
    check(cfg["monitor.namespace"] == namespace, where,
          f"monitor.namespace {cfg['monitor.namespace']!r} is not the pods' namespace")
    check(set(m.ports()) == {m.int("monitor.port"), m.int("monitor.metrics_port")}, where,
          "container ports are not monitor.port and monitor.metrics_port")
    check_probes(m, "monitor.metrics_port")
    log_file = str(cfg["monitor.log_file"])
    mounts = [x["mountPath"] for x in m.c.get("volumeMounts") or []]
    check(log_file.startswith("/") and any(log_file.startswith(p.rstrip("/") + "/") for p in mounts),
          where, f"monitor.log_file {log_file} is not on a writable volume")
    sts_names = {cfg["monitor.statefulset_memory"], cfg["monitor.statefulset_disk"]}
    stses = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    for tier, n in (("memory", cfg["monitor.statefulset_memory"]),
                    ("disk", cfg["monitor.statefulset_disk"])):
        if check(n in stses, where, f"monitor.statefulset_{tier} {n}: no such StatefulSet"):
            args = stses[n]["spec"]["template"]["spec"]["containers"][0].get("args") or []
            check(f"--tier={tier}" in args, where, f"StatefulSet {n} does not run the {tier} tier")
            reps = stses[n]["spec"].get("replicas", 1)
            lo, hi = int(cfg[f"monitor.min_{tier}_nodes"]), int(cfg[f"monitor.max_{tier}_nodes"])
            check(lo <= reps <= hi, where, f"StatefulSet {n} starts with {reps} replicas, outside "
                                           f"monitor.min/max_{tier}_nodes [{lo}, {hi}]")
    # RBAC: only read and scale those two StatefulSets, in this namespace.
    spec = m.spec
    sa = spec.get("serviceAccountName")
    check(sa and sa != "default", where, "the monitor needs its own ServiceAccount")
    check(any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa for d in docs), where,
          f"no ServiceAccount {sa}")
    for d in docs:
        check(d["kind"] not in ("ClusterRole", "ClusterRoleBinding"), name,
              f"{d['kind']}/{d['metadata']['name']}: no cluster-wide permissions")
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    bound = [b for b in bindings if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa
                                        for s in b.get("subjects") or [])]
    if not check(len(bound) == 1, where, f"ServiceAccount {sa}: one RoleBinding expected"):
        return
    b = bound[0]
    for s in b["subjects"]:
        check(s.get("kind") == "ServiceAccount" and s.get("name") == sa
              and s.get("namespace") == namespace, where,
              f"RoleBinding {b['metadata']['name']} binds {s} (only {sa} in {namespace})")
    check(b["roleRef"]["kind"] == "Role", where, "the monitor's binding must name a Role")
    role = next((d for d in docs if d["kind"] == "Role"
                 and d["metadata"]["name"] == b["roleRef"]["name"]), None)
    if not check(role is not None, where, f"no Role {b['roleRef']['name']}"):
        return
    allowed = {"statefulsets": {"get"}, "statefulsets/scale": {"get", "patch", "update"}}
    can_scale = False
    for rule in role.get("rules") or []:
        rw = f"Role {role['metadata']['name']}"
        check(rule.get("apiGroups") == ["apps"], where, f"{rw}: apiGroups {rule.get('apiGroups')}")
        check(not rule.get("nonResourceURLs"), where, f"{rw}: nonResourceURLs")
        names = set(rule.get("resourceNames") or [])
        check(names and names <= sts_names, where,
              f"{rw}: resourceNames {sorted(names)} must be limited to {sorted(sts_names)}")
        for r in rule.get("resources") or []:
            check(r in allowed, where, f"{rw}: resource {r} not needed")
            bad = set(rule.get("verbs") or []) - allowed.get(r, set())
            check(not bad, where, f"{rw}: verbs {sorted(bad)} on {r} not needed")
            if r == "statefulsets/scale" and "patch" in rule.get("verbs", []) \
                    and names == sts_names:
                can_scale = True
        check("*" not in (rule.get("verbs") or []) + (rule.get("resources") or []), where,
              f"{rw}: wildcards")
    check(can_scale, where, "the Role does not allow patching the scale of both StatefulSets")
    check(spec.get("automountServiceAccountToken", True) is not False, where,
          "the monitor needs its ServiceAccount token for kubectl")
    for p in pods:
        if p is not m:
            check(p.spec.get("automountServiceAccountToken") is False, p.where,
                  "pods other than the monitor need no API token (automountServiceAccountToken)")


def check_dockerfile(pods):
    with open(os.path.join(SRC, "deploy", "container", "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^USER\s+(\d+)(?::(\d+))?\s*$", text, re.M)
    check(m and int(m.group(1)) == RUN_AS, "deploy/container/Dockerfile",
          f"USER is not the numeric uid {RUN_AS} the manifests run as")
    exposed = {int(x) for line in re.findall(r"^EXPOSE\s+(.*)$", text, re.M)
               for x in line.split()}
    used = {port for p in pods for port in p.ports()}
    check(used <= exposed, "deploy/container/Dockerfile",
          f"EXPOSE lacks ports the manifests use: {sorted(used - exposed)}")


def project_version():
    with open(os.path.join(SRC, "CMakeLists.txt"), encoding="utf-8") as f:
        m = re.search(r"project\(trellis VERSION ([0-9.]+)", f.read())
    return m.group(1)


def check_render(name, docs, version):
    check_config_sync(name, docs)
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        check(labels.get("app.kubernetes.io/name") == "trellis", name,
              f"{d['kind']}/{d['metadata']['name']}: label app.kubernetes.io/name missing")
    namespaces = {d["metadata"].get("namespace") for d in docs
                  if d["kind"] not in render.CLUSTER_SCOPED}
    if not check(len(namespaces) == 1 and None not in namespaces, name,
                 f"resources in namespaces {namespaces}: one expected"):
        return []
    namespace = namespaces.pop()
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pods = []
    for res in docs:
        if pod_template(res) is None:
            continue
        check_pod_basics(name, res)
        for c in pod_template(res)["spec"]["containers"]:
            where = check_container_basics(name, res, c, version)
            pods.append(Pod(res, c, configmaps, where))
    tiers = set()
    for p in pods:
        if p.role == "kvs":
            tiers.add(check_storage(name, docs, p, namespace))
    check(tiers == {"memory", "disk"}, name, f"storage tiers {sorted(tiers)}: memory and disk "
                                             "expected")
    check_route(name, docs, pods)
    check_monitor(name, docs, pods, namespace)
    check_cluster_urls(name, docs, pods)
    check_service_ports(name, docs, pods)
    return pods


def check_yamllint():
    if os.environ.get("TRELLIS_K8S_NO_TOOLS"):
        return
    yl = shutil.which("yamllint")
    if not yl:
        notes.append("yamllint not installed: YAML style not checked")
        return
    p = subprocess.run([yl, "-f", "parsable", "-c", ".yamllint", "."], cwd=K8S,
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "yamllint deploy/k8s", p.stdout.strip() or p.stderr.strip())


def main():
    version = project_version()
    renders = render_all()
    all_pods = []
    for name, docs in renders.items():
        all_pods += check_render(name, docs, version)
    if all_pods:
        check_dockerfile(all_pods)
    check_yamllint()
    for n in sorted(set(notes)):
        print(f"note: {n}")
    if failures:
        for f in failures:
            print(f"FAIL {f}")
        print(f"{len(failures)} failure(s)")
        return 1
    print(f"ok: {', '.join(renders)} render and keep their invariants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
