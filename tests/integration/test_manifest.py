"""Model manifests (YAML, libyaml): as an entry ({ source = "manifest" }) or
as the whole config, every artifact mounts under the entry's folder and is
checked against its sha256; the model is available in status only when
every artifact is verified; a malformed manifest is an error naming
FILE:LINE:COL, exit 2, nothing mounted; `modelfs manifest ENTRY` writes the
same shape back for what a config mounts."""

import errno
import json
import os

import pytest

from mfs import commit_sha, hf, hf_conf, hf_fixture, pread, run, wait_state

ARTIFACTS = ["config.json", "model.safetensors", "transformer/config.json",
             "transformer/diffusion_pytorch_model.safetensors"]


def manifest_text(hub, *, paths=ARTIFACTS, wrong=(), extra=""):
    commit = commit_sha(hub, "org/tiny")
    lines = ['model_id: "org/tiny"', 'version: "2026-01-15"', 'profile: "hf-diffusers-standard"',
             'license: "mit"',
             'source: { provider: huggingface, repo_id: "org/tiny", revision: "%s" }' % commit,
             "entrypoint: { loader: diffusers, class: TinyPipeline }   # kept, not used",
             "artifacts:"]
    for p in paths:
        sha = hf_fixture(hub, "org/tiny", p)[1]["sha256"]
        if p in wrong:
            sha = "0" * 64
        lines += ['  - path: "%s"' % p, "    sha256: %s" % sha]
    return "\n".join(lines) + "\n" + extra


def blob(hub, path):
    return hf_fixture(hub, "org/tiny", path)[0].read_bytes()


def status(modelfs_bin, cache_dir):
    r = run([modelfs_bin, "status", "--json", "--cache-dir", cache_dir], timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_manifest_entry_mounts_every_artifact_verified(hub, mount, modelfs_bin, tmp_path):
    yaml = tmp_path / "pipe.yaml"
    yaml.write_text(manifest_text(hub))
    m = mount(hf_conf(hub, {"diffusers": {"pipe": '{ source = "manifest", path = "%s" }'
                                          % yaml}}))
    folder = m.path / "diffusers" / "pipe"
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "transformer"]
    st = status(modelfs_bin, m.cache_dir)
    assert st["models"] == [{"entry": "diffusers/pipe", "manifest": str(yaml),
                             "model_id": "org/tiny", "version": "2026-01-15", "artifacts": 4,
                             "verified": 0, "available": False}]
    for p in ARTIFACTS:
        want = blob(hub, p)
        assert pread(folder / p, 0, len(want) + 10) == want
        wait_state(folder / p, "verified")
    st = status(modelfs_bin, m.cache_dir)
    assert st["models"][0]["verified"] == 4 and st["models"][0]["available"] is True
    entries = {f["path"]: f["entry"] for f in st["files"]}
    assert entries["diffusers/pipe/transformer/config.json"] == \
        "diffusers/pipe/transformer/config.json"
    r = run([modelfs_bin, "status", "--cache-dir", m.cache_dir], timeout=60)
    assert "diffusers/pipe (org/tiny 2026-01-15): available, 4 of 4 artifacts verified" \
        in r.stdout, r.stdout
    # The entry's name selects every artifact.
    r = run([modelfs_bin, "verify", "--cache-dir", m.cache_dir, "pipe"], timeout=120)
    assert r.returncode == 0 and r.stdout.count("ok") >= 4, r.stdout


def test_an_artifact_with_a_wrong_sha256_is_corrupt_and_the_model_unavailable(
        hub, mount, modelfs_bin, tmp_path):
    yaml = tmp_path / "pipe.yaml"
    yaml.write_text(manifest_text(hub, wrong=("config.json",)))
    m = mount(hf_conf(hub, {"diffusers": {"pipe": '{ source = "manifest", path = "%s" }'
                                          % yaml}}),
              allowed_errors=[r"config\.json", "sha256", "corrupt", "mismatch"])
    folder = m.path / "diffusers" / "pipe"
    try:
        pread(folder / "config.json", 0, 4096)
    except OSError as e:
        assert e.errno == errno.EIO
    wait_state(folder / "config.json", "corrupt")
    want = blob(hub, "model.safetensors")
    assert pread(folder / "model.safetensors", 0, len(want)) == want
    wait_state(folder / "model.safetensors", "verified")
    model = status(modelfs_bin, m.cache_dir)["models"][0]
    assert model["available"] is False and model["artifacts"] == 4


