"""svc_civitai: a fake CivitAI (PROTOCOLS.md §2 and §6.2): the API host
"civitai" and the signed storage host "civstore" (Backblaze B2 behind the
download endpoint's 307).

Fixtures are data: ROOT/civitai/fixtures.json, written by save_fixtures()
and read again whenever the file changes.  Model bytes are ordinary files
under ROOT (a file's "blob" is its relpath); sizes and hashes are computed
from them, so a fixture cannot lie about its bytes unless it says so.

    {"users": {"<api key>": {"id": 1, "username": "tester"}},
     "models": [{
       "id": 100, "name": "Detail Tweaker", "type": "LORA",
       "mode": null | "Archived",            # archived: files [] and 410
       "versions": [                         # newest first, as the API lists them
         {"id": 1001, "name": "v2", "baseModel": "SD 1.5",
          "status": "Published" | "Draft",   # default Published; a draft is 404
          "publishedAt": "2024-05-01T12:00:00.000Z",
          "require_login": false,            # the creator requires login: 401
          "downloads_disabled": false,       # 401 "disabled downloads";
                                             # usageControl "Generation"
          "early_access": null | {"deadline": "...", "users": ["tester"]},
          "archived": false,
          "files": [{"id": 5001, "name": "x.safetensors", "type": "Model",
                     "primary": true, "blob": "civitai/x.safetensors",
                     "visibility": "Public",  # anything else: hidden, 404
                     "metadata": {"format": "SafeTensor", "size": "pruned", "fp": "fp16"},
                     "sha256": "<hex>"}]}]}]}  # optional: overrides the computed hash

civitai (API port A)
  GET /api/v1/me                      200 {"id","username",...} with a known key as
                                      "Authorization: Bearer <key>" or ?token=<key>;
                                      else 401 {"error":"Unauthorized"}
  GET /api/v1/model-versions/{id}     the version body of §2.2 (files[] with
                                      sizeKB = bytes/1024 as a float, upper-case hex
                                      hashes, primary as a boolean); missing or
                                      unpublished: 404 {"error":"Model not found"};
                                      files but no primary: 404 "Missing model file";
                                      archived: files []
  GET /api/v1/models/{id}             {id,name,type,mode,creator,tags,modelVersions:
                                      [published versions]}, primary only on the
                                      primary file; 404 {"error":"No model with id N"}
  GET /api/v1/model-versions/by-hash/{hash}   any hash type, any case; the
                                      earliest-published match; else 404
  GET /api/download/models/{vid}[?fileId=&type=&format=&size=&fp=&token=]
      Cache-Control: no-store, max-age=0 on every answer.  In the order of
      the real handler: quota (run-time config civitai_quota=1) 429; a bad
      query 400; no such version or file 404 {"error":"File not found"};
      archived 410; early access 403 {"error":"Early Access","deadline",
      "message"}; login required without a valid key 401 {"error":
      "Unauthorized","message":"The creator of this asset requires you to be
      logged in to download it"}; downloads disabled 401; else 307 to a
      signed civstore URL that expires after civitai_url_ttl seconds
      (run-time config, default 3600).  A browser User-Agent (mozilla,
      chrome, safari, firefox, opera, edge) gets plain-text errors, and a 307
      to /login?returnUrl=...&reason=download-auth (or to the version page
      for early access) instead of the 401/403.  An unknown key is anonymous.

civstore (storage port B)
  GET|HEAD /file/civitai-models/<blob>?X-Amz-Expires=&Expires=&X-Amz-Signature=
           &response-content-disposition=attachment; filename="<name>"
      403 AccessDenied XML with an Authorization header (flagged "leak" in the
      request log, as B2 refuses it), with a bad signature, or once expired;
      else the bytes with Range (206), exact Content-Length, a strong ETag and
      Content-Disposition: attachment; filename="<name>".

The request log of the API carries two more fields per request:
"civitai_user" (the user a key was taken for, or null) and "token_in_query".

Fault keys: the API's URL path without its leading "/" ("api/v1/me",
"api/download/models/1001"); civstore's: the blob relpath.
"""

