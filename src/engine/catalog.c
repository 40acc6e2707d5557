/*
 * catalog.c: from config entries to the engine's files. Every entry is
 * resolved once, in parallel, at open. A resolution that succeeds is
 * stored; when the origin cannot be reached the stored one is used
 * instead (offline remount), so unreachable never reads as deleted.
 * With a lock file the lock is the resolution (from_lock()): no source
 * is asked at open, and the first read of a missing block asks the
 * source for the bytes at the locked commit, holding it to the locked
 * size and hash (source_refresh()). Also the engine's life cycle and the
 * per-file accessors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_i.h"
#include "modelfs/bandwidth.h"
#include "modelfs/clock.h"
#include "modelfs/http.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"
#include "modelfs/secret.h"

/* Resolving asks the services' APIs, which rate-limit per client: fewer at
 * once than the block downloads' connections. */
#define RESOLVE_MAX_PARALLEL 16
/* How long a mount waits for one entry's resolution. An origin that
 * accepts the connection and never answers would otherwise hold the mount
 * for every request's timeout and retry; past this the entry uses its
 * stored resolution, or is resolved at its first read. */
#define RESOLVE_BUDGET_MS 10000

struct resolve_job {
	struct source_ctx *sources;
	struct cache *cache;		/* NULL: engine_resolve(), nothing stored */
	const struct lock *lock;	/* resolve from it, not from the sources; or NULL */
	const char *config_path;	/* for the command a refusal suggests */
	bool skip;			/* engine_resolve() was not asked for this one */
	const struct config_entry *entry;
	struct source_file *files;
	size_t n;
	int rc;
};

struct resolve_pool {
	const struct engine_opts *opts;	/* how clients are made, or NULL */
	struct resolve_job *jobs;
	size_t njobs;
	size_t next;			/* protected by lock */
	pthread_mutex_t lock;
};

/* Build files from a stored resolution of e: 0, or -ENOENT when none
 * matches the entry as configured now. */
static int from_store(struct resolve_job *job, struct source_file **files, size_t *n)
{
	const struct config_entry *e = job->entry;
	struct store_resolution *r = NULL;
	struct source_file *out;
	char spec[65];
	int nr = 0, rc;

	source_spec_hash(e, spec);
	rc = cache_resolution_get(job->cache, e->id, &r, &nr);
	if (rc)
		return rc;
	if (nr == 0 || strcmp(r[0].spec_hash, spec) != 0) {
		store_resolutions_free(r, nr);
		return -ENOENT;
	}
	out = calloc(nr, sizeof(*out));
	for (int i = 0; out && i < nr; i++) {
		out[i].entry = e;
		out[i].path = r[i].path;
		out[i].size = r[i].size;
		out[i].mtime = r[i].mtime;
		out[i].validator = r[i].validator;
		out[i].sha256 = r[i].sha256;
		out[i].remote_path = r[i].remote_path;
		out[i].revision = r[i].revision;
		out[i].git_sha1 = r[i].git_sha1;
		r[i].path = r[i].validator = r[i].sha256 = NULL;
		r[i].remote_path = r[i].revision = r[i].git_sha1 = NULL;
	}
	store_resolutions_free(r, nr);
	if (!out)
		return -ENOMEM;
	*files = out;
	*n = (size_t)nr;
	return 0;
}

/* Keep mtimes stable across remounts and boxes: the origin's, else the
 * stored resolution's, else (a first resolution) the date of the commit a
 * Hugging Face file was resolved at (http given), else now. Then store
 * what was resolved. */
static void remember(struct resolve_job *job, struct http_client *http)
{
	const struct config_entry *e = job->entry;
	struct store_resolution *old = NULL, *rows;
	int nold = 0;
	char spec[65];
	int64_t now = time(NULL);

	source_spec_hash(e, spec);
	cache_resolution_get(job->cache, e->id, &old, &nold);
	rows = calloc(job->n ? job->n : 1, sizeof(*rows));
	for (size_t i = 0; rows && i < job->n; i++) {
		struct source_file *f = &job->files[i];
		char *key = NULL;

		for (int k = 0; f->mtime < 0 && k < nold; k++)
			if (strcmp(old[k].path, f->path) == 0 && strcmp(old[k].spec_hash, spec) == 0)
				f->mtime = old[k].mtime;
		if (f->mtime < 0 && http && !f->err)
			source_commit_date(job->sources, http, f, &f->mtime);
		if (f->mtime < 0)
			f->mtime = now;
		if (f->err || source_content_key(f, &key) != 0)
			continue;
		rows[i] = (struct store_resolution){
			.path = f->path, .spec_hash = spec, .file_key = key, .size = f->size,
			.mtime = f->mtime, .validator = f->validator,
			/* A hash a lock learnt is not the origin's: an offline
			 * mount without the lock keys the file as its source does. */
			.sha256 = f->hash_fetched ? NULL : f->sha256,
			.remote_path = f->remote_path, .revision = f->revision,
			.git_sha1 = f->git_sha1, .resolved_at = now,
		};
	}
	if (rows) {
		size_t k = 0;

		for (size_t i = 0; i < job->n; i++)	/* keep only resolved rows */
			if (rows[i].file_key)
				rows[k++] = rows[i];
		if (k)
			cache_resolution_put(job->cache, e->id, rows, (int)k);
		for (size_t i = 0; i < k; i++)
			free(rows[i].file_key);
	}
	free(rows);
	store_resolutions_free(old, nold);
}

/* The path an entry's one file has before its source names it: what
 * an entry that cannot be resolved is listed as. */
