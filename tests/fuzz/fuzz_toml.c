/*
 * fuzz_toml.c: toml_parse() on any bytes (toml.h).
 *
 * Checks, besides no crash, leak or undefined behaviour: a document
 * parses whole with a tree, or not at all with an error at a position
 * inside the text (1); every string and key is valid UTF-8 and
 * NUL-terminated at its length, every position is inside the text (2);
 * no table holds a key twice (3); nesting stays bounded.
 */
#include <errno.h>

#include "fuzz.h"
#include "modelfs/toml.h"

struct doc {
	int lines;		/* lines in the text: no position is past them */
};

static void check_pos(const struct doc *d, int line, int col)
{
	FUZZ_CHECK(line >= 1 && line <= d->lines && col >= 1);
}

static void check_text(const char *p, size_t len)
{
	FUZZ_CHECK(p && p[len] == '\0');
	FUZZ_CHECK(fuzz_utf8(p, len));
}

static void check_value(const struct doc *d, const struct toml_value *v, int depth)
{
	FUZZ_CHECK(depth <= 130);
	check_pos(d, v->line, v->col);
	switch (v->type) {
	case TOML_STRING:
	case TOML_DATETIME:
	case TOML_DATETIME_LOCAL:
	case TOML_DATE_LOCAL:
	case TOML_TIME_LOCAL:
		check_text(v->u.str.ptr, v->u.str.len);
		break;
	case TOML_ARRAY:
		for (size_t i = 0; i < v->u.array.len; i++)
			check_value(d, v->u.array.items[i], depth + 1);
		break;
	case TOML_TABLE:
		for (size_t i = 0; i < v->u.table.len; i++) {
			const struct toml_keyval *kv = &v->u.table.items[i];

			check_text(kv->key, kv->key_len);
			check_pos(d, kv->line, kv->col);
			/* Pairwise, so bounded: big tables are checked by their first keys. */
			for (size_t k = 0; k < i && k < 64; k++)
				FUZZ_CHECK(v->u.table.items[k].key_len != kv->key_len ||
					   memcmp(v->u.table.items[k].key, kv->key, kv->key_len) != 0);
			check_value(d, kv->value, depth + 1);
		}
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct doc d = { .lines = 1 };
	struct toml_value *root = NULL;
	struct toml_error err;
	int rc;

	for (size_t i = 0; i < size; i++)
		d.lines += data[i] == '\n';
	memset(&err, 0x55, sizeof(err));	/* must be filled on error, not left */
	rc = toml_parse((const char *)data, size, &root, &err);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc == 0) {
		FUZZ_CHECK(root && root->type == TOML_TABLE);
		check_value(&d, root, 0);
		toml_free(root);
	} else if (rc == -EINVAL) {
		FUZZ_CHECK(root == NULL);
		check_pos(&d, err.line, err.col);
		FUZZ_CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
	}
	return 0;
}
