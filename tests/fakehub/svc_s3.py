"""svc_s3: a fake S3 endpoint ("s3", port S) that checks AWS Signature
Version 4 itself (PROTOCOLS.md 4 and 6.4), with a known secret.  s3rver and
friends accept any signature; this one recomputes it.

Objects: ROOT/s3/<bucket>/<key> (a bucket is a folder of ROOT/s3).

Addressing
  path-style      http://127.0.0.1:S/<bucket>/<key>
  virtual-host    Host: <bucket>.s3.local:S, path /<key> (reach it with
                  curl --resolve <bucket>.s3.local:S:127.0.0.1)
Authentication, in S3's order of checks
  header   Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/s3/
           aws4_request, SignedHeaders=a;b;c, Signature=HEX
           needs x-amz-date (or Date) within 15 minutes of the server's clock
           (RequestTimeTooSkewed), x-amz-content-sha256 (the empty body's hash
           or UNSIGNED-PAYLOAD for GET/HEAD), "host" and every x-amz-* header
           signed, the region of s3_region (AuthorizationHeaderMalformed),
           the key id s3_access_key (InvalidAccessKeyId), the session token
           s3_session_token when one is configured (InvalidToken), then the
           signature: canonical request (method, canonical URI = the path
           decoded and UriEncoded once, canonical query sorted and encoded,
           canonical headers trimmed, signed header list, payload hash),
           string to sign, HMAC chain from "AWS4" + s3_secret_key
           (SignatureDoesNotMatch, with StringToSign/CanonicalRequest in the
           XML like S3).
  query    presigned: X-Amz-Algorithm, -Credential, -Date, -Expires
           (1..604800), -SignedHeaders, -Signature (+ -Security-Token);
           payload UNSIGNED-PAYLOAD; past Date+Expires: 403 AccessDenied
           "Request has expired"; together with Authorization: 400.
  none     anonymous: only buckets listed in s3_public_buckets.
Order of checks: method, bucket (NoSuchBucket before any credential check,
as S3 does), authentication, key, preconditions, range.
Writes (the calls a shared cache needs; other methods 405)
  PUT object                the body becomes the object (written whole, then
                            renamed into place); ETag '"<md5>"'
  PUT ?partNumber=N&uploadId=U   one part of a multipart upload (1..10000)
  POST ?uploads             InitiateMultipartUploadResult with a fresh UploadId
  POST ?uploadId=U          CompleteMultipartUpload: the listed parts, in
                            ascending order with their ETags, each but the
                            last at least s3_min_part_size (EntityTooSmall),
                            become the object; ETag '"<md5 of md5s>-<n>"'
  DELETE object             204, whether or not it existed
  DELETE ?uploadId=U        AbortMultipartUpload: 204 (404 NoSuchUpload)
  GET bucket ?list-type=2   ListObjectsV2: prefix, max-keys (1000),
                            continuation-token, start-after; keys in UTF-8
                            order
  If-None-Match: * on a PUT or a CompleteMultipartUpload: 412
  PreconditionFailed when the key exists (checked and written under one
  lock, so of two racing writers exactly one wins).  The payload hash is
  checked: x-amz-content-sha256 is UNSIGNED-PAYLOAD or the body's SHA-256
  (XAmzContentSHA256Mismatch).  Keys with an empty, "." or ".." segment
  cannot be files here: 400 InvalidArgument.  The log gets "s3_op".
Objects (GET and HEAD)
  200/206 with Content-Length, exact Content-Range, ETag, Last-Modified,
  Accept-Ranges: bytes, x-amz-request-id.  ETag: '"<md5>"', or for keys in
  s3_multipart '"<md5 of the part md5s>-<parts>"' (parts of s3_part_size).
  Range past the end: 416 InvalidRange XML with Content-Range bytes */size.
  If-Match mismatch: 412 PreconditionFailed XML; If-None-Match match: 304.
  x-amz-checksum-mode: ENABLED on an unranged request adds
  x-amz-checksum-sha256 (base64).  Missing: 404 NoSuchBucket / NoSuchKey.
Faults: `fail` answers with S3's XML (503 SlowDown, 500 InternalError).  The
fault key is "<bucket>/<key>".  The request log gets "s3_auth"
(sigv4|presigned|anonymous|refused) and "s3_style" (path|virtual).

The signing functions are plain functions (canonical_request, signature,
presign) so that tests check them against AWS's published examples.
"""

