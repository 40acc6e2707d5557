/*
 * secret.c: token files (secret.h). One reader for every token a file
 * holds, so that the Hub's token file and the server's access token are
 * cleaned, registered for redaction and wiped alike.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelfs/log.h"
#include "modelfs/secret.h"

char *secret_clean(const char *raw)
{
	size_t n = strlen(raw), o = 0, a = 0;
	char *t = malloc(n + 1);

	if (!t)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (raw[i] != '\r' && raw[i] != '\n')
			t[o++] = raw[i];
	t[o] = '\0';
	while (o > 0 && isspace((unsigned char)t[o - 1]))
		t[--o] = '\0';
	while (a < o && isspace((unsigned char)t[a]))
		a++;
	memmove(t, t + a, o - a + 1);
	if (!t[0]) {
		free(t);
		return NULL;
	}
	return t;
}

int secret_read_file(const char *path, char **out)
{
	char buf[SECRET_FILE_MAX + 1];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	*out = NULL;
	if (fd < 0)
		return -errno;
	n = read(fd, buf, SECRET_FILE_MAX);
	if (n < 0)
		rc = -errno;
	close(fd);
	if (rc)
		return rc;
	buf[n] = '\0';
	*out = secret_clean(buf);
	explicit_bzero(buf, sizeof(buf));
	if (!*out)
		return -ENODATA;
	log_add_secret(*out);
	return 0;
}

void secret_free(char *value)
{
	if (!value)
		return;
	explicit_bzero(value, strlen(value));
	free(value);
}
