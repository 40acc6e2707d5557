/*
 * engine_i.h: the engine's shared state, private to src/engine/.
 *
 * How a read is answered: it is split into the cache's blocks; present
 * blocks are copied from the cache, missing ones are fetched once each by
 * a bounded pool of workers (one HTTP connection each), and the read is
 * answered by whichever thread completes its last block. So a FUSE thread
 * never waits on the network, and eight readers of one cold block cause
 * one request. A reader does not wait for the rest of a block it needs
 * only the start of: a block's bytes arrive in order, and the fetcher
 * answers each waiting read as soon as its bytes are in (a safetensors
 * header, the first byte).
 *
 * The modules, by job (each file says more at its top):
 *   catalog.c   the files of a mount: resolving, opening, state, and
 *               what follows the verifier's verdicts (verify_ops)
 *   read.c      engine_read(): blocks wanted, readahead, loaders, strict
 *               files' whole-file fetch, reads waiting for a file's late
 *               resolution, and resumed reads
 *   inflight.c  blocks being fetched, their waiters, completing them,
 *               uncached blocks kept in memory, strict files' parked reads
 *   queue.c     the priority queues workers take runs of blocks from
 *   pool.c      the workers: start, stop, drain, cancel
 *   fetch.c     one download unit: a run or a block, reserved, downloaded,
 *               committed (or served from memory), completed
 *   download.c  one range from the shared bucket, the tier, the data URL
 *               or a mirror, retried
 *   backoff.c   how long to wait before a retry, and waiting it out
 *   sink.c      where a range's bytes land: buffered, hashed, committed
 *               block by block, early answers
 *   refresh.c   resolving a file at first read, renewing its data URL
 *   stream.c    origins without Range: one stream, in order
 *   verify.c    files hashed as they land (the running hash), the verdict
 *   share.c     the shared bucket: verified files uploaded in the background
 *   file_queue.c  files waiting for a background thread (verifier, uploader)
 *   prefetch.c  whole files ahead of readers, and asking for blocks on
 *               behalf of a prefetch (fetch_prefetch_block())
 *   headers.c   model headers at mount and of files a reload adds (their
 *               lengths: formats/modelinfo.c)
 * download_i.h is what fetch.c, download.c, sink.c, refresh.c,
 * stream.c and backoff.c share.
 *
 * Lock order: the only list, for every lock the engine takes or calls
 * into. A lock may be taken while one above it is held, never one below.
 *   -1. The front's locks held across a call into the engine: a reload's
 *      (front/reload.c: one reload at a time, across its
 *      engine_add_entries() and drops) and an on-demand add's
 *      (serve/ondemand.c). The engine never takes them.
 *   0. engine.add_lock (catalog.c: one engine_add_entries() at a time,
 *      its appends, and start_added()'s hashing of an added file; taken
 *      before any other engine lock).
 *   1. engine_file.lock: one file's at a time (blame_mismatch(),
 *      cancel_downloads() and drain_queue() take them one after another).
 *   2. Taken with a file's lock held, or alone; each a leaf (nothing
 *      else is taken while one is held):
 *      engine.qlock (queue.c, pool.c; the condvars qcond and stop_cond),
 *      engine.mem_lock (inflight.c: deliver_kept() under a file's lock),
 *      prefetch_req.lock (fetch_prefetch_block() under a file's lock),
 *      the tier's lock (its struct downtime, http/downtime.c: inside
 *      tier_route() in tier_attempt(), under a file's lock;
 *      tier_report() alone).
 *   3. The cache's, taken inside cache_* calls, with a file's lock held
 *      or alone: cache.open_lock, then cache.space_lock, then a
 *      cache_file's lock (and its condvar run_idle, waited on by
 *      cache_file_hash() with no other lock held), then cache.touch_lock
 *      (block uses gathered for the store), then the store's (a leaf;
 *      store.h).
 *   Leaves taken with no engine lock held but add_lock: the file
 *   queues' locks (file_queue.c: engine.vqueue, the verifier's;
 *   engine.uqueue, the uploader's), engine.headers_lock (headers.c;
 *   let go while it joins the header thread), engine.vdone_lock
 *   (verify.c; its condvar vdone, which engine_prefetch() waits on), the
 *   resolver's
 *   resolve_pool.lock (catalog.c), and what sources and http take
 *   inside their calls (source_ctx.facts_lock, a source_token's lock,
 *   held across its token's check request; the bandwidth lock; the
 *   shared bucket's lock and its downtime's).
 *   The front's other locks are never held across a call into the engine:
 *   control_server.lock (control.c), a prefetch run's lock
 *   (prefetch_run.c), retention's, fs.refused_lock and the local layer's;
 *   an engine callback takes its caller's own lock with no engine lock held.
 * No engine lock is held across the network, a disk hash, or a callback;
 * a thread waiting on a condvar holds only that condvar's lock.
 */
