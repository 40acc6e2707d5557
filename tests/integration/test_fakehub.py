"""Tests of the test harness itself: fakehub (exact ranges, validators,
faults, presigned CDN, request log), genmodel fixtures, and the mount
fixture driven by a stub FUSE binary (tests/fakehub/stub_modelfs.c).

If these pass, a modelfs test that fails is about modelfs.
"""

import email.utils
import errno
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import conftest
import genmodel
import hubcore
from hubclient import FakeHub, HubError, fetch

SIZE = 10000            # small test file: not a multiple of 4096
FOUR_GIB = 1 << 32


def conn_for(hub, server="origin", timeout=10):
    return http.client.HTTPConnection("127.0.0.1", hub.ports[server], timeout=timeout)


def url_path(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


@pytest.fixture
def small(hub):
    """(name, bytes, sha256) of a 10000-byte raw file on the hub."""
    path, sha = hub.add_file("small.bin", SIZE, seed=7)
    return "small.bin", path.read_bytes(), sha


# ---------------------------------------------------------------------------
# genmodel

def test_genmodel_raw_is_exact_and_deterministic(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    sha_a = genmodel.write_raw(a, 3 * 1024 * 1024 + 5, seed=1)
    sha_b = genmodel.write_raw(b, 3 * 1024 * 1024 + 5, seed=1)
    sha_c = genmodel.write_raw(c, 3 * 1024 * 1024 + 5, seed=2)
    data = a.read_bytes()
    assert len(data) == 3 * 1024 * 1024 + 5
    assert sha_a == sha_b == hashlib.sha256(data).hexdigest()
    assert sha_c != sha_a
    for off, n in [(0, 1), (4095, 2), (1 << 20, 4096), ((1 << 20) - 7, 20), (len(data) - 3, 3)]:
        assert genmodel.fill(off, n, seed=1) == data[off:off + n]


def test_genmodel_every_4k_chunk_differs_and_is_stamped(tmp_path):
    path = tmp_path / "r"
    genmodel.write_raw(path, 4 << 20, seed=9)
    data = path.read_bytes()
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert len({hashlib.sha256(c).digest() for c in chunks}) == len(chunks)
    # Not only the stamps: the bytes after them differ between windows too.
    tails = {c[16:] for c in chunks}
    assert len(tails) == len(chunks)
    for i in (0, 1, 255, 256, 1023):
        off, seed, magic = struct.unpack_from("<QI4s", chunks[i])
        assert (off, seed, magic) == (i * 4096, 9, b"MFSB")
    # A one-byte shift is visible anywhere.
    assert data[1:4097] not in chunks


def check_safetensors(data):
    """The checks a safetensors reader makes; returns (header, tensor count)."""
    header, start = genmodel.parse_safetensors_header(data)
    assert start % 8 == 0, "header length padded to 8"
    assert data[8:start].rstrip(b" ").endswith(b"}")
    meta = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in meta.values())
    sizes = {"F16": 2, "BF16": 2, "F32": 4, "U8": 1}
    spans = []
    for name, t in header.items():
        assert t["dtype"] in sizes, name
        a, b = t["data_offsets"]
        assert b - a == math.prod(t["shape"]) * sizes[t["dtype"]], name
        spans.append((a, b))
    spans.sort()
    pos = 0
    for a, b in spans:
        assert a == pos, "offsets must tile the data region"
        pos = b
    assert pos == len(data) - start, "offsets must end at the end of the file"
    return header, len(spans)


@pytest.mark.parametrize("size", [4096, 100_001, 1 << 20, (10 << 20) + 3, 64 << 20])
def test_genmodel_safetensors_valid(tmp_path, size):
    path = tmp_path / "m.safetensors"
    sha = genmodel.write_safetensors(path, size, seed=5)
    data = path.read_bytes()
    assert len(data) == size
    assert hashlib.sha256(data).hexdigest() == sha
    header, count = check_safetensors(data)
    if size >= 64 << 20:
        assert count >= 20
        assert {t["dtype"] for t in header.values()} >= {"F16", "BF16", "F32"}
    start = 8 + struct.unpack_from("<Q", data)[0]
    assert data[start:] == genmodel.fill(start, size - start, seed=5)
    assert genmodel.safetensors_header(size, 5) == data[:start]


def test_genmodel_safetensors_too_small(tmp_path):
    with pytest.raises(ValueError):
        genmodel.write_safetensors(tmp_path / "x", 100)


def test_genmodel_sparse(tmp_path):
    size = 5 * (1 << 30) + 3
    path = tmp_path / "sparse.bin"
    assert genmodel.write_sparse(path, size, seed=3) is None
    st = path.stat()
    assert st.st_size == size
    assert st.st_blocks * 512 < 16 << 20, "must stay sparse"
    with open(path, "rb") as f:
        for off, n in genmodel.sparse_extents(size):
            assert os.pread(f.fileno(), n, off) == genmodel.fill(off, n, seed=3)
        assert os.pread(f.fileno(), 4096, 1 << 30) == bytes(4096)


def test_genmodel_cli_and_speed(tmp_path):
    path = tmp_path / "big.safetensors"
    t0 = time.monotonic()
    out = subprocess.run([conftest.sys.executable, str(conftest.REPO / "tests/fakehub/genmodel.py"),
                          "safetensors", str(path), "--size", "256M", "--seed", "4"],
                         capture_output=True, text=True, check=True)
    elapsed = time.monotonic() - t0
    assert path.stat().st_size == 256 << 20
    assert re.fullmatch(r"[0-9a-f]{64}\n", out.stdout)
    assert elapsed < 5, "256 MiB took %.1f s; 1 GiB must take a few seconds" % elapsed
    assert genmodel.parse_size("1G") == 1 << 30
    assert genmodel.parse_size("4KiB") == 4096
    assert genmodel.parse_size("123") == 123


# ---------------------------------------------------------------------------
# range arithmetic, unit level

@pytest.mark.parametrize("header,size,want", [
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=9-", 10, (9, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-30", 10, (0, 9)),
    ("bytes=2-99", 10, (2, 9)),
    ("BYTES=1-2", 10, (1, 2)),
    ("bytes=1-2,", 10, (1, 2)),
    ("bytes=10-", 10, hubcore.UNSATISFIABLE),
    ("bytes=-0", 10, hubcore.UNSATISFIABLE),
    ("bytes=0-0", 0, hubcore.UNSATISFIABLE),
    ("bytes=-5", 0, hubcore.UNSATISFIABLE),
    ("bytes=5-3", 10, None),
    ("bytes=0-1,3-4", 10, None),
    ("bytes=-", 10, None),
    ("bytes=a-b", 10, None),
    ("items=0-1", 10, None),
    ("bytes", 10, None),
])
def test_parse_range(header, size, want):
    assert hubcore.parse_range(header, size) == want


