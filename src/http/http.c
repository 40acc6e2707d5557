/*
 * http.c: one HTTP GET per call over a reused libcurl easy handle, with
 * the strict checks of http.h (1)-(4). This is the only file that uses
 * libcurl. A call is a loop of hops: each hop is one curl_easy_perform()
 * of one URL; a 3xx either ends the call (the caller asked to see it) or
 * gives the next hop's URL. libcurl never follows a Location itself, so
 * that we alone decide which hop may see the request's headers and
 * Authorization: only a hop whose origin equals the request's origin
 * (the same goes for SigV4, which libcurl computes per hop from
 * rq->aws_*; and cookies, rq->cookies, live for one call: cookies_start()).
 * The body of a hop reaches the sink only after its status and headers
 * have passed the checks of (1) (check_2xx()), decided once at the first
 * body byte (decide()). CURLcodes and HTTP statuses become errnos in one
 * place, classify(), which passes through what the callbacks decided.
 */
#include "modelfs/bandwidth.h"
#include "modelfs/http.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"
#include "modelfs_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define MAX_HOPS		10	/* redirects followed per call */
#define ORIGIN_MAX		300	/* "https://" + host + ":65535" */
#define ERRBODY_MAX		4096	/* error body kept to find {"error": ...} */
#define DISCARD_MAX		(64 * 1024)	/* 3xx body read to keep the connection */
#define ERROR_TEXT_MAX		200
#define SERVER_TEXT_MAX		160	/* server-supplied reason inside error_text */
#define RETRY_AFTER_MAX		86400	/* a day: anything longer is nonsense */
/* SHA-256 of an empty body: the payload hash of every GET we sign. */
#define EMPTY_SHA256	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct http_client {
	CURL *curl;			/* one handle: its connection cache is the keep-alive */
	char errbuf[CURL_ERROR_SIZE];
	int64_t deadline_ms;		/* every request ends by then (clock_now_ms()); 0: none */
};

/* What the body of the current hop is used for; chosen by decide(). */
enum body_mode {
	BODY_UNDECIDED,
	BODY_SINK,		/* checked 2xx: bytes go to the sink (or are counted) */
	BODY_DISCARD,		/* 3xx: read and dropped so the connection stays usable */
	BODY_ERROR,		/* status >= 400: kept in errbody, never sunk */
	BODY_STOP,		/* probe: headers are all we wanted */
	BODY_REJECT,		/* x->verdict says why */
};

/* State of one http_get() call; the "hop" part is reset per hop. */
struct xfer {
	struct http_client *c;
	const struct http_request *rq;
	http_sink_fn sink;
	void *ctx;
	struct http_meta *meta;
	bool ranged;
	bool send_if_range;		/* rq->if_range is strong: sent and compared */
	uint64_t range_last;
	struct curl_slist *cookies;	/* rq->cookies: what the hops so far set (Netscape lines) */

	/* per hop */
	enum body_mode mode;
	int verdict;			/* -errno decided by a callback, 0 if none */
	bool stopped;			/* we aborted on purpose: not a transport error */
	bool cancelled;
	uint64_t bytes;			/* body bytes of this hop (sunk or counted) */
	bool has_content_range;
	char content_range[128];
	int64_t cr_total;		/* total from Content-Range, -1 unknown */
	int retry_after;		/* Retry-After, -1 if none */
	int ratelimit_t;		/* RateLimit t= of an exhausted policy, -1 if none */
	char server_msg[SERVER_TEXT_MAX + 1];	/* X-Error-Message, sanitized */
	char errbody[ERRBODY_MAX];
	size_t errbody_len;
	uint64_t body_sent;		/* request body bytes handed to libcurl */
	bool body_failed;		/* the file body could not be read */
};

static const char *method_name(enum http_method m)
{
	switch (m) {
	case HTTP_PUT:
		return "PUT";
	case HTTP_POST:
		return "POST";
	case HTTP_DELETE:
		return "DELETE";
	case HTTP_GET:
		break;
	}
	return "GET";
}

int http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

int http_client_new(struct http_client **out)
{
	struct http_client *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void http_client_set_deadline(struct http_client *c, int64_t deadline_ms)
{
	c->deadline_ms = deadline_ms;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c);
}

static void meta_reset(struct http_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->total_size = -1;
	m->content_length = -1;
	m->mtime = -1;
	m->retry_after_sec = -1;
}

int http_body_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct http_body *b = ctx;
	size_t cap;
	char *grown;

	if (len > b->max - b->len)
		return -EFBIG;
	if (b->len + len + 1 > b->cap) {
		for (cap = b->cap ? b->cap : 16384; cap < b->len + len + 1; cap *= 2)
			;
		grown = realloc(b->data, cap);
		if (!grown)
			return -ENOMEM;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int http_discard_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	return 0;
}

void http_meta_clear(struct http_meta *meta)
{
	if (!meta)
		return;
	free(meta->etag);
	free(meta->last_modified);
	free(meta->content_type);
	free(meta->content_disposition);
	free(meta->content_encoding);
	free(meta->location);
	free(meta->final_url);
	free(meta->error_text);
	for (size_t i = 0; i < meta->n_header_values; i++)
		free(meta->header_values[i]);
	free(meta->header_values);
	meta_reset(meta);
}

bool http_etag_is_strong(const char *etag)
{
	size_t n;

	if (!etag)
		return false;
	n = strlen(etag);
	return n >= 2 && etag[0] == '"' && etag[n - 1] == '"' &&
	       memchr(etag + 1, '"', n - 2) == NULL;
}

/* Strict decimal: at least one digit, nothing else, at most INT64_MAX. */
static int parse_u63(const char *s, size_t n, int64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = (int64_t)v;
	return 0;
}

int http_parse_content_range(const char *value, uint64_t *first,
			     uint64_t *last, int64_t *total)
{
	const char *dash, *slash, *p;
	int64_t a, b, t = -1;

	/* The range unit is case-insensitive (RFC 9110 14.1); one space follows. */
	if (!value || strncasecmp(value, "bytes ", 6) != 0)
		return -EINVAL;
	p = value + 6;
	dash = strchr(p, '-');
	slash = strchr(p, '/');
	if (!dash || !slash || dash > slash)
		return -EINVAL;
	if (parse_u63(p, (size_t)(dash - p), &a) < 0 ||
	    parse_u63(dash + 1, (size_t)(slash - dash - 1), &b) < 0)
		return -EINVAL;
	if (strcmp(slash + 1, "*") != 0 &&
	    parse_u63(slash + 1, strlen(slash + 1), &t) < 0)
		return -EINVAL;
	if (a > b || (t >= 0 && b >= t))
		return -EINVAL;
	*first = (uint64_t)a;
	*last = (uint64_t)b;
	*total = t;
	return 0;
}

