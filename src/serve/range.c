/*
 * range.c: the Range header of a GET (RFC 9110 §14.1.2), read as the
 * Hub's CDN reads it: one byte range is served as asked (a last byte past
 * the end means the end; "-n" the last n bytes); a range starting past
 * the end cannot be satisfied; everything else (another unit, a malformed
 * header, a last byte before the first, several ranges) is ignored and
 * the whole body goes out with 200.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/serve.h"

/* Digits at *p into *v (no sign, no overflow): true, *p past them. */
static bool number(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;

	if (!isdigit((unsigned char)*s))
		return false;
	for (; isdigit((unsigned char)*s); s++) {
		if (n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*v = n;
	return true;
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int serve_parse_range(const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
	const char *p;
	uint64_t a = 0, b = 0;
	bool has_a, has_b;

	if (!header)
		return 0;
	p = skip_ws(header);
	if (strncasecmp(p, "bytes", 5) != 0)
		return 0;
	p = skip_ws(p + 5);
	if (*p++ != '=')
		return 0;
	p = skip_ws(p);
	has_a = number(&p, &a);
	p = skip_ws(p);
	if (*p++ != '-')
		return 0;
	p = skip_ws(p);
	has_b = number(&p, &b);
	p = skip_ws(p);
	if (*p != '\0' || (!has_a && !has_b))
		return 0;	/* a second range, or no range at all */
	if (!has_a) {		/* the last b bytes */
		if (b == 0 || size == 0)
			return -ERANGE;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (has_b && b < a)
		return 0;
	if (a >= size)
		return -ERANGE;
	*first = a;
	*last = !has_b || b >= size ? size - 1 : b;
	return 1;
}
