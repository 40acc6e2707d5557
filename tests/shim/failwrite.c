/*
 * failwrite.c: an LD_PRELOAD shim that makes writes to chosen files fail,
 * for tests of what modelfs does when its disk says ENOSPC or EIO at any
 * write point: the cache's data files, the SQLite index and its WAL.
 *
 *   FAILWRITE_MATCH=/cache/       fail only files whose path contains this
 *   FAILWRITE_ERRNO=ENOSPC|EIO    the error (default ENOSPC)
 *   FAILWRITE_EVERY=N             fail every Nth matching call (default 3)
 *   FAILWRITE_SWITCH=/path        fail only while this file exists
 *
 * Calls covered: write, pwrite, pwrite64, pwritev, fsync, fdatasync,
 * ftruncate, fallocate. A failed write writes nothing; the counter is one
 * for the process, so the failing points move with the schedule. Counts of
 * failures go to FAILWRITE_SWITCH.count when it is set, for the test to see
 * that the shim did act.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_ulong calls;

static bool matches(int fd)
{
	const char *match = getenv("FAILWRITE_MATCH"), *sw = getenv("FAILWRITE_SWITCH");
	char link[64], path[4096];
	ssize_t n;

	if (!match || !*match || (sw && access(sw, F_OK) != 0))
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return false;
	path[n] = '\0';
	return strstr(path, match) != NULL;
}

static void note_failure(void)
{
	const char *sw = getenv("FAILWRITE_SWITCH");
	char count[4200];
	FILE *f;

	if (!sw)
		return;
	/* Appended, one line per failure: never seen half-written. */
	snprintf(count, sizeof(count), "%s.count", sw);
	f = fopen(count, "a");
	if (f) {
		fprintf(f, "x\n");
		fclose(f);
	}
}

/* Whether this call on fd fails; errno set when it does. */
static bool fail_now(int fd)
{
	const char *every = getenv("FAILWRITE_EVERY"), *err = getenv("FAILWRITE_ERRNO");
	unsigned long n = every ? strtoul(every, NULL, 10) : 3;

	if (!matches(fd))
		return false;
	if (n == 0 || (atomic_fetch_add(&calls, 1) + 1) % n != 0)
		return false;
	note_failure();
	errno = err && strcmp(err, "EIO") == 0 ? EIO : ENOSPC;
	return true;
}

#define REAL(name, ret, ...) \
	static ret (*real_##name)(__VA_ARGS__); \
	if (!real_##name) \
		real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(write, ssize_t, int, const void *, size_t);
	return fail_now(fd) ? -1 : real_write(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
	return fail_now(fd) ? -1 : real_pwrite(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	REAL(pwrite64, ssize_t, int, const void *, size_t, off64_t);
	return fail_now(fd) ? -1 : real_pwrite64(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t);
	return fail_now(fd) ? -1 : real_pwritev(fd, iov, n, off);
}

int fsync(int fd)
{
	REAL(fsync, int, int);
	return fail_now(fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync, int, int);
	return fail_now(fd) ? -1 : real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
	REAL(ftruncate, int, int, off_t);
	return fail_now(fd) ? -1 : real_ftruncate(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	REAL(fallocate, int, int, int, off_t, off_t);
	return fail_now(fd) ? -1 : real_fallocate(fd, mode, off, len);
}