/* "bytes STAR/N" (STAR = '*'), the form a 416 carries: N or -1. */
static int64_t unsatisfied_total(const char *value)
{
	int64_t t;

	if (strncasecmp(value, "bytes */", 8) != 0 ||
	    parse_u63(value + 8, strlen(value + 8), &t) < 0)
		return -1;
	return t;
}

int http_url_origin(const char *url, char *out, size_t outlen)
{
	char *scheme = NULL, *host = NULL, *port = NULL;
	const char *p;
	CURLU *u;
	int rc = -EINVAL;
	int n;

	if (!url || !out || outlen == 0)
		return -EINVAL;
	out[0] = '\0';
	/* curl reads "http:///x" as host x; an authority must follow "//". */
	p = strstr(url, "://");
	if (!p || p[3] == '/' || p[3] == '\0')
		return -EINVAL;
	u = curl_url();
	if (!u)
		return -ENOMEM;
	/* No CURLU_GUESS_SCHEME: "example.com/x" is not absolute. */
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
		goto out;
	/* IPv6 literals come back in brackets: "[::1]". */
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
		goto out;
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	for (char *q = scheme; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	for (char *q = host; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	n = snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
	if (n < 0 || (size_t)n >= outlen)
		goto out;
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	if (rc < 0)
		out[0] = '\0';
	return rc;
}

/* scheme://host[:port]/path of url: no userinfo, no query, for log lines. */
static void url_for_log(const char *url, char *out, size_t outlen)
{
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	CURLU *u = curl_url();

	snprintf(out, outlen, "<unparsable url>");
	if (!u)
		return;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		goto out;
	curl_url_get(u, CURLUPART_PORT, &port, 0);	/* absent: default */
	snprintf(out, outlen, "%s://%s%s%s%s", scheme, host, port ? ":" : "",
		 port ? port : "", path);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
}

/* Printable ASCII only, at most max bytes: server text made fit for a log. */
static void sanitize(char *dst, size_t max, const char *src, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o < max; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
	}
	while (o > 0 && dst[o - 1] == ' ')
		o--;
	dst[o] = '\0';
}

static void set_error_text(struct xfer *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error_text(struct xfer *x, const char *fmt, ...)
{
	char buf[ERROR_TEXT_MAX + 1], shown[ERROR_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* The text ends up in status, xattrs and the fetch log: redacted. */
	log_redact(buf, shown, sizeof(shown));
	free(x->meta->error_text);
	x->meta->error_text = strdup(shown);	/* NULL on OOM: only the text is lost */
}

/* Forget everything the previous hop (or interim 1xx response) said. */
static void hop_reset_headers(struct xfer *x)
{
	http_meta_clear(x->meta);
	x->has_content_range = false;
	x->content_range[0] = '\0';
	x->cr_total = -1;
	x->retry_after = -1;
	x->ratelimit_t = -1;
	x->server_msg[0] = '\0';
}

static void hop_reset(struct xfer *x)
{
	hop_reset_headers(x);
	x->body_sent = 0;
	x->body_failed = false;
	x->mode = BODY_UNDECIDED;
	x->verdict = 0;
	x->stopped = false;
	x->bytes = 0;
	x->errbody_len = 0;
}

static int set_str(char **field, const char *v, size_t n)
{
	char *s = strndup(v, n);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

/* Retry-After: delta-seconds, or an HTTP-date turned into a delta. */
static int parse_retry_after(const char *v)
{
	int64_t secs;
	time_t when;

	if (parse_u63(v, strlen(v), &secs) == 0)
		return secs > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (int)secs;
	when = curl_getdate(v, NULL);
	if (when < 0)
		return -1;
	secs = (int64_t)when - (int64_t)time(NULL);
	if (secs < 0)
		secs = 0;
	return secs > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (int)secs;
}

/*
 * RateLimit (IETF draft, as the Hub sends it): items separated by ',',
 * each `"name";r=<remaining>;t=<seconds to reset>`. Only an exhausted
 * policy (r=0) says how long to wait; the largest such t wins.
 */
static int parse_ratelimit(const char *v)
{
	int best = -1;
	char *dup = strdup(v), *save_item = NULL;

	if (!dup)
		return -1;
	for (char *item = strtok_r(dup, ",", &save_item); item;
	     item = strtok_r(NULL, ",", &save_item)) {
		int64_t r = -1, t = -1, num;
		char *save_param = NULL;

		for (char *p = strtok_r(item, ";", &save_param); p;
		     p = strtok_r(NULL, ";", &save_param)) {
			while (*p == ' ' || *p == '\t')
				p++;
			if ((p[0] == 'r' || p[0] == 't') && p[1] == '=' &&
			    parse_u63(p + 2, strcspn(p + 2, " \t"), &num) == 0) {
				if (p[0] == 'r')
					r = num;
				else
					t = num;
			}
		}
		if (r == 0 && t >= 0 && t > best)
			best = t > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (int)t;
	}
	free(dup);
	return best;
}

/* Does a comma-separated header value list the token "bytes"? */
static bool lists_bytes(const char *v)
{
	for (const char *p = v; *p;) {
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, " \t,");
		if (n == 5 && strncasecmp(p, "bytes", 5) == 0)
			return true;
		p += n;
	}
	return false;
}

static bool header_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

/* Keep the value of a header the caller listed in rq->want_headers, whole
 * (a Link header with a long cursor must not be cut); a repeated header
 * is joined with ", " as RFC 9110 5.3 allows. */
static int take_wanted(struct xfer *x, const char *name, size_t nlen, const char *v, size_t vlen)
{
	const char *const *want = x->rq->want_headers;
	struct http_meta *m = x->meta;
	size_t n = 0;

	if (!want)
		return 0;
	while (want[n])
		n++;
	for (size_t i = 0; i < n; i++) {
		char *joined;

		if (!header_is(name, nlen, want[i]))
			continue;
		if (!m->header_values) {
			m->header_values = calloc(n, sizeof(*m->header_values));
			if (!m->header_values)
				return -ENOMEM;
			m->n_header_values = n;
		}
		if (!m->header_values[i])
			return set_str(&m->header_values[i], v, vlen);
		if (asprintf(&joined, "%s, %.*s", m->header_values[i], (int)vlen, v) < 0)
			return -ENOMEM;
		free(m->header_values[i]);
		m->header_values[i] = joined;
	}
	return 0;
}

/* One header line of the current hop. Values are never logged. */
static int take_header(struct xfer *x, const char *line, size_t len)
{
	struct http_meta *m = x->meta;
	const char *colon, *v;
	size_t nlen, vlen;
	char value[1024];
	int64_t num;
	int rc;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A status line starts a response: a 1xx, or the final one. */
		const char *sp = memchr(line, ' ', len);

		hop_reset_headers(x);
		/* Three digits, the first 1-9: "012" is no status (RFC 9110 15). */
		if (sp && (size_t)(line + len - sp) >= 4 && sp[1] >= '1' && sp[1] <= '9' &&
		    isdigit((unsigned char)sp[2]) && isdigit((unsigned char)sp[3]))
			m->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
		return 0;
	}
	colon = memchr(line, ':', len);
	if (!colon)
		return 0;	/* the blank line ending the block, or junk */
	nlen = (size_t)(colon - line);
	v = colon + 1;
	vlen = len - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	rc = take_wanted(x, line, nlen, v, vlen);
	if (rc < 0)
		return rc;
	if (vlen >= sizeof(value))
		vlen = sizeof(value) - 1;	/* none we read is legitimately longer */
	memcpy(value, v, vlen);
	value[vlen] = '\0';

	if (header_is(line, nlen, "Content-Range")) {
		x->has_content_range = true;
		/* A longer value cannot be valid: keep "" so that it fails to parse. */
		x->content_range[0] = '\0';
		if (vlen < sizeof(x->content_range))
			memcpy(x->content_range, value, vlen + 1);
		if (unsatisfied_total(value) >= 0) {
			x->cr_total = unsatisfied_total(value);
		} else {
			uint64_t a, b;

			if (http_parse_content_range(value, &a, &b, &num) == 0)
				x->cr_total = num;
		}
	} else if (header_is(line, nlen, "Content-Length")) {
		m->content_length = parse_u63(value, vlen, &num) == 0 ? num : -1;
	} else if (header_is(line, nlen, "ETag")) {
		return set_str(&m->etag, value, vlen);
	} else if (header_is(line, nlen, "Last-Modified")) {
		time_t t = curl_getdate(value, NULL);

		m->mtime = t < 0 ? -1 : (int64_t)t;
		return set_str(&m->last_modified, value, vlen);
	} else if (header_is(line, nlen, "Content-Type")) {
		return set_str(&m->content_type, value, vlen);
	} else if (header_is(line, nlen, "Content-Disposition")) {
		return set_str(&m->content_disposition, value, vlen);
	} else if (header_is(line, nlen, "Content-Encoding")) {
		return set_str(&m->content_encoding, value, vlen);
	} else if (header_is(line, nlen, "Accept-Ranges")) {
		m->accept_ranges = lists_bytes(value);
	} else if (header_is(line, nlen, "Retry-After")) {
		x->retry_after = parse_retry_after(value);
	} else if (header_is(line, nlen, "RateLimit")) {
		x->ratelimit_t = parse_ratelimit(value);
	} else if (header_is(line, nlen, "X-Error-Message")) {
		sanitize(x->server_msg, SERVER_TEXT_MAX, value, vlen);
	}
	/* Location: the absolute form comes from CURLINFO_REDIRECT_URL. */
	return 0;
}

int http_read_header_block(const char *block, size_t len, const char *const *want_headers,
			   struct http_meta *meta, struct http_header_facts *facts)
{
	struct http_request rq = { .want_headers = want_headers };
	struct xfer x = { .rq = &rq, .meta = meta };
	int rc = 0;

	_Static_assert(sizeof(facts->server_msg) == sizeof(x.server_msg), "one message size");
	memset(meta, 0, sizeof(*meta));
	hop_reset_headers(&x);
	for (const char *line = block, *end = block + len; rc == 0 && line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = nl ? (size_t)(nl - line) + 1 : (size_t)(end - line);

		rc = take_header(&x, line, n);
		line += n;
	}
	facts->content_range_total = x.cr_total;
	facts->retry_after = x.retry_after;
	facts->ratelimit_t = x.ratelimit_t;
	memcpy(facts->server_msg, x.server_msg, sizeof(facts->server_msg));
	return rc;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	int rc;

	/* Trailers after the body must not rewrite what was checked. */
	if (x->mode != BODY_UNDECIDED)
		return n;
	rc = take_header(x, data, n);
	if (rc < 0) {
		x->verdict = rc;
		set_error_text(x, "out of memory");
		return 0;
	}
	return n;
}

static bool identity_encoding(const struct http_meta *m)
{
	return !m->content_encoding || !m->content_encoding[0] ||
	       strcasecmp(m->content_encoding, "identity") == 0;
}

static bool is_html(const struct http_meta *m)
{
	const char *ct = m->content_type;

	return ct && strncasecmp(ct, "text/html", 9) == 0 &&
	       (ct[9] == '\0' || ct[9] == ';' || ct[9] == ' ' || ct[9] == '\t');
}

/*
 * The checks of http.h (1) on a 2xx, before any body byte moves: 0 or
 * -EPROTO/-ESTALE with error_text set.
 */
static int check_2xx(struct xfer *x)
{
	const struct http_request *rq = x->rq;
	struct http_meta *m = x->meta;
	uint64_t first, last;
	int64_t total;

	if (!x->ranged) {
		if (m->status == 206) {
			set_error_text(x, "HTTP 206 to a request without Range");
			return -EPROTO;
		}
		/* An unranged body may be read whole only as the bytes it is. */
		if (x->sink && !identity_encoding(m)) {
			set_error_text(x, "compressed body (Content-Encoding %.32s)",
				       m->content_encoding);
			return -EPROTO;
		}
		if (x->sink && rq->file_body && is_html(m)) {
			set_error_text(x, "an HTML page where a file was expected");
			return -EPROTO;
		}
		return 0;
	}
	if (m->status != 206) {
		if (m->status == 200)
			m->range_ignored = true;
		/* A 200 to If-Range means "changed" only when the validator
		 * did change; with the same (or no) ETag the server merely
		 * ignores Range, or answers with an error page. */
		if (m->status == 200 && x->send_if_range && http_etag_is_strong(m->etag) &&
		    strcmp(m->etag, rq->if_range) != 0) {
			set_error_text(x, "HTTP 200 to If-Range: the file changed");
			return -ESTALE;
		}
		if (m->status == 200)
			set_error_text(x, "HTTP 200 to a Range request (server ignores Range)");
		else
			set_error_text(x, "HTTP %ld to a Range request", m->status);
		return -EPROTO;
	}
	if (!identity_encoding(m)) {
		set_error_text(x, "compressed body (Content-Encoding %.32s)", m->content_encoding);
		return -EPROTO;
	}
	if (is_html(m)) {
		set_error_text(x, "HTML body (Content-Type text/html) to a Range request");
		return -EPROTO;
	}
	if (!x->has_content_range) {
		set_error_text(x, "HTTP 206 without Content-Range");
		return -EPROTO;
	}
	if (http_parse_content_range(x->content_range, &first, &last, &total) < 0) {
		set_error_text(x, "unparsable Content-Range");
		return -EPROTO;
	}
	if (first != rq->range_first || last != x->range_last) {
		set_error_text(x, "Content-Range bytes %" PRIu64 "-%" PRIu64 "/%" PRId64
			       " does not match requested %" PRIu64 "-%" PRIu64,
			       first, last, total, rq->range_first, x->range_last);
		return -EPROTO;
	}
	if (m->content_length >= 0 && (uint64_t)m->content_length != rq->range_len) {
		set_error_text(x, "Content-Length %" PRId64 " for a range of %" PRIu64 " bytes",
			       m->content_length, rq->range_len);
		return -EPROTO;
	}
	if (x->send_if_range && http_etag_is_strong(m->etag) &&
	    strcmp(m->etag, rq->if_range) != 0) {
		set_error_text(x, "HTTP 206 with another ETag than If-Range: the file changed");
		return -ESTALE;
	}
	return 0;
}

/* At the first body byte (or at the end of a bodiless hop): what the body is for. */
static void decide(struct xfer *x)
{
	long status = 0;
	int rc;

	curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &status);
	x->meta->status = status;
	if (status >= 300 && status < 400) {
		x->mode = BODY_DISCARD;
	} else if (status >= 200 && status < 300) {
		rc = check_2xx(x);
		if (rc < 0) {
			x->verdict = rc;
			x->mode = BODY_REJECT;
		} else if (!x->ranged && !x->sink) {
			x->mode = BODY_STOP;
		} else {
			x->mode = BODY_SINK;
		}
	} else {
		x->mode = BODY_ERROR;
	}
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb, room;
	uint64_t off;
	int rc;

	if (x->rq->cancel && atomic_load(x->rq->cancel)) {
		x->cancelled = true;
		return 0;
	}
	if (x->mode == BODY_UNDECIDED)
		decide(x);
	if (n == 0)
		return 0;
	switch (x->mode) {
	case BODY_SINK:
		bandwidth_take(n);	/* bandwidth_limit: sleeping here slows the sender */
		if (x->ranged && n > x->rq->range_len - x->bytes) {
			set_error_text(x, "body longer than the requested %" PRIu64 " bytes",
				       x->rq->range_len);
			x->verdict = -EPROTO;
			return 0;
		}
		off = (x->ranged ? x->rq->range_first : 0) + x->bytes;
		if (x->sink) {
			rc = x->sink(x->ctx, off, data, n);
			if (rc != 0) {
				x->verdict = rc < 0 ? rc : -EIO;
				set_error_text(x, "sink failed: %s", strerror(-x->verdict));
				return 0;
			}
		}
		x->bytes += n;
		return n;
	case BODY_DISCARD:
		x->bytes += n;
		if (x->bytes > DISCARD_MAX) {
			x->stopped = true;	/* a huge 3xx body: drop the connection instead */
			return 0;
		}
		return n;
	case BODY_ERROR:
		room = sizeof(x->errbody) - x->errbody_len;
		memcpy(x->errbody + x->errbody_len, data, n < room ? n : room);
		x->errbody_len += n < room ? n : room;
		x->bytes += n;
		if (x->errbody_len == sizeof(x->errbody)) {
			x->stopped = true;	/* enough to find a reason */
			return 0;
		}
		return n;
	case BODY_STOP:
		x->stopped = true;
		return 0;
	case BODY_REJECT:
	case BODY_UNDECIDED:
		break;
	}
	return 0;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = arg;

	/* Also called while resolving and connecting, about once a second at worst. */
	if (x->rq->cancel && atomic_load(x->rq->cancel)) {
		x->cancelled = true;
		return 1;
	}
	return 0;
}

/* The text of the first <tag>...</tag> in the error body, with the five
 * XML entities decoded, into out (max bytes + NUL); "" if absent. */
static void xml_element(const struct xfer *x, const char *tag, char *out, size_t max)
{
	const char *end = x->errbody + x->errbody_len, *p, *q;
	char open[32], close[32];
	static const char *const ent[][2] = {
		{ "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" }, { "&quot;", "\"" }, { "&apos;", "'" },
	};
	char buf[SERVER_TEXT_MAX + 1];
	size_t o = 0;

	out[0] = '\0';
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	p = memmem(x->errbody, x->errbody_len, open, strlen(open));
	if (!p)
		return;
	p += strlen(open);
	q = memmem(p, (size_t)(end - p), close, strlen(close));
	if (!q)
		return;
	while (p < q && o < sizeof(buf) - 1) {
		size_t k;

		for (k = 0; k < sizeof(ent) / sizeof(ent[0]); k++)
			if ((size_t)(q - p) >= strlen(ent[k][0]) &&
			    strncmp(p, ent[k][0], strlen(ent[k][0])) == 0)
				break;
		if (k < sizeof(ent) / sizeof(ent[0])) {
			buf[o++] = ent[k][1][0];
			p += strlen(ent[k][0]);
		} else {
			buf[o++] = *p++;
		}
	}
	sanitize(out, max, buf, o);
}

/* An S3-style XML error, <Error><Code>C</Code><Message>M</Message>: "C: M".
 * Callers (the S3 source) read C back from error_text after "HTTP nnn: ". */
static void xml_reason(const struct xfer *x, char *out, size_t max)
{
	char code[64], msg[SERVER_TEXT_MAX + 1], both[sizeof(code) + 2 + sizeof(msg)];
	size_t n;

	out[0] = '\0';
	if (max == 0 || !memmem(x->errbody, x->errbody_len, "<Error>", 7))
		return;
	xml_element(x, "Code", code, sizeof(code) - 1);
	xml_element(x, "Message", msg, sizeof(msg) - 1);
	if (!code[0])
		return;
	snprintf(both, sizeof(both), "%s%s%s", code, msg[0] ? ": " : "", msg);
	n = strlen(both) < max - 1 ? strlen(both) : max - 1;
	memcpy(out, both, n);
	out[n] = '\0';
}

/* The reason an error body gives: {"error": "..."} (Hub, CivitAI) or
 * "message", or an S3 XML <Error>. */
static void errbody_reason(struct xfer *x, char *out, size_t max)
{
	json_t *root, *v, *msg;

	out[0] = '\0';
	if (x->errbody_len == 0)
		return;
	root = json_loadb(x->errbody, x->errbody_len, 0, NULL);
	if (!root) {
		xml_reason(x, out, max);
		return;
	}
	/* {"error": ..., "message": ...}: CivitAI says the why in "message". */
	v = json_is_object(root) ? json_object_get(root, "error") : NULL;
	msg = json_is_object(root) ? json_object_get(root, "message") : NULL;
	if (!json_is_string(v)) {
		v = msg;
		msg = NULL;
	}
	if (json_is_string(v))
		sanitize(out, max - 1, json_string_value(v), json_string_length(v));	/* + NUL */
	if (json_is_string(v) && json_is_string(msg) && strlen(out) + 3 < max) {
		size_t n = strlen(out);

		memcpy(out + n, ": ", 2);
		sanitize(out + n + 2, max - n - 3, json_string_value(msg), json_string_length(msg));
	}
	json_decref(root);
}

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 ||
	       status == 307 || status == 308;
}

