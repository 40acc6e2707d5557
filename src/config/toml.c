/*
 * toml.c: a strict TOML parser: TOML 1.0 plus the TOML 1.1 additions
 * (newlines, comments and a trailing comma between the braces of an
 * inline table; the \e and \xHH escapes; times without seconds).
 *
 * Two passes. find_bad_byte() first looks for what may appear nowhere
 * in a document: invalid UTF-8, a control character other than tab and
 * LF, a CR not before an LF. The recursive-descent parser then runs over
 * a cursor (struct parser) that ends just before that byte, so it never
 * checks encoding again; an error it finds before that byte is reported
 * instead, being the first one.
 *
 * Redefinition rules are flags on each node (see NODE_*): a [header]
 * defines a table at most once; tables made by dotted keys or written
 * inline can't be reopened by a header; dotted keys extend only tables
 * that dotted keys made or a header merely implied; [[x]] appends only
 * to arrays it made itself.
 *
 * Values are allocated as struct node, which starts with the public
 * struct toml_value, so the flags, the nesting depth and a hash index
 * of big tables travel with the tree without showing in the header.
 * Date-time text is kept as written, with the separator made 'T'; a
 * newline in a multi-line string is always "\n", CRLF in the file or not.
 */
#include "modelfs/toml.h"
#include "modelfs/text.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOML_MAX_DEPTH 128
#define INDEX_MIN 16		/* tables this big get a hash index */

enum {
	NODE_IMPLICIT = 1 << 0,	/* made as a parent by [a.b]: [a] may still define it */
	NODE_HEADER = 1 << 1,	/* defined by [a], or an element of [[a]] */
	NODE_DOTTED = 1 << 2,	/* made by a dotted key: a.b = 1 */
	NODE_INLINE = 1 << 3,	/* a = { ... }: closed to any addition */
	NODE_AOT = 1 << 4,	/* array made by [[a]]: more [[a]] may append */
};

struct node {
	struct toml_value v;	/* first: a struct toml_value * is a struct node * */
	unsigned flags;		/* NODE_* */
	int depth;		/* root 0, child of depth d is d + 1 */
	size_t cap;		/* slots allocated in v.u.array or v.u.table items */
	size_t *index;		/* open hash of (item index + 1), 0 empty; or NULL */
	size_t index_cap;	/* power of two, at least twice the table's len */
};

struct mark {
	size_t pos;
	int line, col;
};

struct parser {
	const char *s;
	size_t end;		/* the cursor reads s[0..end): up to the first bad byte */
	size_t pos;
	int line;		/* 1-based line of pos */
	size_t line_start;	/* offset of the first byte of that line */
	struct toml_error *err;
	size_t err_pos;		/* offset of the error reported in err */
	locale_t c_locale;	/* "C", for strtod_l; made at the first float */
};

struct buf {
	char *p;
	size_t len, cap;
};

struct key_part {
	char *s;		/* owned until moved into a table */
	size_t len;
	struct mark at;
};

struct key_path {
	struct key_part *parts;
	size_t n, cap;
};

static int parse_value(struct parser *p, int depth, struct node **out);

/* ---- cursor ---- */

static int peek(const struct parser *p, size_t k)
{
	if (p->pos + k >= p->end)
		return -1;
	return (unsigned char)p->s[p->pos + k];
}

static void advance(struct parser *p)
{
	assert(p->pos < p->end);
	if (p->s[p->pos] == '\n') {
		if (p->line < INT_MAX)	/* a 2^31-line "config": wrong lines, no UB */
			p->line++;
		p->line_start = p->pos + 1;
	}
	p->pos++;
}

/* Skip n bytes known to hold no newline. */
static void advance_n(struct parser *p, size_t n)
{
	assert(p->pos + n <= p->end);
	p->pos += n;
}

static struct mark mark_at(const struct parser *p, size_t k)
{
	size_t col = p->pos + k - p->line_start + 1;

	return (struct mark){ p->pos + k, p->line, col > 1000000000 ? 1000000000 : (int)col };
}

static struct mark here(const struct parser *p)
{
	return mark_at(p, 0);
}

__attribute__((format(printf, 3, 0)))
static int vfail(struct parser *p, const struct mark *at, const char *fmt, va_list ap)
{
	p->err->line = at->line;
	p->err->col = at->col;
	p->err_pos = at->pos;
	vsnprintf(p->err->msg, sizeof(p->err->msg), fmt, ap);
	return -EINVAL;
}

/* Record the error found at *at; returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
static int fail(struct parser *p, const struct mark *at, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(p, at, fmt, ap);
	va_end(ap);
	return rc;
}

/* The same, found at the cursor. */
__attribute__((format(printf, 2, 3)))
static int fail_here(struct parser *p, const char *fmt, ...)
{
	struct mark at = here(p);
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(p, &at, fmt, ap);
	va_end(ap);
	return rc;
}