#ifndef MODELFS_ENGINE_I_H
#define MODELFS_ENGINE_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "modelfs/engine.h"
#include "modelfs/source.h"
#include "modelfs/bucket.h"
#include "modelfs/tier.h"

struct http_client;
struct verify_ops;

/* Which queue a block waits in; workers take the first non-empty one. */
enum fetch_prio {
	PRIO_DEMAND,		/* a reader waits for it */
	PRIO_READAHEAD,		/* a sequential reader will want it soon */
	PRIO_PREFETCH,		/* prefetch: only once readers have what they need */
	PRIO_COUNT,
};

/* The blocks one engine_prefetch() call, or the header prefetch, asked
 * for (prefetch.c, headers.c). */
struct prefetch_req {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* with lock: a block finished */
	int outstanding;		/* asked for, not finished; protected by lock */
	int err;			/* the first final failure; protected by lock */
	char reason[256];		/* its reason; protected by lock */
};

/* A read of a strict file, parked until the file is verified. */
struct parked_read {
	uint64_t off;
	size_t len;
	engine_read_cb cb;
	void *arg;
	struct parked_read *next;
};

/* One engine_read() call while its blocks arrive (read.c); freed by
 * read_finish() when the last one is in. */
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

/* Who waits for an inflight block: a read, or a prefetch (one is set). */
struct waiter {
	struct pending_read *pr;
	struct prefetch_req *pf;
	struct waiter *next;
};

/* What the blocks of one run (adjacent blocks in one request, fetch.c)
 * share. Owned by the worker that runs it, reused for its next run. */
struct run_ctl {
	atomic_int cancel;		/* the request stops when set (engine stop) */
	bool answered;			/* a reader has had bytes of it; under the file's lock */
};

/* One block being fetched: created by the first reader that misses it,
 * completed by the worker that fetched it. */
struct inflight {
	struct engine_file *file;
	uint64_t idx;
	struct waiter *waiters;		/* protected by file->lock */
	/* The least block-relative end of a waiting read: once the fetch
	 * has that many bytes it answers early. Written under file->lock,
	 * read by the fetching worker without it. UINT64_MAX: none. */
	_Atomic uint64_t early_end;
	bool answered;			/* a reader has had bytes of it; protected by file->lock */
	atomic_int cancel;		/* its download stops when set (engine stop) */
	/* The run it is downloaded in (fetch.c), whose cancel and answered
	 * stand for the whole request; NULL when alone, and cleared under
	 * file->lock before the run's worker lets go of it. */
	_Atomic(struct run_ctl *) run;
	uint8_t prio;			/* enum fetch_prio; protected by engine.qlock */
	bool queued;			/* protected by engine.qlock */
	struct inflight *qnext;		/* protected by engine.qlock */
};

#define ENGINE_MEM_BLOCKS 4

/* The cache's unit (cache.h's block) for files first cached from now on:
 * presence and an XXH3 per ENGINE_CACHE_BLOCK, so a header read, a probe
 * or a random read fetches (and a restart re-checks) little more than it
 * asked for. block_size in the config stays the download unit: a worker
 * fetches a run of adjacent queued blocks, up to block_size, with one
 * request. 256 KiB, not 1 MiB: see docs/PERFORMANCE.md. Files cached
 * with another block size keep it (cache.h (2)). */