static int entry_path(const struct config_entry *e, char **out)
{
	if (e->filename)
		return source_join_path(e->dir, e->filename, out);
	if (e->source == CONFIG_SOURCE_HUGGINGFACE && !e->file)
		return (*out = strdup(e->dir)) ? 0 : -ENOMEM;	/* a repo as a folder */
	return source_join_path(e->dir, e->name, out);
}

/* The entry as one file that fails with why (-ESTALE: listed, never read). */
static int lock_refused(struct resolve_job *job, const char *why)
{
	struct source_file *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	job->files = f;
	job->n = 1;
	f->entry = job->entry;
	f->size = 0;
	f->mtime = -1;
	f->err = -ESTALE;
	f->error = strdup(why);
	return entry_path(job->entry, &f->path) == 0 && f->error ? 0 : -ENOMEM;
}

static int dup_to(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -ENOMEM : 0;
}

/* job's files from the lock, asking no source: 0 or -ENOMEM. */
static int from_lock(struct resolve_job *job)
{
	const struct config_entry *e = job->entry;
	const struct lock_entry *le = lock_find(job->lock, e->id);
	char why[512], spec[384];
	int rc = 0;

	if (!le) {
		snprintf(why, sizeof(why), "entry %s is not in the lock%s%s: run modelfs lock "
			 "--update %s %s to pin it", e->id, job->lock->path ? " " : "",
			 job->lock->path ? job->lock->path : "", job->config_path, e->id);
		return lock_refused(job, why);
	}
	if (!lock_entry_matches(le, e, spec, sizeof(spec))) {
		snprintf(why, sizeof(why), "entry %s changed since it was locked (%s): run modelfs "
			 "lock --update %s %s to pin what it asks for now", e->id, spec,
			 job->config_path, e->id);
		return lock_refused(job, why);
	}
	job->files = calloc(le->n_files ? le->n_files : 1, sizeof(*job->files));
	if (!job->files)
		return -ENOMEM;
	job->n = le->n_files;
	for (size_t i = 0; i < le->n_files && rc == 0; i++) {
		const struct lock_file *lf = &le->files[i];
		struct source_file *f = &job->files[i];

		f->entry = e;
		f->size = lf->size;
		f->mtime = lf->mtime;	/* the same on every box; -1: a lock without it */
		f->hash_fetched = lf->hash_fetched;
		rc = dup_to(&f->path, lf->path);
		if (rc == 0)
			rc = dup_to(&f->remote_path, lf->remote_path);
		if (rc == 0)
			rc = dup_to(&f->sha256, lf->sha256);
		if (rc == 0)
			rc = dup_to(&f->git_sha1, lf->git_sha1);
		if (rc == 0)
			rc = dup_to(&f->validator, lf->etag);
		/* What the revision resolved to: the bytes are asked for there. */
		if (rc == 0)
			rc = dup_to(&f->revision, le->commit ? le->commit : le->version_id);
	}
	return rc;
}

static void resolve_one(struct resolve_job *job, struct http_client *http, int64_t deadline_ms)
{
	struct source_file *stored = NULL;
	size_t nstored = 0;
	int rc;

	if (job->skip)
		return;
	if (job->lock) {
		job->rc = from_lock(job);
		if (job->rc == 0 && job->cache)
			remember(job, NULL);	/* keeps mtimes stable across mounts */
		return;
	}

	/* A few quick tries: a mount should not hang for long on one origin. */
	for (int attempt = 0; attempt < 3; attempt++) {
		int64_t pause_ms = 300 << attempt;

		source_files_free(job->files, job->n);
		job->files = NULL;
		job->n = 0;
		rc = source_resolve(job->sources, http, job->entry, &job->files, &job->n);
		if (rc != -EAGAIN || clock_now_ms() + pause_ms >= deadline_ms)
			break;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = pause_ms * 1000000L };
		nanosleep(&ts, NULL);
	}
	job->rc = rc;
	if (rc == 0) {
		if (job->cache)
			remember(job, http);
		return;
	}
	if (rc == -EAGAIN && job->cache && from_store(job, &stored, &nstored) == 0) {
		log_warn("event=resolve_offline entry=%s reason=\"%s\" action=\"using the stored "
			 "resolution\"", job->entry->id,
			 job->n && job->files[0].error ? job->files[0].error : "origin unreachable");
		source_files_free(job->files, job->n);
		job->files = stored;
		job->n = nstored;
		job->rc = 0;
	}
}

static void *resolve_main(void *arg)
{
	struct resolve_pool *pool = arg;
	struct http_client *http = NULL;

	if (engine_client_new(pool->opts, &http) != 0)
		return NULL;
	for (;;) {
		int64_t deadline_ms = clock_now_ms() + RESOLVE_BUDGET_MS;
		size_t i;

		pthread_mutex_lock(&pool->lock);
		i = pool->next++;
		pthread_mutex_unlock(&pool->lock);
		if (i >= pool->njobs)
			break;
		http_client_set_deadline(http, deadline_ms);
		resolve_one(&pool->jobs[i], http, deadline_ms);
	}
	http_client_free(http);
	return NULL;
}

static int resolve_all(struct resolve_pool *pool, int nthreads)
{
	pthread_t *th = calloc(nthreads > 0 ? (size_t)nthreads : 1, sizeof(*th));
	int started = 0;

	if (!th)
		return -ENOMEM;
	for (; started < nthreads; started++)
		if (pthread_create(&th[started], NULL, resolve_main, pool) != 0)
			break;
	if (started == 0)
		resolve_main(pool);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	return 0;
}

