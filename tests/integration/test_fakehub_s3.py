"""The fake S3 endpoint's writes (tests/fakehub/svc_s3.py): PUT, multipart
upload, conditional PUT, ListObjectsV2 and DELETE, each signed with SigV4
and checked by the fake like its GETs.  The client here signs with the
fake's own functions (checked against AWS's examples in test_s3.py); curl
is the independent client for PUT."""

import base64
import hashlib
import re
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest

from hubclient import fetch
import svc_s3

AK = svc_s3.S3Handler.config_defaults["s3_access_key"]
SK = svc_s3.S3Handler.config_defaults["s3_secret_key"]
BUCKET = "shared-bkt"
MiB = 1 << 20


def s3(hub, method, key, body=b"", query="", headers=None, secret=SK, payload=None):
    """One signed request to the fake: the hubclient response."""
    host = "127.0.0.1:%d" % hub.ports["s3"]
    path = "/%s/%s" % (BUCKET, urllib.parse.quote(key, safe="/~"))
    amz_date = svc_s3.amz_date_of(time.time())
    payload = payload or hashlib.sha256(body).hexdigest()
    hdrs = dict(headers or {})
    hdrs.update({"x-amz-date": amz_date, "x-amz-content-sha256": payload})
    lower = {k.lower(): [v] for k, v in hdrs.items()}
    lower["host"] = [host]
    signed = sorted(lower)
    creq = svc_s3.canonical_request(method, path, query, lower, signed, payload)
    sig, _ = svc_s3.signature(secret, amz_date, "us-east-1", creq)
    hdrs["Authorization"] = ("%s Credential=%s/%s/us-east-1/s3/aws4_request, SignedHeaders=%s, "
                             "Signature=%s" % (svc_s3.ALGORITHM, AK, amz_date[:8],
                                               ";".join(signed), sig))
    url = "http://%s%s%s" % (host, path, "?" + query if query else "")
    return fetch(url, method, headers=hdrs, body=body if method in ("PUT", "POST") else None)


def code(resp):
    m = re.search(rb"<Code>([^<]*)</Code>", resp.body)
    return m.group(1).decode() if m else None


def xml_text(resp, tag):
    m = re.search(rb"<%s>([^<]*)</%s>" % (tag.encode(), tag.encode()), resp.body)
    return m.group(1).decode() if m else None


@pytest.fixture
def bucket(hub):
    (hub.root / "s3" / BUCKET).mkdir(parents=True)
    return hub.root / "s3" / BUCKET


def test_put_then_get_and_if_none_match_star(hub, bucket):
    r = s3(hub, "PUT", "sha256/ab/obj", b"hello bucket")
    assert r.status == 200 and r.header("ETag") == '"%s"' % hashlib.md5(b"hello bucket").hexdigest()
    assert (bucket / "sha256" / "ab" / "obj").read_bytes() == b"hello bucket"
    r = s3(hub, "GET", "sha256/ab/obj", headers={"Range": "bytes=6-11"})
    assert r.status == 206 and r.body == b"bucket"
    r = s3(hub, "PUT", "sha256/ab/obj", b"other", headers={"If-None-Match": "*"})
    assert r.status == 412 and code(r) == "PreconditionFailed"
    assert (bucket / "sha256" / "ab" / "obj").read_bytes() == b"hello bucket"
    r = s3(hub, "PUT", "sha256/ab/new", b"first", headers={"If-None-Match": "*"})
    assert r.status == 200
    r = s3(hub, "PUT", "sha256/ab/obj", b"overwritten")        # unconditional: replaces
    assert r.status == 200 and (bucket / "sha256" / "ab" / "obj").read_bytes() == b"overwritten"
    log = hub.requests(server="s3")
    assert [e["s3_op"] for e in log] == ["put", "get", "put", "put", "put"]
    assert all(e["s3_auth"] == "sigv4" for e in log)


