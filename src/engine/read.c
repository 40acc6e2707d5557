/*
 * read.c: engine_read(). A read is split into blocks; each one is copied
 * from the cache, or waited for (want_block(): a waiter on the block's
 * inflight, queued at demand priority), and the read is answered by the
 * thread that completes its last block, so it never waits on the network
 * here. Blocks are small (256 KiB for files new to the cache:
 * engine_i.h), so a read fetches little more than it asked for.
 *
 * Readahead is per file, not per handle: once a streak of reads from
 * block b to b+1 is longer than RA_START_BYTES the window doubles with
 * each read (2, 4, ... blocks, up to 32 download units ahead); a jump
 * elsewhere resets it to none. Reads
 * that stay near the start (a safetensors header and the kernel's
 * readahead behind it, Forge's 64 KiB probe at 1 MiB) fetch only the
 * blocks they touch.
 *
 * Loaders read tensors in model order, not file order, which readahead
 * cannot follow: once LOADER_TENSOR_READS reads in a safetensors file's
 * tensor data have started where a tensor starts, every missing block of
 * the file is queued as readahead (fetch_whole()). Random reads (a tool,
 * a benchmark) rarely start a tensor, so they fetch only their blocks,
 * however many MiB they add up to, until they have read a good part of
 * the file (LOADER_SHARE).
 *
 * verify = "strict": reads of a file not verified yet are parked on it
 * and the whole file is asked for; the verifier's verdict releases them:
 * failed at once, or read afresh on a worker (queue_resume()).
 *
 * A file listed without a cache file (its origin was down at mount and
 * its content key is not settled) has no layout yet: the cache may hold
 * its bytes in another block size than the one it would get, and which
 * file they are in is known only once the origin names them. Its reads
 * are parked too, and a worker resolves it (parked_resume()), adopting
 * the stored layout, before any of them computes a block index. Parking
 * the read is simpler than laying the file out again once blocks were
 * asked for in a guessed layout: their waiters, readahead and runs would
 * all have to move. It costs nothing a resolution did not already cost:
 * the first read of such a file waited for the origin anyway.
 *
 * Locks: f->lock guards the readahead and loader state and the parked
 * reads; queue.c's qlock is taken inside it (promote), the cache's reads
 * outside it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"
#include "modelfs/modelinfo.h"

#define RA_MAX_WINDOW 32		/* in block_size units */
/* A streak of reads must pass this before readahead starts: a header read
 * (the kernel reads up to 1 MiB ahead of it) and then Forge's probe at
 * 1 MiB (read through a 1 MiB buffer) look sequential, and are not. */
#define RA_START_BYTES (2u << 20)
/* A late resolution that failed fails the reads that follow at once for
 * this long (as a failed block does, inflight.c). */
#define UNRESOLVED_RETRY_MS 1000

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
	/* Queued under f->lock: a stream (fetch_streamed()) completes and
	 * frees the blocks in f->inflight[] as it passes them. */
	if (created)
		enqueue(f->eng, inf);
	else
		promote_locked(f->eng, inf, PRIO_DEMAND);
	pthread_mutex_unlock(&f->lock);
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
/* A loader reads tensor by tensor: a per-tensor read() starts at its
 * tensor's page, and an mmap fault on a tensor's first page makes the
 * kernel read around it, the fault page in the middle of the read
 * (read_ahead_kb / 2 in). A few such reads make a loader; random reads
 * land on a tensor's first page about once in (data / tensors / 4 KiB)
 * tries: 1 in 160 for a 1 GiB checkpoint. */
#define LOADER_TENSOR_READS 3
#define PAGE_BYTES 4096u
/* Without tensor-shaped reads (no header cached, or a loader of its own
 * kind), this share of the file read in tensor data, out of order (a
 * sequential streak is readahead's), makes a loader: by then the rest
 * costs at most 4x what was read. */
#define LOADER_SHARE 4
#define LOADER_BYTES (4u << 20)

/* Where f's tensor data starts, from its first bytes in the cache: 8 + N
 * for a safetensors file (N, little-endian, then a JSON header; read by
 * modelinfo_header_len(), as `modelfs info` reads it). Other
 * formats are left to readahead (NOT_A_MODEL): their loaders read in
 * file order, or nothing tells a loader from a tool reading a few parts.
 * 0 while the first block is not cached. */
#define NOT_A_MODEL UINT64_MAX
static uint64_t find_data_start(struct engine_file *f, struct cache_file *cf)
{
	unsigned char head[9];
	uint64_t len, need;

	if (!cache_block_present(cf, 0) || cache_read(cf, head, 0, sizeof(head)) != sizeof(head))
		return 0;
	if (modelinfo_detect(head, sizeof(head)) != MODELINFO_SAFETENSORS ||
	    modelinfo_header_len(MODELINFO_SAFETENSORS, head, sizeof(head), (uint64_t)f->src.size,
				 &len, &need) != 0)
		return NOT_A_MODEL;
	return len;
}

/* f's tensor starts, from its header in the cache (the header blocks
 * must all be there: a loader has read them), into f->tensor_starts.
 * Called without f->lock. */
