/*
 * verify.c: hashing files as they land, and the verdict. A file's
 * SHA-256 follows its cached bytes from the start, in order (cache.h's
 * running hash): the worker that commits the block the hash waits for
 * advances it by up to a download unit, with no lock held, before its
 * next download (so hashing keeps pace with the workers however many
 * there are); longer stretches, such as a resumed file's earlier blocks,
 * go to the verifier thread here. When the last block arrives, the file
 * is queued for the verifier, which finishes the hash or, if a hashed
 * block went meanwhile, reads the file back whole through the cache
 * (every block's XXH3 checked on the way), never on a reader's path.
 * The outcome is the file's state: complete (nothing to compare with),
 * verified, or corrupt (its blocks are dropped and reads fail until it
 * is fetched and verified afresh).
 * The verdict goes to the catalog through engine.verify_ops (catalog.c
 * owns the files' state, their errors and their parked reads): this file
 * calls nothing of the catalog's, nor engine_read().
 *
 * Locks: the queue of files to hash is a file_queue (its lock a leaf);
 * vdone_lock guards the count of verdicts (a leaf); a file's lock is
 * taken alone, to read f->cf. Nothing is held while hashing or
 * reporting.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"
#include "modelfs/clock.h"
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

/* Tell the catalog what was found, then whoever waits for a verdict. */
static void tell(struct engine_file *f, const struct verify_report *r)
{
	struct engine *e = f->eng;

	e->verify_ops->report(f, r);
	pthread_mutex_lock(&e->vdone_lock);
	e->verdicts++;
	pthread_cond_broadcast(&e->vdone);
	pthread_mutex_unlock(&e->vdone_lock);
}

static void report(struct engine_file *f, enum verify_verdict verdict, const char *reason)
{
	tell(f, &(struct verify_report){ .verdict = verdict, .reason = reason });
}

uint64_t verify_verdicts(struct engine *e)
{
	uint64_t n;

	pthread_mutex_lock(&e->vdone_lock);
	n = e->verdicts;
	pthread_mutex_unlock(&e->vdone_lock);
	return n;
}

void verify_wait(struct engine *e, uint64_t seen, int ms)
{
	struct timespec until = clock_deadline(CLOCK_MONOTONIC, ms);

	pthread_mutex_lock(&e->vdone_lock);
	while (e->verdicts == seen && !atomic_load(&e->stop) &&
	       pthread_cond_timedwait(&e->vdone, &e->vdone_lock, &until) == 0)
		;
	pthread_mutex_unlock(&e->vdone_lock);
}

/* Only a source without a SHA-256 needs the git blob id hashed. */
static bool wants_git1(const struct file_hashes *want)
{
	return want->git_sha1[0] && !want->sha256[0];
}

/* The file is complete: finish its hash and report what it says. */
static void verify_complete(struct engine_file *f, struct cache_file *cf,
			    const struct file_hashes *want)
{
	bool by_sha256 = want->sha256[0] != '\0';
	char actual[65], git1[65], reason[256];
	enum store_file_state st;
	const char *expected, *got;
	uint64_t gen;
	int rc;

	rc = cache_file_hash(cf, actual, wants_git1(want) ? git1 : NULL, &f->eng->stop, &gen);
	if (rc) {
		log_info("event=verify_deferred path=%s reason=\"%s\"", f->src.path,
			 rc == -ENODATA ? "a block is no longer cached" : strerror(-rc));
		report(f, rc == -ENODATA ? VERIFY_INCOMPLETE : VERIFY_DEFERRED, NULL);
		return;
	}
	/* The source's SHA-256 when it has one, else a git blob id. */
	expected = by_sha256 ? want->sha256 : want->git_sha1[0] ? want->git_sha1 : NULL;
	got = by_sha256 ? actual : git1;
	st = !expected ? STORE_COMPLETE : strcmp(got, expected) == 0 ? STORE_VERIFIED : STORE_CORRUPT;
	if (st == STORE_CORRUPT)
		snprintf(reason, sizeof(reason), "checksum mismatch: expected %s %s, got %s",
			 by_sha256 ? "sha256" : "git blob sha1", expected, got);
	/* Drops its blocks when corrupt. */
	rc = cache_file_set_hashed(cf, gen, st, actual, st == STORE_CORRUPT ? reason : NULL);
	if (rc == -ESTALE) {
		/* A block hashed went since: what is cached now is hashed again. */
		if (cache_file_complete(cf))
			verify_enqueue(f);
		else
			report(f, VERIFY_INCOMPLETE, NULL);
		return;
	}
	if (st == STORE_COMPLETE) {
		log_info("event=file_complete path=%s sha256=%s", f->src.path, actual);
		report(f, VERIFY_GOOD, NULL);
	} else if (st == STORE_VERIFIED) {
		log_info("event=file_verified path=%s %s=%s", f->src.path,
			 by_sha256 ? "sha256" : "git_sha1", got);
		report(f, VERIFY_GOOD, NULL);
		if (by_sha256)
			share_enqueue(f);	/* other nodes read it from the bucket */
	} else {
		tell(f, &(struct verify_report){ .verdict = VERIFY_MISMATCH, .reason = reason,
						 .cf = cf, .expected = expected, .got = got });
	}
}

