/*
 * fs_local.c: the FUSE operations on local files, and every operation
 * that changes something (fs_i.h). Remote entries refuse every change
 * with EROFS, and a new local name that a remote entry has with EEXIST:
 * webuis handle both (WEBUI.md), and nothing remote is hidden silently.
 *
 * New files, folders and links are owned by the FUSE caller
 * (fuse_req_ctx): the daemon may run as root for a webui running as uid
 * 1000, which must own what it writes. The kernel checked the caller's
 * permissions already (default_permissions, against the real modes of
 * local files). Writing into a layout folder that exists only remotely
 * creates it locally, owned like the mount (uid=, gid=).
 */
#include "fs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelfs/clock.h"
#include "modelfs/log.h"

#define REFUSED_LOG_MS 60000

int fs_refuse(struct fs *fs, uint64_t ino, const char *path, const char *name, const char *op,
	      int err)
{
	uint64_t key = ino ^ ((uint64_t)err << 56);	/* EROFS and EEXIST apart */
	size_t slot = (size_t)(key % FS_REFUSED_SLOTS);
	int64_t now = clock_now_ms();
	bool say;

	pthread_mutex_lock(&fs->refused_lock);
	say = fs->refused[slot].key != key || now - fs->refused[slot].at_ms >= REFUSED_LOG_MS;
	if (say) {
		fs->refused[slot].key = key;
		fs->refused[slot].at_ms = now;
	}
	pthread_mutex_unlock(&fs->refused_lock);
	if (say)
		log_warn("event=%s path=%s%s%s op=\"%s\" errno=%s action=\"%s\"",
			 err == EEXIST ? "name_taken" : "read_only", path, name && *path ? "/" : "",
			 name ? name : "", op, err == EEXIST ? "EEXIST" : "EROFS",
			 err == EEXIST ? "a remote entry has this name; choose another name"
			 : "remote entries are read-only; write a local file beside it");
	return err;
}

int fs_local_entry(struct fs *fs, int dirfd, const char *name, struct fuse_entry_param *e)
{
	uint64_t id;
	int rc;

	memset(e, 0, sizeof(*e));
	rc = local_lookup(fs->local, dirfd, name, &id, &e->attr);
	if (rc)
		return rc;
	e->ino = id;
	e->generation = 1;
	e->attr_timeout = FS_LOCAL_TIMEOUT;
	e->entry_timeout = FS_LOCAL_TIMEOUT;
	return 0;
}

/* A local node's O_PATH fd (the layer keeps it), or -1. */
static int node_fd(struct fs *fs, fuse_ino_t ino)
{
	return fs->local ? local_node_fd(fs->local, ino) : -1;
}

void fs_local_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	int fd = node_fd(fs, parent), rc;

	if (fd < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	rc = fs_local_entry(fs, fd, name, &e);
	if (rc == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FS_LOCAL_TIMEOUT;
		rc = 0;
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

void fs_local_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct stat st;
	int fd = node_fd(fs_of(req), ino);

	if (fd < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, FS_LOCAL_TIMEOUT);
}

void fs_local_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd = node_fd(fs_of(req), ino);

	if (fd < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fd = local_reopen(fd, fi->flags);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 0;	/* it may have changed from outside */
	if (fuse_reply_open(req, fi) != 0)
		close(fd);
}

void fs_local_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = (int)fi->fh;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, 0);
}

void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);

	if (fs->local && !tree_get(fs_tree(fs), ino))
		local_forget(fs->local, ino, nlookup);
	fuse_reply_none(req);
}

