/*
 * fs_i.h: what fs.c (the tree's operations and the ops table) shares
 * with fs_local.c (the operations on local files, and every write).
 *
 * A FUSE inode is either a tree node (tree_get() finds it: a remote file
 * or a folder of the layout, which may also exist locally) or a local
 * node (local.h), never both: the local layer skips the tree's inodes.
 * A tree file whose name a local file already had at mount is
 * "shadowed": lookups give the local file.
 * Locks: fs.refused_lock and the local layer's own are never held
 * together, nor across a reply.
 */
#ifndef MODELFS_FS_I_H
#define MODELFS_FS_I_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "modelfs/fs.h"
#include "modelfs/local.h"

#define FS_TIMEOUT 86400.0		/* remote entries never change while mounted */
/* Local files may change from outside (an overlay folder is a plain
 * folder): the kernel asks again after this. */
#define FS_LOCAL_TIMEOUT 1.0
#define FS_REFUSED_SLOTS 256

struct fs {
	/* The tree now; fs_swap_tree() replaces it under live operations.
	 * A handler loads it once (fs_tree()) and may keep its nodes: a
	 * replaced tree is kept, unchanged, in old_trees until unmount. */
	struct tree *_Atomic tree;
	struct tree *_Atomic tree_before;	/* the one tree replaced, or NULL */
	struct tree **old_trees;	/* protected by swap_lock */
	size_t n_old_trees;		/* protected by swap_lock */
	pthread_mutex_t swap_lock;	/* one fs_swap_tree() at a time */
	char *local_dir;		/* the local layer's folder, for its warnings */
	struct engine *engine;
	struct local *local;		/* NULL: no local layer (a /dev/fd/N mount) */
	struct fuse_session *se;
	struct fs_pages *pages;		/* set in fs_run() before the loop */
	unsigned max_read;		/* -o max_read=N, which INIT must repeat */
	uid_t uid;			/* what stat shows (fs_options) */
	gid_t gid;
	mode_t umask;
	bool mounted;
	char *cache_dir;		/* the root's user.modelfs.cache_dir */
	pthread_mutex_t refused_lock;
	struct {			/* when a refusal (inode, errno) was last logged */
		uint64_t key;
		int64_t at_ms;
	} refused[FS_REFUSED_SLOTS];	/* protected by refused_lock */
};

/* One opendir's snapshot of a folder, paged by readdir. */
struct fs_dirent {
	char *name;
	struct tree_node *node;		/* a tree entry, else NULL (a local one) */
	ino_t st_ino;
	mode_t type;			/* S_IFREG, S_IFDIR, ... */
};

struct fs_listing {
	struct fs_dirent *e;
	size_t n;
};

static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct tree *fs_tree(struct fs *fs)
{
	return atomic_load_explicit(&fs->tree, memory_order_acquire);
}

/* An open remote file's fi->fh: its engine file (held, engine.h), with
 * this bit set (a user-space pointer never has it; a local fd is small).
 * Reads and release go by it, not by the inode, which a reload may take
 * from the tree while the file is open. */
#define FS_FH_REMOTE (UINT64_C(1) << 63)
static inline struct engine_file *fs_fh_remote(const struct fuse_file_info *fi)
{
	return fi->fh & FS_FH_REMOTE ? (struct engine_file *)(uintptr_t)(fi->fh & ~FS_FH_REMOTE)
				     : NULL;
}

static inline bool fs_writable(const struct fs *fs)
{
	return fs->local && !local_read_only(fs->local);
}

/* The tree folder at ino's local fd (created when make), or a dup of a
 * local node's: an O_PATH fd the caller closes, or -errno. *tnode gets
 * the tree folder, or NULL for a local one. */
int fs_dir_fd(struct fs *fs, fuse_ino_t ino, bool make, struct tree_node **tnode);
/* An entry for name in dirfd (looked up once more), local timeouts. */
int fs_local_entry(struct fs *fs, int dirfd, const char *name, struct fuse_entry_param *e);
/* err (EROFS: a change to a remote entry; EEXIST: a new local name a
 * remote entry has), logged at most once a minute per inode, naming the
 * file (path, or path/name) and the operation. */
int fs_refuse(struct fs *fs, uint64_t ino, const char *path, const char *name, const char *op,
	      int err);
/* The same for a tree node (a remote file or folder, or a source =
 * "local" entry), named by its path. */
int fs_refuse_node(struct fs *fs, const struct tree_node *node, const char *op);
/* Add the local entries of dirfd whose names the tree folder dir (may be
 * NULL) does not have. 0 or -errno. */
int fs_list_local(int dirfd, const struct tree_node *dir, struct fs_listing *l);

/* Operations on local inodes (fs_local.c); each makes one reply. */
void fs_local_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_local_getattr(fuse_req_t req, fuse_ino_t ino);
void fs_local_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_local_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi);
/* fs_pages.c: answer the read at offset 0 of f (inode ino) once the rest
 * of its safetensors header is in the kernel's page cache. false when it
 * is not for this read (not such a file, or too many waiting): the
 * caller answers it. */
bool fs_read_header(struct fs *fs, fuse_req_t req, fuse_ino_t ino, struct engine_file *f,
		    size_t size);
/* A thread that stores a loader's blocks into the kernel's page cache as
 * they arrive (the engine's loader sink), for files opened since it
 * started (fs_pages_opened()). Stop it while the session still stands;
 * the engine may still call the sink until engine_close(), then free it. */
struct fs_pages;
int fs_pages_start(struct fs *fs, struct fs_pages **out);
void fs_pages_opened(struct fs_pages *p, struct engine_file *f, fuse_ino_t ino);
void fs_pages_stop(struct fs_pages *p);
void fs_pages_free(struct fs_pages *p);

void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi);
void fs_readlink(fuse_req_t req, fuse_ino_t ino);
void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);
void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi);
void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags);
void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