/* The byte at the cursor, for "expected X, found Y". */
static const char *found(const struct parser *p, char buf[16])
{
	int c = peek(p, 0);

	if (c < 0)
		return "end of input";
	if (c == '\n' || c == '\r')
		return "end of line";
	if (c > ' ' && c < 0x7f)
		snprintf(buf, 16, "'%c'", c);
	else if (c == ' ' || c == '\t')
		return "whitespace";
	else
		snprintf(buf, 16, "byte 0x%02x", c);
	return buf;
}

/* A key for messages: at most 48 bytes, control characters as '?'. */
static const char *show_key(const char *k, size_t n, char buf[64])
{
	size_t i;

	for (i = 0; i < n && i < 48; i++)
		buf[i] = (unsigned char)k[i] < ' ' ? '?' : k[i];
	if (i < n)
		buf[i++] = '~';
	buf[i] = '\0';
	return buf;
}

static void skip_ws(struct parser *p)
{
	int c = peek(p, 0);

	while (c == ' ' || c == '\t') {
		advance_n(p, 1);
		c = peek(p, 0);
	}
}

/* A comment runs to the end of the line; its bytes were checked by
 * find_bad_byte(). */
static void skip_comment(struct parser *p)
{
	if (peek(p, 0) != '#')
		return;
	while (peek(p, 0) >= 0 && peek(p, 0) != '\n')
		advance_n(p, 1);
}

/* Every CR before end is followed by LF: find_bad_byte() saw to it. */
static bool eat_newline(struct parser *p)
{
	if (peek(p, 0) == '\r')
		advance_n(p, 1);
	if (peek(p, 0) != '\n')
		return false;
	advance(p);
	return true;
}

/* Whitespace, comments and newlines: between array items and between
 * the key/value pairs of an inline table. */
static void skip_blank(struct parser *p)
{
	do {
		skip_ws(p);
		skip_comment(p);
	} while (eat_newline(p));
}

/* ---- buffers and nodes ---- */

static int buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 32;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int buf_putc(struct buf *b, char c)
{
	return buf_put(b, &c, 1);
}

static int new_node(struct parser *p, enum toml_type type, int depth,
		    const struct mark *at, struct node **out)
{
	struct node *n;

	if (depth > TOML_MAX_DEPTH)
		return fail(p, at, "nesting deeper than %d", TOML_MAX_DEPTH);
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->v.type = type;
	n->v.line = at->line;
	n->v.col = at->col;
	n->depth = depth;
	*out = n;
	return 0;
}

/* A string-like node that takes b's bytes (an empty string gets "").
 * b is left empty either way. */
static int new_text_node(struct parser *p, enum toml_type type, int depth,
			 const struct mark *at, struct buf *b, struct node **out)
{
	int rc = 0;

	if (!b->p)
		rc = buf_put(b, "", 0);
	if (!rc)
		rc = new_node(p, type, depth, at, out);
	if (rc) {
		free(b->p);
		*b = (struct buf){ 0 };
		return rc;
	}
	(*out)->v.u.str.ptr = b->p;
	(*out)->v.u.str.len = b->len;
	*b = (struct buf){ 0 };
	return 0;
}

void toml_free(struct toml_value *v)
{
	struct node *n = (struct node *)v;
	size_t i;

	if (!v)
		return;
	switch (v->type) {
	case TOML_ARRAY:
		for (i = 0; i < v->u.array.len; i++)
			toml_free(v->u.array.items[i]);
		free(v->u.array.items);
		break;
	case TOML_TABLE:
		for (i = 0; i < v->u.table.len; i++) {
			free(v->u.table.items[i].key);
			toml_free(v->u.table.items[i].value);
		}
		free(v->u.table.items);
		break;
	case TOML_STRING:
	case TOML_DATETIME:
	case TOML_DATETIME_LOCAL:
	case TOML_DATE_LOCAL:
	case TOML_TIME_LOCAL:
		free(v->u.str.ptr);
		break;
	default:
		break;
	}
	free(n->index);
	free(n);
}

static int array_push(struct node *a, struct node *item)
{
	struct toml_value **items = a->v.u.array.items;

	if (a->v.u.array.len == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 4;

		items = realloc(items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		a->v.u.array.items = items;
		a->cap = cap;
	}
	items[a->v.u.array.len++] = &item->v;
	return 0;
}

/* ---- tables ---- */

/* FNV-1a: keys are written by the admin, not chosen by an attacker. */
static size_t key_hash(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 0x100000001b3ull;
	}
	return (size_t)h;
}

static bool key_eq(const struct toml_keyval *kv, const char *k, size_t n)
{
	return kv->key_len == n && memcmp(kv->key, k, n) == 0;
}

static struct toml_keyval *table_find(const struct node *t, const char *k, size_t n)
{
	struct toml_keyval *items = t->v.u.table.items;
	size_t i;

