/*
 * toml.h: a strict TOML 1.0 parser, plus TOML 1.1's multi-line inline
 * tables (newlines and comments between the braces), which the seed
 * config format uses.
 *
 * (1) A document parses whole or not at all: on error nothing is
 *     returned but the first error, with the 1-based line and column
 *     (in bytes) where it was found.
 * (2) Every value and every key records the line and column where it
 *     starts, so callers can report "FILE:LINE:COL: ..." for values
 *     that are valid TOML but wrong for them.
 * (3) Tables keep their keys in document order; keys are unique.
 * Ownership: toml_parse() gives a tree; toml_free() frees all of it.
 * Strings returned by accessors point into the tree.
 * Threads: no global state; a tree may be read from many threads.
 */
#ifndef MODELFS_TOML_H
#define MODELFS_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum toml_type {
	TOML_STRING,
	TOML_INTEGER,
	TOML_FLOAT,
	TOML_BOOL,
	TOML_DATETIME,		/* offset date-time, text as written (normalised 'T') */
	TOML_DATETIME_LOCAL,
	TOML_DATE_LOCAL,
	TOML_TIME_LOCAL,
	TOML_ARRAY,
	TOML_TABLE,
};

struct toml_value;

struct toml_keyval {
	char *key;			/* UTF-8, NUL-terminated; may hold NULs */
	size_t key_len;			/* bytes in key, without the final NUL */
	int line, col;			/* where the key is written */
	struct toml_value *value;
};

struct toml_value {
	enum toml_type type;
	int line, col;			/* where the value starts */
	union {
		struct {
			char *ptr;	/* UTF-8, NUL-terminated; may hold NULs */
			size_t len;
		} str;			/* STRING and the four date/time types */
		int64_t integer;
		double floating;
		bool boolean;
		struct {
			struct toml_value **items;
			size_t len;
		} array;
		struct {
			struct toml_keyval *items;
			size_t len;
		} table;
	} u;
};

struct toml_error {
	int line, col;
	char msg[200];
};

/* Parse text[0..len). 0 and *out on success; -EINVAL and *err filled on
 * invalid TOML; -ENOMEM. Never reads past len, never recurses without
 * bound (nesting deeper than 128 is an error). */
int toml_parse(const char *text, size_t len, struct toml_value **out,
	       struct toml_error *err);

void toml_free(struct toml_value *v);

/* The value under key in a table, or NULL (also when t is not a table). */
const struct toml_value *toml_table_get(const struct toml_value *t,
					const char *key);

/* "string", "integer", ... for messages. */
const char *toml_type_name(enum toml_type type);

#endif
