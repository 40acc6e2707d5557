/*
 * fuzz_content_range.c: http_parse_content_range() on any header value
 * (http.h), the check that decides whether a 206's bytes are the ones
 * asked for.
 *
 * Checks: a parsed range has first <= last and, with a known total,
 * last < total (total is -1 only for '*'); the value was "bytes " and
 * digits; printing the result back parses to the same numbers; a value
 * that fails leaves the out-parameters alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <strings.h>

#include "fuzz.h"
#include "modelfs/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value = fuzz_cstr(data, size), again[80];
	uint64_t first = 7, last = 7, first2, last2;
	int64_t total = 7, total2;
	int rc;

	if (!value)
		return 0;
	rc = http_parse_content_range(value, &first, &last, &total);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc) {
		FUZZ_CHECK(first == 7 && last == 7 && total == 7);
		goto out;
	}
	FUZZ_CHECK(strncasecmp(value, "bytes ", 6) == 0);
	FUZZ_CHECK(first <= last && last <= INT64_MAX);
	FUZZ_CHECK(total == -1 || (total > 0 && last < (uint64_t)total));
	FUZZ_CHECK(total != -1 || strstr(value, "/*"));
	if (total >= 0)
		snprintf(again, sizeof(again), "bytes %" PRIu64 "-%" PRIu64 "/%" PRId64, first,
			 last, total);
	else
		snprintf(again, sizeof(again), "bytes %" PRIu64 "-%" PRIu64 "/*", first, last);
	FUZZ_CHECK(http_parse_content_range(again, &first2, &last2, &total2) == 0);
	FUZZ_CHECK(first2 == first && last2 == last && total2 == total);
out:
	free(value);
	return 0;
}
