"""The built-in model catalog: conf/catalog.toml has the documented shape
(every model pinned to a commit, no branch), every model expands to a valid
source entry in a config, `modelfs catalog search` finds by words, an
unknown name gets a did-you-mean, and a catalog entry mounts its pinned file
(here from a catalog naming the fake Hub's repo)."""

import json
import os
import re
from pathlib import Path

from mfs import commit_sha, hf_conf, hf_fixture, pread, run, wait_state

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "conf" / "catalog.toml"


def catalog(modelfs_bin, *args, env=None):
    return run([modelfs_bin, "catalog", *args], env=env, timeout=60)


def test_every_catalog_model_is_pinned_and_expands_to_a_valid_entry(modelfs_bin, tmp_path):
    r = catalog(modelfs_bin, "--json")
    assert r.returncode == 0, r.stderr
    models = json.loads(r.stdout)
    assert len(models) >= 3
    assert len({m["name"] for m in models}) == len(models)
    by_category = {}
    for m in models:
        assert re.fullmatch(r"[0-9a-f]{40}", m["revision"]), m
        assert re.fullmatch(r"[a-z0-9.-]+", m["name"]) and "/" in m["repo"], m
        assert m["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", m["sha256"]), m
        # Two models may share a file name (sdxl_vae.safetensors): each its own.
        by_category.setdefault(m["category"], []).append(
            '"%s" = { catalog = "%s", filename = "%s-%s" }'
            % (m["name"], m["name"], m["name"], m["file"].split("/")[-1]))
    # Every pin is cited: the comment block right above each [[model]]
    # names where its revision was read, and its size and sha256 too.
    text = CATALOG.read_text()
    assert text.count("[[model]]") == len(models)
    blocks = text.split("[[model]]")
    for before, table in zip(blocks, blocks[1:]):
        comment = []
        for line in reversed(before.rstrip("\n").splitlines()):
            if not line.startswith("#"):
                break
            comment.append(line)
        name = re.search(r'^name = "([^"]+)"', table, re.M).group(1)
        m = next(x for x in models if x["name"] == name)
        cited = " ".join(comment)
        assert comment and "revision" in cited, name
        assert m["size"] is None or "size" in cited, name
        assert m["sha256"] is None or "sha256" in cited.lower(), name
    cfg = tmp_path / "all.toml"
    cfg.write_text("".join("[models.%s]\n%s\n" % (c, "\n".join(e))
                           for c, e in by_category.items()))
    r = run([modelfs_bin, "check", "--offline", cfg], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for m in models:
        if m["size"] is not None and m["sha256"] is not None:
            assert re.search(r"/%s-%s\s.*sha256 pinned" % (m["name"],
                                                             re.escape(m["file"].split("/")[-1])),
                             r.stdout), (m, r.stdout)


def test_catalog_search_and_a_did_you_mean(modelfs_bin, tmp_path):
    r = catalog(modelfs_bin, "search", "SDXL", "base")
    assert r.returncode == 0 and "sdxl-base" in r.stdout, r.stdout
    assert "checkpoints" in r.stdout and "GPU MEM" in r.stdout
    r = catalog(modelfs_bin, "search", "no-such-model-anywhere")
    assert r.returncode == 1 and "no model matches" in r.stdout
    cfg = tmp_path / "typo.toml"
    cfg.write_text('[models.checkpoints]\nbase = { catalog = "sdxl-bas" }\n')
    r = run([modelfs_bin, "check", "--offline", cfg], timeout=60)
    assert r.returncode == 2, r.stderr
    assert 'typo.toml:2:' in r.stderr and 'did you mean "sdxl-base"' in r.stderr, r.stderr
    cfg.write_text('[models.checkpoints]\nbase = { catalog = "sdxl-base", repo = "a/b" }\n')
    r = run([modelfs_bin, "check", "--offline", cfg], timeout=60)
    assert r.returncode == 2 and "not this repo" in r.stderr, r.stderr


def test_a_bad_catalog_file_is_named(modelfs_bin, tmp_path):
    bad = tmp_path / "cat.toml"
    bad.write_text('[[model]]\nname = "x"\nrevision = "main"\n')
    env = dict(os.environ, MODELFS_CATALOG=str(bad))
    r = catalog(modelfs_bin, env=env)
    assert r.returncode == 2 and str(bad) + ":1:1:" in r.stderr, r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text('[models.vae]\nv = { catalog = "x" }\n')
    r = run([modelfs_bin, "check", "--offline", cfg], env=env, timeout=60)
    assert r.returncode == 2 and "catalog cannot be read" in r.stderr, r.stderr


def test_a_catalog_entry_mounts_its_pinned_file(hub, mount, modelfs_bin, tmp_path):
    commit = commit_sha(hub, "org/tiny")
    _, info = hf_fixture(hub, "org/tiny", "model.safetensors")
    cat = tmp_path / "catalog.toml"
    cat.write_text('[[model]]\nname = "tiny"\ntitle = "A tiny model"\ncategory = "checkpoints"\n'
                   'repo = "org/tiny"\nfile = "model.safetensors"\nrevision = "%s"\n'
                   'license = "mit"\ngated = false\nsize = %d\nsha256 = "%s"\n'
                   % (commit, info["size"], info["sha256"]))
    m = mount(hf_conf(hub, {"lora": {"mine": '{ catalog = "tiny", pin = true }'}}),
              env={"MODELFS_CATALOG": str(cat)})
    # In the category of the table it is written under, not the catalog's.
    path = m.path / "Lora" / "model.safetensors"
    want = Path(info["blob"]).read_bytes()
    assert pread(path, 0, len(want)) == want
    wait_state(path, "verified")


def test_catalog_add_writes_the_entry_into_a_config(modelfs_bin, tmp_path):
    """Into the category's table where the file has one (comments and the
    rest kept), else a new table at the end; the result loads, or nothing
    is written."""
    cfg = tmp_path / "models.toml"
    original = ('# my models\n[modelfs]\nlayout = "comfyui"\n\n[models.checkpoints]\n'
                '# keep this comment\nmine = "https://example.com/mine.safetensors"\n')
    cfg.write_text(original)
    r = run([modelfs_bin, "catalog", "add", "sdxl-base", "--config", cfg])
    assert r.returncode == 0 and "added sdxl-base to [models.checkpoints]" in r.stdout, r.stderr
    text = cfg.read_text()
    assert text.startswith('# my models\n[modelfs]\nlayout = "comfyui"\n\n[models.checkpoints]\n'
                           '"sdxl-base" = { catalog = "sdxl-base" }\n# keep this comment\n'), text
    r = run([modelfs_bin, "catalog", "add", "sdxl-vae", "--config", cfg, "--category", "vae"])
    assert r.returncode == 0, r.stderr
    assert cfg.read_text().endswith('\n[models.vae]\n"sdxl-vae" = { catalog = "sdxl-vae" }\n')
    r = run([modelfs_bin, "check", "--offline", cfg])
    assert r.returncode == 0 and "checkpoints/sd_xl_base_1.0.safetensors" in r.stdout, r.stdout
    before = cfg.read_text()
    r = run([modelfs_bin, "catalog", "add", "sdxl-base", "--config", cfg])
    assert r.returncode == 2 and "already has sdxl-base" in r.stderr, r.stderr
    r = run([modelfs_bin, "catalog", "add", "no-such-model", "--config", cfg])
    assert r.returncode == 2 and "catalog search" in r.stderr, r.stderr
    # sdxl-vae and sd-vae-ft-mse... file names that clash would not load:
    # refused, the file untouched.
    r = run([modelfs_bin, "catalog", "add", "sdxl-vae-fp16-fix", "--config", cfg,
             "--category", "vae"])
    assert r.returncode == 2 and "would not load" in r.stderr, r.stderr
    assert cfg.read_text() == before