static void file_free(struct engine_file *f)
{
	if (!f)
		return;
	source_file_clear(&f->src);
	free(f->inflight);
	free(f->tensor_starts);
	free(f->error);
	pthread_cond_destroy(&f->resolve_done);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* Publish f as the last file (engine_i.h: the file list). The caller
 * holds add_lock, or is engine_open() with no reader yet. */
static int files_append(struct engine *e, struct engine_file *f)
{
	size_t n = atomic_load(&e->nfiles);
	struct engine_file **arr = atomic_load(&e->files);

	if (n == e->files_cap) {
		size_t cap = e->files_cap ? e->files_cap * 2 : 64;
		struct engine_file **grown = malloc(cap * sizeof(*grown));
		struct engine_file ***ret = arr ? realloc(e->retired, (e->nretired + 1) *
								  sizeof(*ret)) : e->retired;

		if (!grown || (arr && !ret)) {
			free(grown);
			return -ENOMEM;
		}
		if (n)
			memcpy(grown, arr, n * sizeof(*grown));
		if (arr) {
			e->retired = ret;
			e->retired[e->nretired++] = arr;
		}
		arr = grown;
		e->files_cap = cap;
	}
	arr[n] = f;
	atomic_store(&e->files, arr);
	atomic_store(&e->nfiles, n + 1);
	return 0;
}

void engine_file_lay_out(struct engine_file *f, struct cache_file *cf, struct inflight **inflight)
{
	uint32_t bs = cache_file_block_size(cf);

	free(f->inflight);
	f->inflight = inflight;
	f->nblocks = cache_file_nblocks(cf);
	f->block_size = bs;
	f->run_blocks = f->eng->cfg->block_size > bs ? f->eng->cfg->block_size / bs : 1;
	f->cf = cf;
}

/* f is listed unresolved (its origin is down) with its configured size:
 * when its content key is settled (source.h), its cache file is opened
 * now, so that the bytes it holds are read with no network, in the
 * block size they were stored with. A stored file of another size is
 * left alone: which size is right, only the origin can say. 0 or -ENOMEM. */
static int open_unresolved(struct engine *e, struct engine_file *f)
{
	char *key = NULL;
	int rc;

	if (!source_content_key_settled(&f->src))
		return 0;
	rc = source_content_key(&f->src, &key);
	if (rc == 0)
		rc = cache_file_open_same_size(e->cache, key, (uint64_t)f->src.size,
					       engine_cache_block_size(e->cfg), &f->cf);
	free(key);
	if (rc && rc != -ENOMEM)
		log_warn("event=cache_not_opened path=%s error=\"%s\" action=\"its cached bytes are "
			 "read once it is resolved\"", f->src.path, rc == -ESTALE ? "the cache holds "
			 "these bytes with another size than the config's" : strerror(-rc));
	return rc == -ENOMEM ? rc : 0;
}

/* An engine file for src (moved in), whose mirrors get bearer (or
 * nothing). The failure of one file never fails the mount: it is listed
 * with its error. */
static int add_file(struct engine *e, struct source_file *src, const char *bearer)
{
	struct engine_file *f = calloc(1, sizeof(*f));
	uint32_t bs = engine_cache_block_size(e->cfg);
	struct inflight **inflight;
	char *key = NULL;
	int rc = 0;

	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->resolve_done, NULL);
	f->eng = e;
	f->mirror_bearer = bearer;
	f->src = *src;
	memset(src, 0, sizeof(*src));
	f->mtime = f->src.mtime >= 0 ? f->src.mtime : time(NULL);
	if (f->src.size < 0)
		f->src.size = 0;
	if (f->src.err && f->src.err != -EAGAIN) {
		f->err = f->src.err == -EACCES ? -EACCES : -EIO;
		f->error = strdup(f->src.error ? f->src.error : strerror(-f->src.err));
		log_error("event=entry_failed entry=%s path=%s error=\"%s\"", f->src.entry->id,
			  f->src.path, f->error);
	} else if (f->src.err) {
		if (f->src.entry->size < 0) {
			f->err = -EIO;
			if (asprintf(&f->error, "not resolved at mount (%s) and no size in the config; "
				     "remount later, or give size in the config",
				     f->src.error ? f->src.error : "origin unreachable") < 0)
				f->error = NULL;
			log_error("event=entry_failed entry=%s path=%s error=\"%s\"", f->src.entry->id,
				  f->src.path, f->error);
		} else if ((rc = open_unresolved(e, f)) == 0) {
			log_warn("event=entry_unresolved entry=%s path=%s error=\"%s\" action=\"listed "
				 "with its configured size%s; resolved at first read\"", f->src.entry->id,
				 f->src.path, f->src.error ? f->src.error : "origin unreachable",
				 f->cf ? " and its sha256, its cached bytes served" : "");
		}
	} else {
		rc = source_content_key(&f->src, &key);
		if (rc == 0)
			rc = cache_file_open(e->cache, key, (uint64_t)f->src.size, bs, &f->cf);
		free(key);
		f->resolved = rc == 0;
	}
	if (rc == -ENOMEM) {
		file_free(f);
		return rc;
	}
	if (rc) {
		/* One file the cache cannot hold does not fail the mount. */
		f->err = -EIO;
		if (asprintf(&f->error, "the cache cannot hold this file (%s)", strerror(-rc)) < 0)
			f->error = NULL;
		log_error("event=entry_failed entry=%s path=%s error=\"%s\"", f->src.entry->id,
			  f->src.path, f->error ? f->error : strerror(-rc));
		rc = 0;
	} else if (f->cf) {
		cache_file_add_name(f->cf, f->src.path);	/* for its log lines; best effort */
		engine_forget_unvalidated(&f->src, f->cf);
		if (cache_file_state(f->cf, NULL, NULL) == STORE_CORRUPT) {
			/* Its blocks were dropped; the origin may be fixed by now. */
			log_warn("event=refetch_corrupt path=%s action=\"was corrupt at an earlier "
				 "mount; fetched and checked afresh\"", f->src.path);
			cache_file_set_state(f->cf, STORE_REMOTE, NULL, NULL);
		}
		/* The config's pin only; one from prefetch --pin stays. */
		cache_file_set_pinned(f->cf, f->src.entry->pin);
	}
	if (f->cf) {
		inflight = calloc(cache_file_nblocks(f->cf) ? cache_file_nblocks(f->cf) : 1,
				  sizeof(*inflight));
		if (inflight)
			engine_file_lay_out(f, f->cf, inflight);
	} else {
		/* No cache file, no layout yet: a placeholder no block is asked of
		 * (engine_i.h). */
		f->nblocks = ((uint64_t)f->src.size + bs - 1) / bs;
		f->block_size = bs;
		f->run_blocks = e->cfg->block_size > bs ? e->cfg->block_size / bs : 1;
		f->inflight = inflight = calloc(f->nblocks ? f->nblocks : 1, sizeof(*f->inflight));
	}
	if (!inflight || files_append(e, f) != 0) {
		file_free(f);
		return -ENOMEM;
	}
	return 0;
}

