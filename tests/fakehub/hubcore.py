"""hubcore: the shared core of fakehub, the fake remote services for modelfs tests.

Every fake "host" is a ThreadingHTTPServer on its own loopback port, so that
libcurl treats each as a separate host (cross-host redirect rules are real).
All servers of one fakehub process share one `Hub`: the file root, the URL
signing secret, the fault table, the request log and the run-time config.

What this module emulates, and how exactly (RFC 9110/7233, as nginx does it):
  * Byte ranges: a single `bytes=a-b`, `a-` or `-n` gives 206 with an exact
    `Content-Range: bytes a-b/total` and `Content-Length`; a range starting at
    or past the end (or `-0`, or any range of an empty file) gives 416 with
    `Content-Range: bytes */total`.  An invalid header (`b < a`, junk, another
    unit) is ignored: 200 with the whole file, as RFC 9110 14.2 allows.
    Multi-range (`a-b,c-d`) is also answered 200 with the whole file (the RFC
    allows ignoring Range; we never send multipart/byteranges).  Range is only
    honoured on GET; HEAD gets 200 headers (RFC 9110 14.2: ignore Range on
    other methods).
  * `If-Range`: a strong ETag equal to the current one, or an HTTP-date equal
    to Last-Modified, keeps the Range; anything else (a weak `W/` tag too)
    gives 200 with the full body.  `If-Match` that does not match gives 412.
  * HTTP/1.1 keep-alive with an exact Content-Length on every response
    (errors included), so clients reuse connections; bodies go out with
    os.sendfile(), never read into memory.

Faults (the control API, on every server, acts on the hub-wide table):
  POST /_control/faults   body: one rule object or a list of them; adds rules
  GET  /_control/faults   the rules in force
  DELETE /_control/faults drop all rules
  POST /_control/reset    drop rules, the request log and config changes;
                          release every request held by a `hang` fault
  GET  /_control/requests the request log (`?server=NAME` to filter)
  GET|POST /_control/config   run-time settings (see DEFAULT_CONFIG)
  GET  /_control/presign?path=REL[&ttl=S]   a signed CDN URL for REL
  GET  /_control/ports    {"origin": port, ...}
A rule (see FaultRule) matches by server name glob, method and an fnmatch
glob on the service's fault key (for origin and cdn: the file's relpath).
Control paths are never logged and never subject to faults.
"""

import copy
import email.utils
import fnmatch
import hashlib
import hmac
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_CONFIG = {
    # Lifetime of signed CDN URLs handed out by /redirect/ (seconds; may be
    # negative to hand out URLs that are already expired).
    "cdn_ttl": 3600,
}

# Body of the error pages, in nginx's shape.
_STATUS_TEXT = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Not Allowed", 408: "Request Time-out", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large",
    416: "Requested Range Not Satisfiable", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out",
}

SENDFILE_CHUNK = 16 << 20      # accounting granularity for os.sendfile


def error_page(status):
    """The small HTML page nginx sends with an error status."""
    title = "%d %s" % (status, _STATUS_TEXT.get(status, "Error"))
    return ("<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n"
            "<center><h1>%s</h1></center>\r\n<hr><center>fakehub</center>\r\n"
            "</body>\r\n</html>\r\n" % (title, title)).encode()


# ---------------------------------------------------------------------------
# Range and validator arithmetic (pure functions, unit-testable)

UNSATISFIABLE = "unsatisfiable"
_RANGE_SPEC = re.compile(r"^(\d*)-(\d*)$")


def parse_range(header, size):
    """Interpret a Range header for a representation of `size` bytes.

    Returns (first, last) inclusive for a satisfiable single range,
    UNSATISFIABLE for a syntactically valid but unsatisfiable one, and None
    when the header must be ignored (invalid syntax, other unit, multi-range).
    """
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in ranges.split(",") if s.strip()]
    if len(specs) != 1:
        return None                     # multi-range: we send the whole file
    m = _RANGE_SPEC.match(specs[0])
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":                     # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return (max(0, size - n), size - 1)
    a = int(first)
    b = int(last) if last != "" else None
    if b is not None and b < a:
        return None                     # invalid: RFC says ignore the header
    if a >= size:
        return UNSATISFIABLE
    return (a, size - 1 if b is None or b >= size else b)


