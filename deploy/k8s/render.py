#!/usr/bin/env python3
"""Renders a kustomization of deploy/k8s without kubectl or kustomize.

usage: python3 deploy/k8s/render.py DIR            print the manifests as YAML
       python3 deploy/k8s/render.py DIR | kubectl apply -f -

Where `kubectl kustomize DIR` (kubectl 1.21 or later) is available, use it:
this renderer exists for machines without it, and implements only the part
of kustomize that deploy/k8s uses, with the same results (tests/k8s compares
the two when kubectl is present). It refuses any kustomization field it does
not implement rather than ignore it. Supported:

  resources (files and directories), namespace, configMapGenerator (files,
  literals, behavior create|merge|replace, options.labels/annotations,
  options.disableNameSuffixHash; names get kustomize's content hash and
  references from pod templates follow), images (newName, newTag, digest),
  replicas, patches (strategic merge or JSON 6902, from a path or inline,
  with or without a target).

Needs PyYAML (Debian: python3-yaml).
"""

import copy
import hashlib
import json
import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("render.py: PyYAML is missing (Debian: apt-get install python3-yaml)")

# libyaml's parser when PyYAML has it (Debian's does): the same documents,
# ten times faster than the pure-Python one.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text):
    """One YAML document, as yaml.safe_load reads it."""
    return yaml.load(text, Loader=LOADER)


def load_all(text):
    """Every YAML document of a stream, as yaml.safe_load_all reads them."""
    return yaml.load_all(text, Loader=LOADER)

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator",
                    "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                  "APIService", "IngressClass", "RuntimeClass", "CSIDriver", "VolumeAttachment"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
# kustomize's output order (its "legacy" ordering); other kinds follow.
KIND_ORDER = ["Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
              "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
              "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
              "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
              "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget"]
KIND_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
# Strategic merge: the key that identifies list items, by field name.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
              "env": "name", "volumes": "name", "volumeMounts": "mountPath",
              "imagePullSecrets": "name", "hostAliases": "ip"}


class RenderError(Exception):
    pass


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in load_all(f) if d is not None]


def kustomization_path(directory):
    for name in KUSTOMIZATION_FILES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise RenderError(f"{directory}: no kustomization.yaml")


def within(root, path):
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


# ---- configMapGenerator ----------------------------------------------------------------

