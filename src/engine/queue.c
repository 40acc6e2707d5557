/*
 * queue.c: the work queues the workers take blocks from. Demand blocks
 * (a reader waits) are taken before readahead blocks, and those before
 * prefetch blocks (engine_prefetch: warming the cache must never delay a
 * program's reads). A queued block that someone starts wanting sooner
 * moves to the earlier queue (promote_locked()). Prefetch blocks also
 * leave workers idle, so that a reader's block starts at once instead of
 * after a prefetch download ends: prefetch_reserve of them while readers
 * are about (a reader's block was queued in the last READERS_ABOUT_MS),
 * one when none is, for the first reader who comes. So a prefetch alone
 * fetches on nearly every connection, as a sequential reader's readahead
 * does (one that kept a quarter idle for nobody took 1.3x as long as cat
 * of the same file). A worker
 * takes a queued block with the blocks queued right behind it that
 * follow it in its file, as one request (queue_pop(): a run). Before
 * any block, a worker reads afresh the parked reads of a strict file that
 * was just verified (queue_resume()), so that the verifier's thread never
 * re-enters engine_read(), or resolves a file with no layout yet and
 * reads its parked reads then (read.c).
 *
 * Locks: everything here is under engine.qlock, a leaf. It is taken with
 * a file's lock held (promote_locked(), a prefetch's queueing), never
 * the other way round.
 */
#include "engine_i.h"
#include "modelfs/clock.h"

#define READERS_ABOUT_MS 2000

/* Append inf to the queue of its priority; the caller holds qlock. */
void queue_push_locked(struct engine *e, struct inflight *inf)
{
	int q = inf->prio;

	inf->qnext = NULL;
	inf->queued = true;
	if (q != PRIO_PREFETCH)
		e->reader_ms = clock_now_ms();
	if (e->qtail[q])
		e->qtail[q]->qnext = inf;
	else
		e->qhead[q] = inf;
	e->qtail[q] = inf;
}

/* Take a queued inf out of its queue; the caller holds qlock. */
void queue_unlink_locked(struct engine *e, struct inflight *inf)
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
void enqueue(struct engine *e, struct inflight *inf)
{
	pthread_mutex_lock(&e->qlock);
	queue_push_locked(e, inf);
	pthread_cond_signal(&e->qcond);
	pthread_mutex_unlock(&e->qlock);
}

/* Queue n inflights of one file, in file order, in one go: a worker
 * woken by the first then takes the ones behind it in the same request. */
void enqueue_batch(struct engine *e, struct inflight **batch, size_t n)
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
void promote_locked(struct engine *e, struct inflight *inf, enum fetch_prio prio)
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

bool is_demand(struct engine *e, struct inflight *inf)
{
	bool demand;

	pthread_mutex_lock(&e->qlock);
	demand = inf->prio == PRIO_DEMAND;
	pthread_mutex_unlock(&e->qlock);
	return demand;
}

/* The workers prefetch leaves idle now; the caller holds qlock. */
static int prefetch_reserve_now(struct engine *e)
{
	if (clock_now_ms() - e->reader_ms < READERS_ABOUT_MS)
		return e->prefetch_reserve;
	return e->prefetch_reserve > 0 ? 1 : 0;
}

/* The next run of blocks to fetch into run[] (its length returned, 0 at
 * stop), and whether it is a prefetch one (*prefetch: the caller calls
 * prefetch_slot_done() after it). A run is the head of a queue and the
 * blocks queued right behind it that follow it in its file, up to the
 * file's run_blocks: batches are queued in file order, so a readahead
 * window or a loader's file becomes block_size-long requests. While
 * readers are about, prefetch blocks may take all workers but
 * prefetch_reserve: those stay free for readers, who then never wait for
 * a worker behind a long prefetch. */
int queue_pop(struct engine *e, struct inflight **run, struct run_ctl *ctl, bool *prefetch,
	      struct engine_file **file, struct engine_file **resume)
{
	struct inflight *inf = NULL;
	int q = 0, n = 0;

	*resume = NULL;
	pthread_mutex_lock(&e->qlock);
	for (;;) {
		/* Parked reads are readers waiting, and served from the cache:
		 * first, and even at stop, as they were before it. */
		if (e->resume_head) {
			*resume = e->resume_head;
			e->resume_head = (*resume)->resume_next;
			(*resume)->resume_next = NULL;
			(*resume)->resume_queued = false;
			pthread_mutex_unlock(&e->qlock);
			return 0;
		}
		for (q = 0; q < PRIO_COUNT && !e->qhead[q]; q++)
			;
		if (q == PRIO_PREFETCH && e->prefetch_busy >= e->nworkers - prefetch_reserve_now(e))
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
		*file = run[0]->file;	/* read under qlock: see fetch_run() */
		*prefetch = q == PRIO_PREFETCH;
		e->prefetch_busy += *prefetch;
	}
	pthread_mutex_unlock(&e->qlock);
	return n;
}

void queue_resume(struct engine *e, struct engine_file *f)
{
	pthread_mutex_lock(&e->qlock);
	if (!f->resume_queued) {
		f->resume_queued = true;
		f->resume_next = e->resume_head;
		e->resume_head = f;
		pthread_cond_signal(&e->qcond);
	}
	pthread_mutex_unlock(&e->qlock);
}

void queue_resume_drain(struct engine *e)
{
	pthread_mutex_lock(&e->qlock);
	while (e->resume_head) {
		struct engine_file *f = e->resume_head;

		e->resume_head = f->resume_next;
		f->resume_next = NULL;
		f->resume_queued = false;
	}
	pthread_mutex_unlock(&e->qlock);
}

void prefetch_slot_done(struct engine *e)
{
	pthread_mutex_lock(&e->qlock);
	e->prefetch_busy--;
	pthread_cond_signal(&e->qcond);		/* a waiting prefetch block may go now */
	pthread_mutex_unlock(&e->qlock);
}

/* Take inf out of the queue that holds it, if any (a streamer completes
 * blocks that are still queued). */
void dequeue(struct engine *e, struct inflight *inf)
{
	pthread_mutex_lock(&e->qlock);
	if (inf->queued)
		queue_unlink_locked(e, inf);
	pthread_mutex_unlock(&e->qlock);
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

void engine_set_loader_sink(struct engine *e, engine_block_sink sink, void *arg)
{
	pthread_mutex_lock(&e->qlock);
	e->loader_sink = sink;
	e->loader_arg = arg;
	pthread_mutex_unlock(&e->qlock);
}
