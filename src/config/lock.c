/*
 * lock.c: lock files (lock.h), read on top of toml.c and written by
 * hand in the same small subset of TOML: basic strings, integers, arrays
 * of strings and arrays of tables. Reading is strict (unknown keys,
 * wrong types, a file without a hash are errors with FILE:LINE:COL) so
 * that a typo can never silently unpin a file; writing sorts first, so
 * the same resolutions always give the same bytes.
 */
#include "modelfs/lock.h"
#include "modelfs/readfile.h"
#include "modelfs/text.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/log.h"
#include "modelfs/toml.h"

#define LOCK_MAX_BYTES (64u << 20)	/* a lock of a million files is ~300 MiB; none is */

/* ---- building --------------------------------------------------------------- */

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static void file_clear(struct lock_file *f)
{
	free(f->path);
	free(f->remote_path);
	free(f->file_id);
	free(f->sha256);
	free(f->git_sha1);
	free(f->etag);
	memset(f, 0, sizeof(*f));
}

void lock_entry_clear(struct lock_entry *e)
{
	free(e->id);
	free(e->repo);
	free(e->repo_type);
	free(e->revision);
	free(e->file);
	strv_free(e->include);
	strv_free(e->exclude);
	free(e->commit);
	free(e->model_id);
	free(e->version_id);
	free(e->url);
	free(e->license);
	for (size_t i = 0; i < e->n_files; i++)
		file_clear(&e->files[i]);
	free(e->files);
	memset(e, 0, sizeof(*e));
}

void lock_free(struct lock *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n_entries; i++)
		lock_entry_clear(&l->entries[i]);
	free(l->entries);
	free(l->path);
	free(l);
}