#ifndef ENGINE_CACHE_BLOCK
#define ENGINE_CACHE_BLOCK (256u << 10)
#endif
static inline uint32_t engine_cache_block_size(const struct config *cfg)
{
	return cfg->block_size < ENGINE_CACHE_BLOCK ? cfg->block_size : ENGINE_CACHE_BLOCK;
}

/* An uncached block kept in memory (struct engine's kept[]). */
struct kept_block {
	struct engine_file *file;
	uint64_t idx;
	char *buf;
	uint64_t used;			/* kept_clock at its last use: the least goes first */
	int refs;			/* its fetcher still answers from it: not dropped */
};

struct engine_file {
	struct engine *eng;
	struct source_file src;		/* path, size fixed; data_url, validator, sha256 and
					 * git_sha1 (learnt at a late resolve) under lock */
	int64_t mtime;
	/* f's layout: nblocks, block_size, run_blocks and the length of
	 * inflight[]. It is its cache file's, so it is known once f->cf is
	 * set: at add_file(), before f is published, or for a file listed
	 * without a cache file, when file_cache() opens one at its late
	 * resolution, under f->lock and together with f->cf. Until then no
	 * block of f is asked for (its reads wait, read.c), so a layout
	 * never changes under an index computed from it. Read without the
	 * lock only after f->cf was seen set under it. */
	uint64_t nblocks;
	uint32_t block_size;		/* its cache file's (cache.h (2)) */
	uint32_t run_blocks;		/* blocks one request may cover (block_size / cache
					 * block, at least 1) */
	pthread_mutex_t lock;
	/* Its cache file: set at add_file() for a file listed resolved, and
	 * for one listed unresolved whose content key is settled (source.h:
	 * a sha256 the config gives), so that its cached bytes are read
	 * with its origin down; else at its late resolution. Protected by lock. */
	struct cache_file *cf;
	/* Its source was asked, or it was listed from a resolution (the
	 * origin's, a stored one, a lock): file_cache() resolves the others
	 * before their first download. Implies cf; protected by lock. */
	bool resolved;
	bool resolving;			/* a worker resolves it; protected by lock */
	bool streaming;			/* no Range: a worker streams it; protected by lock */
	bool refreshing;		/* a worker renews the data URL; protected by lock */
	uint32_t url_gen;		/* counts the renewals; protected by lock */
	int refresh_rc;			/* how the last renewal ended; protected by lock */
	pthread_cond_t resolve_done;	/* with lock: resolving or a renewal ended */
	atomic_bool verify_queued;
	atomic_bool partial_logged;	/* "state=partial" was logged */
	atomic_bool uncached_logged;	/* "serving_uncached" was logged */
	atomic_bool shadowed;		/* a local file of its name is served instead */
	/* Blocks this file's origin gave its cache file since that was last
	 * emptied: entries with one sha256 share a cache file, and a hash
	 * mismatch blames the one whose origin gave the bytes. */
	atomic_ullong fetched;
	atomic_ullong arriving;		/* bytes received of blocks not committed yet:
					 * progress between two blocks */
	atomic_ullong bytes_tier;	/* downloaded through the shared tier, this run */
	atomic_ullong bytes_bucket;	/* read from the shared bucket, this run */
	atomic_bool upload_queued;	/* offered to the shared bucket, this run */
	atomic_ullong bytes_origin;	/* downloaded from the origin or a mirror, this run */
	struct inflight **inflight;	/* [nblocks]; protected by lock */
	uint64_t ra_last;		/* last block read; protected by lock */
	uint64_t ra_first;		/* where the current sequential streak began; under lock */
	uint32_t ra_window;		/* blocks fetched ahead; protected by lock */
	bool ra_seen;			/* protected by lock */
	uint64_t data_start;		/* where tensor data starts; 0: not known yet; under lock */
	uint64_t tensor_read;		/* bytes read in tensor data (fetch_whole()); under lock */
	uint64_t *tensor_starts;	/* where its tensors start, ascending, once read from
					 * the cached header; NULL before; under lock */
	size_t ntensor_starts;		/* under lock */
	uint32_t tensor_reads;		/* reads in tensor data that start a tensor; under lock */
	bool whole_queued;		/* a loader was seen: every block is queued; under lock */
	/* Reads waiting: for the layout (no cache file yet, read.c), or
	 * for the file to be verified (verify = strict); protected by lock. */
	struct parked_read *parked;
	int strict_passes;		/* strict_refetch()es for them; protected by lock */
	/* Resolved or verified with reads parked: a worker reads them afresh
	 * (queue_resume()). */
	struct engine_file *resume_next;	/* protected by engine.qlock */
	bool resume_queued;		/* protected by engine.qlock */
	uint64_t failed_idx;		/* the last block whose fetch failed for good
					 * (its download unit fails at once)... */
	int64_t failed_until_ms;	/* ...fails again at once until then; protected by lock */
	int failed_err;			/* protected by lock */
	int64_t unresolved_until_ms;	/* its late resolution just failed: reads waiting
					 * for it fail at once until then; under lock */
	int err;			/* final error that fails every read; protected by lock */
	char *error;			/* its reason; protected by lock */
	/* engine_file_drop() (engine.h): no new opens; those holding it
	 * (engine_file_hold()) keep reading. */
	atomic_bool gone;
	atomic_int holds;
	const char *mirror_bearer;	/* its entry's mirror credential, or NULL; owned by
					 * the engine (mirror_bearer, or a bearers row) */
};

