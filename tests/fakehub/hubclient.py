"""hubclient: drive a fakehub process from tests (start, control, stop).

FakeHub starts fakehub.py on a root directory, waits for its port file and
wraps the /_control/ API.  fetch() is a one-shot HTTP client on http.client
(not urllib: no proxy settings from the environment, no redirects followed,
raw status and headers kept).
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from fnmatch import fnmatchcase
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import genmodel     # noqa: E402

PYTHON = sys.executable or "/usr/bin/python3"
START_TIMEOUT = 10.0


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers          # http.client.HTTPMessage
        self.body = body
        self.version = version

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "<Response %d %s, %d bytes>" % (self.status, self.reason, len(self.body))


def fetch(url, method="GET", headers=None, body=None, timeout=30.0):
    """One request on a fresh connection; returns a Response with the whole
    body read (http.client raises IncompleteRead on a short body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        target = u.path + ("?" + u.query if u.query else "")
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        conn.request(method, target or "/", body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.headers, data, resp.version)
    finally:
        conn.close()


class HubError(Exception):
    pass


class FakeHub:
    """A running fakehub: .root, .ports, URLs, files, faults, request log."""

    def __init__(self, root, workdir, bind="127.0.0.1", wrap=()):
        """wrap: a command to run fakehub under ("ip", "netns", "exec", NS):
        it must exec fakehub, so that stopping the process stops it."""
        self.root = Path(root)
        self.wrap = list(wrap)
        self.workdir = Path(workdir)
        self.bind = bind
        self.port_file = self.workdir / "ports.json"
        self.stderr_path = self.workdir / "fakehub.stderr"
        self.proc = None
        self.ports = {}

    # -- lifecycle -----------------------------------------------------------
    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*self.wrap, PYTHON, str(HERE / "fakehub.py"), "--root", str(self.root),
                 "--port-file", str(self.port_file), "--bind", self.bind,
                 "--exit-with-parent"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.port_file.exists():
                self.ports = json.loads(self.port_file.read_text())
                return self
            if self.proc.poll() is not None:
                raise HubError("fakehub exited with %s before listening:\n%s"
                               % (self.proc.returncode, self.stderr()))
            if time.monotonic() > deadline:
                self.stop()
                raise HubError("fakehub did not write %s within %.0f s:\n%s"
                               % (self.port_file, START_TIMEOUT, self.stderr()))
            time.sleep(0.005)

    def stop(self):
        """Stop the process; returns its stderr text."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.stderr()

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- URLs ------------------------------------------------------------------
    def base(self, server="origin"):
        host = "127.0.0.1" if self.bind in ("", "0.0.0.0") else self.bind
        return "http://%s:%d" % (host, self.ports[server])

    def url(self, name, server="origin"):
        """Where `name` is served on `server`; for "cdn" a fresh signed URL."""
        if server == "cdn":
            return self.presign(name)
        return "%s/files/%s" % (self.base(server), urllib.parse.quote(name))

    def redirect_url(self, name):
        return "%s/redirect/%s" % (self.base("origin"), urllib.parse.quote(name))

    def presign(self, name, ttl=None, server="cdn"):
        q = {"path": name, "server": server}
        if ttl is not None:
            q["ttl"] = str(ttl)
        return self.control("GET", "presign?" + urllib.parse.urlencode(q))["url"]

    # -- files -----------------------------------------------------------------
    def add_file(self, name, size=None, kind="raw", seed=0, data=None):
        """Create root/name; returns (path, sha256 hex).  With data=bytes
        the file holds exactly those bytes; else a genmodel fixture of
        `kind` ("raw", "safetensors", "sparse": sha256 is None)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed in, so that replacing a file a client is
        # reading gives it the old bytes or the new ones, never a mix.
        tmp = path.with_name(".%s.tmp" % path.name)
        if data is not None:
            tmp.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
        elif size is None:
            raise ValueError("add_file needs size or data")
        else:
            sha = genmodel.generate(kind, str(tmp), size, seed)
        os.replace(tmp, path)
        return path, sha

    # -- control API -------------------------------------------------------------
    def control(self, method, name, body=None, server="origin"):
        resp = fetch(self.base(server) + "/_control/" + name, method, body=body,
                     headers={"Content-Type": "application/json"} if body is not None else None)
        data = json.loads(resp.body) if resp.body else None
        if resp.status != 200:
            raise HubError("control %s %s: %d %s" % (method, name, resp.status, data))
        return data

    def faults(self, rules=None, **rule):
        """Add one rule (keywords) or several (a list); see hubcore.FaultRule.
        Returns the rules added."""
        return self.control("POST", "faults", rules if rules is not None else rule)["added"]

    def fault_rules(self):
        return self.control("GET", "faults")["rules"]

    def clear_faults(self):
        self.control("DELETE", "faults")

    def config(self, **changes):
        if changes:
            return self.control("POST", "config", changes)
        return self.control("GET", "config")

    def reset(self):
        self.control("POST", "reset")

    def requests(self, server=None, path=None):
        """The request log; `path` is an fnmatch glob tried on both the URL
        path ("/files/a.bin") and the file it named ("a.bin")."""
        q = "?server=" + urllib.parse.quote(server) if server else ""
        entries = self.control("GET", "requests" + q)
        if path is not None:
            entries = [e for e in entries
                       if fnmatchcase(e["path"], path)
                       or (e["file"] is not None and fnmatchcase(e["file"], path))]
        return entries
