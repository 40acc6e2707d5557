/*
 * http.h: single HTTP requests over libcurl, checked strictly.
 *
 * (1) A ranged GET succeeds only as a 206 whose Content-Range names
 *     exactly the requested span and whose body has exactly that length,
 *     with a Content-Type that is not text/html. Anything else is an
 *     error, and the sink has been handed no byte of the wrong body: the
 *     status and headers are checked before the first body byte is passed.
 * (2) Redirects are followed by http.c itself (at most 10 hops), so that
 *     the request's headers and Authorization go only to the origin
 *     (scheme, host and port of rq->origin_url, default rq->url); a
 *     redirect to another origin is requested without them.
 * (3) No Accept-Encoding is ever sent: a compressed body has no byte
 *     offsets.
 * (4) One attempt per call. Failures are classified into errnos so the
 *     caller can decide to retry (see http_get).
 * (5) A request with a method other than GET (an S3 write: rq->method)
 *     is sent to rq->url alone: a 3xx is an error, never followed, so a
 *     body and its signature go to one host. Its body comes from memory
 *     or from a file range, read as it is sent (bounded memory), with an
 *     exact Content-Length and no Expect: 100-continue.
 * Ownership: http_client_new() gives a client, http_client_free() frees
 * it; struct http_meta strings are owned by the meta and freed by
 * http_meta_clear().
 * Threads: a client is used by one thread at a time; different clients
 * may be used concurrently. http_global_init() once before any thread.
 */
#ifndef MODELFS_HTTP_H
#define MODELFS_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/config.h"

struct http_client;

enum http_method {
	HTTP_GET = 0,
	HTTP_PUT,
	HTTP_POST,
	HTTP_DELETE,
};

struct http_request {
	enum http_method method;	/* HTTP_GET unless set: see (5) */
	const char *url;
	const char *origin_url;		/* whose host may see headers/auth; NULL = url */
	const struct config_header *headers;	/* extra headers, origin only */
	size_t n_headers;
	const char *authorization;	/* full Authorization value, origin only, or NULL */
	const char *aws_sigv4;		/* "aws:amz:REGION:s3": SigV4-sign origin hops, or NULL */
	const char *aws_credentials;	/* "KEY:SECRET" for aws_sigv4 */
	const char *aws_session_token;	/* sent as x-amz-security-token on origin hops, or NULL */
	bool cookies;			/* keep cookies across this request's hops (Google Drive) */
	bool file_body;			/* without a range: the body is a file, so HTML is refused */
	const char *user_agent;		/* NULL: "modelfs/VERSION" */
	uint64_t range_first;		/* with range_len > 0: Range: bytes=first-(first+len-1) */
	uint64_t range_len;		/* 0: no Range header */
	const char *if_range;		/* validator to send as If-Range, or NULL */
	bool follow_redirects;		/* false: a 3xx is returned as is (meta.location set) */
	int timeout_sec;		/* whole transfer; 0: none (low-speed limit still applies) */
	const atomic_int *cancel;	/* when it becomes non-zero the transfer stops: -ECANCELED */
	const char *const *want_headers;	/* NULL-terminated header names whose values
						 * meta->header_values returns, or NULL */
	/* The body of a PUT or POST (5): body_len bytes from body, or, when
	 * body is NULL and body_len > 0, from body_fd at body_off. */
	const void *body;
	int body_fd;
	uint64_t body_off;
	uint64_t body_len;
	const char *content_type;	/* of the body, or NULL */
	const char *payload_sha256;	/* SigV4: the body's SHA-256 (hex) to sign;
					 * NULL: UNSIGNED-PAYLOAD for a body */
	bool if_none_match_any;		/* send If-None-Match: * (a create-only write) */
};

struct http_meta {
	long status;			/* final status, 0 if none */
	int64_t total_size;		/* from Content-Range total, else Content-Length of a 200; -1 unknown */
	int64_t content_length;		/* -1 unknown */
	char *etag;			/* as sent, with quotes and W/ if any */
	char *last_modified;		/* HTTP-date text */
	int64_t mtime;			/* Last-Modified as epoch seconds, -1 if absent */
	char *content_type;
	char *content_disposition;
	char *content_encoding;
	char *location;			/* absolute form of Location on a 3xx */
	char *final_url;		/* the URL that gave the final answer: may be signed, never log it unredacted */
	char *error_text;		/* short reason for a failure, safe to log */
	int retry_after_sec;		/* from Retry-After or RateLimit t=, -1 if none */
	bool accept_ranges;		/* Accept-Ranges: bytes seen */
	bool range_ignored;		/* a ranged request got a 200 */
	char **header_values;		/* with rq->want_headers: the last hop's value of
					 * want_headers[i] (repeated headers joined by ", "),
					 * NULL if absent; the array is NULL when none came */
	size_t n_header_values;		/* entries in header_values */
};

