#!/usr/bin/python3
"""genmodel: deterministic model-file fixtures for modelfs tests, fast.

    genmodel.py raw PATH --size BYTES [--seed N]
    genmodel.py safetensors PATH --size BYTES [--seed N]
    genmodel.py sparse PATH --size BYTES [--seed N]

Prints the file's sha256 (nothing for sparse).  BYTES takes K/M/G/T suffixes
(binary).  The same (kind, size, seed) always gives the same bytes.

Content is a function of the absolute file offset (see fill()), so any slice
can be recomputed without the file:
  * a 1 MiB pseudo-random block per seed, rotated by a different amount in
    every 1 MiB window, so no two windows share bytes at the same position;
  * every 4 KiB-aligned chunk starts with a 16-byte stamp
        <u64 LE file offset of the chunk> <u32 LE seed> b"MFSB"
    so a block served from the wrong offset, or shifted by one byte, shows.
raw         fill() from offset 0.
safetensors u64 LE header length N, N bytes of JSON (padded with spaces to
            a multiple of 8, as the safetensors serializer does), then the
            data region, fill() at its absolute offsets.  The JSON has
            `__metadata__` and many F16/BF16/F32 tensors of varied shapes whose
            data_offsets tile the data region exactly (a final tensor takes
            the remainder, U8 if the remainder is odd).  --size is the exact
            file size.
sparse      a hole-y file of exactly --size bytes: fill() only in the first
            64 KiB, the 64 KiB around each 4 GiB multiple, and the last
            64 KiB (4 KiB aligned); zeros elsewhere.  For >4 GiB arithmetic
            tests without writing gigabytes.

Importable: fill(), write_raw(), write_safetensors(), write_sparse(),
safetensors_header(), parse_safetensors_header(), parse_size().
"""

import argparse
import hashlib
import json
import math
import os
import random
import struct
import sys

WINDOW = 1 << 20        # the random block's size
CHUNK = 4096            # every chunk of this alignment carries a stamp
MAGIC = b"MFSB"

_base_cache = {}


def _base(seed):
    block = _base_cache.get(seed)
    if block is None:
        block = random.Random(seed).randbytes(WINDOW)
        _base_cache.clear()             # keep one: they are 1 MiB each
        _base_cache[seed] = block
    return block


def _window(index, seed):
    """The bytes of 1 MiB window number `index` (file offset index*WINDOW)."""
    base = _base(seed)
    rot = (index * 0x9E3779B1 + 12345) % WINDOW
    buf = bytearray(base[rot:] + base[:rot])
    start = index * WINDOW
    s32 = seed & 0xFFFFFFFF
    for off in range(0, WINDOW, CHUNK):
        struct.pack_into("<QI4s", buf, off, start + off, s32, MAGIC)
    return buf


def fill(offset, length, seed=0):
    """The fill bytes at absolute file offsets [offset, offset+length)."""
    out = bytearray()
    end = offset + length
    pos = offset
    while pos < end:
        w = pos // WINDOW
        lo = pos - w * WINDOW
        hi = min(WINDOW, end - w * WINDOW)
        out += _window(w, seed)[lo:hi]
        pos = w * WINDOW + hi
    return bytes(out)


def _write_fill(f, offset, end, seed, digest):
    pos = offset
    while pos < end:
        w = pos // WINDOW
        lo = pos - w * WINDOW
        hi = min(WINDOW, end - w * WINDOW)
        buf = _window(w, seed)
        piece = memoryview(buf)[lo:hi] if (lo, hi) != (0, WINDOW) else buf
        if digest is not None:
            digest.update(piece)
        f.write(piece)
        pos = w * WINDOW + hi


