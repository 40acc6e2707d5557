/*
 * store.h: the SQLite index of the cache: files, their blocks with
 * checksums, resolutions of config entries, and a log of fetches.
 *
 * (1) store.c is the only file with SQL; SQLite result codes become
 *     -errno there and nowhere else.
 * (2) The database is in WAL mode with synchronous=NORMAL: a crash may
 *     lose the last commits, never corrupt the index (the _synced call
 *     below excepted). A lost block row
 *     costs a re-fetch; a block row whose bytes were lost is caught by
 *     its XXH3 at first read (cache.h (1)).
 * (3) Nothing secret is stored: no tokens, no URLs with queries.
 * Ownership: store_open() gives a handle, store_close() frees it; strings
 * in out-structs are owned by the caller (free with the matching _clear).
 * Threads: every function is thread-safe (one connection, one mutex,
 * held only inside a call: store is a leaf lock).
 */
#ifndef MODELFS_STORE_H
#define MODELFS_STORE_H

#include <stdbool.h>
#include <stdint.h>

struct store;

enum store_file_state {
	STORE_REMOTE = 0,	/* nothing cached */
	STORE_PARTIAL,		/* some blocks */
	STORE_COMPLETE,		/* every block, hashed, nothing to compare with */
	STORE_VERIFIED,		/* every block, hash equals the source's */
	STORE_CORRUPT,		/* hash differed: blocks dropped, reads fail */
};

struct store_file {
	int64_t id;
	char *key;
	uint64_t size;
	uint32_t block_size;
	enum store_file_state state;
	char *sha256;		/* computed, or NULL */
	char *error;		/* last error, or NULL */
	bool pinned;		/* pin_mask != 0 */
	unsigned pin_mask;	/* who pinned it (cache.h CACHE_PIN_*) */
	uint64_t dropped_bytes;	/* blocks dropped because the size changed */
	uint64_t cached_bytes;	/* bytes of its block rows; filled by store_files_list() */
	int64_t last_used;	/* newest block atime, ms; 0 with no block;
				 * filled by store_files_list() */
};

struct store_block {
	int64_t file_id;
	uint64_t idx;
	uint32_t len;
	uint64_t xxh3;
	uint32_t block_size;	/* of its file; filled by store_lru_blocks() */
	int64_t atime;		/* last use, ms; filled by store_blocks_load() */
};

struct store_resolution {
	char *entry_id;		/* config entry id */
	char *path;		/* path in the mount */
	char *spec_hash;	/* hash of the entry's source spec: a changed entry is not reused */
	char *file_key;
	int64_t size;
	int64_t mtime;
	char *validator;
	char *sha256;
	char *remote_path;	/* at the source, or NULL */
	char *revision;		/* pinned commit or version, or NULL */
	char *git_sha1;		/* expected git blob hash, or NULL */
	int64_t resolved_at;
};

int store_open(const char *db_path, struct store **out);
void store_close(struct store *s);

/* Seconds since epoch when this store was created (stable folder mtimes). */
int64_t store_created(struct store *s);

/* Find the file with key, or create it with size and block_size. An
 * existing file keeps its own block_size (a later config change must not
 * reinterpret stored blocks); if its size differs, its blocks are dropped
 * (out->dropped_bytes says how many bytes they held), its state reset
 * and the size updated. */
int store_file_get_or_create(struct store *s, const char *key, uint64_t size,
			     uint32_t block_size, struct store_file *out);
/* The file with key, changing nothing: 0, -ENOENT when there is none. */
int store_file_get(struct store *s, const char *key, struct store_file *out);
void store_file_clear(struct store_file *f);
int store_file_set_state(struct store *s, int64_t file_id, enum store_file_state st,
			 const char *sha256, const char *error);
/* As store_file_set_state(), and on disk when it returns (this one commit
 * syncs the WAL, with every commit before it): for a step that must be
 * durable before what follows it is (cache.c: a whole file's demotion
 * before its first block is punched). Blocks on a sync. */
int store_file_set_state_synced(struct store *s, int64_t file_id, enum store_file_state st,
				const char *sha256, const char *error);
int store_file_set_pinned(struct store *s, int64_t file_id, bool pinned);
/* The pin as a mask of owners (0: not pinned). */
int store_file_set_pin_mask(struct store *s, int64_t file_id, unsigned mask);
/* Every file, by id, with cached_bytes filled; *out is freed with
 * store_files_free(). */
int store_files_list(struct store *s, struct store_file **out, int *n);
void store_files_free(struct store_file *files, int n);
const char *store_state_name(enum store_file_state st);

/* Calls fn for each block row of file_id (any order). */
int store_blocks_load(struct store *s, int64_t file_id,
		      void (*fn)(void *ctx, const struct store_block *b), void *ctx);
/* atime: last use, ms since the epoch (orders eviction). */
int store_block_put(struct store *s, const struct store_block *b, int64_t atime);
int store_block_touch(struct store *s, int64_t file_id, uint64_t idx, int64_t atime);
/* Uses of n blocks in one transaction; a row's atime only moves forward
 * (batches may land out of order). Rows of blocks gone since are skipped. */
struct store_touch {
	int64_t file_id;
	uint64_t idx;
	int64_t atime;
};
int store_blocks_touch(struct store *s, const struct store_touch *t, int n);
int store_block_delete(struct store *s, int64_t file_id, uint64_t idx);
int store_blocks_delete_all(struct store *s, int64_t file_id);
/* Bytes of all block rows. */
int store_bytes_used(struct store *s, uint64_t *out);
/* Up to max least-recently-used blocks of unpinned files into out; *n. */
int store_lru_blocks(struct store *s, struct store_block *out, int max, int *n);

int store_resolution_get(struct store *s, const char *entry_id,
			 struct store_resolution **out, int *n);
/* Replace every resolution of entry_id by these n. */
int store_resolution_put(struct store *s, const char *entry_id,
			 const struct store_resolution *r, int n);
void store_resolutions_free(struct store_resolution *r, int n);
/* Every stored resolution of every entry, by path. */
int store_resolutions_all(struct store *s, struct store_resolution **out, int *n);

int store_log_fetch(struct store *s, int64_t file_id, uint64_t first, uint64_t len,
		    int64_t ms, int rc, const char *error);

/* One row of the fetch log. */
struct store_fetch {
	int64_t ts;		/* seconds since the epoch */
	int64_t file_id;
	char *file_key;		/* NULL when the file row is gone */
	uint64_t first, len;	/* the byte range asked for */
	int64_t ms;		/* how long it took */
	int rc;			/* 0 or -errno */
	char *error;		/* reason, or NULL */
};

/* The newest max rows of the fetch log, oldest first; freed with
 * store_fetches_free(). */
int store_fetch_log_recent(struct store *s, int max, struct store_fetch **out, int *n);
void store_fetches_free(struct store_fetch *rows, int n);

#endif
