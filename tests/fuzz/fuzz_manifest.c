/*
 * fuzz_manifest.c: manifest_parse() on any bytes (manifest.h).
 *
 * Checks, besides no crash, leak or undefined behaviour: an error names
 * the place ("fuzz.yaml:LINE:COL: ...", (3)); a manifest that loads has
 * a safe path and a lowercase sha256 for every artifact (1); and what
 * manifest_write() gives parses again and writes to the very same bytes.
 */
#include "fuzz.h"
#include "modelfs/manifest.h"

static bool lower_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static char *written(struct manifest *m, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	FUZZ_CHECK(f);
	FUZZ_CHECK(manifest_write(m, f) == 0);
	fclose(f);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest_error err = { { 0 } };
	struct manifest *m = NULL, *again = NULL;
	char *first, *second;
	size_t n1, n2;

	if (manifest_parse((const char *)data, size, "fuzz.yaml", &m, &err) != 0) {
		FUZZ_CHECK(!m);
		FUZZ_CHECK(strncmp(err.msg, "fuzz.yaml:", 10) == 0);
		return 0;
	}
	FUZZ_CHECK(m->n_artifacts > 0);
	for (size_t i = 0; i < m->n_artifacts; i++) {
		const char *p = m->artifacts[i].path;

		FUZZ_CHECK(p[0] && p[0] != '/' && !strstr(p, "//"));
		FUZZ_CHECK(strcmp(p, "..") && strncmp(p, "../", 3) && !strstr(p, "/../"));
		FUZZ_CHECK(lower_hex64(m->artifacts[i].sha256));
	}
	first = written(m, &n1);
	FUZZ_CHECK(manifest_parse(first, n1, "fuzz.yaml", &again, &err) == 0);
	second = written(again, &n2);
	FUZZ_CHECK(n1 == n2 && memcmp(first, second, n1) == 0);
	free(first);
	free(second);
	manifest_free(again);
	manifest_free(m);
	return 0;
}
