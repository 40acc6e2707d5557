/*
 * inflight.c: the blocks being fetched, who waits for them, and how they
 * end. A block missing from the cache gets one struct inflight in its
 * file's inflight[] (single flight: eight readers, one download); reads
 * and prefetches hang waiters on it, and the thread that fetched it
 * completes it (complete_block()): answers each waiting read from the
 * cache or from memory, or fails it with the fetch's error, and tells
 * each waiting prefetch. Uncached blocks (the cache has no room, or
 * another entry writes the same block) are fetched into at most
 * ENGINE_MEM_BLOCKS buffers; the last few are kept, so that the kernel's
 * next reads of the block do not fetch it again. Reads of a strict file
 * wait for the whole file instead: parked on it until the verifier's
 * verdict releases them (strict_release()); so do reads of a file with
 * no layout yet, until its late resolution (read.c).
 *
 * Locks: f->lock guards f->inflight[], each inflight's waiters and the
 * parked reads. An inflight lives while it is in inflight[], which only
 * its fetcher (or the stop's drain) clears, under f->lock: code that
 * found it there may use it until it drops that lock. mem_lock guards
 * kept[] and is a leaf; a prefetch_req's lock is taken alone
 * (prefetch_done()). Waiters are answered with no lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"

/* After retries for a block are exhausted, the kernel asks for it again
 * at once (page by page); those reads fail at once for this long. */
#define FAILED_BLOCK_MS 1000

bool file_failed(struct engine_file *f)
{
	bool failed;

	pthread_mutex_lock(&f->lock);
	failed = f->err != 0;
	pthread_mutex_unlock(&f->lock);
	return failed;
}

void engine_file_fail(struct engine_file *f, int err, const char *reason)
{
	char shown[512];
	bool first;

	/* The reason is shown in xattrs and status: no secret, no signed query. */
	log_redact(reason, shown, sizeof(shown));
	pthread_mutex_lock(&f->lock);
	first = f->err == 0;
	if (first) {
		f->err = err;
		f->error = strdup(shown);
	}
	pthread_mutex_unlock(&f->lock);
	if (first)
		log_error("event=file_failed path=%s error=\"%s\"", f->src.path, reason);
}

/* ---- pending reads ---------------------------------------------------- */

void read_finish(struct pending_read *pr)
{
	int err = atomic_load(&pr->err);

	if (atomic_fetch_sub(&pr->remaining, 1) != 1)
		return;
	pr->cb(pr->arg, err ? NULL : pr->buf, err ? err : (ssize_t)pr->len);
	free(pr->buf);
	free(pr);
}

void read_error(struct pending_read *pr, int err)
{
	int none = 0;

	atomic_compare_exchange_strong(&pr->err, &none, err);
}

/* The part of pr that lies in block idx. */
void block_overlap(const struct pending_read *pr, uint64_t idx, uint64_t *off, size_t *len)
{
	uint32_t bs = pr->block_size;
	uint64_t start = idx * bs, end = start + bs;
	uint64_t rend = pr->off + pr->len;

	*off = pr->off > start ? pr->off : start;
	*len = (size_t)((rend < end ? rend : end) - *off);
}

/* Where pr's part of block idx starts, counted from the block's start. */
uint64_t waiter_start(const struct pending_read *pr, uint64_t idx)
{
	uint64_t off;
	size_t len;

	block_overlap(pr, idx, &off, &len);
	return off - idx * pr->block_size;
}

/* Where pr's part of block idx ends, counted from the block's start. */
uint64_t waiter_end(const struct pending_read *pr, uint64_t idx)
{
	uint64_t off;
	size_t len;

	block_overlap(pr, idx, &off, &len);
	return off + len - idx * pr->block_size;
}

/* Fill pr's part of block idx from a memory copy of the block. */
void deliver_mem(struct pending_read *pr, uint64_t idx, const char *block)
{
	uint32_t bs = pr->block_size;
	uint64_t off;
	size_t len;

	block_overlap(pr, idx, &off, &len);
	memcpy(pr->buf + (off - pr->off), block + (off - idx * bs), len);
}

/* Copy pr's part of block idx from the cache: 0 or -ENODATA when the
 * block is not (or no longer) there. */
int deliver_cached(struct pending_read *pr, struct cache_file *cf, uint64_t idx)
{
	uint64_t off;
	size_t len;
	ssize_t n;

	block_overlap(pr, idx, &off, &len);
	n = cache_read(cf, pr->buf + (off - pr->off), off, len);
	if (n == -ENODATA)
		return -ENODATA;
	if (n < 0) {
		read_error(pr, (int)n);
		return 0;
	}
	return 0;
}

/* A prefetch learns how its block ended. The last access to pf: once
 * its lock is dropped the prefetch may return. */
void prefetch_done(struct prefetch_req *pf, int rc, const char *reason)
{
	pthread_mutex_lock(&pf->lock);
	if (rc && !pf->err) {
		pf->err = rc;
		snprintf(pf->reason, sizeof(pf->reason), "%s",
			 reason && reason[0] ? reason : strerror(-rc));
	}
	pf->outstanding--;
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
}

