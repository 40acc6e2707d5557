/*
 * sink.c: where the bytes of one download land. They are gathered into
 * SINK_BUFFER-sized writes to the block's cache file (or copied into a
 * memory block when uncached), hashed with XXH3 as they arrive, and each
 * waiting read whose bytes are all in is answered at once
 * (answer_arrived(): the early answer). A run's bytes cross block
 * boundaries: each block is committed with its own XXH3 and completed as
 * its last byte lands (run_block_done()).
 *
 * Locks: the sink belongs to its worker; f->lock is taken only to pick
 * the waiters to answer, which are answered after it is dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "download_i.h"

/* rc of a write to (or read back from) the cache's disk: kept, so that
 * the block is served uncached rather than failed (fetch_inflight). */
int sink_disk(struct block_sink *s, int rc)
{
	if (rc && !s->disk_err)
		s->disk_err = rc;
	return rc;
}

/* The sink's bytes leave f->arriving: its attempt starts again, or its
 * block ended (then they count as cached, or not at all). */
void sink_uncount(struct block_sink *s)
{
	atomic_fetch_sub(&s->f->arriving, s->counted);
	s->counted = 0;
}

/* Whether bytes [start, end) of the block are in the data file (or mem). */
static bool sink_has(const struct block_sink *s, uint64_t start, uint64_t end)
{
	return (start >= s->from && end <= s->arrived) || start >= s->tail_from;
}

int sink_flush(struct block_sink *s)
{
	int rc = s->buf_len ? sink_disk(s, cache_block_write(s->cf, s->idx, s->buf_at, s->buf,
							    s->buf_len)) : 0;

	s->buf_at += s->buf_len;
	s->buf_len = 0;
	return rc;
}

/* Answer the reads waiting on s's block whose bytes have all arrived,
 * from what this attempt wrote so far. */
int answer_arrived(struct block_sink *s)
{
	struct engine_file *f = s->f;
	struct inflight *inf = s->inf;
	struct waiter *ready = NULL, *w, **pp;
	uint64_t next_end = UINT64_MAX;
	int rc = s->mem ? 0 : sink_flush(s);

	if (rc)
		return rc;
	pthread_mutex_lock(&f->lock);
	/* A stop cancels the downloads nobody has had bytes of, deciding under
	 * this lock (cancel_downloads()): once it has, no reader may have any,
	 * or it would have bytes that are then thrown away, and an offline
	 * remount could not read them again. */
	if (atomic_load(s->ctl ? &s->ctl->cancel : &inf->cancel)) {
		pthread_mutex_unlock(&f->lock);
		return -ECANCELED;
	}
	for (pp = &inf->waiters; (w = *pp) != NULL;) {
		uint64_t start = w->pr ? waiter_start(w->pr, s->idx) : UINT64_MAX;
		uint64_t end = w->pr ? waiter_end(w->pr, s->idx) : UINT64_MAX;

		if (w->pr && sink_has(s, start, end)) {
			*pp = w->next;
			w->next = ready;
			ready = w;
			inf->answered = true;
			continue;
		}
		/* Only reads this range can complete are worth a look. */
		if (start >= s->from && end < next_end)
			next_end = end;
		pp = &w->next;
	}
	atomic_store(&inf->early_end, next_end);
	if (ready && s->ctl)
		s->ctl->answered = true;	/* for fetch_stop() */
	pthread_mutex_unlock(&f->lock);
	for (; ready; ready = w) {
		struct pending_read *pr = ready->pr;
		uint64_t off;
		size_t len;

		w = ready->next;
		block_overlap(pr, s->idx, &off, &len);
		if (s->mem)
			deliver_mem(pr, s->idx, s->mem);
		else if (cache_block_read_written(s->cf, s->idx, (uint32_t)(off - s->start),
						  pr->buf + (off - pr->off), len) != 0)
			read_error(pr, -EIO);
		read_finish(pr);
		free(ready);
	}
	return 0;
}

/* len bytes of the block being filled, at at. */
static int sink_put(struct block_sink *s, uint32_t at, const void *data, size_t len)
{
	int rc = 0;

	if (s->mem) {
		memcpy(s->mem + at, data, len);
	} else {
		XXH3_64bits_update(s->xxh, data, len);
		if (s->buf_len + len > SINK_BUFFER && (rc = sink_flush(s)) != 0)
			return rc;
		if (s->buf_len == 0)
			s->buf_at = at;
		if (len >= SINK_BUFFER) {
			rc = sink_disk(s, cache_block_write(s->cf, s->idx, at, data, len));
		} else {
			memcpy(s->buf + s->buf_len, data, len);
			s->buf_len += (uint32_t)len;
		}
	}
	s->arrived = at + (uint32_t)len;
	s->counted += len;
	atomic_fetch_add(&s->f->arriving, len);
	if (rc == 0 && s->arrived >= atomic_load(&s->inf->early_end))
		rc = answer_arrived(s);
	return rc;
}

/* A run's block has all its bytes: commit it with its XXH3, complete it
 * (its readers answered), and go on to the next block of the run. */
static int run_block_done(struct block_sink *s)
{
	int rc = sink_flush(s);

	/* A file that failed meanwhile (its origin gave a shared file bad
	 * bytes, or changed) keeps no more of its origin's blocks. */
	if (rc == 0 && file_failed(s->f))
		rc = -EIO;
	if (rc)
		return rc;
	rc = sink_disk(s, cache_block_commit(s->cf, s->idx, XXH3_64bits_digest(s->xxh)));
	if (rc) {
		s->cur_aborted = true;
		return rc;
	}
	s->committed = s->cur + 1;
	atomic_fetch_add(&s->f->fetched, 1);
	/* Where it came from, for status: a run that fails later keeps it. */
	atomic_fetch_add(s->via_bucket ? &s->f->bytes_bucket
			 : s->via_tier ? &s->f->bytes_tier : &s->f->bytes_origin,
			 cache_block_len(s->cf, s->idx));
	sink_uncount(s);		/* its bytes count as cached now */
	complete_block(s->f, s->cf, s->idx, 0, NULL, true, NULL);	/* frees s->inf */
	if (++s->cur < s->nrun) {
		s->inf = s->run[s->cur];
		s->idx = s->inf->idx;
		s->start = s->idx * cache_file_block_size(s->cf);
		s->from = s->arrived = 0;
		s->tail_from = cache_block_len(s->cf, s->idx);
		XXH3_64bits_reset(s->xxh);
	}
	return rc;
}

int sink_write(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct block_sink *s = ctx;
	const char *p = data;
	int rc = 0;

	if (s->nrun <= 1)
		return sink_put(s, (uint32_t)(offset - s->start), data, len);
	while (len > 0 && rc == 0) {
		uint32_t blen;
		uint64_t at;
		size_t n;

		if (s->cur >= s->nrun)
			return -EPROTO;		/* more bytes than the run has */
		blen = cache_block_len(s->cf, s->idx);
		at = offset - s->start;
		n = blen - at < len ? (size_t)(blen - at) : len;
		rc = sink_put(s, (uint32_t)at, p, n);
		if (rc == 0 && s->arrived == blen)
			rc = run_block_done(s);
		p += n;
		offset += n;
		len -= n;
	}
	return rc;
}