int lock_entry_add(struct lock *l, const char *id, struct lock_entry **out)
{
	struct lock_entry *grown = realloc(l->entries, (l->n_entries + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	l->entries = grown;
	*out = &grown[l->n_entries];
	memset(*out, 0, sizeof(**out));
	(*out)->id = strdup(id);
	if (!(*out)->id)
		return -ENOMEM;
	l->n_entries++;
	return 0;
}

int lock_file_add(struct lock_entry *e, const char *path, struct lock_file **out)
{
	struct lock_file *grown = realloc(e->files, (e->n_files + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	e->files = grown;
	*out = &grown[e->n_files];
	memset(*out, 0, sizeof(**out));
	(*out)->size = -1;
	(*out)->mtime = -1;
	(*out)->path = strdup(path);
	if (!(*out)->path)
		return -ENOMEM;
	e->n_files++;
	return 0;
}

void lock_entry_remove(struct lock *l, struct lock_entry *e)
{
	size_t i = (size_t)(e - l->entries);

	if (i >= l->n_entries)
		return;
	lock_entry_clear(e);
	memmove(&l->entries[i], &l->entries[i + 1], (l->n_entries - i - 1) * sizeof(*e));
	l->n_entries--;
}

struct lock_entry *lock_find(const struct lock *l, const char *id)
{
	for (size_t i = 0; l && i < l->n_entries; i++)
		if (strcmp(l->entries[i].id, id) == 0)
			return &l->entries[i];
	return NULL;
}

static int dup_field(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -ENOMEM : 0;
}

static int dup_strv(char ***dst, char *const *src)
{
	size_t n = 0;

	strv_free(*dst);
	*dst = NULL;
	if (!src)
		return 0;
	while (src[n])
		n++;
	*dst = calloc(n + 1, sizeof(**dst));
	for (size_t i = 0; *dst && i < n; i++)
		if (!((*dst)[i] = strdup(src[i])))
			return -ENOMEM;		/* NULL-terminated so far: freed with e */
	return *dst ? 0 : -ENOMEM;
}

/* The URL as a lock shows it: as written, without query or userinfo. */
static char *public_url(const struct config_entry *ce)
{
	const char *u = ce->url_written ? ce->url_written : ce->url;

	return u ? log_url_public(u) : NULL;
}

int lock_entry_set_spec(struct lock_entry *e, const struct config_entry *ce)
{
	char *url = public_url(ce);
	int rc;

	if ((ce->url_written || ce->url) && !url)
		return -ENOMEM;
	e->source = ce->source;
	free(e->url);
	e->url = url;
	rc = dup_field(&e->repo, ce->repo);
	if (rc == 0)
		rc = dup_field(&e->repo_type, ce->repo ? ce->repo_type : NULL);
	if (rc == 0)
		rc = dup_field(&e->revision, ce->repo ? ce->revision : NULL);
	if (rc == 0)
		rc = dup_field(&e->file, ce->file);
	if (rc == 0)
		rc = dup_strv(&e->include, ce->include);
	if (rc == 0)
		rc = dup_strv(&e->exclude, ce->exclude);
	if (rc == 0)
		rc = dup_field(&e->model_id, ce->model_id);
	if (rc == 0 && ce->version_id)
		rc = dup_field(&e->version_id, ce->version_id);
	return rc;
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_strv(char *const *a, char *const *b)
{
	size_t i = 0;

	for (; a && b && a[i] && b[i]; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return (!a || !a[i]) && (!b || !b[i]);
}

bool lock_entry_matches(const struct lock_entry *e, const struct config_entry *ce, char *why,
			size_t whylen)
{
	char *url = public_url(ce);
	const char *field = NULL, *was = NULL, *now = NULL;

	if (e->source != ce->source) {
		field = "source";
		was = config_source_name(e->source);
		now = config_source_name(ce->source);
	} else if (!same(e->url, url)) {
		field = "url", was = e->url, now = url;
	} else if (!same(e->repo, ce->repo)) {
		field = "repo", was = e->repo, now = ce->repo;
	} else if (ce->repo && !same(e->repo_type, ce->repo_type)) {
		field = "repo_type", was = e->repo_type, now = ce->repo_type;
	} else if (ce->repo && !same(e->revision, ce->revision)) {
		field = "revision", was = e->revision, now = ce->revision;
	} else if (!same(e->file, ce->file)) {
		field = "file", was = e->file, now = ce->file;
	} else if (!same_strv(e->include, ce->include) || !same_strv(e->exclude, ce->exclude)) {
		field = "include/exclude", was = "other patterns", now = "these";
	} else if (!same(e->model_id, ce->model_id)) {
		field = "model_id", was = e->model_id, now = ce->model_id;
	} else if (ce->version_id && !same(e->version_id, ce->version_id)) {
		field = "version_id", was = e->version_id, now = ce->version_id;
	}
	if (field)
		snprintf(why, whylen, "%s: the lock has %s, the config %s", field,
			 was ? was : "none", now ? now : "none");
	free(url);
	return field == NULL;
}

/* ---- reading ------------------------------------------------------------------ */

struct reader {
	const char *name;
	struct lock_error *err;
};

__attribute__((format(printf, 4, 5)))
static int fail(struct reader *r, int line, int col, const char *fmt, ...)
{
	size_t size = sizeof(r->err->msg);
	va_list ap;
	int n;

	if (line > 0)
		n = snprintf(r->err->msg, size, "%s:%d:%d: ", r->name, line, col);
	else
		n = snprintf(r->err->msg, size, "%s: ", r->name);
	if (n < 0 || (size_t)n >= size)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(r->err->msg + n, size - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A string value with no NUL in it, copied into *dst: 0 or an error. */
static int take_string(struct reader *r, const struct toml_keyval *kv, char **dst)
{
	const struct toml_value *v = kv->value;

	if (v->type != TOML_STRING)
		return fail(r, v->line, v->col, "%s must be a string, not %s", kv->key,
			    toml_type_name(v->type));
	if (strlen(v->u.str.ptr) != v->u.str.len || v->u.str.len == 0)
		return fail(r, v->line, v->col, "%s must be a non-empty string without NUL", kv->key);
	return dup_field(dst, v->u.str.ptr);
}

static int take_strings(struct reader *r, const struct toml_keyval *kv, char ***dst)
{
	const struct toml_value *v = kv->value;
	size_t n = v->type == TOML_ARRAY ? v->u.array.len : 0;

	if (v->type != TOML_ARRAY)
		return fail(r, v->line, v->col, "%s must be an array of strings, not %s", kv->key,
			    toml_type_name(v->type));
	strv_free(*dst);
	*dst = calloc(n + 1, sizeof(**dst));
	if (!*dst)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct toml_value *it = v->u.array.items[i];

		if (it->type != TOML_STRING || strlen(it->u.str.ptr) != it->u.str.len)
			return fail(r, it->line, it->col, "%s must hold strings only", kv->key);
		if (!((*dst)[i] = strdup(it->u.str.ptr)))
			return -ENOMEM;
	}
	return 0;
}

/* modified = 2026-01-15T10:00:00Z: an offset date-time in UTC, as
 * lock_write() puts it (seconds are all a mtime keeps). */
static int read_modified(struct reader *r, const struct toml_value *v, int64_t *out)
{
	const char *s = v->type == TOML_DATETIME ? v->u.str.ptr : "";
	const char *zone = strlen(s) >= 19 ? s + 19 : "";

	*out = text_iso_time(s);
	if (*out < 0 || (strcmp(zone, "Z") != 0 && strcmp(zone, "+00:00") != 0))
		return fail(r, v->line, v->col, "modified must be a UTC date-time such as "
			    "2026-01-15T10:00:00Z");
	return 0;
}

static int read_file(struct reader *r, const struct toml_value *t, struct lock_entry *e)
{
	struct lock_file *f;
	const struct toml_value *pv = toml_table_get(t, "path");
	bool have_size = false;
	int rc;

	if (t->type != TOML_TABLE)
		return fail(r, t->line, t->col, "entry %s: file must be a table", e->id);
	if (!pv || pv->type != TOML_STRING || !pv->u.str.len)
		return fail(r, t->line, t->col, "entry %s: a file without a path", e->id);
	rc = lock_file_add(e, pv->u.str.ptr, &f);
	if (rc)
		return rc;
	f->line = t->line;
	f->col = t->col;
	for (size_t i = 0; i < t->u.table.len && rc == 0; i++) {
		const struct toml_keyval *kv = &t->u.table.items[i];
		const struct toml_value *v = kv->value;
		const char *k = kv->key;

		if (strcmp(k, "path") == 0)
			rc = take_string(r, kv, &f->path);
		else if (strcmp(k, "remote_path") == 0)
			rc = take_string(r, kv, &f->remote_path);
		else if (strcmp(k, "file_id") == 0)
			rc = take_string(r, kv, &f->file_id);
		else if (strcmp(k, "etag") == 0)
			rc = take_string(r, kv, &f->etag);
		else if (strcmp(k, "modified") == 0)
			rc = read_modified(r, v, &f->mtime);
		else if (strcmp(k, "size") == 0) {
			if (v->type != TOML_INTEGER || v->u.integer < 0)
				return fail(r, v->line, v->col, "size must be a non-negative integer");
			f->size = v->u.integer;
			have_size = true;
		} else if (strcmp(k, "sha256") == 0 || strcmp(k, "git_sha1") == 0) {
			bool sha = k[0] == 's';

			rc = take_string(r, kv, sha ? &f->sha256 : &f->git_sha1);
			if (rc == 0 && !text_is_hex(sha ? f->sha256 : f->git_sha1, sha ? 64 : 40, true))
				return fail(r, v->line, v->col, "%s must be %d lowercase hex digits",
					    k, sha ? 64 : 40);
		} else if (strcmp(k, "hash_from") == 0) {
			char *from = NULL;

			rc = take_string(r, kv, &from);
			if (rc == 0 && strcmp(from, "source") != 0 && strcmp(from, "lock") != 0)
				rc = fail(r, v->line, v->col, "hash_from must be \"source\" or "
					  "\"lock\", not \"%s\"", from);
			f->hash_fetched = from && strcmp(from, "lock") == 0;
			free(from);
		} else {
			return fail(r, kv->line, kv->col, "unknown key \"%.60s\" in a file of "
				    "entry %s", k, e->id);
		}
	}
	if (rc)
		return rc;
	if (!have_size)
		return fail(r, t->line, t->col, "%s: no size", f->path);
	if (!f->sha256 && !f->git_sha1)
		return fail(r, t->line, t->col, "%s: no sha256 or git_sha1; every locked file has "
			    "a hash (run modelfs lock --update %s)", f->path, e->id);
	if (f->sha256 && f->git_sha1)
		return fail(r, t->line, t->col, "%s: give sha256 or git_sha1, not both", f->path);
	return 0;
}

static int read_source(struct reader *r, const struct toml_value *v, enum config_source *out)
{
	for (int s = CONFIG_SOURCE_URL; s <= CONFIG_SOURCE_S3; s++)
		if (strcmp(v->u.str.ptr, config_source_name((enum config_source)s)) == 0) {
			*out = (enum config_source)s;
			return 0;
		}
	return fail(r, v->line, v->col, "unknown source \"%.60s\"", v->u.str.ptr);
}

static int read_entry(struct reader *r, struct lock *l, const struct toml_value *t)
{
	const struct toml_value *idv = toml_table_get(t, "id"), *src = toml_table_get(t, "source");
	struct lock_entry *e;
	int rc;

	if (t->type != TOML_TABLE)
		return fail(r, t->line, t->col, "entry must be a table");
	if (!idv || idv->type != TOML_STRING || !idv->u.str.len)
		return fail(r, t->line, t->col, "an entry without an id");
	if (lock_find(l, idv->u.str.ptr))
		return fail(r, idv->line, idv->col, "entry %s is locked twice", idv->u.str.ptr);
	if (!src || src->type != TOML_STRING)
		return fail(r, t->line, t->col, "entry %s has no source", idv->u.str.ptr);
	rc = lock_entry_add(l, idv->u.str.ptr, &e);
	if (rc)
		return rc;
	e->line = t->line;
	e->col = t->col;
	rc = read_source(r, src, &e->source);
	for (size_t i = 0; i < t->u.table.len && rc == 0; i++) {
		const struct toml_keyval *kv = &t->u.table.items[i];
		const char *k = kv->key;
		static const struct {
			const char *key;
			size_t off;
		} strs[] = {
#define S(f) { #f, offsetof(struct lock_entry, f) }
			S(repo), S(repo_type), S(revision), S(file), S(commit), S(model_id),
			S(version_id), S(url), S(license),
#undef S
		};
		bool known = false;

		for (size_t s = 0; s < sizeof(strs) / sizeof(strs[0]) && !known; s++)
			if (strcmp(k, strs[s].key) == 0) {
				known = true;
				rc = take_string(r, kv, (char **)((char *)e + strs[s].off));
			}
		if (known || strcmp(k, "id") == 0 || strcmp(k, "source") == 0)
			continue;
		if (strcmp(k, "include") == 0)
			rc = take_strings(r, kv, &e->include);
		else if (strcmp(k, "exclude") == 0)
			rc = take_strings(r, kv, &e->exclude);
		else if (strcmp(k, "files") == 0)
			continue;	/* read_entry_files() */
		else
			rc = fail(r, kv->line, kv->col, "unknown key \"%.60s\" in entry %s", k, e->id);
	}
	if (rc)
		return rc;
	if (e->commit && !text_is_hex(e->commit, 40, true)) {
		const struct toml_value *cv = toml_table_get(t, "commit");

		return fail(r, cv->line, cv->col, "commit must be 40 lowercase hex digits");
	}
	return 0;
}

/* [[entry.files]] arrives as the entry's "files" key: an array of tables. */
static int read_entry_files(struct reader *r, struct lock *l, const struct toml_value *t)
{
	struct lock_entry *e = &l->entries[l->n_entries - 1];
	const struct toml_value *files = NULL;
	int rc = 0;

	for (size_t i = 0; i < t->u.table.len; i++)
		if (strcmp(t->u.table.items[i].key, "files") == 0)
			files = t->u.table.items[i].value;
	if (!files)
		return fail(r, t->line, t->col, "entry %s has no files", e->id);
	if (files->type != TOML_ARRAY)
		return fail(r, files->line, files->col, "files must be an array of tables");
	for (size_t i = 0; i < files->u.array.len && rc == 0; i++)
		rc = read_file(r, files->u.array.items[i], e);
	return rc;
}

int lock_parse(const char *text, size_t len, const char *name, struct lock **out,
	       struct lock_error *err)
{
	struct reader r = { .name = name, .err = err };
	struct toml_value *root = NULL;
	struct toml_error terr;
	const struct toml_value *ver, *entries;
	struct lock *l = NULL;
	int rc;

	*out = NULL;
	rc = toml_parse(text, len, &root, &terr);
	if (rc == -EINVAL)
		return fail(&r, terr.line, terr.col, "%s", terr.msg);
	if (rc)
		return rc;
	l = calloc(1, sizeof(*l));
	if (!l) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < root->u.table.len; i++) {
		const struct toml_keyval *kv = &root->u.table.items[i];

		if (strcmp(kv->key, "lock_version") != 0 && strcmp(kv->key, "entry") != 0) {
			rc = fail(&r, kv->line, kv->col, "unknown key \"%.60s\"", kv->key);
			goto out;
		}
	}
	ver = toml_table_get(root, "lock_version");
	if (!ver) {
		rc = fail(&r, 1, 1, "no lock_version: not a modelfs lock file");
		goto out;
	}
	if (ver->type != TOML_INTEGER || ver->u.integer != LOCK_VERSION) {
		rc = fail(&r, ver->line, ver->col, "lock_version %s is not one this modelfs reads "
			  "(%d)", ver->type == TOML_INTEGER ? "given" : "of the wrong type",
			  LOCK_VERSION);
		goto out;
	}
	entries = toml_table_get(root, "entry");
	if (entries && entries->type != TOML_ARRAY) {
		rc = fail(&r, entries->line, entries->col, "entry must be an array of tables");
		goto out;
	}
	for (size_t i = 0; entries && i < entries->u.array.len && rc == 0; i++) {
		rc = read_entry(&r, l, entries->u.array.items[i]);
		if (rc == 0)
			rc = read_entry_files(&r, l, entries->u.array.items[i]);
	}
out:
	toml_free(root);
	if (rc) {
		lock_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int lock_load(const char *path, struct lock **out, struct lock_error *err)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	rc = read_small_file(path, LOCK_MAX_BYTES, READFILE_REGULAR_ONLY, &text, &len);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "%s: %s", path,
			 rc == -EFBIG ? "too large for a lock file"
			 : rc == -EISDIR || rc == -EINVAL ? "not a file" : strerror(-rc));
		return rc;
	}
	rc = lock_parse(text, len, path, out, err);
	if (rc == 0 && !((*out)->path = strdup(path))) {
		lock_free(*out);
		*out = NULL;
		rc = -ENOMEM;
	}
	free(text);
	return rc;
}

/* ---- writing ------------------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct lock_entry *)a)->id, ((const struct lock_entry *)b)->id);
}

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct lock_file *)a)->path, ((const struct lock_file *)b)->path);
}

/* A TOML basic string: quotes, backslashes and control characters escaped. */
static void put_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void put_key(FILE *out, const char *indent, const char *key, const char *value)
{
	if (!value)
		return;
	fprintf(out, "%s%s = ", indent, key);
	put_str(out, value);
	fputc('\n', out);
}

static void put_strv(FILE *out, const char *key, char *const *v)
{
	if (!v)
		return;
	fprintf(out, "%s = [", key);
	for (size_t i = 0; v[i]; i++) {
		fputs(i ? ", " : "", out);
		put_str(out, v[i]);
	}
	fputs("]\n", out);
}

static void put_modified(FILE *out, int64_t mtime)
{
	time_t t = (time_t)mtime;
	struct tm tm;
	char date[32];

	if (mtime >= 0 && gmtime_r(&t, &tm) && strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm))
		fprintf(out, "  modified = %s\n", date);
}

static void put_entry(FILE *out, const struct lock_entry *e)
{
	fputs("\n[[entry]]\n", out);
	put_key(out, "", "id", e->id);
	put_key(out, "", "source", config_source_name(e->source));
	put_key(out, "", "repo", e->repo);
	put_key(out, "", "repo_type", e->repo_type);
	put_key(out, "", "revision", e->revision);
	put_key(out, "", "file", e->file);
	put_strv(out, "include", e->include);
	put_strv(out, "exclude", e->exclude);
	put_key(out, "", "commit", e->commit);
	put_key(out, "", "model_id", e->model_id);
	put_key(out, "", "version_id", e->version_id);
	put_key(out, "", "url", e->url);
	put_key(out, "", "license", e->license);
	for (size_t i = 0; i < e->n_files; i++) {
		const struct lock_file *f = &e->files[i];

		fputs("\n  [[entry.files]]\n", out);
		put_key(out, "  ", "path", f->path);
		put_key(out, "  ", "remote_path", f->remote_path);
		put_key(out, "  ", "file_id", f->file_id);
		fprintf(out, "  size = %lld\n", (long long)f->size);
		put_key(out, "  ", "sha256", f->sha256);
		put_key(out, "  ", "git_sha1", f->git_sha1);
		put_key(out, "  ", "hash_from", f->hash_fetched ? "lock" : "source");
		put_key(out, "  ", "etag", f->etag);
		put_modified(out, f->mtime);
	}
}

int lock_write(struct lock *l, FILE *out)
{
	/* qsort() of no elements may still not be given NULL (C11 7.22.5). */
	if (l->n_entries > 1)
		qsort(l->entries, l->n_entries, sizeof(*l->entries), entry_cmp);
	for (size_t i = 0; i < l->n_entries; i++)
		if (l->entries[i].n_files > 1)
			qsort(l->entries[i].files, l->entries[i].n_files,
			      sizeof(*l->entries[i].files), file_cmp);
	fputs("# modelfs lock file: what each entry of the config resolved to, and the size\n"
	      "# and hash of every file. `modelfs mount --lock FILE` serves exactly these;\n"
	      "# `modelfs lock --check` lists what changed at the sources since, and\n"
	      "# `modelfs lock --update ENTRY` pins an entry afresh. Written by modelfs lock.\n",
	      out);
	fprintf(out, "lock_version = %d\n", LOCK_VERSION);
	for (size_t i = 0; i < l->n_entries; i++)
		put_entry(out, &l->entries[i]);
	return ferror(out) ? -EIO : 0;
}

int lock_save(struct lock *l, const char *path)
{
	char tmp[PATH_MAX];
	FILE *out;
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	out = fdopen(fd, "w");
	if (!out) {
		rc = -errno;
		close(fd);
		unlink(tmp);
		return rc;
	}
	fchmod(fd, 0644);	/* mkstemp's 0600 would hide the lock from the team */
	rc = lock_write(l, out);
	if (rc == 0 && (fflush(out) != 0 || fsync(fd) != 0))
		rc = -errno;
	if (fclose(out) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}
