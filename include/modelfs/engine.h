/*
 * engine.h: the files of a mount and their bytes. The engine resolves
 * every config entry (or reuses a stored resolution when the origin is
 * unreachable), opens each file's cache, and answers reads: cached
 * blocks from disk, missing ones by single-flight block fetches on a
 * bounded pool of workers with per-file readahead, and it hashes every
 * file that becomes complete.
 *
 * (1) A block is downloaded once however many readers wait for it.
 *     Blocks are the cache's (256 KiB for files new to it); the config's
 *     block_size is the download unit: adjacent blocks queued together
 *     (readahead, a loader, prefetch) go in one request of up to that
 *     size, each committed with its own XXH3 as its bytes land. A read
 *     fetches the blocks it touches; readahead grows only under a
 *     sequential reader.
 * (2) engine_read() never waits on the network: a read that misses
 *     completes later, from the worker that fetched the block.
 * (3) Transient failures are retried with backoff for retry_timeout
 *     seconds; only final answers reach the reader (-EIO, -EACCES).
 * (4) A file whose SHA-256 differs from the source's is "corrupt": its
 *     blocks are dropped and its reads fail with -EIO.
 * (5) The file list only grows: engine_add_entries() appends files while
 *     the engine runs, engine_file_drop() marks one gone. A file never
 *     moves and stays valid until engine_close(), so a pointer or an
 *     index from engine_file_at() stays good for the engine's life, and
 *     readers of the list take no lock: engine_nfiles() is a count to
 *     read once (files may be appended after it), and every index below
 *     it is a file. A gone file is still in the list: callers that show
 *     or look up files by path skip it (engine_file_gone()).
 * Ownership: engine_open() gives the engine; engine_close() stops and
 * frees it and every engine_file.
 * Threads: every function is thread-safe. Callbacks run with no engine
 * lock held, on the caller's thread or a worker.
 */
#ifndef MODELFS_ENGINE_H
#define MODELFS_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/cache.h"
#include "modelfs/config.h"
#include "modelfs/http.h"
#include "modelfs/lock.h"
#include "modelfs/source.h"

struct engine;
struct engine_file;

/* Called once per engine_read(): len bytes at buf, or a -errno in len.
 * buf is valid only during the call. */
typedef void (*engine_read_cb)(void *arg, const char *buf, ssize_t len);

/* Resolve every entry of cfg (in parallel; network) and open the cache
 * files. Entries that fail are kept, with their error, so the mount
 * still lists them. source = "local" entries are not the engine's: they
 * give no file (nor in engine_resolve()); the front serves them. No
 * threads remain when it returns. */
int engine_open(const struct config *cfg, struct cache *cache, struct engine **out);
/* The same with a lock (lock.h): the catalog is filled from it, asking
 * no source, so a mount needs the network only for bytes not cached. A
 * config entry the lock does not have, or has for another spec (another
 * repo, revision, URL...), is listed with an error saying so; a lock
 * entry the config does not have is left out with a warning. A locked
 * file's bytes come from its source at the locked commit or version,
 * fetched with the locked size, hash and validator: an origin that now
 * differs fails the file with both values named (source_refresh()). The
 * lock may be freed once this returns. Files that a lock being built
 * has no hash for yet are fine: they are checked against their size
 * and validator only. */
int engine_open_locked(const struct config *cfg, const struct lock *lock, struct cache *cache,
		       struct engine **out);
/* What engine_open_with() may change; zeroed fields are the defaults. */
struct engine_opts {
	/* Makes each HTTP client the engine uses (one per fetch worker, per
	 * resolver thread and for the bucket uploader, each used by one
	 * thread): 0 or -errno.
	 * NULL: http_client_new(), libcurl. The engine's unit tests hand in
	 * an in-memory origin here (http_client_new_with()). */
	int (*client_new)(void *arg, struct http_client **out);
	void *client_arg;
};
/* engine_open_locked() (lock may be NULL) with opts (NULL: defaults),
 * which must outlive the engine. */
int engine_open_with(const struct config *cfg, const struct lock *lock, struct cache *cache,
		     const struct engine_opts *opts, struct engine **out);

/* Resolve every entry of cfg (with only, those whose only[i] is true)
 * with the mount's own resolver (in parallel, a few tries each; network),
 * without a cache: no stored resolution is used or written. *out has
 * cfg->n_entries rows in config order (a skipped one has no files); each
 * row's files carry their own err (-EAGAIN: the origin could not be
 * reached). Paths are not claimed (source_paths_claim()). 0 or -ENOMEM;
 * free with engine_resolved_free(). */
struct engine_resolved {
	const struct config_entry *entry;
	struct source_file *files;
	size_t n;
	int rc;				/* source_resolve()'s */
};
int engine_resolve(const struct config *cfg, const bool *only, struct engine_resolved **out);
void engine_resolved_free(struct engine_resolved *r, size_t n);