static int resolve_pool_run(struct resolve_pool *pool, const struct config *cfg)
{
	int parallel = cfg->connections < RESOLVE_MAX_PARALLEL ? cfg->connections
							       : RESOLVE_MAX_PARALLEL;

	return resolve_all(pool, parallel < (int)cfg->n_entries ? parallel : (int)cfg->n_entries);
}

int engine_resolve(const struct config *cfg, const bool *only, struct engine_resolved **out)
{
	struct resolve_pool pool = { .njobs = cfg->n_entries };
	struct engine_resolved *r = calloc(cfg->n_entries + 1, sizeof(*r));
	struct source_ctx *sources = NULL;
	int rc;

	*out = NULL;
	pool.jobs = calloc(cfg->n_entries + 1, sizeof(*pool.jobs));
	rc = r && pool.jobs ? source_ctx_new(cfg, &sources) : -ENOMEM;
	if (rc)
		goto out;
	pthread_mutex_init(&pool.lock, NULL);
	for (size_t i = 0; i < cfg->n_entries; i++)
		pool.jobs[i] = (struct resolve_job){ .sources = sources, .entry = &cfg->entries[i],
						     .skip = (only && !only[i]) ||
							     cfg->entries[i].source == CONFIG_SOURCE_LOCAL };
	rc = resolve_pool_run(&pool, cfg);
	pthread_mutex_destroy(&pool.lock);
	for (size_t i = 0; rc == 0 && i < cfg->n_entries; i++) {
		r[i] = (struct engine_resolved){ .entry = &cfg->entries[i], .files = pool.jobs[i].files,
						 .n = pool.jobs[i].n, .rc = pool.jobs[i].rc };
		pool.jobs[i].files = NULL;
		pool.jobs[i].n = 0;
	}
out:
	for (size_t i = 0; pool.jobs && i < cfg->n_entries; i++)
		source_files_free(pool.jobs[i].files, pool.jobs[i].n);
	free(pool.jobs);
	source_ctx_free(sources);
	if (rc) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void engine_resolved_free(struct engine_resolved *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		source_files_free(r[i].files, r[i].n);
	free(r);
}

/* A locked entry the config no longer has is not mounted: the config
 * holds how to reach its bytes (auth, headers, mirrors). Said once. */
static void warn_unused_lock(const struct config *cfg, const struct lock *lock)
{
	for (size_t i = 0; lock && i < lock->n_entries; i++) {
		bool found = false;

		for (size_t k = 0; k < cfg->n_entries && !found; k++)
			found = strcmp(cfg->entries[k].id, lock->entries[i].id) == 0;
		if (!found)
			log_warn("event=lock_entry_unused entry=%s lock=%s reason=\"the config has no "
				 "such entry\" action=\"not mounted; modelfs lock --update drops it\"",
				 lock->entries[i].id, lock->path ? lock->path : "");
	}
}

/* cache_proxy_token_file into the tier: 0, or -errno (logged). */
static int tier_token(struct tier *t, const char *path)
{
	char *token = NULL;
	int rc = secret_read_file(path, &token);

	if (rc == 0)
		rc = tier_set_token(t, token);
	else
		log_error("event=cache_proxy_token_unreadable path=%s error=\"%s\"", path,
			  rc == -ENODATA ? "the file is empty" : strerror(-rc));
	secret_free(token);
	return rc;
}

/* ce's mirror credential (config.h mirror_token_file) as "Bearer T" in
 * *out, or NULL when it has none: 0, or -errno (logged) when the file
 * cannot be read. */
static int entry_bearer(const struct config *cfg, const struct config_entry *ce, char **out)
{
	const char *path = ce->mirror_token_file ? ce->mirror_token_file : cfg->mirror_token_file;
	char *token = NULL;
	int rc;

	*out = NULL;
	if (!path || !ce->mirrors)
		return 0;
	rc = secret_read_file(path, &token);
	if (rc)
		log_error("event=mirror_token_unreadable entry=%s path=%s error=\"%s\"", ce->id, path,
			  rc == -ENODATA ? "the file is empty" : strerror(-rc));
	else if (asprintf(out, "Bearer %s", token) >= 0)
		log_add_secret(*out);
	else {
		*out = NULL;
		rc = -ENOMEM;
	}
	secret_free(token);
	return rc;
}

/* Each entry's mirror credential: 0, or -errno (logged). */
static int mirror_tokens(struct engine *e, const struct config *cfg)
{
	int rc = 0;

	e->mirror_bearer = calloc(cfg->n_entries ? cfg->n_entries : 1, sizeof(*e->mirror_bearer));
	if (!e->mirror_bearer)
		return -ENOMEM;
	for (size_t i = 0; rc == 0 && i < cfg->n_entries; i++)
		rc = entry_bearer(cfg, &cfg->entries[i], &e->mirror_bearer[i]);
	return rc;
}

static void mirror_tokens_free(struct engine *e)
{
	for (size_t i = 0; e->mirror_bearer && i < e->cfg->n_entries; i++)
		secret_free(e->mirror_bearer[i]);
	free(e->mirror_bearer);
	for (size_t i = 0; i < e->nbearers; i++)
		secret_free(e->bearers[i]);
	free(e->bearers);
}

int engine_client_new(const struct engine_opts *opts, struct http_client **out)
{
	if (opts && opts->client_new)
		return opts->client_new(opts->client_arg, out);
	return http_client_new(out);
}

static const struct verify_ops catalog_verify_ops;	/* at the end */
static struct cache_file *file_cf(struct engine_file *f);

int engine_open(const struct config *cfg, struct cache *cache, struct engine **out)
{
	return engine_open_with(cfg, NULL, cache, NULL, out);
}

int engine_open_locked(const struct config *cfg, const struct lock *lock, struct cache *cache,
		       struct engine **out)
{
	return engine_open_with(cfg, lock, cache, NULL, out);
}

int engine_open_with(const struct config *cfg, const struct lock *lock, struct cache *cache,
		     const struct engine_opts *opts, struct engine **out)
{
	struct engine *e = calloc(1, sizeof(*e));
	struct resolve_pool pool = { .njobs = cfg->n_entries, .opts = opts };
	struct source_paths *paths = NULL;
	pthread_condattr_t ca;
	int rc;

	if (!e)
		return -ENOMEM;
	e->cfg = cfg;
	e->opts = opts;
	e->cache = cache;
	e->prefetch_reserve = -1;	/* the default, set at start */
	e->verify_ops = &catalog_verify_ops;
	pthread_mutex_init(&e->qlock, NULL);
	pthread_cond_init(&e->qcond, NULL);
	pthread_cond_init(&e->stop_cond, NULL);
	pthread_mutex_init(&e->mem_lock, NULL);
	pthread_cond_init(&e->mem_cond, NULL);
	file_queue_init(&e->vqueue, &e->stop);
	file_queue_init(&e->uqueue, &e->stop);
	pthread_mutex_init(&e->vdone_lock, NULL);
	pthread_mutex_init(&e->headers_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->vdone, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&pool.lock, NULL);
	pthread_mutex_init(&e->add_lock, NULL);
	rc = source_ctx_new(cfg, &e->sources);
	if (rc == 0 && cfg->cache_proxy)
		rc = tier_new(cfg->cache_proxy, cfg->cache_proxy_private, &e->tier);
	if (rc == 0 && e->tier && cfg->cache_proxy_token_file)
		rc = tier_token(e->tier, cfg->cache_proxy_token_file);
	if (rc == 0 && cfg->shared_cache)
		rc = share_open(e, cfg);
	if (rc == 0)
		rc = mirror_tokens(e, cfg);
	if (rc)
		goto out;
	bandwidth_set((uint64_t)cfg->bandwidth_limit);
	pool.jobs = calloc(cfg->n_entries ? cfg->n_entries : 1, sizeof(*pool.jobs));
	if (!pool.jobs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cfg->n_entries; i++)
		pool.jobs[i] = (struct resolve_job){ .sources = e->sources,
						     .cache = cache, .lock = lock,
						     .entry = &cfg->entries[i],
						     .config_path = cfg->path ? cfg->path : "CONFIG",
						     /* the front serves local files */
						     .skip = cfg->entries[i].source == CONFIG_SOURCE_LOCAL };
	warn_unused_lock(cfg, lock);
	rc = resolve_pool_run(&pool, cfg);
	if (rc)
		goto out;
	rc = source_paths_new(&paths);
	/* A file whose path an earlier entry has is listed with that error
	 * (add_file logs it, naming both), not left out unseen. */
	for (size_t i = 0; i < pool.njobs && rc == 0; i++)
		for (size_t k = 0; k < pool.jobs[i].n && rc == 0; k++) {
			struct source_file *src = &pool.jobs[i].files[k];

			rc = source_paths_claim(paths, src);
			if (rc == 0 || rc == -EEXIST)
				rc = add_file(e, src, e->mirror_bearer[i]);
		}
out:
	source_paths_free(paths);
	for (size_t i = 0; pool.jobs && i < pool.njobs; i++)
		source_files_free(pool.jobs[i].files, pool.jobs[i].n);
	free(pool.jobs);
	pthread_mutex_destroy(&pool.lock);
	if (rc) {
		engine_close(e);
		return rc;
	}
	*out = e;
	return 0;
}

/* A file the cache can never hold whole is served, but never verified
 * (its SHA-256 needs every byte cached at once): say so once, up front. */
static void warn_too_large(struct engine_file *f, uint64_t room)
{
	char a[32], b[32];

	if ((uint64_t)f->src.size <= room || f->err)
		return;
	log_warn("event=file_larger_than_cache path=%s size=%s cache=%s action=\"it is "
		 "read, partly uncached, but never verified: raise cache_max_size or free "
		 "the disk to have it checked\"", f->src.path,
		 humanize_bytes((uint64_t)f->src.size, a, sizeof(a)), humanize_bytes(room, b, sizeof(b)));
}

/* Claim the paths of e's live files that can be read, so that an added
 * file never takes one (source_paths_claim()'s rule: the first keeps it);
 * but files of an entry whose id one of cfg's added entries has are its
 * old files, which the caller drops. */
static bool replaced(const struct engine_file *f, const struct config *cfg, const bool *add)
{
	for (size_t i = 0; i < cfg->n_entries; i++)
		if (add[i] && strcmp(cfg->entries[i].id, f->src.entry->id) == 0)
			return true;
	return false;
}

static int claim_live(struct engine *e, struct source_paths *paths, const struct config *cfg,
		      const bool *add)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < e->nfiles; i++) {
		struct engine_file *f = e->files[i];
		struct source_file claim = { .entry = f->src.entry, .path = f->src.path };

		/* An entry added again (changed) takes its old files' paths. */
		if (atomic_load(&f->gone) || engine_file_open_error(f) || replaced(f, cfg, add))
			continue;
		rc = source_paths_claim(paths, &claim);
		free(claim.error);
		if (rc == -EEXIST)
			rc = 0;	/* two live files of one path: the tree keeps the first */
	}
	return rc;
}

