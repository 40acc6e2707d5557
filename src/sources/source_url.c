/*
 * source_url.c: plain http(s) entries, Google Drive links among them.
 *
 * A plain file is resolved with one GET of bytes 0-0 that follows
 * redirects: the 206 gives the size (Content-Range total), the validator
 * and the final (maybe signed) URL, and proves the server honours Range.
 * HEAD is not used: presigned GET URLs refuse it.
 *
 * A Drive link (drive.google.com, docs.google.com,
 * drive.usercontent.google.com) names a file id, not a file. It is asked
 * for at {gdrive_endpoint}/uc?id=ID&export=download, following gdown
 * (PROTOCOLS.md 3.2), with the cookies its hops set kept for the request:
 *   (1) An answer with the file (not HTML; Content-Disposition names it)
 *       is the file: size from the probe's Content-Range, the mount name
 *       from Content-Disposition when the entry gives no filename, the
 *       data URL the one that answered.
 *   (2) An HTML page is never the file. It is fetched whole (at most
 *       DRIVE_PAGE_MAX) and read: the virus-scan form (action plus hidden
 *       inputs), a legacy /uc?export=download link or a "downloadUrl" is
 *       the confirmed URL, probed again (at most DRIVE_ROUNDS pages); a
 *       uc-error-subcaption is Drive refusing for now (quota): -EAGAIN
 *       with its words; anything else (a sign-in page) means the file is
 *       not shared publicly: -EACCES.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/log.h"
#include "modelfs/text.h"
#include "source_i.h"

/* Content-Disposition -> a safe name: see source.h. */
int source_disposition_name(const char *cd, char **out)
{
	const char *p;
	char *name = NULL;
	size_t o = 0;
	int rc;

	*out = NULL;
	if (!cd)
		return 0;
	if ((p = strstr(cd, "filename*=")) && strncasecmp(p + 10, "UTF-8''", 7) == 0) {
		p += 17;
		name = malloc(strlen(p) + 1);
		for (; name && *p && *p != ';' && *p != ' '; p++) {
			unsigned int ch;

			/* Two hex digits or none: "%4" at the end must not step
			 * over the NUL. */
			if (*p == '%' && isxdigit((unsigned char)p[1]) &&
			    isxdigit((unsigned char)p[2]) && sscanf(p + 1, "%2x", &ch) == 1) {
				name[o++] = (char)ch;
				p += 2;
			} else {
				name[o++] = *p;
			}
		}
	} else if ((p = strstr(cd, "filename=\"")) != NULL) {
		p += 10;
		name = malloc(strlen(p) + 1);
		for (; name && *p && *p != '"'; p++)
			name[o++] = *p;
	} else {
		return 0;
	}
	if (!name)
		return -ENOMEM;
	for (size_t i = 0; i < o; i++)
		if (name[i] == '\0')
			name[i] = '\x01';	/* a "%00": a control byte like the others */
	name[o] = '\0';
	rc = source_safe_name(name, out);
	free(name);
	return rc;
}

/* The entry's own headers and Authorization, for origin's host only. */
static int fill_auth(struct source_file *f, const char *origin)
{
	const struct config_entry *e = f->entry;
	struct source_auth a = {
		.origin_url = (char *)origin,
		.authorization = e->auth_header,
		.headers = e->headers,
		.n_headers = e->n_headers,
	};

	return source_auth_copy(&f->auth, &a);
}

static bool html_type(const char *ct)
{
	return ct && strncasecmp(ct, "text/html", 9) == 0 &&
	       (ct[9] == '\0' || ct[9] == ';' || ct[9] == ' ' || ct[9] == '\t');
}

/* Does url carry its own signature (S3/GCS query auth, CloudFront)? */
static bool presigned(const char *url)
{
	const char *q = strchr(url, '?');

	return q && (strstr(q, "X-Amz-Signature=") || strstr(q, "X-Goog-Signature=") ||
		     (strstr(q, "Signature=") && strstr(q, "Expires=")));
}

/* Turn the probe's outcome into f's fields or its error; origin is the
 * URL whose host may see the entry's headers. */
