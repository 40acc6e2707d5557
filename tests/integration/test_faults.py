"""Bad answers never reach the cache; transient failures are retried."""

import errno
import os
import signal
import subprocess
import threading
import time

import pytest

from mfs import (MiB, bytes_fetched, config, data_requests, pread, url_entry, wait_for,
                 wait_state, xattr)


def cached_blocks(hub_unused, path):
    return int(xattr(path, "cached"))


def one_file(hub, mount, name, size=2 * MiB, settings="retry_timeout = 3", **kw):
    src, _ = hub.add_file(name, size)
    m = mount(config({"vae": {"x": '"%s"' % hub.url(name)}}, settings=settings), **kw)
    return src, m, m.path / "VAE" / name


@pytest.mark.parametrize("fault", [
    {"ignore_range": True},     # after resolution: the file was resolved with Range
    {"html_error": True},
    {"wrong_content_range": True},
])
def test_wrong_answers_are_never_cached(hub, mount, fault):
    src, m, path = one_file(hub, mount, "w.bin", allowed_errors=[r"w\.bin"])
    hub.faults(path="w.bin", **fault)
    with pytest.raises(OSError) as e:
        pread(path, 0, 4096)
    assert e.value.errno == errno.EIO
    assert xattr(path, "cached") == "0"
    hub.clear_faults()
    time.sleep(1.2)     # a block that just failed for good fails at once for a second
    # A later read gets the real bytes: nothing wrong was kept.
    assert pread(path, 100, 4096) == src.read_bytes()[100:4196]


@pytest.mark.parametrize("fault", [
    {"truncate_after": 1000, "times": 2},
    {"fail": [503, 429, 500]},
    {"down": True, "times": 2},
    {"down": "reset", "times": 1},
])
def test_transient_failures_are_retried(hub, mount, fault):
    src, m, path = one_file(hub, mount, "t.bin", settings="retry_timeout = 30")
    hub.faults(path="t.bin", **fault)
    assert path.read_bytes() == src.read_bytes()
    assert "fetch_retry" in m.log()


def test_retry_after_is_honoured(hub, mount):
    src, m, path = one_file(hub, mount, "ra.bin", settings="retry_timeout = 30")
    hub.faults(path="ra.bin", fail=[429], retry_after=2)
    t0 = time.monotonic()
    assert pread(path, 0, 100) == src.read_bytes()[:100]
    assert time.monotonic() - t0 >= 2.0


def test_retries_stop_after_retry_timeout(hub, mount):
    src, m, path = one_file(hub, mount, "gone.bin", settings="retry_timeout = 2",
                            allowed_errors=[r"gone\.bin"])
    hub.faults(path="gone.bin", fail=[503] * 1000)
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        pread(path, 0, 100)
    assert e.value.errno == errno.EIO
    assert time.monotonic() - t0 < 15


def test_changed_file_at_origin_fails_cleanly(hub, mount):
    src, m, path = one_file(hub, mount, "chg.bin", size=4 * MiB, allowed_errors=[r"chg\.bin"])
    assert pread(path, 0, 100) == src.read_bytes()[:100]
    hub.faults(path="chg.bin", etag='"v2"')
    with pytest.raises(OSError) as e:
        pread(path, 3 * MiB, 100)
    assert e.value.errno == errno.EIO
    assert "changed at the origin" in xattr(path, "error")


def test_slow_origin_still_serves(hub, mount):
    src, m, path = one_file(hub, mount, "slow.bin", size=3 * MiB)
    hub.faults(path="slow.bin", header_delay_ms=300, rate_bps=4 * MiB)
    assert path.read_bytes() == src.read_bytes()


