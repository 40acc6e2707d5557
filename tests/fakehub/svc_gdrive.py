"""svc_gdrive: a fake Google Drive (PROTOCOLS.md 6.3) on two ports, the way
gdown meets the real one: "gdrive" stands for drive.google.com (port D),
"gdrive_uc" for drive.usercontent.google.com (port U).

Files: ROOT/gdrive/<ID>/<name> is the Drive file with id ID (one regular
file per id folder); <name> is what Content-Disposition calls it.  An id
is [A-Za-z0-9_-]+, as Drive's are.

gdrive (D)
  GET|HEAD /uc?id=ID[&export=download][&resourcekey=K][&confirm=..&uuid=..]
      unknown id   404 text/html
      private id   302 to http://HOST:D/ServiceLogin?continue=...
      otherwise    <gdrive_redirect_status> (303) to
                   http://HOST:U/download?id=ID&export=download[&...the rest]
                   with gdrive_require_cookie: Set-Cookie NID=<token>; Path=/
  GET /ServiceLogin  200 text/html "Sign in - Google Accounts" (a form that
                     is not the download form)
  GET /file/d/ID/view  200 text/html: the viewer page a browser gets
gdrive_uc (U)
  GET|HEAD /download?id=ID&export=download[&confirm=t&uuid=U][&resourcekey=K]
      unknown id   404 text/html
      private id   302 to D's /ServiceLogin
      quota id     (see below)
      quota id     200 text/html with <p class="uc-error-subcaption">Too many
                   users have viewed or downloaded this file recently...</p>
      size <= gdrive_scan_threshold, or confirm=t with the id's current
                   uuid: the file (application/octet-stream,
                   Content-Disposition: attachment; filename="N";
                   filename*=UTF-8''N), Range/If-Range/faults per hubcore
      otherwise    200 text/html "Google Drive - Virus scan warning" with
                   <form id="download-form" action="http://HOST:U/download"
                   method="get"> and hidden id, export=download, confirm=t,
                   uuid (and resourcekey when asked with one); with
                   gdrive_require_cookie only to a request that brings the NID
                   cookie D set on its redirect, else 403 text/html (so a
                   client must keep cookies across one request's hops).  The
                   bytes themselves never need the cookie: a confirmed URL
                   carries its proof in the uuid (modelfs's data requests
                   carry no cookies).
  The uuid is an HMAC of the id and gdrive_uuid_epoch: changing the epoch
  makes every confirmed URL handed out so far answer with the scan page
  again (an HTML page where a client expects bytes).

Run-time config (POST /_control/config): gdrive_scan_threshold (bytes),
gdrive_redirect_status (302/303/307), gdrive_require_cookie (0 or 1; hubcore
 config values are never bools),
gdrive_private and gdrive_quota (lists of ids), gdrive_uuid_epoch (int).
The fault key is the id; the request log gets "qs", the raw query.
Neither host ever sees an Authorization header from modelfs (flagged).
"""

import hashlib
import hmac
import html
import os
import re
import urllib.parse
from http.cookies import SimpleCookie

from hubcore import FileEntity, HubHandler

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

QUOTA_TEXT = ("Too many users have viewed or downloaded this file recently. Please try "
              "accessing the file again later. If the file you are trying to access is "
              "particularly large or is shared with many people, it may take up to 24 "
              "hours to be able to view or download the file. If you still can't access "
              "a file after 24 hours, contact your domain administrator.")

