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
from mfs import MiB, commit_sha, config, data_requests, hf, repos, run, url_entry, wait_for
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

    def __init__(self, binary, workdir, config_text, cache_dir, extra_args, env,
                 listen="127.0.0.1"):
        self.workdir = workdir
        self.workdir.mkdir(parents=True)
        self.cache_dir = cache_dir or workdir / "cache"
        self.config_path = workdir / "config.toml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "serve.log"
        self.stderr_path = workdir / "serve.stderr"
        self.port = free_port()
        self.cmd = [str(binary), "serve", "--cache-dir", str(self.cache_dir),
                    "--listen", "%s:%d" % (listen, self.port), "--log-file", str(self.log_path),
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
    expect_fail=False, listen="127.0.0.1") -> Server; stopped and checked in
    teardown."""
    servers = []

    def start(config_text, *, cache_dir=None, extra_args=(), env=None, expect_fail=False,
              listen="127.0.0.1"):
        workdir = (tmp_path / ("serve%d" % (len(servers) + 1))).resolve()
        s = Server(modelfs_bin, workdir, config_text, cache_dir, extra_args, None, listen)
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
    """8 clients at once on one cold 8 MiB file all read exact bytes, and
    the hub sends each byte once (single flight through the engine)."""
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
    # Each byte once: the ranges asked (blocks, or runs of them) tile the file.
    ranges = sorted(tuple(map(int, e["range"].split("=")[1].split("-")))
                    for e in data_requests(hub, "org/big/big.bin"))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data) - 1, ranges
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:])), ranges
    assert sum(e["bytes"] for e in data_requests(hub, "org/big/big.bin")) == len(data)


def test_memory_does_not_grow_with_the_file(hub, serve):
    """A cold 96 MiB download through serve: the server's RSS stays far
    below the file's size while the client reads slowly (the body is
    streamed chunk by chunk, never held whole; what grows is the engine's
    own buffers, bounded whatever the file's size)."""
    size = 96 * MiB
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


def test_non_loopback_listen_needs_a_token_file(hub, serve, modelfs_bin, tmp_path):
    """Beyond loopback serve needs --token-file; without it, it refuses to
    start with a clear error (an empty or short token file too)."""
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")}})
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    env = serve_env(tmp_path / "w", {})
    base = [modelfs_bin, "serve", "--listen", "0.0.0.0:0", "--cache-dir", tmp_path / "cache"]
    r = run(base + [cfg], env=env, timeout=30)
    assert r.returncode == 2 and "not a loopback address" in r.stderr
    assert "--token-file" in r.stderr and "serve_token_file" in r.stderr
    for content, why in (("", "it is empty"), ("short\n", "too short")):
        tf = tmp_path / "tok"
        tf.write_text(content)
        r = run(base + ["--token-file", tf, cfg], env=env, timeout=30)
        assert r.returncode == 2 and why in r.stderr, r.stderr
    r = run(base + ["--token-file", tmp_path / "nothere", cfg], env=env, timeout=30)
    assert r.returncode == 2 and "cannot read the token file" in r.stderr
    # A token other users can read works, with a warning that says so.
    shared = tmp_path / "shared.token"
    shared.write_text(ACCESS + "\n")
    shared.chmod(0o644)
    s = serve(text, extra_args=["--token-file", shared], listen="0.0.0.0")
    assert "can be read by other users (mode 0644): chmod 600" in s.stderr_path.read_text()
    s.stop()


ACCESS = "mfs-serve-access-0123456789abcdef0123"


