"""The cache survives remounts, works offline, is crash-safe and bounded."""

import errno
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mfs import (MiB, bytes_fetched, config, data_requests, file_slice, pread, run, url_entry,
                 wait_for, wait_state, xattr)


def data_bytes(cache_dir):
    """Bytes the cache's data files really take on disk."""
    total = 0
    for p in (cache_dir / "data").iterdir():
        total += p.stat().st_blocks * 512
    return total


def test_remount_fetches_nothing_again(hub, mount, tmp_path):
    src, _ = hub.add_file("r.bin", 20 * MiB)
    cfg = config({"vae": {"r": '"%s"' % hub.url("r.bin")}})
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    path = m.path / "VAE" / "r.bin"
    first = path.read_bytes()
    inode, mtime = path.stat().st_ino, path.stat().st_mtime
    dir_mtime = (m.path / "VAE").stat().st_mtime
    wait_state(path, "complete")
    m.unmount()
    before = bytes_fetched(hub, "r.bin")
    m2 = mount(cfg, cache_dir=cache)
    path2 = m2.path / "VAE" / "r.bin"
    assert path2.read_bytes() == first == src.read_bytes()
    assert bytes_fetched(hub, "r.bin") == before
    assert (path2.stat().st_ino, path2.stat().st_mtime) == (inode, mtime)
    assert (m2.path / "VAE").stat().st_mtime == dir_mtime
    assert xattr(path2, "state") == "complete"


