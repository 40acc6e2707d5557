/*
 * test_http.c: the parsers of http.h, and http_get() against two tiny
 * HTTP/1.1 servers on loopback (forked children answering canned
 * responses by path, curl tests/data style). Two ports are two origins
 * to libcurl, so the redirect test can see where Authorization went:
 * each server writes one line per request it read into shared memory.
 */
#include "modelfs/http.h"
#include "modelfs/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"



/* ---- parsers ---------------------------------------------------------- */

static void test_content_range(void)
{
	static const char *const bad[] = {
		"", "bytes", "bytes ", "bytes 0-7", "bytes 0-7/", "bytes -7/100",
		"bytes 0-/100", "bytes 0--7/100", "bytes 7-0/100", "bytes 0-100/100",
		"bytes 0-7/100x", "bytes +0-7/100", "bytes  0-7/100", "bytes 0-7 /100",
		"items 0-7/100", "bytes */100", "bytes 0-7/-1", "bytes 0x1-7/100",
		"bytes 0-99999999999999999999/*", "bytes 0-9223372036854775808/*",
		"bytes 0-7/9223372036854775808", "bytes 0-7/**", "bytes 0-7/100/100",
	};
	uint64_t a = 1, b = 1;
	int64_t t = 1;

	CHECK(http_parse_content_range("bytes 0-7/100", &a, &b, &t) == 0);
	CHECK(a == 0 && b == 7 && t == 100);
	CHECK(http_parse_content_range("bytes 0-0/1", &a, &b, &t) == 0);
	CHECK(a == 0 && b == 0 && t == 1);
	CHECK(http_parse_content_range("bytes 5-9/*", &a, &b, &t) == 0);
	CHECK(a == 5 && b == 9 && t == -1);
	CHECK(http_parse_content_range("bytes 100000000000-100008388607/1507691856000",
				       &a, &b, &t) == 0);
	CHECK(a == 100000000000ULL && b == 100008388607ULL && t == 1507691856000LL);
	CHECK(http_parse_content_range("bytes 0-9223372036854775806/9223372036854775807",
				       &a, &b, &t) == 0);
	CHECK(http_parse_content_range("Bytes 1-2/3", &a, &b, &t) == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = http_parse_content_range(bad[i], &a, &b, &t);

		if (rc != -EINVAL)
			fprintf(stderr, "  accepted Content-Range \"%s\"\n", bad[i]);
		CHECK(rc == -EINVAL);
	}
	CHECK(http_parse_content_range(NULL, &a, &b, &t) == -EINVAL);
}

static void test_url_origin(void)
{
	static const char *const good[][2] = {
		{ "http://Example.COM/x", "http://example.com:80" },
		{ "https://example.com", "https://example.com:443" },
		{ "HTTPS://example.com:8443/a?b=c#d", "https://example.com:8443" },
		{ "http://user:pw@host.example:81/", "http://host.example:81" },
		{ "https://user@HOST.example/p", "https://host.example:443" },
		{ "http://127.0.0.1:8080/resolve/main/x", "http://127.0.0.1:8080" },
		{ "http://[::1]:8080/", "http://[::1]:8080" },
		{ "https://[2001:DB8::1]/x", "https://[2001:db8::1]:443" },
		{ "http://example.com:443/", "http://example.com:443" },
	};
	static const char *const bad[] = {
		"", "/relative/path", "example.com/x", "ftp://example.com/x",
		"file:///etc/passwd", "http://", "http:///x", "http://host:99999/",
		"http://exa mple.com/", "http://[::1/", "javascript:alert(1)",
	};
	char out[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = http_url_origin(good[i][0], out, sizeof(out));

		if (rc != 0 || strcmp(out, good[i][1]) != 0)
			fprintf(stderr, "  origin of %s: rc=%d \"%s\"\n", good[i][0], rc, out);
		CHECK(rc == 0 && strcmp(out, good[i][1]) == 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = http_url_origin(bad[i], out, sizeof(out));

		if (rc != -EINVAL)
			fprintf(stderr, "  accepted URL \"%s\" as \"%s\"\n", bad[i], out);
		CHECK(rc == -EINVAL);
	}
	CHECK(http_url_origin(NULL, out, sizeof(out)) == -EINVAL);
	CHECK(http_url_origin("http://example.com/", out, 10) == -EINVAL);
	/* Same origin regardless of path, query and userinfo; not across ports. */
	{
		char a[300], b[300];

		CHECK(http_url_origin("http://h.example/a?x", a, sizeof(a)) == 0);
		CHECK(http_url_origin("http://u@H.EXAMPLE:80/b", b, sizeof(b)) == 0);
		CHECK(strcmp(a, b) == 0);
		CHECK(http_url_origin("http://h.example:8080/a", b, sizeof(b)) == 0);
		CHECK(strcmp(a, b) != 0);
		CHECK(http_url_origin("https://h.example/a", b, sizeof(b)) == 0);
		CHECK(strcmp(a, b) != 0);
	}
}

static void test_etag(void)
{
	CHECK(http_etag_is_strong("\"abc\""));
	CHECK(http_etag_is_strong("\"\""));
	CHECK(!http_etag_is_strong("W/\"abc\""));
	CHECK(!http_etag_is_strong("abc"));
	CHECK(!http_etag_is_strong("\"abc"));
	CHECK(!http_etag_is_strong("\""));
	CHECK(!http_etag_is_strong("\"a\"b\""));
	CHECK(!http_etag_is_strong(""));
	CHECK(!http_etag_is_strong(NULL));
}

/* ---- the tiny server --------------------------------------------------- */

#define BODY64 "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
#define PROBE_SIZE (1024 * 1024)

enum fault { F_NONE, F_CLOSE, F_STALL };

struct route {
	const char *path;
	char head[512];		/* status line and headers, ending in the blank line */
	const char *body;
	size_t body_len;	/* bytes actually sent: less than Content-Length to cut */
	enum fault fault;	/* F_CLOSE: close after sending; F_STALL: never answer */
};

#define REQLOG_MAX 256
struct reqlog {
	int n;
	char line[REQLOG_MAX][200];
};

static struct reqlog *reqlog;	/* MAP_SHARED: written by the servers */
static char probe_body[PROBE_SIZE];

static bool has_header(const char *req, const char *name, char *val, size_t vlen)
{
	size_t n = strlen(name);

	for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *h = p + 2;

		if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
			const char *v = h + n + 1, *e = strstr(v, "\r\n");

			while (*v == ' ')
				v++;
			if (val)
				snprintf(val, vlen, "%.*s", (int)(e - v), v);
			return true;
		}
	}
	return false;
}