@pytest.mark.parametrize("text,where,says", [
    ("model_id: [unclosed\n", ":2:1:", "not YAML"),
    ("source: { provider: huggingface, repo_id: org/tiny }\nartifacts:\n  - path: a.bin\n",
     ":3:5:", "sha256 is missing"),
    ("source: { provider: huggingface, repo_id: org/tiny }\nartifacts:\n"
     "  - { path: ../x, sha256: %s }\n" % ("a" * 64), ":3:", "relative path inside the model"),
    ("source: { provider: gitlab }\nartifacts: []\n", ":1:", "huggingface, civitai, url"),
    ("source: { provider: url }\nartifacts:\n  - { path: a.bin, sha256: %s }\n" % ("b" * 64),
     ":3:5:", "url is missing"),
    ("source: { provider: huggingface, repo_id: org/tiny }\nartifacts:\n"
     "  - { path: a.bin, sha256: %s }\n  - { path: a.bin, sha256: %s }\n" % ("c" * 64, "c" * 64),
     ":4:", "listed twice"),
])
def test_a_malformed_manifest_is_refused_with_its_place(hub, mount, modelfs_bin, tmp_path, text,
                                                         where, says):
    yaml = tmp_path / "bad.yaml"
    yaml.write_text(text)
    cfg = tmp_path / "models.toml"
    cfg.write_text(hf_conf(hub, {"diffusers": {"pipe": '{ source = "manifest", path = '
                                               '"bad.yaml" }'}}))
    r = run([modelfs_bin, "check", "--offline", cfg], timeout=60)
    assert r.returncode == 2, r.stderr
    assert "bad.yaml" + where in r.stderr and says in r.stderr, r.stderr
    # As the whole config: the same message; nothing is mounted.
    r = run([modelfs_bin, "check", "--offline", yaml], timeout=60)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    m = mount(text, config_name="bad.yaml", expect_fail=True)
    assert m.returncode == 2 and not os.listdir(m.path)


def test_a_manifest_entry_takes_source_and_path_only(hub, modelfs_bin, tmp_path):
    (tmp_path / "p.yaml").write_text(manifest_text(hub))
    cfg = tmp_path / "models.toml"
    cfg.write_text(hf_conf(hub, {"diffusers": {"pipe": '{ source = "manifest", path = '
                                               '"p.yaml", repo = "org/x" }'}}))
    r = run([modelfs_bin, "check", "--offline", cfg], timeout=60)
    assert r.returncode == 2 and "source and path only, not repo" in r.stderr, r.stderr
    cfg.write_text(hf_conf(hub, {"diffusers": {"pipe": '{ source = "manifest", path = '
                                               '"missing.yaml" }'}}))
    r = run([modelfs_bin, "check", "--offline", cfg], timeout=60)
    assert r.returncode != 0 and "missing.yaml" in r.stderr, r.stderr


def test_a_manifest_as_the_whole_config(hub, mount, modelfs_bin, tmp_path):
    text = manifest_text(hub, paths=ARTIFACTS[:2],
                         extra="# no hf_endpoint in a manifest: HF_ENDPOINT says where\n")
    m = mount(text, config_name="tiny.yaml", env={"HF_ENDPOINT": hub.base("hf")})
    folder = m.path / "diffusers" / "tiny"
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    want = blob(hub, "model.safetensors")
    assert pread(folder / "model.safetensors", 0, len(want)) == want
    wait_state(folder / "model.safetensors", "verified")


def test_modelfs_manifest_writes_what_a_config_mounts(hub, mount, modelfs_bin, tmp_path):
    """A repo folder entry written as a manifest: pinned to the commit, every
    file with its sha256 (a file the Hub gives only a git blob id for is
    fetched and hashed); the manifest then mounts the same bytes."""
    cfg = tmp_path / "models.toml"
    cfg.write_text(hf_conf(hub, {"diffusers": {"tiny": hf("org/tiny", include=["*.json",
                                                                                "transformer/*"])},
                                 "vae": {"other": hf("org/tiny", file="model.safetensors")}}))
    out = tmp_path / "tiny.yaml"
    r = run([modelfs_bin, "manifest", "--cache-dir", tmp_path / "c", "--output", out, cfg,
             "tiny"], timeout=180)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr and "vae/other" not in r.stderr, r.stderr  # one entry only
    text = out.read_text()
    commit = commit_sha(hub, "org/tiny")
    assert 'source: {provider: "huggingface", repo_id: "org/tiny", revision: "%s"}' % commit \
        in text, text
    assert 'license: "mit"' in text
    paths = ["config.json", "tokenizer/tokenizer.json", "transformer/config.json",
             "transformer/diffusion_pytorch_model.safetensors"]
    for p in paths:
        assert '- path: "%s"\n  sha256: "%s"' % (p, hf_fixture(hub, "org/tiny", p)[1]["sha256"]) \
            in text, text
    assert text.index('"config.json"') < text.index('"transformer/config.json"')
    # Written twice: the same bytes (nothing fetched again: the cache has them).
    r2 = run([modelfs_bin, "manifest", "--cache-dir", tmp_path / "c", cfg, "diffusers/tiny"],
             timeout=180)
    assert r2.returncode == 0 and r2.stdout == text, r2.stderr
    # Mounted as the whole config: the same files, verified (no profile and
    # no model_index.json: a checkpoint folder).
    m = mount(text, config_name="tiny.yaml", env={"HF_ENDPOINT": hub.base("hf")})
    folder = m.path / "Stable-diffusion" / "tiny"
    for p in paths:
        want = blob(hub, p)
        assert pread(folder / p, 0, len(want) + 1) == want
        wait_state(folder / p, "verified")
    r = run([modelfs_bin, "manifest", cfg, "nosuch"], timeout=60)
    assert r.returncode == 2 and "no entry nosuch" in r.stderr
