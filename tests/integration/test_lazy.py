"""Reads are lazy, byte-exact, block-sized; readahead for sequential readers."""

import ctypes
import hashlib
import mmap
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor

import genmodel
from mfs import (MiB, bytes_fetched, config, data_requests, file_slice, pread, stable,
                 url_entry, wait_for, wait_state, xattr)


def test_header_read_fetches_one_block(hub, mount):
    src, _ = hub.add_file("big.safetensors", 512 * MiB, kind="safetensors")
    m = mount(config({"checkpoints": {"big": '"%s"' % hub.url("big.safetensors")}},
                     block_size="8M"))
    path = m.path / "Stable-diffusion" / "big.safetensors"
    assert path.stat().st_size == 512 * MiB
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
    assert header == file_slice(src, 8, n)
    # Forge's short hash probe: 64 KiB at 1 MiB. Still within the first
    # 8 MiB download unit; the cache's 256 KiB blocks make that several
    # small requests (the kernel reads ahead of both reads), never a whole
    # unit each.
    assert pread(path, 0x100000, 0x10000) == file_slice(src, 0x100000, 0x10000)
    assert bytes_fetched(hub, "big.safetensors") <= 8 * MiB
    assert all(r["bytes"] < 8 * MiB for r in data_requests(hub, "big.safetensors"))


def test_read_is_answered_before_its_block_is_complete(hub, mount):
    # One 256 KiB cache block at 128 KiB/s takes 2 s; the header is in its
    # first KiB. (Unbuffered: Python's buffer would ask for 1 MiB.)
    src, _ = hub.add_file("early.safetensors", 8 * MiB, kind="safetensors")
    hub.faults(path="early.safetensors", rate_bps=128 * 1024)
    m = mount(config({"checkpoints": {"e": '"%s"' % hub.url("early.safetensors")}},
                     block_size="8M", settings="header_prefetch = false"))
    path = m.path / "Stable-diffusion" / "early.safetensors"
    with open(path, "rb", buffering=0) as f:
        n = int.from_bytes(f.read(8), "little")
        assert f.read(n) == file_slice(src, 8, n)
    # Answered from the bytes in so far: the block is still on its way.
    assert xattr(path, "cached") == "0"
    (block,) = data_requests(hub, "early.safetensors")
    assert block["t_end"] is None, block         # still sending the block
    # Readers further into the same block get theirs as the bytes arrive,
    # each exactly once and byte-exact, while one request serves them all.
    offsets = [96 * 1024, 64 * 1024, 128 * 1024 + 17, 256 * 1024 - 4096]
    with ThreadPoolExecutor(len(offsets)) as pool:
        got = list(pool.map(lambda off: pread(path, off, 4096), offsets))
    assert got == [file_slice(src, off, 4096) for off in offsets]
    assert len(data_requests(hub, "early.safetensors")) == 1


def test_a_read_mid_block_has_its_bytes_fetched_first(hub, mount):
    size = 8 * MiB
    src, sha = hub.add_file("mid.bin", size)
    hub.faults(path="mid.bin", rate_bps=2 * MiB)
    cfg = config({"vae": {"m": url_entry(hub.url("mid.bin"), sha256=sha)}}, block_size="8M")
    m = mount(cfg)
    path = m.path / "VAE" / "mid.bin"
    off = 6 * MiB + 100
    assert pread(path, off, 4096) == file_slice(src, off, 4096)
    # Fetched from its own 256 KiB cache block, not from the start of its
    # 8 MiB download unit.
    first = data_requests(hub, "mid.bin")[0]
    assert first["range"] == "bytes=%d-%d" % (6 * MiB, 6 * MiB + 256 * 1024 - 1), first
    # The rest when read; every byte once, and the file checks out whole.
    assert path.read_bytes() == src.read_bytes()
    wait_state(path, "verified")
    assert sum(r["bytes"] for r in data_requests(hub, "mid.bin")) == size
    # The block's own checksum is right too: the first read after a
    # remount checks it against the bytes, and fetches nothing.
    cache = m.cache_dir
    m.unmount()
    m = mount(cfg, cache_dir=cache)
    assert (m.path / "VAE" / "mid.bin").read_bytes() == src.read_bytes()
    assert sum(r["bytes"] for r in data_requests(hub, "mid.bin")) == size


