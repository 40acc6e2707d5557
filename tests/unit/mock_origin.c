/*
 * mock_origin.c: the in-memory origin and its fault layer (mock_origin.h).
 * Each answer is what http.c would report for the response a server
 * gives: the same status, meta fields, error class and body rules. The
 * bytes an answer sends are the object's at the moment it started:
 * mock_origin_change() swaps in a new buffer and keeps the old one alive
 * until mock_origin_free(), as a server finishes a response it began.
 */
#include "mock_origin.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modelfs/clock.h"

/* A server's Last-Modified is any HTTP-date; its epoch for meta->mtime. */
#define MOCK_MTIME 1767225600	/* Thu, 01 Jan 2026 00:00:00 GMT */

struct object {
	char *url;
	const unsigned char *data;	/* the bytes now (one of bufs) */
	size_t size;
	char *etag, *last_modified;
	bool ranges;
	unsigned char *served;		/* [size]: times each byte went to a sink, saturating */
	struct object *next;
};

struct retired {
	void *p;
	struct retired *next;
};

struct mock_origin {
	pthread_mutex_t lock;
	struct object *objects;		/* protected by lock */
	struct retired *bufs;		/* every data buffer and old ETag; protected by lock */
	bool down;			/* protected by lock */
	uint64_t requests;		/* protected by lock */
	uint64_t chunk_seed;		/* protected by lock */
};