/* Start the fetch workers and the verifier. */
int engine_start(struct engine *e);
/* Stop transfers (within a few seconds even when stalled) and the
 * verifier, and join them; engine_prefetch() calls return -ECANCELED.
 * The engine stays readable (state, sizes) until engine_close(). */
void engine_stop(struct engine *e);
/* engine_stop(), then free. */
void engine_close(struct engine *e);

size_t engine_nfiles(const struct engine *e);
struct engine_file *engine_file_at(const struct engine *e, size_t i);

/* Resolve cfg's entries whose add[i] is true with engine_open()'s
 * resolver (in parallel, a few tries each, a stored resolution when the
 * origin is unreachable; with lock, from it, as engine_open_locked()) and
 * append their files, each usable at once. A path a live file has is
 * not taken (the new file is listed with an error naming the entry that
 * has it), unless that file's entry has the id of one added: an entry
 * added again replaces its files, which the caller then drops. cfg must
 * outlive the engine (its entries are the files' engine_file_entry());
 * its [modelfs] settings are not used. The files appended are at
 * [*first_added, *first_added + *nadded). Calls may overlap (the
 * appends are one at a time); blocks for the network: never call it
 * from a FUSE thread or an engine callback. 0 or -ENOMEM (the files
 * added so far stay). */
int engine_add_entries(struct engine *e, const struct config *cfg, const struct lock *lock,
		       const bool *add, size_t *first_added, size_t *nadded);
/* cfg becomes the engine's: freed at engine_close(), after its files
 * (for a caller that goes before the engine, as a server does). 0 or
 * -ENOMEM (cfg still the caller's). */
int engine_keep_config(struct engine *e, struct config *cfg);
/* f is no longer the mount's: from now engine_file_open_error() and
 * engine_file_hold() give -ENOENT, while those that hold it read on.
 * Its cached blocks stay in the cache. Idempotent. */
void engine_file_drop(struct engine_file *f);
bool engine_file_gone(const struct engine_file *f);
/* An open of f: 0, or engine_file_open_error()'s -errno (nothing held).
 * engine_file_release() ends it; engine_file_holders() counts them. */
int engine_file_hold(struct engine_file *f);
/* The same for an open that began while f was still shown and raced its
 * drop (the caller knows): a gone file is held too. */
int engine_file_hold_raced(struct engine_file *f);
void engine_file_release(struct engine_file *f);
int engine_file_holders(const struct engine_file *f);

const char *engine_file_path(const struct engine_file *f);
uint64_t engine_file_size(const struct engine_file *f);
int64_t engine_file_mtime(const struct engine_file *f);
/* The config entry f comes from. */
const struct config_entry *engine_file_entry(const struct engine_file *f);
/* f's cache file (owned by the cache), or NULL while it has none: f was
 * listed unresolved (its origin was down at mount) and no sha256 in the
 * config named its bytes, until it is resolved at its first read. */
struct cache_file *engine_file_cache(struct engine_file *f);
/* f was resolved: at mount (from its origin, a stored resolution or a
 * lock) or since. A file listed unresolved may have its cache file, and
 * serve the bytes it holds, before it is resolved. */
bool engine_file_resolved(struct engine_file *f);

/* What f is called at its origin, copied under f's lock (a resolution
 * at first read fills them late): its path there (a repo path, an object
 * key), the revision it was pinned to (a commit) and the hashes its bytes
 * must have (the source's SHA-256, else a git blob id). Each is NULL when
 * unknown. 0, or -ENOMEM with nothing to free; else free the strings
 * with engine_origin_clear(). */
struct engine_origin {
	char *remote_path;
	char *revision;
	char *sha256;
	char *git_sha1;
	char *validator;		/* the origin's ETag or Last-Modified (or a commit) */
};
int engine_file_origin(struct engine_file *f, struct engine_origin *out);
void engine_origin_clear(struct engine_origin *o);

/* -errno when f can never be read in this mount (it failed to resolve
 * with a final answer, or it is corrupt): -ENOENT for a file the origin
 * does not have or a dropped one, -EACCES when access was refused, else
 * -EIO. */
int engine_file_open_error(struct engine_file *f);

/* Read len bytes at off; cb gets them (short only at EOF). */
void engine_read(struct engine_file *f, uint64_t off, size_t len, engine_read_cb cb, void *arg);
/* engine_read() into buf, waiting for it: the length read or -errno.
 * Never from an engine callback (the worker it waits for may be the one
 * running it). */
ssize_t engine_read_wait(struct engine_file *f, void *buf, uint64_t off, size_t len);

