/*
 * refresh.c: the way to a file's bytes, learnt late. A file listed
 * without a resolution (its origin was down at mount) is resolved before
 * its first download, and its cache file opened then unless its settled
 * content key opened it at mount (file_cache()); a data URL
 * that expired (a signed link) or was never known is renewed
 * (refresh_url()). In both, one worker asks the origin and the others
 * wait for its answer. A cache file opened without anything that tells
 * versions apart keeps only a complete copy (engine_forget_unvalidated()).
 *
 * Locks: f->lock guards the source fields adopted here and the
 * resolving/refreshing flags; f->resolve_done is waited on with it. The
 * origin is asked with no lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "download_i.h"
#include "modelfs/log.h"

void engine_forget_unvalidated(const struct source_file *src, struct cache_file *cf)
{
	uint64_t had;

	if (src->validator || src->sha256 || src->git_sha1 || cache_file_complete(cf))
		return;
	had = cache_file_cached_bytes(cf);
	if (had == 0)
		return;
	cache_file_drop(cf);
	log_warn("event=unvalidated_partial_dropped path=%s bytes=%llu reason=\"the origin sends "
		 "neither ETag nor Last-Modified and no sha256 is known, so blocks from an earlier "
		 "run could be of another version\" action=\"give sha256 in the config to keep "
		 "partial copies\"", src->path, (unsigned long long)had);
}

void engine_file_hashes(struct engine_file *f, struct file_hashes *out)
{
	pthread_mutex_lock(&f->lock);
	snprintf(out->sha256, sizeof(out->sha256), "%s", f->src.sha256 ? f->src.sha256 : "");
	snprintf(out->git_sha1, sizeof(out->git_sha1), "%s", f->src.git_sha1 ? f->src.git_sha1 : "");
	pthread_mutex_unlock(&f->lock);
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

/* No block of f is asked for; the caller holds f->lock. */
static bool none_inflight_locked(const struct engine_file *f)
{
	for (uint64_t i = 0; i < f->nblocks; i++)
		if (f->inflight[i])
			return false;
	return true;
}

/* The file's cache, resolving the file first if it was listed without a
 * resolution (its origin was down at mount). One thread resolves; the
 * others wait for it without holding a lock. A file listed with its
 * cache file (its content key settled) keeps it: the resolution only
 * brings the way to its bytes. One listed without gets its cache file
 * here, and the layout that file was stored with (cache.h (2): 8 MiB
 * blocks from an earlier release, or a small block_size): nothing of it
 * was asked for until now, as reads wait for this (read.c). */
int file_cache(struct engine_file *f, struct http_client *http, struct cache_file **out)
{
	struct engine *e = f->eng;
	struct source_file scratch;
	struct cache_file *cf = NULL;
	struct inflight **inflight = NULL;
	char *key = NULL;
	bool done, had_cf;
	int rc;

	pthread_mutex_lock(&f->lock);
	while (!f->resolved && f->resolving)
		pthread_cond_wait(&f->resolve_done, &f->lock);
	done = f->resolved;
	cf = f->cf;
	rc = done ? 0 : f->err;
	if (!done && !rc)
		f->resolving = true;
	pthread_mutex_unlock(&f->lock);
	*out = done ? cf : NULL;
	if (done || rc)
		return rc;
	had_cf = cf != NULL;

	rc = scratch_of(f, &scratch);
	if (rc == 0)
		rc = source_refresh(e->sources, http, &scratch);
	if (rc == 0 && !cf) {
		rc = source_content_key(&scratch, &key);
		if (rc == 0)
			rc = cache_file_open(e->cache, key, (uint64_t)f->src.size,
					     engine_cache_block_size(e->cfg), &cf);
		if (rc == 0 && !(inflight = calloc(cache_file_nblocks(cf) ? cache_file_nblocks(cf)
							: 1, sizeof(*inflight))))
			rc = -ENOMEM;
		if (rc == 0)
			engine_forget_unvalidated(&scratch, cf);
	}
	pthread_mutex_lock(&f->lock);
	f->resolving = false;
	if (rc == 0 && inflight && !none_inflight_locked(f))
		rc = -EIO;	/* asked for in the placeholder's blocks: read.c's rule broken */
	if (rc == 0) {
		if (inflight) {
			engine_file_lay_out(f, cf, inflight);
			inflight = NULL;
			cache_file_add_name(cf, f->src.path);	/* for its log lines; best effort */
		}
		f->resolved = true;
		adopt_locked(f, &scratch);
		/* What the source says the bytes hash to, when the config did not. */
		if (!f->src.sha256 && !f->src.git_sha1) {
			f->src.sha256 = scratch.sha256;
			f->src.git_sha1 = scratch.git_sha1;
			scratch.sha256 = scratch.git_sha1 = NULL;
		}
		log_info("event=resolved_late path=%s block_size=%u", f->src.path, f->block_size);
	}
	pthread_cond_broadcast(&f->resolve_done);
	pthread_mutex_unlock(&f->lock);
	if (rc && rc != -EAGAIN) {
		char reason[256];

		snprintf(reason, sizeof(reason), "cannot resolve: %s",
			 scratch.error ? scratch.error : strerror(-rc));
		engine_file_fail(f, rc == -EACCES ? -EACCES : -EIO, reason);
	}
	/* Complete already (an earlier run's): hashed as engine_start() hashes
	 * the files it starts with, as no block of it will arrive to do it. */
	if (rc == 0 && !had_cf && cache_file_complete(cf))
		verify_enqueue(f);
	free(inflight);
	free(key);
	source_file_clear(&scratch);
	*out = rc ? NULL : cf;
	return rc;
}

/* Get a fresh data URL from the origin (an expired signature, or none),
 * unless it was renewed since generation gen, the one the caller tried.
 * One worker asks; the others wait for its answer: the workers of a file
 * find its URL expired together, and CivitAI counts each renewal as a
 * download. */
int refresh_url(struct engine_file *f, struct http_client *http, uint32_t gen)
{
	struct source_file scratch;
	int rc;

	pthread_mutex_lock(&f->lock);
	while (f->refreshing)
		pthread_cond_wait(&f->resolve_done, &f->lock);
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
	pthread_cond_broadcast(&f->resolve_done);
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

void resolve_reason(int rc, char *out, size_t len)
{
	snprintf(out, len, "cannot resolve: %s", rc == -EAGAIN ? "origin unreachable" : strerror(-rc));
}

int file_cache_retried(struct engine_file *f, struct http_client *http,
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