def if_range_matches(value, etag, last_modified):
    """RFC 9110 13.1.5: does If-Range `value` still designate the
    representation with strong `etag` and `last_modified` (epoch seconds)?"""
    value = value.strip()
    if value.startswith("W/"):
        return False                    # weak tags never match If-Range
    if value.startswith('"'):
        return not etag.startswith("W/") and value == etag
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    if when is None:
        return False
    return int(when.timestamp()) == int(last_modified)


def etag_list_matches(header, etag):
    """If-Match: `*` or a list of strong tags containing `etag`."""
    header = header.strip()
    if header == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return not etag.startswith("W/") and etag in tags


def http_date(epoch):
    return email.utils.formatdate(epoch, usegmt=True)


# ---------------------------------------------------------------------------
# Faults

class FaultRule:
    """One fault rule, as posted to /_control/faults.

    Selectors:
      server   fnmatch glob on the server name ("origin", "cdn"); default "*"
      path     fnmatch glob on the fault key (relpath); default "*"
      method   "GET", "HEAD"... or a list of them; default any
      times    the rule applies to this many matching requests, then is
               dropped; default: until reset
    Effects:
      down            true: close the connection without answering;
                      "reset": the same but with a TCP RST
      hang            true: never answer; released (connection closed) by reset
      fail            [status, ...]: the next matching requests get these
                      statuses, one each, in order; then the rule stops failing
      retry_after     seconds for the Retry-After of a `fail` 429/503; default 1
      header_delay_ms sleep before sending the status line
      delay_ms        sleep after the headers, before the body
      rate_bps        throttle the body to this many bytes/s
      truncate_after  send the headers with the full Content-Length, then
                      only this many body bytes, then close
      ignore_range    answer a Range request with 200 and the full body
      html_error      answer with 200 text/html "<html>...Error...</html>"
      wrong_content_range  206 with Content-Range shifted by +1 (body right)
      etag            serve with this ETag (the file "changed"); If-Range
                      with the old tag then gives 200
      report_size     claim the file has this many bytes (Content-Range
                      total, Content-Length of a 200); the body is cut short
      no_validators   send neither ETag nor Last-Modified (a dynamic
                      server); If-Range then never matches
      disposition     serve with this Content-Disposition (replacing the
                      file's own), sent as given: a server choosing a
                      hostile name; it must be latin-1 with no CR or LF
                      (a raw line break would end the header; a name with
                      one comes percent-encoded, filename*=UTF-8''a%0Ab)
      chaos           {"seed": S, "p": P}: each matching request, with
                      probability P, gets one fault drawn from CHAOS_KINDS
                      (a reset, a body cut short or after N bytes, a wrong
                      Content-Range, a 200 to a Range, an HTML page, a 503
                      or 429, a stall), from a generator seeded with S: the
                      same requests in the same order get the same faults
    When several rules match, they apply in the order posted and a later
    rule's value wins; `fail` statuses are taken from the first matching rule
    that still has some.
    """

    SELECTORS = {"server", "path", "method", "times"}
    EFFECTS = {"down", "hang", "fail", "retry_after", "header_delay_ms",
               "delay_ms", "rate_bps", "truncate_after", "ignore_range",
               "html_error", "wrong_content_range", "etag", "no_validators",
               "report_size", "disposition", "chaos"}

    def __init__(self, spec, rule_id):
        if not isinstance(spec, dict):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(spec) - self.SELECTORS - self.EFFECTS
        if unknown:
            raise ValueError("unknown fault keys: %s" % ", ".join(sorted(unknown)))
        self.id = rule_id
        self.server = _want(spec, "server", str, "*")
        self.path = _want(spec, "path", str, "*")
        method = spec.get("method")
        if method is None:
            self.methods = None
        elif isinstance(method, str):
            self.methods = {method.upper()}
        elif isinstance(method, list) and all(isinstance(m, str) for m in method):
            self.methods = {m.upper() for m in method}
        else:
            raise ValueError("method: a string or a list of strings")
        self.times = _want(spec, "times", int, None, minimum=1)
        self.fail = list(_want(spec, "fail", list, []))
        if not all(isinstance(s, int) and 100 <= s <= 599 for s in self.fail):
            raise ValueError("fail: a list of HTTP statuses")
        down = spec.get("down", False)
        if down not in (True, False, "reset"):
            raise ValueError('down: true, false or "reset"')
        self.effects = {}
        for key in ("hang", "ignore_range", "html_error", "wrong_content_range",
                    "no_validators"):
            if _want(spec, key, bool, False):
                self.effects[key] = True
        if down:
            self.effects["down"] = down
        for key in ("header_delay_ms", "delay_ms", "truncate_after", "report_size"):
            value = _want(spec, key, int, None, minimum=0)
            if value is not None:
                self.effects[key] = value
        rate = _want(spec, "rate_bps", int, None, minimum=1)
        if rate is not None:
            self.effects["rate_bps"] = rate
        chaos = _want(spec, "chaos", dict, None)
        self.chaos = None
        if chaos is not None:
            seed = _want(chaos, "seed", int, 0)
            p = chaos.get("p", 0.3)
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError("chaos.p: a probability from 0 to 1")
            self.chaos = (random.Random(seed), float(p))
            self.effects["chaos"] = True
        etag = _want(spec, "etag", str, None)
        if etag is not None:
            self.effects["etag"] = etag
        disposition = _want(spec, "disposition", str, None)
        if disposition is not None:
            if "\r" in disposition or "\n" in disposition:
                raise ValueError("disposition: no CR or LF (percent-encode them)")
            try:
                disposition.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError("disposition: latin-1 only (percent-encode the rest)")
            self.effects["disposition"] = disposition
        self.retry_after = _want(spec, "retry_after", int, 1, minimum=0)
        self.spec = dict(spec)
        self.uses = 0

    def matches(self, server, method, key):
        return (fnmatch.fnmatchcase(server, self.server)
                and fnmatch.fnmatchcase(key, self.path)
                and (self.methods is None or method in self.methods))

    def describe(self):
        d = dict(self.spec)
        d.update(id=self.id, uses=self.uses, fail_left=list(self.fail),
                 times_left=self.times)
        return d


