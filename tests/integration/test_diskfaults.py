"""The cache's disk failing under a live mount: writes and syncs of the
data files, the SQLite index or its WAL fail with ENOSPC or EIO (an
LD_PRELOAD shim, tests/shim/failwrite.c, every Nth call while a switch file
exists). Every read gets the exact bytes (a block the cache could not keep
is served uncached), never other bytes; the daemon lives; once the disk is
healthy again every file reads whole and exact, `verify` finds nothing bad,
and a remount serves them."""

import errno
import hashlib
import os
from pathlib import Path

import pytest

from mfs import MiB, config, run, url_entry, wait_for

SIZE = 6 * MiB + 4321
CHUNK = 256 * 1024


def shim():
    so = Path(os.environ.get("MODELFS_BIN", "build/modelfs")).resolve().parent / "tests" / \
        "failwrite.so"
    if any(k in os.environ for k in ("ASAN_OPTIONS", "TSAN_OPTIONS")):
        pytest.skip("a preloaded shim and a sanitizer runtime do not mix; the plain build runs it")
    if not so.exists():
        pytest.fail("%s is missing: the build makes it (tests/meson.build)" % so)
    return so


def read_all(path, want):
    """Every byte exact or a clean EIO (counted, then skipped a chunk on):
    never other bytes, never an early end. A read the kernel splits may
    come back short before an EIO: it goes on from there."""
    eio, off = 0, 0
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while off < len(want):
            try:
                got = os.pread(fd, CHUNK, off)
            except OSError as e:
                assert e.errno == errno.EIO, e
                eio += 1
                off = (off // CHUNK + 1) * CHUNK
                continue
            assert got, "end of file at %d of %d in %s" % (off, len(want), path)
            assert got == want[off:off + len(got)], "other bytes at %d of %s" % (off, path)
            off += len(got)
    finally:
        os.close(fd)
    return eio


@pytest.mark.parametrize("err,where,every", [
    ("ENOSPC", "data", 3), ("EIO", "data", 2),
    ("EIO", "index.sqlite", 3), ("ENOSPC", "index.sqlite", 2)])
def test_cache_write_faults_never_serve_other_bytes(hub, mount, modelfs_bin, tmp_path, err,
                                                    where, every):
    so = shim()
    names = ["f%d.bin" % i for i in range(3)]
    shas = {n: hub.add_file(n, SIZE, seed=i + 1)[1] for i, n in enumerate(names)}
    want = {n: (hub.root / n).read_bytes() for n in names}
    text = config({"vae": {n.split(".")[0]: url_entry(hub.url(n), sha256=shas[n])
                           for n in names}})
    cache = tmp_path / "cache"
    switch = tmp_path / "disk-bad"
    env = {"LD_PRELOAD": str(so), "FAILWRITE_MATCH": str(cache / where),
           "FAILWRITE_ERRNO": err, "FAILWRITE_EVERY": str(every), "FAILWRITE_SWITCH": str(switch)}
    m = mount(text, cache_dir=cache, env=env, allowed_errors=[r"."])
    switch.touch()
    # A disk that fails the cache fails no read the network can serve: the
    # block goes to the reader uncached.
    for n in names:
        assert read_all(m.path / "VAE" / n, want[n]) == 0
    count = Path(str(switch) + ".count")
    assert count.exists() and count.read_text().strip() not in ("", "0"), \
        "the shim never failed a call"
    assert m.pid and os.path.exists("/proc/%d" % m.pid), "the daemon died"
    # The disk is healthy again: every byte, exact, and nothing bad kept.
    switch.unlink()
    for n in names:
        assert read_all(m.path / "VAE" / n, want[n]) == 0
    r = run([modelfs_bin, "verify", "--cache-dir", cache], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m.unmount()
    m = mount(text, cache_dir=cache)
    for n in names:
        assert read_all(m.path / "VAE" / n, want[n]) == 0
    r = run([modelfs_bin, "verify", "--cache-dir", cache], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
