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
#include "modelfs/hexhash.h"
#include "modelfs/log.h"

#define HASH_CHUNK (1024 * 1024)

void verify_enqueue(struct engine_file *f)
{
	struct engine *e = f->eng;
	struct engine_file **grown;
	bool was = false;

	if (!atomic_compare_exchange_strong(&f->verify_queued, &was, true))
		return;
	pthread_mutex_lock(&e->vlock);
	if (e->vqueue_len == e->vqueue_cap) {
		size_t cap = e->vqueue_cap ? e->vqueue_cap * 2 : 16;

		grown = realloc(e->vqueue, cap * sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&e->vlock);
			atomic_store(&f->verify_queued, false);
			return;
		}
		e->vqueue = grown;
		e->vqueue_cap = cap;
	}
	e->vqueue[e->vqueue_len++] = f;
	pthread_cond_signal(&e->vcond);
	pthread_mutex_unlock(&e->vlock);
}

/* SHA-256 of f's cached bytes into sha256, and when git1 is not NULL its
 * git blob id ("blob <size>\0" + bytes, SHA-1) into git1: 0, -ENODATA
 * when a block went missing (evicted, or failed its checksum),
 * -ECANCELED at stop. */
static int hash_file(struct engine_file *f, struct cache_file *cf, char sha256[65], char *git1)
{
	uint64_t size = cache_file_size(cf);
	char *buf = malloc(HASH_CHUNK);
	struct hexhash *h = NULL, *g = NULL;
	int rc = buf ? hexhash_new(&h) : -ENOMEM;

	if (rc == 0 && git1) {
		char head[40];
		int n = snprintf(head, sizeof(head), "blob %llu", (unsigned long long)size);

		rc = hexhash_new_sha1(&g);
		if (rc == 0)
			hexhash_update(g, head, (size_t)n + 1);	/* with its NUL */
	}
	for (uint64_t off = 0; rc == 0 && off < size;) {
		size_t n = size - off < HASH_CHUNK ? (size_t)(size - off) : HASH_CHUNK;
		ssize_t got = cache_read(cf, buf, off, n);

		if (atomic_load(&f->eng->stop))
			rc = -ECANCELED;
		else if (got < 0)
			rc = (int)got;
		else {
			hexhash_update(h, buf, (size_t)got);
			if (g)
				hexhash_update(g, buf, (size_t)got);
		}
		off += n;
	}
	if (rc == 0) {
		hexhash_final(h, sha256);
		if (g)
			hexhash_final(g, git1);
	} else {
		hexhash_free(h);
		hexhash_free(g);
	}
	free(buf);
	return rc;
}

static void verify_file(struct engine_file *f)
{
	struct cache_file *cf;
	enum store_file_state st;
	char actual[65], git1[65], reason[256];
	const char *expected, *got;
	int rc;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (!cf)
		return;
	st = cache_file_state(cf, NULL, NULL);
	if (st == STORE_VERIFIED || st == STORE_COMPLETE) {
		strict_release(f, 0);
		return;
	}
	if (!cache_file_complete(cf))
		return;
	rc = hash_file(f, cf, actual, f->src.git_sha1 && !f->src.sha256 ? git1 : NULL);
	if (rc) {
		log_info("event=verify_deferred path=%s reason=\"%s\"", f->src.path,
			 rc == -ENODATA ? "a block is no longer cached" : strerror(-rc));
		strict_release(f, -EIO);
		return;
	}
	/* The source's SHA-256 when it has one, else a git blob id. */
	expected = f->src.sha256 ? f->src.sha256 : f->src.git_sha1;
	got = f->src.sha256 ? actual : git1;
	if (!expected) {
		cache_file_set_state(cf, STORE_COMPLETE, actual, NULL);
		log_info("event=file_complete path=%s sha256=%s", f->src.path, actual);
		strict_release(f, 0);
		return;
	}
	if (strcmp(got, expected) == 0) {
		cache_file_set_state(cf, STORE_VERIFIED, actual, NULL);
		log_info("event=file_verified path=%s %s=%s", f->src.path,
			 f->src.sha256 ? "sha256" : "git_sha1", got);
		strict_release(f, 0);
		return;
	}
	snprintf(reason, sizeof(reason), "checksum mismatch: expected %s %s, got %s",
		 f->src.sha256 ? "sha256" : "git blob sha1", expected, got);
	cache_file_set_state(cf, STORE_CORRUPT, actual, reason);
	cache_file_drop(cf);
	log_error("event=file_corrupt path=%s expected=%s actual=%s action=\"blocks dropped; "
		  "reads fail until the source is fixed\"", f->src.path, expected, got);
	engine_file_fail(f, -EIO, reason);
	strict_release(f, -EIO);
}

static void *verifier_main(void *arg)
{
	struct engine *e = arg;

	for (;;) {
		struct engine_file *f = NULL;

		pthread_mutex_lock(&e->vlock);
		while (!atomic_load(&e->stop) && e->vqueue_len == 0)
			pthread_cond_wait(&e->vcond, &e->vlock);
		if (!atomic_load(&e->stop)) {
			f = e->vqueue[0];
			memmove(e->vqueue, e->vqueue + 1, --e->vqueue_len * sizeof(*e->vqueue));
		}
		pthread_mutex_unlock(&e->vlock);
		if (!f)
			return NULL;
		verify_file(f);
		atomic_store(&f->verify_queued, false);
	}
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
	pthread_mutex_lock(&e->vlock);
	atomic_store(&e->stop, 1);
	pthread_cond_broadcast(&e->vcond);
	pthread_mutex_unlock(&e->vlock);
	if (e->verifier_started)
		pthread_join(e->verifier, NULL);
	e->verifier_started = false;
	free(e->vqueue);
	e->vqueue = NULL;
	e->vqueue_len = e->vqueue_cap = 0;
}
