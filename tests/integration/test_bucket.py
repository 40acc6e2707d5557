"""A shared bucket (shared_cache = "s3://bucket/prefix"): the fake hub's S3
emulator (tests/fakehub/svc_s3.py, which checks every SigV4 signature and
payload hash) as the bucket, real mounts on separate cache dirs as the
nodes.  A node that verified a file uploads it once with its block
checksums; a node with a fresh cache reads it from the bucket, checked
block by block, even with the origin down; a corrupted object is reported
and never served; read-only mode and the allow-list are obeyed; the AWS
credentials go to the bucket alone and never into a log."""

import hashlib
import os
import time

from mfs import MiB, config, run, url_entry, wait_for, wait_state
import svc_s3
from test_tier import status

AK = svc_s3.S3Handler.config_defaults["s3_access_key"]
SK = svc_s3.S3Handler.config_defaults["s3_secret_key"]
BUCKET, PREFIX = "shared-bkt", "team/models"
BLOCK = 256 << 10
CORRUPT = ("event=bucket_corrupt",)


def bucket_env(hub):
    return {"AWS_ENDPOINT_URL": hub.base("s3"), "AWS_ACCESS_KEY_ID": AK,
            "AWS_SECRET_ACCESS_KEY": SK}


def conf(hub, files, extra=""):
    """files: {entry name: (origin file name, sha256)}."""
    settings = 'shared_cache = "s3://%s/%s"\nheader_prefetch = false\n%s' % (BUCKET, PREFIX, extra)
    return config({"checkpoints": {n: url_entry(hub.url(f), sha256=sha)
                                   for n, (f, sha) in files.items()}},
                  settings=settings, block_size="8M")


def obj(hub, sha, kind=""):
    return hub.root / "s3" / BUCKET / PREFIX / "sha256" / (sha + kind)


def block_sum(sha, idx, data):
    return hashlib.sha256(b"modelfs-block\0" + sha.encode() + idx.to_bytes(8, "little")
                          + data).hexdigest()


def read_timed(path):
    t0 = time.monotonic()
    with open(path, "rb") as f:
        data = f.read()
    return data, time.monotonic() - t0


def s3_writes(hub, sha, kind=""):
    """The bucket's write requests for one object, as (op, status)."""
    key = "%s/%s/sha256/%s%s" % (BUCKET, PREFIX, sha, kind)
    return [(r["s3_op"], r["status"]) for r in hub.requests(server="s3")
            if r["file"] == key and r["s3_op"] not in ("get", "head")]


def origin_data_bytes(hub, name):
    return sum(r["bytes"] for r in hub.requests(server="origin", path=name)
               if r["method"] == "GET" and r["range"] != "bytes=0-0")


def uploaded(hub, sha):
    return wait_for(lambda: obj(hub, sha, ".blocks").exists(), timeout=60,
                    what="the upload of %s" % sha)


def no_secrets(*mounts):
    for m in mounts:
        assert SK not in m.log() and AK not in m.log()