SIGN_IN_PAGE = b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Sign in - Google Accounts</title></head><body>
<form id="gaia_loginform" action="/signin/v2/challenge" method="post">
<input type="email" name="identifier" value="">
<input type="hidden" name="continue" value="https://drive.google.com/">
<input type="submit" value="Next"></form></body></html>
"""


def _page(title, body):
    return ("<!DOCTYPE html><html><head><title>%s</title>"
            '<meta http-equiv="content-type" content="text/html; charset=utf-8"/>'
            "<link href=\"/static/uc.css\" rel=\"stylesheet\"></head><body>"
            '<div class="uc-main">%s</div></body></html>\n' % (title, body)).encode()


def content_disposition(name):
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (
        ascii_name, urllib.parse.quote(name, safe=""))


class DriveBase(HubHandler):
    rejects_authorization = True
    config_defaults = {
        "gdrive_scan_threshold": 4 << 20,
        "gdrive_redirect_status": 303,
        "gdrive_require_cookie": 0,         # 1: usercontent wants the NID cookie
        "gdrive_private": [],
        "gdrive_quota": [],
        "gdrive_uuid_epoch": 0,
    }

    # -- shared helpers ---------------------------------------------------
    def param(self, name):
        values = self.query.get(name)
        return values[0] if values else ""

    def drive_file(self, file_id):
        """(path, name) of the file with this id, or None."""
        if not _ID_RE.match(file_id):
            return None
        folder = self.hub.root / "gdrive" / file_id
        try:
            names = sorted(n for n in os.listdir(folder)
                           if not n.startswith(".") and (folder / n).is_file())
        except OSError:
            return None
        return (folder / names[0], names[0]) if names else None

    def uuid_for(self, file_id):
        msg = ("uuid|%s|%d" % (file_id, self.hub.get_config("gdrive_uuid_epoch"))).encode()
        h = hmac.new(self.hub.secret, msg, hashlib.sha256).hexdigest()
        return "%s-%s-4%s-a%s-%s" % (h[:8], h[8:12], h[13:16], h[17:20], h[20:32])

    def cookie_token(self, file_id):
        return hmac.new(self.hub.secret, ("nid|" + file_id).encode(),
                        hashlib.sha256).hexdigest()[:32]

    def has_cookie(self, file_id):
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except Exception:       # a malformed Cookie header is no cookie
            return False
        return "NID" in jar and hmac.compare_digest(jar["NID"].value,
                                                    self.cookie_token(file_id))

    def html_reply(self, status, body, headers=()):
        self.reply(status, body, "text/html; charset=utf-8", headers)

    def not_found(self):
        self.html_reply(404, _page("Google Drive - Page Not Found",
                                   "<p>Sorry, the file you have requested does not exist.</p>"))

    def sign_in_redirect(self):
        target = "%s/ServiceLogin?continue=%s" % (
            self.hub.base_url("gdrive"),
            urllib.parse.quote("https://drive.google.com/uc?" + self.raw_query, safe=""))
        self.reply(302, b"", "text/html; charset=UTF-8", [("Location", target)])

    def begin_id(self):
        """Log and apply faults for the request's id: (id, Fault), or
        (None, None) when the request has been answered."""
        self.entry["qs"] = self.raw_query
        file_id = self.param("id")
        fault = self.begin(file_id or "-")
        if fault is None:
            return None, None
        if self.command not in ("GET", "HEAD"):
            self.reply(405, b"", "text/html")
            return None, None
        return file_id, fault


class DriveHandler(DriveBase):
    """drive.google.com: /uc redirects to the usercontent host."""

    def route(self):
        if self.url_path == "/uc":
            self.uc()
        elif self.url_path == "/ServiceLogin":
            self.entry["qs"] = self.raw_query
            if self.begin("ServiceLogin", file=False) is not None:
                self.html_reply(200, SIGN_IN_PAGE)
        elif self.url_path.startswith("/file/d/"):
            if self.begin(self.url_path.split("/")[3], file=False) is not None:
                self.html_reply(200, _page("model - Google Drive",
                                           "<div id=\"drive-viewer\">preview</div>"))
        else:
            if self.begin(self.url_path, file=False) is not None:
                self.not_found()

    def uc(self):
        file_id, _ = self.begin_id()
        if file_id is None:
            return
        if self.drive_file(file_id) is None:
            self.not_found()
            return
        if file_id in self.hub.get_config("gdrive_private"):
            self.sign_in_redirect()
            return
        params = [(k, v) for k, v in urllib.parse.parse_qsl(self.raw_query, keep_blank_values=True)
                  if k not in ("id", "export")]
        query = urllib.parse.urlencode([("id", file_id), ("export", "download")] + params)
        headers = [("Location", "%s/download?%s" % (self.hub.base_url("gdrive_uc"), query))]
        if self.hub.get_config("gdrive_require_cookie"):
            headers.append(("Set-Cookie", "NID=%s; Path=/; HttpOnly"
                            % self.cookie_token(file_id)))
        self.reply(self.hub.get_config("gdrive_redirect_status"), b"",
                   "text/html; charset=UTF-8", headers)


class DriveContentHandler(DriveBase):
    """drive.usercontent.google.com: the bytes, or a page instead."""

    def route(self):
        if self.url_path != "/download":
            if self.begin(self.url_path, file=False) is not None:
                self.not_found()
            return
        file_id, fault = self.begin_id()
        if file_id is None:
            return
        found = self.drive_file(file_id)
        if found is None:
            self.not_found()
            return
        path, name = found
        if file_id in self.hub.get_config("gdrive_private"):
            self.sign_in_redirect()
            return
        confirmed = (self.param("confirm") == "t"
                     and hmac.compare_digest(self.param("uuid"), self.uuid_for(file_id)))
        if file_id in self.hub.get_config("gdrive_quota"):
            self.entry["outcome"] = "quota"
            self.html_reply(200, _page(
                "Google Drive - Quota exceeded",
                '<div id="uc-text"><p class="uc-error-caption">Sorry, you can&#39;t view '
                'or download this file at this time.</p><p class="uc-error-subcaption">'
                "%s</p></div>" % html.escape(QUOTA_TEXT)))
            return
        try:
            entity = FileEntity.from_stat(path, headers=[
                ("Content-Disposition", content_disposition(name))])
        except FileNotFoundError:
            self.not_found()
            return
        if entity.size > self.hub.get_config("gdrive_scan_threshold") and not confirmed:
            if self.hub.get_config("gdrive_require_cookie") and not self.has_cookie(file_id):
                self.entry["outcome"] = "no_cookie"
                self.html_reply(403, _page("403. That's an error.",
                                           "<p>We're sorry, but you do not have access to "
                                           "this page.</p>"))
                return
            self.entry["outcome"] = "scan_page"
            self.html_reply(200, self.scan_page(file_id, name, entity.size))
            return
        self.serve_entity(entity, fault)

    def scan_page(self, file_id, name, size):
        hidden = [("id", file_id), ("export", "download"), ("confirm", "t"),
                  ("uuid", self.uuid_for(file_id))]
        if self.param("resourcekey"):
            hidden.append(("resourcekey", self.param("resourcekey")))
        inputs = "".join('<input type="hidden" name="%s" value="%s">'
                         % (html.escape(k), html.escape(v)) for k, v in hidden)
        return _page(
            "Google Drive - Virus scan warning",
            '<div id="uc-text"><p class="uc-warning-caption">Google Drive can&#39;t scan '
            'this file for viruses.</p><p class="uc-warning-subcaption"><span '
            'class="uc-name-size"><a href="/open?id=%s&amp;usp=drive_web">%s</a> (%dM)'
            "</span> is too large for Google to scan for viruses. Would you still like to "
            'download this file?</p><form id="download-form" action="%s/download" '
            'method="get"><input type="submit" id="uc-download-link" class="goog-inline-'
            'block jfk-button jfk-button-action" value="Download anyway"/>%s</form></div>'
            % (file_id, html.escape(name), size >> 20, self.hub.base_url("gdrive_uc"), inputs))


SERVICES = {
    "gdrive": DriveHandler,
    "gdrive_uc": DriveContentHandler,
}
