#!/usr/bin/python3
"""make_seeds: write the generated part of the fuzz seed corpus.

    tests/fuzz/make_seeds.py        (re)writes corpus/<target>/gen-* files

Deterministic: the same files every run, so a rerun changes nothing in
git. Model headers come from tests/fakehub/genmodel.py (safetensors) and a
GGUF v3 writer here shaped like tests/unit/test_modelinfo.c's; service
answers have the shapes tests/fakehub/svc_hf.py and svc_civitai.py send.
Hand-written seeds (no "gen-" prefix) and crash regressions ("crash-*",
"leak-*") are kept as they are.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fakehub"))

import genmodel  # noqa: E402


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "gen-" + name), "wb") as f:
        f.write(data)


# ---- model headers --------------------------------------------------------

def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(version=3, alignment=32):
    """A small GGUF: metadata of several kinds, five tensors, their data."""
    kv = [
        gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama"),
        gstr("general.name") + struct.pack("<I", 8) + gstr("Tiny Llama"),
        gstr("general.alignment") + struct.pack("<II", 4, alignment),
        gstr("llama.rope.freq_base") + struct.pack("<If", 6, 10000.0),
        gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3)
        + gstr("<s>") + gstr("</s>") + gstr("hello"),
        gstr("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + b"\0" * 12,
        gstr("nested") + struct.pack("<IIQ", 9, 9, 2)
        + struct.pack("<IQQ", 10, 1, 42) + struct.pack("<IQ", 10, 0),
    ]
    tensors = [("token_embd.weight", [256, 32], 12, 32 * 144),
               ("blk.0.attn_q.weight", [64, 64], 8, 128 * 34),
               ("blk.0.attn_norm.weight", [64], 0, 64 * 4),
               ("output.weight", [64, 8], 1, 512 * 2),
               ("blk.0.ffn.weight", [512, 2], 14, 4 * 210)]
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv)) + b"".join(kv)
    offset = 0
    for name, dims, ggml, nbytes in tensors:
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml, offset)
        offset += nbytes
    out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    return out + b"\0" * offset


def model_seeds():
    t = "fuzz_modelinfo"
    for size, seed in ((1024, 0), (3000, 1), (4096, 2)):
        head = genmodel.safetensors_header(size, seed)
        data = head + genmodel.fill(len(head), size - len(head), seed)
        write(t, "safetensors-%d-%d" % (size, seed), data)
    # Only the header of a large file: the parser must ask for no more.
    write(t, "safetensors-head-64M", genmodel.safetensors_header(64 << 20, 3))
    write(t, "gguf-v3", gguf(3))
    write(t, "gguf-v2-align64", gguf(2, 64))


# ---- service answers ------------------------------------------------------

SHA = "2d6a1b5c%s" % ("0f" * 28)
GIT = "da39a3ee5e6b4b0d3255bfef95601890afd80709"


def hf_seeds():
    t = "fuzz_hf"
    page = [
        {"type": "directory", "oid": GIT, "size": 0, "path": "transformer"},
        {"type": "file", "oid": GIT, "size": 571, "path": "model_index.json"},
        {"type": "file", "oid": GIT, "size": 134, "path": "transformer/config.json"},
        {"type": "file", "oid": "AB" + GIT[2:], "size": 135,
         "path": "transformer/diffusion_pytorch_model.safetensors",
         "lfs": {"oid": SHA.upper(), "size": 23782506688, "pointerSize": 135},
         "xetHash": SHA},
    ]
    link = ('<http://127.0.0.1:4242/api/models/org/repo/tree/main?recursive=true&cursor=Mg%3D%3D>;'
            ' rel="next"')
    write(t, "tree-page", link + "\n" + json.dumps(page))
    write(t, "tree-last-page", json.dumps(page[:2]))
    write(t, "tree-xet-link",
          '<http://127.0.0.1:4242/api/models/o/r/xet-read-token/abc>; rel="xet-auth", '
          '<https://huggingface.co/api/models/o/r/tree/main?cursor=eA>; rel="next last"\n[]')
    write(t, "tree-unsafe-paths", "\n" + json.dumps([
        {"type": "file", "path": "../etc/passwd", "size": 1},
        {"type": "file", "path": "a//b", "size": 1},
        {"type": "file", "path": "/abs", "size": 1},
        {"type": "file", "path": "ok/./x", "size": 1},
        {"type": "file", "path": "fine.bin", "size": 5, "lfs": {"oid": 7}}]))


def civitai_seeds():
    t = "fuzz_civitai"
    when = "2024-01-01T00:00:00.000Z"

    def file(fid, name, ftype="Model", primary=None, sha=SHA):
        body = {"id": fid, "name": name, "type": ftype, "sizeKB": 2.5,
                "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                "pickleScanResult": "Success", "virusScanResult": "Success",
                "scannedAt": when, "hashes": {"SHA256": sha.upper(), "AutoV2": sha[:10].upper()},
                "downloadUrl": "http://127.0.0.1:4343/api/download/models/128713"}
        if primary is not None:
            body["primary"] = primary
        return body

    version = {"id": 128713, "modelId": 58390, "name": "v1", "baseModel": "SD 1.5",
               "status": "Published", "availability": "Public", "createdAt": when,
               "publishedAt": when, "usageControl": "Download",
               "files": [file(1001, "detail.safetensors", primary=True),
                         file(1002, "detail.vae.pt", "VAE", False),
                         file(1003, "x\u202eslx.safetensors", "Model", False, "zz")],
               "downloadUrl": "http://127.0.0.1:4343/api/download/models/128713"}
    model = {"id": 58390, "name": "Detail Tweaker", "type": "LORA",
             "modelVersions": [dict(version, status="Draft", id=128714), version]}
    for pick in (0, 3, 4, 8, 16 | 4):
        write(t, "version-%d" % pick, bytes([pick]) + json.dumps(version).encode())
    write(t, "model-0", b"\0" + json.dumps(model).encode())
    write(t, "model-16", b"\x10" + json.dumps(model).encode())
    write(t, "long-name", b"\0" + json.dumps(dict(version, files=[
        file(7, "n" * 300 + ".safetensors", primary=True)])).encode())


def control_seeds():
    t = "fuzz_control"
    hello = {"ok": True, "version": "0.1.0", "pid": 4242, "mountpoint": "/workspace/models",
             "cache_dir": "/var/cache/modelfs"}
    head = {"ok": True, "parts": 2, "result": {"files": [], "totals": {"bytes": 10}}}
    parts = [{"part": "files", "item": {"path": "Lora/detail.safetensors", "state": "verified"}},
             {"part": "files", "item": {"path": "VAE/vae.safetensors", "state": "partial"}}]
    lines = [hello, head] + parts + [{"ok": False, "error": "unknown command", "code": 2}]
    write(t, "replies", "".join(json.dumps(x) + "\n" for x in lines))
    write(t, "requests", '{"cmd": "hello"}\n{"cmd": "status", "history": 5, "parts": true}\n'
          '{"cmd": "prefetch", "paths": ["/x"], "pin": false, "jobs": 4}\n')
    write(t, "bad-part", json.dumps(head) + "\n" + '{"part": "nope", "item": 1}\n[1,2]\n\n')
    write(t, "unterminated", '{"cmd": "hello"}\n{"cmd": "stat')


def main():
    model_seeds()
    hf_seeds()
    civitai_seeds()
    control_seeds()


if __name__ == "__main__":
    main()
