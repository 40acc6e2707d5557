/*
 * powerloss.c: an LD_PRELOAD shim that journals every change to chosen
 * files that is not yet durable, so that a test can model a power loss
 * after the process is killed (tests/integration/test_powerloss.py).
 *
 *   POWERLOSS_JOURNAL=/path      the journal, appended to (required)
 *   POWERLOSS_MATCH=/a/:/b/c     files whose path starts with one of these
 *                                ':'-separated prefixes
 *
 * Before a change reaches a matching file, one record goes to the
 * journal with the bytes it replaces (an undo record) and the bytes it
 * writes, so the journal is complete even when the process dies between
 * the two. A sync of a file makes its earlier records durable. Records,
 * each one write(2) on an O_APPEND descriptor (never seen half-written):
 *
 *   struct rec, then path (path_len bytes), then old (old_len bytes:
 *   what [off, off + old_len) held, the part of the range below the old
 *   size), then new (new_len bytes: what was written there)
 *
 *   'W' write of new_len bytes at off         old: the bytes it replaced
 *   'P' hole punched over [off, off + len)    old: the bytes it replaced
 *   'T' size set to off                       old: the bytes cut off
 *   'S' fsync/fdatasync: path's records before the off-th record of the
 *       journal (counted from 0) are durable: those appended before the
 *       sync began
 *   'U' path unlinked: its earlier records are moot
 *
 * Every record carries the file's size before it (old_size). Replaying
 * the journal: undo every non-durable record newest first (old bytes
 * back, size back to old_size), then redo the ones a power loss keeps,
 * oldest first. Calls covered: write, pwrite, pwrite64, pwritev,
 * ftruncate, ftruncate64, fallocate (punching), fsync, fdatasync, unlink.
 * Not modelled: writes through a shared mapping (SQLite's -shm, which it
 * rebuilds after a crash), and names (a file created, renamed or unlinked
 * stays so).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

struct rec {
	char kind;
	char pad[3];
	uint32_t path_len;
	uint64_t off;
	uint64_t len;		/* 'W' and 'P': the range's length */
	uint64_t old_size;
	uint64_t old_len;
	uint64_t new_len;
};

/* One record at a time: its old bytes must be read before another
 * thread's change to the same range lands. */
static pthread_mutex_t journal_lock = PTHREAD_MUTEX_INITIALIZER;
static int journal_fd = -1;
static uint64_t records;	/* appended so far; protected by journal_lock */

