/*
 * prefetch.c: fetching a whole file ahead of its readers. A prefetch
 * asks for a window of the file's missing blocks at the lowest priority
 * (queue.c gives them out only when no reader waits and no readahead is
 * due), tops the window up as blocks arrive, and then waits for the
 * verifier's verdict. Everything goes through the same single-flight
 * inflights as reads, so a block a reader and a prefetch both want is
 * downloaded once; what arrives stays cached, so a prefetch that is
 * stopped resumes where it was at the next call.
 *
 * A window, not the whole file at once: files prefetched side by side
 * share the workers instead of queueing one after the other, and a
 * cancelled prefetch has only a few queued blocks to take back.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"

#define DEFAULT_WINDOW 4
#define TICK_MS 200		/* how often a waiting prefetch looks at cancel */
/* A whole pass over the file that still leaves blocks missing means they
 * are evicted (or fail their check) as fast as they arrive. */
#define MAX_PASSES 3

static bool cancelled(struct engine *e, const struct engine_prefetch_opts *o)
{
	return atomic_load(&e->stop) || (o->cancel && atomic_load(o->cancel));
}

/* Wait on pf->cond for up to ms; the caller holds pf->lock. */
static void wait_tick(struct prefetch_req *pf, int ms)
{
	struct timespec until = clock_deadline(CLOCK_MONOTONIC, ms);

	pthread_cond_timedwait(&pf->cond, &pf->lock, &until);
}

void prefetch_req_init(struct prefetch_req *pf)
{
	pthread_condattr_t ca;

	memset(pf, 0, sizeof(*pf));
	pthread_mutex_init(&pf->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pf->cond, &ca);
	pthread_condattr_destroy(&ca);
}

/* Take pf's remaining waits back and wait for the blocks that are being
 * completed right now to let go of pf. */
void prefetch_req_destroy(struct prefetch_req *pf)
{
	pthread_mutex_lock(&pf->lock);
	while (pf->outstanding > 0)
		wait_tick(pf, TICK_MS);
	pthread_mutex_unlock(&pf->lock);
	pthread_cond_destroy(&pf->cond);
	pthread_mutex_destroy(&pf->lock);
}

static void req_finish(struct engine_file *f, struct prefetch_req *pf)
{
	fetch_prefetch_cancel(f, pf);
	prefetch_req_destroy(pf);
}

/* f's final error as rc and reason, if it has one. */
static int file_error(struct engine_file *f, char *reason, size_t len)
{
	int err;

	pthread_mutex_lock(&f->lock);
	err = f->err;
	if (err)
		snprintf(reason, len, "%s", f->error ? f->error : strerror(-err));
	pthread_mutex_unlock(&f->lock);
	return err;
}

uint64_t engine_cache_capacity(struct engine *e)
{
	struct cache_usage u;
	uint64_t room;

	if (cache_usage_get(e->cache, &u) != 0)
		return UINT64_MAX;	/* unknown: let the fetches find out */
	room = u.used + (u.fs_free > u.min_free ? u.fs_free - u.min_free : 0);
	return room < u.limit ? room : u.limit;
}

/* -ENOSPC with reason filled when f could never be cached whole: fetching
 * any of it would only evict other files' blocks and then fail. */
static int too_large(struct engine_file *f, char *reason, size_t len)
{
	uint64_t room = engine_cache_capacity(f->eng), size = (uint64_t)f->src.size;
	char a[32], b[32];

	if (size <= room)
		return 0;
	snprintf(reason, len, "%s is larger than the cache can hold (%s: cache_max_size, "
		 "cache_min_free and the free disk); raise the limit, free the disk, or use "
		 "prefetch --into DIR", humanize_bytes(size, a, sizeof(a)),
		 humanize_bytes(room, b, sizeof(b)));
	return -ENOSPC;
}

/* All blocks are there: 1 when f is hashed and good, 0 while the verifier
 * is still at it (queued again if it has not started), or -EIO. */
static int hashed(struct engine_file *f, struct cache_file *cf, char *reason, size_t len)
{
	enum store_file_state st = cache_file_state(cf, NULL, NULL);

	if (st == STORE_VERIFIED || st == STORE_COMPLETE)
		return 1;
	if (st == STORE_CORRUPT || file_error(f, reason, len)) {
		if (!reason[0])
			snprintf(reason, len, "checksum mismatch");
		return -EIO;
	}
	verify_enqueue(f);
	return 0;
}