static int apply_probe(struct source_file *f, int rc, struct http_meta *m, const char *origin)
{
	const struct config_entry *e = f->entry;

	if (rc == -ERANGE && m->total_size == 0)
		rc = 0;		/* an empty file: bytes 0-0 is unsatisfiable */
	switch (rc) {
	case 0:
		break;
	case -EAGAIN:
		source_set_error(f, -EAGAIN, "origin unreachable: %s", m->error_text ? m->error_text : "no answer");
		return -EAGAIN;
	case -ENOENT:
		source_set_error(f, -ENOENT, "not found at the origin (HTTP %ld): check the url", m->status);
		return 0;
	case -EACCES:
		if (presigned(e->url))
			source_set_error(f, -EACCES, "the presigned URL was refused (%s): it has "
					 "expired or was signed for other credentials; modelfs cannot "
					 "renew a presigned URL, so put a fresh one in the config",
					 m->error_text ? m->error_text : "HTTP 403");
		else
			source_set_error(f, -EACCES, "access denied (%s): check auth_header/headers "
					 "or the link's sharing settings",
					 m->error_text ? m->error_text : "HTTP 403");
		return 0;
	case -EPROTO:
		/* A server that ignores Range still serves the file: the engine
		 * streams it once, in order. Nothing else is usable. */
		if (m->range_ignored && m->total_size >= 0 && !html_type(m->content_type)) {
			f->no_range = true;
			break;
		}
		if (html_type(m->content_type))	/* an error or login page is never the file */
			source_set_error(f, -EPROTO, "the server answered with an HTML page, not the "
					 "file (HTTP %ld): check the url", m->status);
		else
			source_set_error(f, -EPROTO, "unusable answer: %s",
					 m->error_text ? m->error_text : "malformed response");
		return 0;
	default:
		source_set_error(f, rc, "resolution failed: %s", m->error_text ? m->error_text : strerror(-rc));
		return 0;
	}
	if (m->total_size < 0) {
		source_set_error(f, -EPROTO, "the server gave no size (no Content-Range total)");
		return 0;
	}
	if (e->size >= 0 && e->size != m->total_size) {
		source_set_error(f, -EPROTO, "size mismatch: the origin has %lld bytes but the config "
			  "says %lld", (long long)m->total_size, (long long)e->size);
		return 0;
	}
	source_take_probe(f, m);
	free(f->data_url);
	f->data_url = strdup(m->final_url ? m->final_url : e->url);
	if (!f->data_url || fill_auth(f, origin) != 0 || source_fill_mirrors(f) != 0)
		return -ENOMEM;
	/* Through a tier only when sha256 pins the bytes and the URL as
	 * written holds no secret: no query (a signature), no ${VAR}. */
	free(f->stable_url);
	f->stable_url = NULL;
	if (f->sha256 && !strchr(e->url, '?') && e->url_written &&
	    strcmp(e->url, e->url_written) == 0 && !(f->stable_url = strdup(e->url)))
		return -ENOMEM;
	if (!e->filename) {
		char *name = NULL;

		rc = source_disposition_name(m->content_disposition, &name);
		if (rc)
			return rc;
		if (name) {
			free(f->path);
			f->path = NULL;
			rc = source_join_path(e->dir, name, &f->path);
			free(name);
			if (rc)
				return rc;
		}
	}
	f->err = 0;
	free(f->error);
	f->error = NULL;
	return 0;
}

/* ---- Google Drive ---------------------------------------------------- */

#define DRIVE_PAGE_MAX		(512 * 1024)	/* a confirmation page is ~10 KiB */
#define DRIVE_ROUNDS		3		/* confirmation pages followed per probe */
#define DRIVE_ID_MAX		128
#define DRIVE_URL_MAX		4096
/* gdown sends a browser's User-Agent; Drive serves tools the same pages. */
#define DRIVE_USER_AGENT	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 " \
				"(KHTML, like Gecko) Chrome/124.0 Safari/537.36"
#define DRIVE_NOT_SHARED	"the file is not shared publicly: set its sharing to " \
				"'Anyone with the link'"

static const char *const drive_hosts[] = {
	"drive.google.com", "docs.google.com", "drive.usercontent.google.com",
};

/* The host of an absolute URL, without userinfo and port, into out
 * (lowercase); "" if there is none. */
static void url_host(const char *url, char *out, size_t outlen)
{
	const char *p = strstr(url, "://"), *end, *at;
	size_t n = 0;

	out[0] = '\0';
	if (!p)
		return;
	p += 3;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at)
		p = at + 1;
	while (p + n < end && p[n] != ':' && n + 1 < outlen) {
		out[n] = (char)tolower((unsigned char)p[n]);
		n++;
	}
	out[n] = '\0';
}

