"""A shared cache tier (cache_proxy): Debian's nginx run with the config
`modelfs tier nginx` prints, in front of the fake Hub. Nodes read cold files
through it and the Hub's CDN sends each byte once; requests with a token go
straight to the Hub; a dead tier costs one log line and the reads go on at
the origin; a neighbour's `modelfs serve` answers the same URLs."""

import hashlib
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import _cannot
from mfs import MiB, hf, hf_conf, hf_fixture as fixture, stable
from test_serve import serve  # noqa: F401  (the fixture: a neighbour's modelfs serve)
from tierutil import NGINX, NginxTier, SpyTier

GOOD = "hf_testerTOKEN0123456789abcdefghijklmn"        # svc_hf.TOKENS: user "tester"



def need_nginx():
    if not os.path.exists(NGINX):
        _cannot("nginx is not installed (tools/deps.sh installs it)")


def add_big(hub, name, size, seed):
    hub.control("POST", "hf/repos", {"org/" + name: {"commits": [
        {"big.bin": {"kind": "raw", "size": size, "seed": seed}}]}}, server="hf")
    blob, info = fixture(hub, "org/" + name, "big.bin")
    return blob, info


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def cdn_bytes(hub, repo_file):
    """Bytes of repo_file the Hub's CDN sent (the 1-byte probes left out)."""
    return sum(r["bytes"] for r in hub.requests(path=repo_file)
               if r["server"].startswith("hfcdn") and r["method"] == "GET"
               and r["range"] != "bytes=0-0")


def origin_body_bytes(hub, repo_file):
    """Body bytes of repo_file from the Hub origin itself (302s carry none)."""
    return sum(r["bytes"] for r in hub.requests(path=repo_file, server="hf")
               if r["method"] == "GET" and r["range"] != "bytes=0-0"
               and r["status"] in (200, 206))


