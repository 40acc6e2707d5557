"""svc_hf: a fake Hugging Face Hub, as PROTOCOLS.md §1 describes the real one
and §6.1 asks a fake to reproduce.

Servers (one loopback port each, so libcurl and fetch() treat them as other
hosts):
  hf        the Hub origin: /resolve/, /api/resolve-cache/, the JSON APIs
  hfcdn     the signed CDN ("cas-bridge"/CloudFront): /xet-bridge-us/<id>/<sha256>
  hfcdn2    a second CDN the first one may 302 to (toggle hf_cdn_second_hop)
  hfmirror  a mirror endpoint (like hf-mirror.com) serving the same repos; it
            serves LFS bytes itself, and flags any Authorization as a leak (a
            mirror is a third party: the token is not for it)

Repos are data: REPOS below (a dict per repo: commits -> {path: file spec},
branches, tags, gated, private, disabled, renamed_from, authorized users),
extended or replaced at run time through the control API.  A file spec is
  {"text": "..."}                    a regular git file (ETag = git blob sha1)
  {"kind": K, "size": N, "seed": S}  an LFS file from genmodel (K = raw,
                                     safetensors, sparse); "xet": true adds
                                     the Xet headers; "lfs": false stores a
                                     genmodel file as a regular git file
Sparse fixtures (sizes past 4 GiB without writing them) have no real sha256:
they announce sha256("sparse:<size>:<seed>") or the spec's "sha256".
Bytes are materialised (genmodel) at the first request that needs the state,
under ROOT/_hf/blobs/, content-addressed.

Origin (hf, hfmirror) routes:
  GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}     prefix "", datasets/, spaces/
      regular file: 200/206 with X-Repo-Commit, ETag "<git sha1>" (variant
      hf_small_variant = "weak": W/"..."; "cache307": a 307 to a relative
      /api/resolve-cache/... URL whose 200 carries the headers), Accept-Ranges,
      text/plain; a range-less GET that accepts gzip gets a gzip, chunked body
      without Content-Length.
      LFS file: 302 to a signed hfcdn URL with X-Repo-Commit, X-Linked-Etag
      "<sha256>", X-Linked-Size, an unrelated ETag and "Found. Redirecting
      to ..." (Xet files add X-Xet-Hash and a Link with rel="xet-auth" and
      rel="xet-reconstruction-info"; with Accept: application/vnd.xet-fileinfo+json
      they answer 200 with the JSON file info instead).
      A renamed repo answers 307 with a relative Location on the new name.
  GET /api/resolve-cache/{types}/{repo}/{commit}/{path}?etag=...
  GET /api/{types}/{repo}[/revision/{rev}][?blobs=true]        model info
      (cardData from README.md's front matter, and its license as a tag)
  GET /api/{types}/{repo}/tree/{rev}[/{path}]?recursive=&expand=[&cursor=]
      pages of hf_tree_page_size entries, Link: <absolute next>; rel="next"
  GET /api/{types}/{repo}/xet-read-token/{rev}
  GET /api/whoami-v2
Errors are JSON {"error": msg} with X-Error-Code / X-Error-Message as in
§1.6: RepoNotFound (401 without a token, 404 with one), GatedRepo (401 without
a token, 403 for a user not on the list), RevisionNotFound, EntryNotFound
(with X-Repo-Commit), disabled (403), a bad token (401 "Invalid credentials in
Authorization header", on every endpoint), an encoded repo id (400), 429 from a
`fail` fault with RateLimit/RateLimit-Policy/Retry-After.  Metadata (model
info, tree) of a gated repo is public; only file bytes are gated.

CDN (hfcdn, hfcdn2): GET|HEAD with a valid unexpired signature; any
Authorization gets 403 (and "leak" in the request log); an expired URL gets
403 AccessDenied "Request has expired"; Range per hubcore (206, 416, If-Range);
a range-less GET of a file over hf_cdn_unranged_max gets 400 "<h1>400</h1>";
hf_cdn_gzip_ignores_range=1 answers a Range with 200 when Accept-Encoding has
gzip (CloudFront); hf_cdn_second_hop=1 makes hfcdn 302 to hfcdn2.  Every other
CDN toggle of §6.1 (ignore Range, truncate, 503 then success, changed ETag) is
a hubcore fault rule on server "hfcdn".

Run-time settings (POST /_control/config, reset by /_control/reset):
CONFIG_DEFAULTS below, and hubcore's cdn_ttl for the CDN signatures.

Fault keys (for rules' "path"): "<repo>/<path>" for resolve, resolve-cache and
CDN requests of a file (the CDN knows it from the signed URL), the URL path
without its leading "/" for the APIs ("api/whoami-v2",
"api/models/org/tiny/tree/main").

Control (on any server):
  GET  /_control/hf/repos           every repo: commits, branches, and per
                                    commit each file's size, sha256, git sha1,
                                    lfs flag and blob path on disk
  POST /_control/hf/repos           {"org/name": spec, ...}: add or replace
  POST /_control/hf/branch          {"repo": R, "branch": B, "commit": index|sha}
  POST /_control/reset              also restores REPOS and their branches
Tokens: TOKENS below (user "tester" is on every gated repo's list, user
"outsider" on none); any other Bearer value is invalid.
"""

