/*
 * fuzz_http_headers.c: the response header reader of http.c on any bytes
 * (http_read_header_block(), the code a transfer's header callback runs).
 *
 * Checks, besides no crash, leak or undefined behaviour: a status is 0 or
 * three digits; lengths, times and waits are -1 or more; the server's
 * message (quoted in errors and logs) is printable ASCII only; collected
 * header values come one per wanted name.
 */
#include "fuzz.h"
#include "modelfs/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const want[] = { "X-Repo-Commit", "X-Linked-Etag", "Link", NULL };
	struct http_header_facts facts;
	struct http_meta meta;

	FUZZ_CHECK(http_read_header_block((const char *)data, size, want, &meta, &facts) == 0);
	FUZZ_CHECK(meta.status == 0 || (meta.status >= 100 && meta.status <= 999));
	FUZZ_CHECK(meta.content_length >= -1 && meta.mtime >= -1);
	FUZZ_CHECK(facts.content_range_total >= -1);
	FUZZ_CHECK(facts.retry_after >= -1 && facts.ratelimit_t >= -1);
	for (const char *c = facts.server_msg; *c; c++)
		FUZZ_CHECK(*c >= 0x20 && *c < 0x7f);
	FUZZ_CHECK(!meta.header_values || meta.n_header_values == 3);
	http_meta_clear(&meta);
	return 0;
}
