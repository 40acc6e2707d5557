"""CivitAI entries: version and model ids, file choice, the token, the
download endpoint's answers, signed storage URLs that expire.  Against the
fake CivitAI of tests/fakehub/svc_civitai.py (API host "civitai", storage
host "civstore")."""

import calendar
import errno
import hashlib
import json
import os
import re
import time

from concurrent.futures import ThreadPoolExecutor

import pytest

from mfs import MiB, config, data_requests, pread, run, wait_for, wait_state, xattr
from hubclient import fetch
import svc_civitai

GOOD_KEY = "civ-good-key-5f2a9c"
BAD_KEY = "civ-bad-key-77d0e1"
PUBLISHED = "2024-05-01T12:00:00.000Z"

# Sizes that are no whole number of KiB: a client that used sizeKB would
# be off by a few bytes.
SIZES = {"v2": 3 * MiB + 777, "fp32": 2 * MiB + 5, "vae": MiB + 3, "v1": 2 * MiB + 1,
         "gated": MiB + 100, "early": MiB + 7, "old": MiB + 9, "nodl": MiB + 11,
         "big": 24 * MiB + 513}


class Civ:
    """The fixture catalogue: blobs on disk and the API's view of them."""

    def __init__(self, hub):
        self.hub = hub
        self.src, self.sha = {}, {}
        for i, (key, size) in enumerate(sorted(SIZES.items())):
            kind = "safetensors" if key in ("v2", "big") else "raw"
            self.src[key], self.sha[key] = hub.add_file("civitai/%s.bin" % key, size,
                                                        kind=kind, seed=i + 1)

        def f(fid, key, name, primary=True, type_="Model", fp="fp16"):
            return {"id": fid, "name": name, "type": type_, "primary": primary,
                    "blob": "civitai/%s.bin" % key,
                    "metadata": {"format": "SafeTensor", "size": "pruned", "fp": fp}}

        def v(vid, files, **extra):
            return {"id": vid, "name": "v%d" % vid, "publishedAt": PUBLISHED, "files": files,
                    **extra}

        self.fixtures = {
            "users": {GOOD_KEY: {"id": 42, "username": "tester"}},
            "models": [
                {"id": 100, "name": "Detail Tweaker", "type": "LORA", "versions": [
                    v(1002, [f(5009, "v2", "draft.safetensors")], status="Draft"),
                    v(1001, [f(5001, "v2", "detailTweaker_v2.safetensors"),
                             f(5002, "fp32", "detailTweaker_v2_fp32.safetensors", False, fp="fp32"),
                             f(5003, "vae", "detailTweaker.vae.safetensors", False, "VAE")]),
                    v(1000, [f(5000, "v1", "detailTweaker_v1.safetensors")],
                      publishedAt="2023-01-01T00:00:00.000Z")]},
                {"id": 200, "name": "Login only", "type": "LORA", "versions": [
                    v(2001, [f(6001, "gated", "gated.safetensors")], require_login=True)]},
                {"id": 300, "name": "Early", "type": "LORA", "versions": [
                    v(3001, [f(7001, "early", "early.safetensors")],
                      early_access={"deadline": "2099-01-01T00:00:00.000Z", "users": []})]},
                {"id": 400, "name": "Old", "type": "LORA", "mode": "Archived", "versions": [
                    v(4001, [f(8001, "old", "old.safetensors")])]},
                {"id": 500, "name": "No downloads", "type": "LORA", "versions": [
                    v(5101, [f(9001, "nodl", "nodl.safetensors")], downloads_disabled=True)]},
                {"id": 600, "name": "Big", "type": "Checkpoint", "versions": [
                    v(6101, [f(9101, "big", "big.safetensors")])]},
                {"id": 700, "name": "No primary", "type": "LORA", "versions": [
                    v(7101, [f(9201, "vae", "np.vae.safetensors", False, "VAE"),
                             f(9202, "v1", "np.safetensors", False)])]},
            ],
        }
        svc_civitai.save_fixtures(hub.root, self.fixtures)

    def api(self, path):
        return self.hub.base("civitai") + path

    def config(self, entries, block_size="1M"):
        return config(entries, settings='civitai_endpoint = "%s"' % self.hub.base("civitai"),
                      block_size=block_size)

    def api_requests(self, pattern="*"):
        return self.hub.requests(server="civitai", path=pattern)