/* A file added to a running engine gets what engine_start() gives those
 * there at start: its hash checked when complete, a warning when too large. */
static void start_added(struct engine *e, struct engine_file *f)
{
	struct cache_file *cf;

	if (!atomic_load(&e->started))
		return;
	warn_too_large(f, engine_cache_capacity(e));
	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (cf && cache_file_complete(cf))
		verify_enqueue(f);
}

int engine_add_entries(struct engine *e, const struct config *cfg, const struct lock *lock,
		       const bool *add, size_t *first_added, size_t *nadded)
{
	struct resolve_pool pool = { .njobs = cfg->n_entries, .opts = e->opts };
	struct source_paths *paths = NULL;
	size_t first;
	int rc;

	*first_added = *nadded = 0;
	pool.jobs = calloc(cfg->n_entries ? cfg->n_entries : 1, sizeof(*pool.jobs));
	if (!pool.jobs)
		return -ENOMEM;
	pthread_mutex_init(&pool.lock, NULL);
	for (size_t i = 0; i < cfg->n_entries; i++)
		pool.jobs[i] = (struct resolve_job){ .sources = e->sources,
						     .cache = e->cache, .lock = lock,
						     .entry = &cfg->entries[i],
						     .skip = !add[i] || cfg->entries[i].source ==
							     CONFIG_SOURCE_LOCAL };
	rc = resolve_pool_run(&pool, cfg);	/* the network, before add_lock */
	pthread_mutex_lock(&e->add_lock);
	first = e->nfiles;
	if (rc == 0)
		rc = source_paths_new(&paths);
	if (rc == 0)
		rc = claim_live(e, paths, cfg, add);
	for (size_t i = 0; i < pool.njobs && rc == 0; i++) {
		char *bearer = NULL, **grown;

		if (pool.jobs[i].skip)
			continue;
		rc = entry_bearer(cfg, &cfg->entries[i], &bearer);
		if (rc == 0 && bearer) {
			grown = realloc(e->bearers, (e->nbearers + 1) * sizeof(*grown));
			if (!grown) {
				secret_free(bearer);
				rc = -ENOMEM;
				break;
			}
			e->bearers = grown;
			e->bearers[e->nbearers++] = bearer;
		}
		for (size_t k = 0; k < pool.jobs[i].n && rc == 0; k++) {
			struct source_file *src = &pool.jobs[i].files[k];

			rc = source_paths_claim(paths, src);
			if (rc == 0 || rc == -EEXIST)
				rc = add_file(e, src, bearer);
		}
	}
	for (size_t i = first; i < e->nfiles; i++)
		start_added(e, e->files[i]);
	*first_added = first;
	*nadded = e->nfiles - first;
	pthread_mutex_unlock(&e->add_lock);
	source_paths_free(paths);
	for (size_t i = 0; i < pool.njobs; i++)
		source_files_free(pool.jobs[i].files, pool.jobs[i].n);
	free(pool.jobs);
	pthread_mutex_destroy(&pool.lock);
	return rc;
}

