"""prefetch --into DIR: the configured models in a plain folder, verified,
in the layout, without FUSE; atomic per file, resumable, one copy on disk."""

import os
import hashlib
import json
import signal
import subprocess

from mfs import MiB, bytes_fetched, config, url_entry, wait_for
from test_ops import cli, cli_env

XATTR = "user.modelfs.sha256"


def setup_models(hub, tmp_path, settings=""):
    a, sha_a = hub.add_file("a.bin", 3 * MiB, seed=1)
    b, _ = hub.add_file("b.safetensors", 6 * MiB, kind="safetensors", seed=2)
    text = config({"vae": {"a": url_entry(hub.url("a.bin"), sha256=sha_a)},
                   "lora": {"b": '"%s"' % hub.url("b.safetensors")}},
                  settings=settings)
    cfg = tmp_path / "models.toml"
    cfg.write_text(text)
    return cfg, {"VAE/a.bin": a.read_bytes(), "Lora/b.safetensors": b.read_bytes()}


def leftovers(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".modelfs-part" in p.name)


def test_into_places_every_file_verified_once_and_a_rerun_fetches_nothing(
        hub, modelfs_bin, tmp_path):
    # The cache limit is smaller than either file: --into is not bound by it.
    cfg, want = setup_models(hub, tmp_path, settings='cache_max_size = "1M"')
    out = tmp_path / "models"
    r = cli(modelfs_bin, tmp_path, "prefetch", "--into", out, "--config", cfg, expect=0)
    assert "placed 2 files in %s" % out in r.stdout, r.stdout
    # Blocks not fetched yet are not blocks that failed their check.
    assert "prefetch_recheck" not in r.stderr, r.stderr
    for rel, data in want.items():
        p = out / rel
        assert p.read_bytes() == data, rel
        assert len(os.getxattr(p, XATTR)) == 64
        assert p.stat().st_nlink == 1          # the cache kept no link to it
    assert os.getxattr(out / "VAE" / "a.bin", XATTR).decode() == \
        hashlib.sha256(want["VAE/a.bin"]).hexdigest()
    assert leftovers(out) == []
    assert not (out / ".modelfs-cache").exists()     # the transit cache is gone
    fetched = bytes_fetched(hub, "a.bin") + bytes_fetched(hub, "b.safetensors")
    assert fetched == 9 * MiB                        # each byte once

    r = cli(modelfs_bin, tmp_path, "prefetch", "--into", out, "--config", cfg, expect=0)
    assert "2 files are already in" in r.stderr + r.stdout
    assert bytes_fetched(hub, "a.bin") + bytes_fetched(hub, "b.safetensors") == fetched

    # A damaged copy is not taken for the file: fetched and placed again.
    with open(out / "VAE" / "a.bin", "r+b") as f:
        f.truncate(MiB)
    cli(modelfs_bin, tmp_path, "prefetch", "--into", out, "--config", cfg, expect=0)
    assert (out / "VAE" / "a.bin").read_bytes() == want["VAE/a.bin"]


def test_an_interrupted_into_leaves_no_partial_file_and_resumes(hub, modelfs_bin, tmp_path):
    # One connection: blocks arrive one after another, 0.5 s each.
    cfg, want = setup_models(hub, tmp_path, settings="connections = 1")
    hub.faults(path="b.safetensors", rate_bps=2 * MiB)
    out = tmp_path / "models"
    p = subprocess.Popen([str(modelfs_bin), "prefetch", "--into", str(out), "--config", str(cfg),
                          "-j", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=cli_env(tmp_path), stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: bytes_fetched(hub, "b.safetensors") >= 2 * MiB, timeout=30,
                 what="two blocks of b fetched")
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert not (out / "Lora" / "b.safetensors").exists()
    assert leftovers(out) == []

    hub.reset()
    cli(modelfs_bin, tmp_path, "prefetch", "--into", out, "--config", cfg, expect=0)
    for rel, data in want.items():
        assert (out / rel).read_bytes() == data, rel
    # The rerun fetched what was missing, not the whole file again.
    assert bytes_fetched(hub, "b.safetensors") <= 4 * MiB


def test_into_with_keep_cache_leaves_a_cached_copy(hub, modelfs_bin, tmp_path):
    cfg, want = setup_models(hub, tmp_path)
    out, cache = tmp_path / "models", tmp_path / "cache"
    cli(modelfs_bin, tmp_path, "prefetch", "--into", out, "--keep-cache", "--cache-dir", cache,
        "--config", cfg, expect=0)
    assert (out / "VAE" / "a.bin").read_bytes() == want["VAE/a.bin"]
    r = cli(modelfs_bin, tmp_path, "status", "--cache-dir", cache, "--config", cfg, "--json",
            expect=0)
    states = {f["path"]: f["state"] for f in json.loads(r.stdout)["files"]}
    assert states == {"VAE/a.bin": "verified", "Lora/b.safetensors": "complete"}, states


def test_a_failed_file_is_named_and_fails_the_run(hub, modelfs_bin, tmp_path):
    cfg, want = setup_models(hub, tmp_path, settings="retry_timeout = 1")
    out = tmp_path / "models"
    hub.faults(path="b.safetensors", method="GET", fail=[500] * 100)
    r = cli(modelfs_bin, tmp_path, "prefetch", "--into", out, "--config", cfg)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "b.safetensors" in r.stderr
    assert "all verified" not in r.stdout
    assert (out / "VAE" / "a.bin").read_bytes() == want["VAE/a.bin"]
    assert not (out / "Lora" / "b.safetensors").exists() and leftovers(out) == []


def test_mount_without_fuse_points_at_prefetch_into(hub, modelfs_bin, tmp_path):
    cfg, _ = setup_models(hub, tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # A private mount namespace in which /dev/fuse is not the FUSE device.
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        'mount --bind /dev/null /dev/fuse && exec "$@"', "sh",
                        str(modelfs_bin), "mount", "--cache-dir", str(tmp_path / "c"), str(cfg),
                        str(mnt)], capture_output=True, text=True, timeout=60,
                       env=cli_env(tmp_path), stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "--device /dev/fuse --cap-add SYS_ADMIN" in r.stderr, r.stderr
    assert "prefetch --into" in r.stderr, r.stderr
    assert not os.path.ismount(mnt)


def test_into_refuses_a_cache_a_mount_is_using(hub, mount, modelfs_bin, tmp_path):
    cfg, _ = setup_models(hub, tmp_path)
    m = mount(cfg.read_text())
    r = cli(modelfs_bin, tmp_path, "prefetch", "--into", tmp_path / "out", "--cache-dir",
            m.cache_dir, "--config", cfg)
    assert r.returncode == 2 and "belongs to the mount" in r.stderr, r.stderr
