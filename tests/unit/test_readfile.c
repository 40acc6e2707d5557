/*
 * test_readfile.c: read_small_file() reads what is there, NUL-terminated,
 * up to its bound and not a byte past it, refuses folders, and, asked for
 * regular files only, refuses a FIFO at once instead of waiting on it.
 */
#include "modelfs/readfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char dir[] = "/tmp/modelfs-readfile-XXXXXX";

static const char *path_of(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void put(const char *name, size_t n)
{
	FILE *f = fopen(path_of(name), "wb");

	for (size_t i = 0; f && i < n; i++)
		fputc('a' + (int)(i % 26), f);
	CHECK(f && fclose(f) == 0);
}

/* rc, and when 0 the length and the NUL after the bytes. */
static int read_back(const char *name, size_t max, unsigned flags, size_t *len)
{
	char *text = (char *)"untouched";
	int rc = read_small_file(path_of(name), max, flags, &text, len);

	if (rc == 0) {
		CHECK(text != NULL && text[*len] == '\0');
		CHECK(*len == 0 || text[*len - 1] == 'a' + (int)((*len - 1) % 26));
	} else {
		CHECK(text == NULL);
	}
	free(text);
	return rc;
}

int main(void)
{
	size_t len = 99;

	if (!mkdtemp(dir))
		return 1;
	put("empty", 0);
	put("small", 100);
	put("big", 300000);
	CHECK(read_back("empty", 10, 0, &len) == 0 && len == 0);
	CHECK(read_back("small", 100, 0, &len) == 0 && len == 100);
	CHECK(read_back("small", 99, 0, &len) == -EFBIG);
	CHECK(read_back("big", 300000, READFILE_REGULAR_ONLY, &len) == 0 && len == 300000);
	CHECK(read_back("big", 299999, 0, &len) == -EFBIG);
	CHECK(read_back("missing", 10, 0, &len) == -ENOENT);
	CHECK(mkdir(path_of("folder"), 0700) == 0);
	CHECK(read_back("folder", 10, 0, &len) == -EISDIR);
	CHECK(mkfifo(path_of("fifo"), 0600) == 0);
	CHECK(read_back("fifo", 10, READFILE_REGULAR_ONLY, &len) == -EINVAL);

	/* A pipe says size 0: read to its end all the same, and bounded. */
	{
		int fds[2];
		char name[64];

		CHECK(pipe(fds) == 0);
		CHECK(write(fds[1], "abcdefghij", 10) == 10);
		close(fds[1]);
		snprintf(name, sizeof(name), "/proc/self/fd/%d", fds[0]);
		{
			char *text = NULL;

			CHECK(read_small_file(name, 10, 0, &text, &len) == 0 && len == 10);
			CHECK(text && strcmp(text, "abcdefghij") == 0);
			free(text);
		}
		close(fds[0]);
		CHECK(pipe(fds) == 0);
		CHECK(write(fds[1], "abcdefghijk", 11) == 11);
		close(fds[1]);
		snprintf(name, sizeof(name), "/proc/self/fd/%d", fds[0]);
		{
			char *text = NULL;

			CHECK(read_small_file(name, 10, 0, &text, &len) == -EFBIG && !text);
		}
		close(fds[0]);
	}
	/* A /proc file also says 0 and is longer. */
	{
		char *text = NULL;

		CHECK(read_small_file("/proc/self/status", 1 << 20, 0, &text, &len) == 0 && len > 100);
		CHECK(text && strncmp(text, "Name:", 5) == 0);
		free(text);
	}
	unlink(path_of("empty"));
	unlink(path_of("small"));
	unlink(path_of("big"));
	unlink(path_of("fifo"));
	rmdir(path_of("folder"));
	rmdir(dir);
	return check_summary();
}
