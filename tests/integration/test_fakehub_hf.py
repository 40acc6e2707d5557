"""The fake Hugging Face Hub (tests/fakehub/svc_hf.py) against PROTOCOLS.md
§1 and §6.1, and against the official JavaScript client: if
@huggingface/hub disagrees with the fake, the fake is wrong.

The JS part needs node and tests/fakehub/js/node_modules (tools/deps.sh runs
`npm ci` there); it is skipped, saying why, when they cannot be had.
"""

import gzip
import hashlib
import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

import genmodel
from hubclient import fetch

REPO = Path(__file__).resolve().parents[2]
JS = REPO / "tests" / "fakehub" / "js"
GOOD = "hf_testerTOKEN0123456789abcdefghijklmn"
OUTSIDER = "hf_outsiderTOKEN0123456789abcdefghijkl"
BEARER = {"Authorization": "Bearer " + GOOD}


def repos(hub):
    return hub.control("GET", "hf/repos", server="hf")


def files(hub, repo, commit=0):
    return repos(hub)[repo]["commits"][commit]["files"]


def get(hub, path, server="hf", **kw):
    return fetch(hub.base(server) + path, **kw)


def error_of(resp):
    return (resp.status, resp.header("X-Error-Code"), json.loads(resp.body)["error"])


# ---------------------------------------------------------------------------
# the fake, request by request (§6.1)

