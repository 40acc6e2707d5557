/*
 * fs.c: the FUSE low-level operations. The tree answers metadata with no
 * lock and no network; reads go to the engine, which replies when the
 * bytes are there. Names the tree does not have go to the local layer
 * (fs_local.c, local.h). The table at the bottom is the file's index.
 *
 * Model files are immutable once resolved, so the kernel may cache
 * everything for long: entries, attributes and pages (keep_cache). Reads
 * are never direct_io: that would break mmap, which safetensors uses.
 * Folders and local files may change, so they get short timeouts.
 */
#include "fs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "modelfs/log.h"

/* Kernel readahead for the mount: 1 MiB FUSE reads (max_pages caps them
 * there) and 1 MiB mmap fault-around; 4 MiB measured no better. */
#define FS_READAHEAD_KB 1024
#define FS_IO_SIZE (256 << 10)
#define XATTR_PREFIX "user.modelfs."

/* A tree folder's local O_PATH fd (made, owned like the mount, when make),
 * or -errno. */
static int tree_dir_fd(struct fs *fs, const struct tree_node *dir, bool make)
{
	char path[PATH_MAX];
	int rc;

	if (!fs->local)
		return -ENOENT;
	rc = tree_node_path(dir, path, sizeof(path));
	if (rc)
		return rc;
	return make ? local_make_dir(fs->local, path, fs->uid, fs->gid)
		    : local_open_dir(fs->local, path);
}

