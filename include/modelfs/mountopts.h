/*
 * mountopts.h: the one parser of a mount's -o option list, shared by
 * `modelfs mount -o ...` and the mount helpers (mount.fuse.modelfs,
 * mount.modelfs) that mount(8) and /etc/fstab run.
 *
 * (1) Every option lands in exactly one class:
 *     - mount(8)'s own, meaningless here: auto, noauto, user, nouser,
 *       users, _netdev, nofail, defaults, comment=..., x-*
 *       (x-systemd.automount, ...): dropped;
 *     - libfuse's (allow_other, allow_root, auto_unmount, max_read=,
 *       default_permissions, blksize=, *context=, and the VFS flags
 *       dev/nodev, suid/nosuid, exec/noexec, atime/noatime, ...):
 *       passed through to libfuse as written;
 *     - modelfs's keys: cache_dir=, layout=, uid=, gid=, umask=,
 *       log_file=, local_dir=, ro and rw (whether local files may be
 *       changed; remote ones never may), and debug (our log level as
 *       well as libfuse's);
 *     - anything else, fsname= and subtype= included (modelfs sets
 *       those so that `findmnt -t fuse.modelfs` finds its mounts):
 *       refused, with a message naming the option.
 * (2) A backslash escapes the next character (libfuse's rule), so a
 *     value may hold a comma: cache_dir=/a\,b.
 * (3) A key given twice keeps the last value, as mount(8) does.
 * Ownership: mountopts_parse() fills *out; mountopts_free() frees it.
 * Threads: no shared state; call from any thread.
 */
#ifndef MODELFS_MOUNTOPTS_H
#define MODELFS_MOUNTOPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct mount_opts {
	char *fuse;			/* for libfuse, comma-separated; NULL when none */
	char *cache_dir;		/* NULL when not given */
	char *layout;			/* "forge", "comfyui", "flat"; NULL when not given */
	char *log_file;			/* NULL when not given */
	char *local_dir;		/* NULL when not given */
	bool read_only;			/* ro given after any rw */
	long long uid, gid;		/* -1 when not given */
	int umask;			/* 0 .. 0777, -1 when not given */
	bool debug;
	bool allow_other;		/* allow_other is among fuse */
};

/* Parse text (NULL or "" is no option). 0 and *out filled; -EINVAL with
 * err naming the option and what is wrong; -ENOMEM. uid= and gid= take
 * a number or a user/group name (resolved here). On failure *out holds
 * nothing to free. */
int mountopts_parse(const char *text, struct mount_opts *out, char *err, size_t errlen);
void mountopts_free(struct mount_opts *o);

#endif
