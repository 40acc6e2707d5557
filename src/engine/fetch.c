/*
 * fetch.c: one download unit. A worker's run of adjacent blocks
 * (queue_pop(), up to block_size) is fetched with one request: each block
 * is reserved in the cache first, committed with its own XXH3 as its last
 * byte lands, and completed then (its readers answered, its hold
 * released: a check of the whole file that fails meanwhile can drop it).
 * Its struct run_ctl stands for the request at stop, so that a run a
 * reader has had bytes of is finished, and any other is cancelled whole.
 * What a run cannot do goes one block at a time (fetch_inflight()): a
 * block that the cache has no room for or whose disk failed is served
 * from memory, one whose readers wait in its middle is fetched from there
 * first (a split), an origin without Range is streamed (stream.c).
 *
 * Locks: f->lock only to read a flag or the waiters; none across a
 * download (engine_i.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "download_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"

/* A reader waiting this far into a block has its part fetched first,
 * from this alignment: below it, fetching from the start costs little. */
#define SPLIT_MIN (1024 * 1024)
#define SPLIT_ALIGN (64 * 1024)

/* Readers wait in the middle of inf's block: where to start fetching it,
 * so that they need not wait for the bytes before theirs (the rest comes
 * next, on the same connection). 0: from the start. */
static uint32_t first_range_start(struct engine_file *f, struct inflight *inf, uint32_t len)
{
	uint64_t lowest = UINT64_MAX;

	pthread_mutex_lock(&f->lock);
	for (struct waiter *w = inf->waiters; w; w = w->next) {
		uint64_t start = w->pr ? waiter_start(w->pr, inf->idx) : UINT64_MAX;

		if (start < lowest)
			lowest = start;
	}
	pthread_mutex_unlock(&f->lock);
	if (lowest == UINT64_MAX || lowest < SPLIT_MIN || lowest >= len)
		return 0;
	return (uint32_t)(lowest & ~(uint64_t)(SPLIT_ALIGN - 1));
}

/* XXH3 of a block fetched out of order, from what was written. */
static int hash_written(struct block_sink *s, uint32_t len, uint64_t *xxh3)
{
	XXH3_state_t *st;
	int rc = 0;

	if (s->mem) {
		*xxh3 = XXH3_64bits(s->mem, len);
		return 0;
	}
	if (!(st = XXH3_createState()))
		return -ENOMEM;
	XXH3_64bits_reset(st);
	for (uint32_t at = 0, n; at < len && rc == 0; at += n) {
		n = len - at < SINK_BUFFER ? len - at : SINK_BUFFER;
		rc = sink_disk(s, cache_block_read_written(s->cf, s->idx, at, s->buf, n));
		XXH3_64bits_update(st, s->buf, n);
	}
	*xxh3 = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return rc;
}

/* A download of len bytes at first ended with rc: log it in the index,
 * fail f if it changed at the origin, and pass reason on. Returns rc. */
static int download_done(struct engine_file *f, struct cache_file *cf, uint64_t first,
			 uint64_t len, int64_t started, int rc, const char *reason,
			 char *out_reason, size_t reason_len)
{
	cache_file_log_fetch(cf, first, len, clock_now_ms() - started, rc, rc ? reason : NULL);
	if (rc == -ESTALE)
		engine_file_fail(f, -EIO, "the file changed at the origin since it was resolved; "
				 "remount to pick up the new version");
	if (rc)
		snprintf(out_reason, reason_len, "%s", reason);
	return rc;
}

/* Download block idx of f into the cache (or into mem when mem is set):
 * 0 or -errno; *disk_err: the cache's disk failed (the bytes came). */
static int download_block(struct engine_file *f, struct http_client *http, struct cache_file *cf,
			  struct inflight *inf, char *mem, uint64_t *xxh3, char *out_reason,
			  size_t reason_len, int *disk_err)
{
	uint64_t idx = inf->idx;
	uint32_t len = cache_block_len(cf, idx), split = first_range_start(f, inf, len);
	int64_t started = clock_now_ms();
	char reason[256] = "";
	struct block_sink sink = { .f = f, .inf = inf, .cf = cf, .idx = idx, .mem = mem,
				   .start = idx * cache_file_block_size(cf), .from = split,
				   .tail_from = len };
	int rc = 0;

	if (!mem && !(sink.buf = malloc(SINK_BUFFER)))
		return -ENOMEM;
	if (split) {
		rc = download_range(f, http, &sink, len - split, xxh3, reason, sizeof(reason));
		if (rc == 0) {
			sink.tail_from = split;
			sink.from = sink.arrived = 0;
			rc = answer_arrived(&sink);
		}
	}
	if (rc == 0)
		rc = download_range(f, http, &sink, split ? split : len, xxh3, reason,
				    sizeof(reason));
	if (rc == 0 && split)
		rc = hash_written(&sink, len, xxh3);
	sink_uncount(&sink);
	free(sink.buf);
	*disk_err = sink.disk_err;
	return download_done(f, cf, sink.start, len, started, rc, reason, out_reason, reason_len);
}