def test_writes_are_signed_and_the_payload_hash_checked(hub, bucket):
    r = s3(hub, "PUT", "k", b"data", secret=SK + "x")
    assert r.status == 403 and code(r) == "SignatureDoesNotMatch"
    r = s3(hub, "PUT", "k", b"data", payload=hashlib.sha256(b"other").hexdigest())
    assert r.status == 400 and code(r) == "XAmzContentSHA256Mismatch"
    r = s3(hub, "PUT", "k", b"data", payload="UNSIGNED-PAYLOAD")
    assert r.status == 200
    r = fetch("%s/%s/anon" % (hub.base("s3"), BUCKET), "PUT", body=b"x")
    assert r.status == 403 and code(r) == "AccessDenied"
    assert not (bucket / "anon").exists()
    r = s3(hub, "PUT", "a/../b", b"x")
    assert r.status == 400 and code(r) == "InvalidArgument"
    r = s3(hub, "PATCH", "k")
    assert r.status == 405 and code(r) == "MethodNotAllowed"


def multipart(hub, key, parts, headers=None, listed=None):
    r = s3(hub, "POST", key, query="uploads=")
    assert r.status == 200, r.body
    upload = xml_text(r, "UploadId")
    etags = []
    for i, data in enumerate(parts, 1):
        r = s3(hub, "PUT", key, data, query="partNumber=%d&uploadId=%s" % (i, upload))
        assert r.status == 200, r.body
        etags.append(r.header("ETag"))
    body = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
        "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, etags[n - 1])
        for n in (listed or range(1, len(parts) + 1)))
    return upload, etags, s3(hub, "POST", key, body.encode(), query="uploadId=" + upload,
                             headers=headers)


def test_multipart_upload_completes_to_the_parts_in_order(hub, bucket):
    hub.config(s3_min_part_size=MiB)
    parts = [bytes([i]) * MiB for i in range(3)] + [b"tail"]
    upload, etags, r = multipart(hub, "big.bin", parts)
    assert r.status == 200, r.body
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    want = '"%s-4"' % hashlib.md5(md5s).hexdigest()
    assert xml_text(r, "ETag").replace("&quot;", '"') == want
    assert (bucket / "big.bin").read_bytes() == b"".join(parts)
    r = s3(hub, "HEAD", "big.bin")
    assert r.header("ETag") == want and r.header("Content-Length") == str(3 * MiB + 4)
    assert not (hub.root / "_s3_uploads" / BUCKET / upload).exists()
    ops = [e["s3_op"] for e in hub.requests(server="s3")]
    assert ops == ["initiate"] + ["upload_part"] * 4 + ["complete", "head"]


def test_multipart_refusals(hub, bucket):
    hub.config(s3_min_part_size=MiB)
    _, _, r = multipart(hub, "small.bin", [b"a" * 100, b"b"])
    assert r.status == 400 and code(r) == "EntityTooSmall"
    _, _, r = multipart(hub, "order.bin", [b"a" * MiB, b"b"], listed=[2, 1])
    assert r.status == 400 and code(r) == "InvalidPartOrder"
    r = s3(hub, "PUT", "x", b"p", query="partNumber=1&uploadId=nosuchupload")
    assert r.status == 404 and code(r) == "NoSuchUpload"
    r = s3(hub, "POST", "x", query="uploads=")
    upload = xml_text(r, "UploadId")
    r = s3(hub, "PUT", "x", b"p", query="partNumber=10001&uploadId=" + upload)
    assert r.status == 400 and code(r) == "InvalidArgument"
    r = s3(hub, "DELETE", "x", query="uploadId=" + upload)
    assert r.status == 204
    r = s3(hub, "PUT", "x", b"p", query="partNumber=1&uploadId=" + upload)
    assert r.status == 404 and code(r) == "NoSuchUpload"
    assert not (bucket / "small.bin").exists() and not (bucket / "order.bin").exists()