	if (t->index) {
		size_t mask = t->index_cap - 1;

		for (i = key_hash(k, n) & mask; t->index[i]; i = (i + 1) & mask)
			if (key_eq(&items[t->index[i] - 1], k, n))
				return &items[t->index[i] - 1];
		return NULL;
	}
	for (i = 0; i < t->v.u.table.len; i++)
		if (key_eq(&items[i], k, n))
			return &items[i];
	return NULL;
}

static void index_insert(struct node *t, size_t item)
{
	const struct toml_keyval *kv = &t->v.u.table.items[item];
	size_t mask = t->index_cap - 1;
	size_t i = key_hash(kv->key, kv->key_len) & mask;

	while (t->index[i])
		i = (i + 1) & mask;
	t->index[i] = item + 1;
}

static int index_rebuild(struct node *t)
{
	size_t cap = 64;
	size_t *index;

	while (cap < 4 * t->v.u.table.len)
		cap *= 2;
	index = calloc(cap, sizeof(*index));
	if (!index)
		return -ENOMEM;
	free(t->index);
	t->index = index;
	t->index_cap = cap;
	for (size_t i = 0; i < t->v.u.table.len; i++)
		index_insert(t, i);
	return 0;
}

/* Append key = value to t; the caller checked the key is new. Takes key
 * and value, and frees them on error. */
static int table_add(struct node *t, char *key, size_t len, const struct mark *at,
		     struct node *value)
{
	struct toml_keyval *items = t->v.u.table.items;
	size_t n = t->v.u.table.len;

	if (n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4;

		items = realloc(items, cap * sizeof(*items));
		if (!items) {
			free(key);
			toml_free(&value->v);
			return -ENOMEM;
		}
		t->v.u.table.items = items;
		t->cap = cap;
	}
	items[n] = (struct toml_keyval){ .key = key, .key_len = len,
					 .line = at->line, .col = at->col,
					 .value = &value->v };
	t->v.u.table.len = n + 1;
	if (n + 1 < INDEX_MIN)
		return 0;
	/* The item is in; a failed index only costs speed, but keep the
	 * contract simple: the whole parse fails on any ENOMEM. */
	if (!t->index || 2 * (n + 1) > t->index_cap)
		return index_rebuild(t);
	index_insert(t, n);
	return 0;
}

/* A new table under key part kp of t, with flags. */
static int add_table(struct parser *p, struct node *t, struct key_part *kp,
		     const struct mark *at, unsigned flags, struct node **out)
{
	struct node *n = NULL;
	int rc;

	rc = new_node(p, TOML_TABLE, t->depth + 1, at, &n);
	if (rc)
		return rc;
	n->flags = flags;
	rc = table_add(t, kp->s, kp->len, &kp->at, n);
	kp->s = NULL;
	if (rc)
		return rc;
	*out = n;
	return 0;
}

/* ---- strings ---- */

static int put_utf8(struct buf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_put(b, u, n);
}