/* Receives body bytes in order; offset is the file offset of data[0].
 * Return 0 to go on, -errno to abort the transfer with that error. */
typedef int (*http_sink_fn)(void *ctx, uint64_t offset, const void *data, size_t len);

/* A body kept in memory (an API answer, a config): http_body_sink with a
 * struct http_body as ctx. data is NUL-terminated, and the caller frees
 * it; a body longer than max fails the transfer with -EFBIG. */
struct http_body {
	char *data;
	size_t len, cap;
	size_t max;
};
int http_body_sink(void *ctx, uint64_t offset, const void *data, size_t len);
/* A sink that drops what it gets (a probe that reads no body). */
int http_discard_sink(void *ctx, uint64_t offset, const void *data, size_t len);

int http_global_init(void);
void http_global_cleanup(void);

int http_client_new(struct http_client **out);
void http_client_free(struct http_client *c);
/* Every later request on c ends by deadline_ms (CLOCK_MONOTONIC, ms; 0: no
 * deadline), as a timeout (-EAGAIN) when it has not: a mount's resolutions
 * must not wait out one silent origin's timeouts and retries. */
void http_client_set_deadline(struct http_client *c, int64_t deadline_ms);

/*
 * One request: a GET, or rq->method (5), whose 2xx answer goes to sink
 * (may be NULL) as an unranged GET's does, meta->etag naming what was
 * written; -EIO too when a file body could not be read.
 * A GET: with rq->range_len the checks of (1) apply and the body goes
 * to sink; without a range the body of a 200 goes to sink (sink may be
 * NULL to stop after the headers, as a probe does). Blocks on the network.
 * Returns 0, or:
 *   -EAGAIN     transient: timeout, reset, DNS/connect failure, 408, 429,
 *               5xx, short body (meta->retry_after_sec when the server said)
 *   -EACCES     401 or 403 (meta->status tells which)
 *   -ENOENT     404 or 410
 *   -ERANGE     416
 *   -EEXIST     412 to a request with if_none_match_any: the key exists
 *   -ESTALE     the representation changed: If-Range answered with a 200,
 *               or the 206 carries another strong ETag than if_range
 *   -EPROTO     a 200 to a Range, a wrong Content-Range, a wrong length,
 *               an HTML body, a compressed body: never retried blindly
 *   -ECANCELED  *rq->cancel was set
 *   -EIO        anything else (meta->error_text says what)
 *   -EINVAL     rq is unusable: url not absolute http(s), CR/LF in a
 *               header value, a range past 2^63
 *   -ENOMEM     out of memory
 *   or the -errno the sink returned.
 * meta is always filled as far as the answer went (pass NULL to skip); it
 * is overwritten, not freed, so it may be uninitialized: free it with
 * http_meta_clear() after every call. Redirects: meta describes the last
 * hop; final_url is that hop's URL (set on errors too, once a hop ran).
 * If-Range is sent only when rq->if_range is a strong ETag, on every hop.
 * A cancel is seen within about a second (libcurl's progress callback).
 */
int http_get(struct http_client *c, const struct http_request *rq,
	     http_sink_fn sink, void *ctx, struct http_meta *meta);

void http_meta_clear(struct http_meta *meta);

/* "W/\"x\"" is weak: If-Range must not carry it. */
bool http_etag_is_strong(const char *etag);

/* scheme://host:port of url, lowercase host, default port filled in,
 * into out; -EINVAL if url is not absolute http(s). */
int http_url_origin(const char *url, char *out, size_t outlen);

/* What a block of response header lines (status lines, "Name: value",
 * CRLF or LF) tells, read by the very code that reads a transfer's
 * headers: meta as a response fills it (want_headers as a request's, or
 * NULL), and the facts that stay inside a transfer. For the fuzzer
 * (tests/fuzz/fuzz_http_headers.c). 0 or -ENOMEM. */
struct http_header_facts {
	int64_t content_range_total;	/* -1 unknown */
	int retry_after;		/* seconds, -1 none */
	int ratelimit_t;		/* -1 none */
	char server_msg[161];		/* X-Error-Message, printable ASCII only */
};
int http_read_header_block(const char *block, size_t len, const char *const *want_headers,
			   struct http_meta *meta, struct http_header_facts *facts);

/* Parse "bytes a-b/total" (total may be '*': -1). 0 or -EINVAL. */
int http_parse_content_range(const char *value, uint64_t *first,
			     uint64_t *last, int64_t *total);

#endif