def _want(spec, key, typ, default, minimum=None):
    if key not in spec or spec[key] is None:
        return default
    value = spec[key]
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("%s: an integer" % key)
    if not isinstance(value, typ):
        raise ValueError("%s: a %s" % (key, typ.__name__))
    if minimum is not None and value < minimum:
        raise ValueError("%s: at least %d" % (key, minimum))
    return value


# What a chaos rule draws from: each a set of effects, or a status.
CHAOS_KINDS = (
    {"down": "reset"},
    {"truncate_after": 0},
    {"truncate_after": None},           # cut after a drawn number of bytes
    {"wrong_content_range": True},
    {"ignore_range": True},
    {"html_error": True},
    503,
    429,
    {"delay_ms": None},                 # a stall of a drawn length
    {"header_delay_ms": None},
)


def chaos_draw(rng, p):
    """The faults for one request of a chaos rule: None, effects or a status."""
    if rng.random() >= p:
        return None
    kind = rng.choice(CHAOS_KINDS)
    if isinstance(kind, int):
        return kind
    drawn = dict(kind)
    for k, v in drawn.items():
        if v is None:
            drawn[k] = rng.randrange(1, 1 << 20) if k == "truncate_after" \
                else rng.randrange(50, 1500)
    return drawn


class Fault:
    """The effects that apply to one request (merged from matching rules)."""

    def __init__(self, effects=None, status=None, retry_after=1, rule_ids=()):
        self.effects = effects or {}
        self.status = status            # a `fail` status, or None
        self.retry_after = retry_after
        self.rule_ids = list(rule_ids)

    def get(self, key, default=None):
        return self.effects.get(key, default)

    def summary(self):
        s = dict(self.effects)
        if self.status is not None:
            s["fail"] = self.status
        return s