static bool is_drive_link(const char *url)
{
	char host[256];

	url_host(url, host, sizeof(host));
	for (size_t i = 0; i < sizeof(drive_hosts) / sizeof(drive_hosts[0]); i++)
		if (strcmp(host, drive_hosts[i]) == 0)
			return true;
	return false;
}

/* How many name= parameters the query of url has; the first one's value,
 * percent-decoded, into out ("" when it does not fit). */
static int query_param(const char *url, const char *name, char *out, size_t outlen)
{
	const char *q = strchr(url, '?'), *end, *p;
	size_t nlen = strlen(name);
	int found = 0;

	out[0] = '\0';
	if (!q)
		return 0;
	end = q + 1 + strcspn(q + 1, "#");
	for (p = q + 1; p < end; p++) {
		size_t len = strcspn(p, "&#");
		const char *v = p + nlen + 1;
		size_t o = 0;

		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=' && found++ == 0) {
			for (; v < p + len && o + 1 < outlen; v++) {
				if (*v == '%' && v + 2 < p + len && text_hex_digit(v[1]) >= 0 &&
				    text_hex_digit(v[2]) >= 0) {
					out[o++] = (char)(text_hex_digit(v[1]) * 16 + text_hex_digit(v[2]));
					v += 2;
				} else {
					out[o++] = *v == '+' ? ' ' : *v;
				}
			}
			out[v < p + len ? 0 : o] = '\0';	/* cut short: unusable */
		}
		p += len;
		if (*p != '&')
			break;
	}
	return found;
}

/* A Drive id is [A-Za-z0-9_-]+ (resource keys look alike: "0-AbC_d"). */
static bool drive_token(const char *s, size_t n)
{
	if (n == 0 || n >= DRIVE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/*
 * The file id of a Drive link (gdown's parse_url.py): the one id= of the
 * query (uc?id=, open?id=, download?id=), else /file/d/ID[/...] or
 * /file/u/N/d/ID[/...]; and its resourcekey= if any ("" if none).
 * 0, or -EINVAL with why set.
 */
static int drive_file_id(const char *url, char id[DRIVE_ID_MAX], char rk[DRIVE_ID_MAX],
			 const char **why)
{
	const char *p = strstr(url, "://"), *seg;
	size_t n;

	*why = "no file id in this Google Drive link: use its 'Share > Copy link' form "
	       "(https://drive.google.com/file/d/ID/view)";
	rk[0] = '\0';
	if (query_param(url, "resourcekey", rk, DRIVE_ID_MAX) > 0 && !drive_token(rk, strlen(rk)))
		rk[0] = '\0';
	if (query_param(url, "id", id, DRIVE_ID_MAX) == 1)
		return drive_token(id, strlen(id)) ? 0 : -EINVAL;
	id[0] = '\0';
	if (!p)
		return -EINVAL;
	p += 3;
	p += strcspn(p, "/?#");		/* the path */
	if (strncmp(p, "/drive/", 7) == 0 && strstr(p, "/folders/") &&
	    strstr(p, "/folders/") < p + strcspn(p, "?#")) {
		*why = "this Google Drive link is a folder: name each file by its own link";
		return -EINVAL;
	}
	if (strncmp(p, "/file/u/", 8) == 0) {
		p += 8 + strspn(p + 8, "0123456789");
		if (strncmp(p, "/d/", 3) != 0)
			return -EINVAL;
		p += 3;
	} else if (strncmp(p, "/file/d/", 8) == 0) {
		p += 8;
	} else {
		return -EINVAL;
	}
	seg = p;
	n = strcspn(seg, "/?#");
	if (!drive_token(seg, n))
		return -EINVAL;
	memcpy(id, seg, n);
	id[n] = '\0';
	return 0;
}

/* s appended to *b (of *len, capacity cap) percent-encoded outside the
 * unreserved set: false when it does not fit. */
static bool append_encoded(char *b, size_t *len, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (*len + 4 > cap)
			return false;
		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			b[(*len)++] = (char)ch;
		} else {
			b[(*len)++] = '%';
			b[(*len)++] = hex[ch >> 4];
			b[(*len)++] = hex[ch & 15];
		}
	}
	b[*len] = '\0';
	return true;
}

