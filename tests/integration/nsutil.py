"""Running a shell script in a private mount namespace, and making sure
nothing it started outlives the test: mounts made in such a namespace die
with its last process, so ending the processes ends the mounts."""

import os
import signal
import subprocess
import time


def procs_mentioning(needle):
    """Pids of live processes (not us) whose command line contains needle."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                if needle.encode() not in f.read():
                    continue
            with open("/proc/%s/stat" % entry) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
        except OSError:
            continue
        out.append(int(entry))
    return out


def end_procs(needle, grace=10.0):
    """Wait up to grace seconds for processes mentioning needle to exit by
    themselves, then kill them; returns those that had to be killed."""
    deadline = time.monotonic() + grace
    while procs_mentioning(needle) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = procs_mentioning(needle)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def run_private(script, args=(), timeout=120, env=None, propagation="private"):
    """sh -ec script ARGS... in a new mount namespace."""
    return subprocess.run(["unshare", "-m", "--propagation", propagation, "sh", "-ec", script,
                           "sh", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def sanitizer_env(folder, base=None):
    """base (default: ours) with the sanitizers told to write their
    reports to files folder/san.* (a daemon's stderr goes nowhere)."""
    env = dict(os.environ if base is None else base)
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        env[var] = ":".join(o for o in (os.environ.get(var, ""),
                                        "log_path=%s" % (folder / "san")) if o)
    return env


def sanitizer_reports(folder):
    """Texts of the sanitizer log files under folder (log_path=folder/san)."""
    return [p.read_text(errors="replace") for p in sorted(folder.glob("san*"))]