/* "remote", "partial", "complete", "verified", "corrupt" or "error". */
const char *engine_file_state(struct engine_file *f);
uint64_t engine_file_cached(struct engine_file *f);
/* The mount serves a local file of f's name instead (the front decides,
 * before mounting); status shows it. */
void engine_file_set_shadowed(struct engine_file *f);
bool engine_file_shadowed(struct engine_file *f);
/* Cached bytes plus those received of blocks still on their way: what a
 * progress bar shows, moving between two blocks. */
uint64_t engine_file_progress(struct engine_file *f);
/* Bytes this run downloaded for f through the shared tier (cache_proxy),
 * from the shared bucket (shared_cache) and from the origin (or a mirror). */
void engine_file_bytes_from(struct engine_file *f, uint64_t *tier, uint64_t *bucket,
			    uint64_t *origin);
/* Copies the caller frees; NULL when none. */
char *engine_file_sha256(struct engine_file *f);
char *engine_file_error(struct engine_file *f);
/* Where the bytes come from, safe to show to any local user: the URL as
 * the config writes it (${VAR}s unexpanded) without userinfo, query or
 * fragment, "huggingface:org/repo@rev/path" for a repo's file (a folder
 * entry's too), "civitai:MODEL@VERSION/name" for a CivitAI file (no MODEL when only the
 * version is configured). A copy
 * the caller frees; engine_entry_source() is the entry's alone. */
char *engine_file_source(struct engine_file *f);
char *engine_entry_source(const struct config_entry *e);

struct engine_prefetch_opts {
	bool pin;			/* pin f (CACHE_PIN_USER) before fetching */
	int window;			/* download units (block_size) of f asked for at a time (default 4) */
	const atomic_int *cancel;	/* stop early when it becomes non-zero; may be NULL */
	/* Check every block against its XXH3 before f counts as done, also
	 * those no read has checked since the cache was opened (a power loss
	 * may have taken their bytes after the index said they were there),
	 * fetching again what fails: for a caller that takes the data file
	 * itself, not through reads (prefetch --into). */
	bool check_blocks;
};

/* Fetch every missing block of f at the lowest priority (blocks that
 * readers wait for, and their readahead, always go first), then wait
 * until f is hashed; a file with no cache file yet (engine_file_cache())
 * is resolved first, on the caller's thread. 0 when f is verified (or complete, with nothing to
 * compare with); else -errno with a one-line reason: the fetch's final
 * error, -ENOSPC when the cache cannot hold f, -EIO for a checksum
 * mismatch, -ECANCELED at *cancel or engine_stop(). Blocks the caller
 * (never call it from a FUSE thread or an engine callback); what was
 * fetched stays cached, so a later call resumes. */
int engine_prefetch(struct engine_file *f, const struct engine_prefetch_opts *o,
		    char *reason, size_t reason_len);
/* When the config's header_prefetch is on, in the background, fetch the
 * header of every .safetensors and .gguf file not yet seen by an earlier
 * call (at mount: all; after engine_add_entries(): the added ones): a
 * safetensors file's 8 + N bytes, and for checkpoints and ControlNet
 * models Forge's 64 KiB probe at 1 MiB; a GGUF file's metadata and tensor
 * infos; all files at once, at prefetch priority: a webui start then
 * reads cached blocks. Call after engine_start(); engine_stop() ends it.
 * 0 or -errno. */
int engine_prefetch_headers(struct engine *e);
/* How many workers prefetch leaves free for readers while readers are
 * fetching (default: a quarter of them; with no reader about, one); 0
 * when nothing but prefetch reads, as without a mount. Call before
 * engine_start(). */
void engine_set_prefetch_reserve(struct engine *e, int workers);
/* Blocks of a file a loader reads (the engine fetches all of it then,
 * in file order, while the loader reads in its own): each one, once
 * stored and its readers answered, is handed to sink(arg, f, off, len)
 * on the worker that stored it, so that the front can put it into the
 * kernel's page cache ahead of the loader. sink must not block. Set
 * before reads come; NULL: none. */
typedef void (*engine_block_sink)(void *arg, struct engine_file *f, uint64_t off, uint32_t len);
void engine_set_loader_sink(struct engine *e, engine_block_sink sink, void *arg);
/* The most bytes the cache could hold now: its size limit, or what it
 * holds plus the free disk above cache_min_free, whichever is less. */
uint64_t engine_cache_capacity(struct engine *e);

/* Re-check f's cached blocks and, when it is complete, its whole-file
 * hash (cache_file_verify()). A hash mismatch makes f corrupt: its reads
 * fail until a remount fetches it afresh. Blocks the caller for the
 * time it takes to read f's cached bytes. */
int engine_file_verify(struct engine_file *f, struct cache_verify *out);

#endif