/* Decode HTML character references (&amp; &quot; &#39; &#x3D; ...) of
 * s[0..n) into out (ASCII references only; others are kept as written). */
static void html_unescape(const char *s, size_t n, char *out, size_t outlen)
{
	static const char *const named[][2] = {
		{ "amp", "&" }, { "quot", "\"" }, { "apos", "'" }, { "lt", "<" }, { "gt", ">" },
	};
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < outlen; i++) {
		const char *semi = s[i] == '&' ? memchr(s + i, ';', n - i) : NULL;
		size_t k, rl = semi ? (size_t)(semi - s - i - 1) : 0;
		long code = -1;

		if (semi && rl > 1 && s[i + 1] == '#') {
			char num[12];
			char *end;

			if (rl - 1 < sizeof(num)) {
				memcpy(num, s + i + 2, rl - 1);
				num[rl - 1] = '\0';
				code = (num[0] == 'x' || num[0] == 'X') ? strtol(num + 1, &end, 16)
									: strtol(num, &end, 10);
				if (*end || end == num)
					code = -1;
			}
		} else if (semi) {
			for (k = 0; k < sizeof(named) / sizeof(named[0]); k++)
				if (strlen(named[k][0]) == rl && strncmp(s + i + 1, named[k][0], rl) == 0)
					code = named[k][1][0];
		}
		if (code > 0 && code < 0x80) {
			out[o++] = (char)code;
			i += rl + 1;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
}

/* The value of attribute name in the tag whose attributes are [p, end)
 * (after "<form", up to '>'), unescaped into out: false if absent. The
 * attributes are read in turn, so a quoted value never looks like one. */
static bool html_attr(const char *p, const char *end, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);

	while (p < end) {
		const char *an, *v = NULL;
		size_t alen, vlen = 0;

		while (p < end && (isspace((unsigned char)*p) || *p == '/'))
			p++;
		an = p;
		while (p < end && !isspace((unsigned char)*p) && *p != '=' && *p != '/')
			p++;
		alen = (size_t)(p - an);
		while (p < end && isspace((unsigned char)*p))
			p++;
		if (p < end && *p == '=') {
			char quote = '\0';

			p++;
			while (p < end && isspace((unsigned char)*p))
				p++;
			if (p < end && (*p == '"' || *p == '\''))
				quote = *p++;
			v = p;
			while (p < end && (quote ? *p != quote : !isspace((unsigned char)*p)))
				p++;
			vlen = (size_t)(p - v);
			if (quote && p < end)
				p++;
		}
		if (alen == 0 && !v)
			break;		/* junk: give up rather than loop */
		if (alen == nlen && strncasecmp(an, name, nlen) == 0) {
			html_unescape(v ? v : "", vlen, out, outlen);
			return true;
		}
	}
	return false;
}

/* ref made absolute against base (the URL that served the page): an
 * absolute ref as is, "//host/x", "/x", "?q" and "x" the way a browser
 * resolves them. 0, or -EINVAL when it does not fit or is no http(s). */
static int resolve_ref(const char *base, const char *ref, char *out, size_t outlen)
{
	const char *auth = strstr(base, "://");
	size_t scheme_len, origin_len, path_len;
	int n;

	if (!auth)
		return -EINVAL;
	scheme_len = (size_t)(auth - base);
	origin_len = scheme_len + 3 + strcspn(auth + 3, "/?#");
	path_len = strcspn(base, "?#");
	if (strncasecmp(ref, "http://", 7) == 0 || strncasecmp(ref, "https://", 8) == 0)
		n = snprintf(out, outlen, "%s", ref);
	else if (ref[strcspn(ref, ":/?#")] == ':')
		return -EINVAL;		/* another scheme: javascript:, ftp:, data: */
	else if (ref[0] == '/' && ref[1] == '/')
		n = snprintf(out, outlen, "%.*s:%s", (int)scheme_len, base, ref);
	else if (ref[0] == '/')
		n = snprintf(out, outlen, "%.*s%s", (int)origin_len, base, ref);
	else if (ref[0] == '?')
		n = snprintf(out, outlen, "%.*s%s", (int)path_len, base, ref);
	else {
		size_t dir = path_len;

		while (dir > origin_len && base[dir - 1] != '/')
			dir--;
		n = dir > origin_len ? snprintf(out, outlen, "%.*s%s", (int)dir, base, ref)
				     : snprintf(out, outlen, "%.*s/%s", (int)origin_len, base, ref);
	}
	return n < 0 || (size_t)n >= outlen ? -EINVAL : 0;
}