/* An escape in a basic string; the cursor is on the backslash. */
static int parse_escape(struct parser *p, bool multi, struct buf *b)
{
	struct mark at = here(p);
	size_t digits = 0;
	uint32_t cp = 0;
	int c = peek(p, 1);

	switch (c) {
	case 'b': advance_n(p, 2); return buf_putc(b, '\b');
	case 't': advance_n(p, 2); return buf_putc(b, '\t');
	case 'n': advance_n(p, 2); return buf_putc(b, '\n');
	case 'f': advance_n(p, 2); return buf_putc(b, '\f');
	case 'r': advance_n(p, 2); return buf_putc(b, '\r');
	case 'e': advance_n(p, 2); return buf_putc(b, 0x1b);
	case '"': advance_n(p, 2); return buf_putc(b, '"');
	case '\\': advance_n(p, 2); return buf_putc(b, '\\');
	case 'x': digits = 2; break;
	case 'u': digits = 4; break;
	case 'U': digits = 8; break;
	case ' ':
	case '\t':
	case '\r':
	case '\n':
		if (!multi)
			break;
		/* Line-ending backslash: drop it, the newline and all the
		 * whitespace and newlines after it. */
		advance_n(p, 1);
		skip_ws(p);
		if (!eat_newline(p))
			return fail(p, &at, "a line-ending '\\' may be followed only by whitespace");
		do
			skip_ws(p);
		while (eat_newline(p));
		return 0;
	default:
		break;
	}
	if (!digits)
		return fail(p, &at, "invalid escape sequence");
	for (size_t i = 0; i < digits; i++) {
		int h = text_hex_digit(peek(p, 2 + i));

		if (h < 0)
			return fail(p, &at, "\\%c needs %zu hex digits", c, digits);
		cp = cp << 4 | (uint32_t)h;
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return fail(p, &at, "escape is not a Unicode scalar value");
	advance_n(p, 2 + digits);
	return put_utf8(b, cp);
}

/* A basic "..." / """...""" or literal '...' / '''...''' string at the
 * cursor, into b. Keys pass multi_ok false. */
static int parse_string(struct parser *p, bool multi_ok, struct buf *b)
{
	struct mark start = here(p);
	char q = p->s[p->pos];
	bool multi = peek(p, 1) == q && peek(p, 2) == q;
	int rc;

	if (multi) {
		if (!multi_ok)
			return fail(p, &start, "a key cannot be a multi-line string");
		advance_n(p, 3);
		eat_newline(p);		/* a newline right after the opening quotes is not content */
	} else {
		advance_n(p, 1);
	}
	for (;;) {
		int c = peek(p, 0);
		size_t n = 0;

		if (c < 0)
			return fail_here(p, "unterminated string");
		if (c == q) {
			if (!multi) {
				advance_n(p, 1);
				return 0;
			}
			while (peek(p, n) == q)
				n++;
			/* """ closes; up to two more quotes right before it are content. */
			if (n > 5) {
				struct mark extra = mark_at(p, 5);

				return fail(p, &extra, "too many quotes at the end of a string");
			}
			rc = buf_put(b, p->s + p->pos, n >= 3 ? n - 3 : n);
			advance_n(p, n);
			if (rc || n >= 3)
				return rc;
			continue;
		}
		if (c == '\n' || c == '\r') {
			if (!multi)
				return fail_here(p, "newline in a single-line string");
			eat_newline(p);
			rc = buf_putc(b, '\n');	/* CRLF too: values don't depend on the editor */
		} else if (c == '\\' && q == '"') {
			rc = parse_escape(p, multi, b);
		} else {
			/* A run of plain bytes in one copy. */
			while ((c = peek(p, n)) >= 0 && c != q && c != '\n' && c != '\r' &&
			       !(c == '\\' && q == '"'))
				n++;
			rc = buf_put(b, p->s + p->pos, n);
			advance_n(p, n);
		}
		if (rc)
			return rc;
	}
}

/* ---- keys ---- */

static bool is_bare(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static void key_path_free(struct key_path *kp)
{
	for (size_t i = 0; i < kp->n; i++)
		free(kp->parts[i].s);
	free(kp->parts);
	*kp = (struct key_path){ 0 };
}

/* A dotted key at the cursor, and the whitespace after it. */
static int parse_key(struct parser *p, struct key_path *kp)
{
	char fb[16];
	int rc;

	for (;;) {
		struct key_part part = { .at = here(p) };
		struct buf b = { 0 };
		int c = peek(p, 0);

		if (kp->n == TOML_MAX_DEPTH)
			return fail(p, &part.at, "key has more than %d parts", TOML_MAX_DEPTH);
		if (kp->n == kp->cap) {
			size_t cap = kp->cap ? 2 * kp->cap : 4;
			struct key_part *np = realloc(kp->parts, cap * sizeof(*np));

			if (!np)
				return -ENOMEM;
			kp->parts = np;
			kp->cap = cap;
		}
		if (c == '"' || c == '\'') {
			rc = parse_string(p, false, &b);
		} else if (is_bare(c)) {
			size_t n = 0;

			while (is_bare(peek(p, n)))
				n++;
			rc = buf_put(&b, p->s + p->pos, n);
			advance_n(p, n);
		} else {
			return fail(p, &part.at, "expected a key, found %s", found(p, fb));
		}
		if (!rc && !b.p)
			rc = buf_put(&b, "", 0);
		if (rc) {
			free(b.p);
			return rc;
		}
		part.s = b.p;
		part.len = b.len;
		kp->parts[kp->n++] = part;
		skip_ws(p);
		if (peek(p, 0) != '.')
			return 0;
		advance_n(p, 1);
		skip_ws(p);
	}
}

/* key = value at the cursor, into table t (the current section or an
 * inline table being read). */
static int parse_keyval(struct parser *p, struct node *t)
{
	struct key_path kp = { 0 };
	struct toml_keyval *kv;
	struct key_part *last;
	struct node *value;
	char fb[16], kb[64];
	int rc;

	rc = parse_key(p, &kp);
	if (rc)
		goto out;
	if (peek(p, 0) != '=') {
		rc = fail_here(p, "expected '=' after a key, found %s", found(p, fb));
		goto out;
	}
	advance_n(p, 1);
	skip_ws(p);
	for (size_t i = 0; i + 1 < kp.n; i++) {
		struct key_part *part = &kp.parts[i];
		struct node *n;

		kv = table_find(t, part->s, part->len);
		if (!kv) {
			rc = add_table(p, t, part, &part->at, NODE_DOTTED, &t);
			if (rc)
				goto out;
			continue;
		}
		n = (struct node *)kv->value;
		if (n->v.type != TOML_TABLE) {
			rc = fail(p, &part->at, "'%s' is already defined (at %d:%d) as %s, not a table",
				  show_key(part->s, part->len, kb), kv->line, kv->col,
				  toml_type_name(n->v.type));
			goto out;
		}
		/* A table defined by a [header] or written inline is closed
		 * to dotted keys (toml-lang/toml#846); one only implied by a
		 * header is not, and from now on counts as made by them, so
		 * no header may define it later. */
		if (!(n->flags & (NODE_DOTTED | NODE_IMPLICIT))) {
			rc = fail(p, &part->at, "%s '%s' (at %d:%d) cannot be extended by a dotted key",
				  n->flags & NODE_INLINE ? "inline table" : "table",
				  show_key(part->s, part->len, kb), kv->line, kv->col);
			goto out;
		}
		n->flags = NODE_DOTTED;
		t = n;
	}
	last = &kp.parts[kp.n - 1];
	kv = table_find(t, last->s, last->len);
	if (kv) {
		rc = fail(p, &last->at, "duplicate key '%s' (first at %d:%d)",
			  show_key(last->s, last->len, kb), kv->line, kv->col);
		goto out;
	}
	rc = parse_value(p, t->depth + 1, &value);
	if (rc)
		goto out;
	rc = table_add(t, last->s, last->len, &last->at, value);
	last->s = NULL;
out:
	key_path_free(&kp);
	return rc;
}

/* [a.b] or [[a.b]] at the cursor; *cur becomes the table it opens. */
static int parse_header(struct parser *p, struct node *root, struct node **cur)
{
	struct mark at = here(p);
	struct key_path kp = { 0 };
	struct key_part *last;
	struct toml_keyval *kv;
	struct node *t = root, *n;
	char fb[16], kb[64];
	bool aot;
	int rc;

	advance_n(p, 1);
	aot = peek(p, 0) == '[';
	if (aot)
		advance_n(p, 1);
	skip_ws(p);
	rc = parse_key(p, &kp);
	if (rc)
		goto out;
	if (peek(p, 0) != ']' || (aot && peek(p, 1) != ']')) {
		if (peek(p, 0) == ']')
			advance_n(p, 1);
		rc = fail_here(p, "expected '%s' to close the header, found %s",
			       aot ? "]]" : "]", found(p, fb));
		goto out;
	}
	advance_n(p, aot ? 2 : 1);

	/* The parents: walk into tables and the last element of [[arrays]],
	 * making missing ones as implicit tables. */
	for (size_t i = 0; i + 1 < kp.n; i++) {
		struct key_part *part = &kp.parts[i];

		kv = table_find(t, part->s, part->len);
		if (!kv) {
			rc = add_table(p, t, part, &part->at, NODE_IMPLICIT, &t);
			if (rc)
				goto out;
			continue;
		}
		n = (struct node *)kv->value;
		if (n->v.type == TOML_TABLE && !(n->flags & NODE_INLINE)) {
			t = n;
		} else if (n->v.type == TOML_ARRAY && (n->flags & NODE_AOT)) {
			t = (struct node *)n->v.u.array.items[n->v.u.array.len - 1];
		} else {
			rc = fail(p, &part->at, "'%s' is %s (at %d:%d); a header cannot add to it",
				  show_key(part->s, part->len, kb),
				  n->v.type == TOML_TABLE ? "an inline table" :
				  n->v.type == TOML_ARRAY ? "an array of values" : "not a table",
				  kv->line, kv->col);
			goto out;
		}
	}

	last = &kp.parts[kp.n - 1];
	kv = table_find(t, last->s, last->len);
	n = kv ? (struct node *)kv->value : NULL;
	if (!aot) {
		if (!kv) {
			rc = add_table(p, t, last, &at, NODE_HEADER, cur);
		} else if (n->v.type == TOML_TABLE && n->flags == NODE_IMPLICIT) {
			n->flags = NODE_HEADER;
			*cur = n;
		} else {
			rc = fail(p, &last->at, "%s '%s' is already defined (at %d:%d)",
				  n->v.type == TOML_TABLE ? "table" : toml_type_name(n->v.type),
				  show_key(last->s, last->len, kb), kv->line, kv->col);
		}
		goto out;
	}
	if (!kv) {
		rc = new_node(p, TOML_ARRAY, t->depth + 1, &at, &n);
		if (rc)
			goto out;
		n->flags = NODE_AOT;
		rc = table_add(t, last->s, last->len, &last->at, n);
		last->s = NULL;
		if (rc)
			goto out;
	} else if (n->v.type != TOML_ARRAY || !(n->flags & NODE_AOT)) {
		rc = fail(p, &last->at, "'%s' is already defined (at %d:%d) and is not an array of tables",
			  show_key(last->s, last->len, kb), kv->line, kv->col);
		goto out;
	}
	rc = new_node(p, TOML_TABLE, n->depth + 1, &at, cur);
	if (rc)
		goto out;
	(*cur)->flags = NODE_HEADER;
	rc = array_push(n, *cur);
	if (rc)
		toml_free(&(*cur)->v);
out:
	key_path_free(&kp);
	return rc;
}

/* ---- values ---- */

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int two_digits(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return false;
	return true;
}

/* HH:MM[:SS[.frac]] at t[*i..n); seconds are optional since TOML 1.1. */
static bool scan_time(const char *t, size_t n, size_t *i)
{
	size_t j = *i;

	if (n - j < 5 || !all_digits(t + j, 2) || t[j + 2] != ':' || !all_digits(t + j + 3, 2))
		return false;
	if (two_digits(t + j) > 23 || two_digits(t + j + 3) > 59)
		return false;
	j += 5;
	if (j < n && t[j] == ':') {
		if (n - j < 3 || !all_digits(t + j + 1, 2) || two_digits(t + j + 1) > 60)
			return false;	/* 60: a leap second */
		j += 3;
		if (j < n && t[j] == '.') {
			if (++j == n || !is_digit((unsigned char)t[j]))
				return false;
			while (j < n && is_digit((unsigned char)t[j]))
				j++;
		}
	}
	*i = j;
	return true;
}

static bool valid_date(const char *t)
{
	static const int days[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d;

	if (!all_digits(t, 4) || t[4] != '-' || !all_digits(t + 5, 2) || t[7] != '-' ||
	    !all_digits(t + 8, 2))
		return false;
	y = two_digits(t) * 100 + two_digits(t + 2);
	m = two_digits(t + 5);
	d = two_digits(t + 8);
	if (m < 1 || m > 12 || d < 1 || d > days[m - 1])
		return false;
	if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return false;
	return true;
}

/* A date, time or date-time token t[0..n); the caller saw it starts
 * with "DDDD-" or "DD:". */
static int parse_datetime(struct parser *p, const char *t, size_t n, const struct mark *at,
			  int depth, struct node **out)
{
	enum toml_type type = TOML_TIME_LOCAL;
	struct buf b = { 0 };
	size_t i = 0;
	int rc;

	if (n >= 10 && t[4] == '-') {
		if (!valid_date(t))
			goto bad;
		type = TOML_DATE_LOCAL;
		i = 10;
		if (i < n) {
			if (t[i] != 'T' && t[i] != 't' && t[i] != ' ')
				goto bad;
			i++;
			type = TOML_DATETIME_LOCAL;
			if (!scan_time(t, n, &i))
				goto bad;
		}
		if (i < n && type == TOML_DATETIME_LOCAL) {
			type = TOML_DATETIME;
			if (t[i] == 'Z' || t[i] == 'z') {
				i++;
			} else if ((t[i] == '+' || t[i] == '-') && n - i >= 6 &&
				   all_digits(t + i + 1, 2) && t[i + 3] == ':' &&
				   all_digits(t + i + 4, 2) && two_digits(t + i + 1) < 24 &&
				   two_digits(t + i + 4) < 60) {
				i += 6;
			} else {
				goto bad;
			}
		}
	} else if (!scan_time(t, n, &i)) {
		goto bad;
	}
	if (i != n)
		goto bad;
	rc = buf_put(&b, t, n);
	if (rc)
		return rc;
	if (type == TOML_DATETIME || type == TOML_DATETIME_LOCAL)
		b.p[10] = 'T';
	return new_text_node(p, type, depth, at, &b, out);
bad:
	return fail(p, at, "invalid date or time '%.*s'", n > 40 ? 40 : (int)n, t);
}

/* End of [digit (_? digit)*] from t[i], in base; i if there is no digit.
 * An underscore must sit between two digits. */
static size_t digit_run(const char *t, size_t n, size_t i, int base)
{
	size_t j = i;

	while (j < n) {
		int h = text_hex_digit((unsigned char)t[j]);

		if (h >= 0 && h < base)
			j++;
		else if (t[j] == '_' && j > i && j + 1 < n &&
			 (h = text_hex_digit((unsigned char)t[j + 1])) >= 0 && h < base)
			j += 2;
		else
			break;
	}
	return j;
}

/* An integer or float token t[0..n). */
static int parse_number(struct parser *p, const char *t, size_t n, const struct mark *at,
			int depth, struct node **out)
{
	size_t i = 0, e, f;
	bool neg = false, is_float = false;
	uint64_t mag = 0, limit;
	int base = 10, rc;
	char *clean = NULL, *end;
	double d;

	if (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-';
		i = 1;
	}
	if (n - i == 3 && (memcmp(t + i, "inf", 3) == 0 || memcmp(t + i, "nan", 3) == 0)) {
		d = t[i] == 'i' ? INFINITY : NAN;
		d = neg ? -d : d;
		goto make_float;
	}
	if (n - i > 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
		if (i)
			return fail(p, at, "a hex, octal or binary integer cannot have a sign");
		base = t[1] == 'x' ? 16 : t[1] == 'o' ? 8 : 2;
		i = 2;
		e = digit_run(t, n, i, base);
		if (e == i || e != n)
			goto bad;
	} else {
		e = digit_run(t, n, i, 10);
		if (e == i || (t[i] == '0' && e > i + 1))
			goto bad;	/* no digits, or a leading zero */
		if (e < n && t[e] == '.') {
			f = digit_run(t, n, e + 1, 10);
			if (f == e + 1)
				goto bad;
			e = f;
			is_float = true;
		}
		if (e < n && (t[e] == 'e' || t[e] == 'E')) {
			size_t j = e + 1;

			if (j < n && (t[j] == '+' || t[j] == '-'))
				j++;
			f = digit_run(t, n, j, 10);
			if (f == j)
				goto bad;
			e = f;
			is_float = true;
		}
		if (e != n)
			goto bad;
	}

	if (is_float) {
		/* strtod_l, not strtod: the program's locale may want ','. */
		if (!p->c_locale) {
			p->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
			if (!p->c_locale)
				return -ENOMEM;
		}
		clean = malloc(n + 1);
		if (!clean)
			return -ENOMEM;
		for (e = 0, f = 0; e < n; e++)
			if (t[e] != '_')
				clean[f++] = t[e];
		clean[f] = '\0';
		d = strtod_l(clean, &end, p->c_locale);
		rc = *end == '\0' ? 0 : -EINVAL;
		free(clean);
		if (rc)
			goto bad;
		if (isinf(d))
			return fail(p, at, "float out of range");
		goto make_float;
	}

	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		unsigned digit;

		if (t[i] == '_')
			continue;
		digit = (unsigned)text_hex_digit((unsigned char)t[i]);
		if (mag > (limit - digit) / (unsigned)base)
			return fail(p, at, "integer out of range");
		mag = mag * (unsigned)base + digit;
	}
	rc = new_node(p, TOML_INTEGER, depth, at, out);
	if (rc)
		return rc;
	if (!neg)
		(*out)->v.u.integer = (int64_t)mag;
	else if (mag == (uint64_t)INT64_MAX + 1)
		(*out)->v.u.integer = INT64_MIN;
	else
		(*out)->v.u.integer = -(int64_t)mag;
	return 0;

make_float:
	rc = new_node(p, TOML_FLOAT, depth, at, out);
	if (rc)
		return rc;
	(*out)->v.u.floating = d;
	return 0;
bad:
	/* "fals", "Inf", "value": the user meant a bool or a string. */
	i = t[0] == '+' || t[0] == '-';
	return fail(p, at, "invalid %s '%.*s'",
		    i < n && is_digit((unsigned char)t[i]) ? "number" : "value",
		    n > 40 ? 40 : (int)n, t);
}

static bool is_token(int c)
{
	return is_bare(c) || c == '+' || c == '.' || c == ':';
}

/* A number, date, time, or bool at the cursor. */
static int parse_scalar(struct parser *p, int depth, struct node **out)
{
	struct mark at = here(p);
	const char *t = p->s + p->pos;
	size_t n = 0;
	char fb[16];
	int rc;

	while (is_token(peek(p, n)))
		n++;
	/* "1979-05-27 07:32:00": a date, a space and a time are one value. */
	if (n == 10 && t[4] == '-' && peek(p, 10) == ' ' && is_digit(peek(p, 11))) {
		n = 11;
		while (is_token(peek(p, n)))
			n++;
	}
	if (n == 0)
		return fail(p, &at, "expected a value, found %s", found(p, fb));
	if ((n == 4 && memcmp(t, "true", 4) == 0) || (n == 5 && memcmp(t, "false", 5) == 0)) {
		rc = new_node(p, TOML_BOOL, depth, &at, out);
		if (!rc)
			(*out)->v.u.boolean = n == 4;
	} else if ((n >= 5 && all_digits(t, 4) && t[4] == '-') ||
		   (n >= 3 && all_digits(t, 2) && t[2] == ':')) {
		rc = parse_datetime(p, t, n, &at, depth, out);
	} else {
		rc = parse_number(p, t, n, &at, depth, out);
	}
	if (!rc)
		advance_n(p, n);
	return rc;
}

static int parse_array(struct parser *p, int depth, struct node **out)
{
	struct mark at = here(p);
	struct node *a = NULL, *item;
	char fb[16];
	int rc;

	rc = new_node(p, TOML_ARRAY, depth, &at, &a);
	if (rc)
		return rc;
	advance_n(p, 1);
	for (;;) {
		skip_blank(p);
		if (peek(p, 0) == ']')
			break;
		rc = parse_value(p, depth + 1, &item);
		if (rc)
			goto out;
		rc = array_push(a, item);
		if (rc) {
			toml_free(&item->v);
			goto out;
		}
		skip_blank(p);
		if (peek(p, 0) == ']')
			break;
		if (peek(p, 0) != ',') {
			rc = fail_here(p, "expected ',' or ']' after an array item, found %s",
				       found(p, fb));
			goto out;
		}
		advance_n(p, 1);
	}
	advance_n(p, 1);
	*out = a;
	return 0;
out:
	toml_free(&a->v);
	return rc;
}

/* { k = v, ... }; TOML 1.1 allows newlines, comments and a trailing
 * comma between the braces. */
static int parse_inline_table(struct parser *p, int depth, struct node **out)
{
	struct mark at = here(p);
	struct node *t = NULL;
	char fb[16];
	int rc;

	rc = new_node(p, TOML_TABLE, depth, &at, &t);
	if (rc)
		return rc;
	advance_n(p, 1);
	for (;;) {
		skip_blank(p);
		if (peek(p, 0) == '}')
			break;
		rc = parse_keyval(p, t);
		if (rc)
			goto out;
		skip_blank(p);
		if (peek(p, 0) == '}')
			break;
		if (peek(p, 0) != ',') {
			rc = fail_here(p, "expected ',' or '}' in an inline table, found %s",
				       found(p, fb));
			goto out;
		}
		advance_n(p, 1);
	}
	advance_n(p, 1);
	t->flags = NODE_INLINE;
	*out = t;
	return 0;
out:
	toml_free(&t->v);
	return rc;
}

static int parse_value(struct parser *p, int depth, struct node **out)
{
	struct mark at = here(p);
	struct buf b = { 0 };
	int rc;

	switch (peek(p, 0)) {
	case '"':
	case '\'':
		rc = parse_string(p, true, &b);
		if (rc) {
			free(b.p);
			return rc;
		}
		return new_text_node(p, TOML_STRING, depth, &at, &b, out);
	case '[':
		return parse_array(p, depth, out);
	case '{':
		return parse_inline_table(p, depth, out);
	default:
		return parse_scalar(p, depth, out);
	}
}

/* ---- document ---- */

static int parse_document(struct parser *p, struct node *root)
{
	struct node *cur = root;
	char fb[16];
	int rc = 0;

	for (;;) {
		skip_ws(p);
		switch (peek(p, 0)) {
		case -1:
			return 0;
		case '[':
			rc = parse_header(p, root, &cur);
			break;
		case '#':
		case '\r':
		case '\n':
			break;
		default:
			rc = parse_keyval(p, cur);
			break;
		}
		if (rc)
			return rc;
		skip_ws(p);
		skip_comment(p);
		if (peek(p, 0) >= 0 && !eat_newline(p))
			return fail_here(p, "expected a newline, found %s", found(p, fb));
	}
}

/* Offset of the first byte that may appear nowhere in a document, or
 * len; *why says what is wrong with it. */
static size_t find_bad_byte(const char *text, size_t len, char *why, size_t why_len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		uint32_t cp, min;
		size_t more;

		if (c < 0x80) {
			if (c == '\r' && (i + 1 == len || s[i + 1] != '\n')) {
				snprintf(why, why_len, "carriage return not followed by a line feed");
				return i;
			}
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
				snprintf(why, why_len, "control character U+%04X is not allowed", c);
				return i;
			}
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			goto bad;
		}
		if (len - i <= more)
			goto bad;
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			goto bad;
		i += more + 1;
	}
	return len;
bad:
	snprintf(why, why_len, "invalid UTF-8");
	return i;
}

