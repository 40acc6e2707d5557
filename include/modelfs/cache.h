/*
 * cache.h: which blocks of a file are on local disk, and their bytes.
 *
 * (1) A block is present only after its bytes are written and its XXH3
 *     recorded; a present block is never rewritten. After a restart a
 *     block's XXH3 is checked at its first read: a mismatch drops the
 *     block (the caller fetches it again) and no byte of it is returned;
 *     it is logged once per block, naming the file's path(s).
 * (2) A file's block_size is fixed at first use and stored with it: the
 *     unit of presence and of an XXH3, so a read, an eviction or a check
 *     after a restart costs one block, never more. The engine gives new
 *     files small blocks (256 KiB); files cached with another size (8 MiB
 *     before) keep theirs and stay readable.
 * (3) Space is reserved before a block is written: the bytes of present
 *     and reserved blocks never exceed the size limit, and free space on
 *     the cache filesystem never drops below the min-free watermark.
 *     Least-recently-used blocks of unpinned files are evicted to make
 *     room; blocks being read or written are never evicted.
 * (4) One process owns a cache dir at a time (an flock on DIR/lock).
 * Layout: DIR/index.sqlite, DIR/data/<file id> (sparse, full size).
 * Ownership: cache_open()/cache_close(); cache_file_open() gives a file
 * handle that the cache owns and frees at cache_close().
 * Threads: all functions are thread-safe, never touch the network and
 * return with no lock held. Lock order: in the engine's one list
 * (src/engine/engine_i.h).
 */
#ifndef MODELFS_CACHE_H
#define MODELFS_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/store.h"

struct cache;
struct cache_file;

struct cache_limits {
	int64_t max_bytes;		/* > 0: limit in bytes */
	double max_percent;		/* > 0 and max_bytes <= 0: of the cache filesystem */
	int64_t min_free_bytes;		/* >= 0: keep this much free */
	double min_free_percent;	/* when min_free_bytes < 0 */
};

struct cache_usage {
	uint64_t used;			/* bytes of present blocks */
	uint64_t limit;			/* effective size limit */
	uint64_t fs_free;		/* free bytes on the cache filesystem */
	uint64_t min_free;		/* effective watermark */
	bool lost;			/* the directory was deleted while in use:
					 * nothing new is cached (cache_rehome()) */
};

/* Create or open the cache at dir. -EBUSY (logged with the holder's pid)
 * when another process holds it. */
int cache_open(const char *dir, const struct cache_limits *lim, struct cache **out);
void cache_close(struct cache *c);
int cache_usage_get(struct cache *c, struct cache_usage *u);
/* After the cache directory was deleted while in use: make it again and
 * hold its lock, so that no second cache is opened there while this one
 * runs (this one stays lost: its files are the deleted ones). 0 when the
 * directory is there (again), or -errno. */
int cache_rehome(struct cache *c);

/* What the index keeps besides blocks, for the engine and the front:
 * only the cache talks to its store. Rows are store.h's, freed with its
 * store_*_free(); each call is 0 or -errno. */
/* Seconds since the epoch when the cache was made (stable folder mtimes). */
int64_t cache_created(struct cache *c);
/* Every cached file, by id, with cached_bytes filled. */
int cache_files_list(struct cache *c, struct store_file **out, int *n);
/* The stored resolution of a config entry; replace it with n rows; every
 * stored resolution of every entry, by path. */
int cache_resolution_get(struct cache *c, const char *entry_id, struct store_resolution **out,
			 int *n);
int cache_resolution_put(struct cache *c, const char *entry_id, const struct store_resolution *r,
			 int n);
int cache_resolutions_all(struct cache *c, struct store_resolution **out, int *n);
/* Log one download of f: len bytes at first, how long it took (ms), and
 * its outcome (rc, error: the reason, or NULL). */
int cache_file_log_fetch(struct cache_file *f, uint64_t first, uint64_t len, int64_t ms, int rc,
			 const char *error);
/* The newest max rows of the fetch log, oldest first. */
int cache_fetch_log_recent(struct cache *c, int max, struct store_fetch **out, int *n);

int cache_file_open(struct cache *c, const char *key, uint64_t size, uint32_t block_size,
		    struct cache_file **out);
/* Add a path the file is known by in the mount, for the cache's own log
 * lines (a bad block names the file, not its id). Two entries with the
 * same content give one file two names; adding a name it has already is
 * a no-op. 0 or -ENOMEM (the lines then name the id). */