/* The confirmation form (gdown: <form id="download-form" action=...>
 * with hidden inputs) as a URL into out: true if found. */
static bool drive_form_url(const char *page, const char *base, char *out, size_t outlen)
{
	char action[DRIVE_URL_MAX], idv[64], url[DRIVE_URL_MAX];
	const char *form = page, *tag_end, *form_end;
	size_t len;

	for (;; form++) {
		form = strcasestr(form, "<form");
		if (!form)
			return false;
		tag_end = strchr(form, '>');
		if (!tag_end)
			return false;
		if (html_attr(form + 5, tag_end, "id", idv, sizeof(idv)) &&
		    strcmp(idv, "download-form") == 0)
			break;
	}
	if (!html_attr(form + 5, tag_end, "action", action, sizeof(action)) || !action[0] ||
	    resolve_ref(base, action, url, sizeof(url)) < 0)
		return false;
	form_end = strcasestr(tag_end, "</form");
	if (!form_end)
		form_end = tag_end + strlen(tag_end);
	len = strlen(url);
	for (const char *in = tag_end; (in = strcasestr(in, "<input")) && in < form_end; in++) {
		const char *in_end = strchr(in, '>');
		char type[16], name[256], value[1024];

		if (!in_end)
			break;
		if (!html_attr(in + 6, in_end, "type", type, sizeof(type)) ||
		    strcasecmp(type, "hidden") != 0 ||
		    !html_attr(in + 6, in_end, "name", name, sizeof(name)) || !name[0])
			continue;
		if (!html_attr(in + 6, in_end, "value", value, sizeof(value)))
			value[0] = '\0';
		char sep = strchr(url, '?') ? '&' : '?';

		if (len + 2 >= sizeof(url))
			return false;
		url[len++] = sep;
		url[len] = '\0';
		if (!append_encoded(url, &len, sizeof(url), name) || len + 2 >= sizeof(url))
			return false;
		url[len++] = '=';
		url[len] = '\0';
		if (!append_encoded(url, &len, sizeof(url), value))
			return false;
	}
	return snprintf(out, outlen, "%s", url) < (int)outlen;
}

/* The older confirmation link, href="/uc?export=download&amp;confirm=...",
 * or a JSON "downloadUrl":"..." (gdown's other two cases): true if found. */
static bool drive_link_url(const char *page, const char *base, char *out, size_t outlen)
{
	char raw[DRIVE_URL_MAX], ref[DRIVE_URL_MAX];
	const char *p = strstr(page, "href=\"/uc?export=download");
	size_t n, o = 0;

	if (p) {
		p += 6;
		n = strcspn(p, "\"");
		if (n >= sizeof(raw))
			return false;
		html_unescape(p, n, ref, sizeof(ref));
		return resolve_ref(base, ref, out, outlen) == 0;
	}
	p = strstr(page, "\"downloadUrl\":\"");
	if (!p)
		return false;
	p += 15;
	for (; *p && *p != '"' && o + 1 < sizeof(raw); p++) {
		if (p[0] == '\\' && p[1] == 'u' && text_hex_digit(p[2]) >= 0 && text_hex_digit(p[3]) >= 0 &&
		    text_hex_digit(p[4]) >= 0 && text_hex_digit(p[5]) >= 0) {
			int ch = text_hex_digit(p[2]) << 12 | text_hex_digit(p[3]) << 8 | text_hex_digit(p[4]) << 4 |
				 text_hex_digit(p[5]);

			raw[o++] = ch > 0 && ch < 0x80 ? (char)ch : '?';
			p += 5;
		} else if (p[0] == '\\' && p[1]) {
			raw[o++] = *++p;
		} else {
			raw[o++] = *p;
		}
	}
	raw[o] = '\0';
	return o > 0 && resolve_ref(base, raw, out, outlen) == 0;
}

/* The words of <p class="uc-error-subcaption">...</p> (Drive's "Too many
 * users have viewed or downloaded this file recently"), tags dropped,
 * into out: true if the page has one. */