def token_file(tmp_path, value=ACCESS, name="serve.token"):
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_token_file_server_refuses_clients_without_its_token(hub, serve, tmp_path):
    """serve --token-file on 0.0.0.0 (and serve_token_file in [modelfs]):
    a client without the access token, or with another one, gets the Hub's
    401 JSON error; with it (as HF_TOKEN: Authorization: Bearer) it reads
    every file, the gated one too, without asking the hub about its token.
    The access token never reaches a log line."""
    conf = {"checkpoints": {"c": hf("org/tiny", file="config.json"),
                            "g": hf("org/gated", file="model.safetensors")}}
    data, _ = fixture(hub, "org/tiny", "config.json")
    gated, _ = fixture(hub, "org/gated", "model.safetensors")
    s = serve(hf_conf(hub, conf), listen="0.0.0.0", env={"HF_TOKEN": GOOD},
              extra_args=["--token-file", token_file(tmp_path)])
    for headers in ({}, {"Authorization": "Bearer nope-not-the-token-000000"},
                    {"Authorization": "Basic " + ACCESS}):
        for target in ("/org/tiny/resolve/main/config.json", "/api/models/org/tiny",
                       "/nothing/here", "/metrics", "/files/Stable-diffusion/config.json"):
            r = s.get(target, headers=headers)
            assert r.status == 401, (target, headers, r.status)
            assert "error" in json.loads(r.body) and r.header("X-Error-Message")
    auth = {"Authorization": "Bearer " + ACCESS}
    r = s.get("/org/tiny/resolve/main/config.json", headers=auth)
    assert r.status == 200 and r.body == data
    before = [e for e in hub.requests(server="hf", path="org/gated/*")
              if (e["headers"].get("authorization") or "").endswith(ACCESS)]
    r = s.get("/org/gated/resolve/main/model.safetensors", headers=auth)
    assert r.status == 200 and r.body == gated
    assert not before and not [e for e in hub.requests(server="hf")
                               if ACCESS in (e["headers"].get("authorization") or "")]
    s.stop()
    assert ACCESS not in s.log() and ACCESS not in s.stderr
    # the same from the config
    text = hf_conf(hub, conf).replace("[modelfs]\n", '[modelfs]\nserve_token_file = "%s"\n'
                                      % token_file(tmp_path, name="cfg.token"), 1)
    s2 = serve(text, listen="0.0.0.0", env={"HF_TOKEN": GOOD})
    assert s2.get("/org/tiny/resolve/main/config.json").status == 401
    assert s2.get("/org/tiny/resolve/main/config.json", headers=auth).status == 200


def test_gated_and_private_repos_need_a_token_the_hub_accepts(hub, serve):
    """The server's HF_TOKEN reads org/gated and org/private; a client is
    served them only when the hub accepts its own token for that repo:
    anonymous is 401 GatedRepo, a refused or unknown token 403 GatedRepo,
    even on loopback; tester's token reads exact bytes. The hub is asked
    once per (token, repo): a second request asks nothing. A public repo
    is served to anyone."""
    conf = {"checkpoints": {"g": hf("org/gated", file="model.safetensors"),
                            "p": hf("org/private", file="weights.bin"),
                            "c": hf("org/tiny", file="config.json")}}
    s = serve(hf_conf(hub, conf), env={"HF_TOKEN": GOOD})
    outsider = "hf_outsiderTOKEN0123456789abcdefghijkl"
    targets = {"org/gated": "/org/gated/resolve/main/model.safetensors",
               "org/private": "/org/private/resolve/main/weights.bin"}
    for repo, target in targets.items():
        r = s.get(target)
        assert r.status == 401 and r.header("X-Error-Code") == "GatedRepo", (repo, r.status)
        assert "error" in json.loads(r.body)
        for token in (outsider, "hf_unknownTOKEN000000000000000000000"):
            r = s.get(target, headers={"Authorization": "Bearer " + token})
            assert r.status == 403 and r.header("X-Error-Code") == "GatedRepo", (repo, token)
        # metadata and the tier routes are refused alike
        r = s.get("/api/models/" + repo)
        assert r.status == 401
    for repo, target in targets.items():
        data, _ = fixture(hub, repo, target.split("/main/")[1])
        r = s.get(target, headers={"Authorization": "Bearer " + GOOD, "Range": "bytes=0-99"})
        assert r.status == 206 and r.body == data[:100]

    def asked(token):
        return [e for e in hub.requests(server="hf", path="org/gated/*")
                if e["headers"].get("authorization") == "Bearer " + token]

    n_out, n_good = len(asked(outsider)), len(asked(GOOD))
    assert n_out == 1
    r = s.get(targets["org/gated"], headers={"Authorization": "Bearer " + outsider})
    assert r.status == 403
    r = s.get(targets["org/gated"], headers={"Authorization": "Bearer " + GOOD})
    assert r.status == 200
    assert len(asked(outsider)) == n_out and len(asked(GOOD)) == n_good
    data, _ = fixture(hub, "org/tiny", "config.json")
    for headers in ({}, {"Authorization": "Bearer " + outsider}):
        r = s.get("/org/tiny/resolve/main/config.json", headers=headers)
        assert r.status == 200 and r.body == data
    s.stop()
    assert GOOD not in s.log() and outsider not in s.log()


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
    # (serve asks the hub once whether anyone may read a repo: a 1-byte
    # probe, not a data request)
    before = len(data_requests(hub, "org/big/big.bin"))
    r = fetch(base + "/org/big/resolve/main/big.bin")
    assert r.status == 200 and r.body == data
    assert len(data_requests(hub, "org/big/big.bin")) == before     # the mount's blocks
    r = fetch(base + "/org/tiny/resolve/main/config.json")
    assert r.status == 200 and r.body == tiny
    after = len(data_requests(hub, "org/tiny/config.json"))
    assert (m.path / "Stable-diffusion" / "config.json").read_bytes() == tiny
    assert len(data_requests(hub, "org/tiny/config.json")) == after  # serve's blocks
    m.unmount()
    with pytest.raises(OSError):
        fetch(base + "/org/big/resolve/main/big.bin", timeout=5)


