/*
 * fetch.c: answering reads. A read is split into blocks; present blocks
 * are copied from the cache, missing ones are fetched once each by a
 * bounded pool of workers (one HTTP connection each), and the read is
 * answered by whichever thread completes its last block. So a FUSE
 * thread never waits on the network, and eight readers of one cold block
 * cause one request. A reader does not wait for the rest of a block it
 * needs only the start of: a block's bytes arrive in order, and the
 * fetcher answers each waiting read as soon as its bytes are in (a
 * safetensors header, the first byte).
 *
 * Queues: demand blocks (a reader waits) are taken before readahead
 * blocks, and those before prefetch blocks (engine_prefetch: warming the
 * cache must never delay a program's reads). A queued block that someone
 * starts wanting sooner moves to the earlier queue. Prefetch blocks also
 * leave some workers idle (prefetch_reserve), so that a reader's block
 * starts at once instead of after a prefetch download ends.
 *
 * Blocks are small (256 KiB for files new to the cache: engine_i.h), so
 * a read fetches little more than it asked for. Downloads stay large: a
 * worker takes a queued block with the blocks queued right behind it that
 * follow it in its file (queue_pop(), up to block_size) as one request,
 * a run; each block of a run is reserved first and committed with its
 * own XXH3 as its last byte lands, and completed then (its readers
 * answered, its hold released: a check of the whole file that fails
 * meanwhile can drop it). Its struct run_ctl stands for the request at
 * stop, so that a run a reader has had bytes of is finished, and any
 * other is cancelled whole.
 *
 * Readahead is per file, not per handle: once a streak of reads from
 * block b to b+1 is longer than RA_START_BYTES the window doubles (2, 4,
 * ... 32 download units ahead); a jump elsewhere resets it to none. Reads
 * that stay near the start (a safetensors header and the kernel's
 * readahead behind it, Forge's 64 KiB probe at 1 MiB) fetch only the
 * blocks they touch.
 *
 * Loaders read tensors in model order, not file order, which readahead
 * cannot follow: once reads in a model's tensor data add up to
 * LOADER_BYTES, every missing block of the file is queued as readahead
 * (fetch_whole()). Fewer are a tool's or a benchmark's few random reads,
 * which fetch only their blocks.
 *
 * Lock order: see engine_i.h. An inflight lives while it is in its
 * file's inflight[] array, which only its worker clears, under the file's
 * lock: code that found it there may use it until it drops that lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/http.h"
#include "modelfs/log.h"

#define RA_MAX_WINDOW 32		/* in block_size units */
/* A streak of reads must pass this before readahead starts: a header read
 * (the kernel reads up to 1 MiB ahead of it) and then Forge's probe at
 * 1 MiB (read through a 1 MiB buffer) look sequential, and are not. */
#define RA_START_BYTES (2u << 20)
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000
/* After retries for a block are exhausted, the kernel asks for it again
 * at once (page by page); those reads fail at once for this long. */
#define FAILED_BLOCK_MS 1000
/* At stop, blocks whose first bytes were handed to a reader are finished
 * for up to this long (inside the 10 s a service manager allows a stop). */
#define STOP_FINISH_MS 5000

struct pending_read {
	struct engine_file *file;
	char *buf;
	uint64_t off;
	size_t len;
	uint32_t block_size;
	atomic_int remaining;		/* blocks outstanding + 1 while being set up */
	atomic_int err;
	engine_read_cb cb;
	void *arg;
};

bool engine_sleep_ms(struct engine *e, int64_t ms)
{
	struct timespec until = clock_deadline(CLOCK_REALTIME, ms);

	pthread_mutex_lock(&e->qlock);
	while (!atomic_load(&e->stop) &&
	       pthread_cond_timedwait(&e->stop_cond, &e->qlock, &until) == 0)
		;
	pthread_mutex_unlock(&e->qlock);
	return !atomic_load(&e->stop);
}

static bool file_failed(struct engine_file *f)
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

static void read_finish(struct pending_read *pr)
{
	int err = atomic_load(&pr->err);

	if (atomic_fetch_sub(&pr->remaining, 1) != 1)
		return;
	pr->cb(pr->arg, err ? NULL : pr->buf, err ? err : (ssize_t)pr->len);
	free(pr->buf);
	free(pr);
}

static void read_error(struct pending_read *pr, int err)
{
	int none = 0;

	atomic_compare_exchange_strong(&pr->err, &none, err);
}

/* The part of pr that lies in block idx. */
static void block_overlap(const struct pending_read *pr, uint64_t idx, uint64_t *off, size_t *len)
{
	uint32_t bs = pr->block_size;
	uint64_t start = idx * bs, end = start + bs;
	uint64_t rend = pr->off + pr->len;

	*off = pr->off > start ? pr->off : start;
	*len = (size_t)((rend < end ? rend : end) - *off);
}

/* Where pr's part of block idx starts, counted from the block's start. */
static uint64_t waiter_start(const struct pending_read *pr, uint64_t idx)
{
	uint64_t off;
	size_t len;

	block_overlap(pr, idx, &off, &len);
	return off - idx * pr->block_size;
}

/* Where pr's part of block idx ends, counted from the block's start. */
static uint64_t waiter_end(const struct pending_read *pr, uint64_t idx)
{
	uint64_t off;
	size_t len;

	block_overlap(pr, idx, &off, &len);
	return off + len - idx * pr->block_size;
}

/* Fill pr's part of block idx from a memory copy of the block. */
static void deliver_mem(struct pending_read *pr, uint64_t idx, const char *block)
{
	uint32_t bs = pr->block_size;
	uint64_t off;
	size_t len;

	block_overlap(pr, idx, &off, &len);
	memcpy(pr->buf + (off - pr->off), block + (off - idx * bs), len);
}

/* Copy pr's part of block idx from the cache: 0 or -ENODATA when the
 * block is not (or no longer) there. */
static int deliver_cached(struct pending_read *pr, struct cache_file *cf, uint64_t idx)
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

/* ---- the queues ------------------------------------------------------- */

/* Append inf to the queue of its priority; the caller holds qlock. */
static void queue_push_locked(struct engine *e, struct inflight *inf)
{
	int q = inf->prio;

	inf->qnext = NULL;
	inf->queued = true;
	if (e->qtail[q])
		e->qtail[q]->qnext = inf;
	else
		e->qhead[q] = inf;
	e->qtail[q] = inf;
}

/* Take a queued inf out of its queue; the caller holds qlock. */
static void queue_unlink_locked(struct engine *e, struct inflight *inf)
{
	int q = inf->prio;
	struct inflight **pp, *prev = NULL;

	for (pp = &e->qhead[q]; *pp && *pp != inf; pp = &(*pp)->qnext)
		prev = *pp;
	if (*pp) {
		*pp = inf->qnext;
		if (e->qtail[q] == inf)
			e->qtail[q] = prev;
	}
	inf->queued = false;
}

/* Queue inf at its priority (a reader may have raised it since it was
 * created). */
static void enqueue(struct engine *e, struct inflight *inf)
{
	pthread_mutex_lock(&e->qlock);
	queue_push_locked(e, inf);
	pthread_cond_signal(&e->qcond);
	pthread_mutex_unlock(&e->qlock);
}

/* Queue n inflights of one file, in file order, in one go: a worker
 * woken by the first then takes the ones behind it in the same request. */
static void enqueue_batch(struct engine *e, struct inflight **batch, size_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&e->qlock);
	for (size_t i = 0; i < n; i++)
		queue_push_locked(e, batch[i]);
	pthread_cond_broadcast(&e->qcond);
	pthread_mutex_unlock(&e->qlock);
}

