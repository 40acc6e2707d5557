"""Nodes on a shaped network, for the shared tier: a bridge on the host
(address .1, where the tier listens), the fake Hub in a network namespace of
its own behind a capped uplink (tbf, as ../shared/SCALE-OUT.md does; this
kernel has no netem), and N nodes, each a network namespace with a
tbf-shaped NIC and a real modelfs mount.

A mount made under `ip netns exec` lives in that command's mount namespace:
readers and the unmount enter it (`nsenter -t PID -m -n`), and the mount dies
with the daemon, which runs in the foreground (-f) so that we hold its pid.
Everything is removed at close(), also after a failure half-way; names carry
our pid, so runs in other worktrees do not collide.

Used by test_tier.py and by tools/bench (row 9)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# ip netns exec without copies of the host's FUSE mounts (see the script).
NETNS_EXEC = str(HERE / "netns-exec")
sys.path.insert(0, str(HERE.parent / "fakehub"))

from hubclient import FakeHub      # noqa: E402
from tierutil import NginxTier     # noqa: E402

MiB = 1 << 20


class Unavailable(Exception):
    """Namespaces, veths or tbf cannot be made here (not root, no kernel
    support): the caller skips."""


def sh(*cmd, check=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(map(str, cmd)), r.stderr.strip()))
    return r


def free_subnet():
    """198.18.K.0/24 (the benchmarking range) that no interface uses."""
    used = sh("ip", "-4", "-o", "addr").stdout
    for k in range(100 + os.getpid() % 100, 251):
        if "198.18.%d." % k not in used:
            return "198.18.%d" % k
    raise Unavailable("no free 198.18.K.0/24")


class Node:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.ns = "%sn%d" % (cluster.tag, i)
        self.ip = "%s.%d" % (cluster.net, 10 + i)
        self.dir = cluster.dir / ("node%d" % i)
        self.mnt = self.dir / "mnt"
        self.cache = self.dir / "cache"
        self.log_path = self.dir / "modelfs.log"
        self.proc = None

    def mount(self, config_text, env=None, timeout=60):
        self.mnt.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "config.toml"
        conf.write_text(config_text)
        e = dict(env or os.environ)
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            e[var] = ":".join(o for o in (e.get(var, ""), "log_path=%s" % (self.dir / "san"))
                              if o)
        with open(self.dir / "mount.stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [NETNS_EXEC, self.ns, str(self.cluster.binary), "mount", "-f",
                 "--cache-dir", str(self.cache), "--log-file", str(self.log_path),
                 str(conf), str(self.mnt)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=e)
        deadline = time.monotonic() + timeout
        while not self.mounted():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("node %s did not mount:\n%s\n%s" % (
                    self.ns, (self.dir / "mount.stderr").read_text(errors="replace"),
                    self.log()))
            time.sleep(0.05)
        return self

    def mounted(self):
        try:
            with open("/proc/%d/mounts" % self.proc.pid) as f:
                return " %s " % self.mnt in f.read()
        except OSError:
            return False

    def enter(self):
        """The command prefix that runs in this node's mount and network."""
        return ["nsenter", "-t", str(self.proc.pid), "-m", "-n"]

    def start_read(self, relpath):
        """sha256sum of a file in the mount, started (a Popen)."""
        return subprocess.Popen(self.enter() + ["sha256sum", str(self.mnt / relpath)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def status(self):
        r = subprocess.run(self.enter() + [str(self.cluster.binary), "status", "--json",
                                           "--cache-dir", str(self.cache)],
                           capture_output=True, text=True, timeout=60)
        return r

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sanitizer_reports(self):
        return [p.read_text(errors="replace") for p in sorted(self.dir.glob("san*"))]

    def unmount(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(self.enter() + ["fusermount3", "-u", str(self.mnt)],
                       capture_output=True, timeout=30)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()        # its mount namespace, and the mount, die with it
            self.proc.wait(10)


class Cluster:
    def __init__(self, binary, nodes=3, node_rate="1gbit", origin_rate="400mbit"):
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root")
        self.binary = binary
        self.tag = "mt%d" % (os.getpid() % 100000)
        self.bridge = "b" + self.tag
        self.dir = Path(tempfile.mkdtemp(prefix="mfs-nodes-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.n = nodes
        self.node_rate, self.origin_rate = node_rate, origin_rate
        self.nodes = []
        self.namespaces = []
        self.hub = None
        self.tier = None
        self.bridge_made = False

    # -- the network ------------------------------------------------------------
    def _ns(self, name, ip, veth, shape_host_side, rate):
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        sh("ip", "-n", name, "addr", "add", ip + "/24", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        if shape_host_side:     # what the bridge sends into the namespace
            sh("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", rate,
               "burst", "1mb", "latency", "50ms")
        else:                   # what the namespace sends out
            sh("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
               "rate", rate, "burst", "1mb", "latency", "50ms")

    def open(self):
        try:
            self.net = free_subnet()
            self.host_ip = self.net + ".1"
            self.origin_ip = self.net + ".100"
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self.bridge_made = True
            sh("ip", "addr", "add", self.host_ip + "/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            self._ns(self.tag + "o", self.origin_ip, "v%so" % self.tag, False, self.origin_rate)
            for i in range(1, self.n + 1):
                node = Node(self, i)
                node.dir.mkdir(parents=True)
                self._ns(node.ns, node.ip, "v%sn%d" % (self.tag, i), True, self.node_rate)
                self.nodes.append(node)
        except RuntimeError as e:
            self.close()
            raise Unavailable(str(e)) from e
        self.hub = FakeHub(self.dir / "hubroot", self.dir / "hub", bind=self.origin_ip,
                           wrap=(NETNS_EXEC, self.tag + "o")).start()
        return self

    def start_tier(self):
        self.tier = NginxTier(self.binary, self.host_ip, [self.origin_ip]).start()
        return self.tier

    # -- files --------------------------------------------------------------------
    def add_file(self, repo, size, seed):
        self.hub.control("POST", "hf/repos", {repo: {"commits": [
            {"big.bin": {"kind": "raw", "size": size, "seed": seed}}]}}, server="hf")
        info = self.hub.control("GET", "hf/repos", server="hf")[repo]["commits"][0]["files"]
        return info["big.bin"]

    def config(self, repos, proxy=None, extra=""):
        """repos: {name: repo}; each repo's big.bin shows as NAME.bin."""
        lines = ["[modelfs]", 'block_size = "8M"', 'hf_endpoint = "%s"' % self.hub.base("hf")]
        if proxy:
            lines.append('cache_proxy = "%s"' % proxy)
        lines += [extra, "[models.checkpoints]"]
        lines += ['"%s" = { source = "huggingface", repo = "%s", file = "big.bin", '
                  'filename = "%s.bin" }' % (name, repo, name) for name, repo in repos.items()]
        return "\n".join(lines) + "\n"

    def cdn_bytes(self, repo):
        return sum(r["bytes"] for r in self.hub.requests(path=repo + "/big.bin")
                   if r["server"].startswith("hfcdn") and r["method"] == "GET"
                   and r["range"] != "bytes=0-0")

    def read_everywhere(self, relpath, during=None):
        """sha256 of relpath on every node, read at once; seconds taken.
        during(): called while the reads run (once)."""
        t0 = time.monotonic()
        procs = [n.start_read(relpath) for n in self.nodes]
        if during:
            during()
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=900)
            outs.append(out.split()[0] if p.returncode == 0 and out else "failed: " + err)
        return outs, time.monotonic() - t0

    def unmount_all(self):
        for n in self.nodes:
            n.unmount()

    def close(self):
        self.unmount_all()
        if self.tier:
            self.tier.stop()
        if self.hub:
            self.hub.stop()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)      # its veth pair goes with it
        if self.bridge_made:
            sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


ERROR_LINE_RE = re.compile(r"(?:^|\s)error(?:\s|$)")


def problems(node):
    """Sanitizer reports and error lines in a node's output."""
    out = node.sanitizer_reports()
    text = node.log() + (node.dir / "mount.stderr").read_text(errors="replace")
    out += [line for line in text.splitlines() if ERROR_LINE_RE.search(line)]
    return out