/* ---- the inflight table ---------------------------------------------- */

/* Register a fetch of block idx in f->inflight: the new inflight, or NULL
 * when the block is cached or already coming (or memory ran out). The
 * caller holds f->lock and queues what it gets. */
struct inflight *inflight_add_locked(struct engine_file *f, uint64_t idx,
					    enum fetch_prio prio)
{
	struct inflight *inf;

	if (f->inflight[idx] || (f->cf && cache_block_present(f->cf, idx)))
		return NULL;
	inf = calloc(1, sizeof(*inf));
	if (!inf)
		return NULL;
	inf->file = f;
	inf->idx = idx;
	inf->prio = (uint8_t)prio;
	atomic_init(&inf->early_end, UINT64_MAX);
	f->inflight[idx] = inf;
	return inf;
}

/* ---- uncached blocks kept in memory ------------------------------------ */

/* Free the least recently used kept block nobody answers from: false
 * when there is none. */
static bool kept_drop_oldest_locked(struct engine *e)
{
	int oldest = -1;

	for (int i = 0; i < e->nkept; i++)
		if (!e->kept[i].refs && (oldest < 0 || e->kept[i].used < e->kept[oldest].used))
			oldest = i;
	if (oldest < 0)
		return false;
	free(e->kept[oldest].buf);
	e->kept[oldest] = e->kept[--e->nkept];
	return true;
}

/* A fetched uncached block: kept (rc 0), before its readers are answered
 * and its inflight goes, so that no read in between fetches it again;
 * mem_block_release() after answering. Freed otherwise. */
void mem_block_put(struct engine *e, char *mem, struct engine_file *f, uint64_t idx)
{
	pthread_mutex_lock(&e->mem_lock);
	e->mem_blocks--;
	if (mem && f) {
		e->kept[e->nkept++] = (struct kept_block){ .file = f, .idx = idx, .buf = mem,
							   .used = ++e->kept_clock, .refs = 1 };
		mem = NULL;
	}
	pthread_cond_signal(&e->mem_cond);
	pthread_mutex_unlock(&e->mem_lock);
	free(mem);
}

/* A buffer for an uncached block: room is made by dropping kept blocks,
 * else it waits for a fetch to end. */
char *mem_block_get(struct engine *e, uint32_t len)
{
	char *mem;

	pthread_mutex_lock(&e->mem_lock);
	while (e->mem_blocks + e->nkept >= ENGINE_MEM_BLOCKS && !kept_drop_oldest_locked(e))
		pthread_cond_wait(&e->mem_cond, &e->mem_lock);
	e->mem_blocks++;
	pthread_mutex_unlock(&e->mem_lock);
	mem = malloc(len);
	if (!mem)
		mem_block_put(e, NULL, NULL, 0);
	return mem;
}

void mem_block_release(struct engine *e, const char *mem)
{
	pthread_mutex_lock(&e->mem_lock);
	for (int i = 0; i < e->nkept; i++)
		if (e->kept[i].buf == mem)
			e->kept[i].refs--;
	pthread_cond_signal(&e->mem_cond);
	pthread_mutex_unlock(&e->mem_lock);
}

/* Copy pr's part of block idx from a kept copy: true when there was one. */
bool deliver_kept(struct pending_read *pr, struct engine_file *f, uint64_t idx)
{
	struct engine *e = f->eng;
	bool found = false;

	pthread_mutex_lock(&e->mem_lock);
	for (int i = 0; i < e->nkept && !found; i++) {
		if (e->kept[i].file != f || e->kept[i].idx != idx)
			continue;
		deliver_mem(pr, idx, e->kept[i].buf);
		e->kept[i].used = ++e->kept_clock;
		found = true;
	}
	pthread_mutex_unlock(&e->mem_lock);
	return found;
}

void kept_free(struct engine *e)
{
	pthread_mutex_lock(&e->mem_lock);
	while (kept_drop_oldest_locked(e))
		;
	pthread_mutex_unlock(&e->mem_lock);
}

/* Reads of f wait for it to be verified (verify = strict). */
bool strict_parked(struct engine_file *f)
{
	bool parked;

	if (f->src.entry->verify != CONFIG_VERIFY_STRICT)
		return false;
	pthread_mutex_lock(&f->lock);
	parked = f->parked != NULL;
	pthread_mutex_unlock(&f->lock);
	return parked;
}

/* Forget inf if no reader waits for it (checked under the file lock, so
 * a reader arriving later starts a new fetch): true when it was freed.
 * Prefetches waiting for it learn err and reason. */
bool drop_unwanted(struct engine_file *f, struct inflight *inf, int err, const char *reason)
{
	struct waiter *w, *next;
	bool unwanted = true;

	pthread_mutex_lock(&f->lock);
	for (w = inf->waiters; w && unwanted; w = w->next)
		unwanted = w->pr == NULL;
	if (unwanted)
		f->inflight[inf->idx] = NULL;
	pthread_mutex_unlock(&f->lock);
	if (!unwanted)
		return false;
	for (w = inf->waiters; w; w = next) {
		next = w->next;
		prefetch_done(w->pf, err, reason);
		free(w);
	}
	free(inf);
	return true;
}

