"""Power loss: the daemon runs with tests/shim/powerloss.c preloaded (it
journals every change to the cache's data files and its SQLite index and
WAL that no fsync/fdatasync made durable), is killed with SIGKILL at a
seeded moment while blocks are fetched, files hashed, the index committed
and blocks evicted (a cache smaller than the files), and then a seeded
power loss keeps, drops or garbles each of those changes on its own
(tests/integration/powerloss.py).

Afterwards the index may have forgotten blocks, but every block row it
holds is the origin's bytes or is caught by its XXH3: `modelfs verify`
drops exactly the rows whose bytes are not the origin's, no read through
the next mount returns other bytes, and `prefetch --into` places exact
files. A file the index calls complete or verified has no such row. Seeds share a cache CHAIN at a time, so that the mount after one
seed's power loss is the next seed's (each seed costs one mount).
MODELFS_POWERLOSS_SEEDS sets how many (CI: 100; tools/nightly: 500),
MODELFS_POWERLOSS_FIRST the first."""

import errno
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

from mfs import MiB, config, run, url_entry, wait_state
from powerloss import inexact_rows, power_loss
from test_crash import reader

SEEDS = int(os.environ.get("MODELFS_POWERLOSS_SEEDS", "100"))
FIRST = int(os.environ.get("MODELFS_POWERLOSS_FIRST", "1"))
CHAIN = 10
KiB = 1 << 10
# Distinct sizes: a file of the index is known by its size. 64 KiB blocks,
# 5 to 7 of them each, in a cache that holds any one or two: eviction all
# along, hashing of whole files too.
SIZES = (300 * KiB + 17, 380 * KiB + 3, 430 * KiB + 401)
SETTINGS = 'cache_max_size = "832K"\ncache_min_free = 0\nheader_prefetch = false'
# After a power loss: blocks failing their XXH3, an index that lost rows.
AFTER_LOSS = [r"checksum|xxh3|bad_block|mismatch|orphan|index"]


# Decided before the fixtures start a hub for nothing.
needs_shim = pytest.mark.skipif(
    any(k in os.environ for k in ("ASAN_OPTIONS", "TSAN_OPTIONS")),
    reason="a preloaded shim and a sanitizer runtime do not mix; the plain build runs it")


def shim():
    so = Path(os.environ.get("MODELFS_BIN", "build/modelfs")).resolve().parent / "tests" / \
        "powerloss.so"
    if not so.exists():
        pytest.fail("%s is missing: the build makes it (tests/meson.build)" % so)
    return so


def chains():
    seeds = list(range(FIRST, FIRST + SEEDS))
    return [seeds[i:i + CHAIN] for i in range(0, len(seeds), CHAIN)]