int fs_dir_fd(struct fs *fs, fuse_ino_t ino, bool make, struct tree_node **tnode)
{
	struct tree_node *dir = tree_get(fs_tree(fs), ino);
	int fd;

	*tnode = dir;
	if (dir)
		return tree_node_is_file(dir) ? -ENOTDIR : tree_dir_fd(fs, dir, make);
	fd = fs->local ? local_node_fd(fs->local, ino) : -1;
	if (fd < 0)
		return -ENOENT;
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

static void node_stat(struct fs *fs, const struct tree_node *node, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = node->ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_mtime = st->st_ctime = st->st_atime = node->mtime;
	if (node->local) {
		/* Served as it is, read-only: its own owner and modes decide
		 * who reads it (default_permissions), never the daemon's. */
		if (stat(node->local->path, st) != 0) {
			memset(st, 0, sizeof(*st));
			st->st_mode = S_IFREG;
			st->st_mtime = st->st_ctime = st->st_atime = node->mtime;
		}
		st->st_ino = node->ino;
		st->st_mode &= ~(mode_t)0222;
		st->st_nlink = 1;
	} else if (node->file) {
		st->st_mode = S_IFREG | (0444 & ~fs->umask);
		st->st_nlink = 1;
		st->st_size = (off_t)engine_file_size(node->file);
		st->st_blocks = (st->st_size + 511) / 512;
		/* The size stdio, Python and cp read in: the cache's block, so a
		 * buffered 64 KiB read (Forge's probe) costs one block, not four
		 * (cat reads max(128 KiB, this); the kernel still asks for 1 MiB
		 * at a time ahead of a sequential reader). */
		st->st_blksize = FS_IO_SIZE;
	} else {
		/* Writable: local files may be added to any folder. */
		st->st_mode = S_IFDIR | ((fs_writable(fs) ? 0755 : 0555) & ~fs->umask);
		st->st_nlink = 2;
		for (size_t i = 0; i < node->nchildren; i++)
			st->st_nlink += !tree_node_is_file(node->children[i]);
		if (fs->local) {
			/* A local change to the folder changes its mtime, which
			 * webuis poll to notice new files (WEBUI.md §5). */
			int fd = tree_dir_fd(fs, node, false);
			struct stat lst;

			if (fd >= 0 && fstat(fd, &lst) == 0 && lst.st_mtime > st->st_mtime)
				st->st_mtime = st->st_ctime = lst.st_mtime;
			if (fd >= 0)
				close(fd);
		}
	}
}

/* Remote files never change while mounted; folders and local files may. */
static double node_timeout(const struct fs *fs, const struct tree_node *node)
{
	return node->local || (!node->file && fs->local) ? FS_LOCAL_TIMEOUT : FS_TIMEOUT;
}

static void fill_entry(struct fs *fs, const struct tree_node *node, struct fuse_entry_param *e)
{
	double timeout = node_timeout(fs, node);

	memset(e, 0, sizeof(*e));
	e->ino = node->ino;
	e->generation = 1;
	e->attr_timeout = timeout;
	e->entry_timeout = timeout;
	node_stat(fs, node, &e->attr);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	/* libfuse fails INIT (and the mount, after it was reported up) when
	 * this differs from a max_read mount option. */
	if (fs->max_read)
		conn->max_read = fs->max_read;
	/* Large kernel readahead and reads: fewer, bigger requests (the bdi's
	 * read_ahead_kb, raised at mount, still caps it). */
	conn->max_readahead = conn->max_readahead > (1u << 20) ? conn->max_readahead : (1u << 20);
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;	/* files never change under us */
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct tree_node *dir = tree_get(fs_tree(fs), parent), *node;
	struct fuse_entry_param e;
	int rc = -ENOENT, fd;

	if (!dir) {
		fs_local_lookup(req, parent, name);
		return;
	}
	if (tree_node_is_file(dir)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	node = strcmp(name, "..") == 0 ? (dir->parent ? dir->parent : dir)
	     : strcmp(name, ".") == 0 ? dir : tree_child(dir, name);
	if (node && !node->shadowed) {
		fill_entry(fs, node, &e);
		fuse_reply_entry(req, &e);
		return;
	}
	fd = tree_dir_fd(fs, dir, false);
	if (fd >= 0) {
		rc = fs_local_entry(fs, fd, name, &e);
		close(fd);
	}
	if (rc == 0) {
		fuse_reply_entry(req, &e);
	} else if (rc != -ENOENT && rc != -ENOTDIR) {
		fuse_reply_err(req, -rc);
	} else if (node) {
		fill_entry(fs, node, &e);	/* its local file went: the entry is back */
		fuse_reply_entry(req, &e);
	} else {
		/* A negative entry: webuis probe many sidecar names (.yaml,
		 * .preview.png) per model. Cached as long as the tree lives
		 * when nothing local can appear. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->local ? FS_LOCAL_TIMEOUT : FS_TIMEOUT;
		fuse_reply_entry(req, &e);
	}
}

/* A remote file of the tree before the last swap: an open whose lookup
 * the kernel made just before it (fs_swap_tree() tells the kernel only
 * after the swap), and which may have raced the file's drop. */
static struct tree_node *recent_file(struct fs *fs, fuse_ino_t ino)
{
	struct tree *before = atomic_load_explicit(&fs->tree_before, memory_order_acquire);
	struct tree_node *node = before ? tree_get(before, ino) : NULL;

	return node && node->file ? node : NULL;
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tree_node *node = tree_get(fs_tree(fs_of(req)), ino), held;
	struct stat st;

	/* An fstat of a remote file a reload has taken out of the tree since
	 * it was opened (or put another file under its name). */
	if (!node && fi && fs_fh_remote(fi)) {
		held = (struct tree_node){ .ino = ino, .file = fs_fh_remote(fi),
					   .mtime = engine_file_mtime(fs_fh_remote(fi)) };
		node = &held;
	}
	if (!node)
		node = recent_file(fs_of(req), ino);
	if (!node) {
		fs_local_getattr(req, ino);
		return;
	}
	node_stat(fs_of(req), node, &st);
	fuse_reply_attr(req, &st, node_timeout(fs_of(req), node));
}

static int listing_add(struct fs_listing *l, const char *name, struct tree_node *node,
		       ino_t st_ino, mode_t type)
{
	struct fs_dirent *grown = realloc(l->e, (l->n + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	l->e = grown;
	grown[l->n].name = strdup(name);
	if (!grown[l->n].name)
		return -ENOMEM;
	grown[l->n].node = node;
	grown[l->n].st_ino = st_ino;
	grown[l->n].type = type;
	l->n++;
	return 0;
}

static void listing_free(struct fs_listing *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		free(l->e[i].name);
	if (l)
		free(l->e);
	free(l);
}

int fs_list_local(int dirfd, const struct tree_node *dir, struct fs_listing *l)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	struct dirent *d;
	DIR *dp;

	if (fd < 0)
		return -errno;
	dp = fdopendir(fd);
	if (!dp) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (rc == 0 && (errno = 0, d = readdir(dp)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (dir) {
			const struct tree_node *same = tree_child(dir, d->d_name);

			/* a tree folder wins; a shadowed file was listed as local */
			if (same && !same->shadowed)
				continue;
		}
		rc = listing_add(l, d->d_name, NULL, d->d_ino, DTTOIF(d->d_type));
	}
	if (rc == 0 && errno)
		rc = -errno;
	closedir(dp);
	return rc;
}

/* The snapshot a listing pages through: the tree's children (a shadowed
 * one as the local file it is), then local names the tree lacks. */
static int make_listing(struct fs *fs, fuse_ino_t ino, struct fs_listing *l)
{
	struct tree_node *dir;
	struct stat st;
	int fd = fs_dir_fd(fs, ino, false, &dir), rc;

	if (dir && tree_node_is_file(dir))
		return -ENOTDIR;
	if (!dir && fd < 0)
		return fd;
	rc = listing_add(l, ".", dir, 0, S_IFDIR);
	if (rc == 0)
		rc = listing_add(l, "..", dir ? (dir->parent ? dir->parent : dir) : NULL, 0, S_IFDIR);
	for (size_t i = 0; rc == 0 && dir && i < dir->nchildren; i++) {
		struct tree_node *c = dir->children[i];

		/* A shadowed entry is listed with the local names, unless its
		 * local file went (lookups give the entry again then). */
		if (!c->shadowed || fd < 0 || fstatat(fd, c->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			rc = listing_add(l, c->name, c, c->ino,
					 tree_node_is_file(c) ? S_IFREG : S_IFDIR);
	}
	if (rc == 0 && fd >= 0)
		rc = fs_list_local(fd, dir, l);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_listing *l = calloc(1, sizeof(*l));
	int rc = l ? make_listing(fs, ino, l) : -ENOMEM;

	if (rc) {
		listing_free(l);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)l;
	/* Only a listing that can never change may stay in the kernel. */
	fi->cache_readdir = !fs->local;
	fi->keep_cache = !fs->local;
	if (fuse_reply_open(req, fi) != 0)
		listing_free(l);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	listing_free((struct fs_listing *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* One page of a listing from off. Local entries go without a node (ino
 * 0 in readdirplus): the kernel then looks them up itself, so every local
 * node it holds came from a counted lookup. */
static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
		       bool plus)
{
	const struct fs_listing *l = (const struct fs_listing *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < l->n; i++) {
		const struct fs_dirent *d = &l->e[i];
		struct fuse_entry_param e;
		size_t n;

		if (d->node) {
			fill_entry(fs_of(req), d->node, &e);
		} else {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = d->st_ino;
			e.attr.st_mode = d->type;
		}
		if (plus)
			n = fuse_add_direntry_plus(req, buf + used, size - used, d->name, &e,
						   (off_t)i + 1);
		else
			n = fuse_add_direntry(req, buf + used, size - used, d->name, &e.attr,
					      (off_t)i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, size, off, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, size, off, fi, true);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct tree_node *node = tree_get(fs_tree(fs_of(req)), ino);
	bool raced = false;
	int err;

	if (!node && (node = recent_file(fs_of(req), ino)) != NULL)
		raced = true;
	if (!node) {
		fs_local_open(req, ino, fi);
		return;
	}
	if (!tree_node_is_file(node)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, fs_refuse_node(fs_of(req), node, "open for writing"));
		return;
	}
	if (node->local) {
		/* Passed through: read as it is now, never cached by us. */
		int fd = open(node->local->path, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			err = errno;
			log_warn("event=local_entry_unreadable entry=%s path=%s error=\"%s\" "
				 "action=\"fix path in the config\"", node->local->id,
				 node->local->path, strerror(err));
			fuse_reply_err(req, err);
			return;
		}
		fi->fh = (uint64_t)fd;
		if (fuse_reply_open(req, fi) != 0)
			close(fd);
		return;
	}
	/* A file that can never be read says so at open, not as an empty read
	 * (its listed size may be 0). */
	err = raced ? engine_file_hold_raced(node->file) : engine_file_hold(node->file);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)node->file | FS_FH_REMOTE;
	fi->keep_cache = 1;
	fs_pages_opened(fs_of(req)->pages, node->file, ino);
	if (fuse_reply_open(req, fi) != 0)
		engine_file_release(node->file);
}

static void read_done(void *arg, const char *buf, ssize_t len)
{
	fuse_req_t req = arg;

	if (len < 0)
		fuse_reply_err(req, (int)-len);
	else
		fuse_reply_buf(req, buf, (size_t)len);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct engine_file *f = fs_fh_remote(fi);

	/* By the handle: a reload may have taken the file out of the tree
	 * (or put another under its name) since it was opened. */
	if (!f) {
		fs_local_read(req, size, off, fi);
		return;
	}
	log_debug("event=read path=%s off=%lld len=%zu", engine_file_path(f), (long long)off, size);
	if (off == 0 && fs_read_header(fs_of(req), req, ino, f, size))
		return;
	engine_read(f, (uint64_t)off, size, read_done, req);
}

/* The value of user.modelfs.<name>: a string the caller frees, NULL with
 * *err set when there is none. */
static char *xattr_value(struct engine_file *f, const char *name, int *err)
{
	char *v = NULL;

	*err = ENODATA;
	if (strcmp(name, "state") == 0)
		v = strdup(engine_file_state(f));
	else if (strcmp(name, "cached") == 0 &&
		 asprintf(&v, "%llu", (unsigned long long)engine_file_cached(f)) < 0)
		v = NULL;
	else if (strcmp(name, "sha256") == 0)
		v = engine_file_sha256(f);
	else if (strcmp(name, "source") == 0)
		v = engine_file_source(f);
	else if (strcmp(name, "error") == 0)
		v = engine_file_error(f);
	return v;
}

/* The root's own attributes: user.modelfs.cache_dir, whose control socket
 * reaches this daemon (commands run inside the mount find it with no
 * --cache-dir), and user.modelfs.pid (`modelfs unmount` waits for it to
 * finish after fusermount3 -u). A copy, or NULL with *err set. */
#define XATTR_CACHE_DIR "cache_dir"
#define XATTR_PID "pid"

static char *root_xattr(const struct fs *fs, const char *name, int *err)
{
	char *v = NULL;

	*err = ENODATA;
	if (strcmp(name, XATTR_CACHE_DIR) == 0 && fs->cache_dir)
		v = strdup(fs->cache_dir);
	else if (strcmp(name, XATTR_PID) == 0 && asprintf(&v, "%ld", (long)getpid()) < 0)
		v = NULL;
	return v;
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	struct tree_node *node = tree_get(fs_tree(fs), ino);
	char *value = NULL;
	size_t len;
	int err = ENODATA;

	if (!node) {
		/* local files keep no modelfs attributes */
		fuse_reply_err(req, ENODATA);
		return;
	}
	if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) {
		name += strlen(XATTR_PREFIX);
		if (ino == FUSE_ROOT_ID)
			value = root_xattr(fs, name, &err);
		else if (node->file)
			value = xattr_value(node->file, name, &err);
	}
	if (!value) {
		fuse_reply_err(req, err);
		return;
	}
	len = strlen(value);
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
	free(value);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char *const names[] = { "state", "cached", "sha256", "source", "error" };
	struct tree_node *node = tree_get(fs_tree(fs_of(req)), ino);
	char list[256];
	size_t len = 0;

	if (!node) {
		fuse_reply_xattr(req, 0);	/* local: none of ours */
		return;
	}
	if (ino == FUSE_ROOT_ID && fs_of(req)->cache_dir)
		len += (size_t)snprintf(list, sizeof(list), XATTR_PREFIX XATTR_CACHE_DIR) + 1;
	if (ino == FUSE_ROOT_ID)
		len += (size_t)snprintf(list + len, sizeof(list) - len, XATTR_PREFIX XATTR_PID) + 1;
	for (size_t i = 0; node->file && i < sizeof(names) / sizeof(names[0]); i++) {
		char *v;
		int err;

		if (strcmp(names[i], "sha256") == 0 || strcmp(names[i], "error") == 0) {
			v = xattr_value(node->file, names[i], &err);
			free(v);
			if (!v)
				continue;	/* only listed when it has a value */
		}
		len += (size_t)snprintf(list + len, sizeof(list) - len, XATTR_PREFIX "%s", names[i]) + 1;
	}
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv;
	uint64_t total = 0, files = 0;

	/* What room there is for local files: their folder's filesystem. */
	if (fs->local && fstatvfs(local_root_fd(fs->local), &sv) == 0) {
		if (local_read_only(fs->local))
			sv.f_flag |= ST_RDONLY;
		fuse_reply_statfs(req, &sv);
		return;
	}
	for (size_t i = 0, n = engine_nfiles(fs->engine); i < n; i++) {
		struct engine_file *f = engine_file_at(fs->engine, i);

		if (!engine_file_gone(f)) {
			total += engine_file_size(f);
			files++;
		}
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = (total + 4095) / 4096;
	sv.f_files = files;
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
	.mkdir = fs_mkdir,
	.symlink = fs_symlink,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.rename = fs_rename,
	.link = fs_link,
	.create = fs_create,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.fsync = fs_fsync,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.setxattr = fs_setxattr,
	.removexattr = fs_removexattr,
	.statfs = fs_statfs,
};

/* The "MAJ:MIN" of the mount at mountpoint, from /proc/self/mountinfo
 * (a stat() would ask this daemon, whose loop is not running yet). */
static int mount_dev(const char *mountpoint, char *dev, size_t dev_len)
{
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	char line[4096], escaped[PATH_MAX * 4], *p = escaped;
	int rc = -ENOENT;

	if (!mi)
		return -errno;
	/* mountinfo writes space, tab, newline and backslash as \ooo. */
	for (const char *c = mountpoint; *c && p < escaped + sizeof(escaped) - 5; c++)
		p += strchr(" \t\n\\", *c) ? sprintf(p, "\\%03o", (unsigned char)*c)
					   : sprintf(p, "%c", *c);
	*p = '\0';
	while (fgets(line, sizeof(line), mi)) {
		char majmin[32], mnt[sizeof(line)];

		/* id parent MAJ:MIN root mountpoint ...: the last match is on top. */
		if (sscanf(line, "%*s %*s %31s %*s %4095s", majmin, mnt) == 2 &&
		    strcmp(mnt, escaped) == 0) {
			snprintf(dev, dev_len, "%s", majmin);
			rc = 0;
		}
	}
	fclose(mi);
	return rc;
}

/* The kernel reads ahead of a file by its bdi's read_ahead_kb, 128 KiB
 * unless raised, and FUSE's max_readahead can only lower it: reads then
 * reach the daemon as 256 KiB requests and mmap faults as 128 KiB ones.
 * Root may raise it for this mount; anyone else keeps the default. */
static void raise_readahead(const char *mountpoint)
{
	char dev[32], path[96], now[32] = "";
	FILE *fp;

	if (mount_dev(mountpoint, dev, sizeof(dev)) != 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	fp = fopen(path, "re");
	if (fp) {
		if (!fgets(now, sizeof(now), fp))
			now[0] = '\0';
		fclose(fp);
	}
	if (atoi(now) >= FS_READAHEAD_KB)
		return;
	fp = fopen(path, "we");
	if (!fp || fprintf(fp, "%d\n", FS_READAHEAD_KB) < 0 || fclose(fp) != 0) {
		log_debug("event=readahead_unchanged bdi=%s read_ahead_kb=%s error=\"%s\"", dev,
			  now, strerror(errno));
		return;
	}
	log_debug("event=readahead bdi=%s read_ahead_kb=%d", dev, FS_READAHEAD_KB);
}

/* N of a max_read=N in a -o option list, or 0. */
static unsigned fuse_opt_max_read(const char *opts)
{
	const char *p = opts;
	unsigned n = 0;

	while (p && *p) {
		if (strncmp(p, "max_read=", 9) == 0)
			n = (unsigned)strtoul(p + 9, NULL, 10);
		p = strchr(p, ',');
		p = p ? p + 1 : NULL;
	}
	return n;
}

/* The options modelfs always mounts with. fsname and subtype make the
 * mount "modelfs:CONFIG" of type fuse.modelfs in findmnt and df; a comma
 * or backslash in CONFIG is escaped, as libfuse's option parser wants.
 * NULL when out of memory; the caller frees. */
static char *base_options(const struct fs_options *opts)
{
	const char *name = opts->fsname ? opts->fsname : "modelfs";
	char *esc = malloc(2 * strlen(name) + 1), *e = esc, *out = NULL;

	if (!esc)
		return NULL;
	for (const char *c = name; *c; c++) {
		if (*c == ',' || *c == '\\')
			*e++ = '\\';
		*e++ = *c;
	}
	*e = '\0';
	if (asprintf(&out, "%s,fsname=%s,subtype=modelfs,default_permissions%s",
		     opts->read_only ? "ro" : "rw", esc, opts->allow_other ? ",allow_other" : "") < 0)
		out = NULL;
	free(esc);
	return out;
}

static bool tree_has_ino(void *arg, uint64_t ino)
{
	return tree_get(fs_tree(arg), ino) != NULL;
}

/* Mark the files of t whose name a local file already has: the local
 * file is the user's data and wins (fs_i.h), with a warning naming both
 * (once per file: a reload does not repeat it). A local file where the
 * tree has a folder cannot win (the folder holds the entries): it is
 * hidden, and said so. */
static void mark_shadowed(struct fs *fs, struct tree *t)
{
	for (size_t i = 0; i < tree_nnodes(t); i++) {
		struct tree_node *node = tree_node_at(t, i);
		const struct config_entry *ce = node->file ? engine_file_entry(node->file) : node->local;
		char path[PATH_MAX];
		struct stat st;
		int fd;

		if (!node->parent || tree_node_path(node->parent, path, sizeof(path)) != 0)
			continue;
		fd = local_open_dir(fs->local, path);
		if (fd < 0)
			continue;
		if (!tree_node_is_file(node)) {
			if (fstatat(fd, node->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    !S_ISDIR(st.st_mode))
				log_warn("event=hidden path=%s%s%s local=%s/%s%s%s action=\"the mount's "
					 "folder of that name is shown; rename the local file to see "
					 "it\"", path, path[0] ? "/" : "", node->name, fs->local_dir, path,
					 path[0] ? "/" : "", node->name);
		} else if (fstatat(fd, node->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			   !(node->file && engine_file_shadowed(node->file))) {
			node->shadowed = true;
			if (node->file)
				engine_file_set_shadowed(node->file);
			log_warn("event=shadowed path=%s%s%s entry=%s local=%s/%s%s%s action=\"the local "
				 "file is served; move or delete it to see the entry\"", path,
				 path[0] ? "/" : "", node->name, ce ? ce->id : "-", fs->local_dir, path,
				 path[0] ? "/" : "", node->name);
		} else if (node->file && engine_file_shadowed(node->file)) {
			node->shadowed = true;
		}
		close(fd);
	}
}

/* The local layer over opts->local_dir, else the mountpoint's own
 * folder, opened now: once FUSE mounts, that path leads to us. */
static int open_local(struct fs *fs, const struct fs_options *opts)
{
	const char *dir = opts->local_dir ? opts->local_dir : opts->mountpoint;
	int rc;

	if (!opts->local_dir && strncmp(opts->mountpoint, "/dev/fd/", 8) == 0)
		return 0;	/* an open /dev/fuse: there is no folder under it */
	fs->local_dir = strdup(dir);
	if (!fs->local_dir)
		return -ENOMEM;
	rc = local_open(dir, opts->read_only, tree_has_ino, fs, &fs->local);
	if (rc) {
		log_error("event=mount_failed local_dir=%s error=\"%s\" action=\"%s\"", dir,
			  strerror(-rc), opts->local_dir ? "give an existing folder as local_dir"
			  : "the mountpoint must be a folder modelfs can open");
		return rc;
	}
	mark_shadowed(fs, fs_tree(fs));
	return 0;
}

/* Have the kernel forget what of old differs in t: names whose node went
 * or changed (their dentries), names t adds (negative dentries: they may
 * be cached as long as the tree), and every folder's listing and
 * attributes. A file's inode keeps its pages and attributes: it is the
 * same file for as long as anyone has it open (another file at its name
 * has another inode, tree.h (1)). Failures only mean the kernel held
 * nothing. */
static void invalidate_changes(struct fs *fs, struct tree *old, struct tree *t)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < tree_nnodes(old); i++) {
		struct tree_node *n = tree_node_at(old, i), *now;

		if (!n->parent || tree_node_path(n, path, sizeof(path)) != 0)
			continue;
		now = tree_find(t, path);
		if (now && now->ino == n->ino && now->file == n->file && now->local == n->local &&
		    now->shadowed == n->shadowed)
			continue;
		fuse_lowlevel_notify_inval_entry(fs->se, n->parent->ino, n->name, strlen(n->name));
	}
	for (size_t i = 0; i < tree_nnodes(t); i++) {
		struct tree_node *n = tree_node_at(t, i);

		if (!tree_node_is_file(n))
			fuse_lowlevel_notify_inval_inode(fs->se, n->ino, 0, 0);
		if (n->parent && tree_node_path(n, path, sizeof(path)) == 0 && !tree_find(old, path))
			fuse_lowlevel_notify_inval_entry(fs->se, n->parent->ino, n->name,
							 strlen(n->name));
	}
}

struct tree *fs_tree_now(struct fs *fs)
{
	return fs_tree(fs);
}

int fs_swap_tree(struct fs *fs, struct tree *t)
{
	struct tree *old, **grown;

	pthread_mutex_lock(&fs->swap_lock);
	grown = realloc(fs->old_trees, (fs->n_old_trees + 1) * sizeof(*grown));
	if (!grown) {
		pthread_mutex_unlock(&fs->swap_lock);
		return -ENOMEM;
	}
	fs->old_trees = grown;
	fs->old_trees[fs->n_old_trees++] = t;	/* the fs's from now: freed at unmount */
	if (fs->local)
		mark_shadowed(fs, t);
	old = fs_tree(fs);
	atomic_store_explicit(&fs->tree_before, old, memory_order_release);
	atomic_store_explicit(&fs->tree, t, memory_order_release);
	if (fs->mounted)
		invalidate_changes(fs, old, t);
	pthread_mutex_unlock(&fs->swap_lock);
	return 0;
}

int fs_mount(struct tree *tree, struct engine *engine, const struct fs_options *opts,
	     struct fs **out)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fs *fs = calloc(1, sizeof(*fs));
	char *base = NULL;
	int rc = -EIO;

	if (!fs)
		return -ENOMEM;
	atomic_init(&fs->tree, tree);
	pthread_mutex_init(&fs->swap_lock, NULL);
	fs->engine = engine;
	fs->max_read = fuse_opt_max_read(opts->fuse_opts);
	if (opts->cache_dir && !(fs->cache_dir = realpath(opts->cache_dir, NULL)))
		fs->cache_dir = strdup(opts->cache_dir);
	fs->uid = opts->uid;
	fs->gid = opts->gid;
	fs->umask = opts->umask & 0777;
	pthread_mutex_init(&fs->refused_lock, NULL);
	rc = open_local(fs, opts);
	if (rc)
		goto fail;
	rc = -EIO;
	base = base_options(opts);
	if (!base || fuse_opt_add_arg(&args, "modelfs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, base) ||
	    (opts->fuse_opts && (fuse_opt_add_arg(&args, "-o") ||
				 fuse_opt_add_arg(&args, opts->fuse_opts))) ||
	    (opts->debug && fuse_opt_add_arg(&args, "-d"))) {
		rc = -ENOMEM;
		goto fail;
	}
	fs->se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	if (!fs->se) {
		log_error("event=mount_failed mountpoint=%s error=\"bad FUSE options: %s\"",
			  opts->mountpoint, opts->fuse_opts ? opts->fuse_opts : "");
		rc = -EINVAL;
		goto fail;
	}
	if (fuse_set_signal_handlers(fs->se) != 0)
		goto fail;
	if (fuse_session_mount(fs->se, opts->mountpoint) != 0) {
		log_error("event=mount_failed mountpoint=%s error=\"cannot mount with FUSE: %s\" "
			  "action=\"in a container run it with --device /dev/fuse --cap-add SYS_ADMIN "
			  "(and --security-opt apparmor=unconfined where AppArmor is on); without FUSE, "
			  "modelfs prefetch --into DIR --config CONFIG puts the same files in DIR\"",
			  opts->mountpoint, access("/dev/fuse", R_OK | W_OK) == 0
			  ? "fuse_session_mount failed" : "/dev/fuse is missing or not usable");
		goto fail;
	}
	fs->mounted = true;
	raise_readahead(opts->mountpoint);
	fuse_opt_free_args(&args);
	free(base);
	*out = fs;
	return 0;
fail:
	fuse_opt_free_args(&args);
	free(base);
	fs_unmount(fs);
	return rc;
}

int fs_run(struct fs *fs)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return -ENOMEM;
	/* Metadata and cached reads are quick; misses don't hold a thread. */
	fuse_loop_cfg_set_max_threads(cfg, 32);
	fuse_loop_cfg_set_idle_threads(cfg, 8);
	if (fs_pages_start(fs, &fs->pages) != 0)
		log_warn("event=page_store_unavailable error=\"cannot start its thread\"");
	rc = fuse_session_loop_mt(fs->se, cfg);
	fs_pages_stop(fs->pages);
	fuse_loop_cfg_destroy(cfg);
	return rc < 0 ? rc : 0;
}

void fs_unmount(struct fs *fs)
{
	if (!fs)
		return;
	if (fs->se) {
		fuse_remove_signal_handlers(fs->se);
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		fuse_session_destroy(fs->se);
	}
	local_close(fs->local);
	fs_pages_free(fs->pages);
	pthread_mutex_destroy(&fs->refused_lock);
	pthread_mutex_destroy(&fs->swap_lock);
	for (size_t i = 0; i < fs->n_old_trees; i++)
		tree_free(fs->old_trees[i]);
	free(fs->old_trees);
	free(fs->local_dir);
	free(fs->cache_dir);
	free(fs);
}