static void load_tensor_starts(struct engine_file *f, struct cache_file *cf, uint64_t start)
{
	uint64_t *starts = NULL, need;
	uint32_t cbs = cache_file_block_size(cf);
	unsigned char *head;
	size_t n = 0;
	ssize_t got;
	int rc = -ENODATA;

	for (uint64_t i = 0; i <= (start - 1) / cbs; i++)
		if (!cache_block_present(cf, i)) {
			log_debug("event=tensor_starts_later path=%s block=%llu", f->src.path,
				  (unsigned long long)i);
			return;
		}
	head = malloc(start);
	if (!head)
		return;
	got = cache_peek(cf, head, 0, start);
	if (got == (ssize_t)start)
		rc = modelinfo_tensor_starts(head, start, (uint64_t)f->src.size, &starts, &n, &need);
	if (rc)
		log_debug("event=tensor_starts_unread path=%s got=%zd rc=%d", f->src.path, got, rc);
	if (rc == 0) {
		pthread_mutex_lock(&f->lock);
		if (!f->tensor_starts && starts) {
			f->tensor_starts = starts;
			f->ntensor_starts = n;
			starts = NULL;
		}
		pthread_mutex_unlock(&f->lock);
	}
	free(starts);
	free(head);
}

/* Whether a tensor of f starts in the page at off; under f->lock. */
static bool tensor_page_locked(const struct engine_file *f, uint64_t off)
{
	uint64_t lo = off / PAGE_BYTES * PAGE_BYTES;
	size_t a = 0, b = f->ntensor_starts;

	while (a < b) {		/* the first start >= lo */
		size_t m = a + (b - a) / 2;

		if (f->tensor_starts[m] < lo)
			a = m + 1;
		else
			b = m;
	}
	return a < f->ntensor_starts && f->tensor_starts[a] < lo + PAGE_BYTES;
}

/* A read of len at off: when reads in tensor data, away from what a
 * webui's header read and probe touch, look like a loader's (see
 * LOADER_TENSOR_READS), queue every missing block, in file order from
 * off, as readahead: the blocks the loader waits for still go first, and
 * it gets every connection (at prefetch priority, which leaves a quarter
 * idle for readers, a 1 GiB load under a 20 MiB/s cap took 3.7-3.9 s
 * instead of 3.2). */
static void fetch_whole(struct engine_file *f, uint64_t off, size_t len)
{
	struct inflight **batch = NULL;
	struct cache_file *cf;
	uint64_t start, size = (uint64_t)f->src.size, share, tensor_bytes;
	uint32_t tensor_reads;
	size_t n = 0;
	bool loader, have_starts;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	start = f->data_start;
	have_starts = f->tensor_starts != NULL;
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
	if (!have_starts)
		load_tensor_starts(f, cf, start);
	share = size / LOADER_SHARE > LOADER_BYTES ? size / LOADER_SHARE : LOADER_BYTES;
	pthread_mutex_lock(&f->lock);
	if (f->ra_window > 0) {
		/* In a sequential streak (readahead() has seen this read): a
		 * reader in file order, which readahead serves. */
		pthread_mutex_unlock(&f->lock);
		return;
	}
	f->tensor_read += len;
	if (f->tensor_starts && (tensor_page_locked(f, off) ||
				 (len > PAGE_BYTES && tensor_page_locked(f, off + len / 2))))
		f->tensor_reads++;
	tensor_reads = f->tensor_reads;
	tensor_bytes = f->tensor_read;
	loader = tensor_reads >= LOADER_TENSOR_READS || tensor_bytes >= share;
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
		log_info("event=loader_read path=%s offset=%llu tensor_reads=%u read=%llu "
			 "action=\"fetching the other %zu missing blocks in parallel\"", f->src.path,
			 (unsigned long long)off, tensor_reads, (unsigned long long)tensor_bytes, n);
	enqueue_batch(f->eng, batch, n);
	free(batch);
}

/* verify = strict and not verified yet: the caller holds f->lock, and
 * f has its cache file. */
static bool strict_waits(struct engine_file *f)
{
	enum store_file_state st;

	if (f->src.entry->verify != CONFIG_VERIFY_STRICT)
		return false;
	st = cache_file_state(f->cf, NULL, NULL);
	return st != STORE_VERIFIED && st != STORE_COMPLETE;
}

/* Queue every missing block of f as demand: a strict reader waits for
 * the whole file. A refetch that queues blocks counts as a pass: counted
 * here, under the lock that queues them, so that two blocks ending a
 * pass at once start (and count) one pass, not two. */
static void fetch_all(struct engine_file *f, bool refetch)
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
	if (n && refetch)
		f->strict_passes++;
	enqueue_batch(f->eng, batch, n);	/* under f->lock, as in want_block() */
	pthread_mutex_unlock(&f->lock);
	free(batch);
	if (n == 0 && cf && cache_file_complete(cf))
		verify_enqueue(f);	/* all there, only the hash is missing */
}

/* Refetches for one batch of parked reads: more means the cache evicts
 * f's blocks as fast as they arrive (prefetch.c gives up after as many). */
#define STRICT_PASSES 3