def test_origin_down_at_first_mount(hub, mount):
    ok, _ = hub.add_file("fine.bin", MiB)
    hub.add_file("down.bin", MiB)
    hub.faults(path="down.bin", down=True)
    hub.faults(path="missing.bin", fail=[404] * 100)
    m = mount(config({"vae": {"ok": '"%s"' % hub.url("fine.bin"),
                              "down": '"%s"' % hub.url("down.bin"),
                              "sized": url_entry(hub.url("down.bin"), filename="sized.bin",
                                                 size=MiB),
                              "gone": '"%s"' % hub.url("missing.bin")}},
                     settings="retry_timeout = 2"),
              expect_partial=True, allowed_errors=[r"down\.bin|missing\.bin|sized\.bin"])
    assert "3 of 4 entries failed" in m.stderr
    for line in ("vae/down (%s:" % m.config_path, "vae/gone (%s:" % m.config_path,
                 "vae/sized (%s:" % m.config_path):
        assert line in m.stderr, m.stderr
    assert "vae/ok (" not in m.stderr
    vae = m.path / "VAE"
    assert sorted(os.listdir(vae)) == ["down.bin", "fine.bin", "missing.bin", "sized.bin"]
    assert (vae / "fine.bin").read_bytes() == ok.read_bytes()
    assert xattr(vae / "down.bin", "state") == "error"
    assert "unreachable" in xattr(vae / "down.bin", "error")
    assert "not found" in xattr(vae / "missing.bin", "error")
    assert (vae / "sized.bin").stat().st_size == MiB       # listed with its configured size
    hub.clear_faults()
    # Resolved at first read once the origin is back.
    assert (vae / "sized.bin").read_bytes() == (hub.root / "down.bin").read_bytes()


def test_sigterm_unmounts_within_seconds_while_fetches_stall(hub, mount):
    src, m, path = one_file(hub, mount, "hang.bin", settings="retry_timeout = 600",
                            allowed_errors=[r"hang\.bin"])
    hub.faults(path="hang.bin", hang=True)
    threading.Thread(target=lambda: _quiet(pread, path, 0, 100), daemon=True).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    os.kill(m.pid, signal.SIGTERM)
    wait_for(lambda: not m.is_mounted(), timeout=10, what="unmount after SIGTERM")
    wait_for(lambda: not os.path.exists("/proc/%d" % m.pid) or
             open("/proc/%d/stat" % m.pid).read().split(")")[1].split()[0] == "Z",
             timeout=10, what="daemon exit")
    assert time.monotonic() - t0 < 5
    hub.reset()


def _quiet(fn, *args):
    try:
        return fn(*args)
    except OSError:
        return None


def test_unreadable_entries_fail_at_open(hub, mount):
    hub.faults(path="nothere.bin", fail=[404] * 100)
    m = mount(config({"vae": {"n": '"%s"' % hub.url("nothere.bin")}}),
              expect_partial=True, allowed_errors=[r"nothere\.bin"])
    path = m.path / "VAE" / "nothere.bin"
    assert path.exists()
    with pytest.raises(OSError) as e:
        open(path, "rb")
    assert e.value.errno == errno.ENOENT


def test_a_dead_origin_fails_a_read_within_retry_timeout(hub, mount):
    src, m, path = one_file(hub, mount, "dead.bin", settings="retry_timeout = 3",
                            allowed_errors=[r"dead\.bin"])
    hub.faults(path="dead.bin", down=True)
    t0 = time.monotonic()
    with pytest.raises(OSError):
        with open(path, "rb") as f:
            f.read()
    # Not twice the timeout: the kernel's immediate retries fail at once.
    assert time.monotonic() - t0 < 3 + 2


def test_origin_without_range_support_is_streamed_once(hub, mount):
    src, sha = hub.add_file("norange.bin", 9 * MiB + 5)
    hub.faults(path="norange.bin", ignore_range=True)
    m = mount(config({"vae": {"n": url_entry(hub.url("norange.bin"), sha256=sha)}}))
    path = m.path / "VAE" / "norange.bin"
    # A read in the middle waits for the stream to get there.
    assert pread(path, 6 * MiB + 3, 1000) == src.read_bytes()[6 * MiB + 3:6 * MiB + 1003]
    assert path.read_bytes() == src.read_bytes()
    gets = [r for r in hub.requests(path="norange.bin") if r["method"] == "GET"]
    # One whole stream (the resolution probe stops after the headers).
    assert sum(1 for r in gets if r["bytes"] == 9 * MiB + 5) == 1
    wait_for(lambda: xattr(path, "state") == "verified", what="verified")