/* A loader reads f (read.c: fetch_whole()): hand block idx, stored, to
 * the loader sink. */
static void to_loader(struct engine_file *f, struct cache_file *cf, uint64_t idx)
{
	struct engine *e = f->eng;
	engine_block_sink sink;
	void *arg;
	bool loader;

	pthread_mutex_lock(&f->lock);
	loader = f->whole_queued;
	pthread_mutex_unlock(&f->lock);
	if (!loader)
		return;
	pthread_mutex_lock(&e->qlock);
	sink = e->loader_sink;
	arg = e->loader_arg;
	pthread_mutex_unlock(&e->qlock);
	if (sink)
		sink(arg, f, idx * cache_file_block_size(cf), cache_block_len(cf, idx));
}

/* Block idx of f is done: rc, and its bytes are in the cache (held by
 * the caller when held) or in mem. Take its inflight out and answer
 * every reader waiting for it. */
void complete_block(struct engine_file *f, struct cache_file *cf, uint64_t idx, int rc,
			   const char *mem, bool held, const char *reason)
{
	struct inflight *inf;
	struct waiter *w, *next;
	bool waited = false;

	pthread_mutex_lock(&f->lock);
	inf = f->inflight[idx];
	f->inflight[idx] = NULL;
	w = inf ? inf->waiters : NULL;
	for (struct waiter *x = w; x && !waited; x = x->next)
		waited = x->pr != NULL;
	if (rc && rc != -ECANCELED && rc != -ENOSPC) {
		f->failed_idx = idx;
		f->failed_until_ms = clock_now_ms() + FAILED_BLOCK_MS;
		f->failed_err = rc == -EACCES ? -EACCES : -EIO;
	}
	pthread_mutex_unlock(&f->lock);
	if (inf)
		dequeue(f->eng, inf);
	/* One line per failure a reader sees; a readahead block nobody waited
	 * for is only worth a note. */
	if (rc && rc != -ECANCELED)
		log_msg(w ? LOG_LVL_ERROR : LOG_LVL_INFO,
			"event=%s path=%s block=%llu error=\"%s\"", w ? "fetch_failed" : "readahead_failed",
			f->src.path, (unsigned long long)idx, reason && reason[0] ? reason : strerror(-rc));
	for (; w; w = next) {
		next = w->next;
		if (w->pf) {
			prefetch_done(w->pf, rc, reason);
			free(w);
			continue;
		}
		if (rc)
			read_error(w->pr, rc == -EACCES ? -EACCES : -EIO);
		else if (mem)
			deliver_mem(w->pr, idx, mem);
		else if (deliver_cached(w->pr, cf, idx) == -ENODATA)
			read_error(w->pr, -EIO);	/* not reachable while held */
		read_finish(w->pr);
		free(w);
	}
	/* A strict file can only be verified from the cache. */
	if (rc || (mem && !held)) {
		if (strict_parked(f)) {
			if (!rc)
				log_error("event=strict_unservable path=%s error=\"verify = strict needs "
					  "the whole file in the cache, and the cache has no room\"",
					  f->src.path);
			strict_release(f, rc == -EACCES ? -EACCES : -EIO);
		}
	}
	/* A block a reader waited for is in the kernel's page cache already
	 * (the part read, and the loader reads on from there). */
	if (held && !rc && !waited)
		to_loader(f, cf, idx);
	if (held) {
		cache_block_release(cf, idx);
		if (!atomic_exchange(&f->partial_logged, true))
			log_info("event=file_state path=%s state=partial", f->src.path);
		/* Hashed as it lands, in order: the block that extends the
		 * file's hashed start is hashed here; the last is verified. */
		if (cache_file_hash_behind(cf))
			verify_advance(f, cf);
		if (cache_file_complete(cf))
			verify_enqueue(f);
		else
			strict_refetch(f);
	}
	free(inf);
}

/* ---- parked reads: until the file is verified (strict), or laid out ---- */

struct parked_read *parked_take(struct engine_file *f)
{
	struct parked_read *p;

	pthread_mutex_lock(&f->lock);
	p = f->parked;
	f->parked = NULL;
	f->strict_passes = 0;		/* a new batch gets its own refetches */
	pthread_mutex_unlock(&f->lock);
	return p;
}

void strict_release(struct engine_file *f, int err)
{
	if (f->src.entry->verify != CONFIG_VERIFY_STRICT)
		return;
	if (err == 0) {
		if (strict_parked(f))
			queue_resume(f->eng, f);
		return;
	}
	parked_fail(f, err);
}

void parked_fail(struct engine_file *f, int err)
{
	struct parked_read *p, *next;

	for (p = parked_take(f); p; p = next) {
		next = p->next;
		p->cb(p->arg, NULL, err);
		free(p);
	}
}