static void log_request(int srv, int conn, const char *req)
{
	char path[100] = "", range[40] = "-";
	int n;

	sscanf(req, "GET %99s", path);
	path[strcspn(path, "?")] = '\0';
	has_header(req, "Range", range, sizeof(range));
	n = __atomic_load_n(&reqlog->n, __ATOMIC_ACQUIRE);
	if (n >= REQLOG_MAX)
		return;
	snprintf(reqlog->line[n], sizeof(reqlog->line[n]),
		 "srv=%d conn=%d path=%s auth=%d custom=%d ae=%d ifrange=%d range=%s",
		 srv, conn, path, has_header(req, "Authorization", NULL, 0),
		 has_header(req, "X-Custom", NULL, 0),
		 has_header(req, "Accept-Encoding", NULL, 0),
		 has_header(req, "If-Range", NULL, 0), range);
	__atomic_store_n(&reqlog->n, n + 1, __ATOMIC_RELEASE);
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Serve one connection, request after request, until either side closes. */
static void serve_conn(int fd, int srv, int conn, const struct route *routes, size_t n_routes)
{
	char buf[8192];
	size_t have = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		const struct route *r = NULL;
		char *end, path[100] = "";
		ssize_t got;

		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have == sizeof(buf) - 1 || poll(&pfd, 1, 10000) <= 0)
				return;
			got = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
			if (got <= 0)
				return;
			have += (size_t)got;
		}
		end += 4;
		end[-1] = '\0';
		log_request(srv, conn, buf);
		sscanf(buf, "GET %99s", path);
		path[strcspn(path, "?")] = '\0';
		for (size_t i = 0; i < n_routes; i++)
			if (strcmp(routes[i].path, path) == 0)
				r = &routes[i];
		have -= (size_t)(end - buf);
		memmove(buf, end, have);
		if (!r) {
			static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

			if (!send_all(fd, nf, sizeof(nf) - 1))
				return;
			continue;
		}
		if (r->fault == F_STALL) {
			/* Say nothing; return when the client gives up. */
			while (poll(&pfd, 1, 20000) > 0 && recv(fd, buf, sizeof(buf), 0) > 0)
				;
			return;
		}
		if (!send_all(fd, r->head, strlen(r->head)) ||
		    !send_all(fd, r->body ? r->body : "", r->body_len) || r->fault == F_CLOSE)
			return;
	}
}

/* Fork a server on lfd; returns its pid. */
static pid_t server_start(int lfd, int srv, const struct route *routes, size_t n_routes)
{
	pid_t pid = fork();
	int one = 1;

	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(120);
	for (int conn = 1;; conn++) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			_exit(1);
		/* Head and body go in two sends: without this, Nagle holds the
		 * second for the client's delayed ACK (40 ms a request). */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		serve_conn(fd, srv, conn, routes, n_routes);
		close(fd);
	}
}