# ---------------------------------------------------------------------------
# origin: plain file serving

def test_hub_starts_fast(tmp_path):
    t0 = time.monotonic()
    h = FakeHub(tmp_path / "root", tmp_path / "hub").start()
    elapsed = time.monotonic() - t0
    try:
        assert {"origin", "cdn"} <= set(h.ports)
        assert len(set(h.ports.values())) == len(h.ports)    # one port per host
        assert elapsed < 1.0, "startup %.2f s" % elapsed
    finally:
        assert "Traceback" not in h.stop()


def test_get_full_headers_exact(hub, small):
    name, data, sha = small
    path = hub.root / name
    st = path.stat()
    r = fetch(hub.url(name))
    assert r.status == 200
    assert r.body == data and hashlib.sha256(r.body).hexdigest() == sha
    assert r.header("Content-Length") == str(SIZE)
    assert r.header("Content-Type") == "application/octet-stream"
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("Content-Range") is None
    assert r.header("Last-Modified") == email.utils.formatdate(int(st.st_mtime), usegmt=True)
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', r.header("ETag")), "strong ETag"
    assert r.version == 11


def test_head_matches_get_and_ignores_range(hub, small):
    name, _, _ = small
    get = fetch(hub.url(name))
    head = fetch(hub.url(name), "HEAD", headers={"Range": "bytes=0-9"})
    assert head.status == 200 and head.body == b""
    for h in ("Content-Length", "ETag", "Last-Modified", "Content-Type", "Accept-Ranges"):
        assert head.header(h) == get.header(h), h
    assert head.header("Content-Range") is None