static void verify_file(struct engine_file *f)
{
	struct cache_file *cf;
	enum store_file_state st;
	struct file_hashes want;

	pthread_mutex_lock(&f->lock);
	cf = f->cf;
	pthread_mutex_unlock(&f->lock);
	if (!cf)
		return;
	f->eng->verify_ops->hashes(f, &want);
	st = cache_file_state(cf, NULL, NULL);
	if (st == STORE_VERIFIED || st == STORE_COMPLETE) {
		report(f, VERIFY_GOOD, NULL);
		/* Verified in an earlier run (engine_start() queues it): the
		 * bucket may not have it yet. */
		if (st == STORE_VERIFIED && want.sha256[0])
			share_enqueue(f);
		return;
	}
	if (cache_file_complete(cf)) {
		verify_complete(f, cf, &want);
		return;
	}
	cache_file_hash_advance(cf, wants_git1(&want), UINT64_MAX, &f->eng->stop);
	/* Queued complete and evicted since, or a strict file's pass that
	 * ended short: its parked reads must not wait for nothing. */
	report(f, VERIFY_INCOMPLETE, NULL);
}

void verify_advance(struct engine_file *f, struct cache_file *cf)
{
	struct file_hashes want;

	f->eng->verify_ops->hashes(f, &want);
	if (cache_file_hash_advance(cf, wants_git1(&want), f->eng->cfg->block_size,
				    &f->eng->stop) == 1)
		verify_enqueue(f);	/* a long run of blocks, e.g. a resumed file's */
}

static void *verifier_main(void *arg)
{
	struct engine *e = arg;
	struct engine_file *f;

	while ((f = file_queue_pop(&e->vqueue)) != NULL) {
		/* Let go first: blocks that arrive while it is hashed queue it
		 * again, so that none is left unhashed until the next one, and
		 * a file completed again meanwhile (refetched for strict reads)
		 * is not lost. */
		atomic_store(&f->verify_queued, false);
		verify_file(f);
	}
	return NULL;
}

int verify_start(struct engine *e)
{
	int rc = pthread_create(&e->verifier, NULL, verifier_main, e);

	if (rc)
		return -rc;
	e->verifier_started = true;
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
	f->eng->verify_ops->hashes(f, &want);
	rc = cache_file_verify(cf, want.sha256[0] ? want.sha256 : NULL,
			       want.git_sha1[0] ? want.git_sha1 : NULL, &f->eng->stop, out);
	if (out->bad_blocks)
		log_warn("event=verify_bad_blocks path=%s blocks=%llu bytes=%llu action=dropped",
			 f->src.path, (unsigned long long)out->bad_blocks,
			 (unsigned long long)out->bad_bytes);
	if (out->hash == CACHE_HASH_MISMATCH) {
		log_error("event=file_corrupt path=%s error=\"%s\" action=\"blocks dropped; "
			  "reads fail until a remount fetches it afresh\"", f->src.path, out->reason);
		report(f, VERIFY_CORRUPT, out->reason);
	} else if (out->hash == CACHE_HASH_VERIFIED || out->hash == CACHE_HASH_COMPLETE) {
		log_info("event=file_reverified path=%s sha256=%s", f->src.path, out->sha256);
	}
	return rc;
}
