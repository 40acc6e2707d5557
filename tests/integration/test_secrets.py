"""Secrets in a config never reach what other users or programs can see:
xattrs (readable by every local user on an allow_other mount), `status`
(text and JSON), error texts and logs. Canaries are planted in a URL's
userinfo, in a ${VAR} expanded into its path and into its query."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mfs import MiB, config, pread, wait_for, xattr
from test_ops import cli, status

USERINFO = "canary-pass-4a7f"
PATH_TOKEN = "canary-path-91c3"
QUERY_TOKEN = "canary-query-5e2d"
AUTH_TOKEN = "canary-auth-77b0"
HEADER_TOKEN = "canary-header-2c19"
CANARIES = (USERINFO, PATH_TOKEN, QUERY_TOKEN, AUTH_TOKEN, HEADER_TOKEN)
ENV = {"MFS_PATH_TOKEN": PATH_TOKEN, "MFS_QUERY_TOKEN": QUERY_TOKEN,
       "MFS_AUTH": AUTH_TOKEN, "MFS_KEY": HEADER_TOKEN}


def secret_url(hub, name):
    host = hub.base().split("://", 1)[1]
    return ("http://alice:%s@%s/files/${MFS_PATH_TOKEN}/%s?sig=${MFS_QUERY_TOKEN}"
            % (USERINFO, host, name))


def assert_no_canary(where, text):
    for c in CANARIES:
        assert c not in text, "%s shows %s:\n%s" % (where, c, text)


def all_xattrs(path):
    return {n: os.getxattr(path, n).decode(errors="replace") for n in os.listxattr(path)}


def test_no_secret_in_xattrs_status_errors_or_logs(hub, mount, modelfs_bin, tmp_path):
    _, sha = hub.add_file("%s/ok.bin" % PATH_TOKEN, 2 * MiB)
    text = config({"vae": {"ok": '{ url = "%s", sha256 = "%s", auth_header = "Bearer ${MFS_AUTH}", '
                                 'headers = { "X-Api-Key" = "${MFS_KEY}" } }'
                                 % (secret_url(hub, "ok.bin"), sha),
                           "gone": '"%s"' % secret_url(hub, "gone.bin")}})
    m = mount(text, env=dict(ENV, MODELFS_LOG="debug"), expect_partial=True,
              allowed_errors=[r"gone\.bin"])
    assert "vae/gone (" in m.stderr          # the summary: checked for secrets below
    ok = m.path / "VAE" / "ok.bin"
    assert pread(ok, 0, 4096) == (hub.root / PATH_TOKEN / "ok.bin").read_bytes()[:4096]

    shown = all_xattrs(ok)
    assert shown["user.modelfs.source"] == (
        "http://***@%s/files/${MFS_PATH_TOKEN}/ok.bin" % hub.base().split("://", 1)[1])
    assert_no_canary("xattrs of ok.bin", repr(shown))

    # The entry whose origin has no such file: its error is shown too.
    st = status(modelfs_bin, tmp_path, m.cache_dir)
    gone = [f for f in st["files"] if f["entry"] == "vae/gone"]
    assert gone and gone[0]["state"] == "error" and gone[0]["error"], st
    assert_no_canary("status --json", repr(st))
    r = cli(modelfs_bin, tmp_path, "status", "--cache-dir", m.cache_dir)
    assert_no_canary("status", r.stdout + r.stderr)
    # Standalone, from the config: the same forms.
    r = cli(modelfs_bin, tmp_path, "check", "--offline", m.config_path, env=ENV)
    assert_no_canary("check --offline", r.stdout + r.stderr)

    with open("/proc/%d/cmdline" % m.pid, "rb") as f:
        assert_no_canary("the daemon's argv", f.read().decode(errors="replace"))
    wait_for(lambda: xattr(ok, "cached") == str(256 * 1024), what="the block cached")
    m.unmount()
    assert "debug" in m.log()
    assert_no_canary("the debug log", m.log() + m.stderr + m.stdout)
    # Nothing on disk vouches for or records a secret: index, WAL, data.
    for p in sorted(m.cache_dir.rglob("*")):
        if p.is_file():
            assert_no_canary(str(p), p.read_bytes().decode("latin-1"))


def test_userinfo_and_secrets_are_cut_from_a_failed_fetchs_reason(hub, mount, modelfs_bin,
                                                                  tmp_path):
    hub.add_file("%s/f.bin" % PATH_TOKEN, 2 * MiB)
    text = config({"vae": {"f": '"%s"' % secret_url(hub, "f.bin")}},
                  settings="retry_timeout = 1")
    m = mount(text, env=ENV, allowed_errors=[r"f\.bin"])
    hub.faults(path="*f.bin", fail=[500] * 50)
    path = m.path / "VAE" / "f.bin"
    try:
        pread(path, 0, 10)
    except OSError:
        pass
    st = status(modelfs_bin, tmp_path, m.cache_dir, "--history")
    assert st["history"], st
    assert_no_canary("status --history", repr(st))
    assert_no_canary("xattrs of f.bin", repr(all_xattrs(path)))
    r = subprocess.run(["getfattr", "-d", "-m", "user.modelfs", str(path)],
                       capture_output=True, text=True)
    assert_no_canary("getfattr", r.stdout + r.stderr)


def test_a_process_holding_tokens_is_not_dumpable(hub, modelfs_bin, tmp_path):
    """Run as an ordinary user, modelfs keeps its memory and environment
    (HF_TOKEN) from the user's other processes: /proc/PID/environ and mem
    become root's, and no core is dumped. Sanitizer builds stay dumpable
    (LeakSanitizer needs ptrace), so this checks the plain build only."""
    if any(k in os.environ for k in ("ASAN_OPTIONS", "TSAN_OPTIONS")):
        pytest.skip("a sanitizer build stays dumpable")
    # pytest's temp dirs are root's alone: a folder nobody can reach.
    work = Path(tempfile.mkdtemp(prefix="modelfs-nobody-"))
    os.chmod(work, 0o777)
    cfg = work / "c.toml"
    cfg.write_text(config({"vae": {"a": '"%s"' % hub.url("a.bin")}}))
    hub.add_file("a.bin", MiB)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "HF_TOKEN": "hf_" + "x" * 34}
    proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             str(modelfs_bin), "serve", "--cache-dir", str(work / "cache"),
                             "--listen", "127.0.0.1:%d" % port, str(cfg)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "serve did not listen"
            time.sleep(0.05)
        assert os.stat("/proc/%d" % proc.pid).st_uid == 65534     # it runs as nobody...
        assert os.stat("/proc/%d/environ" % proc.pid).st_uid == 0  # ...its secrets are root's
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_no_secret_in_a_lock_or_a_manifest(hub, mount, modelfs_bin, tmp_path):
    """A lock and a manifest are files people commit and share: the URL is
    written as the config writes it (${VAR} unexpanded), without userinfo
    or query, and no header or token appears, although both fetch (and so
    use the secrets) to hash a file whose origin states no hash."""
    hub.add_file("%s/locked.bin" % PATH_TOKEN, MiB + 3)
    cfg = tmp_path / "models.toml"
    cfg.write_text(config({"vae": {"s": '{ url = "%s", auth_header = "Bearer ${MFS_AUTH}", '
                                        'headers = { "X-Api-Key" = "${MFS_KEY}" } }'
                                        % secret_url(hub, "locked.bin")}}))
    lock = tmp_path / "models.lock"
    r = cli(modelfs_bin, tmp_path, "lock", "--cache-dir", tmp_path / "c", "--output", lock, cfg,
            env=ENV, expect=0)
    assert_no_canary("lock's output", r.stdout + r.stderr)
    assert_no_canary("the lock", lock.read_text())
    assert "${MFS_PATH_TOKEN}" in lock.read_text()
    r = cli(modelfs_bin, tmp_path, "manifest", "--cache-dir", tmp_path / "c", cfg, "vae/s",
            env=ENV, expect=0)
    assert_no_canary("the manifest", r.stdout + r.stderr)
    assert "provider: \"url\"" in r.stdout and "sha256: \"" in r.stdout, r.stdout
    # Its ${VAR}s expand again where it is mounted: the same bytes.
    m = mount(r.stdout, config_name="s.yaml", env=ENV)
    want = (hub.root / PATH_TOKEN / "locked.bin").read_bytes()
    assert pread(m.path / "Stable-diffusion" / "s" / "locked.bin", 0, len(want) + 1) == want
