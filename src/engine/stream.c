/*
 * stream.c: origins that ignore Range. One worker streams the whole file
 * in order; each block is cached when there is room and its readers are
 * answered from memory as the stream passes it. Blocks wanted after the
 * stream passed them (evicted meanwhile) get another pass.
 *
 * Locks: f->lock guards f->streaming and is taken to look at inflight[];
 * none is held across the stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "download_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"

struct stream_sink {
	struct engine_file *f;
	struct cache_file *cf;
	uint64_t idx;			/* the block being filled */
	uint32_t fill;
	char *block;			/* its bytes so far */
};

/* A whole block arrived: cache it if it is missing and there is room,
 * and answer its readers from memory either way. */
static void stream_block_done(struct stream_sink *s)
{
	uint32_t len = cache_block_len(s->cf, s->idx);
	bool held = false;

	if (!cache_block_present(s->cf, s->idx) && cache_block_reserve(s->cf, s->idx) == 0) {
		if (cache_block_write(s->cf, s->idx, 0, s->block, len) != 0)
			cache_block_abort(s->cf, s->idx);
		else	/* a commit that fails has aborted the block itself */
			held = cache_block_commit(s->cf, s->idx, XXH3_64bits(s->block, len)) == 0;
	}
	complete_block(s->f, s->cf, s->idx, 0, s->block, held, NULL);
	s->idx++;
	s->fill = 0;
}

static int stream_write(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct stream_sink *s = ctx;
	const char *p = data;

	while (len > 0) {
		uint32_t want = cache_block_len(s->cf, s->idx) - s->fill;
		uint32_t n = len < want ? (uint32_t)len : want;

		if (want == 0)
			return -EPROTO;		/* more bytes than the file has */
		memcpy(s->block + s->fill, p, n);
		s->fill += n;
		p += n;
		len -= n;
		if (s->fill == cache_block_len(s->cf, s->idx))
			stream_block_done(s);
	}
	return 0;
}

/* Stream the whole file once, retrying a broken stream from the start
 * until the deadline: 0 or -errno (blocks not reached are the caller's). */
static int stream_pass(struct engine_file *f, struct http_client *http, struct cache_file *cf,
		       char *reason, size_t reason_len)
{
	struct engine *e = f->eng;
	int64_t deadline = clock_now_ms() + (int64_t)e->cfg->retry_timeout_sec * 1000;
	struct stream_sink s = { .f = f, .cf = cf };
	int rc, attempt = 0;

	s.block = malloc(cache_file_block_size(cf));
	if (!s.block)
		return -ENOMEM;
	for (;;) {
		struct http_meta meta;
		struct attempt a;
		struct http_request rq = { .follow_redirects = true, .cancel = &e->stop };

		rc = attempt_get(f, 0, &a);
		if (rc)
			break;
		rq.url = a.url;
		rq.origin_url = a.auth.origin_url;
		rq.headers = a.auth.headers;
		rq.n_headers = a.auth.n_headers;
		rq.authorization = a.auth.authorization;
		rq.aws_sigv4 = a.auth.aws_sigv4;
		rq.aws_credentials = a.auth.aws_credentials;
		rq.aws_session_token = a.auth.aws_session_token;
		rq.file_body = true;
		s.idx = 0;
		s.fill = 0;
		rc = http_get(http, &rq, stream_write, &s, &meta);
		if (rc == 0 && s.idx != f->nblocks)
			rc = -EAGAIN;		/* fewer bytes than the file has */
		snprintf(reason, reason_len, "%s", meta.error_text ? meta.error_text : strerror(-rc));
		attempt_clear(&a);
		if (rc == -EAGAIN && clock_now_ms() < deadline &&
		    engine_sleep_ms(e, backoff_ms(attempt++, meta.retry_after_sec))) {
			http_meta_clear(&meta);
			continue;
		}
		http_meta_clear(&meta);
		break;
	}
	free(s.block);
	return rc;
}

/* Passes over a file without Range for the blocks its readers want. */
#define STREAM_PASSES 3

/* f ignores Range. One worker streams it; blocks come in order
 * and readers wait for theirs. Blocks wanted after the stream passed
 * them (evicted meanwhile) get another pass. */
void fetch_streamed(struct engine_file *f, struct http_client *http)
{
	struct cache_file *cf = NULL;
	char reason[256] = "";
	bool wanted = false;
	int rc;

	pthread_mutex_lock(&f->lock);
	/* The block this worker took may have been completed by a stream that
	 * has ended since: then nothing is wanted, and no stream is due. */
	for (uint64_t i = 0; i < f->nblocks && !wanted; i++)
		wanted = f->inflight[i] != NULL;
	if (f->streaming || !wanted) {
		pthread_mutex_unlock(&f->lock);
		return;		/* the streamer completes the block when it gets there */
	}
	f->streaming = true;
	pthread_mutex_unlock(&f->lock);
	log_info("event=stream_start path=%s reason=\"the origin ignores Range\"", f->src.path);
	rc = file_cache(f, http, &cf);
	for (int pass = 0;; pass++) {
		bool pending = false;

		if (rc == 0 && pass < STREAM_PASSES) {
			rc = stream_pass(f, http, cf, reason, sizeof(reason));
		} else if (rc == 0) {
			rc = -EIO;
			snprintf(reason, sizeof(reason), "blocks were evicted as fast as the stream "
				 "passed them (the origin ignores Range)");
		}
		for (uint64_t i = 0; rc && i < f->nblocks; i++) {
			pthread_mutex_lock(&f->lock);
			wanted = f->inflight[i] != NULL;
			pthread_mutex_unlock(&f->lock);
			if (wanted)
				complete_block(f, cf, i, rc, NULL, false, reason);
		}
		/* Workers leave the blocks they take to us while we stream: we
		 * stop only when none is left, deciding under the lock they
		 * decide under. */
		pthread_mutex_lock(&f->lock);
		for (uint64_t i = 0; i < f->nblocks && !pending; i++)
			pending = f->inflight[i] != NULL;
		if (!pending)
			f->streaming = false;
		pthread_mutex_unlock(&f->lock);
		if (!pending)
			return;
	}
}