def tensor_spans(path):
    """(start, end) file offsets of a safetensors file's tensors, by start."""
    with open(path, "rb") as f:
        head = f.read(8)
        head += f.read(int.from_bytes(head, "little"))
    header, start = genmodel.parse_safetensors_header(head)
    return sorted((start + v["data_offsets"][0], start + v["data_offsets"][1])
                  for k, v in header.items() if k != "__metadata__")


def resident_bytes(path):
    """Bytes of path in the kernel's page cache (mincore() of a mapping,
    which reads nothing)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) * mmap.PAGESIZE


def test_loader_reads_fetch_the_whole_file_in_parallel(hub, mount):
    size = 48 * MiB
    src, sha = hub.add_file("load.safetensors", size, kind="safetensors")
    m = mount(config({"checkpoints": {"l": '"%s"' % hub.url("load.safetensors")}}))
    path = m.path / "Stable-diffusion" / "load.safetensors"
    # What a webui does to every model at start: the header, then Forge's
    # 64 KiB probe at 1 MiB. That must not fetch the whole file...
    spans = tensor_spans(path)
    pread(path, MiB, 64 * 1024)
    # ...nor do a few random reads among the tensors (a tool's), even by
    # the MiB...
    for off in (20 * MiB + 5, 30 * MiB, 45 * MiB):
        assert pread(path, off, 4096) == file_slice(src, off, 4096)
    starts = {a // 4096 for a, _ in spans}
    rng = random.Random(5)
    for _ in range(4):
        off = rng.randrange(10 * MiB, 38 * MiB) // 4096 * 4096
        if not starts & {off // 4096, (off + MiB // 2) // 4096}:
            assert pread(path, off, MiB) == file_slice(src, off, MiB)
    assert "event=loader_read" not in m.log()
    # ...but a loader's reads, tensor by tensor (seek + readinto), do.
    # Three tensors (not empty) far enough apart that the kernel's
    # readahead of one does not reach the next.
    loaded = []
    for a, b in spans:
        if a >= 40 * MiB and b > a and (not loaded or a >= loaded[-1][0] + 3 * MiB // 2):
            loaded.append((a, b))
    loaded = loaded[:3]
    assert len(loaded) == 3, spans
    with open(path, "rb", buffering=0) as f:
        for a, b in loaded:
            f.seek(a)
            assert f.read(b - a) == file_slice(src, a, b - a)
    wait_for(lambda: xattr(path, "cached") == str(size), what="the whole file cached")
    # Each block went into the kernel's page cache as it arrived: the
    # loader's next reads find their pages there, with no FUSE round trip
    # (less what came before the loader was seen, and was not read).
    wait_for(lambda: resident_bytes(path) >= size - 4 * MiB,
             what="the loader's blocks in the page cache")
    lines = [l for l in m.log().splitlines() if "event=loader_read" in l]
    assert len(lines) == 1, lines
    at = int(re.search(r"offset=(\d+) ", lines[0]).group(1))
    assert loaded[-1][0] // 4096 * 4096 <= at < loaded[-1][1], (lines, loaded)
    reqs = data_requests(hub, "load.safetensors")
    assert sum(r["bytes"] for r in reqs) == size        # every byte once
    spans = sorted((r["t_start"], r["t_end"]) for r in reqs)
    assert sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1]) >= 3, spans
    wait_state(path, "complete")
    assert xattr(path, "sha256") == sha


def test_random_reads_by_the_mib_are_no_loader(hub, mount):
    # A tool's (or a benchmark's) random 1 MiB reads among the tensors
    # fetch what they read: their blocks, not the whole file.
    size = 64 * MiB
    src, _ = hub.add_file("rand.safetensors", size, kind="safetensors")
    m = mount(config({"checkpoints": {"r": '"%s"' % hub.url("rand.safetensors")}},
                     block_size="8M", settings="header_prefetch = false"))
    path = m.path / "Stable-diffusion" / "rand.safetensors"
    spans = tensor_spans(path)          # the header first, as any reader does
    starts = {a // 4096 for a, _ in spans}
    rng = random.Random(3)
    offs = []
    while len(offs) < 12:
        off = rng.randrange(8 * MiB, size - MiB) // 4096 * 4096
        if not starts & {off // 4096, (off + MiB // 2) // 4096}:
            offs.append(off)
    for off in offs:
        assert pread(path, off, MiB) == file_slice(src, off, MiB)
    # Each read's 256 KiB blocks (five at most: 1.25 MiB), the header's,
    # and nothing else once the hub has logged what it sent.
    most = 12 * (MiB + 256 * 1024) + MiB
    assert stable(lambda: bytes_fetched(hub, "rand.safetensors")) <= most
    assert "event=loader_read" not in m.log()


def test_random_reads_are_byte_exact(hub, mount):
    size = 40 * MiB + 12345
    src, _ = hub.add_file("r.bin", size)
    m = mount(config({"vae": {"r": '"%s"' % hub.url("r.bin")}}))
    path = m.path / "VAE" / "r.bin"
    rng = random.Random(7)
    cases = [(0, 1), (size - 1, 1), (size - 10, 100), (MiB - 3, 6), (5 * MiB, 0),
             (3 * MiB - 1, 2 * MiB + 2), (size, 10)]
    cases += [(rng.randrange(size), rng.choice([1, 4096, 131072, 3 * MiB])) for _ in range(40)]
    for off, length in cases:
        assert pread(path, off, length) == file_slice(src, off, length), (off, length)


def test_only_asked_blocks_are_fetched(hub, mount):
    hub.add_file("sparse-read.bin", 64 * MiB)
    m = mount(config({"vae": {"s": '"%s"' % hub.url("sparse-read.bin")}}))
    path = m.path / "VAE" / "sparse-read.bin"
    for off in (3 * MiB + 5, 40 * MiB, 63 * MiB):
        pread(path, off, 4096)
    reqs = data_requests(hub, "sparse-read.bin")
    # Each read's own 256 KiB cache block (block_size is the download unit).
    assert sorted(r["range"] for r in reqs) == sorted(
        "bytes=%d-%d" % (b * MiB, b * MiB + 256 * 1024 - 1) for b in (3, 40, 63))


def test_sequential_read_uses_readahead_and_fetches_once(hub, mount):
    src, sha = hub.add_file("seq.bin", 96 * MiB)
    m = mount(config({"vae": {"s": '"%s"' % hub.url("seq.bin")}}))
    path = m.path / "VAE" / "seq.bin"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(128 * 1024):
            h.update(chunk)
    assert h.hexdigest() == sha
    reqs = data_requests(hub, "seq.bin")
    assert sum(r["bytes"] for r in reqs) == 96 * MiB      # every byte once
    assert len({r["range"] for r in reqs}) == len(reqs)   # no block twice
    # Readahead keeps several connections busy: requests overlap in time.
    spans = sorted((r["t_start"], r["t_end"]) for r in reqs)
    overlapping = sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1])
    assert overlapping >= 3, spans


def test_mmap_reads_match(hub, mount):
    src, _ = hub.add_file("mm.safetensors", 24 * MiB, kind="safetensors")
    m = mount(config({"checkpoints": {"mm": '"%s"' % hub.url("mm.safetensors")}}))
    path = m.path / "Stable-diffusion" / "mm.safetensors"
    want = src.read_bytes()
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)   # MAP_SHARED, as GGUF loaders do
        try:
            rng = random.Random(3)
            for _ in range(200):
                off = rng.randrange(len(want))
                assert mm[off:off + 4096] == want[off:off + 4096]
            assert mm[:] == want
        finally:
            mm.close()


def test_redirected_url_reads_from_cdn_without_auth(hub, mount):
    src, _ = hub.add_file("cdn.bin", 5 * MiB)
    m = mount(config({"vae": {"c": url_entry(hub.redirect_url("cdn.bin"), filename="cdn.bin",
                                             auth_header="Bearer sekrit-token-123")}}))
    path = m.path / "VAE" / "cdn.bin"
    assert path.read_bytes() == src.read_bytes()
    cdn = hub.requests(server="cdn")
    assert cdn and not any(r["authorization"] for r in cdn)
    origin = hub.requests(server="origin", path="/redirect/*")
    assert origin and all(r["authorization"] for r in origin)
    assert "sekrit-token-123" not in m.log()
