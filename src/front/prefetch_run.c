/*
 * prefetch_run.c: several engine_prefetch() calls at a time, watched by
 * the caller's thread, which turns what they do into events (see
 * prefetch_run.h). Job threads only fetch and record their outcome
 * under the run's lock; every callback runs on the caller's thread, so
 * an emit that writes to a socket or a terminal never holds up a fetch.
 */
#include "modelfs/prefetch_run.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modelfs/clock.h"
#include "modelfs/log.h"

#define DEFAULT_JOBS 4
#define DEFAULT_PROGRESS_MS 250
#define TICK_MS 100

enum { WAITING, RUNNING, DONE };

struct job_file {
	struct engine_file *f;
	int status;			/* protected by run.lock */
	int rc;				/* protected by run.lock */
	char reason[256];		/* protected by run.lock */
	bool told_start, told_done;	/* the caller's thread only */
};

struct run {
	struct engine *e;
	struct job_file *files;
	size_t n;
	int window;
	bool pin, check_blocks;
	atomic_int cancel;
	pthread_mutex_t lock;
	pthread_cond_t changed;		/* with lock: a file started or ended */
	size_t next;			/* protected by lock */
	int threads_left;		/* protected by lock */
};

static void *job_main(void *arg)
{
	struct run *r = arg;

	for (;;) {
		struct engine_prefetch_opts po = { .pin = r->pin, .window = r->window,
						   .cancel = &r->cancel,
						   .check_blocks = r->check_blocks };
		char reason[256];
		size_t i;
		int rc;

		pthread_mutex_lock(&r->lock);
		i = r->next;
		if (i >= r->n || atomic_load(&r->cancel)) {
			r->threads_left--;
			pthread_cond_broadcast(&r->changed);
			pthread_mutex_unlock(&r->lock);
			return NULL;
		}
		r->next++;
		r->files[i].status = RUNNING;
		pthread_cond_broadcast(&r->changed);
		pthread_mutex_unlock(&r->lock);

		rc = engine_prefetch(r->files[i].f, &po, reason, sizeof(reason));

		pthread_mutex_lock(&r->lock);
		r->files[i].rc = rc;
		snprintf(r->files[i].reason, sizeof(r->files[i].reason), "%s", reason);
		r->files[i].status = DONE;
		pthread_cond_broadcast(&r->changed);
		pthread_mutex_unlock(&r->lock);
	}
}

/* Bytes of the files not cached yet. */
static uint64_t wanted_bytes(struct engine_file *const *files, size_t n)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += engine_file_size(files[i]) - engine_file_cached(files[i]);
	return sum;
}

static json_t *plan_event(const struct run *r, int jobs)
{
	json_t *files = json_array();

	for (size_t i = 0; i < r->n; i++) {
		struct engine_file *f = r->files[i].f;

		json_array_append_new(files, json_pack("{s:s, s:s, s:I, s:I}",
			"path", engine_file_path(f), "entry", engine_file_entry(f)->id,
			"size", (json_int_t)engine_file_size(f),
			"cached", (json_int_t)engine_file_cached(f)));
	}
	return json_pack("{s:s, s:o, s:i}", "event", "plan", "files", files, "jobs", jobs);
}

/* Hand ev to the caller (who may ask to cancel); frees it. */
static void emit(struct run *r, const struct prefetch_run_opts *o, json_t *ev)
{
	if (ev && o->emit(o->arg, ev))
		atomic_store(&r->cancel, 1);
	json_decref(ev);
}

/* Tell the caller what changed since the last look; true when every job
 * thread has finished and everything was told. */
