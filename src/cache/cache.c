/*
 * cache.c: the block cache on local disk. Each cached file is one sparse
 * data file of its full size; which blocks hold valid bytes is known from
 * the store (with each block's XXH3) and mirrored in memory per open file.
 *
 * Block states, per file, guarded by the file's lock:
 *
 *   ABSENT --reserve--> WRITING --commit--> PRESENT_UNCHECKED? no: PRESENT
 *     ^                    |abort                |
 *     +--------------------+----- evict/drop ----+
 *
 *   A block loaded from the store at open starts UNCHECKED; its first
 *   read hashes it and makes it PRESENT, or drops it on a mismatch.
 *   Several readers may hash the same block at once; only the one that
 *   still finds it UNCHECKED afterwards decides, and logs, once. A bad
 *   block is forgotten at once (BAD: not present, not counted, free to
 *   be fetched again) but its bytes are punched only when the last
 *   reader holding it lets go: a hole never appears under a reader.
 *
 * Readers copy bytes with no lock held; a per-block reader count keeps
 * eviction from punching a hole under them.
 */
#include "modelfs/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "modelfs/clock.h"
#include "modelfs/hexhash.h"
#include "modelfs/log.h"

#define CHECK_CHUNK (256 * 1024)
#define LRU_BATCH 256
#define TOUCH_INTERVAL_MS 1000
/* Block uses go to the store in batches: a warm 1 GiB read is 4,096 uses,
 * and one transaction each, under the store's one lock, held every reader
 * thread up (issue 12, docs/PERFORMANCE.md). */
#define TOUCH_BATCH 256
#define TOUCH_FLUSH_MS 2000

/* BLOCK_BAD: failed its check; like ABSENT but still to be punched. */
enum block_state { BLOCK_ABSENT, BLOCK_WRITING, BLOCK_UNCHECKED, BLOCK_PRESENT, BLOCK_BAD };

struct block {
	uint8_t state;
	uint16_t readers;	/* copies in progress */
	uint64_t xxh3;
	int64_t touched;	/* last atime written to the store, ms */
};

/* SHA-256 (and, when asked, the git blob id) of blocks [0, next) of a
 * file: advanced as blocks arrive, so that a complete file is hashed
 * without reading it again (the running hash, below). stale: a block it
 * hashed (or is hashing) went since; it starts over. busy: one thread
 * advances it, holding no lock while it reads and hashes blocks
 * [next, reading); nobody else touches it then, but for setting stale. */
struct running_hash {
	struct hexhash *sha256, *git1;
	uint64_t next, reading;
	bool stale;
	bool busy;
};

struct cache_file {
	struct cache *cache;
	int64_t id;
	uint64_t size;
	uint32_t block_size;
	uint64_t nblocks;
	int fd;
	pthread_mutex_t lock;
	struct block *blocks;		/* protected by lock */
	uint64_t present_bytes;		/* protected by lock */
	enum store_file_state state;	/* protected by lock */
	char *sha256, *error;		/* protected by lock */
	char *names;			/* paths for log lines, ","-joined, or NULL; protected by lock */
	unsigned pin_mask;		/* CACHE_PIN_* owners; protected by lock */
	int64_t last_used;		/* the newest block touched, ms; protected by lock */
	/* Bumped whenever a block stops being present (dropped, evicted,
	 * found bad) or the data file is replaced: a hash of blocks read
	 * while it was g vouches for the file only while it is still g.
	 * Protected by lock. */
	uint64_t gen;
	struct running_hash run;	/* protected by lock (see struct running_hash) */
	pthread_cond_t run_idle;	/* with lock: run.busy was cleared */
	struct cache_file *next;	/* c->files list, protected by c->space_lock */
};

struct cache {
	char *dir;
	int lock_fd;
	/* The directory was deleted or replaced while in use: blocks already
	 * cached stay readable through their open files, nothing new is
	 * cached. Set once, never cleared; protected by space_lock. */
	bool lost;
	int relock_fd;			/* the lock of the directory made again, or -1 */
	struct store *store;
	struct cache_limits limits;
	pthread_mutex_t open_lock;	/* one cache_file_open at a time: one handle per file */
	pthread_mutex_t space_lock;
	uint64_t used;			/* present blocks; protected by space_lock */
	uint64_t reserved;		/* blocks being written; protected by space_lock */
	struct cache_file *files;	/* protected by space_lock */
	/* Block uses not in the store yet: written in one transaction when
	 * TOUCH_BATCH have gathered or the oldest is TOUCH_FLUSH_MS old, and
	 * before LRU order is read (eviction, listings) or the cache closes.
	 * A crash loses at most these: eviction order, not bytes. Protected
	 * by touch_lock, a leaf (released before the store is written). */
	pthread_mutex_t touch_lock;
	struct store_touch touches[TOUCH_BATCH];
	int ntouches;
	int64_t touches_since;		/* atime of the oldest gathered, ms */
};

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* The flock is held for the life of the process; the pid in the file
 * tells the next one who holds it. */
static int lock_dir(const char *dir, int *out_fd)
{
	char path[PATH_MAX], pid[32], holder[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;

		n = pread(fd, holder, sizeof(holder) - 1, 0);
		holder[n > 0 ? n : 0] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		log_error("event=cache_locked dir=%s holder_pid=%s error=\"another modelfs uses "
			  "this cache dir; stop it or use --cache-dir\"", dir,
			  holder[0] ? holder : "unknown");
		close(fd);
		return err;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, n, 0) != n)
		log_warn("event=cache_lock_pid dir=%s error=\"%s\"", dir, strerror(errno));
	*out_fd = fd;
	return 0;
}

/* Remove every data file the index does not name (an index lost or
 * replaced, a crash between creating a data file and its row, an export
 * cut short): bytes nobody can vouch for, which the limits would not
 * count. 0 or -errno. */