void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	for (size_t i = 0; fs->local && i < count; i++)
		if (!tree_get(fs_tree(fs), forgets[i].ino))
			local_forget(fs->local, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

int fs_refuse_node(struct fs *fs, const struct tree_node *node, const char *op)
{
	char path[PATH_MAX];

	if (tree_node_path(node, path, sizeof(path)) != 0)
		snprintf(path, sizeof(path), "%s", node->name);
	return fs_refuse(fs, node->ino, path, NULL, op, EROFS);
}

static int set_times(int fd, int fh, const char *path, bool symlink, const struct stat *attr,
		     int to_set)
{
	struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	if (fh >= 0)
		return futimens(fh, tv) == 0 ? 0 : -errno;
	/* The /proc path of a symlink's fd would lead the daemon, as root,
	 * to wherever the link points: a link's own times or nothing. */
	if (symlink)
		return utimensat(fd, "", tv, AT_EMPTY_PATH) == 0 ? 0 : errno == EINVAL ? -EPERM : -errno;
	return utimensat(AT_FDCWD, path, tv, 0) == 0 ? 0 : -errno;
}

/* chmod, chown, truncate and utimens of a local file, in that order;
 * fh is an open fd when the kernel gave one, else -1. */
static int local_setattr(int fd, int fh, const struct stat *attr, int to_set)
{
	char path[64];
	struct stat st;

	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	local_fd_path(fd, path, sizeof(path));
	if (S_ISLNK(st.st_mode) && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_SIZE)))
		return -EPERM;	/* never through the link (see set_times) */
	if ((to_set & FUSE_SET_ATTR_MODE) && chmod(path, attr->st_mode & 07777) != 0)
		return -errno;
	if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    fchownat(fd, "", to_set & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1,
		     to_set & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1,
		     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if ((to_set & FUSE_SET_ATTR_SIZE) &&
	    (fh >= 0 ? ftruncate(fh, attr->st_size) : truncate(path, attr->st_size)) != 0)
		return -errno;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
		      FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))
		return set_times(fd, fh, path, S_ISLNK(st.st_mode), attr, to_set);
	return 0;
}

void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct tree_node *node = tree_get(fs_tree(fs), ino);
	int fd, rc;

	if (node) {
		fuse_reply_err(req, fs_refuse_node(fs, node, to_set & FUSE_SET_ATTR_SIZE ? "truncate"
						: "setattr"));
		return;
	}
	fd = node_fd(fs, ino);
	rc = fd < 0 ? -ENOENT : local_setattr(fd, fi ? (int)fi->fh : -1, attr, to_set);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fs_local_getattr(req, ino);
}

void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char target[PATH_MAX + 1];
	int fd = node_fd(fs_of(req), ino);
	ssize_t n;

	if (fd < 0) {
		fuse_reply_err(req, tree_get(fs_tree(fs_of(req)), ino) ? EINVAL : ENOENT);
		return;
	}
	n = readlinkat(fd, "", target, sizeof(target) - 1);
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	target[n] = '\0';
	fuse_reply_readlink(req, target);
}

/* The local folder a new name goes into (made when it is only remote),
 * after the rules: a read-only mount refuses, a name a remote entry has
 * is EEXIST. An fd the caller closes, or -errno. */
static int new_name_dir(fuse_req_t req, fuse_ino_t parent, const char *name, const char *op)
{
	struct fs *fs = fs_of(req);
	struct tree_node *dir = tree_get(fs_tree(fs), parent), *same;
	char path[PATH_MAX];

	if (!fs_writable(fs))
		return -EROFS;
	if (dir && !tree_node_is_file(dir)) {
		same = tree_child(dir, name);
		if (same) {
			if (tree_node_path(dir, path, sizeof(path)) != 0)
				path[0] = '\0';
			return -fs_refuse(fs, same->ino, path, name, op, EEXIST);
		}
	}
	return fs_dir_fd(fs, parent, true, &dir);
}

static void reply_new_entry(fuse_req_t req, int dirfd, const char *name, int rc)
{
	struct fuse_entry_param e;

	if (rc == 0)
		rc = fs_local_entry(fs_of(req), dirfd, name, &e);
	if (dirfd >= 0)
		close(dirfd);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int fd = new_name_dir(req, parent, name, "mkdir");

	reply_new_entry(req, fd, name, fd < 0 ? fd : local_mkdir(fd, name, mode, ctx->uid, ctx->gid));
}

void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int fd = new_name_dir(req, parent, name, "symlink");

	reply_new_entry(req, fd, name,
			fd < 0 ? fd : local_symlink(link, fd, name, ctx->uid, ctx->gid));
}