static int listen_loopback(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("listen");
		exit(2);
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* The newest request line server srv logged for path, or NULL. */
static const char *last_req(int srv, const char *path)
{
	char want[120];
	int n = __atomic_load_n(&reqlog->n, __ATOMIC_ACQUIRE);

	snprintf(want, sizeof(want), "srv=%d ", srv);
	for (int i = n - 1; i >= 0; i--) {
		const char *p = strstr(reqlog->line[i], " path=");

		if (strncmp(reqlog->line[i], want, strlen(want)) == 0 && p &&
		    strncmp(p + 6, path, strlen(path)) == 0 && p[6 + strlen(path)] == ' ')
			return reqlog->line[i];
	}
	return NULL;
}

static int req_conn(const char *line)
{
	const char *p = line ? strstr(line, "conn=") : NULL;

	return p ? atoi(p + 5) : -1;
}

/* ---- sinks -------------------------------------------------------------- */

struct collect {
	char buf[256];
	size_t len;		/* bytes received (may exceed buf) */
	uint64_t first_off;
	int calls;
	bool gap;		/* an offset did not follow the previous bytes */
	int fail_with;		/* return this from the sink */
};

static int collect_sink(void *ctx, uint64_t off, const void *data, size_t len)
{
	struct collect *c = ctx;

	if (c->fail_with)
		return c->fail_with;
	if (c->calls++ == 0)
		c->first_off = off;
	else if (off != c->first_off + c->len)
		c->gap = true;
	if (c->len < sizeof(c->buf))
		memcpy(c->buf + c->len, data,
		       len < sizeof(c->buf) - c->len ? len : sizeof(c->buf) - c->len);
	c->len += len;
	return 0;
}

static int discard_sink(void *ctx, uint64_t off, const void *data, size_t len)
{
	return 0;
}

struct canceller {
	atomic_int *flag;
	int after_ms;
};

static void *cancel_later(void *arg)
{
	struct canceller *k = arg;
	struct timespec ts = { k->after_ms / 1000, (k->after_ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	atomic_store(k->flag, 1);
	return NULL;
}

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- live tests ------------------------------------------------------- */

#define R206(cr, extra) \
	"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " cr "\r\n" \
	"Content-Type: application/octet-stream\r\n" extra "\r\n"

static void test_live(void)
{
	static struct route ra[32], rb[4];
	size_t na = 0, nb = 0;
	int lfa, lfb, pa, pb, pdead, fdead;
	char url[300], other[300];
	struct http_client *c;
	struct http_meta m = { 0 };
	struct collect col;
	const struct config_header hdrs[] = {
		{ .name = "X-Custom", .value = "custom-secret-value" },
		{ .name = "Accept-Encoding", .value = "gzip" },
	};
	struct http_request rq;
	pid_t sa, sb;
	int rc, conn1;
	const char *line;

	memset(probe_body, 'p', sizeof(probe_body));
	lfa = listen_loopback(&pa);
	lfb = listen_loopback(&pb);
	fdead = listen_loopback(&pdead);
	close(fdead);		/* nobody listens there now: connection refused */

#define ROUTE(tab, n, p, h, b, blen, f) do { \
	tab[n].path = (p); \
	snprintf(tab[n].head, sizeof(tab[n].head), "%s", (h)); \
	tab[n].body = (b); \
	tab[n].body_len = (blen); \
	tab[n].fault = (f); \
	n++; \
} while (0)
	ROUTE(ra, na, "/r206", R206("4-11/64", "Content-Length: 8\r\nETag: \"v1\"\r\n"
		"Accept-Ranges: bytes\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n"),
	      BODY64 + 4, 8, F_NONE);
	ROUTE(ra, na, "/ignore", "HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n", BODY64, 64, F_NONE);
	ROUTE(ra, na, "/mismatch", R206("5-12/64", "Content-Length: 8\r\n"), BODY64 + 5, 8, F_NONE);
	ROUTE(ra, na, "/html", "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-11/64\r\n"
	      "Content-Type: text/html; charset=utf-8\r\nContent-Length: 8\r\n\r\n",
	      "<html>..", 8, F_NONE);
	ROUTE(ra, na, "/gzip", R206("4-11/64", "Content-Length: 8\r\nContent-Encoding: gzip\r\n"),
	      BODY64 + 4, 8, F_NONE);
	ROUTE(ra, na, "/longer", R206("4-11/64", "Content-Length: 10\r\n"), BODY64 + 4, 10, F_NONE);
	ROUTE(ra, na, "/busy", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n"
	      "Content-Type: application/json\r\nContent-Length: 22\r\n\r\n",
	      "{\"error\":\"overloaded\"}", 22, F_NONE);
	ROUTE(ra, na, "/ratelimit", "HTTP/1.1 429 Too Many Requests\r\n"
	      "RateLimit: \"api\";r=0;t=55\r\nRateLimit-Policy: \"fixed window\";\"api\";q=500;w=300\r\n"
	      "Content-Length: 0\r\n\r\n", NULL, 0, F_NONE);
	ROUTE(ra, na, "/short", R206("4-11/64", "Content-Length: 8\r\n"), BODY64 + 4, 4, F_CLOSE);
	ROUTE(ra, na, "/cutnolen", R206("4-11/64", "Connection: close\r\n"), BODY64 + 4, 4, F_CLOSE);
	ROUTE(ra, na, "/missing", "HTTP/1.1 404 Not Found\r\nX-Error-Message: Entry not found\r\n"
	      "Content-Length: 0\r\n\r\n", NULL, 0, F_NONE);
#define BAD_CREDS "{\"error\":\"Invalid credentials in Authorization header\"}"
	ROUTE(ra, na, "/gone-cut", "HTTP/1.1 410 Gone\r\nContent-Length: 100\r\n\r\n",
	      "{\"error\":", 9, F_CLOSE);
	ROUTE(ra, na, "/forbidden", "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
	      "Content-Length: 55\r\n\r\n", BAD_CREDS, sizeof(BAD_CREDS) - 1, F_NONE);
	snprintf(other, sizeof(other), "http://127.0.0.1:%d/target", pb);
	ROUTE(ra, na, "/redir", "", NULL, 0, F_NONE);
	snprintf(ra[na - 1].head, sizeof(ra[na - 1].head),
		 "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 5\r\n\r\n", other);
	ra[na - 1].body = "moved";
	ra[na - 1].body_len = 5;
	ROUTE(ra, na, "/redir-rel", "HTTP/1.1 307 Temporary Redirect\r\nLocation: /r206\r\n"
	      "Content-Length: 0\r\n\r\n", NULL, 0, F_NONE);
	ROUTE(ra, na, "/loop", "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n",
	      NULL, 0, F_NONE);
	ROUTE(ra, na, "/stale", "HTTP/1.1 200 OK\r\nETag: \"v2\"\r\nContent-Length: 64\r\n\r\n",
	      BODY64, 64, F_NONE);
	ROUTE(ra, na, "/sametag200", "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 64\r\n\r\n",
	      BODY64, 64, F_NONE);
	ROUTE(ra, na, "/etag206", R206("4-11/64", "Content-Length: 8\r\nETag: \"v2\"\r\n"),
	      BODY64 + 4, 8, F_NONE);
	ROUTE(ra, na, "/stall", "", NULL, 0, F_STALL);
	ROUTE(ra, na, "/probe", "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nETag: \"pv\"\r\n"
	      "Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n\r\n",
	      probe_body, PROBE_SIZE, F_NONE);
	ROUTE(ra, na, "/size", R206("0-0/12345", "Content-Length: 1\r\n"), "x", 1, F_NONE);
	ROUTE(ra, na, "/416", "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */64\r\n"
	      "Content-Length: 0\r\n\r\n", NULL, 0, F_NONE);
	ROUTE(ra, na, "/plain", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", "hello world",
	      11, F_NONE);
	ROUTE(rb, nb, "/target", R206("4-11/64", "Content-Length: 8\r\n"), BODY64 + 4, 8, F_NONE);

	reqlog = mmap(NULL, sizeof(*reqlog), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (reqlog == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	sa = server_start(lfa, 1, ra, na);
	sb = server_start(lfb, 2, rb, nb);
	close(lfa);
	close(lfb);

	CHECK(http_client_new(&c) == 0);

	/* meta is overwritten by http_get, so each call is cleared before the next. */
#define RQ(path, first, len) do { \
	http_meta_clear(&m); \
	memset(&rq, 0, sizeof(rq)); \
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", pa, (path)); \
	rq.url = url; \
	rq.range_first = (first); \
	rq.range_len = (len); \
	rq.follow_redirects = true; \
	rq.timeout_sec = 10; \
	memset(&col, 0, sizeof(col)); \
} while (0)

	/* 206 exact: the sink gets exactly the bytes, at their offsets. */
	RQ("/r206", 4, 8);
	rq.headers = hdrs;
	rq.n_headers = 2;
	rq.authorization = "Bearer hf_secret_token";
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == 0);
	CHECK(m.status == 206);
	CHECK(col.len == 8 && memcmp(col.buf, "456789ab", 8) == 0);
	CHECK(col.first_off == 4 && !col.gap);
	CHECK(m.total_size == 64);
	CHECK(m.content_length == 8);
	CHECK(m.etag && strcmp(m.etag, "\"v1\"") == 0);
	CHECK(m.accept_ranges);
	CHECK(m.mtime == 1445412480);
	CHECK(m.last_modified && strcmp(m.last_modified, "Wed, 21 Oct 2015 07:28:00 GMT") == 0);
	CHECK(m.final_url && strcmp(m.final_url, url) == 0);
	CHECK(m.error_text == NULL);
	CHECK(m.retry_after_sec == -1);
	line = last_req(1, "/r206");
	CHECK(line && strstr(line, "auth=1 custom=1 ae=0 ifrange=0 range=bytes=4-11"));
	conn1 = req_conn(line);

	/* The same client reuses its connection (keep-alive). */
	RQ("/r206", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
	CHECK(req_conn(last_req(1, "/r206")) == conn1);
	/* No Authorization unless asked for. */
	CHECK(strstr(last_req(1, "/r206"), "auth=0 custom=0"));

	/* 200 to a Range: nothing reaches the sink. */
	RQ("/ignore", 4, 8);
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == -EPROTO);
	CHECK(m.range_ignored);
	CHECK(m.status == 200);
	CHECK(col.len == 0 && col.calls == 0);
	CHECK(m.error_text && strstr(m.error_text, "ignores Range"));

	/* Content-Range naming another span. */
	RQ("/mismatch", 4, 8);
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == -EPROTO);
	CHECK(col.calls == 0);
	CHECK(m.error_text && strcmp(m.error_text,
		"Content-Range bytes 5-12/64 does not match requested 4-11") == 0);

	/* An HTML page dressed as a 206. */
	RQ("/html", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EPROTO);
	CHECK(col.calls == 0);

	/* A compressed 206 has no byte offsets. */
	RQ("/gzip", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EPROTO);
	CHECK(col.calls == 0);

	/* Content-Length other than the span. */
	RQ("/longer", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EPROTO);
	CHECK(col.calls == 0);

	/* 503 + Retry-After, with the JSON reason. */
	RQ("/busy", 4, 8);
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == -EAGAIN);
	CHECK(m.status == 503);
	CHECK(m.retry_after_sec == 7);
	CHECK(col.calls == 0);
	CHECK(m.error_text && strcmp(m.error_text, "HTTP 503: overloaded") == 0);

	/* 429 with the Hub's RateLimit header. */
	RQ("/ratelimit", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EAGAIN);
	CHECK(m.status == 429 && m.retry_after_sec == 55);

	/* Body shorter than Content-Length, then the connection closes. */
	RQ("/short", 4, 8);
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == -EAGAIN);
	CHECK(m.error_text && strcmp(m.error_text, "connection closed after 4 of 8 bytes") == 0);

	/* No Content-Length: a close ends the body "cleanly", still short. */
	RQ("/cutnolen", 4, 8);
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == -EAGAIN);
	CHECK(col.len == 4);

	/* The handle works after those errors. */
	RQ("/r206", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
	CHECK(col.len == 8);

	/* 404 with X-Error-Message; 403 with a JSON reason. */
	RQ("/missing", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ENOENT);
	CHECK(m.error_text && strcmp(m.error_text, "HTTP 404: Entry not found") == 0);
	RQ("/forbidden", 0, 0);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EACCES);
	CHECK(m.status == 403 && col.calls == 0);
	CHECK(m.error_text && strcmp(m.error_text,
		"HTTP 403: Invalid credentials in Authorization header") == 0);

	/* An error page cut short is still the error it said. */
	RQ("/gone-cut", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ENOENT);
	CHECK(m.status == 410 && col.calls == 0);

	/* 416 carries the total. */
	RQ("/416", 64, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ERANGE);
	CHECK(m.total_size == 64);

	/* A redirect to another port: followed, without the origin's headers. */
	RQ("/redir", 4, 8);
	rq.headers = hdrs;
	rq.n_headers = 2;
	rq.authorization = "Bearer hf_secret_token";
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == 0);
	CHECK(col.len == 8 && memcmp(col.buf, "456789ab", 8) == 0 && col.first_off == 4);
	CHECK(m.final_url && strcmp(m.final_url, other) == 0);
	CHECK(m.location == NULL);
	line = last_req(1, "/redir");
	CHECK(line && strstr(line, "auth=1 custom=1 ae=0"));
	line = last_req(2, "/target");
	CHECK(line && strstr(line, "auth=0 custom=0 ae=0 ifrange=0 range=bytes=4-11"));

	/* Not following: the 3xx comes back, Location made absolute. */
	RQ("/redir", 4, 8);
	rq.follow_redirects = false;
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == 0);
	CHECK(m.status == 302);
	CHECK(m.location && strcmp(m.location, other) == 0);
	CHECK(col.calls == 0);

	/* A relative redirect stays on the origin: headers go along. */
	RQ("/redir-rel", 4, 8);
	rq.authorization = "Bearer hf_secret_token";
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
	CHECK(col.len == 8);
	CHECK(strstr(last_req(1, "/redir-rel"), "auth=1"));
	CHECK(strstr(last_req(1, "/r206"), "auth=1"));

	/* The origin is rq->origin_url when given: port B is not it. */
	http_meta_clear(&m);
	memset(&rq, 0, sizeof(rq));
	memset(&col, 0, sizeof(col));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/resolve/x", pa);
	rq.url = other;
	rq.origin_url = url;
	rq.authorization = "Bearer hf_secret_token";
	rq.range_first = 4;
	rq.range_len = 8;
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
	CHECK(strstr(last_req(2, "/target"), "auth=0"));

	/* A redirect loop ends. */
	RQ("/loop", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EIO);
	CHECK(m.error_text && strstr(m.error_text, "redirects"));

	/* If-Range answered with 200: the file changed. */
	RQ("/stale", 4, 8);
	rq.if_range = "\"v1\"";
	rc = http_get(c, &rq, collect_sink, &col, &m);
	CHECK(rc == -ESTALE);
	CHECK(col.calls == 0);
	CHECK(strstr(last_req(1, "/stale"), "ifrange=1"));

	/* If-Range answered with 200 under the same ETag: Range is ignored,
	 * the file did not change. */
	RQ("/sametag200", 4, 8);
	rq.if_range = "\"v1\"";
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EPROTO);
	CHECK(m.range_ignored);
	CHECK(col.calls == 0);

	/* A 206 with another strong ETag than If-Range. */
	RQ("/etag206", 4, 8);
	rq.if_range = "\"v1\"";
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ESTALE);
	CHECK(col.calls == 0);
	/* A weak validator is never sent, and so not compared. */
	RQ("/etag206", 4, 8);
	rq.if_range = "W/\"v1\"";
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
	CHECK(strstr(last_req(1, "/etag206"), "ifrange=0"));

	/* The sink's error aborts the transfer with it. */
	RQ("/r206", 4, 8);
	col.fail_with = -ENOSPC;
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ENOSPC);

	/* Probe: headers only, size from Content-Length of the 200. */
	RQ("/probe", 0, 0);
	rc = http_get(c, &rq, NULL, NULL, &m);
	CHECK(rc == 0);
	CHECK(m.status == 200 && m.total_size == PROBE_SIZE);
	CHECK(m.etag && strcmp(m.etag, "\"pv\"") == 0);

	/* Size probe by bytes=0-0. */
	RQ("/size", 0, 1);
	CHECK(http_get(c, &rq, discard_sink, NULL, &m) == 0);
	CHECK(m.total_size == 12345);

	/* Unranged GET into a sink. */
	RQ("/plain", 0, 0);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
	CHECK(col.len == 11 && memcmp(col.buf, "hello world", 11) == 0 && col.first_off == 0);
	CHECK(m.total_size == 11);

	/* meta may be uninitialized (it is overwritten, not freed). */
	{
		struct http_meta junk;

		memset(&junk, 0xa5, sizeof(junk));
		RQ("/r206", 4, 8);
		CHECK(http_get(c, &rq, collect_sink, &col, &junk) == 0);
		CHECK(junk.status == 206 && junk.total_size == 64);
		http_meta_clear(&junk);
	}

	/* meta may be NULL. */
	RQ("/r206", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, NULL) == 0);

	/* Cancelled while waiting for an answer. */
	{
		atomic_int flag = 0;
		struct canceller k = { .flag = &flag, .after_ms = 200 };
		struct timespec t0;
		pthread_t th;

		RQ("/stall", 4, 8);
		rq.cancel = &flag;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		CHECK(pthread_create(&th, NULL, cancel_later, &k) == 0);
		rc = http_get(c, &rq, collect_sink, &col, &m);
		pthread_join(th, NULL);
		CHECK(rc == -ECANCELED);
		CHECK(elapsed_s(&t0) < 3.0);
		/* Already set: no request at all. */
		RQ("/r206", 4, 8);
		rq.cancel = &flag;
		CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ECANCELED);
	}

	/* A whole-transfer timeout is transient. */
	{
		struct timespec t0;

		RQ("/stall", 4, 8);
		rq.timeout_sec = 1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = http_get(c, &rq, collect_sink, &col, &m);
		CHECK(rc == -EAGAIN);
		CHECK(m.error_text && strstr(m.error_text, "timed out"));
		CHECK(elapsed_s(&t0) < 3.0);
	}

	/* Nobody listening: transient. */
	http_meta_clear(&m);
	memset(&rq, 0, sizeof(rq));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", pdead);
	rq.url = url;
	rq.range_len = 8;
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EAGAIN);
	CHECK(m.status == 0);

	/* Requests we refuse to send. */
	RQ("/r206", 4, 8);
	rq.authorization = "Bearer x\r\nX-Injected: 1";
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EINVAL);
	RQ("/r206", 4, 8);
	rq.url = "ftp://127.0.0.1/x";
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EINVAL);
	RQ("/r206", UINT64_MAX - 2, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == -EINVAL);

	/* No log line carries a query, userinfo or header value. */
	{
		enum log_level was = log_get_level();
		char text[16384];
		int pfd[2];
		ssize_t got;

		CHECK(pipe(pfd) == 0);
		fcntl(pfd[0], F_SETFL, O_NONBLOCK);
		log_init(pfd[1], 0, LOG_LVL_DEBUG);
		log_set_level(LOG_LVL_DEBUG);
		RQ("/r206", 4, 8);
		snprintf(url, sizeof(url),
			 "http://user:pw-secret@127.0.0.1:%d/r206?X-Amz-Signature=sig-secret", pa);
		rq.headers = hdrs;
		rq.n_headers = 1;
		rq.authorization = "Bearer token-secret";
		CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
		RQ("/missing", 4, 8);
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/missing?token=tok-secret", pa);
		rq.authorization = "Bearer token-secret";
		CHECK(http_get(c, &rq, collect_sink, &col, &m) == -ENOENT);
		RQ("/redir", 4, 8);
		rq.authorization = "Bearer token-secret";
		CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);
		log_init(2, 0, was);
		log_set_level(was);
		got = read(pfd[0], text, sizeof(text) - 1);
		text[got > 0 ? got : 0] = '\0';
		CHECK(got > 0 && strstr(text, "/r206") && strstr(text, "/missing") &&
		      strstr(text, "/target"));
		CHECK(strstr(text, "secret") == NULL);
		CHECK(strstr(text, "user") == NULL);
		close(pfd[0]);
		close(pfd[1]);
	}

	/* Still usable at the end. */
	RQ("/r206", 4, 8);
	CHECK(http_get(c, &rq, collect_sink, &col, &m) == 0);

	http_meta_clear(&m);
	http_client_free(c);
	kill(sa, SIGTERM);
	kill(sb, SIGTERM);
	waitpid(sa, NULL, 0);
	waitpid(sb, NULL, 0);
	munmap(reqlog, sizeof(*reqlog));
}