def test_node_b_reads_from_the_bucket_with_the_origin_down(hub, mount, modelfs_bin):
    size = 20 * MiB + 12345             # three 8 MiB parts
    src, sha = hub.add_file("big.bin", size, seed=7)
    want = src.read_bytes()
    text = conf(hub, {"m": ("big.bin", sha)})
    (hub.root / "s3" / BUCKET).mkdir(parents=True)

    a = mount(text, env=bucket_env(hub))
    path_a = a.path / "Stable-diffusion" / "big.bin"
    data, t_a = read_timed(path_a)
    assert data == want
    wait_state(path_a, "verified")
    uploaded(hub, sha)
    assert obj(hub, sha).read_bytes() == want
    sidecar = obj(hub, sha, ".blocks").read_bytes()
    header = sidecar[:128].decode()
    assert header.startswith("modelfs-blocks 1 block=262144 size=%020d sha256=%s" % (size, sha))
    assert header.endswith("\n") and len(sidecar) == 128 + 65 * (-(-size // BLOCK))
    for i in range(0, size, BLOCK):
        line = sidecar[128 + 65 * (i // BLOCK):128 + 65 * (i // BLOCK + 1)]
        assert line == (block_sum(sha, i // BLOCK, want[i:i + BLOCK]) + "\n").encode()
    # Once: a claim, one multipart upload, the sidecar.
    assert s3_writes(hub, sha, ".claim") == [("put", 200)]
    assert s3_writes(hub, sha) == [("initiate", 200)] + [("upload_part", 200)] * 3 + \
        [("complete", 200)]
    assert s3_writes(hub, sha, ".blocks") == [("put", 200)]
    assert "event=bucket_uploaded path=Stable-diffusion/big.bin" in a.log()
    from_a = status(modelfs_bin, a)["Stable-diffusion/big.bin"]["downloaded"]
    assert from_a == {"tier": 0, "bucket": 0, "origin": size}
    origin_a = origin_data_bytes(hub, "big.bin")

    # Node B: a fresh cache; resolved at mount, then the origin goes down.
    b = mount(text, env=bucket_env(hub))
    hub.faults(server="origin", down=True)
    path_b = b.path / "Stable-diffusion" / "big.bin"
    data, t_b = read_timed(path_b)
    assert data == want
    assert origin_data_bytes(hub, "big.bin") == origin_a       # not a byte more
    from_b = status(modelfs_bin, b)["Stable-diffusion/big.bin"]["downloaded"]
    assert from_b == {"tier": 0, "bucket": size, "origin": 0}
    metrics = run([modelfs_bin, "status", "--metrics", "--cache-dir", b.cache_dir]).stdout
    shown = run([modelfs_bin, "status", "--cache-dir", b.cache_dir]).stdout
    assert "downloaded: 0 B from the tier, 20.0 MiB from the bucket, 0 B from the origin" in shown
    assert 'modelfs_downloaded_bytes_total{from="bucket"} %d\n' % size in metrics
    wait_state(path_b, "verified")
    # B finds it there (the sidecar, one byte of it): no claim, no upload.
    wait_for(lambda: "event=bucket_has path=Stable-diffusion/big.bin" in b.log(), timeout=30,
             what="node B's look at the bucket")
    assert s3_writes(hub, sha, ".claim") == [("put", 200)]
    assert len(s3_writes(hub, sha)) == 5 and s3_writes(hub, sha, ".blocks") == [("put", 200)]
    # Credentials: signed requests to the bucket only, never in a log.
    for r in hub.requests():
        assert r["authorization"] == (r["server"] == "s3"), r
        if r["server"] == "s3":
            assert r["s3_auth"] == "sigv4"
    no_secrets(a, b)
    print("\nbucket: node A origin=%d B bucket=%d B origin=%d; node A read %.2f s, "
          "node B read %.2f s (%d bytes)" % (from_a["origin"], from_b["bucket"],
                                             from_b["origin"], t_a, t_b, size))


def test_a_corrupted_object_is_reported_never_served_and_refetched(hub, mount, modelfs_bin):
    size = 3 * MiB + 777
    src, sha = hub.add_file("c.bin", size, seed=9)
    want = src.read_bytes()
    text = conf(hub, {"m": ("c.bin", sha)})
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    a = mount(text, env=bucket_env(hub))
    assert (a.path / "Stable-diffusion" / "c.bin").read_bytes() == want
    uploaded(hub, sha)
    # One byte of block 5 rots in the bucket.
    bad = bytearray(obj(hub, sha).read_bytes())
    bad[5 * BLOCK + 100] ^= 0xFF
    obj(hub, sha).write_bytes(bytes(bad))
    before = origin_data_bytes(hub, "c.bin")

    b = mount(text, env=bucket_env(hub), allowed_errors=CORRUPT)
    path_b = b.path / "Stable-diffusion" / "c.bin"
    assert path_b.read_bytes() == want
    assert b.log().count("event=bucket_corrupt") == 1
    assert "sha256=%s block=5" % sha in b.log()
    got = status(modelfs_bin, b)["Stable-diffusion/c.bin"]["downloaded"]
    # Blocks checked before the bad one was found (in its run, or in runs
    # read at the same time) came from the bucket; block 5 and what came
    # after it in its run, from the origin, as did the blocks asked later.
    assert got["bucket"] + got["origin"] == size
    assert BLOCK <= got["origin"] and got["bucket"] > 0
    assert origin_data_bytes(hub, "c.bin") - before == got["origin"]
    wait_state(path_b, "verified")


def test_two_nodes_verifying_one_file_upload_it_once(hub, mount):
    size = 9 * MiB + 5
    src, sha = hub.add_file("two.bin", size, seed=11)
    text = conf(hub, {"m": ("two.bin", sha)})
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    nodes = [mount(text, env=bucket_env(hub)) for _ in range(2)]
    for m in nodes:
        assert (m.path / "Stable-diffusion" / "two.bin").read_bytes() == src.read_bytes()
    uploaded(hub, sha)
    wait_for(lambda: sum("event=bucket_has" in m.log() or "event=bucket_uploaded" in m.log()
                         for m in nodes) == 2, timeout=60, what="both nodes' uploads")
    # Both had it verified at about the same time: one claim is granted (a
    # node that looks after the upload ended finds the sidecar and claims
    # nothing), one upload is made.
    claims = sorted(s for _, s in s3_writes(hub, sha, ".claim"))
    assert claims in ([200], [200, 412])
    assert [op for op, _ in s3_writes(hub, sha)].count("complete") == 1
    assert s3_writes(hub, sha, ".blocks") == [("put", 200)]
    assert obj(hub, sha).read_bytes() == src.read_bytes()


def test_read_only_mode_uploads_nothing(hub, mount):
    src, sha = hub.add_file("ro.bin", 2 * MiB + 3, seed=13)
    text = conf(hub, {"m": ("ro.bin", sha)}, extra='shared_cache_mode = "read-only"\n')
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    m = mount(text, env=bucket_env(hub))
    path = m.path / "Stable-diffusion" / "ro.bin"
    assert path.read_bytes() == src.read_bytes()
    wait_state(path, "verified")
    time.sleep(1)
    writes = [r for r in hub.requests(server="s3") if r["method"] != "GET"]
    assert writes == []
    assert not os.listdir(hub.root / "s3" / BUCKET)


def test_allow_list_limits_uploads(hub, mount):
    keep, keep_sha = hub.add_file("keep.bin", MiB + 1, seed=15)
    skip, skip_sha = hub.add_file("skip.bin", MiB + 2, seed=16)
    text = conf(hub, {"keep-me": ("keep.bin", keep_sha), "other": ("skip.bin", skip_sha)},
                extra='shared_cache_allow = ["stabilityai/*", "checkpoints/keep-*"]\n')
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    m = mount(text, env=bucket_env(hub))
    for src in (keep, skip):
        path = m.path / "Stable-diffusion" / src.name
        assert path.read_bytes() == src.read_bytes()
        wait_state(path, "verified")
    uploaded(hub, keep_sha)
    assert s3_writes(hub, keep_sha) == [("put", 200)]          # one small PUT
    time.sleep(1)
    assert s3_writes(hub, skip_sha) == [] and s3_writes(hub, skip_sha, ".claim") == []
    assert not obj(hub, skip_sha).exists()


def test_a_bad_shared_cache_url_is_named_at_mount(hub, mount):
    src, sha = hub.add_file("x.bin", 1000, seed=1)
    text = config({"checkpoints": {"m": url_entry(hub.url("x.bin"), sha256=sha)}},
                  settings='shared_cache = "https://not-a-bucket"\n')
    m = mount(text, env=bucket_env(hub), expect_fail=True)
    assert "shared_cache" in m.stderr


def test_a_dead_bucket_costs_one_log_line_and_the_origin_serves(hub, mount, modelfs_bin):
    size = 12 * MiB + 1
    src, sha = hub.add_file("d.bin", size, seed=17)
    text = conf(hub, {"m": ("d.bin", sha)}, extra='shared_cache_mode = "read-only"\n')
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    hub.faults(server="s3", down="reset")
    m = mount(text, env=bucket_env(hub))
    assert (m.path / "Stable-diffusion" / "d.bin").read_bytes() == src.read_bytes()
    assert m.log().count("event=bucket_down") == 1
    # Skipped after the first failures, not asked once a block.
    assert len(hub.requests(server="s3")) < size // BLOCK
    got = status(modelfs_bin, m)["Stable-diffusion/d.bin"]["downloaded"]
    assert got == {"tier": 0, "bucket": 0, "origin": size}


def test_a_file_verified_before_the_bucket_was_set_is_offered_at_the_next_start(hub, mount):
    src, sha = hub.add_file("old.bin", 2 * MiB + 9, seed=19)
    plain = config({"checkpoints": {"m": url_entry(hub.url("old.bin"), sha256=sha)}},
                   settings="header_prefetch = false\n", block_size="8M")
    first = mount(plain)
    path = first.path / "Stable-diffusion" / "old.bin"
    assert path.read_bytes() == src.read_bytes()
    wait_state(path, "verified")
    first.unmount()
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    again = mount(conf(hub, {"m": ("old.bin", sha)}), cache_dir=first.cache_dir,
                  env=bucket_env(hub))
    uploaded(hub, sha)
    assert obj(hub, sha).read_bytes() == src.read_bytes()
    assert origin_data_bytes(hub, "old.bin") == 2 * MiB + 9       # the first run's read only
    assert "event=bucket_uploaded path=Stable-diffusion/old.bin" in again.log()


def test_a_stale_claim_is_taken_over_and_a_fresh_one_is_left(hub, mount):
    stale, stale_sha = hub.add_file("stale.bin", MiB + 5, seed=21)
    fresh, fresh_sha = hub.add_file("fresh.bin", MiB + 6, seed=22)
    obj(hub, stale_sha, ".claim").parent.mkdir(parents=True)
    # A node that died seven hours ago, and one uploading right now.
    obj(hub, stale_sha, ".claim").write_text("host=gone pid=1 time=%d\n" % (time.time() - 7 * 3600))
    obj(hub, fresh_sha, ".claim").write_text("host=busy pid=1 time=%d\n" % time.time())
    m = mount(conf(hub, {"s": ("stale.bin", stale_sha), "f": ("fresh.bin", fresh_sha)}),
              env=bucket_env(hub))
    for src in (stale, fresh):
        assert (m.path / "Stable-diffusion" / src.name).read_bytes() == src.read_bytes()
    uploaded(hub, stale_sha)
    assert obj(hub, stale_sha).read_bytes() == stale.read_bytes()
    assert "event=bucket_claim_stale" in m.log()
    assert [op for op, _ in s3_writes(hub, stale_sha, ".claim")] == ["put", "delete", "put"]
    wait_for(lambda: "event=bucket_has path=Stable-diffusion/fresh.bin" in m.log(), timeout=30,
             what="the fresh claim to be respected")
    assert s3_writes(hub, fresh_sha) == [] and not obj(hub, fresh_sha, ".blocks").exists()


def test_credentials_the_bucket_refuses_cost_one_log_line(hub, mount, modelfs_bin):
    src, sha = hub.add_file("w.bin", 4 * MiB + 1, seed=23)
    text = conf(hub, {"m": ("w.bin", sha)}, extra='shared_cache_mode = "read-only"\n')
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    env = dict(bucket_env(hub), AWS_SECRET_ACCESS_KEY="not-the-secret")
    m = mount(text, env=env)
    assert (m.path / "Stable-diffusion" / "w.bin").read_bytes() == src.read_bytes()
    assert m.log().count("event=bucket_down") == 1 and "SignatureDoesNotMatch" in m.log()
    assert len(hub.requests(server="s3")) < (4 * MiB) // BLOCK
    assert "not-the-secret" not in m.log()
