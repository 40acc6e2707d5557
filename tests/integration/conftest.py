"""conftest: fixtures for modelfs integration tests (real FUSE mounts).

  hub          a fakehub process on loopback ports, fresh per test
               (tests/fakehub/hubclient.py: FakeHub)
  modelfs_bin  the binary: $MODELFS_BIN, else <repo>/build/modelfs; tests
               that need it are skipped, with the reason, when it is missing
  mount        factory: mount(config_text, *, cache_dir=None, extra_args=(),
               env=None, expect_fail=False, expect_partial=False,
               allowed_errors=(), mountpoint=None) -> Mount
               (mountpoint: a folder of the test's, which may hold files
               already; default a new empty one)

`modelfs mount` must exit 0 with the mount live; with expect_partial it
must exit 3 (live, but some entries failed) with a summary on stderr; with
expect_fail it must exit 1 or 2, say why on stderr and leave no mount.

Every mount is undone in teardown (fusermount3 -u, retried while busy, then
fusermount3 -uz), the daemon must exit within 10 s, and the test fails on
sanitizer reports or unexpected `error` log lines.  A session finalizer and
an atexit hook sweep any FUSE mount left under this run's temp dir; mounts
left by earlier runs whose pytest process is dead (each run marks its temp
dir with its pid) are swept at session start.
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fakehub"))

import genmodel                     # noqa: E402,F401  (re-exported for tests)
from hubclient import FakeHub       # noqa: E402

MOUNT_TIMEOUT = 60          # seconds for `modelfs mount` to return
EXIT_PARTIAL = 3            # `modelfs mount`: live, but some entries failed
EXIT_TIMEOUT = 10           # seconds for the daemon to exit after unmount
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|ThreadSanitizer|"
                          r"MemorySanitizer|runtime error:")
# log.c writes "<ISO time> <level> <message>"; an `error` word on its own
# is an error line (sanitizer output is matched separately).
ERROR_LINE_RE = re.compile(r"(?:^|\s)error(?:\s|$)")
SCRUB_PREFIXES = ("HF_", "HUGGING_FACE_", "CIVITAI", "AWS_", "GOOGLE_", "MODELFS_")
SCRUB_NAMES = {"PROVISION_URL", "TRANSFORMERS_OFFLINE", "S3_TOKEN", "XDG_CACHE_HOME",
               "XDG_CONFIG_HOME", "CURL_HOME", "SSL_CERT_FILE"}
KEEP_NAMES = {"MODELFS_LOG"}


# ---------------------------------------------------------------------------
# fakehub

@pytest.fixture
def hub(tmp_path):
    """A fresh fakehub; fails the test if the hub printed a traceback."""
    h = FakeHub(tmp_path / "hubroot", tmp_path / "hub").start()
    try:
        yield h
    finally:
        err = h.stop()
    if "Traceback" in err:
        pytest.fail("fakehub raised an exception:\n" + err, pytrace=False)


# ---------------------------------------------------------------------------
# the binary

def _cannot(why):
    """Skip, unless the run must mount (MODELFS_REQUIRE_MOUNT=1, as
    tools/test.sh sets): a suite that skipped every mount has tested
    nothing."""
    if os.environ.get("MODELFS_REQUIRE_MOUNT") == "1":
        pytest.fail(why + " (tools/test.sh --allow-skip to skip instead)", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def modelfs_bin():
    path = Path(os.environ.get("MODELFS_BIN") or REPO / "build" / "modelfs")
    if not (path.is_file() and os.access(path, os.X_OK)):
        _cannot("modelfs binary not found at %s: build it with "
                "`meson setup build && ninja -C build`, or set MODELFS_BIN" % path)
    missing = fuse_missing()
    if missing:
        _cannot(missing)
    return path


def fuse_missing():
    """Why real mounts cannot work here, or None."""
    if not os.path.exists("/dev/fuse"):
        return ("/dev/fuse is missing (in a container: --device /dev/fuse "
                "--cap-add SYS_ADMIN); run tools/deps.sh")
    if not shutil.which("fusermount3"):
        return "fusermount3 not found: install fuse3 (tools/deps.sh)"
    return None


# ---------------------------------------------------------------------------
# mounts: /proc helpers

def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fuse_mounts():
    """[(mountpoint, fstype)] of FUSE mounts visible to this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype == "fuse" or fstype.startswith("fuse."):
                out.append((_unescape(fields[4]), fstype))
    return out