def test_a_mount_refuses_to_serve_beyond_loopback(hub, mount):
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")}})
    text = text.replace("[modelfs]\n", '[modelfs]\nserve = "0.0.0.0:8080"\n', 1)
    m = mount(text, expect_fail=True)
    assert m.returncode == 2 and "not a loopback address" in m.stderr
    assert "serve_token_file" in m.stderr


# ---------------------------------------------------------------------------
# hostile clients

def test_canary_token_never_leaves_the_server(hub, serve, tmp_path):
    """The server's upstream token (a canary, also the hub's valid token so
    that it is used) never appears in any answer (headers or body) or any
    log line, debug included: files, ranges, 416, errors, tree, info, the
    tier routes, a refused gated repo, a redirect-prone path."""
    conf = {"checkpoints": {"c": hf("org/tiny", file="config.json"),
                            "m": hf("org/tiny", file="model.safetensors"),
                            "g": hf("org/gated", file="model.safetensors",
                                    filename="gated.safetensors")}}
    s = serve(hf_conf(hub, conf), env={"HF_TOKEN": GOOD}, extra_args=["--debug"])
    sha = commit_sha(hub, "org/tiny")
    _, info = fixture(hub, "org/tiny", "model.safetensors")
    host = urllib.parse.urlsplit(hub.base("hf")).netloc
    targets = ["/org/tiny/resolve/main/config.json", "/org/tiny/resolve/main/model.safetensors",
               "/org/tiny/resolve/main/nothere", "/org/tiny/resolve/dev/config.json",
               "/org/gated/resolve/main/model.safetensors", "/api/models/org/tiny?blobs=true",
               "/api/models/org/tiny/tree/main?recursive=true", "/api/models/org/gated",
               "/sha256-%s/http/%s/org/tiny/resolve/%s/model.safetensors"
               % (info["sha256"], host, sha),
               "/commit-%s/http/%s/org/tiny/resolve/%s/config.json" % (sha, host, sha),
               "/org/private/resolve/main/weights.bin", "/%s" % GOOD]
    for target in targets:
        for headers in ({}, {"Range": "bytes=0-9"}, {"Range": "bytes=999999999-"},
                        {"Authorization": "Bearer hf_outsiderTOKEN0123456789abcdefghijkl"}):
            for method in ("GET", "HEAD"):
                r = s.get(target, method=method, headers=headers)
                if target.endswith(GOOD):
                    assert r.status == 404
                    continue
                no_secrets(r)
    s.stop()
    for text in (s.log(), s.stderr):
        assert GOOD not in text
    assert "event=serve_file" in s.log()       # debug lines were written


