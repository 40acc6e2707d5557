"""modelfs lock against the fake Hub: a lock names every file's commit, size
and hash (fetching to hash what no source states), is byte-identical when
written twice, mounts with no API call for what is cached, refuses bytes
that changed at the origin naming both values, and --check / --update
report and re-pin drift."""

import errno
import hashlib
import os
import re
import time

import pytest

from mfs import MiB, commit_sha, hf, hf_conf, hf_fixture, pread, run, wait_state, xattr

COMMIT_RE = re.compile(r'commit = "([0-9a-f]{40})"')


# ---------------------------------------------------------------------------
# helpers

def fixture(hub, repo, path, commit=0):
    return hf_fixture(hub, repo, path, commit)[1]


def conf(hub, entries):
    return hf_conf(hub, entries, settings="retry_timeout = 3")


def env_of(tmp_path, **extra):
    """A `modelfs lock` environment: no real token, sanitizer logs kept."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE_", "MODELFS_", "CIVITAI"))}
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def lock(modelfs_bin, tmp_path, cfg_text, *args, **env):
    cfg = tmp_path / "models.toml"
    cfg.write_text(cfg_text)
    r = run([modelfs_bin, "lock", "--cache-dir", tmp_path / "lockcache", cfg, *args],
            env=env_of(tmp_path, **env), timeout=180)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r


def entries_of(text):
    """{entry id: its [[entry]] section's text} of a lock."""
    out = {}
    for part in text.split("\n[[entry]]\n")[1:]:
        out[re.search(r'^id = "([^"]+)"', part, re.M).group(1)] = part
    return out


# A repo file (LFS, sha256), a repo folder (a git file: blob id), and a
# plain URL written with a ${VAR}: the origin states no hash for it.
def three(hub):
    hub.add_file("plain.bin", 2 * MiB + 5, seed=7)
    return conf(hub, {
        "checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")},
        "clip": {"dir": hf("org/tiny", include=["config.json", "tokenizer/*"])},
        "vae": {"plain": '{ url = "${HUB}/files/plain.bin" }'},
    })


# ---------------------------------------------------------------------------

def test_lock_writes_every_field_and_is_byte_identical_twice(hub, modelfs_bin, tmp_path):
    out = tmp_path / "models.lock"
    cfg = three(hub)
    r = lock(modelfs_bin, tmp_path, cfg, "--output", out, HUB=hub.base())
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    e = entries_of(text)
    assert sorted(e) == ["checkpoints/tiny", "clip/dir", "vae/plain"]
    c0 = commit_sha(hub, "org/tiny")
    tiny = e["checkpoints/tiny"]
    model = fixture(hub, "org/tiny", "model.safetensors")
    for want in ('source = "huggingface"', 'repo = "org/tiny"', 'repo_type = "model"',
                 'revision = "main"', 'file = "model.safetensors"', 'commit = "%s"' % c0,
                 'path = "Stable-diffusion/model.safetensors"',
                 'remote_path = "model.safetensors"', "size = %d" % model["size"],
                 'sha256 = "%s"' % model["sha256"], 'hash_from = "source"',
                 'license = "mit"'):                 # the model card's, at that commit
        assert want in tiny, (want, tiny)
    folder = e["clip/dir"]
    assert 'include = ["config.json", "tokenizer/*"]' in folder
    assert 'git_sha1 = "%s"' % fixture(hub, "org/tiny", "config.json")["git_sha1"] in folder
    assert folder.count("[[entry.files]]") == 3
    # The URL as written (${HUB} unexpanded), hashed by lock itself.
    plain = e["vae/plain"]
    assert 'url = "${HUB}/files/plain.bin"' in plain
    assert 'hash_from = "lock"' in plain and "etag = " in plain
    assert "license" not in plain                   # a plain URL states none
    want_sha = hashlib.sha256((hub.root / "plain.bin").read_bytes()).hexdigest()
    assert 'sha256 = "%s"' % want_sha in plain
    assert hub.base() not in text            # nothing expanded, no host, no query
    # Twice: the same bytes, and the hashed file is not fetched again.
    fetched = [q for q in hub.requests(path="plain.bin") if q["range"] != "bytes=0-0"]
    r2 = lock(modelfs_bin, tmp_path, cfg, "--output", out, HUB=hub.base())
    assert r2.returncode == 0, r2.stderr
    assert out.read_text() == text
    assert [q for q in hub.requests(path="plain.bin") if q["range"] != "bytes=0-0"] == fetched