/* ---- writes (http.h (5)) ---------------------------------------------- */

/* What the write server saw of its last request (MAP_SHARED). */
struct seen_write {
	char head[8192];
	char body[1 << 16];
	size_t body_len;
	int requests;
};

/* Answers each request with the status named by its path ("/s412" ->
 * 412, "/s307" -> 307 to /s200, else 200 with an ETag), after reading
 * exactly Content-Length body bytes. */
static pid_t write_server_start(int lfd, struct seen_write *seen)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(60);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		char buf[8192], *end, out[256];
		size_t have = 0, clen = 0, got;
		const char *cl;
		int status = 200;
		ssize_t n;

		if (fd < 0)
			_exit(1);
		for (;;) {
			while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
				n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
				if (n <= 0)
					goto next;
				have += (size_t)n;
			}
			*end = '\0';
			snprintf(seen->head, sizeof(seen->head), "%s", buf);
			cl = strcasestr(buf, "\r\nContent-Length:");
			clen = cl ? strtoul(cl + 17, NULL, 10) : 0;
			got = have - (size_t)(end + 4 - buf);
			memcpy(seen->body, end + 4, got < sizeof(seen->body) ? got : 0);
			while (got < clen && got < sizeof(seen->body)) {
				n = recv(fd, seen->body + got, sizeof(seen->body) - got, 0);
				if (n <= 0)
					break;
				got += (size_t)n;
			}
			seen->body_len = got;
			seen->requests++;
			if (strstr(buf, " /s412 "))
				status = 412;
			else if (strstr(buf, " /s307 "))
				status = 307;
			snprintf(out, sizeof(out), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n%s\r\n", status,
				 status == 307 ? "Location: /s200\r\n" : "ETag: \"etag-1\"\r\n");
			if (!send_all(fd, out, strlen(out)) || got < clen)
				goto next;
			have = 0;
			status = 200;
		}