def test_traversal_is_refused(hub, serve):
    """.., %2e%2e, encoded slashes, absolute and doubled paths, NUL and
    backslashes never reach a file outside what is served: 400 or 404."""
    s = serve(hf_conf(hub, TINY))
    data, _ = fixture(hub, "org/tiny", "config.json")
    for target in ("/org/tiny/resolve/main/../../../../etc/passwd",
                   "/org/tiny/resolve/main/%2e%2e/%2e%2e/etc/passwd",
                   "/org/tiny/resolve/main/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
                   "/org/tiny/resolve/main/transformer/%2e%2e/config.json",
                   "/org/tiny/resolve/main//etc/passwd",
                   "/org/tiny/resolve/main/%2Fetc%2Fpasswd",
                   "/org/tiny/resolve/main/..%5c..%5cetc%5cpasswd",
                   "/org/tiny/resolve/main/config.json%00.txt",
                   "//etc/passwd", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                   "/org/tiny/resolve/%2e%2e/config.json",
                   "/org/../org/tiny/resolve/main/config.json",
                   "/api/models/org/tiny/tree/main/%2e%2e",
                   "/api/models/org/tiny/tree/main/../../..",
                   "/sha256-%s/http/x/../../etc/passwd" % ("0" * 64)):
        r = s.get(target)
        assert r.status in (400, 404), (target, r.status)
        assert b"root:" not in r.body and r.body != data
    raw = raw_request(s.port, b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 404"), raw[:80]
    raw = raw_request(s.port, b"GET http://x/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"root:" not in raw and not raw.startswith(b"HTTP/1.1 200")


def raw_request(port, data, timeout=10):
    """Send bytes as they are; what came back before close or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sk:
        try:
            sk.sendall(data)
            sk.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while True:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
        return out


def malformed(i):
    """Request number i of a mix of broken requests."""
    path = b"/org/tiny/resolve/main/config.json"
    kinds = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET " + path + b" HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\n\r\n",                         # no Host
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=abc\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=5-1\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=-0\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=99999999999999999999999-\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0,1-1,2-2,3-3,4-4\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nRange: " + b"bytes=0-1," * 2000 + b"\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",
        b"GET /" + b"a/" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        b"GET " + path + b"\x00\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET %zz%ff%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/models/org/tiny/tree/main?cursor=-1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/models/org/tiny/tree/main?cursor=99999999999999999999999 HTTP/1.1\r\n"
        b"Host: x\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n\r\n",
        b"\r\n\r\n\r\n",
        bytes(range(256)) * 4,
    ]
    return kinds[i % len(kinds)]


def test_malformed_requests_and_slow_clients_leave_it_serving(hub, serve):
    """1,000 malformed requests (bad lines, ranges, versions, huge headers
    and targets, bytes) each get a 4xx/2xx answer or a closed connection,
    never a 5xx; then 64 slow clients hold connections open (a header
    byte at a time, a reader that never reads) while other clients are
    served at once (connections are bounded well above 64 and each has an
    idle timeout, SERVE_IDLE_TIMEOUT_SEC); the server logs no error and
    stops within 10 s with them still open."""
    s = serve(hf_conf(hub, TINY))
    data, _ = fixture(hub, "org/tiny", "config.json")
    statuses = {}
    lock = threading.Lock()

    def batch(start):
        for i in range(start, 1000, 8):
            out = raw_request(s.port, malformed(i))
            st = out[9:12].decode(errors="replace") if out.startswith(b"HTTP/1.") else "closed"
            with lock:
                statuses.setdefault(st, []).append(i)

    threads = [threading.Thread(target=batch, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sum(len(v) for v in statuses.values()) == 1000
    # 505 is the answer to HTTP/9.9; no other 5xx
    assert not [st for st in statuses if st.startswith("5") and st != "505"], \
        {k: len(v) for k, v in statuses.items()}
    print({k: len(v) for k, v in statuses.items()})
    assert s.get("/org/tiny/resolve/main/config.json").body == data

    slow = []
    try:
        for i in range(64):
            sk = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            if i % 2:
                sk.sendall(b"GET /org/tiny/resolve/main/config.json HTTP/1.1\r\nHost: x\r\n")
            else:   # a body it never reads
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sk.sendall(b"GET /org/tiny/resolve/main/model.safetensors HTTP/1.1\r\n"
                           b"Host: x\r\n\r\n")
            slow.append(sk)
        t0 = time.monotonic()
        for _ in range(5):
            r = s.get("/org/tiny/resolve/main/config.json", timeout=10)
            assert r.status == 200 and r.body == data
        assert time.monotonic() - t0 < 10
        for sk in slow[1::2]:
            sk.sendall(b"X-Slow: 1\r\n")            # still trickling
        assert s.get("/api/models/org/tiny").status == 200
        assert s.stop() < STOP_TIMEOUT
        assert s.proc.returncode == 0
    finally:
        for sk in slow:
            sk.close()


# ---------------------------------------------------------------------------
# what it served: status and /metrics

def parse_metrics(text):
    """{'name{labels}': value} of a Prometheus text page; every family has
    HELP and TYPE lines, every sample a number."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line.startswith("#") or not line.strip():
            continue
        else:
            key, value = line.rsplit(" ", 1)
            assert key.split("{")[0] in typed, line
            out[key] = float(value)
    return out


def test_status_and_metrics_count_what_was_served(hub, serve, modelfs_bin, mount):
    """A cold download counts its bytes as from the origin (those that
    waited for a download; readahead may have brought later ones in
    first), the same again all as from the cache; a 404 counts as 4xx. GET /metrics answers the
    Prometheus text format (requests, bytes by cache and origin, cache
    size and limit, downloads, per-source fetch latency and errors);
    `modelfs status` (text and --json) shows the serve counters and
    `status --metrics` the same page, through the control socket; a plain
    mount answers --metrics too, without serve counters."""
    size = 3 * MiB + 17
    data, _ = add_big(hub, size)
    s = serve(hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}}))
    assert s.get("/org/big/resolve/main/big.bin").body == data
    cold = parse_metrics(s.get("/metrics").body.decode())
    origin = cold['modelfs_serve_bytes_total{from="origin"}']
    assert origin >= MiB and origin + cold['modelfs_serve_bytes_total{from="cache"}'] == size
    assert s.get("/org/big/resolve/main/big.bin").body == data
    assert s.get("/org/big/resolve/main/nothere").status == 404
    r = s.get("/metrics")
    assert r.status == 200 and r.header("Content-Type").startswith("text/plain; version=0.0.4")
    m = parse_metrics(r.body.decode())
    assert m['modelfs_serve_bytes_total{from="origin"}'] == origin
    assert m['modelfs_serve_bytes_total{from="cache"}'] == 2 * size - origin
    assert m['modelfs_serve_requests_total{code="2xx"}'] >= 2
    assert m['modelfs_serve_requests_total{code="4xx"}'] == 2     # and the start's probe
    assert m['modelfs_downloaded_bytes_total{from="origin"}'] == size
    assert m["modelfs_cache_used_bytes"] >= size
    assert m['modelfs_fetches{source="huggingface"}'] >= 1
    assert m['modelfs_fetch_errors{source="huggingface"}'] == 0
    assert 'modelfs_fetch_seconds{source="huggingface"}' in m
    base = [modelfs_bin, "status", "--cache-dir", s.cache_dir]
    r = run(base + ["--json"], env=s.env, timeout=60)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["serve"]["bytes_from_cache"] == 2 * size - origin
    assert st["serve"]["bytes_from_origin"] == origin
    assert st["mounted"] is False and st["pid"]
    assert st["serve"]["responses"]["4xx"] == 2 and st["serve"]["listen"].startswith("127.0.0.1:")
    r = run(base, env=s.env, timeout=60)
    assert r.returncode == 0 and "modelfs serve on 127.0.0.1:" in r.stdout, r.stdout
    assert "served: " in r.stdout and "from the cache" in r.stdout
    r = run(base + ["--metrics"], env=s.env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert parse_metrics(r.stdout)['modelfs_serve_bytes_total{from="cache"}'] == 2 * size - origin
    # a plain mount, through its control socket
    # (a URL written with a ${VAR} is counted as a URL, not "unknown")
    hub.add_file("var.bin", 1000)
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")},
                         "vae": {"v": '"${ORIGIN}/files/var.bin"'}})
    mnt = mount(text, env={"ORIGIN": hub.base()})
    tiny, _ = fixture(hub, "org/tiny", "config.json")
    assert (mnt.path / "Stable-diffusion" / "config.json").read_bytes() == tiny
    assert len((mnt.path / "VAE" / "var.bin").read_bytes()) == 1000
    r = run([modelfs_bin, "status", "--metrics", "--cache-dir", mnt.cache_dir], timeout=60)
    assert r.returncode == 0, r.stderr
    pm = parse_metrics(r.stdout)
    assert pm['modelfs_downloaded_bytes_total{from="origin"}'] == len(tiny) + 1000
    assert pm['modelfs_fetches{source="url"}'] >= 1
    assert not any('source="unknown"' in k for k in pm), pm
    assert not any(k.startswith("modelfs_serve_") for k in pm)