def go_json(value):
    """json.Marshal of Go: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def configmap_hash(cm):
    """kustomize's name suffix for a ConfigMap: a hash of its kind and data.
    (kustomize 4 and 5 mean to hash the name too, but look it up under a key
    that does not exist and hash an empty name; so does this.)"""
    m = {"kind": "ConfigMap", "name": "", "data": cm.get("data") or {}}
    if cm.get("binaryData"):
        m["binaryData"] = cm["binaryData"]
    digest = hashlib.sha256(go_json(m).encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def generate_configmap(directory, gen):
    unknown = set(gen) - {"name", "files", "literals", "behavior", "options", "namespace"}
    if unknown:
        raise RenderError(f"configMapGenerator: unsupported fields {sorted(unknown)}")
    data = {}
    for entry in gen.get("files") or []:
        key, _, rel = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
        path = os.path.join(directory, rel)
        if not within(directory, path):
            raise RenderError(f"security; file '{path}' is not in or below '{directory}'")
        with open(path, encoding="utf-8") as f:
            data[key] = f.read()
    for lit in gen.get("literals") or []:
        key, _, value = lit.partition("=")
        data[key] = value
    opts = gen.get("options") or {}
    unknown = set(opts) - {"labels", "annotations", "disableNameSuffixHash"}
    if unknown:
        raise RenderError(f"configMapGenerator options: unsupported {sorted(unknown)}")
    meta = {"name": gen["name"]}
    if gen.get("namespace"):
        meta["namespace"] = gen["namespace"]
    if opts.get("labels"):
        meta["labels"] = dict(opts["labels"])
    if opts.get("annotations"):
        meta["annotations"] = dict(opts["annotations"])
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
    hashed = not opts.get("disableNameSuffixHash", False)
    return cm, gen.get("behavior", "create"), hashed


# ---- patches -------------------------------------------------------------------------------

def list_merge_key(field, items):
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports" and items and isinstance(items[0], dict):
        return "containerPort" if "containerPort" in items[0] else "port"
    return None


def strategic_merge(dst, patch):
    for key, value in patch.items():
        if key == "$patch":
            raise RenderError("strategic merge: $patch directives are not supported")
        if value is None:
            dst.pop(key, None)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            strategic_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            mk = list_merge_key(key, value)
            if mk is None:
                dst[key] = copy.deepcopy(value)
                continue
            # As kustomize orders them: the patch's items first (merged into
            # their originals), then the other original items.
            merged = []
            for item in value:
                match = next((d for d in dst[key] if isinstance(d, dict)
                              and d.get(mk) == item.get(mk)), None)
                if match is None:
                    merged.append(copy.deepcopy(item))
                else:
                    strategic_merge(match, item)
                    merged.append(match)
            dst[key] = merged + [d for d in dst[key] if not any(d is m for m in merged)]
        else:
            dst[key] = copy.deepcopy(value)


def pointer_parts(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise RenderError(f"JSON patch: bad path '{pointer}'")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def json6902(doc, ops):
    for op in ops:
        parts = pointer_parts(op["path"])
        if not parts:
            raise RenderError("JSON patch on the whole document is not supported")
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[idx]
            elif kind == "test":
                if parent[idx] != op["value"]:
                    raise RenderError(f"JSON patch test failed at {op['path']}")
            else:
                raise RenderError(f"JSON patch: unsupported op {kind}")
        else:
            if kind == "add":
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "replace":
                if last not in parent:
                    raise RenderError(f"JSON patch: replace of missing {op['path']}")
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            elif kind == "test":
                if parent.get(last) != op["value"]:
                    raise RenderError(f"JSON patch test failed at {op['path']}")
            else:
                raise RenderError(f"JSON patch: unsupported op {kind}")


def matches(res, target):
    unknown = set(target) - {"kind", "name", "namespace", "group", "version"}
    if unknown:
        raise RenderError(f"patch target: unsupported selectors {sorted(unknown)}")
    meta = res.get("metadata", {})
    if "kind" in target and res.get("kind") != target["kind"]:
        return False
    if "name" in target and meta.get("name") != target["name"]:
        return False
    if "namespace" in target and meta.get("namespace") != target["namespace"]:
        return False
    api = res.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    if "group" in target and group != target["group"]:
        return False
    if "version" in target and version != target["version"]:
        return False
    return True


def apply_patch(directory, resources, spec):
    unknown = set(spec) - {"path", "patch", "target", "options"}
    if unknown or spec.get("options"):
        raise RenderError(f"patches: unsupported fields {sorted(unknown | set(spec.get('options') or {}))}")
    if "path" in spec:
        path = os.path.join(directory, spec["path"])
        if not within(directory, path):
            raise RenderError(f"security; file '{path}' is not in or below '{directory}'")
        docs = load_yaml_docs(path)
    else:
        docs = [d for d in load_all(spec["patch"]) if d is not None]
    if len(docs) != 1:
        raise RenderError("patches: one patch per entry")
    patch = docs[0]
    target = spec.get("target")
    if isinstance(patch, list):
        if not target:
            raise RenderError("patches: a JSON 6902 patch needs a target")
        hits = [r for r in resources if matches(r, target)]
        for r in hits:
            json6902(r, patch)
    else:
        if target is None:
            target = {"kind": patch.get("kind"), "name": patch.get("metadata", {}).get("name")}
        hits = [r for r in resources if matches(r, target)]
        for r in hits:
            body = copy.deepcopy(patch)
            if spec.get("target"):
                body.get("metadata", {}).pop("name", None)
            strategic_merge(r, body)
    if not hits:
        raise RenderError(f"patches: no resource matches {target}")


# ---- transformers ----------------------------------------------------------------------

def pod_spec(res):
    if res.get("kind") == "Pod":
        return res.get("spec")
    if res.get("kind") in WORKLOADS:
        return res.get("spec", {}).get("template", {}).get("spec")
    if res.get("kind") == "CronJob":
        return res.get("spec", {}).get("jobTemplate", {}).get("spec", {}) \
            .get("template", {}).get("spec")
    return None


def all_containers(spec):
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield c


def set_namespace(resources, ns):
    for r in resources:
        if r.get("kind") in CLUSTER_SCOPED:
            continue
        r.setdefault("metadata", {})["namespace"] = ns
        if r.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            for s in r.get("subjects") or []:
                if s.get("kind") == "ServiceAccount" and s.get("namespace") in (None, "", "default"):
                    s["namespace"] = ns


def set_images(resources, images):
    for r in resources:
        spec = pod_spec(r)
        if not spec:
            continue
        for c in all_containers(spec):
            image = c.get("image", "")
            name, tag, digest = image, None, None
            if "@" in name:
                name, digest = name.split("@", 1)
            elif ":" in name.rsplit("/", 1)[-1]:
                name, tag = name.rsplit(":", 1)
            for img in images:
                unknown = set(img) - {"name", "newName", "newTag", "digest"}
                if unknown:
                    raise RenderError(f"images: unsupported fields {sorted(unknown)}")
                if img["name"] != name:
                    continue
                new = img.get("newName", name)
                if img.get("digest"):
                    c["image"] = f"{new}@{img['digest']}"
                elif img.get("newTag") is not None:
                    c["image"] = f"{new}:{img['newTag']}"
                elif tag:
                    c["image"] = f"{new}:{tag}"
                elif digest:
                    c["image"] = f"{new}@{digest}"
                else:
                    c["image"] = new


def set_replicas(resources, replicas):
    for rep in replicas:
        hits = [r for r in resources if r.get("kind") in SCALABLE
                and r.get("metadata", {}).get("name") == rep["name"]]
        if not hits:
            raise RenderError(f"replicas: no resource named {rep['name']}")
        for r in hits:
            r.setdefault("spec", {})["replicas"] = rep["count"]


def rename_configmap_refs(resources, renames):
    """renames: {(namespace, old): new}; follows references in pod templates."""
    def fix(name, ns):
        return renames.get((ns, name), name)

    for r in resources:
        spec = pod_spec(r)
        if not spec:
            continue
        ns = r.get("metadata", {}).get("namespace")
        for v in spec.get("volumes") or []:
            if "configMap" in v:
                v["configMap"]["name"] = fix(v["configMap"]["name"], ns)
            for src in (v.get("projected") or {}).get("sources") or []:
                if "configMap" in src:
                    src["configMap"]["name"] = fix(src["configMap"]["name"], ns)
        for c in all_containers(spec):
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    ref["name"] = fix(ref["name"], ns)
            for e in c.get("envFrom") or []:
                if "configMapRef" in e:
                    e["configMapRef"]["name"] = fix(e["configMapRef"]["name"], ns)


# ---- the build ---------------------------------------------------------------------------

def build(directory, _seen=None):
    """Returns (resources, hashed): resources in order, and the ids of
    generated ConfigMaps whose names get a hash suffix at the end."""
    directory = os.path.abspath(directory)
    seen = _seen or set()
    if directory in seen:
        raise RenderError(f"{directory}: cycle in resources")
    seen = seen | {directory}
    kpath = kustomization_path(directory)
    with open(kpath, encoding="utf-8") as f:
        k = load(f) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{kpath}: fields not supported by render.py: {sorted(unknown)} "
                          "(use kubectl kustomize)")
    resources, hashed = [], []
    for entry in k.get("resources") or []:
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            sub, sub_hashed = build(path, seen)
            resources += sub
            hashed += sub_hashed
        else:
            if not within(directory, path):
                raise RenderError(f"security; file '{path}' is not in or below '{directory}'")
            resources += load_yaml_docs(path)
    for gen in k.get("configMapGenerator") or []:
        cm, behavior, with_hash = generate_configmap(directory, gen)
        ns = cm["metadata"].get("namespace")
        existing = next((r for r in resources if r.get("kind") == "ConfigMap"
                         and r["metadata"]["name"] == cm["metadata"]["name"]
                         and (ns is None or r["metadata"].get("namespace") == ns)), None)
        if behavior == "create":
            if existing is not None:
                raise RenderError(f"configMapGenerator: {cm['metadata']['name']} exists already")
            resources.append(cm)
            if with_hash:
                hashed.append(id(cm))
        elif behavior in ("merge", "replace"):
            if existing is None:
                raise RenderError(f"configMapGenerator: no {cm['metadata']['name']} to {behavior}")
            if behavior == "merge":
                existing.setdefault("data", {}).update(cm["data"])
                for f in ("labels", "annotations"):
                    if cm["metadata"].get(f):
                        existing["metadata"].setdefault(f, {}).update(cm["metadata"][f])
            else:
                existing["data"] = cm["data"]
        else:
            raise RenderError(f"configMapGenerator: unknown behavior {behavior}")
    for spec in k.get("patches") or []:
        apply_patch(directory, resources, spec)
    if k.get("namespace"):
        set_namespace(resources, k["namespace"])
    if k.get("replicas"):
        set_replicas(resources, k["replicas"])
    if k.get("images"):
        set_images(resources, k["images"])
    return resources, hashed


def kind_rank(res):
    kind = res.get("kind", "")
    if kind in KIND_ORDER:
        return KIND_ORDER.index(kind)
    if kind in KIND_LAST:
        return len(KIND_ORDER) + 1 + KIND_LAST.index(kind)
    return len(KIND_ORDER)


def render(directory):
    """The manifests of a kustomization directory, as a list of dicts."""
    resources, hashed = build(directory)
    renames = {}
    for r in resources:
        if id(r) in hashed:
            meta = r["metadata"]
            new = f"{meta['name']}-{configmap_hash(r)}"
            renames[(meta.get("namespace"), meta["name"])] = new
            meta["name"] = new
    rename_configmap_refs(resources, renames)
    return sorted(resources, key=lambda r: (kind_rank(r), r.get("kind", ""),
                                            r.get("metadata", {}).get("name", "")))


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump(resources):
    return yaml.dump_all(resources, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         explicit_start=False, width=1000)


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    try:
        out = dump(render(argv[1]))
    except (RenderError, OSError, KeyError, yaml.YAMLError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