static bool drive_error_text(const char *page, char *out, size_t outlen)
{
	const char *p = strstr(page, "uc-error-subcaption"), *end;
	char text[1024];
	size_t o = 0;
	bool in_tag = false;

	if (!p || !(p = strchr(p, '>')))
		return false;
	p++;
	end = strstr(p, "</p>");
	if (!end)
		end = p + strlen(p);
	html_unescape(p, (size_t)(end - p), text, sizeof(text));
	for (const char *t = text; *t && o + 1 < outlen; t++) {
		if (*t == '<')
			in_tag = true;
		else if (*t == '>')
			in_tag = false;
		else if (!in_tag && (o == 0 || !isspace((unsigned char)*t) ||
				     !isspace((unsigned char)out[o - 1])))
			out[o++] = isprint((unsigned char)*t) ? (*t == '"' ? '\'' : *t) : ' ';
	}
	while (o > 0 && isspace((unsigned char)out[o - 1]))
		o--;
	out[o] = '\0';
	if (o == 0)
		snprintf(out, outlen, "Google Drive refused the download");
	return true;
}

/* A confirmation page, read into memory. */
struct drive_page {
	char *buf;
	size_t len;
};

static int page_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct drive_page *pg = ctx;

	if (len > DRIVE_PAGE_MAX - pg->len)
		return -EFBIG;		/* no page is that big: not one we can read */
	memcpy(pg->buf + pg->len, data, len);
	pg->len += len;
	return 0;
}

/* One request of the Drive flow: cookies kept across its hops, a
 * browser's User-Agent, the entry's headers for the endpoint only. */
static struct http_request drive_request(const struct config_entry *e, const char *url,
					 const char *origin, bool probe)
{
	return (struct http_request){
		.url = url,
		.origin_url = origin,
		.headers = e->headers,
		.n_headers = e->n_headers,
		.authorization = e->auth_header,
		.cookies = true,
		.user_agent = DRIVE_USER_AGENT,
		.range_first = 0,
		.range_len = probe ? 1 : 0,
		.follow_redirects = true,
		.timeout_sec = 30,
	};
}

/* A final answer that is not the file: Drive's words for it on f. */
static void drive_refusal(struct source_file *f, const char *id, int rc, const struct http_meta *m)
{
	if (rc == -EACCES)
		source_set_error(f, -EACCES, "%s (HTTP %ld for Drive file %s)", DRIVE_NOT_SHARED,
				 m->status, id);
	else if (rc == -ENOENT)
		source_set_error(f, -ENOENT, "no Google Drive file with id %s (HTTP %ld): check the "
				 "link", id, m->status);
}

/*
 * Read the HTML page that url leads to (the same request again, without
 * Range) and decide: the next URL to probe into next (0), Drive refusing
 * for now (-EAGAIN), or not shared (-EACCES); f's error set for those.
 */
static int drive_read_page(struct http_client *c, struct source_file *f, const char *id,
			   const char *url, const char *origin, char *next, size_t nextlen)
{
	const struct config_entry *e = f->entry;
	struct http_request rq = drive_request(e, url, origin, false);
	struct drive_page pg = { .buf = malloc(DRIVE_PAGE_MAX + 1) };
	struct http_meta m;
	char words[400];
	int rc;

	if (!pg.buf)
		return -ENOMEM;
	rc = http_get(c, &rq, page_sink, &pg, &m);
	pg.buf[pg.len] = '\0';
	if (rc == -EACCES || rc == -ENOENT) {
		drive_refusal(f, id, rc, &m);
	} else if (rc == -EAGAIN) {
		source_set_error(f, -EAGAIN, "Google Drive unreachable: %s",
				 m.error_text ? m.error_text : "no answer");
	} else if (rc < 0) {
		source_set_error(f, rc == -ENOMEM ? -ENOMEM : -EPROTO, "Google Drive sent a page "
				 "that could not be read: %s",
				 m.error_text ? m.error_text : strerror(-rc));
	} else if (!html_type(m.content_type)) {
		rc = -EPROTO;
		source_set_error(f, rc, "Google Drive answered a Range request with an HTML page "
				 "and the same request without Range with a file: cannot read it "
				 "lazily");
	} else if (drive_form_url(pg.buf, m.final_url, next, nextlen) ||
		   drive_link_url(pg.buf, m.final_url, next, nextlen)) {
		rc = 0;
	} else if (drive_error_text(pg.buf, words, sizeof(words))) {
		rc = -EAGAIN;
		source_set_error(f, rc, "Google Drive refuses the download for now: %s", words);
		/* Said once here: a retry later may well work, and the entry
		 * is listed as unresolved without these words. */
		log_warn("event=gdrive_refused entry=%s id=%s reason=\"%s\"", e->id, id, words);
	} else {
		rc = -EACCES;
		source_set_error(f, rc, "%s (Drive file %s answers with a sign-in page)",
				 DRIVE_NOT_SHARED, id);
	}
	log_debug("event=gdrive_page entry=%s id=%s status=%ld bytes=%zu rc=%d", e->id, id,
		  m.status, pg.len, rc);
	http_meta_clear(&m);
	free(pg.buf);
	return rc;
}