void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs *fs = fs_of(req);
	struct tree_node *node = tree_get(fs_tree(fs), ino);
	char path[64];
	int fd, dirfd, rc;

	if (node) {
		fuse_reply_err(req, fs_refuse_node(fs, node, "link"));
		return;
	}
	fd = node_fd(fs, ino);
	dirfd = fd < 0 ? -ENOENT : new_name_dir(req, newparent, newname, "link");
	if (dirfd < 0) {
		fuse_reply_err(req, -dirfd);
		return;
	}
	/* The /proc link names the node's own inode, a symlink included. */
	local_fd_path(fd, path, sizeof(path));
	rc = linkat(AT_FDCWD, path, dirfd, newname, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
	reply_new_entry(req, dirfd, newname, rc);
}

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	int dirfd = new_name_dir(req, parent, name, "create"), fd = -1, rc;

	rc = dirfd < 0 ? dirfd : local_create(dirfd, name, fi->flags, mode, ctx->uid, ctx->gid, &fd);
	if (rc == 0)
		rc = fs_local_entry(fs_of(req), dirfd, name, &e);
	if (dirfd >= 0)
		close(dirfd);
	if (rc) {
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 0;
	if (fuse_reply_create(req, &e, fi) != 0)
		close(fd);
}

/* The local folder of parent where name is removed or renamed from,
 * after the rule that remote entries stay: an fd, or -errno. */
static int changed_name_dir(fuse_req_t req, fuse_ino_t parent, const char *name, const char *op)
{
	struct fs *fs = fs_of(req);
	struct tree_node *dir = tree_get(fs_tree(fs), parent), *same;
	struct stat st;
	int fd;

	if (!fs_writable(fs))
		return -EROFS;
	same = dir && !tree_node_is_file(dir) ? tree_child(dir, name) : NULL;
	if (same && !same->shadowed)
		return -fs_refuse_node(fs, same, op);
	fd = fs_dir_fd(fs, parent, false, &dir);
	/* a shadowed entry whose local file went is the entry again */
	if (same && (fd < 0 || fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)) {
		if (fd >= 0)
			close(fd);
		return -fs_refuse_node(fs, same, op);
	}
	return fd;
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, int flags)
{
	int fd = changed_name_dir(req, parent, name, flags ? "rmdir" : "unlink"), rc;

	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	rc = unlinkat(fd, name, flags) == 0 ? 0 : errno;
	close(fd);
	fuse_reply_err(req, rc);
}

void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, 0);
}

void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, AT_REMOVEDIR);
}

void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags)
{
	int from = changed_name_dir(req, parent, name, "rename");
	int to = from < 0 ? from : changed_name_dir(req, newparent, newname, "rename over");
	struct tree_node *dir;
	int rc = 0;

	if (to == -ENOENT)	/* into a folder that is only remote so far */
		to = fs_dir_fd(fs_of(req), newparent, true, &dir);
	if (from < 0 || to < 0)
		rc = from < 0 ? from : to;
	else if (renameat2(from, name, to, newname, flags) != 0)
		rc = -errno;
	if (from >= 0)
		close(from);
	if (to >= 0)
		close(to);
	fuse_reply_err(req, -rc);
}

void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	ssize_t n;

	if (fs_fh_remote(fi) || tree_get(fs_tree(fs_of(req)), ino)) {
		fuse_reply_err(req, EBADF);	/* never opened for writing */
		return;
	}
	n = pwrite((int)fi->fh, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)n);
}

void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = 0, fd;

	if (!fs_fh_remote(fi) && !tree_get(fs_tree(fs_of(req)), ino)) {
		/* close() of a copy reports what a close of the file would
		 * (e.g. a deferred write error), while fh stays open. */
		fd = dup((int)fi->fh);
		rc = fd < 0 || close(fd) != 0 ? errno : 0;
	}
	fuse_reply_err(req, rc);
}

void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct engine_file *f = fs_fh_remote(fi);

	if (f)
		engine_file_release(f);
	else
		close((int)fi->fh);	/* a local file's, or a source = "local" entry's */
	fuse_reply_err(req, 0);
}

void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int rc = 0;

	if (!fs_fh_remote(fi) && !tree_get(fs_tree(fs_of(req)), ino) &&
	    (datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh)) != 0)
		rc = errno;
	fuse_reply_err(req, rc);
}

void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags)
{
	struct tree_node *node = tree_get(fs_tree(fs_of(req)), ino);

	fuse_reply_err(req, node ? fs_refuse_node(fs_of(req), node, "setxattr") : ENOTSUP);
}

void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct tree_node *node = tree_get(fs_tree(fs_of(req)), ino);

	fuse_reply_err(req, node ? fs_refuse_node(fs_of(req), node, "removexattr") : ENOTSUP);
}