static int remove_orphans(struct cache *c)
{
	struct store_file *files = NULL;
	uint64_t bytes = 0;
	char path[PATH_MAX];
	struct dirent *d;
	int n = 0, removed = 0, rc;
	DIR *dir;

	rc = store_files_list(c->store, &files, &n);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/data", c->dir);
	dir = opendir(path);
	if (!dir) {
		store_files_free(files, n);
		return -errno;
	}
	while ((d = readdir(dir)) != NULL) {
		char *end;
		long long id = strtoll(d->d_name, &end, 10);
		bool known = false;
		struct stat st;

		if (d->d_name[0] == '.')
			continue;
		for (int i = 0; i < n && !*end; i++)
			known = known || files[i].id == id;
		if (known)
			continue;
		if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			bytes += (uint64_t)st.st_blocks * 512;
		if (unlinkat(dirfd(dir), d->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	store_files_free(files, n);
	if (removed)
		log_warn("event=cache_orphans_removed dir=%s files=%d bytes=%llu reason=\"data files "
			 "the index does not name\"", c->dir, removed, (unsigned long long)bytes);
	return 0;
}

/* The index is damaged: it cannot say which bytes are good, so it is
 * moved aside (kept for a bug report), its data files go, and the cache
 * starts empty. A re-fetch is the cost; serving unvouched bytes is not. */
static int start_afresh(struct cache *c, const char *index)
{
	static const char *const parts[] = { "", "-wal", "-shm" };
	char from[PATH_MAX + 8], to[PATH_MAX + 48];
	long long now = (long long)time(NULL);

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		snprintf(from, sizeof(from), "%s%s", index, parts[i]);
		snprintf(to, sizeof(to), "%s.damaged-%lld%s", index, now, parts[i]);
		if (rename(from, to) != 0 && errno != ENOENT)
			return -errno;
	}
	log_error("event=cache_index_damaged dir=%s moved_to=%s.damaged-%lld action=\"the cache "
		  "starts empty and its files are fetched again; the damaged index is kept for a "
		  "bug report and may be deleted\"", c->dir, index, now);
	return store_open(index, &c->store);
}

/* Move the gathered uses into batch; the caller holds touch_lock. */
static int touches_take_locked(struct cache *c, struct store_touch *batch)
{
	int n = c->ntouches;

	memcpy(batch, c->touches, (size_t)n * sizeof(*batch));
	c->ntouches = 0;
	return n;
}

static void touches_write(struct cache *c, const struct store_touch *batch, int n)
{
	if (n)
		store_blocks_touch(c->store, batch, n);	/* it logs a failure: LRU order only */
}

static void touches_flush(struct cache *c)
{
	struct store_touch batch[TOUCH_BATCH];
	int n;

	pthread_mutex_lock(&c->touch_lock);
	n = touches_take_locked(c, batch);
	pthread_mutex_unlock(&c->touch_lock);
	touches_write(c, batch, n);
}

/* A use of block idx for LRU order, gathered (see struct cache): true
 * when the batch is due, for touches_flush() once f's lock is let go.
 * Taken with f's lock held or not. */
static bool touch_gather(struct cache_file *f, uint64_t idx, int64_t now)
{
	struct cache *c = f->cache;
	bool due;

	pthread_mutex_lock(&c->touch_lock);
	while (c->ntouches == TOUCH_BATCH) {
		/* One read of many blocks filled it: the store now, under f's
		 * lock (the store is below it in the lock order). */
		struct store_touch batch[TOUCH_BATCH];
		int n = touches_take_locked(c, batch);

		pthread_mutex_unlock(&c->touch_lock);
		touches_write(c, batch, n);
		pthread_mutex_lock(&c->touch_lock);
	}
	if (c->ntouches == 0)
		c->touches_since = now;
	c->touches[c->ntouches++] = (struct store_touch){ .file_id = f->id, .idx = idx,
							  .atime = now };
	due = c->ntouches == TOUCH_BATCH || now - c->touches_since >= TOUCH_FLUSH_MS;
	pthread_mutex_unlock(&c->touch_lock);
	return due;
}

int cache_open(const char *dir, const struct cache_limits *lim, struct cache **out)
{
	struct cache *c = calloc(1, sizeof(*c));
	char path[PATH_MAX];
	int rc;

	if (!c)
		return -ENOMEM;
	c->lock_fd = c->relock_fd = -1;
	pthread_mutex_init(&c->open_lock, NULL);
	pthread_mutex_init(&c->space_lock, NULL);
	pthread_mutex_init(&c->touch_lock, NULL);
	c->limits = *lim;
	c->dir = strdup(dir);
	if (!c->dir) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/data", dir);
	rc = mkdir_p(path);
	if (rc) {
		log_error("event=cache_open dir=%s error=\"cannot create: %s\"", dir, strerror(-rc));
		goto fail;
	}
	/* A gated or private model's bytes are no other user's business; a
	 * cache made by an older release had its data readable by all. */
	if (chmod(path, 0700) != 0)
		log_warn("event=cache_open dir=%s error=\"cannot make data/ private: %s\"", dir,
			 strerror(errno));
	rc = lock_dir(dir, &c->lock_fd);
	if (rc)
		goto fail;
	snprintf(path, sizeof(path), "%s/index.sqlite", dir);
	rc = store_open(path, &c->store);
	if (rc == -EUCLEAN)
		rc = start_afresh(c, path);
	if (rc)
		goto fail;
	rc = remove_orphans(c);
	if (rc == 0)
		rc = store_bytes_used(c->store, &c->used);
	if (rc)
		goto fail;
	*out = c;
	return 0;
fail:
	cache_close(c);
	return rc;
}

static void file_free(struct cache_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->run_idle);
	free(f->blocks);
	hexhash_free(f->run.sha256);
	hexhash_free(f->run.git1);
	free(f->sha256);
	free(f->error);
	free(f->names);
	free(f);
}

void cache_close(struct cache *c)
{
	struct cache_file *f, *next;

	if (!c)
		return;
	if (c->store)
		touches_flush(c);
	for (f = c->files; f; f = next) {
		next = f->next;
		file_free(f);
	}
	store_close(c->store);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	if (c->relock_fd >= 0)
		close(c->relock_fd);
	pthread_mutex_destroy(&c->touch_lock);
	pthread_mutex_destroy(&c->space_lock);
	pthread_mutex_destroy(&c->open_lock);
	free(c->dir);
	free(c);
}

int64_t cache_created(struct cache *c)
{
	return store_created(c->store);
}

int cache_files_list(struct cache *c, struct store_file **out, int *n)
{
	touches_flush(c);	/* last_used from the store: this process's uses too */
	return store_files_list(c->store, out, n);
}

int cache_resolution_get(struct cache *c, const char *entry_id, struct store_resolution **out,
			 int *n)
{
	return store_resolution_get(c->store, entry_id, out, n);
}

int cache_resolution_put(struct cache *c, const char *entry_id, const struct store_resolution *r,
			 int n)
{
	return store_resolution_put(c->store, entry_id, r, n);
}

int cache_resolutions_all(struct cache *c, struct store_resolution **out, int *n)
{
	return store_resolutions_all(c->store, out, n);
}

int cache_file_log_fetch(struct cache_file *f, uint64_t first, uint64_t len, int64_t ms, int rc,
			 const char *error)
{
	return store_log_fetch(f->cache->store, f->id, first, len, ms, rc, error);
}

int cache_fetch_log_recent(struct cache *c, int max, struct store_fetch **out, int *n)
{
	return store_fetch_log_recent(c->store, max, out, n);
}

static int fs_stats(struct cache *c, uint64_t *total, uint64_t *avail)
{
	struct statvfs sv;

	/* Through the lock file, which is open: the directory may be gone. */
	if (fstatvfs(c->lock_fd, &sv) != 0)
		return -errno;
	*total = (uint64_t)sv.f_blocks * sv.f_frsize;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

static void effective_limits(struct cache *c, uint64_t fs_total, uint64_t *limit,
			     uint64_t *min_free)
{
	const struct cache_limits *l = &c->limits;

	if (l->max_bytes > 0)
		*limit = (uint64_t)l->max_bytes;
	else if (l->max_percent > 0)
		*limit = (uint64_t)((double)fs_total * l->max_percent / 100.0);
	else
		*limit = UINT64_MAX;
	if (l->min_free_bytes >= 0)
		*min_free = (uint64_t)l->min_free_bytes;
	else
		*min_free = (uint64_t)((double)fs_total * l->min_free_percent / 100.0);
}

/* Whether the directory this cache opened was deleted or replaced (its
 * lock file is not the one held open); logged once. Called with
 * space_lock held. */
static bool lost_locked(struct cache *c)
{
	char path[PATH_MAX];
	struct stat named, held;

	if (c->lost)
		return true;
	snprintf(path, sizeof(path), "%s/lock", c->dir);
	if (stat(path, &named) == 0 && fstat(c->lock_fd, &held) == 0 &&
	    named.st_dev == held.st_dev && named.st_ino == held.st_ino)
		return false;
	c->lost = true;
	log_error("event=cache_dir_lost dir=%s action=\"the cache directory was deleted while in "
		  "use: cached blocks are still served, new ones are read from the network "
		  "without caching; unmount and mount again to cache (it starts empty)\"", c->dir);
	return true;
}

int cache_usage_get(struct cache *c, struct cache_usage *u)
{
	uint64_t total = 0;
	int rc = fs_stats(c, &total, &u->fs_free);

	if (rc)
		return rc;
	effective_limits(c, total, &u->limit, &u->min_free);
	pthread_mutex_lock(&c->space_lock);
	u->used = c->used;
	u->lost = lost_locked(c);
	pthread_mutex_unlock(&c->space_lock);
	return 0;
}

int cache_rehome(struct cache *c)
{
	char path[PATH_MAX];
	int fd, rc;

	pthread_mutex_lock(&c->space_lock);
	rc = lost_locked(c) ? 0 : 1;
	pthread_mutex_unlock(&c->space_lock);
	if (rc)
		return 0;
	snprintf(path, sizeof(path), "%s/data", c->dir);
	rc = mkdir_p(path);
	/* A lock held again, so that no other process opens a second cache
	 * here while this one runs. The first lock fd stays: statvfs and the
	 * "lost" test go through it. Only the control thread calls this. */
	if (rc == 0)
		rc = lock_dir(c->dir, &fd);
	if (rc)
		return rc;
	if (c->relock_fd >= 0)
		close(c->relock_fd);
	c->relock_fd = fd;
	return 0;
}

static void load_block(void *ctx, const struct store_block *sb)
{
	struct cache_file *f = ctx;

	if (sb->idx >= f->nblocks || sb->len != cache_block_len(f, sb->idx))
		return;		/* geometry changed: the row is ignored and overwritten later */
	f->blocks[sb->idx].state = BLOCK_UNCHECKED;
	f->blocks[sb->idx].xxh3 = sb->xxh3;
	f->blocks[sb->idx].touched = sb->atime;
	if (sb->atime > f->last_used)
		f->last_used = sb->atime;
	f->present_bytes += sb->len;
}

static struct cache_file *find_file_locked(struct cache *c, int64_t id)
{
	for (struct cache_file *f = c->files; f; f = f->next)
		if (f->id == id)
			return f;
	return NULL;
}

/* cache_file_open() under c->open_lock. */
static int file_open_locked(struct cache *c, const char *key, uint64_t size, uint32_t block_size,
			    struct cache_file **out)
{
	struct cache_file *f, *known;
	struct store_file sf;
	char path[PATH_MAX];
	struct stat st;
	int rc;

	rc = store_file_get_or_create(c->store, key, size, block_size, &sf);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->space_lock);
	known = find_file_locked(c, sf.id);
	if (sf.dropped_bytes)
		c->used -= sf.dropped_bytes;	/* a new size: its old blocks are gone */
	pthread_mutex_unlock(&c->space_lock);
	if (known) {
		/* Two entries with the same content share one cached file; the
		 * same content cannot have two sizes while it is open. */
		rc = known->size == size ? 0 : -ESTALE;
		store_file_clear(&sf);
		*out = rc ? NULL : known;
		return rc;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		store_file_clear(&sf);
		return -ENOMEM;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->run_idle, NULL);
	f->cache = c;
	f->fd = -1;
	f->id = sf.id;
	f->size = sf.size;
	f->block_size = sf.block_size;
	f->nblocks = (f->size + f->block_size - 1) / f->block_size;
	f->state = sf.state;
	f->sha256 = sf.sha256;
	f->error = sf.error;
	f->pin_mask = sf.pin_mask;
	sf.sha256 = sf.error = NULL;
	f->blocks = calloc(f->nblocks ? f->nblocks : 1, sizeof(*f->blocks));
	if (!f->blocks) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/data/%lld", c->dir, (long long)f->id);
	f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f->fd < 0 || fstat(f->fd, &st) != 0) {
		rc = -errno;
		log_error("event=cache_open_file path=%s error=\"%s\"", path, strerror(errno));
		goto fail;
	}
	if ((st.st_mode & 077) && fchmod(f->fd, 0600) != 0)	/* an older release's 0644 */
		log_warn("event=cache_open_file path=%s error=\"cannot make it private: %s\"",
			 path, strerror(errno));
	/* Dropped blocks of an old size leave no bytes behind. */
	if (sf.dropped_bytes && ftruncate(f->fd, 0) != 0) {
		rc = -errno;
		goto fail;
	}
	if (((uint64_t)st.st_size != f->size || sf.dropped_bytes) &&
	    ftruncate(f->fd, (off_t)f->size) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = store_blocks_load(c->store, f->id, load_block, f);
	if (rc)
		goto fail;
	pthread_mutex_lock(&c->space_lock);
	f->next = c->files;
	c->files = f;
	pthread_mutex_unlock(&c->space_lock);
	store_file_clear(&sf);
	*out = f;
	return 0;
fail:
	store_file_clear(&sf);
	file_free(f);
	return rc;
}

int cache_file_open(struct cache *c, const char *key, uint64_t size, uint32_t block_size,
		    struct cache_file **out)
{
	int rc;

	pthread_mutex_lock(&c->open_lock);
	rc = file_open_locked(c, key, size, block_size, out);
	pthread_mutex_unlock(&c->open_lock);
	return rc;
}

int cache_file_open_same_size(struct cache *c, const char *key, uint64_t size,
			      uint32_t block_size, struct cache_file **out)
{
	struct store_file sf;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->open_lock);
	rc = store_file_get(c->store, key, &sf);
	if (rc == 0 && sf.size != size)
		rc = -ESTALE;
	store_file_clear(&sf);
	if (rc == 0 || rc == -ENOENT)
		rc = file_open_locked(c, key, size, block_size, out);
	pthread_mutex_unlock(&c->open_lock);
	return rc;
}

