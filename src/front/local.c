/*
 * local.c: the local layer (local.h): a folder opened before the mount,
 * and a table of nodes for the local files the kernel knows.
 *
 * Each node holds an O_PATH fd on its file, as libfuse's passthrough_ll
 * does: the fd follows the file across renames, so no path is stored
 * that a rename could make stale. Two hash tables index the nodes, by
 * FUSE id (every request) and by (dev, ino) (a lookup of a name whose
 * file already has a node, e.g. after a rename). Both are fixed-size:
 * the kernel keeps only the nodes it caches, a few thousand at most.
 */
#include "modelfs/local.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCAL_BUCKETS 4096

struct local_node {
	uint64_t id;
	dev_t dev;
	ino_t ino;
	int fd;				/* O_PATH, owned */
	uint64_t nlookup;		/* protected by local.lock */
	struct local_node *next_by_id;	/* protected by local.lock */
	struct local_node *next_by_key;	/* protected by local.lock */
};

struct local {
	int root_fd;
	bool read_only;
	bool (*taken)(void *arg, uint64_t id);
	void *taken_arg;
	pthread_mutex_t lock;
	uint64_t next_id;				/* protected by lock */
	struct local_node *by_id[LOCAL_BUCKETS];	/* protected by lock */
	struct local_node *by_key[LOCAL_BUCKETS];	/* protected by lock */
};

static size_t id_bucket(uint64_t id)
{
	return (size_t)(id * 0x9E3779B97F4A7C15ull >> 52) % LOCAL_BUCKETS;
}

static size_t key_bucket(dev_t dev, ino_t ino)
{
	return id_bucket((uint64_t)ino ^ ((uint64_t)dev << 40));
}

int local_open(const char *dir, bool read_only, bool (*taken)(void *arg, uint64_t id),
	       void *arg, struct local **out)
{
	struct local *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (l->root_fd < 0) {
		int rc = -errno;

		free(l);
		return rc;
	}
	l->read_only = read_only;
	l->taken = taken;
	l->taken_arg = arg;
	l->next_id = 2;		/* 1 is FUSE's root */
	pthread_mutex_init(&l->lock, NULL);
	*out = l;
	return 0;
}