def test_etag_changes_with_file(hub, small):
    name, _, _ = small
    before = fetch(hub.url(name), "HEAD").header("ETag")
    st = (hub.root / name).stat()
    os.utime(hub.root / name, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert fetch(hub.url(name), "HEAD").header("ETag") != before


RANGE_CASES = [
    # header, status, (first, last) for 206
    ("bytes=0-0", 206, (0, 0)),
    ("bytes=0-4095", 206, (0, 4095)),
    ("bytes=4095-4096", 206, (4095, 4096)),
    ("bytes=9999-9999", 206, (9999, 9999)),
    ("bytes=9999-", 206, (9999, 9999)),
    ("bytes=-1", 206, (9999, 9999)),
    ("bytes=-10000", 206, (0, 9999)),
    ("bytes=-20000", 206, (0, 9999)),
    ("bytes=5000-", 206, (5000, 9999)),
    ("bytes=9000-20000", 206, (9000, 9999)),
    ("bytes=0-9999", 206, (0, 9999)),
    ("BYTES=1-2", 206, (1, 2)),
    ("bytes=10000-", 416, None),
    ("bytes=10000-10005", 416, None),
    ("bytes=20000-30000", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=5-3", 200, None),
    ("bytes=abc", 200, None),
    ("bytes=0-1,3-4", 200, None),
    ("items=0-1", 200, None),
]


@pytest.mark.parametrize("rng,status,span", RANGE_CASES)
def test_range_exact(hub, small, rng, status, span):
    name, data, _ = small
    r = fetch(hub.url(name), headers={"Range": rng})
    assert r.status == status
    if status == 206:
        a, b = span
        assert r.header("Content-Range") == "bytes %d-%d/%d" % (a, b, SIZE)
        assert r.header("Content-Length") == str(b - a + 1)
        assert r.body == data[a:b + 1]
    elif status == 416:
        assert r.header("Content-Range") == "bytes */%d" % SIZE
        assert r.header("Content-Length") == str(len(r.body))
    else:
        assert r.header("Content-Range") is None
        assert r.body == data


def test_empty_file(hub):
    hub.add_file("empty.bin", data=b"")
    r = fetch(hub.url("empty.bin"))
    assert (r.status, r.body, r.header("Content-Length")) == (200, b"", "0")
    r = fetch(hub.url("empty.bin"), headers={"Range": "bytes=0-0"})
    assert r.status == 416 and r.header("Content-Range") == "bytes */0"


def test_over_4gib_sparse(hub):
    size = 5 * (1 << 30) + 3
    path, sha = hub.add_file("huge.bin", size, kind="sparse", seed=11)
    assert sha is None

    def expect(a, b):
        with open(path, "rb") as f:
            return os.pread(f.fileno(), b - a + 1, a)

    assert fetch(hub.url("huge.bin"), "HEAD").header("Content-Length") == str(size)
    for a, b in [(FOUR_GIB - 6, FOUR_GIB + 5), (FOUR_GIB, FOUR_GIB), (size - 1, size - 1),
                 (size - 4096, size - 1), (FOUR_GIB - 1, FOUR_GIB - 1)]:
        r = fetch(hub.url("huge.bin"), headers={"Range": "bytes=%d-%d" % (a, b)})
        assert r.status == 206
        assert r.header("Content-Range") == "bytes %d-%d/%d" % (a, b, size)
        assert r.body == expect(a, b)
    r = fetch(hub.url("huge.bin"), headers={"Range": "bytes=-3"})
    assert r.header("Content-Range") == "bytes %d-%d/%d" % (size - 3, size - 1, size)
    assert r.body == expect(size - 3, size - 1)
    r = fetch(hub.url("huge.bin"), headers={"Range": "bytes=%d-" % size})
    assert r.status == 416 and r.header("Content-Range") == "bytes */%d" % size
    # Open-ended range from 4 GiB: check the arithmetic, read only a little.
    c = conn_for(hub)
    c.request("GET", url_path(hub.url("huge.bin")), headers={"Range": "bytes=%d-" % FOUR_GIB})
    resp = c.getresponse()
    assert resp.status == 206
    assert resp.getheader("Content-Length") == str(size - FOUR_GIB)
    assert resp.getheader("Content-Range") == "bytes %d-%d/%d" % (FOUR_GIB, size - 1, size)
    assert resp.read(64) == expect(FOUR_GIB, FOUR_GIB + 63)
    c.close()


def test_missing_and_bad_paths(hub, small):
    for p in ("/files/nope.bin", "/files/../etc/passwd", "/files/a/./b", "/files/",
              "/elsewhere", "/files/%2e%2e/x"):
        r = fetch(hub.base() + p)
        assert r.status == 404, p
        assert r.header("Content-Type") == "text/html"
        assert b"404" in r.body and r.header("Content-Length") == str(len(r.body))
    assert hub.requests(path="/elsewhere")[0]["file"] is None
    assert hub.requests(path="/files/nope.bin")[0]["file"] == "nope.bin"
    (hub.root / "sub").mkdir()
    assert fetch(hub.url("sub")).status == 404
    r = fetch(hub.url(small[0]), "POST", body=b"x")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"


def test_bad_request_framing(hub, small):
    s = socket.create_connection(("127.0.0.1", hub.ports["origin"]), timeout=5)
    s.sendall(b"GET /files/small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    s.close()


def test_replaced_file_is_a_new_representation(hub, small):
    name, data, _ = small
    old = fetch(hub.url(name), "HEAD").header("ETag")
    _, sha = hub.add_file(name, SIZE, seed=8)
    r = fetch(hub.url(name), headers={"Range": "bytes=0-9", "If-Range": old})
    assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == sha
    assert r.header("ETag") != old
    assert sorted(p.name for p in hub.root.iterdir()) == [name]


def test_names_with_spaces_and_subdirs(hub):
    name = "dir one/sub/my model ü.safetensors"
    _, sha = hub.add_file(name, 50_000, kind="safetensors")
    r = fetch(hub.url(name))
    assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == sha
    r = fetch(hub.redirect_url(name))
    assert r.status == 302
    r = fetch(r.header("Location"), headers={"Range": "bytes=0-7"})
    assert r.status == 206 and len(r.body) == 8


# ---------------------------------------------------------------------------
# validators

def test_if_range(hub, small):
    name, data, _ = small
    head = fetch(hub.url(name), "HEAD")
    etag, lm = head.header("ETag"), head.header("Last-Modified")
    older = email.utils.formatdate(email.utils.parsedate_to_datetime(lm).timestamp() - 1,
                                   usegmt=True)
    cases = [(etag, 206), ('"other"', 200), ("W/" + etag, 200), (lm, 206),
             (older, 200), ("garbage", 200), (etag.strip('"'), 200),
             (etag[:5] + '"', 200), (etag + ", " + etag, 200)]
    for value, status in cases:
        r = fetch(hub.url(name), headers={"Range": "bytes=10-19", "If-Range": value})
        assert r.status == status, value
        assert r.body == (data[10:20] if status == 206 else data), value
    r = fetch(hub.url(name), headers={"If-Range": etag})
    assert r.status == 200 and r.body == data


def test_if_match(hub, small):
    name, data, _ = small
    etag = fetch(hub.url(name), "HEAD").header("ETag")
    assert fetch(hub.url(name), headers={"If-Match": '"nope"'}).status == 412
    assert fetch(hub.url(name), headers={"If-Match": "*"}).status == 200
    r = fetch(hub.url(name), headers={"If-Match": '"x", ' + etag, "Range": "bytes=0-0"})
    assert r.status == 206 and r.body == data[:1]


# ---------------------------------------------------------------------------
# connections

def test_keep_alive_across_statuses(hub, small):
    name, data, _ = small
    c = conn_for(hub)
    p = url_path(hub.url(name))
    seq = [("GET", p, {"Range": "bytes=1-2"}, 206), ("HEAD", p, {}, 200),
           ("GET", "/files/nope", {}, 404), ("GET", p, {"Range": "bytes=99999-"}, 416),
           ("GET", p, {"Range": "bytes=5-3"}, 200), ("GET", "/redirect/" + name, {}, 302),
           ("POST", p, {}, 405), ("GET", p, {}, 200)]
    for method, target, headers, status in seq:
        c.request(method, target, headers=headers)
        r = c.getresponse()
        r.read()
        assert r.status == status, (method, target)
        assert not r.will_close, (method, target)
    c.close()
    conns = {e["conn"] for e in hub.requests()}
    assert len(conns) == 1 and len(hub.requests()) == len(seq)


def test_parallel_connections(hub):
    _, sha = hub.add_file("par.bin", 8 << 20, seed=2)
    data = (hub.root / "par.bin").read_bytes()
    errors = []

    def worker(i):
        try:
            a = i * (1 << 20)
            r = fetch(hub.url("par.bin"), headers={"Range": "bytes=%d-%d" % (a, a + (1 << 20) - 1)})
            assert r.status == 206 and r.body == data[a:a + (1 << 20)]
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _drain(url, headers=None):
    """GET url on one connection, counting bytes; returns (bytes, seconds)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    buf = memoryview(bytearray(4 << 20))
    t0 = time.monotonic()
    c.request("GET", url_path(url), headers=headers or {})
    r = c.getresponse()
    total = 0
    while True:
        n = r.readinto(buf)
        if not n:
            break
        total += n
    elapsed = time.monotonic() - t0
    c.close()
    return total, elapsed


def test_single_connection_throughput(hub):
    size = 256 << 20
    hub.add_file("speed.bin", size)
    best = 0.0
    for _ in range(3):
        n, secs = _drain(hub.url("speed.bin"))
        assert n == size
        best = max(best, n / secs)
    print("single-connection throughput: %.0f MB/s" % (best / 1e6))
    # The target is >= 500 MB/s; the bound here is loose for loaded machines.
    assert best > 150e6, "%.0f MB/s" % (best / 1e6)


# ---------------------------------------------------------------------------
# faults

def test_fault_ignore_range(hub, small):
    name, data, _ = small
    hub.add_file("other.bin", data=b"0123456789")
    hub.faults(path=name, ignore_range=True)
    r = fetch(hub.url(name), headers={"Range": "bytes=10-19"})
    assert r.status == 200 and r.body == data and r.header("Content-Range") is None
    r = fetch(hub.url("other.bin"), headers={"Range": "bytes=1-2"})
    assert r.status == 206 and r.body == b"12"
    assert hub.requests(path=name)[0]["fault"] == {"ignore_range": True}


def test_fault_disposition_sends_a_servers_own_name_as_given(hub, small):
    name, data, _ = small
    hostile = "attachment; filename=\"tab\there\x1b[31m.bin\"; filename*=UTF-8''a%0Ab"
    hub.faults(path=name, disposition=hostile)
    c = conn_for(hub)
    c.request("GET", url_path(hub.url(name)), headers={"Range": "bytes=0-9"})
    r = c.getresponse()
    raw = [v for k, v in r.msg.raw_items() if k.lower() == "content-disposition"]
    assert r.status == 206 and r.read() == data[:10] and raw == [hostile]
    c.close()
    for bad in ("a\nb", "a\rb", "caf\u00e9 \u2603"):
        with pytest.raises(HubError):
            hub.faults(path=name, disposition=bad)


def test_fault_truncate_after(hub, small):
    name, data, _ = small
    hub.faults(path=name, truncate_after=100, times=1)
    c = conn_for(hub)
    c.request("GET", url_path(hub.url(name)), headers={"Range": "bytes=0-4999"})
    r = c.getresponse()
    assert r.status == 206 and r.getheader("Content-Length") == "5000"
    with pytest.raises(http.client.IncompleteRead) as exc:
        r.read()
    assert exc.value.partial == data[:100]
    c.close()
    entry = hub.requests(path=name)[-1]
    assert (entry["outcome"], entry["bytes"], entry["status"]) == ("truncated", 100, 206)
    # times=1: the next request is whole again, and the rule is gone.
    r = fetch(hub.url(name), headers={"Range": "bytes=0-4999"})
    assert r.status == 206 and r.body == data[:5000]
    assert hub.fault_rules() == []


def test_fault_fail_sequence(hub, small):
    name, data, _ = small
    hub.faults(path=name, fail=[503, 429])
    r1 = fetch(hub.url(name))
    assert r1.status == 503 and r1.header("Retry-After") == "1"
    r2 = fetch(hub.url(name))
    assert r2.status == 429
    assert r2.header("Retry-After") == "1"
    assert r2.header("RateLimit") == '"resolvers";r=0;t=1'
    r3 = fetch(hub.url(name))
    assert r3.status == 200 and r3.body == data
    assert [e["status"] for e in hub.requests()] == [503, 429, 200]
    assert hub.fault_rules() == []


def test_fault_fail_retry_after_and_keepalive(hub, small):
    name, _, _ = small
    hub.faults(path=name, fail=[429, 500], retry_after=7)
    c = conn_for(hub)
    for status in (429, 500, 200):
        c.request("GET", url_path(hub.url(name)))
        r = c.getresponse()
        r.read()
        assert r.status == status
        if status == 429:
            assert r.getheader("Retry-After") == "7"
            assert r.getheader("RateLimit") == '"resolvers";r=0;t=7'
    c.close()
    assert len({e["conn"] for e in hub.requests()}) == 1


def test_fault_delay_ms_is_between_headers_and_body(hub, small):
    name, data, _ = small
    hub.faults(path=name, delay_ms=400)
    c = conn_for(hub)
    t0 = time.monotonic()
    c.request("GET", url_path(hub.url(name)))
    r = c.getresponse()
    t_headers = time.monotonic() - t0
    body = r.read()
    t_body = time.monotonic() - t0
    c.close()
    assert body == data
    assert t_headers < 0.3 <= 0.39 <= t_body


def test_fault_header_delay_ms(hub, small):
    name, _, _ = small
    hub.faults(path=name, header_delay_ms=300)
    c = conn_for(hub)
    t0 = time.monotonic()
    c.request("GET", url_path(hub.url(name)))
    c.getresponse().read()
    c.close()
    assert time.monotonic() - t0 >= 0.29


def test_fault_rate_bps(hub):
    _, sha = hub.add_file("slow.bin", 300_000)
    hub.faults(path="slow.bin", rate_bps=1_000_000)
    t0 = time.monotonic()
    r = fetch(hub.url("slow.bin"))
    elapsed = time.monotonic() - t0
    assert hashlib.sha256(r.body).hexdigest() == sha
    assert 0.28 <= elapsed < 3, elapsed


def test_fault_html_error(hub, small):
    name, _, _ = small
    hub.faults(path=name, html_error=True)
    r = fetch(hub.url(name), headers={"Range": "bytes=0-9"})
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/html")
    assert r.body.startswith(b"<html>") and b"Error" in r.body
    assert r.header("Content-Length") == str(len(r.body))


def test_fault_wrong_content_range(hub, small):
    name, data, _ = small
    hub.faults(path=name, wrong_content_range=True)
    r = fetch(hub.url(name), headers={"Range": "bytes=100-199"})
    assert r.status == 206
    assert r.header("Content-Range") == "bytes 101-200/%d" % SIZE
    assert r.body == data[100:200]


def test_fault_etag_changed(hub, small):
    name, data, _ = small
    old = fetch(hub.url(name), "HEAD").header("ETag")
    hub.faults(path=name, etag='"v2"')
    assert fetch(hub.url(name), "HEAD").header("ETag") == '"v2"'
    r = fetch(hub.url(name), headers={"Range": "bytes=0-9", "If-Range": old})
    assert r.status == 200 and r.body == data
    r = fetch(hub.url(name), headers={"Range": "bytes=0-9", "If-Range": '"v2"'})
    assert r.status == 206 and r.body == data[:10]


def test_fault_hang_until_reset(hub, small):
    name, data, _ = small
    hub.faults(path=name, hang=True)
    c = conn_for(hub, timeout=0.5)
    c.request("GET", url_path(hub.url(name)))
    with pytest.raises(TimeoutError):
        c.getresponse()
    entry = hub.requests(path=name)[0]
    assert entry["status"] is None and entry["outcome"] == "hang"
    hub.reset()
    c.sock.settimeout(5)
    assert c.sock.recv(1) == b"", "reset must close the held connection"
    c.close()
    assert fetch(hub.url(name)).body == data


def test_fault_down(hub, small):
    name, data, _ = small
    hub.faults(path=name, down=True, times=1)
    with pytest.raises(http.client.RemoteDisconnected):
        fetch(hub.url(name))
    assert hub.requests()[0]["status"] is None
    assert fetch(hub.url(name)).body == data


def test_fault_down_reset_sends_rst(hub, small):
    name, _, _ = small
    hub.faults(path=name, down="reset")
    s = socket.create_connection(("127.0.0.1", hub.ports["origin"]), timeout=5)
    s.sendall(("GET /files/%s HTTP/1.1\r\nHost: x\r\n\r\n" % name).encode())
    with pytest.raises(ConnectionResetError):
        while s.recv(1024):
            pass
    s.close()


def test_fault_scoping(hub, small):
    name, data, _ = small
    hub.add_file("sub/a.bin", data=b"aaaa")
    hub.faults([{"server": "cdn", "path": "*", "fail": [503]},
                {"path": "sub/*.bin", "method": "HEAD", "fail": [500]}])
    assert fetch(hub.url(name)).status == 200                   # origin untouched
    assert fetch(hub.url("sub/a.bin")).status == 200            # GET untouched
    assert fetch(hub.url("sub/a.bin"), "HEAD").status == 500
    assert fetch(hub.url(name, server="cdn")).status == 503
    assert fetch(hub.url(name, server="cdn")).status == 200
    assert hub.fault_rules() == []


def test_fault_rules_merge_later_wins(hub, small):
    name, data, _ = small
    hub.faults(path="*", delay_ms=1, etag='"a"')
    hub.faults(path=name, etag='"b"')
    assert fetch(hub.url(name), "HEAD").header("ETag") == '"b"'
    assert hub.requests()[0]["fault"] == {"delay_ms": 1, "etag": '"b"'}


@pytest.mark.parametrize("bad", [
    {"path": "x", "ignore_rnage": True},
    {"fail": "503"},
    {"fail": [99]},
    {"truncate_after": -1},
    {"truncate_after": True},
    {"rate_bps": 0},
    {"down": "maybe"},
    {"times": 0},
])
def test_fault_validation(hub, bad):
    with pytest.raises(HubError, match="400"):
        hub.faults([{"path": "ok", "fail": [503]}, bad])
    assert hub.fault_rules() == [], "a bad list adds nothing"


def test_faults_apply_to_redirect_and_redirect_404(hub, small):
    name, _, _ = small
    hub.faults(server="origin", path=name, fail=[429])
    assert fetch(hub.redirect_url(name)).status == 429
    assert fetch(hub.redirect_url(name)).status == 302
    assert fetch(hub.redirect_url("missing.bin")).status == 404


# ---------------------------------------------------------------------------
# redirect + CDN

def test_redirect_to_signed_cdn(hub, small):
    name, data, _ = small
    t = int(time.time())
    r = fetch(hub.redirect_url(name))
    assert r.status == 302
    loc = r.header("Location")
    m = re.fullmatch(r"http://127\.0\.0\.1:%d/files/small\.bin\?X-Amz-Expires=3600"
                     r"&Expires=(\d+)&Signature=[0-9a-f]{64}" % hub.ports["cdn"], loc)
    assert m, loc
    assert t + 3600 <= int(m.group(1)) <= int(time.time()) + 3600
    assert r.body == ("Found. Redirecting to %s" % loc).encode()
    assert r.header("Content-Length") == str(len(r.body))
    head = fetch(hub.redirect_url(name), "HEAD")
    assert head.status == 302 and head.header("Location")
    c = fetch(loc, headers={"Range": "bytes=9990-"})
    assert c.status == 206 and c.body == data[9990:]
    assert c.header("Content-Range") == "bytes 9990-9999/%d" % SIZE
    assert c.header("ETag") == fetch(hub.url(name), "HEAD").header("ETag")
    e = hub.requests(server="cdn")[0]
    assert e["query"] is True and e["path"] == "/files/small.bin"


def test_cdn_rejects_authorization_and_records_leak(hub, small):
    name, data, _ = small
    url = hub.url(name, server="cdn")
    r = fetch(url, headers={"Authorization": "Bearer hf_secret"})
    assert r.status == 403
    assert b"<Code>AccessDenied</Code>" in r.body
    assert fetch(url).body == data
    leaks = [e for e in hub.requests(server="cdn") if e["leak"]]
    assert len(leaks) == 1 and leaks[0]["authorization"] is True
    # Origin accepts Authorization and does not call it a leak.
    assert fetch(hub.url(name), headers={"Authorization": "Bearer x"}).status == 200
    assert not any(e["leak"] for e in hub.requests(server="origin"))


def test_cdn_signature_checks(hub, small):
    name, _, _ = small
    good = hub.url(name, server="cdn")
    u = urllib.parse.urlsplit(good)
    q = dict(urllib.parse.parse_qsl(u.query))

    def with_query(**changes):
        qq = dict(q, **changes)
        qq = {k: v for k, v in qq.items() if v is not None}
        return urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(qq)))

    assert fetch(good).status == 200
    for bad in (with_query(Signature="0" * 64), with_query(Expires=str(int(q["Expires"]) + 1)),
                with_query(Signature=None), with_query(Expires="soon"),
                urllib.parse.urlunsplit(u._replace(query=""))):
        r = fetch(bad)
        assert r.status == 403, bad
        assert r.header("Content-Type") == "application/xml"
        assert b"<Code>AccessDenied</Code>" in r.body
    # The signature covers the path too.
    hub.add_file("other.bin", data=b"x")
    r = fetch(good.replace("/files/small.bin", "/files/other.bin"))
    assert r.status == 403


def test_cdn_expired_then_reresolve(hub, small):
    name, data, _ = small
    r = fetch(hub.presign(name, ttl=-1))
    assert r.status == 403 and b"Request has expired" in r.body
    hub.config(cdn_ttl=-5)
    loc = fetch(hub.redirect_url(name)).header("Location")
    assert "X-Amz-Expires=-5" in loc
    r = fetch(loc)
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.body
    hub.config(cdn_ttl=1)
    loc = fetch(hub.redirect_url(name)).header("Location")
    assert fetch(loc).status == 200
    time.sleep(2.1)
    assert fetch(loc).status == 403
    loc = fetch(hub.redirect_url(name)).header("Location")     # re-resolve
    assert fetch(loc).body == data


def test_config_validation_and_reset(hub):
    with pytest.raises(HubError, match="400"):
        hub.config(no_such_key=1)
    with pytest.raises(HubError, match="400"):
        hub.config(cdn_ttl="1")
    assert hub.config(cdn_ttl=10)["cdn_ttl"] == 10
    hub.reset()
    assert hub.config()["cdn_ttl"] == 3600


def test_cdn_unknown_path(hub):
    assert fetch(hub.base("cdn") + "/redirect/x").status == 404


# ---------------------------------------------------------------------------
# request log and control API

def test_request_log_fields(hub, small):
    name, _, _ = small
    hub.config()
    hub.fault_rules()
    assert hub.requests() == [], "control requests are not logged"
    t0 = time.time()
    url = hub.url(name, server="cdn")
    fetch(url, headers={"Range": "bytes=0-99", "If-Range": '"x"', "User-Agent": "t/1"})
    fetch(hub.url(name), "HEAD")
    e1, e2 = hub.requests()
    assert e1["server"] == "cdn" and e1["method"] == "GET"
    assert e1["path"] == "/files/small.bin" and e1["file"] == name
    assert e1["query"] is True
    assert e1["range"] == "bytes=0-99" and e1["if_range"] == '"x"'
    assert e1["authorization"] is False and e1["leak"] is False
    assert e1["status"] == 200 and e1["bytes"] == SIZE      # If-Range mismatch
    assert e1["headers"]["user-agent"] == "t/1"
    assert e1["outcome"] == "ok"
    assert t0 - 1 <= e1["t_start"] <= e1["t_end"] <= time.time() + 1
    assert (e2["server"], e2["method"], e2["status"], e2["bytes"], e2["query"]) == \
        ("origin", "HEAD", 200, 0, False)
    assert e2["seq"] > e1["seq"]
    assert hub.requests(server="origin") == [e2]
    assert hub.requests(path="/files/*") == [e1, e2]
    assert hub.requests(path="nothing") == []
    hub.reset()
    assert hub.requests() == []


def test_control_api_shapes(hub):
    assert hub.control("GET", "ports") == hub.ports
    assert hub.control("GET", "ports", server="cdn") == hub.ports
    hub.faults(path="a", fail=[503], server="cdn")
    rules = hub.control("GET", "faults", server="cdn")["rules"]
    assert rules[0]["path"] == "a" and rules[0]["fail_left"] == [503]
    with pytest.raises(HubError, match="404"):
        hub.control("GET", "nothing")
    r = fetch(hub.base() + "/_control/faults", "POST", body=b"{not json")
    assert r.status == 400
    hub.clear_faults()
    assert hub.fault_rules() == []


def test_hub_stops_on_sigterm(tmp_path):
    h = FakeHub(tmp_path / "root", tmp_path / "hub").start()
    t0 = time.monotonic()
    h.proc.send_signal(signal.SIGTERM)
    assert h.proc.wait(5) == 0
    assert time.monotonic() - t0 < 2
    assert "Traceback" not in h.stderr()


def test_hub_releases_hangs_on_sigterm(tmp_path):
    h = FakeHub(tmp_path / "root", tmp_path / "hub").start()
    h.add_file("x.bin", data=b"x")
    h.faults(hang=True)
    c = http.client.HTTPConnection("127.0.0.1", h.ports["origin"], timeout=0.3)
    c.request("GET", "/files/x.bin")
    with pytest.raises(TimeoutError):
        c.getresponse()
    h.proc.send_signal(signal.SIGTERM)
    assert h.proc.wait(5) == 0
    c.close()


# ---------------------------------------------------------------------------
# the mount fixture, driven by a stub FUSE binary

@pytest.fixture(scope="session")
def stub_bin(tmp_path_factory):
    reason = conftest.fuse_missing()
    if reason:
        pytest.skip(reason)
    if not (shutil.which("gcc") and shutil.which("pkg-config")):
        pytest.skip("gcc/pkg-config missing: run tools/deps.sh")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"],
                           capture_output=True, text=True)
    if flags.returncode != 0:
        pytest.skip("libfuse3-dev missing: run tools/deps.sh")
    out = tmp_path_factory.mktemp("stub") / "stub_modelfs"
    src = conftest.REPO / "tests" / "fakehub" / "stub_modelfs.c"
    subprocess.run(["gcc", "-O1", "-Wall", str(src), "-o", str(out)] + flags.stdout.split(),
                   check=True)
    return out


@pytest.fixture
def modelfs_bin(stub_bin):
    """In this module, `mount` runs the stub instead of modelfs."""
    return stub_bin


@pytest.fixture
def harness(stub_bin, tmp_path):
    h = conftest.MountHarness(stub_bin, tmp_path)
    yield h
    h.teardown()
    conftest.sweep_mounts(tmp_path)


def test_mount_fixture_roundtrip(mount):
    m = mount("model = 1\n")
    assert m.is_mounted()
    assert (m.path / "config.toml").read_text() == "model = 1\n"
    assert m.pid and conftest._proc_alive(m.pid)
    m.unmount()
    assert not m.is_mounted()
    assert not conftest._proc_alive(m.pid)
    assert "info mounted" in m.log() and "info unmounted" in m.log()


def test_mount_fixture_expect_fail(mount):
    m = mount("FAIL\n", expect_fail=True)
    assert m.returncode == 2
    assert "FAIL" in m.stderr
    assert not m.is_mounted()


def test_mount_fixture_expect_partial(mount):
    m = mount("PARTIAL\n", expect_partial=True)
    assert m.returncode == 3 and m.is_mounted()
    assert "1 of 2 entries failed" in m.stderr


def test_harness_partial_mount_only_when_expected(harness):
    with pytest.raises(pytest.fail.Exception, match="exited 3: some entries failed"):
        harness.mount("PARTIAL\n")
    with pytest.raises(pytest.fail.Exception, match="exited 0, expected 3"):
        harness.mount("fine\n", expect_partial=True)
    assert not any(m.is_mounted() for m in harness.mounts)


def test_harness_unexpected_failure_fails_the_test(harness):
    with pytest.raises(pytest.fail.Exception, match="exited 2"):
        harness.mount("FAIL\n")


def test_harness_teardown_unmounts(harness):
    m1 = harness.mount("one\n")
    m2 = harness.mount("two\n", cache_dir=m1.cache_dir)
    assert m1.is_mounted() and m2.is_mounted() and m1.pid != m2.pid
    assert harness.teardown() == []
    for m in (m1, m2):
        assert not m.is_mounted() and not conftest._proc_alive(m.pid)


def test_harness_flags_error_lines(harness):
    m = harness.mount("LOGERROR\n")
    problems = harness.finish(m)
    assert len(problems) == 1 and "stub asked to log an error" in problems[0]
    m = harness.mount("LOGERROR\n", allowed_errors=[r"stub asked"])
    assert harness.finish(m) == []


def test_harness_flags_sanitizer_reports(harness):
    m = harness.mount("SANITIZER\n", allowed_errors=[r".*"])
    problems = harness.finish(m)
    assert len(problems) == 1 and "sanitizer report" in problems[0]


def test_harness_sanitizer_files_scanned(harness):
    m = harness.mount("fine\n")
    (m.workdir / "sanitizer.12345").write_text("==1==ERROR: AddressSanitizer: heap-use-after-free\n")
    problems = harness.finish(m)
    assert any("AddressSanitizer" in p for p in problems)
    assert "log_path=%s" % m.san_prefix in harness.env(m, None)["ASAN_OPTIONS"]


def test_harness_detects_crash(harness):
    m = harness.mount("crash\n")
    os.kill(m.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while conftest._proc_alive(m.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(OSError) as exc:
        os.stat(m.path)
    assert exc.value.errno == errno.ENOTCONN
    problems = harness.finish(m)
    assert any("crashed" in p for p in problems)
    assert not m.is_mounted()


def test_harness_expected_kill_is_not_a_problem(harness):
    m = harness.mount("killme\n")
    m.kill()
    time.sleep(0.2)
    assert harness.finish(m) == []
    assert not m.is_mounted()


def test_harness_busy_mount_lazy_unmount(harness, monkeypatch):
    monkeypatch.setattr(conftest, "EXIT_TIMEOUT", 1)
    m = harness.mount("busy\n")
    fd = os.open(m.path / "config.toml", os.O_RDONLY)
    try:
        problems = harness.finish(m)
    finally:
        os.close(fd)
    assert any("lazily unmounted" in p for p in problems)
    assert not m.is_mounted()


def test_harness_busy_retry(harness):
    m = harness.mount("busy for a while\n")
    fd = os.open(m.path / "config.toml", os.O_RDONLY)
    closer = threading.Timer(0.5, os.close, [fd])
    closer.start()
    try:
        assert harness.finish(m) == [], "a briefly busy mount unmounts cleanly"
    finally:
        closer.join()
    assert not m.is_mounted()


def test_harness_waits_for_daemon_exit(harness):
    m = harness.mount("LINGER\n")
    t0 = time.monotonic()
    assert harness.finish(m) == []
    assert time.monotonic() - t0 >= 0.6
    assert not conftest._proc_alive(m.pid)
    assert m.log().rstrip().endswith("info unmounted")


def test_harness_slow_exit(harness, monkeypatch):
    monkeypatch.setattr(conftest, "EXIT_TIMEOUT", 1)
    m = harness.mount("SLOWEXIT\n")
    problems = harness.finish(m)
    assert any("did not exit" in p for p in problems)
    time.sleep(0.1)
    assert not conftest._proc_alive(m.pid)


def test_harness_env_is_scrubbed(harness, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_real")
    monkeypatch.setenv("https_proxy", "http://proxy:1")
    monkeypatch.setenv("MODELFS_LOG", "debug")
    m = harness.mount("env\n")
    env = harness.env(m, {"EXTRA": "1", "MODELFS_LOG": None})
    assert "HF_TOKEN" not in env and "https_proxy" not in env
    assert "MODELFS_LOG" not in env and env["EXTRA"] == "1"
    assert env["HOME"].startswith(str(m.workdir))
    assert harness.env(m, None)["MODELFS_LOG"] == "debug"


def test_sweep_mounts(harness, tmp_path):
    m = harness.mount("sweep\n")
    assert conftest.sweep_mounts(tmp_path) == [str(m.path)]
    assert not m.is_mounted()
    m.expect_dead = True
    assert harness.finish(m) == []


def test_sweep_dead_runs_only_touches_dead_owners(harness, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        m_dead = harness.mount("dead owner\n")
        m_live = harness.mount("live owner\n")
        m_unknown = harness.mount("no marker\n")
        (m_dead.workdir / conftest.OWNER_MARKER).write_text(str(dead.pid))
        (m_live.workdir / conftest.OWNER_MARKER).write_text(str(live.pid))
        conftest.sweep_dead_runs(tmp_path)
        assert not m_dead.is_mounted()
        assert m_live.is_mounted() and m_unknown.is_mounted()
        m_dead.expect_dead = True
    finally:
        live.kill()
        live.wait()
    assert harness.teardown() == []