/* Files waiting for a background thread (file_queue.c). */
struct file_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* with lock: a file pushed, or stopping */
	struct engine_file **items;	/* protected by lock */
	size_t len, cap;		/* protected by lock */
	atomic_int *stop;		/* the engine's: set, the queue takes no more */
};

struct engine {
	const struct config *cfg;
	const struct engine_opts *opts;	/* engine_open_with()'s, or NULL; read-only */
	struct cache *cache;
	struct source_ctx *sources;
	struct tier *tier;		/* cache_proxy, or NULL */
	struct bucket *bucket;		/* shared_cache, or NULL; set at open */

	struct file_queue uqueue;	/* verified files to upload (share.c) */
	pthread_t uploader;
	bool uploader_started;
	char **mirror_bearer;		/* per config entry: "Bearer T" from its
					 * mirror_token_file, or NULL; set at open,
					 * read-only after; secret */
	/* The file list (engine.h): append-only, read with no lock. A
	 * reader loads nfiles, then files, and every file below that count
	 * is there. An append writes the slot (in a new array when full:
	 * the pointers copied, the old array kept in retired until close,
	 * for a reader still on it), then publishes files, then nfiles.
	 * Files never move and are freed only at engine_close(). */
	struct engine_file **_Atomic files;
	_Atomic size_t nfiles;
	size_t files_cap;		/* protected by add_lock */
	struct engine_file ***retired;	/* arrays files outgrew; protected by add_lock */
	size_t nretired;		/* protected by add_lock */
	char **bearers;			/* mirror credentials of added entries; secret;
					 * protected by add_lock */
	size_t nbearers;		/* protected by add_lock */
	struct config **configs;	/* engine_keep_config()'s; protected by add_lock */
	size_t nconfigs;		/* protected by add_lock */
	pthread_mutex_t add_lock;	/* appends, one engine_add_entries() at a time
					 * (its resolving is done before); taken before
					 * any other engine lock */
	atomic_bool started;		/* engine_start() ran: added files are queued for
					 * hashing as at start */

	pthread_mutex_t qlock;
	pthread_cond_t qcond;		/* work queued, or stopping */
	struct inflight *qhead[PRIO_COUNT], *qtail[PRIO_COUNT];	/* protected by qlock */
	/* Files whose parked reads a worker reads afresh, resolving the file
	 * first when it has no layout yet, before any block (they are
	 * readers waiting); protected by qlock. */
	struct engine_file *resume_head;
	pthread_t *workers;
	int nworkers;
	int prefetch_busy;		/* workers on a prefetch block; protected by qlock */
	int prefetch_reserve;		/* workers prefetch leaves to readers; protected by qlock */
	int64_t reader_ms;		/* a reader's block was last queued (clock_now_ms());
					 * protected by qlock */
	atomic_int stop;
	pthread_cond_t stop_cond;	/* with qlock: backoff sleeps wake at stop, and
					 * fetch_stop() learns that workers exited */
	int workers_live;		/* workers not exited yet; protected by qlock */