def test_mount_with_lock_works_offline_with_no_api_call(hub, mount, modelfs_bin, tmp_path):
    out = tmp_path / "models.lock"
    cfg = three(hub)
    assert lock(modelfs_bin, tmp_path, cfg, "--output", out, HUB=hub.base()).returncode == 0
    cache = tmp_path / "lockcache"          # the lock hashed plain.bin in it
    m = mount(cfg, cache_dir=cache, extra_args=["--lock", out], env={"HUB": hub.base()})
    model = m.path / "Stable-diffusion" / "model.safetensors"
    data = model.read_bytes()
    wait_state(model, "verified")
    m.unmount()
    # main moves on and then the Hub goes down: the lock still serves the
    # locked commit's bytes, from the cache, asking nothing.
    hub.control("POST", "hf/branch", {"repo": "org/tiny", "branch": "main", "commit": 1},
                server="hf")
    before = len(hub.requests())
    hub.faults(down=True)
    m2 = mount(cfg, cache_dir=cache, extra_args=["--lock", out], env={"HUB": hub.base()},
               allowed_errors=[r"clip/dir|text_encoder"])
    assert (m2.path / "Stable-diffusion" / "model.safetensors").read_bytes() == data
    assert (m2.path / "VAE" / "plain.bin").read_bytes() == (hub.root / "plain.bin").read_bytes()
    # Files never read are listed with their locked sizes, all the same.
    cfgjson = m2.path / "text_encoder" / "dir" / "config.json"
    assert cfgjson.stat().st_size == fixture(hub, "org/tiny", "config.json")["size"]
    hub.clear_faults()
    assert len(hub.requests()) == before, hub.requests()[before:]


def test_a_locked_file_has_its_commit_date_on_every_box(hub, mount, modelfs_bin, tmp_path):
    """Forge keys its hash cache by mtime: the lock carries each file's
    modified time (a Hub file's commit date), so a fresh box mounting with
    the lock shows it without asking the Hub for the model info."""
    import calendar
    commits = hub.control("GET", "hf/repos", server="hf")["org/tiny"]["commits"]
    date0 = calendar.timegm(time.strptime(commits[0]["date"][:19], "%Y-%m-%dT%H:%M:%S"))
    out = tmp_path / "models.lock"
    cfg = conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")},
                     "clip": {"dir": hf("org/tiny", include=["config.json"])}})
    assert lock(modelfs_bin, tmp_path, cfg, "--output", out).returncode == 0
    text = out.read_text()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(date0))
    assert text.count("modified = %s\n" % stamp) == 2, text
    before = len(hub.requests(server="hf", path="/api/*"))
    for box in ("a", "b"):
        m = mount(cfg, cache_dir=tmp_path / box, extra_args=["--lock", out])
        assert os.stat(m.path / "Stable-diffusion" / "model.safetensors").st_mtime == date0
        assert os.stat(m.path / "text_encoder" / "dir" / "config.json").st_mtime == date0
        m.unmount()
    assert hub.requests(server="hf", path="/api/*")[before:] == []