/* Someone wants inf sooner (a reader waits, or a sequential reader is
 * close): move it to the queue of prio if it waits in a later one. The
 * caller holds inf->file->lock, which keeps inf alive. */
static void promote_locked(struct engine *e, struct inflight *inf, enum fetch_prio prio)
{
	pthread_mutex_lock(&e->qlock);
	if (inf->prio > prio) {
		bool queued = inf->queued;

		if (queued)
			queue_unlink_locked(e, inf);
		inf->prio = (uint8_t)prio;
		if (queued)
			queue_push_locked(e, inf);
	}
	pthread_mutex_unlock(&e->qlock);
}

static bool is_demand(struct engine *e, struct inflight *inf)
{
	bool demand;

	pthread_mutex_lock(&e->qlock);
	demand = inf->prio == PRIO_DEMAND;
	pthread_mutex_unlock(&e->qlock);
	return demand;
}

/* The next run of blocks to fetch into run[] (its length returned, 0 at
 * stop), and whether it is a prefetch one (*prefetch: the caller calls
 * prefetch_slot_done() after it). A run is the head of a queue and the
 * blocks queued right behind it that follow it in its file, up to the
 * file's run_blocks: batches are queued in file order, so a readahead
 * window or a loader's file becomes block_size-long requests. Prefetch
 * blocks may take all workers but prefetch_reserve: those stay free for
 * readers, who then never wait for a worker behind a long prefetch. */
static int queue_pop(struct engine *e, struct inflight **run, struct run_ctl *ctl, bool *prefetch)
{
	struct inflight *inf = NULL;
	int q = 0, n = 0;

	pthread_mutex_lock(&e->qlock);
	for (;;) {
		for (q = 0; q < PRIO_COUNT && !e->qhead[q]; q++)
			;
		if (q == PRIO_PREFETCH && e->prefetch_busy >= e->nworkers - e->prefetch_reserve)
			q = PRIO_COUNT;
		if (atomic_load(&e->stop) || q < PRIO_COUNT)
			break;
		pthread_cond_wait(&e->qcond, &e->qlock);
	}
	while (!atomic_load(&e->stop) && (inf = e->qhead[q]) != NULL &&
	       (n == 0 || (inf->file == run[0]->file && inf->idx == run[n - 1]->idx + 1 &&
			   (uint32_t)n < run[0]->file->run_blocks))) {
		e->qhead[q] = inf->qnext;
		if (!e->qhead[q])
			e->qtail[q] = NULL;
		inf->queued = false;
		run[n++] = inf;
	}
	for (int i = 0; n > 1 && i < n; i++)
		atomic_store(&run[i]->run, ctl);
	if (n > 0) {
		*prefetch = q == PRIO_PREFETCH;
		e->prefetch_busy += *prefetch;
	}
	pthread_mutex_unlock(&e->qlock);
	return n;
}

static void prefetch_slot_done(struct engine *e)
{
	pthread_mutex_lock(&e->qlock);
	e->prefetch_busy--;
	pthread_cond_signal(&e->qcond);		/* a waiting prefetch block may go now */
	pthread_mutex_unlock(&e->qlock);
}

/* A prefetch learns how its block ended. The last access to pf: once
 * its lock is dropped the prefetch may return. */
static void prefetch_done(struct prefetch_req *pf, int rc, const char *reason)
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

/* ---- wanting a block -------------------------------------------------- */

/* Register a fetch of block idx in f->inflight: the new inflight, or NULL
 * when the block is cached or already coming (or memory ran out). The
 * caller holds f->lock and queues what it gets. */