class FaultTable:
    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []
        self._next_id = 1

    def add(self, specs):
        """Validate all, then add all (so a bad list adds nothing)."""
        with self._lock:
            rules = []
            for spec in specs:
                rules.append(FaultRule(spec, self._next_id + len(rules)))
            self._next_id += len(rules)
            self._rules.extend(rules)
            return [r.describe() for r in rules]

    def clear(self):
        with self._lock:
            self._rules = []

    def describe(self):
        with self._lock:
            return [r.describe() for r in self._rules]

    def take(self, server, method, key):
        """The Fault for one request; consumes `times` and `fail` entries."""
        with self._lock:
            effects, status, retry_after, ids = {}, None, 1, []
            for rule in self._rules:
                if not rule.matches(server, method, key):
                    continue
                effects.update(rule.effects)
                if rule.chaos:
                    effects.pop("chaos", None)
                    drawn = chaos_draw(*rule.chaos)
                    if isinstance(drawn, int):
                        status, retry_after = drawn, 0
                    elif drawn:
                        effects.update(drawn)
                if status is None and rule.fail:
                    status = rule.fail.pop(0)
                    retry_after = rule.retry_after
                rule.uses += 1
                if rule.times is not None:
                    rule.times -= 1
                ids.append(rule.id)
            self._rules = [r for r in self._rules
                           if (r.times is None or r.times > 0)
                           and (r.effects or r.fail)]
            return Fault(effects, status, retry_after, ids)


# ---------------------------------------------------------------------------
# Request log