def is_mounted(path):
    return any(mp == str(path) for mp, _ in fuse_mounts())


def _proc_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def find_daemon(binary, mountpoint):
    """The pid of the live process running `binary` for `mountpoint`."""
    want = os.path.basename(str(binary))
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if (args and os.path.basename(args[0]) == want and str(mountpoint) in args
                and _proc_alive(int(entry))):
            return int(entry)
    return None


def fusermount_unmount(path, busy_retry=2.0):
    """Unmount a FUSE mount; returns a list of notes on what it took."""
    notes = []
    deadline = time.monotonic() + busy_retry
    while is_mounted(path):
        r = subprocess.run(["fusermount3", "-u", str(path)], capture_output=True, text=True)
        if r.returncode == 0:
            continue
        msg = r.stderr.strip()
        if "busy" in msg and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        notes.append("fusermount3 -u %s failed: %s" % (path, msg))
        r = subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True, text=True)
        if r.returncode != 0 and is_mounted(path):
            notes.append("fusermount3 -uz %s failed: %s" % (path, r.stderr.strip()))
            r = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True)
        notes.append("lazily unmounted %s" % path)
        break
    return notes


def sweep_mounts(under):
    """Lazily unmount every FUSE mount below `under`; returns them."""
    under = str(under).rstrip("/") + "/"
    swept = []
    for mp, _ in fuse_mounts():
        if mp.startswith(under):
            subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
            if is_mounted(mp):
                subprocess.run(["umount", "-l", mp], capture_output=True)
            swept.append(mp)
    return swept


OWNER_MARKER = ".modelfs-harness-pid"


def sweep_dead_runs(parent):
    """Lazily unmount FUSE mounts left in the temp dirs of test runs that are
    gone: a dir directly under `parent` holding OWNER_MARKER whose pid is no
    longer alive.  Dirs of live or unknown owners are never touched, so
    parallel runs leave each other alone."""
    parent = Path(parent)
    owners = {}
    for mp, _ in fuse_mounts():
        try:
            rel = Path(mp).relative_to(parent)
        except ValueError:
            continue
        if not rel.parts:
            continue
        top = parent / rel.parts[0]
        if top not in owners:
            try:
                owners[top] = int((top / OWNER_MARKER).read_text())
            except (OSError, ValueError):
                owners[top] = None
        pid = owners[top]
        if pid is not None and pid != os.getpid() and not _proc_alive(pid):
            subprocess.run(["fusermount3", "-uz", mp], capture_output=True)


# ---------------------------------------------------------------------------
# mounts: the harness

class Mount:
    """One `modelfs mount` invocation and, if it succeeded, its mount."""

    def __init__(self, harness, workdir, mountpoint, cache_dir, config_path,
                 allowed_errors, expect_fail):
        self._harness = harness
        self.workdir = workdir
        self.path = mountpoint
        self.cache_dir = cache_dir
        self.config_path = config_path
        self.log_path = workdir / "modelfs.log"
        self.stdout_path = workdir / "mount.stdout"
        self.stderr_path = workdir / "mount.stderr"
        self.san_prefix = workdir / "sanitizer"
        self.allowed_errors = [re.compile(r) for r in allowed_errors]
        self.expect_fail = expect_fail
        self.returncode = None
        self.pid = None
        self.expect_dead = False
        self.finished = False

    def log(self):
        return _read(self.log_path)

    @property
    def stderr(self):
        return _read(self.stderr_path)

    @property
    def stdout(self):
        return _read(self.stdout_path)

    def is_mounted(self):
        return is_mounted(self.path)

    def kill(self, sig=signal.SIGKILL):
        """Kill the daemon on purpose (teardown will not call it a crash)."""
        self.expect_dead = True
        if self.pid:
            os.kill(self.pid, sig)

    def unmount(self):
        """Unmount now, wait for the daemon, check its output; fails the test
        on any problem."""
        problems = self._harness.finish(self)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