def test_the_cache_is_its_owners_alone(hub, mount, tmp_path):
    """A gated or private model's bytes in the cache are no other local
    user's: data/ and its files, and the index, are owner-only, also in a
    cache an older release made readable by all."""
    hub.add_file("p.bin", 2 * MiB)
    cfg = config({"vae": {"p": '"%s"' % hub.url("p.bin")}})
    cache = tmp_path / "cache"
    for attempt in ("new", "old release"):
        m = mount(cfg, cache_dir=cache)
        (m.path / "VAE" / "p.bin").read_bytes()
        m.unmount()
        modes = {p.name: p.stat().st_mode & 0o777 for p in [cache / "data", cache / "index.sqlite",
                                                             *(cache / "data").iterdir()]}
        assert len(modes) >= 3, modes
        assert modes.pop("data") == 0o700, (attempt, modes)
        assert set(modes.values()) == {0o600}, (attempt, modes)
        for p in [cache / "data", cache / "index.sqlite", *(cache / "data").iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_offline_remount_lists_everything_and_serves_cached_bytes(hub, mount, tmp_path):
    src, _ = hub.add_file("off.bin", 6 * MiB)
    hub.add_file("never-read.bin", 3 * MiB)
    cfg = config({"vae": {"a": '"%s"' % hub.url("off.bin"),
                          "b": '"%s"' % hub.url("never-read.bin")}},
                 settings="retry_timeout = 2")
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    want = pread(m.path / "VAE" / "off.bin", MiB, 2 * MiB)
    m.unmount()
    hub.faults(down=True)       # the origin is unreachable
    # The kernel's readahead may ask for an uncached block past the read.
    m2 = mount(cfg, cache_dir=cache,
               allowed_errors=[r"never-read\.bin", r"fetch_failed path=VAE/off\.bin"])
    assert sorted(os.listdir(m2.path / "VAE")) == ["never-read.bin", "off.bin"]
    assert (m2.path / "VAE" / "never-read.bin").stat().st_size == 3 * MiB
    assert pread(m2.path / "VAE" / "off.bin", MiB, 2 * MiB) == want == file_slice(src, MiB, 2 * MiB)
    with pytest.raises(OSError):
        pread(m2.path / "VAE" / "never-read.bin", 0, 10)
    assert "resolve_offline" in m2.log()
    # Its retries (until retry_timeout) were each logged, not silent.
    assert re.search(r"event=fetch_retry path=VAE/never-read\.bin .*cannot resolve: origin "
                     r"unreachable", m2.log()), m2.log()


UNMOUNT_RACE_RUNS = int(os.environ.get("MODELFS_UNMOUNT_RACE_RUNS", "20"))


@pytest.mark.parametrize("run", range(UNMOUNT_RACE_RUNS))
def test_bytes_a_reader_had_stay_cached_across_an_immediate_unmount(hub, mount, tmp_path, run):
    """A read answered early leaves the rest of its block in flight; an
    unmount right then finishes that block, so an offline remount serves
    the same bytes."""
    src, _ = hub.add_file("u.bin", 2 * MiB, seed=run)
    hub.faults(path="u.bin", rate_bps=4 * MiB)      # the block's tail is ~0.25 s behind
    cfg = config({"vae": {"u": '"%s"' % hub.url("u.bin")}}, block_size="2M",
                 settings="retry_timeout = 1")
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    want = pread(m.path / "VAE" / "u.bin", 0, 64 * 1024)
    m.unmount()
    assert want == file_slice(src, 0, 64 * 1024)
    hub.faults(down=True)
    m2 = mount(cfg, cache_dir=cache)
    assert pread(m2.path / "VAE" / "u.bin", 0, 64 * 1024) == want
    assert "resolve_offline" in m2.log()


def test_kill_9_mid_download_then_remount_serves_no_wrong_byte(hub, mount, tmp_path, modelfs_bin):
    src, sha = hub.add_file("crash.bin", 32 * MiB)
    cfg = config({"vae": {"c": url_entry(hub.url("crash.bin"), sha256=sha)}})
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    path = m.path / "VAE" / "crash.bin"
    hub.faults(path="crash.bin", rate_bps=8 * MiB)
    reader = threading.Thread(target=lambda: subprocess.run(["cat", str(path)],
                                                            capture_output=True), daemon=True)
    reader.start()
    wait_for(lambda: int(xattr(path, "cached")) >= 4 * MiB, what="some blocks")
    m.kill()
    reader.join(10)
    mnt = m.path
    with pytest.raises(OSError) as e:
        os.listdir(mnt)
    assert e.value.errno == errno.ENOTCONN
    hub.clear_faults()
    hub.reset()
    # Remount on the dead mountpoint: mount clears it by itself.
    r = run([modelfs_bin, "mount", "--cache-dir", cache, "--log-file", tmp_path / "m2.log",
             m.config_path, mnt])
    try:
        assert r.returncode == 0, r.stderr
        assert "stale_mount" in r.stderr
        assert [mp for mp in open("/proc/self/mountinfo").read().split() if mp == str(mnt)] \
            == [str(mnt)]           # one mount there, not one stacked on a dead one
        assert (mnt / "VAE" / "crash.bin").read_bytes() == src.read_bytes()
        wait_state(mnt / "VAE" / "crash.bin", "verified")
        refetched = bytes_fetched(hub, "crash.bin")
        assert refetched < 32 * MiB     # what was committed before the kill stayed
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
        wait_for(lambda: not os.path.ismount(mnt), what="unmount")


def old_release_cache(hub, tmp_path, part_key=None):
    """The cache the release before sub-block presence made, in 8 MiB blocks
    (data/cache-e537479.sql, its data files rebuilt from the hub's bytes):
    whole.bin (20 MiB, seed 7) cached whole and verified, part.bin (seed 8)
    with blocks 0 and 2 only; part_key files part.bin under another key.
    Returns (whole, its sha256, part, its sha256, the cache dir)."""
    whole, wsha = hub.add_file("whole.bin", 20 * MiB, seed=7)
    part, psha = hub.add_file("part.bin", 20 * MiB, seed=8)
    cache = tmp_path / "cache"
    (cache / "data").mkdir(parents=True)
    sql = (Path(__file__).parent / "data" / "cache-e537479.sql").read_text()
    assert wsha in sql and psha in sql          # the same bytes as then
    if part_key:
        sql = sql.replace("'sha256:%s'" % psha, "'%s'" % part_key)
    db = sqlite3.connect(str(cache / "index.sqlite"))
    db.executescript(sql)
    db.close()
    (cache / "data" / "1").write_bytes(whole.read_bytes())
    with open(cache / "data" / "2", "wb") as f:   # blocks 0 and 2 only, sparse
        f.truncate(20 * MiB)
        for off, n in ((0, 8 * MiB), (16 * MiB, 4 * MiB)):
            f.seek(off)
            f.write(file_slice(part, off, n))
    return whole, wsha, part, psha, cache


def read_when_back(path):
    """The whole file, once the reads that failed while its origin was down
    (a failed block fails again at once for a moment) stop failing."""
    got = []

    def attempt():
        try:
            got.append(path.read_bytes())
            return True
        except OSError as e:
            assert e.errno == errno.EIO, e
            return False
    wait_for(attempt, what="%s readable again" % path.name)
    return got[0]


def test_a_cache_made_by_the_previous_release_is_read_in_place(hub, mount, tmp_path):
    """The release before sub-block presence cached files in 8 MiB blocks.
    Its cache is used as it is: those files keep their blocks (checked at
    first read like any), a complete one is read with no request, and a
    partial one fetches only its missing 8 MiB block; nothing is dropped."""
    whole, wsha, part, psha, cache = old_release_cache(hub, tmp_path)
    hub.add_file("new.bin", 4 * MiB, seed=9)
    cfg = config({"vae": {"w": url_entry(hub.url("whole.bin"), sha256=wsha),
                          "p": url_entry(hub.url("part.bin"), sha256=psha),
                          "n": '"%s"' % hub.url("new.bin")}}, block_size="8M")
    m = mount(cfg, cache_dir=cache)
    # A file new to the cache gets this release's 256 KiB blocks beside them.
    pread(m.path / "VAE" / "new.bin", MiB, 4096)
    assert [r["range"] for r in data_requests(hub, "new.bin")] == [
        "bytes=%d-%d" % (MiB, MiB + 256 * 1024 - 1)]
    assert xattr(m.path / "VAE" / "whole.bin", "state") == "verified"
    assert (m.path / "VAE" / "whole.bin").read_bytes() == whole.read_bytes()
    assert data_requests(hub, "whole.bin") == []
    assert xattr(m.path / "VAE" / "part.bin", "cached") == str(12 * MiB)
    assert (m.path / "VAE" / "part.bin").read_bytes() == part.read_bytes()
    assert [r["range"] for r in data_requests(hub, "part.bin")] == [
        "bytes=%d-%d" % (8 * MiB, 16 * MiB - 1)]
    wait_state(m.path / "VAE" / "part.bin", "verified")
    assert "block_checksum_mismatch" not in m.log()
    # Remounted, every byte of both is read from the cache.
    m.unmount()
    hub.reset()
    m = mount(cfg, cache_dir=cache)
    for name, src in (("whole.bin", whole), ("part.bin", part)):
        assert (m.path / "VAE" / name).read_bytes() == src.read_bytes()
        assert data_requests(hub, name) == []


def pinned_sized(hub, wsha, psha):
    """whole.bin and part.bin with the sha256 and the size the config gives:
    listed with the origin down at mount, found in the cache by the sha256."""
    return config({"vae": {"w": url_entry(hub.url("whole.bin"), sha256=wsha, size=20 * MiB),
                           "p": url_entry(hub.url("part.bin"), sha256=psha, size=20 * MiB)}},
                  block_size="8M", settings="retry_timeout = 1")


def test_an_offline_mount_serves_the_old_release_cache_by_the_sha256(hub, mount, tmp_path):
    """The origin down at mount and no stored resolution (a cache made on
    another box, or by an older config): a file whose sha256 the config
    gives is found in the cache by it, in the 8 MiB blocks it was stored
    with. What is cached is read with no request; a missing block fails
    cleanly while the origin is down, and comes once it is back."""
    whole, wsha, part, psha, cache = old_release_cache(hub, tmp_path)
    hub.faults(down=True)
    m = mount(pinned_sized(hub, wsha, psha), cache_dir=cache, expect_partial=True,
              allowed_errors=[r"event=fetch_failed path=VAE/part\.bin block=1 "])
    vae = m.path / "VAE"
    asked = len(hub.requests(path="whole.bin"))     # its resolution at mount, refused
    assert xattr(vae / "whole.bin", "state") == "verified"
    assert (vae / "whole.bin").read_bytes() == whole.read_bytes()
    assert len(hub.requests(path="whole.bin")) == asked
    # The kernel's readahead may ask for the missing block past these reads.
    assert xattr(vae / "part.bin", "cached") == str(12 * MiB)
    assert pread(vae / "part.bin", 0, 8 * MiB) == file_slice(part, 0, 8 * MiB)
    assert pread(vae / "part.bin", 16 * MiB, 4 * MiB) == file_slice(part, 16 * MiB, 4 * MiB)
    with pytest.raises(OSError) as e:
        pread(vae / "part.bin", 8 * MiB, 4096)
    assert e.value.errno == errno.EIO
    assert re.search(r"error event=fetch_failed path=VAE/part\.bin block=1 .*cannot resolve: "
                     r"origin unreachable", m.log()), m.log()
    hub.clear_faults()
    assert read_when_back(vae / "part.bin") == part.read_bytes()
    assert [r["range"] for r in data_requests(hub, "part.bin")] == [
        "bytes=%d-%d" % (8 * MiB, 16 * MiB - 1)]
    wait_state(vae / "part.bin", "verified")
    assert data_requests(hub, "whole.bin") == []


def test_an_offline_mount_with_a_wrong_size_leaves_the_cached_file_alone(hub, mount, tmp_path):
    """Offline, a sha256 whose cached file has another size than the config
    says is not opened by it: only the origin can say which size is right,
    so its blocks stay for a mount with the right one."""
    whole, wsha, part, psha, cache = old_release_cache(hub, tmp_path)
    hub.faults(down=True)
    wrong = config({"vae": {"p": url_entry(hub.url("part.bin"), sha256=psha,
                                           size=20 * MiB - 1)}}, block_size="8M")
    m = mount(wrong, cache_dir=cache, expect_partial=True)
    assert re.search(r"event=cache_not_opened path=VAE/part\.bin .*another size", m.log())
    assert xattr(m.path / "VAE" / "part.bin", "cached") == "0"
    m.unmount()
    m = mount(pinned_sized(hub, wsha, psha), cache_dir=cache, expect_partial=True)
    assert xattr(m.path / "VAE" / "part.bin", "cached") == str(12 * MiB)
    assert pread(m.path / "VAE" / "part.bin", 0, MiB) == file_slice(part, 0, MiB)


def test_a_file_resolved_late_fetches_only_the_missing_block_of_an_old_release_cache(
        hub, mount, tmp_path):
    """The origin down at mount, back by the first read: the file opened at
    mount by its sha256 keeps its 8 MiB blocks, and its resolution at the
    first missing block fetches that block alone."""
    whole, wsha, part, psha, cache = old_release_cache(hub, tmp_path)
    hub.faults(down=True)
    m = mount(pinned_sized(hub, wsha, psha), cache_dir=cache, expect_partial=True)
    hub.clear_faults()
    vae = m.path / "VAE"
    assert (vae / "part.bin").read_bytes() == part.read_bytes()
    assert [r["range"] for r in data_requests(hub, "part.bin")] == [
        "bytes=%d-%d" % (8 * MiB, 16 * MiB - 1)]
    assert "event=resolved_late path=VAE/part.bin block_size=%d" % (8 * MiB) in m.log()
    assert (vae / "whole.bin").read_bytes() == whole.read_bytes()
    assert data_requests(hub, "whole.bin") == []
    wait_state(vae / "part.bin", "verified")


def test_a_file_whose_cache_only_its_resolution_names_waits_for_it(hub, mount, tmp_path):
    """No sha256 in the config: a file listed unresolved has no cache key
    until its origin answers (its URL, ETag and size), and the cache may
    hold it in 8 MiB blocks. Its reads wait for that answer and then use
    those blocks: no EIO for bytes that are there, only the missing block
    fetched. While the origin is down they fail cleanly."""
    url = hub.url("part.bin")
    key = "url:" + hashlib.sha256(("%s\n%s\n%d" % (url, '"v1"', 20 * MiB)).encode()).hexdigest()
    whole, wsha, part, psha, cache = old_release_cache(hub, tmp_path, part_key=key)
    hub.faults(down=True)
    cfg = config({"vae": {"p": url_entry(url, size=20 * MiB)}}, block_size="8M",
                 settings="retry_timeout = 1")
    m = mount(cfg, cache_dir=cache, expect_partial=True,
              allowed_errors=[r"event=fetch_failed path=VAE/part\.bin error=\"cannot resolve"])
    path = m.path / "VAE" / "part.bin"
    with pytest.raises(OSError) as e:
        pread(path, 0, 4096)
    assert e.value.errno == errno.EIO
    assert "fetch_failed path=VAE/part.bin error=\"cannot resolve: origin unreachable" in m.log()
    hub.clear_faults()
    hub.faults(path="part.bin", etag='"v1"')
    assert read_when_back(path) == part.read_bytes()
    assert [r["range"] for r in data_requests(hub, "part.bin")] == [
        "bytes=%d-%d" % (8 * MiB, 16 * MiB - 1)]
    assert "event=resolved_late path=VAE/part.bin block_size=%d" % (8 * MiB) in m.log()


def test_damaged_block_is_caught_at_first_read_after_restart(hub, mount, tmp_path):
    src, _ = hub.add_file("dmg.bin", 4 * MiB)
    cfg = config({"vae": {"d": '"%s"' % hub.url("dmg.bin")}})
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    (m.path / "VAE" / "dmg.bin").read_bytes()
    m.unmount()
    (datafile,) = list((cache / "data").iterdir())
    with open(datafile, "r+b") as f:     # flip bytes inside block 8 (256 KiB blocks)
        f.seek(2 * MiB + 100)
        f.write(b"\xff" * 16)
    hub.reset()
    m2 = mount(cfg, cache_dir=cache)
    assert (m2.path / "VAE" / "dmg.bin").read_bytes() == src.read_bytes()
    assert [r["range"] for r in data_requests(hub, "dmg.bin")] == ["bytes=2097152-2359295"]
    assert "block_checksum_mismatch" in m2.log()


def test_a_read_over_checked_and_unchecked_blocks_serves_no_damaged_byte(hub, mount, tmp_path):
    """After a restart the warm path reads a range in one go only when every
    block in it was checked in this mount. A read over blocks checked
    already and blocks not checked yet, one of them damaged on disk, gets
    the origin's bytes: that block is fetched again."""
    src, _ = hub.add_file("mix.bin", 4 * MiB)
    cfg = config({"vae": {"x": '"%s"' % hub.url("mix.bin")}})
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    want = (m.path / "VAE" / "mix.bin").read_bytes()
    assert want == src.read_bytes()
    m.unmount()
    (datafile,) = list((cache / "data").iterdir())
    with open(datafile, "r+b") as f:     # damage block 3 (256 KiB blocks)
        f.seek(3 * 256 * 1024 + 100)
        f.write(b"\xff" * 16)
    hub.reset()
    m2 = mount(cfg, cache_dir=cache)
    fd = os.open(m2.path / "VAE" / "mix.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)   # no kernel readahead: reads as asked
        assert os.pread(fd, 512 * 1024, 0) == want[:512 * 1024]   # blocks 0 and 1 checked
        # blocks 1 (checked), 2, 3 (damaged) and 4
        assert os.pread(fd, MiB, 256 * 1024) == want[256 * 1024:256 * 1024 + MiB]
    finally:
        os.close(fd)
    assert [r["range"] for r in data_requests(hub, "mix.bin")] == ["bytes=786432-1048575"]
    assert "block_checksum_mismatch" in m2.log()


def test_cache_max_size_is_never_exceeded(hub, mount, tmp_path):
    src, sha = hub.add_file("huge.bin", 24 * MiB)
    m = mount(config({"vae": {"h": '"%s"' % hub.url("huge.bin")}},
                     settings='cache_max_size = "4M"\ncache_min_free = 0'))
    path = m.path / "VAE" / "huge.bin"
    peak = 0
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            peak = max(peak, data_bytes(m.cache_dir))
    assert peak <= 4 * MiB
    assert pread(path, 0, 24 * MiB) == src.read_bytes()
    assert data_bytes(m.cache_dir) <= 4 * MiB
    # The least recently used blocks went: the last ones read are cached.
    assert int(xattr(path, "cached")) <= 4 * MiB


def test_cache_min_free_is_kept_on_a_small_filesystem(hub, mount, tmp_path):
    fsdir = tmp_path / "smallfs"
    fsdir.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(fsdir)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src, _ = hub.add_file("fill.bin", 40 * MiB)
        m = mount(config({"vae": {"f": '"%s"' % hub.url("fill.bin")}},
                         settings='cache_min_free = "20M"'), cache_dir=fsdir / "cache")
        path = m.path / "VAE" / "fill.bin"
        assert path.read_bytes() == src.read_bytes()       # served, cached or not
        st = os.statvfs(fsdir)
        assert st.f_bavail * st.f_frsize >= 20 * MiB - MiB   # a block of slack for SQLite
        m.unmount()
    finally:
        subprocess.run(["umount", "-l", str(fsdir)])


def test_daemon_rss_does_not_grow_with_file_size(hub, mount):
    if any(v in os.environ for v in ("ASAN_OPTIONS", "TSAN_OPTIONS")):
        pytest.skip("sanitizer builds keep freed memory in quarantine")
    hub.add_file("rss.bin", 256 * MiB)
    m = mount(config({"vae": {"r": '"%s"' % hub.url("rss.bin")}}, block_size="8M"))
    with open(m.path / "VAE" / "rss.bin", "rb") as f:
        while f.read(4 * MiB):
            pass
    with open("/proc/%d/status" % m.pid) as f:
        hwm = [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0] * 1024
    assert hwm < 96 * MiB, hwm


def test_pinned_files_are_not_evicted(hub, mount):
    pinned, _ = hub.add_file("keep.bin", 2 * MiB)
    hub.add_file("stream.bin", 12 * MiB)
    m = mount(config({"vae": {"k": url_entry(hub.url("keep.bin"), pin=True),
                              "s": '"%s"' % hub.url("stream.bin")}},
                     settings='cache_max_size = "5M"\ncache_min_free = 0'))
    keep = m.path / "VAE" / "keep.bin"
    assert keep.read_bytes() == pinned.read_bytes()
    (m.path / "VAE" / "stream.bin").read_bytes()
    wait_for(lambda: xattr(keep, "cached") == str(2 * MiB), what="the pinned file whole")


def _index_files(cache):
    return [cache / ("index.sqlite" + s) for s in ("", "-wal", "-shm")]


def _cache_one_file(hub, mount, tmp_path, name):
    """A cache holding all of name (4 MiB), unmounted: (src, config, cache)."""
    src, _ = hub.add_file(name, 4 * MiB)
    cfg = config({"vae": {"x": '"%s"' % hub.url(name)}})
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    assert (m.path / "VAE" / name).read_bytes() == src.read_bytes()
    wait_state(m.path / "VAE" / name, "complete")
    m.unmount()
    return src, cfg, cache


def test_a_damaged_index_is_set_aside_and_the_cache_starts_afresh(hub, mount, tmp_path):
    src, cfg, cache = _cache_one_file(hub, mount, tmp_path, "d.bin")
    index = cache / "index.sqlite"
    with open(index, "r+b") as f:               # garble the header: not a database
        f.write(b"\xde\xad" * 50)
    m2 = mount(cfg, cache_dir=cache, allowed_errors=[r"cache_index_damaged|store_error"])
    assert "event=cache_index_damaged" in m2.log()
    assert list(cache.glob("index.sqlite.damaged-*"))
    assert (m2.path / "VAE" / "d.bin").read_bytes() == src.read_bytes()
    # Fetched again, never trusted. The hub logs a request once it has sent
    # it, which may be a moment after the reader had the last bytes.
    wait_for(lambda: bytes_fetched(hub, "d.bin") >= 8 * MiB, what="the hub's log of the refetch")
    assert bytes_fetched(hub, "d.bin") == 8 * MiB


def test_data_files_no_index_names_are_removed(hub, mount, tmp_path):
    src, cfg, cache = _cache_one_file(hub, mount, tmp_path, "z.bin")
    for p in _index_files(cache):               # a zero-length index, as a crash may leave
        if p.exists():
            p.unlink()
    (cache / "index.sqlite").write_bytes(b"")
    assert data_bytes(cache) >= 4 * MiB
    m2 = mount(cfg, cache_dir=cache)
    assert "event=cache_orphans_removed" in m2.log()
    assert data_bytes(cache) == 0               # nothing unaccounted stays on disk
    assert (m2.path / "VAE" / "z.bin").read_bytes() == src.read_bytes()


def test_a_checksum_mismatch_is_logged_once_per_block_naming_the_path(hub, mount, tmp_path):
    # Every block damaged, then read by several readers at once (as mmap
    # faults and kernel readahead do): one line per bad block, naming the
    # file's path in the mount, however many reads hit each block.
    nblocks = 18
    src, _ = hub.add_file("many.bin", nblocks * MiB)
    cfg = config({"vae": {"many": '"%s"' % hub.url("many.bin")}})
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache)
    (m.path / "VAE" / "many.bin").read_bytes()
    m.unmount()
    (datafile,) = list((cache / "data").iterdir())
    with open(datafile, "r+b") as f:
        for i in range(nblocks):
            f.seek(i * MiB + 4096)
            f.write(b"\xff" * 16)
    hub.reset()
    m2 = mount(cfg, cache_dir=cache)
    path = m2.path / "VAE" / "many.bin"
    want = src.read_bytes()

    def reader(_):
        fd = os.open(path, os.O_RDONLY)
        try:        # 4 KiB reads, each its own request: many reads per block
            return b"".join(os.pread(fd, 4096, off) for off in range(0, len(want), 4096))
        finally:
            os.close(fd)

    with ThreadPoolExecutor(4) as pool:
        assert all(got == want for got in pool.map(reader, range(4)))
    lines = [line for line in m2.log().splitlines() if "block_checksum_mismatch" in line]
    assert len(lines) == nblocks, "\n".join(lines[:40])
    assert all("path=VAE/many.bin" in line for line in lines), lines[0]
    # One damaged 256 KiB cache block per MiB.
    assert sorted(int(re.search(r"block=(\d+)", line).group(1)) for line in lines) \
        == [4 * i for i in range(nblocks)]


def test_the_cache_dir_deleted_while_mounted(hub, mount, modelfs_bin, tmp_path):
    """Cached blocks are still served, the rest is read uncached, one line
    says why, and commands still find the mount: no second cache."""
    src, _ = hub.add_file("gone.bin", 16 * MiB)
    cfg = config({"vae": {"g": '"%s"' % hub.url("gone.bin")}}, block_size="4M")
    cache = tmp_path / "cache"
    m = mount(cfg, cache_dir=cache, allowed_errors=[r"cache_dir_lost"])
    path = m.path / "VAE" / "gone.bin"
    head = pread(path, 0, 64 * 1024)
    wait_for(lambda: int(xattr(path, "cached")) >= 256 * 1024, what="block 0 cached")
    time.sleep(0.5)                 # the kernel's readahead lands too
    had = xattr(path, "cached")
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    # A block not cached yet: read from the network, not cached.
    assert pread(path, 12 * MiB, MiB) == file_slice(src, 12 * MiB, MiB)
    assert "event=cache_dir_lost" in m.log()
    assert pread(path, 0, 64 * 1024) == head == file_slice(src, 0, 64 * 1024)
    wait_for(lambda: (cache / "control.sock").exists(), timeout=10, what="the socket again")
    r = subprocess.run([str(modelfs_bin), "status", "--cache-dir", str(cache), "--json"],
                       capture_output=True, text=True, timeout=60)
    st = json.loads(r.stdout)
    assert st["mounted"] is True and st["pid"] == m.pid, st
    assert st["cache"]["lost"] is True
    assert xattr(path, "cached") == had                # nothing new was cached
    assert path.read_bytes() == src.read_bytes()
    assert not (cache / "index.sqlite").exists()       # no second cache was made


def test_reads_served_uncached_fetch_each_block_once(hub, mount, tmp_path):
    """With no room in the cache, reads are served from memory copies of
    the blocks they fetched, not by fetching a block per kernel read."""
    src, _ = hub.add_file("full.bin", 32 * MiB, seed=1)
    hub.add_file("filler.bin", 8 * MiB, seed=2)
    cfg = config({"vae": {"f": '"%s"' % hub.url("full.bin"),
                          "p": url_entry(hub.url("filler.bin"), pin=True)}},
                 settings='cache_max_size = "8M"\ncache_min_free = 0', block_size="4M")
    m = mount(cfg)
    (m.path / "VAE" / "filler.bin").read_bytes()         # the cache is full, pinned
    wait_for(lambda: xattr(m.path / "VAE" / "filler.bin", "cached") == str(8 * MiB),
             what="the filler cached")
    path = m.path / "VAE" / "full.bin"
    data = src.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)   # one FUSE read per pread
        for off in range(0, 32 * MiB, 256 * 1024):
            assert os.pread(fd, 4096, off) == data[off:off + 4096]
    finally:
        os.close(fd)
    assert xattr(path, "cached") == "0"
    assert "event=file_larger_than_cache path=VAE/full.bin" in m.log()   # never verified
    # 128 reads in 128 blocks of 256 KiB: each block once (not a 4 MiB
    # download unit per read).
    assert bytes_fetched(hub, "full.bin") <= 40 * MiB, bytes_fetched(hub, "full.bin")
    assert len(data_requests(hub, "full.bin")) <= 130