static bool report(struct run *r, const struct prefetch_run_opts *o, int *failed)
{
	bool finished;

	/* Looked at first: once no thread is left, every status read below is
	 * final, so nothing that ended is left untold. */
	pthread_mutex_lock(&r->lock);
	finished = r->threads_left == 0;
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < r->n; i++) {
		struct job_file *jf = &r->files[i];
		int status, rc;
		char reason[256];

		pthread_mutex_lock(&r->lock);
		status = jf->status;
		rc = jf->rc;
		memcpy(reason, jf->reason, sizeof(reason));
		pthread_mutex_unlock(&r->lock);
		if (status >= RUNNING && !jf->told_start) {
			jf->told_start = true;
			emit(r, o, json_pack("{s:s, s:I, s:I}", "event", "start", "file", (json_int_t)i,
					     "cached", (json_int_t)engine_file_cached(jf->f)));
		}
		if (status == DONE && !jf->told_done) {
			jf->told_done = true;
			*failed += rc != 0 && rc != -ECANCELED;
			emit(r, o, json_pack("{s:s, s:I, s:b, s:s, s:I, s:s?, s:b}", "event", "done",
					     "file", (json_int_t)i, "ok", rc == 0,
					     "state", engine_file_state(jf->f),
					     "cached", (json_int_t)engine_file_cached(jf->f),
					     "error", rc && rc != -ECANCELED ? (reason[0] ? reason
									       : strerror(-rc)) : NULL,
					     "cancelled", rc == -ECANCELED));
		}
	}
	return finished;
}

static json_t *progress_event(struct run *r, int64_t ms)
{
	json_t *files = json_array();

	for (size_t i = 0; i < r->n; i++) {
		int status;

		pthread_mutex_lock(&r->lock);
		status = r->files[i].status;
		pthread_mutex_unlock(&r->lock);
		if (status == RUNNING)
			json_array_append_new(files, json_pack("[I, I]", (json_int_t)i,
				(json_int_t)engine_file_progress(r->files[i].f)));
	}
	return json_pack("{s:s, s:I, s:o}", "event", "progress", "ms", (json_int_t)ms, "files", files);
}

/* Sleep until a file starts or ends, or TICK_MS. */
static void wait_change(struct run *r)
{
	struct timespec until = clock_deadline(CLOCK_MONOTONIC, TICK_MS);

	pthread_mutex_lock(&r->lock);
	pthread_cond_timedwait(&r->changed, &r->lock, &until);
	pthread_mutex_unlock(&r->lock);
}

