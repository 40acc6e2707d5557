"""kill -9 at seeded moments: while blocks are fetched and written, files
hashed, the index committed and blocks evicted (a cache smaller than the
files). Afterwards every block the index holds verifies, and a remount
reads every byte exact. MODELFS_CRASH_SEEDS sets how many (CI: a sample,
tools/nightly: 200)."""

import json
import os
import random
import subprocess
import threading
import time

import pytest

from mfs import MiB, config, url_entry
from test_ops import cli

SEEDS = int(os.environ.get("MODELFS_CRASH_SEEDS", "8"))


def reader(path, want, rng, stop, wrong):
    """Random reads until stop; errors are expected once the daemon dies,
    wrong bytes never."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        while not stop.is_set():
            off = rng.randrange(0, len(want))
            try:
                got = os.pread(fd, rng.choice((4096, 262144, MiB)), off)
            except OSError:
                return
            if got != want[off:off + len(got)]:
                wrong.append("wrong bytes from %s at %d" % (path.name, off))
    finally:
        os.close(fd)


@pytest.mark.parametrize("seed", range(1, SEEDS + 1))
def test_kill_9_at_a_seeded_moment_leaves_only_good_blocks(hub, mount, modelfs_bin, tmp_path,
                                                           seed):
    rng = random.Random(seed)
    files = {}
    for i in range(3):
        name = "k%d-%d.bin" % (seed, i)
        _, sha = hub.add_file(name, 6 * MiB, seed=seed * 10 + i)
        files[name] = sha
    # 10 MiB of cache for 18 MiB of files: eviction runs all along.
    text = config({"vae": {"f%d" % i: url_entry(hub.url(name), sha256=sha)
                           for i, (name, sha) in enumerate(files.items())}},
                  settings='cache_max_size = "10M"\ncache_min_free = 0')
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache)
    hub.faults(method="GET", rate_bps=24 * MiB)
    want = {n: (hub.root / n).read_bytes() for n in files}
    stop, wrong = threading.Event(), []
    threads = [threading.Thread(target=reader, args=(m.path / "VAE" / n, want[n],
                                                     random.Random(seed * 100 + k), stop, wrong))
               for k, n in enumerate(list(files) * 2)]
    for t in threads:
        t.start()
    first = next(iter(files))
    prefetch = subprocess.Popen([str(modelfs_bin), "prefetch", "--cache-dir", str(cache),
                                 str(m.path / "VAE" / first)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.05, 1.2))
    m.kill()
    stop.set()
    for t in threads:
        t.join(20)
    prefetch.wait(20)
    assert not wrong, wrong
    m.unmount()                                 # clears the dead mount
    hub.clear_faults()
    # Every block the index holds is the origin's.
    r = cli(modelfs_bin, tmp_path, "verify", "--cache-dir", cache, "--config", m.config_path,
            "--json")
    out = json.loads(r.stdout)
    assert out["bad"] == 0, out
    assert all(f["bad_blocks"] == 0 and f["hash"] != "mismatch" for f in out["files"]), out
    m2 = mount(text, cache_dir=cache)
    for n in files:
        assert (m2.path / "VAE" / n).read_bytes() == want[n], n
