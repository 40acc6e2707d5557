/*
 * config_fetch.c: configs by URL. One GET (redirects followed, a body of
 * at most 16 MiB, never an HTML page), written next to the cache so an
 * offline remount finds it. The URL may carry a token in its query: it
 * is never logged, and the file name is a hash of it.
 */
#include "modelfs/config_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/hexhash.h"
#include "modelfs/http.h"
#include "modelfs/log.h"

#define CONFIG_MAX (16u << 20)

bool config_is_url(const char *arg)
{
	return arg && (strncasecmp(arg, "http://", 7) == 0 || strncasecmp(arg, "https://", 8) == 0);
}

/* Write data to path through a temporary file and rename. */
static int write_atomic(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX + 128];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0)
		rc = -errno ? -errno : -EIO;
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

static int download(const char *url, struct http_body *b, char *why, size_t whylen)
{
	struct http_client *c = NULL;
	struct http_meta m;
	struct http_request rq = { .url = url, .follow_redirects = true, .timeout_sec = 60 };
	int rc = http_client_new(&c);

	if (rc)
		return rc;
	rc = http_get(c, &rq, http_body_sink, b, &m);
	if (rc == 0 && m.status != 200) {
		rc = -EIO;
		snprintf(why, whylen, "HTTP %ld", m.status);
	} else if (rc == 0 && m.content_type && strncasecmp(m.content_type, "text/html", 9) == 0) {
		rc = -EPROTO;
		snprintf(why, whylen, "the URL returns an HTML page, not a TOML config");
	} else if (rc) {
		snprintf(why, whylen, "%s", m.error_text ? m.error_text : strerror(-rc));
	}
	http_meta_clear(&m);
	http_client_free(c);
	return rc;
}

int config_fetch(const char *url, const char *cache_dir, char **path)
{
	char dir[PATH_MAX], file[PATH_MAX + 48], hash[65], why[256] = "", shown[300];
	struct http_body b = { .max = CONFIG_MAX };
	struct stat st;
	int rc;

	/* The same URL without its query is the same config, whatever token it carries. */
	hexhash_sha256(url, strcspn(url, "?#"), hash);
	snprintf(dir, sizeof(dir), "%s/configs", cache_dir);
	snprintf(file, sizeof(file), "%s/%.32s.toml", dir, hash);
	log_redact(url, shown, sizeof(shown));
	if ((mkdir(cache_dir, 0700) && errno != EEXIST) || (mkdir(dir, 0700) && errno != EEXIST)) {
		fprintf(stderr, "modelfs: cannot create %s: %s\n", dir, strerror(errno));
		return -errno;
	}
	rc = download(url, &b, why, sizeof(why));
	if (rc == 0)
		rc = write_atomic(file, b.data ? b.data : "", b.len);
	free(b.data);
	if (rc == 0) {
		log_info("event=config_fetched url=%s bytes=%zu", shown, b.len);
	} else if (rc == -EAGAIN && stat(file, &st) == 0) {
		char when[32];
		struct tm tm;

		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&st.st_mtime, &tm));
		fprintf(stderr, "modelfs: warning: cannot fetch the config from %s (%s); using the "
			"copy fetched at %s\n", shown, why, when);
		rc = 0;
	} else {
		fprintf(stderr, "modelfs: cannot fetch the config from %s: %s\n", shown, why);
		return rc;
	}
	*path = strdup(file);
	return *path ? 0 : -ENOMEM;
}