	/* Blocks read without caching (the cache has no room): at most
	 * ENGINE_MEM_BLOCKS buffers, being fetched or kept. Kept ones serve
	 * the reads that follow, which would otherwise fetch the block again
	 * for each kernel read. */
	pthread_mutex_t mem_lock;
	pthread_cond_t mem_cond;
	int mem_blocks;			/* being fetched; protected by mem_lock */
	struct kept_block kept[ENGINE_MEM_BLOCKS];	/* protected by mem_lock */
	int nkept;			/* protected by mem_lock */
	uint64_t kept_clock;		/* protected by mem_lock */

	struct file_queue vqueue;	/* complete files to hash (verify.c) */
	pthread_mutex_t vdone_lock;	/* a leaf */
	pthread_cond_t vdone;		/* with vdone_lock: a file's verdict was reported */
	uint64_t verdicts;		/* how many were; protected by vdone_lock */
	pthread_t verifier;
	bool verifier_started;
	const struct verify_ops *verify_ops;	/* the catalog's; set at open, read-only after */

	pthread_mutex_t headers_lock;	/* a leaf; guards the four below */
	pthread_t headers;		/* engine_prefetch_headers() */
	bool headers_started;		/* not joined yet */
	bool headers_running;		/* not at its end */
	size_t headers_done, headers_end;	/* files [0, done) had a pass */
	/* engine_set_loader_sink(); under qlock */
	engine_block_sink loader_sink;
	void *loader_arg;
};

/* catalog.c */
/* A new HTTP client for one thread (engine_opts.client_new): 0 or -errno. */
int engine_client_new(const struct engine_opts *opts, struct http_client **out);
/* Give f its cache file cf and cf's layout (struct engine_file): inflight
 * is a zeroed array of cache_file_nblocks(cf) (at least 1) entries, which
 * f takes. The caller holds f->lock, or f is not published yet; no block
 * of f is being fetched. */
void engine_file_lay_out(struct engine_file *f, struct cache_file *cf, struct inflight **inflight);

/* refresh.c: what is learnt of a file's source, late or not */
/* The hashes f's bytes must have (the source's SHA-256, else a git blob
 * id, either maybe learnt at a late resolution), copied under f->lock;
 * "" when unknown. */
struct file_hashes {
	char sha256[65];
	char git_sha1[65];
};
void engine_file_hashes(struct engine_file *f, struct file_hashes *out);
/* Called when a run first opens src's cache file (at open, catalog.c, or
 * at a late resolution). Without a validator or a known hash nothing
 * tells an earlier run's blocks from the origin's bytes now (the file may
 * have changed, same size): a complete copy is one whole version and is
 * kept, a partial one is dropped, so that old and new bytes never mix. */
void engine_forget_unvalidated(const struct source_file *src, struct cache_file *cf);
/* f's cache file, resolving f first if it was listed unresolved (and
 * opening its cache file then, with its layout, if it had none), retrying
 * an unreachable origin until retry_timeout. Network: no lock held. */
int file_cache_retried(struct engine_file *f, struct http_client *http, struct cache_file **cf);
/* "cannot resolve: <why>" for a resolution that failed with rc, into out. */
void resolve_reason(int rc, char *out, size_t len);

/* verify.c */
/* What the verifier found for a file. verify.c only reports it; the
 * catalog, which owns the files' state, their errors and their parked
 * reads, decides what follows (catalog.c's verify_ops). */
enum verify_verdict {
	VERIFY_GOOD,		/* verified, or complete with nothing to compare with */
	VERIFY_INCOMPLETE,	/* not complete (evicted, or not all fetched): no verdict */
	VERIFY_DEFERRED,	/* not hashed now (stopping, a read error) */
	VERIFY_MISMATCH,	/* the background hash differs (cf, expected, got, reason);
				 * its blocks are dropped already */
	VERIFY_CORRUPT,		/* engine_file_verify() found a mismatch (reason) */
};
struct verify_report {
	enum verify_verdict verdict;
	const char *reason;
	struct cache_file *cf;
	const char *expected, *got;
};
struct verify_ops {
	/* The hashes f's bytes must have. */
	void (*hashes)(struct engine_file *f, struct file_hashes *out);
	/* What was found, on the verifier's thread (or engine_file_verify()'s
	 * caller), with no lock held. */
	void (*report)(struct engine_file *f, const struct verify_report *r);
};
int verify_start(struct engine *e);
void verify_stop(struct engine *e);
void verify_enqueue(struct engine_file *f);
/* On the worker that committed a block the running hash of f's cache
 * file cf waits for: hash up to a download unit of it here, and leave
 * the rest to the verifier thread. */
