"""Header prefetch at mount: every .safetensors and .gguf file's header (and
Forge's 64 KiB probe at 1 MiB) is fetched once, right after mounting, all
files at once, so that a webui start reads cached blocks."""

import json
import struct
import subprocess
import time

from mfs import MiB, bytes_fetched, config, data_requests, pread, stable, wait_for, xattr

BLOCK = 256 * 1024          # the cache's block for files new to it


def prefetched(m):
    return "event=header_prefetch " in m.log()


def covered(reqs, start, end):
    """Whether the requests' ranges cover [start, end)."""
    spans = sorted(tuple(int(x) for x in r["range"][6:].split("-")) for r in reqs)
    at = start
    for a, b in spans:
        if a <= at <= b:
            at = b + 1
    return at >= end


def gguf(n_tokens, data_len):
    """A GGUF v3 file whose header (a token list) is n_tokens long: bytes
    and the header's length."""
    def s(b):
        return struct.pack("<Q", len(b)) + b
    kv = s(b"general.architecture") + struct.pack("<I", 8) + s(b"flux")
    kv += (s(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, n_tokens)
           + b"".join(s(b"tok%06d" % i) for i in range(n_tokens)))
    kv += s(b"general.alignment") + struct.pack("<II", 4, 32)
    tensor = s(b"w") + struct.pack("<IQQIQ", 2, 64, 64, 1, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 3) + kv + tensor
    pad = b"\0" * (-len(head) % 32)
    return head + pad + bytes(range(256)) * (data_len // 256), len(head)


def test_headers_and_the_probe_are_fetched_once_at_mount(hub, mount):
    st, _ = hub.add_file("m.safetensors", 24 * MiB, kind="safetensors")
    hdr = 8 + int.from_bytes(st.read_bytes()[:8], "little")
    data, glen = gguf(40000, 4 * MiB)
    hub.add_file("m.gguf", data=data)
    hub.add_file("m.bin", 4 * MiB)
    lora, _ = hub.add_file("l.safetensors", 8 * MiB, kind="safetensors", seed=5)
    lhdr = 8 + int.from_bytes(lora.read_bytes()[:8], "little")
    cfg = config({"checkpoints": {"s": '"%s"' % hub.url("m.safetensors"),
                                  "g": '"%s"' % hub.url("m.gguf")},
                  "lora": {"l": '"%s"' % hub.url("l.safetensors")},
                  "vae": {"b": '"%s"' % hub.url("m.bin")}})
    m = mount(cfg)
    wait_for(lambda: prefetched(m), what="the header prefetch")
    sreqs = data_requests(hub, "m.safetensors")
    assert covered(sreqs, 0, hdr) and covered(sreqs, MiB, MiB + 64 * 1024), sreqs
    # Exactly the blocks of the header and of the probe.
    assert sum(r["bytes"] for r in sreqs) == (-(-hdr // BLOCK) + 1) * BLOCK, sreqs
    greqs = data_requests(hub, "m.gguf")
    assert covered(greqs, 0, glen), greqs
    # Walked in rounds that double what is asked for: at most twice.
    assert sum(r["bytes"] for r in greqs) <= 2 * glen + BLOCK, greqs
    assert data_requests(hub, "m.bin") == []
    # Forge hashes checkpoints only: a LoRA has its header fetched, no probe.
    lreqs = data_requests(hub, "l.safetensors")
    assert sum(r["bytes"] for r in lreqs) == -(-lhdr // BLOCK) * BLOCK, lreqs
    # What Forge then reads is cached: no request.
    path = m.path / "Stable-diffusion" / "m.safetensors"
    wait_for(lambda: int(xattr(path, "cached")) == sum(r["bytes"] for r in sreqs),
             what="the header blocks cached")
    before = len(data_requests(hub, "m.safetensors"))
    assert pread(path, 0, hdr) == st.read_bytes()[:hdr]
    assert pread(path, MiB, 64 * 1024) == st.read_bytes()[MiB:MiB + 64 * 1024]
    assert len(data_requests(hub, "m.safetensors")) == before
    # A remount finds them cached and fetches nothing.
    cache = m.cache_dir
    m.unmount()
    hub.reset()
    m = mount(cfg, cache_dir=cache)
    wait_for(lambda: prefetched(m), what="the header prefetch")
    assert data_requests(hub, "m.safetensors") == data_requests(hub, "m.gguf") == []


def test_header_prefetch_can_be_turned_off(hub, mount):
    hub.add_file("off.safetensors", 8 * MiB, kind="safetensors")
    m = mount(config({"checkpoints": {"o": '"%s"' % hub.url("off.safetensors")}},
                     settings="header_prefetch = false"))
    path = m.path / "Stable-diffusion" / "off.safetensors"
    assert path.stat().st_size == 8 * MiB
    time.sleep(1)                       # it would have been done by now
    assert not prefetched(m)
    assert data_requests(hub, "off.safetensors") == []


def test_two_entries_with_the_same_bytes_cache_each_block_once(hub, mount):
    """Both are prefetched at once into their one cache file: a block one of
    them is writing is not written (nor counted) again by the other."""
    src, sha = hub.add_file("a.safetensors", 8 * MiB, kind="safetensors", seed=3)
    hub.add_file("b.safetensors", 8 * MiB, kind="safetensors", seed=3)
    hdr = 8 + int.from_bytes(src.read_bytes()[:8], "little")
    m = mount(config({"checkpoints": {"a": '"%s"' % hub.url("a.safetensors"),
                                      "b": '"%s"' % hub.url("b.safetensors")}}))
    wait_for(lambda: prefetched(m), what="the header prefetch")
    want = (-(-hdr // BLOCK) + 1) * BLOCK
    for name in ("a.safetensors", "b.safetensors"):
        path = m.path / "Stable-diffusion" / name
        wait_for(lambda: int(xattr(path, "cached")) >= want, what="its blocks cached")
        assert int(xattr(path, "cached")) == want
        assert pread(path, 0, hdr) == src.read_bytes()[:hdr]


def test_a_reload_fetches_the_headers_of_the_files_it_adds(hub, mount, modelfs_bin):
    hub.add_file("first.safetensors", 4 * MiB, kind="safetensors", seed=6)
    added, _ = hub.add_file("added.safetensors", 8 * MiB, kind="safetensors", seed=7)
    hdr = 8 + int.from_bytes(added.read_bytes()[:8], "little")
    entry = {"f": '"%s"' % hub.url("first.safetensors")}
    m = mount(config({"checkpoints": entry}))
    wait_for(lambda: m.log().count("event=header_prefetch ") == 1, what="the header prefetch")
    entry["a"] = '"%s"' % hub.url("added.safetensors")
    m.config_path.write_text(config({"checkpoints": entry}))
    r = subprocess.run([str(modelfs_bin), "reload", str(m.path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # No program reads it: the header and Forge's probe come on their own.
    wait_for(lambda: m.log().count("event=header_prefetch ") == 2,
             what="the added file's header prefetch")
    want = (-(-hdr // BLOCK) + 1) * BLOCK
    # The hub logs a request's bytes once sendfile returns: waited for.
    wait_for(lambda: sum(r["bytes"] for r in data_requests(hub, "added.safetensors")) == want,
             what="the added file's header and probe bytes")
    reqs = data_requests(hub, "added.safetensors")
    assert covered(reqs, 0, hdr) and covered(reqs, MiB, MiB + 64 * 1024), reqs
    # The first file's pass is not made again.
    assert "files=1 " in m.log().split("event=header_prefetch ")[2]


def test_a_header_read_fetches_only_the_header(hub, mount):
    # A 200 KiB header, read as programs read it: 8 bytes, then the rest.
    # The kernel would read ahead of that to 464 KiB (two 256 KiB blocks);
    # the first read is answered once the header's pages are in its page
    # cache, so it reads nothing more, and only the header's block is
    # fetched.
    meta = json.dumps({"__metadata__": {"pad": "x" * (200 * 1024)},
                       "t": {"dtype": "U8", "shape": [4 * MiB], "data_offsets": [0, 4 * MiB]}})
    meta += " " * (-len(meta) % 8)
    data = struct.pack("<Q", len(meta)) + meta.encode() + bytes(range(256)) * (4 * MiB // 256)
    hub.add_file("pad.safetensors", data=data)
    m = mount(config({"lora": {"p": '"%s"' % hub.url("pad.safetensors")}}, block_size="8M",
                     settings="header_prefetch = false"))
    path = m.path / "Lora" / "pad.safetensors"
    with open(path, "rb", buffering=0) as f:
        n = int.from_bytes(f.read(8), "little")
        assert f.read(n) == meta.encode()
    assert stable(lambda: bytes_fetched(hub, "pad.safetensors")) == BLOCK
    # The bytes the kernel was given are the file's: read them again, and
    # past the header.
    assert pread(path, 0, 300 * 1024) == data[:300 * 1024]


def test_a_buffered_probe_fetches_one_block(hub, mount):
    # Forge's model_hash(): open() (buffered), seek to 1 MiB, read 64 KiB.
    # Python buffers by st_blksize: the cache's block, so one is fetched.
    src, _ = hub.add_file("probe.safetensors", 16 * MiB, kind="safetensors")
    m = mount(config({"checkpoints": {"p": '"%s"' % hub.url("probe.safetensors")}},
                     block_size="8M", settings="header_prefetch = false"))
    path = m.path / "Stable-diffusion" / "probe.safetensors"
    assert path.stat().st_blksize == BLOCK
    with open(path, "rb") as f:
        f.seek(MiB)
        assert f.read(64 * 1024) == src.read_bytes()[MiB:MiB + 64 * 1024]
    assert stable(lambda: bytes_fetched(hub, "probe.safetensors")) == BLOCK
