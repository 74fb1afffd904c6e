#!/usr/bin/env python3
"""Turns a rendered kustomization into what a container engine needs to run
its pods the way Kubernetes would: for test_container.sh.

usage: python3 tests/k8s/pods.py KUSTOMIZATION_DIR OUT_DIR

Writes OUT_DIR/config/KEY for every key of the ConfigMaps the pods mount, and
one OUT_DIR/pods/POD file per pod (StatefulSet pods NAME-0..N-1, a
Deployment's pod NAME-0), lines of:

  role ROLE                  the container's first argument
  arg ARG                    each further argument, $(VAR) expanded as the kubelet does
  alias NAME                 DNS names Kubernetes would give the pod (StatefulSet
                             pod names under their headless Service, and the
                             names of the Services that select it)
  config PATH                where the ConfigMap is mounted
  volume NAME PATH           an emptyDir or a persistent volume claim
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "deploy", "k8s"))
import render  # noqa: E402


def expand(text, env):
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def main(src, out):
    docs = render.render(src)
    os.makedirs(os.path.join(out, "config"), exist_ok=True)
    os.makedirs(os.path.join(out, "pods"), exist_ok=True)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    services = [d for d in docs if d["kind"] == "Service"]
    for res in docs:
        if res["kind"] not in ("StatefulSet", "Deployment"):
            continue
        ns = res["metadata"].get("namespace", "default")
        tmpl = res["spec"]["template"]
        labels = tmpl["metadata"].get("labels") or {}
        spec = tmpl["spec"]
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        for t in res["spec"].get("volumeClaimTemplates") or []:
            vols[t["metadata"]["name"]] = {"name": t["metadata"]["name"], "pvc": True}
        n = res["spec"].get("replicas", 1)
        for i in range(n):
            pod = f"{res['metadata']['name']}-{i}"
            lines = []
            if res["kind"] == "StatefulSet":
                sub = res["spec"]["serviceName"]
                lines += [f"alias {pod}.{sub}", f"alias {pod}.{sub}.{ns}.svc",
                          f"alias {pod}.{sub}.{ns}.svc.cluster.local"]
            for s in services:
                sel = s["spec"].get("selector") or {}
                if sel and all(labels.get(k) == v for k, v in sel.items()) \
                        and s["spec"].get("clusterIP") != "None":
                    name = s["metadata"]["name"]
                    lines += [f"alias {name}", f"alias {name}.{ns}.svc",
                              f"alias {name}.{ns}.svc.cluster.local"]
            c = spec["containers"][0]
            field = {"metadata.name": pod, "metadata.namespace": ns}
            env = {}
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = expand(str(e["value"]), env)
                elif "fieldRef" in (e.get("valueFrom") or {}):
                    env[e["name"]] = field.get(e["valueFrom"]["fieldRef"]["fieldPath"], "")
            args = [expand(a, env) for a in c.get("args") or []]
            lines.append(f"role {args[0]}")
            lines += [f"arg {a}" for a in args[1:]]
            for m in c.get("volumeMounts") or []:
                v = vols[m["name"]]
                if "configMap" in v:
                    cm = configmaps[v["configMap"]["name"]]
                    for key, content in (cm.get("data") or {}).items():
                        with open(os.path.join(out, "config", key), "w", encoding="utf-8") as f:
                            f.write(content)
                    lines.append(f"config {m['mountPath']}")
                else:
                    lines.append(f"volume {m['name']} {m['mountPath']}")
            with open(os.path.join(out, "pods", pod), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip())
    main(sys.argv[1], sys.argv[2])