def test_conditional_complete_and_racing_writers(hub, bucket):
    hub.config(s3_min_part_size=MiB)
    s3(hub, "PUT", "taken", b"first")
    _, _, r = multipart(hub, "taken", [b"a" * MiB, b"b"], headers={"If-None-Match": "*"})
    assert r.status == 412 and code(r) == "PreconditionFailed"
    assert (bucket / "taken").read_bytes() == b"first"
    # Eight writers race for one key with If-None-Match: *: exactly one wins.
    statuses = []
    barrier = threading.Barrier(8)

    def writer(i):
        barrier.wait()
        statuses.append(s3(hub, "PUT", "claim", b"node %d" % i,
                           headers={"If-None-Match": "*"}).status)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [412] * 7
    assert (bucket / "claim").read_bytes().startswith(b"node ")


def test_list_objects_v2_pages_and_delete(hub, bucket):
    for k in ("p/a", "p/b/c", "p/d", "q/e"):
        assert s3(hub, "PUT", k, k.encode()).status == 200
    r = s3(hub, "GET", "", query="list-type=2&prefix=p%2F")
    assert r.status == 200
    assert re.findall(rb"<Key>([^<]*)</Key>", r.body) == [b"p/a", b"p/b/c", b"p/d"]
    assert xml_text(r, "IsTruncated") == "false" and xml_text(r, "KeyCount") == "3"
    assert b"<Size>3</Size>" in r.body
    r = s3(hub, "GET", "", query="list-type=2&max-keys=2&prefix=p%2F")
    assert re.findall(rb"<Key>([^<]*)</Key>", r.body) == [b"p/a", b"p/b/c"]
    token = xml_text(r, "NextContinuationToken")
    assert xml_text(r, "IsTruncated") == "true" and token
    r = s3(hub, "GET", "", query="continuation-token=%s&list-type=2&max-keys=2&prefix=p%%2F"
           % urllib.parse.quote(token, safe=""))
    assert re.findall(rb"<Key>([^<]*)</Key>", r.body) == [b"p/d"]
    assert s3(hub, "DELETE", "p/d").status == 204
    assert s3(hub, "DELETE", "p/d").status == 204           # gone already: still 204
    assert not (bucket / "p" / "d").exists()
    r = s3(hub, "GET", "", query="list-type=2")
    assert re.findall(rb"<Key>([^<]*)</Key>", r.body) == [b"p/a", b"p/b/c", b"q/e"]
    r = s3(hub, "GET", "")
    assert r.status == 501


def test_write_faults_apply(hub, bucket):
    hub.faults(server="s3", path=BUCKET + "/k", method="PUT", fail=[503])
    r = s3(hub, "PUT", "k", b"x")
    assert r.status == 503 and code(r) == "SlowDown"
    assert s3(hub, "PUT", "k", b"x").status == 200


CURL = shutil.which("curl")


@pytest.mark.skipif(CURL is None, reason="the curl command line tool is not installed")
def test_curl_uploads_are_accepted(hub, bucket, tmp_path):
    """curl 7.88 signs a PUT with the x-amz-content-sha256 it is given."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"curl body " * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    url = "%s/%s/from-curl" % (hub.base("s3"), BUCKET)
    out = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
                          "aws:amz:us-east-1:s3", "--user", "%s:%s" % (AK, SK), "-H",
                          "x-amz-content-sha256: " + digest, "-H", "If-None-Match: *",
                          "-T", str(src), url], capture_output=True, timeout=30)
    assert out.stdout == b"200"
    assert (bucket / "from-curl").read_bytes() == src.read_bytes()
    out = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
                          "aws:amz:us-east-1:s3", "--user", "%s:%s" % (AK, SK), "-H",
                          "x-amz-content-sha256: " + digest, "-H", "If-None-Match: *",
                          "-T", str(src), url], capture_output=True, timeout=30)
    assert out.stdout == b"412"