import base64
import gzip
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse

import genmodel
from hubcore import FileEntity, HubHandler, error_page

MiB = 1 << 20
GiB = 1 << 30

TOKENS = {
    "hf_testerTOKEN0123456789abcdefghijklmn": {"name": "tester", "fullname": "Tester"},
    "hf_outsiderTOKEN0123456789abcdefghijkl": {"name": "outsider", "fullname": "Outsider"},
}
GOOD_TOKEN = "hf_testerTOKEN0123456789abcdefghijklmn"
OUTSIDER_TOKEN = "hf_outsiderTOKEN0123456789abcdefghijkl"


def _text(s):
    return {"text": s}


REPOS = {
    # Public model: regular files, LFS (one Xet), folders; 11 entries with
    # directories, so the recursive tree is two pages of 8.
    "org/tiny": {
        "commits": [
            {
                "config.json": _text('{"architectures": ["TinyModel"], "hidden_size": 64}\n'),
                "README.md": _text("---\nlicense: mit\n---\n# tiny\nA fake model for modelfs.\n"),
                "model.safetensors": {"kind": "safetensors", "size": 3 * MiB + 123, "seed": 1},
                "tokenizer/tokenizer.json": _text('{"version": "1.0", "model": {"type": "BPE"}}\n'),
                "tokenizer/vocab.txt": _text("a\nb\nc\n"),
                "transformer/config.json": _text('{"_class_name": "TinyTransformer"}\n'),
                "transformer/diffusion_pytorch_model.safetensors":
                    {"kind": "safetensors", "size": 2 * MiB + 7, "seed": 2, "xet": True},
                "onnx/model.onnx": {"kind": "raw", "size": MiB + 1, "seed": 3},
            },
            {   # a later commit: config and weights changed
                "config.json": _text('{"architectures": ["TinyModel"], "hidden_size": 128}\n'),
                "README.md": _text("---\nlicense: mit\n---\n# tiny\nVersion two.\n"),
                "model.safetensors": {"kind": "safetensors", "size": 3 * MiB + 4567, "seed": 11},
                "tokenizer/tokenizer.json": _text('{"version": "1.0", "model": {"type": "BPE"}}\n'),
                "tokenizer/vocab.txt": _text("a\nb\nc\nd\n"),
                "transformer/config.json": _text('{"_class_name": "TinyTransformer"}\n'),
                "transformer/diffusion_pytorch_model.safetensors":
                    {"kind": "safetensors", "size": 2 * MiB + 7, "seed": 2, "xet": True},
                "onnx/model.onnx": {"kind": "raw", "size": MiB + 1, "seed": 3},
            },
        ],
        "branches": {"main": 0, "dev": 1, "refs/pr/1": 1},
        "tags": {"v1.0": 0},
    },
    # Gated: metadata public, bytes only for users on the list.
    "org/gated": {
        "gated": "manual",
        "authorized": ["tester"],
        "commits": [{
            "config.json": _text('{"gated": true}\n'),
            "model.safetensors": {"kind": "safetensors", "size": MiB + 5, "seed": 5},
        }],
    },
    # Private: invisible (RepoNotFound) to everyone but the list.
    "org/private": {
        "private": True,
        "authorized": ["tester"],
        "commits": [{"weights.bin": {"kind": "raw", "size": 300000, "seed": 6}}],
    },
    # Sizes past 4 GiB, for 32-bit bugs.
    "org/huge": {
        "commits": [{"huge.safetensors": {"kind": "sparse", "size": 5 * GiB + 12345, "seed": 4}}],
    },
    # Renamed: the old name answers 307 to the new one.
    "neworg/renamed": {
        "renamed_from": ["oldorg/renamed"],
        "commits": [{"model.bin": {"kind": "raw", "size": 200000, "seed": 7}}],
    },
    "org/disabled": {
        "disabled": True,
        "commits": [{"model.bin": {"kind": "raw", "size": 1000, "seed": 8}}],
    },
    "datasets/org/data": {
        "commits": [{
            "data/train.parquet": {"kind": "raw", "size": 500000, "seed": 9},
            "README.md": _text("# a dataset\n"),
        }],
    },
}

# Run-time settings (/_control/config; hubcore takes no bools, so 0/1).
CONFIG_DEFAULTS = {
    "hf_small_variant": "plain",        # plain | weak | cache307
    "hf_tree_page_size": 8,
    "hf_gzip": 1,                       # gzip range-less GETs of regular files that accept it
    "hf_cdn_gzip_ignores_range": 0,
    "hf_cdn_unranged_max": 4 * GiB,
    "hf_cdn_second_hop": 0,
}

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
PLURAL = {"model": "models", "dataset": "datasets", "space": "spaces"}
HEX40 = re.compile(r"^[0-9a-f]{40}$")
BLOB_MTIME = 1735689600                 # 2025-01-01: blobs never change


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (sha256, size)).encode()


def repo_key(rtype, repo_id):
    return PREFIX[rtype] + repo_id