# ---------------------------------------------------------------------------
# /files/: every configured file, as a mirror

def test_files_route_serves_every_source_and_is_a_mirror(hub, serve, mount, tmp_path):
    """/files/{mount path} answers HEAD and Range GETs for a plain URL, a
    CivitAI, an S3 and a Hugging Face entry with exact bytes; a file whose
    source took the server's credentials (CivitAI with a token, S3) goes
    only to holders of the access token; traversal is refused; and a node
    whose URL entry names the box as a mirror, with mirror_token_file,
    reads through it when the origin fails, its token sent to the box
    only."""
    from test_civitai import Civ, GOOD_KEY, civ
    from test_s3 import CREDS, s3_entry, add as s3_add
    url_path, url_sha = hub.add_file("mirrored.bin", 2 * MiB + 5, seed=41)
    s3_path, _ = s3_add(hub, "sdxl/served.bin", MiB + 9, seed=42)
    cv = Civ(hub)
    tiny, _ = fixture(hub, "org/tiny", "config.json")
    entries = {"checkpoints": {
        "u": url_entry(hub.url("mirrored.bin"), sha256=url_sha),
        "c": hf("org/tiny", file="config.json"),
        "s": s3_entry(hub, key="sdxl/served.bin", filename="served.bin")},
        "lora": {"cv": civ(version_id=1001)}}
    text = config(entries, settings='hf_endpoint = "%s"\ncivitai_endpoint = "%s"' % (
        hub.base("hf"), hub.base("civitai")))
    s = serve(text, env=dict(CREDS, CIVITAI_TOKEN=GOOD_KEY, HF_TOKEN=GOOD),
              extra_args=["--token-file", token_file(tmp_path)])
    auth = {"Authorization": "Bearer " + ACCESS}
    want = {"Stable-diffusion/mirrored.bin": Path(url_path).read_bytes(),
            "Stable-diffusion/config.json": tiny,
            "Stable-diffusion/served.bin": Path(s3_path).read_bytes(),
            "Lora/detailTweaker_v2.safetensors": Path(cv.src["v2"]).read_bytes()}
    for path, data in want.items():
        target = "/files/" + urllib.parse.quote(path)
        r = s.get(target, method="HEAD", headers=auth)
        assert r.status == 200 and r.header("Content-Length") == str(len(data)), (path, r.status)
        assert r.header("Accept-Ranges") == "bytes"
        a, b = len(data) // 4, len(data) // 2
        r = s.get(target, headers=dict(auth, Range="bytes=%d-%d" % (a, b)))
        assert r.status == 206, (path, r.status, r.body[:200])
        assert r.header("Content-Range") == "bytes %d-%d/%d" % (a, b, len(data))
        assert r.body == data[a:b + 1]
        assert s.get(target, headers=auth).body == data
        no_secrets(r)
    assert s.get("/files/Stable-diffusion/nothere.bin", headers=auth).status == 404
    for bad in ("/files/../config.toml", "/files/%2e%2e/%2e%2e/etc/passwd",
                "/files/Stable-diffusion/%2e%2e/Lora/detailTweaker_v2.safetensors", "/files/"):
        assert s.get(bad, headers=auth).status == 400, bad
    s.stop()

    # on loopback without an access token: public sources only
    s2 = serve(text, env=dict(CREDS, CIVITAI_TOKEN=GOOD_KEY, HF_TOKEN=GOOD))
    assert s2.get("/files/Stable-diffusion/mirrored.bin").status == 200
    assert s2.get("/files/Stable-diffusion/config.json").status == 200
    for path in ("Stable-diffusion/served.bin", "Lora/detailTweaker_v2.safetensors"):
        r = s2.get("/files/" + path)
        assert r.status == 403 and "error" in json.loads(r.body), path
    s2.stop()

    # A ${VAR} naming only the host is no credential; one that may be a
    # whole (presigned) URL is, and so is a query.
    for name in ("host.bin", "whole.bin", "signed.bin"):
        hub.add_file(name, 1000)
    s3 = serve(config({"vae": {"h": '"${ORIGIN}/files/host.bin"', "w": '"${WHOLE}"',
                               "q": '"%s?X-Amz-Signature=abc"' % hub.url("signed.bin")}}),
               env={"ORIGIN": hub.base(), "WHOLE": hub.url("whole.bin")})
    assert s3.get("/files/VAE/host.bin").status == 200
    assert s3.get("/files/VAE/whole.bin").status == 403
    assert s3.get("/files/VAE/signed.bin").status == 403
    s3.stop()

    # the box as a node's mirror: the origin fails, the mirror answers
    box = serve(config({"checkpoints": {"u": url_entry(hub.url("mirrored.bin"), sha256=url_sha)}}),
                extra_args=["--token-file", token_file(tmp_path, name="box.token")])
    mirror = box.url("/files/Stable-diffusion/mirrored.bin")
    # the box has the bytes before the origin goes away
    assert box.get("/files/Stable-diffusion/mirrored.bin",
                   headers=auth).body == want["Stable-diffusion/mirrored.bin"]
    node_tf = token_file(tmp_path, name="node.token")
    node = mount(config({"checkpoints": {"u": "{ url = \"%s\", sha256 = \"%s\", mirrors = [\"%s\"], "
                                               "mirror_token_file = \"%s\" }"
                                               % (hub.url("mirrored.bin"), url_sha, mirror,
                                                  node_tf)}},
                        settings="retry_timeout = 1"))
    hub.faults(server="origin", path="mirrored.bin", down=True)   # after the resolution
    got = (node.path / "Stable-diffusion" / "mirrored.bin").read_bytes()
    assert got == want["Stable-diffusion/mirrored.bin"]
    assert not any(ACCESS in (e["headers"].get("authorization") or "") for e in hub.requests())
    assert ACCESS not in node.log()