import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
import zlib

from hubcore import FileEntity, HubHandler, error_page

FIXTURES = "civitai/fixtures.json"
BUCKET_PREFIX = "/file/civitai-models/"
BROWSER_RE = re.compile(r"mozilla|chrome|safari|firefox|opera|edge", re.I)

MSG_QUOTA = ("We've noticed an unusual amount of downloading from your account. "
             "Contact support@civitai.com or come back later.")
MSG_LOGIN = "The creator of this asset requires you to be logged in to download it"
MSG_DISABLED = "The creator of this asset has disabled downloads on this file"
MSG_EARLY = "This asset is in Early Access. You can use Buzz to access it now!"
MSG_ARCHIVED = "Model archived, not available for download"


def save_fixtures(root, data):
    """Write the fixtures (a dict as in the module doc) where the fake reads them."""
    path = os.path.join(str(root), FIXTURES)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".%d.tmp" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def size_kb(nbytes):
    """CivitAI's sizeKB: bytes / 1024 as a float (number-helpers.ts)."""
    return nbytes / 1024


# ---------------------------------------------------------------------------
# Fixtures and hashes, cached by file identity

_lock = threading.Lock()
_fixture_cache = {}     # root -> (stat key, data)
_hash_cache = {}        # (path, size, mtime_ns, ino) -> hashes


def load_fixtures(root):
    path = os.path.join(str(root), FIXTURES)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"users": {}, "models": []}
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _lock:
        cached = _fixture_cache.get(str(root))
        if cached and cached[0] == key:
            return cached[1]
    with open(path) as f:
        data = json.load(f)
    data.setdefault("users", {})
    data.setdefault("models", [])
    with _lock:
        _fixture_cache[str(root)] = (key, data)
    return data