/* A file listed without a cache file has no layout to ask blocks of yet
 * (engine_i.h): it is resolved first, here (a prefetch waits anyway). 0,
 * or -errno with reason filled. */
static int laid_out(struct engine_file *f, char *reason, size_t len)
{
	struct http_client *http = NULL;
	struct cache_file *cf;
	int rc;

	if (engine_file_cache(f))
		return 0;
	rc = engine_client_new(f->eng->opts, &http);
	if (rc == 0)
		rc = file_cache_retried(f, http, &cf);
	http_client_free(http);
	if (rc && !file_error(f, reason, len))
		resolve_reason(rc, reason, len);
	return rc;
}

/* cache_file_check() of f, saying so when blocks were dropped. */
static int recheck(struct engine_file *f, struct cache_file *cf)
{
	int rc = cache_file_check(cf);

	if (rc)
		log_warn("event=prefetch_recheck path=%s action=\"blocks that failed their check "
			 "are fetched again\"", f->src.path);
	return rc;
}

int engine_prefetch(struct engine_file *f, const struct engine_prefetch_opts *o,
		    char *reason, size_t reason_len)
{
	struct engine *e = f->eng;
	struct prefetch_req pf;
	uint64_t next = 0;
	int window = o->window > 0 ? o->window : DEFAULT_WINDOW, passes = 0, rc;
	bool pinned = false, checked = false;

	reason[0] = '\0';
	rc = file_error(f, reason, reason_len);
	if (rc)
		return rc;
	rc = too_large(f, reason, reason_len);
	if (rc == 0)
		rc = laid_out(f, reason, reason_len);
	if (rc) {
		log_warn("event=prefetch_failed path=%s error=\"%s\"", f->src.path, reason);
		return rc;
	}
	prefetch_req_init(&pf);
	for (;;) {
		struct cache_file *cf;
		bool no_range;
		int limit;

		if (cancelled(e, o)) {
			rc = -ECANCELED;
			break;
		}
		rc = file_error(f, reason, reason_len);
		if (rc)
			break;
		pthread_mutex_lock(&f->lock);
		cf = f->cf;
		no_range = f->src.no_range;
		pthread_mutex_unlock(&f->lock);
		if (o->pin && cf && !pinned) {
			cache_file_pin(cf, CACHE_PIN_USER, true);
			pinned = true;
		}
		/* Blocks whose bytes a power loss took are dropped before the
		 * missing ones are asked for, so that one pass fetches them all. */
		if (o->check_blocks && cf && !checked) {
			checked = true;
			recheck(f, cf);
		}
		/* An origin without Range streams the whole file anyway: ask for
		 * every block, so that one pass of the stream is enough. */
		limit = no_range ? INT_MAX : window * (int)f->run_blocks;
		for (;;) {
			int outstanding;

			pthread_mutex_lock(&pf.lock);
			outstanding = pf.outstanding;
			pthread_mutex_unlock(&pf.lock);
			/* Asked for a download unit at a time, so that a worker
			 * takes it as one request (queue_pop()). */
			if (next >= f->nblocks ||
			    (next % f->run_blocks == 0 && outstanding + (int)f->run_blocks > limit))
				break;
			rc = fetch_prefetch_block(f, next, &pf);
			if (rc < 0)
				goto out;
			next++;
		}
		fetch_kick(e);
		rc = 0;
		pthread_mutex_lock(&pf.lock);
		if (pf.err) {
			rc = pf.err;
			snprintf(reason, reason_len, "%s", pf.reason);
			pthread_mutex_unlock(&pf.lock);
			break;
		}
		if (next < f->nblocks || pf.outstanding > 0) {
			wait_tick(&pf, TICK_MS);
			pthread_mutex_unlock(&pf.lock);
			continue;
		}
		pthread_mutex_unlock(&pf.lock);

		/* Every block was asked for and has arrived (or was there). */
		pthread_mutex_lock(&f->lock);
		cf = f->cf;
		pthread_mutex_unlock(&f->lock);
		/* Checked again (blocks fetched since are checked already): a
		 * block dropped here is fetched again, which is no sign of a
		 * cache too small, so it costs no pass. */
		if (cf && cache_file_complete(cf) && o->check_blocks && recheck(f, cf) != 0) {
			next = 0;
			continue;
		}
		if (cf && cache_file_complete(cf)) {
			/* Hashed as it landed: the verdict is a moment away, and
			 * the wait ends with it, not at the next tick. */
			uint64_t seen = verify_verdicts(e);

			rc = hashed(f, cf, reason, reason_len);
			if (rc)
				break;
			verify_wait(e, seen, TICK_MS);
			continue;
		}
		if (++passes >= MAX_PASSES) {
			rc = -ENOSPC;
			snprintf(reason, reason_len, cf ? "blocks were evicted as fast as they arrived: "
				 "the cache is too small to hold this file (cache_max_size, cache_min_free)"
				 : "the file could not be resolved");
			break;
		}
		next = 0;	/* evicted, or dropped by a failed check: again */
	}
out:
	req_finish(f, &pf);
	if (rc == 1)
		rc = 0;
	if (rc && rc != -ECANCELED)
		log_warn("event=prefetch_failed path=%s error=\"%s\"", f->src.path,
			 reason[0] ? reason : strerror(-rc));
	else if (rc == 0)
		log_info("event=prefetched path=%s state=%s", f->src.path, engine_file_state(f));
	return rc;
}