void verify_advance(struct engine_file *f, struct cache_file *cf);
/* Verdicts reported so far; wait up to ms for one more than seen. */
uint64_t verify_verdicts(struct engine *e);
void verify_wait(struct engine *e, uint64_t seen, int ms);

/* pool.c */
int fetch_start(struct engine *e);
void fetch_stop(struct engine *e);

/* queue.c: every function takes qlock itself. */
/* Append inf to the queue of its priority; the caller holds qlock. */
void queue_push_locked(struct engine *e, struct inflight *inf);
/* Take a queued inf out of its queue; the caller holds qlock. */
void queue_unlink_locked(struct engine *e, struct inflight *inf);
void enqueue(struct engine *e, struct inflight *inf);
void enqueue_batch(struct engine *e, struct inflight **batch, size_t n);
/* Move inf to the queue of prio if it waits in a later one; the caller
 * holds inf->file->lock, which keeps inf alive. */
void promote_locked(struct engine *e, struct inflight *inf, enum fetch_prio prio);
bool is_demand(struct engine *e, struct inflight *inf);
/* The next run of blocks to fetch (its length; 0 at stop) and their
 * file (read under qlock: see fetch_run()), or (0, and *resume set) a
 * strict file whose parked reads to read afresh. */
int queue_pop(struct engine *e, struct inflight **run, struct run_ctl *ctl, bool *prefetch,
	      struct engine_file **file, struct engine_file **resume);
/* Have a worker call parked_resume(f); the caller holds no lock. */
void queue_resume(struct engine *e, struct engine_file *f);
/* At stop, after the workers exited: forget the files queue_resume()d. */
void queue_resume_drain(struct engine *e);
void prefetch_slot_done(struct engine *e);
/* Take inf out of the queue that holds it, if any. */
void dequeue(struct engine *e, struct inflight *inf);
/* Wake the workers for blocks asked for with fetch_prefetch_block(): it
 * queues without waking, so that a batch is taken as runs, not one by one. */
void fetch_kick(struct engine *e);

/* inflight.c */
/* Set f's final error (first one wins) and log it once. */
void engine_file_fail(struct engine_file *f, int err, const char *reason);
bool file_failed(struct engine_file *f);
/* A pending read's part of block idx: where it is, where it starts and
 * ends counted from the block's start, copied from memory or the cache. */
void block_overlap(const struct pending_read *pr, uint64_t idx, uint64_t *off, size_t *len);
uint64_t waiter_start(const struct pending_read *pr, uint64_t idx);
uint64_t waiter_end(const struct pending_read *pr, uint64_t idx);
void deliver_mem(struct pending_read *pr, uint64_t idx, const char *block);
int deliver_cached(struct pending_read *pr, struct cache_file *cf, uint64_t idx);
bool deliver_kept(struct pending_read *pr, struct engine_file *f, uint64_t idx);
/* The first error wins; the last block answers the read and frees it. */
void read_error(struct pending_read *pr, int err);
void read_finish(struct pending_read *pr);
/* A prefetch learns how its block ended (its last access to pf). */
void prefetch_done(struct prefetch_req *pf, int rc, const char *reason);
/* Register a fetch of block idx in f->inflight (the caller holds f->lock
 * and queues it): NULL when cached, already coming, or out of memory. */