def file_hashes(path):
    """{"AutoV1","AutoV2","SHA256","CRC32"} of a file, upper-case hex as the
    API gives them.  AutoV1 is A1111's model_hash (64 KiB at 1 MiB), AutoV2
    the first 10 hex digits of the SHA-256."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _lock:
        if key in _hash_cache:
            return _hash_cache[key]
    sha, crc = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            crc = zlib.crc32(chunk, crc)
        f.seek(0x100000)
        v1 = hashlib.sha256(f.read(0x10000)).hexdigest()[:8]
    digest = sha.hexdigest().upper()
    hashes = {"AutoV1": v1.upper(), "AutoV2": digest[:10], "SHA256": digest,
              "CRC32": "%08X" % crc}
    with _lock:
        _hash_cache[key] = hashes
    return hashes


def published(version):
    return version.get("status", "Published") == "Published"


def archived(model, version):
    return model.get("mode") == "Archived" or bool(version.get("archived"))


def public_files(version):
    return [f for f in version.get("files", []) if f.get("visibility", "Public") == "Public"]


def find_version(fx, vid):
    """(model, version) for a version id, or (None, None)."""
    for model in fx["models"]:
        for version in model.get("versions", []):
            if version["id"] == vid:
                return model, version
    return None, None


class CivitaiHandler(HubHandler):
    """Shared by both hosts: fixtures and the blob behind a file."""

    def fixtures(self):
        return load_fixtures(self.hub.root)

    def blob_path(self, fixture_file):
        return self.hub.file_path(fixture_file.get("blob", ""))


# ---------------------------------------------------------------------------
# The API host

class CivitaiApiHandler(CivitaiHandler):
    config_defaults = {"civitai_url_ttl": 3600, "civitai_quota": 0}

    def fault_status_reply(self, fault):
        headers = [("Cache-Control", "no-store, max-age=0")] if self.is_download else []
        body = {"error": MSG_QUOTA if fault.status == 429 else "Error %d" % fault.status}
        self.reply_json(fault.status, body, headers)

    def route(self):
        self.is_download = self.url_path.startswith("/api/download/")
        if self.begin(self.url_path.lstrip("/"), file=False) is None:
            return
        if self.command not in ("GET", "HEAD"):
            self.reply_json(405, {"error": "Method not allowed"})
            return
        fx = self.fixtures()
        user = self.user(fx)
        # For the tests: whom the API took the caller for, and whether a key
        # came in the query string (where it would travel with redirects).
        self.entry["civitai_user"] = user.get("username") if user else None
        self.entry["token_in_query"] = "token" in self.query
        path = self.url_path.rstrip("/")
        routes = [
            (r"/api/v1/me", self.me),
            (r"/api/v1/model-versions/by-hash/([^/]+)", self.by_hash),
            (r"/api/v1/model-versions/([^/]+)", self.model_version),
            (r"/api/v1/models/([^/]+)", self.model),
            (r"/api/download/models/([^/]+)", self.download),
        ]
        for pattern, handler in routes:
            m = re.fullmatch(pattern, path)
            if m:
                handler(fx, *m.groups())
                return
        self.reply_json(404, {"error": "Not found"})

    # -- who is asking -----------------------------------------------------
    def user(self, fx):
        """The user of a known key (Bearer, else ?token=), or None: an
        unknown key is no error, just anonymous (bearer-token.ts)."""
        auth = self.headers.get("Authorization") or ""
        key = auth.split(" ", 1)[1].strip() if " " in auth else None
        if not key:
            key = self.query.get("token", [None])[0]
        return fx["users"].get(key) if key else None

    def is_browser(self):
        return bool(BROWSER_RE.search(self.headers.get("User-Agent") or ""))

    # -- bodies ----------------------------------------------------------------
    def file_body(self, model, version, f, models_endpoint=False):
        path = self.blob_path(f)
        size = os.path.getsize(path) if path else 0
        hashes = dict(file_hashes(path)) if path else {}
        if f.get("sha256"):
            hashes["SHA256"] = f["sha256"].upper()
            hashes["AutoV2"] = hashes["SHA256"][:10]
        meta = f.get("metadata", {"format": "SafeTensor", "size": "pruned", "fp": "fp16"})
        body = {
            "id": f["id"], "name": f["name"], "type": f.get("type", "Model"),
            "sizeKB": size_kb(size), "metadata": meta,
            "pickleScanResult": "Success", "pickleScanMessage": "No Pickle imports",
            "virusScanResult": "Success", "virusScanMessage": None,
            "scannedAt": version.get("publishedAt", "2024-01-01T00:00:00.000Z"),
            "hashes": hashes,
            "downloadUrl": "%s/api/download/models/%d%s" % (
                self.hub.base_url("civitai"), version["id"],
                "" if f.get("primary") else "?" + urllib.parse.urlencode(
                    {"type": f.get("type", "Model"), "format": meta.get("format", "Other")})),
        }
        if f.get("primary"):
            body["primary"] = True
        elif not models_endpoint:
            body["primary"] = False
        return body

    def version_body(self, model, version, models_endpoint=False):
        files = [] if archived(model, version) else [
            self.file_body(model, version, f, models_endpoint) for f in public_files(version)]
        when = version.get("publishedAt", "2024-01-01T00:00:00.000Z")
        body = {
            "id": version["id"], "name": version.get("name", "v1"),
            "baseModel": version.get("baseModel", "SD 1.5"), "baseModelType": "Standard",
            "status": version.get("status", "Published"),
            "availability": "EarlyAccess" if version.get("early_access") else "Public",
            "nsfwLevel": 1, "createdAt": version.get("createdAt", when), "updatedAt": when,
            "publishedAt": when, "trainedWords": [],
            "usageControl": "Generation" if version.get("downloads_disabled") else "Download",
            "stats": {"downloadCount": 0, "thumbsUpCount": 0},
            "files": files, "images": [],
            "downloadUrl": "%s/api/download/models/%d" % (self.hub.base_url("civitai"),
                                                          version["id"]),
        }
        if not models_endpoint:
            body["modelId"] = model["id"]
            body["air"] = "urn:air:sd1:%s:civitai:%d@%d" % (
                model.get("type", "Checkpoint").lower(), model["id"], version["id"])
            body["model"] = {"name": model.get("name", "model"),
                             "type": model.get("type", "Checkpoint"),
                             "nsfw": False, "poi": False}
        return body

    # -- endpoints ---------------------------------------------------------------
    def me(self, fx):
        user = self.user(fx)
        if user is None:
            self.reply_json(401, {"error": "Unauthorized"})
            return
        self.reply_json(200, {
            "id": user.get("id", 1), "username": user.get("username", "tester"),
            "tier": None, "status": "active", "isMember": False, "subscriptions": [],
            "tokenScope": "Full", "buzzLimit": None, "subject": "api-key"})

    def model_version(self, fx, vid):
        model, version = find_version(fx, int(vid)) if vid.isdigit() else (None, None)
        if version is None or not published(version):
            self.reply_json(404, {"error": "Model not found"})
            return
        body = self.version_body(model, version)
        if body["files"] and not any(f.get("primary") for f in body["files"]):
            self.reply_json(404, {"error": "Missing model file"})
            return
        self.reply_json(200, body)

    def model(self, fx, mid):
        model = next((m for m in fx["models"] if mid.isdigit() and m["id"] == int(mid)), None)
        if model is None:
            self.reply_json(404, {"error": "No model with id %s" % mid})
            return
        self.reply_json(200, {
            "id": model["id"], "name": model.get("name", "model"), "description": "",
            "type": model.get("type", "Checkpoint"), "nsfw": False, "poi": False,
            "mode": model.get("mode"),
            "creator": {"username": model.get("creator", "creator"), "image": None},
            "tags": [], "modelVersions": [
                self.version_body(model, v, models_endpoint=True)
                for v in model.get("versions", []) if published(v)]})

    def by_hash(self, fx, value):
        want = urllib.parse.unquote(value).upper()
        found = []
        for model in fx["models"]:
            for version in model.get("versions", []):
                if not published(version) or archived(model, version):
                    continue
                for f in self.version_body(model, version)["files"]:
                    if want in f["hashes"].values():
                        found.append((version.get("publishedAt", ""), model, version))
        if not found:
            self.reply_json(404, {"error": "Model not found"})
            return
        _, model, version = min(found, key=lambda t: t[0])
        self.reply_json(200, self.version_body(model, version),
                        [("Cache-Control", "public, s-maxage=3600")])

    def download_error(self, status, body, browser_location=None):
        headers = [("Cache-Control", "no-store, max-age=0")]
        if self.is_browser():
            if browser_location:
                self.reply(307, browser_location.encode(), "text/plain",
                           headers + [("Location", browser_location)])
            else:
                self.reply(status, body.get("message", body["error"]).encode(),
                           "text/plain; charset=utf-8", headers)
            return
        self.reply_json(status, body, headers)

    def download(self, fx, vid):
        q = {k: v[0] for k, v in self.query.items()}
        if self.hub.get_config("civitai_quota"):
            self.download_error(429, {"error": MSG_QUOTA})
            return
        if not vid.isdigit() or ("fileId" in q and not q["fileId"].isdigit()):
            self.download_error(400, {"error": "Invalid request"})
            return
        model, version = find_version(fx, int(vid))
        if version is None or not published(version):
            self.download_error(404, {"error": "File not found"})
            return
        if archived(model, version):
            self.download_error(410, {"error": MSG_ARCHIVED})
            return
        user = self.user(fx)
        page = "/model-versions/%d" % version["id"]
        early = version.get("early_access")
        if early and not (user and user.get("username") in early.get("users", [])):
            self.download_error(403, {"error": "Early Access",
                                      "deadline": early.get("deadline"),
                                      "message": MSG_EARLY}, page)
            return
        if version.get("require_login") and user is None:
            login = "/login?" + urllib.parse.urlencode({"returnUrl": page,
                                                        "reason": "download-auth"})
            self.download_error(401, {"error": "Unauthorized", "message": MSG_LOGIN}, login)
            return
        if version.get("downloads_disabled"):
            self.download_error(401, {"error": "Unauthorized", "message": MSG_DISABLED})
            return
        f = self.choose_file(version, q)
        path = self.blob_path(f) if f else None
        if path is None:
            self.download_error(404, {"error": "File not found"})
            return
        url = presign(self.hub, f["blob"], f["name"])
        self.reply(307, url.encode(), "text/plain",
                   [("Cache-Control", "no-store, max-age=0"), ("Location", url)])

    def choose_file(self, version, q):
        files = public_files(version)
        if "fileId" in q:
            return next((f for f in files if f["id"] == int(q["fileId"])), None)
        if not any(k in q for k in ("type", "format", "size", "fp")):
            return next((f for f in files if f.get("primary")), None)
        for f in files:
            meta = f.get("metadata", {})
            if (q.get("type", f.get("type", "Model")) == f.get("type", "Model")
                    and all(q.get(k, meta.get(k)) == meta.get(k)
                            for k in ("format", "size", "fp"))):
                return f
        return None


# ---------------------------------------------------------------------------
# The storage host

def _disposition(name):
    return 'attachment; filename="%s"' % name.replace('"', "")


def presign(hub, blob, name, ttl=None):
    """A signed civstore URL for blob, served as `name`, like B2's."""
    if ttl is None:
        ttl = hub.get_config("civitai_url_ttl")
    expires = int(time.time()) + ttl
    disposition = _disposition(name)
    query = urllib.parse.urlencode([
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Expires", str(ttl)),
        ("Expires", str(expires)),
        ("X-Amz-Signature", hub.sign(blob + "\n" + disposition, expires)),
        ("response-content-disposition", disposition)])
    return "%s%s%s?%s" % (hub.base_url("civstore"), BUCKET_PREFIX,
                          urllib.parse.quote(blob), query)