/* Is name one of the ","-joined names? */
static bool has_name(const char *names, const char *name, size_t len)
{
	for (const char *p = names; p && *p;) {
		size_t n = strcspn(p, ",");

		if (n == len && strncmp(p, name, len) == 0)
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

int cache_file_add_name(struct cache_file *f, const char *name)
{
	size_t len = strlen(name), have;
	char *grown;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	if (has_name(f->names, name, len))
		goto out;	/* each remount's engine names it again */
	have = f->names ? strlen(f->names) : 0;
	grown = realloc(f->names, have + len + 2);
	if (!grown) {
		rc = -ENOMEM;
		goto out;
	}
	if (have)
		grown[have++] = ',';
	memcpy(grown + have, name, len + 1);
	f->names = grown;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int64_t cache_file_id(const struct cache_file *f) { return f->id; }
uint64_t cache_file_size(const struct cache_file *f) { return f->size; }
uint32_t cache_file_block_size(const struct cache_file *f) { return f->block_size; }
uint64_t cache_file_nblocks(const struct cache_file *f) { return f->nblocks; }

uint32_t cache_block_len(const struct cache_file *f, uint64_t idx)
{
	uint64_t start = idx * f->block_size;

	if (start >= f->size)
		return 0;
	return (uint32_t)(f->size - start < f->block_size ? f->size - start : f->block_size);
}

static bool state_present(uint8_t st)
{
	return st == BLOCK_PRESENT || st == BLOCK_UNCHECKED;
}

bool cache_block_present(struct cache_file *f, uint64_t idx)
{
	bool present;

	pthread_mutex_lock(&f->lock);
	present = idx < f->nblocks && state_present(f->blocks[idx].state);
	pthread_mutex_unlock(&f->lock);
	return present;
}

uint64_t cache_file_cached_bytes(struct cache_file *f)
{
	uint64_t n;

	pthread_mutex_lock(&f->lock);
	n = f->present_bytes;
	pthread_mutex_unlock(&f->lock);
	return n;
}

int64_t cache_file_last_used(struct cache_file *f)
{
	int64_t newest;

	pthread_mutex_lock(&f->lock);
	newest = f->present_bytes ? f->last_used : 0;
	pthread_mutex_unlock(&f->lock);
	return newest;
}

bool cache_file_complete(struct cache_file *f)
{
	return cache_file_cached_bytes(f) == f->size;
}

bool cache_file_pinned(struct cache_file *f)
{
	bool pinned;

	pthread_mutex_lock(&f->lock);
	pinned = f->pin_mask != 0;
	pthread_mutex_unlock(&f->lock);
	return pinned;
}

int cache_file_pin(struct cache_file *f, unsigned owner, bool pinned)
{
	unsigned old, mask;

	pthread_mutex_lock(&f->lock);
	old = f->pin_mask;
	mask = pinned ? old | owner : old & ~owner;
	f->pin_mask = mask;
	pthread_mutex_unlock(&f->lock);
	/* Two pins of one file race only on the store row, which ends with
	 * one of the masks: both are recomputed from f->pin_mask next time. */
	return mask == old ? 0 : store_file_set_pin_mask(f->cache->store, f->id, mask);
}

int cache_file_set_pinned(struct cache_file *f, bool pinned)
{
	return cache_file_pin(f, CACHE_PIN_CONFIG, pinned);
}

enum store_file_state cache_file_state(struct cache_file *f, char **sha256, char **error)
{
	enum store_file_state st;

	pthread_mutex_lock(&f->lock);
	st = f->state;
	if (sha256)
		*sha256 = f->sha256 ? strdup(f->sha256) : NULL;
	if (error)
		*error = f->error ? strdup(f->error) : NULL;
	pthread_mutex_unlock(&f->lock);
	return st;
}

static uint64_t drop_all_locked(struct cache_file *f);
static void space_release(struct cache *c, uint64_t used, uint64_t reserved);

/* Sets the state; a corrupt file also loses its blocks under the same
 * lock, so nobody ever sees a corrupt file that still holds bytes. With
 * gen, only while f->gen is still *gen (-ESTALE otherwise). */
static int set_state(struct cache_file *f, enum store_file_state st, const char *sha256,
		     const char *error, const uint64_t *gen)
{
	char *s = sha256 ? strdup(sha256) : NULL;
	char *e = error ? strdup(error) : NULL;
	enum store_file_state recorded = st;
	uint64_t freed = 0;
	int rc;

	if ((sha256 && !s) || (error && !e)) {
		free(s);
		free(e);
		return -ENOMEM;
	}
	/* The index calls a file whole only once its bytes are on disk, so
	 * that a power loss leaves no "verified" over bytes it took (block
	 * rows may still name lost bytes: their XXH3 catches those). One
	 * sync per file hashed; where it fails the index keeps it partial and
	 * it is hashed again after a restart. */
	if ((st == STORE_COMPLETE || st == STORE_VERIFIED) && fdatasync(f->fd) != 0) {
		log_warn("event=cache_sync_failed file=%lld error=\"%s\" action=\"recorded as "
			 "partial: hashed again after a restart\"", (long long)f->id, strerror(errno));
		recorded = STORE_PARTIAL;
	}
	pthread_mutex_lock(&f->lock);
	if (gen && *gen != f->gen) {
		pthread_mutex_unlock(&f->lock);
		free(s);
		free(e);
		return -ESTALE;
	}
	f->state = st;
	free(f->sha256);
	free(f->error);
	f->sha256 = s;
	f->error = e;
	rc = store_file_set_state(f->cache->store, f->id, recorded, sha256, error);
	if (st == STORE_CORRUPT)
		freed = drop_all_locked(f);
	pthread_mutex_unlock(&f->lock);
	space_release(f->cache, freed, 0);
	return rc;
}

int cache_file_set_state(struct cache_file *f, enum store_file_state st,
			 const char *sha256, const char *error)
{
	return set_state(f, st, sha256, error, NULL);
}

int cache_file_set_hashed(struct cache_file *f, uint64_t gen, enum store_file_state st,
			  const char *sha256, const char *error)
{
	return set_state(f, st, sha256, error, &gen);
}

static void punch(struct cache_file *f, uint64_t idx, uint32_t len)
{
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(idx * f->block_size), len) != 0)
		log_debug("event=punch_hole file=%lld idx=%llu error=\"%s\"", (long long)f->id,
			  (unsigned long long)idx, strerror(errno));
}

/* Forget present block idx: no longer present, counted or indexed; its
 * bytes stay until punched. Returns its length; the caller holds f->lock
 * and then fixes the space accounting. */
static uint32_t forget_block_locked(struct cache_file *f, uint64_t idx)
{
	uint32_t len = cache_block_len(f, idx);

	f->blocks[idx].state = BLOCK_BAD;
	f->present_bytes -= len;
	f->gen++;
	if (idx < f->run.next || (f->run.busy && idx < f->run.reading))
		f->run.stale = true;
	store_block_delete(f->cache->store, f->id, idx);
	/* Bytes fetched again later are new bytes: hash them again. The
	 * demotion is on disk before the block's bytes are punched, so that
	 * a power loss cannot keep the hole and lose it: the index never
	 * calls a file whole over a hole (its block rows may still name lost
	 * bytes; XXH3 catches those). A sync under the file's lock, but once
	 * per file that stops being whole, not per block. */
	if (f->state == STORE_COMPLETE || f->state == STORE_VERIFIED) {
		f->state = STORE_PARTIAL;
		store_file_set_state_synced(f->cache->store, f->id, STORE_PARTIAL, f->sha256,
					    f->error);
	}
	return len;
}

/* Punch a BAD block once nobody reads it; the caller holds f->lock. */
static void bad_block_settle_locked(struct cache_file *f, uint64_t idx)
{
	if (f->blocks[idx].state == BLOCK_BAD && f->blocks[idx].readers == 0) {
		f->blocks[idx].state = BLOCK_ABSENT;
		punch(f, idx, cache_block_len(f, idx));
	}
}

/* Forget block idx (held present, no readers) and punch it; returns its
 * length, as forget_block_locked(). */
static uint32_t drop_block_locked(struct cache_file *f, uint64_t idx)
{
	uint32_t len = forget_block_locked(f, idx);

	bad_block_settle_locked(f, idx);
	return len;
}

static void space_release(struct cache *c, uint64_t used, uint64_t reserved)
{
	pthread_mutex_lock(&c->space_lock);
	c->used -= used;
	c->reserved -= reserved;
	pthread_mutex_unlock(&c->space_lock);
}

/* Blocks being read are left to block_unref(). */
static uint64_t drop_all_locked(struct cache_file *f)
{
	uint64_t freed = 0;

	for (uint64_t i = 0; i < f->nblocks; i++)
		if (state_present(f->blocks[i].state) && f->blocks[i].readers == 0)
			freed += drop_block_locked(f, i);
	return freed;
}

int cache_file_drop(struct cache_file *f)
{
	uint64_t freed;

	pthread_mutex_lock(&f->lock);
	freed = drop_all_locked(f);
	pthread_mutex_unlock(&f->lock);
	space_release(f->cache, freed, 0);
	return 0;
}

/* Copy f's data file into out_fd: a reflink where the filesystem shares
 * extents, else copy_file_range (the kernel copies, no user buffer). */
static int copy_data(struct cache_file *f, int out_fd)
{
	off_t in_off = 0, out_off = 0;

	if (ioctl(out_fd, FICLONE, f->fd) == 0)
		return 0;
	while ((uint64_t)in_off < f->size) {
		ssize_t n = copy_file_range(f->fd, &in_off, out_fd, &out_off,
					    (size_t)(f->size - (uint64_t)in_off), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;	/* the data file is shorter than the file */
	}
	return 0;
}

/* Link f's data file at path (which must not exist): 0 or -errno. */
static int link_data(struct cache_file *f, const char *path)
{
	char data[PATH_MAX];

	snprintf(data, sizeof(data), "%s/data/%lld", f->cache->dir, (long long)f->id);
	return link(data, path) == 0 ? 0 : -errno;
}

/* f's data file leaves the cache (another name links it now): an empty
 * data file takes its name and its fd, and every block is forgotten, so
 * no later write lands in the exported file. *freed: the bytes the cache
 * no longer holds. Called with f->lock held and no block in use. */
static int detach_data_locked(struct cache_file *f, uint64_t *freed)
{
	char path[PATH_MAX], fresh[PATH_MAX + 8];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/data/%lld", f->cache->dir, (long long)f->id);
	snprintf(fresh, sizeof(fresh), "%s.new", path);
	fd = open(fresh, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)f->size) != 0 || dup3(fd, f->fd, O_CLOEXEC) < 0 ||
	    rename(fresh, path) != 0)
		rc = -errno;
	close(fd);
	if (rc) {
		unlink(fresh);
		return rc;
	}
	store_blocks_delete_all(f->cache->store, f->id);
	for (uint64_t i = 0; i < f->nblocks; i++)
		f->blocks[i].state = BLOCK_ABSENT;
	f->gen++;
	f->run.stale = true;
	*freed = f->present_bytes;
	f->present_bytes = 0;
	f->state = STORE_REMOTE;
	store_file_set_state(f->cache->store, f->id, STORE_REMOTE, NULL, NULL);
	return 0;
}