class MountHarness:
    def __init__(self, binary, tmp_path):
        self.binary = Path(binary)
        self.tmp_path = Path(tmp_path)
        self.mounts = []

    def env(self, m, overrides):
        env = {k: v for k, v in os.environ.items()
               if k in KEEP_NAMES or not (k.startswith(SCRUB_PREFIXES)
                                          or k in SCRUB_NAMES
                                          or k.lower().endswith("_proxy"))}
        home = m.workdir / "home"
        home.mkdir(exist_ok=True)
        env["HOME"] = str(home)                 # no real token files
        env["XDG_CACHE_HOME"] = str(home / ".cache")
        # Sanitizer reports go to files we scan (a daemon has no stderr).
        for var, extra in (("ASAN_OPTIONS", ""), ("LSAN_OPTIONS", ""),
                           ("TSAN_OPTIONS", ""), ("UBSAN_OPTIONS", "print_stacktrace=1")):
            opts = [o for o in (env.get(var, ""), extra, "log_path=%s" % m.san_prefix) if o]
            env[var] = ":".join(opts)
        for k, v in (overrides or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def mount(self, config_text, *, cache_dir=None, extra_args=(), env=None,
              expect_fail=False, expect_partial=False, allowed_errors=(),
              config_name="config.toml", mountpoint=None):
        if expect_fail and expect_partial:
            raise ValueError("expect_fail and expect_partial exclude each other")
        n = len(self.mounts) + 1
        workdir = self.tmp_path / ("mount%d" % n)
        workdir.mkdir(parents=True)
        if mountpoint is None:
            mountpoint = workdir / "mnt"
            mountpoint.mkdir()
        mountpoint = Path(mountpoint)
        workdir = workdir.resolve()
        mountpoint = mountpoint.resolve()
        cache = Path(cache_dir) if cache_dir else workdir / "cache"
        config_path = workdir / config_name
        config_path.write_text(config_text)
        m = Mount(self, workdir, mountpoint, cache, config_path, allowed_errors, expect_fail)
        self.mounts.append(m)
        cmd = [str(self.binary), "mount", "--cache-dir", str(cache),
               "--log-file", str(m.log_path), *map(str, extra_args),
               str(config_path), str(mountpoint)]
        # Files, not pipes: a daemon that kept a pipe open would block us.
        with open(m.stdout_path, "wb") as out, open(m.stderr_path, "wb") as err:
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   env=self.env(m, env), timeout=MOUNT_TIMEOUT)
                m.returncode = r.returncode
            except subprocess.TimeoutExpired:
                m.returncode = None
        m.pid = find_daemon(self.binary, mountpoint)
        what = "modelfs mount (%s)" % " ".join(cmd)
        if m.returncode is None:
            self._abort(m, "%s did not return within %d s" % (what, MOUNT_TIMEOUT))
        if expect_fail:
            if m.returncode == 0:
                self._abort(m, "%s succeeded but was expected to fail" % what)
            if m.returncode not in (1, 2):
                self._abort(m, "%s exited %d, expected 1 or 2" % (what, m.returncode))
            if not m.stderr.strip():
                self._abort(m, "%s failed without a message on stderr" % what)
            if m.is_mounted():
                self._abort(m, "%s failed but left %s mounted" % (what, mountpoint))
            return m
        if expect_partial:
            if m.returncode != EXIT_PARTIAL:
                self._abort(m, "%s exited %d, expected %d (mounted, some entries failed)"
                            % (what, m.returncode, EXIT_PARTIAL))
            if not m.stderr.strip():
                self._abort(m, "%s exited %d without a summary on stderr"
                            % (what, m.returncode))
        elif m.returncode == EXIT_PARTIAL:
            self._abort(m, "%s exited %d: some entries failed (pass expect_partial=True "
                        "when the test means them to)" % (what, m.returncode))
        elif m.returncode != 0:
            self._abort(m, "%s exited %d" % (what, m.returncode))
        if not m.is_mounted():
            self._abort(m, "%s returned %d but %s is not mounted"
                        % (what, m.returncode, mountpoint))
        return m

    def _abort(self, m, why):
        problems = self.finish(m)
        msg = [why, "--- stderr:", _tail(m.stderr), "--- log:", _tail(m.log())]
        pytest.fail("\n".join(msg + problems), pytrace=False)

    def finish(self, m):
        """Unmount m, wait for its daemon, scan its output; returns problems."""
        if m.finished:
            return []
        m.finished = True
        problems = []
        if m.pid is None:
            m.pid = find_daemon(self.binary, m.path)
        if m.is_mounted():
            alive = m.pid is not None and _proc_alive(m.pid)
            if not alive and not m.expect_dead and not m.expect_fail:
                problems.append("modelfs daemon for %s is gone but the mount is "
                                "still there (crashed?)" % m.path)
            problems += [n for n in fusermount_unmount(m.path)
                         if not m.expect_dead]
        if m.is_mounted():
            problems.append("%s is still mounted after fusermount3 -uz" % m.path)
        if m.pid is not None:
            deadline = time.monotonic() + EXIT_TIMEOUT
            while _proc_alive(m.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _proc_alive(m.pid):
                problems.append("modelfs daemon %d did not exit within %d s of "
                                "unmount; killed" % (m.pid, EXIT_TIMEOUT))
                try:
                    os.kill(m.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        problems += self.scan(m)
        return problems

    def scan(self, m):
        problems = []
        sources = [("log", m.log_path), ("stderr", m.stderr_path), ("stdout", m.stdout_path)]
        sources += [("sanitizer", p) for p in sorted(m.workdir.glob("sanitizer*"))]
        for label, path in sources:
            text = _read(path)
            if SANITIZER_RE.search(text):
                problems.append("sanitizer report in %s (%s):\n%s" % (label, path, _tail(text, 80)))
                continue
            if m.expect_fail or label == "sanitizer":
                continue
            bad = [line for line in text.splitlines()
                   if ERROR_LINE_RE.search(line)
                   and not any(r.search(line) for r in m.allowed_errors)]
            if bad:
                problems.append("unexpected error lines in %s (%s):\n%s"
                                % (label, path, "\n".join(bad[:20])))
        return problems

    def teardown(self):
        problems = []
        for m in reversed(self.mounts):
            problems += self.finish(m)
        return problems


@pytest.fixture
def mount(modelfs_bin, hub, tmp_path):
    """mount(config_text, *, cache_dir=None, extra_args=(), env=None,
    expect_fail=False, expect_partial=False, allowed_errors=(),
    mountpoint=None) -> Mount.
    Depends on `hub` so that the hub outlives every mount."""
    harness = MountHarness(modelfs_bin, tmp_path)
    try:
        yield harness.mount
    finally:
        problems = harness.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ---------------------------------------------------------------------------
# never leave a mount behind

@pytest.fixture(scope="session", autouse=True)
def _sweep_mounts(tmp_path_factory):
    base = tmp_path_factory.getbasetemp().resolve()
    (base / OWNER_MARKER).write_text(str(os.getpid()))
    sweep_dead_runs(base.parent)
    atexit.register(sweep_mounts, base)
    yield
    left = sweep_mounts(base)
    if left:
        sys.stderr.write("conftest: swept FUSE mounts left behind: %s\n" % left)


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config):
    # pytest empties a given --basetemp first: clear dead runs' mounts there.
    if config.option.basetemp and shutil.which("fusermount3"):
        sweep_dead_runs(Path(config.option.basetemp).resolve().parent)
    # Let fixture teardown (unmounts) run when the test run is terminated.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