def test_small_file_variants(hub):
    info = files(hub, "org/tiny")["config.json"]
    data = Path(info["blob"]).read_bytes()
    sha = repos(hub)["org/tiny"]["commits"][0]["sha"]
    r = get(hub, "/org/tiny/resolve/main/config.json", method="HEAD")
    assert r.status == 200 and r.header("X-Repo-Commit") == sha
    assert r.header("ETag") == '"%s"' % info["git_sha1"]
    assert r.header("Content-Length") == str(len(data)) and r.header("Accept-Ranges") == "bytes"
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == info["git_sha1"]
    r = get(hub, "/org/tiny/resolve/main/config.json", headers={"Range": "bytes=2-5"})
    assert r.status == 206 and r.body == data[2:6]
    hub.config(hf_small_variant="weak")
    assert get(hub, "/org/tiny/resolve/main/config.json").header("ETag") == 'W/"%s"' % info["git_sha1"]
    hub.config(hf_small_variant="cache307")
    r = get(hub, "/org/tiny/resolve/main/config.json", headers=BEARER)
    loc = r.header("Location")
    assert r.status == 307 and loc.startswith("/api/resolve-cache/models/org/tiny/%s/config.json?" % sha)
    assert "etag=%22" + info["git_sha1"] + "%22" in loc and r.header("X-Repo-Commit") is None
    r = get(hub, loc, headers=BEARER)
    assert r.status == 200 and r.body == data and r.header("X-Repo-Commit") == sha
    # gzip only for a range-less GET that accepts it: chunked, no Content-Length
    hub.config(hf_small_variant="plain")
    r = get(hub, "/org/tiny/resolve/main/config.json", headers={"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") == "gzip" and r.header("Content-Length") is None
    assert r.header("Transfer-Encoding") == "chunked" and gzip.decompress(r.body) == data


def test_lfs_file_redirects_to_a_signed_cdn_that_refuses_tokens(hub):
    info = files(hub, "org/tiny")["model.safetensors"]
    data = Path(info["blob"]).read_bytes()
    for method in ("HEAD", "GET"):
        r = get(hub, "/org/tiny/resolve/main/model.safetensors", method=method, headers=BEARER)
        assert r.status == 302
        assert r.header("X-Linked-Etag") == '"%s"' % info["sha256"]
        assert r.header("X-Linked-Size") == str(info["size"])
        assert r.header("ETag") != r.header("X-Linked-Etag")
        assert int(r.header("Content-Length")) != info["size"]
    loc = r.header("Location")
    assert loc.startswith(hub.base("hfcdn") + "/xet-bridge-us/")
    assert r.body.decode() == "Found. Redirecting to " + loc
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    assert {"X-Amz-Expires", "Expires", "Signature", "response-content-disposition"} <= set(q)
    r = fetch(loc, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.header("Content-Range") == "bytes 10-19/%d" % len(data)
    assert r.header("ETag") == '"%s"' % info["sha256"]
    assert "filename*=UTF-8''model.safetensors" in r.header("Content-Disposition")
    assert fetch(loc, headers={"Range": "bytes=%d-" % len(data)}).status == 416
    r = fetch(loc, headers=dict(BEARER, Range="bytes=0-9"))
    assert r.status in (400, 403)
    assert [e["leak"] for e in hub.requests(server="hfcdn")][-1] is True
    bad = loc.replace("Signature=", "Signature=0")
    assert fetch(bad, headers={"Range": "bytes=0-0"}).status == 403


def test_cdn_expiry_second_hop_gzip_and_unranged_huge(hub):
    hub.config(cdn_ttl=-5)
    loc = get(hub, "/org/tiny/resolve/main/model.safetensors").header("Location")
    r = fetch(loc, headers={"Range": "bytes=0-0"})
    assert r.status == 403 and b"Request has expired" in r.body
    hub.config(cdn_ttl=3600, hf_cdn_second_hop=1)
    loc = get(hub, "/org/tiny/resolve/main/model.safetensors").header("Location")
    r = fetch(loc, headers={"Range": "bytes=0-0"})
    assert r.status == 302 and r.header("Location").startswith(hub.base("hfcdn2"))
    assert fetch(r.header("Location"), headers={"Range": "bytes=0-0"}).status == 206
    hub.config(hf_cdn_second_hop=0, hf_cdn_gzip_ignores_range=1)
    r = fetch(loc, headers={"Range": "bytes=0-0", "Accept-Encoding": "gzip"})
    assert r.status == 200 and len(r.body) == files(hub, "org/tiny")["model.safetensors"]["size"]
    huge = files(hub, "org/huge")["huge.safetensors"]
    r = get(hub, "/org/huge/resolve/main/huge.safetensors", method="HEAD")
    assert int(r.header("X-Linked-Size")) == huge["size"] > 1 << 32
    loc = r.header("Location")
    assert fetch(loc, method="HEAD").status == 200
    r = fetch(loc)
    assert r.status == 400 and r.body == b"<h1>400</h1>"
    r = fetch(loc, headers={"Range": "bytes=%d-%d" % ((1 << 32) + 5, (1 << 32) + 9)})
    assert r.header("Content-Range") == "bytes %d-%d/%d" % ((1 << 32) + 5, (1 << 32) + 9, huge["size"])


def test_xet_file_headers_and_fileinfo(hub):
    r = get(hub, "/org/tiny/resolve/main/transformer/diffusion_pytorch_model.safetensors")
    assert r.status == 302 and len(r.header("X-Xet-Hash")) == 64
    assert 'rel="xet-auth"' in r.header("Link") and "/xet-read-token/" in r.header("Link")
    r = get(hub, "/org/tiny/resolve/main/transformer/diffusion_pytorch_model.safetensors",
            headers={"Accept": "application/vnd.xet-fileinfo+json, */*"})
    assert r.status == 200 and r.header("Content-Type") == "application/vnd.xet-fileinfo+json"
    assert set(json.loads(r.body)) == {"casUrl", "hash", "refreshUrl", "size", "etag"}


def test_rename_and_errors(hub):
    r = get(hub, "/oldorg/renamed/resolve/main/model.bin", headers=BEARER)
    assert r.status == 307 and r.header("Location") == "/neworg/renamed/resolve/main/model.bin"
    assert error_of(get(hub, "/org/nope/resolve/main/x")) == (401, "RepoNotFound", "Repository not found")
    assert error_of(get(hub, "/org/nope/resolve/main/x", headers=BEARER))[:2] == (404, "RepoNotFound")
    assert error_of(get(hub, "/org/private/resolve/main/weights.bin"))[:2] == (401, "RepoNotFound")
    assert get(hub, "/org/private/resolve/main/weights.bin", headers=BEARER).status == 302
    st, code, msg = error_of(get(hub, "/org/gated/resolve/main/config.json"))
    assert (st, code) == (401, "GatedRepo") and "Please log in." in msg
    st, code, msg = error_of(get(hub, "/org/gated/resolve/main/config.json",
                                 headers={"Authorization": "Bearer " + OUTSIDER}))
    assert (st, code) == (403, "GatedRepo") and "not in the authorized list" in msg
    r = get(hub, "/org/tiny/resolve/main/config.json", headers={"Authorization": "Bearer hf_x"})
    assert error_of(r) == (401, None, "Invalid credentials in Authorization header")
    assert r.header("X-Error-Message") == "Invalid credentials in Authorization header"
    assert error_of(get(hub, "/org/tiny/resolve/nope/config.json")) == (
        404, "RevisionNotFound", "Invalid rev id: nope")
    r = get(hub, "/org/tiny/resolve/main/nope.bin")
    assert error_of(r) == (404, "EntryNotFound", "Entry not found")
    assert r.header("X-Repo-Commit") == repos(hub)["org/tiny"]["commits"][0]["sha"]
    assert error_of(get(hub, "/org/disabled/resolve/main/model.bin"))[0] == 403
    assert get(hub, "/org%2Ftiny/resolve/main/config.json").status == 400
    assert get(hub, "/api/models/org%2Ftiny/tree/main").status == 400
    hub.faults(server="hf", path="org/tiny/config.json", fail=[429], retry_after=2)
    r = get(hub, "/org/tiny/resolve/main/config.json")
    assert r.status == 429 and r.header("Retry-After") == "2"
    assert r.header("RateLimit") == '"resolvers";r=0;t=2'
    assert r.header("RateLimit-Policy") == '"fixed window";"resolvers";q=5000;w=300'


def test_tree_pages_model_info_whoami_and_branch_moves(hub):
    r = get(hub, "/api/models/org/tiny/tree/main?recursive=true&expand=false")
    page1 = json.loads(r.body)
    link = r.header("Link")
    assert len(page1) == 8 and link.endswith('>; rel="next"')
    nxt = link[1:link.index(">")]
    assert nxt.startswith(hub.base("hf") + "/api/models/org/tiny/tree/main?recursive=true")
    r2 = fetch(nxt)
    page2 = json.loads(r2.body)
    assert r2.header("Link") is None
    entries = page1 + page2
    assert {e["type"] for e in entries} == {"file", "directory"}
    assert len({e["path"] for e in entries}) == len(entries) == 11
    lfs = next(e for e in entries if e["path"] == "model.safetensors")
    assert lfs["lfs"]["oid"] == files(hub, "org/tiny")["model.safetensors"]["sha256"]
    assert "xetHash" in next(e for e in entries if e["path"].endswith("diffusion_pytorch_model.safetensors"))
    top = json.loads(get(hub, "/api/models/org/tiny/tree/main").body)
    assert sorted(e["path"] for e in top) == ["README.md", "config.json", "model.safetensors",
                                              "onnx", "tokenizer", "transformer"]
    sub = json.loads(get(hub, "/api/models/org/tiny/tree/main/tokenizer").body)
    assert [e["path"] for e in sub] == ["tokenizer/tokenizer.json", "tokenizer/vocab.txt"]
    assert error_of(get(hub, "/api/models/org/tiny/tree/main/nope"))[:2] == (404, "EntryNotFound")
    assert json.loads(get(hub, "/api/datasets/org/data/tree/main").body)
    info = json.loads(get(hub, "/api/models/org/tiny/revision/dev?blobs=true").body)
    assert info["sha"] == repos(hub)["org/tiny"]["commits"][1]["sha"]
    assert info["id"] == "org/tiny" and info["private"] is False and info["gated"] is False
    sib = next(s for s in info["siblings"] if s["rfilename"] == "model.safetensors")
    assert set(sib["lfs"]) == {"sha256", "size", "pointerSize"}
    assert json.loads(get(hub, "/api/models/org/gated").body)["gated"] == "manual"
    assert error_of(get(hub, "/api/models/org/private"))[:2] == (401, "RepoNotFound")
    me = json.loads(get(hub, "/api/whoami-v2", headers=BEARER).body)
    assert me["name"] == "tester" and me["auth"]["accessToken"]["role"] == "read"
    assert get(hub, "/api/whoami-v2").status == 401
    # branch moves
    hub.control("POST", "hf/branch", {"repo": "org/tiny", "branch": "main", "commit": 1}, server="hf")
    assert get(hub, "/org/tiny/resolve/main/config.json").header("X-Repo-Commit") == \
        repos(hub)["org/tiny"]["commits"][1]["sha"]
    hub.reset()
    assert get(hub, "/org/tiny/resolve/main/config.json").header("X-Repo-Commit") == \
        repos(hub)["org/tiny"]["commits"][0]["sha"]


def test_repos_added_as_data(hub):
    spec = {"org/extra": {"commits": [{"a.bin": {"kind": "raw", "size": 5000, "seed": 42},
                                       "b.txt": {"text": "hello\n"}}]}}
    out = hub.control("POST", "hf/repos", spec, server="hf")
    a = out["org/extra"]["commits"][0]["files"]["a.bin"]
    r = get(hub, "/org/extra/resolve/main/a.bin", headers={"Range": "bytes=0-0"})
    assert r.status == 302 and r.header("X-Linked-Size") == "5000"
    assert Path(a["blob"]).read_bytes() == genmodel.fill(0, 5000, seed=42)


def test_mirror_serves_bytes_itself(hub):
    info = files(hub, "org/tiny")["model.safetensors"]
    r = fetch(hub.base("hfmirror") + "/org/tiny/resolve/main/model.safetensors",
              headers={"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == Path(info["blob"]).read_bytes()[:100]
    assert r.header("X-Repo-Commit") and r.header("X-Linked-Size") == str(info["size"])


# ---------------------------------------------------------------------------
# the official JavaScript client against the fake

def js_ready():
    """None when the JS client can run, else why not."""
    node = shutil.which("node")
    if not node:
        return "node is not installed (tools/deps.sh)"
    try:
        major = int(subprocess.run([node, "--version"], capture_output=True, text=True,
                                   timeout=30).stdout.strip().lstrip("v").split(".")[0])
    except (ValueError, OSError, subprocess.TimeoutExpired):
        major = 0
    if major < 18:
        return "node >= 18 is needed for @huggingface/hub (fetch)"
    if (JS / "node_modules" / "@huggingface" / "hub").is_dir():
        return None
    npm = shutil.which("npm")
    if not npm:
        return "npm is not installed, so tests/fakehub/js/node_modules cannot be made"
    try:
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(JS)],
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "npm ci in tests/fakehub/js timed out (no registry?)"
    if r.returncode != 0:
        codes = [line for line in r.stderr.splitlines() if line.startswith("npm error code")]
        return ("npm ci in tests/fakehub/js failed (%s): is the npm registry reachable? "
                "tools/deps.sh installs it" % (codes[0] if codes else "exit %d" % r.returncode))
    return None


def test_official_js_client_agrees_with_the_fake(hub):
    why = js_ready()
    if why:
        pytest.skip(why)
    r = subprocess.run(["node", str(JS / "check_hf.mjs"), hub.base("hf"), GOOD, OUTSIDER],
                       capture_output=True, text=True, timeout=120, cwd=str(JS))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    tiny = files(hub, "org/tiny")
    # listFiles, recursive, across the Link pages
    listed = {e["path"]: e for e in out["list"]}
    dirs = {"onnx", "tokenizer", "transformer"}
    assert set(listed) == set(tiny) | dirs
    for path, info in tiny.items():
        assert listed[path]["size"] == info["size"] and listed[path]["oid"] == info["git_sha1"]
        assert (listed[path]["lfs"] or {}).get("oid") == (info["sha256"] if info["lfs"] else None)
    assert len(hub.requests(server="hf", path="/api/models/org/tiny/tree/main")) >= 2
    assert sorted(out["list_dataset"]) == ["README.md", "data", "data/train.parquet"]
    # fileDownloadInfo and downloadFile
    for path in ("config.json", "model.safetensors",
                 "transformer/diffusion_pytorch_model.safetensors"):
        info = tiny[path]
        got = out["info:" + path]
        assert "error" not in got, got
        assert got["size"] == info["size"]
        assert got["etag"].strip('"') == (info["sha256"] if info["lfs"] else info["git_sha1"])
        assert got["xet"] == info["xet"]
        assert out["download:" + path] == {"size": info["size"], "sha256": info["sha256"]}
    assert out["info:missing"] is None
    dev = files(hub, "org/tiny", 1)["model.safetensors"]
    assert out["download:dev"] == {"size": dev["size"], "sha256": dev["sha256"]}
    assert out["whoami"] == {"name": "tester", "type": "user", "auth": "access_token"}
    assert out["whoami_bad"]["status"] == 401
    assert out["whoami_bad"]["error"].startswith("Invalid credentials in Authorization header")
    # gated, private
    assert out["gated_anonymous"]["status"] == 401 and "restricted" in out["gated_anonymous"]["error"]
    assert out["gated_outsider"]["status"] == 403
    assert "not in the authorized list" in out["gated_outsider"]["error"]
    gated = files(hub, "org/gated")["model.safetensors"]
    assert out["gated_tester"] == {"size": gated["size"], "sha256": gated["sha256"]}
    assert out["private_anonymous"]["status"] == 401
    # fetch() follows the 302 and drops the token at the CDN, as the CDN demands.
    cdn = hub.requests(server="hfcdn")
    assert cdn and not any(e["authorization"] for e in cdn)
