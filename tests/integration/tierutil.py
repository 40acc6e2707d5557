"""A shared cache tier for the tests: Debian's nginx run with the config
`modelfs tier nginx` prints (own prefix, loopback or bridge port, always
stopped), and a spy tier that records what reaches it."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class NginxTier:
    """nginx -c <generated config>, in the foreground, in its own folder
    (workers run as nobody: the folder is world-readable, under /tmp)."""

    def __init__(self, modelfs_bin, listen_host, origins, *, max_size="4G", netns=None):
        self.dir = tempfile.mkdtemp(prefix="mfs-tier-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.host = listen_host
        self.port = free_port(listen_host)
        self.url = "http://%s:%d" % (listen_host, self.port)
        cmd = [str(modelfs_bin), "tier", "nginx", "--listen", "%s:%d" % (listen_host, self.port),
               "--cache", self.dir, "--max-size", max_size]
        for o in origins:
            cmd += ["--origin", o]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("modelfs tier nginx failed: %s" % r.stderr)
        self.config_text = r.stdout
        self.conf = os.path.join(self.dir, "tier.conf")
        with open(self.conf, "w") as f:
            f.write(self.config_text)
        self.stderr_path = os.path.join(self.dir, "nginx.stderr")
        self.proc = None

    def start(self):
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf, "-e", "stderr"],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        if not wait_port(self.host, self.port, proc=self.proc):
            self.stop()
            raise RuntimeError("nginx did not listen:\n" + self.stderr())
        return self

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill(self):
        """The tier dies (master and workers at once), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc is not None:
            try:            # workers left behind by a killed master
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class SpyTier:
    """An HTTP server that records every request (path, headers) and
    answers each with `status` (502 by default: a broken tier)."""

    def __init__(self, status=502):
        self.requests = []
        spy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                spy.requests.append({"path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