/* The cache's disk filled or failed while block idx was written or
 * recorded (another program, our own index, a bad disk): said each time,
 * the block is served from memory. */
static void log_disk_failed(struct engine_file *f, uint64_t idx, int err)
{
	log_warn("event=%s path=%s block=%llu error=\"%s\" action=\"served uncached\"",
		 err == -ENOSPC ? "disk_full" : "cache_write_failed", f->src.path,
		 (unsigned long long)idx, strerror(-err));
}

/* f's origin ignores Range (known once f is resolved). */
static bool streams(struct engine_file *f)
{
	bool no_range;

	pthread_mutex_lock(&f->lock);
	no_range = f->src.no_range;
	pthread_mutex_unlock(&f->lock);
	return no_range;
}

/* Fetch inf's block, then wake its waiters. */
static void fetch_inflight(struct engine_file *f, struct inflight *inf, struct http_client *http)
{
	struct engine *e = f->eng;
	struct cache_file *cf = NULL;
	char *mem = NULL;
	uint64_t xxh3 = 0;
	bool held = false;
	char reason[256] = "";
	int rc;

	if (streams(f)) {
		fetch_streamed(f, http);
		return;
	}
	if (file_failed(f)) {
		/* It failed (corrupt, changed at its origin) while this block
		 * waited in the queue: nothing more of it is downloaded. */
		rc = -EIO;
		snprintf(reason, sizeof(reason), "the file failed while this block waited");
		goto done;
	}
	rc = file_cache_retried(f, http, &cf);
	if (rc)
		resolve_reason(rc, reason, sizeof(reason));
	if (rc == 0 && streams(f)) {
		fetch_streamed(f, http);	/* learnt at this late resolution */
		return;
	}
	if (rc == 0 && cache_block_present(cf, inf->idx))
		goto done;
	if (rc == 0) {
		rc = cache_block_reserve(cf, inf->idx);
		if (rc == -EBUSY) {
			/* Another entry with the same bytes (one cache file) writes
			 * this block now: these readers are answered from memory. */
			mem = mem_block_get(e, cache_block_len(cf, inf->idx));
			rc = mem ? 0 : -ENOMEM;
		}
		if (rc == -ENOSPC && !is_demand(e, inf) &&
		    drop_unwanted(f, inf, -ENOSPC, "no room in the cache: cache_max_size or "
				  "cache_min_free is reached and nothing more can be evicted"))
			return;		/* readahead or prefetch for a full cache: not worth fetching */
		if (rc == -ENOSPC) {
			/* No room can be made: serve this read from the network
			 * without caching, within a small memory budget. */
			mem = mem_block_get(e, cache_block_len(cf, inf->idx));
			rc = mem ? 0 : -ENOMEM;
			if (!atomic_exchange(&f->uncached_logged, true))
				log_warn("event=serving_uncached path=%s reason=\"no room in the cache: "
					 "cache_max_size or cache_min_free is reached and nothing more "
					 "can be evicted\"", f->src.path);
			log_debug("event=uncached_read path=%s block=%llu", f->src.path,
				  (unsigned long long)inf->idx);
		}
	}
	if (rc == 0) {
		int disk_err = 0;

		rc = download_block(f, http, cf, inf, mem, &xxh3, reason, sizeof(reason), &disk_err);
		/* A file that failed meanwhile (its origin gave a shared file bad
		 * bytes, or changed) keeps no more of its origin's blocks. */
		if (!mem && rc == 0 && file_failed(f))
			rc = -EIO;
		if (!mem && rc == 0) {
			rc = cache_block_commit(cf, inf->idx, xxh3);
			held = rc == 0;
			disk_err = rc;
			if (held)
				atomic_fetch_add(&f->fetched, 1);
		} else if (!mem) {
			cache_block_abort(cf, inf->idx);
		}
		if (rc && !mem && (rc == -ENOSPC || disk_err)) {
			/* The readers still get it, uncached. */
			log_disk_failed(f, inf->idx, disk_err ? disk_err : rc);
			mem = mem_block_get(e, cache_block_len(cf, inf->idx));
			rc = mem ? download_block(f, http, cf, inf, mem, &xxh3, reason, sizeof(reason),
						  &disk_err) : -ENOMEM;
		}
	}
done:
	if (mem && rc == 0) {
		mem_block_put(e, mem, f, inf->idx);
		complete_block(f, cf, inf->idx, rc, mem, held, reason);
		mem_block_release(e, mem);
	} else {
		if (mem)
			mem_block_put(e, mem, NULL, 0);
		complete_block(f, cf, inf->idx, rc, NULL, held, reason);
	}
}