static struct inflight *inflight_add_locked(struct engine_file *f, uint64_t idx,
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
static void mem_block_put(struct engine *e, char *mem, struct engine_file *f, uint64_t idx)
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
static char *mem_block_get(struct engine *e, uint32_t len)
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

static void mem_block_release(struct engine *e, const char *mem)
{
	pthread_mutex_lock(&e->mem_lock);
	for (int i = 0; i < e->nkept; i++)
		if (e->kept[i].buf == mem)
			e->kept[i].refs--;
	pthread_cond_signal(&e->mem_cond);
	pthread_mutex_unlock(&e->mem_lock);
}

/* Copy pr's part of block idx from a kept copy: true when there was one. */
static bool deliver_kept(struct pending_read *pr, struct engine_file *f, uint64_t idx)
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

static void kept_free(struct engine *e)
{
	pthread_mutex_lock(&e->mem_lock);
	while (kept_drop_oldest_locked(e))
		;
	pthread_mutex_unlock(&e->mem_lock);
}

/* Make pr's part of block idx arrive: now from the cache, or later from
 * the worker that fetches it. */
static void want_block(struct pending_read *pr, uint64_t idx)
{
	struct engine_file *f = pr->file;
	struct inflight *inf;
	struct waiter *w;
	uint64_t end;
	bool created = false;

	for (;;) {
		struct cache_file *cf;

		pthread_mutex_lock(&f->lock);
		cf = f->cf;
		if (!cf || !cache_block_present(cf, idx))
			break;
		pthread_mutex_unlock(&f->lock);
		if (deliver_cached(pr, cf, idx) == 0)
			return;
		/* Evicted or failed its checksum just now: fetch it. */
	}
	if (!f->inflight[idx] && deliver_kept(pr, f, idx)) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	/* The blocks of a download unit fail together (one request, one
	 * origin), so the kernel's page-by-page retry of any of them too. */
	if (idx / f->run_blocks == f->failed_idx / f->run_blocks &&
	    clock_now_ms() < f->failed_until_ms) {
		int err = f->failed_err;

		pthread_mutex_unlock(&f->lock);
		read_error(pr, err);
		return;
	}
	w = calloc(1, sizeof(*w));
	inf = f->inflight[idx];
	if (!inf && w) {
		inf = inflight_add_locked(f, idx, PRIO_DEMAND);
		created = inf != NULL;
	}
	if (!w || !inf) {
		pthread_mutex_unlock(&f->lock);
		free(w);
		read_error(pr, -ENOMEM);
		return;
	}
	w->pr = pr;
	w->next = inf->waiters;
	inf->waiters = w;
	end = waiter_end(pr, idx);
	if (end < atomic_load(&inf->early_end))
		atomic_store(&inf->early_end, end);
	atomic_fetch_add(&pr->remaining, 1);
	if (!created)
		promote_locked(f->eng, inf, PRIO_DEMAND);
	pthread_mutex_unlock(&f->lock);
	if (created)
		enqueue(f->eng, inf);
}

/* Queue blocks after last for a sequential reader; see the file comment. */
static void readahead(struct engine_file *f, uint64_t first, uint64_t last)
{
	uint64_t most = (uint64_t)RA_MAX_WINDOW * f->run_blocks;
	struct inflight **batch;
	size_t n = 0;

	pthread_mutex_lock(&f->lock);
	if (f->src.no_range) {
		pthread_mutex_unlock(&f->lock);
		return;		/* its one stream is in order anyway */
	}
	if (f->ra_seen && first == f->ra_last + 1) {
		/* Small blocks: a header read and the kernel's readahead behind it
		 * cross a few; only a longer streak is a sequential reader. */
		if ((last + 1 - f->ra_first) * f->block_size > RA_START_BYTES)
			f->ra_window = f->ra_window ? f->ra_window * 2 : 2;
	} else if (!f->ra_seen || first > f->ra_last + 1 || last < f->ra_last) {
		f->ra_window = 0;
		f->ra_first = first;
	}
	if (f->ra_window > most)
		f->ra_window = (uint32_t)most;
	f->ra_seen = true;
	f->ra_last = last;
	if (f->ra_window == 0) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	batch = malloc(f->ra_window * sizeof(*batch));
	for (uint64_t i = last + 1; batch && i <= last + f->ra_window && i < f->nblocks; i++) {
		if (f->inflight[i])	/* a prefetch asked for it: the reader is nearer */
			promote_locked(f->eng, f->inflight[i], PRIO_READAHEAD);
		else if ((batch[n] = inflight_add_locked(f, i, PRIO_READAHEAD)) != NULL)
			n++;
	}
	pthread_mutex_unlock(&f->lock);
	enqueue_batch(f->eng, batch, n);
	free(batch);
}

/* ---- loaders: the whole file at once --------------------------------- */

/* How far the kernel may read ahead of a header read or of Forge's probe
 * (twice a read_ahead_kb of up to 1 MiB, and more): reads there are no
 * sign of a loader. */
#define KERNEL_READAHEAD_SLACK (4u << 20)
#define FORGE_PROBE_OFFSET (1u << 20)
#define FORGE_PROBE_LEN (64u << 10)
/* Tensor data read before the reader counts as a loader: a loader reads
 * it by the MiB (mmap faults of up to 1 MiB, a tensor per readinto), a
 * tool reads a few tensors; 16 random 4 KiB reads with the kernel's
 * readahead are under 2 MiB. */
#define LOADER_BYTES (4u << 20)

/* Where f's tensor data starts, from its first bytes in the cache: 8 + N
 * for a safetensors file (N, little-endian, then a JSON header). Other
 * formats are left to readahead (NOT_A_MODEL): their loaders read in
 * file order, or nothing tells a loader from a tool reading a few parts.
 * 0 while the first block is not cached. */
#define NOT_A_MODEL UINT64_MAX
static uint64_t find_data_start(struct engine_file *f, struct cache_file *cf)
{
	unsigned char head[9];
	uint64_t n = 0;

	if (!cache_block_present(cf, 0) || cache_read(cf, head, 0, sizeof(head)) != sizeof(head))
		return 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | head[i];
	return head[8] == '{' && n < (uint64_t)f->src.size - 8 ? 8 + n : NOT_A_MODEL;
}

/* A read of len at off: when reads in tensor data, away from what a
 * webui's header read and probe touch, reach LOADER_BYTES, a loader is at
 * work. Queue every missing
 * block, in file order from off, as readahead: the blocks the loader
 * waits for still go first, and it gets every connection (at prefetch
 * priority, which leaves a quarter idle for readers, a 1 GiB load under
 * a 20 MiB/s cap took 3.7-3.9 s instead of 3.2). */
static void fetch_whole(struct engine_file *f, uint64_t off, size_t len)
{
	struct inflight **batch = NULL;
	struct cache_file *cf;
	uint64_t start;
	size_t n = 0;
	bool loader;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	start = f->data_start;
	if (f->whole_queued || !cf || f->nblocks < 3 || f->src.no_range) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	pthread_mutex_unlock(&f->lock);
	if (!start) {
		if (!(start = find_data_start(f, cf)))
			return;
		pthread_mutex_lock(&f->lock);
		f->data_start = start;
		pthread_mutex_unlock(&f->lock);
	}
	if (start == NOT_A_MODEL || off < start + KERNEL_READAHEAD_SLACK ||
	    (off >= FORGE_PROBE_OFFSET &&
	     off < FORGE_PROBE_OFFSET + FORGE_PROBE_LEN + KERNEL_READAHEAD_SLACK))
		return;
	pthread_mutex_lock(&f->lock);
	f->tensor_read += len;
	loader = f->tensor_read >= LOADER_BYTES;
	pthread_mutex_unlock(&f->lock);
	if (!loader)
		return;
	batch = calloc(f->nblocks, sizeof(*batch));
	pthread_mutex_lock(&f->lock);
	if (f->whole_queued || !batch) {
		pthread_mutex_unlock(&f->lock);
		free(batch);
		return;
	}
	f->whole_queued = true;
	for (uint64_t k = 0, first = off / cache_file_block_size(cf); k < f->nblocks; k++)
		if ((batch[n] = inflight_add_locked(f, (first + k) % f->nblocks,
						    PRIO_READAHEAD)) != NULL)
			n++;
	pthread_mutex_unlock(&f->lock);
	if (n)
		log_info("event=loader_read path=%s offset=%llu action=\"fetching the other %zu "
			 "missing blocks in parallel\"", f->src.path, (unsigned long long)off, n);
	enqueue_batch(f->eng, batch, n);
	free(batch);
}

/* verify = strict and not verified yet: the caller holds f->lock. */
static bool strict_waits(struct engine_file *f)
{
	enum store_file_state st;

	if (f->src.entry->verify != CONFIG_VERIFY_STRICT)
		return false;
	if (!f->cf)
		return true;
	st = cache_file_state(f->cf, NULL, NULL);
	return st != STORE_VERIFIED && st != STORE_COMPLETE;
}

/* Queue every missing block of f as demand: a strict reader waits for
 * the whole file. */
static void fetch_all(struct engine_file *f)
{
	struct inflight **batch = calloc(f->nblocks ? f->nblocks : 1, sizeof(*batch));
	struct cache_file *cf;
	size_t n = 0;

	if (!batch) {
		strict_release(f, -ENOMEM);
		return;
	}
	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	for (uint64_t i = 0; i < f->nblocks; i++) {
		if (f->inflight[i])
			promote_locked(f->eng, f->inflight[i], PRIO_DEMAND);
		else if ((batch[n] = inflight_add_locked(f, i, PRIO_DEMAND)) != NULL)
			n++;
	}
	pthread_mutex_unlock(&f->lock);
	enqueue_batch(f->eng, batch, n);
	free(batch);
	if (n == 0 && cf && cache_file_complete(cf))
		verify_enqueue(f);	/* all there, only the hash is missing */
}

void strict_release(struct engine_file *f, int err)
{
	struct parked_read *p, *next;

	pthread_mutex_lock(&f->lock);
	p = f->parked;
	f->parked = NULL;
	pthread_mutex_unlock(&f->lock);
	for (; p; p = next) {
		next = p->next;
		if (err)
			p->cb(p->arg, NULL, err);
		else
			engine_read(f, p->off, p->len, p->cb, p->arg);
		free(p);
	}
}

void engine_read(struct engine_file *f, uint64_t off, size_t len, engine_read_cb cb, void *arg)
{
	struct pending_read *pr;
	uint64_t size = f->src.size < 0 ? 0 : (uint64_t)f->src.size;
	uint32_t bs;
	int err;

	pthread_mutex_lock(&f->lock);
	err = f->err;
	if (!err && strict_waits(f)) {
		struct parked_read *p = calloc(1, sizeof(*p));
		bool first = !f->parked;

		if (p) {
			*p = (struct parked_read){ .off = off, .len = len, .cb = cb, .arg = arg,
						   .next = f->parked };
			f->parked = p;
		}
		pthread_mutex_unlock(&f->lock);
		if (!p)
			cb(arg, NULL, -ENOMEM);
		else if (first)
			fetch_all(f);
		return;
	}
	pthread_mutex_unlock(&f->lock);
	if (err) {
		cb(arg, NULL, err == -EACCES ? -EACCES : -EIO);
		return;
	}
	if (off >= size || len == 0) {
		cb(arg, "", 0);
		return;
	}
	if (len > size - off)
		len = (size_t)(size - off);
	pr = calloc(1, sizeof(*pr));
	if (pr)
		pr->buf = malloc(len);
	if (!pr || !pr->buf) {
		if (pr)
			free(pr);
		cb(arg, NULL, -ENOMEM);
		return;
	}
	pr->file = f;
	pr->off = off;
	pr->len = len;
	pr->cb = cb;
	pr->arg = arg;
	atomic_init(&pr->remaining, 1);
	atomic_init(&pr->err, 0);
	bs = f->block_size;
	pr->block_size = bs;
	for (uint64_t idx = off / bs; idx <= (off + len - 1) / bs; idx++)
		want_block(pr, idx);
	readahead(f, off / bs, (off + len - 1) / bs);
	fetch_whole(f, off, len);
	read_finish(pr);
}

/* ---- fetching a block ------------------------------------------------- */

/* Bytes of a block are gathered into writes of this size: many workers
 * writing one data file contend for its inode lock once per write(2),
 * and curl hands over 16 KiB at a time. One buffer per connection: 1 MiB
 * cost 20 MiB more RSS at 32 connections for no measured gain. */
#define SINK_BUFFER (256 * 1024)
/* A reader waiting this far into a block has its part fetched first,
 * from this alignment: below it, fetching from the start costs little. */
#define SPLIT_MIN (1024 * 1024)
#define SPLIT_ALIGN (64 * 1024)

struct block_sink {
	struct engine_file *f;
	struct inflight *inf;		/* the block being filled */
	struct cache_file *cf;
	uint64_t idx;
	uint64_t start;			/* file offset of the block */
	/* A run (nrun > 1): blocks run[0..nrun) in one request, each
	 * committed as its last byte lands; run[cur] is being filled. */
	struct inflight **run;
	struct run_ctl *ctl;
	int nrun, cur;
	int committed;			/* run[0..committed) are present, held */
	bool cur_aborted;		/* run[cur]'s commit failed (and aborted it) */
	uint64_t run_end;		/* file offset where the run ends */
	bool via_tier;			/* this attempt goes through the shared tier */
	bool via_bucket;		/* ... comes from the shared bucket */
	char *mem;			/* uncached: the block's bytes go here */
	XXH3_state_t *xxh;
	char *buf;			/* cached: bytes not written yet... */
	uint32_t buf_at;		/* ...which start at this offset in the block */
	uint32_t buf_len;
	uint32_t from;			/* the range being fetched starts here in the block... */
	uint32_t arrived;		/* ...and this attempt has had it up to here */
	uint32_t tail_from;		/* [tail_from, len) is in already (fetched first) */
	uint64_t counted;		/* what this sink added to f->arriving */
	int disk_err;			/* the cache's disk failed a write or read-back */
};

/* rc of a write to (or read back from) the cache's disk: kept, so that
 * the block is served uncached rather than failed (fetch_inflight). */
static int sink_disk(struct block_sink *s, int rc)
{
	if (rc && !s->disk_err)
		s->disk_err = rc;
	return rc;
}

/* The sink's bytes leave f->arriving: its attempt starts again, or its
 * block ended (then they count as cached, or not at all). */
static void sink_uncount(struct block_sink *s)
{
	atomic_fetch_sub(&s->f->arriving, s->counted);
	s->counted = 0;
}

/* Whether bytes [start, end) of the block are in the data file (or mem). */
static bool sink_has(const struct block_sink *s, uint64_t start, uint64_t end)
{
	return (start >= s->from && end <= s->arrived) || start >= s->tail_from;
}

static int sink_flush(struct block_sink *s)
{
	int rc = s->buf_len ? sink_disk(s, cache_block_write(s->cf, s->idx, s->buf_at, s->buf,
							    s->buf_len)) : 0;

	s->buf_at += s->buf_len;
	s->buf_len = 0;
	return rc;
}

/* Answer the reads waiting on s's block whose bytes have all arrived,
 * from what this attempt wrote so far. */
static int answer_arrived(struct block_sink *s)
{
	struct engine_file *f = s->f;
	struct inflight *inf = s->inf;
	struct waiter *ready = NULL, *w, **pp;
	uint64_t next_end = UINT64_MAX;
	int rc = s->mem ? 0 : sink_flush(s);

	if (rc)
		return rc;
	pthread_mutex_lock(&f->lock);
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

static void complete_block(struct engine_file *f, struct cache_file *cf, uint64_t idx, int rc,
			   const char *mem, bool held, const char *reason);

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

static int sink_write(void *ctx, uint64_t offset, const void *data, size_t len)
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

/* A copy of what names f at its source, to resolve it again with. */
static int scratch_of(struct engine_file *f, struct source_file *scratch)
{
	const struct source_file *src = &f->src;
	bool oom = false;

	memset(scratch, 0, sizeof(*scratch));
	scratch->entry = src->entry;
	scratch->size = src->size;
	scratch->mtime = -1;
	pthread_mutex_lock(&f->lock);
#define COPY(field) \
	do { if (src->field && !(scratch->field = strdup(src->field))) oom = true; } while (0)
	COPY(path);
	COPY(remote_path);
	COPY(validator);
	COPY(revision);
	COPY(sha256);
	COPY(git_sha1);
#undef COPY
	scratch->public_bytes = src->public_bytes;
	pthread_mutex_unlock(&f->lock);
	if (oom) {
		source_file_clear(scratch);
		return -ENOMEM;
	}
	return 0;
}

/* Take the fresh way to the bytes from a resolved scratch; the caller
 * holds f->lock. */
static void adopt_locked(struct engine_file *f, struct source_file *scratch)
{
	struct source_file *src = &f->src;

	free(src->data_url);
	src->data_url = scratch->data_url;
	scratch->data_url = NULL;
	source_auth_clear(&src->auth);
	src->auth = scratch->auth;
	memset(&scratch->auth, 0, sizeof(scratch->auth));
	for (size_t i = 0; src->mirror_urls && src->mirror_urls[i]; i++)
		free(src->mirror_urls[i]);
	free(src->mirror_urls);
	src->mirror_urls = scratch->mirror_urls;
	scratch->mirror_urls = NULL;
	free(src->stable_url);
	src->stable_url = scratch->stable_url;
	src->stable_by_commit = scratch->stable_by_commit;
	src->public_bytes = scratch->public_bytes;
	scratch->stable_url = NULL;
	if (!src->validator) {
		src->validator = scratch->validator;
		scratch->validator = NULL;
	}
	src->no_range = scratch->no_range;
}

/* The file's cache, resolving the file first if it was listed without a
 * resolution (its origin was down at mount). One thread resolves; the
 * others wait for it without holding a lock. */
static int file_cache(struct engine_file *f, struct http_client *http, struct cache_file **out)
{
	struct engine *e = f->eng;
	struct source_file scratch;
	struct cache_file *cf = NULL;
	char *key = NULL;
	int rc;

	pthread_mutex_lock(&f->lock);
	while (!f->cf && f->resolving)
		pthread_cond_wait(&f->resolved, &f->lock);
	*out = f->cf;
	rc = f->cf ? 0 : f->err;
	if (!f->cf && !f->err)
		f->resolving = true;
	pthread_mutex_unlock(&f->lock);
	if (*out || rc)
		return *out ? 0 : rc;

	rc = scratch_of(f, &scratch);
	if (rc == 0)
		rc = source_refresh(e->sources, http, &scratch);
	if (rc == 0)
		rc = source_content_key(&scratch, &key);
	if (rc == 0)
		rc = cache_file_open(e->cache, key, (uint64_t)f->src.size, f->block_size, &cf);
	if (rc == 0 && cache_file_nblocks(cf) != f->nblocks)
		rc = -EIO;	/* stored with another block size: this mount's blocks don't map */
	if (rc == 0)
		engine_forget_unvalidated(&scratch, cf);
	pthread_mutex_lock(&f->lock);
	f->resolving = false;
	if (rc == 0) {
		f->cf = cf;
		cache_file_add_name(cf, f->src.path);	/* for its log lines; best effort */
		adopt_locked(f, &scratch);
		/* What the source says the bytes hash to, when the config did not. */
		if (!f->src.sha256 && !f->src.git_sha1) {
			f->src.sha256 = scratch.sha256;
			f->src.git_sha1 = scratch.git_sha1;
			scratch.sha256 = scratch.git_sha1 = NULL;
		}
		log_info("event=resolved_late path=%s", f->src.path);
	}
	pthread_cond_broadcast(&f->resolved);
	pthread_mutex_unlock(&f->lock);
	if (rc && rc != -EAGAIN) {
		char reason[256];

		snprintf(reason, sizeof(reason), "cannot resolve: %s",
			 scratch.error ? scratch.error : strerror(-rc));
		engine_file_fail(f, rc == -EACCES ? -EACCES : -EIO, reason);
	}
	free(key);
	source_file_clear(&scratch);
	*out = cf;
	return rc;
}

/* Get a fresh data URL from the origin (an expired signature, or none),
 * unless it was renewed since generation gen, the one the caller tried.
 * One worker asks; the others wait for its answer: the workers of a file
 * find its URL expired together, and CivitAI counts each renewal as a
 * download. */
static int refresh_url(struct engine_file *f, struct http_client *http, uint32_t gen)
{
	struct source_file scratch;
	int rc;

	pthread_mutex_lock(&f->lock);
	while (f->refreshing)
		pthread_cond_wait(&f->resolved, &f->lock);
	if (f->url_gen != gen) {
		rc = f->refresh_rc;
		pthread_mutex_unlock(&f->lock);
		return rc;
	}
	f->refreshing = true;
	pthread_mutex_unlock(&f->lock);

	rc = scratch_of(f, &scratch);
	if (rc == 0)
		rc = source_refresh(f->eng->sources, http, &scratch);
	pthread_mutex_lock(&f->lock);
	if (rc == 0)
		adopt_locked(f, &scratch);
	f->refreshing = false;
	f->url_gen++;
	f->refresh_rc = rc;
	pthread_cond_broadcast(&f->resolved);
	pthread_mutex_unlock(&f->lock);
	if (rc == 0)
		log_info("event=url_refreshed path=%s", f->src.path);
	/* The source says what changed and both values: that, not the
	 * generic "changed at the origin", is what the reader should see. */
	if (rc == -ESTALE && scratch.error)
		engine_file_fail(f, -EIO, scratch.error);
	source_file_clear(&scratch);
	return rc;
}

static int64_t backoff_ms(int attempt, int retry_after_sec)
{
	int64_t ms;

	if (retry_after_sec >= 0)
		return (int64_t)retry_after_sec * 1000 + 250;
	ms = (int64_t)BACKOFF_FIRST_MS << (attempt < 6 ? attempt : 6);
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	return ms / 2 + rand() % (ms / 2 + 1);	/* jitter: retries of many blocks spread out */
}

/* Where an attempt goes, copied under f->lock (a refresh may swap them). */
struct attempt {
	char *url;
	char *validator;
	struct source_auth auth;
	uint32_t url_gen;		/* the data URL's renewal count then */
};

static void attempt_clear(struct attempt *a)
{
	free(a->url);
	free(a->validator);
	source_auth_clear(&a->auth);
}

/* A mirror's own credential (config.h mirror_token_file) on a, when
 * a->url is on the host of one of the entry's configured mirrors (not
 * the origin a resolution through a mirror puts among them): 0 or
 * -ENOMEM. Kept apart from attempt_get(): the one place a mirror
 * credential enters a request, and only for that mirror's origin. */
static int mirror_credential(struct engine_file *f, struct attempt *a)
{
	const struct config_entry *e = f->src.entry;
	const char *bearer = f->eng->mirror_bearer ? f->eng->mirror_bearer[e - f->eng->cfg->entries]
						   : NULL;
	char at[512], mirror[512];
	bool ours = false;

	if (!bearer || http_url_origin(a->url, at, sizeof(at)) != 0)
		return 0;
	for (size_t i = 0; !ours && e->mirrors && e->mirrors[i]; i++)
		ours = http_url_origin(e->mirrors[i], mirror, sizeof(mirror)) == 0 &&
		       strcmp(at, mirror) == 0;
	if (!ours)
		return 0;
	source_auth_clear(&a->auth);
	a->auth.origin_url = strdup(a->url);
	a->auth.authorization = strdup(bearer);
	return a->auth.origin_url && a->auth.authorization ? 0 : -ENOMEM;
}

/* The target of try number `which` (0: the data URL, k: mirror k):
 * 0, -ENOENT when there is no such mirror, -ENODATA when the data URL
 * must be resolved first. */
static int attempt_get(struct engine_file *f, int which, struct attempt *a)
{
	const struct source_file *src = &f->src;
	const char *url;
	int rc = 0;

	memset(a, 0, sizeof(*a));
	pthread_mutex_lock(&f->lock);
	a->url_gen = f->url_gen;
	url = which == 0 ? src->data_url : NULL;
	for (int k = 0; which > 0 && src->mirror_urls && src->mirror_urls[k]; k++)
		if (k == which - 1)
			url = src->mirror_urls[k];
	if (!url)
		rc = which == 0 ? -ENODATA : -ENOENT;
	else if (!(a->url = strdup(url)) || source_auth_copy(&a->auth, &src->auth))
		rc = -ENOMEM;
	else if (src->validator && http_etag_is_strong(src->validator) &&
		 !(a->validator = strdup(src->validator)))
		rc = -ENOMEM;
	else if (which > 0)
		rc = mirror_credential(f, a);
	pthread_mutex_unlock(&f->lock);
	if (rc)
		attempt_clear(a);
	return rc;
}

/* One GET of sink's range (len bytes from sink->from) from a->url: 0 or
 * -errno (http.h). */
/* What an attempt at sink's range asks for: len bytes from sink->from,
 * or the rest of the run. */
static uint64_t sink_range_len(const struct block_sink *sink, uint32_t len)
{
	return sink->nrun > 1 ? sink->run_end - sink->start : len;
}

static const atomic_int *sink_cancel(const struct block_sink *sink)
{
	return sink->ctl ? &sink->ctl->cancel : &sink->inf->cancel;
}

/* Before an attempt: a retry starts the range again. 0 or -ENOMEM. */
static int sink_begin(struct block_sink *sink)
{
	sink->xxh = XXH3_createState();
	if (!sink->xxh)
		return -ENOMEM;
	XXH3_64bits_reset(sink->xxh);
	sink->buf_len = 0;
	sink->arrived = sink->from;
	sink_uncount(sink);
	return 0;
}

/* After an attempt that ended with rc: the XXH3 of the block, rc. */
static int sink_end(struct block_sink *sink, int rc, uint64_t *xxh3)
{
	if (rc == 0 && !sink->mem)
		rc = sink_flush(sink);
	*xxh3 = XXH3_64bits_digest(sink->xxh);
	XXH3_freeState(sink->xxh);
	sink->xxh = NULL;
	return rc;
}

static int attempt_run(struct engine_file *f, struct http_client *http, const struct attempt *a,
		       struct block_sink *sink, uint32_t len, uint64_t *xxh3, struct http_meta *meta)
{
	struct http_request rq = {
		.url = a->url,
		.origin_url = a->auth.origin_url,
		.headers = a->auth.headers,
		.n_headers = a->auth.n_headers,
		.authorization = a->auth.authorization,
		.aws_sigv4 = a->auth.aws_sigv4,
		.aws_credentials = a->auth.aws_credentials,
		.aws_session_token = a->auth.aws_session_token,
		.if_range = a->validator,
		.range_first = sink->start + sink->from,
		.range_len = sink_range_len(sink, len),
		.follow_redirects = true,
		.cancel = sink_cancel(sink),
	};
	int rc = sink_begin(sink);

	if (rc)
		return rc;
	rc = http_get(http, &rq, sink_write, sink, meta);
	return sink_end(sink, rc, xxh3);
}

/* Download block idx from try `which` (see attempt_get), retrying
 * transient failures until the deadline: 0 or -errno, reason filled. */
static int download_from(struct engine_file *f, struct http_client *http, struct block_sink *sink,
			 uint32_t len, int which, uint64_t *xxh3, char *reason, size_t reason_len)
{
	struct engine *e = f->eng;
	int64_t deadline = clock_now_ms() + (int64_t)e->cfg->retry_timeout_sec * 1000;
	bool refreshed = false;
	int rc, attempt = 0;

	for (;;) {
		struct http_meta meta;
		struct attempt a;

		rc = attempt_get(f, which, &a);
		if (rc == -ENODATA) {
			/* Listed from a stored resolution, or a signed URL to renew. */
			refreshed = true;
			rc = refresh_url(f, http, a.url_gen);
			if (rc == 0)
				continue;
			snprintf(reason, reason_len, "cannot resolve: %s",
				 rc == -EAGAIN ? "origin unreachable" : strerror(-rc));
			if (rc == -EAGAIN && clock_now_ms() < deadline &&
			    engine_sleep_ms(e, backoff_ms(attempt++, -1)))
				continue;
			return rc;
		}
		if (rc)
			return rc;
		rc = attempt_run(f, http, &a, sink, len, xxh3, &meta);
		snprintf(reason, reason_len, "%s", meta.error_text ? meta.error_text : strerror(-rc));
		if (rc == -EACCES && which == 0 && !refreshed && meta.final_url &&
		    a.auth.origin_url && strcmp(meta.final_url, a.auth.origin_url) != 0) {
			/* A signed link expired: ask the origin for a fresh one, once. */
			refreshed = true;
			rc = refresh_url(f, http, a.url_gen);
			http_meta_clear(&meta);
			attempt_clear(&a);
			if (rc == 0)
				continue;
			return -EACCES;
		}
		attempt_clear(&a);
		if (rc == -EAGAIN && clock_now_ms() < deadline) {
			int64_t wait = backoff_ms(attempt++, meta.retry_after_sec);

			if (wait > deadline - clock_now_ms())
				wait = deadline - clock_now_ms();	/* the last try is at the deadline */
			log_warn("event=fetch_retry path=%s block=%llu attempt=%d wait_ms=%lld error=\"%s\"",
				 f->src.path, (unsigned long long)sink->idx, attempt, (long long)wait,
				 reason);
			http_meta_clear(&meta);
			if (engine_sleep_ms(e, wait))
				continue;
			return -ECANCELED;
		}
		http_meta_clear(&meta);
		return rc;
	}
}

static int mirror_count(struct engine_file *f)
{
	int n = 0;

	pthread_mutex_lock(&f->lock);
	while (f->src.mirror_urls && f->src.mirror_urls[n])
		n++;
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* ---- the shared tier (tier.h) ------------------------------------------ */

/* The tier's own token (tier.h (2a)) on a, for the tier's host only: 0
 * or -ENOMEM. Kept apart from tier_attempt() on purpose: it is the one
 * place the tier's credential enters a request. */
static int tier_credential(struct tier *t, struct attempt *a)
{
	char *bearer = tier_authorization(t);

	if (!bearer)
		return 0;
	free(a->auth.authorization);
	a->auth.authorization = bearer;
	if (!a->auth.origin_url)
		a->auth.origin_url = strdup(a->url);
	return a->auth.origin_url ? 0 : -ENOMEM;
}

/* Where the tier would take f's bytes from, under f->lock: 0 and a->url
 * (with the credentials only for a private tier); -ENOENT to go to the
 * origin. */
static int tier_attempt(struct engine_file *f, struct attempt *a)
{
	const struct source_file *src = &f->src;
	const struct source_auth *au = &src->auth;
	struct tier_target tg = {
		.origin_url = src->stable_url,
		.sha256 = src->sha256,
		.commit = src->stable_by_commit ? src->revision : NULL,
		/* Public bytes need none of them: the tier fetches them as anyone. */
		.credentials = !src->public_bytes && (au->authorization || au->n_headers ||
						      au->aws_credentials || au->aws_session_token),
		.sigv4 = au->aws_sigv4 != NULL,
	};
	bool with_auth = false;
	int rc;

	memset(a, 0, sizeof(*a));
	pthread_mutex_lock(&f->lock);
	rc = tier_route(f->eng->tier, &tg, &a->url, &with_auth);
	if (rc == 0 && with_auth) {
		/* A private tier: the credentials go to its host, none other. */
		rc = source_auth_copy(&a->auth, au);
		free(a->auth.origin_url);
		a->auth.origin_url = rc ? NULL : strdup(a->url);
		if (rc == 0 && !a->auth.origin_url)
			rc = -ENOMEM;
	}
	if (rc == 0)
		rc = tier_credential(f->eng->tier, a);
	pthread_mutex_unlock(&f->lock);
	if (rc)
		attempt_clear(a);
	return rc;
}

/* One try of sink's range through the tier: 0, -ENOENT when the tier is
 * not for this file or failed (the origin is next; a failure is the
 * tier's to report, tier.h (3)), or our own failure (stopping, memory,
 * a full disk). No If-Range: the key names the bytes, and nginx's slice
 * module answers If-Range from its slice 0. */
static int download_via_tier(struct engine_file *f, struct http_client *http,
			     struct block_sink *sink, uint32_t len, uint64_t *xxh3)
{
	struct http_meta meta;
	struct attempt a;
	bool unresolved;
	int rc = tier_attempt(f, &a);

	pthread_mutex_lock(&f->lock);
	unresolved = rc == -ENOENT && f->eng->tier && !f->src.stable_url && !f->src.data_url;
	a.url_gen = f->url_gen;
	pthread_mutex_unlock(&f->lock);
	/* Listed from a stored resolution, which keeps no stable URL: resolve
	 * it first, or this block would come from the origin. */
	if (unresolved && refresh_url(f, http, a.url_gen) == 0)
		rc = tier_attempt(f, &a);
	if (rc)
		return rc == -ENOMEM ? rc : -ENOENT;
	sink->via_tier = true;
	rc = attempt_run(f, http, &a, sink, len, xxh3, &meta);
	sink->via_tier = false;
	tier_report(f->eng->tier, rc, meta.status, meta.error_text);
	if (rc == 0 && sink->nrun <= 1)		/* a run counts block by block */
		atomic_fetch_add(&f->bytes_tier, len);
	else if (rc != -ECANCELED && rc != -ENOMEM && rc != -ENOSPC)
		log_debug("event=tier_miss path=%s block=%llu status=%ld error=\"%s\"", f->src.path,
			  (unsigned long long)sink->idx, meta.status,
			  meta.error_text ? meta.error_text : strerror(-rc));
	http_meta_clear(&meta);
	attempt_clear(&a);
	if (rc == 0 || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
		return rc;
	return -ENOENT;
}

/* ---- the shared bucket (bucket.h) -------------------------------------- */

/* One try of sink's range from the shared bucket, for a file whose
 * SHA-256 is known: 0; -ENOENT when the bucket is not for this file, has
 * not got it, failed or gave a block that failed its checksum (bucket.c
 * reported it; no byte of that block reached the sink: the origin is
 * next, from where the bucket stopped); or our own failure (stopping,
 * memory, a full disk). */
static int download_via_bucket(struct engine_file *f, struct http_client *http,
			       struct block_sink *sink, uint32_t len, uint64_t *xxh3)
{
	struct file_hashes want;
	int rc;

	if (!f->eng->bucket)
		return -ENOENT;
	engine_file_hashes(f, &want);
	if (!want.sha256[0])
		return -ENOENT;
	rc = sink_begin(sink);
	if (rc)
		return rc;
	sink->via_bucket = true;
	rc = bucket_read(f->eng->bucket, http, want.sha256, (uint64_t)f->src.size,
			 sink->start + sink->from, sink_range_len(sink, len), sink_cancel(sink),
			 sink_write, sink);
	sink->via_bucket = false;
	rc = sink_end(sink, rc, xxh3);
	if (rc == 0 && sink->nrun <= 1)		/* a run counts block by block */
		atomic_fetch_add(&f->bytes_bucket, len);
	if (rc == 0 || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
		return rc;
	return -ENOENT;
}

/* Download len bytes from sink->from from the shared bucket, else through
 * the tier, else from the data URL, then from each mirror in turn: 0 or
 * -errno, reason filled. */
static int download_range(struct engine_file *f, struct http_client *http,
			  struct block_sink *sink, uint32_t len, uint64_t *xxh3, char *reason,
			  size_t reason_len)
{
	int rc = download_via_bucket(f, http, sink, len, xxh3);

	if (rc == -ENOENT)
		rc = download_via_tier(f, http, sink, len, xxh3);

	if (rc != -ENOENT)
		return rc;
	for (int which = 0; which <= mirror_count(f); which++) {
		if (which > 0)
			log_warn("event=try_mirror path=%s block=%llu mirror=%d error=\"%s\"",
				 f->src.path, (unsigned long long)sink->idx, which, reason);
		rc = download_from(f, http, sink, len, which, xxh3, reason, reason_len);
		if (rc == 0 && sink->nrun <= 1)		/* a run counts block by block */
			atomic_fetch_add(&f->bytes_origin, len);
		/* Our own failures (stopping, memory, a full disk) are not the
		 * origin's: a mirror would fare no better. */
		if (rc == 0 || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
			break;
	}
	return rc;
}

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
	store_log_fetch(cache_store(f->eng->cache), cache_file_id(cf), first, len,
			clock_now_ms() - started, rc, rc ? reason : NULL);
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

/* Forget inf if no reader waits for it (checked under the file lock, so
 * a reader arriving later starts a new fetch): true when it was freed.
 * Prefetches waiting for it learn err and reason. */
static bool drop_unwanted(struct engine_file *f, struct inflight *inf, int err, const char *reason)
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

/* Take inf out of the queue that holds it, if any (a streamer completes
 * blocks that are still queued). */
static void dequeue(struct engine *e, struct inflight *inf)
{
	pthread_mutex_lock(&e->qlock);
	if (inf->queued)
		queue_unlink_locked(e, inf);
	pthread_mutex_unlock(&e->qlock);
}

/* Block idx of f is done: rc, and its bytes are in the cache (held by
 * the caller when held) or in mem. Take its inflight out and answer
 * every reader waiting for it. */
static void complete_block(struct engine_file *f, struct cache_file *cf, uint64_t idx, int rc,
			   const char *mem, bool held, const char *reason)
{
	struct inflight *inf;
	struct waiter *w, *next;

	pthread_mutex_lock(&f->lock);
	inf = f->inflight[idx];
	f->inflight[idx] = NULL;
	w = inf ? inf->waiters : NULL;
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
		bool parked;

		pthread_mutex_lock(&f->lock);
		parked = f->parked != NULL;
		pthread_mutex_unlock(&f->lock);
		if (parked) {
			if (!rc)
				log_error("event=strict_unservable path=%s error=\"verify = strict needs "
					  "the whole file in the cache, and the cache has no room\"",
					  f->src.path);
			strict_release(f, rc == -EACCES ? -EACCES : -EIO);
		}
	}
	if (held) {
		cache_block_release(cf, idx);
		if (!atomic_exchange(&f->partial_logged, true))
			log_info("event=file_state path=%s state=partial", f->src.path);
		if (cache_file_complete(cf))
			verify_enqueue(f);
	}
	free(inf);
}

/* ---- origins without Range: one stream, in order ---------------------- */

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
		if (cache_block_write(s->cf, s->idx, 0, s->block, len) == 0 &&
		    cache_block_commit(s->cf, s->idx, XXH3_64bits(s->block, len)) == 0)
			held = true;
		else
			cache_block_abort(s->cf, s->idx);
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

/* inf's file ignores Range. One worker streams it; blocks come in order
 * and readers wait for theirs. Blocks wanted after the stream passed
 * them (evicted meanwhile) get another pass. */
static void fetch_streamed(struct engine_file *f, struct inflight *inf, struct http_client *http)
{
	struct cache_file *cf = NULL;
	char reason[256] = "";
	bool pending = true;
	int rc;

	pthread_mutex_lock(&f->lock);
	if (f->streaming) {
		pthread_mutex_unlock(&f->lock);
		return;		/* the streamer completes inf when it gets there */
	}
	f->streaming = true;
	pthread_mutex_unlock(&f->lock);
	log_info("event=stream_start path=%s reason=\"the origin ignores Range\"", f->src.path);
	rc = file_cache(f, http, &cf);
	for (int pass = 0; rc == 0 && pending && pass < 3; pass++) {
		rc = stream_pass(f, http, cf, reason, sizeof(reason));
		pending = false;
		pthread_mutex_lock(&f->lock);
		for (uint64_t i = 0; i < f->nblocks && !pending; i++)
			pending = f->inflight[i] != NULL;
		pthread_mutex_unlock(&f->lock);
	}
	if (rc == 0 && pending)
		rc = -EIO;
	for (uint64_t i = 0; rc && i < f->nblocks; i++) {
		bool wanted;

		pthread_mutex_lock(&f->lock);
		wanted = f->inflight[i] != NULL;
		pthread_mutex_unlock(&f->lock);
		if (wanted)
			complete_block(f, cf, i, rc, NULL, false, reason);
	}
	pthread_mutex_lock(&f->lock);
	f->streaming = false;
	pthread_mutex_unlock(&f->lock);
}

/* file_cache(), retrying an unreachable origin until retry_timeout. */
static int file_cache_retried(struct engine_file *f, struct http_client *http,
			      struct cache_file **cf)
{
	struct engine *e = f->eng;
	int rc = file_cache(f, http, cf);

	for (int attempt = 0; rc == -EAGAIN; attempt++) {
		if (attempt * (int64_t)BACKOFF_MAX_MS >= e->cfg->retry_timeout_sec * 1000LL ||
		    !engine_sleep_ms(e, backoff_ms(attempt, -1)))
			break;
		rc = file_cache(f, http, cf);
	}
	return rc;
}

/* Fetch inf's block, then wake its waiters. */
/* The cache's disk filled or failed while block idx was written or
 * recorded (another program, our own index, a bad disk): said each time,
 * the block is served from memory. */
static void log_disk_failed(struct engine_file *f, uint64_t idx, int err)
{
	log_warn("event=%s path=%s block=%llu error=\"%s\" action=\"served uncached\"",
		 err == -ENOSPC ? "disk_full" : "cache_write_failed", f->src.path,
		 (unsigned long long)idx, strerror(-err));
}

static void fetch_inflight(struct engine_file *f, struct inflight *inf, struct http_client *http)
{
	struct engine *e = f->eng;
	struct cache_file *cf = NULL;
	char *mem = NULL;
	uint64_t xxh3 = 0;
	bool held = false, no_range;
	char reason[256] = "";
	int rc;

	pthread_mutex_lock(&f->lock);
	no_range = f->src.no_range;
	pthread_mutex_unlock(&f->lock);
	if (no_range) {
		fetch_streamed(f, inf, http);
		return;
	}
	rc = file_cache_retried(f, http, &cf);
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
static void fetch_run(struct inflight **run, int n, struct run_ctl *ctl, struct http_client *http)
{
	struct engine_file *f = run[0]->file;
	struct cache_file *cf = NULL;
	bool no_range, cur_aborted = false, disk_failed;
	int rc = 0, reserved = 0, committed = 0, disk_err = 0;
	char reason[256] = "";

	pthread_mutex_lock(&f->lock);
	no_range = f->src.no_range;
	pthread_mutex_unlock(&f->lock);
	if (n > 1 && !no_range)
		rc = file_cache_retried(f, http, &cf);
	for (; n > 1 && !no_range && rc == 0 && reserved < n; reserved++)
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
	if (no_range) {
		/* The file's one stream completes every block asked for,
		 * run[1..] included, as it passes them. */
		fetch_inflight(f, run[0], http);
		return;
	}
	for (int i = committed; i < n; i++) {
		if (i < reserved && !disk_failed)
			complete_block(f, cf, run[i]->idx, rc ? rc : -EIO, NULL, false, reason);
		else
			fetch_inflight(f, run[i], http);
	}
}

static void *worker_main(void *arg)
{
	struct engine *e = arg;
	struct http_client *http = NULL;
	uint32_t most = e->cfg->block_size / engine_cache_block_size(e->cfg);
	struct inflight **run = calloc(most ? most : 1, sizeof(*run));
	struct run_ctl ctl;

	if (!run || http_client_new(&http) != 0)
		log_error("event=worker_start error=\"cannot create an HTTP client\"");
	while (run && http) {
		bool prefetch = false;
		int n;

		atomic_init(&ctl.cancel, 0);
		ctl.answered = false;	/* no block points at ctl between runs */
		n = queue_pop(e, run, &ctl, &prefetch);
		if (n == 0)
			break;
		fetch_run(run, n, &ctl, http);
		if (prefetch)
			prefetch_slot_done(e);
	}
	free(run);
	http_client_free(http);
	pthread_mutex_lock(&e->qlock);
	e->workers_live--;
	pthread_cond_broadcast(&e->stop_cond);
	pthread_mutex_unlock(&e->qlock);
	return NULL;
}

int fetch_start(struct engine *e)
{
	e->nworkers = e->cfg->connections;
	/* A quarter of the workers wait for readers, unless told otherwise. */
	if (e->prefetch_reserve < 0)
		e->prefetch_reserve = e->nworkers / 4;
	if (e->prefetch_reserve >= e->nworkers)
		e->prefetch_reserve = e->nworkers - 1;
	e->workers = calloc(e->nworkers, sizeof(*e->workers));
	if (!e->workers)
		return -ENOMEM;
	e->workers_live = e->nworkers;
	for (int i = 0; i < e->nworkers; i++) {
		int rc = pthread_create(&e->workers[i], NULL, worker_main, e);

		if (rc) {
			pthread_mutex_lock(&e->qlock);
			e->workers_live -= e->nworkers - i;
			pthread_mutex_unlock(&e->qlock);
			e->nworkers = i;
			return -rc;
		}
	}
	return 0;
}

/* Fail every queued block: nobody will fetch it. */
static void drain_queue(struct engine *e, struct inflight **head)
{
	struct inflight *inf, *next;

	for (inf = *head; inf; inf = next) {
		struct engine_file *f = inf->file;
		struct waiter *w, *wn;

		next = inf->qnext;
		pthread_mutex_lock(&f->lock);
		f->inflight[inf->idx] = NULL;
		w = inf->waiters;
		pthread_mutex_unlock(&f->lock);
		for (; w; w = wn) {
			wn = w->next;
			if (w->pf) {
				prefetch_done(w->pf, -ECANCELED, "stopped");
			} else {
				read_error(w->pr, -EIO);
				read_finish(w->pr);
			}
			free(w);
		}
		free(inf);
	}
	*head = NULL;
}

/* Stop the downloads under way: all of them, or all but those of blocks
 * a reader has already had bytes of. */
static void cancel_downloads(struct engine *e, bool answered_too)
{
	for (size_t i = 0; i < e->nfiles; i++) {
		struct engine_file *f = e->files[i];

		pthread_mutex_lock(&f->lock);
		for (uint64_t idx = 0; idx < f->nblocks; idx++) {
			struct inflight *inf = f->inflight[idx];
			struct run_ctl *ctl;

			if (!inf)
				continue;
			ctl = atomic_load(&inf->run);	/* alive while inf points at it */
			if (ctl && (answered_too || !ctl->answered))
				atomic_store(&ctl->cancel, 1);
			else if (!ctl && (answered_too || !inf->answered))
				atomic_store(&inf->cancel, 1);
		}
		pthread_mutex_unlock(&f->lock);
	}
}

void fetch_stop(struct engine *e)
{
	struct timespec until;

	atomic_store(&e->stop, 1);
	/* A read answered early left the rest of its block in flight. Finish
	 * those blocks (for a while): what a program read stays cached, and an
	 * offline remount can read it again. Every other download stops now. */
	cancel_downloads(e, false);
	until = clock_deadline(CLOCK_REALTIME, STOP_FINISH_MS);
	pthread_mutex_lock(&e->qlock);
	pthread_cond_broadcast(&e->qcond);
	pthread_cond_broadcast(&e->stop_cond);
	while (e->workers_live > 0 &&
	       pthread_cond_timedwait(&e->stop_cond, &e->qlock, &until) == 0)
		;
	pthread_mutex_unlock(&e->qlock);
	cancel_downloads(e, true);
	for (int i = 0; i < e->nworkers; i++)
		pthread_join(e->workers[i], NULL);
	free(e->workers);
	e->workers = NULL;
	e->nworkers = 0;
	for (int q = 0; q < PRIO_COUNT; q++) {
		drain_queue(e, &e->qhead[q]);
		e->qtail[q] = NULL;
	}
	for (size_t i = 0; i < e->nfiles; i++)
		strict_release(e->files[i], -EIO);
	kept_free(e);
}

/* ---- prefetch --------------------------------------------------------- */

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

void fetch_kick(struct engine *e)
{
	pthread_mutex_lock(&e->qlock);
	pthread_cond_broadcast(&e->qcond);
	pthread_mutex_unlock(&e->qlock);
}

void engine_set_prefetch_reserve(struct engine *e, int workers)
{
	pthread_mutex_lock(&e->qlock);
	e->prefetch_reserve = workers;
	pthread_mutex_unlock(&e->qlock);
}
