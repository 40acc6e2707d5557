/*
 * fuzz.h: what the libFuzzer targets of tests/fuzz share.
 *
 * A target is one file defining LLVMFuzzerTestOneInput(). It feeds the
 * bytes to one parser and checks what the parser's header promises; a
 * broken promise is reported by FUZZ_CHECK, which aborts so that
 * libFuzzer keeps the input as a crash. Sanitizer reports need no check:
 * ASan and UBSan abort on their own (-fno-sanitize-recover).
 */
#ifndef MODELFS_FUZZ_H
#define MODELFS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* The input as a C string (cut at its first NUL, as a header value or a
 * URL would be). The caller frees; NULL on ENOMEM. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/* Is s[0..n) valid UTF-8 (RFC 3629: shortest form, no surrogates, at most
 * U+10FFFF)? Written here, not taken from text.c, so that a bug there
 * cannot hide itself. */
static inline bool fuzz_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t len;

		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (p[i] >= 0xC2 && p[i] <= 0xDF)
			len = 2, cp = p[i] & 0x1F;
		else if (p[i] >= 0xE0 && p[i] <= 0xEF)
			len = 3, cp = p[i] & 0x0F;
		else if (p[i] >= 0xF0 && p[i] <= 0xF4)
			len = 4, cp = p[i] & 0x07;
		else
			return false;
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

#endif
