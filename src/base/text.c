/*
 * text.c: printable characters and the escaping of the rest (text.h).
 * A small UTF-8 decoder: the one question asked is "how long is this
 * character, and may it be shown"; nothing here converts or allocates
 * except text_escape().
 */
#include "modelfs/text.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

/* Code points that reorder or break lines of what a terminal shows. */
static bool format_control(uint32_t cp)
{
	return cp == 0x061C || cp == 0x200E || cp == 0x200F ||
	       (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t text_char_len(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
	uint32_t cp;
	size_t len;

	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return p[0] >= 0x20 && p[0] != 0x7f ? 1 : 0;
	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		len = 2;
		cp = p[0] & 0x1F;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		len = 3;
		cp = p[0] & 0x0F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;	/* a continuation byte, or never in UTF-8 */
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3F);
	}
	if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;	/* overlong, too large, or a surrogate */
	if (cp <= 0x9F || format_control(cp))
		return 0;	/* C1 */
	return len;
}

bool text_printable(const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		size_t len = text_char_len(s, n);

		if (len == 0)
			return false;
		s += len;
		n -= len;
	}
	return true;
}

char *text_escape(const char *s)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(n * 4 + 1);	/* at worst every byte as \xNN */

	if (!out)
		return NULL;
	while (n > 0) {
		size_t len = text_char_len(s, n);

		if (len == 0) {
			snprintf(out + o, 5, "\\x%02x", (unsigned char)*s);
			o += 4;
			len = 1;
		} else {
			memcpy(out + o, s, len);
			o += len;
		}
		s += len;
		n -= len;
	}
	out[o] = '\0';
	return out;
}

int text_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int64_t text_iso_time(const char *s)
{
	struct tm tm;

	if (!s)
		return -1;
	memset(&tm, 0, sizeof(tm));
	return strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) ? (int64_t)timegm(&tm) : -1;
}

bool text_is_hex(const char *s, size_t n, bool lower)
{
	if (!s || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (text_hex_digit((unsigned char)s[i]) < 0 || (lower && isupper((unsigned char)s[i])))
			return false;
	return true;
}

bool text_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

bool text_same_list(char *const *a, char *const *b)
{
	size_t i = 0;

	for (; a && b && a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return (!a || !a[i]) && (!b || !b[i]);
}