import base64
import calendar
import hashlib
import hmac
import itertools
import os
import shutil
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from hubcore import UNSATISFIABLE, FileEntity, HubHandler, etag_list_matches, parse_range

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 15 * 60
MAX_EXPIRES = 604800
VHOST_SUFFIX = ".s3.local"

# ---------------------------------------------------------------------------
# SigV4, as AWS documents it (sig-v4-header-based-auth.html,
# sigv4-query-string-auth.html)


def uri_encode(data, keep_slash):
    """AWS UriEncode of bytes (or str as UTF-8): unreserved kept, '/' kept
    when keep_slash, everything else %XX upper case."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out = []
    for b in data:
        c = chr(b)
        if (b < 128 and (c.isalnum() or c in "-._~")) or (keep_slash and c == "/"):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def canonical_uri(raw_path):
    """S3 encodes the (decoded) path once, keeping the slashes."""
    return uri_encode(urllib.parse.unquote_to_bytes(raw_path or "/"), True) or "/"


def canonical_query(raw_query, exclude=()):
    pairs = []
    for part in (raw_query or "").split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        k = urllib.parse.unquote_to_bytes(k)
        if k.decode("utf-8", "replace") in exclude:
            continue
        pairs.append((uri_encode(k, False), uri_encode(urllib.parse.unquote_to_bytes(v), False)))
    return "&".join("%s=%s" % kv for kv in sorted(pairs))


def canonical_request(method, raw_path, raw_query, headers, signed, payload_hash,
                      exclude_query=()):
    """headers: {lower-case name: [values]}; signed: lower-case names."""
    lines = []
    for name in signed:
        values = headers.get(name, [])
        lines.append("%s:%s" % (name, ",".join(" ".join(v.split()) for v in values)))
    return "\n".join([method, canonical_uri(raw_path),
                      canonical_query(raw_query, exclude_query),
                      "\n".join(lines) + "\n", ";".join(signed), payload_hash])


def signing_key(secret, date, region, service="s3"):
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def string_to_sign(amz_date, scope, creq):
    return "\n".join([ALGORITHM, amz_date, scope,
                      hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def signature(secret, amz_date, region, creq, service="s3"):
    """(hex signature, string to sign) of a canonical request."""
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    sts = string_to_sign(amz_date, scope, creq)
    key = signing_key(secret, amz_date[:8], region, service)
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest(), sts


def amz_date_of(epoch):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def parse_amz_date(text):
    """Epoch seconds of "YYYYMMDDTHHMMSSZ" (or an HTTP-date), or None."""
    try:
        return calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ"))
    except (TypeError, ValueError):
        pass
    try:
        import email.utils
        return int(email.utils.parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def presign(host, raw_path, access_key, secret, region, expires, now=None, token=None,
            method="GET"):
    """The query string of a presigned URL (only "host" signed)."""
    now = time.time() if now is None else now
    amz_date = amz_date_of(now)
    params = [("X-Amz-Algorithm", ALGORITHM),
              ("X-Amz-Credential", "%s/%s/%s/s3/aws4_request" % (access_key, amz_date[:8], region)),
              ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)),
              ("X-Amz-SignedHeaders", "host")]
    if token:
        params.append(("X-Amz-Security-Token", token))
    query = "&".join("%s=%s" % (uri_encode(k, False), uri_encode(v, False)) for k, v in params)
    creq = canonical_request(method, raw_path, query, {"host": [host]}, ["host"], UNSIGNED)
    sig, _ = signature(secret, amz_date, region, creq)
    return query + "&X-Amz-Signature=" + sig


def parse_authorization(value):
    """{"ak", "date", "region", "service", "term", "signed", "signature"}
    of an AWS4-HMAC-SHA256 Authorization value, or None."""
    if not value.startswith(ALGORITHM + " "):
        return None
    fields = {}
    for part in value[len(ALGORITHM) + 1:].split(","):
        k, sep, v = part.strip().partition("=")
        if not sep:
            return None
        fields[k] = v
    try:
        ak, date, region, service, term = fields["Credential"].split("/")
        return {"ak": ak, "date": date, "region": region, "service": service, "term": term,
                "signed": fields["SignedHeaders"].split(";"),
                "signature": fields["Signature"]}
    except (KeyError, ValueError):
        return None


# ---------------------------------------------------------------------------
# The service

class S3Error(Exception):
    """An S3 error answer: status, <Code>, <Message>, more XML elements
    (extra) and response headers."""

    def __init__(self, status, code, message, headers=(), **extra):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)
        self.extra = extra


def error_xml(code, message, resource="", **extra):
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
             % (code, escape(message))]
    for k, v in extra.items():
        parts.append("<%s>%s</%s>" % (k, escape(str(v)), k))
    if resource:
        parts.append("<Resource>%s</Resource>" % escape(resource))
    parts.append("<RequestId>FAKES3000000001</RequestId></Error>")
    return "".join(parts).encode()


_STATUS_CODES = {400: "InvalidRequest", 403: "AccessDenied", 404: "NoSuchKey",
                 405: "MethodNotAllowed", 412: "PreconditionFailed", 416: "InvalidRange",
                 500: "InternalError", 501: "NotImplemented", 503: "SlowDown"}
_STATUS_MESSAGES = {500: "We encountered an internal error. Please try again.",
                    503: "Please reduce your request rate."}


class S3Handler(HubHandler):
    server_version = "AmazonS3"
    config_defaults = {
        "s3_access_key": "AKIAFAKEHUB000000001",
        "s3_secret_key": "fakehub/S3+Secret/Key0123456789abcdefghij",
        "s3_session_token": "",
        "s3_region": "us-east-1",
        "s3_public_buckets": [],
        "s3_multipart": [],
        "s3_part_size": 5 << 20,
        "s3_min_part_size": 5 << 20,
        "s3_clock_offset": 0,
    }
    _digests = {}       # (path, mtime_ns, size, kind) -> value; shared cache

    def cfg(self, key):
        return self.hub.get_config(key)

    def now(self):
        return time.time() + self.cfg("s3_clock_offset")

    def xml_reply(self, status, code, message, headers=(), **extra):
        self.reply(status, error_xml(code, message, self.url_path, **extra),
                   "application/xml", list(headers) + [("x-amz-request-id", "FAKES3000000001")])

    def fault_status_reply(self, fault):
        status = fault.status
        self.xml_reply(status, _STATUS_CODES.get(status, "InternalError"),
                       _STATUS_MESSAGES.get(status, "Fault injected by fakehub."))

    # -- addressing -------------------------------------------------------
    def address(self):
        """(bucket, key, style) of the request; key decoded."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        if host.endswith(VHOST_SUFFIX) and len(host) > len(VHOST_SUFFIX):
            return (host[:-len(VHOST_SUFFIX)],
                    urllib.parse.unquote(self.url_path[1:]), "virtual")
        bucket, _, key = self.url_path[1:].partition("/")
        return urllib.parse.unquote(bucket), urllib.parse.unquote(key), "path"

    # -- authentication -----------------------------------------------------
    def header_map(self):
        out = {}
        for name, value in self.headers.items():
            out.setdefault(name.lower(), []).append(value)
        return out

    def authenticate(self, bucket):
        """The way the request authenticated; raises S3Error."""
        params = urllib.parse.parse_qs(self.raw_query, keep_blank_values=True)
        has_query_auth = "X-Amz-Algorithm" in params or "X-Amz-Signature" in params
        auth = self.headers.get("Authorization")
        if has_query_auth and auth:
            raise S3Error(400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                          "X-Amz-Algorithm query parameter, Signature query string parameter "
                          "or the Authorization header should be specified")
        if has_query_auth:
            self.check_presigned({k: v[0] for k, v in params.items()})
            return "presigned"
        if auth:
            self.check_header_auth(auth)
            return "sigv4"
        if bucket in self.cfg("s3_public_buckets"):
            return "anonymous"
        raise S3Error(403, "AccessDenied", "Access Denied")

    def check_scope(self, ak, date, region, service, term, amz_date):
        if ak != self.cfg("s3_access_key"):
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does "
                          "not exist in our records.", AWSAccessKeyId=ak)
        if service != "s3" or term != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is "
                          "malformed; incorrect service or terminal in the credential scope")
        if region != self.cfg("s3_region"):
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is "
                          "malformed; the region '%s' is wrong; expecting '%s'"
                          % (region, self.cfg("s3_region")), Region=self.cfg("s3_region"))
        if date != amz_date[:8]:
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is "
                          "malformed; Invalid credential date. Date is not the same as "
                          "X-Amz-Date.")

    def check_token(self, sent):
        want = self.cfg("s3_session_token")
        if (want or sent) and not (want and sent and hmac.compare_digest(want, sent)):
            raise S3Error(400 if sent else 403, "InvalidToken",
                          "The provided token is malformed or otherwise invalid.")

    def check_signature(self, creq, amz_date, provided, ak):
        want, sts = signature(self.cfg("s3_secret_key"), amz_date, self.cfg("s3_region"), creq)
        if not hmac.compare_digest(want, provided):
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                          "does not match the signature you provided. Check your key and "
                          "signing method.", AWSAccessKeyId=ak, StringToSign=sts,
                          SignatureProvided=provided, CanonicalRequest=creq)

    def check_header_auth(self, value):
        a = parse_authorization(value)
        if a is None:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; the authorization "
                          "header requires three components: Credential, SignedHeaders, "
                          "and Signature.")
        headers = self.header_map()
        amz_date = (headers.get("x-amz-date") or [None])[0]
        when = parse_amz_date(amz_date) if amz_date else None
        if when is None:
            date = (headers.get("date") or [None])[0]
            when = parse_amz_date(date) if date else None
            amz_date = amz_date_of(when) if when is not None else None
        if when is None:
            raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or "
                          "x-amz-date header")
        self.check_scope(a["ak"], a["date"], a["region"], a["service"], a["term"], amz_date)
        now = self.now()
        if abs(when - now) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request "
                          "time and the current time is too large.", RequestTime=amz_date,
                          ServerTime=amz_date_of(now), MaxAllowedSkewMilliseconds=MAX_SKEW * 1000)
        payload = (headers.get("x-amz-content-sha256") or [None])[0]
        if payload is None:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: "
                          "x-amz-content-sha256")
        if payload != UNSIGNED and payload != hashlib.sha256(self.request_body).hexdigest():
            raise S3Error(400, "XAmzContentSHA256Mismatch", "The provided "
                          "'x-amz-content-sha256' header does not match what was computed.")
        signed = a["signed"]
        if "host" not in signed:
            raise S3Error(403, "AccessDenied", "SignedHeaders must include host")
        unsigned = sorted(h for h in headers if h.startswith("x-amz-") and h not in signed)
        if unsigned:
            raise S3Error(403, "AccessDenied", "There were headers present in the request "
                          "which were not signed", HeadersNotSigned=", ".join(unsigned))
        self.check_token((headers.get("x-amz-security-token") or [None])[0])
        creq = canonical_request(self.command, self.url_path, self.raw_query, headers,
                                 signed, payload)
        self.check_signature(creq, amz_date, a["signature"], a["ak"])

    def check_presigned(self, q):
        need = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                "X-Amz-SignedHeaders", "X-Amz-Signature")
        if any(k not in q for k in need) or q["X-Amz-Algorithm"] != ALGORITHM:
            raise S3Error(400, "AuthorizationQueryParametersError", "Query-string "
                          "authentication version 4 requires the X-Amz-Algorithm, "
                          "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                          "X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
        try:
            ak, date, region, service, term = q["X-Amz-Credential"].split("/")
            expires = int(q["X-Amz-Expires"])
        except ValueError:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "Error parsing the X-Amz-Credential parameter") from None
        if not 1 <= expires <= MAX_EXPIRES:
            raise S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be "
                          "less than a week (in seconds) that is 604800")
        when = parse_amz_date(q["X-Amz-Date"])
        if when is None:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        self.check_scope(ak, date, region, service, term, q["X-Amz-Date"])
        now = self.now()
        if now > when + expires:
            raise S3Error(403, "AccessDenied", "Request has expired",
                          **{"X-Amz-Expires": expires, "Expires": amz_date_of(when + expires),
                             "ServerTime": amz_date_of(now)})
        if when - now > MAX_SKEW:
            raise S3Error(403, "AccessDenied", "Request is not valid yet")
        self.check_token(q.get("X-Amz-Security-Token"))
        signed = q["X-Amz-SignedHeaders"].split(";")
        if "host" not in signed:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-SignedHeaders must include host")
        creq = canonical_request(self.command, self.url_path, self.raw_query,
                                 self.header_map(), signed, UNSIGNED,
                                 exclude_query=("X-Amz-Signature",))
        self.check_signature(creq, q["X-Amz-Date"], q["X-Amz-Signature"], ak)

    # -- objects ------------------------------------------------------------
    def digest(self, path, kind):
        st = os.stat(path)
        cache_key = (str(path), st.st_mtime_ns, st.st_size, kind)
        value = self._digests.get(cache_key)
        if value is not None:
            return value
        if kind == "sha256":
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            value = base64.b64encode(h.digest()).decode()
        elif kind == "md5":
            h = hashlib.md5()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            value = '"%s"' % h.hexdigest()
        else:                           # multipart
            part = max(1, self.cfg("s3_part_size"))
            digests = b""
            parts = 0
            with open(path, "rb") as f:
                while chunk := f.read(part):
                    digests += hashlib.md5(chunk).digest()
                    parts += 1
            value = '"%s-%d"' % (hashlib.md5(digests).hexdigest(), max(parts, 1))
        self._digests[cache_key] = value
        return value

    def operation(self, key):
        """The S3 call a request makes ("get", "put", "upload_part", ...),
        or None for a method S3 does not allow here."""
        q = self.query
        if self.command in ("GET", "HEAD"):
            return "list" if not key and self.command == "GET" else self.command.lower()
        if not key:
            return None
        if self.command == "PUT":
            return "upload_part" if "uploadId" in q or "partNumber" in q else "put"
        if self.command == "POST":
            return "initiate" if "uploads" in q else "complete" if "uploadId" in q else None
        if self.command == "DELETE":
            return "abort" if "uploadId" in q else "delete"
        return None

    def route(self):
        bucket, key, style = self.address()
        self.entry["s3_style"] = style
        fault = self.begin("%s/%s" % (bucket, key))
        if fault is None:
            return
        try:
            self.entry["s3_auth"] = "refused"
            op = self.entry["s3_op"] = self.operation(key)
            if op is None:
                raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed "
                              "against this resource.", Method=self.command)
            root = self.hub.root / "s3"
            # S3 says whether a bucket exists before it looks at credentials.
            if (not bucket or "/" in bucket or bucket in (".", "..")
                    or not (root / bucket).is_dir()):
                raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist",
                              BucketName=bucket)
            self.entry["s3_auth"] = self.authenticate(bucket)
            if op in ("get", "head"):
                self.serve_object(bucket, key, fault)
            elif op == "list":
                self.list_objects(bucket)
            else:
                getattr(self, "op_" + op)(bucket, key)
        except S3Error as e:
            self.entry["outcome"] = e.code
            self.xml_reply(e.status, e.code, e.message, e.headers, **e.extra)

    def serve_object(self, bucket, key, fault):
        path = self.hub.file_path("s3/%s/%s" % (bucket, key)) if key else None
        if path is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        self.entry["file"] = "%s/%s" % (bucket, key)
        etag = self.digest(path, "multipart" if "%s/%s" % (bucket, key) in
                           self.cfg("s3_multipart") else "md5")
        st = os.stat(path)
        extra = [("x-amz-request-id", "FAKES3000000001")]
        range_header = self.headers.get("Range")
        if (self.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
                and range_header is None):
            extra.append(("x-amz-checksum-sha256", self.digest(path, "sha256")))
        entity = FileEntity(path, st.st_size, st.st_mtime, etag, headers=extra)
        if_match = self.headers.get("If-Match")
        if if_match is not None and not etag_list_matches(if_match, fault.get("etag") or etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you "
                          "specified did not hold", Condition="If-Match")
        if_none = self.headers.get("If-None-Match")
        if if_none is not None and (if_none.strip() == "*" or etag in
                                    [t.strip() for t in if_none.split(",")]):
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if (self.command == "GET" and range_header is not None and not fault.get("ignore_range")
                and parse_range(range_header, st.st_size) == UNSATISFIABLE):
            raise S3Error(416, "InvalidRange", "The requested range is not satisfiable",
                          [("Content-Range", "bytes */%d" % st.st_size)],
                          RangeRequested=range_header, ActualObjectSize=st.st_size)
        self.serve_entity(entity, fault)

    # -- writes ---------------------------------------------------------------
    _write_lock = threading.Lock()     # If-None-Match: * is a check and a write
    _upload_seq = itertools.count(1)

    def object_path(self, bucket, key):
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\0" in key:
            raise S3Error(400, "InvalidArgument", "fakehub stores objects as files: a key "
                          "with an empty, '.' or '..' segment cannot be one", Key=key)
        return self.hub.root.joinpath("s3", bucket, *parts)

    def upload_dir(self, bucket, key):
        upload_id = (self.query.get("uploadId") or [""])[0]
        d = self.hub.root / "_s3_uploads" / bucket / upload_id
        if (not upload_id or not upload_id.isalnum() or not d.is_dir()
                or (d / "key").read_text() != key):
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist. The "
                          "upload ID may be invalid, or the upload may have been aborted or "
                          "completed.", UploadId=upload_id)
        return d

    def write_reply(self, status=200, body=b"", etag=None):
        headers = [("x-amz-request-id", "FAKES3000000001")]
        if etag:
            headers.append(("ETag", etag))
        self.reply(status, body, "application/xml", headers)

    def place(self, bucket, key, write):
        """Put an object at key with write(file) under the write lock,
        honouring If-None-Match: *; returns the path."""
        path = self.object_path(bucket, key)
        if_none = (self.headers.get("If-None-Match") or "").strip()
        if if_none and if_none != "*":
            raise S3Error(501, "NotImplemented", "If-None-Match on a write takes only '*'")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / (".%s.tmp%d" % (path.name, next(self._upload_seq)))
        with self._write_lock:
            if if_none == "*" and path.exists():
                self.entry["outcome"] = "exists"
                raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions "
                              "you specified did not hold", Condition="If-None-Match")
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, path)
        return path

    def op_put(self, bucket, key):
        body = self.request_body
        self.place(bucket, key, lambda f: f.write(body))
        self.entry["file"] = "%s/%s" % (bucket, key)
        self.write_reply(etag='"%s"' % hashlib.md5(body).hexdigest())

    def op_initiate(self, bucket, key):
        self.object_path(bucket, key)
        upload_id = "%s%06d" % (os.urandom(8).hex(), next(self._upload_seq))
        d = self.hub.root / "_s3_uploads" / bucket / upload_id
        d.mkdir(parents=True)
        (d / "key").write_text(key)
        self.write_reply(body=(
            '<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult>'
            "<Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
            "</InitiateMultipartUploadResult>" % (escape(bucket), escape(key), upload_id)).encode())

    def op_upload_part(self, bucket, key):
        d = self.upload_dir(bucket, key)
        try:
            n = int((self.query.get("partNumber") or [""])[0])
        except ValueError:
            n = 0
        if not 1 <= n <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 "
                          "and 10000, inclusive")
        (d / ("part.%05d" % n)).write_bytes(self.request_body)
        self.write_reply(etag='"%s"' % hashlib.md5(self.request_body).hexdigest())

    def op_complete(self, bucket, key):
        d = self.upload_dir(bucket, key)
        try:
            root = ET.fromstring(self.request_body)
            listed = [(int(p.findtext("{*}PartNumber")), (p.findtext("{*}ETag") or "").strip())
                      for p in root.iter() if p.tag.split("}")[-1] == "Part"]
        except (ET.ParseError, TypeError, ValueError):
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed or "
                          "did not validate against our published schema") from None
        if not listed:
            raise S3Error(400, "MalformedXML", "You must specify at least one part")
        if [n for n, _ in listed] != sorted({n for n, _ in listed}):
            raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending "
                          "order. The parts list must be specified in order by part number.")
        md5s = b""
        for i, (n, etag) in enumerate(listed):
            part = d / ("part.%05d" % n)
            if not part.is_file():
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could "
                              "not be found.", PartNumber=n)
            data = part.read_bytes()
            if '"%s"' % hashlib.md5(data).hexdigest() != etag:
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could "
                              "not be found.", PartNumber=n, ETag=etag)
            if i < len(listed) - 1 and len(data) < self.cfg("s3_min_part_size"):
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than "
                              "the minimum allowed object size.", PartNumber=n,
                              ProposedSize=len(data), MinSizeAllowed=self.cfg("s3_min_part_size"))
            md5s += hashlib.md5(data).digest()

        def write(f):
            for n, _ in listed:
                with open(d / ("part.%05d" % n), "rb") as part:
                    shutil.copyfileobj(part, f, 1 << 20)

        etag = '"%s-%d"' % (hashlib.md5(md5s).hexdigest(), len(listed))
        path = self.place(bucket, key, write)
        st = os.stat(path)
        self._digests[(str(path), st.st_mtime_ns, st.st_size, "md5")] = etag
        shutil.rmtree(d, ignore_errors=True)
        self.entry["file"] = "%s/%s" % (bucket, key)
        self.write_reply(body=(
            '<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>'
            "<Bucket>%s</Bucket><Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>"
            % (escape(bucket), escape(key), escape(etag))).encode())

    def op_abort(self, bucket, key):
        shutil.rmtree(self.upload_dir(bucket, key), ignore_errors=True)
        self.write_reply(204)

    def op_delete(self, bucket, key):
        path = self.object_path(bucket, key)
        with self._write_lock:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self.write_reply(204)

    def list_objects(self, bucket):
        q = {k: v[0] for k, v in self.query.items()}
        if q.get("list-type") != "2":
            raise S3Error(501, "NotImplemented", "fakehub lists only with list-type=2")
        prefix = q.get("prefix", "")
        try:
            max_keys = int(q.get("max-keys", "1000"))
        except ValueError:
            max_keys = -1
        if not 0 <= max_keys:
            raise S3Error(400, "InvalidArgument", "Provided max-keys not an integer or within "
                          "integer range")
        max_keys = min(max_keys, 1000)
        after = q.get("start-after", "")
        token = q.get("continuation-token")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise S3Error(400, "InvalidArgument", "The continuation token provided is "
                              "incorrect") from None
        base = self.hub.root / "s3" / bucket
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if name.startswith(".") and ".tmp" in name:
                    continue
                k = os.path.relpath(os.path.join(dirpath, name), base).replace(os.sep, "/")
                if k.startswith(prefix) and k.encode() > after.encode():
                    keys.append(k)
        keys.sort(key=lambda k: k.encode())
        page, more = keys[:max_keys], len(keys) > max_keys
        items = []
        for k in page:
            path = base.joinpath(*k.split("/"))
            st = os.stat(path)
            items.append("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag>"
                         "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
                         % (escape(k), time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                     time.gmtime(st.st_mtime)),
                            escape(self.digest(path, "md5")), st.st_size))
        extra = ""
        if token is not None:
            extra += "<ContinuationToken>%s</ContinuationToken>" % escape(token)
        if more:
            extra += "<NextContinuationToken>%s</NextContinuationToken>" % \
                base64.urlsafe_b64encode(page[-1].encode()).decode()
        self.write_reply(body=(
            '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.'
            'amazonaws.com/doc/2006-03-01/"><Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d'
            "</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>%s%s"
            "</ListBucketResult>" % (escape(bucket), escape(prefix), len(page), max_keys,
                                     "true" if more else "false", extra,
                                     "".join(items))).encode())


SERVICES = {
    "s3": S3Handler,
}
