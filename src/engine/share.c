/*
 * share.c: the engine's side of the shared bucket (bucket.h): making it
 * from the config, and the uploader, one background thread that puts
 * each file this node verified into the bucket once. Reads from the
 * bucket are download.c's (download_via_bucket()), in the workers.
 *
 * The uploader never blocks a read: it takes no engine lock across its
 * work, holds the file's blocks in the cache (cache_range_hold(): they
 * cannot be evicted or punched under it) and reads the data file itself
 * with its own HTTP client, within bucket.h (3)'s memory. A stop cancels
 * the upload under way (e->stop), which bucket.c aborts.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"

int share_open(struct engine *e, const struct config *cfg)
{
	const char *why = NULL;
	int rc = bucket_new(cfg->shared_cache, &e->bucket, &why);

	if (rc == -EINVAL)
		log_error("event=config_invalid key=shared_cache error=\"%s\"", why);
	else if (rc == 0)
		log_info("event=shared_cache bucket=\"%s\" mode=%s", bucket_name(e->bucket),
			 cfg->shared_cache_mode == CONFIG_SHARED_READ_ONLY ? "read-only"
									   : "read-write");
	return rc;
}

/* shared_cache_allow: a glob matching the entry's repo, id or name, or
 * the file's path in the mount; no list allows every file. */
static bool allowed(const struct config *cfg, const struct engine_file *f)
{
	const struct config_entry *en = f->src.entry;

	if (!cfg->shared_cache_allow)
		return true;
	for (char **g = cfg->shared_cache_allow; *g; g++)
		if ((en && en->repo && fnmatch(*g, en->repo, 0) == 0) ||
		    (en && en->id && fnmatch(*g, en->id, 0) == 0) ||
		    (en && en->name && fnmatch(*g, en->name, 0) == 0) ||
		    fnmatch(*g, f->src.path, 0) == 0)
			return true;
	return false;
}

void share_enqueue(struct engine_file *f)
{
	struct engine *e = f->eng;
	bool was = false;

	if (!e->bucket || e->cfg->shared_cache_mode == CONFIG_SHARED_READ_ONLY ||
	    f->src.size <= 0 || !allowed(e->cfg, f) ||
	    !atomic_compare_exchange_strong(&f->upload_queued, &was, true))
		return;
	/* Not queued at a stop or without memory: not uploaded this run (the
	 * bucket is an optimisation). */
	file_queue_push(&e->uqueue, f);
}

static void upload_file(struct engine_file *f, struct http_client *http)
{
	struct engine *e = f->eng;
	uint64_t size = (uint64_t)f->src.size;
	struct file_hashes want;
	struct cache_file *cf;
	int64_t started = clock_now_ms();
	int fd, rc;

	engine_file_hashes(f, &want);
	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (!want.sha256[0] || !cf || cache_file_state(cf, NULL, NULL) != STORE_VERIFIED)
		return;
	rc = cache_range_hold(cf, 0, size, &fd);
	if (rc) {
		log_info("event=bucket_upload_skipped path=%s reason=\"%s\"", f->src.path,
			 rc == -ENODATA ? "a block is no longer cached" : strerror(-rc));
		return;
	}
	rc = bucket_upload(e->bucket, http, want.sha256, fd, size, &e->stop);
	cache_range_release(cf, 0, size);
	if (rc == 0)
		log_info("event=bucket_uploaded path=%s sha256=%s bytes=%llu ms=%lld", f->src.path,
			 want.sha256, (unsigned long long)size, (long long)(clock_now_ms() - started));
	else if (rc == -EEXIST)
		log_info("event=bucket_has path=%s sha256=%s reason=\"in the bucket already, or "
			 "another node uploads it\"", f->src.path, want.sha256);
	else if (rc != -ECANCELED)
		log_warn("event=bucket_upload_failed path=%s sha256=%s error=\"%s\" action=\"reads "
			 "go on; not retried this run\"", f->src.path, want.sha256, strerror(-rc));
}

static void *uploader_main(void *arg)
{
	struct engine *e = arg;
	struct http_client *http = NULL;
	struct engine_file *f;

	if (engine_client_new(e->opts, &http) != 0) {
		log_error("event=uploader_start error=\"cannot create an HTTP client\"");
		return NULL;
	}
	while ((f = file_queue_pop(&e->uqueue)) != NULL)
		upload_file(f, http);
	http_client_free(http);
	return NULL;
}

int share_start(struct engine *e)
{
	int rc;

	if (!e->bucket || e->cfg->shared_cache_mode == CONFIG_SHARED_READ_ONLY)
		return 0;
	rc = pthread_create(&e->uploader, NULL, uploader_main, e);
	if (rc)
		return -rc;
	e->uploader_started = true;
	return 0;
}

void share_stop(struct engine *e)
{
	file_queue_stop(&e->uqueue, &e->uploader, &e->uploader_started);
}