static bool busy_locked(const struct cache_file *f)
{
	for (uint64_t i = 0; i < f->nblocks; i++)
		if (f->blocks[i].readers || f->blocks[i].state == BLOCK_WRITING)
			return true;
	return false;
}

int cache_file_export(struct cache_file *f, const char *path, bool keep)
{
	uint64_t freed = 0;
	bool created = false;
	int fd = -1, rc = 0;

	/* Bytes leave through the data file, past the check a read makes. */
	if (cache_file_check(f) != 0)
		return -ENODATA;
	pthread_mutex_lock(&f->lock);
	if (f->present_bytes != f->size) {
		rc = -ENODATA;
	} else if (busy_locked(f)) {
		rc = -EBUSY;
	} else if (!keep && link_data(f, path) == 0) {
		created = true;
		rc = detach_data_locked(f, &freed);
	} else {
		/* Kept, or not linkable here (another filesystem): a copy. */
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		rc = fd < 0 ? -errno : copy_data(f, fd);
		created = fd >= 0;
		if (rc == 0 && !keep)
			freed = drop_all_locked(f);
	}
	pthread_mutex_unlock(&f->lock);
	space_release(f->cache, freed, 0);
	if (rc == 0 && fd < 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc && created)
		unlink(path);
	return rc;
}