uint64_t mock_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int keep(struct mock_origin *o, void *p)
{
	struct retired *r = malloc(sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->p = p;
	r->next = o->bufs;
	o->bufs = r;
	return 0;
}

int mock_origin_new(struct mock_origin **out)
{
	struct mock_origin *o = calloc(1, sizeof(*o));

	*out = NULL;
	if (!o)
		return -ENOMEM;
	pthread_mutex_init(&o->lock, NULL);
	o->chunk_seed = 1;
	*out = o;
	return 0;
}

void mock_origin_free(struct mock_origin *o)
{
	if (!o)
		return;
	while (o->objects) {
		struct object *ob = o->objects;

		o->objects = ob->next;
		free(ob->url);
		free(ob->last_modified);
		free(ob->served);
		free(ob);
	}
	while (o->bufs) {
		struct retired *r = o->bufs;

		o->bufs = r->next;
		free(r->p);
		free(r);
	}
	pthread_mutex_destroy(&o->lock);
	free(o);
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*oom = true;
	return d;
}

int mock_origin_add(struct mock_origin *o, const char *url, const void *data, size_t size,
		    const char *etag, const char *last_modified, bool ranges)
{
	struct object *ob = calloc(1, sizeof(*ob));
	unsigned char *copy = malloc(size ? size : 1);
	bool oom = !ob || !copy;
	int rc;

	if (!oom) {
		memcpy(copy, data, size);
		ob->url = dup_or_null(url, &oom);
		ob->etag = dup_or_null(etag, &oom);
		ob->last_modified = dup_or_null(last_modified, &oom);
		ob->served = calloc(size ? size : 1, 1);
		oom = oom || !ob->served;
	}
	if (oom) {
		if (ob) {
			free(ob->url);
			free(ob->etag);
			free(ob->last_modified);
			free(ob->served);
		}
		free(ob);
		free(copy);
		return -ENOMEM;
	}
	ob->data = copy;
	ob->size = size;
	ob->ranges = ranges;
	pthread_mutex_lock(&o->lock);
	rc = keep(o, copy);
	if (rc)
		free(copy);
	else if (ob->etag && (rc = keep(o, ob->etag)) != 0)
		free(ob->etag);
	if (rc == 0) {
		ob->next = o->objects;
		o->objects = ob;
	}
	pthread_mutex_unlock(&o->lock);
	if (rc) {
		free(ob->url);
		free(ob->last_modified);
		free(ob->served);
		free(ob);
	}
	return rc;
}

static struct object *find_locked(struct mock_origin *o, const char *url)
{
	for (struct object *ob = o->objects; ob; ob = ob->next)
		if (strcmp(ob->url, url) == 0)
			return ob;
	return NULL;
}

int mock_origin_change(struct mock_origin *o, const char *url, const void *data,
		       const char *etag)
{
	struct object *ob;
	unsigned char *copy = NULL;
	char *tag = etag ? strdup(etag) : NULL;
	int rc = -ENOENT;

	if (etag && !tag)
		return -ENOMEM;
	pthread_mutex_lock(&o->lock);
	ob = find_locked(o, url);
	if (ob) {
		/* The old buffer and ETag stay in bufs for answers under way. */
		copy = malloc(ob->size ? ob->size : 1);
		rc = copy ? keep(o, copy) : -ENOMEM;
		if (rc)
			free(copy);
		else if (tag && (rc = keep(o, tag)) != 0)
			tag = NULL;	/* freed below: copy is kept, harmlessly */
	}
	if (rc == 0) {
		memcpy(copy, data, ob->size);
		ob->data = copy;
		ob->etag = tag;
		tag = NULL;
	}
	pthread_mutex_unlock(&o->lock);
	free(tag);
	return rc;
}

void mock_origin_set_down(struct mock_origin *o, bool down)
{
	pthread_mutex_lock(&o->lock);
	o->down = down;
	pthread_mutex_unlock(&o->lock);
}

unsigned mock_origin_max_served(struct mock_origin *o, const char *url, uint64_t first,
				uint64_t len)
{
	struct object *ob;
	unsigned most = 0;

	pthread_mutex_lock(&o->lock);
	ob = find_locked(o, url);
	for (uint64_t i = first; ob && i < first + len && i < ob->size; i++)
		if (ob->served[i] > most)
			most = ob->served[i];
	pthread_mutex_unlock(&o->lock);
	return most;
}

uint64_t mock_origin_requests(struct mock_origin *o)
{
	uint64_t n;

	pthread_mutex_lock(&o->lock);
	n = o->requests;
	pthread_mutex_unlock(&o->lock);
	return n;
}

/* ---- answering as http.c reports ---------------------------------------- */

static void meta_text(char **field, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void meta_text(char **field, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(*field);
	*field = s;
}

static bool cancelled(const struct http_request *rq)
{
	return rq->cancel && atomic_load(rq->cancel);
}

/* What one answer is made of, copied under the origin's lock. */
struct answer {
	struct object *ob;
	const unsigned char *data;
	size_t size;
	char etag[128];
	bool has_etag, ranges;
};

/* The headers every answer about ob carries, into meta. */
static void meta_object(struct http_meta *m, const struct answer *a)
{
	if (a->has_etag)
		m->etag = strdup(a->etag);
	if (a->ob->last_modified) {
		m->last_modified = strdup(a->ob->last_modified);
		m->mtime = MOCK_MTIME;
	}
	m->content_type = strdup("application/octet-stream");
	m->accept_ranges = a->ranges;
}

/* Send data[first, first+len) to sink in chunks of varying size, counting
 * what went to a real sink: 0, -ECANCELED or the sink's error. */
static int send_body(struct mock_origin *o, struct answer *a, const struct http_request *rq,
		     uint64_t first, uint64_t len, uint64_t offset, http_sink_fn sink, void *ctx,
		     struct http_meta *m)
{
	static const uint32_t sizes[] = { 1, 511, 4096, 16384, 16384, 16384, 32768, 65536 };
	bool counted = sink && sink != http_discard_sink;
	uint64_t seed, done = 0;

	pthread_mutex_lock(&o->lock);
	seed = o->chunk_seed++;
	pthread_mutex_unlock(&o->lock);
	while (done < len) {
		uint64_t n = sizes[mock_rand(&seed) % (sizeof(sizes) / sizeof(sizes[0]))];
		int rc;

		if (cancelled(rq)) {
			meta_text(&m->error_text, "cancelled");
			return -ECANCELED;
		}
		if (n > len - done)
			n = len - done;
		if (counted) {
			pthread_mutex_lock(&o->lock);
			for (uint64_t i = first + done; i < first + done + n; i++)
				if (a->ob->served[i] < 255)
					a->ob->served[i]++;
			pthread_mutex_unlock(&o->lock);
		}
		rc = sink ? sink(ctx, offset + done, a->data + first + done, (size_t)n) : 0;
		if (rc) {
			rc = rc < 0 ? rc : -EIO;
			meta_text(&m->error_text, "sink failed: %s", strerror(-rc));
			return rc;
		}
		done += n;
	}
	return 0;
}

static int origin_get(struct mock_origin *o, int64_t deadline_ms, const struct http_request *rq,
		      http_sink_fn sink, void *ctx, struct http_meta *m)
{
	struct answer a = { 0 };
	bool ranged = rq->range_len > 0, down;
	uint64_t last = ranged ? rq->range_first + rq->range_len - 1 : 0;

	m->final_url = strdup(rq->url);
	pthread_mutex_lock(&o->lock);
	o->requests++;
	down = o->down;
	a.ob = find_locked(o, rq->url);
	if (a.ob) {
		a.data = a.ob->data;
		a.size = a.ob->size;
		a.ranges = a.ob->ranges;
		a.has_etag = a.ob->etag != NULL;
		if (a.has_etag)
			snprintf(a.etag, sizeof(a.etag), "%s", a.ob->etag);
	}
	pthread_mutex_unlock(&o->lock);

	if (cancelled(rq)) {
		meta_text(&m->error_text, "cancelled");
		return -ECANCELED;
	}
	if (down) {
		meta_text(&m->error_text, "could not connect");
		return -EAGAIN;
	}
	if (deadline_ms > 0 && clock_now_ms() >= deadline_ms) {
		meta_text(&m->error_text, "timed out after 0 bytes");
		return -EAGAIN;
	}
	if (!a.ob) {
		m->status = 404;
		meta_text(&m->error_text, "HTTP 404");
		return -ENOENT;
	}
	meta_object(m, &a);
	if (!ranged) {
		m->status = 200;
		m->content_length = m->total_size = (int64_t)a.size;
		if (!sink)
			return 0;	/* a probe: the headers were all it wanted */
		return send_body(o, &a, rq, 0, a.size, 0, sink, ctx, m);
	}
	/* A strong If-Range that no longer matches, or a server that does
	 * not do ranges: the whole body with a 200, refused before a byte. */
	if (!a.ranges || (rq->if_range && http_etag_is_strong(rq->if_range) &&
			  (!a.has_etag || strcmp(a.etag, rq->if_range) != 0))) {
		m->status = 200;
		m->range_ignored = true;
		m->content_length = m->total_size = (int64_t)a.size;
		if (rq->if_range && http_etag_is_strong(rq->if_range) && a.has_etag &&
		    http_etag_is_strong(a.etag) && strcmp(a.etag, rq->if_range) != 0) {
			meta_text(&m->error_text, "HTTP 200 to If-Range: the file changed");
			return -ESTALE;
		}
		meta_text(&m->error_text, "HTTP 200 to a Range request (server ignores Range)");
		return -EPROTO;
	}
	m->total_size = (int64_t)a.size;
	if (rq->range_first >= a.size) {
		m->status = 416;	/* Content-Range: bytes STAR/size */
		meta_text(&m->error_text, "HTTP 416");
		return -ERANGE;
	}
	m->status = 206;
	if (last >= a.size) {
		/* The server clips the span; http.h (1) refuses it. */
		meta_text(&m->error_text, "Content-Range bytes %" PRIu64 "-%zu/%zu does not match "
			  "requested %" PRIu64 "-%" PRIu64, rq->range_first, a.size - 1, a.size,
			  rq->range_first, last);
		return -EPROTO;
	}
	m->content_length = (int64_t)rq->range_len;
	return send_body(o, &a, rq, rq->range_first, rq->range_len, rq->range_first, sink, ctx, m);
}

static int origin_client_get(void *impl, int64_t deadline_ms, const struct http_request *rq,
			     http_sink_fn sink, void *ctx, struct http_meta *meta)
{
	return origin_get(impl, deadline_ms, rq, sink, ctx, meta);
}

static const struct http_client_ops origin_ops = { .get = origin_client_get };

int mock_origin_client_new(void *origin, struct http_client **out)
{
	return http_client_new_with(&origin_ops, origin, out);
}

/* ---- the fault layer ------------------------------------------------------ */

enum fault { F_NONE, F_RESET, F_STATUS, F_WRONG_RANGE, F_IGNORE_RANGE, F_STALL };

struct mock_faulty {
	struct mock_origin *o;
	struct mock_faults cfg;
	pthread_mutex_t lock;
	uint64_t rng;			/* protected by lock */
	atomic_ullong injected;
};

int mock_faulty_new(struct mock_origin *o, const struct mock_faults *f, struct mock_faulty **out)
{
	struct mock_faulty *fl = calloc(1, sizeof(*fl));

	*out = NULL;
	if (!fl)
		return -ENOMEM;
	fl->o = o;
	fl->cfg = *f;
	fl->rng = f->seed;
	pthread_mutex_init(&fl->lock, NULL);
	*out = fl;
	return 0;
}

void mock_faulty_free(struct mock_faulty *fl)
{
	if (!fl)
		return;
	pthread_mutex_destroy(&fl->lock);
	free(fl);
}

uint64_t mock_faulty_injected(struct mock_faulty *fl)
{
	return atomic_load(&fl->injected);
}

/* The fault for one request, and a number for its size (a cut point). */
static enum fault pick(struct mock_faulty *fl, const struct http_request *rq, uint64_t *arg)
{
	enum fault enabled[5];
	int n = 0;
	enum fault f = F_NONE;

	if (fl->cfg.reset)
		enabled[n++] = F_RESET;
	if (fl->cfg.status)
		enabled[n++] = F_STATUS;
	if (fl->cfg.proto) {
		enabled[n++] = F_WRONG_RANGE;
		enabled[n++] = F_IGNORE_RANGE;
	}
	if (fl->cfg.stall)
		enabled[n++] = F_STALL;
	pthread_mutex_lock(&fl->lock);
	if (n && rq->range_len > 1 && mock_rand(&fl->rng) % 100 < (uint64_t)fl->cfg.percent)
		f = enabled[mock_rand(&fl->rng) % (uint64_t)n];
	*arg = mock_rand(&fl->rng);
	pthread_mutex_unlock(&fl->lock);
	if (f != F_NONE)
		atomic_fetch_add(&fl->injected, 1);
	return f;
}

/* A sink that lets `left` bytes through, then fails as a dropped
 * connection would end the body. */
#define CUT_MARK (-ECONNRESET)
struct cut {
	http_sink_fn sink;
	void *ctx;
	uint64_t left;
};

static int cut_sink(void *arg, uint64_t offset, const void *data, size_t len)
{
	struct cut *c = arg;
	size_t n = len < c->left ? len : (size_t)c->left;
	int rc = 0;

	if (n && c->sink)
		rc = c->sink(c->ctx, offset, data, n);
	c->left -= n;
	if (rc == 0 && n < len)
		rc = CUT_MARK;
	return rc;
}

static int faulty_get(void *impl, int64_t deadline_ms, const struct http_request *rq,
		      http_sink_fn sink, void *ctx, struct http_meta *m)
{
	struct mock_faulty *fl = impl;
	uint64_t arg;
	enum fault f = pick(fl, rq, &arg);
	struct cut cut = { .sink = sink, .ctx = ctx };
	int64_t until;
	int rc;

	switch (f) {
	case F_NONE:
		break;
	case F_RESET:
		cut.left = arg % rq->range_len;
		rc = origin_get(fl->o, deadline_ms, rq, cut_sink, &cut, m);
		if (rc != CUT_MARK)
			return rc;
		meta_text(&m->error_text, "connection closed after %" PRIu64 " of %" PRIu64 " bytes",
			  arg % rq->range_len, rq->range_len);
		return -EAGAIN;
	case F_STATUS:
		m->final_url = strdup(rq->url);
		m->status = arg & 1 ? 429 : 503;
		m->retry_after_sec = 0;
		meta_text(&m->error_text, "HTTP %ld", m->status);
		return -EAGAIN;
	case F_WRONG_RANGE:
		m->final_url = strdup(rq->url);
		m->status = 206;
		meta_text(&m->error_text, "Content-Range bytes %" PRIu64 "-%" PRIu64 " does not match "
			  "requested %" PRIu64 "-%" PRIu64, rq->range_first + 1,
			  rq->range_first + rq->range_len, rq->range_first,
			  rq->range_first + rq->range_len - 1);
		return -EPROTO;
	case F_IGNORE_RANGE:
		m->final_url = strdup(rq->url);
		m->status = 200;
		m->range_ignored = true;
		meta_text(&m->error_text, "HTTP 200 to a Range request (server ignores Range)");
		return -EPROTO;
	case F_STALL:
		m->final_url = strdup(rq->url);
		until = clock_now_ms() + fl->cfg.stall_ms;
		if (deadline_ms > 0 && deadline_ms < until)
			until = deadline_ms;
		while (!cancelled(rq) && clock_now_ms() < until) {
			struct timespec ts = { .tv_nsec = 2 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		if (cancelled(rq)) {
			meta_text(&m->error_text, "cancelled");
			return -ECANCELED;
		}
		meta_text(&m->error_text, "timed out after 0 bytes");
		return -EAGAIN;
	}
	return origin_get(fl->o, deadline_ms, rq, sink, ctx, m);
}

static const struct http_client_ops faulty_ops = { .get = faulty_get };

int mock_faulty_client_new(void *faulty, struct http_client **out)
{
	return http_client_new_with(&faulty_ops, faulty, out);
}
