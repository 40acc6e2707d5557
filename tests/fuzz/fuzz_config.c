/*
 * fuzz_config.c: config_parse() on any bytes (config.h), the TOML parser
 * underneath included.
 *
 * Checks: a config that loads is complete (1): every entry has its
 * category, name, id and folder, names are file names (1 to 255 bytes,
 * no '/', not "." or ".."), values hold no control character after
 * expansion (modelfs.toml(5)), sha256 is 64 lowercase hex, numbers are
 * in their ranges, and no two entries share a path in the mount; a
 * config that does not load says why (2).
 */
#include <errno.h>
#include <limits.h>

#include "fuzz.h"
#include "modelfs/config.h"

static void check_name(const char *s)
{
	size_t n;

	FUZZ_CHECK(s);
	n = strlen(s);
	FUZZ_CHECK(n >= 1 && n <= 255 && !strchr(s, '/'));
	FUZZ_CHECK(strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
}

/* No C0 control and no DEL in a value: a newline in a URL or a name
 * would split a header, a log line or a listing. */
static void check_value(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
		FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
}

static void check_sha256(const char *s)
{
	if (!s)
		return;
	FUZZ_CHECK(strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64);
}

static void check_entry(const struct config_entry *e)
{
	FUZZ_CHECK(e->category && e->name && e->id && e->dir);
	check_name(e->category);
	check_name(e->name);
	if (e->filename)
		check_name(e->filename);
	check_value(e->filename);
	check_value(e->url);
	check_value(e->repo);
	check_value(e->file);
	check_value(e->revision);
	check_value(e->auth_header);
	for (size_t i = 0; i < e->n_headers; i++) {
		check_value(e->headers[i].name);
		check_value(e->headers[i].value);
	}
	check_sha256(e->sha256);
	FUZZ_CHECK(e->size >= -1);
	if (e->source == CONFIG_SOURCE_URL || e->source == CONFIG_SOURCE_S3)
		FUZZ_CHECK(e->url);
	if (e->source == CONFIG_SOURCE_HUGGINGFACE)
		FUZZ_CHECK(e->repo);
}

/* Two entries with a file name never share a path (config.h (2)). */
static bool same_path(const struct config_entry *a, const struct config_entry *b)
{
	return a->filename && b->filename && strcmp(a->dir, b->dir) == 0 &&
	       strcmp(a->filename, b->filename) == 0;
}

static void check_config(const struct config *c)
{
	FUZZ_CHECK(c->block_size >= (64u << 10) && c->block_size <= (256u << 20));
	FUZZ_CHECK((c->block_size & (c->block_size - 1)) == 0);
	FUZZ_CHECK(c->connections >= 1 && c->connections <= 64);
	FUZZ_CHECK(c->layout);
	FUZZ_CHECK(c->dirs);
	for (size_t i = 0; i < c->n_entries; i++) {
		check_entry(&c->entries[i]);
		for (size_t k = 0; k < i && k < 64; k++)
			FUZZ_CHECK(!same_path(&c->entries[k], &c->entries[i]));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	struct config_error err;
	int rc;

	memset(&err, 0x55, sizeof(err));
	rc = config_parse((const char *)data, size, "fuzz.toml", &cfg, &err);
	if (rc == 0) {
		FUZZ_CHECK(cfg);
		check_config(cfg);
		config_free(cfg);
	} else {
		FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
		FUZZ_CHECK(!cfg);
		FUZZ_CHECK(memchr(err.msg, '\0', sizeof(err.msg)) && err.msg[0]);
	}
	return 0;
}