def test_a_url_entrys_mirror_serves_when_the_origin_goes_down(hub, mount):
    src, sha = hub.add_file("mirrored.bin", 6 * MiB)
    mirror = hub.url("mirrored.bin", server="cdn")       # the same bytes on another host
    entry = ('{ url = "%s", sha256 = "%s", auth_header = "Bearer s3cret", mirrors = ["%s"] }'
             % (hub.url("mirrored.bin"), sha, mirror))
    m = mount(config({"vae": {"m": entry}}, settings="retry_timeout = 2"),
              allowed_errors=[r"mirrored\.bin"])
    path = m.path / "VAE" / "mirrored.bin"
    assert pread(path, 0, 100) == src.read_bytes()[:100]
    hub.faults(server="origin", path="mirrored.bin", down=True)
    assert path.read_bytes() == src.read_bytes()
    wait_state(path, "verified")
    cdn = [r for r in hub.requests(server="cdn") if r["range"] != "bytes=0-0"]
    assert cdn and not any(r["authorization"] for r in cdn)     # the token stays at its origin
    assert "event=try_mirror" in m.log()


def test_a_changed_file_without_validators_never_mixes_versions(hub, mount, tmp_path):
    """An origin with neither ETag nor Last-Modified replaces a file by one
    of the same size between mounts: nothing can tell the cached blocks from
    the new bytes, so a partial copy is dropped and a complete one is kept
    whole; either way every read sees one version."""
    old, _ = hub.add_file("nv.bin", 4 * MiB, seed=1)
    old_bytes = old.read_bytes()
    hub.faults(path="nv.bin", no_validators=True)
    text = config({"vae": {"x": '"%s"' % hub.url("nv.bin")}})
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache)
    path = m.path / "VAE" / "nv.bin"
    assert pread(path, 0, 100) == old_bytes[:100]
    wait_for(lambda: cached_blocks(hub, path) >= 256 * 1024, what="block 0 cached")
    m.unmount()

    new, _ = hub.add_file("nv.bin", 4 * MiB, seed=2)
    new_bytes = new.read_bytes()
    assert new_bytes[:100] != old_bytes[:100]
    m = mount(text, cache_dir=cache)
    path = m.path / "VAE" / "nv.bin"
    assert path.read_bytes() == new_bytes
    assert "unvalidated_partial_dropped path=VAE/nv.bin" in m.log()
    wait_state(path, "complete")
    m.unmount()

    # A complete copy is one whole version: kept, and served with no request.
    hub.add_file("nv.bin", 4 * MiB, seed=3)
    hub.reset()
    hub.faults(path="nv.bin", no_validators=True)
    m = mount(text, cache_dir=cache)
    path = m.path / "VAE" / "nv.bin"
    assert path.read_bytes() == new_bytes
    assert "unvalidated_partial_dropped" not in m.log()
    assert bytes_fetched(hub, "nv.bin") == 0


def test_an_absurd_size_fails_its_entry_not_the_mount(hub, mount, modelfs_bin, tmp_path):
    ok, _ = hub.add_file("fine.bin", MiB)
    hub.add_file("huge.bin", MiB)
    hub.faults(path="huge.bin", report_size=1 << 50)          # 1 PiB
    text = config({"vae": {"ok": '"%s"' % hub.url("fine.bin"),
                           "huge": '"%s"' % hub.url("huge.bin")}})
    m = mount(text, expect_partial=True, allowed_errors=[r"huge\.bin"])
    assert "1 of 2 entries failed" in m.stderr and "vae/huge (" in m.stderr
    vae = m.path / "VAE"
    assert (vae / "fine.bin").read_bytes() == ok.read_bytes()
    assert xattr(vae / "huge.bin", "state") == "error"
    assert "1.00 PiB" in xattr(vae / "huge.bin", "error")
    assert "entry_failed entry=vae/huge" in m.log()
    r = subprocess.run([str(modelfs_bin), "check", str(m.config_path)], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "PiB" in r.stdout + r.stderr


def test_a_silent_origin_holds_a_mount_for_seconds_not_minutes(hub, mount, tmp_path):
    src, _ = hub.add_file("quiet.bin", 2 * MiB)
    text = config({"vae": {"q": '"%s"' % hub.url("quiet.bin")}})
    cache = tmp_path / "cache"
    m = mount(text, cache_dir=cache)
    want = pread(m.path / "VAE" / "quiet.bin", 0, 4096)
    m.unmount()
    hub.faults(path="quiet.bin", hang=True)      # accepts, never answers
    t0 = time.monotonic()
    m2 = mount(text, cache_dir=cache)
    took = time.monotonic() - t0
    assert took < 20, "mount took %.1f s" % took
    assert "resolve_offline entry=vae/q" in m2.log()
    assert pread(m2.path / "VAE" / "quiet.bin", 0, 4096) == want
    hub.reset()                                     # releases the held requests
