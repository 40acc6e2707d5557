/*
 * verify.c: the background hasher. When the last block of a file
 * arrives, the file is queued here; one thread reads it back through the
 * cache (so every block's XXH3 is checked on the way) and computes its
 * SHA-256, never on a reader's path. The outcome is the file's state:
 * complete (nothing to compare with), verified, or corrupt (its blocks
 * are dropped and reads fail until it is fetched and verified afresh).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"
#include "modelfs/log.h"

void verify_enqueue(struct engine_file *f)
{
	bool was = false;

	if (!atomic_compare_exchange_strong(&f->verify_queued, &was, true))
		return;
	/* Not queued while the engine stops (workers still finish blocks
	 * then), nor without memory: a later block or the next run queues it. */
	if (!file_queue_push(&f->eng->vqueue, f))
		atomic_store(&f->verify_queued, false);
}

static void blame_mismatch(struct engine_file *f, struct cache_file *cf, const char *reason,
			   const char *expected, const char *got);

static void verify_file(struct engine_file *f)
{
	struct cache_file *cf;
	enum store_file_state st;
	char actual[65], git1[65], reason[256];
	const char *expected, *got;
	struct file_hashes want;
	bool by_sha256;
	int rc;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (!cf)
		return;
	engine_file_hashes(f, &want);
	by_sha256 = want.sha256[0] != '\0';
	st = cache_file_state(cf, NULL, NULL);
	if (st == STORE_VERIFIED || st == STORE_COMPLETE) {
		strict_release(f, 0);
		/* Verified in an earlier run (verify_start() queues it): the
		 * bucket may not have it yet. */
		if (st == STORE_VERIFIED && by_sha256)
			share_enqueue(f);
		return;
	}
	if (!cache_file_complete(cf))
		return;
	rc = cache_file_hash(cf, actual, want.git_sha1[0] && !by_sha256 ? git1 : NULL,
			     &f->eng->stop);
	if (rc) {
		log_info("event=verify_deferred path=%s reason=\"%s\"", f->src.path,
			 rc == -ENODATA ? "a block is no longer cached" : strerror(-rc));
		strict_release(f, -EIO);
		return;
	}
	/* The source's SHA-256 when it has one, else a git blob id. */
	expected = by_sha256 ? want.sha256 : want.git_sha1[0] ? want.git_sha1 : NULL;
	got = by_sha256 ? actual : git1;
	if (!expected) {
		cache_file_set_state(cf, STORE_COMPLETE, actual, NULL);
		log_info("event=file_complete path=%s sha256=%s", f->src.path, actual);
		strict_release(f, 0);
		return;
	}
	if (strcmp(got, expected) == 0) {
		cache_file_set_state(cf, STORE_VERIFIED, actual, NULL);
		log_info("event=file_verified path=%s %s=%s", f->src.path,
			 by_sha256 ? "sha256" : "git_sha1", got);
		strict_release(f, 0);
		if (by_sha256)
			share_enqueue(f);	/* other nodes read it from the bucket */
		return;
	}
	snprintf(reason, sizeof(reason), "checksum mismatch: expected %s %s, got %s",
		 by_sha256 ? "sha256" : "git blob sha1", expected, got);
	cache_file_set_state(cf, STORE_CORRUPT, actual, reason);	/* drops its blocks */
	blame_mismatch(f, cf, reason, expected, got);
}

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

static void *verifier_main(void *arg)
{
	struct engine *e = arg;

	struct engine_file *f;

	while ((f = file_queue_pop(&e->vqueue)) != NULL) {
		verify_file(f);
		atomic_store(&f->verify_queued, false);
	}
	return NULL;
}

int verify_start(struct engine *e)
{
	int rc = pthread_create(&e->verifier, NULL, verifier_main, e);

	if (rc)
		return -rc;
	e->verifier_started = true;
	/* Files completed before a restart but never hashed. */
	for (size_t i = 0; i < e->nfiles; i++) {
		struct engine_file *f = e->files[i];
		struct cache_file *cf;

		pthread_mutex_lock(&f->lock);
		cf = f->cf;
		pthread_mutex_unlock(&f->lock);
		if (cf && cache_file_complete(cf))
			verify_enqueue(f);
	}
	return 0;
}

void verify_stop(struct engine *e)
{
	file_queue_stop(&e->vqueue, &e->verifier, &e->verifier_started);
}

int engine_file_verify(struct engine_file *f, struct cache_verify *out)
{
	struct cache_file *cf;
	struct file_hashes want;
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (!cf)
		return 0;	/* never resolved: nothing cached */
	engine_file_hashes(f, &want);
	rc = cache_file_verify(cf, want.sha256[0] ? want.sha256 : NULL,
			       want.git_sha1[0] ? want.git_sha1 : NULL, &f->eng->stop, out);
	if (out->bad_blocks)
		log_warn("event=verify_bad_blocks path=%s blocks=%llu bytes=%llu action=dropped",
			 f->src.path, (unsigned long long)out->bad_blocks,
			 (unsigned long long)out->bad_bytes);
	if (out->hash == CACHE_HASH_MISMATCH) {
		log_error("event=file_corrupt path=%s error=\"%s\" action=\"blocks dropped; "
			  "reads fail until a remount fetches it afresh\"", f->src.path, out->reason);
		engine_file_fail(f, -EIO, out->reason);
		strict_release(f, -EIO);
	} else if (out->hash == CACHE_HASH_VERIFIED || out->hash == CACHE_HASH_COMPLETE) {
		log_info("event=file_reverified path=%s sha256=%s", f->src.path, out->sha256);
	}
	return rc;
}
