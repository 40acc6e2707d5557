"""S3 entries (s3://bucket/key, signed with SigV4 by libcurl) and presigned
S3 URLs as plain url entries.  Against tests/fakehub/svc_s3.py, which
recomputes every signature; the fake's own verifier is first checked
against AWS's published examples and against curl as a reference client."""

import base64
import calendar
import errno
import hashlib
import os
import random
import re
import shutil
import subprocess
import time
import urllib.parse

import pytest

from mfs import MiB, config, pread, run, wait_state, xattr
from hubclient import fetch
import svc_s3

AK = svc_s3.S3Handler.config_defaults["s3_access_key"]
SK = svc_s3.S3Handler.config_defaults["s3_secret_key"]
TOKEN = "IQoJb3JpZ2luX2VjEFAKEHUBsessiontoken//+AbCdEf0123456789=="
BUCKET = "models-bkt"
KEY = "sdxl/my model+v1 (fp16).safetensors"     # a space, '+' and parentheses
EMPTY = svc_s3.EMPTY_SHA256
CREDS = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK}


def add(hub, key, size, bucket=BUCKET, kind="raw", seed=0):
    return hub.add_file("s3/%s/%s" % (bucket, key), size, kind=kind, seed=seed)


def obj_url(hub, key=KEY, bucket=BUCKET):
    return "%s/%s/%s" % (hub.base("s3"), bucket, urllib.parse.quote(key, safe="/~"))


def s3_entry(hub, key=KEY, bucket=BUCKET, endpoint=True, **keys):
    parts = ['url = "s3://%s/%s"' % (bucket, key)]
    if endpoint:
        parts.append('endpoint = "%s"' % hub.base("s3"))
    parts += ['%s = "%s"' % kv for kv in keys.items()]
    return "{ " + ", ".join(parts) + " }"


def read_error(path):
    with pytest.raises(OSError) as e:
        with open(path, "rb") as f:
            f.read(1)
    return e.value.errno


def check(modelfs_bin, cfg_path, env):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "HF_", "CIVITAI")) and not k.lower().endswith("_proxy")}
    base["HOME"] = str(cfg_path.parent)
    base.update(env)
    return run([modelfs_bin, "check", cfg_path], env=base)


def auth_only_to_s3(hub):
    for r in hub.requests():
        assert not r["leak"], r
        if r["authorization"]:
            assert r["server"] == "s3", r


# ---------------------------------------------------------------------------
# the fake's verifier: AWS's published examples, then curl as a client

AWS_AK = "AKIAIOSFODNN7EXAMPLE"
AWS_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_DATE = "20130524T000000Z"
AWS_HOST = "examplebucket.s3.amazonaws.com"


def aws_example(method, path, query, headers, payload):
    headers = dict(headers, host=AWS_HOST, **{"x-amz-date": AWS_DATE})
    headers.setdefault("x-amz-content-sha256", payload)
    signed = sorted(headers)
    creq = svc_s3.canonical_request(method, path, query, {k: [v] for k, v in headers.items()},
                                    signed, payload)
    return creq, svc_s3.signature(AWS_SK, AWS_DATE, "us-east-1", creq)[0]


