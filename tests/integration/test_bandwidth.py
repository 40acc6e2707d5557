"""bandwidth_limit: one cap on a node's total download rate, shared by all
its connections (a readahead window keeps many blocks in flight at once)."""

import hashlib
import time

from mfs import MiB, hf, hf_conf, hf_fixture as fixture


def add_big(hub, size, seed):
    hub.control("POST", "hf/repos", {"org/bw": {"commits": [
        {"big.bin": {"kind": "raw", "size": size, "seed": seed}}]}}, server="hf")
    return fixture(hub, "org/bw", "big.bin")


def timed_sha(path):
    h = hashlib.sha256()
    t0 = time.monotonic()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest(), time.monotonic() - t0


def test_bandwidth_limit_caps_all_connections_together(hub, mount):
    """32 MiB at a 8 MiB/s cap over 16 connections takes about 3 s (one
    second of burst, then the cap), where an uncapped read takes a fraction
    of that: the cap is on the total, not per connection."""
    size = 32 * MiB
    _, info = add_big(hub, size, seed=41)
    m = mount(hf_conf(hub, {"checkpoints": {"bw": hf("org/bw", file="big.bin")}},
                      settings='bandwidth_limit = "8M"\nconnections = 16\n', block_size="1M"))
    sha, took = timed_sha(m.path / "Stable-diffusion" / "big.bin")
    assert sha == info["sha256"]
    # (32 MiB - 8 MiB of burst) / 8 MiB/s = 3 s; per-connection caps would
    # let 16 connections finish in well under a second.
    assert took >= 2.5, "32 MiB at 8 MiB/s took only %.2f s" % took
    assert took < 30, "32 MiB at 8 MiB/s took %.2f s" % took