def status(modelfs_bin, m):
    r = subprocess.run([str(modelfs_bin), "status", "--json", "--cache-dir", str(m.cache_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {f["path"]: f for f in json.loads(r.stdout)["files"]}


def tier_conf(hub, entries, proxy, extra=""):
    return hf_conf(hub, entries, settings='cache_proxy = "%s"\n%s' % (proxy, extra),
                   block_size="8M")


def read_all(paths):
    """sha256 of each path, read concurrently."""
    out = [None] * len(paths)

    def one(i):
        out[i] = sha256_of(paths[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return out


@pytest.fixture
def nginx_tier(modelfs_bin, hub):
    need_nginx()
    tiers = []

    def start(**kw):
        t = NginxTier(modelfs_bin, "127.0.0.1", ["127.0.0.1"], **kw)
        tiers.append(t)
        return t.start()

    yield start
    for t in tiers:
        t.stop()


# ---------------------------------------------------------------------------
# the generated config

def test_tier_nginx_prints_a_config_nginx_accepts(modelfs_bin, tmp_path):
    need_nginx()
    (tmp_path / "cache").mkdir()
    r = subprocess.run([str(modelfs_bin), "tier", "nginx", "--listen", "127.0.0.1:18980",
                        "--cache", str(tmp_path / "cache"), "--max-size", "20G",
                        "--origin", "huggingface.co", "--allow", "10.0.0.0/8"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    conf = r.stdout
    for want in ("slice 8388608;", "proxy_cache_lock on;", "proxy_cache_lock_timeout 300s;",
                 "proxy_cache_key $mfs_key$slice_range;", "max_size=21474836480",
                 '"huggingface.co" 1;', "allow 10.0.0.0/8;", "deny all;",
                 'proxy_set_header Authorization "";', "error_page 301 302 303 307 308"):
        assert want in conf
    path = tmp_path / "tier.conf"
    path.write_text(conf)
    t = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(path), "-e", "stderr"],
                       capture_output=True, text=True, timeout=30)
    assert t.returncode == 0, t.stderr
    bad = subprocess.run([str(modelfs_bin), "tier", "nginx", "--cache", "/tmp/x;evil"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2


# ---------------------------------------------------------------------------
# through nginx, on loopback

def test_three_nodes_through_nginx_fetch_each_byte_once(modelfs_bin, hub, mount, nginx_tier):
    """3 mounts read the same cold file at once through the tier: every
    read is exact, and the CDN sends each byte once (the tier follows the
    Hub's 302 itself; its cache key is the sha256, not the signed URL)."""
    size = 64 * MiB + 12345
    blob, info = add_big(hub, "big", size, seed=31)
    tier = nginx_tier()
    conf = tier_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}}, tier.url)
    nodes = [mount(conf) for _ in range(3)]
    paths = [m.path / "Stable-diffusion" / "big.bin" for m in nodes]
    assert read_all(paths) == [info["sha256"]] * 3
    sent = cdn_bytes(hub, "org/big/big.bin")
    assert size <= sent <= 1.02 * size, "the CDN sent %d bytes for a %d-byte file" % (sent, size)
    assert origin_body_bytes(hub, "org/big/big.bin") == 0
    # Nobody sent the tier a credential, and the Hub saw none from it.
    assert not any(r["authorization"] for r in hub.requests(path="org/big/big.bin"))
    for m in nodes:
        f = status(modelfs_bin, m)["Stable-diffusion/big.bin"]
        assert f["downloaded"] == {"tier": size, "bucket": 0, "origin": 0}
        assert "event=tier_down" not in m.log()


def test_tier_killed_mid_read_reads_finish_from_the_origin(modelfs_bin, hub, mount, nginx_tier):
    """The tier dies while a file is being read: the read finishes from the
    origin, exact, with one log line saying so."""
    size = 48 * MiB + 7
    blob, info = add_big(hub, "kill", size, seed=32)
    tier = nginx_tier()
    hub.faults(server="hfcdn*", path="org/kill/big.bin", rate_bps=12 * MiB)
    m = mount(tier_conf(hub, {"checkpoints": {"kill": hf("org/kill", file="big.bin")}},
                        tier.url))
    path = m.path / "Stable-diffusion" / "big.bin"
    result = []
    reader = threading.Thread(target=lambda: result.append(sha256_of(path)))
    reader.start()
    # Killed once a block has come through it (bytes on the CDN alone may
    # all be blocks still on their way at a slow origin).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and \
            status(modelfs_bin, m)["Stable-diffusion/big.bin"]["downloaded"]["tier"] == 0:
        time.sleep(0.1)
    tier.kill()
    reader.join(300)
    assert result == [info["sha256"]]
    log = m.log()
    assert log.count("event=tier_down") == 1, log
    f = status(modelfs_bin, m)["Stable-diffusion/big.bin"]
    assert f["downloaded"]["tier"] > 0 and f["downloaded"]["origin"] > 0
    assert f["downloaded"]["tier"] + f["downloaded"]["origin"] >= size


def test_after_a_remount_every_block_still_comes_through_the_tier(modelfs_bin, hub, mount,
                                                                   nginx_tier):
    """A remount while the Hub is away lists files from their stored
    resolution, which keeps no stable URL (nor whether the repo is public):
    the first block read later resolves the file again, so that it too comes
    through the tier, token or not."""
    size = 24 * MiB + 1
    _, info = add_big(hub, "again", size, seed=37)
    tier = nginx_tier()
    conf = tier_conf(hub, {"checkpoints": {"a": hf("org/again", file="big.bin")}}, tier.url)
    first = mount(conf, env={"HF_TOKEN": GOOD})
    path = first.path / "Stable-diffusion" / "big.bin"
    with open(path, "rb") as f:
        f.read(MiB)
    cached = stable(lambda: status(modelfs_bin, first)["Stable-diffusion/big.bin"]["cached"],
                    quiet=0.5)
    first.unmount()
    hub.faults(server="hf", down=True)         # the Hub is away at the remount
    second = mount(conf, cache_dir=first.cache_dir, env={"HF_TOKEN": GOOD})
    hub.clear_faults()
    assert sha256_of(second.path / "Stable-diffusion" / "big.bin") == info["sha256"]
    got = status(modelfs_bin, second)["Stable-diffusion/big.bin"]["downloaded"]
    assert got == {"tier": size - cached, "bucket": 0, "origin": 0}


# ---------------------------------------------------------------------------
# a neighbour's modelfs serve as the tier (peers)

def test_a_neighbours_serve_is_a_tier(modelfs_bin, hub, mount, serve):
    """Two nodes use a third node's `modelfs serve` as their cache_proxy:
    both read exact bytes, the CDN sends the file once (to the serving
    node), and a file the neighbour does not serve goes to the origin."""
    size = 40 * MiB + 99
    blob, info = add_big(hub, "peer", size, seed=34)
    _, other = add_big(hub, "other", 9 * MiB, seed=35)
    peer = serve(hf_conf(hub, {"checkpoints": {"p": hf("org/peer", file="big.bin")}},
                         block_size="8M"))
    conf = tier_conf(hub, {"checkpoints": {"p": hf("org/peer", file="big.bin"),
                                           "o": hf("org/other", file="big.bin",
                                                   filename="other.bin")}}, peer.url(""))
    nodes = [mount(conf) for _ in range(2)]
    assert read_all([m.path / "Stable-diffusion" / "big.bin" for m in nodes]) == \
        [info["sha256"]] * 2
    assert read_all([m.path / "Stable-diffusion" / "other.bin" for m in nodes]) == \
        [other["sha256"]] * 2
    sent = cdn_bytes(hub, "org/peer/big.bin")
    assert size <= sent <= 1.02 * size
    for m in nodes:
        files = status(modelfs_bin, m)
        assert files["Stable-diffusion/big.bin"]["downloaded"] == {"tier": size, "bucket": 0,
                                                                   "origin": 0}
        assert files["Stable-diffusion/other.bin"]["downloaded"] == {"tier": 0, "bucket": 0,
                                                                     "origin": 9 * MiB}
        assert "event=tier_down" not in m.log()


def test_a_neighbours_serve_beyond_loopback_is_a_tier_with_its_token(
        modelfs_bin, hub, mount, serve, tmp_path):
    """A neighbour serving on 0.0.0.0 with --token-file is a cache_proxy
    for a node with cache_proxy_token_file: every byte through the tier,
    the token sent to the tier only (never to the Hub or its CDN). A node
    without the token is refused by the tier (401) and reads from the
    origin, exact all the same."""
    size = 17 * MiB + 3
    _, info = add_big(hub, "ptok", size, seed=37)
    token = "mfs-tier-access-0123456789abcdef0123456789"
    tf = tmp_path / "tier.token"
    tf.write_text(token + "\n")
    entries = {"checkpoints": {"p": hf("org/ptok", file="big.bin")}}
    peer = serve(hf_conf(hub, entries, block_size="8M"), listen="0.0.0.0",
                 extra_args=["--token-file", tf])
    with_token = mount(tier_conf(hub, entries, peer.url(""),
                                 'cache_proxy_token_file = "%s"\n' % tf))
    assert sha256_of(with_token.path / "Stable-diffusion" / "big.bin") == info["sha256"]
    f = status(modelfs_bin, with_token)["Stable-diffusion/big.bin"]
    assert f["downloaded"] == {"tier": size, "bucket": 0, "origin": 0}
    assert not any(token in (r["headers"].get("authorization") or "")
                   for r in hub.requests())
    without = mount(tier_conf(hub, entries, peer.url("")))
    assert sha256_of(without.path / "Stable-diffusion" / "big.bin") == info["sha256"]
    f = status(modelfs_bin, without)["Stable-diffusion/big.bin"]
    assert f["downloaded"] == {"tier": 0, "bucket": 0, "origin": size}
    for m in (with_token, without):
        assert token not in m.log()
    peer.stop()
    assert token not in peer.log()


# ---------------------------------------------------------------------------
# policy, with a spy for a tier

def test_broken_tier_costs_one_log_line(modelfs_bin, hub, mount):
    """A tier answering 502 is skipped after the first failure: one log
    line, every byte from the origin, exact."""
    size = 24 * MiB + 5
    blob, info = add_big(hub, "spy", size, seed=33)
    with SpyTier(502) as spy:
        m = mount(tier_conf(hub, {"checkpoints": {"spy": hf("org/spy", file="big.bin")}},
                            spy.url))
        assert sha256_of(m.path / "Stable-diffusion" / "big.bin") == info["sha256"]
        assert spy.requests, "nothing asked the tier"
        commit = hub.control("GET", "hf/repos", server="hf")["org/spy"]["commits"][0]["sha"]
        want = "/sha256-%s/http/127.0.0.1:%d/org/spy/resolve/%s/big.bin" % (
            info["sha256"], hub.ports["hf"], commit)
        assert spy.requests[0]["path"] == want
        assert not any("authorization" in r["headers"] for r in spy.requests)
        assert m.log().count("event=tier_down") == 1
        f = status(modelfs_bin, m)["Stable-diffusion/big.bin"]
        assert f["downloaded"] == {"tier": 0, "bucket": 0, "origin": size}


def test_public_file_with_token_goes_through_the_tier_without_it(modelfs_bin, hub, mount):
    """HF_TOKEN is set but the repo is public (the model info says neither
    gated nor private): its blocks are asked of the tier, which gets no
    token; the gated file of the same mount still goes straight to the Hub."""
    _, info = add_big(hub, "pub", 17 * MiB, seed=36)
    _, gated = fixture(hub, "org/gated", "model.safetensors")
    with SpyTier(502) as spy:
        m = mount(tier_conf(hub, {"checkpoints": {
            "p": hf("org/pub", file="big.bin"),
            "g": hf("org/gated", file="model.safetensors")}}, spy.url),
            env={"HF_TOKEN": GOOD})
        assert sha256_of(m.path / "Stable-diffusion" / "big.bin") == info["sha256"]
        assert sha256_of(m.path / "Stable-diffusion" / "model.safetensors") == gated["sha256"]
        assert spy.requests
        assert all("/org/pub/" in r["path"] for r in spy.requests)
        assert not any("authorization" in r["headers"] for r in spy.requests)


def test_gated_file_with_token_never_reaches_the_tier(modelfs_bin, hub, mount):
    """HF_TOKEN is set and the file is gated: its requests go to the Hub,
    none to the tier (a tier hit would hand gated bytes to anyone)."""
    blob, info = fixture(hub, "org/gated", "model.safetensors")
    with SpyTier(502) as spy:
        m = mount(tier_conf(hub, {"checkpoints": {"g": hf("org/gated",
                                                         file="model.safetensors")}}, spy.url),
                  env={"HF_TOKEN": GOOD})
        assert sha256_of(m.path / "Stable-diffusion" / "model.safetensors") == info["sha256"]
        assert spy.requests == []
        assert "event=tier_down" not in m.log()


def test_private_tier_gets_the_token_and_no_one_else(modelfs_bin, hub, mount):
    """cache_proxy_private = true: the gated file's requests go to the tier
    with the token (the tier enforces access); the fallback still works."""
    blob, info = fixture(hub, "org/gated", "model.safetensors")
    with SpyTier(502) as spy:
        m = mount(tier_conf(hub, {"checkpoints": {"g": hf("org/gated",
                                                         file="model.safetensors")}}, spy.url,
                            extra="cache_proxy_private = true\n"),
                  env={"HF_TOKEN": GOOD})
        assert sha256_of(m.path / "Stable-diffusion" / "model.safetensors") == info["sha256"]
        assert spy.requests
        assert all(r["headers"].get("authorization") == "Bearer " + GOOD for r in spy.requests)
        assert not any(r["leak"] for r in hub.requests(path="org/gated/*"))


# ---------------------------------------------------------------------------
# 3 nodes in network namespaces, a capped origin, a real tier

@pytest.fixture
def cluster(modelfs_bin):
    from netnodes import Cluster, Unavailable
    need_nginx()
    try:
        c = Cluster(modelfs_bin, nodes=3).open()
    except Unavailable as e:
        pytest.skip("no network namespaces here: %s" % e)
    try:
        yield c
    finally:
        c.close()


def test_three_netns_nodes_read_cold_files_through_the_tier(cluster):
    """3 nodes (each its own network namespace, 1 Gbit/s NIC, a real mount)
    read the same cold 256 MiB file at once through nginx: exact, and the
    origin (capped at 400 Mbit/s) sends each byte once. Then the tier is
    killed while they read a second file: the reads finish from the origin,
    exact, each node saying so in at most one log line."""
    from netnodes import problems
    size = 256 * MiB
    one = cluster.add_file("org/one", size, seed=51)
    two = cluster.add_file("org/two", 128 * MiB + 3, seed=52)
    tier = cluster.start_tier()
    conf = cluster.config({"one": "org/one", "two": "org/two"}, tier.url)
    for n in cluster.nodes:
        n.mount(conf)
    shas, took = cluster.read_everywhere("Stable-diffusion/one.bin")
    assert shas == [one["sha256"]] * 3
    sent = cluster.cdn_bytes("org/one")
    print("tier: 3 nodes, %d MiB cold: origin sent %d bytes (%.3fx) in %.1f s"
          % (size >> 20, sent, sent / size, took))
    assert size <= sent <= 1.02 * size

    def kill_when_started():
        deadline = time.monotonic() + 60
        while cluster.cdn_bytes("org/two") < 16 * MiB and time.monotonic() < deadline:
            time.sleep(0.1)
        tier.kill()

    shas, took = cluster.read_everywhere("Stable-diffusion/two.bin", during=kill_when_started)
    assert shas == [two["sha256"]] * 3
    print("tier killed mid-read: 3 nodes finished from the origin in %.1f s" % took)
    for n in cluster.nodes:
        assert n.log().count("event=tier_down") <= 1
        r = n.status()
        assert r.returncode == 0, r.stderr
        files = {f["entry"]: f for f in json.loads(r.stdout)["files"]}
        assert files["checkpoints/one"]["downloaded"] == {"tier": size, "bucket": 0, "origin": 0}
    assert any("event=tier_down" in n.log() for n in cluster.nodes)
    cluster.unmount_all()
    for n in cluster.nodes:
        assert problems(n) == []
