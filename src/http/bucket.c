/*
 * bucket.c: the shared bucket of bucket.h: where its objects are, reading
 * a checked range of a file, and uploading a file once.
 *
 * A read is two ranged GETs: the sidecar lines of the blocks the range
 * touches, then those blocks' bytes, gathered one block at a time into a
 * BUCKET_BLOCK buffer and passed on only once the block's checksum
 * matched (bucket.h (1)). What the handle learnt of a file (not in the
 * bucket for a while, or bad) is kept in a small table, so that a node
 * reading a file the bucket lacks asks once a minute, not once a block.
 *
 * S3 details that matter here: libcurl 7.88 signs the query string as it
 * is sent, so every query below is written in SigV4's canonical form
 * (sorted, encoded, "uploads="); and it signs the x-amz-content-sha256
 * it is given, which for a part is the part's real SHA-256.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/bucket.h"
#include "modelfs/clock.h"
#include "modelfs/downtime.h"
#include "modelfs/hexhash.h"
#include "modelfs/log.h"
#include "modelfs/s3env.h"

#define KNOWN_MAX 256		/* files the handle remembers something of */
#define TRIES 3			/* per request, for transient failures */
#define XML_MAX (64u << 10)	/* an InitiateMultipartUpload answer */

struct known {
	char sha256[65];
	int64_t absent_until_ms;	/* not in the bucket until then; 0: no */
	bool bad;			/* a block failed its checksum */
	uint64_t used;
};

struct bucket {
	char *base;			/* URL of the prefix, ending in '/' */
	char *prefix;			/* "" or "prefix/" (raw) */
	char name[600];			/* for logs */
	char sigv4[96];
	char *credentials;		/* "KEY:SECRET" or NULL; secret */
	char *session_token;		/* or NULL; secret */
	struct downtime down;		/* (0) */
	pthread_mutex_t lock;
	struct known known[KNOWN_MAX];	/* protected by lock */
	uint64_t known_clock;		/* protected by lock */
};

