/*
 * toml_decode.c: TOML on stdin to toml-test's tagged JSON on stdout, for
 * the conformance runner (tests/unit/toml_conformance.py). Every leaf is
 * {"type": T, "value": "..."}; tables are objects, arrays are arrays.
 * Invalid TOML: "LINE:COL: msg" on stderr and exit 1.
 */
#include "modelfs/toml.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* All of stdin into *out (malloc'd), its length in *len. */
static int read_all(FILE *f, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap), *nb;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		size_t got;

		if (n == cap) {
			nb = realloc(buf, cap * 2);
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		rc = -EIO;
out:
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* A JSON string literal; s is valid UTF-8 (the parser checked it) and
 * may hold NULs. */
static void put_string(FILE *f, const char *s, size_t n)
{
	putc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\u%04x", c);
			else
				putc(c, f);
		}
	}
	putc('"', f);
}

static void put_leaf(FILE *f, const char *type, const char *s, size_t n)
{
	fprintf(f, "{\"type\": \"%s\", \"value\": ", type);
	put_string(f, s, n);
	putc('}', f);
}

/* Recursion is bounded: the parser refuses nesting deeper than 128. */
static void put_value(FILE *f, const struct toml_value *v)
{
	char num[64];
	size_t i;

	switch (v->type) {
	case TOML_STRING:
		put_leaf(f, "string", v->u.str.ptr, v->u.str.len);
		break;
	case TOML_INTEGER:
		snprintf(num, sizeof(num), "%" PRId64, v->u.integer);
		put_leaf(f, "integer", num, strlen(num));
		break;
	case TOML_FLOAT:
		if (isnan(v->u.floating))
			snprintf(num, sizeof(num), "nan");
		else if (isinf(v->u.floating))
			snprintf(num, sizeof(num), "%sinf", v->u.floating < 0 ? "-" : "");
		else
			snprintf(num, sizeof(num), "%.17g", v->u.floating);
		put_leaf(f, "float", num, strlen(num));
		break;
	case TOML_BOOL:
		put_leaf(f, "bool", v->u.boolean ? "true" : "false", v->u.boolean ? 4 : 5);
		break;
	case TOML_DATETIME:
		put_leaf(f, "datetime", v->u.str.ptr, v->u.str.len);
		break;
	case TOML_DATETIME_LOCAL:
		put_leaf(f, "datetime-local", v->u.str.ptr, v->u.str.len);
		break;
	case TOML_DATE_LOCAL:
		put_leaf(f, "date-local", v->u.str.ptr, v->u.str.len);
		break;
	case TOML_TIME_LOCAL:
		put_leaf(f, "time-local", v->u.str.ptr, v->u.str.len);
		break;
	case TOML_ARRAY:
		putc('[', f);
		for (i = 0; i < v->u.array.len; i++) {
			if (i)
				fputs(", ", f);
			put_value(f, v->u.array.items[i]);
		}
		putc(']', f);
		break;
	case TOML_TABLE:
		putc('{', f);
		for (i = 0; i < v->u.table.len; i++) {
			if (i)
				fputs(", ", f);
			put_string(f, v->u.table.items[i].key, v->u.table.items[i].key_len);
			fputs(": ", f);
			put_value(f, v->u.table.items[i].value);
		}
		putc('}', f);
		break;
	}
}

int main(void)
{
	struct toml_value *root = NULL;
	struct toml_error err;
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = read_all(stdin, &text, &len);
	if (rc) {
		fprintf(stderr, "toml_decode: reading stdin: %s\n", strerror(-rc));
		return 2;
	}
	rc = toml_parse(text, len, &root, &err);
	free(text);
	if (rc) {
		fprintf(stderr, "%d:%d: %s\n", err.line, err.col, err.msg);
		return rc == -EINVAL ? 1 : 2;
	}
	put_value(stdout, root);
	putc('\n', stdout);
	toml_free(root);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "toml_decode: writing stdout: %s\n", strerror(errno));
		return 2;
	}
	return 0;
}