def test_a_disk_that_fills_mid_block_serves_it_uncached(hub, mount, tmp_path):
    """Room was there when the block was reserved, then another program
    filled the disk while it was written: the read still gets its bytes
    (fetched again, uncached), and once space returns blocks are cached
    again."""
    fsdir = tmp_path / "smallfs"
    fsdir.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(fsdir)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src, _ = hub.add_file("fill.bin", 12 * MiB)
        hub.faults(path="fill.bin", rate_bps=4 * MiB)
        # The index cannot log the fetch on a full disk either: that is said.
        m = mount(config({"vae": {"f": '"%s"' % hub.url("fill.bin")}}, block_size="4M",
                         settings="cache_min_free = 0"), cache_dir=fsdir / "cache",
                  allowed_errors=[r"event=store_error .*disk full"])
        path = m.path / "VAE" / "fill.bin"
        got = {}
        reader = threading.Thread(target=lambda: got.setdefault("b", pread(path, 0, 4 * MiB)))
        reader.start()
        time.sleep(0.3)                             # the block is being written
        hog = fsdir / "hog"
        with open(hog, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * MiB)
            except OSError:
                pass                                # the disk is full now
        reader.join(30)
        assert got.get("b") == file_slice(src, 0, 4 * MiB)
        assert re.search(r"event=disk_full path=VAE/fill.bin block=\d+", m.log())
        # (256 KiB blocks that landed before the disk filled stay cached)
        assert int(xattr(path, "cached")) < 4 * MiB
        hog.unlink()                                # space returns: cached again
        hub.clear_faults()
        # (block 1 may have come uncached with the kernel's readahead, and
        # stays in memory: block 2 was never asked for)
        before = int(xattr(path, "cached"))
        assert pread(path, 8 * MiB, MiB) == file_slice(src, 8 * MiB, MiB)
        wait_for(lambda: int(xattr(path, "cached")) >= before + MiB, what="block 2 cached")
        m.unmount()
    finally:
        subprocess.run(["umount", "-l", str(fsdir)])
