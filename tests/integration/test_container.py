"""modelfs in a real container: a minimal Debian 12 root (debootstrap,
cached by tools/test-rootfs.sh) run with systemd-nspawn, the steps
docker/Dockerfile takes, since there is no Docker engine here.

With --bind=/dev/fuse the mount works inside; the container's folder is a
slave, so the mount never shows outside, and the host reads its files
through /proc/PID/root. SIGTERM from the host unmounts and ends the
container. Without /dev/fuse, mount says which run flags are missing and
prefetch --into puts the same files in a folder instead."""

import hashlib
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import REPO, is_mounted
from mfs import MiB, config, wait_for
from nsutil import end_procs, procs_mentioning, sanitizer_env, sanitizer_reports


@pytest.fixture(scope="module")
def rootfs():
    if not shutil.which("systemd-nspawn"):
        pytest.fail("systemd-nspawn not found: tools/deps.sh installs systemd-container")
    if subprocess.run(["unshare", "-m", "-p", "-f", "true"]).returncode != 0:
        pytest.skip("the kernel refuses new mount and pid namespaces here")
    r = subprocess.run(["sh", str(REPO / "tools" / "test-rootfs.sh")], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def nspawn(root, work, modelfs_bin, cmd, *, fuse, env=None):
    """systemd-nspawn running cmd in root, read-only, with this build at
    /opt/modelfs and work at /work; no machined or systemd unit needed."""
    argv = ["systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit", "--read-only",
            "--as-pid2", "--console=pipe", "--bind-ro=%s:/opt/modelfs" % os.path.dirname(modelfs_bin),
            "--bind=%s:/work" % work]
    if fuse:
        argv.append("--bind=/dev/fuse")
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if env and k in env:
            argv.append("--setenv=%s=%s" % (k, env[k].replace(str(work), "/work")))
    return argv + cmd


def make_work(hub, tmp_path):
    _, sha = hub.add_file("a.bin", 2 * MiB)
    work = tmp_path / "work"
    (work / "mnt").mkdir(parents=True)
    # A name no other run uses: how the host finds the daemon.
    cfg = "c-%d-%d.toml" % (os.getpid(), time.monotonic_ns())
    (work / cfg).write_text(config({"vae": {"a": '"%s"' % hub.url("a.bin")}}))
    return work, cfg, sha


def mount_in_box_and_read(argv, program, work, cfg, sha, tmp_path, timeout=60):
    """Start the container (argv), find the daemon it runs (program, its
    path inside) for cfg, read a.bin from the host through /proc/PID/root
    and check its hash; a --bind arrives inside as a slave, so the mount
    never shows outside. SIGTERM ends it within 10 s; nothing is left."""
    out = open(tmp_path / "nspawn.out", "wb")
    box = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        def daemon():
            assert box.poll() is None, (tmp_path / "nspawn.out").read_text()
            return ([p for p in procs_mentioning("/work/" + cfg)
                     if open("/proc/%d/cmdline" % p, "rb").read()
                     .startswith(program.encode() + b"\0")] or [None])[0]
        pid = wait_for(daemon, timeout=timeout, what="the daemon inside the container")
        inside = "/proc/%d/root/work/mnt/VAE/a.bin" % pid
        wait_for(lambda: os.path.exists(inside), timeout=60, what="the mount inside")
        with open(inside, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha
        assert not is_mounted(work / "mnt")
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        assert box.wait(timeout=10) == 0, (tmp_path / "nspawn.out").read_text()
        assert time.monotonic() - t0 < 10
    finally:
        if box.poll() is None:
            box.kill()
            box.wait()
        out.close()
        left = end_procs("/work/" + cfg, grace=5)
    assert not left


def test_mount_inside_nspawn_read_from_the_host(rootfs, modelfs_bin, hub, tmp_path):
    work, cfg, sha = make_work(hub, tmp_path)
    env = sanitizer_env(work)
    cmd = ["/opt/modelfs/modelfs", "mount", "-f", "--cache-dir", "/work/cache",
           "/work/" + cfg, "/work/mnt"]
    mount_in_box_and_read(nspawn(rootfs, work, modelfs_bin, cmd, fuse=True, env=env),
                          "/opt/modelfs/modelfs", work, cfg, sha, tmp_path)
    assert not sanitizer_reports(work)


def test_without_dev_fuse_mount_says_why_and_prefetch_into_works(rootfs, modelfs_bin, hub,
                                                                  tmp_path):
    work, cfg, sha = make_work(hub, tmp_path)
    env = sanitizer_env(work)
    mount = subprocess.run(nspawn(rootfs, work, modelfs_bin,
                                  ["/opt/modelfs/modelfs", "mount", "--cache-dir", "/work/cache",
                                   "/work/" + cfg, "/work/mnt"], fuse=False, env=env),
                           capture_output=True, text=True, timeout=120)
    assert mount.returncode != 0
    said = mount.stdout + mount.stderr
    assert "--device /dev/fuse --cap-add SYS_ADMIN" in said, said
    assert "prefetch --into" in said
    into = subprocess.run(nspawn(rootfs, work, modelfs_bin,
                                 ["/opt/modelfs/modelfs", "prefetch", "--into", "/work/models",
                                  "--config", "/work/" + cfg], fuse=False, env=env),
                          capture_output=True, text=True, timeout=120)
    assert into.returncode == 0, into.stdout + into.stderr
    got = (work / "models" / "VAE" / "a.bin").read_bytes()
    assert hashlib.sha256(got).hexdigest() == sha
    assert not end_procs("/work/" + cfg, grace=5)
    assert not sanitizer_reports(work)