int prefetch_run(struct engine *e, struct engine_file *const *files, size_t n,
		 const struct prefetch_run_opts *o)
{
	struct run r = { .e = e, .n = n, .pin = o->pin, .check_blocks = o->check_blocks };
	int jobs = o->jobs > 0 ? o->jobs : DEFAULT_JOBS;
	int every = o->progress_ms > 0 ? o->progress_ms : DEFAULT_PROGRESS_MS;
	int conns = o->connections > 0 ? o->connections : 32, failed = 0, started = 0;
	int64_t t0 = clock_now_ms(), last_progress = t0;
	pthread_t *th = NULL;
	pthread_condattr_t ca;
	bool cancelled;

	if ((size_t)jobs > n)
		jobs = n ? (int)n : 1;
	if (jobs > 1 && wanted_bytes(files, n) > engine_cache_capacity(e)) {
		/* Fetched side by side they would evict each other and all
		 * fail; one at a time, each that fits ends verified. */
		log_warn("event=prefetch_over_capacity files=%zu action=\"one file at a time: the "
			 "files asked for are more than the cache can hold\"", n);
		jobs = 1;
	}
	/* Twice each file's share of the workers: the window is topped up
	 * when blocks land, and the workers never run dry in between. */
	r.window = 2 * ((conns + jobs - 1) / jobs);
	if (r.window < 2)
		r.window = 2;
	r.files = calloc(n ? n : 1, sizeof(*r.files));
	th = calloc((size_t)jobs, sizeof(*th));
	if (!r.files || !th) {
		free(r.files);
		free(th);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		r.files[i].f = files[i];
	atomic_init(&r.cancel, 0);
	pthread_mutex_init(&r.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r.changed, &ca);
	pthread_condattr_destroy(&ca);

	emit(&r, o, plan_event(&r, jobs));
	r.threads_left = jobs;
	for (; started < jobs; started++)
		if (pthread_create(&th[started], NULL, job_main, &r) != 0)
			break;
	/* Threads that started may have ended already: count down, not set. */
	pthread_mutex_lock(&r.lock);
	r.threads_left -= jobs - started;
	pthread_mutex_unlock(&r.lock);
	if (started == 0)
		atomic_store(&r.cancel, 1);

	for (;;) {
		if ((o->cancel && atomic_load(o->cancel)) || (o->tick && o->tick(o->arg)))
			atomic_store(&r.cancel, 1);
		if (report(&r, o, &failed))
			break;
		if (clock_now_ms() - last_progress >= every) {
			last_progress = clock_now_ms();
			emit(&r, o, progress_event(&r, last_progress - t0));
		}
		wait_change(&r);
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	cancelled = atomic_load(&r.cancel) != 0;
	emit(&r, o, json_pack("{s:s, s:b, s:i, s:b, s:I}", "event", "end",
			      "ok", !cancelled && failed == 0, "failed", failed,
			      "cancelled", cancelled, "ms", (json_int_t)(clock_now_ms() - t0)));
	pthread_cond_destroy(&r.changed);
	pthread_mutex_destroy(&r.lock);
	free(r.files);
	free(th);
	if (started == 0)
		return -EAGAIN;
	return cancelled ? -ECANCELED : failed;
}

/* ---- in the background --------------------------------------------------- */

struct prefetch_bg {
	struct engine *e;
	struct engine_file **files;
	size_t n;
	int connections;
	atomic_int cancel;
	pthread_t thread;
	json_t *plan;			/* the bg thread's only */
};

/* Log lines for the events: a daemon has no terminal. */
static int bg_emit(void *arg, json_t *ev)
{
	struct prefetch_bg *bg = arg;
	const char *what = json_string_value(json_object_get(ev, "event"));
	json_t *file;

	if (strcmp(what, "plan") == 0) {
		bg->plan = json_incref(json_object_get(ev, "files"));
		log_info("event=warmup_start files=%zu", json_array_size(bg->plan));
		return 0;
	}
	if (strcmp(what, "done") == 0) {
		file = json_array_get(bg->plan, (size_t)json_integer_value(json_object_get(ev, "file")));
		if (json_is_true(json_object_get(ev, "ok")))
			log_info("event=warmed path=%s state=%s",
				 json_string_value(json_object_get(file, "path")),
				 json_string_value(json_object_get(ev, "state")));
		else if (!json_is_true(json_object_get(ev, "cancelled")))
			log_warn("event=warmup_failed path=%s error=\"%s\"",
				 json_string_value(json_object_get(file, "path")),
				 json_string_value(json_object_get(ev, "error")));
	} else if (strcmp(what, "end") == 0) {
		log_info("event=warmup_end failed=%lld cancelled=%s ms=%lld",
			 (long long)json_integer_value(json_object_get(ev, "failed")),
			 json_is_true(json_object_get(ev, "cancelled")) ? "yes" : "no",
			 (long long)json_integer_value(json_object_get(ev, "ms")));
	}
	return 0;
}

static void *bg_main(void *arg)
{
	struct prefetch_bg *bg = arg;
	struct prefetch_run_opts o = {
		.jobs = 2, .connections = bg->connections, .cancel = &bg->cancel,
		.progress_ms = 1 << 30, .emit = bg_emit, .arg = bg,
	};

	prefetch_run(bg->e, bg->files, bg->n, &o);
	return NULL;
}

int prefetch_bg_start(struct engine *e, struct engine_file *const *files, size_t n,
		      int connections, struct prefetch_bg **out)
{
	struct prefetch_bg *bg = calloc(1, sizeof(*bg));
	int rc;

	if (!bg)
		return -ENOMEM;
	bg->files = calloc(n ? n : 1, sizeof(*bg->files));
	if (!bg->files) {
		free(bg);
		return -ENOMEM;
	}
	memcpy(bg->files, files, n * sizeof(*files));
	bg->e = e;
	bg->n = n;
	bg->connections = connections;
	atomic_init(&bg->cancel, 0);
	rc = pthread_create(&bg->thread, NULL, bg_main, bg);
	if (rc) {
		free(bg->files);
		free(bg);
		return -rc;
	}
	*out = bg;
	return 0;
}

void prefetch_bg_stop(struct prefetch_bg *bg)
{
	if (!bg)
		return;
	atomic_store(&bg->cancel, 1);
	pthread_join(bg->thread, NULL);
	json_decref(bg->plan);
	free(bg->files);
	free(bg);
}