int engine_keep_config(struct engine *e, struct config *cfg)
{
	struct config **grown;

	pthread_mutex_lock(&e->add_lock);
	grown = realloc(e->configs, (e->nconfigs + 1) * sizeof(*grown));
	if (grown) {
		e->configs = grown;
		e->configs[e->nconfigs++] = cfg;
	}
	pthread_mutex_unlock(&e->add_lock);
	return grown ? 0 : -ENOMEM;
}

void engine_file_drop(struct engine_file *f)
{
	if (!atomic_exchange(&f->gone, true))
		log_info("event=file_dropped path=%s entry=%s holders=%d", f->src.path,
			 f->src.entry->id, atomic_load(&f->holds));
}

bool engine_file_gone(const struct engine_file *f)
{
	return atomic_load(&f->gone);
}

int engine_file_hold(struct engine_file *f)
{
	int err = engine_file_open_error(f);

	if (err)
		return err;
	atomic_fetch_add(&f->holds, 1);
	return 0;
}

int engine_file_hold_raced(struct engine_file *f)
{
	int err;

	pthread_mutex_lock(&f->lock);
	err = f->err && f->src.err == -ENOENT ? -ENOENT : f->err;
	pthread_mutex_unlock(&f->lock);
	if (err)
		return err;
	atomic_fetch_add(&f->holds, 1);
	return 0;
}

void engine_file_release(struct engine_file *f)
{
	atomic_fetch_sub(&f->holds, 1);
}

int engine_file_holders(const struct engine_file *f)
{
	return atomic_load(&f->holds);
}

