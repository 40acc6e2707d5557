"""Every complete file is hashed; a mismatch is corrupt, never verified."""

import errno
import os
import subprocess
from pathlib import Path

import pytest

from mfs import MiB, config, stable, url_entry, wait_for, wait_state, xattr


def test_complete_without_expected_hash(hub, mount):
    src, sha = hub.add_file("c.bin", 3 * MiB + 7)
    m = mount(config({"vae": {"c": '"%s"' % hub.url("c.bin")}}))
    path = m.path / "VAE" / "c.bin"
    assert xattr(path, "state") == "remote"
    assert xattr(path, "cached") == "0"
    path.read_bytes()
    wait_state(path, "complete")
    assert xattr(path, "sha256") == sha
    assert xattr(path, "cached") == str(3 * MiB + 7)
    assert xattr(path, "source") == hub.url("c.bin")
    names = os.listxattr(path)
    assert "user.modelfs.state" in names and "user.modelfs.error" not in names


def test_partial_then_verified_with_config_hash(hub, mount):
    src, sha = hub.add_file("v.bin", 12 * MiB)
    # Blocks larger than the kernel's readahead, so a small read stays in one.
    m = mount(config({"vae": {"v": url_entry(hub.url("v.bin"), sha256=sha.upper())}},
                     block_size="4M"))
    path = m.path / "VAE" / "v.bin"
    with open(path, "rb") as f:
        f.read(100)     # answered early; the block is cached a moment later
    wait_state(path, "partial")
    path.read_bytes()
    wait_state(path, "verified")
    assert xattr(path, "sha256") == sha


def test_mismatch_is_corrupt_drops_blocks_and_fails_reads(hub, mount):
    hub.add_file("bad.bin", 2 * MiB)
    wrong = "ab" * 32
    m = mount(config({"vae": {"b": url_entry(hub.url("bad.bin"), sha256=wrong)}}),
              allowed_errors=[r"bad\.bin"])
    path = m.path / "VAE" / "bad.bin"
    try:
        with open(path, "rb") as f:
            f.read()    # lazy mode serves blocks before the hash is known...
    except OSError as e:
        assert e.errno == errno.EIO     # ...unless the hash was quicker
    wait_state(path, "corrupt")
    assert xattr(path, "cached") == "0"
    assert wrong in xattr(path, "error")
    # Reads now fail, whether the kernel has pages cached or not.
    os.system("echo 3 > /proc/sys/vm/drop_caches 2>/dev/null")
    with pytest.raises(OSError) as e:
        with open(path, "rb") as f:
            f.read()
    assert e.value.errno == errno.EIO
    lines = [l for l in m.log().splitlines() if "file_corrupt" in l]
    assert len(lines) == 1 and wrong in lines[0] and "expected" in lines[0]
    assert not any("verified" in l and "bad.bin" in l for l in m.log().splitlines())


def test_strict_serves_nothing_until_verified(hub, mount):
    src, sha = hub.add_file("s.bin", 12 * MiB)
    m = mount(config({"vae": {"s": url_entry(hub.url("s.bin"), sha256=sha, verify="strict")}},
                     block_size="4M"))
    path = m.path / "VAE" / "s.bin"
    with open(path, "rb") as f:
        assert f.read(100) == src.read_bytes()[:100]
    # The first byte needed the whole file, fetched and checked.
    assert xattr(path, "state") == "verified"
    assert sum(r["bytes"] for r in hub.requests(path="s.bin") if r["range"] != "bytes=0-0") \
        == 12 * MiB


def test_strict_with_wrong_hash_serves_no_byte(hub, mount):
    hub.add_file("sw.bin", 3 * MiB)
    m = mount(config({"vae": {"s": url_entry(hub.url("sw.bin"), sha256="cd" * 32,
                                             verify="strict")}}),
              allowed_errors=[r"sw\.bin"])
    with pytest.raises(OSError) as e:
        with open(m.path / "VAE" / "sw.bin", "rb") as f:
            f.read(10)
    assert e.value.errno == errno.EIO
    assert xattr(m.path / "VAE" / "sw.bin", "state") == "corrupt"


def test_a_bad_origin_does_not_take_down_another_entry_of_the_same_sha256(hub, mount):
    """Two entries name one sha256, so they share one cached file. The one
    whose origin gave the wrong bytes fails; the other is not shown
    corrupt, and reads exact from its own origin."""
    good, sha = hub.add_file("good.bin", 3 * MiB, seed=1)
    hub.add_file("bad.bin", 3 * MiB, seed=2)              # same size, other bytes
    m = mount(config({"vae": {"a": url_entry(hub.url("bad.bin"), sha256=sha),
                              "b": url_entry(hub.url("good.bin"), sha256=sha)}}),
              allowed_errors=[r"bad\.bin"])
    bad_path, good_path = m.path / "VAE" / "bad.bin", m.path / "VAE" / "good.bin"
    try:
        bad_path.read_bytes()
    except OSError as e:
        assert e.errno == errno.EIO
    wait_state(bad_path, "error")                         # its own fault, not the file's
    assert "checksum mismatch" in xattr(bad_path, "error")
    assert "event=shared_file_refetched path=VAE/bad.bin blamed=VAE/bad.bin" in m.log()
    assert xattr(good_path, "state") not in ("corrupt", "error"), xattr(good_path, "state")
    assert good_path.read_bytes() == good.read_bytes()
    wait_state(good_path, "verified")
    with pytest.raises(OSError):
        bad_path.read_bytes()                               # still its fault


