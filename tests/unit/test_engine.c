/*
 * test_engine.c: the engine driven by seeded random schedules, with only
 * the network replaced (mock_origin.h): the real catalog, fetch workers,
 * verifier, cache (in a temp dir) and SQLite index. Each case draws from
 * its seed a config of plain url entries (0 bytes to a few MiB, sha256
 * pinned or not, origins with or without Range, strong, weak or no ETag,
 * small block sizes so that runs, readahead and loaders happen, some
 * files in a cache made with 2 MiB blocks so that split ranges happen),
 * then runs reader threads (sequential streaks, random, overlapping and
 * past-EOF reads), and perhaps faults, evictions, a cache limit,
 * prefetches, an origin that changes a file, engine_stop() in the
 * middle followed by an offline remount, and an origin that is down at
 * mount (every file listed with its configured size, resolved at its
 * first read; some in a cache whose 2 MiB-block file only the late
 * resolution's content key finds, engine_i.h's layout). Checked for
 * every case:
 *   (1) every read is byte-exact, or a clean error (-EIO, -EACCES) where
 *       the case allows one (faults, stop, a corrupt or changed file);
 *   (2) without faults, evictions or a limit, no byte is downloaded twice;
 *   (3) a file read whole ends "verified" with a known sha256, "corrupt"
 *       when the origin served other bytes, "complete" without one;
 *   (4) bytes a reader had before a stop are read back offline;
 *   (5) no case hangs: a watchdog fails the run naming the seed.
 * MODELFS_ENGINE_CASES=N runs N cases (default 1000) from seed
 * MODELFS_ENGINE_SEED_BASE (default 1); MODELFS_ENGINE_SEED=N replays
 * one case with the engine's log on stderr (MODELFS_LOG sets its level);
 * MODELFS_ENGINE_PARALLEL=N cases run at once (default 8: most of a
 * case's time is backoff and stall sleeps); MODELFS_ENGINE_WATCHDOG=S
 * bounds one case (default 120 s).
 */
#include "modelfs/cache.h"
#include "modelfs/clock.h"
#include "modelfs/config.h"
#include "modelfs/engine.h"
#include "modelfs/hexhash.h"
#include "modelfs/http.h"
#include "modelfs/log.h"
#include "modelfs/source.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "mock_origin.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define MAX_FILES 4
#define MAX_READERS 4
#define LEGACY_BLOCK (2 * MiB)	/* a cache made before 256 KiB blocks */

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? mock_rand(s) % n : 0;
}

static bool chance(uint64_t *s, int percent)
{
	return below(s, 100) < (uint64_t)percent;
}

/* ---- a case ---------------------------------------------------------------- */

struct tfile {
	char url[96], path[32];
	size_t size;
	unsigned char *served;		/* what the origin sends first */
	unsigned char *later;		/* what it sends after a change, or NULL */
	char sha256[65];		/* pinned in the config, or "" */
	bool corrupt;			/* the pin is of other bytes than served */
	bool ranges, strict, legacy, safetensors;
	bool legacy_late;		/* unpinned, in 2 MiB blocks under its url key */
	int validator;			/* 0 none, 1 strong ETag, 2 weak ETag, 3 Last-Modified */
	struct engine_file *ef;
	atomic_bool read_failed;	/* some read of it got an error */
};

/* A span a reader had the bytes of, for the offline read-back. */
struct span {
	int file;
	uint64_t off;
	size_t len;
};

struct tcase {
	uint64_t seed;
	int nfiles;
	struct tfile files[MAX_FILES];
	uint32_t block_size;
	int connections, nreaders;
	bool faults, transient_only, evict, prefetch, stop_mid, remount, change;
	bool down_at_mount;		/* the origin answers only once the engine is open */
	int64_t cache_limit;		/* 0: none */
	struct mock_faults fcfg;

	char dir[96];
	struct mock_origin *origin;
	struct mock_faulty *faulty;
	struct engine_opts opts;
	struct config *cfg;
	struct cache *cache;
	struct engine *eng;

	pthread_rwlock_t gate;		/* readers hold it shared around engine_read() */
	atomic_bool stopping;		/* set under gate: no engine_read() any more */
	atomic_bool readers_done;
	atomic_int pf_cancel;

	pthread_mutex_t lock;
	struct span *spans;		/* protected by lock */
	size_t nspans, capspans;	/* protected by lock */
	int failures;			/* protected by lock */

