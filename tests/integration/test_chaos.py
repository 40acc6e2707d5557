"""The seeded fault matrix: every request for a file may meet a reset, a
short body, a wrong Content-Range, a 200 to a Range, an HTML page, a 503 or
429, or a stall (the fake hub's `chaos` rule, one seed per file). However
they fall, every read returns the origin's bytes or fails cleanly within
the retry bound, and once the faults stop the whole file reads exact and
verifies. MODELFS_CHAOS_SEEDS sets how many seeds (CI: a sample;
tools/nightly: 1,000+); MODELFS_CHAOS_FIRST the first. A seed's time is
mostly waiting (stalls, backoff, Retry-After), so many seeds share a mount
and READERS of them run at once."""

import errno
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mfs import MiB, config, url_entry, wait_state

SEEDS = int(os.environ.get("MODELFS_CHAOS_SEEDS", "200"))
FIRST = int(os.environ.get("MODELFS_CHAOS_FIRST", "1"))
PER_MOUNT = 50
READERS = 12
RETRY_SEC = 4
SIZE = 2 * MiB + 12345


def batches():
    seeds = list(range(FIRST, FIRST + SEEDS))
    return [seeds[i:i + PER_MOUNT] for i in range(0, len(seeds), PER_MOUNT)]


def read_checked(path, want, rng, failures, bound):
    """Seeded reads of path: each exact or EIO, none slower than bound."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(12):
            off = rng.randrange(0, len(want))
            n = rng.choice((1, 4096, 65536, 300000, MiB))
            t0 = time.monotonic()
            try:
                got = os.pread(fd, n, off)
            except OSError as e:
                if e.errno != errno.EIO:
                    failures.append("%s: errno %d at %d" % (path.name, e.errno, off))
                got = None
            took = time.monotonic() - t0
            if took > bound:
                failures.append("%s: a read took %.1f s" % (path.name, took))
            # A read over a block that failed may stop short before it (as
            # read(2) may): the bytes it did return must be the origin's.
            expect = want[off:off + n]
            if got is not None and (got != expect[:len(got)] or
                                    (not got and expect)):
                failures.append("%s: WRONG BYTES at %d+%d (got %d)" % (path.name, off, n,
                                                                      len(got)))
    finally:
        os.close(fd)


@pytest.mark.parametrize("seeds", batches(), ids=lambda s: "seeds-%d-%d" % (s[0], s[-1]))
def test_faults_never_give_wrong_bytes(hub, mount, seeds):
    files = {}
    for seed in seeds:
        name = "chaos-%d.bin" % seed
        _, sha = hub.add_file(name, SIZE, seed=seed)
        files[seed] = (name, sha)
    text = config({"vae": {"s%d" % seed: url_entry(hub.url(name), sha256=sha)
                           for seed, (name, sha) in files.items()}},
                  settings="retry_timeout = %d" % RETRY_SEC)
    # Faults that end in an error are expected: only wrong bytes or hangs fail.
    m = mount(text, allowed_errors=[r"chaos-\d+\.bin"])
    for seed, (name, _) in files.items():
        hub.faults(path=name, method="GET", chaos={"seed": seed, "p": 0.35})
    failures = []
    bound = RETRY_SEC + 15
    with ThreadPoolExecutor(READERS) as pool:
        list(pool.map(lambda seed: read_checked(
            m.path / "VAE" / files[seed][0], (hub.root / files[seed][0]).read_bytes(),
            random.Random(seed), failures, bound), files))
    assert not failures, "\n".join(failures)
    # Once the origin behaves, every file reads exact and verifies.
    hub.clear_faults()
    time.sleep(1.1)             # a block that failed for good fails for 1 s more

    def exact_and_verified(name):
        path = m.path / "VAE" / name
        assert path.read_bytes() == (hub.root / name).read_bytes(), name
        wait_state(path, "verified")
    with ThreadPoolExecutor(READERS) as pool:
        list(pool.map(exact_and_verified, [name for name, _ in files.values()]))