def _card_data(readme):
    """The model card's YAML front matter as the Hub's cardData, for the
    flat `key: value` lines the fixtures use (a README without one: {})."""
    if readme is None or readme.lfs:
        return {}
    with open(readme.blob, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    card = {}
    for line in (m.group(1).splitlines() if m else []):
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            card[key.strip()] = value.strip()
    return card


class HfFile:
    def __init__(self, path, size, sha256, git_sha1, lfs, xet, blob, pointer_size):
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.git_sha1 = git_sha1
        self.lfs = lfs
        self.xet = xet
        self.blob = blob
        self.pointer_size = pointer_size

    def describe(self):
        return {"size": self.size, "sha256": self.sha256, "git_sha1": self.git_sha1,
                "lfs": self.lfs, "xet": self.xet, "blob": self.blob}


class HfRepo:
    def __init__(self, key, spec, state):
        self.key = key
        for prefix, rtype in (("datasets/", "dataset"), ("spaces/", "space")):
            if key.startswith(prefix):
                self.type, self.id = rtype, key[len(prefix):]
                break
        else:
            self.type, self.id = "model", key
        self.spec = spec
        self.private = bool(spec.get("private", False))
        self.gated = spec.get("gated", False)
        self.disabled = bool(spec.get("disabled", False))
        self.authorized = set(spec.get("authorized", []))
        self.renamed_from = list(spec.get("renamed_from", []))
        self.commits = []               # [(sha, {path: HfFile})]
        for i, files in enumerate(spec["commits"]):
            built = {p: state.materialize(p, fs) for p, fs in sorted(files.items())}
            summary = json.dumps([(p, f.git_sha1) for p, f in sorted(built.items())])
            sha = hashlib.sha1(("%s@%d:%s" % (key, i, summary)).encode()).hexdigest()
            self.commits.append((sha, built))
        self.initial_refs = {}
        for name, target in spec.get("branches", {"main": len(self.commits) - 1}).items():
            self.initial_refs[name] = self.commit_sha(target)
        for name, target in spec.get("tags", {}).items():
            self.initial_refs[name] = self.commit_sha(target)
        self.refs = dict(self.initial_refs)

    def commit_sha(self, target):
        if isinstance(target, int):
            return self.commits[target][0]
        for sha, _ in self.commits:
            if sha == target:
                return sha
        raise ValueError("no commit %r in %s" % (target, self.key))

    def files_at(self, sha):
        for s, files in self.commits:
            if s == sha:
                return files
        return None

    def commit_date(self, sha):
        """The date of a commit, as the Hub's lastModified at that revision:
        commit i of a repo was made on day i after 2024-03-01 (UTC)."""
        index = next(i for i, (s, _) in enumerate(self.commits) if s == sha)
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                             time.gmtime(1709294400 + index * 86400 + 3600))

    def resolve_rev(self, rev):
        """The commit a revision names, or None."""
        if rev in self.refs:
            return self.refs[rev]
        if HEX40.match(rev) and self.files_at(rev) is not None:
            return rev
        return None

    def describe(self):
        return {"type": self.type, "id": self.id, "refs": dict(self.refs),
                "commits": [{"sha": sha, "date": self.commit_date(sha),
                             "files": {p: f.describe() for p, f in files.items()}}
                            for sha, files in self.commits]}


class HfState:
    """The hub-wide fake Hub: repos, refs, blobs.  All access under lock."""

    def __init__(self, root):
        self.lock = threading.RLock()
        self.blobs = os.path.join(str(root), "_hf", "blobs")
        os.makedirs(self.blobs, exist_ok=True)
        self.repos = {}
        self.by_sha = {}                # sha256 -> (repo key, path) for CDN fault keys
        for key, spec in REPOS.items():
            self.add(key, spec)

    def materialize(self, path, spec):
        if "text" in spec or "data" in spec:
            data = spec["text"].encode() if "text" in spec else base64.b64decode(spec["data"])
            sha256 = hashlib.sha256(data).hexdigest()
            blob = os.path.join(self.blobs, sha256)
            if not os.path.exists(blob):
                tmp = blob + ".tmp%d" % threading.get_ident()
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, blob)
            return HfFile(path, len(data), sha256, git_blob_sha1(data), False, False, blob, 0)
        kind, size, seed = spec.get("kind", "raw"), int(spec["size"]), int(spec.get("seed", 0))
        name = "%s-%d-%d" % (kind, size, seed)
        blob = os.path.join(self.blobs, name)
        sha_file = blob + ".sha256"
        if os.path.exists(sha_file):
            sha256 = open(sha_file).read().strip()
        else:
            tmp = blob + ".tmp%d" % threading.get_ident()
            sha256 = genmodel.generate(kind, tmp, size, seed)
            os.replace(tmp, blob)
            if sha256 is None:
                sha256 = spec.get("sha256") or hashlib.sha256(
                    ("sparse:%d:%d" % (size, seed)).encode()).hexdigest()
            with open(sha_file, "w") as f:
                f.write(sha256)
        lfs = bool(spec.get("lfs", True))
        if lfs:
            pointer = lfs_pointer(sha256, size)
            git_sha1 = git_blob_sha1(pointer)
            pointer_size = len(pointer)
        else:
            with open(blob, "rb") as f:
                git_sha1 = git_blob_sha1(f.read())
            pointer_size = 0
        return HfFile(path, size, sha256, git_sha1, lfs, bool(spec.get("xet")), blob,
                      pointer_size)

    def add(self, key, spec):
        with self.lock:
            repo = HfRepo(key, spec, self)
            self.repos[key] = repo
            for _, files in repo.commits:
                for f in files.values():
                    self.by_sha.setdefault(f.sha256, (repo.key, f.path))
            return repo

    def reset(self):
        with self.lock:
            self.repos = {}
            for key, spec in REPOS.items():
                self.add(key, spec)

    def find(self, rtype, repo_id):
        """(repo, renamed): the repo, and whether repo_id is an old name."""
        with self.lock:
            repo = self.repos.get(repo_key(rtype, repo_id))
            if repo is not None:
                return repo, False
            for r in self.repos.values():
                if r.type == rtype and repo_id in r.renamed_from:
                    return r, True
            return None, False


