/*
 * headers.c: header prefetch at mount. A webui start reads the header of
 * every model, one file after another (Forge: a safetensors file's 8 + N
 * header bytes, and 64 KiB at 1 MiB for its short hash; ../shared/
 * WEBUI.md). Done for every .safetensors and .gguf file at once, right
 * after the mount, those reads find their blocks cached (or on their way,
 * single-flight, when the webui is quicker), and a later start costs
 * nothing: the blocks stay cached.
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

#define PROBE_OFFSET (1u << 20)		/* Forge's model_hash(): 64 KiB at 1 MiB */
#define PROBE_LEN (64u << 10)
#define GGUF_FIRST (256u << 10)		/* asked for first, doubled while short */
#define HEADER_MAX (256ull << 20)	/* a longer "header" is not one */
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

/* Reads little-endian fields of a cached file prefix, a window at a time. */
struct cursor {
	struct cache_file *cf;
	uint64_t pos, end;		/* end: bytes of the file that may be read */
	uint64_t win_at;
	size_t win_len;
	unsigned char win[64 * 1024];
};

/* Copy n bytes at the cursor: 0, or -ENODATA past what may be read. */
static int cur_get(struct cursor *c, void *out, size_t n)
{
	if (c->pos + n > c->end)
		return -ENODATA;
	if (c->pos < c->win_at || c->pos + n > c->win_at + c->win_len) {
		size_t len = c->end - c->pos < sizeof(c->win) ? (size_t)(c->end - c->pos)
							       : sizeof(c->win);

		if (len < n || cache_peek(c->cf, c->win, c->pos, len) != (ssize_t)len)
			return -ENODATA;
		c->win_at = c->pos;
		c->win_len = len;
	}
	if (out)
		memcpy(out, c->win + (c->pos - c->win_at), n);
	c->pos += n;
	return 0;
}

static int cur_u64(struct cursor *c, uint64_t *v)
{
	unsigned char b[8];
	int rc = cur_get(c, b, 8);

	*v = 0;
	for (int i = 7; rc == 0 && i >= 0; i--)
		*v = *v << 8 | b[i];
	return rc;
}

static int cur_u32(struct cursor *c, uint32_t *v)
{
	unsigned char b[4];
	int rc = cur_get(c, b, 4);

	*v = rc ? 0 : (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
			      (uint32_t)b[3] << 24;
	return rc;
}

static int cur_skip(struct cursor *c, uint64_t n)
{
	if (n > c->end - c->pos)
		return -ENODATA;
	c->pos += n;
	return 0;
}

/* One GGUF value of type t: 0, -ENODATA (runs past the prefix), -EINVAL. */
static int gguf_skip_value(struct cursor *c, uint32_t t, int depth)
{
	static const uint8_t fixed[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
	uint64_t n;
	uint32_t et;
	int rc;

	if (t >= sizeof(fixed))
		return -EINVAL;
	if (fixed[t])
		return cur_skip(c, fixed[t]);
	if (t == 8)			/* string: u64 length, bytes */
		return (rc = cur_u64(c, &n)) ? rc : cur_skip(c, n);
	if (depth > 2)			/* array: u32 type, u64 count, items */
		return -EINVAL;
	if ((rc = cur_u32(c, &et)) || (rc = cur_u64(c, &n)))
		return rc;
	if (et < sizeof(fixed) && fixed[et])
		return n > UINT64_MAX / fixed[et] ? -EINVAL : cur_skip(c, n * fixed[et]);
	for (uint64_t i = 0; i < n; i++)
		if ((rc = gguf_skip_value(c, et, depth + 1)))
			return rc;
	return 0;
}

/* Where a GGUF header ends (its tensor infos included), from the first
 * have bytes of f: 0, -ENODATA when have is too short, -EINVAL when the
 * bytes are no GGUF header. */
static int gguf_header_len(struct cache_file *cf, uint64_t have, uint64_t *len)
{
	struct cursor *c = calloc(1, sizeof(*c));
	uint64_t ntensors, nkv, n;
	uint32_t magic, version, t, dims;
	int rc;

	if (!c)
		return -ENOMEM;
	c->cf = cf;
	c->end = have;
	if ((rc = cur_u32(c, &magic)) || (rc = cur_u32(c, &version)) ||
	    (rc = cur_u64(c, &ntensors)) || (rc = cur_u64(c, &nkv)))
		goto out;
	if (magic != 0x46554747u /* "GGUF" */ || version < 2) {
		rc = -EINVAL;
		goto out;
	}
	for (uint64_t i = 0; rc == 0 && i < nkv; i++) {
		rc = cur_u64(c, &n);
		if (rc == 0 && (rc = cur_skip(c, n)) == 0 && (rc = cur_u32(c, &t)) == 0)
			rc = gguf_skip_value(c, t, 0);
	}
	for (uint64_t i = 0; rc == 0 && i < ntensors; i++) {
		/* name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset */
		rc = cur_u64(c, &n);
		if (rc == 0 && (rc = cur_skip(c, n)) == 0 && (rc = cur_u32(c, &dims)) == 0)
			rc = dims > 8 ? -EINVAL : cur_skip(c, (uint64_t)dims * 8 + 4 + 8);
	}
	*len = c->pos;
out:
	free(c);
	return rc;
}

/* The next bytes from 0 that job needs, now that job->want are cached
 * (or as many as made it): job->done when none. */
static void job_next(struct header_job *job)
{
	struct engine_file *f = job->f;
	uint64_t size = (uint64_t)f->src.size, need = 0;
	struct cache_file *cf;
	unsigned char head[8];
	int rc;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	job->done = true;
	if (!cf)
		return;
	if (job->kind == KIND_SAFETENSORS) {
		if (cache_peek(cf, head, 0, sizeof(head)) != sizeof(head))
			return;
		for (int i = 7; i >= 0; i--)
			need = need << 8 | head[i];
		if (need > HEADER_MAX || need > size - 8)
			return;		/* not a safetensors header */
		need += 8;
	} else {
		rc = gguf_header_len(cf, job->want < size ? job->want : size, &need);
		if (rc == -ENODATA && job->want < size && job->want < HEADER_MAX)
			need = job->want * 2;
		else if (rc)
			return;
	}
	if (need > job->want) {
		job->want = need < size ? need : size;
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

static void *headers_main(void *arg)
{
	struct engine *e = arg;
	struct header_job *jobs = calloc(e->nfiles ? e->nfiles : 1, sizeof(*jobs));
	struct prefetch_req pf;
	int64_t started = clock_now_ms();
	size_t n = 0, pending;
	uint64_t bytes = 0;
	bool running = true;
	int rc = 0;

	prefetch_req_init(&pf);
	for (size_t i = 0; jobs && i < e->nfiles; i++) {
		struct engine_file *f = e->files[i];
		enum header_kind kind = kind_of(f->src.path);
		bool no_range;

		pthread_mutex_lock(&f->lock);
		no_range = f->src.no_range;
		pthread_mutex_unlock(&f->lock);
		/* Without Range a header costs the whole file: left to readers. */
		if (kind == KIND_NONE || no_range || f->src.size < 8 || engine_file_open_error(f))
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
	return NULL;
}

int engine_prefetch_headers_start(struct engine *e)
{
	int rc = pthread_create(&e->headers, NULL, headers_main, e);

	if (rc)
		return -rc;
	e->headers_started = true;
	return 0;
}

void headers_stop(struct engine *e)
{
	if (!e->headers_started)
		return;
	pthread_join(e->headers, NULL);
	e->headers_started = false;
}
