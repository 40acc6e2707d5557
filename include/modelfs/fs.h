/*
 * fs.h: the FUSE front: a low-level filesystem over a tree and an
 * engine, whose remote files are read-only, beside the local files of
 * the mountpoint's own folder (or local_dir), which are not (local.h). Every handler makes exactly one reply; reads that miss
 * the cache are replied later by the engine's worker, so FUSE threads
 * never wait on the network.
 * Ownership: fs_mount() gives a session that fs_unmount() frees; the
 * tree and engine stay the caller's.
 * Threads: fs_run() runs FUSE's multi-threaded loop until unmount or
 * SIGTERM/SIGINT, and SIGHUP unless the caller handles it (libfuse sets
 * only signals left at their default; a mount's daemon reloads on it).
 */
#ifndef MODELFS_FS_H
#define MODELFS_FS_H

#include <stdbool.h>
#include <sys/types.h>

#include "modelfs/engine.h"
#include "modelfs/tree.h"

struct fs;

struct fs_options {
	const char *mountpoint;		/* absolute, no symlinks (realpath) */
	const char *fsname;		/* "modelfs:CONFIG", shown by findmnt; NULL: "modelfs" */
	const char *fuse_opts;		/* libfuse's options (mountopts.h), or NULL */
	const char *cache_dir;		/* shown as user.modelfs.cache_dir on the root */
	const char *local_dir;		/* local files live here; NULL: the mountpoint's own */
	bool read_only;			/* local files too (-o ro) */
	bool allow_other;
	bool debug;
	/* What stat shows: owner, group, and a umask over 0444 files and
	 * 0555 folders. With default_permissions the kernel checks access
	 * against these, so they decide who may read. */
	uid_t uid;
	gid_t gid;
	mode_t umask;
};

int fs_mount(struct tree *tree, struct engine *engine, const struct fs_options *opts,
	     struct fs **out);
/* Serve t from now on (a reload): operations under way finish on the
 * tree before, which stays valid (and the caller's, or the fs's when a
 * swap gave it) until fs_unmount(); files open keep reading by their
 * handle. Local files that t's names already have win, as at mount. The
 * kernel is told to forget the names that changed and every folder's
 * listing, so a listing shows t at once. t becomes the fs's (freed at
 * fs_unmount()). Not from a FUSE thread. 0 or -ENOMEM (nothing changed). */
int fs_swap_tree(struct fs *fs, struct tree *t);
/* The tree served now (valid until fs_unmount()). */
struct tree *fs_tree_now(struct fs *fs);
/* Run until unmounted; 0 or -errno. */
int fs_run(struct fs *fs);
void fs_unmount(struct fs *fs);

#endif
