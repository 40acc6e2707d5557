/*
 * fuzz_lock.c: lock_parse() on any bytes (lock.h).
 *
 * Checks, besides no crash, leak or undefined behaviour: an error names
 * the place ("fuzz.lock:LINE:COL: ...", (3)); a lock that loads has a
 * size and a hash for every file, the hash in its form (1); and writing
 * it is deterministic (2): what lock_write() gives parses again and
 * writes to the very same bytes.
 */
#include <errno.h>

#include "fuzz.h"
#include "modelfs/lock.h"

static bool hex_of(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* lock_write() into memory: the bytes (caller frees), their length. */
static char *written(struct lock *l, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	FUZZ_CHECK(f);
	FUZZ_CHECK(lock_write(l, f) == 0);
	fclose(f);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lock_error err = { { 0 } };
	struct lock *l = NULL, *again = NULL;
	char *first, *second;
	size_t n1, n2;

	if (lock_parse((const char *)data, size, "fuzz.lock", &l, &err) != 0) {
		FUZZ_CHECK(!l);
		FUZZ_CHECK(strncmp(err.msg, "fuzz.lock:", 10) == 0);
		return 0;
	}
	for (size_t i = 0; i < l->n_entries; i++)
		for (size_t k = 0; k < l->entries[i].n_files; k++) {
			const struct lock_file *f = &l->entries[i].files[k];

			FUZZ_CHECK(f->size >= 0);
			FUZZ_CHECK(hex_of(f->sha256, 64) || hex_of(f->git_sha1, 40));
		}
	first = written(l, &n1);
	FUZZ_CHECK(lock_parse(first, n1, "fuzz.lock", &again, &err) == 0);
	second = written(again, &n2);
	FUZZ_CHECK(n1 == n2 && memcmp(first, second, n1) == 0);
	free(first);
	free(second);
	lock_free(again);
	lock_free(l);
	return 0;
}
