/*
 * headers.c: header prefetch at mount. A webui start reads the header of
 * every model, one file after another (Forge: a safetensors file's 8 + N
 * header bytes, and 64 KiB at 1 MiB for its short hash; ../shared/
 * WEBUI.md). Done for every .safetensors and .gguf file at once, right
 * after the mount, those reads find their blocks cached (or on their way,
 * single-flight, when the webui is quicker), and a later start costs
 * nothing: the blocks stay cached. Files a reload adds get the same, in
 * the next pass of the one header thread.
 *
 * Rounds, all files in parallel: ask for the blocks of what is known to be
 * needed, wait, then learn how long each header is from the cached bytes
 * (a safetensors file says so in its first 8 bytes; a GGUF header is
 * walked, asking for twice as much while it runs past what is cached).
 * Requests go at prefetch priority, which leaves readers their workers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"
#include "modelfs/modelinfo.h"

#define PROBE_OFFSET (1u << 20)		/* Forge's model_hash(): 64 KiB at 1 MiB */
#define PROBE_LEN (64u << 10)
#define GGUF_FIRST (256u << 10)		/* asked for first, doubled while short */
#define TICK_MS 200

enum header_kind { KIND_NONE, KIND_SAFETENSORS, KIND_GGUF };

struct header_job {
	struct engine_file *f;
	enum header_kind kind;
	uint64_t want;			/* bytes from 0 asked for so far */
	bool done;
};

static enum header_kind kind_of(const char *path)
{
	const char *dot = strrchr(path, '.');

	if (dot && strcasecmp(dot, ".safetensors") == 0)
		return KIND_SAFETENSORS;
	if (dot && strcasecmp(dot, ".gguf") == 0)
		return KIND_GGUF;
	return KIND_NONE;
}

/* Whether Forge hashes 64 KiB at 1 MiB of entry's files (model_hash():
 * checkpoints, and ControlNet models as it lists them); LoRAs and the
 * rest only have their header read. */
static bool probed(const struct config_entry *entry)
{
	return strcasecmp(entry->category, "checkpoints") == 0 ||
	       strcasecmp(entry->category, "controlnet") == 0;
}

