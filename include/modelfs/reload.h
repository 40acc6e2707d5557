/*
 * reload.h: a live mount re-reads its config (`modelfs reload`, SIGHUP).
 *
 * The config is read again from where the mount read it (the same file,
 * or the same URL fetched afresh) with the same layout, and compared
 * with the one in force, entry by entry (by id):
 * (1) an entry the new config adds is resolved (engine_add_entries(): in
 *     parallel, off the FUSE threads) and appears;
 * (2) an entry it no longer has is dropped (engine_file_drop()): it
 *     leaves the listings at once, and a file someone has open reads on
 *     until closed;
 * (3) an entry written differently is added again (a new inode, tree.h
 *     (1)), and its old files dropped once the new ones are resolved, so
 *     its name never goes missing;
 * (4) an unchanged entry keeps its file, its inode and its cache: nothing
 *     of it is asked of the origin again, unless a file of it cannot be
 *     read (it failed to resolve): then it is resolved again ("retried").
 * Then the new tree replaces the old one (fs_swap_tree()), and with it
 * source = "local" entries and every layout's view; the daemon's server,
 * if any, indexes the files again. A config that does
 * not load changes nothing: the error (FILE:LINE:COL: what) goes to the
 * caller and the log. A mount made with a lock reads the lock again too
 * and resolves from it (an entry whose locked files changed is changed).
 * [modelfs] settings are not applied: those that changed are named in
 * the answer and apply at the next mount.
 * Ownership: reloader_new() gives the reloader; it keeps every config it
 * loaded (engine files point into them) until reloader_free(), which
 * comes after engine_close() and fs_unmount(). The config given to
 * reloader_new() stays the caller's, freed after reloader_free().
 * Threads: reloader_run() is thread-safe (one reload at a time) and
 * blocks for the network; never call it from a FUSE thread.
 */
#ifndef MODELFS_RELOAD_H
#define MODELFS_RELOAD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/cache.h"
#include "modelfs/config.h"
#include "modelfs/engine.h"
#include "modelfs/fs.h"
#include "modelfs/lock.h"
#include "modelfs/serve.h"

struct reload_opts {
	/* Where the config came from: an absolute path or a URL; NULL when
	 * there is none to re-read (--model links): reloads then say so. */
	const char *config;
	const char *layout;		/* -o layout=, or NULL */
	const char *cache_dir;		/* where a URL config is fetched to */
	const char *lock;		/* the lock file mounted with (absolute), or NULL */
	const struct lock *lock_now;	/* that lock as mounted; must outlive the reloader */
	struct serve *serve;		/* the daemon's server ([modelfs] serve), or NULL:
					 * it indexes the files again (serve_refresh()) */
	int64_t empty_mtime;		/* tree_build()'s */
};

struct reloader;

/* cfg: the config mounted, in force until the first reload. */
int reloader_new(const struct reload_opts *o, const struct config *cfg, struct engine *e,
		 struct fs *fs, struct reloader **out);
/* Reload now: 0 and *result {"config", "added": [ids], "removed": [ids],
 * "changed": [ids], "retried": [ids], "unchanged": N, "files_added": N,
 * "failed": [{"entry", "error"}] (entries resolved now that cannot be
 * read), "settings_not_applied": [keys]};
 * else -errno with a one-line reason in err: -EINVAL (the config does
 * (or its lock) does not load: its error), -ENOTSUP (nothing to re-read),
 * -EIO (a URL could not be fetched), -ENOMEM. Logged either way. */
int reloader_run(struct reloader *r, json_t **result, char *err, size_t err_len);

/* Take SIGHUP from now on (a byte into a pipe); call before fs_mount(),
 * so that libfuse leaves it to us. 0 or -errno. */
int reload_catch_sighup(void);
/* Reload at each SIGHUP, on a thread of its own, until reloader_stop(). */
int reloader_listen(struct reloader *r);
/* Join that thread (a reload under way finishes first). NULL is fine. */
void reloader_stop(struct reloader *r);
void reloader_free(struct reloader *r);

#endif