# ---------------------------------------------------------------------------
# --daemon

def test_daemon_returns_once_listening_and_stops_on_sigterm(hub, modelfs_bin, tmp_path):
    """serve --daemon exits 0 once the server listens (the first request
    succeeds at once), logs to CACHE_DIR/modelfs.log, is found by `status`
    (its pid), and stops on SIGTERM; a start that fails (the port taken)
    exits non-zero with the reason on the terminal."""
    text = hf_conf(hub, {"checkpoints": {"c": hf("org/tiny", file="config.json")}})
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    cache = tmp_path / "cache"
    env = serve_env(tmp_path / "w", {})
    port = free_port()
    r = run([modelfs_bin, "serve", "--daemon", "--listen", "127.0.0.1:%d" % port,
             "--cache-dir", cache, cfg], env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    pid = None
    try:
        data, _ = fixture(hub, "org/tiny", "config.json")
        got = fetch("http://127.0.0.1:%d/org/tiny/resolve/main/config.json" % port, timeout=10)
        assert got.status == 200 and got.body == data
        st = run([modelfs_bin, "status", "--json", "--cache-dir", cache], env=env, timeout=60)
        assert st.returncode == 0, st.stderr
        pid = json.loads(st.stdout)["pid"]
        assert pid and os.path.exists("/proc/%d" % pid)
        # a second one on the same port fails, and says why
        r2 = run([modelfs_bin, "serve", "--daemon", "--listen", "127.0.0.1:%d" % port,
                  "--cache-dir", tmp_path / "cache2", cfg], env=env, timeout=60)
        assert r2.returncode != 0 and "cannot serve" in r2.stderr, r2.stderr
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists("/proc/%d" % pid), timeout=STOP_TIMEOUT,
                     what="the daemon to exit")
    log = (cache / "modelfs.log").read_text()
    assert "event=serve_daemon" in log and "event=serve_stopping signal=SIGTERM" in log
    for path in [cache / "modelfs.log", *(tmp_path / "w").glob("sanitizer*")]:
        assert not SANITIZER_RE.search(path.read_text(errors="replace")), path