int cache_file_add_name(struct cache_file *f, const char *name);
int64_t cache_file_id(const struct cache_file *f);
uint64_t cache_file_size(const struct cache_file *f);
uint32_t cache_file_block_size(const struct cache_file *f);
uint64_t cache_file_nblocks(const struct cache_file *f);
/* Length of block idx (the last one may be short). */
uint32_t cache_block_len(const struct cache_file *f, uint64_t idx);
bool cache_block_present(struct cache_file *f, uint64_t idx);
uint64_t cache_file_cached_bytes(struct cache_file *f);
/* When a block of f was last read or written, ms since the epoch (at a
 * second's grain, kept across restarts); 0 when nothing is cached. */
int64_t cache_file_last_used(struct cache_file *f);
bool cache_file_complete(struct cache_file *f);
bool cache_file_pinned(struct cache_file *f);
/* A pinned file's blocks are never evicted. A pin has owners: the config
 * (pin = true, set and cleared by every mount) and the user (prefetch
 * --pin, cleared only by evict --force); the file is pinned while either
 * holds it. */
#define CACHE_PIN_CONFIG 1u
#define CACHE_PIN_USER 2u
int cache_file_pin(struct cache_file *f, unsigned owner, bool pinned);
/* cache_file_pin(f, CACHE_PIN_CONFIG, pinned). */
int cache_file_set_pinned(struct cache_file *f, bool pinned);

/* State as recorded in the store; *sha256 and *error are copies the
 * caller frees (either out-pointer may be NULL). */
enum store_file_state cache_file_state(struct cache_file *f, char **sha256, char **error);
/* STORE_CORRUPT also drops the blocks in the same step (see below), so a
 * corrupt file is never seen holding bytes. */
int cache_file_set_state(struct cache_file *f, enum store_file_state st,
			 const char *sha256, const char *error);
/* Drop every block (evict). Blocks being read or
 * written at that moment are skipped: a reader never sees a hole. */
int cache_file_drop(struct cache_file *f);

/* Put a complete file's bytes at path, which must not exist, and fsync
 * them. With keep, a copy (a reflink where the filesystem shares extents).
 * Without, the data file itself is linked at path and leaves the cache
 * (an empty data file takes its place, its blocks are forgotten), so no
 * byte is stored twice; where it cannot be linked (another filesystem),
 * a copy, and the cache drops the blocks. Blocks not checked since the
 * cache was opened are checked first (cache_file_check()): a power loss
 * can take bytes the index still names. 0, -ENODATA (not complete, or a
 * block failed its check and was dropped),
 * -EBUSY (blocks being read or written) or -errno; nothing is left at
 * path on failure. */
int cache_file_export(struct cache_file *f, const char *path, bool keep);

/* Mark every present block unchecked, so that its next read hashes it
 * again (cache.h (1)); returns how many were marked. */
uint64_t cache_file_recheck(struct cache_file *f);
/* Check block idx now if it is unchecked: 0 when it is present and its
 * bytes match its XXH3, -ENODATA when it is absent or did not match (it
 * is then dropped at once, logged once however many readers hashed it,
 * and its bytes are punched when the last reader holding it is done).
 * Reads the block from disk; takes no lock across the read. */
int cache_block_check(struct cache_file *f, uint64_t idx);
/* cache_block_check() of every present block: 0 when all match, else
 * -ENODATA (the bad ones are dropped, the others still checked). Absent
 * blocks are not checked and not counted. */
int cache_file_check(struct cache_file *f);

/* SHA-256 of a complete file's cached bytes (64 hex + NUL into sha256)
 * and, when git1 is not NULL, its git blob id ("blob <size>\0" + bytes,
 * SHA-1) into git1, and *gen: the generation of f's blocks it vouches for
 * (give it to cache_file_set_hashed()). From the running hash when it
 * covers the file (no byte is read again), else by reading the whole
 * file, every block checked on the way. 0, -ENODATA when a block is
 * missing (or failed its check), -ECANCELED as soon as *cancel (if
 * given) becomes non-zero. No lock is held while reading or hashing. */
int cache_file_hash(struct cache_file *f, char sha256[65], char *git1, const atomic_int *cancel,
		    uint64_t *gen);
/* The running hash: the same hashes of the present blocks from the first
 * one on, advanced here over those that follow its end (read from the
 * data file, likely still in the page cache; unchecked ones are checked),
 * by at least most bytes when there are that many, so that a file hashed
 * as its blocks arrive is hashed once. One thread advances it at a time:
 * another caller returns at once. Any block that stops being present
 * (evicted, dropped, bad) after it was hashed makes it start over from
 * the first block. 0, 1 when it stopped at most with more present
 * blocks to go, -ECANCELED or -ENOMEM. */
int cache_file_hash_advance(struct cache_file *f, bool git1, uint64_t most,
			    const atomic_int *cancel);
/* The running hash of a file not verified yet could advance now (the block
 * after its end is present, and nobody advances it). */
