"""modelfs serve (issue 14): the config's Hugging Face files over the Hub's
download protocol, from the block cache, against the fake Hub
(tests/fakehub/svc_hf.py) and the official @huggingface/hub client.

Each test starts the fake Hub (`hub`), writes a config with Hugging Face
entries, runs `modelfs serve` on a free loopback port (`serve`) and talks to
it with http.client (hubclient.fetch: raw status, headers and bytes) or
node.  Every server is stopped with SIGTERM in teardown, must exit within
10 s with status 0, and its log and stderr must hold no sanitizer report
and no unexpected error line.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import ERROR_LINE_RE, SANITIZER_RE, SCRUB_NAMES, SCRUB_PREFIXES, _tail
from hubclient import fetch
from mfs import MiB, commit_sha, config, data_requests, hf, repos, run, wait_for
from test_fakehub_hf import JS, js_ready

GOOD = "hf_testerTOKEN0123456789abcdefghijklmn"        # svc_hf.TOKENS: user "tester"
STOP_TIMEOUT = 10
START_TIMEOUT = 60


# ---------------------------------------------------------------------------
# helpers

def hf_conf(hub, entries, block_size="1M"):
    return config(entries, settings='hf_endpoint = "%s"' % hub.base("hf"), block_size=block_size)


def fixture(hub, repo, path, commit=0):
    """(bytes, file info) of path in the repo's commit number `commit`."""
    info = repos(hub)[repo]["commits"][commit]["files"][path]
    return Path(info["blob"]).read_bytes(), info


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """One `modelfs serve` process."""

    def __init__(self, binary, workdir, config_text, cache_dir, extra_args, env):
        self.workdir = workdir
        self.workdir.mkdir(parents=True)
        self.cache_dir = cache_dir or workdir / "cache"
        self.config_path = workdir / "config.toml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "serve.log"
        self.stderr_path = workdir / "serve.stderr"
        self.port = free_port()
        self.cmd = [str(binary), "serve", "--cache-dir", str(self.cache_dir),
                    "--listen", "127.0.0.1:%d" % self.port, "--log-file", str(self.log_path),
                    *map(str, extra_args), str(self.config_path)]
        self.env = env
        self.proc = None
        self.stopped_in = None
        self.allowed_errors = []

    def start(self, expect_fail=False):
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=self.env)
        if expect_fail:
            self.proc.wait(START_TIMEOUT)
            return self
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("modelfs serve exited %d at start:\n%s\n%s" % (
                    self.proc.returncode, self.stderr, _tail(self.log())), pytrace=False)
            try:
                fetch(self.url("/api/models/-/-"), timeout=2)
                return self
            except OSError:
                time.sleep(0.05)
        pytest.fail("modelfs serve did not listen within %d s" % START_TIMEOUT, pytrace=False)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path, **kw):
        return fetch(self.url(path), **kw)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        """Signal it and wait; returns the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.stopped_in = time.monotonic() - t0
        return self.stopped_in

    def problems(self):
        out = []
        if self.proc is not None and self.proc.poll() is None:
            took = self.stop()
            if took >= STOP_TIMEOUT:
                out.append("modelfs serve did not stop within %d s of SIGTERM" % STOP_TIMEOUT)
        if self.proc is not None and self.proc.returncode not in (0, 1, 2):
            out.append("modelfs serve exited %s" % self.proc.returncode)
        sources = [("log", self.log_path), ("stderr", self.stderr_path)]
        sources += [("sanitizer", p) for p in sorted(self.workdir.glob("sanitizer*"))]
        for label, path in sources:
            text = path.read_text(errors="replace") if path.exists() else ""
            if SANITIZER_RE.search(text):
                out.append("sanitizer report in %s:\n%s" % (label, _tail(text, 80)))
            elif label != "sanitizer":
                bad = [line for line in text.splitlines() if ERROR_LINE_RE.search(line)
                       and not any(r in line for r in self.allowed_errors)]
                if bad:
                    out.append("unexpected error lines in %s:\n%s" % (label, "\n".join(bad[:20])))
        return out


def serve_env(workdir, extra):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(SCRUB_PREFIXES) or k in SCRUB_NAMES
                   or k.lower().endswith("_proxy"))}
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    san = "log_path=%s" % (workdir / "sanitizer")
    env["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS", ""), san) if o)
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:" + san
    for k, v in (extra or {}).items():
        if k == "ASAN_OPTIONS":
            env[k] = "%s:%s" % (v, env[k])
        elif v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


@pytest.fixture
def serve(modelfs_bin, hub, tmp_path):
    """serve(config_text, *, cache_dir=None, extra_args=(), env=None,
    expect_fail=False) -> Server; stopped and checked in teardown."""
    servers = []

    def start(config_text, *, cache_dir=None, extra_args=(), env=None, expect_fail=False):
        workdir = (tmp_path / ("serve%d" % (len(servers) + 1))).resolve()
        s = Server(modelfs_bin, workdir, config_text, cache_dir, extra_args, None)
        s.env = serve_env(workdir, env)
        servers.append(s)
        return s.start(expect_fail)

    yield start
    problems = []
    for s in servers:
        problems += s.problems()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


TINY = {"checkpoints": {
    "tiny": hf("org/tiny", file="model.safetensors"),
    "tiny-config": hf("org/tiny", file="config.json"),
    "tiny-folder": hf("org/tiny", include=["transformer/*"]),
    "data": hf("org/data", repo_type="dataset", file="data/train.parquet"),
}}


def hub_requests_total(hub):
    return len(hub.requests())


def no_secrets(resp):
    """No token and no X-Xet-* header in a response."""
    text = "\n".join("%s: %s" % kv for kv in resp.headers.items())
    assert GOOD not in text and GOOD.encode() not in resp.body
    assert not any(k.lower().startswith("x-xet") for k in resp.headers.keys())


# ---------------------------------------------------------------------------
# /resolve/: every header and byte

def test_resolve_head_get_and_ranges(hub, serve):
    """HEAD and GET of an LFS file, a regular one, a repo-folder file and a
    dataset file: the Hub's headers (X-Repo-Commit, ETag = sha256 or git blob
    id, X-Linked-* on LFS files, Content-Length, Accept-Ranges), exact bytes;
    a single Range is 206 with an exact Content-Range (first byte, last byte,
    suffix, open end, past-EOF end), a start past EOF is 416 "bytes */N", a
    multi-range is the whole file with 200; main, the commit and the entry's
    revision name one commit, another revision is RevisionNotFound; missing
    files and repos are the Hub's JSON errors; the server's HF_TOKEN is never
    in an answer and no X-Xet-* header is sent."""
    s = serve(hf_conf(hub, TINY), env={"HF_TOKEN": GOOD})
    sha = commit_sha(hub, "org/tiny")
    cases = [("/org/tiny/resolve/main/", "org/tiny", "model.safetensors"),
             ("/org/tiny/resolve/main/", "org/tiny", "config.json"),
             ("/org/tiny/resolve/main/", "org/tiny",
              "transformer/diffusion_pytorch_model.safetensors"),
             ("/datasets/org/data/resolve/main/", "datasets/org/data", "data/train.parquet")]
    for prefix, repo, path in cases:
        data, info = fixture(hub, repo, path)
        commit = commit_sha(hub, repo)
        etag = '"%s"' % (info["sha256"] if info["lfs"] else info["git_sha1"])
        for method in ("HEAD", "GET"):
            r = s.get(prefix + path, method=method)
            assert r.status == 200, (path, r.status, r.body)
            assert r.header("X-Repo-Commit") == commit
            assert r.header("ETag") == etag
            assert r.header("Content-Length") == str(len(data))
            assert r.header("Accept-Ranges") == "bytes"
            if info["lfs"]:
                assert r.header("X-Linked-Size") == str(len(data))
                assert r.header("X-Linked-Etag") == etag
            else:
                assert r.header("X-Linked-Size") is None
            assert r.body == (data if method == "GET" else b"")
            no_secrets(r)
        n = len(data)
        for rng, first, last in (("bytes=0-0", 0, 0), ("bytes=%d-%d" % (n - 1, n - 1), n - 1, n - 1),
                                 ("bytes=-7", n - 7, n - 1), ("bytes=5-", 5, n - 1),
                                 ("bytes=3-%d" % (n + 100), 3, n - 1),
                                 ("bytes=%d-%d" % (n // 3, n // 2), n // 3, n // 2)):
            r = s.get(prefix + path, headers={"Range": rng})
            assert r.status == 206, (path, rng, r.status)
            assert r.header("Content-Range") == "bytes %d-%d/%d" % (first, last, n)
            assert r.header("Content-Length") == str(last - first + 1)
            assert r.body == data[first:last + 1]
        r = s.get(prefix + path, headers={"Range": "bytes=%d-" % n})
        assert r.status == 416 and r.header("Content-Range") == "bytes */%d" % n
        r = s.get(prefix + path, headers={"Range": "bytes=0-1,4-5"})
        assert r.status == 200 and r.body == data and r.header("Content-Range") is None
    # revisions: main, the commit and a configured name are one commit
    data, _ = fixture(hub, "org/tiny", "config.json")
    for rev in ("main", sha, urllib.parse.quote(sha)):
        r = s.get("/org/tiny/resolve/%s/config.json" % rev)
        assert r.status == 200 and r.body == data and r.header("X-Repo-Commit") == sha
    for target, status, code in (
            ("/org/tiny/resolve/dev/config.json", 404, "RevisionNotFound"),
            ("/org/tiny/resolve/refs%2Fpr%2F1/config.json", 404, "RevisionNotFound"),
            ("/org/tiny/resolve/main/README.md", 404, "EntryNotFound"),
            ("/org/tiny/resolve/main/onnx/model.onnx", 404, "EntryNotFound"),
            ("/org/other/resolve/main/config.json", 404, "RepoNotFound"),
            ("/datasets/org/tiny/resolve/main/config.json", 404, "RepoNotFound"),
            ("/org%2Ftiny/resolve/main/config.json", 400, None),
            ("/org/tiny/resolve/main/%2e%2e/%2e%2e/etc/passwd", 400, None),
            ("/org/tiny/resolve/main/transformer/../config.json", 400, None)):
        r = s.get(target)
        assert r.status == status, (target, r.status)
        assert r.header("X-Error-Code") == code, target
        assert "error" in json.loads(r.body), target
        if code == "EntryNotFound":
            assert r.header("X-Repo-Commit") == sha
    r = s.get("/org/tiny/resolve/main/config.json", method="POST", body=b"x")
    assert r.status == 405
    # a client's Authorization goes nowhere: the answer is the same
    before = hub_requests_total(hub)
    r = s.get("/org/tiny/resolve/main/config.json",
              headers={"Authorization": "Bearer hf_clientTOKEN000000000000000000000"})
    assert r.status == 200 and r.body == data
    assert hub_requests_total(hub) == before
    # the server's own token reached the Hub, never the CDN
    assert any(e["authorization"] for e in hub.requests(server="hf"))
    assert not any(e["leak"] or e["authorization"] for e in hub.requests(server="hfcdn"))
    assert GOOD not in s.log() and GOOD not in s.stderr


def test_prefix_and_revision_pinned_by_the_config(hub, serve):
    """--prefix /huggingface serves under it only; an entry pinned to a tag
    (v1.0) answers for the tag, main and its commit; keep-alive holds."""
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json",
                                                 revision="v1.0")}})
    s = serve(text, extra_args=["--prefix", "/huggingface/"])
    data, _ = fixture(hub, "org/tiny", "config.json")
    sha = commit_sha(hub, "org/tiny")
    for rev in ("v1.0", "main", sha):
        r = s.get("/huggingface/org/tiny/resolve/%s/config.json" % rev)
        assert r.status == 200 and r.body == data and r.header("X-Repo-Commit") == sha
    assert s.get("/org/tiny/resolve/main/config.json").status == 404
    assert s.get("/huggingfaceX/org/tiny/resolve/main/config.json").status == 404
    # two requests on one connection
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/huggingface/org/tiny/resolve/main/config.json")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == data
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# /api/

def test_api_model_info_and_tree_pages(hub, serve):
    """/api/models/{repo}[/revision/{rev}] gives the pinned sha and the
    configured files as siblings (with blobs=true: size, blobId, lfs as the
    Hub gives them); /tree/{rev}[/{path}] lists them with folders, each
    entry equal to the Hub's own, in pages joined by an absolute Link
    header; a path that is not there is EntryNotFound."""
    s = serve(hf_conf(hub, TINY), env={"MODELFS_SERVE_TREE_PAGE": 2})
    sha = commit_sha(hub, "org/tiny")
    kept = ["config.json", "model.safetensors", "transformer/config.json",
            "transformer/diffusion_pytorch_model.safetensors"]
    hub_info = json.loads(fetch(hub.base("hf") + "/api/models/org/tiny?blobs=true").body)
    hub_sib = {x["rfilename"]: x for x in hub_info["siblings"]}
    for target in ("/api/models/org/tiny", "/api/models/org/tiny/revision/main",
                   "/api/models/org/tiny/revision/" + sha):
        r = s.get(target)
        assert r.status == 200 and r.header("X-Repo-Commit") == sha
        info = json.loads(r.body)
        assert info["id"] == "org/tiny" and info["sha"] == sha
        assert [x["rfilename"] for x in info["siblings"]] == kept
    info = json.loads(s.get("/api/models/org/tiny?blobs=true").body)
    for x in info["siblings"]:
        assert x == hub_sib[x["rfilename"]], x
    r = s.get("/api/models/org/tiny/revision/dev")
    assert r.status == 404 and r.header("X-Error-Code") == "RevisionNotFound"
    r = s.get("/api/models/org/nothere")
    assert r.status == 404 and r.header("X-Error-Code") == "RepoNotFound"
    info = json.loads(s.get("/api/datasets/org/data").body)
    assert [x["rfilename"] for x in info["siblings"]] == ["data/train.parquet"]

    def pages(base_url, path):
        out, url, n = [], base_url + path, 0
        while url:
            r = fetch(url)
            assert r.status == 200, (url, r.status, r.body)
            out += json.loads(r.body)
            link = r.header("Link")
            url = link[1:link.index(">")] if link else None
            n += 1
        return out, n

    mine, npages = pages(s.url(""), "/api/models/org/tiny/tree/main?recursive=true&expand=false")
    assert npages == 3      # 5 entries, 2 a page
    hubs, _ = pages(hub.base("hf"), "/api/models/org/tiny/tree/main?recursive=true")
    want = [e for e in hubs if e["path"] in kept] + [
        {"type": "directory", "path": "transformer"}]
    assert [e["path"] for e in mine] == sorted(e["path"] for e in want)
    # xetHash is left out on purpose: a client seeing it would go to Xet.
    by_path = {e["path"]: {k: v for k, v in e.items() if k != "xetHash"} for e in hubs}
    for e in mine:
        if e["type"] == "file":
            assert e == by_path[e["path"]], e
        else:
            assert e["type"] == "directory" and e["size"] == 0 and len(e["oid"]) == 40
    top, _ = pages(s.url(""), "/api/models/org/tiny/tree/main")
    assert [e["path"] for e in top] == ["config.json", "model.safetensors", "transformer"]
    sub, _ = pages(s.url(""), "/api/models/org/tiny/tree/" + sha + "/transformer")
    assert [e["path"] for e in sub] == ["transformer/config.json",
                                        "transformer/diffusion_pytorch_model.safetensors"]
    r = s.get("/api/models/org/tiny/tree/main/onnx")
    assert r.status == 404 and r.header("X-Error-Code") == "EntryNotFound"
    assert s.get("/api/models/org/tiny/tree/main?cursor=zz").status == 400


# ---------------------------------------------------------------------------
# the official JS client

def test_official_js_client_downloads_through_serve(hub, serve):
    """@huggingface/hub, with the server as its hubUrl: listFiles across
    pages, fileDownloadInfo (a bytes=0-0 GET) and downloadFile read exact
    sizes, etags and bytes; a missing file is null, another revision an
    error."""
    why = js_ready()
    if why:
        pytest.skip(why)
    s = serve(hf_conf(hub, TINY), env={"MODELFS_SERVE_TREE_PAGE": 3})
    paths = ["model.safetensors", "config.json",
             "transformer/diffusion_pytorch_model.safetensors"]
    r = subprocess.run(["node", str(JS / "check_serve.mjs"), s.url(""), "org/tiny", *paths],
                       capture_output=True, text=True, timeout=120, cwd=str(JS))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    listed = {e["path"]: e for e in out["list"]}
    assert set(listed) == {"config.json", "model.safetensors", "transformer",
                           "transformer/config.json",
                           "transformer/diffusion_pytorch_model.safetensors"}
    for path in paths:
        data, info = fixture(hub, "org/tiny", path)
        assert listed[path]["size"] == len(data) and listed[path]["oid"] == info["git_sha1"]
        got = out["info:" + path]
        assert got == {"size": len(data), "xet": False,
                       "etag": '"%s"' % (info["sha256"] if info["lfs"] else info["git_sha1"])}
        assert out["download:" + path] == {"size": len(data),
                                           "sha256": hashlib.sha256(data).hexdigest()}
    assert out["info:missing"] is None
    assert out["download:dev"].get("status") == 404


# ---------------------------------------------------------------------------
# the cache

def add_big(hub, size, seed=21):
    hub.control("POST", "hf/repos", {"org/big": {"commits": [
        {"big.bin": {"kind": "raw", "size": size, "seed": seed}}]}}, server="hf")
    return fixture(hub, "org/big", "big.bin")


def test_second_download_asks_nothing_of_the_hub(hub, serve):
    """A file downloaded once is served again from the cache: the second
    download (and a Range of it) makes no request to any server of the hub."""
    data, _ = add_big(hub, 3 * MiB + 17)
    s = serve(hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}}))
    r = s.get("/org/big/resolve/main/big.bin")
    assert r.status == 200 and r.body == data
    assert data_requests(hub, "org/big/big.bin")
    before = hub_requests_total(hub)
    r = s.get("/org/big/resolve/main/big.bin")
    assert r.status == 200 and r.body == data
    r = s.get("/org/big/resolve/main/big.bin", headers={"Range": "bytes=1000-2000000"})
    assert r.status == 206 and r.body == data[1000:2000001]
    assert hub_requests_total(hub) == before


def test_eight_cold_clients_fetch_each_block_once(hub, serve):
    """8 clients at once on one cold 8-block file all read exact bytes, and
    the hub sends each block once (single flight through the engine)."""
    data, _ = add_big(hub, 8 * MiB, seed=22)
    s = serve(hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}}))
    results = [None] * 8

    def client(i):
        results[i] = s.get("/org/big/resolve/main/big.bin", timeout=120)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for r in results:
        assert r is not None and r.status == 200 and r.body == data
    ranges = [e["range"] for e in data_requests(hub, "org/big/big.bin")]
    assert len(ranges) == len(set(ranges)) == 8, ranges
    assert sum(e["bytes"] for e in data_requests(hub, "org/big/big.bin")) == len(data)


def test_memory_does_not_grow_with_the_file(hub, serve):
    """A cold 48 MiB download through serve: the server's RSS stays far
    below the file's size while the client reads slowly (the body is
    streamed chunk by chunk, never held whole)."""
    size = 48 * MiB
    data, _ = add_big(hub, size, seed=23)
    s = serve(hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}},
                      block_size="4M"),
              env={"ASAN_OPTIONS": "quarantine_size_mb=4"})
    base = rss_kib(s.proc.pid)
    peak = base
    h = hashlib.sha256()
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    try:
        conn.request("GET", "/org/big/resolve/main/big.bin")
        resp = conn.getresponse()
        assert resp.status == 200
        got = 0
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            peak = max(peak, rss_kib(s.proc.pid))
    finally:
        conn.close()
    assert got == size and h.hexdigest() == hashlib.sha256(data).hexdigest()
    grew = (peak - base) * 1024
    print("rss base %d KiB, peak %d KiB, grew %.1f MiB for a %d MiB file"
          % (base, peak, grew / MiB, size // MiB))
    assert grew < size / 2, "RSS grew by %.1f MiB" % (grew / MiB)


# ---------------------------------------------------------------------------
# life cycle

def test_sigterm_stops_it_mid_download_within_10s(hub, serve):
    """SIGTERM while a client is mid-way through a slow cold download: the
    server cuts the body, stops the engine and closes the cache within
    10 s, exit 0; the client sees a short body, not a hang."""
    data, _ = add_big(hub, 6 * MiB, seed=24)
    hub.faults(server="hfcdn", path="org/big/big.bin", rate_bps=256 << 10)
    s = serve(hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}}))
    outcome = {}

    def client():
        try:
            outcome["resp"] = s.get("/org/big/resolve/main/big.bin", timeout=60)
        except Exception as e:          # noqa: BLE001 (a cut body is the point)
            outcome["error"] = e

    t = threading.Thread(target=client)
    t.start()
    wait_for(lambda: data_requests(hub, "org/big/big.bin"), what="a block fetch to start")
    time.sleep(0.5)
    took = s.stop()
    t.join(30)
    assert not t.is_alive()
    assert s.proc.returncode == 0, s.stderr
    assert took < STOP_TIMEOUT, "took %.1f s" % took
    assert "error" in outcome or len(outcome["resp"].body) < len(data)
    assert "event=serve_stopping signal=SIGTERM" in s.log()
    # the cache was closed: another command can open it at once
    r = run([s.cmd[0], "status", "--cache-dir", s.cache_dir, "--config", s.config_path],
            env=s.env, timeout=60)
    assert r.returncode == 0, r.stderr


def test_cache_of_a_live_mount_is_refused(hub, mount, serve):
    """serve on the cache a live mount holds says so, naming the mount, and
    exits 2 without opening the cache; the mount keeps working."""
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")}})
    m = mount(text)
    s = serve(text, cache_dir=m.cache_dir, expect_fail=True)
    assert s.proc.returncode == 2
    assert "belongs to the mount at %s" % m.path in s.stderr
    assert "one cache has one owner" in s.stderr
    data, _ = fixture(hub, "org/tiny", "config.json")
    assert (m.path / "Stable-diffusion" / "config.json").read_bytes() == data


def test_non_loopback_listen_is_refused(hub, serve, modelfs_bin, tmp_path):
    """Until client tokens are checked, serve listens on loopback only."""
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")}})
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = run([modelfs_bin, "serve", "--listen", "0.0.0.0:0", "--cache-dir", tmp_path / "cache",
             cfg], env=serve_env(tmp_path / "w", {}), timeout=30)
    assert r.returncode == 2 and "not a loopback address" in r.stderr


def test_a_mount_serves_too_sharing_its_cache(hub, mount):
    """[modelfs] serve: the mount's daemon answers the Hub's protocol on the
    same engine and cache: a file read through the mount downloads through
    serve with no request to the hub, and the other way round."""
    data, _ = add_big(hub, 3 * MiB + 17)
    tiny, _ = fixture(hub, "org/tiny", "config.json")
    port = free_port()
    text = hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin"),
                                         "c": hf("org/tiny", file="config.json")}})
    text = text.replace("[modelfs]\n", '[modelfs]\nserve = "127.0.0.1:%d"\n'
                        'serve_prefix = "/hf"\n' % port, 1)
    m = mount(text)
    assert "event=serving listen=127.0.0.1:%d prefix=/hf files=2" % port in m.log()
    base = "http://127.0.0.1:%d/hf" % port
    assert (m.path / "Stable-diffusion" / "big.bin").read_bytes() == data
    before = hub_requests_total(hub)
    r = fetch(base + "/org/big/resolve/main/big.bin")
    assert r.status == 200 and r.body == data
    assert hub_requests_total(hub) == before            # the mount's blocks
    r = fetch(base + "/org/tiny/resolve/main/config.json")
    assert r.status == 200 and r.body == tiny
    after = hub_requests_total(hub)
    assert (m.path / "Stable-diffusion" / "config.json").read_bytes() == tiny
    assert hub_requests_total(hub) == after             # serve's blocks
    m.unmount()
    with pytest.raises(OSError):
        fetch(base + "/org/big/resolve/main/big.bin", timeout=5)


def test_a_mount_refuses_to_serve_beyond_loopback(hub, mount):
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")}})
    text = text.replace("[modelfs]\n", '[modelfs]\nserve = "0.0.0.0:8080"\n', 1)
    m = mount(text, expect_fail=True)
    assert m.returncode == 2 and "only a loopback address" in m.stderr