/* Resolve a Drive link: 0 (f's own err tells), -EAGAIN or -ENOMEM. */
static int drive_probe(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	const struct config_entry *e = f->entry;
	char id[DRIVE_ID_MAX], rk[DRIVE_ID_MAX], start[DRIVE_URL_MAX], url[DRIVE_URL_MAX];
	size_t len;
	const char *why;
	int rc = 0, round;

	if (drive_file_id(e->url, id, rk, &why) < 0) {
		source_set_error(f, -EINVAL, "%s", why);
		return 0;
	}
	len = (size_t)snprintf(start, sizeof(start), "%s/uc?id=%s&export=download",
			       ctx->cfg->gdrive_endpoint, id);
	if (len >= sizeof(start) - DRIVE_ID_MAX - 16) {
		source_set_error(f, -EINVAL, "gdrive_endpoint is too long");
		return 0;
	}
	if (rk[0])
		snprintf(start + len, sizeof(start) - len, "&resourcekey=%s", rk);
	snprintf(url, sizeof(url), "%s", start);
	for (round = 0;; round++) {
		struct http_request rq = drive_request(e, url, start, true);
		struct http_meta m;

		rc = http_get(c, &rq, http_discard_sink, NULL, &m);
		log_debug("event=gdrive_probe entry=%s id=%s round=%d status=%ld rc=%d", e->id, id,
			  round, m.status, rc);
		if (!(rc == -EPROTO && html_type(m.content_type))) {
			/* The file, or a final no: never an HTML page (http.c
			 * refuses HTML to a Range request). */
			if (rc == -EACCES || rc == -ENOENT) {
				drive_refusal(f, id, rc, &m);
				rc = 0;
			} else {
				rc = apply_probe(f, rc, &m, start);
			}
			http_meta_clear(&m);
			break;
		}
		http_meta_clear(&m);
		if (round + 1 == DRIVE_ROUNDS) {
			source_set_error(f, -EPROTO, "Google Drive answers with confirmation pages "
					 "again and again, never the file");
			rc = 0;
			break;
		}
		rc = drive_read_page(c, f, id, url, start, url, sizeof(url));
		if (rc == -EAGAIN || rc == -ENOMEM)
			return rc;
		if (rc < 0)
			return 0;	/* f carries the error */
	}
	log_debug("event=resolve entry=%s source=gdrive id=%s rounds=%d size=%lld rc=%d", e->id,
		  id, round + 1, (long long)f->size, f->err);
	return rc;
}

static int probe(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	const struct config_entry *e = f->entry;
	struct http_meta m;
	struct http_request rq = {
		.url = e->url,
		.headers = e->headers,
		.n_headers = e->n_headers,
		.authorization = e->auth_header,
		.range_first = 0,
		.range_len = 1,
		.follow_redirects = true,
		.timeout_sec = 30,
	};
	int rc;

	if (is_drive_link(e->url))
		return drive_probe(ctx, c, f);
	rc = http_get(c, &rq, http_discard_sink, NULL, &m);
	rc = apply_probe(f, rc, &m, e->url);
	log_debug("event=resolve entry=%s status=%ld size=%lld rc=%d", e->id, m.status,
		  (long long)f->size, f->err);
	http_meta_clear(&m);
	return rc;
}

const struct source_ops source_url_ops = {
	.kind = CONFIG_SOURCE_URL,
	.probe = probe,
};