bool cache_file_hash_behind(struct cache_file *f);
/* cache_file_set_state() with a hash's outcome: only while f's blocks are
 * those of generation gen (cache_file_hash()); -ESTALE when a block was
 * dropped since, and nothing is set. */
int cache_file_set_hashed(struct cache_file *f, uint64_t gen, enum store_file_state st,
			  const char *sha256, const char *error);

struct cache_verify {
	uint64_t blocks;		/* present blocks checked */
	uint64_t bad_blocks;		/* failed their XXH3: dropped */
	uint64_t bad_bytes;
	enum {
		CACHE_HASH_SKIPPED,	/* not complete (or cancelled): not hashed */
		CACHE_HASH_COMPLETE,	/* hashed; nothing to compare with */
		CACHE_HASH_VERIFIED,	/* equals the expected hash */
		CACHE_HASH_MISMATCH,	/* differs: the file is corrupt, its blocks dropped */
	} hash;
	char sha256[65];		/* computed, when hashed */
	char reason[256];		/* for a mismatch */
};

/* Re-check every present block of f against its XXH3 (dropping bad
 * ones), then, if f is complete, its whole-file hash against want_sha256
 * or else want_git1 (either may be NULL), and record the outcome as f's
 * state: verified or complete, or corrupt with every block dropped.
 * 0 or -errno (-ECANCELED at *cancel); *out says what was found. */
int cache_file_verify(struct cache_file *f, const char *want_sha256, const char *want_git1,
		      const atomic_int *cancel, struct cache_verify *out);

/* Writing block idx: reserve (may evict; -ENOSPC when no room can be
 * made, -EBUSY while another fetcher writes it, -EEXIST when present),
 * write its bytes in any order, then commit with their XXH3 or abort.
 * Only the fetcher whose reserve succeeded calls the others. A committed block
 * is held (it cannot be evicted) until cache_block_release(), so the
 * fetcher can hand it to its waiters first. */
int cache_block_reserve(struct cache_file *f, uint64_t idx);
int cache_block_write(struct cache_file *f, uint64_t idx, uint32_t off, const void *data, size_t len);
/* The fetcher reads back bytes it wrote to idx before the commit (to answer
 * a reader early): 0 or -errno. */
int cache_block_read_written(struct cache_file *f, uint64_t idx, uint32_t off, void *buf,
			     size_t len);
/* A commit that fails (-EIO for a file found corrupt meanwhile, or the
 * index's error) has aborted the block. */
int cache_block_commit(struct cache_file *f, uint64_t idx, uint64_t xxh3);
/* A no-op unless idx is reserved and not committed. */
void cache_block_abort(struct cache_file *f, uint64_t idx);
void cache_block_release(struct cache_file *f, uint64_t idx);

/* Copy [off, off+len) into buf; every block it touches must be present.
 * Returns len, or -ENODATA when a block is absent (or was just dropped
 * by its checksum check), or -EIO. */
ssize_t cache_read(struct cache_file *f, void *buf, uint64_t off, size_t len);
/* cache_read() that is not a use: the blocks' last-use times (eviction
 * order, cache_ttl) stay as they were. For the daemon's own reads (a
 * header parsed at mount, a hash). */
ssize_t cache_peek(struct cache_file *f, void *buf, uint64_t off, size_t len);

/* Hold [off, off+len) for a send straight from the data file (sendfile):
 * every block it touches must be present, and one not checked since
 * the cache was opened is checked first, as a read's is (1). The blocks
 * are then held (never evicted, punched or exported) until
 * cache_range_release() with the same span. 0 and *fd, the data file's
 * descriptor, owned by the cache (dup it to keep it); -ENODATA when a
 * block is absent or failed its check (nothing is held then). */
int cache_range_hold(struct cache_file *f, uint64_t off, uint64_t len, int *fd);
void cache_range_release(struct cache_file *f, uint64_t off, uint64_t len);

/* [off, off+len) straight from the page cache: cache_range_hold()'s
 * blocks (checked, held) mapped read-only, so that a reply is copied to
 * its reader from the data file's pages, not through a buffer first. A
 * read (the blocks' last use is updated at the unmap). 0 and m->data;
 * -ENODATA as cache_range_hold(); -EIO when it cannot be mapped, or the
 * disk failed to read a page of it (nothing is held then: cache_read()
 * it, which says which). Each 0 is paired with
 * cache_range_unmap(). */
struct cache_map {
	const char *data;		/* the bytes at off */
	void *base;			/* private to the cache */
	size_t base_len;
	uint64_t off, len;
};
int cache_range_map(struct cache_file *f, uint64_t off, uint64_t len, struct cache_map *m);
void cache_range_unmap(struct cache_file *f, struct cache_map *m);

/* Evict until the limits hold again (e.g. after they were lowered). */
int cache_trim(struct cache *c);

#endif