_state_lock = threading.Lock()


def hf_state(hub):
    """The hub's HfState, made at first use.  The hub's reset() (from
    /_control/reset on any server) then also restores the repos."""
    with _state_lock:
        state = getattr(hub, "hf_state", None)
        if state is None:
            state = HfState(hub.root)
            hub.hf_state = state
            hub_reset = hub.reset

            def reset():
                hub_reset()
                state.reset()
            hub.reset = reset
        return state


class HfError(Exception):
    def __init__(self, status, message, code=None, headers=()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = list(headers)


def _quote_path(path):
    return urllib.parse.quote(path, safe="/")


class HfHandler(HubHandler):
    """The Hub origin (server "hf")."""

    config_defaults = CONFIG_DEFAULTS
    serves_lfs_itself = False           # a mirror answers LFS files with the bytes

    # -- plumbing ---------------------------------------------------------------
    @property
    def state(self):
        return hf_state(self.hub)

    def base(self):
        return self.hub.base_url(self.server.name)

    def request_id(self):
        return "Root=1-fake-%08x" % (self.conn_id & 0xffffffff)

    def hf_error(self, err):
        headers = [("X-Request-Id", self.request_id()), ("X-Error-Message", err.message)]
        if err.code:
            headers.append(("X-Error-Code", err.code))
        headers += err.headers
        self.reply(err.status, json.dumps({"error": err.message}).encode(),
                   "application/json; charset=utf-8", headers)

    def fault_status_reply(self, fault):
        status = fault.status
        headers = [("X-Request-Id", self.request_id())]
        message = {429: "You have been rate-limited; you can retry this action in about %d "
                        "seconds." % fault.retry_after,
                   503: "Service Unavailable"}.get(status, error_page(status).decode())
        if status in (429, 503):
            headers.append(("Retry-After", str(fault.retry_after)))
        if status == 429:
            bucket = "resolvers" if "/resolve/" in self.url_path else "api"
            headers += [("RateLimit", '"%s";r=0;t=%d' % (bucket, fault.retry_after)),
                        ("RateLimit-Policy", '"fixed window";"%s";q=5000;w=300' % bucket)]
        self.reply(status, json.dumps({"error": message}).encode(),
                   "application/json; charset=utf-8", headers)

    def user(self):
        """The user of the request's token; None without one.  A token we
        do not know is refused (HfError), on every endpoint."""
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        scheme, _, token = auth.partition(" ")
        info = TOKENS.get(token.strip()) if scheme.lower() == "bearer" else None
        if info is None:
            raise HfError(401, "Invalid credentials in Authorization header")
        return info["name"]

    # -- control ------------------------------------------------------------------
    def _control(self):
        name = self.url_path[len("/_control/"):]
        if not name.startswith("hf/"):
            return super()._control()
        body = self._read_body()
        if body is None:
            return
        try:
            data = json.loads(body) if body.strip() else None
            state = self.state
            if (self.command, name) == ("GET", "hf/repos"):
                with state.lock:
                    self.reply_json(200, {k: r.describe() for k, r in state.repos.items()})
            elif (self.command, name) == ("POST", "hf/repos"):
                if not isinstance(data, dict):
                    raise ValueError("hf/repos: {\"org/name\": spec}")
                out = {k: state.add(k, spec).describe() for k, spec in data.items()}
                self.reply_json(200, out)
            elif (self.command, name) == ("POST", "hf/branch"):
                with state.lock:
                    repo = state.repos.get(data["repo"])
                    if repo is None:
                        raise ValueError("no repo %r" % data["repo"])
                    repo.refs[data["branch"]] = repo.commit_sha(data["commit"])
                    self.reply_json(200, repo.describe())
            else:
                self.reply_json(404, {"error": "no control endpoint %s %s"
                                      % (self.command, self.url_path)})
        except (ValueError, KeyError, TypeError) as e:
            self.reply_json(400, {"error": str(e)})

    # -- routing --------------------------------------------------------------------
    def route(self):
        raw = self.url_path
        parts = raw.split("/")[1:]
        key = raw.lstrip("/")
        file_key = None
        try:
            if parts[:1] == ["api"]:
                file_key = self.api_file_key(parts)
            else:
                target = self.parse_resolve(parts)
                if target is not None:
                    file_key = "%s/%s" % (target[1], target[3])
        except HfError:
            pass
        fault = self.begin(file_key or key, file=file_key is not None)
        if fault is None:
            return
        if self.command not in ("GET", "HEAD"):
            self.reply(405, error_page(405), "text/html", [("Allow", "GET, HEAD")])
            return
        try:
            if "%2f" in raw.lower().split("/resolve/")[0].split("/tree/")[0]:
                raise HfError(400, "Invalid repo name: the repo id must not be url-encoded")
            if parts[:1] == ["api"]:
                self.route_api(parts, fault)
            else:
                target = self.parse_resolve(parts)
                if target is None:
                    self.reply(404, error_page(404), "text/html")
                    return
                self.resolve(*target, fault=fault)
        except HfError as e:
            self.hf_error(e)

    def api_file_key(self, parts):
        # /api/resolve-cache/{types}/{owner}/{name}/{commit}/{path...}
        if len(parts) >= 7 and parts[1] == "resolve-cache":
            return "%s/%s/%s" % (urllib.parse.unquote(parts[3]), urllib.parse.unquote(parts[4]),
                                 urllib.parse.unquote("/".join(parts[6:])))
        return None

    def parse_resolve(self, parts):
        """(type, repo_id, rev, path) of a /resolve/ URL, or None."""
        rtype = "model"
        if parts[:1] in (["datasets"], ["spaces"]):
            rtype = TYPES[parts[0]]
            parts = parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo_id = "%s/%s" % (urllib.parse.unquote(parts[0]), urllib.parse.unquote(parts[1]))
        rev = urllib.parse.unquote(parts[3])
        path = urllib.parse.unquote("/".join(parts[4:]))
        if not path:
            return None
        return rtype, repo_id, rev, path

    # -- access -------------------------------------------------------------------------
    def repo_for(self, rtype, repo_id, user, for_bytes):
        """The repo a request may see, or HfError (§1.6 statuses)."""
        repo, renamed = self.state.find(rtype, repo_id)
        visible = repo is not None and (not repo.private or user in repo.authorized)
        if not visible:
            raise HfError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if repo.disabled:
            raise HfError(403, "Access to this resource is disabled.")
        if for_bytes and repo.gated and user not in repo.authorized:
            kind = repo.type
            if user is None:
                raise HfError(401, "Access to %s %s is restricted. You must have access to it "
                                   "and be authenticated to access it. Please log in."
                              % (kind, repo.id), "GatedRepo")
            raise HfError(403, "Access to %s %s is restricted and you are not in the "
                               "authorized list. Visit %s/%s%s to ask for access."
                          % (kind, repo.id, self.base(), PREFIX[repo.type], repo.id),
                          "GatedRepo")
        return repo, renamed

    def commit_for(self, repo, rev):
        sha = repo.resolve_rev(rev)
        if sha is None:
            raise HfError(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        return sha

    # -- /resolve/ --------------------------------------------------------------------------
    def resolve(self, rtype, repo_id, rev, path, fault):
        user = self.user()
        repo, renamed = self.repo_for(rtype, repo_id, user, for_bytes=True)
        if renamed:
            # Relative, on the new name: the client keeps its Authorization.
            loc = "/%s%s/resolve/%s/%s" % (PREFIX[rtype], repo.id,
                                          urllib.parse.quote(rev, safe=""), _quote_path(path))
            self.reply(307, ("Temporary Redirect. Redirecting to %s" % loc).encode(),
                       "text/plain; charset=utf-8", [("Location", loc)])
            return
        sha = self.commit_for(repo, rev)
        f = repo.files_at(sha).get(path)
        if f is None:
            raise HfError(404, "Entry not found", "EntryNotFound", [("X-Repo-Commit", sha)])
        commit_hdr = [("X-Repo-Commit", sha), ("X-Request-Id", self.request_id())]
        if not f.lfs:
            variant = self.hub.get_config("hf_small_variant")
            if variant == "cache307":
                loc = "/api/resolve-cache/%s/%s/%s/%s?%%2F%s%%2Fresolve%%2F%s%%2F%s&etag=%%22%s%%22" % (
                    PLURAL[rtype], repo.id, sha, _quote_path(path),
                    urllib.parse.quote(repo.id, safe=""), sha,
                    urllib.parse.quote(path, safe=""), f.git_sha1)
                self.reply(307, ("Temporary Redirect. Redirecting to %s" % loc).encode(),
                           "text/plain; charset=utf-8", [("Location", loc)])
                return
            self.serve_regular(f, commit_hdr, fault, weak=variant == "weak")
            return
        if self.serves_lfs_itself:
            self.serve_lfs(f, commit_hdr, fault)
            return
        xet_headers = []
        if f.xet:
            xet_headers = [
                ("X-Xet-Hash", hashlib.sha256(b"xet" + f.sha256.encode()).hexdigest()),
                ("Link", '<%s/api/%s/%s/xet-read-token/%s>; rel="xet-auth", '
                         '<%s/reconstruction/%s>; rel="xet-reconstruction-info"'
                 % (self.base(), PLURAL[rtype], repo.id, sha, self.base(),
                    hashlib.sha256(b"xet" + f.sha256.encode()).hexdigest()))]
        if f.xet and "application/vnd.xet-fileinfo+json" in self.headers.get("Accept", ""):
            xhash = xet_headers[0][1]
            body = {"casUrl": self.base(), "hash": xhash,
                    "refreshUrl": "%s/api/%s/%s/xet-read-token/%s" % (
                        self.base(), PLURAL[rtype], repo.id, sha),
                    "size": f.size, "etag": f.sha256}
            self.reply(200, json.dumps(body).encode(), "application/vnd.xet-fileinfo+json",
                       commit_hdr + xet_headers + [("X-Linked-Size", str(f.size)),
                                                   ("X-Linked-Etag", '"%s"' % f.sha256),
                                                   ("ETag", '"%s"' % f.git_sha1)])
            return
        url = self.cdn_url("hfcdn", f)
        self.reply(302, ("Found. Redirecting to %s" % url).encode(), "text/plain; charset=utf-8",
                   commit_hdr + xet_headers + [
                       ("Location", url),
                       ("X-Linked-Etag", '"%s"' % f.sha256),
                       ("X-Linked-Size", str(f.size)),
                       ("ETag", '"%s"' % f.git_sha1),    # the pointer's: not the content's
                       ("Accept-Ranges", "bytes"),
                       ("Vary", "Origin, Accept")])

    def cdn_url(self, server, f):
        ttl = self.hub.get_config("cdn_ttl")
        expires = int(time.time()) + ttl
        ident = hashlib.sha1(f.sha256.encode()).hexdigest()[:16]
        rel = "xet-bridge-us/%s/%s" % (ident, f.sha256)
        name = os.path.basename(f.path)
        disp = "inline; filename*=UTF-8''%s; filename=\"%s\";" % (urllib.parse.quote(name), name)
        query = urllib.parse.urlencode([
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Expires", str(ttl)),
            ("response-content-disposition", disp), ("Expires", str(expires)),
            ("Signature", self.hub.sign(rel, expires)), ("Key-Pair-Id", "KFAKEHUB")])
        return "%s/%s?%s" % (self.hub.base_url(server), rel, query)

    def serve_regular(self, f, headers, fault, weak=False):
        etag = ('W/"%s"' if weak else '"%s"') % f.git_sha1
        if (self.command == "GET" and "Range" not in self.headers
                and self.hub.get_config("hf_gzip")
                and "gzip" in self.headers.get("Accept-Encoding", "").lower()):
            self.send_gzip(f, etag, headers)
            return
        entity = FileEntity(f.blob, f.size, BLOB_MTIME, etag, "text/plain; charset=utf-8",
                            headers)
        self.serve_entity(entity, fault)

    def serve_lfs(self, f, headers, fault):
        entity = FileEntity(f.blob, f.size, BLOB_MTIME, '"%s"' % f.sha256,
                            "application/octet-stream",
                            headers + [("X-Linked-Size", str(f.size)),
                                       ("X-Linked-Etag", '"%s"' % f.sha256)])
        self.serve_entity(entity, fault)

    def send_gzip(self, f, etag, headers):
        """The Hub's compressed text answer: chunked, no Content-Length."""
        with open(f.blob, "rb") as fp:
            body = gzip.compress(fp.read())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("ETag", etag)
        self.send_header("Vary", "Accept-Encoding")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        half = len(body) // 2
        for piece in (body[:half], body[half:]):
            if piece:
                self._write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        self._write(b"0\r\n\r\n")

    # -- /api/ -------------------------------------------------------------------------------
    def route_api(self, parts, fault):
        if parts[1:] == ["whoami-v2"]:
            self.whoami()
            return
        if len(parts) >= 7 and parts[1] == "resolve-cache" and parts[2] in TYPES:
            self.resolve_cache(TYPES[parts[2]], parts, fault)
            return
        if len(parts) >= 4 and parts[1] in TYPES:
            rtype = TYPES[parts[1]]
            repo_id = "%s/%s" % (urllib.parse.unquote(parts[2]), urllib.parse.unquote(parts[3]))
            rest = parts[4:]
            if not rest:
                self.model_info(rtype, repo_id, None)
                return
            if rest[0] == "revision" and len(rest) >= 2:
                self.model_info(rtype, repo_id, urllib.parse.unquote("/".join(rest[1:])))
                return
            if rest[0] == "tree" and len(rest) >= 2:
                rev = urllib.parse.unquote(rest[1])
                sub = urllib.parse.unquote("/".join(rest[2:])).strip("/")
                self.tree(rtype, repo_id, rev, sub)
                return
            if rest[0] == "xet-read-token" and len(rest) >= 2:
                self.xet_token(rtype, repo_id, urllib.parse.unquote(rest[1]))
                return
        self.reply(404, json.dumps({"error": "Sorry, we can't find the page you are "
                                             "looking for."}).encode(),
                   "application/json; charset=utf-8")

    def whoami(self):
        user = self.user()
        if user is None:
            raise HfError(401, "Invalid username or password.")
        info = next(v for v in TOKENS.values() if v["name"] == user)
        self.reply_json(200, {
            "type": "user", "id": "u-" + user, "name": user, "fullname": info["fullname"],
            "email": "%s@example.com" % user, "emailVerified": True, "isPro": False,
            "canPay": False, "avatarUrl": "", "periodEnd": None, "billingMode": "prepaid",
            "orgs": [],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": "ci", "role": "read",
                                     "createdAt": "2024-01-01T00:00:00.000Z"}}})

    def api_repo(self, rtype, repo_id, user):
        """The repo for an API path; a renamed repo redirects (307, relative)."""
        repo, renamed = self.repo_for(rtype, repo_id, user, for_bytes=False)
        if renamed:
            loc = self.url_path.replace("/%s/" % repo_id, "/%s/" % repo.id, 1)
            if self.raw_query:
                loc += "?" + self.raw_query
            self.reply(307, b"", "text/plain", [("Location", loc)])
            return None
        return repo

    def model_info(self, rtype, repo_id, rev):
        user = self.user()
        repo = self.api_repo(rtype, repo_id, user)
        if repo is None:
            return
        sha = self.commit_for(repo, rev or "main")
        files = repo.files_at(sha)
        blobs = self.query.get("blobs", ["false"])[0] == "true"
        siblings = []
        for path, f in sorted(files.items()):
            s = {"rfilename": path}
            if blobs:
                s.update(size=f.size, blobId=f.git_sha1)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(s)
        total = sum(f.size for f in files.values())
        card = _card_data(files.get("README.md"))
        self.reply_json(200, {
            "_id": hashlib.sha1(repo.key.encode()).hexdigest()[:24], "id": repo.id,
            "author": repo.id.split("/")[0], "sha": sha, "private": repo.private,
            "gated": repo.gated, "disabled": repo.disabled,
            "lastModified": repo.commit_date(sha), "createdAt": "2024-02-01T00:00:00.000Z",
            "downloads": 0, "likes": 0, "library_name": "transformers",
            "tags": ["safetensors"] + (["license:" + card["license"]] if "license" in card else []),
            "siblings": siblings, "usedStorage": total, "cardData": card,
            "safetensors": {"parameters": {"BF16": 1000000}, "total": 1000000}},
            [("X-Repo-Commit", sha)])

    def tree(self, rtype, repo_id, rev, sub):
        user = self.user()
        repo = self.api_repo(rtype, repo_id, user)
        if repo is None:
            return
        sha = self.commit_for(repo, rev)
        files = repo.files_at(sha)
        recursive = self.query.get("recursive", ["false"])[0] in ("true", "1", "True")
        expand = self.query.get("expand", ["false"])[0] in ("true", "1", "True")
        dirs = set()
        for path in files:
            segs = path.split("/")
            for i in range(1, len(segs)):
                dirs.add("/".join(segs[:i]))
        if sub and sub not in dirs and sub not in files:
            raise HfError(404, '%s does not exist on "%s"' % (sub, rev), "EntryNotFound",
                          [("X-Repo-Commit", sha)])
        prefix = sub + "/" if sub else ""
        entries = []
        for d in sorted(dirs):
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
                oid = hashlib.sha1(("tree:%s:%s" % (sha, d)).encode()).hexdigest()
                entries.append({"type": "directory", "oid": oid, "size": 0, "path": d})
        for path, f in sorted(files.items()):
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]):
                e = {"type": "file", "oid": f.git_sha1, "size": f.size, "path": path}
                if f.lfs:
                    e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
                if f.xet:
                    e["xetHash"] = hashlib.sha256(b"xet" + f.sha256.encode()).hexdigest()
                if expand:
                    e["lastCommit"] = {"id": sha, "title": "Upload", "date":
                                       "2025-01-01T00:00:00.000Z"}
                    e["securityFileStatus"] = {"status": "safe"}
                entries.append(e)
        if sub in files:                # a file's own path lists that file
            f = files[sub]
            entries = [{"type": "file", "oid": f.git_sha1, "size": f.size, "path": sub}]
            if f.lfs:
                entries[0]["lfs"] = {"oid": f.sha256, "size": f.size,
                                     "pointerSize": f.pointer_size}
        # Directories and files in one path order, as the Hub lists them.
        entries.sort(key=lambda e: e["path"])
        page = max(1, self.hub.get_config("hf_tree_page_size"))
        cursor = self.query.get("cursor", [""])[0]
        try:
            start = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        except (ValueError, UnicodeDecodeError):
            raise HfError(400, "Invalid cursor")
        chunk = entries[start:start + page]
        headers = [("X-Repo-Commit", sha)]
        if start + page < len(entries):
            nxt = base64.urlsafe_b64encode(str(start + page).encode()).decode()
            q = [(k, v) for k, vs in self.query.items() if k != "cursor" for v in vs]
            q.append(("cursor", nxt))
            url = "%s%s?%s" % (self.base(), self.url_path, urllib.parse.urlencode(q))
            headers.append(("Link", '<%s>; rel="next"' % url))
        self.reply_json(200, chunk, headers)

    def xet_token(self, rtype, repo_id, rev):
        user = self.user()
        repo, _ = self.repo_for(rtype, repo_id, user, for_bytes=True)
        self.commit_for(repo, rev)
        self.reply_json(200, {"casUrl": self.base(), "exp": int(time.time()) + 3600,
                              "accessToken": "xet_fake"},
                        [("X-Xet-Cas-Url", self.base()), ("X-Xet-Access-Token", "xet_fake"),
                         ("X-Xet-Token-Expiration", str(int(time.time()) + 3600))])

    def resolve_cache(self, rtype, parts, fault):
        user = self.user()
        repo_id = "%s/%s" % (urllib.parse.unquote(parts[3]), urllib.parse.unquote(parts[4]))
        repo, _ = self.repo_for(rtype, repo_id, user, for_bytes=True)
        sha = urllib.parse.unquote(parts[5])
        files = repo.files_at(sha)
        path = urllib.parse.unquote("/".join(parts[6:]))
        f = files.get(path) if files is not None else None
        if f is None or f.lfs:
            raise HfError(404, "Entry not found", "EntryNotFound")
        self.serve_regular(f, [("X-Repo-Commit", sha), ("X-Request-Id", self.request_id())],
                           fault)