static bool is_transient_status(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status < 600);
}

/*
 * The one place where a CURLcode and an HTTP status become an errno (and
 * error_text). Verdicts the callbacks reached are passed through.
 */
static int classify(struct xfer *x, CURLcode cc)
{
	struct http_meta *m = x->meta;
	long status = m->status;
	char reason[SERVER_TEXT_MAX + 1];
	int64_t expect;

	if (x->cancelled) {
		set_error_text(x, "cancelled");
		return -ECANCELED;
	}
	if (x->verdict)
		return x->verdict;
	if (x->body_failed) {
		set_error_text(x, "could not read the request body from its file");
		return -EIO;
	}
	if (cc == CURLE_WRITE_ERROR && x->stopped)
		cc = CURLE_OK;
	/* Status and headers were complete: a cut in a body we do not keep
	 * (an error page, a redirect's) changes nothing. */
	if (x->mode == BODY_ERROR || x->mode == BODY_DISCARD)
		cc = CURLE_OK;
	expect = x->ranged ? (int64_t)x->rq->range_len : m->content_length;
	switch (cc) {
	case CURLE_OK:
		break;
	case CURLE_OPERATION_TIMEDOUT:
		set_error_text(x, "timed out after %" PRIu64 " bytes", x->bytes);
		return -EAGAIN;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		set_error_text(x, "could not resolve host");
		return -EAGAIN;
	case CURLE_COULDNT_CONNECT:
		set_error_text(x, "could not connect");
		return -EAGAIN;
	case CURLE_SSL_CONNECT_ERROR:
		set_error_text(x, "TLS handshake failed");
		return -EAGAIN;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		if (expect >= 0)
			set_error_text(x, "connection closed after %" PRIu64 " of %" PRId64
				       " bytes", x->bytes, expect);
		else
			set_error_text(x, "connection closed after %" PRIu64 " bytes", x->bytes);
		return -EAGAIN;
	case CURLE_OUT_OF_MEMORY:
		set_error_text(x, "out of memory");
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
		set_error_text(x, "malformed URL");
		return -EINVAL;
	default:
		set_error_text(x, "%s", curl_easy_strerror(cc));
		return -EIO;
	}

	if (status >= 200 && status < 300) {
		if (x->mode == BODY_STOP)
			return 0;
		if (expect >= 0 && x->bytes != (uint64_t)expect) {
			/* A close-delimited body can end early without a curl error. */
			set_error_text(x, "connection closed after %" PRIu64 " of %" PRId64
				       " bytes", x->bytes, expect);
			return -EAGAIN;
		}
		return 0;
	}
	if (status >= 300 && status < 400 && x->rq->method != HTTP_GET) {
		/* (5): a body and its signature go to one host only. */
		set_error_text(x, "HTTP %ld to a %s", status, method_name(x->rq->method));
		return -EIO;
	}
	if (status >= 300 && status < 400) {
		/* Not following: the caller reads status and location itself. */
		if (m->location && (is_redirect(status) || !x->rq->follow_redirects))
			return 0;
		set_error_text(x, "HTTP %ld%s", status, m->location ? "" : " without Location");
		return -EIO;
	}
	if (status == 0) {
		set_error_text(x, "no HTTP response");
		return -EIO;
	}

	if (x->server_msg[0])
		snprintf(reason, sizeof(reason), "%s", x->server_msg);
	else
		errbody_reason(x, reason, sizeof(reason));
	set_error_text(x, "HTTP %ld%s%s", status, reason[0] ? ": " : "", reason);
	if (is_transient_status(status))
		return -EAGAIN;
	switch (status) {
	case 401:
	case 403:
		return -EACCES;
	case 404:
	case 410:
		return -ENOENT;
	case 416:
		return -ERANGE;
	case 412:
		return x->rq->if_none_match_any ? -EEXIST : -EIO;
	default:
		return -EIO;
	}
}