struct inflight *inflight_add_locked(struct engine_file *f, uint64_t idx, enum fetch_prio prio);
/* Uncached blocks: a buffer (waits for room), kept after its fetch, let go. */
char *mem_block_get(struct engine *e, uint32_t len);
void mem_block_put(struct engine *e, char *mem, struct engine_file *f, uint64_t idx);
void mem_block_release(struct engine *e, const char *mem);
void kept_free(struct engine *e);
/* Forget inf if only prefetches want it: true when it was freed. */
bool drop_unwanted(struct engine_file *f, struct inflight *inf, int err, const char *reason);
/* Block idx of f is done (rc; in the cache, held when held, or in mem):
 * answer its waiters and free its inflight. */
void complete_block(struct engine_file *f, struct cache_file *cf, uint64_t idx, int rc,
		    const char *mem, bool held, const char *reason);

/* Reads of f wait for it to be verified (verify = strict). */
bool strict_parked(struct engine_file *f);

/* verify = strict: answer the reads parked on f with err, or (err == 0,
 * the file is now verified) have a worker read them afresh
 * (parked_resume()), not the caller: the verifier never re-enters
 * engine_read(). Nothing for a file that is not strict: its parked reads
 * wait for its layout, which its verdicts do not give. */
void strict_release(struct engine_file *f, int err);
/* Take f's parked reads (the caller frees each). */
struct parked_read *parked_take(struct engine_file *f);
/* Answer every read parked on f with err (at stop, or when a late
 * resolution failed). */
void parked_fail(struct engine_file *f, int err);

/* read.c */
/* verify = strict: f lost a block (evicted) before it was verified; if
 * reads are parked on it, fetch what is missing again, or they would
 * wait for a verification that never comes. */
void strict_refetch(struct engine_file *f);
/* On a worker: resolve f if it has no layout yet (read.c: reads wait for
 * it), then read its parked reads afresh (or fail them when it could not
 * be resolved). */
void parked_resume(struct engine_file *f, struct http_client *http);

/* fetch.c */
/* Fetch run[0..n) (queue_pop()) and complete each of its blocks. */
void fetch_run(struct engine_file *f, struct inflight **run, int n, struct run_ctl *ctl,
	       struct http_client *http);

/* file_queue.c */
void file_queue_init(struct file_queue *q, atomic_int *stop);
void file_queue_destroy(struct file_queue *q);
/* Queue f: false when stopping or out of memory (f is not queued). */
bool file_queue_push(struct file_queue *q, struct engine_file *f);
/* The first file, waiting for one; NULL once stopping. */
struct engine_file *file_queue_pop(struct file_queue *q);
/* Set *q->stop, wake the thread popping, join it (when *started) and
 * drop what is left. */
void file_queue_stop(struct file_queue *q, pthread_t *thread, bool *started);

/* share.c: the shared bucket */
/* Make e->bucket from cfg->shared_cache: 0, or -EINVAL (logged, with
 * what to fix), -ENOMEM. */
int share_open(struct engine *e, const struct config *cfg);
int share_start(struct engine *e);
/* Stop the uploader (after e->stop is set: an upload under way is
 * cancelled and aborted) and join it. */
void share_stop(struct engine *e);
/* f was just verified: upload it in the background, once per run, when
 * the bucket is writable, f's SHA-256 known and shared_cache_allow lets it. */
void share_enqueue(struct engine_file *f);

/* prefetch.c */
void prefetch_req_init(struct prefetch_req *pf);
/* Wait until nothing pf asked for is outstanding, then free it. */
void prefetch_req_destroy(struct prefetch_req *pf);
/* Ask for block idx of f on behalf of pf, at prefetch priority: 1 when
 * it is cached already (nothing asked), 0 when asked (pf->outstanding
 * counts it until it finishes, with its outcome in pf->err), -ECANCELED
 * when the engine is stopping, -ENOMEM. */
int fetch_prefetch_block(struct engine_file *f, uint64_t idx, struct prefetch_req *pf);
/* Take pf's waits off f's blocks; blocks nobody else wants that no
 * worker has started are not fetched. Blocks being completed right now
 * still count in pf->outstanding until they finish. */
void fetch_prefetch_cancel(struct engine_file *f, struct prefetch_req *pf);

/* headers.c */
/* Join the header prefetch, after fetch_stop() ended its blocks. */
void headers_stop(struct engine *e);

#endif