void strict_refetch(struct engine_file *f)
{
	bool again, passing = false;

	if (f->src.entry->verify != CONFIG_VERIFY_STRICT)
		return;		/* its parked reads, if any, wait for its layout */
	pthread_mutex_lock(&f->lock);
	/* Only once the pass is over: its last block calls again. */
	for (uint64_t i = 0; f->parked && i < f->nblocks && !passing; i++)
		passing = f->inflight[i] != NULL;
	if (passing) {
		pthread_mutex_unlock(&f->lock);
		return;
	}
	again = f->parked && f->strict_passes < STRICT_PASSES;
	pthread_mutex_unlock(&f->lock);
	if (again && (uint64_t)f->src.size <= engine_cache_capacity(f->eng)) {
		fetch_all(f, true);
	} else if (strict_parked(f)) {
		log_error("event=strict_unservable path=%s error=\"verify = strict needs the whole "
			  "file in the cache, and the cache evicts it faster than it arrives\"",
			  f->src.path);
		strict_release(f, -EIO);
	}
}

void parked_resume(struct engine_file *f, struct http_client *http)
{
	struct parked_read *p, *next;
	struct cache_file *cf;
	char reason[256];
	int rc = 0;

	cf = engine_file_cache(f);
	if (!cf)
		rc = atomic_load(&f->eng->stop) ? -ECANCELED : file_cache_retried(f, http, &cf);
	if (rc) {
		/* The kernel asks again at once, page by page: those fail now too
		 * rather than each wait for the origin again. */
		pthread_mutex_lock(&f->lock);
		f->unresolved_until_ms = clock_now_ms() + UNRESOLVED_RETRY_MS;
		pthread_mutex_unlock(&f->lock);
		resolve_reason(rc, reason, sizeof(reason));
		if (rc != -ECANCELED)
			log_error("event=fetch_failed path=%s error=\"%s\"", f->src.path, reason);
		parked_fail(f, rc == -EACCES ? -EACCES : -EIO);
		return;
	}
	for (p = parked_take(f); p; p = next) {
		next = p->next;
		engine_read(f, p->off, p->len, p->cb, p->arg);
		free(p);
	}
}

/* The warm path: every block of pr in the cache: one cache read for all
 * of it (which checks a block not checked yet in this mount, cache.h
 * (1)), answered here. A file all in the cache needs no readahead and is
 * no loader's to fetch. False, with nothing answered, when some block
 * must come from elsewhere (or failed its check: want_block() fetches it). */
static bool read_cached(struct pending_read *pr)
{
	struct engine_file *f = pr->file;
	struct cache_file *cf;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (!cf || cache_read(cf, pr->buf, pr->off, pr->len) != (ssize_t)pr->len)
		return false;
	if (!cache_file_complete(cf)) {
		readahead(f, pr->off / pr->block_size, (pr->off + pr->len - 1) / pr->block_size);
		fetch_whole(f, pr->off, pr->len);
	}
	read_finish(pr);
	return true;
}

void engine_read(struct engine_file *f, uint64_t off, size_t len, engine_read_cb cb, void *arg)
{
	struct pending_read *pr;
	uint64_t size = f->src.size < 0 ? 0 : (uint64_t)f->src.size;
	uint32_t bs;
	int err;

	pthread_mutex_lock(&f->lock);
	err = f->err;
	/* No byte to read needs no layout: nothing is asked of the origin. */
	if (!err && !f->cf && (off >= size || len == 0)) {
		pthread_mutex_unlock(&f->lock);
		cb(arg, "", 0);
		return;
	}
	if (!err && !f->cf && clock_now_ms() < f->unresolved_until_ms)
		err = -EIO;
	if (!err && (!f->cf || strict_waits(f))) {
		struct parked_read *p = calloc(1, sizeof(*p));
		bool first = !f->parked, laid_out = f->cf != NULL;

		if (p) {
			*p = (struct parked_read){ .off = off, .len = len, .cb = cb, .arg = arg,
						   .next = f->parked };
			f->parked = p;
		}
		pthread_mutex_unlock(&f->lock);
		if (!p)
			cb(arg, NULL, -ENOMEM);
		else if (first && !laid_out)
			queue_resume(f->eng, f);	/* resolved first, then read afresh */
		else if (first)
			fetch_all(f, false);
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
	if (read_cached(pr))
		return;
	for (uint64_t idx = off / bs; idx <= (off + len - 1) / bs; idx++)
		want_block(pr, idx);
	readahead(f, off / bs, (off + len - 1) / bs);
	fetch_whole(f, off, len);
	read_finish(pr);
}

/* engine_read() made synchronous. */
struct waited_read {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	char *dst;
	ssize_t len;
};

static void waited_read_done(void *arg, const char *buf, ssize_t len)
{
	struct waited_read *w = arg;

	if (len > 0)
		memcpy(w->dst, buf, (size_t)len);
	pthread_mutex_lock(&w->lock);
	w->len = len;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

ssize_t engine_read_wait(struct engine_file *f, void *buf, uint64_t off, size_t len)
{
	struct waited_read w = { .dst = buf };

	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	engine_read(f, off, len, waited_read_done, &w);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return w.len;
}