class RequestLog:
    """Every non-control request, in arrival order.  An entry is appended when
    the request arrives and completed when its response ends, so a request
    held by `hang` shows with "status": null."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries = []
        self._seq = 0

    def begin(self, entry):
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)
        return entry

    def clear(self):
        with self._lock:
            self._entries = []

    def snapshot(self, server=None):
        with self._lock:
            entries = [e for e in self._entries
                       if server is None or e["server"] == server]
            return copy.deepcopy(entries)


# ---------------------------------------------------------------------------
# The hub and its servers

class Hub:
    """State shared by all fake servers of one fakehub process."""

    def __init__(self, root, bind="127.0.0.1", secret=None):
        self.root = Path(root).resolve()
        self.bind = bind
        self.secret = secret if secret is not None else os.urandom(16)
        self.faults = FaultTable()
        self.log = RequestLog()
        self.config_defaults = dict(DEFAULT_CONFIG)
        self.config = dict(DEFAULT_CONFIG)
        self.servers = {}
        self.ports = {}
        self._lock = threading.Lock()
        self._release = threading.Event()   # set on reset: ends `hang`s
        self._conn_seq = 0
        self._threads = []

    # -- servers ------------------------------------------------------------
    def add_server(self, name, handler_cls):
        """Listen for handler_cls on a fresh port; the class may declare
        `config_defaults`, run-time settings of its own."""
        for key, value in getattr(handler_cls, "config_defaults", {}).items():
            self.config_defaults.setdefault(key, value)
            self.config.setdefault(key, value)
        server = HubServer((self.bind, 0), handler_cls, self, name)
        self.servers[name] = server
        self.ports[name] = server.server_address[1]
        return server

    def start(self):
        for name, server in self.servers.items():
            t = threading.Thread(target=server.serve_forever, name="srv-" + name,
                                 kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)

    def shutdown(self):
        self.release_hangs()
        stoppers = [threading.Thread(target=s.shutdown) for s in self.servers.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for server in self.servers.values():
            server.server_close()

    def next_conn_id(self):
        with self._lock:
            self._conn_seq += 1
            return self._conn_seq

    # -- run-time state -----------------------------------------------------
    def reset(self):
        self.faults.clear()
        self.log.clear()
        with self._lock:
            self.config = dict(self.config_defaults)
        self.release_hangs()

    def release_hangs(self):
        with self._lock:
            old, self._release = self._release, threading.Event()
        old.set()

    def hang_event(self):
        with self._lock:
            return self._release

    def set_config(self, changes):
        with self._lock:
            for key, value in changes.items():
                if key not in self.config_defaults:
                    raise ValueError("unknown config key: %s" % key)
                want = type(self.config_defaults[key])
                if isinstance(value, bool) or not isinstance(value, want):
                    raise ValueError("%s: a %s" % (key, want.__name__))
            self.config.update(changes)
            return dict(self.config)

    def get_config(self, key=None):
        with self._lock:
            return self.config[key] if key else dict(self.config)

    # -- URLs, files, signatures --------------------------------------------
    def base_url(self, name):
        host = self.bind
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%d" % (host, self.ports[name])

    def file_path(self, relpath):
        """The regular file under root named by relpath, or None."""
        parts = relpath.split("/")
        if not relpath or any(p in ("", ".", "..") for p in parts) or "\0" in relpath:
            return None
        path = self.root.joinpath(*parts)
        try:
            real = path.resolve()
            real.relative_to(self.root)
        except (ValueError, OSError):
            return None
        return path if real.is_file() else None

    def sign(self, relpath, expires):
        msg = ("%s\n%d" % (relpath, expires)).encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def check_signature(self, relpath, expires, signature):
        return hmac.compare_digest(self.sign(relpath, expires), signature)

    def presign(self, server, relpath, ttl=None):
        """A presigned URL for relpath on `server`, like an S3/CloudFront link."""
        if ttl is None:
            ttl = self.get_config("cdn_ttl")
        expires = int(time.time()) + ttl
        query = urllib.parse.urlencode([
            ("X-Amz-Expires", str(ttl)), ("Expires", str(expires)),
            ("Signature", self.sign(relpath, expires))])
        return "%s/files/%s?%s" % (self.base_url(server),
                                   urllib.parse.quote(relpath), query)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address, handler_cls, hub, name):
        self.hub = hub
        self.name = name
        super().__init__(address, handler_cls)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ClientGone)):
            return                      # a client went away: normal
        sys.stderr.write("fakehub[%s]: unexpected error\n" % self.name)
        traceback.print_exc()


class ClientGone(Exception):
    """The client closed the connection while we were answering."""


class HubHandler(BaseHTTPRequestHandler):
    """Base class of every fake service.

    A service sets `rejects_authorization` if it stands for a host that must
    never see an Authorization header (the leak is flagged in the log), may
    set `config_defaults` (its run-time settings), and implements route(),
    using begin() to apply the request-level faults, serve_entity() to send
    file bytes and reply()/reply_json() for everything else.  Override
    fault_status_reply() to give `fail` statuses the service's error body.
    """
    config_defaults = {}

    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"
    disable_nagle_algorithm = True
    rejects_authorization = False

    # -- plumbing -----------------------------------------------------------
    def version_string(self):
        return self.server_version

    @property
    def hub(self):
        return self.server.hub

    def setup(self):
        super().setup()
        self.conn_id = self.hub.next_conn_id()

    def log_message(self, fmt, *args):      # quiet unless --verbose
        if getattr(self.hub, "verbose", False):
            sys.stderr.write("fakehub[%s] %s\n" % (self.server.name, fmt % args))

    def send_response(self, code, message=None):
        entry = getattr(self, "entry", None)
        if entry is not None:
            entry["status"] = code
        super().send_response(code, message)

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self):
        split = urllib.parse.urlsplit(self.path)
        self.url_path = split.path
        self.raw_query = split.query
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        self.entry = None
        if self.url_path.startswith("/_control/"):
            self._control()
            return
        self.request_body = self._read_body()
        if self.request_body is None:
            return
        self.entry = self.hub.log.begin({
            "server": self.server.name,
            "conn": self.conn_id,
            "method": self.command,
            "path": self.url_path,
            "file": None,
            "query": bool(split.query),
            "range": self.headers.get("Range"),
            "if_range": self.headers.get("If-Range"),
            "authorization": "Authorization" in self.headers,
            "leak": self.rejects_authorization and "Authorization" in self.headers,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "status": None,
            "bytes": 0,
            "outcome": None,
            "fault": {},
            "t_start": time.time(),
            "t_end": None,
        })
        try:
            self.route()
            if self.entry["outcome"] is None:
                self.entry["outcome"] = "ok"
        except ClientGone:
            self.entry["outcome"] = "client_gone"
            self.close_connection = True
        except Exception:
            self.entry["outcome"] = "error"
            sys.stderr.write("fakehub[%s]: internal error on %s %s\n"
                             % (self.server.name, self.command, self.url_path))
            traceback.print_exc()
            self.close_connection = True
            if self.entry["status"] is None:
                try:
                    self.reply(500, error_page(500), "text/html")
                except OSError:
                    pass
        finally:
            self.entry["t_end"] = time.time()
            self.entry = None

    def _read_body(self):
        """The request body (bytes), or None after answering 400/411/413."""
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self.reply(411, error_page(411), "text/html")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self.reply(400, error_page(400), "text/html")
            return None
        if length > (64 << 20):
            self.close_connection = True
            self.reply(413, error_page(413), "text/html")
            return None
        return self.rfile.read(length) if length else b""

    # -- responses ----------------------------------------------------------
    def _write(self, data):
        try:
            self.wfile.write(data)
        except (ConnectionError, TimeoutError) as e:
            raise ClientGone() from e
        if self.entry is not None:
            self.entry["bytes"] += len(data)

    def reply(self, status, body=b"", content_type="text/plain", headers=()):
        """A complete small response with an exact Content-Length."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
        except (ConnectionError, TimeoutError) as e:
            raise ClientGone() from e
        if self.command != "HEAD" and body:
            self._write(body)

    def reply_json(self, status, obj, headers=()):
        self.reply(status, json.dumps(obj).encode(), "application/json", headers)

    def fault_status_reply(self, fault):
        """Answer a `fail` status.  Services override to mimic their error
        bodies; the default is nginx's HTML page plus rate-limit headers."""
        headers = []
        if fault.status in (429, 503):
            headers.append(("Retry-After", str(fault.retry_after)))
        if fault.status == 429:
            headers.append(("RateLimit", '"resolvers";r=0;t=%d' % fault.retry_after))
        self.reply(fault.status, error_page(fault.status), "text/html", headers)

    # -- faults ---------------------------------------------------------------
    def begin(self, key, file=True):
        """Apply the request-level faults for fault key `key` (a relpath).
        The log records key as the request's "file" unless file=False.

        Returns the Fault for the rest of the response, or None when the
        request has already been dealt with (down, hang, fail).
        """
        fault = self.hub.faults.take(self.server.name, self.command, key)
        self.entry["file"] = key if file else None
        self.entry["fault"] = fault.summary()
        if fault.get("header_delay_ms"):
            time.sleep(fault.get("header_delay_ms") / 1000.0)
        if fault.get("down"):
            self.entry["outcome"] = "down"
            self.close_connection = True
            if fault.get("down") == "reset":
                # Linger 0 makes close() send RST; close now, before the
                # server's shutdown(SHUT_WR) could send a FIN first.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            return None
        if fault.get("hang"):
            self.entry["outcome"] = "hang"
            self.hub.hang_event().wait()
            self.close_connection = True
            return None
        if fault.status is not None:
            self.fault_status_reply(fault)
            return None
        return fault

    # -- file bodies ----------------------------------------------------------
    def serve_entity(self, entity, fault, extra_headers=()):
        """Answer GET/HEAD for `entity` (a FileEntity) with the range,
        validator and body faults applied."""
        if fault.get("html_error"):
            self.entry["outcome"] = "html_error"
            self.reply(200, b"<html><head><title>Error</title></head><body>"
                            b"<h1>Error</h1><p>Something went wrong.</p></body></html>",
                       "text/html; charset=utf-8")
            return
        size = fault.get("report_size") or entity.size
        etag = fault.get("etag") or entity.etag
        validators = not fault.get("no_validators")
        if_match = self.headers.get("If-Match")
        if if_match is not None and not etag_list_matches(if_match, etag):
            self.reply(412, error_page(412), "text/html")
            return
        first, last, status = 0, size - 1, 200
        range_header = self.headers.get("Range") if self.command == "GET" else None
        if range_header is not None and not fault.get("ignore_range"):
            if_range = self.headers.get("If-Range")
            if if_range is None or (validators
                                    and if_range_matches(if_range, etag, entity.mtime)):
                parsed = parse_range(range_header, size)
                if parsed == UNSATISFIABLE:
                    self.reply(416, error_page(416), "text/html",
                               [("Content-Range", "bytes */%d" % size)])
                    return
                if parsed is not None:
                    first, last = parsed
                    status = 206
        length = last - first + 1
        self.send_response(status)
        self.send_header("Content-Type", entity.content_type)
        self.send_header("Content-Length", str(length))
        if validators:
            self.send_header("Last-Modified", http_date(entity.mtime))
            self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            shift = 1 if fault.get("wrong_content_range") else 0
            self.send_header("Content-Range", "bytes %d-%d/%d"
                             % (first + shift, last + shift, size))
        headers = list(entity.headers) + list(extra_headers)
        if fault.get("disposition") is not None:
            headers = [(n, v) for n, v in headers if n.lower() != "content-disposition"]
            headers.append(("Content-Disposition", fault.get("disposition")))
        for name, value in headers:
            self.send_header(name, value)
        try:
            self.end_headers()
        except (ConnectionError, TimeoutError) as e:
            raise ClientGone() from e
        if self.command == "HEAD" or length == 0:
            return
        if fault.get("delay_ms"):
            time.sleep(fault.get("delay_ms") / 1000.0)
        limit = length
        cut = fault.get("truncate_after")
        if cut is not None and cut < length:
            limit = cut
        sent = self.send_file(entity.path, first, limit, fault.get("rate_bps"))
        if sent < length:
            # The promised Content-Length was not delivered: the connection
            # cannot be reused, the client must see EOF.
            self.entry["outcome"] = "truncated"
            self.close_connection = True

    def send_file(self, path, offset, count, rate_bps=None):
        """Send count bytes of path from offset with os.sendfile; returns the
        number sent (less only if the file is shorter than expected)."""
        sock = self.connection
        assert sock.gettimeout() is None, "sendfile needs a blocking socket"
        sent = 0
        t0 = time.monotonic()
        step = SENDFILE_CHUNK
        if rate_bps:
            step = max(1, min(64 << 10, rate_bps // 20))
        try:
            f = open(path, "rb")
        except OSError:
            return 0                    # gone since the headers: cut short
        with f:
            while sent < count:
                want = min(step, count - sent)
                if rate_bps:            # a chunk leaves when its budget is earned
                    ahead = t0 + (sent + want) / rate_bps - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                try:
                    n = os.sendfile(sock.fileno(), f.fileno(), offset + sent, want)
                except (ConnectionError, TimeoutError) as e:
                    raise ClientGone() from e
                if n == 0:
                    break               # file shrank under us
                sent += n
                self.entry["bytes"] += n
        return sent

    # -- control API ----------------------------------------------------------
    def _control(self):
        body = self._read_body()
        if body is None:
            return
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            self.reply_json(400, {"error": "body is not JSON"})
            return
        name = self.url_path[len("/_control/"):]
        key = (self.command, name)
        hub = self.hub
        try:
            if key == ("POST", "faults"):
                specs = data if isinstance(data, list) else [data]
                self.reply_json(200, {"added": hub.faults.add(specs),
                                      "rules": hub.faults.describe()})
            elif key == ("GET", "faults"):
                self.reply_json(200, {"rules": hub.faults.describe()})
            elif key == ("DELETE", "faults"):
                hub.faults.clear()
                self.reply_json(200, {"rules": []})
            elif key == ("POST", "reset"):
                hub.reset()
                self.reply_json(200, {"ok": True})
            elif key == ("GET", "requests"):
                server = self.query.get("server", [None])[0]
                self.reply_json(200, hub.log.snapshot(server))
            elif key == ("GET", "config"):
                self.reply_json(200, hub.get_config())
            elif key == ("POST", "config"):
                if not isinstance(data, dict):
                    raise ValueError("config: a JSON object")
                self.reply_json(200, hub.set_config(data))
            elif key == ("GET", "presign"):
                relpath = self.query.get("path", [""])[0]
                ttl = self.query.get("ttl", [None])[0]
                server = self.query.get("server", ["cdn"])[0]
                if server not in hub.ports:
                    raise ValueError("no server %r" % server)
                url = hub.presign(server, relpath, None if ttl is None else int(ttl))
                self.reply_json(200, {"url": url})
            elif key == ("GET", "ports"):
                self.reply_json(200, hub.ports)
            else:
                self.reply_json(404, {"error": "no control endpoint %s %s"
                                      % (self.command, self.url_path)})
        except ValueError as e:
            self.reply_json(400, {"error": str(e)})


class FileEntity:
    """What serve_entity() sends: a file on disk and its representation
    metadata.  Services build it (origin from stat; HF will use sha256
    ETags and Content-Disposition)."""

    def __init__(self, path, size, mtime, etag, content_type="application/octet-stream",
                 headers=()):
        self.path = path
        self.size = size
        self.mtime = int(mtime)
        self.etag = etag
        self.content_type = content_type
        self.headers = list(headers)

    @classmethod
    def from_stat(cls, path, **kw):
        st = os.stat(path)
        # nginx's strong ETag is "<mtime hex>-<size hex>"; we use the
        # nanosecond mtime so a rewrite within one second changes it too.
        etag = '"%x-%x"' % (st.st_mtime_ns, st.st_size)
        return cls(path, st.st_size, st.st_mtime, etag, **kw)
