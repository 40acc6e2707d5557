/*
 * mock_origin.h: HTTP origins in memory, for driving the engine without a
 * network (tests/unit/test_engine.c). Two layers, each an
 * http_client_ops (http.h) with http_get()'s exact contract:
 *
 * The origin answers GETs of the URLs registered with it, as a server
 * would and as http.c reports it: a 206 whose Content-Range is exactly
 * the requested span (a span past the end is clipped, which http.h (1)
 * makes -EPROTO; one starting at or past the end is a 416, -ERANGE, with
 * the total), a 200 with the whole body to a request without Range, and
 * to a Range when the object does not accept ranges (-EPROTO,
 * range_ignored) or when a strong If-Range no longer matches (-ESTALE).
 * Bytes reach the sink in order, in chunks of varying size; a sink's
 * error aborts with that error; *rq->cancel is seen between chunks
 * (-ECANCELED); a client deadline that has passed is a timeout (-EAGAIN).
 * An unknown URL is a 404 (-ENOENT).
 *
 * The fault layer sits in front of an origin and, driven by a seeded
 * PRNG, spoils a share of the ranged requests: a reset after part of the
 * body (-EAGAIN with bytes delivered; a short body is the same answer to
 * http.c), a 429 or 503 with Retry-After, a
 * wrong Content-Range or a 200 to a Range (-EPROTO), a stall until cancel
 * or a bound (-ECANCELED, else a timeout). Probes (1-byte ranges) and
 * requests without Range pass untouched, so that files still resolve.
 *
 * Counters: how many times each byte of an object went to a sink other
 * than http_discard_sink (a probe's), and the requests answered.
 * Threads: all functions are thread-safe; clients, as http.h says, are
 * used by one thread at a time.
 */
#ifndef MODELFS_TEST_MOCK_ORIGIN_H
#define MODELFS_TEST_MOCK_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/http.h"

struct mock_origin;

/* The seeded PRNG everything here draws from (splitmix64): the next
 * number of the sequence *state stands for. */
uint64_t mock_rand(uint64_t *state);

int mock_origin_new(struct mock_origin **out);
void mock_origin_free(struct mock_origin *o);
/* Serve size bytes of data (copied) at url, with an ETag and a
 * Last-Modified (either may be NULL), accepting Range or not. */
int mock_origin_add(struct mock_origin *o, const char *url, const void *data, size_t size,
		    const char *etag, const char *last_modified, bool ranges);
/* url now has other bytes of the same size (copied) and ETag etag: the
 * representation changed. */
int mock_origin_change(struct mock_origin *o, const char *url, const void *data,
		       const char *etag);
/* Every request fails as an unreachable origin does (-EAGAIN), or not. */
void mock_origin_set_down(struct mock_origin *o, bool down);
/* engine_opts.client_new with the origin as arg. */
int mock_origin_client_new(void *origin, struct http_client **out);
/* The most times any byte of [first, first+len) of url went to a sink. */
unsigned mock_origin_max_served(struct mock_origin *o, const char *url, uint64_t first,
				uint64_t len);
uint64_t mock_origin_requests(struct mock_origin *o);

/* What the fault layer does to a ranged request, chosen per request:
 * with percent% chance one of the enabled faults, else nothing. */
struct mock_faults {
	uint64_t seed;
	int percent;			/* 0..100 */
	bool reset;			/* part of the body, then the connection drops */
	bool status;			/* 429 or 503 with Retry-After: 0 */
	bool proto;			/* wrong Content-Range, or a 200 to the Range */
	bool stall;			/* nothing comes until cancel or stall_ms */
	int stall_ms;
};
struct mock_faulty;
/* A fault layer over origin o (which must outlive it). */
int mock_faulty_new(struct mock_origin *o, const struct mock_faults *f,
		    struct mock_faulty **out);
void mock_faulty_free(struct mock_faulty *fl);
/* engine_opts.client_new with the fault layer as arg. */
int mock_faulty_client_new(void *faulty, struct http_client **out);
/* Faults injected so far. */
uint64_t mock_faulty_injected(struct mock_faulty *fl);

#endif