def write_raw(path, size, seed=0):
    """Write `size` fill bytes to path; return the sha256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        _write_fill(f, 0, size, seed, digest)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# safetensors

_DTYPES = [("F16", 2), ("BF16", 2), ("F32", 4)]
_WIDTHS = [64, 128, 256, 320, 512, 640, 768, 1024, 1280, 2048, 3072, 4096]
_PARTS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
          "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
          "input_layernorm", "post_attention_layernorm"]


def _plan(size, seed):
    """The fixed tensors (name, dtype, shape, nbytes), leaving room for the
    header and a final remainder tensor."""
    rng = random.Random(seed ^ 0x5AFE7E)
    budget = size - 8
    max_tensors = max(3, min(1500, size // (256 << 10)))
    tensors, used = [], 0
    while len(tensors) < max_tensors:
        dtype, dsz = rng.choice(_DTYPES)
        hi = max(32, (budget // 8) // dsz)
        elems = int(math.exp(rng.uniform(math.log(16), math.log(hi))))
        if elems < 4096 and rng.random() < 0.5:
            shape = [elems]
        else:
            widths = [w for w in _WIDTHS if w <= elems] or [elems]
            width = rng.choice(widths)
            shape = [elems // width, width]
        nbytes = math.prod(shape) * dsz
        header_bound = 1024 + 200 * (len(tensors) + 2)
        if used + nbytes + header_bound > budget:
            break
        i = len(tensors)
        name = "model.layers.%d.%s.%s" % (i // len(_PARTS), _PARTS[i % len(_PARTS)],
                                          "weight" if rng.random() < 0.8 else "bias")
        tensors.append((name, dtype, shape, nbytes))
        used += nbytes
    return tensors, used


def _header_json(size, seed, tensors, data_len):
    used = sum(t[3] for t in tensors)
    rem = data_len - used
    if rem < 0:
        return None
    if rem % 4 == 0:
        last = ("lm_head.weight", "F32", [rem // 4], rem)
    elif rem % 2 == 0:
        last = ("lm_head.weight", "F16", [rem // 2], rem)
    else:
        last = ("lm_head.extra", "U8", [rem], rem)
    header = {"__metadata__": {"format": "pt", "generator": "modelfs genmodel",
                               "seed": str(seed), "size": str(size)}}
    offset = 0
    for name, dtype, shape, nbytes in tensors + [last]:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    assert offset == data_len
    return json.dumps(header, separators=(",", ":")).encode()


def safetensors_header(size, seed=0):
    """The first 8+N bytes of the safetensors file of exactly `size` bytes."""
    tensors, _ = _plan(size, seed)
    hlen = 0
    for _ in range(8):
        js = _header_json(size, seed, tensors, size - 8 - hlen)
        if js is None:
            if not tensors:
                raise ValueError("size %d is too small for a safetensors file" % size)
            tensors = tensors[:-1]
            continue
        if len(js) <= hlen:
            return struct.pack("<Q", hlen) + js + b" " * (hlen - len(js))
        hlen = (len(js) + 7) // 8 * 8
    raise ValueError("size %d is too small for a safetensors file" % size)


def write_safetensors(path, size, seed=0):
    """Write a valid safetensors file of exactly `size` bytes; return sha256."""
    head = safetensors_header(size, seed)
    digest = hashlib.sha256(head)
    with open(path, "wb") as f:
        f.write(head)
        _write_fill(f, len(head), size, seed, digest)
    return digest.hexdigest()


def parse_safetensors_header(data):
    """(header dict, data start offset) from a file's first bytes; checks
    the invariants a safetensors reader checks (raises ValueError)."""
    if len(data) < 8:
        raise ValueError("short file")
    (n,) = struct.unpack_from("<Q", data)
    if len(data) < 8 + n:
        raise ValueError("header truncated")
    text = data[8:8 + n]
    if not text.startswith(b"{"):
        raise ValueError("header does not start with {")
    header = json.loads(text)
    return header, 8 + n


# ---------------------------------------------------------------------------
# sparse

SPARSE_EXTENT = 64 << 10


def sparse_extents(size):
    """The (offset, length) extents written by write_sparse, sorted, merged."""
    want = [(0, SPARSE_EXTENT)]
    g = 1 << 32
    while g < size:
        want.append((g - SPARSE_EXTENT // 2, SPARSE_EXTENT))
        g += 1 << 32
    tail = max(0, (size - SPARSE_EXTENT) // CHUNK * CHUNK)
    want.append((tail, size - tail))
    out = []
    for off, length in sorted(want):
        end = min(size, off + length)
        if out and off <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        elif end > off:
            out.append([off, end])
    return [(a, b - a) for a, b in out]


def write_sparse(path, size, seed=0):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, length in sparse_extents(size):
            f.seek(off)
            _write_fill(f, off, off + length, seed, None)
    return None


WRITERS = {"raw": write_raw, "safetensors": write_safetensors, "sparse": write_sparse}


def generate(kind, path, size, seed=0):
    """Write a fixture of `kind`; return its sha256 (None for sparse)."""
    try:
        writer = WRITERS[kind]
    except KeyError:
        raise ValueError("unknown kind %r (want %s)" % (kind, ", ".join(WRITERS)))
    return writer(path, size, seed)


def parse_size(text):
    text = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    mult = 1
    if text and text[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(text[-1]) + 1))
        text = text[:-1]
    return int(text) * mult


def main(argv=None):
    ap = argparse.ArgumentParser(description="deterministic model-file fixtures")
    ap.add_argument("kind", choices=sorted(WRITERS))
    ap.add_argument("path")
    ap.add_argument("--size", required=True, type=parse_size)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        digest = generate(args.kind, args.path, args.size, args.seed)
    except ValueError as e:
        ap.error(str(e))
    if digest:
        print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