/* ---- asking for blocks on behalf of a prefetch ----------------------- */

int fetch_prefetch_block(struct engine_file *f, uint64_t idx, struct prefetch_req *pf)
{
	struct engine *e = f->eng;
	struct inflight *inf;
	struct waiter *w;
	bool created = false, stopping;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	if (f->cf && cache_block_present(f->cf, idx)) {
		pthread_mutex_unlock(&f->lock);
		free(w);
		return 1;
	}
	inf = f->inflight[idx];
	if (!inf) {
		inf = inflight_add_locked(f, idx, PRIO_PREFETCH);
		created = inf != NULL;
	}
	if (!inf) {
		pthread_mutex_unlock(&f->lock);
		free(w);
		return -ENOMEM;
	}
	/* Queued under the file lock, so that a stop cannot slip in between:
	 * after fetch_stop() drained the queues nothing may be left in one. */
	pthread_mutex_lock(&e->qlock);
	stopping = atomic_load(&e->stop);
	if (created && !stopping)
		queue_push_locked(e, inf);	/* fetch_kick() wakes the workers */
	pthread_mutex_unlock(&e->qlock);
	if (stopping) {
		if (created) {
			f->inflight[idx] = NULL;
			free(inf);
		}
		pthread_mutex_unlock(&f->lock);
		free(w);
		return -ECANCELED;
	}
	w->pf = pf;
	w->next = inf->waiters;
	inf->waiters = w;
	pthread_mutex_lock(&pf->lock);
	pf->outstanding++;
	pthread_mutex_unlock(&pf->lock);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void fetch_prefetch_cancel(struct engine_file *f, struct prefetch_req *pf)
{
	struct engine *e = f->eng;
	struct inflight *unqueued = NULL;
	int removed = 0;

	pthread_mutex_lock(&f->lock);
	for (uint64_t i = 0; i < f->nblocks; i++) {
		struct inflight *inf = f->inflight[i];
		struct waiter **pp;
		bool dropped = false;

		if (!inf)
			continue;
		for (pp = &inf->waiters; *pp;) {
			struct waiter *w = *pp;

			if (w->pf != pf) {
				pp = &w->next;
				continue;
			}
			*pp = w->next;
			free(w);
			removed++;
			dropped = true;
		}
		if (!dropped || inf->waiters)
			continue;
		/* Wanted by nobody now: if no worker took it yet, it never will. */
		pthread_mutex_lock(&e->qlock);
		if (inf->queued && inf->prio == PRIO_PREFETCH) {
			queue_unlink_locked(e, inf);
			f->inflight[i] = NULL;
			inf->qnext = unqueued;
			unqueued = inf;
		}
		pthread_mutex_unlock(&e->qlock);
	}
	pthread_mutex_unlock(&f->lock);
	while (unqueued) {
		struct inflight *next = unqueued->qnext;

		free(unqueued);
		unqueued = next;
	}
	pthread_mutex_lock(&pf->lock);
	pf->outstanding -= removed;
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
}