def test_origin_that_changed_is_an_error_naming_both_values(hub, mount, modelfs_bin, tmp_path):
    out = tmp_path / "models.lock"
    hub.add_file("moving.bin", MiB + 3, seed=1)
    cfg = conf(hub, {"vae": {"moving": '"%s"' % hub.url("moving.bin")}})
    assert lock(modelfs_bin, tmp_path, cfg, "--output", out).returncode == 0
    etag = re.search(r'etag = "(.*)"', out.read_text()).group(1).replace('\\"', '"')
    # The origin now sends another validator: other bytes under that name.
    hub.faults(path="moving.bin", etag='"v2-other"')
    m = mount(cfg, extra_args=["--lock", out], allowed_errors=[r"moving\.bin"])
    path = m.path / "VAE" / "moving.bin"
    with pytest.raises(OSError) as e:
        pread(path, 0, 100)
    assert e.value.errno == errno.EIO
    err = xattr(path, "error")
    assert etag in err and '"v2-other"' in err and "VAE/moving.bin" in err, err
    assert xattr(path, "state") == "error"
    m.unmount()
    # Another size: both sizes named.
    hub.clear_faults()
    hub.add_file("moving.bin", MiB + 10, seed=2)
    m2 = mount(cfg, extra_args=["--lock", out], allowed_errors=[r"moving\.bin"])
    path = m2.path / "VAE" / "moving.bin"
    assert path.stat().st_size == MiB + 3            # the locked size, not the new one
    with pytest.raises(OSError):
        pread(path, 0, 100)
    err = xattr(path, "error")
    assert str(MiB + 3) in err and str(MiB + 10) in err, err


def test_check_lists_drift_and_update_repins_only_what_is_named(hub, modelfs_bin, tmp_path):
    out = tmp_path / "models.lock"
    cfg = three(hub)
    assert lock(modelfs_bin, tmp_path, cfg, "--output", out, HUB=hub.base()).returncode == 0
    r = lock(modelfs_bin, tmp_path, cfg, "--check", "--lock", out, HUB=hub.base())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no drift" in r.stdout
    before = entries_of(out.read_text())
    # main moves (a new commit for both HF entries) and the URL's file changes.
    hub.control("POST", "hf/branch", {"repo": "org/tiny", "branch": "main", "commit": 1},
                server="hf")
    hub.add_file("plain.bin", 2 * MiB + 9, seed=8)
    c0, c1 = commit_sha(hub, "org/tiny", 0), commit_sha(hub, "org/tiny", 1)
    r = lock(modelfs_bin, tmp_path, cfg, "--check", "--lock", out, HUB=hub.base())
    assert r.returncode == 1, r.stdout + r.stderr
    assert "changed  checkpoints/tiny: revision main now resolves to %s, the lock has %s" % (
        c1, c0) in r.stdout
    new_size = fixture(hub, "org/tiny", "model.safetensors", 1)["size"]
    assert "Stable-diffusion/model.safetensors is %d bytes now" % new_size in r.stdout
    assert "VAE/plain.bin is %d bytes now, the lock has %d" % (2 * MiB + 9, 2 * MiB + 5) in r.stdout
    assert "clip/dir" in r.stdout
    # Re-pin one entry: it follows main, the others stay as they were.
    r = lock(modelfs_bin, tmp_path, cfg, "--update", "checkpoints/tiny", "--lock", out,
             HUB=hub.base())
    assert r.returncode == 0, r.stderr
    after = entries_of(out.read_text())
    assert 'commit = "%s"' % c1 in after["checkpoints/tiny"]
    assert after["clip/dir"] == before["clip/dir"]
    assert after["vae/plain"] == before["vae/plain"]
    r = lock(modelfs_bin, tmp_path, cfg, "--check", "--lock", out, HUB=hub.base())
    assert r.returncode == 1
    assert "checkpoints/tiny" not in r.stdout and "clip/dir" in r.stdout
    # An entry removed from the config, one added.
    cfg2 = conf(hub, {"checkpoints": {"tiny": hf("org/tiny", file="model.safetensors")},
                      "vae": {"other": '"%s"' % hub.url("plain.bin")}})
    r = lock(modelfs_bin, tmp_path, cfg2, "--check", "--lock", out)
    assert r.returncode == 1
    assert "added    vae/other" in r.stdout and "removed  clip/dir" in r.stdout


def test_malformed_lock_is_a_usage_error_with_its_place(hub, mount, tmp_path):
    bad = tmp_path / "bad.lock"
    bad.write_text('lock_version = 1\n[[entry]]\nid = "vae/x"\nsource = "url"\nsizes = 3\n')
    hub.add_file("x.bin", MiB)
    m = mount(conf(hub, {"vae": {"x": '"%s"' % hub.url("x.bin")}}),
              extra_args=["--lock", bad], expect_fail=True)
    assert m.returncode == 2
    assert "%s:5:1: unknown key \"sizes\" in entry vae/x" % bad in m.stderr