/* A block of a file this process does not have open (from an older
 * config): forget it in the store and free its bytes. */
static void evict_foreign_locked(struct cache *c, const struct store_block *b)
{
	char path[PATH_MAX];
	int fd;

	store_block_delete(c->store, b->file_id, b->idx);
	snprintf(path, sizeof(path), "%s/data/%lld", c->dir, (long long)b->file_id);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(b->idx * b->block_size), b->len);
		close(fd);
	}
	c->used -= b->len;
}

/* Evict least-recently-used blocks until at least need bytes are freed
 * (or none is left to evict); the caller holds c->space_lock. Returns
 * bytes freed. */
static uint64_t evict_locked(struct cache *c, uint64_t need)
{
	struct store_block victims[LRU_BATCH];
	uint64_t freed = 0;
	int n = 0;

	touches_flush(c);
	if (store_lru_blocks(c->store, victims, LRU_BATCH, &n) != 0)
		return 0;
	for (int i = 0; i < n && freed < need; i++) {
		struct cache_file *f = find_file_locked(c, victims[i].file_id);
		struct block *b;

		if (!f) {
			evict_foreign_locked(c, &victims[i]);
			freed += victims[i].len;
			continue;
		}
		pthread_mutex_lock(&f->lock);
		b = victims[i].idx < f->nblocks ? &f->blocks[victims[i].idx] : NULL;
		if (b && state_present(b->state) && b->readers == 0 && !f->pin_mask) {
			uint32_t len = drop_block_locked(f, victims[i].idx);

			c->used -= len;
			freed += len;
			log_debug("event=evict file=%lld idx=%llu bytes=%u", (long long)f->id,
				  (unsigned long long)victims[i].idx, len);
		}
		pthread_mutex_unlock(&f->lock);
	}
	return freed;
}

/* Make room for extra more bytes: 0 or -ENOSPC. Caller holds space_lock. */
static int make_room_locked(struct cache *c, uint64_t extra)
{
	if (lost_locked(c))
		return -ENOSPC;		/* served uncached: see struct cache */
	for (;;) {
		uint64_t total = 0, avail = 0, limit, min_free;

		if (fs_stats(c, &total, &avail) != 0)
			return -EIO;
		effective_limits(c, total, &limit, &min_free);
		uint64_t over_limit = c->used + c->reserved + extra > limit
			? c->used + c->reserved + extra - limit : 0;
		uint64_t under_free = min_free + c->reserved + extra > avail
			? min_free + c->reserved + extra - avail : 0;

		if (!over_limit && !under_free)
			return 0;
		if (evict_locked(c, over_limit > under_free ? over_limit : under_free) == 0)
			return -ENOSPC;
	}
}

int cache_trim(struct cache *c)
{
	int rc;

	pthread_mutex_lock(&c->space_lock);
	rc = make_room_locked(c, 0);
	pthread_mutex_unlock(&c->space_lock);
	return rc;
}

int cache_block_reserve(struct cache_file *f, uint64_t idx)
{
	struct cache *c = f->cache;
	uint32_t len = cache_block_len(f, idx);
	int rc;

	if (idx >= f->nblocks)
		return -EINVAL;
	/* Claimed under the file's lock: two entries with the same bytes share
	 * this file, and each engine file fetches its blocks on its own. */
	pthread_mutex_lock(&f->lock);
	if (f->blocks[idx].state == BLOCK_WRITING)
		rc = -EBUSY;
	else if (f->blocks[idx].state != BLOCK_ABSENT && f->blocks[idx].state != BLOCK_BAD)
		rc = -EEXIST;		/* a present block is never rewritten (1) */
	else
		rc = 0;
	if (rc == 0)
		f->blocks[idx].state = BLOCK_WRITING;
	pthread_mutex_unlock(&f->lock);
	if (rc)
		return rc;

	pthread_mutex_lock(&c->space_lock);
	rc = make_room_locked(c, len);
	if (rc == 0)
		c->reserved += len;
	pthread_mutex_unlock(&c->space_lock);
	if (rc) {
		pthread_mutex_lock(&f->lock);
		f->blocks[idx].state = BLOCK_ABSENT;
		pthread_mutex_unlock(&f->lock);
	}
	return rc;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;	/* the data file is shorter than it must be */
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int cache_block_write(struct cache_file *f, uint64_t idx, uint32_t off, const void *data, size_t len)
{
	off_t pos = (off_t)(idx * f->block_size + off);
	const char *p = data;

	if ((uint64_t)off + len > cache_block_len(f, idx))
		return -EINVAL;
	while (len > 0) {
		ssize_t n = pwrite(f->fd, p, len, pos);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		pos += n;
		len -= (size_t)n;
	}
	return 0;
}

int cache_block_read_written(struct cache_file *f, uint64_t idx, uint32_t off, void *buf,
			     size_t len)
{
	if ((uint64_t)off + len > cache_block_len(f, idx))
		return -EINVAL;
	return pread_all(f->fd, buf, len, (off_t)(idx * f->block_size + off));
}

int cache_block_commit(struct cache_file *f, uint64_t idx, uint64_t xxh3)
{
	uint32_t len = cache_block_len(f, idx);
	int64_t now = clock_wall_ms();
	struct store_block sb = { .file_id = f->id, .idx = idx, .len = len, .xxh3 = xxh3 };
	int rc;

	pthread_mutex_lock(&f->lock);
	/* A file found corrupt while this block was on its way keeps none. */
	rc = f->state == STORE_CORRUPT ? -EIO : store_block_put(f->cache->store, &sb, now);
	if (rc) {
		pthread_mutex_unlock(&f->lock);
		cache_block_abort(f, idx);
		return rc;
	}
	f->blocks[idx].state = BLOCK_PRESENT;
	f->blocks[idx].readers++;	/* held until cache_block_release() */
	f->blocks[idx].xxh3 = xxh3;
	f->blocks[idx].touched = now;
	f->last_used = now;
	f->present_bytes += len;
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&f->cache->space_lock);
	f->cache->reserved -= len;
	f->cache->used += len;
	pthread_mutex_unlock(&f->cache->space_lock);
	return 0;
}

