/*
 * ops.h: what status, verify and evict do, as JSON, for the two places
 * they run: the mount daemon (over its engine, asked on the control
 * channel) and the command itself when nothing is mounted (over the
 * cache and its index, and the config's entries when one is given).
 * The JSON is the stable output of `--json` (documented in modelfs(1)):
 *
 *   status: {"mounted", "pid", "mountpoint", "cache_dir",
 *            "cache": {"used", "limit", "fs_free", "min_free"},
 *            "files": [{"path", "entry", "key", "size", "cached", "state",
 *                       "pinned", "shadowed", "source", "sha256", "error",
 *                       "last_used", "downloaded": {"tier", "origin"} (this
 *                       run; null without a daemon)}],
 *            "models": [{"entry", "manifest", "model_id", "version",
 *                        "artifacts", "verified", "available"}],
 *                       (one per manifest entry: available when every
 *                       artifact is verified)
 *            "history": [{"time", "path", "key", "offset", "bytes", "ms",
 *                         "outcome", "error"}]}      (when asked for)
 *   verify: {"files": [{"path", "entry", "checked_blocks", "bad_blocks",
 *                       "bad_bytes", "hash", "state", "error"}], "bad": N}
 *   evict:  {"files": [{"path", "entry", "freed", "kept", "result",
 *                       "last_used"}], "freed": N, "refused": N,
 *            "unused_before" (a retention pass only)}
 *           (result: evicted, empty, pinned, recent)  or, with no file named,
 *           {"trimmed": true, "freed": N, "used": N}
 * Numbers are bytes, last_used seconds since the epoch (the last read or
 * write of a block, at a second's grain); absent values are null.
 * Ownership: an ops_list is the caller's (ops_list_free); JSON results
 * are new references.
 * Threads: a list is used by one thread; the functions block on disk
 * I/O (verify reads every cached byte) but never on the network.
 */
#ifndef MODELFS_OPS_H
#define MODELFS_OPS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "modelfs/cache.h"
#include "modelfs/config.h"
#include "modelfs/engine.h"

struct ops_item {
	char *path;			/* in the mount, or NULL when unknown */
	char *entry_id, *entry_name;	/* NULL when unknown */
	char *key;			/* content key in the cache, or NULL */
	char *source;			/* where the bytes come from, or NULL */
	char *want_sha256;		/* expected hashes, or NULL */
	char *want_git1;
	int64_t size;			/* -1 when unknown */
	int64_t file_id;		/* in the cache index; 0 when none */
	uint32_t block_size;
	struct engine_file *ef;		/* the daemon's file, or NULL */
	const struct config_entry *entry;	/* its config entry, or NULL */
	/* Without a daemon: the index's view when the list was made. */
	enum store_file_state stored_state;
	uint64_t stored_cached;
	bool stored_pinned;
	int64_t stored_last_used;	/* ms; 0: nothing cached */
	char *stored_sha256, *stored_error;
};

struct ops_list {
	struct ops_item *items;
	size_t n;
	struct engine *engine;		/* the daemon's, or NULL */
	struct cache *cache;
};

/* The files of a running engine. */
int ops_list_engine(struct engine *e, struct cache *c, struct ops_list *out);
/* The files the cache index knows: with cfg, one per config entry's
 * stored resolution (an entry never resolved is listed by its id);
 * without, every stored resolution, then cached files no resolution
 * names (by key). */
int ops_list_store(struct cache *c, const struct config *cfg, struct ops_list *out);
void ops_list_free(struct ops_list *l);

/* chosen[] (l->n, caller frees) for the command-line arguments; see
 * select.h. 0, or -ENOENT with a message in err. */
int ops_select(const struct ops_list *l, char *const *args, size_t nargs, const char *mountpoint,
	       bool **chosen, char *err, size_t errlen);

/* history: how many fetch-log rows to add (0: none). pid 0: not mounted. */
json_t *ops_status(const struct ops_list *l, const char *mountpoint, const char *cache_dir,
		   long pid, int history);
/* Verify the chosen files; stops early at *cancel (may be NULL). */
json_t *ops_verify(const struct ops_list *l, const bool *chosen, const atomic_int *cancel);
/* Drop the chosen files' blocks; pinned ones only with force (which
 * unpins them). unused_before > 0 (ms since the epoch) keeps the files
 * used since then ("recent") and skips pinned ones without refusing
 * them: a retention pass, not a request for those files. */
json_t *ops_evict(const struct ops_list *l, const bool *chosen, bool force,
		  int64_t unused_before);
/* A retention pass over every file of the cache index (not only the
 * config's): evict those not used since unused_before (ms since the
 * epoch), pinned ones excepted; the shape of ops_evict(). NULL on ENOMEM
 * or when the index cannot be read (*err then says why). */
json_t *ops_retain(struct cache *c, int64_t unused_before, int *err);
/* The unused_before of "not used for secs": now - secs, never <= 0. */
int64_t ops_unused_before(int secs);
/* Evict down to the cache's limits. */
json_t *ops_trim(struct cache *c);

#endif
