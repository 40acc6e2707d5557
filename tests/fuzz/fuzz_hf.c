/*
 * fuzz_hf.c: what the Hugging Face Hub answers, parsed apart from the
 * requests (src/sources/source_i.h): a page of the repo tree listing
 * (JSON), and the Link header that names the next page.
 *
 * The input is "LINK\nJSON" (no newline: all JSON). Checks: every listed
 * path is safe in the mount (relative, no "", "." or ".." part, no NUL
 * inside), sizes are -1 or more, hashes are lowercase; the next page's
 * URL is text found between '<' and '>' in the header.
 */
#include <errno.h>

#include "fuzz.h"
#include "src/sources/source_i.h"

static void check_lower(const char *s)
{
	for (; s && *s; s++)
		FUZZ_CHECK(!(*s >= 'A' && *s <= 'Z'));
}

static void check_path(const char *p)
{
	size_t len = strlen(p);

	FUZZ_CHECK(len > 0 && p[0] != '/' && p[len - 1] != '/');
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");

		FUZZ_CHECK(n > 0 && !(n == 1 && s[0] == '.') &&
			   !(n == 2 && s[0] == '.' && s[1] == '.'));
		s += n + (s[n] == '/');
	}
}

static void check_tree(const char *json, size_t len)
{
	struct hf_tree_file *t = NULL;
	size_t n = 0, cap = 0;
	int rc;

	/* Twice, as two pages append: the second must not disturb the first. */
	for (int page = 0; page < 2; page++) {
		size_t before = n;

		rc = source_hf_tree_page(json, len, &t, &n, &cap);
		FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -ENOMEM);
		FUZZ_CHECK(n <= cap && n >= before);
		if (rc == -EPROTO)
			FUZZ_CHECK(n == before);
		FUZZ_CHECK(page == 0 || rc != 0 || n == 2 * before);
	}
	for (size_t i = 0; i < n; i++) {
		if (!t[i].path)
			continue;	/* only after -ENOMEM */
		check_path(t[i].path);
		FUZZ_CHECK(t[i].size >= -1);
		check_lower(t[i].oid);
		check_lower(t[i].lfs_oid);
	}
	source_hf_tree_free(t, n);
}

static void check_link(const char *v)
{
	char *next = source_hf_link_next(v), *quoted;

	if (!next)
		return;
	FUZZ_CHECK(!strchr(next, '>'));
	quoted = malloc(strlen(next) + 3);
	if (quoted) {
		sprintf(quoted, "<%s>", next);
		FUZZ_CHECK(strstr(v, quoted));
	}
	free(quoted);
	free(next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	char *link = nl ? fuzz_cstr(data, (size_t)(nl - data)) : NULL;
	const char *json = nl ? (const char *)nl + 1 : (const char *)data;
	size_t jlen = nl ? size - (size_t)(nl - data) - 1 : size;

	if (link)
		check_link(link);
	free(link);
	check_tree(json, jlen);
	return 0;
}