int engine_start(struct engine *e)
{
	int rc = fetch_start(e);

	if (rc == 0)
		rc = share_start(e);
	if (rc == 0)
		rc = verify_start(e);
	/* Files completed before a restart but never hashed. */
	for (size_t i = 0; rc == 0 && i < e->nfiles; i++) {
		struct cache_file *cf = file_cf(e->files[i]);

		if (cf && cache_file_complete(cf))
			verify_enqueue(e->files[i]);
	}
	if (rc == 0) {
		uint64_t room = engine_cache_capacity(e);

		for (size_t i = 0; i < e->nfiles; i++)
			warn_too_large(e->files[i], room);
		atomic_store(&e->started, true);
	}
	return rc;
}

void engine_stop(struct engine *e)
{
	verify_stop(e);
	share_stop(e);
	fetch_stop(e);
	headers_stop(e);
}

void engine_close(struct engine *e)
{
	if (!e)
		return;
	engine_stop(e);
	for (size_t i = 0; i < e->nfiles; i++)
		file_free(e->files[i]);
	free(e->files);
	for (size_t i = 0; i < e->nretired; i++)
		free(e->retired[i]);
	free(e->retired);
	for (size_t i = 0; i < e->nconfigs; i++)
		config_free(e->configs[i]);
	free(e->configs);
	source_ctx_free(e->sources);
	tier_free(e->tier);
	bucket_free(e->bucket);
	mirror_tokens_free(e);
	pthread_mutex_destroy(&e->qlock);
	pthread_cond_destroy(&e->qcond);
	pthread_cond_destroy(&e->stop_cond);
	pthread_mutex_destroy(&e->mem_lock);
	pthread_cond_destroy(&e->mem_cond);
	file_queue_destroy(&e->vqueue);
	file_queue_destroy(&e->uqueue);
	pthread_mutex_destroy(&e->add_lock);
	pthread_mutex_destroy(&e->vdone_lock);
	pthread_mutex_destroy(&e->headers_lock);
	pthread_cond_destroy(&e->vdone);
	free(e);
}

size_t engine_nfiles(const struct engine *e) { return atomic_load(&e->nfiles); }
struct engine_file *engine_file_at(const struct engine *e, size_t i) { return e->files[i]; }
const char *engine_file_path(const struct engine_file *f) { return f->src.path; }
uint64_t engine_file_size(const struct engine_file *f) { return (uint64_t)f->src.size; }
int64_t engine_file_mtime(const struct engine_file *f) { return f->mtime; }
const struct config_entry *engine_file_entry(const struct engine_file *f) { return f->src.entry; }

static struct cache_file *file_cf(struct engine_file *f)
{
	struct cache_file *cf;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	return cf;
}

struct cache_file *engine_file_cache(struct engine_file *f)
{
	return file_cf(f);
}

bool engine_file_resolved(struct engine_file *f)
{
	bool resolved;

	pthread_mutex_lock(&f->lock);
	resolved = f->resolved;
	pthread_mutex_unlock(&f->lock);
	return resolved;
}

const char *engine_file_state(struct engine_file *f)
{
	struct cache_file *cf = file_cf(f);
	enum store_file_state st;
	int err;

	pthread_mutex_lock(&f->lock);
	err = f->err;
	pthread_mutex_unlock(&f->lock);
	if (err == -EACCES && f->src.gated)	/* set at listing only */
		return "gated";
	if (!cf)
		return err ? "error" : "remote";
	st = cache_file_state(cf, NULL, NULL);
	if (st == STORE_CORRUPT)
		return "corrupt";
	if (err)
		return "error";
	if (st == STORE_COMPLETE || st == STORE_VERIFIED)
		return store_state_name(st);
	/* Every byte but not yet hashed is still partial: "complete" promises
	 * a computed hash. */
	return cache_file_cached_bytes(cf) ? "partial" : "remote";
}

int engine_file_open_error(struct engine_file *f)
{
	int err;

	if (atomic_load(&f->gone))
		return -ENOENT;
	pthread_mutex_lock(&f->lock);
	err = f->err;
	pthread_mutex_unlock(&f->lock);
	if (err && f->src.err == -ENOENT)
		return -ENOENT;
	return err;
}

uint64_t engine_file_cached(struct engine_file *f)
{
	struct cache_file *cf = file_cf(f);

	return cf ? cache_file_cached_bytes(cf) : 0;
}

void engine_file_set_shadowed(struct engine_file *f)
{
	atomic_store(&f->shadowed, true);
}

bool engine_file_shadowed(struct engine_file *f)
{
	return atomic_load(&f->shadowed);
}

uint64_t engine_file_progress(struct engine_file *f)
{
	uint64_t n = engine_file_cached(f) + atomic_load(&f->arriving);

	return n < (uint64_t)f->src.size ? n : (uint64_t)f->src.size;
}

void engine_file_bytes_from(struct engine_file *f, uint64_t *tier, uint64_t *bucket,
			    uint64_t *origin)
{
	*tier = atomic_load(&f->bytes_tier);
	*bucket = atomic_load(&f->bytes_bucket);
	*origin = atomic_load(&f->bytes_origin);
}

static int dup_or_null(const char *s, char **out)
{
	*out = s ? strdup(s) : NULL;
	return s && !*out ? -ENOMEM : 0;
}

int engine_file_origin(struct engine_file *f, struct engine_origin *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&f->lock);
	rc = dup_or_null(f->src.remote_path, &out->remote_path);
	if (rc == 0)
		rc = dup_or_null(f->src.revision, &out->revision);
	if (rc == 0)
		rc = dup_or_null(f->src.sha256, &out->sha256);
	if (rc == 0)
		rc = dup_or_null(f->src.git_sha1, &out->git_sha1);
	if (rc == 0)
		rc = dup_or_null(f->src.validator, &out->validator);
	pthread_mutex_unlock(&f->lock);
	if (rc)
		engine_origin_clear(out);
	return rc;
}