/* Ask for the blocks of [off, off + len) of f: 0, or -errno to stop. */
static int ask_range(struct engine_file *f, uint64_t off, uint64_t len, struct prefetch_req *pf)
{
	uint64_t size = (uint64_t)f->src.size;

	if (off >= size || len == 0)
		return 0;
	if (len > size - off)
		len = size - off;
	for (uint64_t i = off / f->block_size; i <= (off + len - 1) / f->block_size; i++) {
		int rc = fetch_prefetch_block(f, i, pf);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The next bytes from 0 that job needs, now that job->want are cached
 * (or as many as made it): job->done when none. The header's length
 * comes from the parser `modelfs info` uses (modelinfo.h): a safetensors
 * file's first 8 bytes say it; a GGUF header is walked as far as it is
 * cached, and asked for twice as far while it runs past that. */
static void job_next(struct header_job *job)
{
	struct engine_file *f = job->f;
	enum modelinfo_format fmt = job->kind == KIND_GGUF ? MODELINFO_GGUF : MODELINFO_SAFETENSORS;
	uint64_t size = (uint64_t)f->src.size, have, len = 0, need;
	struct cache_file *cf;
	unsigned char *buf;
	int rc = -EAGAIN;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	job->done = true;
	if (!cf)
		return;
	have = fmt == MODELINFO_SAFETENSORS ? 8 : job->want < size ? job->want : size;
	buf = malloc(have);
	if (!buf)
		return;
	if (cache_peek(cf, buf, 0, have) == (ssize_t)have)
		rc = modelinfo_header_len(fmt, buf, have, size, &len, &need);
	free(buf);
	if (rc == -EAGAIN && fmt == MODELINFO_GGUF && job->want < size &&
	    job->want < MODELINFO_MAX_HEADER)
		len = job->want * 2;
	else if (rc)
		return;		/* not a header, or not cached: left to readers */
	if (len > job->want) {
		job->want = len < size ? len : size;
		job->done = false;
	}
}

/* Wait until pf has nothing outstanding: false at stop. */
static bool wait_all(struct engine *e, struct prefetch_req *pf)
{
	bool stopping = false;

	pthread_mutex_lock(&pf->lock);
	while (pf->outstanding > 0 && !(stopping = atomic_load(&e->stop))) {
		struct timespec until = clock_deadline(CLOCK_MONOTONIC, TICK_MS);

		pthread_cond_timedwait(&pf->cond, &pf->lock, &until);
	}
	pthread_mutex_unlock(&pf->lock);
	return !stopping;
}

/* One pass over the files [first, end) of e. */
static void headers_pass(struct engine *e, size_t first, size_t end)
{
	struct engine_file **files = atomic_load(&e->files);
	struct header_job *jobs = calloc(end - first + 1, sizeof(*jobs));
	struct prefetch_req pf;
	int64_t started = clock_now_ms();
	size_t n = 0, pending;
	uint64_t bytes = 0;
	bool running = true;
	int rc = 0;

	prefetch_req_init(&pf);
	for (size_t i = first; jobs && i < end; i++) {
		struct engine_file *f = files[i];
		enum header_kind kind = kind_of(f->src.path);
		bool no_range, laid_out;

		pthread_mutex_lock(&f->lock);
		no_range = f->src.no_range;
		laid_out = f->cf != NULL;
		pthread_mutex_unlock(&f->lock);
		/* Without Range a header costs the whole file, and a file with no
		 * layout yet (engine_i.h) has no blocks to ask for: left to readers. */
		if (kind == KIND_NONE || no_range || !laid_out || f->src.size < 8 ||
		    engine_file_open_error(f))
			continue;
		jobs[n++] = (struct header_job){ .f = f, .kind = kind,
						 .want = kind == KIND_GGUF ? GGUF_FIRST : 8 };
		if (kind == KIND_SAFETENSORS && probed(f->src.entry))
			rc = ask_range(f, PROBE_OFFSET, PROBE_LEN, &pf);
	}
	for (pending = n; running && rc == 0 && pending > 0;) {
		for (size_t i = 0; i < n && rc == 0; i++)
			if (!jobs[i].done)
				rc = ask_range(jobs[i].f, 0, jobs[i].want, &pf);
		fetch_kick(e);
		running = rc == 0 && wait_all(e, &pf);
		pending = 0;
		for (size_t i = 0; running && i < n; i++) {
			if (!jobs[i].done)
				job_next(&jobs[i]);
			pending += !jobs[i].done;
		}
	}
	/* At stop (or a failure to ask): take back what is still asked for. */
	for (size_t i = 0; i < n; i++)
		fetch_prefetch_cancel(jobs[i].f, &pf);
	for (size_t i = 0; i < n; i++)
		bytes += jobs[i].want;
	if (n)
		log_info("event=header_prefetch files=%zu header_bytes=%llu ms=%lld%s", n,
			 (unsigned long long)bytes, (long long)(clock_now_ms() - started),
			 running && rc == 0 ? "" : " stopped=true");
	prefetch_req_destroy(&pf);	/* waits for blocks being completed */
	free(jobs);
}

/* Passes until no file is left without one: a reload may add files while
 * a pass runs, and they get the next. */
static void *headers_main(void *arg)
{
	struct engine *e = arg;

	for (;;) {
		size_t first, end;

		pthread_mutex_lock(&e->headers_lock);
		first = e->headers_done;
		end = e->headers_end;
		e->headers_done = end;
		e->headers_running = first < end && !atomic_load(&e->stop);
		pthread_mutex_unlock(&e->headers_lock);
		if (first >= end || atomic_load(&e->stop))
			return NULL;
		headers_pass(e, first, end);
	}
}

int engine_prefetch_headers(struct engine *e)
{
	int rc = 0;

	if (!e->cfg->header_prefetch)
		return 0;
	pthread_mutex_lock(&e->headers_lock);
	e->headers_end = atomic_load(&e->nfiles);
	/* A thread that has ended is joined before the next starts; one that
	 * runs takes the new files in its next pass. */
	if (e->headers_started && !e->headers_running) {
		pthread_mutex_unlock(&e->headers_lock);
		pthread_join(e->headers, NULL);
		pthread_mutex_lock(&e->headers_lock);
		e->headers_started = false;
	}
	if (!e->headers_started && e->headers_done < e->headers_end && !atomic_load(&e->stop)) {
		rc = -pthread_create(&e->headers, NULL, headers_main, e);
		e->headers_started = e->headers_running = rc == 0;
	}
	pthread_mutex_unlock(&e->headers_lock);
	return rc;
}

void headers_stop(struct engine *e)
{
	bool started;

	pthread_mutex_lock(&e->headers_lock);
	started = e->headers_started;
	e->headers_started = false;
	pthread_mutex_unlock(&e->headers_lock);
	if (started)
		pthread_join(e->headers, NULL);
}
