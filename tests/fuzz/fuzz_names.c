/*
 * fuzz_names.c: names servers choose (source.h): source_safe_name() on
 * any bytes, and source_disposition_name() on any Content-Disposition
 * value.
 *
 * Checks, for every name either gives (modelfs.toml(5)): one path
 * component, 1 to 255 bytes, valid UTF-8 with no control byte (C0, DEL,
 * C1) and printable by text.h's rule, never "." or ".."; cleaning a
 * clean name changes nothing, so a name already safe is kept as it is.
 */
#include <errno.h>

#include "fuzz.h"
#include "modelfs/source.h"
#include "modelfs/text.h"

static bool is_clean(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strchr(s, '/'))
		return false;
	return fuzz_utf8(s, n) && text_printable(s);
}

static void check_name(const char *s)
{
	char *again = NULL;

	FUZZ_CHECK(is_clean(s));
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
		/* C1 controls are U+0080-U+009F: 0xC2 0x80-0x9F in UTF-8. */
		FUZZ_CHECK(!(p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F));
	}
	FUZZ_CHECK(source_safe_name(s, &again) == 0 && again && strcmp(again, s) == 0);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *raw = fuzz_cstr(data, size), *name = NULL;
	int rc;

	if (!raw)
		return 0;
	rc = source_safe_name(raw, &name);
	FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
	if (name)
		check_name(name);
	else if (rc == 0)
		FUZZ_CHECK(!is_clean(raw));
	if (name && is_clean(raw))
		FUZZ_CHECK(strcmp(name, raw) == 0);
	free(name);
	name = NULL;

	rc = source_disposition_name(raw, &name);
	FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
	if (name)
		check_name(name);
	free(name);
	free(raw);
	return 0;
}
