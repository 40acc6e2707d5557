"""deploy/k8s: the manifests parse, and hold what the docs promise (no
cluster here to apply them to)."""

import yaml

from conftest import REPO


def docs(name):
    return [d for d in yaml.safe_load_all((REPO / "deploy" / "k8s" / name).read_text()) if d]


def mounts(container):
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def test_daemonset_shares_the_mount_and_cleans_up():
    ds, consumer = docs("daemonset.yaml")
    assert ds["kind"] == "DaemonSet"
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["privileged"] is True
    assert mounts(c)["/srv/models"]["mountPropagation"] == "Bidirectional"
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["fusermount3", "-uz", "/srv/models"]
    assert "/srv/models" in c["command"] and "-f" in c["command"]
    w = consumer["spec"]["containers"][0]
    assert mounts(w)["/srv/models"]["mountPropagation"] == "HostToContainer"


def test_sidecar_caps_its_cache_below_the_emptydir():
    (pod,) = docs("sidecar.yaml")
    side = pod["spec"]["initContainers"][0]
    assert side["restartPolicy"] == "Always"                 # a native sidecar
    assert mounts(side)["/models"]["mountPropagation"] == "Bidirectional"
    cache = [v for v in pod["spec"]["volumes"] if v["name"] == "cache"][0]
    assert cache["emptyDir"]["sizeLimit"] == "60Gi"
    text = (REPO / "deploy" / "k8s" / "sidecar.yaml").read_text()
    assert 'cache_max_size = "50G"' in text