static bool is_hex64(const char *s)
{
	size_t i;

	for (i = 0; s && i < 64; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return s && s[64] == '\0';
}

/* A prefix becomes part of every key's URL path as it is: so only bytes
 * that SigV4 leaves unencoded, and no empty or dot segment. */
static bool prefix_ok(const char *p)
{
	for (const char *s = p; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-._~/", *s))
			return false;
	return !strstr(p, "//") && !strstr(p, "/./") && !strstr(p, "/../") &&
	       strncmp(p, "./", 2) != 0 && strncmp(p, "../", 3) != 0;
}

int bucket_new(const char *url, struct bucket **out, const char **why)
{
	const char *name, *slash, *endpoint, *region;
	char origin[300];
	struct bucket *b;
	size_t nlen, plen, elen;
	int rc = -EINVAL, n;

	*out = NULL;
	*why = "shared_cache must be \"s3://bucket\" or \"s3://bucket/prefix\"";
	if (!url || strncmp(url, "s3://", 5) != 0)
		return -EINVAL;
	name = url + 5;
	slash = strchr(name, '/');
	nlen = slash ? (size_t)(slash - name) : strlen(name);
	if (!s3env_bucket_ok(name, nlen)) {
		*why = "shared_cache names no S3 bucket (letters, digits, '.', '-', '_')";
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	downtime_init(&b->down);
	plen = slash ? strlen(slash + 1) : 0;
	while (plen > 0 && slash[plen] == '/')
		plen--;
	if (asprintf(&b->prefix, "%.*s%s", (int)plen, slash ? slash + 1 : "", plen ? "/" : "") < 0) {
		b->prefix = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	if (!prefix_ok(b->prefix)) {
		*why = "the shared_cache prefix may hold only letters, digits, '-', '.', '_', "
		       "'~' and single '/' between segments";
		goto fail;
	}
	region = s3env_region();
	if (strpbrk(region, ":\r\n") || strlen(region) > 64) {
		*why = "AWS_REGION is not a region name";
		goto fail;
	}
	snprintf(b->sigv4, sizeof(b->sigv4), "aws:amz:%s:s3", region);
	endpoint = s3env_endpoint();
	if (endpoint) {
		if (http_url_origin(endpoint, origin, sizeof(origin)) < 0) {
			*why = "AWS_ENDPOINT_URL(_S3) is not an http(s) URL";
			goto fail;
		}
		elen = strlen(endpoint);
		while (elen > 0 && endpoint[elen - 1] == '/')
			elen--;
		n = asprintf(&b->base, "%.*s/%.*s/%s", (int)elen, endpoint, (int)nlen, name,
			     b->prefix);
	} else {
		n = asprintf(&b->base, "https://s3.%s.amazonaws.com/%.*s/%s", region, (int)nlen,
			     name, b->prefix);
	}
	if (n < 0) {
		b->base = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	if (http_url_origin(b->base, origin, sizeof(origin)) < 0) {
		*why = "shared_cache does not make an http(s) URL with that endpoint";
		goto fail;
	}
	snprintf(b->name, sizeof(b->name), "%.*s at %s", (int)(plen + 5 + nlen + (plen ? 1 : 0)),
		 url, origin);
	/* None: anonymous reads of a public bucket. */
	rc = s3env_credentials(&b->credentials, &b->session_token, why);
	if (rc)
		goto fail;
	*why = NULL;
	*out = b;
	return 0;
fail:
	bucket_free(b);
	return rc;
}

void bucket_free(struct bucket *b)
{
	if (!b)
		return;
	if (b->credentials)
		explicit_bzero(b->credentials, strlen(b->credentials));
	free(b->credentials);
	if (b->session_token)
		explicit_bzero(b->session_token, strlen(b->session_token));
	free(b->session_token);
	free(b->base);
	free(b->prefix);
	pthread_mutex_destroy(&b->lock);
	downtime_destroy(&b->down);
	free(b);
}

const char *bucket_name(const struct bucket *b)
{
	return b->name;
}

char *bucket_key(const struct bucket *b, const char *sha256, const char *kind)
{
	char *key;

	if (asprintf(&key, "%ssha256/%s%s", b->prefix, sha256, kind) < 0)
		return NULL;
	return key;
}

/* The URL of a file's object, with an optional canonical query. */
static char *object_url(const struct bucket *b, const char *sha256, const char *kind,
			const char *query)
{
	char *url;

	if (asprintf(&url, "%ssha256/%s%s%s%s", b->base, sha256, kind, query ? "?" : "",
		     query ? query : "") < 0)
		return NULL;
	return url;
}

int bucket_block_sum(const char *sha256, uint64_t idx, const void *data, size_t len,
		     char out[65])
{
	static const char tag[] = "modelfs-block";	/* with its NUL */
	unsigned char le[8];
	struct hexhash *h;
	int rc = hexhash_new(&h);

	if (rc)
		return rc;
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(idx >> (8 * i));
	hexhash_update(h, tag, sizeof(tag));
	hexhash_update(h, sha256, 64);
	hexhash_update(h, le, sizeof(le));
	hexhash_update(h, data, len);
	hexhash_final(h, out);
	return 0;
}

/* ---- what the handle knows of a file ---------------------------------- */

static struct known *known_find_locked(struct bucket *b, const char *sha256, bool add)
{
	struct known *oldest = &b->known[0];

	for (int i = 0; i < KNOWN_MAX; i++) {
		if (strcmp(b->known[i].sha256, sha256) == 0) {
			b->known[i].used = ++b->known_clock;
			return &b->known[i];
		}
		if (b->known[i].used < oldest->used)
			oldest = &b->known[i];
	}
	if (!add)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	memcpy(oldest->sha256, sha256, 65);
	oldest->used = ++b->known_clock;
	return oldest;
}

static bool skipped(struct bucket *b, const char *sha256)
{
	struct known *k;
	bool skip = false;

	pthread_mutex_lock(&b->lock);
	k = known_find_locked(b, sha256, false);
	if (k)
		skip = k->bad || (k->absent_until_ms && clock_now_ms() < k->absent_until_ms);
	pthread_mutex_unlock(&b->lock);
	return skip;
}

/* Remember sha256 as absent (for BUCKET_ABSENT_MS), or as bad: true the
 * first time it is found bad (the caller logs then). */
static bool remember(struct bucket *b, const char *sha256, bool bad)
{
	struct known *k;
	bool first = false;

	pthread_mutex_lock(&b->lock);
	k = known_find_locked(b, sha256, true);
	if (bad) {
		first = !k->bad;
		k->bad = true;
	} else {
		k->absent_until_ms = clock_now_ms() + BUCKET_ABSENT_MS;
	}
	pthread_mutex_unlock(&b->lock);
	return first;
}

/* ---- the bucket's own health ------------------------------------------ */

/* Reads wait for no bucket: one that failed in itself (no connection, a
 * timeout, a 5xx, a wrong answer) or refuses us (401, 403: credentials
 * the bucket does not take would cost every block a round trip) is
 * skipped for BUCKET_RETRY_MS, with one log line, and the origins serve
 * meanwhile (as tier.h (3)). A 404 or a bad block says nothing about
 * the bucket's health. */
static void report(struct bucket *b, int rc, long status, const char *why)
{
	bool broken = rc == -EAGAIN || rc == -EIO || rc == -EPROTO || rc == -EACCES ||
		      status >= 500;
	enum downtime_change change;

	if (rc == -ECANCELED || rc == -ENOMEM)
		return;
	change = downtime_report(&b->down, broken, BUCKET_RETRY_MS);
	if (change == DOWNTIME_WENT_DOWN)
		log_warn("event=bucket_down bucket=\"%s\" error=\"%s\" action=\"reading from the "
			 "origins; trying the bucket again in %d s\"", b->name,
			 why ? why : strerror(-rc), BUCKET_RETRY_MS / 1000);
	if (change == DOWNTIME_CAME_BACK)
		log_info("event=bucket_up bucket=\"%s\"", b->name);
}

/* ---- requests --------------------------------------------------------- */

static void sign(const struct bucket *b, struct http_request *rq)
{
	rq->origin_url = rq->url;	/* (4): the bucket's host, and no other */
	if (b->credentials) {
		rq->aws_sigv4 = b->sigv4;
		rq->aws_credentials = b->credentials;
		rq->aws_session_token = b->session_token;
	}
}

/* One request, tried again on a transient failure: http_get()'s result. */
static int send_retried(const struct bucket *b, struct http_client *c, struct http_request *rq,
			struct http_body *answer, struct http_meta *meta)
{
	int rc = -EAGAIN;

	sign(b, rq);
	for (int attempt = 0; attempt < TRIES && rc == -EAGAIN; attempt++) {
		if (attempt) {
			struct timespec wait = { 0, (200L << attempt) * 1000000L };

			nanosleep(&wait, NULL);
			http_meta_clear(meta);	/* http_get() fills it afresh */
		}
		if (answer)
			answer->len = 0;
		rc = http_get(c, rq, answer ? http_body_sink : NULL, answer, meta);
	}
	return rc;
}

/* ---- reading ---------------------------------------------------------- */

/* Checks blocks as they complete and passes on the wanted part of each. */
struct check_sink {
	struct bucket *b;
	const char *sha256;
	uint64_t size;
	const char *sums;		/* sidecar lines of blocks first.. */
	uint64_t first;			/* index of the first block fetched */
	uint64_t off, end;		/* what the caller wants */
	char *buf;			/* the block being gathered */
	uint32_t have;
	uint64_t idx;			/* its index */
	http_sink_fn sink;
	void *ctx;
};

static int block_done(struct check_sink *s)
{
	uint64_t start = s->idx * BUCKET_BLOCK, from, to;
	const char *want = s->sums + (s->idx - s->first) * BUCKET_SIDECAR_LINE;
	char got[65];
	int rc = bucket_block_sum(s->sha256, s->idx, s->buf, s->have, got);

	if (rc)
		return rc;
	if (memcmp(got, want, 64) != 0) {
		if (remember(s->b, s->sha256, true))
			log_error("event=bucket_corrupt bucket=\"%s\" sha256=%s block=%" PRIu64
				  " action=\"not served; this file is read from its origin\"",
				  s->b->name, s->sha256, s->idx);
		return -EBADMSG;
	}
	from = s->off > start ? s->off : start;
	to = s->end < start + s->have ? s->end : start + s->have;
	if (from < to)
		rc = s->sink(s->ctx, from, s->buf + (from - start), (size_t)(to - from));
	s->idx++;
	s->have = 0;
	return rc;
}

static int check_write(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct check_sink *s = ctx;
	const char *p = data;
	int rc = 0;

	while (len > 0 && rc == 0) {
		uint64_t start = s->idx * BUCKET_BLOCK;
		uint32_t blen = (uint32_t)(s->size - start < BUCKET_BLOCK ? s->size - start
									  : BUCKET_BLOCK);
		size_t n = blen - s->have < len ? blen - s->have : len;

		memcpy(s->buf + s->have, p, n);
		s->have += (uint32_t)n;
		p += n;
		len -= n;
		if (s->have == blen)
			rc = block_done(s);
	}
	return rc;
}

/* The sidecar lines of blocks [first, last], checked for form, into sums. */
static int read_sums(struct bucket *b, struct http_client *c, const char *sha256,
		     uint64_t first, uint64_t last, const atomic_int *cancel, struct http_body *sums)
{
	uint64_t n = last - first + 1;
	struct http_meta meta;
	struct http_request rq = {
		.url = object_url(b, sha256, ".blocks", NULL),
		.range_first = BUCKET_SIDECAR_HEADER + first * BUCKET_SIDECAR_LINE,
		.range_len = n * BUCKET_SIDECAR_LINE,
		.cancel = cancel,
	};
	int rc;

	if (!rq.url)
		return -ENOMEM;
	sums->max = (size_t)rq.range_len;
	sign(b, &rq);
	/* One try: the origin is the next source, not this one again. */
	rc = http_get(c, &rq, http_body_sink, sums, &meta);
	if (rc == -ENOENT || rc == -ERANGE)
		remember(b, sha256, false);
	else if (rc && rc != -ECANCELED)
		log_debug("event=bucket_miss bucket=\"%s\" sha256=%s error=\"%s\"", b->name, sha256,
			  meta.error_text ? meta.error_text : strerror(-rc));
	report(b, rc, meta.status, meta.error_text);
	http_meta_clear(&meta);
	free((char *)rq.url);
	if (rc)
		return rc == -ERANGE ? -ENOENT : rc;
	for (uint64_t i = 0; i < n; i++)
		if (sums->data[i * BUCKET_SIDECAR_LINE + 64] != '\n')
			return -EBADMSG;
	return 0;
}

int bucket_read(struct bucket *b, struct http_client *c, const char *sha256, uint64_t size,
		uint64_t off, uint64_t len, const atomic_int *cancel, http_sink_fn sink,
		void *ctx)
{
	uint64_t first, last, end;
	struct http_body sums = { 0 };
	struct http_meta meta;
	struct check_sink cs;
	struct http_request rq = { .cancel = cancel };
	int rc;

	if (!is_hex64(sha256) || len == 0 || off + len > size)
		return -EINVAL;
	if (skipped(b, sha256) || downtime_skipping(&b->down))
		return -ENOENT;
	first = off / BUCKET_BLOCK;
	last = (off + len - 1) / BUCKET_BLOCK;
	end = (last + 1) * BUCKET_BLOCK < size ? (last + 1) * BUCKET_BLOCK : size;
	rc = read_sums(b, c, sha256, first, last, cancel, &sums);
	if (rc == -EBADMSG && remember(b, sha256, true))
		log_error("event=bucket_corrupt bucket=\"%s\" sha256=%s error=\"malformed sidecar\" "
			  "action=\"not served; this file is read from its origin\"", b->name, sha256);
	if (rc)
		goto out;
	cs = (struct check_sink){ .b = b, .sha256 = sha256, .size = size, .sums = sums.data,
				  .first = first, .off = off, .end = off + len, .idx = first,
				  .sink = sink, .ctx = ctx };
	cs.buf = malloc(BUCKET_BLOCK);
	rq.url = object_url(b, sha256, "", NULL);
	if (!cs.buf || !rq.url) {
		rc = -ENOMEM;
		goto out_buf;
	}
	rq.range_first = first * BUCKET_BLOCK;
	rq.range_len = end - rq.range_first;
	sign(b, &rq);
	/* Not retried here: a block already passed on cannot be taken back,
	 * and the caller's next source starts where this one stopped. */
	rc = http_get(c, &rq, check_write, &cs, &meta);
	if (rc == 0 && meta.status != 206)
		rc = -EPROTO;		/* a redirect: not followed (4) */
	report(b, rc, meta.status, meta.error_text);
	if (rc == -ENOENT)
		remember(b, sha256, false);	/* a sidecar without bytes: deleted since */
	else if (rc && rc != -EBADMSG && rc != -ECANCELED)
		log_debug("event=bucket_read_failed bucket=\"%s\" sha256=%s error=\"%s\"", b->name,
			  sha256, meta.error_text ? meta.error_text : strerror(-rc));
	http_meta_clear(&meta);
out_buf:
	free((char *)rq.url);
	free(cs.buf);
out:
	free(sums.data);
	return rc;
}

/* ---- uploading -------------------------------------------------------- */

struct upload {
	struct bucket *b;
	struct http_client *c;
	const char *sha256;
	int fd;
	uint64_t size;
	const atomic_int *cancel;
	char *buf;			/* BUCKET_BLOCK */
	char *sidecar;			/* header + a line per block */
	size_t sidecar_len;
	char *upload_id;		/* a multipart upload under way */
	char **etags;			/* per part */
	uint32_t nparts;
};

/* Hash [off, off+len) of the file: its SHA-256 into payload, and its
 * blocks' sidecar lines into the sidecar (off is block-aligned). */
static int hash_span(struct upload *u, uint64_t off, uint64_t len, char payload[65])
{
	struct hexhash *h;
	int rc = hexhash_new(&h);

	if (rc)
		return rc;
	for (uint64_t at = off; at < off + len && rc == 0; at += BUCKET_BLOCK) {
		size_t n = off + len - at < BUCKET_BLOCK ? (size_t)(off + len - at) : BUCKET_BLOCK;
		ssize_t got = pread(u->fd, u->buf, n, (off_t)at);
		char *line = u->sidecar + BUCKET_SIDECAR_HEADER +
			     (at / BUCKET_BLOCK) * BUCKET_SIDECAR_LINE;

		if (u->cancel && atomic_load(u->cancel))
			rc = -ECANCELED;
		else if (got != (ssize_t)n)
			rc = -EIO;
		else
			rc = bucket_block_sum(u->sha256, at / BUCKET_BLOCK, u->buf, n, line);
		if (rc == 0) {
			line[64] = '\n';
			hexhash_update(h, u->buf, n);
		}
	}
	if (rc) {
		hexhash_free(h);
		return rc;
	}
	hexhash_final(h, payload);
	return 0;
}

/* PUT of kind's object: from the file (body NULL) or from memory. */
static int put(struct upload *u, const char *kind, const char *query, const void *body,
	       uint64_t off, uint64_t len, const char *payload, bool create_only, char **etag)
{
	struct http_meta meta;
	struct http_request rq = {
		.method = HTTP_PUT,
		.url = object_url(u->b, u->sha256, kind, query),
		.body = body,
		.body_fd = u->fd,
		.body_off = off,
		.body_len = len,
		.content_type = "application/octet-stream",
		.payload_sha256 = payload,
		.if_none_match_any = create_only,
		.cancel = u->cancel,
	};
	int rc;

	if (!rq.url)
		return -ENOMEM;
	rc = send_retried(u->b, u->c, &rq, NULL, &meta);
	if (rc == 0 && etag && !(*etag = meta.etag ? strdup(meta.etag) : NULL))
		rc = meta.etag ? -ENOMEM : -EPROTO;
	if (rc && rc != -EEXIST && rc != -ECANCELED)
		log_warn("event=bucket_put_failed bucket=\"%s\" sha256=%s object=%s error=\"%s\"",
			 u->b->name, u->sha256, kind[0] ? kind : "bytes",
			 meta.error_text ? meta.error_text : strerror(-rc));
	http_meta_clear(&meta);
	free((char *)rq.url);
	return rc;
}

static int post(struct upload *u, const char *query, const char *body, bool create_only,
		struct http_body *answer)
{
	struct http_meta meta;
	struct http_request rq = {
		.method = HTTP_POST,
		.url = object_url(u->b, u->sha256, "", query),
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.content_type = "application/xml",
		.if_none_match_any = create_only,
		.cancel = u->cancel,
	};
	char payload[65];
	int rc;

	if (!rq.url)
		return -ENOMEM;
	rc = hexhash_sha256(body ? body : "", rq.body_len, payload);
	rq.payload_sha256 = payload;
	if (rc == 0)
		rc = send_retried(u->b, u->c, &rq, answer, &meta);
	if (rc && rc != -EEXIST && rc != -ECANCELED)
		log_warn("event=bucket_post_failed bucket=\"%s\" sha256=%s query=%.20s error=\"%s\"",
			 u->b->name, u->sha256, query, meta.error_text ? meta.error_text : strerror(-rc));
	http_meta_clear(&meta);
	free((char *)rq.url);
	return rc;
}

/* Clean-up after a failed upload, at a stop too: one short try. */
static int delete(struct upload *u, const char *kind, const char *query)
{
	struct http_meta meta;
	struct http_request rq = {
		.method = HTTP_DELETE,
		.url = object_url(u->b, u->sha256, kind, query),
		.timeout_sec = 5,
	};
	int rc;

	if (!rq.url)
		return -ENOMEM;
	sign(u->b, &rq);
	rc = http_get(u->c, &rq, NULL, NULL, &meta);
	http_meta_clear(&meta);
	free((char *)rq.url);
	return rc;
}

/* Whether the sidecar is there (so the whole object is, (2)): 0 when it
 * is not, -EEXIST when it is, or a failure's -errno. One byte is asked
 * for: a GET costs a tenth of a PUT, and creates nothing. */
static int sidecar_exists(struct upload *u)
{
	struct http_meta meta;
	struct http_request rq = {
		.url = object_url(u->b, u->sha256, ".blocks", NULL),
		.range_len = 1,
		.cancel = u->cancel,
	};
	int rc;

	if (!rq.url)
		return -ENOMEM;
	rc = send_retried(u->b, u->c, &rq, NULL, &meta);
	http_meta_clear(&meta);
	free((char *)rq.url);
	return rc == 0 ? -EEXIST : rc == -ENOENT ? 0 : rc;
}

/*
 * Whether the claim that is there is older than BUCKET_CLAIM_STALE_SEC
 * (its node died mid-upload). Taking it over is safe even when two nodes
 * do it at once: the bytes and the sidecar are each created only once
 * (If-None-Match: *), and any node's are the same verified bytes.
 */
static bool claim_stale(struct upload *u)
{
	struct http_body body = { .max = 4096 };
	struct http_meta meta;
	struct http_request rq = {
		.url = object_url(u->b, u->sha256, ".claim", NULL),
		.cancel = u->cancel,
	};
	const char *t;
	long long when = -1;
	int rc;

	if (!rq.url)
		return false;
	rc = send_retried(u->b, u->c, &rq, &body, &meta);
	t = rc == 0 && body.data ? strstr(body.data, "time=") : NULL;
	if (t)
		when = strtoll(t + 5, NULL, 10);
	http_meta_clear(&meta);
	free(body.data);
	free((char *)rq.url);
	if (when <= 0 || clock_wall_ms() / 1000 - when < BUCKET_CLAIM_STALE_SEC)
		return false;
	log_info("event=bucket_claim_stale bucket=\"%s\" sha256=%s age_s=%lld action=\"taken "
		 "over\"", u->b->name, u->sha256, clock_wall_ms() / 1000 - when);
	return true;
}

/* The text of <tag> in xml, a copy, or NULL. */
static char *xml_text(const char *xml, const char *tag)
{
	char open[64], close[64];
	const char *p, *q;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	p = xml ? strstr(xml, open) : NULL;
	q = p ? strstr(p, close) : NULL;
	return q ? strndup(p + strlen(open), (size_t)(q - p - strlen(open))) : NULL;
}

static uint64_t part_size(uint64_t size)
{
	uint64_t part = BUCKET_PART;

	/* S3 takes at most 10,000 parts. */
	while (size / part >= 10000)
		part *= 2;
	return part;
}

static int upload_multipart(struct upload *u)
{
	uint64_t part = part_size(u->size);
	struct http_body answer = { .max = XML_MAX };
	char payload[65], query[256], *xml = NULL;
	size_t xml_len = 0;
	FILE *x;
	int rc;

	u->nparts = (uint32_t)((u->size + part - 1) / part);
	u->etags = calloc(u->nparts, sizeof(*u->etags));
	if (!u->etags)
		return -ENOMEM;
	rc = post(u, "uploads=", NULL, false, &answer);
	if (rc == 0 && !(u->upload_id = xml_text(answer.data, "UploadId")))
		rc = -EPROTO;
	free(answer.data);
	for (uint32_t i = 0; rc == 0 && i < u->nparts; i++) {
		uint64_t off = i * part, len = u->size - off < part ? u->size - off : part;

		rc = hash_span(u, off, len, payload);
		snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", i + 1, u->upload_id);
		if (rc == 0)
			rc = put(u, "", query, NULL, off, len, payload, false, &u->etags[i]);
	}
	if (rc)
		return rc;
	x = open_memstream(&xml, &xml_len);
	if (!x)
		return -ENOMEM;
	fputs("<CompleteMultipartUpload>", x);
	for (uint32_t i = 0; i < u->nparts; i++)
		fprintf(x, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
			u->etags[i]);
	fputs("</CompleteMultipartUpload>", x);
	if (fclose(x) != 0) {
		free(xml);
		return -ENOMEM;
	}
	snprintf(query, sizeof(query), "uploadId=%s", u->upload_id);
	answer = (struct http_body){ .max = XML_MAX };
	rc = post(u, query, xml, true, &answer);
	/* S3 may answer 200 with an <Error> inside, once it has started. */
	if (rc == 0 && answer.data && strstr(answer.data, "<Error>"))
		rc = -EAGAIN;
	free(answer.data);
	free(xml);
	if (rc == 0 || rc == -EEXIST) {
		free(u->upload_id);	/* completed, or refused: nothing to abort */
		u->upload_id = NULL;
	}
	return rc;
}

static int upload_bytes(struct upload *u)
{
	char payload[65];
	int rc;

	if (u->size > BUCKET_PART)
		return upload_multipart(u);
	rc = hash_span(u, 0, u->size, payload);
	return rc ? rc : put(u, "", NULL, NULL, 0, u->size, payload, true, NULL);
}

static void upload_clear(struct upload *u)
{
	char query[256];

	if (u->upload_id) {
		snprintf(query, sizeof(query), "uploadId=%s", u->upload_id);
		delete(u, "", query);
		free(u->upload_id);
	}
	for (uint32_t i = 0; u->etags && i < u->nparts; i++)
		free(u->etags[i]);
	free(u->etags);
	free(u->sidecar);
	free(u->buf);
}

int bucket_upload(struct bucket *b, struct http_client *c, const char *sha256, int fd,
		  uint64_t size, const atomic_int *cancel)
{
	struct upload u = { .b = b, .c = c, .sha256 = sha256, .fd = fd, .size = size,
			    .cancel = cancel };
	uint64_t nblocks = (size + BUCKET_BLOCK - 1) / BUCKET_BLOCK;
	char claim[200], host[64] = "?", payload[65];
	int rc;

	if (!is_hex64(sha256))
		return -EINVAL;
	u.sidecar_len = BUCKET_SIDECAR_HEADER + nblocks * BUCKET_SIDECAR_LINE;
	u.sidecar = malloc(u.sidecar_len);
	u.buf = malloc(BUCKET_BLOCK);
	if (!u.sidecar || !u.buf) {
		rc = -ENOMEM;
		goto out;
	}
	/* The header line, padded with spaces (bucket.h). */
	snprintf(u.sidecar, BUCKET_SIDECAR_HEADER, "modelfs-blocks 1 block=%u size=%020" PRIu64
		 " sha256=%s", BUCKET_BLOCK, size, sha256);
	memset(u.sidecar + strlen(u.sidecar), ' ', BUCKET_SIDECAR_HEADER - strlen(u.sidecar));
	u.sidecar[BUCKET_SIDECAR_HEADER - 1] = '\n';

	rc = sidecar_exists(&u);
	if (rc)
		goto out;
	gethostname(host, sizeof(host) - 1);
	snprintf(claim, sizeof(claim), "host=%s pid=%d time=%lld\n", host, (int)getpid(),
		 (long long)clock_wall_ms() / 1000);
	rc = hexhash_sha256(claim, strlen(claim), payload);
	if (rc == 0)
		rc = put(&u, ".claim", NULL, claim, 0, strlen(claim), payload, true, NULL);
	if (rc == -EEXIST && claim_stale(&u) && delete(&u, ".claim", NULL) == 0)
		rc = put(&u, ".claim", NULL, claim, 0, strlen(claim), payload, true, NULL);
	if (rc)
		goto out;
	rc = upload_bytes(&u);
	if (rc == 0) {
		rc = hexhash_sha256(u.sidecar, u.sidecar_len, payload);
		if (rc == 0)
			rc = put(&u, ".blocks", NULL, u.sidecar, 0, u.sidecar_len, payload, true,
				 NULL);
	}
	if (rc && rc != -EEXIST) {
		/* Let another node try: the bytes are not there for anyone. */
		delete(&u, ".claim", NULL);
	}
out:
	upload_clear(&u);
	return rc;
}
