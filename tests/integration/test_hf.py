"""Hugging Face entries against the fake Hub (tests/fakehub/svc_hf.py): single
files and repos as folders, pinned to a commit, verified, with the token sent
to the Hub only, clear errors, retries, re-resolution, offline and mirrors."""

import errno
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import fusermount_unmount
from mfs import (MiB, commit_sha, config, file_slice, hf, hf_conf, hf_fixture as fixture, pread,
                 run, wait_state, xattr)

GOOD = "hf_testerTOKEN0123456789abcdefghijklmn"        # svc_hf.TOKENS: user "tester"
OUTSIDER = "hf_outsiderTOKEN0123456789abcdefghijkl"   # a valid user not on gated lists
BAD = "hf_revokedTOKENzzzzzzzzzzzzzzzzzzzzzzzz"
FAILED = [r"event=entry_failed", r"event=hf_token_invalid"]


# ---------------------------------------------------------------------------
# helpers

def reqs(hub, server, path=None):
    return hub.requests(server=server, path=path)


def clean_env(tmp_path, **extra):
    """The environment of a `modelfs check` run: no real token anywhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_", "MODELFS_")) and k != "XDG_CACHE_HOME"}
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def check(modelfs_bin, tmp_path, text, **env):
    cfg = tmp_path / "check.toml"
    cfg.write_text(text)
    return run([modelfs_bin, "check", cfg], env=clean_env(tmp_path, **env), timeout=120)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# single files

def test_single_file_is_byte_exact_and_verified(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")}}))
    path = m.path / "Stable-diffusion" / "model.safetensors"
    blob, info = fixture(hub, "org/tiny", "model.safetensors")
    assert path.stat().st_size == info["size"] == 3 * MiB + 123
    assert pread(path, 3 * MiB, 200) == file_slice(blob, 3 * MiB, 200)
    assert sha256_of(path) == info["sha256"]
    wait_state(path, "verified")
    assert xattr(path, "sha256") == info["sha256"]
    assert "huggingface:org/tiny@main/model.safetensors" in xattr(path, "source")
    # Bytes came from the signed CDN, never from the Hub itself.
    assert reqs(hub, "hfcdn") and all(r["status"] == 206 for r in reqs(hub, "hfcdn"))


def test_requests_to_resolve_one_file_and_read_its_first_block(hub, mount):
    # No header prefetch: what one read costs, alone.
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")}},
                      settings="header_prefetch = false"), env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "model.safetensors"
    origin = reqs(hub, "hf")
    # whoami-v2 once (token check), one GET bytes=0-0 of /resolve/ (the 302 not
    # followed), and, this box's first resolution of it, the model info at the
    # commit: its date is the file's mtime on every box.
    sha = commit_sha(hub, "org/tiny")
    assert [(r["path"], r["range"], r["status"]) for r in origin] == [
        ("/api/whoami-v2", None, 200),
        ("/org/tiny/resolve/main/model.safetensors", "bytes=0-0", 302),
        ("/api/models/org/tiny/revision/%s" % sha, None, 200)]
    assert reqs(hub, "hfcdn") == []
    blob, _ = fixture(hub, "org/tiny", "model.safetensors")
    assert pread(path, 0, 4096) == file_slice(blob, 0, 4096)
    cdn = reqs(hub, "hfcdn")
    assert [(r["range"], r["status"]) for r in cdn] == [("bytes=0-262143", 206)]  # a 256 KiB block
    assert len(reqs(hub, "hf")) == 3


def test_requests_of_a_repo_folder(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"dir": hf("org/tiny", include=["model.safetensors",
                                                                         "config.json"])}},
                      settings="header_prefetch = false"))
    root = m.path / "Stable-diffusion" / "dir"
    sha = commit_sha(hub, "org/tiny")
    # Model info (the commit), then the tree at the commit: two pages.
    assert [(r["path"], r["status"]) for r in reqs(hub, "hf")] == [
        ("/api/models/org/tiny/revision/main", 200),
        ("/api/models/org/tiny/tree/%s" % sha, 200), ("/api/models/org/tiny/tree/%s" % sha, 200)]
    blob, _ = fixture(hub, "org/tiny", "model.safetensors")
    assert pread(root / "model.safetensors", 0, 100) == file_slice(blob, 0, 100)
    # An LFS file's first read resolves its CDN URL once; later blocks go
    # straight to the CDN, without a resolver request each.
    probes = reqs(hub, "hf", "/org/tiny/resolve/*")
    assert [(r["path"], r["range"], r["status"]) for r in probes] == [
        ("/org/tiny/resolve/%s/model.safetensors" % sha, "bytes=0-0", 302)]
    assert pread(root / "model.safetensors", 2 * MiB, 100) == file_slice(blob, 2 * MiB, 100)
    assert len(reqs(hub, "hf", "/org/tiny/resolve/*")) == 1
    assert [r["status"] for r in reqs(hub, "hfcdn")] == [206, 206]
    # A regular file is read from the Hub at the commit: one request.
    cfg, _ = fixture(hub, "org/tiny", "config.json")
    assert (root / "config.json").read_bytes() == cfg.read_bytes()
    last = reqs(hub, "hf")[-1]
    assert last["path"] == "/org/tiny/resolve/%s/config.json" % sha and last["status"] == 206
    # Each file of the folder says which file it is.
    assert os.getxattr(root / "config.json", "user.modelfs.source").decode() == \
        "huggingface:org/tiny@main/config.json"


def test_hf_endpoint_from_the_environment(hub, mount):
    m = mount(config({"checkpoints": {"c": hf("org/tiny", file="config.json")}}),
              env={"HF_ENDPOINT": hub.base("hf") + "/"})
    assert (m.path / "Stable-diffusion" / "config.json").read_bytes() == \
        fixture(hub, "org/tiny", "config.json")[0].read_bytes()


@pytest.mark.parametrize("variant", ["plain", "weak", "cache307"])
def test_small_git_file_is_verified_by_git_sha1(hub, mount, variant):
    hub.config(hf_small_variant=variant)
    m = mount(hf_conf(hub, {"checkpoints": {"cfg": hf("org/tiny", file="config.json")}}),
              env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "config.json"
    blob, info = fixture(hub, "org/tiny", "config.json")
    assert not info["lfs"]
    assert path.read_bytes() == blob.read_bytes()
    wait_state(path, "verified")
    if variant == "cache307":
        cached = reqs(hub, "hf", "/api/resolve-cache/*")
        assert cached and all(r["authorization"] and r["status"] in (200, 206) for r in cached)
    # Reads go to the file at its commit, never at the branch.
    sha = commit_sha(hub, "org/tiny")
    data = [r for r in reqs(hub, "hf", "/org/tiny/resolve/*") if r["range"] != "bytes=0-0"]
    assert data and all("/resolve/%s/" % sha in r["path"] for r in data)


def test_revision_tag_and_encoded_pr_ref(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {
        "tag": hf("org/tiny", file="config.json", revision="v1.0", filename="tag.json"),
        "pr": hf("org/tiny", file="config.json", revision="refs/pr/1", filename="pr.json")}}))
    d = m.path / "Stable-diffusion"
    assert (d / "tag.json").read_bytes() == fixture(hub, "org/tiny", "config.json", 0)[0].read_bytes()
    assert (d / "pr.json").read_bytes() == fixture(hub, "org/tiny", "config.json", 1)[0].read_bytes()
    assert reqs(hub, "hf", "/org/tiny/resolve/refs%2Fpr%2F1/config.json")


def test_sizes_past_4_gib(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"huge": hf("org/huge", file="huge.safetensors")}}))
    path = m.path / "Stable-diffusion" / "huge.safetensors"
    blob, info = fixture(hub, "org/huge", "huge.safetensors")
    size = 5 * (1 << 30) + 12345
    assert path.stat().st_size == info["size"] == size
    for off, n in [(0, 4096), ((1 << 32) - 1000, 2000), (size - 777, 777)]:
        assert pread(path, off, n) == file_slice(blob, off, n), off
    # Offsets past 4 GiB went out whole (one block, or a run of blocks).
    spans = [tuple(map(int, r["range"][6:].split("-"))) for r in reqs(hub, "hfcdn")
             if r["range"]]
    assert any(a <= (1 << 32) <= b for a, b in spans), spans
    assert any(a <= size - 1 <= b for a, b in spans), spans


def test_renamed_repo_keeps_the_token_on_the_relative_redirect(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"r": hf("oldorg/renamed", file="model.bin")}}),
              env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "model.bin"
    blob, _ = fixture(hub, "neworg/renamed", "model.bin")
    assert path.read_bytes() == blob.read_bytes()
    old = reqs(hub, "hf", "/oldorg/renamed/resolve/*")
    new = reqs(hub, "hf", "/neworg/renamed/resolve/*")
    assert old[0]["status"] == 307 and new and all(r["authorization"] for r in old + new)
    assert not any(r["authorization"] for r in reqs(hub, "hfcdn"))


def test_second_cdn_hop(hub, mount):
    hub.config(hf_cdn_second_hop=1)
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")}}),
              env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "model.safetensors"
    assert sha256_of(path) == fixture(hub, "org/tiny", "model.safetensors")[1]["sha256"]
    assert reqs(hub, "hfcdn2")
    assert not any(r["authorization"] for r in reqs(hub, "hfcdn") + reqs(hub, "hfcdn2"))


# ---------------------------------------------------------------------------
# repos as folders

def test_repo_folder_lists_exactly_the_kept_files_across_pages(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf(
        "org/tiny", include=["*.json", "transformer/*", "*.safetensors"],
        exclude=["tokenizer/*"])}}), env={"HF_TOKEN": GOOD})
    root = m.path / "Stable-diffusion" / "tiny"
    listed = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert listed == ["config.json", "model.safetensors", "transformer/config.json",
                      "transformer/diffusion_pytorch_model.safetensors"]
    sha = commit_sha(hub, "org/tiny")
    tree = reqs(hub, "hf", "/api/models/org/tiny/tree/*")
    assert len(tree) == 2                                   # two pages
    assert all(r["path"] == "/api/models/org/tiny/tree/%s" % sha for r in tree)
    info = reqs(hub, "hf", "/api/models/org/tiny/revision/main")
    assert len(info) == 1 and all(r["authorization"] for r in tree + info)
    for rel in listed:
        blob, meta = fixture(hub, "org/tiny", rel)
        assert (root / rel).stat().st_size == meta["size"]
        assert (root / rel).read_bytes() == blob.read_bytes(), rel
    for rel in listed:
        wait_state(root / rel, "verified")
    assert not any(r["authorization"] for r in reqs(hub, "hfcdn"))


def test_dataset_repo_folder(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"ds": hf("org/data", repo_type="dataset")}}))
    root = m.path / "Stable-diffusion" / "ds"
    blob, _ = fixture(hub, "datasets/org/data", "data/train.parquet")
    assert (root / "data" / "train.parquet").read_bytes() == blob.read_bytes()
    assert reqs(hub, "hf", "/api/datasets/org/data/tree/*")
    assert reqs(hub, "hf", "/datasets/org/data/resolve/*")


def test_branch_move_after_mount_does_not_change_bytes(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {
        "one": hf("org/tiny", file="model.safetensors"),
        "dir": hf("org/tiny", include=["model.safetensors", "config.json"])}}))
    one = m.path / "Stable-diffusion" / "model.safetensors"
    folder = m.path / "Stable-diffusion" / "dir"
    old, old_info = fixture(hub, "org/tiny", "model.safetensors", 0)
    new, new_info = fixture(hub, "org/tiny", "model.safetensors", 1)
    assert old_info["sha256"] != new_info["sha256"]
    assert pread(one, 0, 100) == file_slice(old, 0, 100)
    hub.control("POST", "hf/branch", {"repo": "org/tiny", "branch": "main", "commit": 1},
                server="hf")
    assert one.read_bytes() == old.read_bytes()
    assert (folder / "model.safetensors").read_bytes() == old.read_bytes()
    assert (folder / "config.json").read_bytes() == fixture(hub, "org/tiny", "config.json", 0)[0].read_bytes()
    wait_state(one, "verified")
    wait_state(folder / "config.json", "verified")


# ---------------------------------------------------------------------------
# tokens

def test_token_goes_to_the_hub_only_and_never_to_logs(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {
        "tiny": hf("org/tiny", file="model.safetensors"),
        "dir": hf("org/tiny", include=["transformer/*"])}}), env={"HF_TOKEN": GOOD})
    d = m.path / "Stable-diffusion"
    assert sha256_of(d / "model.safetensors") == fixture(hub, "org/tiny", "model.safetensors")[1]["sha256"]
    (d / "dir" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    origin = reqs(hub, "hf")
    assert origin and all(r["authorization"] for r in origin)
    assert all(r["headers"]["authorization"] == "Bearer " + GOOD for r in origin)
    cdn = reqs(hub, "hfcdn")
    assert cdn and not any(r["authorization"] or r["leak"] for r in cdn)
    m.unmount()
    for p in [m.log_path, m.stderr_path, m.stdout_path, *m.cache_dir.rglob("*")]:
        if Path(p).is_file():
            assert GOOD.encode() not in Path(p).read_bytes(), p


def test_token_files_and_legacy_variable(hub, mount, tmp_path):
    """Where huggingface_hub finds a token: HF_HOME/token (cleaned of blanks
    and CR/LF), HF_TOKEN_PATH (a blank HF_TOKEN falls through to it), the
    legacy HUGGING_FACE_HUB_TOKEN."""
    home = tmp_path / "hfhome"
    home.mkdir()
    (home / "token").write_text("  %s\r\n" % GOOD)
    other = tmp_path / "elsewhere.txt"
    other.write_text(GOOD + "\n")
    text = hf_conf(hub, {"checkpoints": {"g": hf("org/gated", file="config.json")}})
    for env in [{"HF_HOME": home}, {"HF_TOKEN_PATH": other, "HF_TOKEN": "  \n"},
                {"HUGGING_FACE_HUB_TOKEN": GOOD}]:
        hub.reset()
        m = mount(text, env=env)
        data = (m.path / "Stable-diffusion" / "config.json").read_bytes()
        assert data.startswith(b'{"gated"'), env
        assert all(r["authorization"] for r in reqs(hub, "hf")), env
        m.unmount()


def test_token_file_in_the_default_place(hub, modelfs_bin, tmp_path):
    token = tmp_path / "home" / ".cache" / "huggingface" / "token"
    token.parent.mkdir(parents=True)
    token.write_text(GOOD + "\n")
    text = hf_conf(hub, {"checkpoints": {"g": hf("org/gated", file="config.json")}})
    r = check(modelfs_bin, tmp_path, text)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the token file %s (user tester)" % token in r.stdout
    xdg = tmp_path / "xdg"
    (xdg / "huggingface").mkdir(parents=True)
    (xdg / "huggingface" / "token").write_text(BAD)
    r = check(modelfs_bin, tmp_path, text, XDG_CACHE_HOME=str(xdg))
    assert r.returncode == 1
    assert "the token file %s/huggingface/token is invalid (whoami-v2 said 401)" % xdg in r.stdout
    assert BAD not in r.stdout + r.stderr


def test_disable_implicit_token(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"t": hf("org/tiny", file="config.json")}}),
              env={"HF_TOKEN": GOOD, "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"})
    (m.path / "Stable-diffusion" / "config.json").read_bytes()
    assert reqs(hub, "hf") and not any(r["authorization"] for r in reqs(hub, "hf"))


def test_bad_token_fails_check_clearly(hub, modelfs_bin, tmp_path):
    text = hf_conf(hub, {"checkpoints": {
        "tiny": hf("org/tiny", file="model.safetensors"),
        "dir": hf("org/tiny", include=["*.json"])}})
    r = check(modelfs_bin, tmp_path, text, HF_TOKEN=BAD)
    assert r.returncode == 1, r.stdout + r.stderr
    msg = ("HF_TOKEN is invalid (whoami-v2 said 401): create a new token at "
           "https://huggingface.co/settings/tokens")
    assert r.stdout.count(msg) == 2, r.stdout
    assert BAD not in r.stdout + r.stderr
    # One whoami, no resolution with a refused token.
    assert [x["path"] for x in reqs(hub, "hf")] == ["/api/whoami-v2"]
    ok = check(modelfs_bin, tmp_path, text, HF_TOKEN=GOOD)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "HF_TOKEN (user tester)" in ok.stdout


def test_bad_token_in_a_mount_fails_reads_with_the_reason(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")}}),
              env={"HF_TOKEN": BAD}, expect_partial=True, allowed_errors=FAILED)
    path = m.path / "Stable-diffusion" / "model.safetensors"
    with pytest.raises(PermissionError):
        path.read_bytes()
    assert "HF_TOKEN is invalid" in xattr(path, "error")
    assert BAD not in m.log()


# ---------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("token", [None, OUTSIDER])
def test_gated_is_listed_and_reads_fail_eacces(hub, mount, token):
    env = {"HF_TOKEN": token} if token else {}
    m = mount(hf_conf(hub, {"checkpoints": {
        "g": hf("org/gated", file="model.safetensors", filename="gated.safetensors"),
        "gdir": hf("org/gated")}}), env=env, expect_partial=True, allowed_errors=FAILED)
    assert "2 of 2 entries failed" in m.stderr and "checkpoints/gdir (" in m.stderr
    d = m.path / "Stable-diffusion"
    _, info = fixture(hub, "org/gated", "model.safetensors")
    for path in (d / "gated.safetensors", d / "gdir" / "model.safetensors"):
        assert path.stat().st_size == info["size"]
        with pytest.raises(PermissionError):
            pread(path, 0, 10)
        err = xattr(path, "error")
        assert "org/gated is gated: request access at %s/org/gated" % hub.base("hf") in err
        assert ("(token: HF_TOKEN)" if token else "set HF_TOKEN") in err
        assert xattr(path, "state") == "gated"
    assert sorted(p.name for p in (d / "gdir").iterdir()) == ["config.json", "model.safetensors"]
    assert not reqs(hub, "hfcdn")
    if token:
        assert token not in m.log()


def test_gated_with_access_reads(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"gdir": hf("org/gated")}}), env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "gdir" / "model.safetensors"
    blob, _ = fixture(hub, "org/gated", "model.safetensors")
    assert path.read_bytes() == blob.read_bytes()


def test_missing_repo_file_revision_fail_check_naming_them(hub, modelfs_bin, tmp_path):
    text = hf_conf(hub, {"checkpoints": {
        "repo": hf("org/nope", file="a.bin"),
        "file": hf("org/tiny", file="nope/b.bin"),
        "rev": hf("org/tiny", file="config.json", revision="nope-branch"),
        "dir": hf("org/nope2"),
        "none": hf("org/tiny", include=["*.gguf"]),
        "private": hf("org/private", file="weights.bin")}})
    r = check(modelfs_bin, tmp_path, text)
    assert r.returncode == 1
    out = r.stdout
    assert "repository org/nope not found at %s" % hub.base("hf") in out
    assert "no token was sent: set HF_TOKEN" in out
    assert 'nope/b.bin not found in org/tiny at revision "main"' in out
    assert 'revision "nope-branch" not found in org/tiny' in out
    assert "repository org/nope2 not found" in out
    assert 'include/exclude keep none of the 8 files of org/tiny at revision "main"' in out
    assert "repository org/private not found" in out
    assert "6 entries failed" in r.stderr
    with_token = check(modelfs_bin, tmp_path, text, HF_TOKEN=OUTSIDER)
    assert "the token (HF_TOKEN) cannot read it" in with_token.stdout


def test_missing_file_in_a_mount_is_enoent(hub, mount):
    m = mount(hf_conf(hub, {"checkpoints": {"x": hf("org/tiny", file="nope.bin")}}),
              expect_partial=True, allowed_errors=FAILED)
    path = m.path / "Stable-diffusion" / "nope.bin"
    with pytest.raises(OSError) as e:
        open(path, "rb")
    assert e.value.errno == errno.ENOENT


def test_429_retry_after_is_honoured_at_resolution(hub, mount):
    hub.faults(server="hf", path="org/tiny/model.safetensors", fail=[429], retry_after=2)
    t0 = time.monotonic()
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")}}))
    resolves = reqs(hub, "hf", "/org/tiny/resolve/*")
    assert [r["status"] for r in resolves] == [429, 302]
    assert resolves[1]["t_start"] - resolves[0]["t_end"] >= 2.0
    assert time.monotonic() - t0 >= 2.0
    assert "event=hf_retry" in m.log()
    path = m.path / "Stable-diffusion" / "model.safetensors"
    assert pread(path, 0, 10) == file_slice(fixture(hub, "org/tiny", "model.safetensors")[0], 0, 10)


def test_expired_cdn_signature_is_re_resolved(hub, mount):
    hub.config(cdn_ttl=2)
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")}}),
              env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "model.safetensors"
    blob, info = fixture(hub, "org/tiny", "model.safetensors")
    assert pread(path, 0, 100) == file_slice(blob, 0, 100)
    hub.config(cdn_ttl=3600)
    time.sleep(3.2)
    assert pread(path, 2 * MiB, 100) == file_slice(blob, 2 * MiB, 100)
    cdn = reqs(hub, "hfcdn")
    assert 403 in [r["status"] for r in cdn] and cdn[-1]["status"] == 206
    assert len(reqs(hub, "hf", "/org/tiny/resolve/*")) == 2      # resolved, then re-resolved
    assert "event=url_refreshed" in m.log()
    assert sha256_of(path) == info["sha256"]


# ---------------------------------------------------------------------------
# offline and mirrors

def test_offline_remount_of_a_repo_folder(hub, mount, tmp_path):
    text = hf_conf(hub, {"checkpoints": {"dir": hf("org/tiny", exclude=["onnx/*"])}})
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache, env={"HF_TOKEN": GOOD})
    root = m.path / "Stable-diffusion" / "dir"
    want = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert len(want) == 7
    m.unmount()
    hub.faults(server="hf*", down=True)
    m2 = mount(text, cache_dir=cache, env={"HF_TOKEN": GOOD})
    root2 = m2.path / "Stable-diffusion" / "dir"
    got = {str(p.relative_to(root2)): p.read_bytes() for p in root2.rglob("*") if p.is_file()}
    assert got == want
    assert "resolve_offline" in m2.log()


def test_hf_hub_offline_uses_the_stored_resolution(hub, mount, tmp_path):
    text = hf_conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="config.json")}})
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache)
    data = (m.path / "Stable-diffusion" / "config.json").read_bytes()
    m.unmount()
    hub.reset()
    m2 = mount(text, cache_dir=cache, env={"HF_HUB_OFFLINE": "1"})
    assert (m2.path / "Stable-diffusion" / "config.json").read_bytes() == data
    assert reqs(hub, "hf") == []


def test_mirror_serves_when_the_hub_is_down_at_mount(hub, mount):
    text = hf_conf(hub, {"checkpoints": {
        "tiny": hf("org/tiny", file="model.safetensors", mirrors=[hub.base("hfmirror")])}},
        settings="retry_timeout = 3\n")
    hub.faults(server="hf", down=True)
    m = mount(text, env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "model.safetensors"
    assert sha256_of(path) == fixture(hub, "org/tiny", "model.safetensors")[1]["sha256"]
    wait_state(path, "verified")
    mirror = reqs(hub, "hfmirror")
    assert mirror and not any(r["authorization"] or r["leak"] for r in mirror)
    assert "hf_try_mirror" in m.log()


def test_mirror_serves_when_the_hub_and_cdn_go_down_after_mount(hub, mount):
    text = hf_conf(hub, {"checkpoints": {
        "dir": hf("org/tiny", include=["model.safetensors"], mirrors=[hub.base("hfmirror")])}},
        settings="retry_timeout = 2\n")
    m = mount(text, env={"HF_TOKEN": GOOD})
    path = m.path / "Stable-diffusion" / "dir" / "model.safetensors"
    hub.faults(server="hf", down=True)
    hub.faults(server="hfcdn", down=True)
    assert sha256_of(path) == fixture(hub, "org/tiny", "model.safetensors")[1]["sha256"]
    wait_state(path, "verified")
    assert reqs(hub, "hfmirror", "/org/tiny/resolve/%s/*" % commit_sha(hub, "org/tiny"))
    assert not any(r["authorization"] for r in reqs(hub, "hfmirror"))
    assert "try_mirror" in m.log()


def test_late_resolution_learns_the_sha256(hub, mount):
    # The Hub is down at mount: the entry is listed with its configured
    # size only. Resolved at the first read, the file still gets the
    # Hub's sha256, so it ends verified, not just complete.
    blob, info = fixture(hub, "org/tiny", "model.safetensors")
    entry = ('{ source = "huggingface", repo = "org/tiny", file = "model.safetensors", '
             'size = %d }' % info["size"])
    hub.faults(server="hf", down=True)
    m = mount(hf_conf(hub, {"checkpoints": {"tiny": entry}}, settings="retry_timeout = 3\n"),
              expect_partial=True, allowed_errors=[r"model\.safetensors|org/tiny"])
    path = m.path / "Stable-diffusion" / "model.safetensors"
    assert path.stat().st_size == info["size"]
    hub.clear_faults()
    assert sha256_of(path) == info["sha256"]
    wait_state(path, "verified")
    assert xattr(path, "sha256") == info["sha256"]


def test_mount_model_links_with_no_config(hub, modelfs_bin, tmp_path):
    """modelfs mount --model: a whole repo (hf://), a file link and a plain
    URL, mounted with no config file."""
    hub.add_file("plain.bin", MiB)
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    hf_base = hub.base("hf")
    links = ["hf://org/tiny", "%s/org/tiny/blob/main/config.json" % hf_base,
             hub.url("plain.bin")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELFS_"))}
    env.update(HF_ENDPOINT=hf_base, HF_TOKEN=GOOD, HOME=str(tmp_path))
    argv = [str(modelfs_bin), "mount", "--cache-dir", str(cache), "--log-file",
            str(tmp_path / "m.log"), "--category", "vae"]
    for link in links:
        argv += ["--model", link]
    r = subprocess.run(argv + [str(mnt)], capture_output=True, text=True, timeout=60, env=env,
                       stdin=subprocess.DEVNULL)
    try:
        assert r.returncode == 0, r.stderr
        vae = mnt / "VAE"
        assert sorted(os.listdir(vae)) == ["config.json", "plain.bin", "tiny"]
        data = fixture(hub, "org/tiny", "config.json")[0].read_bytes()
        assert (vae / "config.json").read_bytes() == data
        assert (vae / "tiny" / "config.json").read_bytes() == data
        assert (vae / "plain.bin").read_bytes() == (hub.root / "plain.bin").read_bytes()
    finally:
        fusermount_unmount(mnt)
    bad = subprocess.run([str(modelfs_bin), "mount", "--model", "hf://org", str(mnt)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "hf://ORG/REPO" in bad.stderr, bad.stderr


def test_mtimes_are_the_commit_date_on_every_box(hub, mount, tmp_path):
    """Forge keys its hash cache by mtime: a Hub file's mtime is the date of
    the commit it was resolved at (the model info's lastModified there), so
    two boxes (two caches) show the same one, a remount asks nothing more,
    and a later commit brings its own date."""
    import calendar
    repo = [r for r in hub.control("GET", "hf/repos", server="hf")["org/tiny"]["commits"]]
    date0 = calendar.timegm(time.strptime(repo[0]["date"][:19], "%Y-%m-%dT%H:%M:%S"))
    date1 = calendar.timegm(time.strptime(repo[1]["date"][:19], "%Y-%m-%dT%H:%M:%S"))
    text = hf_conf(hub, {"checkpoints": {"one": hf("org/tiny", file="model.safetensors"),
                                         "dir": hf("org/tiny", include=["config.json"])},
                         "vae": {"dev": hf("org/tiny", file="onnx/model.onnx", revision="dev")}})
    seen = []
    for box in ("a", "b"):
        m = mount(text, cache_dir=tmp_path / box)
        seen.append({p: os.stat(m.path / p).st_mtime for p in (
            "Stable-diffusion/model.safetensors", "Stable-diffusion/dir/config.json",
            "VAE/model.onnx")})
        m.unmount()
    assert seen[0] == seen[1]
    assert seen[0]["Stable-diffusion/model.safetensors"] == date0
    assert seen[0]["Stable-diffusion/dir/config.json"] == date0
    assert seen[0]["VAE/model.onnx"] == date1
    # A remount keeps the stored time and asks no model info for it.
    before = len(reqs(hub, "hf", "/api/models/*"))
    m = mount(text, cache_dir=tmp_path / "a")
    assert os.stat(m.path / "Stable-diffusion/model.safetensors").st_mtime == date0
    infos = reqs(hub, "hf", "/api/models/*")[before:]
    assert all("/tree/" in r["path"] or r["path"].endswith("/revision/main") for r in infos), infos