void engine_origin_clear(struct engine_origin *o)
{
	free(o->remote_path);
	free(o->revision);
	free(o->sha256);
	free(o->git_sha1);
	free(o->validator);
	memset(o, 0, sizeof(*o));
}

char *engine_file_sha256(struct engine_file *f)
{
	struct cache_file *cf = file_cf(f);
	struct file_hashes want;
	char *sha = NULL;

	if (cf)
		cache_file_state(cf, &sha, NULL);
	if (!sha) {
		engine_file_hashes(f, &want);
		if (want.sha256[0])
			sha = strdup(want.sha256);
	}
	return sha;
}

char *engine_file_error(struct engine_file *f)
{
	char *err;

	pthread_mutex_lock(&f->lock);
	err = f->error ? strdup(f->error) : NULL;
	pthread_mutex_unlock(&f->lock);
	return err;
}

char *engine_entry_source(const struct config_entry *e)
{
	char *s = NULL;

	if (e->url)
		s = log_url_public(e->url_written ? e->url_written : e->url);
	else if (e->repo && asprintf(&s, "%s:%s@%s/%s", config_source_name(e->source), e->repo,
				     e->revision ? e->revision : "main", e->file ? e->file : "") < 0)
		s = NULL;
	else if (!e->repo && asprintf(&s, "%s:%s", config_source_name(e->source), e->id) < 0)
		s = NULL;
	return s;
}

char *engine_file_source(struct engine_file *f)
{
	const struct config_entry *e = f->src.entry;
	char *s = NULL, *remote = NULL, *version = NULL;
	const char *file;

	if (e->url || (e->repo && e->file) || (!e->repo && e->source != CONFIG_SOURCE_CIVITAI))
		return engine_entry_source(e);
	/* A repo folder's file, or a CivitAI version's: the entry alone does
	 * not say which file. */
	pthread_mutex_lock(&f->lock);
	remote = f->src.remote_path ? strdup(f->src.remote_path) : NULL;
	version = f->src.revision ? strdup(f->src.revision) : NULL;
	pthread_mutex_unlock(&f->lock);
	file = remote && e->repo ? remote : strrchr(f->src.path, '/') ? strrchr(f->src.path, '/') + 1
								      : f->src.path;
	if (e->repo) {
		if (asprintf(&s, "%s:%s@%s/%s", config_source_name(e->source), e->repo,
			     e->revision ? e->revision : "main", file) < 0)
			s = NULL;
	} else {
		const char *v = e->version_id ? e->version_id : version;

		if (asprintf(&s, "civitai:%s%s%s/%s", e->model_id ? e->model_id : "", v ? "@" : "",
			     v ? v : "", file) < 0)
			s = NULL;
	}
	free(remote);
	free(version);
	return s;
}

/* ---- the verifier's reports (verify_ops, engine_i.h) ------------------ */

/* Entries with one sha256 share a cache file. When one file's origin gave
 * every block of a mismatch, it alone fails: the others start afresh from
 * their own origins instead of showing corrupt. Otherwise nothing tells
 * which origin lied, and the file whose check failed fails, as before. */
static void blame_mismatch(struct engine_file *f, struct cache_file *cf, const char *reason,
			   const char *expected, const char *got)
{
	struct engine *e = f->eng;
	struct engine_file *culprit = NULL;
	int contributors = 0;
	bool shared = false;

	for (size_t i = 0; i < e->nfiles; i++) {
		struct engine_file *g = e->files[i];
		struct cache_file *gcf;

		pthread_mutex_lock(&g->lock);
		gcf = g->cf;
		pthread_mutex_unlock(&g->lock);
		if (gcf != cf)
			continue;
		shared = shared || g != f;
		if (atomic_exchange(&g->fetched, 0) > 0) {
			contributors++;
			culprit = g;
		}
	}
	if (contributors != 1)
		culprit = f;
	log_error("event=file_corrupt path=%s expected=%s actual=%s action=\"blocks dropped; "
		  "reads fail until the source is fixed\"", culprit->src.path, expected, got);
	engine_file_fail(culprit, -EIO, reason);
	strict_release(culprit, -EIO);
	if (culprit != f)
		strict_release(f, -EIO);	/* its parked reads would wait for nothing */
	if (shared && contributors == 1) {
		/* The bad bytes are gone: the others fetch anew from their own. */
		cache_file_set_state(cf, STORE_REMOTE, NULL, NULL);
		log_warn("event=shared_file_refetched path=%s blamed=%s action=\"its other entries "
			 "fetch it afresh from their own origins\"", f->src.path, culprit->src.path);
	}
}


static void verify_reported(struct engine_file *f, const struct verify_report *r)
{
	switch (r->verdict) {
	case VERIFY_GOOD:
		strict_release(f, 0);
		break;
	case VERIFY_INCOMPLETE:
		strict_refetch(f);	/* parked reads would wait for nothing */
		break;
	case VERIFY_DEFERRED:
		strict_release(f, -EIO);
		break;
	case VERIFY_MISMATCH:
		blame_mismatch(f, r->cf, r->reason, r->expected, r->got);
		break;
	case VERIFY_CORRUPT:
		engine_file_fail(f, -EIO, r->reason);
		strict_release(f, -EIO);
		break;
	}
}

static const struct verify_ops catalog_verify_ops = {
	.hashes = engine_file_hashes,
	.report = verify_reported,
};
