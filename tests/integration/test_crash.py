"""kill -9 at seeded moments: while blocks are fetched and written, files
hashed, the index committed and blocks evicted (a cache smaller than the
files). Afterwards every block the index holds verifies, and the next
mount reads every byte exact. Seeds share a cache CHAIN at a time: the
mount after one seed's kill is the next seed's, so a seed costs one mount.
MODELFS_CRASH_SEEDS sets how many (CI: 50, tools/nightly: 200),
MODELFS_CRASH_FIRST the first."""

import json
import os
import random
import subprocess
import threading
import time

import pytest

from mfs import MiB, config, url_entry
from test_ops import cli

SEEDS = int(os.environ.get("MODELFS_CRASH_SEEDS", "50"))
FIRST = int(os.environ.get("MODELFS_CRASH_FIRST", "1"))
CHAIN = 10
# 256 KiB blocks, 3.4 MiB of files in a 2 MiB cache: eviction runs all
# along, and each file fits, so whole files are hashed too.
SIZES = (MiB + 4321, MiB + 150000, MiB + 333333)


def chains():
    seeds = list(range(FIRST, FIRST + SEEDS))
    return [seeds[i:i + CHAIN] for i in range(0, len(seeds), CHAIN)]


def reader(path, want, rng, stop, wrong, whole=False):
    """Random reads until stop (or, whole, the file once from start to
    end): errors are expected once the daemon dies, wrong bytes never."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    off = 0
    try:
        while not stop.is_set() and off < len(want):
            at = off if whole else rng.randrange(0, len(want))
            try:
                got = os.pread(fd, rng.choice((4096, 65536, 262144)), at)
            except OSError:
                return
            if got != want[at:at + len(got)]:
                wrong.append("wrong bytes from %s at %d" % (path.name, at))
                return
            off = at + len(got)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass                # the daemon is gone


def verify_clean(modelfs_bin, tmp_path, cache, config_path, seed):
    """Every block the index holds is the origin's."""
    r = cli(modelfs_bin, tmp_path, "verify", "--cache-dir", cache, "--config", config_path,
            "--json")
    out = json.loads(r.stdout)
    assert out["bad"] == 0, (seed, out)
    assert all(f["bad_blocks"] == 0 and f["hash"] != "mismatch" for f in out["files"]), \
        (seed, out)


@pytest.mark.parametrize("seeds", chains(), ids=lambda s: "seeds-%d-%d" % (s[0], s[-1]))
def test_kill_9_at_a_seeded_moment_leaves_only_good_blocks(hub, mount, modelfs_bin, tmp_path,
                                                           seeds):
    names = ["k%d.bin" % i for i in range(len(SIZES))]
    shas = {n: hub.add_file(n, size, seed=seeds[0] * 10 + i)[1]
            for i, (n, size) in enumerate(zip(names, SIZES))}
    want = {n: (hub.root / n).read_bytes() for n in names}
    text = config({"vae": {"f%d" % i: url_entry(hub.url(n), sha256=shas[n])
                           for i, n in enumerate(names)}},
                  settings='cache_max_size = "2M"\ncache_min_free = 0', block_size="256K")
    cache = tmp_path / "cache"
    hub.faults(method="GET", rate_bps=8 * MiB)
    for seed in seeds:
        rng = random.Random(seed)
        m = mount(text, cache_dir=cache)
        stop, wrong = threading.Event(), []
        threads = [threading.Thread(target=reader, args=(
            m.path / "VAE" / n, want[n], random.Random(seed * 100 + k), stop, wrong))
            for k, n in enumerate(names * 2)]
        for t in threads:
            t.start()
        prefetch = subprocess.Popen([str(modelfs_bin), "prefetch", "--cache-dir", str(cache),
                                     str(m.path / "VAE" / rng.choice(names))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.02, 0.4))
        m.kill()
        stop.set()
        for t in threads:
            t.join(20)
        prefetch.wait(20)
        assert not wrong, (seed, wrong)
        m.unmount()                             # clears the dead mount
        verify_clean(modelfs_bin, tmp_path, cache, m.config_path, seed)
    # The origin at full speed: every byte exact from what the kills left.
    hub.clear_faults()
    m = mount(text, cache_dir=cache)
    for n in names:
        assert (m.path / "VAE" / n).read_bytes() == want[n], n
    m.unmount()
    verify_clean(modelfs_bin, tmp_path, cache, m.config_path, "last")
