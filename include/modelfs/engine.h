/*
 * engine.h: the files of a mount and their bytes. The engine resolves
 * every config entry (or reuses a stored resolution when the origin is
 * unreachable), opens each file's cache, and answers reads: cached
 * blocks from disk, missing ones by single-flight block fetches on a
 * bounded pool of workers with per-file readahead, and it hashes every
 * file that becomes complete.
 *
 * (1) A block is downloaded once however many readers wait for it.
 * (2) engine_read() never waits on the network: a read that misses
 *     completes later, from the worker that fetched the block.
 * (3) Transient failures are retried with backoff for retry_timeout
 *     seconds; only final answers reach the reader (-EIO, -EACCES).
 * (4) A file whose SHA-256 differs from the source's is "corrupt": its
 *     blocks are dropped and its reads fail with -EIO.
 * Ownership: engine_open() gives the engine; engine_close() stops and
 * frees it and every engine_file.
 * Threads: every function is thread-safe. Callbacks run with no engine
 * lock held, on the caller's thread or a worker.
 */
#ifndef MODELFS_ENGINE_H
#define MODELFS_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/cache.h"
#include "modelfs/config.h"

struct engine;
struct engine_file;

/* Called once per engine_read(): len bytes at buf, or a -errno in len.
 * buf is valid only during the call. */
typedef void (*engine_read_cb)(void *arg, const char *buf, ssize_t len);

/* Resolve every entry of cfg (in parallel; network) and open the cache
 * files. Entries that fail are kept, with their error, so the mount
 * still lists them. No threads remain when it returns. */
int engine_open(const struct config *cfg, struct cache *cache, struct engine **out);
/* Start the fetch workers and the verifier. */
int engine_start(struct engine *e);
/* Stop transfers (within a few seconds even when stalled), join, free. */
void engine_close(struct engine *e);

size_t engine_nfiles(const struct engine *e);
struct engine_file *engine_file_at(const struct engine *e, size_t i);

const char *engine_file_path(const struct engine_file *f);
uint64_t engine_file_size(const struct engine_file *f);
int64_t engine_file_mtime(const struct engine_file *f);

/* -errno when f can never be read in this mount (it failed to resolve
 * with a final answer, or it is corrupt): -ENOENT for a file the origin
 * does not have, -EACCES when access was refused, else -EIO. */
int engine_file_open_error(struct engine_file *f);

/* Read len bytes at off; cb gets them (short only at EOF). */
void engine_read(struct engine_file *f, uint64_t off, size_t len, engine_read_cb cb, void *arg);

/* "remote", "partial", "complete", "verified", "corrupt" or "error". */
const char *engine_file_state(struct engine_file *f);
uint64_t engine_file_cached(struct engine_file *f);
/* Copies the caller frees; NULL when none. */
char *engine_file_sha256(struct engine_file *f);
char *engine_file_error(struct engine_file *f);
/* Where the bytes come from, safe to show: the URL without its query. */
char *engine_file_source(struct engine_file *f);

#endif