/* Total size and wait hint of the hop, from what its headers said. */
static void finish_meta(struct xfer *x)
{
	struct http_meta *m = x->meta;

	/* Sizes of an encoded representation say nothing about byte offsets. */
	if (identity_encoding(m)) {
		if (x->cr_total >= 0)
			m->total_size = x->cr_total;
		else if (m->status == 200)
			m->total_size = m->content_length;
	}
	m->retry_after_sec = x->retry_after > x->ratelimit_t ? x->retry_after : x->ratelimit_t;
}

/* Append line to *list (curl copies it): 0 or -ENOMEM, *list intact. */
static int slist_add(struct curl_slist **list, const char *line)
{
	struct curl_slist *grown = curl_slist_append(*list, line);

	if (!grown)
		return -ENOMEM;
	*list = grown;
	return 0;
}

/* Does rq ask for SigV4 signing (with credentials to sign with)? */
static bool signs_aws(const struct http_request *rq)
{
	return rq->aws_sigv4 && rq->aws_credentials;
}

/* Header lines for one hop; only an origin hop gets the request's own. */
static int build_headers(const struct xfer *x, bool to_origin, struct curl_slist **out)
{
	const struct http_request *rq = x->rq;
	struct curl_slist *list = NULL;
	char line[8192];
	int rc = 0;

	*out = NULL;
	if (x->send_if_range) {
		snprintf(line, sizeof(line), "If-Range: %s", rq->if_range);
		if (slist_add(&list, line))
			return -ENOMEM;
	}
	for (size_t i = 0; to_origin && i < rq->n_headers; i++) {
		const struct config_header *h = &rq->headers[i];
		int n;

		/* (3): never an Accept-Encoding, whoever asks. */
		if (strcasecmp(h->name, "Accept-Encoding") == 0)
			continue;
		n = h->value[0] ? snprintf(line, sizeof(line), "%s: %s", h->name, h->value)
				: snprintf(line, sizeof(line), "%s;", h->name);
		if (n < 0 || (size_t)n >= sizeof(line)) {
			rc = -EINVAL;
			goto out;
		}
		rc = slist_add(&list, line);
		if (rc)
			goto out;
	}
	if (to_origin && rq->authorization) {
		if ((size_t)snprintf(line, sizeof(line), "Authorization: %s",
				     rq->authorization) >= sizeof(line)) {
			rc = -EINVAL;
			goto out;
		}
		rc = slist_add(&list, line);
		if (rc)
			goto out;
	}
	if (rq->method != HTTP_GET) {
		/* (5): the body goes at once, Content-Length exact. */
		rc = slist_add(&list, "Expect:");
		if (rc == 0 && rq->if_none_match_any)
			rc = slist_add(&list, "If-None-Match: *");
		if (rc == 0 && rq->content_type) {
			if ((size_t)snprintf(line, sizeof(line), "Content-Type: %s",
					     rq->content_type) >= sizeof(line))
				rc = -EINVAL;
			else
				rc = slist_add(&list, line);
		}
		if (rc)
			goto out;
	}
	if (to_origin && signs_aws(rq)) {
		/* Signed by libcurl as part of the request (SignedHeaders):
		 * curl 7.88 adds no payload hash of its own, and R2 needs one;
		 * it signs the one given here. */
		if (rq->payload_sha256)
			snprintf(line, sizeof(line), "x-amz-content-sha256: %s",
				 rq->payload_sha256);
		else
			snprintf(line, sizeof(line), "x-amz-content-sha256: %s",
				 rq->body || rq->body_len ? "UNSIGNED-PAYLOAD" : EMPTY_SHA256);
		rc = slist_add(&list, line);
		if (rc == 0 && rq->aws_session_token) {
			if ((size_t)snprintf(line, sizeof(line), "x-amz-security-token: %s",
					     rq->aws_session_token) >= sizeof(line))
				rc = -EINVAL;
			else
				rc = slist_add(&list, line);
		}
		if (rc)
			goto out;
	}
out:
	explicit_bzero(line, sizeof(line));	/* it held the Authorization value */
	if (rc < 0) {
		curl_slist_free_all(list);
		list = NULL;
	}
	*out = list;
	return rc;
}