next:
		close(fd);
	}
}

static void test_writes(void)
{
	struct seen_write *seen = mmap(NULL, sizeof(*seen), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char url[200], path[] = "/tmp/test_http_body.XXXXXX", data[3000];
	struct http_client *c;
	struct http_meta m;
	struct http_request rq;
	int port, lfd = listen_loopback(&port), fd = mkstemp(path);
	pid_t srv = write_server_start(lfd, seen);

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	CHECK(fd >= 0 && write(fd, data, sizeof(data)) == (ssize_t)sizeof(data));
	CHECK(http_client_new(&c) == 0);

	/* A PUT of a file range: exact length, the bytes of the range. */
	memset(&rq, 0, sizeof(rq));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/s200", port);
	rq = (struct http_request){ .method = HTTP_PUT, .url = url, .body_fd = fd, .body_off = 100,
				    .body_len = 2000, .content_type = "application/octet-stream",
				    .if_none_match_any = true };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == 0);
	CHECK(m.status == 200 && m.etag && strcmp(m.etag, "\"etag-1\"") == 0);
	CHECK(strncmp(seen->head, "PUT /s200 HTTP/1.1\r\n", 20) == 0);
	CHECK(strcasestr(seen->head, "\r\nContent-Length: 2000") != NULL);
	CHECK(strcasestr(seen->head, "\r\nIf-None-Match: *") != NULL);
	CHECK(strcasestr(seen->head, "\r\nExpect:") == NULL);
	CHECK(strcasestr(seen->head, "Transfer-Encoding") == NULL);
	CHECK(seen->body_len == 2000 && memcmp(seen->body, data + 100, 2000) == 0);
	http_meta_clear(&m);

	/* A POST from memory; 412 to a create-only write is -EEXIST. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/s412", port);
	rq = (struct http_request){ .method = HTTP_POST, .url = url, .body = "<x/>", .body_len = 4,
				    .if_none_match_any = true };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EEXIST && m.status == 412);
	CHECK(strncmp(seen->head, "POST /s412 ", 11) == 0);
	CHECK(seen->body_len == 4 && memcmp(seen->body, "<x/>", 4) == 0);
	http_meta_clear(&m);
	rq.if_none_match_any = false;
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EIO);
	http_meta_clear(&m);

	/* A redirect is never followed with a body (5). */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/s307", port);
	seen->requests = 0;
	rq = (struct http_request){ .method = HTTP_PUT, .url = url, .body = "x", .body_len = 1 };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EIO && m.status == 307);
	CHECK(seen->requests == 1);
	http_meta_clear(&m);

	/* A DELETE has no body. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/s200", port);
	rq = (struct http_request){ .method = HTTP_DELETE, .url = url };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == 0);
	CHECK(strncmp(seen->head, "DELETE /s200 ", 13) == 0);
	http_meta_clear(&m);

	/* A file shorter than body_len: -EIO, never a short body sent as whole. */
	rq = (struct http_request){ .method = HTTP_PUT, .url = url, .body_fd = fd,
				    .body_off = 2500, .body_len = 1000 };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EIO);
	http_meta_clear(&m);

	/* Requests we refuse: a write with a range, If-Range or redirects;
	 * a body on a GET or a DELETE. */
	rq = (struct http_request){ .method = HTTP_PUT, .url = url, .range_len = 5 };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EINVAL);
	http_meta_clear(&m);
	rq = (struct http_request){ .method = HTTP_PUT, .url = url, .follow_redirects = true };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EINVAL);
	http_meta_clear(&m);
	rq = (struct http_request){ .url = url, .body = "x", .body_len = 1 };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EINVAL);
	http_meta_clear(&m);
	rq = (struct http_request){ .method = HTTP_DELETE, .url = url, .body = "x", .body_len = 1 };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EINVAL);
	http_meta_clear(&m);
	rq = (struct http_request){ .method = HTTP_PUT, .url = url, .content_type = "a\r\nb: c" };
	CHECK(http_get(c, &rq, NULL, NULL, &m) == -EINVAL);
	http_meta_clear(&m);

	http_client_free(c);
	close(fd);
	unlink(path);
	close(lfd);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	munmap(seen, sizeof(*seen));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init(2, 0, getenv("MODELFS_LOG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	if (http_global_init() != 0) {
		fprintf(stderr, "http_global_init failed\n");
		return 1;
	}
	test_content_range();
	test_url_origin();
	test_etag();
	test_live();
	test_writes();
	http_global_cleanup();
	return check_summary();
}