void cache_block_abort(struct cache_file *f, uint64_t idx)
{
	uint32_t len = cache_block_len(f, idx);
	bool writing;

	pthread_mutex_lock(&f->lock);
	/* Once only: a second abort (after a failed commit, which aborts
	 * itself) would release the reservation twice. */
	writing = f->blocks[idx].state == BLOCK_WRITING;
	if (writing)
		f->blocks[idx].state = BLOCK_ABSENT;
	pthread_mutex_unlock(&f->lock);
	if (!writing)
		return;
	punch(f, idx, len);
	space_release(f->cache, 0, len);
}

/* XXH3 of block idx as it is on disk: 0 or -errno. */
static int hash_block(struct cache_file *f, uint64_t idx, uint64_t *out)
{
	uint32_t len = cache_block_len(f, idx);
	XXH3_state_t *st = XXH3_createState();
	char *buf = malloc(CHECK_CHUNK);
	int rc = 0;

	if (!st || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(st);
	for (uint32_t done = 0; done < len && rc == 0;) {
		uint32_t n = len - done < CHECK_CHUNK ? len - done : CHECK_CHUNK;

		rc = pread_all(f->fd, buf, n, (off_t)(idx * f->block_size + done));
		XXH3_64bits_update(st, buf, n);
		done += n;
	}
	*out = XXH3_64bits_digest(st);
out:
	free(buf);
	XXH3_freeState(st);
	return rc;
}

/* The verdict on unchecked block idx, on which the caller holds a reader
 * reference: its XXH3 as read is sum (or reading it failed: rc). 0 when
 * it matches the recorded one; else -ENODATA, the reference dropped and
 * the block forgotten (cache.h (1)). */
static int block_verdict(struct cache_file *f, uint64_t idx, int rc, uint64_t sum)
{
	struct block *b = &f->blocks[idx];
	uint32_t dropped = 0;
	char *names = NULL;
	bool decided;

	pthread_mutex_lock(&f->lock);
	if (rc == 0 && sum == b->xxh3) {
		if (b->state == BLOCK_UNCHECKED)
			b->state = BLOCK_PRESENT;
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	b->readers--;
	/* Readers that hashed it at the same time all get here: the first
	 * to find it still unchecked forgets it and logs; the rest only let
	 * go (the last one punches it). */
	decided = b->state == BLOCK_UNCHECKED;
	if (decided) {
		dropped = forget_block_locked(f, idx);
		names = f->names ? strdup(f->names) : NULL;
	}
	bad_block_settle_locked(f, idx);
	pthread_mutex_unlock(&f->lock);
	if (!decided)
		return -ENODATA;
	space_release(f->cache, dropped, 0);
	if (names)
		log_warn("event=block_checksum_mismatch path=%s block=%llu action=refetch%s%s",
			 names, (unsigned long long)idx, rc ? " error=" : "", rc ? strerror(-rc) : "");
	else
		log_warn("event=block_checksum_mismatch file_id=%lld block=%llu action=refetch%s%s",
			 (long long)f->id, (unsigned long long)idx, rc ? " error=" : "",
			 rc ? strerror(-rc) : "");
	free(names);
	return -ENODATA;
}

/* Take a reader reference on a present block, checking an unchecked one
 * first. 0, or -ENODATA when it is (now) absent or failed its check. */
static int block_get(struct cache_file *f, uint64_t idx)
{
	struct block *b = &f->blocks[idx];
	uint64_t sum = 0;
	int rc;

	pthread_mutex_lock(&f->lock);
	if (!state_present(b->state)) {
		pthread_mutex_unlock(&f->lock);
		return -ENODATA;
	}
	b->readers++;
	if (b->state == BLOCK_PRESENT) {
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	pthread_mutex_unlock(&f->lock);
	rc = hash_block(f, idx, &sum);
	return block_verdict(f, idx, rc, sum);
}

/* Drop a reader reference on each of blocks [first, last]; touch: record
 * the use for LRU order. */
static void blocks_unref(struct cache_file *f, uint64_t first, uint64_t last, bool touch)
{
	int64_t now = clock_wall_ms();
	uint64_t dropped = 0;
	bool due = false;

	pthread_mutex_lock(&f->lock);
	for (uint64_t idx = first; idx <= last; idx++) {
		struct block *b = &f->blocks[idx];

		b->readers--;
		bad_block_settle_locked(f, idx);
		if (f->state == STORE_CORRUPT && b->readers == 0 && state_present(b->state)) {
			/* cache_file_drop() skipped it while it was being read. */
			dropped += drop_block_locked(f, idx);
		} else if (touch && now - b->touched >= TOUCH_INTERVAL_MS) {
			/* LRU order at a second's grain: a block fetched just now
			 * (readahead) ranks newer than one read a second ago. */
			b->touched = now;
			f->last_used = now;
			due |= touch_gather(f, idx, now);
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (dropped)
		space_release(f->cache, dropped, 0);
	if (due)
		touches_flush(f->cache);
}

static void block_unref(struct cache_file *f, uint64_t idx, bool touch)
{
	blocks_unref(f, idx, idx, touch);
}

static void block_put(struct cache_file *f, uint64_t idx)
{
	block_unref(f, idx, true);
}

void cache_block_release(struct cache_file *f, uint64_t idx)
{
	block_put(f, idx);
}

/* Blocks read with one pread (and the width of the mask below). */
#define READ_WINDOW 64

/* Reader references on blocks [first, last] (at most READ_WINDOW) in one
 * lock round trip, when all are present: true with *unchecked the mask of
 * those not checked yet in this mount, or false with none taken. */
static bool blocks_get_all(struct cache_file *f, uint64_t first, uint64_t last,
			   uint64_t *unchecked)
{
	uint64_t idx = first;

	*unchecked = 0;
	pthread_mutex_lock(&f->lock);
	while (idx <= last && state_present(f->blocks[idx].state))
		idx++;
	if (idx > last)
		for (idx = first; idx <= last; idx++) {
			f->blocks[idx].readers++;
			if (f->blocks[idx].state == BLOCK_UNCHECKED)
				*unchecked |= 1ull << (idx - first);
		}
	pthread_mutex_unlock(&f->lock);
	return idx > last;
}

/* Blocks [first, last], all held, were read into buf (bytes [off, end) of
 * the file): check those that were unchecked when taken, whatever another
 * reader decided since, from buf when it holds the whole block (the bytes
 * checked are the bytes returned), else from disk. 0, or -ENODATA with
 * every reference dropped. */
static int blocks_check_read(struct cache_file *f, uint64_t first, uint64_t last,
			     uint64_t unchecked, const char *buf, uint64_t off, uint64_t end)
{
	for (uint64_t idx = first; idx <= last; idx++) {
		uint64_t start = idx * f->block_size, sum = 0;
		uint32_t len = cache_block_len(f, idx);
		int rc = 0;

		if (!(unchecked & (1ull << (idx - first))))
			continue;
		if (start >= off && start + len <= end)
			sum = XXH3_64bits(buf + (start - off), len);
		else
			rc = hash_block(f, idx, &sum);
		if (block_verdict(f, idx, rc, sum) != 0) {
			if (idx > first)
				blocks_unref(f, first, idx - 1, false);
			if (idx < last)
				blocks_unref(f, idx + 1, last, false);
			return -ENODATA;
		}
	}
	return 0;
}

/* Bytes [off, off + len) within READ_WINDOW blocks: one lock round trip,
 * one pread, one lock round trip (the warm path), and after a restart the
 * check of the blocks not checked yet (cache.h (1)). */
static int read_window(struct cache_file *f, char *buf, uint64_t off, size_t len, bool touch)
{
	uint64_t first = off / f->block_size, last = (off + len - 1) / f->block_size;
	uint64_t unchecked;
	int rc;

	if (!blocks_get_all(f, first, last, &unchecked))
		return -ENODATA;
	if (pread_all(f->fd, buf, len, (off_t)off) != 0) {
		blocks_unref(f, first, last, false);
		return -EIO;
	}
	if (unchecked) {
		rc = blocks_check_read(f, first, last, unchecked, buf, off, off + len);
		if (rc)
			return rc;
	}
	blocks_unref(f, first, last, touch);
	return 0;
}

static ssize_t read_blocks(struct cache_file *f, void *buf, uint64_t off, size_t len, bool touch)
{
	char *p = buf;
	uint64_t end;

	if (off >= f->size || len == 0)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	end = off + len;
	while (off < end) {
		uint64_t window_end = (off / f->block_size + READ_WINDOW) * f->block_size;
		size_t n = (size_t)((window_end < end ? window_end : end) - off);
		int rc = read_window(f, p, off, n, touch);

		if (rc)
			return rc;
		p += n;
		off += n;
	}
	return (ssize_t)len;
}

ssize_t cache_read(struct cache_file *f, void *buf, uint64_t off, size_t len)
{
	return read_blocks(f, buf, off, len, true);
}

ssize_t cache_peek(struct cache_file *f, void *buf, uint64_t off, size_t len)
{
	return read_blocks(f, buf, off, len, false);
}

int cache_range_hold(struct cache_file *f, uint64_t off, uint64_t len, int *fd)
{
	uint64_t first, last;

	if (len == 0 || off >= f->size || len > f->size - off)
		return -ENODATA;
	first = off / f->block_size;
	last = (off + len - 1) / f->block_size;
	for (uint64_t idx = first; idx <= last; idx++) {
		if (block_get(f, idx) == 0)
			continue;
		while (idx-- > first)
			block_unref(f, idx, false);
		return -ENODATA;
	}
	*fd = f->fd;
	return 0;
}

void cache_range_release(struct cache_file *f, uint64_t off, uint64_t len)
{
	uint64_t last = (off + len - 1) / f->block_size;

	for (uint64_t idx = off / f->block_size; idx <= last; idx++)
		block_put(f, idx);
}

/* ---- checking again: verify -------------------------------------------- */

uint64_t cache_file_recheck(struct cache_file *f)
{
	uint64_t n = 0;

	pthread_mutex_lock(&f->lock);
	for (uint64_t i = 0; i < f->nblocks; i++)
		if (f->blocks[i].state == BLOCK_PRESENT) {
			f->blocks[i].state = BLOCK_UNCHECKED;
			n++;
		}
	pthread_mutex_unlock(&f->lock);
	return n;
}

int cache_block_check(struct cache_file *f, uint64_t idx)
{
	int rc;

	if (idx >= f->nblocks)
		return -ENODATA;
	rc = block_get(f, idx);
	if (rc == 0)
		block_unref(f, idx, false);	/* checking is not a use: LRU order stays */
	return rc;
}

int cache_file_check(struct cache_file *f)
{
	int rc = 0;

	/* An absent block is not a bad one: a file being fetched has many. */
	for (uint64_t i = 0; i < f->nblocks; i++)
		if (cache_block_present(f, i) && cache_block_check(f, i) != 0)
			rc = -ENODATA;
	return rc;
}

#define HASH_CHUNK (256 * 1024)

/* The git blob id's hash, fed its header: "blob <size>" and a NUL. */
static int git_blob_new(uint64_t size, struct hexhash **out)
{
	char head[40];
	int n = snprintf(head, sizeof(head), "blob %llu", (unsigned long long)size);
	int rc = hexhash_new_sha1(out);

	if (rc == 0)
		hexhash_update(*out, head, (size_t)n + 1);	/* with its NUL */
	return rc;
}

/* The whole file, read again (every block checked on the way): *gen is
 * f->gen before the first read. */
static int hash_whole(struct cache_file *f, char sha256[65], char *git1, const atomic_int *cancel,
		      uint64_t *gen)
{
	char *buf = malloc(HASH_CHUNK);
	struct hexhash *h = NULL, *g = NULL;
	int rc = buf ? hexhash_new(&h) : -ENOMEM;

	if (rc == 0 && git1)
		rc = git_blob_new(f->size, &g);
	pthread_mutex_lock(&f->lock);
	*gen = f->gen;
	pthread_mutex_unlock(&f->lock);
	for (uint64_t off = 0; rc == 0 && off < f->size;) {
		size_t n = f->size - off < HASH_CHUNK ? (size_t)(f->size - off) : HASH_CHUNK;
		ssize_t got = cache_peek(f, buf, off, n);	/* hashing is not a use */

		if (cancel && atomic_load(cancel))
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

/* ---- the running hash ---------------------------------------------------
 *
 * SHA-256 is sequential: a file's bytes can only be hashed in order. As
 * blocks arrive (in any order, from parallel requests), the running hash
 * is advanced over the present blocks that follow its end, each read
 * back from the data file while the page cache still holds it; when the
 * last block lands, only the digest is left to finish. It vouches for
 * nothing by itself: a block dropped after it was hashed makes it stale,
 * and it starts over from the first block; a block dropped further on
 * is only fetched again before the hash gets there. A finished hash
 * vouches for the generation of the blocks it was finished at (f->gen),
 * and a state is only set from it while that holds
 * (cache_file_set_hashed()). */

/* [at, at+len) of the data file mapped read-only with every page in
 * memory, or MAP_FAILED. Faulted in by MADV_POPULATE_READ, which fails
 * with EIO where the disk does, so that a bad sector is a read error
 * (the caller goes on with pread()) rather than a SIGBUS on first touch;
 * it only leaves the small chance of a page reclaimed between that and
 * the touch, and failing again. Without it (Linux < 5.14): MAP_FAILED. */
static void *map_resident(int fd, uint64_t at, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)at);

	if (p != MAP_FAILED && madvise(p, len, MADV_POPULATE_READ) != 0) {
		munmap(p, len);
		p = MAP_FAILED;
	}
	return p;
}

static void run_reset_locked(struct cache_file *f)
{
	hexhash_free(f->run.sha256);
	hexhash_free(f->run.git1);
	f->run.sha256 = f->run.git1 = NULL;
	f->run.next = 0;
	f->run.stale = false;
}

/* The running hash reads this much of the data file at a time through a
 * mapping: hashed where the page cache has the bytes, with no copy into
 * a buffer first (the copy cost 0.1-0.15 CPU s/GiB; a mapping per 256 KiB
 * block saved little, per 2 MiB most of it). */
#define HASH_MAP (2u * 1024 * 1024)

/* Feed h and g (g may be NULL) blocks [idx, idx + count), each held by a
 * reader reference while it is read: 0 and *n the blocks hashed (>= 1;
 * fewer than count when one went meanwhile), -ENODATA (block idx is
 * gone, or failed its check) or -errno. The mapping is safe from a
 * SIGBUS past the file's end: the data file keeps its size while any
 * block is held (it is truncated only when opened, and replaced only when
 * no block is in use). */
static int hash_blocks_into(struct cache_file *f, uint64_t idx, uint64_t count, char **buf,
			    struct hexhash *h, struct hexhash *g, uint64_t *n)
{
	uint64_t len = 0, k = 0, pos = idx * f->block_size;
	long page = sysconf(_SC_PAGESIZE);
	void *map = MAP_FAILED;
	int rc = 0;

	while (k < count) {
		if ((rc = block_get(f, idx + k)) != 0)
			break;
		len += cache_block_len(f, idx + k++);
	}
	if (k == 0)
		return rc;
	if (page > 0 && pos % (uint64_t)page == 0)
		map = map_resident(f->fd, pos, len);
	rc = 0;
	if (map != MAP_FAILED) {
		hexhash_update(h, map, len);
		if (g)
			hexhash_update(g, map, len);
		munmap(map, len);
	} else {
		/* A block size that is not a whole number of pages (an old
		 * cache's), no mapping to be had, or a page the disk failed to
		 * read: read into a buffer (which says -EIO for the last). */
		if (!*buf && !(*buf = malloc(HASH_CHUNK)))
			rc = -ENOMEM;
		for (uint64_t done = 0, c; rc == 0 && done < len; done += c) {
			c = len - done < HASH_CHUNK ? len - done : HASH_CHUNK;
			rc = pread_all(f->fd, *buf, c, (off_t)(pos + done));
			if (rc == 0) {
				hexhash_update(h, *buf, c);
				if (g)
					hexhash_update(g, *buf, c);
			}
		}
	}
	for (uint64_t i = 0; i < k; i++)
		block_unref(f, idx + i, false);	/* hashing is not a use: LRU order stays */
	*n = k;
	return rc;
}

/* cache_file_hash_advance(); wait: for another advancer to end first,
 * instead of leaving the blocks to it. */
static int run_advance(struct cache_file *f, bool git1, uint64_t most, const atomic_int *cancel,
		       bool wait)
{
	uint64_t hashed = 0;
	char *buf = NULL;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	while (wait && f->run.busy)
		pthread_cond_wait(&f->run_idle, &f->lock);
	if (f->run.busy) {
		pthread_mutex_unlock(&f->lock);
		return 0;	/* its advancer goes on to whatever is there */
	}
	f->run.busy = true;
	for (;;) {
		uint64_t idx, n, len;

		if (f->run.stale || (git1 && f->run.next && !f->run.git1))
			run_reset_locked(f);
		idx = f->run.next;
		if (idx >= f->nblocks || !state_present(f->blocks[idx].state))
			break;
		if (hashed >= most) {
			rc = 1;		/* more to do */
			break;
		}
		if (cancel && atomic_load(cancel)) {
			rc = -ECANCELED;
			break;
		}
		if (!f->run.sha256) {
			rc = hexhash_new(&f->run.sha256);
			if (rc == 0 && git1)
				rc = git_blob_new(f->size, &f->run.git1);
		}
		if (rc)
			break;
		/* The present blocks from idx, up to HASH_MAP (at least one). */
		for (n = 1, len = cache_block_len(f, idx); idx + n < f->nblocks &&
		     state_present(f->blocks[idx + n].state); n++) {
			uint64_t more = len + cache_block_len(f, idx + n);

			if (more > HASH_MAP || more > most - hashed)
				break;
			len = more;
		}
		f->run.reading = idx + n;
		/* busy keeps f->run ours while the lock is let go. */
		pthread_mutex_unlock(&f->lock);
		rc = hash_blocks_into(f, idx, n, &buf, f->run.sha256, f->run.git1, &n);
		pthread_mutex_lock(&f->lock);
		if (rc)
			break;
		f->run.next = idx + n;
		for (uint64_t i = idx; i < idx + n; i++)
			hashed += cache_block_len(f, i);
	}
	if (rc < 0 && rc != -ECANCELED)
		run_reset_locked(f);	/* a block went, or half of one was hashed */
	f->run.busy = false;
	pthread_cond_broadcast(&f->run_idle);
	pthread_mutex_unlock(&f->lock);
	free(buf);
	return rc == -ENODATA ? 0 : rc;
}

int cache_file_hash_advance(struct cache_file *f, bool git1, uint64_t most,
			    const atomic_int *cancel)
{
	return run_advance(f, git1, most, cancel, false);
}

bool cache_file_hash_behind(struct cache_file *f)
{
	uint64_t next;
	bool behind;

	pthread_mutex_lock(&f->lock);
	next = f->run.stale ? 0 : f->run.next;
	behind = !f->run.busy && next < f->nblocks && state_present(f->blocks[next].state) &&
		 f->state != STORE_VERIFIED && f->state != STORE_COMPLETE;
	pthread_mutex_unlock(&f->lock);
	return behind;
}

/* The running hash, finished, when it covers the whole file at its
 * current gen (and has the git blob id when asked): true, *gen set. */
static bool run_finish_locked(struct cache_file *f, char sha256[65], char *git1, uint64_t *gen)
{
	if (f->run.busy || f->run.stale || f->run.next != f->nblocks || !f->run.sha256 ||
	    (git1 && !f->run.git1))
		return false;
	hexhash_final(f->run.sha256, sha256);
	f->run.sha256 = NULL;
	if (git1) {
		hexhash_final(f->run.git1, git1);
		f->run.git1 = NULL;
	}
	*gen = f->gen;
	run_reset_locked(f);
	return true;
}

int cache_file_hash(struct cache_file *f, char sha256[65], char *git1, const atomic_int *cancel,
		    uint64_t *gen)
{
	bool done;
	int rc;

	/* OPTIMIZATION-IF-TRUE: most files were hashed as they arrived. A
	 * worker may be hashing the last blocks right now: that is waited
	 * for (a download unit at most), not done again. */
	rc = run_advance(f, git1 != NULL, UINT64_MAX, cancel, true);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&f->lock);
	while (f->run.busy)
		pthread_cond_wait(&f->run_idle, &f->lock);
	done = run_finish_locked(f, sha256, git1, gen);
	if (!done)
		log_debug("event=hash_read_again file=%lld hashed_blocks=%llu of=%llu stale=%d",
			  (long long)f->id, (unsigned long long)f->run.next,
			  (unsigned long long)f->nblocks, f->run.stale);
	pthread_mutex_unlock(&f->lock);
	return done ? 0 : hash_whole(f, sha256, git1, cancel, gen);
}

int cache_file_verify(struct cache_file *f, const char *want_sha256, const char *want_git1,
		      const atomic_int *cancel, struct cache_verify *out)
{
	char git1[65] = "";
	const char *want, *got;
	enum store_file_state st;
	uint64_t gen;
	int rc;

	memset(out, 0, sizeof(*out));
	cache_file_recheck(f);
	for (uint64_t i = 0; i < f->nblocks; i++) {
		if (cancel && atomic_load(cancel))
			return -ECANCELED;
		if (!cache_block_present(f, i))
			continue;
		out->blocks++;
		if (cache_block_check(f, i) == -ENODATA) {
			out->bad_blocks++;
			out->bad_bytes += cache_block_len(f, i);
		}
	}
	if (!cache_file_complete(f))
		return 0;
	/* Asked to check again: the whole file is read, not a running hash. */
	rc = hash_whole(f, out->sha256, want_git1 && !want_sha256 ? git1 : NULL, cancel, &gen);
	if (rc == -ENODATA)
		return 0;	/* a block went just now (evicted): not complete any more */
	if (rc)
		return rc;
	want = want_sha256 ? want_sha256 : want_git1;
	got = want_sha256 ? out->sha256 : git1;
	if (!want) {
		out->hash = CACHE_HASH_COMPLETE;
		st = STORE_COMPLETE;
	} else if (strcmp(want, got) == 0) {
		out->hash = CACHE_HASH_VERIFIED;
		st = STORE_VERIFIED;
	} else {
		out->hash = CACHE_HASH_MISMATCH;
		st = STORE_CORRUPT;
		snprintf(out->reason, sizeof(out->reason), "checksum mismatch: expected %s %s, got %s",
			 want_sha256 ? "sha256" : "git blob sha1", want, got);
	}
	rc = cache_file_set_hashed(f, gen, st, out->sha256, st == STORE_CORRUPT ? out->reason : NULL);
	if (rc == -ESTALE) {
		out->hash = CACHE_HASH_SKIPPED;	/* a block went while it was read */
		return 0;
	}
	return rc;
}
