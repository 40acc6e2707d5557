#!/usr/bin/python3
"""bench: modelfs's core numbers, measured side by side in one run.

    tools/bench.py [--size 1G] [--block 8M] [--keep]

Starts the bundled fake hub on loopback serving a generated safetensors
file, then measures, printing each figure with its ratio:
  - curl downloading the file (one connection) vs a cold sequential read
    through modelfs (cat), with requests and bytes the hub served;
  - a warm re-read through the mount (page cache dropped, and not) vs
    reading the cache's own data file;
  - bytes fetched to read the safetensors header cold;
  - origin requests for 8 concurrent readers of one cold block;
  - the daemon's peak RSS and CPU time.
This is not a test: numbers on a shared box are noisy, so read the ratios.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fakehub"))

import genmodel                     # noqa: E402
from hubclient import FakeHub       # noqa: E402

MiB = 1 << 20


def drop_caches():
    subprocess.run(["sync"])
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def read_all(path, chunk=1 << 20):
    with open(path, "rb", buffering=0) as f:
        while f.read(chunk):
            pass


def daemon_stats(pid):
    status = Path("/proc/%d/status" % pid).read_text()
    hwm = [int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM")][0] * 1024
    stat = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    return hwm, cpu


class Mounted:
    def __init__(self, binary, config, work, name):
        self.mnt = work / ("mnt-" + name)
        self.cache = work / ("cache-" + name)
        self.mnt.mkdir()
        self.log = work / ("modelfs-%s.log" % name)
        subprocess.run([binary, "mount", "--cache-dir", self.cache, "--log-file", self.log,
                        config, self.mnt], check=True)
        out = subprocess.run(["pgrep", "-f", "modelfs mount .*%s" % self.mnt],
                             capture_output=True, text=True).stdout.split()
        self.pid = int(out[0])

    def unmount(self):
        subprocess.run(["fusermount3", "-u", self.mnt])
        for _ in range(100):
            if not Path("/proc/%d" % self.pid).exists():
                break
            time.sleep(0.05)


def hub_bytes(hub, name):
    return sum(r["bytes"] for r in hub.requests(path=name) if r["range"] != "bytes=0-0")


def hub_requests(hub, name):
    return [r for r in hub.requests(path=name) if r["method"] == "GET" and r["range"] != "bytes=0-0"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G")
    ap.add_argument("--block", default="8M")
    ap.add_argument("--binary", default=str(REPO / "build" / "modelfs"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    size = genmodel.parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="modelfs-bench-"))
    hub = FakeHub(work / "hubroot", work / "hub").start()
    mounts = []
    rows = []
    try:
        name = "bench.safetensors"
        src = hub.root / name
        genmodel.write_safetensors(str(src), size, 1)
        url = hub.url(name)
        config = work / "bench.toml"
        config.write_text('[modelfs]\nblock_size = "%s"\n[models.checkpoints]\n"b" = "%s"\n'
                          % (args.block, url))

        # 1. curl vs a cold sequential read through the mount
        drop_caches()
        t_curl = timed(lambda: subprocess.run(["curl", "-sS", "-o", "/dev/null", url], check=True))
        hub.reset()
        m = Mounted(args.binary, config, work, "seq")
        mounts.append(m)
        path = m.mnt / "Stable-diffusion" / name
        drop_caches()
        t_cold = timed(lambda: read_all(path))
        reqs = hub_requests(hub, name)
        rss, cpu = daemon_stats(m.pid)
        rows.append(("cold sequential read, %s" % args.size,
                     "curl %.2f s (%.0f MB/s)" % (t_curl, size / t_curl / 1e6),
                     "modelfs %.2f s (%.0f MB/s)" % (t_cold, size / t_cold / 1e6),
                     "%.2fx curl's speed" % (t_curl / t_cold)))
        rows.append(("  fetched for it", "%d requests of %s" % (len(reqs), args.block),
                     "%d MiB served for %d MiB read" % (hub_bytes(hub, name) // MiB, size // MiB),
                     "%.3f fetched/read" % (hub_bytes(hub, name) / size)))
        rows.append(("  daemon", "peak RSS %.1f MiB" % (rss / MiB),
                     "CPU %.2f s" % cpu, "%.2f CPU s per GiB" % (cpu / (size / (1 << 30)))))

        # 2. warm re-reads
        time.sleep(0.5)     # let the hash of the complete file finish
        t_warm_pc = timed(lambda: read_all(path))
        data = sorted((m.cache / "data").iterdir())[0]
        drop_caches()
        t_direct = timed(lambda: read_all(data))
        drop_caches()
        t_warm = timed(lambda: read_all(path))
        rows.append(("warm re-read, page cache dropped",
                     "data file %.2f s (%.0f MB/s)" % (t_direct, size / t_direct / 1e6),
                     "mount %.2f s (%.0f MB/s)" % (t_warm, size / t_warm / 1e6),
                     "%.2fx the data file" % (t_direct / t_warm)))
        rows.append(("warm re-read, page cache kept", "",
                     "mount %.2f s (%.0f MB/s)" % (t_warm_pc, size / t_warm_pc / 1e6), ""))
        m.unmount()
        mounts.remove(m)

        # 3. header read, cold
        hub.reset()
        m = Mounted(args.binary, config, work, "hdr")
        mounts.append(m)
        path = m.mnt / "Stable-diffusion" / name
        t0 = time.monotonic()
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            f.read(n)
        t_hdr = time.monotonic() - t0
        rows.append(("safetensors header read, cold", "header %d bytes" % (n + 8),
                     "%.3f s" % t_hdr, "%d bytes fetched in %d request(s)"
                     % (hub_bytes(hub, name), len(hub_requests(hub, name)))))

        # 4. eight readers of one cold block
        hub.reset()
        hub.faults(path=name, header_delay_ms=200)
        barrier = threading.Barrier(8)

        def reader(i):
            barrier.wait()
            fd = os.open(path, os.O_RDONLY)
            try:
                os.pread(fd, 65536, 64 * MiB + i * 500000)
            finally:
                os.close(fd)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows.append(("8 readers of one cold block", "", "",
                     "%d origin request(s)" % len(hub_requests(hub, name))))
        m.unmount()
        mounts.remove(m)
    finally:
        for m in mounts:
            m.unmount()
        hub.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("modelfs bench, %s, %d cores, fake hub on loopback (sendfile)"
          % (time.strftime("%Y-%m-%d"), os.cpu_count()))
    for row in rows:
        print("%-34s %-30s %-30s %s" % row)


if __name__ == "__main__":
    main()