void local_close(struct local *l)
{
	if (!l)
		return;
	for (size_t b = 0; b < LOCAL_BUCKETS; b++) {
		struct local_node *n = l->by_id[b], *next;

		for (; n; n = next) {
			next = n->next_by_id;
			close(n->fd);
			free(n);
		}
	}
	close(l->root_fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

bool local_read_only(const struct local *l)
{
	return l->read_only;
}

int local_root_fd(const struct local *l)
{
	return l->root_fd;
}

/* Walk relpath from the root one name at a time (local.h (2)); with
 * make, create what is missing. */
static int walk_dir(struct local *l, const char *relpath, bool make, uid_t uid, gid_t gid)
{
	char *copy = strdup(relpath), *save = NULL;
	int fd = openat(l->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (!copy || fd < 0) {
		rc = !copy ? -ENOMEM : -errno;
		goto out;
	}
	for (char *name = strtok_r(copy, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (next < 0 && errno == ENOENT && make) {
			rc = local_mkdir(fd, name, 0755, uid, gid);
			if (rc && rc != -EEXIST)
				goto out;
			rc = 0;
			next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			/* a symlink where a folder should be is no local folder */
			rc = errno == ELOOP ? -ENOTDIR : -errno;
			goto out;
		}
		close(fd);
		fd = next;
	}
out:
	free(copy);
	if (rc && fd >= 0)
		close(fd);
	return rc ? rc : fd;
}

int local_open_dir(struct local *l, const char *relpath)
{
	return walk_dir(l, relpath, false, 0, 0);
}

int local_make_dir(struct local *l, const char *relpath, uid_t uid, gid_t gid)
{
	return walk_dir(l, relpath, true, uid, gid);
}

static struct local_node *find_id(struct local *l, uint64_t id)
{
	struct local_node *n = l->by_id[id_bucket(id)];

	while (n && n->id != id)
		n = n->next_by_id;
	return n;
}

int local_lookup(struct local *l, int dirfd, const char *name, uint64_t *id, struct stat *st)
{
	struct local_node *n, *fresh;
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	size_t kb;

	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh) {
		close(fd);
		return -ENOMEM;
	}
	kb = key_bucket(st->st_dev, st->st_ino);
	pthread_mutex_lock(&l->lock);
	for (n = l->by_key[kb]; n; n = n->next_by_key)
		if (n->dev == st->st_dev && n->ino == st->st_ino)
			break;
	if (!n) {
		n = fresh;
		fresh = NULL;
		do
			n->id = l->next_id++;
		while (n->id <= 1 || find_id(l, n->id) || (l->taken && l->taken(l->taken_arg, n->id)));
		n->dev = st->st_dev;
		n->ino = st->st_ino;
		n->fd = fd;
		fd = -1;
		n->next_by_key = l->by_key[kb];
		l->by_key[kb] = n;
		n->next_by_id = l->by_id[id_bucket(n->id)];
		l->by_id[id_bucket(n->id)] = n;
	}
	n->nlookup++;
	*id = n->id;
	pthread_mutex_unlock(&l->lock);
	free(fresh);
	if (fd >= 0)
		close(fd);
	return 0;
}

int local_node_fd(struct local *l, uint64_t id)
{
	struct local_node *n;
	int fd;

	pthread_mutex_lock(&l->lock);
	n = find_id(l, id);
	fd = n ? n->fd : -1;
	pthread_mutex_unlock(&l->lock);
	return fd;
}

static void unlink_node(struct local *l, struct local_node *n)
{
	struct local_node **p = &l->by_id[id_bucket(n->id)];

	while (*p != n)
		p = &(*p)->next_by_id;
	*p = n->next_by_id;
	p = &l->by_key[key_bucket(n->dev, n->ino)];
	while (*p != n)
		p = &(*p)->next_by_key;
	*p = n->next_by_key;
}

void local_forget(struct local *l, uint64_t id, uint64_t nlookup)
{
	struct local_node *n;

	pthread_mutex_lock(&l->lock);
	n = find_id(l, id);
	if (n && n->nlookup > nlookup) {
		n->nlookup -= nlookup;
		n = NULL;
	} else if (n) {
		unlink_node(l, n);
	}
	pthread_mutex_unlock(&l->lock);
	if (n) {
		close(n->fd);
		free(n);
	}
}

void local_fd_path(int node_fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", node_fd);
}

int local_reopen(int node_fd, int flags)
{
	char path[64];
	int fd;

	local_fd_path(node_fd, path, sizeof(path));
	fd = open(path, (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The group a new file in dirfd gets: the folder's when it is setgid,
 * as the kernel would do for the caller itself. */
static gid_t new_gid(int dirfd, gid_t gid)
{
	struct stat st;

	if (fstat(dirfd, &st) == 0 && (st.st_mode & S_ISGID))
		return st.st_gid;
	return gid;
}

/* Give name in dirfd (or fd itself, when name is "") to uid/gid. A daemon
 * that is not root cannot, and needs not: only its own user reaches its
 * mount unless allow_other, and then new files stay its user's. */
static int give(int fd, const char *name, uid_t uid, gid_t gid, int dirfd)
{
	if (geteuid() != 0)
		return 0;
	return fchownat(fd, name, uid, new_gid(dirfd, gid),
			AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) == 0 ? 0 : -errno;
}

int local_create(int dirfd, const char *name, int flags, mode_t mode, uid_t uid, gid_t gid,
		 int *out)
{
	int rc, fd = openat(dirfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

	if (fd < 0 && errno == EEXIST && !(flags & O_EXCL)) {
		/* made meanwhile, from outside: open it as open(2) would */
		fd = openat(dirfd, name, (flags & ~O_CREAT) | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		*out = fd;
		return 0;
	}
	if (fd < 0)
		return -errno;
	rc = give(fd, "", uid, gid, dirfd);
	if (rc) {
		close(fd);
		unlinkat(dirfd, name, 0);
		return rc;
	}
	*out = fd;
	return 0;
}

int local_mkdir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid)
{
	int rc;

	if (mkdirat(dirfd, name, mode) != 0)
		return -errno;
	rc = give(dirfd, name, uid, gid, dirfd);
	if (rc) {
		unlinkat(dirfd, name, AT_REMOVEDIR);
		return rc;
	}
	return 0;
}

int local_symlink(const char *target, int dirfd, const char *name, uid_t uid, gid_t gid)
{
	int rc;

	if (symlinkat(target, dirfd, name) != 0)
		return -errno;
	rc = give(dirfd, name, uid, gid, dirfd);
	if (rc) {
		unlinkat(dirfd, name, 0);
		return rc;
	}
	return 0;
}
