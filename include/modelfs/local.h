/*
 * local.h: the files that live beside the remote ones, on the real disk:
 * the mountpoint's own folder, opened before FUSE mounts over it (or an
 * overlay folder the user names), and nodes for what the kernel looks up
 * in it.
 *
 * (1) Every call works relative to the folder's fd (openat, mkdirat,
 *     renameat2, ...), never through a path joined to the mountpoint,
 *     which would loop into the FUSE mount.
 * (2) Folder paths are walked one name at a time without following
 *     symlinks: a link in the local folder can never lead the daemon
 *     outside it, nor back into its own mount.
 * (3) A node is one local file or folder, keyed by its (st_dev, st_ino),
 *     so a rename or a second name finds the same node. Its id is a FUSE
 *     inode that the caller's taken() never claims; it lives until the
 *     kernel forgets it as often as it was looked up.
 * (4) What a caller creates is owned by the uid/gid it passes (the FUSE
 *     caller's), the group being the folder's when that folder is setgid;
 *     a daemon that is not root keeps its own. A create that fails half
 *     way (the chown) removes what it made.
 * Errors: the syscalls' own errno, as -errno, so what the local disk
 * says reaches the writer unchanged (ENOSPC, EDQUOT, EACCES, ENOTEMPTY,
 * EXDEV...), with one translation: a symlink where a folder is walked
 * (ELOOP from O_NOFOLLOW) is -ENOTDIR, "no local folder here". Nothing
 * is logged here (the FUSE front logs where it replies).
 * Ownership: local_open() gives the layer; local_close() frees it, its
 * nodes and their fds. Fds returned by local_open_dir()/local_make_dir()
 * and local_reopen() are the caller's to close.
 * Threads: all functions are thread-safe; the node table has one lock,
 * never held across a syscall other than close().
 */
#ifndef MODELFS_LOCAL_H
#define MODELFS_LOCAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct local;

/* Open dir (O_PATH). taken(arg, id) says which FUSE inodes the caller
 * uses itself. 0, or -errno (-ENOTDIR, -ENOENT, -EACCES...). */
int local_open(const char *dir, bool read_only, bool (*taken)(void *arg, uint64_t id),
	       void *arg, struct local **out);
void local_close(struct local *l);
bool local_read_only(const struct local *l);
/* The folder's fd, for fstatvfs() and the like; the layer keeps it. */
int local_root_fd(const struct local *l);

/* An O_PATH fd of the folder at relpath ("" is the root): an fd, or
 * -ENOENT / -ENOTDIR when it is not a local folder. */
int local_open_dir(struct local *l, const char *relpath);
/* The same, creating missing folders (0755, owned by uid/gid). */
int local_make_dir(struct local *l, const char *relpath, uid_t uid, gid_t gid);

/* Look name up in dirfd: its node's id (counted as one more lookup) and
 * its stat. -ENOENT when there is none. */
int local_lookup(struct local *l, int dirfd, const char *name, uint64_t *id, struct stat *st);
/* The node's O_PATH fd, or -1 when id is no local node. It stays open
 * while the kernel holds the node, which it does for any request on it. */
int local_node_fd(struct local *l, uint64_t id);
/* The kernel dropped n lookups of id; the node goes with the last. */
void local_forget(struct local *l, uint64_t id, uint64_t n);
/* A regular fd on the node's file (flags as for open(2), no O_CREAT). */
int local_reopen(int node_fd, int flags);
/* A path naming the node's file for calls that take no fd (chmod,
 * utimens on an O_PATH fd): /proc/self/fd/N. */
void local_fd_path(int node_fd, char *buf, size_t len);

/* Create name in dirfd, owned by uid/gid: a file (an open fd in *fd,
 * flags as for open(2); an existing file is opened unless O_EXCL), a
 * folder, or a symlink to target. 0 or -errno. */
int local_create(int dirfd, const char *name, int flags, mode_t mode, uid_t uid, gid_t gid,
		 int *fd);
int local_mkdir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid);
int local_symlink(const char *target, int dirfd, const char *name, uid_t uid, gid_t gid);

#endif