#define REAL(name, ret, ...) \
	static ret (*real_##name)(__VA_ARGS__); \
	if (!real_##name) \
		real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static bool matches(const char *path)
{
	const char *m = getenv("POWERLOSS_MATCH");

	while (m && *m) {
		size_t n = strcspn(m, ":");

		if (n && strncmp(path, m, n) == 0)
			return true;
		m += n + (m[n] == ':');
	}
	return false;
}

/* The matching path fd names into path, or false. */
static bool fd_path(int fd, char *path, size_t size)
{
	char link[64];
	ssize_t n;

	if (fd < 0 || !getenv("POWERLOSS_JOURNAL"))
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, size - 1);
	if (n <= 0)
		return false;
	path[n] = '\0';
	/* A file unlinked while open is gone at a power loss: not modelled. */
	if (n > 10 && strcmp(path + n - 10, " (deleted)") == 0)
		return false;
	return matches(path);
}

static void write_all(int fd, const void *buf, size_t len)
{
	REAL(write, ssize_t, int, const void *, size_t);
	const char *p = buf;

	while (len > 0) {
		ssize_t n = real_write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			abort();	/* a journal with a hole would model the wrong disk */
		p += n;
		len -= (size_t)n;
	}
}

/* Append a record (journal_lock held). A record that cannot be journaled
 * stops the process: a silent gap would make the test pass on nothing. */
static void append(struct rec *r, const char *path, const void *old, const void *new)
{
	size_t total = sizeof(*r) + r->path_len + r->old_len + r->new_len;
	char *buf;

	if (journal_fd < 0) {
		journal_fd = open(getenv("POWERLOSS_JOURNAL"),
				  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (journal_fd < 0)
			abort();
	}
	buf = malloc(total);
	if (!buf)
		abort();
	memcpy(buf, r, sizeof(*r));
	memcpy(buf + sizeof(*r), path, r->path_len);
	if (r->old_len)
		memcpy(buf + sizeof(*r) + r->path_len, old, r->old_len);
	if (r->new_len)
		memcpy(buf + sizeof(*r) + r->path_len + r->old_len, new, r->new_len);
	write_all(journal_fd, buf, total);
	free(buf);
	records++;
}

/* What [off, off + len) of the file holds now, below its size: into
 * *old (malloc'd) and r->old_len; r->old_size set. */
static void read_old(int fd, const char *path, struct rec *r, uint64_t off, uint64_t len,
		     char **old)
{
	struct stat st;
	uint64_t have = 0;
	int rfd;

	*old = NULL;
	r->old_len = 0;
	if (fstat(fd, &st) != 0)
		abort();
	r->old_size = (uint64_t)st.st_size;
	if (off < r->old_size)
		have = r->old_size - off < len ? r->old_size - off : len;
	if (!have)
		return;
	*old = malloc(have);
	/* The descriptor may be write-only: read through the path. */
	rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (!*old || rfd < 0)
		abort();
	for (uint64_t got = 0; got < have;) {
		ssize_t n = pread(rfd, *old + got, have - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			have = got;	/* shorter than fstat said: a race we lose */
			break;
		}
		got += (uint64_t)n;
	}
	close(rfd);
	r->old_len = have;
}

/* Journal a change of [off, off + len) (kind 'W', 'P' or 'T'); returns
 * with journal_lock held when fd matched (then *held is true). */
static void journal_change(int fd, char kind, uint64_t off, uint64_t len, const void *new,
			   bool *held)
{
	char path[4096], *old;
	struct rec r = { .kind = kind, .off = off, .len = len };
	int saved = errno;

	*held = false;
	if (!fd_path(fd, path, sizeof(path))) {
		errno = saved;
		return;
	}
	pthread_mutex_lock(&journal_lock);
	*held = true;
	r.path_len = (uint32_t)strlen(path);
	if (kind == 'T') {
		/* Old bytes of a shrink: those past the new size. */
		struct stat st;

		if (fstat(fd, &st) != 0)
			abort();
		len = (uint64_t)st.st_size > off ? (uint64_t)st.st_size - off : 0;
	}
	read_old(fd, path, &r, off, len, &old);
	r.new_len = kind == 'W' ? len : 0;
	append(&r, path, old, new);
	free(old);
	errno = saved;
}

static void journal_mark(int fd, const char *pathname, char kind, uint64_t before)
{
	char path[4096];
	struct rec r = { .kind = kind, .off = before };
	int saved = errno;

	if (pathname) {
		if (!getenv("POWERLOSS_JOURNAL") || !matches(pathname)) {
			errno = saved;
			return;
		}
		snprintf(path, sizeof(path), "%s", pathname);
	} else if (!fd_path(fd, path, sizeof(path))) {
		errno = saved;
		return;
	}
	r.path_len = (uint32_t)strlen(path);
	pthread_mutex_lock(&journal_lock);
	append(&r, path, NULL, NULL);
	pthread_mutex_unlock(&journal_lock);
	errno = saved;
}

static void done(bool held)
{
	if (held)
		pthread_mutex_unlock(&journal_lock);
}

/* A plain write lands at the descriptor's offset (or the end with
 * O_APPEND). */
static uint64_t write_offset(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	struct stat st;

	if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0)
		return (uint64_t)st.st_size;
	return (uint64_t)lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(write, ssize_t, int, const void *, size_t);
	char path[4096];
	bool held = false;
	ssize_t n;

	if (fd != journal_fd && fd_path(fd, path, sizeof(path)))
		journal_change(fd, 'W', write_offset(fd), len, buf, &held);
	n = real_write(fd, buf, len);
	done(held);
	return n;
}

/* A positional write or a size change through the libc call real. */
static ssize_t journaled_pwrite(ssize_t (*real)(int, const void *, size_t, off_t), int fd,
				const void *buf, size_t len, off_t off)
{
	bool held;
	ssize_t n;

	journal_change(fd, 'W', (uint64_t)off, len, buf, &held);
	n = real(fd, buf, len, off);
	done(held);
	return n;
}

static int journaled_truncate(int (*real)(int, off_t), int fd, off_t len)
{
	bool held;
	int rc;

	journal_change(fd, 'T', (uint64_t)len, 0, NULL, &held);
	rc = real(fd, len);
	done(held);
	return rc;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
	return journaled_pwrite(real_pwrite, fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
	return journaled_pwrite(real_pwrite64, fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t);
	char path[4096], *flat = NULL;
	size_t total = 0, at = 0;
	bool held = false;
	ssize_t n;

	if (fd_path(fd, path, sizeof(path))) {
		for (int i = 0; i < cnt; i++)
			total += iov[i].iov_len;
		flat = malloc(total ? total : 1);
		if (!flat)
			abort();
		for (int i = 0; i < cnt; i++) {
			memcpy(flat + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		journal_change(fd, 'W', (uint64_t)off, total, flat, &held);
	}
	n = real_pwritev(fd, iov, cnt, off);
	done(held);
	free(flat);
	return n;
}

int ftruncate(int fd, off_t len)
{
	REAL(ftruncate, int, int, off_t);
	return journaled_truncate(real_ftruncate, fd, len);
}

int ftruncate64(int fd, off_t len)
{
	REAL(ftruncate64, int, int, off_t);
	return journaled_truncate(real_ftruncate64, fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate, int, int, int, off_t, off_t);
	bool held = false;
	int rc;

	/* Only a punched hole changes bytes (modelfs allocates no other way). */
	if (mode & FALLOC_FL_PUNCH_HOLE)
		journal_change(fd, 'P', (uint64_t)off, (uint64_t)len, NULL, &held);
	rc = real_fallocate(fd, mode, off, len);
	done(held);
	return rc;
}

static uint64_t records_now(void)
{
	uint64_t n;

	pthread_mutex_lock(&journal_lock);
	n = records;
	pthread_mutex_unlock(&journal_lock);
	return n;
}

/* A sync through the libc call real, marked after it returns (a process
 * killed inside it has made nothing durable), for the records appended
 * before it began (a write racing with it may miss it). */
static int journaled_sync(int (*real)(int), int fd)
{
	uint64_t before = records_now();
	int rc = real(fd);

	if (rc == 0)
		journal_mark(fd, NULL, 'S', before);
	return rc;
}

int fsync(int fd)
{
	REAL(fsync, int, int);
	return journaled_sync(real_fsync, fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync, int, int);
	return journaled_sync(real_fdatasync, fd);
}

int unlink(const char *path)
{
	REAL(unlink, int, const char *);
	int rc = real_unlink(path);

	if (rc == 0)
		journal_mark(-1, path, 'U', 0);
	return rc;
}