/* Download run[0..n) with one request (download_block()'s counterpart):
 * 0 or -errno; *committed blocks from run[0] are present and held. */
static int download_run(struct engine_file *f, struct http_client *http, struct cache_file *cf,
			struct inflight **run, struct run_ctl *ctl, int n, int *committed,
			bool *cur_aborted, int *disk_err, char *out_reason, size_t reason_len)
{
	uint32_t bs = cache_file_block_size(cf);
	uint64_t last = run[n - 1]->idx, xxh3;
	int64_t started = clock_now_ms();
	char reason[256] = "";
	struct block_sink sink = { .f = f, .inf = run[0], .cf = cf, .idx = run[0]->idx,
				   .start = run[0]->idx * bs, .run = run, .ctl = ctl, .nrun = n,
				   .run_end = last * bs + cache_block_len(cf, last),
				   .tail_from = cache_block_len(cf, run[0]->idx) };
	uint64_t first = sink.start;
	int rc;

	if (!(sink.buf = malloc(SINK_BUFFER)))
		return -ENOMEM;
	rc = download_range(f, http, &sink, 0, &xxh3, reason, sizeof(reason));
	sink_uncount(&sink);
	free(sink.buf);
	*committed = sink.committed;
	*cur_aborted = sink.cur_aborted;
	*disk_err = sink.disk_err;
	return download_done(f, cf, first, sink.run_end - first, started, rc, reason, out_reason,
			     reason_len);
}

/* Fetch a run of adjacent blocks (queue_pop()) with one request, each
 * block reserved first and committed with its own XXH3 as it lands, so
 * its readers are answered then and a stop or crash loses at most the
 * block being written. What a run cannot do goes the one-block way
 * (fetch_inflight(), which knows a full cache and a stream): a run of
 * one, an origin without Range, and the blocks from the first that the
 * cache has no room for, or whose commit found the disk full. */
void fetch_run(struct engine_file *f, struct inflight **run, int n, struct run_ctl *ctl,
		      struct http_client *http)
{
	struct cache_file *cf = NULL;
	bool cur_aborted = false, disk_failed;
	int rc = 0, reserved = 0, committed = 0, disk_err = 0;
	char reason[256] = "";

	/* Resolved first: a late resolution may find the origin ignores Range. */
	if (n > 1 && !file_failed(f))	/* a failed file's blocks end one by one, unfetched */
		rc = file_cache_retried(f, http, &cf);
	if (streams(f)) {
		/* The file's one stream completes every block asked for, run[]
		 * included, as it passes them: another worker's stream may have
		 * freed them already, so they are reached through f->inflight[]
		 * only: those still there stand alone again. */
		pthread_mutex_lock(&f->lock);
		for (uint64_t i = 0; n > 1 && i < f->nblocks; i++)
			if (f->inflight[i] && atomic_load(&f->inflight[i]->run) == ctl)
				atomic_store(&f->inflight[i]->run, NULL);
		pthread_mutex_unlock(&f->lock);
		fetch_streamed(f, http);
		return;
	}
	for (; cf && rc == 0 && reserved < n; reserved++)
		if (cache_block_present(cf, run[reserved]->idx) ||
		    cache_block_reserve(cf, run[reserved]->idx) != 0)
			break;
	if (reserved > 1) {
		rc = download_run(f, http, cf, run, ctl, reserved, &committed, &cur_aborted,
				  &disk_err, reason, sizeof(reason));
	} else {
		if (reserved == 1)
			cache_block_abort(cf, run[0]->idx);
		reserved = 0;
	}
	for (int i = committed + cur_aborted; i < reserved; i++)
		cache_block_abort(cf, run[i]->idx);
	/* The cache's disk filled or failed while the run was written or
	 * recorded: its other blocks go the one-block way, which serves them
	 * from memory. */
	disk_failed = rc && (rc == -ENOSPC || disk_err);
	if (disk_failed)
		log_disk_failed(f, run[committed]->idx, disk_err ? disk_err : rc);
	/* The request is over: the blocks not completed stand alone again
	 * (run[0..committed) are, and are freed). */
	pthread_mutex_lock(&f->lock);
	for (int i = committed; i < n; i++)
		atomic_store(&run[i]->run, NULL);
	pthread_mutex_unlock(&f->lock);
	for (int i = committed; i < n; i++) {
		if (i < reserved && !disk_failed)
			complete_block(f, cf, run[i]->idx, rc ? rc : -EIO, NULL, false, reason);
		else
			fetch_inflight(f, run[i], http);
	}
}
