"""Operating a cache: prefetch, status, verify, evict and info, through a live
mount (the daemon's control socket) and without one (the cache itself)."""

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from conftest import SANITIZER_RE
from mfs import (MiB, bytes_fetched, config, data_requests, file_slice, pread, stable, url_entry,
                 wait_for, wait_state, xattr)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fakehub"))
import genmodel  # noqa: E402


# ---------------------------------------------------------------------------
# helpers

def cli_env(tmp_path, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODELFS_", "HF_", "CIVITAI")) and k != "PROVISION_URL"}
    home = tmp_path / "clihome"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env.update(extra or {})
    return env


def cli(modelfs_bin, tmp_path, *args, timeout=120, expect=None, env=None):
    """Run a modelfs command; fails on sanitizer output or an unexpected exit."""
    r = subprocess.run([str(modelfs_bin), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=cli_env(tmp_path, env), stdin=subprocess.DEVNULL)
    assert not SANITIZER_RE.search(r.stderr), r.stderr
    if expect is not None:
        assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def cli_json(modelfs_bin, tmp_path, *args, expect=0):
    r = cli(modelfs_bin, tmp_path, *args, "--json", expect=expect)
    return json.loads(r.stdout)


def status(modelfs_bin, tmp_path, cache, *extra):
    return cli_json(modelfs_bin, tmp_path, "status", "--cache-dir", cache, *extra)


def file_status(st, path):
    [f] = [f for f in st["files"] if f["path"] == path]
    return f


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        fd = f.fileno()
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def data_file_bytes(cache):
    """Bytes the cache's data files take on disk (du)."""
    return sum(p.stat().st_blocks * 512 for p in (cache / "data").iterdir())


def one_file_config(hub, name, size, *, category="vae", entry="m", kind="raw", block="1M",
                    settings="", with_sha=True, **keys):
    _, sha = hub.add_file(name, size, kind=kind)
    if with_sha and sha:
        keys["sha256"] = sha
    return config({category: {entry: url_entry(hub.url(name), **keys)}}, settings=settings,
                  block_size=block), sha


def run_in_pty(argv, env, cols=120, timeout=120):
    """argv on a pseudo-terminal; (exit code, every byte it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:         # EIO: the other side is closed
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return p.returncode, out


# ---------------------------------------------------------------------------
# prefetch

def test_a_cache_that_is_not_there_is_an_error_not_an_empty_cache(hub, mount, modelfs_bin,
                                                                   tmp_path):
    """status, verify and evict only look at a cache: a mistyped --cache-dir
    is an error (exit 1) that points at the mounts, and nothing is made
    there. status takes the mount's path; run elsewhere it names the mounts
    it did not look at."""
    cfg, _ = one_file_config(hub, "c.bin", MiB)
    m = mount(cfg)
    typo = tmp_path / "typo-cache"
    for cmd in ("status", "verify", "evict"):
        r = cli(modelfs_bin, tmp_path, cmd, "--cache-dir", typo, expect=1)
        assert "no cache at %s" % typo in r.stderr and "modelfs mounts" in r.stderr, r.stderr
        assert not typo.exists()
    for where in (m.path, m.path / "VAE", m.path / "VAE" / "c.bin"):
        r = cli(modelfs_bin, tmp_path, "status", where, expect=0)
        assert "mounted at %s" % m.path in r.stdout and "VAE/c.bin" in r.stdout, r.stdout
    r = cli(modelfs_bin, tmp_path, "status", tmp_path, expect=2)
    assert "is not inside a modelfs mount" in r.stderr, r.stderr
    cli(modelfs_bin, tmp_path, "status", m.path, m.path, expect=2)
    # Another cache, one that exists: its status, and a note on the mount.
    other = tmp_path / "other"
    cli(modelfs_bin, tmp_path, "prefetch", "--cache-dir", other, "--config", m.config_path,
        expect=0)
    r = cli(modelfs_bin, tmp_path, "status", "--cache-dir", other, expect=0)
    assert "not mounted; cache %s" % other in r.stdout, r.stdout
    assert "note: %s is mounted with the cache %s" % (m.path, m.cache_dir) in r.stderr, r.stderr


def test_prefetch_through_mount_then_reads_fetch_nothing(hub, mount, modelfs_bin, tmp_path):
    text, sha = one_file_config(hub, "p.bin", 24 * MiB + 77)
    m = mount(text)
    path = m.path / "VAE" / "p.bin"
    r = cli(modelfs_bin, tmp_path, "prefetch", "--cache-dir", m.cache_dir, "VAE/p.bin", expect=0)
    assert "done" in r.stdout and "verified" in r.stdout, r.stdout
    # Every byte once (the hub logs a request as it ends: let it settle).
    assert stable(lambda: bytes_fetched(hub, "p.bin")) == 24 * MiB + 77
    assert os.getxattr(path, "user.modelfs.state") == b"verified"
    before = len(data_requests(hub, "p.bin"))
    assert sha256_of(path) == sha
    assert len(data_requests(hub, "p.bin")) == before             # reads were all cached
    # Everything named by its entry, by absolute path, by folder: nothing to do.
    for arg in ("vae/m", "m", str(path), str(m.path / "VAE"), str(m.path)):
        cli(modelfs_bin, tmp_path, "prefetch", "--cache-dir", m.cache_dir, arg, expect=0)
    assert len(data_requests(hub, "p.bin")) == before
    # --json: the events themselves, one object a line.
    r = cli(modelfs_bin, tmp_path, "prefetch", "--json", "--cache-dir", m.cache_dir, expect=0)
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] != "progress"] == ["plan", "start", "done",
                                                                       "end"]
    assert events[0]["files"] == [{"path": "VAE/p.bin", "entry": "vae/m", "size": 24 * MiB + 77,
                                   "cached": 24 * MiB + 77}]
    done = [e for e in events if e["event"] == "done"][0]
    assert done == {"event": "done", "file": 0, "ok": True, "state": "verified",
                    "cached": 24 * MiB + 77, "error": None, "cancelled": False}
    assert events[-1]["ok"] is True and events[-1]["failed"] == 0


def most_at_once(requests):
    """The most of these requests the hub was answering at one time, seen
    at the middle of each (a request that follows another on a connection
    may be logged as starting a moment before the other is logged as
    done)."""
    return max(sum(1 for o in requests if o["t_start"] <= mid <= o["t_end"])
               for mid in ((r["t_start"] + r["t_end"]) / 2 for r in requests))


def test_prefetch_with_no_reader_about_takes_all_connections_but_one(hub, mount, modelfs_bin,
                                                                     tmp_path):
    """A prefetch alone goes as fast as a sequential reader: on all the
    workers but one (for the first reader who comes), not with a quarter
    kept idle for readers who are not there. A reader who comes still goes
    first: its block, the file's last, is fetched before the prefetch's
    own blocks in front of it."""
    size = 32 * MiB
    text, sha = one_file_config(hub, "pw.bin", size,
                                settings="connections = 8\nheader_prefetch = false")
    hub.faults(path="pw.bin", rate_bps=4 * MiB)      # 1 MiB a request: 0.25 s each
    m = mount(text)
    path = m.path / "VAE" / "pw.bin"
    p = subprocess.Popen([str(modelfs_bin), "prefetch", "--cache-dir", str(m.cache_dir),
                          "VAE/pw.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=cli_env(tmp_path))
    wait_for(lambda: len(data_requests(hub, "pw.bin")) >= 10, what="the prefetch to be under way")
    assert pread(path, size - 1, 1) == file_slice(hub.root / "pw.bin", size - 1, 1)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "verified" in out, (out, err)
    reqs = sorted(data_requests(hub, "pw.bin"), key=lambda r: r["t_start"])
    start = lambda r: int(r["range"][len("bytes="):].split("-")[0])
    last = [r for r in reqs if start(r) >= 31 * MiB]
    before = [r for r in reqs if 30 * MiB <= start(r) < 31 * MiB]
    assert last and before and last[0]["t_start"] < before[0]["t_start"], reqs
    prefetched = [r for r in reqs if r is not last[0]]
    assert most_at_once(prefetched) == 7, [(r["range"], r["t_start"], r["t_end"]) for r in reqs]


def test_prefetch_without_mount_fills_the_cache_a_mount_uses(hub, mount, modelfs_bin, tmp_path):
    _, sha_a = hub.add_file("s1.bin", 9 * MiB + 5)
    _, sha_b = hub.add_file("s2.safetensors", 12 * MiB, kind="safetensors")
    text = config({"vae": {"a": url_entry(hub.url("s1.bin"), sha256=sha_a)},
                   "checkpoints": {"b": url_entry(hub.url("s2.safetensors"))}})
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    cache = tmp_path / "cache"
    r = cli(modelfs_bin, tmp_path, "prefetch", "--config", cfg, "--cache-dir", cache, expect=0)
    assert "prefetched 2 of 2" in r.stdout, r.stdout
    fetched = stable(lambda: bytes_fetched(hub, "s1.bin") + bytes_fetched(hub, "s2.safetensors"))
    assert fetched == 21 * MiB + 5
    assert not (cache / "control.sock").exists()
    st = status(modelfs_bin, tmp_path, cache, "--config", cfg)
    assert st["mounted"] is False
    assert file_status(st, "VAE/s1.bin")["state"] == "verified"
    assert file_status(st, "Stable-diffusion/s2.safetensors")["state"] == "complete"
    m = mount(text, cache_dir=cache)
    assert sha256_of(m.path / "VAE" / "s1.bin") == sha_a
    assert sha256_of(m.path / "Stable-diffusion" / "s2.safetensors") == hub.add_file(
        "unused.bin", data=(hub.root / "s2.safetensors").read_bytes())[1]
    # Not one more byte of either file came from the hub.
    assert bytes_fetched(hub, "s1.bin") + bytes_fetched(hub, "s2.safetensors") == fetched
    assert os.getxattr(m.path / "VAE" / "s1.bin", "user.modelfs.state") == b"verified"


def test_prefetch_on_a_terminal_draws_bars_that_redraw_and_finish(hub, modelfs_bin, tmp_path):
    text, _ = one_file_config(hub, "tty.bin", 16 * MiB, block="256K",
                              settings="connections = 16")
    (tmp_path / "c.toml").write_text(text)
    hub.faults(path="tty.bin", rate_bps=256 * 1024)   # 16 connections: about 4 s
    code, out = run_in_pty([str(modelfs_bin), "prefetch", "--config", str(tmp_path / "c.toml"),
                            "--cache-dir", str(tmp_path / "cache")],
                           cli_env(tmp_path, {"TERM": "xterm"}))
    assert not SANITIZER_RE.search(out.decode(errors="replace"))
    assert code == 0, out
    text_out = out.decode()
    # Redrawn in place: the cursor goes back up over the bars, many times.
    assert len(re.findall(r"\x1b\[\d+A", text_out)) >= 5, text_out
    assert "\r" in text_out and "\x1b[2K" in text_out
    frames = re.findall(r"total \[[#-]+\]\s+(\d+)%", text_out)
    assert len(frames) >= 5 and frames[-1] == "100"
    assert [int(f) for f in frames] == sorted(int(f) for f in frames)    # only forward
    assert re.search(r"VAE/tty\.bin\s+\[[#-]+\]\s+\d+%", text_out)         # the file's own bar
    assert re.search(r"done\s+VAE/tty\.bin\s+verified", text_out)
    last = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text_out.rstrip().splitlines()[-1])
    assert last.startswith("prefetched 1 of 1"), last


def test_prefetch_without_a_terminal_prints_lines(hub, modelfs_bin, tmp_path):
    text, _ = one_file_config(hub, "plain.bin", 48 * MiB,
                              settings="connections = 16")
    (tmp_path / "c.toml").write_text(text)
    hub.faults(path="plain.bin", rate_bps=512 * 1024)  # 16 connections: about 6 s
    r = cli(modelfs_bin, tmp_path, "prefetch", "--config", tmp_path / "c.toml", "--cache-dir",
            tmp_path / "cache", expect=0)
    assert "\x1b" not in r.stdout and "\r" not in r.stdout
    lines = r.stdout.splitlines()
    assert any(re.match(r"start\s+VAE/plain\.bin", l) for l in lines), lines
    assert any(re.match(r"progress \d+% .* ETA", l) for l in lines), lines
    assert any(re.match(r"done\s+VAE/plain\.bin\s+verified", l) for l in lines), lines
    assert lines[-1].startswith("prefetched 1 of 1"), lines


@pytest.mark.parametrize("through_mount", [False, True], ids=["standalone", "mounted"])
def test_interrupted_prefetch_resumes(hub, mount, modelfs_bin, tmp_path, through_mount):
    size = 40 * MiB
    text, sha = one_file_config(hub, "int.bin", size,
                                settings="connections = 16")
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    cache = tmp_path / "cache"
    hub.faults(path="int.bin", rate_bps=384 * 1024)     # 1 MiB blocks take ~2.7 s each
    args = ["prefetch", "--cache-dir", cache]
    if through_mount:
        m = mount(text, cache_dir=cache)
    else:
        args += ["--config", cfg]
    p = subprocess.Popen([str(modelfs_bin), *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path))
    try:
        # Interrupt once some blocks are in, long before the end.
        wait_for(lambda: any(r["bytes"] >= MiB for r in data_requests(hub, "int.bin")),
                 timeout=30, what="a first block")
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (out, err)
    assert not SANITIZER_RE.search(err)
    assert "interrupted" in out and "run the same command again" in out, out
    hub.clear_faults()
    if through_mount:
        time.sleep(3)      # blocks already coming finish in the daemon, and stay
    # The hub logs a request when it ends, some after the client left.
    first = stable(lambda: bytes_fetched(hub, "int.bin"))
    cached = file_status(status(modelfs_bin, tmp_path, cache, *([] if through_mount else
                                                                 ["--config", cfg])),
                         "VAE/int.bin")["cached"]
    assert 0 < cached < size
    r = cli(modelfs_bin, tmp_path, *args, expect=0)
    assert "prefetched 1 of 1" in r.stdout
    second = bytes_fetched(hub, "int.bin") - first
    assert second <= size - cached < size          # only what was missing
    st = status(modelfs_bin, tmp_path, cache, *([] if through_mount else ["--config", cfg]))
    assert file_status(st, "VAE/int.bin")["state"] == "verified"
    assert file_status(st, "VAE/int.bin")["sha256"] == sha


def test_reads_go_before_a_prefetch(hub, mount, modelfs_bin, tmp_path):
    _, sha_big = hub.add_file("big.bin", 64 * MiB)
    src, _ = hub.add_file("small.bin", 4 * MiB)
    text = config({"vae": {"big": url_entry(hub.url("big.bin"), sha256=sha_big),
                           "small": url_entry(hub.url("small.bin"))}})
    m = mount(text)
    hub.faults(path="big.bin", rate_bps=512 * 1024)          # 2 s a block
    p = subprocess.Popen([str(modelfs_bin), "prefetch", "--cache-dir", str(m.cache_dir),
                          "VAE/big.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=cli_env(tmp_path))
    try:
        wait_for(lambda: len(hub.requests(path="big.bin")) >= 8, what="the prefetch under way")
        t0 = time.monotonic()
        assert pread(m.path / "VAE" / "small.bin", 3 * MiB, 4096) == file_slice(src, 3 * MiB, 4096)
        took = time.monotonic() - t0
        # Served by a worker the prefetch left free, not after a 2 s block.
        assert took < 1.0, took
        assert p.poll() is None                                   # the prefetch goes on
    finally:
        hub.clear_faults()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, (out, err)


def test_prefetch_reports_each_failed_file(hub, modelfs_bin, tmp_path):
    _, good_sha = hub.add_file("good.bin", 3 * MiB)
    hub.add_file("bad.bin", 3 * MiB)
    text = config({"vae": {
        "good": url_entry(hub.url("good.bin"), sha256=good_sha),
        "bad": url_entry(hub.url("bad.bin"), sha256="0" * 64),       # not its hash
        "gone": url_entry(hub.url("missing.bin"), size=1000),
    }})
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = cli(modelfs_bin, tmp_path, "prefetch", "--config", cfg, "--cache-dir", tmp_path / "cache",
            expect=1)
    assert re.search(r"FAILED VAE/bad\.bin: checksum mismatch", r.stdout), r.stdout
    assert re.search(r"modelfs prefetch: VAE/bad\.bin: checksum mismatch", r.stderr), r.stderr
    assert re.search(r"modelfs prefetch: VAE/missing\.bin: .*404", r.stderr), r.stderr
    assert re.search(r"done\s+VAE/good\.bin\s+verified", r.stdout)
    # Names that match nothing, and no config without a mount, are usage errors.
    r = cli(modelfs_bin, tmp_path, "prefetch", "--config", cfg, "--cache-dir", tmp_path / "cache",
            "VAE/nope.bin", expect=2)
    assert "nope.bin" in r.stderr
    r = cli(modelfs_bin, tmp_path, "prefetch", "--cache-dir", tmp_path / "cache2", expect=2)
    assert "--config" in r.stderr


@pytest.mark.parametrize("through_mount", [True, False])
def test_prefetch_of_a_file_too_large_for_the_cache_fails_it_alone(hub, mount, modelfs_bin,
                                                                   tmp_path, through_mount):
    """One file that fits, one that never can: the first ends complete, the
    second fails at once, named, with nothing of it fetched, and the summary
    does not say "all verified"."""
    hub.add_file("big.bin", 8 * MiB, seed=2)
    hub.add_file("small.bin", 4 * MiB, seed=1)
    text = config({"vae": {"b": '"%s"' % hub.url("big.bin"), "s": '"%s"' % hub.url("small.bin")}},
                  settings='cache_max_size = "6M"\ncache_min_free = 0')
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    cache = tmp_path / "cache"
    if through_mount:
        mount(text, cache_dir=cache)
        args = ("prefetch", "--cache-dir", cache)
    else:
        args = ("prefetch", "--cache-dir", cache, "--config", cfg)
    r = cli(modelfs_bin, tmp_path, *args, expect=1)
    assert re.search(r"FAILED VAE/big\.bin: 8\.00 MiB is larger than the cache can hold "
                     r"\(6\.00 MiB", r.stdout), r.stdout
    assert re.search(r"done\s+VAE/small\.bin\s+complete", r.stdout), r.stdout
    assert "all verified" not in r.stdout
    assert "modelfs prefetch: VAE/big.bin: " in r.stderr, r.stderr
    assert bytes_fetched(hub, "big.bin") == 0
    time.sleep(0.5)                                     # nothing goes on behind
    assert bytes_fetched(hub, "big.bin") == 0 and bytes_fetched(hub, "small.bin") == 4 * MiB


def test_prefetch_pin_outlives_a_mount_without_pin(hub, mount, modelfs_bin, tmp_path):
    text, _ = one_file_config(hub, "pin.bin", 3 * MiB)
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    cache = tmp_path / "cache"
    cli(modelfs_bin, tmp_path, "prefetch", "--pin", "--config", cfg, "--cache-dir", cache, expect=0)
    m = mount(text, cache_dir=cache)
    assert file_status(status(modelfs_bin, tmp_path, cache), "VAE/pin.bin")["pinned"] is True
    r = cli(modelfs_bin, tmp_path, "evict", "--cache-dir", cache, "VAE/pin.bin", expect=1)
    assert "refused" in r.stdout and "pinned" in r.stdout
    m.unmount()


# ---------------------------------------------------------------------------
# the config's prefetch

def test_config_prefetch_warms_files_after_mounting(hub, mount, modelfs_bin, tmp_path):
    _, sha_a = hub.add_file("w1.bin", 5 * MiB)
    _, sha_b = hub.add_file("w2.bin", 4 * MiB)
    hub.add_file("cold.bin", 4 * MiB)
    text = config({"vae": {"a": url_entry(hub.url("w1.bin"), sha256=sha_a, prefetch=True),
                           "b": url_entry(hub.url("w2.bin"), sha256=sha_b),
                           "c": url_entry(hub.url("cold.bin"))}},
                  settings='prefetch = ["VAE/w2.bin"]')
    m = mount(text)
    for name in ("w1.bin", "w2.bin"):
        wait_for(lambda: os.getxattr(m.path / "VAE" / name, "user.modelfs.state") == b"verified",
                 timeout=30, what="%s warmed" % name)
    assert bytes_fetched(hub, "cold.bin") == 0
    assert os.getxattr(m.path / "VAE" / "cold.bin", "user.modelfs.state") == b"remote"
    wait_for(lambda: "event=warmed path=VAE/w1.bin" in m.log(), what="the warmup's log line")


# ---------------------------------------------------------------------------
# status

def test_status_of_a_partially_cached_mount(hub, mount, modelfs_bin, tmp_path):
    text, sha = one_file_config(hub, "st.bin", 10 * MiB)
    m = mount(text)
    path = m.path / "VAE" / "st.bin"
    three = 3 * 256 * 1024
    for off in (0, 5 * MiB, 9 * MiB):                 # three separate 256 KiB blocks
        assert pread(path, off, 100) == file_slice(hub.root / "st.bin", off, 100)
    # A read is answered as its bytes arrive; its block is cached a moment later.
    wait_for(lambda: xattr(path, "cached") == str(three), what="three blocks cached")
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert st["mounted"] is True and st["mountpoint"] == str(m.path)
    assert isinstance(st["pid"], int) and st["cache_dir"] == str(m.cache_dir)
    f = file_status(st, "VAE/st.bin")
    assert abs(f.pop("last_used") - time.time()) < 120
    assert f.pop("downloaded") == {"tier": 0, "bucket": 0, "origin": three}
    assert f == {"path": "VAE/st.bin", "entry": "vae/m", "key": None, "size": 10 * MiB,
                 "cached": three, "state": "partial", "pinned": False, "shadowed": False,
                 "source": hub.url("st.bin"), "source_kind": "url", "sha256": sha,
                 "error": None}
    assert st["cache"]["used"] == three
    assert st["cache"]["limit"] is None and st["cache"]["fs_free"] > 0
    assert st["cache"]["min_free"] > 0
    assert "history" not in st
    r = cli(modelfs_bin, tmp_path, "status", "--cache-dir", m.cache_dir, expect=0)
    assert re.search(r"VAE/st\.bin\s+10\.0 MiB\s+768 KiB\s+partial", r.stdout), r.stdout
    assert "mounted at %s" % m.path in r.stdout
    m.unmount()
    # Without the mount: the same from the index, with or without the config.
    for extra in ([], ["--config", m.config_path]):
        st = status(modelfs_bin, tmp_path, m.cache_dir, *extra)
        assert st["mounted"] is False and st["mountpoint"] is None
        f = file_status(st, "VAE/st.bin")
        assert (f["cached"], f["state"], f["size"], f["entry"]) == (three, "partial",
                                                                    10 * MiB, "vae/m")
    assert file_status(st, "VAE/st.bin")["source"] == hub.url("st.bin")


def test_status_history_lists_fetches(hub, mount, modelfs_bin, tmp_path):
    hub.add_file("h.bin", 4 * MiB)
    hub.add_file("hfail.bin", 4 * MiB)
    text = config({"vae": {"h": '"%s"' % hub.url("h.bin"), "f": '"%s"' % hub.url("hfail.bin")}},
                  settings="retry_timeout = 1")
    m = mount(text, allowed_errors=[r"hfail\.bin"])
    pread(m.path / "VAE" / "h.bin", 2 * MiB, 10)
    hub.faults(path="hfail.bin", fail=[500] * 50)
    with pytest.raises(OSError):
        pread(m.path / "VAE" / "hfail.bin", 0, 10)
    st = status(modelfs_bin, tmp_path, m.cache_dir, "--history")
    hist = st["history"]
    ok = [h for h in hist if h["path"] == "VAE/h.bin"]
    assert ok and ok[0]["outcome"] == "ok" and ok[0]["bytes"] == 256 * 1024
    assert ok[0]["offset"] == 2 * MiB and ok[0]["error"] is None
    assert abs(ok[0]["time"] - time.time()) < 120 and ok[0]["ms"] >= 0
    bad = [h for h in hist if h["path"] == "VAE/hfail.bin"]
    assert bad and bad[-1]["outcome"] == "error" and "500" in bad[-1]["error"]
    r = cli(modelfs_bin, tmp_path, "status", "--cache-dir", m.cache_dir, "--history=5", expect=0)
    assert "recent fetches" in r.stdout and re.search(r"VAE/hfail\.bin .*error: .*500", r.stdout)


def control_call(cache, request):
    """One request on the control socket, its reply lines read raw."""
    c = socket.socket(socket.AF_UNIX)
    c.connect(str(cache / "control.sock"))
    with c, c.makefile("rb") as f:
        c.sendall(json.dumps(request).encode() + b"\n")
        head = json.loads(f.readline())
        return head, [json.loads(f.readline()) for _ in range(head.get("parts", 0))]


def test_status_of_six_thousand_entries(hub, mount, modelfs_bin, tmp_path):
    # One status line per file would pass the control line limit (1 MiB)
    # near 4,500 entries; the reply now comes a line per file.
    n = 6000
    hub.add_file("tiny.bin", 1000)
    entries = {"m%04d" % i: url_entry(hub.url("tiny.bin"), filename="t%04d.bin" % i)
               for i in range(n)}
    m = mount(config({"vae": entries}))
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert [f["path"] for f in st["files"]] == ["VAE/t%04d.bin" % i for i in range(n)]
    assert all(f["size"] == 1000 and f["state"] == "remote" for f in st["files"])
    r = cli(modelfs_bin, tmp_path, "status", "--cache-dir", m.cache_dir, expect=0)
    assert len(re.findall(r"^VAE/t\d{4}\.bin +1000 B ", r.stdout, re.M)) == n, r.stdout[-2000:]
    # Parts put back are the one-line reply (which a client that does not
    # ask for parts still gets), key order included.
    one, _ = control_call(m.cache_dir, {"cmd": "status"})
    head, parts = control_call(m.cache_dir, {"cmd": "status", "parts": True})
    assert "parts" not in one and head["parts"] == len(parts) == n
    assert head["result"]["files"] == [] and {p["part"] for p in parts} == {"files"}
    assert [p["item"] for p in parts] == one["result"]["files"] == st["files"]
    assert list(head["result"]) == list(one["result"]) == list(st)


# ---------------------------------------------------------------------------
# verify

def damage(cache, offset):
    [data] = list((cache / "data").iterdir())
    with open(data, "r+b") as f:
        f.seek(offset)
        old = f.read(8)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))


@pytest.mark.parametrize("through_mount", [True, False], ids=["mounted", "standalone"])
def test_verify_finds_and_drops_a_damaged_block(hub, mount, modelfs_bin, tmp_path, through_mount):
    text, sha = one_file_config(hub, "v.bin", 8 * MiB)
    m = mount(text)
    path = m.path / "VAE" / "v.bin"
    assert sha256_of(path) == sha
    wait_for(lambda: os.getxattr(path, "user.modelfs.state") == b"verified", what="verified")
    if not through_mount:
        m.unmount()
    res = cli_json(modelfs_bin, tmp_path, "verify", "--cache-dir", m.cache_dir)
    assert res["bad"] == 0 and res["files"][0]["hash"] == "verified"
    assert res["files"][0]["checked_blocks"] == 32       # 256 KiB blocks
    damage(m.cache_dir, 3 * MiB + 1234)
    r = cli(modelfs_bin, tmp_path, "verify", "--cache-dir", m.cache_dir, "VAE/v.bin", expect=1)
    assert re.search(r"BAD\s+VAE/v\.bin: 1 of 32 blocks", r.stdout), r.stdout
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert file_status(st, "VAE/v.bin")["cached"] == 8 * MiB - 256 * 1024
    assert file_status(st, "VAE/v.bin")["state"] == "partial"
    cli(modelfs_bin, tmp_path, "verify", "--cache-dir", m.cache_dir, expect=0)
    if through_mount:
        before = bytes_fetched(hub, "v.bin")
        assert sha256_of(path) == sha                    # the block came again, exact
        assert bytes_fetched(hub, "v.bin") == before + 256 * 1024


def test_verify_whole_file_mismatch_marks_corrupt(hub, mount, modelfs_bin, tmp_path):
    # Every block matches its own checksum, but the whole file is not what
    # the index expects (as when an origin served other bytes): corrupt.
    text, _ = one_file_config(hub, "vc.bin", 4 * MiB, with_sha=False)
    m = mount(text)
    sha256_of(m.path / "VAE" / "vc.bin")
    wait_for(lambda: xattr_state(m.path / "VAE" / "vc.bin") == "complete", what="hashed")
    m.unmount()
    import sqlite3
    db = sqlite3.connect(m.cache_dir / "index.sqlite")
    db.execute("UPDATE resolutions SET sha256=?", ("ab" * 32,))
    db.commit()
    db.close()
    res = cli_json(modelfs_bin, tmp_path, "verify", "--cache-dir", m.cache_dir, expect=1)
    [f] = res["files"]
    assert f["hash"] == "mismatch" and f["state"] == "corrupt" and f["bad_blocks"] == 0
    assert "checksum mismatch: expected sha256 " + "ab" * 32 in f["error"]
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert file_status(st, "VAE/vc.bin")["state"] == "corrupt"
    assert file_status(st, "VAE/vc.bin")["cached"] == 0


# ---------------------------------------------------------------------------
# evict

def test_evict_frees_space_and_keeps_pinned_files(hub, mount, modelfs_bin, tmp_path):
    _, sha_e = hub.add_file("e.bin", 16 * MiB)
    _, sha_p = hub.add_file("ep.bin", 4 * MiB)
    text = config({"vae": {"e": url_entry(hub.url("e.bin"), sha256=sha_e),
                           "p": url_entry(hub.url("ep.bin"), sha256=sha_p, pin=True)}})
    m = mount(text)
    assert sha256_of(m.path / "VAE" / "e.bin") == sha_e
    assert sha256_of(m.path / "VAE" / "ep.bin") == sha_p
    full = data_file_bytes(m.cache_dir)
    assert full >= 20 * MiB
    res = cli_json(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir, "VAE/e.bin")
    assert res["freed"] == 16 * MiB and res["files"][0]["result"] == "evicted"
    assert data_file_bytes(m.cache_dir) <= full - 16 * MiB + 64 * 1024
    assert xattr_state(m.path / "VAE" / "e.bin") == "remote"
    # The pinned one stays unless forced.
    r = cli(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir, "vae/p", expect=1)
    assert "refused" in r.stdout
    assert file_status(status(modelfs_bin, tmp_path, m.cache_dir), "VAE/ep.bin")["cached"] == 4 * MiB
    r = cli(modelfs_bin, tmp_path, "evict", "--force", "--cache-dir", m.cache_dir, "vae/p",
            expect=0)
    assert "evicted" in r.stdout
    assert data_file_bytes(m.cache_dir) < 256 * 1024
    # Read again: fetched afresh, exact.
    assert sha256_of(m.path / "VAE" / "e.bin") == sha_e
    # With nothing named, evict trims to the limits (none here: nothing to do).
    res = cli_json(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir)
    assert res["trimmed"] is True and res["freed"] == 0


def xattr_state(path):
    return os.getxattr(path, "user.modelfs.state").decode()


def test_evict_while_a_program_reads_gives_exact_bytes(hub, mount, modelfs_bin, tmp_path):
    text, sha = one_file_config(hub, "er.bin", 12 * MiB)
    m = mount(text)
    path = m.path / "VAE" / "er.bin"
    want = (hub.root / "er.bin").read_bytes()
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # past the page cache
                off = 0
                while off < len(want):
                    chunk = os.pread(fd, 256 * 1024, off)
                    if chunk != want[off:off + len(chunk)] or not chunk:
                        errors.append(off)
                        return
                    off += len(chunk)
            except OSError as e:
                errors.append(e)
                return
            finally:
                os.close(fd)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(8):
            cli(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir, "VAE/er.bin", expect=0)
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors
    assert sha256_of(path) == sha


def test_evict_without_mount_and_trim_to_limits(hub, mount, modelfs_bin, tmp_path):
    text, sha = one_file_config(hub, "et.bin", 8 * MiB)
    m = mount(text)
    sha256_of(m.path / "VAE" / "et.bin")
    m.unmount()
    # Lower the limit in the config: evict with no file named trims to it.
    small = m.config_path.read_text().replace("[modelfs]", '[modelfs]\ncache_max_size = "3M"')
    (tmp_path / "small.toml").write_text(small)
    res = cli_json(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir, "--config",
                   tmp_path / "small.toml")
    assert res["trimmed"] is True and res["freed"] >= 5 * MiB and res["used"] <= 3 * MiB
    res = cli_json(modelfs_bin, tmp_path, "evict", "--cache-dir", m.cache_dir, "VAE/et.bin")
    assert res["files"][0]["result"] == "evicted" and data_file_bytes(m.cache_dir) < 64 * 1024


# ---------------------------------------------------------------------------
# info

def expected_params(src):
    head = open(src, "rb").read(8 << 20)
    header, _ = genmodel.parse_safetensors_header(head)
    total = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for d in t["shape"]:
            n *= d
        total += n
    return total, len(header) - ("__metadata__" in header)


def test_info_reads_only_the_header_through_the_mount(hub, mount, modelfs_bin, tmp_path):
    src, _ = hub.add_file("i.safetensors", 96 * MiB, kind="safetensors")
    # Without the mount's own header prefetch: what info reads is counted.
    text = config({"checkpoints": {"i": url_entry(hub.url("i.safetensors"))}}, block_size="1M",
                  settings="header_prefetch = false")
    m = mount(text)
    path = m.path / "Stable-diffusion" / "i.safetensors"
    params, tensors = expected_params(src)
    info = cli_json(modelfs_bin, tmp_path, "info", path)
    assert info["parameters"] == params and info["tensors"] == tensors
    assert info["format"] == "safetensors" and info["file_size"] == 96 * MiB
    assert info["weight_bytes"] == 96 * MiB - info["header_bytes"]
    assert info["overhead"] == 1.2 and info["vram_bytes"] == int(info["weight_bytes"] * 1.2)
    assert info["gpu_gb"] == 8
    assert sum(d["parameters"] for d in info["dtypes"]) == params
    # Only the first block was fetched.
    assert bytes_fetched(hub, "i.safetensors") <= MiB
    assert len(data_requests(hub, "i.safetensors")) == 1
    r = cli(modelfs_bin, tmp_path, "info", path, expect=0)
    assert re.search(r"parameters:\s+.*\(%d\)" % params, r.stdout), r.stdout
    assert "fits an 8 GB GPU" in r.stdout and "x 1.2" in r.stdout
    # Named by its entry, through the mount.
    info = cli_json(modelfs_bin, tmp_path, "info", "--cache-dir", m.cache_dir, "checkpoints/i")
    assert info["parameters"] == params
    assert len(data_requests(hub, "i.safetensors")) == 1
    m.unmount()
    # Without the mount, with the config: the cached header, nothing fetched.
    info = cli_json(modelfs_bin, tmp_path, "info", "--cache-dir", m.cache_dir, "--config",
                    m.config_path, "Stable-diffusion/i.safetensors")
    assert info["parameters"] == params
    assert len(data_requests(hub, "i.safetensors")) == 1
    r = cli(modelfs_bin, tmp_path, "info", tmp_path / "nowhere.safetensors", expect=2)
    assert "no such file" in r.stderr


def test_info_on_a_gguf_file(tmp_path, modelfs_bin):
    def s(x):
        return struct.pack("<Q", len(x)) + x
    kv = s(b"general.architecture") + struct.pack("<I", 8) + s(b"llama")
    kv += s(b"general.alignment") + struct.pack("<II", 4, 32)
    tensors = [(b"tok", [256, 64], 12), (b"out", [64, 32], 8), (b"norm", [64], 0)]
    ti = b"".join(s(n) + struct.pack("<I", len(d)) + b"".join(struct.pack("<Q", x) for x in d)
                  + struct.pack("<IQ", t, 0) for n, d, t in tensors)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2) + kv + ti
    head += b"\0" * (-len(head) % 32)
    data = 64 * 144 + 64 * 34 + 64 * 4
    f = tmp_path / "m.gguf"
    f.write_bytes(head + b"\0" * data)
    info = cli_json(modelfs_bin, tmp_path, "info", f)
    assert info["format"] == "gguf" and info["gguf_version"] == 3
    assert info["architecture"] == "llama" and info["tensors"] == 3
    assert info["parameters"] == 256 * 64 + 64 * 32 + 64
    assert {d["dtype"]: d["bytes"] for d in info["dtypes"]} == {"Q4_K": 64 * 144, "Q8_0": 64 * 34,
                                                                "F32": 256}
    f.write_bytes(head[:40])
    r = cli(modelfs_bin, tmp_path, "info", f, expect=2)
    assert "GGUF" in r.stderr


# ---------------------------------------------------------------------------
# the control socket and logs

def test_control_socket_lives_with_the_mount(hub, mount, modelfs_bin, tmp_path):
    text, _ = one_file_config(hub, "cs.bin", MiB)
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(cache / "control.sock"))              # left by a daemon that died
    stale.close()
    m = mount(text, cache_dir=cache)
    sock = cache / "control.sock"
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert status(modelfs_bin, tmp_path, cache)["mounted"] is True
    # The protocol: one JSON object a line.
    c = socket.socket(socket.AF_UNIX)
    c.connect(str(sock))
    c.sendall(b'{"cmd": "hello"}\n{"cmd": "status"}\n{"cmd": "nope"}\n')
    f = c.makefile("rb")
    hello, st, bad = (json.loads(f.readline()) for _ in range(3))
    c.close()
    assert hello["ok"] and hello["mountpoint"] == str(m.path) and hello["pid"] > 0
    assert st["ok"] and st["result"]["files"][0]["path"] == "VAE/cs.bin"
    assert bad == {"ok": False, "error": "unknown command", "code": 2}
    m.unmount()
    assert not sock.exists()


def test_debug_from_fuse_options(hub, mount, modelfs_bin, tmp_path):
    text, _ = one_file_config(hub, "dbg.bin", MiB)
    m = mount(text, extra_args=["-o", "debug"])
    pread(m.path / "VAE" / "dbg.bin", 0, 10)
    assert re.search(r" debug event=read path=VAE/dbg\.bin", m.log())
    m.unmount()
    # libfuse never saw "-o debug" (it would print its own help or an error).
    assert not re.search(r"(?<![\w/-])-o\b", m.stderr)


def test_commands_find_the_mount_from_a_path_inside_it(hub, mount, modelfs_bin, tmp_path):
    text, sha = one_file_config(hub, "p.bin", 2 * MiB)
    m = mount(text)
    path = m.path / "VAE" / "p.bin"
    other = tmp_path / "other-cache"            # not the mount's: the path wins
    # From a working directory inside the mount, with no --cache-dir at all.
    r = subprocess.run([str(modelfs_bin), "status", "--json"], capture_output=True, text=True,
                       timeout=60, cwd=m.path / "VAE", env=cli_env(tmp_path),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["mounted"] is True and st["pid"] == m.pid and st["cache_dir"] == str(m.cache_dir)
    # A path argument, whatever --cache-dir says.
    cli(modelfs_bin, tmp_path, "prefetch", "--cache-dir", other, path, expect=0)
    assert xattr(path, "state") == "verified"
    assert not other.exists()
    assert os.getxattr(m.path, "user.modelfs.cache_dir").decode() == str(m.cache_dir)
    mounts = cli_json(modelfs_bin, tmp_path, "mounts")
    mine = [x for x in mounts if x["mountpoint"] == str(m.path)]
    assert mine == [{"mountpoint": str(m.path), "cache_dir": str(m.cache_dir), "state": "live",
                     "pid": m.pid}], mounts
    # A stale mount (the daemon killed) is named, with the command that recovers it.
    m.kill()
    wait_for(lambda: not os.path.exists("/proc/%d/cmdline" % m.pid) or
             open("/proc/%d/stat" % m.pid).read().split(")")[1].split()[0] == "Z",
             what="the daemon gone")
    mine = [x for x in cli_json(modelfs_bin, tmp_path, "mounts") if x["mountpoint"] == str(m.path)]
    assert mine and mine[0]["state"] == "stale" and "fusermount3 -uz" in mine[0]["recover"]
    r = cli(modelfs_bin, tmp_path, "verify", path, expect=1)
    assert "is stale" in r.stderr and "fusermount3 -uz %s" % m.path in r.stderr, r.stderr


def test_a_mount_whose_daemon_hangs_does_not_hang_the_commands(hub, mount, modelfs_bin,
                                                                tmp_path):
    """A stopped (or stuck) daemon leaves a getxattr or a stat of its mount
    waiting for ever: mounts, status and verify answer within seconds and
    say what to do."""
    text, _ = one_file_config(hub, "h.bin", 2 * MiB)
    m = mount(text)
    path = m.path / "VAE" / "h.bin"
    os.kill(m.pid, signal.SIGSTOP)
    try:
        # A command that hung would be killed by cli()'s timeout: the test fails.
        mine = [x for x in cli_json(modelfs_bin, tmp_path, "mounts")
                if x["mountpoint"] == str(m.path)]
        assert mine and mine[0]["state"] == "hung", mine
        assert "fusermount3 -uz" in mine[0]["recover"] and "kill" in mine[0]["recover"]
        for cmd in ("status", "verify"):
            r = cli(modelfs_bin, tmp_path, cmd, path, expect=1)
            assert "%s does not answer" % m.path in r.stderr, r.stderr
    finally:
        os.kill(m.pid, signal.SIGCONT)
    assert cli_json(modelfs_bin, tmp_path, "status", path)["mounted"] is True


def test_prefetch_progress_moves_within_a_block(hub, modelfs_bin, tmp_path):
    """Progress counts bytes as they arrive, not per block: a file of one
    8 MiB block fetched at 4 MiB/s shows values between 0 and its size."""
    hub.add_file("slow.bin", 8 * MiB)
    hub.faults(path="slow.bin", method="GET", rate_bps=4 * MiB)
    cfg = tmp_path / "c.toml"
    cfg.write_text(config({"vae": {"s": '"%s"' % hub.url("slow.bin")}}, block_size="8M"))
    r = cli(modelfs_bin, tmp_path, "prefetch", "--json", "--config", cfg, "--cache-dir",
            tmp_path / "cache", expect=0)
    seen = [v for ev in map(json.loads, r.stdout.splitlines()) if ev["event"] == "progress"
            for _, v in ev["files"]]
    assert any(0 < v < 8 * MiB for v in seen), seen
    assert seen == sorted(seen)                     # it never goes back


# ---------------------------------------------------------------------------
# retention: evict --unused-for, cache_ttl, last use in status

DAY_MS = 86400 * 1000


def age_files(cache_dir, paths, days):
    """Make the index say the files at these mount paths were last used
    `days` ago (the cache must not be in use)."""
    import sqlite3
    db = sqlite3.connect(str(cache_dir / "index.sqlite"))
    with db:
        for path in paths:
            n = db.execute("UPDATE blocks SET atime = atime - ? WHERE file_id IN (SELECT f.id "
                           "FROM files f JOIN resolutions r ON r.file_key = f.key "
                           "WHERE r.path = ?)", (days * DAY_MS, path)).rowcount
            assert n > 0, path
    db.close()


def three_file_mount(hub, mount, settings=""):
    files = {}
    for name, size in (("old.bin", 3 * MiB), ("oldpin.bin", 2 * MiB), ("new.bin", 1 * MiB)):
        files[name] = hub.add_file(name, size)[1]
    text = config({"vae": {"o": url_entry(hub.url("old.bin"), sha256=files["old.bin"]),
                           "p": url_entry(hub.url("oldpin.bin"), sha256=files["oldpin.bin"],
                                          pin=True),
                           "n": url_entry(hub.url("new.bin"), sha256=files["new.bin"])}},
                  settings=settings)
    m = mount(text)
    for name, sha in files.items():
        assert sha256_of(m.path / "VAE" / name) == sha
    return text, m, files


def test_evict_unused_for_drops_only_files_not_read_since(hub, mount, modelfs_bin, tmp_path):
    text, m, files = three_file_mount(hub, mount)
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    now = time.time()
    for name in files:
        assert now - 120 < file_status(st, "VAE/" + name)["last_used"] <= now + 1
    assert "LAST USE" in cli(modelfs_bin, tmp_path, "status", "--cache-dir", m.cache_dir,
                             expect=0).stdout
    m.unmount()
    age_files(m.cache_dir, ["VAE/old.bin", "VAE/oldpin.bin"], 40)

    # Without a mount: the whole index is looked at, pinned files are kept
    # and not a refusal (exit 0).
    res = cli_json(modelfs_bin, tmp_path, "evict", "--unused-for", "30d", "--cache-dir",
                   m.cache_dir)
    results = {f["path"]: f["result"] for f in res["files"]}
    assert results["VAE/old.bin"] == "evicted" and results["VAE/oldpin.bin"] == "pinned"
    assert results["VAE/new.bin"] == "recent" and res["refused"] == 0
    assert res["freed"] == 3 * MiB and res["unused_before"] < now - 29 * 86400
    r = cli(modelfs_bin, tmp_path, "evict", "--unused-for", "30d", "--cache-dir", m.cache_dir,
            expect=0)
    assert "kept     VAE/oldpin.bin: pinned" in r.stdout and "VAE/new.bin: used" in r.stdout
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert file_status(st, "VAE/old.bin")["cached"] == 0
    assert file_status(st, "VAE/old.bin")["last_used"] is None
    assert file_status(st, "VAE/oldpin.bin")["cached"] == 2 * MiB
    assert file_status(st, "VAE/oldpin.bin")["last_used"] < now - 39 * 86400

    # Through a mount: the daemon's files, named or not.
    m = mount(text, cache_dir=m.cache_dir)
    assert sha256_of(m.path / "VAE" / "old.bin") == files["old.bin"]
    time.sleep(2.2)
    res = cli_json(modelfs_bin, tmp_path, "evict", "--unused-for", "2s", "--cache-dir",
                   m.cache_dir, "VAE/new.bin", "VAE/old.bin")
    assert {f["path"]: f["result"] for f in res["files"]} == {
        "VAE/new.bin": "evicted", "VAE/old.bin": "evicted"}
    assert sha256_of(m.path / "VAE" / "new.bin") == files["new.bin"]
    res = cli_json(modelfs_bin, tmp_path, "evict", "--unused-for", "1h", "--cache-dir",
                   m.cache_dir)
    assert res["freed"] == 0 and {f["result"] for f in res["files"]} <= {"recent", "pinned",
                                                                         "empty"}
    r = cli(modelfs_bin, tmp_path, "evict", "--unused-for", "a while", "--cache-dir",
            m.cache_dir, expect=2)
    assert "--unused-for takes a duration" in r.stderr


def test_cache_ttl_evicts_files_unused_that_long(hub, mount, modelfs_bin, tmp_path):
    text, m, files = three_file_mount(hub, mount, settings='cache_ttl = "30d"')
    assert "cache_ttl_evicted" not in m.log()
    m.unmount()
    age_files(m.cache_dir, ["VAE/old.bin", "VAE/oldpin.bin"], 31)
    m = mount(text, cache_dir=m.cache_dir)
    wait_for(lambda: "event=cache_ttl_evicted path=VAE/old.bin" in m.log(),
             what="the retention pass's log line")
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert file_status(st, "VAE/old.bin")["cached"] == 0
    assert file_status(st, "VAE/oldpin.bin")["cached"] == 2 * MiB
    assert file_status(st, "VAE/new.bin")["cached"] == MiB
    assert "oldpin.bin" not in m.log().split("cache_ttl_evicted", 1)[1]
    # Evicted, not lost: read again, exact.
    assert sha256_of(m.path / "VAE" / "old.bin") == files["old.bin"]
    bad = config({"vae": {}}, settings='cache_ttl = "forever"')
    r = cli(modelfs_bin, tmp_path, "check", "--offline", str(write_tmp(tmp_path, bad)), expect=2)
    assert "cache_ttl" in r.stderr and "forever" in r.stderr


def test_the_daemons_own_reads_are_not_a_use(hub, mount, modelfs_bin, tmp_path):
    """The header prefetch at every mount and a verify read cached blocks,
    but no program did: a file's last use stays, so cache_ttl can still
    evict it on a box that remounts daily or verifies nightly."""
    _, sha = hub.add_file("h.safetensors", 4 * MiB, kind="safetensors")
    text = config({"checkpoints": {"h": url_entry(hub.url("h.safetensors"), sha256=sha)}})
    m = mount(text)
    path = m.path / "Stable-diffusion" / "h.safetensors"
    assert sha256_of(path) == sha
    wait_state(path, "verified")
    m.unmount()
    age_files(m.cache_dir, ["Stable-diffusion/h.safetensors"], 40)
    m = mount(text, cache_dir=m.cache_dir)
    wait_for(lambda: "event=header_prefetch " in m.log(), what="the header prefetch")
    cli(modelfs_bin, tmp_path, "verify", "--cache-dir", m.cache_dir, expect=0)
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert file_status(st, "Stable-diffusion/h.safetensors")["last_used"] < time.time() - 39 * 86400
    # A program's read is a use.
    pread(m.path / "Stable-diffusion" / "h.safetensors", 0, 4096)
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    assert file_status(st, "Stable-diffusion/h.safetensors")["last_used"] > time.time() - 120


def write_tmp(tmp_path, text):
    p = tmp_path / "ttl.toml"
    p.write_text(text)
    return p