int toml_parse(const char *text, size_t len, struct toml_value **out, struct toml_error *err)
{
	struct parser p = { .s = text, .line = 1, .err = err };
	struct node *root = NULL;
	struct mark start;
	char why[sizeof(err->msg)];
	size_t bad, bom;
	int rc;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	bad = find_bad_byte(text, len, why, sizeof(why));
	p.end = bad;
	bom = bad >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	p.pos = p.line_start = bom;	/* a byte order mark, only at the start */
	start = here(&p);
	rc = new_node(&p, TOML_TABLE, 0, &start, &root);
	if (!rc)
		rc = parse_document(&p, root);

	/* The parser stopped at the bad byte: report it, unless a real
	 * error came before it. */
	if (bad < len && (rc == 0 || (rc == -EINVAL && p.err_pos >= bad))) {
		p.pos = p.line_start = bom;
		p.line = 1;
		while (p.pos < bad)
			advance(&p);
		start = here(&p);
		rc = fail(&p, &start, "%s", why);
	}
	if (rc == -ENOMEM) {
		err->line = p.line;
		err->col = here(&p).col;
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	}
	if (p.c_locale)
		freelocale(p.c_locale);
	if (rc) {
		if (root)
			toml_free(&root->v);
		return rc;
	}
	*out = &root->v;
	return 0;
}

const struct toml_value *toml_table_get(const struct toml_value *t, const char *key)
{
	const struct toml_keyval *kv;

	if (!t || t->type != TOML_TABLE)
		return NULL;
	kv = table_find((const struct node *)t, key, strlen(key));
	return kv ? kv->value : NULL;
}

const char *toml_type_name(enum toml_type type)
{
	switch (type) {
	case TOML_STRING: return "string";
	case TOML_INTEGER: return "integer";
	case TOML_FLOAT: return "float";
	case TOML_BOOL: return "boolean";
	case TOML_DATETIME: return "offset date-time";
	case TOML_DATETIME_LOCAL: return "local date-time";
	case TOML_DATE_LOCAL: return "local date";
	case TOML_TIME_LOCAL: return "local time";
	case TOML_ARRAY: return "array";
	case TOML_TABLE: return "table";
	}
	return "unknown";
}
