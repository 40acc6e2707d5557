/*
 * model_catalog.c: the built-in model catalog (model_catalog.h), read
 * with the TOML parser the configs use.
 */
#include "modelfs/model_catalog.h"
#include "modelfs/readfile.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelfs/config.h"
#include "modelfs/text.h"
#include "modelfs/toml.h"
#include "modelfs_config.h"

#define CATALOG_MAX (1 << 20)

const char *model_catalog_path(char *buf, size_t len)
{
	const char *env = getenv("MODELFS_CATALOG");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && env[0]) {
		snprintf(buf, len, "%s", env);
		return buf;
	}
	/* A program run from its build folder reads the tree's own data. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, len, "%s/../conf/catalog.toml", exe);
			if (access(buf, R_OK) == 0 && access(MODELFS_CATALOG_FILE, R_OK) != 0)
				return buf;
		}
	}
	snprintf(buf, len, "%s", MODELFS_CATALOG_FILE);
	return buf;
}

struct reader {
	const char *name;
	struct model_catalog_error *err;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct reader *r, const struct toml_value *at, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err->msg, sizeof(r->err->msg), "%s:%d:%d: ", r->name,
			 at ? at->line : 1, at ? at->col : 1);

	va_start(ap, fmt);
	vsnprintf(r->err->msg + n, sizeof(r->err->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A catalog name: lowercase letters, digits, '.' and '-'. */
static bool valid_model_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && !strchr(".-", *s))
			return false;
	return true;
}

static int take_string(struct reader *r, const struct toml_keyval *kv, char **out)
{
	if (kv->value->type != TOML_STRING || strlen(kv->value->u.str.ptr) != kv->value->u.str.len ||
	    !kv->value->u.str.len)
		return fail(r, kv->value, "%s must be a non-empty string", kv->key);
	free(*out);
	*out = strdup(kv->value->u.str.ptr);
	return *out ? 0 : -ENOMEM;
}

static int read_model(struct reader *r, const struct toml_value *t, struct catalog_model *m)
{
	static const char *const required[] = { "name", "title", "category", "repo", "file",
						"revision", "license", "gated" };
	bool seen[8] = { false };
	int rc = 0;

	m->size = -1;
	if (t->type != TOML_TABLE)
		return fail(r, t, "each model is a [[model]] table");
	for (size_t i = 0; rc == 0 && i < t->u.table.len; i++) {
		const struct toml_keyval *kv = &t->u.table.items[i];
		const char *k = kv->key;
		char **field = !strcmp(k, "name") ? &m->name : !strcmp(k, "title") ? &m->title
			     : !strcmp(k, "category") ? &m->category : !strcmp(k, "repo") ? &m->repo
			     : !strcmp(k, "file") ? &m->file : !strcmp(k, "revision") ? &m->revision
			     : !strcmp(k, "license") ? &m->license
			     : !strcmp(k, "sha256") ? &m->sha256 : NULL;

		for (size_t q = 0; q < 8; q++)
			seen[q] |= strcmp(required[q], k) == 0;
		if (field) {
			rc = take_string(r, kv, field);
		} else if (strcmp(k, "gated") == 0) {
			if (kv->value->type != TOML_BOOL)
				return fail(r, kv->value, "gated must be true or false");
			m->gated = kv->value->u.boolean;
		} else if (strcmp(k, "size") == 0) {
			if (kv->value->type != TOML_INTEGER || kv->value->u.integer <= 0)
				return fail(r, kv->value, "size must be a positive integer (bytes)");
			m->size = kv->value->u.integer;
		} else {
			return fail(r, kv->value, "unknown key %s in a model (name, title, category, "
				    "repo, file, revision, license, gated, size, sha256)", k);
		}
	}
	for (size_t q = 0; rc == 0 && q < 8; q++)
		if (!seen[q])
			return fail(r, t, "a model lacks %s", required[q]);
	if (rc)
		return rc;
	if (!valid_model_name(m->name))
		return fail(r, t, "model name \"%.60s\" must be lowercase letters, digits, '.' and '-'",
			    m->name);
	if (!text_is_hex(m->revision, 40, true))
		return fail(r, t, "%s: revision must be a commit (40 lowercase hex), not a branch",
			    m->name);
	if (m->sha256 && !text_is_hex(m->sha256, 64, true))
		return fail(r, t, "%s: sha256 must be 64 lowercase hex", m->name);
	if (!config_valid_repo(m->repo) || !config_valid_repo_path(m->file) || strstr(m->file, ".."))
		return fail(r, t, "%s: repo must be ORG/NAME and file a path inside it", m->name);
	return 0;
}

int model_catalog_parse(const char *text, size_t len, const char *name,
			struct model_catalog **out, struct model_catalog_error *err)
{
	struct reader r = { .name = name, .err = err };
	struct model_catalog *c = calloc(1, sizeof(*c));
	struct toml_value *root = NULL;
	const struct toml_value *models = NULL;
	struct toml_error terr;
	int rc;

	*out = NULL;
	err->msg[0] = '\0';
	if (!c)
		return -ENOMEM;
	rc = toml_parse(text, len, &root, &terr);
	if (rc == -EINVAL) {
		snprintf(err->msg, sizeof(err->msg), "%s:%d:%d: %s", name, terr.line, terr.col,
			 terr.msg);
		goto out;
	}
	if (rc)
		goto out;
	for (size_t i = 0; i < root->u.table.len; i++) {
		if (strcmp(root->u.table.items[i].key, "model") != 0) {
			rc = fail(&r, root->u.table.items[i].value, "unknown key %s (the catalog is "
				  "[[model]] tables)", root->u.table.items[i].key);
			goto out;
		}
		models = root->u.table.items[i].value;
	}
	if (!models || models->type != TOML_ARRAY || models->u.array.len == 0) {
		rc = fail(&r, models, "the catalog has no [[model]]");
		goto out;
	}
	c->models = calloc(models->u.array.len, sizeof(*c->models));
	if (!c->models) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < models->u.array.len; i++) {
		c->n++;		/* counted first: a half-read model is freed */
		rc = read_model(&r, models->u.array.items[i], &c->models[i]);
		for (size_t k = 0; rc == 0 && k < i; k++)
			if (strcmp(c->models[k].name, c->models[i].name) == 0)
				rc = fail(&r, models->u.array.items[i], "model %s is listed twice",
					  c->models[i].name);
		if (rc)
			goto out;
	}
out:
	toml_free(root);
	if (rc) {
		model_catalog_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int model_catalog_load(const char *path, struct model_catalog **out,
		       struct model_catalog_error *err)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	rc = read_small_file(path, CATALOG_MAX, 0, &text, &len);
	if (rc == 0)
		rc = model_catalog_parse(text, len, path, out, err);
	else if (rc == -ENOENT || rc == -EACCES)
		snprintf(err->msg, sizeof(err->msg), "%s: %s (set MODELFS_CATALOG to the catalog "
			 "file)", path, strerror(-rc));
	else
		snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(-rc));
	free(text);
	return rc;
}

void model_catalog_free(struct model_catalog *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct catalog_model *m = &c->models[i];

		free(m->name);
		free(m->title);
		free(m->category);
		free(m->repo);
		free(m->file);
		free(m->revision);
		free(m->license);
		free(m->sha256);
	}
	free(c->models);
	free(c);
}

const struct catalog_model *model_catalog_find(const struct model_catalog *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->models[i].name, name) == 0)
			return &c->models[i];
	return NULL;
}