def test_a_verified_file_goes_out_from_the_data_file(hub, serve, modelfs_bin):
    """Once a file is verified whole, its bodies (whole or a range) are sent
    from the cache's data file (sendfile), exact, counted as from the cache;
    the blocks held for a send are let go when it ends: the file can then
    be evicted whole through the server's control socket."""
    size = 5 * MiB + 3
    data, _ = add_big(hub, size, seed=43)
    s = serve(hf_conf(hub, {"checkpoints": {"big": hf("org/big", file="big.bin")}}),
              extra_args=["--debug"])
    assert s.get("/org/big/resolve/main/big.bin").body == data
    assert "body=engine" in s.log() and "body=data_file" not in s.log()
    base = [modelfs_bin, "status", "--json", "--cache-dir", s.cache_dir]

    def state():
        st = json.loads(run(base, env=s.env, timeout=60).stdout)
        return st["files"][0]["state"]

    wait_for(lambda: state() == "verified", timeout=30, what="the file to be verified")
    before = parse_metrics(s.get("/metrics").body.decode())
    n_hub = hub_requests_total(hub)
    for _ in range(2):
        assert s.get("/org/big/resolve/main/big.bin").body == data
    r = s.get("/org/big/resolve/main/big.bin", headers={"Range": "bytes=1048570-3145740"})
    assert r.status == 206 and r.body == data[1048570:3145741]
    assert r.header("Content-Range") == "bytes 1048570-3145740/%d" % size
    assert s.get("/org/big/resolve/main/big.bin", method="HEAD").body == b""
    after = parse_metrics(s.get("/metrics").body.decode())
    sent = 2 * size + (3145741 - 1048570)
    key = 'modelfs_serve_bytes_total{from="cache"}'
    assert after[key] - before[key] == sent
    assert hub_requests_total(hub) == n_hub
    assert s.log().count("body=data_file") == 3
    r = run([modelfs_bin, "evict", "--force", "--json", "--cache-dir", s.cache_dir,
             "Stable-diffusion/big.bin"], env=s.env, timeout=60)
    assert r.returncode == 0, r.stderr
    st = json.loads(run(base, env=s.env, timeout=60).stdout)
    assert st["files"][0]["cached"] == 0, st["files"][0]