def s3_error(code, message, resource):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            '<Message>%s</Message><Resource>%s</Resource></Error>'
            % (code, message, resource)).encode()


class CivitaiStorageHandler(CivitaiHandler):
    rejects_authorization = True

    def route(self):
        if not self.url_path.startswith(BUCKET_PREFIX):
            if self.begin(self.url_path.lstrip("/"), file=False) is not None:
                self.reply(404, error_page(404), "text/html")
            return
        blob = urllib.parse.unquote(self.url_path[len(BUCKET_PREFIX):])
        fault = self.begin(blob)
        if fault is None:
            return
        if self.command not in ("GET", "HEAD"):
            self.reply(405, error_page(405), "text/html", [("Allow", "GET, HEAD")])
            return
        if not self.check_access(blob):
            return
        path = self.hub.file_path(blob)
        if path is None:
            self.reply(404, s3_error("NoSuchKey", "The specified key does not exist.",
                                     self.url_path), "application/xml")
            return
        disposition = self.query.get("response-content-disposition", [""])[0]
        entity = FileEntity.from_stat(path, headers=[("Content-Disposition", disposition)])
        self.serve_entity(entity, fault)

    def check_access(self, blob):
        resource = self.url_path
        if "Authorization" in self.headers:
            self.reply(403, s3_error(
                "AccessDenied", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                "query parameter, Signature query string parameter or the Authorization "
                "header should be specified", resource), "application/xml")
            return False
        disposition = self.query.get("response-content-disposition", [""])[0]
        signature = self.query.get("X-Amz-Signature", [""])[0]
        try:
            expires = int(self.query.get("Expires", [""])[0])
        except ValueError:
            expires = None
        if expires is None or not self.hub.check_signature(blob + "\n" + disposition,
                                                           expires, signature):
            self.reply(403, s3_error("AccessDenied", "Access Denied", resource),
                       "application/xml")
            return False
        if time.time() > expires:
            self.reply(403, s3_error("AccessDenied", "Request has expired", resource),
                       "application/xml")
            return False
        return True


# name -> handler class; fakehub starts one server per entry.
SERVICES = {
    "civitai": CivitaiApiHandler,
    "civstore": CivitaiStorageHandler,
}