def read_exact(path, want):
    """The whole file through the mount: exact, or EIO (nothing else)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while off < len(want):
            try:
                got = os.pread(fd, 128 * KiB, off)
            except OSError as e:
                assert e.errno == errno.EIO, e
                off += 128 * KiB
                continue
            assert got and got == want[off:off + len(got)], "other bytes at %d of %s" % (
                off, path.name)
            off += len(got)
    finally:
        os.close(fd)


def verify_drops_exactly(modelfs_bin, cache, config_path, bad, by_path):
    """`modelfs verify`: the rows whose bytes are not the origin's are the
    blocks it finds bad, file by file; no whole-file hash differs."""
    r = run([modelfs_bin, "verify", "--json", "--cache-dir", cache, "--config", config_path],
            timeout=60)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    out = json.loads(r.stdout)
    for f in out["files"]:
        size = by_path[f["path"]]
        assert f["bad_blocks"] == bad.get(size, 0), (f, bad)
        assert f["hash"] != "mismatch", f
    assert (r.returncode == 1) == bool(bad), (r.returncode, bad)


def place_exact(modelfs_bin, cache, config_path, into, name, want):
    """prefetch --into (no FUSE, the cache kept) of one file: it is placed
    with the origin's bytes."""
    r = run([modelfs_bin, "prefetch", "--into", into, "--keep-cache", "--cache-dir", cache,
             "--config", config_path, "VAE/" + name], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (into / "VAE" / name).read_bytes() == want, "prefetch --into placed other bytes"


@needs_shim
@pytest.mark.parametrize("seeds", chains(), ids=lambda s: "seeds-%d-%d" % (s[0], s[-1]))
def test_power_loss_never_vouches_for_other_bytes(hub, mount, modelfs_bin, tmp_path, seeds):
    so = shim()
    names = ["p%d.bin" % i for i in range(len(SIZES))]
    shas = {n: hub.add_file(n, size, seed=seeds[0] * 10 + i)[1]
            for i, (n, size) in enumerate(zip(names, SIZES))}
    want = {n: (hub.root / n).read_bytes() for n in names}
    origin = {len(b): b for b in want.values()}
    by_path = {"VAE/" + n: len(want[n]) for n in names}
    text = config({"vae": {n.split(".")[0]: url_entry(hub.url(n), sha256=shas[n])
                           for n in names}}, settings=SETTINGS, block_size="64K")
    cache = tmp_path / "cache"
    journal = tmp_path / "journal"
    env = {"LD_PRELOAD": str(so), "POWERLOSS_JOURNAL": str(journal),
           "POWERLOSS_MATCH": "%s/data/:%s/index.sqlite" % (cache, cache)}
    hub.faults(method="GET", rate_bps=3 * MiB)
    fates = {"kept": 0, "dropped": 0, "garbled": 0}
    caught = damaged = 0
    for n_seed, seed in enumerate(seeds):
        rng = random.Random(seed)
        m = mount(text, cache_dir=cache, env=env, allowed_errors=AFTER_LOSS)
        stop, wrong = threading.Event(), []
        threads = [threading.Thread(target=reader, args=(
            m.path / "VAE" / n, want[n], random.Random(seed * 100 + k), stop, wrong, k == 0))
            for k, n in enumerate(rng.sample(names, len(names)) + [rng.choice(names)])]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.5))
        m.kill()
        stop.set()
        for t in threads:
            t.join(20)
        assert not wrong, (seed, wrong)
        m.unmount()
        for k, v in power_loss(journal, rng).items():
            fates[k] += v
        bad, in_whole = inexact_rows(cache, tmp_path / "scratch", origin)
        if bad is None:
            damaged += 1        # the next mount must start afresh
            continue
        caught += sum(bad.values())
        # Rows may name lost bytes; a file called whole may not.
        assert in_whole == 0, "seed %d: %d rows of files called complete or verified are " \
            "not the origin's bytes: %s" % (seed, in_whole, bad)
        # Every other seed verify drops what the loss left wrong; the ones
        # between leave it to the reads of the next mount, and some to
        # prefetch --into, which reads the data files without FUSE.
        if n_seed % 2 == 0:
            verify_drops_exactly(modelfs_bin, cache, m.config_path, bad, by_path)
        elif n_seed % 4 == 1:
            name = rng.choice(names)
            place_exact(modelfs_bin, cache, m.config_path, tmp_path / ("into%d" % seed), name,
                        want[name])
    # Once more, without the shim: every byte exact, every file placed
    # exact without FUSE, nothing bad left.
    m = mount(text, cache_dir=cache, allowed_errors=AFTER_LOSS)
    for n in names:
        read_exact(m.path / "VAE" / n, want[n])
    m.unmount()
    r = run([modelfs_bin, "verify", "--cache-dir", cache, "--config", m.config_path], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert fates["dropped"] and fates["kept"], fates
    print("power loss %s: changes %s, inexact rows caught %d, index damaged %d"
          % (seeds, fates, caught, damaged))


def test_into_does_not_place_a_block_a_power_loss_took(hub, mount, modelfs_bin, tmp_path):
    """A verified file whose block the power loss took after the index
    said it was there (zeros, as a lost write leaves a sparse file): prefetch
    --into checks what it places, as a read does, and fetches it again."""
    name = "lost.bin"
    _, sha = hub.add_file(name, SIZES[1], seed=7)
    want = (hub.root / name).read_bytes()
    text = config({"vae": {"lost": url_entry(hub.url(name), sha256=sha)}},
                  settings=SETTINGS, block_size="64K")
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache)
    assert (m.path / "VAE" / name).read_bytes() == want
    wait_state(m.path / "VAE" / name, "verified")
    m.unmount()
    [data] = (cache / "data").iterdir()
    with open(data, "r+b") as f:
        f.seek(2 * 64 * KiB)
        f.write(bytes(64 * KiB))
    for keep in (True, False):
        into = tmp_path / ("into-%s" % keep)
        r = run([modelfs_bin, "prefetch", "--into", into, "--cache-dir", cache,
                 "--config", m.config_path] + (["--keep-cache"] if keep else []), timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (into / "VAE" / name).read_bytes() == want, "placed the lost block's zeros"


@needs_shim
def test_a_file_is_called_verified_only_over_bytes_on_disk(hub, mount, modelfs_bin, tmp_path):
    """The worst power loss for the index: every change to it kept, every
    change to the data files not synced lost. The index may still name
    blocks whose bytes are gone (their XXH3 catches them), but it calls no
    file complete or verified over them: the bytes are synced first."""
    so = shim()
    name = "whole.bin"
    _, sha = hub.add_file(name, SIZES[2], seed=11)
    want = (hub.root / name).read_bytes()
    text = config({"vae": {"whole": url_entry(hub.url(name), sha256=sha)}},
                  settings=SETTINGS, block_size="64K")
    cache, journal = tmp_path / "cache", tmp_path / "journal"
    env = {"LD_PRELOAD": str(so), "POWERLOSS_JOURNAL": str(journal),
           "POWERLOSS_MATCH": "%s/data/:%s/index.sqlite" % (cache, cache)}
    m = mount(text, cache_dir=cache, env=env)
    assert (m.path / "VAE" / name).read_bytes() == want
    wait_state(m.path / "VAE" / name, "verified")
    m.kill()
    m.unmount()
    fates = power_loss(journal, random.Random(1),
                       fate_of=lambda r: "kept" if "index.sqlite" in r.path else "dropped")
    assert fates["kept"], fates
    bad, in_whole = inexact_rows(cache, tmp_path / "scratch", {len(want): want})
    assert bad is not None and in_whole == 0, (bad, fates)


@needs_shim
def test_the_model_restores_what_was_on_disk_at_the_last_sync(tmp_path):
    """The harness itself: changes before a sync survive any loss; after
    it, all dropped gives the synced bytes and size back, all kept gives
    the last ones."""
    so, journal, path = shim(), tmp_path / "journal", tmp_path / "data" / "f"
    path.parent.mkdir()
    script = ("import os\n"
              "fd = os.open(%r, os.O_RDWR | os.O_CREAT)\n"
              "os.pwrite(fd, b'a' * 10000, 0)\n"
              "os.fsync(fd)\n"
              "os.pwrite(fd, b'b' * 3000, 5000)\n"
              "os.ftruncate(fd, 9000)\n"
              "os.pwrite(fd, b'c' * 100, 12000)\n" % str(path))
    env = dict(os.environ, LD_PRELOAD=str(so), POWERLOSS_JOURNAL=str(journal),
               POWERLOSS_MATCH=str(path.parent) + "/")
    last = b"a" * 5000 + b"b" * 3000 + b"a" * 1000 + bytes(3000) + b"c" * 100
    for fate, want in (("dropped", b"a" * 10000), ("kept", last)):
        path.unlink(missing_ok=True)
        r = run(["/usr/bin/python3", "-c", script], env=env)
        assert r.returncode == 0, r.stderr
        assert path.read_bytes() == last
        fates = power_loss(journal, random.Random(1), fate_of=lambda r: fate)
        assert fates[fate] == 3, fates
        assert path.read_bytes() == want, fate