def test_a_node_uses_the_box_as_its_hf_endpoint_with_the_access_token(hub, serve, mount,
                                                                      tmp_path):
    """A node whose hf_endpoint is a box serving beyond loopback, with the
    box's access token as its HF_TOKEN, mounts and reads exact bytes (the
    gated repo too), and its log never shows the token."""
    conf = {"checkpoints": {"c": hf("org/tiny", file="config.json"),
                            "g": hf("org/gated", file="model.safetensors")}}
    box = serve(hf_conf(hub, conf), listen="0.0.0.0", env={"HF_TOKEN": GOOD},
                extra_args=["--token-file", token_file(tmp_path)])
    tiny, _ = fixture(hub, "org/tiny", "config.json")
    gated, _ = fixture(hub, "org/gated", "model.safetensors")
    node_conf = config(conf, settings='hf_endpoint = "%s"' % box.url(""))
    node = mount(node_conf, env={"HF_TOKEN": ACCESS})
    assert (node.path / "Stable-diffusion" / "config.json").read_bytes() == tiny
    assert (node.path / "Stable-diffusion" / "model.safetensors").read_bytes() == gated
    assert ACCESS not in node.log()


def test_while_the_hub_is_away_a_public_repo_stays_served(hub, serve):
    """Access answers expire (here after 200 ms); while the Hub is down a
    repo it once gave anyone is still served from the cache, and a gated
    one cannot be checked: 503, never the bytes."""
    conf = {"checkpoints": {"c": hf("org/tiny", file="config.json"),
                            "g": hf("org/gated", file="model.safetensors")}}
    s = serve(hf_conf(hub, conf), env={"HF_TOKEN": GOOD, "MODELFS_SERVE_ACCESS_TTL_MS": 200})
    s.allowed_errors.append("event=serve_access_unknown")
    data, _ = fixture(hub, "org/tiny", "config.json")
    auth = {"Authorization": "Bearer " + GOOD}
    assert s.get("/org/tiny/resolve/main/config.json").body == data
    assert s.get("/org/gated/resolve/main/model.safetensors", headers=auth).status == 200
    time.sleep(0.5)
    hub.faults(server="hf", down=True)
    r = s.get("/org/tiny/resolve/main/config.json", timeout=60)
    assert r.status == 200 and r.body == data
    r = s.get("/org/gated/resolve/main/model.safetensors", headers=auth, timeout=60)
    assert r.status == 503 and "error" in json.loads(r.body)