def civ(**keys):
    """An inline table for a civitai entry."""
    parts = ['source = "civitai"']
    for k, val in keys.items():
        parts.append("%s = %d" % (k, val) if isinstance(val, int) else '%s = "%s"' % (k, val))
    return "{ " + ", ".join(parts) + " }"


@pytest.fixture
def cv(hub):
    return Civ(hub)


def check(modelfs_bin, cfg_path, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVITAI")}
    env["HOME"] = str(cfg_path.parent)
    if token is not None:
        env["CIVITAI_TOKEN"] = token
    r = run([modelfs_bin, "check", cfg_path], env=env)
    assert not re.search(r"Sanitizer|runtime error:", r.stderr), r.stderr
    return r


def write_cfg(tmp_path, text):
    p = tmp_path / "civ.toml"
    p.write_text(text)
    return p


def read_error(path):
    with pytest.raises(OSError) as e:
        with open(path, "rb") as f:
            f.read(1)
    return e.value.errno


# ---------------------------------------------------------------------------
# resolution and bytes

def test_version_id_is_byte_exact_and_verified(cv, hub, mount):
    m = mount(cv.config({"lora": {"dt": civ(version_id=1001)}}))
    path = m.path / "Lora" / "detailTweaker_v2.safetensors"
    st = path.stat()
    assert st.st_size == SIZES["v2"]          # from Content-Range, not sizeKB
    assert st.st_mtime == calendar.timegm(time.strptime(PUBLISHED[:19], "%Y-%m-%dT%H:%M:%S"))
    assert os.listdir(m.path / "Lora") == ["detailTweaker_v2.safetensors"]
    assert path.read_bytes() == cv.src["v2"].read_bytes()
    wait_state(path, "verified")
    assert xattr(path, "sha256") == cv.sha["v2"]
    assert xattr(path, "source") == "civitai:@1001/detailTweaker_v2.safetensors"
    # One metadata request, one download probe; then the bytes from storage.
    api = [(r["path"], r["range"]) for r in cv.api_requests()]
    assert api == [("/api/v1/model-versions/1001", None),
                   ("/api/download/models/1001", "bytes=0-0")], api
    store = hub.requests(server="civstore")
    assert store[0]["range"] == "bytes=0-0" and store[0]["status"] == 206
    assert sum(r["bytes"] for r in data_requests(hub, "civitai/v2.bin")) == SIZES["v2"]


def test_model_id_takes_the_latest_published_version(cv, mount):
    m = mount(cv.config({"lora": {"latest": civ(model_id=100, filename="detail.safetensors"),
                                  "pinned": civ(model_id=100, version_id=1000)}}))
    latest = m.path / "Lora" / "detail.safetensors"
    pinned = m.path / "Lora" / "detailTweaker_v1.safetensors"
    assert latest.read_bytes() == cv.src["v2"].read_bytes()    # 1002 is a draft
    assert pinned.read_bytes() == cv.src["v1"].read_bytes()
    assert [r["path"] for r in cv.api_requests("/api/v1/models/*")] == ["/api/v1/models/100"]
    assert len(cv.api_requests("/api/v1/model-versions/1000")) == 1
    wait_state(latest, "verified")
    wait_state(pinned, "verified")


def test_file_id_or_civitai_name_picks_a_non_primary_file(cv, mount):
    fp32 = "detailTweaker_v2_fp32.safetensors"
    m = mount(cv.config({
        "lora": {"by-id": civ(version_id=1001, file_id=5002)},
        "checkpoints": {"by-name": civ(version_id=1001, filename=fp32)},
        "vae": {"renamed": civ(version_id=1001, filename="mine.safetensors"),
                "vae-by-id": civ(model_id=100, file_id=5003)},
    }))
    assert (m.path / "Lora" / fp32).read_bytes() == cv.src["fp32"].read_bytes()
    assert (m.path / "Stable-diffusion" / fp32).read_bytes() == cv.src["fp32"].read_bytes()
    assert (m.path / "VAE" / "mine.safetensors").read_bytes() == cv.src["v2"].read_bytes()
    vae = m.path / "VAE" / "detailTweaker.vae.safetensors"
    assert vae.read_bytes() == cv.src["vae"].read_bytes()
    wait_state(vae, "verified")
    assert xattr(vae, "sha256") == cv.sha["vae"]
    downloads = [r for r in cv.api_requests("/api/download/*")]
    assert downloads and all(r["query"] for r in downloads)   # always ?fileId=


def test_token_goes_to_the_api_only_and_never_into_logs(cv, hub, mount, modelfs_bin):
    m = mount(cv.config({"lora": {"dt": civ(version_id=1001), "gated": civ(model_id=200)}}),
              env={"CIVITAI_TOKEN": GOOD_KEY, "MODELFS_LOG": "debug"})
    assert (m.path / "Lora" / "gated.safetensors").read_bytes() == cv.src["gated"].read_bytes()
    assert (m.path / "Lora" / "detailTweaker_v2.safetensors").read_bytes() == \
        cv.src["v2"].read_bytes()
    api = cv.api_requests()
    assert api and all(r["headers"].get("authorization") == "Bearer " + GOOD_KEY for r in api)
    assert all(r["civitai_user"] == "tester" and not r["token_in_query"] for r in api)
    assert len(cv.api_requests("/api/v1/me")) == 1            # validated once
    store = hub.requests(server="civstore")
    assert store and not any(r["authorization"] or r["leak"] for r in store)
    assert GOOD_KEY not in m.log()
    assert "X-Amz-Signature=" not in m.log()                 # signed URLs are redacted
    r = check(modelfs_bin, m.config_path, GOOD_KEY)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "auth=CIVITAI_TOKEN (user tester)" in r.stdout
    assert GOOD_KEY not in r.stdout + r.stderr


def test_login_required_without_token_is_listed_and_says_what_to_do(cv, hub, mount,
                                                                    modelfs_bin):
    m = mount(cv.config({"lora": {"gated": civ(version_id=2001), "early": civ(model_id=300),
                                  "old": civ(version_id=4001), "dt": civ(version_id=1001)}}),
              expect_partial=True,
              allowed_errors=[r"event=entry_failed entry=lora/(gated|early|old)"])
    assert "3 of 4 entries failed" in m.stderr
    assert re.search(r"^  lora/gated \(.*\): Lora/gated\.safetensors: .*set CIVITAI_TOKEN",
                     m.stderr, re.M), m.stderr
    gated = m.path / "Lora" / "gated.safetensors"
    assert sorted(os.listdir(m.path / "Lora")) == sorted(
        ["gated.safetensors", "early.safetensors", "old", "detailTweaker_v2.safetensors"])
    assert read_error(gated) == errno.EACCES
    assert xattr(gated, "state") == "error"
    err = xattr(gated, "error")
    assert "logged in" in err and "set CIVITAI_TOKEN" in err and "civitai.com/user/account" in err
    early = m.path / "Lora" / "early.safetensors"
    assert read_error(early) == errno.EACCES
    assert "early access" in xattr(early, "error")
    assert xattr(early, "state") == "gated"     # login required is not gated: "error" above
    old = m.path / "Lora" / "old"          # archived: no files, so no name from the API
    assert "archived" in xattr(old, "error")
    assert read_error(old) in (errno.EIO, errno.ENOENT)
    # The public one still works.
    assert (m.path / "Lora" / "detailTweaker_v2.safetensors").read_bytes() == \
        cv.src["v2"].read_bytes()
    assert not hub.requests(server="civstore", path="civitai/gated.bin")

    r = check(modelfs_bin, m.config_path)
    assert r.returncode == 1
    assert re.search(r"Lora/gated\.safetensors\s+civitai.*error.*logged in.*CIVITAI_TOKEN",
                     r.stdout), r.stdout
    r = check(modelfs_bin, write_cfg(m.workdir, cv.config({"lora": {"g": civ(version_id=2001)}})),
              GOOD_KEY)
    assert r.returncode == 0, r.stdout


def test_invalid_token_is_one_clear_error(cv, hub, modelfs_bin, tmp_path):
    cfg = write_cfg(tmp_path, cv.config({"lora": {"dt": civ(version_id=1001),
                                                  "gated": civ(version_id=2001)}}))
    r = check(modelfs_bin, cfg, BAD_KEY)
    assert r.returncode == 1
    rows = [line for line in r.stdout.splitlines() if line.startswith("Lora/")]
    assert len(rows) == 2 and all("CIVITAI_TOKEN is invalid" in row for row in rows), r.stdout
    assert "civitai.com/user/account" in r.stdout
    assert BAD_KEY not in r.stdout + r.stderr
    assert len(cv.api_requests("/api/v1/me")) == 1
    assert not cv.api_requests("/api/download/*")           # nothing fetched with it


def test_invalid_token_in_a_mount(cv, hub, mount):
    m = mount(cv.config({"lora": {"dt": civ(version_id=1001)}}),
              env={"CIVITAI_TOKEN": BAD_KEY}, expect_partial=True,
              allowed_errors=[r"event=entry_failed entry=lora/dt .*CIVITAI_TOKEN is invalid"])
    path = m.path / "Lora" / "detailTweaker_v2.safetensors"    # still named by the API
    assert read_error(path) == errno.EACCES
    assert "CIVITAI_TOKEN is invalid" in xattr(path, "error")
    assert BAD_KEY not in m.log() + xattr(path, "error")


def test_entry_auth_header_is_used_instead_of_the_token(cv, hub, mount):
    text = cv.config({"lora": {"gated": civ(version_id=2001,
                                            auth_header="Bearer ${MY_CIVITAI_KEY}")}})
    m = mount(text, env={"MY_CIVITAI_KEY": GOOD_KEY, "CIVITAI_TOKEN": BAD_KEY})
    path = m.path / "Lora" / "gated.safetensors"
    assert path.read_bytes() == cv.src["gated"].read_bytes()
    api = cv.api_requests()
    assert api and all(r["headers"].get("authorization") == "Bearer " + GOOD_KEY for r in api)
    assert not cv.api_requests("/api/v1/me")          # CIVITAI_TOKEN is not even looked at
    assert not any(r["authorization"] for r in hub.requests(server="civstore"))
    assert GOOD_KEY not in m.log()


def test_storage_answers_that_are_not_the_file(cv, hub, modelfs_bin, tmp_path):
    cfg = write_cfg(tmp_path, cv.config({"lora": {"dt": civ(version_id=1000)},
                                         "vae": {"early": civ(version_id=3001)}}))
    hub.faults(server="civstore", html_error=True)   # a login page with 200
    r = check(modelfs_bin, cfg, GOOD_KEY)
    assert r.returncode == 1
    assert re.search(r"Lora/detailTweaker_v1\.safetensors .*error.*gave an HTML page \(HTTP 200 "
                     r"from storage\), not the file",
                     r.stdout), r.stdout
    # A token without early access is told so, not asked to log in.
    assert re.search(r"VAE/early\.safetensors .*error.*early access.*account of CIVITAI_TOKEN "
                     r"has no access", r.stdout), r.stdout
    hub.clear_faults()
    hub.faults(server="civstore", ignore_range=True)
    r = check(modelfs_bin, cfg)
    assert "ignores Range requests" in r.stdout, r.stdout


def test_expired_storage_url_is_renewed_mid_read(cv, hub, mount):
    hub.config(civitai_url_ttl=2)
    m = mount(cv.config({"checkpoints": {"big": civ(version_id=6101)}}))
    path = m.path / "Stable-diffusion" / "big.safetensors"
    want = cv.src["big"].read_bytes()
    assert pread(path, 0, 4096) == want[:4096]
    time.sleep(3.2)                                   # the signed URL is dead now
    assert pread(path, 20 * MiB + 5, 70000) == want[20 * MiB + 5:20 * MiB + 5 + 70000]
    assert path.read_bytes() == want
    store = hub.requests(server="civstore")
    assert any(r["status"] == 403 for r in store), [r["status"] for r in store]
    assert not any(r["leak"] for r in store)
    assert len(cv.api_requests("/api/download/*")) >= 2
    assert not cv.api_requests("/api/v1/model-versions/6101")[1:]   # no new metadata
    assert "event=url_refreshed" in m.log()
    wait_state(path, "verified")


def test_final_answers_each_name_their_cause(cv, hub, modelfs_bin, tmp_path):
    cfg = write_cfg(tmp_path, cv.config({"lora": {
        "missing": civ(version_id=999999),
        "nomodel": civ(model_id=987654),
        "nofile": civ(version_id=1001, file_id=4242),
        "wrongmodel": civ(model_id=200, version_id=1001),
        "early": civ(version_id=3001),
        "old": civ(version_id=4001),
        "nodl": civ(version_id=5101),
        "size": civ(version_id=1000, size=SIZES["v1"] + 1),
        "sha": civ(version_id=1000, sha256="ab" * 32),
        "ok": civ(version_id=1000, size=SIZES["v1"], sha256=cv.sha["v1"]),
        "noprimary": civ(version_id=7101),
    }, "vae": {
        "np": civ(model_id=700, version_id=7101),      # the model lists its files
    }}))
    r = check(modelfs_bin, cfg)
    assert r.returncode == 1
    out = r.stdout
    want = {
        "Lora/missing": r"no model version 999999 .*Model not found",
        "Lora/nomodel": r"no model 987654 .*check model_id",
        "Lora/nofile": r"no file 4242; its files: 5001 \(detailTweaker_v2\.safetensors, Model\)",
        "Lora/wrongmodel": r"belongs to model 100, not to model_id 200",
        "Lora/early.safetensors": r"early access",
        "Lora/old": r"archived",
        "Lora/nodl.safetensors": r"disabled downloads",
        "Lora/detailTweaker_v1.safetensors":
            r"size mismatch: CivitAI serves %d bytes" % SIZES["v1"],
        "Lora/noprimary": r"no primary file \(HTTP 404: Missing model file\): give its model_id",
    }
    for row, pattern in want.items():
        assert re.search(row + r"\s.*error.*" + pattern, out), (row, out)
    assert re.search(r"sha256 mismatch: CivitAI lists %s" % cv.sha["v1"].upper(), out), out
    assert re.search(r"Lora/detailTweaker_v1\.safetensors\s+civitai\s+2\.00 MiB\s+ok", out), out
    # No primary file: the first "Model" file, never the VAE listed first.
    assert re.search(r"VAE/np\.safetensors\s+civitai\s+2\.00 MiB\s+ok\s+rev=7101 sha256=%s"
                     % cv.sha["v1"][:12], out), out
    assert out.count(" error ") == 10, out
    assert "modelfs check: 10 entries failed" in r.stderr


def test_download_quota_is_retried_later(cv, hub, mount, modelfs_bin, tmp_path):
    hub.config(civitai_quota=1)
    cfg = write_cfg(tmp_path, cv.config({"lora": {"dt": civ(version_id=1000)}}))
    r = check(modelfs_bin, cfg)
    assert r.returncode == 1 and "quota or rate limit; retried later" in r.stdout, r.stdout
    # Mounted with its size known, the file is listed and resolved at first
    # read; not resolved at mount, it still makes the mount partial.
    m = mount(cv.config({"lora": {"dt": civ(version_id=1000, filename="v1.safetensors",
                                            size=SIZES["v1"])}}), expect_partial=True)
    assert "lora/dt" in m.stderr and "fetched at first read" in m.stderr
    path = m.path / "Lora" / "v1.safetensors"
    assert path.stat().st_size == SIZES["v1"]
    assert "event=entry_unresolved" in m.log()
    hub.config(civitai_quota=0)
    assert path.read_bytes() == cv.src["v1"].read_bytes()
    wait_for(lambda: xattr(path, "state") in ("complete", "verified"), what="hashed")
    assert xattr(path, "sha256") == cv.sha["v1"]


def test_remount_with_api_down_uses_the_stored_pin(cv, hub, mount):
    text = cv.config({"lora": {"dt": civ(model_id=100)}})
    m = mount(text)
    path = m.path / "Lora" / "detailTweaker_v2.safetensors"
    assert pread(path, 0, 1000) == cv.src["v2"].read_bytes()[:1000]
    m.unmount()
    # The metadata API is down; the download endpoint still answers.
    hub.faults(server="civitai", path="api/v1/*", down=True)
    m2 = mount(text, cache_dir=m.cache_dir)
    path = m2.path / "Lora" / "detailTweaker_v2.safetensors"
    before = len(cv.api_requests("/api/download/models/1001"))
    # Readers of four blocks at once: their workers all need the signed
    # URL a stored resolution lacks, and ask the origin for it once.
    want = cv.src["v2"].read_bytes()
    offsets = [0, MiB + 5, 2 * MiB + 9, 3 * MiB + 100]
    with ThreadPoolExecutor(len(offsets)) as pool:
        got = list(pool.map(lambda off: pread(path, off, 500), offsets))
    assert got == [want[off:off + 500] for off in offsets]
    assert path.read_bytes() == want
    downloads = cv.api_requests("/api/download/models/1001")
    assert len(downloads) == before + 1, "the stored resolution pins version 1001 and its file"
    wait_state(path, "verified")


# ---------------------------------------------------------------------------
# the fake itself (PROTOCOLS.md §6.2)

def test_fake_civitai_speaks_the_protocol(cv, hub):
    def get(path, **headers):
        return fetch(cv.api(path), headers=headers)

    # /me: a key as Bearer or ?token=, else 401.
    assert get("/api/v1/me").status == 401
    assert get("/api/v1/me", Authorization="Bearer " + BAD_KEY).status == 401
    r = get("/api/v1/me", Authorization="Bearer " + GOOD_KEY)
    assert r.status == 200 and b'"username": "tester"' in r.body
    assert fetch(cv.api("/api/v1/me?token=" + GOOD_KEY)).status == 200

    # A version: exact hashes upper-case, sizeKB a float of bytes/1024.
    body = json.loads(get("/api/v1/model-versions/1001").body)
    files = {f["id"]: f for f in body["files"]}
    assert body["modelId"] == 100 and files[5001]["primary"] is True
    assert files[5002]["primary"] is False
    assert files[5001]["sizeKB"] == SIZES["v2"] / 1024 and SIZES["v2"] % 1024
    assert files[5001]["hashes"]["SHA256"] == cv.sha["v2"].upper()
    assert files[5001]["hashes"]["AutoV2"] == cv.sha["v2"].upper()[:10]
    assert get("/api/v1/model-versions/1002").status == 404          # a draft
    r = get("/api/v1/model-versions/31337")
    assert r.status == 404 and json.loads(r.body) == {"error": "Model not found"}
    assert json.loads(get("/api/v1/model-versions/4001").body)["files"] == []   # archived

    # A model: published versions only, primary only on the primary file.
    model = json.loads(get("/api/v1/models/100").body)
    assert [v["id"] for v in model["modelVersions"]] == [1001, 1000]
    mfiles = model["modelVersions"][0]["files"]
    assert [("primary" in f) for f in mfiles] == [True, False, False]
    assert json.loads(get("/api/v1/models/7").body) == {"error": "No model with id 7"}

    # by-hash: any case, any hash type.
    for h in (cv.sha["v1"], cv.sha["v1"].upper(), cv.sha["v1"][:10]):
        r = get("/api/v1/model-versions/by-hash/" + h)
        assert r.status == 200 and json.loads(r.body)["id"] == 1000
    assert get("/api/v1/model-versions/by-hash/" + "0" * 64).status == 404

    # The download endpoint: no-store always, the outcomes of §2.3.
    def dl(path, **headers):
        r = get(path, **headers)
        assert r.header("Cache-Control") == "no-store, max-age=0", (path, r.status)
        return r
    r = dl("/api/download/models/1001")
    assert r.status == 307 and "/civitai/v2.bin?" in r.header("Location")
    assert r.header("Location").startswith(hub.base("civstore"))
    assert "filename%3D%22detailTweaker_v2.safetensors%22" in r.header("Location")
    assert "/civitai/fp32.bin?" in dl("/api/download/models/1001?fileId=5002").header("Location")
    assert "/civitai/fp32.bin?" in dl("/api/download/models/1001?type=Model&format=SafeTensor"
                                      "&fp=fp32").header("Location")
    assert dl("/api/download/models/1001?type=Model&fp=bf16").status == 404
    assert dl("/api/download/models/1001?fileId=1").status == 404
    assert dl("/api/download/models/1001?fileId=x").status == 400
    r = dl("/api/download/models/2001")
    assert r.status == 401 and json.loads(r.body)["message"] == svc_civitai.MSG_LOGIN
    assert dl("/api/download/models/2001", Authorization="Bearer " + BAD_KEY).status == 401
    assert dl("/api/download/models/2001", Authorization="Bearer " + GOOD_KEY).status == 307
    r = dl("/api/download/models/2001", **{"User-Agent": "Mozilla/5.0 Firefox/120"})
    assert r.status == 307 and r.header("Location").startswith(
        "/login?returnUrl=%2Fmodel-versions%2F2001&reason=download-auth")
    r = dl("/api/download/models/3001")
    assert r.status == 403 and json.loads(r.body)["error"] == "Early Access"
    assert dl("/api/download/models/4001").status == 410
    assert json.loads(dl("/api/download/models/5101").body)["message"] == svc_civitai.MSG_DISABLED
    hub.config(civitai_quota=1)
    r = dl("/api/download/models/1001")
    assert r.status == 429 and "unusual amount of downloading" in json.loads(r.body)["error"]
    hub.config(civitai_quota=0)

    # Storage: Range, exact length, attachment name; no Authorization; expiry.
    url = dl("/api/download/models/1001").header("Location")
    r = fetch(url, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == cv.src["v2"].read_bytes()[10:20]
    assert r.header("Content-Range") == "bytes 10-19/%d" % SIZES["v2"]
    assert r.header("Content-Disposition") == 'attachment; filename="detailTweaker_v2.safetensors"'
    r = fetch(url)
    assert r.status == 200 and int(r.header("Content-Length")) == SIZES["v2"]
    assert hashlib.sha256(r.body).hexdigest() == cv.sha["v2"]
    r = fetch(url, headers={"Authorization": "Bearer " + GOOD_KEY})
    assert r.status == 403
    assert hub.requests(server="civstore")[-1]["leak"] is True
    assert fetch(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status == 403
    hub.config(civitai_url_ttl=-1)
    r = fetch(dl("/api/download/models/1001").header("Location"))
    assert r.status == 403 and b"Request has expired" in r.body


# ---------------------------------------------------------------------------
# locks and manifests

def test_a_civitai_model_locks_and_writes_a_manifest(cv, hub, mount, modelfs_bin, tmp_path):
    """`model_id` alone resolves to the newest published version: the lock pins
    that version (and each file's id and sha256), so a mount with the lock
    serves exactly it with no API request, offline; the manifest names the
    version and the file, and mounts the same bytes."""
    cfg = write_cfg(tmp_path, cv.config({"lora": {"dt": civ(model_id=100)}}))
    lock = tmp_path / "models.lock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVITAI")}
    env["HOME"] = str(tmp_path)
    r = run([modelfs_bin, "lock", "--cache-dir", tmp_path / "c", "--output", lock, cfg], env=env)
    assert r.returncode == 0, r.stderr
    text = lock.read_text()
    assert 'version_id = "1001"' in text and 'model_id = "100"' in text, text
    assert 'file_id = "5001"' in text and 'sha256 = "%s"' % cv.sha["v2"] in text, text
    api_before = len(cv.api_requests("/api/v1/*"))
    m = mount(cv.config({"lora": {"dt": civ(model_id=100)}}), extra_args=["--lock", lock])
    path = m.path / "Lora" / "detailTweaker_v2.safetensors"
    assert path.read_bytes() == cv.src["v2"].read_bytes()
    wait_state(path, "verified")
    # The catalog came from the lock: no API request at mount (the bytes
    # come from the download endpoint, which is not the API).
    assert len(cv.api_requests("/api/v1/*")) == api_before, cv.api_requests()[api_before:]
    m.unmount()
    r = run([modelfs_bin, "manifest", "--cache-dir", tmp_path / "c", cfg, "dt"], env=env)
    assert r.returncode == 0, r.stderr
    assert 'source: {provider: "civitai", model_id: "100", version_id: "1001"}' in r.stdout, \
        r.stdout
    assert '- path: "detailTweaker_v2.safetensors"\n  sha256: "%s"' % cv.sha["v2"] in r.stdout
    man = tmp_path / "dt.yaml"
    man.write_text(r.stdout)
    m = mount(cv.config({"lora": {"dt": '{ source = "manifest", path = "%s" }' % man}}))
    path = m.path / "Lora" / "dt" / "detailTweaker_v2.safetensors"
    assert path.read_bytes() == cv.src["v2"].read_bytes()
    wait_state(path, "verified")
