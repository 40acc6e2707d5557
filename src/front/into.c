/*
 * into.c: prefetch --into DIR, the models without FUSE. The engine
 * fetches each file into a cache as it always does (parallel, verified,
 * resumable); a finished file is then placed at its layout path under DIR:
 * its data file is linked there and leaves the cache (cache_file_export),
 * so the bytes are on disk once, and a model larger than the cache's
 * limit still fits. Until it is complete, verified and fsynced a file
 * exists only under a temporary name, so a reader (or a crash) never
 * finds part of a model under its real name.
 *
 * A placed file carries user.modelfs.sha256 and the source's mtime; a
 * file already there with its size and that hash (or, where the
 * filesystem has no xattrs, that mtime) is not fetched again.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/engine.h"

#define XATTR_SHA256 "user.modelfs.sha256"
#define EXPORT_BUSY_TRIES 250
#define EXPORT_BUSY_WAIT_US 20000	/* 5 s in all */

/* mkdir -p of path's parent folders; 0 or -errno. */
static int make_parents(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* DIR/<path> into out, and the temporary name beside it into tmp. */
static int place_names(const char *dir, struct engine_file *f, char *out, char *tmp)
{
	const char *path = engine_file_path(f), *slash = strrchr(path, '/');
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, path);
	int m = snprintf(tmp, PATH_MAX, "%s/%.*s.%s.modelfs-part", dir,
			 slash ? (int)(slash - path + 1) : 0, path, slash ? slash + 1 : path);

	return n >= PATH_MAX || m >= PATH_MAX ? -ENAMETOOLONG : 0;
}

bool into_has(const char *dir, struct engine_file *f)
{
	char path[PATH_MAX], tmp[PATH_MAX], want[65] = "", got[65];
	char *sha = engine_file_sha256(f);
	struct stat st;
	ssize_t n;

	if (sha)
		snprintf(want, sizeof(want), "%s", sha);
	free(sha);
	if (place_names(dir, f, path, tmp) != 0 || stat(path, &st) != 0 ||
	    !S_ISREG(st.st_mode) || (uint64_t)st.st_size != engine_file_size(f))
		return false;
	n = getxattr(path, XATTR_SHA256, got, sizeof(got) - 1);
	if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP))
		return st.st_mtime == engine_file_mtime(f);
	if (n != 64)
		return false;
	got[n] = '\0';
	/* Without a hash to hold it to: the one this program wrote there. */
	return !want[0] || strcmp(got, want) == 0;
}

/* The rename that placed path survives a crash once its folder is synced. */
static int sync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd, rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

int into_place(const char *dir, struct engine_file *f, bool keep_cache, char *err,
	       size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX], *sha = NULL;
	struct cache_file *cf = engine_file_cache(f);
	struct timespec times[2];
	int rc;

	rc = place_names(dir, f, path, tmp);
	if (rc == 0)
		rc = make_parents(path);
	if (rc) {
		snprintf(err, errlen, "cannot make its folder in %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (!cf) {
		snprintf(err, errlen, "not in the cache");
		return -ENODATA;
	}
	/* A temporary name left by an interrupted run is ours to replace. */
	if (unlink(tmp) != 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot remove %s: %s", tmp, strerror(errno));
		return rc;
	}
	/* Busy: a fetcher still holds a block it just committed (it lets go
	 * once its readers have the bytes), or a reader copies one; both end
	 * in moments. */
	for (int tries = 0; (rc = cache_file_export(cf, tmp, keep_cache)) == -EBUSY &&
	     tries < EXPORT_BUSY_TRIES; tries++)
		usleep(EXPORT_BUSY_WAIT_US);
	if (rc) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
		return rc;
	}
	sha = engine_file_sha256(f);
	if (sha && setxattr(tmp, XATTR_SHA256, sha, strlen(sha), 0) != 0 &&
	    errno != ENOTSUP && errno != EOPNOTSUPP)
		rc = -errno;
	free(sha);
	times[0].tv_nsec = UTIME_OMIT;
	times[1] = (struct timespec){ .tv_sec = engine_file_mtime(f) };
	if (rc == 0 && utimensat(AT_FDCWD, tmp, times, 0) != 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	else if (rc == 0)
		rc = sync_parent(path);
	if (rc) {
		snprintf(err, errlen, "cannot put it at %s: %s", path, strerror(-rc));
		unlink(tmp);
		return rc;
	}
	return 0;
}
