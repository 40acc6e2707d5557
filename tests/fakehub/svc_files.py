"""svc_files: a plain HTTP file server ("origin", like nginx) and a
presigned-URL CDN ("cdn", like S3/CloudFront behind a signed redirect).

origin
  GET|HEAD /files/<relpath>     the file ROOT/<relpath>: Accept-Ranges,
                                strong ETag, Last-Modified,
                                application/octet-stream; ranges per hubcore
  GET|HEAD /redirect/<relpath>  302 to a signed CDN URL:
      Location: http://HOST:<cdn>/files/<relpath>?X-Amz-Expires=<ttl>
                &Expires=<epoch+ttl>&Signature=<hex hmac>
      ttl is the run-time config "cdn_ttl" (default 3600 s).
  anything else                 404 (or 405 for other methods on a file)

cdn
  GET|HEAD /files/<relpath>?...  the same bytes, but only with a valid,
      unexpired signature.  A request carrying Authorization is refused with
      403 and flagged "leak": true in the request log (a presigned host must
      never see the client's token; S3 rejects two auth mechanisms).  A bad
      or missing signature gives 403 AccessDenied XML; a past Expires gives
      403 AccessDenied "Request has expired", so the client must re-resolve
      through origin.

Request-level faults (down, hang, fail, header_delay_ms) apply first, then the
service's own checks, then the body faults while serving.  The fault key is
the relpath, for /files/ and /redirect/ alike (scope rules with "server").
"""

import time
import urllib.parse

from hubcore import FileEntity, HubHandler, error_page


def s3_error(code, message, resource):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            '<Message>%s</Message><Resource>%s</Resource>'
            '<RequestId>FAKEHUB0000000001</RequestId></Error>'
            % (code, message, resource)).encode()


class FileServiceHandler(HubHandler):
    """Shared routing of /files/<relpath> for origin-like hosts."""

    def relpath_after(self, prefix):
        return urllib.parse.unquote(self.url_path[len(prefix):])

    def not_found(self, key):
        fault = self.begin(key, file=False)
        if fault is not None:
            self.reply(404, error_page(404), "text/html")

    def serve_relpath(self, relpath):
        fault = self.begin(relpath)
        if fault is None:
            return
        if self.command not in ("GET", "HEAD"):
            self.reply(405, error_page(405), "text/html", [("Allow", "GET, HEAD")])
            return
        if not self.check_access(relpath):
            return
        path = self.hub.file_path(relpath)
        try:
            entity = FileEntity.from_stat(path) if path else None
        except FileNotFoundError:       # deleted since file_path()
            entity = None
        if entity is None:
            self.reply(404, error_page(404), "text/html")
            return
        self.serve_entity(entity, fault)

    def check_access(self, relpath):
        """Services that guard their files answer and return False here."""
        return True


class OriginHandler(FileServiceHandler):
    def route(self):
        if self.url_path.startswith("/files/"):
            self.serve_relpath(self.relpath_after("/files/"))
        elif self.url_path.startswith("/redirect/"):
            self.redirect(self.relpath_after("/redirect/"))
        else:
            self.not_found(self.url_path)

    def redirect(self, relpath):
        if self.begin(relpath) is None:
            return
        if self.command not in ("GET", "HEAD"):
            self.reply(405, error_page(405), "text/html", [("Allow", "GET, HEAD")])
            return
        if self.hub.file_path(relpath) is None:
            self.reply(404, error_page(404), "text/html")
            return
        url = self.hub.presign("cdn", relpath)
        self.reply(302, ("Found. Redirecting to %s" % url).encode(),
                   "text/plain; charset=utf-8", [("Location", url)])


class CdnHandler(FileServiceHandler):
    rejects_authorization = True

    def route(self):
        if self.url_path.startswith("/files/"):
            self.serve_relpath(self.relpath_after("/files/"))
        else:
            self.not_found(self.url_path)

    def check_access(self, relpath):
        resource = self.url_path
        if "Authorization" in self.headers:
            self.reply(403, s3_error(
                "AccessDenied",
                "Only one auth mechanism allowed; an Authorization header is "
                "not accepted with a presigned URL", resource), "application/xml")
            return False
        expires = self.query.get("Expires", [""])[0]
        signature = self.query.get("Signature", [""])[0]
        try:
            expires_at = int(expires)
        except ValueError:
            expires_at = None
        if expires_at is None or not self.hub.check_signature(relpath, expires_at, signature):
            self.reply(403, s3_error("AccessDenied", "Access Denied", resource),
                       "application/xml")
            return False
        if time.time() > expires_at:
            self.reply(403, s3_error("AccessDenied", "Request has expired", resource),
                       "application/xml")
            return False
        return True


# name -> handler class; fakehub starts one server per entry.
SERVICES = {
    "origin": OriginHandler,
    "cdn": CdnHandler,
}
