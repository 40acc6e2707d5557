/*
 * readfile.c: a bounded whole-file read (readfile.h). Sized by fstat()
 * but read to EOF, since a pipe or a /proc file says 0 and a file may
 * grow or shrink while it is read.
 */
#include "modelfs/readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int read_small_file(const char *path, size_t max, unsigned flags, char **text, size_t *len)
{
	/* Non-blocking open: a FIFO must not hang before it is refused. */
	int fd = open(path, O_RDONLY | O_CLOEXEC |
			    (flags & READFILE_REGULAR_ONLY ? O_NONBLOCK : 0));
	struct stat st;
	char *buf = NULL;
	size_t used = 0, cap;
	int rc = 0;

	*text = NULL;
	*len = 0;
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out;
	}
	if ((flags & READFILE_REGULAR_ONLY) && !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto out;
	}
	/* Room for one byte past the size (a file that grew) and the NUL. */
	cap = (size_t)st.st_size + 2;
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (used + 1 == cap) {
			char *grown;

			if (used > max) {
				rc = -EFBIG;
				goto out;
			}
			cap = cap > (max + 2) / 2 ? max + 2 : cap * 2;
			grown = realloc(buf, cap);
			if (!grown) {
				rc = -ENOMEM;
				goto out;
			}
			buf = grown;
		}
		n = read(fd, buf + used, cap - used - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > max) {
		rc = -EFBIG;
		goto out;
	}
	buf[used] = '\0';
	*text = buf;
	*len = used;
	buf = NULL;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}