	atomic_bool finished;
	int64_t started_ms;
};

static void fail(struct tcase *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct tcase *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->lock);
	if (c->failures++ < 5)
		fprintf(stderr, "engine case seed=%" PRIu64 ": %s\n", c->seed, msg);
	pthread_mutex_unlock(&c->lock);
}

/* The bytes of a file: random, or a safetensors-like header (8-byte
 * length, then '{') so that the loader detection has data to find. */
static void fill(uint64_t *rng, unsigned char *p, size_t n, bool safetensors)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = mock_rand(rng);

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
	if (safetensors && n > 64 * KiB) {
		uint64_t hdr = 32 * KiB;

		for (int i = 0; i < 8; i++)
			p[i] = (unsigned char)(hdr >> (8 * i));
		p[8] = '{';
	}
}

static size_t draw_size(uint64_t *rng, uint32_t bs)
{
	switch (below(rng, 8)) {
	case 0: return 0;
	case 1: return 1 + below(rng, 4 * KiB);
	case 2: return bs * (1 + below(rng, 6));			/* whole blocks */
	case 3: return bs * (1 + below(rng, 6)) + (below(rng, 2) ? 1 : -1);
	case 4: return 2 * MiB + below(rng, 2 * MiB);
	default: return 1 + below(rng, 3 * MiB / 2);
	}
}

/* Draw everything about case seed but its schedule. */
static void draw_case(struct tcase *c, uint64_t seed)
{
	static const uint32_t block_sizes[] = { 64 * KiB, 128 * KiB, 512 * KiB, 1 * MiB };
	uint64_t rng = seed * 0x2545f4914f6cdd1dULL + 1;

	memset(c, 0, sizeof(*c));
	c->seed = seed;
	c->block_size = block_sizes[below(&rng, 4)];
	c->connections = 1 + (int)below(&rng, 6);
	c->nreaders = 1 + (int)below(&rng, MAX_READERS);
	c->nfiles = 1 + (int)below(&rng, MAX_FILES);
	c->faults = chance(&rng, 20);
	c->transient_only = chance(&rng, 60);
	c->evict = chance(&rng, 15);
	c->prefetch = chance(&rng, 20);
	c->stop_mid = chance(&rng, 15);
	c->change = !c->stop_mid && chance(&rng, 8);
	if (chance(&rng, 10))
		c->cache_limit = (int64_t)(512 * KiB + below(&rng, 4 * MiB));
	/* What readers had stays cached unless something evicts it. */
	c->remount = c->stop_mid && !c->faults && !c->evict && !c->cache_limit && chance(&rng, 40);
	if (c->faults)
		c->fcfg = (struct mock_faults){ .seed = mock_rand(&rng), .percent = 3 + (int)below(&rng, 8),
						.reset = true, .status = true, .stall = chance(&rng, 50),
						.proto = !c->transient_only, .stall_ms = 100 };
	for (int i = 0; i < c->nfiles; i++) {
		struct tfile *t = &c->files[i];

		snprintf(t->path, sizeof(t->path), "f%d.bin", i);
		snprintf(t->url, sizeof(t->url), "http://origin.test/m/f%d.bin", i);
		t->size = draw_size(&rng, c->block_size);
		t->ranges = !chance(&rng, 12);
		t->validator = (int)below(&rng, 4);
		t->strict = chance(&rng, 8);
		t->safetensors = chance(&rng, 30);
		t->served = malloc(t->size ? t->size : 1);
		fill(&rng, t->served, t->size, t->safetensors);
		if (chance(&rng, 55)) {
			t->corrupt = t->size > 0 && chance(&rng, 15);
			if (t->corrupt) {
				/* The pin is of the bytes the origin should have sent. */
				unsigned char *good = malloc(t->size);

				memcpy(good, t->served, t->size);
				good[below(&rng, t->size)] ^= 0x5a;
				hexhash_sha256(good, t->size, t->sha256);
				free(good);
			} else {
				hexhash_sha256(t->served, t->size, t->sha256);
			}
			t->legacy = t->ranges && t->size >= 1 * MiB && chance(&rng, 25);
		}
		/* Only a strong ETag makes a change visible mid-file (If-Range). */
		if (c->change && t->ranges && t->validator == 1 && t->size > 0 && !t->strict) {
			t->later = malloc(t->size);
			fill(&rng, t->later, t->size, false);
		}
	}
	/* Drawn last, so that the draws above stay those of earlier releases.
	 * A change would be picked up whole by a late resolution: not drawn. */
	c->down_at_mount = !c->change && chance(&rng, 10);
	for (int i = 0; i < c->nfiles; i++) {
		struct tfile *t = &c->files[i];

		/* Its url key needs a validator: a strong ETag or Last-Modified. */
		t->legacy_late = c->down_at_mount && !t->sha256[0] && t->ranges && t->size >= 1 * MiB &&
				 (t->validator == 1 || t->validator == 3);
	}
}