/* The request body (5), from memory or read from its file as it goes. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	const struct http_request *rq = x->rq;
	size_t want = size * nitems;
	uint64_t left = rq->body_len - x->body_sent;
	ssize_t n;

	if (rq->cancel && atomic_load(rq->cancel)) {
		x->cancelled = true;
		return CURL_READFUNC_ABORT;
	}
	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (rq->body) {
		memcpy(buf, (const char *)rq->body + x->body_sent, want);
		n = (ssize_t)want;
	} else {
		n = pread(rq->body_fd, buf, want, (off_t)(rq->body_off + x->body_sent));
		if (n <= 0) {
			/* Short of what Content-Length promised: never send less. */
			x->body_failed = true;
			return CURL_READFUNC_ABORT;
		}
	}
	x->body_sent += (uint64_t)n;
	return (size_t)n;
}

#define SETOPT(h, opt, val) \
	do { if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) goto fail; } while (0)

/* All options of one hop, from scratch: nothing leaks from the last call. */
static int setup_hop(struct xfer *x, const char *url, const struct curl_slist *hdrs,
		     const char *range, long timeout_ms)
{
	CURL *h = x->c->curl;
	const char *ua = x->rq->user_agent ? x->rq->user_agent : "modelfs/" MODELFS_VERSION;

	/* Keeps live connections, DNS and TLS session caches: keep-alive survives. */
	curl_easy_reset(h);
	x->c->errbuf[0] = '\0';
	SETOPT(h, CURLOPT_URL, url);
	SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);	/* http_get follows: see (2) */
	SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(h, CURLOPT_TCP_KEEPIDLE, 60L);
	SETOPT(h, CURLOPT_TCP_KEEPINTVL, 30L);
	SETOPT(h, CURLOPT_CONNECTTIMEOUT, 10L);
	/* A stalled peer (under 1 KiB/s for 30 s) is a transient failure. */
	SETOPT(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	SETOPT(h, CURLOPT_LOW_SPEED_TIME, 30L);
	if (timeout_ms > 0)
		SETOPT(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	/* One stream per handle gains nothing from HTTP/2 and its flow control
	 * windows cost throughput; HTTP/1.1 keep-alive is what we use. */
	SETOPT(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	/* Only a speed hint, so not checked: libcurl 7.88 refuses it on a
	 * handle whose last transfer failed in name resolution, and that
	 * must stay a transient failure (-EAGAIN), not "refused an option". */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
	SETOPT(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	SETOPT(h, CURLOPT_USERAGENT, ua);
	SETOPT(h, CURLOPT_HTTPHEADER, hdrs);
	if (range)
		SETOPT(h, CURLOPT_RANGE, range);
	SETOPT(h, CURLOPT_ERRORBUFFER, x->c->errbuf);
	SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(h, CURLOPT_HEADERDATA, x);
	SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(h, CURLOPT_WRITEDATA, x);
	SETOPT(h, CURLOPT_NOPROGRESS, 0L);
	SETOPT(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	SETOPT(h, CURLOPT_XFERINFODATA, x);
	switch (x->rq->method) {
	case HTTP_PUT:
		SETOPT(h, CURLOPT_UPLOAD, 1L);
		SETOPT(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->rq->body_len);
		break;
	case HTTP_POST:
		SETOPT(h, CURLOPT_POST, 1L);
		SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->rq->body_len);
		break;
	case HTTP_DELETE:
		SETOPT(h, CURLOPT_CUSTOMREQUEST, "DELETE");
		break;
	case HTTP_GET:
		break;
	}
	if (x->rq->method == HTTP_PUT || x->rq->method == HTTP_POST) {
		SETOPT(h, CURLOPT_READFUNCTION, on_read);
		SETOPT(h, CURLOPT_READDATA, x);
	}
	/* Never CURLOPT_ACCEPT_ENCODING (3) nor CURLOPT_UNRESTRICTED_AUTH (2). */
	return 0;
fail:
	set_error_text(x, "libcurl refused an option");
	return -EIO;
}

/*
 * Cookies (rq->cookies; Google Drive sets one on the redirect to its
 * download host). libcurl's jar lives for one hop only: started here with
 * the cookies the earlier hops of this request set, read back into
 * x->cookies after the hop and torn down (cookies_stop()). So no cookie
 * outlives its request or reaches a request without rq->cookies. Not kept
 * across hops by libcurl itself: curl_easy_reset() keeps a jar alive for
 * every later request of the handle, and (7.88) leaks the list that
 * CURLOPT_COOKIEFILE started it with.
 */
static int cookies_start(struct xfer *x)
{
	CURL *h = x->c->curl;

	if (curl_easy_setopt(h, CURLOPT_COOKIEFILE, "") != CURLE_OK)
		return -EIO;
	for (const struct curl_slist *l = x->cookies; l; l = l->next)
		if (curl_easy_setopt(h, CURLOPT_COOKIELIST, l->data) != CURLE_OK)
			return -EIO;
	return 0;
}

/* After a hop: keep what the jar holds (keep) and drop the jar. */
static void cookies_stop(struct xfer *x, bool keep)
{
	struct curl_slist *now = NULL;

	if (keep && curl_easy_getinfo(x->c->curl, CURLINFO_COOKIELIST, &now) == CURLE_OK) {
		curl_slist_free_all(x->cookies);
		x->cookies = now;
	}
	curl_easy_setopt(x->c->curl, CURLOPT_COOKIEFILE, NULL);	/* frees jar and list */
}

/*
 * What a hop adds to setup_hop(): SigV4 signing by libcurl, on origin hops
 * only (a hop to another host is never signed, and UNRESTRICTED_AUTH stays
 * off), and the request's cookies.
 */
static int setup_hop_extras(struct xfer *x, bool to_origin)
{
	const struct http_request *rq = x->rq;
	CURL *h = x->c->curl;
	char *cred = NULL, *colon;
	size_t cred_len = 0;
	int rc = 0;

	if (to_origin && signs_aws(rq)) {
		cred = strdup(rq->aws_credentials);
		if (!cred)
			return -ENOMEM;
		cred_len = strlen(cred);
		colon = strchr(cred, ':');
		if (!colon) {
			set_error_text(x, "AWS credentials are not KEY:SECRET");
			rc = -EINVAL;
			goto out;
		}
		*colon = '\0';		/* an access key id has no ':'; a secret may */
		if (curl_easy_setopt(h, CURLOPT_AWS_SIGV4, rq->aws_sigv4) != CURLE_OK ||
		    curl_easy_setopt(h, CURLOPT_USERNAME, cred) != CURLE_OK ||
		    curl_easy_setopt(h, CURLOPT_PASSWORD, colon + 1) != CURLE_OK)
			goto fail;
	}
	if (rq->cookies && cookies_start(x) < 0)
		goto fail;
	goto out;
fail:
	set_error_text(x, "libcurl refused an option");
	rc = -EIO;
out:
	if (cred) {
		explicit_bzero(cred, cred_len);
		free(cred);
	}
	return rc;
}

/* A header value must not end the line it is on. */
static bool header_safe(const char *s)
{
	return s && !strpbrk(s, "\r\n");
}

static int check_request(const struct http_request *rq)
{
	if (!rq->url)
		return -EINVAL;
	if (rq->range_len > 0 &&
	    (rq->range_first > (uint64_t)INT64_MAX ||
	     rq->range_len - 1 > (uint64_t)INT64_MAX - rq->range_first))
		return -EINVAL;
	if (rq->authorization && !header_safe(rq->authorization))
		return -EINVAL;
	if (rq->if_range && !header_safe(rq->if_range))
		return -EINVAL;
	if (rq->user_agent && !header_safe(rq->user_agent))
		return -EINVAL;
	if (rq->method != HTTP_GET &&
	    (rq->range_len > 0 || rq->if_range || rq->follow_redirects || rq->cookies))
		return -EINVAL;
	if ((rq->body || rq->body_len) && rq->method != HTTP_PUT && rq->method != HTTP_POST)
		return -EINVAL;
	if ((rq->content_type && !header_safe(rq->content_type)) ||
	    (rq->payload_sha256 && !header_safe(rq->payload_sha256)))
		return -EINVAL;
	if ((rq->aws_sigv4 && !header_safe(rq->aws_sigv4)) ||
	    (rq->aws_credentials && !header_safe(rq->aws_credentials)) ||
	    (rq->aws_session_token && !header_safe(rq->aws_session_token)))
		return -EINVAL;
	for (size_t i = 0; i < rq->n_headers; i++) {
		const struct config_header *h = &rq->headers[i];

		if (!h->name || !h->name[0] || strpbrk(h->name, ":;\r\n \t") ||
		    !header_safe(h->value))
			return -EINVAL;
	}
	return 0;
}

int http_get(struct http_client *c, const struct http_request *rq,
	     http_sink_fn sink, void *ctx, struct http_meta *meta)
{
	struct http_meta local;
	struct xfer x = { .c = c, .rq = rq, .sink = sink, .ctx = ctx };
	char origin[ORIGIN_MAX], hop_origin[ORIGIN_MAX], range[48], logurl[512] = "";
	struct curl_slist *hdrs = NULL;
	char *url = NULL, *next = NULL;
	int64_t start = clock_now_ms(), hop_start;
	CURLcode cc;
	int rc, hop;

	/* meta is overwritten, not freed: callers hand in an uninitialized one. */
	if (!meta)
		meta = &local;
	meta_reset(meta);
	x.meta = meta;
	hop_reset(&x);

	rc = check_request(rq);
	if (rc < 0) {
		set_error_text(&x, "invalid request");
		goto out;
	}
	x.ranged = rq->range_len > 0;
	x.range_last = x.ranged ? rq->range_first + rq->range_len - 1 : 0;
	/* RFC 9110 13.1.5: a weak validator must not be sent in If-Range. */
	x.send_if_range = x.ranged && http_etag_is_strong(rq->if_range);
	if (x.ranged)
		snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64,
			 rq->range_first, x.range_last);
	else
		snprintf(range, sizeof(range), "-");

	rc = http_url_origin(rq->url, hop_origin, sizeof(hop_origin));
	if (rc == 0)
		rc = http_url_origin(rq->origin_url ? rq->origin_url : rq->url,
				     origin, sizeof(origin));
	if (rc < 0) {
		set_error_text(&x, "not an absolute http(s) URL");
		goto out;
	}
	url = strdup(rq->url);
	if (!url) {
		rc = -ENOMEM;
		goto out;
	}

	for (hop = 0;; hop++) {
		long timeout_ms = 0;
		bool to_origin, curl_said;

		hop_reset(&x);
		if (rq->cancel && atomic_load(rq->cancel)) {
			x.cancelled = true;
			rc = classify(&x, CURLE_OK);
			goto out;
		}
		rc = http_url_origin(url, hop_origin, sizeof(hop_origin));
		if (rc < 0) {
			set_error_text(&x, "redirect to a URL that is not http(s)");
			rc = -EIO;
			goto out;
		}
		to_origin = strcmp(hop_origin, origin) == 0;
		if (rq->timeout_sec > 0 || c->deadline_ms > 0) {
			int64_t left = rq->timeout_sec > 0 ? (int64_t)rq->timeout_sec * 1000 -
							     (clock_now_ms() - start) : INT64_MAX;

			if (c->deadline_ms > 0 && c->deadline_ms - clock_now_ms() < left)
				left = c->deadline_ms - clock_now_ms();
			if (left <= 0) {
				rc = classify(&x, CURLE_OPERATION_TIMEDOUT);
				goto out;
			}
			timeout_ms = (long)left;
		}
		curl_slist_free_all(hdrs);
		rc = build_headers(&x, to_origin, &hdrs);
		if (rc < 0)
			goto out;
		rc = setup_hop(&x, url, hdrs, x.ranged ? range : NULL, timeout_ms);
		if (rc == 0)
			rc = setup_hop_extras(&x, to_origin);
		if (rc < 0)
			goto out;

		hop_start = clock_now_ms();
		cc = curl_easy_perform(c->curl);
		if (rq->cookies)
			cookies_stop(&x, true);
		if (cc == CURLE_OK && x.mode == BODY_UNDECIDED && !x.verdict)
			decide(&x);	/* no body came: the checks still apply */
		if (meta->status >= 300 && meta->status < 400) {
			char *loc = NULL;	/* Location made absolute against url */

			curl_easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &loc);
			if (loc) {
				meta->location = strdup(loc);
				if (!meta->location) {
					rc = -ENOMEM;
					goto out;
				}
			}
		}
		finish_meta(&x);
		rc = classify(&x, cc);

		if (log_get_level() >= LOG_LVL_DEBUG)
			url_for_log(url, logurl, sizeof(logurl));
		/* libcurl's own words, when it (not we) ended the hop: they
		 * name hosts and ports, never header values. */
		curl_said = rc < 0 && cc != CURLE_OK && !x.verdict && !x.cancelled &&
			    c->errbuf[0];
		log_debug("http %s url=%s hop=%d origin=%d range=%s status=%ld bytes=%" PRIu64
			  " ms=%" PRId64 " rc=%d%s%s%s%s%s%s", method_name(rq->method), logurl, hop,
			  to_origin, range,
			  meta->status, x.bytes, clock_now_ms() - hop_start, rc,
			  rc && meta->error_text ? " reason=\"" : "",
			  rc && meta->error_text ? meta->error_text : "",
			  rc && meta->error_text ? "\"" : "",
			  curl_said ? " curl=\"" : "", curl_said ? c->errbuf : "",
			  curl_said ? "\"" : "");

		if (rc < 0 || !is_redirect(meta->status) || !rq->follow_redirects)
			break;
		if (hop == MAX_HOPS) {
			set_error_text(&x, "more than %d redirects", MAX_HOPS);
			rc = -EIO;
			break;
		}
		/* 303 means GET, which is all we do; 307/308 keep it: still GET. */
		next = strdup(meta->location);
		if (!next) {
			rc = -ENOMEM;
			goto out;
		}
		free(url);
		url = next;
		next = NULL;
	}
	meta->final_url = strdup(url);
	if (!meta->final_url && rc == 0)
		rc = -ENOMEM;
out:
	if (rc == -ENOMEM && !meta->error_text)
		set_error_text(&x, "out of memory");
	curl_slist_free_all(hdrs);
	free(url);
	if (rq->cookies)
		cookies_stop(&x, false);	/* a hop that failed before perform */
	curl_slist_free_all(x.cookies);
	if (meta == &local)
		http_meta_clear(&local);
	return rc;
}