class HfMirrorHandler(HfHandler):
    """A mirror endpoint: the same repos, LFS bytes served in place, and no
    business seeing the user's Hugging Face token."""
    rejects_authorization = True
    serves_lfs_itself = True


class HfCdnHandler(HubHandler):
    """The signed CDN behind /resolve/ (servers "hfcdn" and "hfcdn2")."""
    rejects_authorization = True

    def route(self):
        m = re.match(r"^/(xet-bridge-us/[0-9a-f]{16}/([0-9a-f]{64}))$", self.url_path)
        state = hf_state(self.hub)
        repo_path = state.by_sha.get(m.group(2)) if m else None
        fault = self.begin("%s/%s" % repo_path if repo_path else self.url_path.lstrip("/"),
                           file=repo_path is not None)
        if fault is None:
            return
        if self.command not in ("GET", "HEAD"):
            self.reply(405, error_page(405), "text/html", [("Allow", "GET, HEAD")])
            return
        if m is None or repo_path is None:
            self.reply(404, self.s3_error("NoSuchKey", "The specified key does not exist."),
                       "application/xml")
            return
        rel, sha = m.group(1), m.group(2)
        if "Authorization" in self.headers:
            self.reply(400, self.s3_error(
                "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                "query parameter, Signature query string parameter or the Authorization header "
                "should be specified"), "application/xml")
            return
        try:
            expires = int(self.query.get("Expires", [""])[0])
        except ValueError:
            expires = None
        signature = self.query.get("Signature", [""])[0]
        if expires is None or not self.hub.check_signature(rel, expires, signature):
            self.reply(403, self.s3_error("AccessDenied", "Access Denied"), "application/xml")
            return
        if time.time() > expires:
            self.reply(403, self.s3_error("AccessDenied", "Request has expired"),
                       "application/xml")
            return
        repo_key_, path = repo_path
        with state.lock:
            f = None
            for repo in state.repos.values():
                for _, files in repo.commits:
                    for cand in files.values():
                        if cand.sha256 == sha:
                            f = cand
        if f is None:
            self.reply(404, self.s3_error("NoSuchKey", "The specified key does not exist."),
                       "application/xml")
            return
        if self.server.name == "hfcdn" and self.hub.get_config("hf_cdn_second_hop"):
            url = "%s/%s?%s" % (self.hub.base_url("hfcdn2"), rel, urllib.parse.urlencode([
                ("Expires", str(expires)), ("Signature", self.hub.sign(rel, expires))]))
            self.reply(302, b"", "text/plain", [("Location", url)])
            return
        if (self.command == "GET" and "Range" not in self.headers
                and f.size > self.hub.get_config("hf_cdn_unranged_max")):
            self.reply(400, b"<h1>400</h1>", "text/html")
            return
        if (self.hub.get_config("hf_cdn_gzip_ignores_range")
                and "gzip" in self.headers.get("Accept-Encoding", "").lower()):
            fault.effects["ignore_range"] = True
        name = os.path.basename(f.path)
        entity = FileEntity(f.blob, f.size, BLOB_MTIME, '"%s"' % f.sha256,
                            "application/octet-stream",
                            [("Content-Disposition", "inline; filename*=UTF-8''%s; filename=\"%s\";"
                              % (urllib.parse.quote(name), name)),
                             ("X-Cache", "Miss from fakehub")])
        self.serve_entity(entity, fault)

    def s3_error(self, code, message):
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s'
                '</Message><RequestId>FAKEHUB</RequestId></Error>' % (code, message)).encode()


SERVICES = {
    "hf": HfHandler,
    "hfcdn": HfCdnHandler,
    "hfcdn2": HfCdnHandler,
    "hfmirror": HfMirrorHandler,
}