static void case_free_files(struct tcase *c)
{
	for (int i = 0; i < c->nfiles; i++) {
		free(c->files[i].served);
		free(c->files[i].later);
	}
	free(c->spans);
}

static char *config_text(const struct tcase *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fprintf(f, "[modelfs]\nlayout = \"flat\"\nblock_size = \"%uK\"\nconnections = %d\n"
		"retry_timeout = %d\nheader_prefetch = false\n[models.checkpoints]\n",
		c->block_size / KiB, c->connections, c->faults ? 10 : 3);
	for (int i = 0; i < c->nfiles; i++) {
		const struct tfile *t = &c->files[i];

		fprintf(f, "\"m%d\" = { url = \"%s\"", i, t->url);
		if (t->sha256[0])
			fprintf(f, ", sha256 = \"%s\"", t->sha256);
		if (t->strict)
			fprintf(f, ", verify = \"strict\"");
		if (c->down_at_mount)	/* listed, unresolved, with its size */
			fprintf(f, ", size = %zu", t->size);
		fprintf(f, " }\n");
	}
	fclose(f);
	return text;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int open_cache(struct tcase *c)
{
	struct cache_limits lim = { .max_bytes = c->cache_limit, .min_free_bytes = 0 };

	return cache_open(c->dir, &lim, &c->cache);
}

/* A file cached by an older release under the key its origin's answer
 * gives (url and validator: source_content_key()), which an engine
 * listing it unresolved cannot know before it resolves it. */
static int open_legacy_late(struct tcase *c, int i)
{
	const struct tfile *t = &c->files[i];
	char etag[64], *key = NULL;
	struct source_file sf = { .entry = &c->cfg->entries[i], .size = (int64_t)t->size };
	struct cache_file *cf;
	int rc;

	snprintf(etag, sizeof(etag), "\"v1-%d\"", i);
	sf.validator = t->validator == 1 ? etag : "Thu, 01 Jan 2026 00:00:00 GMT";
	rc = source_content_key(&sf, &key);
	if (rc == 0)
		rc = cache_file_open(c->cache, key, t->size, LEGACY_BLOCK, &cf);
	free(key);
	return rc;
}

/* The origin (and its fault layer), the config, the cache and the engine. */
static int case_open(struct tcase *c)
{
	struct config_error err;
	char *text;
	int rc;

	snprintf(c->dir, sizeof(c->dir), "%s/modelfs-ut-engine-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(c->dir))
		return -errno;
	rc = mock_origin_new(&c->origin);
	for (int i = 0; rc == 0 && i < c->nfiles; i++) {
		const struct tfile *t = &c->files[i];
		char etag[64];

		snprintf(etag, sizeof(etag), "%s\"v1-%d\"", t->validator == 2 ? "W/" : "", i);
		rc = mock_origin_add(c->origin, t->url, t->served, t->size,
				     t->validator == 1 || t->validator == 2 ? etag : NULL,
				     t->validator == 3 ? "Thu, 01 Jan 2026 00:00:00 GMT" : NULL,
				     t->ranges);
	}
	if (rc == 0 && c->faults)
		rc = mock_faulty_new(c->origin, &c->fcfg, &c->faulty);
	if (rc)
		return rc;
	c->opts.client_new = c->faulty ? mock_faulty_client_new : mock_origin_client_new;
	c->opts.client_arg = c->faulty ? (void *)c->faulty : (void *)c->origin;
	text = config_text(c);
	rc = config_parse(text, strlen(text), "engine-case.toml", &c->cfg, &err);
	if (rc)
		fprintf(stderr, "seed=%" PRIu64 ": config: %s\n%s", c->seed, err.msg, text);
	free(text);
	if (rc == 0)
		rc = open_cache(c);
	/* A file cached by an older release keeps its 2 MiB blocks. */
	for (int i = 0; rc == 0 && i < c->nfiles; i++) {
		struct cache_file *cf;
		char key[80];

		if (!c->files[i].legacy)
			continue;
		snprintf(key, sizeof(key), "sha256:%s", c->files[i].sha256);
		rc = cache_file_open(c->cache, key, c->files[i].size, LEGACY_BLOCK, &cf);
	}
	for (int i = 0; rc == 0 && i < c->nfiles; i++)
		if (c->files[i].legacy_late)
			rc = open_legacy_late(c, i);
	if (rc)
		return rc;
	mock_origin_set_down(c->origin, c->down_at_mount);
	rc = engine_open_with(c->cfg, NULL, c->cache, &c->opts, &c->eng);
	mock_origin_set_down(c->origin, false);
	return rc;
}

static int find_files(struct tcase *c)
{
	for (int i = 0; i < c->nfiles; i++) {
		c->files[i].ef = NULL;
		for (size_t k = 0; k < engine_nfiles(c->eng); k++)
			if (strcmp(engine_file_path(engine_file_at(c->eng, k)), c->files[i].path) == 0)
				c->files[i].ef = engine_file_at(c->eng, k);
		if (!c->files[i].ef) {
			fail(c, "file %s is not in the engine", c->files[i].path);
			return -ENOENT;
		}
		if (engine_file_size(c->files[i].ef) != c->files[i].size) {
			fail(c, "file %s has size %" PRIu64 ", want %zu", c->files[i].path,
			     engine_file_size(c->files[i].ef), c->files[i].size);
			return -EIO;
		}
	}
	return 0;
}

static void case_close(struct tcase *c)
{
	engine_close(c->eng);
	c->eng = NULL;
	cache_close(c->cache);
	c->cache = NULL;
	config_free(c->cfg);
	mock_faulty_free(c->faulty);
	mock_origin_free(c->origin);
	nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- reads ----------------------------------------------------------------- */

struct waited_read {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	ssize_t len;
	char *buf;
};

static void read_cb(void *arg, const char *buf, ssize_t len)
{
	struct waited_read *w = arg;
	char *copy = NULL;

	if (len > 0) {
		copy = malloc((size_t)len);
		memcpy(copy, buf, (size_t)len);
	}
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->len = len;
	w->buf = copy;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* An error this case may give a read of t. */
static bool error_allowed(struct tcase *c, struct tfile *t, ssize_t err)
{
	if (err != -EIO)
		return false;	/* the engine makes every failure -EIO here (no 401/403) */
	/* An origin without Range is streamed whole, and a strict file is
	 * fetched whole, at most three passes each for the blocks readers
	 * want: evicted faster than that, they fail. */
	return (c->faults && !c->transient_only) || c->stop_mid || t->corrupt || t->later ||
	       (c->faults && c->cache_limit) || (!t->ranges && (c->evict || c->cache_limit)) ||
	       (t->strict && (c->evict || c->cache_limit));
}

/* Read len at off of file i through engine_read() and check the answer:
 * true when bytes came. Unless gated (after a stop no read may start),
 * always reads. */
static bool read_check(struct tcase *c, int i, uint64_t off, size_t len, bool gated)
{
	struct tfile *t = &c->files[i];
	struct waited_read w = { .lock = PTHREAD_MUTEX_INITIALIZER,
				 .cond = PTHREAD_COND_INITIALIZER };
	size_t want = off >= t->size ? 0 : (len < t->size - off ? len : t->size - off);
	bool ok = false;

	if (gated) {
		pthread_rwlock_rdlock(&c->gate);
		if (atomic_load(&c->stopping)) {
			pthread_rwlock_unlock(&c->gate);
			return false;
		}
	}
	engine_read(t->ef, off, len, read_cb, &w);
	if (gated)
		pthread_rwlock_unlock(&c->gate);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	if (w.len < 0) {
		atomic_store(&t->read_failed, true);
		if (!error_allowed(c, t, w.len))
			fail(c, "read %s off=%" PRIu64 " len=%zu: error %zd (%s)", t->path, off, len,
			     w.len, strerror((int)-w.len));
	} else if ((size_t)w.len != want) {
		fail(c, "read %s off=%" PRIu64 " len=%zu: %zd bytes, want %zu", t->path, off, len,
		     w.len, want);
	} else if (want && memcmp(w.buf, t->served + off, want) != 0) {
		size_t k = 0;

		while (k < want && ((unsigned char *)w.buf)[k] == t->served[off + k])
			k++;
		fail(c, "read %s off=%" PRIu64 " len=%zu: bytes differ from byte %" PRIu64 "%s",
		     t->path, off, len, off + k,
		     t->later && memcmp(w.buf, t->later + off, want) == 0 ? " (the new version's)" : "");
	} else {
		ok = true;
	}
	free(w.buf);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return ok;
}

static void remember_span(struct tcase *c, int i, uint64_t off, size_t len)
{
	pthread_mutex_lock(&c->lock);
	if (c->nspans == c->capspans) {
		size_t cap = c->capspans ? c->capspans * 2 : 64;
		struct span *grown = realloc(c->spans, cap * sizeof(*grown));

		if (!grown) {
			pthread_mutex_unlock(&c->lock);
			return;
		}
		c->spans = grown;
		c->capspans = cap;
	}
	c->spans[c->nspans++] = (struct span){ .file = i, .off = off, .len = len };
	pthread_mutex_unlock(&c->lock);
}

struct reader_arg {
	struct tcase *c;
	uint64_t seed;
};

static void *reader_main(void *arg)
{
	struct reader_arg *ra = arg;
	struct tcase *c = ra->c;
	uint64_t rng = ra->seed, off = 0;
	int nops = 4 + (int)below(&rng, 28), i = (int)below(&rng, (uint64_t)c->nfiles);
	size_t len = 4 * KiB;

	for (int op = 0; op < nops; op++) {
		struct tfile *t;

		if (chance(&rng, 25))
			i = (int)below(&rng, (uint64_t)c->nfiles);
		t = &c->files[i];
		switch (below(&rng, 10)) {
		case 0: case 1: case 2: case 3:		/* the next piece of a streak */
			off += len;
			len = (1 + below(&rng, 64)) * 4 * KiB;
			break;
		case 4: case 5:				/* anywhere */
			off = below(&rng, t->size + 64 * KiB);
			len = 1 + below(&rng, 300 * KiB);
			break;
		case 6:					/* over the last one */
			off = off > 8 * KiB ? off - below(&rng, 8 * KiB) : 0;
			len = 1 + below(&rng, 128 * KiB);
			break;
		case 7:					/* at or past the end */
			off = t->size - (t->size ? below(&rng, t->size < 4 * KiB ? t->size : 4 * KiB) : 0) +
			      (chance(&rng, 50) ? below(&rng, 1 * MiB) : 0);
			len = 1 + below(&rng, 256 * KiB);
			break;
		case 8:					/* a header, a probe */
			off = chance(&rng, 50) ? 0 : 1 * MiB;
			len = chance(&rng, 50) ? 8 : 64 * KiB;
			break;
		default:				/* a big one */
			off = below(&rng, t->size + 1);
			len = 1 * MiB + below(&rng, 1 * MiB);
			break;
		}
		if (off > t->size + 2 * MiB)
			off = 0;
		if (read_check(c, i, off, len, true) && off < t->size)
			remember_span(c, i, off, len < t->size - off ? len : t->size - off);
		else if (atomic_load(&c->stopping))
			break;
	}
	return NULL;
}

/* ---- the other actors -------------------------------------------------------- */

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

struct actor_arg {
	struct tcase *c;
	uint64_t seed;
};

static void *evictor_main(void *arg)
{
	struct actor_arg *a = arg;
	uint64_t rng = a->seed;

	while (!atomic_load(&a->c->readers_done)) {
		struct cache_file *cf;

		sleep_ms(1 + (int)below(&rng, 15));
		cf = engine_file_cache(a->c->files[below(&rng, (uint64_t)a->c->nfiles)].ef);
		if (cf)
			cache_file_drop(cf);
	}
	return NULL;
}

static void *prefetcher_main(void *arg)
{
	struct actor_arg *a = arg;
	struct tcase *c = a->c;
	uint64_t rng = a->seed;
	struct tfile *t = &c->files[below(&rng, (uint64_t)c->nfiles)];
	struct engine_prefetch_opts o = { .window = 1 + (int)below(&rng, 4), .cancel = &c->pf_cancel };
	char reason[256];
	int rc;

	sleep_ms((int)below(&rng, 5));
	rc = engine_prefetch(t->ef, &o, reason, sizeof(reason));
	if (rc == 0 || rc == -ECANCELED)
		return NULL;
	/* Errors a prefetch may end with in this case. */
	if (((rc == -EIO || rc == -EPROTO || rc == -ESTALE) && error_allowed(c, t, -EIO)) ||
	    (rc == -ENOSPC && (c->cache_limit || c->evict)) || (c->faults && rc == -EAGAIN))
		return NULL;
	fail(c, "prefetch %s: %d (%s)", t->path, rc, reason);
	return NULL;
}

static void *stopper_main(void *arg)
{
	struct actor_arg *a = arg;
	struct tcase *c = a->c;
	uint64_t rng = a->seed;

	sleep_ms((int)below(&rng, 40));
	/* As a FUSE session ends: no read starts once the stop has begun. */
	pthread_rwlock_wrlock(&c->gate);
	atomic_store(&c->stopping, true);
	pthread_rwlock_unlock(&c->gate);
	engine_stop(c->eng);
	return NULL;
}

/* ---- the checks after the schedule ----------------------------------------- */

/* (2): with nothing forcing a second download, none happened. */
static void check_once(struct tcase *c)
{
	if (c->faults || c->evict || c->cache_limit || c->change)
		return;
	for (int i = 0; i < c->nfiles; i++) {
		struct tfile *t = &c->files[i];
		unsigned most = mock_origin_max_served(c->origin, t->url, 0, t->size);

		/* Blocks queued before a corrupt verdict are still fetched. */
		if (most > 1 && !t->corrupt)
			fail(c, "file %s: some bytes were downloaded %u times", t->path, most);
	}
}

/* The file's state once the verifier had its turn: polled, since it
 * hashes in the background. */
static const char *settled_state(struct tfile *t)
{
	const char *st = engine_file_state(t->ef);

	for (int i = 0; i < 2000; i++) {
		st = engine_file_state(t->ef);
		if (strcmp(st, "partial") != 0 && strcmp(st, "remote") != 0)
			break;
		sleep_ms(5);
	}
	return st;
}

/* (3): read every file whole, then look at its state. */
static void check_complete(struct tcase *c)
{
	for (int i = 0; i < c->nfiles; i++) {
		struct tfile *t = &c->files[i];
		const char *st, *want;
		bool whole = true;

		for (uint64_t off = 0; off < t->size; off += 1 * MiB)
			whole = read_check(c, i, off, 1 * MiB, false) && whole;
		if (c->cache_limit || atomic_load(&t->read_failed))
			continue;	/* not all of it may fit; or it failed, as allowed */
		if (c->down_at_mount && !t->sha256[0] && t->size == 0)
			continue;	/* no byte read: never resolved, so nothing is known */
		if (!whole)
			continue;
		st = settled_state(t);
		if (t->corrupt)
			want = "corrupt";
		else if (t->sha256[0])
			want = "verified";
		else
			want = "complete";
		if (strcmp(st, want) != 0)
			fail(c, "file %s (size %zu, sha256 %s) is %s, want %s", t->path, t->size,
			     t->sha256[0] ? "pinned" : "not pinned", st, want);
	}
}

/* (4): remount with the origin down; what readers had is still there. */
static void check_offline(struct tcase *c)
{
	int rc;

	engine_close(c->eng);
	c->eng = NULL;
	cache_close(c->cache);
	c->cache = NULL;
	mock_origin_set_down(c->origin, true);
	rc = open_cache(c);
	if (rc == 0)
		rc = engine_open_with(c->cfg, NULL, c->cache, &c->opts, &c->eng);
	if (rc == 0)
		rc = find_files(c);
	if (rc == 0)
		rc = engine_start(c->eng);
	if (rc) {
		fail(c, "offline remount: %d", rc);
		return;
	}
	for (size_t k = 0; k < c->nspans; k++) {
		struct span *s = &c->spans[k];
		struct tfile *t = &c->files[s->file];

		/* Without a validator (a weak ETag is none) or a sha256 a
		 * partial copy is dropped at open (engine_forget_unvalidated());
		 * a corrupt file has none. Resolved late, a file leaves no stored
		 * resolution: offline, only its sha256 finds its bytes. */
		if (((t->validator == 0 || t->validator == 2) && !t->sha256[0]) || t->corrupt ||
		    (c->down_at_mount && !t->sha256[0]))
			continue;
		if (!read_check(c, s->file, s->off, s->len, false))
			fail(c, "offline remount: %s off=%" PRIu64 " len=%zu was read before the stop "
			     "and is not cached", t->path, s->off, s->len);
	}
}

/* ---- running a case ---------------------------------------------------------- */

static void change_files(struct tcase *c)
{
	for (int i = 0; i < c->nfiles; i++) {
		struct tfile *t = &c->files[i];
		char etag[64];

		if (!t->later)
			continue;
		snprintf(etag, sizeof(etag), "\"v2-%d\"", i);
		mock_origin_change(c->origin, t->url, t->later, etag);
	}
}

static void run_case(struct tcase *c)
{
	pthread_t readers[MAX_READERS], evictor, prefetcher, stopper;
	struct reader_arg ra[MAX_READERS];
	struct actor_arg ea = { .c = c, .seed = c->seed ^ 0xe1 },
			 pa = { .c = c, .seed = c->seed ^ 0xf2 }, sa = { .c = c, .seed = c->seed ^ 0x53 };
	int rc;

	pthread_rwlock_init(&c->gate, NULL);
	pthread_mutex_init(&c->lock, NULL);
	rc = case_open(c);
	if (rc == 0)
		rc = find_files(c);
	if (rc == 0)
		rc = engine_start(c->eng);
	if (rc) {
		fail(c, "open: %d (%s)", rc, strerror(-rc));
		goto out;
	}
	for (int r = 0; r < c->nreaders; r++) {
		ra[r] = (struct reader_arg){ .c = c, .seed = c->seed * 31 + (uint64_t)r + 7 };
		pthread_create(&readers[r], NULL, reader_main, &ra[r]);
	}
	if (c->evict)
		pthread_create(&evictor, NULL, evictor_main, &ea);
	if (c->prefetch)
		pthread_create(&prefetcher, NULL, prefetcher_main, &pa);
	if (c->stop_mid)
		pthread_create(&stopper, NULL, stopper_main, &sa);
	if (c->change) {
		sleep_ms(2);
		change_files(c);
	}
	for (int r = 0; r < c->nreaders; r++)
		pthread_join(readers[r], NULL);
	atomic_store(&c->readers_done, true);
	if (c->evict)
		pthread_join(evictor, NULL);
	if (c->stop_mid)
		pthread_join(stopper, NULL);
	if (c->prefetch && !c->stop_mid)
		atomic_store(&c->pf_cancel, 1);
	if (c->prefetch)
		pthread_join(prefetcher, NULL);
	check_once(c);
	if (!c->stop_mid)
		check_complete(c);
	else if (c->remount)
		check_offline(c);
out:
	case_close(c);
	pthread_rwlock_destroy(&c->gate);
	pthread_mutex_destroy(&c->lock);
}

/* ---- the runner: cases in parallel, under a watchdog ------------------------- */

struct runner {
	pthread_mutex_t lock;
	uint64_t next, end;		/* seeds left: [next, end) */
	int failed_cases;
	uint64_t failed_seeds[16];
	struct tcase **running;		/* per slot, for the watchdog */
	int slots;
	int64_t watchdog_ms;
};

struct slot_arg {
	struct runner *r;
	int slot;
};

static void *slot_main(void *arg)
{
	struct slot_arg *sa = arg;
	struct runner *r = sa->r;

	for (;;) {
		struct tcase *c = calloc(1, sizeof(*c));
		uint64_t seed;

		pthread_mutex_lock(&r->lock);
		seed = r->next < r->end ? r->next++ : 0;
		pthread_mutex_unlock(&r->lock);
		if (!seed || !c) {
			free(c);
			return NULL;
		}
		draw_case(c, seed);
		c->started_ms = clock_now_ms();
		pthread_mutex_lock(&r->lock);
		r->running[sa->slot] = c;
		pthread_mutex_unlock(&r->lock);
		run_case(c);
		pthread_mutex_lock(&r->lock);
		r->running[sa->slot] = NULL;
		if (c->failures) {
			if (r->failed_cases < 16)
				r->failed_seeds[r->failed_cases] = seed;
			r->failed_cases++;
		}
		pthread_mutex_unlock(&r->lock);
		case_free_files(c);
		free(c);
	}
}

static int64_t env_num(const char *name, int64_t dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtoll(v, NULL, 10) : dflt;
}

static void describe(const struct tcase *c)
{
	fprintf(stderr, "  block_size=%uK connections=%d readers=%d files=%d faults=%s evict=%d "
		"prefetch=%d stop=%d remount=%d change=%d cache_limit=%" PRId64 " down_at_mount=%d\n",
		c->block_size / KiB, c->connections, c->nreaders, c->nfiles,
		!c->faults ? "no" : c->transient_only ? "transient" : "any", c->evict, c->prefetch,
		c->stop_mid, c->remount, c->change, c->cache_limit, c->down_at_mount);
	for (int i = 0; i < c->nfiles; i++) {
		const struct tfile *t = &c->files[i];

		fprintf(stderr, "  %s size=%zu ranges=%d validator=%d sha256=%s corrupt=%d strict=%d "
			"legacy=%d legacy_late=%d changes=%d\n", t->path, t->size, t->ranges,
			t->validator, t->sha256[0] ? "pinned" : "no", t->corrupt, t->strict, t->legacy,
			t->legacy_late, t->later != NULL);
	}
}

int main(void)
{
	int64_t one = env_num("MODELFS_ENGINE_SEED", 0);
	int64_t cases = env_num("MODELFS_ENGINE_CASES", 1000);
	int64_t base = env_num("MODELFS_ENGINE_SEED_BASE", 1);
	struct runner r = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct slot_arg *sa;
	pthread_t *th;
	int64_t t0 = clock_now_ms();
	int devnull = open("/dev/null", O_WRONLY);

	if (one > 0) {
		const char *lvl = getenv("MODELFS_LOG");

		log_init(2, 0, lvl ? (enum log_level)log_level_parse(lvl) : LOG_LVL_INFO);
		base = one;
		cases = 1;
	} else {
		log_init(devnull, 0, LOG_LVL_ERROR);	/* faults make error lines on purpose */
	}
	http_global_init();
	r.next = (uint64_t)(base > 0 ? base : 1);
	r.end = r.next + (uint64_t)cases;
	r.slots = (int)env_num("MODELFS_ENGINE_PARALLEL", 8);
	if (r.slots < 1 || one > 0)
		r.slots = 1;
	r.watchdog_ms = env_num("MODELFS_ENGINE_WATCHDOG", 120) * 1000;
	r.running = calloc((size_t)r.slots, sizeof(*r.running));
	sa = calloc((size_t)r.slots, sizeof(*sa));
	th = calloc((size_t)r.slots, sizeof(*th));
	for (int i = 0; i < r.slots; i++) {
		sa[i] = (struct slot_arg){ .r = &r, .slot = i };
		pthread_create(&th[i], NULL, slot_main, &sa[i]);
	}
	for (;;) {
		bool busy;

		sleep_ms(100);
		pthread_mutex_lock(&r.lock);
		busy = r.next < r.end;
		for (int i = 0; i < r.slots; i++) {
			struct tcase *c = r.running[i];

			busy = busy || c;
			if (c && clock_now_ms() - c->started_ms > r.watchdog_ms) {
				fprintf(stderr, "engine case seed=%" PRIu64 " hung: not done after %" PRId64
					" s; replay it with MODELFS_ENGINE_SEED=%" PRIu64 "\n", c->seed,
					r.watchdog_ms / 1000, c->seed);
				describe(c);
				_exit(1);	/* its threads are stuck: nothing to clean up */
			}
		}
		pthread_mutex_unlock(&r.lock);
		if (!busy)
			break;
	}
	for (int i = 0; i < r.slots; i++)
		pthread_join(th[i], NULL);
	printf("%" PRId64 " seeded engine cases from seed %" PRId64 " in %.1f s, %d failed\n", cases,
	       base, (double)(clock_now_ms() - t0) / 1000.0, r.failed_cases);
	for (int i = 0; i < r.failed_cases && i < 16; i++) {
		struct tcase c;

		draw_case(&c, r.failed_seeds[i]);
		fprintf(stderr, "failed: seed %" PRIu64 "; replay with MODELFS_ENGINE_SEED=%" PRIu64
			" build/tests/unit/test_engine\n", r.failed_seeds[i], r.failed_seeds[i]);
		describe(&c);
		case_free_files(&c);
	}
	CHECK(r.failed_cases == 0);
	free(r.running);
	free(sa);
	free(th);
	http_global_cleanup();
	if (devnull >= 0)
		close(devnull);
	return check_summary();
}