# ---------------------------------------------------------------------------
# hashed as the bytes land

def daemon_disk_reads(m):
    """Bytes the daemon has read from the disk (not from the page cache)."""
    with open("/proc/%d/io" % m.pid) as f:
        return int(next(l for l in f if l.startswith("read_bytes:")).split()[1])


def drop_data_pages(cache_dir):
    """The cache's data files leave the page cache (written back first), so
    that whoever reads them again reads the disk."""
    for p in (Path(cache_dir) / "data").iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_cli(modelfs_bin, tmp_path, *args):
    home = tmp_path / "clihome"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELFS_", "HF_"))}
    env["HOME"] = str(home)
    r = subprocess.run([str(modelfs_bin), *map(str, args)], capture_output=True, text=True,
                       timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def test_bytes_hashed_as_they_landed_are_not_read_again(hub, mount, modelfs_bin, tmp_path):
    """The start is hashed while it arrives; once the rest is in, the file
    is verified without reading the start back from the disk."""
    size = 64 * MiB
    src, sha = hub.add_file("h.bin", size)
    m = mount(config({"vae": {"h": url_entry(hub.url("h.bin"), sha256=sha)}},
                     settings="header_prefetch = false"))
    path = m.path / "VAE" / "h.bin"
    with open(path, "rb") as f:
        assert f.read(4 * MiB) == src.read_bytes()[:4 * MiB]
    cached = stable(lambda: int(xattr(path, "cached")))    # its readahead landed too
    assert 4 * MiB <= cached < size
    assert xattr(path, "state") == "partial"
    drop_data_pages(m.cache_dir)
    before = daemon_disk_reads(m)
    r = run_cli(modelfs_bin, tmp_path, "prefetch", "--cache-dir", m.cache_dir, "VAE/h.bin")
    assert "verified" in r.stdout, r.stdout
    assert xattr(path, "state") == "verified" and xattr(path, "sha256") == sha
    # A second pass would have read the `cached` bytes back from the disk.
    assert daemon_disk_reads(m) - before < MiB, (daemon_disk_reads(m) - before, cached)


def test_a_block_dropped_after_it_was_hashed_is_hashed_again(hub, mount, modelfs_bin, tmp_path):
    """Two entries share one cached file (one sha256). The good one's start
    is hashed as it lands, then evicted; the other origin's bytes, wrong
    at byte 100 only, fill the file. The hash must be of what is cached
    now: corrupt, never verified from the good bytes hashed before."""
    good, sha = hub.add_file("good.bin", 8 * MiB, seed=1)
    wrong = bytearray(good.read_bytes())
    wrong[100] ^= 0xFF
    hub.add_file("bad.bin", data=bytes(wrong))
    m = mount(config({"vae": {"g": url_entry(hub.url("good.bin"), sha256=sha),
                              "b": url_entry(hub.url("bad.bin"), sha256=sha)}},
                     settings="header_prefetch = false"),
              allowed_errors=[r"bad\.bin", r"good\.bin"])
    good_path, bad_path = m.path / "VAE" / "good.bin", m.path / "VAE" / "bad.bin"
    with open(good_path, "rb") as f:
        assert f.read(4 * MiB) == good.read_bytes()[:4 * MiB]
    stable(lambda: int(xattr(good_path, "cached")))
    run_cli(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir, "VAE/good.bin")
    assert xattr(good_path, "cached") == "0"
    try:
        bad_path.read_bytes()           # lazy: served before the hash is known...
    except OSError as e:
        assert e.errno == errno.EIO     # ...unless the hash was quicker
    wait_for(lambda: xattr(bad_path, "state") in ("corrupt", "error"),
             what="the mismatch to be found")
    wait_for(lambda: "checksum mismatch" in m.log(), what="the mismatch logged")
    assert "event=file_verified" not in m.log()
    assert xattr(good_path, "state") != "verified"


def test_a_partial_file_from_an_earlier_mount_is_verified(hub, mount, tmp_path):
    """A remount resumes a partial file: the blocks cached before are hashed
    with the new ones, and the whole is verified."""
    size = 12 * MiB + 5
    src, sha = hub.add_file("r.bin", size)
    text = config({"vae": {"r": url_entry(hub.url("r.bin"), sha256=sha)}},
                  settings="header_prefetch = false")
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache)
    path = m.path / "VAE" / "r.bin"
    with open(path, "rb") as f:
        f.read(4 * MiB)
    stable(lambda: int(xattr(path, "cached")))
    m.unmount()
    m = mount(text, cache_dir=cache)
    path = m.path / "VAE" / "r.bin"
    assert xattr(path, "state") == "partial"
    assert path.read_bytes() == src.read_bytes()
    wait_state(path, "verified")
    assert xattr(path, "sha256") == sha
