/*
 * stream.c: a response body read through the engine, chunk by chunk.
 *
 * libmicrohttpd runs each connection on its own thread and asks
 * stream_read() for the bytes at the next body offset. The stream keeps
 * two chunk slots: while the client is sent one, the engine fills the
 * other (asked for as soon as the first arrived), so cached bytes flow
 * without a gap and cold ones start downloading before they are needed;
 * the engine's own readahead runs further ahead. A body therefore holds
 * at most two SERVE_CHUNK buffers, whatever the file's size.
 *
 * engine_read() answers by callback, on this thread (cached bytes) or on
 * a worker (fetched ones). A slot is marked asked, under the lock, before
 * the engine is called without it, and only the callback fills it. The
 * stream is counted: one reference for libmicrohttpd's response and one
 * per read asked, so a client that leaves mid-body frees nothing the
 * engine will still write into. Waits are in slices of WAIT_SLICE_MS to
 * notice the server stopping (serve_close()), which answers the waiting
 * connection with an error instead of leaving it to the engine.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "modelfs/clock.h"
#include "serve_i.h"

#define WAIT_SLICE_MS 200

enum slot_state { SLOT_EMPTY, SLOT_ASKED, SLOT_READY };

struct stream;

struct slot {
	struct stream *st;
	char *buf;			/* cap bytes */
	uint64_t off;			/* body offset of buf[0]; protected by st->lock */
	size_t len;			/* asked, then received; protected by st->lock */
	enum slot_state state;		/* protected by st->lock */
	int err;			/* the engine's answer when < 0; protected by st->lock */
	pthread_t asker;		/* the thread that asked; protected by st->lock */
	bool from_cache;		/* answered on asker's thread; protected by st->lock */
};

struct stream {
	struct engine_file *f;
	uint64_t first;			/* file offset of body offset 0 */
	uint64_t length;		/* body bytes */
	size_t cap;			/* each slot's size */
	const atomic_int *stop;
	struct serve_counters *counters;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* with lock: a slot became ready */
	struct slot slot[2];
	int refs;			/* protected by lock */
};

static void stream_free(struct stream *st)
{
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	free(st->slot[0].buf);
	free(st->slot[1].buf);
	free(st);
}

int stream_new(struct engine_file *f, uint64_t first, uint64_t last, const atomic_int *stop,
	       struct serve_counters *k, struct stream **out)
{
	struct stream *st = calloc(1, sizeof(*st));
	pthread_condattr_t ca;

	if (!st)
		return -ENOMEM;
	st->f = f;
	st->first = first;
	st->length = last - first + 1;
	st->cap = st->length < SERVE_CHUNK ? (size_t)st->length : SERVE_CHUNK;
	st->stop = stop;
	st->counters = k;
	st->refs = 1;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	for (int i = 0; i < 2; i++) {
		st->slot[i].st = st;
		/* A body that fits one chunk needs one slot. */
		if (i == 1 && st->length <= st->cap)
			break;
		st->slot[i].buf = malloc(st->cap);
		if (!st->slot[i].buf) {
			stream_free(st);
			return -ENOMEM;
		}
	}
	*out = st;
	return 0;
}

/* The engine's answer for a slot; any thread, no lock held. */
static void on_chunk(void *arg, const char *buf, ssize_t len)
{
	struct slot *s = arg;
	struct stream *st = s->st;
	bool last;

	pthread_mutex_lock(&st->lock);
	if (len < 0 || (size_t)len != s->len) {
		/* Short only at EOF, and the body never passes EOF. */
		s->err = len < 0 ? (int)len : -EIO;
	} else {
		memcpy(s->buf, buf, (size_t)len);
	}
	s->from_cache = pthread_equal(s->asker, pthread_self());
	s->state = SLOT_READY;
	last = --st->refs == 0;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	if (last)
		stream_free(st);
}

/* Claim a free slot for the chunk at body offset off, under the lock:
 * the slot to ask the engine for, or NULL when there is none to ask. */
static struct slot *claim_locked(struct stream *st, uint64_t off)
{
	struct slot *free_slot = NULL;

	if (off >= st->length)
		return NULL;
	for (int i = 0; i < 2; i++) {
		struct slot *s = &st->slot[i];

		if (!s->buf)
			continue;
		if (s->state != SLOT_EMPTY && s->off == off)
			return NULL;	/* asked already */
		if (s->state == SLOT_EMPTY && !free_slot)
			free_slot = s;
	}
	if (!free_slot)
		return NULL;
	free_slot->off = off;
	free_slot->len = st->length - off < st->cap ? (size_t)(st->length - off) : st->cap;
	free_slot->state = SLOT_ASKED;
	free_slot->err = 0;
	free_slot->asker = pthread_self();
	st->refs++;
	return free_slot;
}

static void ask(struct stream *st, struct slot *s)
{
	if (s)
		engine_read(st->f, st->first + s->off, s->len, on_chunk, s);
}

static void wait_slice_locked(struct stream *st)
{
	struct timespec until = clock_deadline(CLOCK_MONOTONIC, WAIT_SLICE_MS);

	pthread_cond_timedwait(&st->cond, &st->lock, &until);
}

ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	struct slot *s = NULL, *next = NULL;
	ssize_t n = MHD_CONTENT_READER_END_WITH_ERROR;

	if (pos >= st->length)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* libmicrohttpd reads in order: the first call, or a chunk consumed,
	 * leaves no slot holding pos, so it is asked for here. */
	pthread_mutex_lock(&st->lock);
	next = claim_locked(st, pos - pos % st->cap);
	pthread_mutex_unlock(&st->lock);
	ask(st, next);
	next = NULL;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		s = NULL;
		for (int i = 0; i < 2; i++)
			if (st->slot[i].state != SLOT_EMPTY && st->slot[i].off <= pos &&
			    pos < st->slot[i].off + st->slot[i].len)
				s = &st->slot[i];
		if (!s || atomic_load(st->stop))
			goto out;	/* (no slot: a read out of order) */
		if (s->state == SLOT_READY)
			break;
		wait_slice_locked(st);
	}
	if (s->err)
		goto out;
	n = (ssize_t)(s->off + s->len - pos < max ? s->off + s->len - pos : max);
	memcpy(buf, s->buf + (pos - s->off), (size_t)n);
	atomic_fetch_add(s->from_cache ? &st->counters->bytes_cache : &st->counters->bytes_origin,
			 (uint64_t)n);
	if (pos + (uint64_t)n == s->off + s->len)
		s->state = SLOT_EMPTY;
	/* While this is sent, the engine fills the other slot. */
	next = claim_locked(st, s->off + s->len);
out:
	if (n < 0)
		atomic_fetch_add(&st->counters->bodies_cut, 1);
	pthread_mutex_unlock(&st->lock);
	ask(st, next);
	return n;
}

void stream_release(void *cls)
{
	struct stream *st = cls;
	bool last;

	pthread_mutex_lock(&st->lock);
	last = --st->refs == 0;
	pthread_mutex_unlock(&st->lock);
	if (last)
		stream_free(st);
}
