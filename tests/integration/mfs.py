"""Helpers shared by the integration tests: configs, reads, hub counters."""

import os
import subprocess
import time
from pathlib import Path

MiB = 1 << 20


def config(entries, *, settings="", layout=None, block_size="1M"):
    """A config text. entries: {category: {name: toml-value-text}}."""
    lines = ["[modelfs]", 'block_size = "%s"' % block_size]
    if layout:
        lines.append('layout = "%s"' % layout)
    lines.append(settings)
    for category, items in entries.items():
        lines.append("[models.%s]" % category)
        for name, value in items.items():
            lines.append('"%s" = %s' % (name, value))
    return "\n".join(lines) + "\n"


def url_entry(url, **keys):
    """An inline table for a url entry; keys are written as TOML strings,
    except ints and bools."""
    parts = ['url = "%s"' % url]
    for k, v in keys.items():
        if isinstance(v, bool):
            parts.append("%s = %s" % (k, "true" if v else "false"))
        elif isinstance(v, int):
            parts.append("%s = %d" % (k, v))
        else:
            parts.append('%s = "%s"' % (k, v))
    return "{ " + ", ".join(parts) + " }"


def pread(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def file_slice(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def data_requests(hub, name):
    """Requests that carried bytes of file `name` (the 1-byte resolution
    probe excluded)."""
    return [r for r in hub.requests(path=name)
            if r["method"] == "GET" and r["range"] != "bytes=0-0"]


def bytes_fetched(hub, name):
    return sum(r["bytes"] for r in data_requests(hub, name))


def xattr(path, name):
    return os.getxattr(path, "user.modelfs." + name).decode()


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def stable(measure, quiet=1.0, timeout=20):
    """measure() once it has not changed for `quiet` seconds."""
    value, since = measure(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = measure()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return value


def wait_state(path, state, timeout=30.0):
    return wait_for(lambda: xattr(path, "state") == state, timeout,
                    what="%s to become %s (is %s)" % (path, state, xattr(path, "state")))


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------
# Hugging Face entries on the fake Hub (tests/fakehub/svc_hf.py)

def hf_conf(hub, entries, settings="", block_size="1M"):
    """A config whose hf_endpoint is the fake Hub."""
    s = 'hf_endpoint = "%s"\n%s' % (hub.base("hf"), settings)
    return config(entries, settings=s, block_size=block_size)


def hf(repo, **keys):
    """An inline table for a huggingface entry."""
    parts = ['source = "huggingface"', 'repo = "%s"' % repo]
    for k, v in keys.items():
        if isinstance(v, list):
            parts.append("%s = [%s]" % (k, ", ".join('"%s"' % x for x in v)))
        else:
            parts.append('%s = "%s"' % (k, v))
    return "{ " + ", ".join(parts) + " }"


def repos(hub):
    return hub.control("GET", "hf/repos", server="hf")


def hf_fixture(hub, repo, path, commit=0):
    """(blob path, file info) of path in the repo's commit number `commit`."""
    info = repos(hub)[repo]["commits"][commit]["files"][path]
    return Path(info["blob"]), info


def commit_sha(hub, repo, commit=0):
    return repos(hub)[repo]["commits"][commit]["sha"]
