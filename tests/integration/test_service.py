"""systemd: the unit passes systemd-analyze verify, an fstab line becomes
the .mount unit one expects, and `modelfs mount -f` as a Type=notify
service sends READY=1 only once the mount is live, then STOPPING=1 and
exits, unmounted, on SIGTERM."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import REPO, is_mounted
from mfs import MiB, config, run
from nsutil import sanitizer_env, sanitizer_reports


def unit_text(modelfs_bin):
    text = (REPO / "conf" / "modelfs@.service.in").read_text()
    return text.replace("@BINDIR@", str(os.path.dirname(modelfs_bin)))


def test_unit_passes_systemd_analyze_verify(modelfs_bin, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze not found: tools/deps.sh installs systemd")
    unit = tmp_path / "modelfs@.service"
    unit.write_text(unit_text(modelfs_bin))
    for name in ("modelfs@.service", "modelfs@workspace-models.service"):
        if name != unit.name:
            shutil.copy(unit, tmp_path / name)
        r = run(["systemd-analyze", "verify", "--man=no", tmp_path / name], cwd=tmp_path)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    text = unit.read_text()
    for line in ("Type=notify", "EnvironmentFile=-/etc/modelfs/env", "TimeoutStopSec=20s",
                 "KillMode=mixed", "CacheDirectoryMode=0700", "WantedBy=remote-fs.target",
                 "ExecReload=%s reload %%f" % modelfs_bin):
        assert line in text.splitlines(), line
    # The same checks fail on a broken unit: the test can fail.
    (tmp_path / "modelfs@bad.service").write_text(text.replace(str(modelfs_bin),
                                                               "/nonexistent/modelfs"))
    r = run(["systemd-analyze", "verify", "--man=no", tmp_path / "modelfs@bad.service"])
    assert r.returncode != 0 and "/nonexistent/modelfs" in r.stderr


def test_an_fstab_line_becomes_a_remote_mount_unit(tmp_path):
    gen = "/lib/systemd/system-generators/systemd-fstab-generator"
    if not os.access(gen, os.X_OK):
        pytest.fail("%s not found: tools/deps.sh installs systemd" % gen)
    fstab = tmp_path / "fstab"
    fstab.write_text("modelfs:/etc/modelfs/models.toml /workspace/models fuse.modelfs "
                     "cache_dir=/var/cache/modelfs,allow_other,_netdev,nofail 0 0\n")
    out = tmp_path / "out"
    out.mkdir()
    r = run([gen, out, out, out], env={"SYSTEMD_FSTAB": str(fstab), "PATH": os.environ["PATH"],
                                       "SYSTEMD_LOG_LEVEL": "warning"})
    assert r.returncode == 0, r.stderr
    mount_unit = (out / "workspace-models.mount").read_text()
    assert "What=modelfs:/etc/modelfs/models.toml" in mount_unit
    assert "Type=fuse.modelfs" in mount_unit
    assert "Options=cache_dir=/var/cache/modelfs,allow_other,_netdev,nofail" in mount_unit
    # _netdev: a remote mount (ordered after the network at run time);
    # nofail: wanted, not required, by remote-fs.target, so boot goes on.
    assert (out / "remote-fs.target.wants" / "workspace-models.mount").exists()
    assert not (out / "remote-fs.target.requires").exists()


def _recv_all(sock, until, timeout):
    """Datagrams until one contains `until`, or timeout; returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if until in msg:
            break
    return got


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_only_once_live_then_sigterm_unmounts(modelfs_bin, hub, tmp_path, abstract):
    hub.add_file("a.bin", 2 * MiB)
    hub.faults(path="a.bin", header_delay_ms=1000, times=1)     # resolving takes a while
    cfg = tmp_path / "c.toml"
    cfg.write_text(config({"vae": {"a": '"%s"' % hub.url("a.bin")}}))
    mnt = tmp_path / "mnt"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "@modelfs-test-%d-%d" % (os.getpid(), time.monotonic_ns())
        sock.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    env = sanitizer_env(tmp_path, {k: v for k, v in os.environ.items()
                                   if not k.startswith(("HF_", "MODELFS_"))})
    env.update(NOTIFY_SOCKET=name, HOME=str(tmp_path))
    log = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen([modelfs_bin, "mount", "-f", "--cache-dir", tmp_path / "cache",
                             cfg, mnt], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        got = _recv_all(sock, "READY=1", timeout=30)
        # The mount is live the moment READY=1 arrives, not a moment later.
        live_at_ready = is_mounted(mnt) and (mnt / "VAE" / "a.bin").stat().st_size == 2 * MiB
        assert got and "READY=1" in got[-1], (got, (tmp_path / "stderr").read_text())
        assert len(got) == 1, got                       # nothing before READY
        assert live_at_ready
        fields = dict(line.split("=", 1) for line in got[-1].splitlines())
        assert fields["MAINPID"] == str(proc.pid)
        assert fields["STATUS"].startswith("Mounted %s: 1 files, " % mnt), fields
        assert "cached" in fields["STATUS"]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        assert time.monotonic() - t0 < 10
        assert rc == 0
        assert any("STOPPING=1" in m for m in _recv_all(sock, "STOPPING=1", timeout=2))
        assert not is_mounted(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)])
        sock.close()
        log.close()
    reports = sanitizer_reports(tmp_path)
    assert not reports, reports
    assert stat.S_ISDIR(os.stat(tmp_path / "cache").st_mode)
