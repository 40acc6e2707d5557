/*
 * pool.c: the workers. engine.cfg->connections threads, one HTTP client
 * each, take runs from the queues (queue.c) and fetch them (fetch.c).
 * At stop, downloads a reader has had bytes of are finished for up to
 * STOP_FINISH_MS, every other one is cancelled, and what is still queued
 * is failed.
 *
 * Locks: qlock guards the worker count and stop_cond; a file's lock is
 * taken to mark its downloads cancelled, and to drain its queued blocks,
 * never with qlock held.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/http.h"
#include "modelfs/log.h"

/* At stop, blocks whose first bytes were handed to a reader are finished
 * for up to this long (inside the 10 s a service manager allows a stop). */
#define STOP_FINISH_MS 5000

static void *worker_main(void *arg)
{
	struct engine *e = arg;
	struct http_client *http = NULL;
	uint32_t most = e->cfg->block_size / engine_cache_block_size(e->cfg);
	struct inflight **run = calloc(most ? most : 1, sizeof(*run));
	struct run_ctl ctl;

	if (!run || engine_client_new(e->opts, &http) != 0)
		log_error("event=worker_start error=\"cannot create an HTTP client\"");
	while (run && http) {
		struct engine_file *f, *resume;
		bool prefetch = false;
		int n;

		atomic_init(&ctl.cancel, 0);
		ctl.answered = false;	/* no block points at ctl between runs */
		n = queue_pop(e, run, &ctl, &prefetch, &f, &resume);
		if (resume) {
			parked_resume(resume, http);
			continue;
		}
		if (n == 0)
			break;
		fetch_run(f, run, n, &ctl, http);
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
	/* Parked reads no worker resumed fail, as every read still waiting. */
	queue_resume_drain(e);
	for (size_t i = 0; i < e->nfiles; i++)
		parked_fail(e->files[i], -EIO);
	kept_free(e);
}
