#!/usr/bin/env python3
"""Checks that test_manifests.py catches what it is meant to catch: copies
the project's deploy files to a scratch tree, breaks one promise at a time,
and expects test_manifests.py to fail on it with a message that names it.

usage: python3 tests/k8s/test_manifest_checks.py   (exit 0 ok, 1 failures, 77 skipped)
"""

import concurrent.futures
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("TRELLIS_SRC") or os.path.abspath(os.path.join(HERE, "..", ".."))

if importlib.util.find_spec("yaml") is None:
    print("skipped: PyYAML is missing (Debian: apt-get install python3-yaml)")
    sys.exit(77)

# (description, file under the scratch tree, text to replace, replacement, expected message)
MUTATIONS = [
    ("a router without readiness probe", "deploy/k8s/base/route.yaml",
     "          readinessProbe:\n            httpGet: {path: /healthz, port: metrics}\n"
     "            periodSeconds: 2\n            timeoutSeconds: 2\n            failureThreshold: 2\n",
     "", "no readinessProbe"),
    ("a monitor without limits", "deploy/k8s/base/monitor.yaml",
     '            limits: {cpu: "1", memory: 512Mi}\n', "", "no resources.limits.cpu"),
    ("a memory limit below the capacity", "deploy/k8s/base/memory.yaml",
     'value: "1GiB"', 'value: "2GiB"', "memory limit"),
    ("a disk volume smaller than twice the capacity", "deploy/k8s/base/disk.yaml",
     "storage: 20Gi", "storage: 10Gi", "below twice the capacity"),
    ("RocksDB's directory off the persistent volume", "deploy/k8s/base/kubernetes.yml",
     'data_dir: "/var/lib/trellis/data"', 'data_dir: "/var/lib/trellis/db"',
     "not a persistent volume claim"),
    ("threads left to the CPU count", "deploy/k8s/base/memory.yaml",
     'name: TRELLIS_THREADS\n              value: "2"', 'name: TRELLIS_THREADS\n              value: "0"',
     "kvs.threads must be pinned"),
    ("a metrics port the probes do not use", "deploy/k8s/base/kubernetes.yml",
     "metrics_port: 9100", "metrics_port: 9200", "metrics_port"),
    ("a shard port missing from the container", "deploy/k8s/base/disk.yaml",
     "            - {name: shard-1, containerPort: 6501}\n", "", "container ports"),
    ("a Service port that differs from the container's", "deploy/k8s/base/route.yaml",
     "- {name: route, port: 6450, targetPort: route}\n---\napiVersion: v1\nkind: Service\n"
     "metadata:\n  name: trellis-route-peers",
     "- {name: route, port: 80, targetPort: route}\n---\napiVersion: v1\nkind: Service\n"
     "metadata:\n  name: trellis-route-peers", "cluster.routers"),
    ("a Role that may delete", "deploy/k8s/base/monitor.yaml",
     "verbs: [get, patch, update]", "verbs: [get, patch, update, delete]", "verbs ['delete']"),
    ("a Role on pods", "deploy/k8s/base/monitor.yaml",
     "resources: [statefulsets/scale]", "resources: [statefulsets/scale, pods]",
     "resource pods not needed"),
    ("a Role on every StatefulSet", "deploy/k8s/base/monitor.yaml",
     "    resources: [statefulsets]\n    resourceNames: [trellis-memory, trellis-disk]\n",
     "    resources: [statefulsets]\n", "resourceNames"),
    ("an image tag that is not the version", "deploy/k8s/base/kustomization.yaml",
     "newTag: 0.1.0", "newTag: latest", "image"),
    ("a stale copy of deploy/trellis.yml", "deploy/k8s/base/trellis.yml",
     "vnodes: 256", "vnodes: 128", "differs from deploy/trellis.yml"),
    ("a misspelt key in kubernetes.yml", "deploy/k8s/base/kubernetes.yml",
     "  metrics_port: 9101", "  metrics_port: 9101\n  metric_port: 9101", "not a key"),
    ("a peer list short of a router", "deploy/k8s/base/kubernetes.yml",
     ", tcp://trellis-route-1.trellis-route-peers:6450]", "]", "route.peers"),
    ("a grace period shorter than the departure", "deploy/k8s/base/disk.yaml",
     "terminationGracePeriodSeconds: 150", "terminationGracePeriodSeconds: 30",
     "terminationGracePeriodSeconds"),
    ("a headless Service hiding joining nodes", "deploy/k8s/base/memory.yaml",
     "  publishNotReadyAddresses: true\n", "", "publishNotReadyAddresses"),
    ("identity by IP", "deploy/k8s/base/memory.yaml",
     "--advertise=$(POD_NAME).trellis-memory.$(POD_NAMESPACE).svc.cluster.local",
     "--advertise=$(POD_IP)", "kvs.advertise"),
    ("host networking", "deploy/k8s/base/route.yaml",
     "      automountServiceAccountToken: false\n",
     "      automountServiceAccountToken: false\n      hostNetwork: true\n", "hostNetwork"),
    ("a root container", "deploy/k8s/base/memory.yaml",
     "        runAsUser: 10001\n", "        runAsUser: 0\n", "runAsUser"),
    ("an overlay that breaks the capacity rule", "deploy/k8s/overlays/small/memory.yaml",
     'value: "256MiB"', 'value: "512MiB"', "memory limit"),
]


def run_case(tmp, i, case):
    """None if test_manifests.py catches the case, else what went wrong."""
    what, rel, old, new, expect = case
    tree = os.path.join(tmp, str(i))
    os.makedirs(os.path.join(tree, "deploy", "container"))
    shutil.copytree(os.path.join(SRC, "deploy", "k8s"), os.path.join(tree, "deploy", "k8s"))
    shutil.copy(os.path.join(SRC, "deploy", "trellis.yml"), os.path.join(tree, "deploy"))
    shutil.copy(os.path.join(SRC, "deploy", "container", "Dockerfile"),
                os.path.join(tree, "deploy", "container"))
    shutil.copy(os.path.join(SRC, "CMakeLists.txt"), tree)
    path = os.path.join(tree, rel)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if old not in text:
        return f"{what}: {rel} no longer contains the text this case replaces"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))
    # render.py alone renders (test_manifests.py compares it with kubectl),
    # and no daemon answers: the checks themselves must catch the case.
    env = dict(os.environ, TRELLIS_SRC=tree, TRELLIS_K8S_NO_TOOLS="1",
               TRELLIS_BIN=os.path.join(tree, "no-binaries"))
    p = subprocess.run([sys.executable, os.path.join(HERE, "test_manifests.py")],
                       capture_output=True, text=True, env=env, timeout=120)
    out = p.stdout + p.stderr
    if p.returncode != 1:
        return f"{what}: test_manifests.py exited {p.returncode}, not 1\n{out}"
    if expect not in out:
        return f"{what}: no failure mentions {expect!r}\n{out}"
    return None


def main():
    with tempfile.TemporaryDirectory() as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            failures = [r for r in pool.map(lambda ic: run_case(tmp, *ic), enumerate(MUTATIONS))
                        if r]
    for f in failures:
        print(f"FAIL {f}")
    if failures:
        return 1
    print(f"ok: test_manifests.py catches all {len(MUTATIONS)} broken promises")
    return 0


if __name__ == "__main__":
    sys.exit(main())
