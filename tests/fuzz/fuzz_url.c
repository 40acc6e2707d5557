/*
 * fuzz_url.c: URLs from configs and servers: http_url_origin() (http.h),
 * log_url_public() and log_redact() (log.h).
 *
 * Checks: an origin is "http(s)://host:port" in lowercase, or "" with
 * -EINVAL (also when it does not fit); a public URL has no query or
 * fragment, shows no userinfo and no registered secret; a redacted line
 * fits its buffer, terminated, and shows no secret. The first input byte
 * chooses log_redact()'s buffer size (0 included).
 */
#include <ctype.h>
#include <errno.h>

#include "fuzz.h"
#include "modelfs/http.h"
#include "modelfs/log.h"

#define SECRET "S3cr3tCanary"

static void check_origin(const char *url)
{
	char out[320], tiny[12];
	int rc = http_url_origin(url, out, sizeof(out));
	const char *host;

	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(out[0] == '\0');
		return;
	}
	FUZZ_CHECK(strncmp(out, "http://", 7) == 0 || strncmp(out, "https://", 8) == 0);
	host = strstr(out, "://") + 3;
	FUZZ_CHECK(host[0] && strrchr(host, ':') && isdigit((unsigned char)strrchr(host, ':')[1]));
	FUZZ_CHECK(!strchr(host, '/') && !strchr(host, '?') && !strchr(host, '@'));
	for (const char *p = out; *p; p++)
		FUZZ_CHECK(!isupper((unsigned char)*p));
	rc = http_url_origin(url, tiny, sizeof(tiny));
	FUZZ_CHECK(rc == 0 ? strcmp(tiny, out) == 0 : tiny[0] == '\0');
}

/* The userinfo of url ("user:pass" of "http://user:pass@h/"), as
 * log_url_public() must hide it: its start and length, or 0. Only for an
 * authority of characters a URL may hold (RFC 3986: no space, control
 * or '"'), so that it is a URL's; "'" is one of them. */
static size_t userinfo(const char *url, size_t *at)
{
	const char *sep = strstr(url, "://"), *auth, *last = NULL;
	size_t end = strcspn(url, "?#");

	if (!sep || (size_t)(sep - url) >= end)
		return 0;
	auth = sep + 3;
	for (const char *p = auth; *p && !strchr("/?#", *p); p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"')
			return 0;
		if (*p == '@')
			last = p;
	}
	*at = (size_t)(auth - url);
	return last ? (size_t)(last - auth) : 0;
}

static void check_public(const char *url)
{
	char *pub = log_url_public(url);
	size_t at = 0, n;

	if (!pub)
		return;
	FUZZ_CHECK(!strchr(pub, '?') && !strchr(pub, '#'));
	FUZZ_CHECK(!strstr(pub, SECRET));
	n = userinfo(url, &at);
	if (n > 0 && !strstr(url, SECRET))
		FUZZ_CHECK(strncmp(pub, url, at) == 0 && strncmp(pub + at, "***@", 4) == 0);
	free(pub);
}

static void check_redact(const char *line, size_t outlen)
{
	char *out = malloc(outlen ? outlen : 1);

	if (!out)
		return;
	log_redact(line, out, outlen);
	if (outlen) {
		FUZZ_CHECK(memchr(out, '\0', outlen) != NULL);
		FUZZ_CHECK(!strstr(out, SECRET));
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	char *s;

	if (!once) {
		log_add_secret(SECRET);
		once = true;
	}
	if (size == 0)
		return 0;
	s = fuzz_cstr(data + 1, size - 1);
	if (!s)
		return 0;
	check_origin(s);
	check_public(s);
	check_redact(s, data[0] == 0xFF ? 4096 : data[0]);
	free(s);
	return 0;
}