def test_verifier_reproduces_the_aws_documentation_examples():
    # sig-v4-header-based-auth.html: GET Object with a Range header.
    creq, sig = aws_example("GET", "/test.txt", "", {"range": "bytes=0-9"}, EMPTY)
    assert hashlib.sha256(creq.encode()).hexdigest() == \
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    assert sig == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    # PUT Object: '$' in the key is encoded in the canonical URI.
    welcome = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    _, sig = aws_example("PUT", "/test$file.text", "",
                         {"date": "Fri, 24 May 2013 00:00:00 GMT",
                          "x-amz-storage-class": "REDUCED_REDUNDANCY"}, welcome)
    assert sig == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    # GET Bucket lifecycle (a bare key) and list objects (out of order).
    assert aws_example("GET", "/", "lifecycle", {}, EMPTY)[1] == \
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    assert aws_example("GET", "/", "prefix=J&max-keys=2", {}, EMPTY)[1] == \
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    # sigv4-query-string-auth.html: a presigned GET, 86400 s.
    query = svc_s3.presign(AWS_HOST, "/test.txt", AWS_AK, AWS_SK, "us-east-1", 86400,
                           now=calendar.timegm((2013, 5, 24, 0, 0, 0)))
    assert query.endswith("&X-Amz-Signature="
                          "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    assert svc_s3.canonical_uri("/a%20b/c+d") == "/a%20b/c%2Bd"


CURL = shutil.which("curl")


def curl_s3(url, user, *args):
    """curl as the reference SigV4 client: (status, body)."""
    out = subprocess.run([CURL, "-s", "-o", "-", "-w", "\n%{http_code}",
                          "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user, *args, url],
                         capture_output=True, timeout=30)
    body, _, status = out.stdout.rpartition(b"\n")
    return int(status), body


@pytest.mark.skipif(CURL is None, reason="the curl command line tool is not installed")
def test_curl_reference_client_is_accepted_and_a_wrong_secret_refused(hub):
    src, _ = add(hub, KEY, 100_000)
    h = "x-amz-content-sha256: " + EMPTY
    status, body = curl_s3(obj_url(hub), "%s:%s" % (AK, SK), "-H", h)
    assert status == 200 and body == src.read_bytes()
    status, body = curl_s3(obj_url(hub), "%s:%s" % (AK, SK), "-H", h, "-r", "10-19")
    assert status == 206 and body == src.read_bytes()[10:20]
    status, body = curl_s3(obj_url(hub), "%s:%s" % (AK, SK + "x"), "-H", h)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    # The fake's canonical URI: the key encoded once, as curl sent it.
    assert b"<CanonicalRequest>GET\n/%s/sdxl/my%%20model%%2Bv1%%20%%28fp16%%29.safetensors\n" \
        % BUCKET.encode() in body
    status, body = curl_s3(obj_url(hub), "AKIAOTHER:%s" % SK, "-H", h)
    assert status == 403 and b"<Code>InvalidAccessKeyId</Code>" in body
    # curl 7.88 adds no payload hash itself: the fake insists, as R2 does.
    status, body = curl_s3(obj_url(hub), "%s:%s" % (AK, SK))
    assert status == 400 and b"x-amz-content-sha256" in body
    # Virtual-hosted style: Host: <bucket>.s3.local:PORT, key in the path.
    port = hub.ports["s3"]
    vurl = "http://%s.s3.local:%d/%s" % (BUCKET, port, urllib.parse.quote(KEY))
    status, body = curl_s3(vurl, "%s:%s" % (AK, SK), "-H", h, "--resolve",
                           "%s.s3.local:%d:127.0.0.1" % (BUCKET, port))
    assert status == 200 and body == src.read_bytes()
    styles = [r["s3_style"] for r in hub.requests(server="s3")]
    assert styles.count("virtual") == 1 and styles.count("path") == len(styles) - 1
    # A clock 20 minutes off is refused.
    hub.config(s3_clock_offset=1200)
    status, body = curl_s3(obj_url(hub), "%s:%s" % (AK, SK), "-H", h)
    assert status == 403 and b"<Code>RequestTimeTooSkewed</Code>" in body


def test_fake_s3_object_semantics(hub):
    src, _ = add(hub, KEY, 3 * MiB + 17)
    mp, _ = add(hub, "mp.bin", 3 * MiB + 17, seed=1)
    hub.config(s3_multipart=["%s/mp.bin" % BUCKET], s3_part_size=MiB,
               s3_public_buckets=[BUCKET])
    data = src.read_bytes()
    url = obj_url(hub)
    r = fetch(url, "HEAD")
    assert r.status == 200 and r.header("Content-Length") == str(len(data))
    assert r.header("ETag") == '"%s"' % hashlib.md5(data).hexdigest()
    assert r.header("Accept-Ranges") == "bytes" and r.header("Last-Modified")
    r = fetch(url, headers={"Range": "bytes=5-9"})
    assert r.status == 206 and r.body == data[5:10]
    assert r.header("Content-Range") == "bytes 5-9/%d" % len(data)
    r = fetch(url, headers={"Range": "bytes=%d-" % len(data)})
    assert r.status == 416 and b"<Code>InvalidRange</Code>" in r.body
    assert r.header("Content-Range") == "bytes */%d" % len(data)
    r = fetch(url, headers={"If-Match": '"0123"', "Range": "bytes=0-0"})
    assert r.status == 412 and b"<Code>PreconditionFailed</Code>" in r.body
    r = fetch(obj_url(hub, "nope/x.bin"))
    assert r.status == 404 and b"<Code>NoSuchKey</Code><Message>The specified key does " \
        b"not exist.</Message><Key>nope/x.bin</Key>" in r.body
    assert r.header("Content-Type") == "application/xml"
    r = fetch(obj_url(hub, "x", bucket="no-bucket"))
    assert r.status == 404 and b"<Code>NoSuchBucket</Code>" in r.body
    r = fetch(obj_url(hub, "mp.bin"), "HEAD")
    parts = b"".join(hashlib.md5(mp.read_bytes()[i:i + MiB]).digest() for i in range(0, 4 * MiB, MiB))
    assert r.header("ETag") == '"%s-4"' % hashlib.md5(parts).hexdigest()
    r = fetch(url, "HEAD", headers={"x-amz-checksum-mode": "ENABLED"})
    assert r.header("x-amz-checksum-sha256") == \
        base64.b64encode(hashlib.sha256(data).digest()).decode()
    hub.config(s3_public_buckets=[])
    r = fetch(url)
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.body


def presigned(hub, key=KEY, ttl=3600, now=None):
    path = "/%s/%s" % (BUCKET, urllib.parse.quote(key, safe="/~"))
    host = "127.0.0.1:%d" % hub.ports["s3"]
    return "http://%s%s?%s" % (host, path, svc_s3.presign(host, path, AK, SK, "us-east-1",
                                                          ttl, now=now))


def test_fake_s3_presigned_urls(hub):
    src, _ = add(hub, KEY, 1000)
    url = presigned(hub)
    r = fetch(url, headers={"Range": "bytes=1-2"})
    assert r.status == 206 and r.body == src.read_bytes()[1:3]
    r = fetch(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.body
    r = fetch(url, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert r.status == 400 and b"Only one auth mechanism allowed" in r.body
    r = fetch(presigned(hub, ttl=60, now=time.time() - 120))
    assert r.status == 403 and b"<Message>Request has expired</Message>" in r.body


# ---------------------------------------------------------------------------
# mounts

def test_signed_read_is_byte_exact_and_credentials_stay_secret(hub, mount):
    src, sha = add(hub, KEY, 5 * MiB + 321, kind="safetensors")
    other, _ = add(hub, "vae/plain.bin", 2 * MiB + 1, seed=2)
    # One entry names its endpoint and region; a bare s3:// string takes
    # both from the environment.
    text = config({"checkpoints": {"sd": s3_entry(hub, region="us-east-1", sha256=sha)},
                   "vae": {"v": '"s3://%s/vae/plain.bin"' % BUCKET}})
    m = mount(text, env=dict(CREDS, AWS_ENDPOINT_URL_S3=hub.base("s3"), AWS_REGION="us-east-1",
                             MODELFS_LOG="debug"))
    path = m.path / "Stable-diffusion" / os.path.basename(KEY)
    assert path.stat().st_size == 5 * MiB + 321
    want = src.read_bytes()
    rng = random.Random(2)
    for off, n in [(0, 8), (len(want) - 1, 1), (MiB - 1, 2)] + [
            (rng.randrange(len(want)), 65536) for _ in range(20)]:
        assert pread(path, off, n) == want[off:off + n], (off, n)
    assert path.read_bytes() == want
    wait_state(path, "verified")
    assert (m.path / "VAE" / "plain.bin").read_bytes() == other.read_bytes()
    reqs = hub.requests(server="s3")
    assert reqs and all(r["s3_auth"] == "sigv4" and r["status"] in (200, 206) for r in reqs)
    assert all(r["headers"]["x-amz-content-sha256"] == EMPTY for r in reqs)
    assert all("x-amz-security-token" not in r["headers"] for r in reqs)
    assert all(r["path"].startswith("/%s/" % BUCKET) for r in reqs)       # path-style
    assert any(r["path"] == "/%s/sdxl/my%%20model%%2Bv1%%20%%28fp16%%29.safetensors" % BUCKET
               for r in reqs)
    auth_only_to_s3(hub)
    log = m.log()
    assert "event=resolve" in log and "source=s3" in log      # debug lines were written
    assert SK not in log and AK not in log


def test_session_token_is_sent_and_required(hub, mount, modelfs_bin):
    src, _ = add(hub, KEY, MiB + 3)
    hub.config(s3_session_token=TOKEN)
    text = config({"vae": {"t": s3_entry(hub)}})
    m = mount(text, env=dict(CREDS, AWS_SESSION_TOKEN=TOKEN, MODELFS_LOG="debug"))
    path = m.path / "VAE" / os.path.basename(KEY)
    assert path.read_bytes() == src.read_bytes()
    reqs = hub.requests(server="s3")
    assert reqs and all(r["headers"].get("x-amz-security-token") == TOKEN for r in reqs)
    assert TOKEN not in m.log()
    # Temporary credentials without their token: a clear refusal.
    r = check(modelfs_bin, m.config_path, CREDS)
    assert r.returncode == 1
    assert "temporary credentials were refused (InvalidToken)" in r.stdout, r.stdout
    assert SK not in r.stdout + r.stderr


def test_wrong_secret_is_a_clear_error_at_mount(hub, mount, modelfs_bin):
    add(hub, KEY, 1000)
    bad = dict(CREDS, AWS_SECRET_ACCESS_KEY="not-the-secret-0123456789")
    text = config({"vae": {"w": s3_entry(hub)}})
    m = mount(text, env=bad, expect_partial=True,
              allowed_errors=[r"event=entry_failed entry=vae/w "])
    assert "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in m.stderr
    path = m.path / "VAE" / os.path.basename(KEY)
    assert xattr(path, "state") == "error"
    err = xattr(path, "error")
    assert "SignatureDoesNotMatch" in err and "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in err
    assert read_error(path) == errno.EACCES
    assert "not-the-secret-0123456789" not in m.log() + m.stderr + err
    r = check(modelfs_bin, m.config_path, bad)
    assert r.returncode == 1 and "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in r.stdout
    assert "not-the-secret" not in r.stdout + r.stderr
    # Only the resolution asked: no data request was made with bad keys.
    assert all(r["range"] == "bytes=0-0" for r in hub.requests(server="s3"))


def test_missing_key_bucket_region_and_clock_are_named(hub, modelfs_bin, tmp_path):
    add(hub, KEY, 1000)
    hub.config(s3_clock_offset=0)
    cfg = tmp_path / "s3.toml"
    cfg.write_text(config({"vae": {
        "nokey": s3_entry(hub, key="sdxl/missing.safetensors"),
        "nobucket": s3_entry(hub, bucket="no-such-bucket", key="a.bin"),
        "region": s3_entry(hub, region="eu-west-1"),
    }}))
    r = check(modelfs_bin, cfg, CREDS)
    assert r.returncode == 1
    out = r.stdout
    assert "no object s3://%s/sdxl/missing.safetensors (NoSuchKey)" % BUCKET in out, out
    assert "no bucket no-such-bucket at the endpoint (NoSuchBucket)" in out, out
    assert re.search(r"not in region eu-west-1 .*AuthorizationHeaderMalformed.*set region", out), out
    hub.config(s3_clock_offset=3600)
    cfg.write_text(config({"vae": {"ok": s3_entry(hub)}}))
    r = check(modelfs_bin, cfg, CREDS)
    assert r.returncode == 1 and "clock skew" in r.stdout and "RequestTimeTooSkewed" in r.stdout


def test_anonymous_requests_for_public_buckets(hub, mount, modelfs_bin):
    src, _ = add(hub, KEY, MiB)
    hub.config(s3_public_buckets=[BUCKET])
    m = mount(config({"vae": {"p": s3_entry(hub)}}))
    assert (m.path / "VAE" / os.path.basename(KEY)).read_bytes() == src.read_bytes()
    reqs = hub.requests(server="s3")
    assert reqs and all(r["s3_auth"] == "anonymous" and not r["authorization"] for r in reqs)
    hub.config(s3_public_buckets=[])
    r = check(modelfs_bin, m.config_path, {})
    assert r.returncode == 1 and "anonymous request: the bucket is not public" in r.stdout


def test_a_key_with_a_literal_percent_keeps_its_name(hub, mount):
    # s3:// keys are raw, as the AWS CLI takes them: "%20" is three
    # characters of the key, and of the file's name in the mount.
    key = "sdxl/model%20v2.safetensors"
    src, _ = add(hub, key, MiB + 5)
    hub.config(s3_public_buckets=[BUCKET])
    m = mount(config({"vae": {"p": s3_entry(hub, key=key)}}))
    assert os.listdir(m.path / "VAE") == ["model%20v2.safetensors"]
    assert (m.path / "VAE" / "model%20v2.safetensors").read_bytes() == src.read_bytes()
    assert any(r["path"] == "/%s/sdxl/model%%2520v2.safetensors" % BUCKET
               for r in hub.requests(server="s3"))


def test_slowdown_is_retried_and_etag_guards_the_bytes(hub, mount):
    src, _ = add(hub, "mp.bin", 6 * MiB + 1)
    hub.config(s3_multipart=["%s/mp.bin" % BUCKET], s3_part_size=2 * MiB)
    m = mount(config({"vae": {"mp": s3_entry(hub, key="mp.bin")}}, settings="retry_timeout = 30"),
              env=CREDS, allowed_errors=[r"mp\.bin"])
    path = m.path / "VAE" / "mp.bin"
    hub.faults(server="s3", fail=[503, 503])
    assert pread(path, 0, 100) == src.read_bytes()[:100]
    assert "fetch_retry" in m.log() and "SlowDown" in m.log()
    with pytest.raises(OSError) as e:       # a multipart ETag is no hash
        xattr(path, "sha256")
    assert e.value.errno == errno.ENODATA
    # The object changes under the same key: If-Range sees the new ETag.
    hub.faults(server="s3", etag='"0123456789abcdef0123456789abcdef-3"')
    with pytest.raises(OSError) as e:
        pread(path, 5 * MiB, 100)
    assert e.value.errno == errno.EIO
    assert "changed at the origin" in xattr(path, "error")


def test_presigned_url_entry_is_read_without_credentials(hub, mount):
    src, _ = add(hub, KEY, 2 * MiB + 9)
    url = presigned(hub)
    m = mount(config({"vae": {"ps": '"%s"' % url}}), env=CREDS)
    path = m.path / "VAE" / os.path.basename(KEY)
    assert path.read_bytes() == src.read_bytes()
    reqs = hub.requests(server="s3")
    assert reqs and all(r["s3_auth"] == "presigned" and not r["authorization"] for r in reqs)
    assert "X-Amz-Signature" not in m.log()


def test_presigned_url_expiry_is_a_clear_error(hub, mount, modelfs_bin, tmp_path):
    src, _ = add(hub, KEY, 24 * MiB)
    m = mount(config({"vae": {"ps": '"%s"' % presigned(hub, ttl=3)}}),
              allowed_errors=[r"event=fetch_failed .*Request has expired"])
    path = m.path / "VAE" / os.path.basename(KEY)
    assert pread(path, 0, 10) == src.read_bytes()[:10]
    time.sleep(4)
    with pytest.raises(OSError) as e:
        pread(path, 20 * MiB, 10)       # far from what readahead may have fetched
    assert e.value.errno in (errno.EACCES, errno.EIO)
    assert "AccessDenied: Request has expired" in m.log()
    # No renewal is possible: the origin is the presigned URL itself.
    assert "url_refreshed" not in m.log()
    cfg = tmp_path / "expired.toml"
    cfg.write_text(config({"vae": {"old": '"%s"' % presigned(hub, ttl=1, now=time.time() - 60)}}))
    r = check(modelfs_bin, cfg, {})
    assert r.returncode == 1
    assert "the presigned URL was refused (HTTP 403: AccessDenied: Request has expired)" in r.stdout
    assert "put a fresh one in the config" in r.stdout
