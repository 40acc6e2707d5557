"""Single flight, and misses that never block metadata or cached reads."""

import os
import threading
import time

import pytest

from mfs import MiB, config, data_requests, file_slice, pread, url_entry

pytestmark = pytest.mark.concurrency


def test_eight_readers_of_one_cold_block_cause_one_request(hub, mount):
    src, _ = hub.add_file("one.bin", 4 * MiB)
    hub.faults(path="one.bin", delay_ms=400)      # all eight arrive while it is in flight
    m = mount(config({"vae": {"o": '"%s"' % hub.url("one.bin")}}, block_size="4M"))
    path = m.path / "VAE" / "one.bin"
    results, errors = [None] * 8, []

    def reader(i):
        try:
            # Separate opens, offsets all inside block 0 (256 KiB; small
            # reads, so that the kernel's readahead stays inside it too).
            results[i] = pread(path, i * 16000, 4096)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for i in range(8):
        assert results[i] == file_slice(src, i * 16000, 4096)
    assert len(data_requests(hub, "one.bin")) == 1


def test_eight_processes_reading_whole_file_fetch_each_byte_once(hub, mount):
    src, sha = hub.add_file("many.bin", 48 * MiB)
    m = mount(config({"vae": {"m": '"%s"' % hub.url("many.bin")}}))
    path = m.path / "VAE" / "many.bin"
    procs = [os.popen("sha256sum %s" % path) for _ in range(8)]
    outs = [p.read().split()[0] for p in procs]
    assert outs == [sha] * 8
    reqs = data_requests(hub, "many.bin")
    assert sum(r["bytes"] for r in reqs) == 48 * MiB


def test_stalled_fetch_blocks_neither_metadata_nor_cached_reads(hub, mount):
    src_a, _ = hub.add_file("warm.bin", 2 * MiB)
    hub.add_file("stuck.bin", 2 * MiB)
    m = mount(config({"vae": {"a": '"%s"' % hub.url("warm.bin"),
                              "b": '"%s"' % hub.url("stuck.bin")}},
                     settings="retry_timeout = 5"),
              allowed_errors=[r"stuck\.bin"])
    warm, stuck = m.path / "VAE" / "warm.bin", m.path / "VAE" / "stuck.bin"
    assert warm.read_bytes() == src_a.read_bytes()
    hub.faults(path="stuck.bin", hang=True)
    # Many stalled readers: more than FUSE has threads for if they blocked.
    stalled = [threading.Thread(target=lambda: pread_quiet(stuck, 0, 4096), daemon=True)
               for _ in range(40)]
    for t in stalled:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    for _ in range(20):
        os.stat(warm)
        os.listdir(m.path / "VAE")
        assert pread(warm, 1000, 5000) == file_slice(src_a, 1000, 5000)
    assert time.monotonic() - t0 < 2.0
    hub.reset()     # release the hung connections
    for t in stalled:
        t.join(30)


def pread_quiet(path, off, length):
    try:
        return pread(path, off, length)
    except OSError:
        return None
