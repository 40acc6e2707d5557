/*
 * source.c: what every source shares: dispatch by kind, paths, the spec
 * hash that decides whether a stored resolution still applies, and the
 * content key that names a file in the cache.
 */
#include "modelfs/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/hexhash.h"

int source_url_resolve(struct http_client *c, const struct config *cfg,
		       const struct config_entry *e, struct source_file **files, size_t *n);
int source_url_refresh(struct http_client *c, const struct config *cfg, struct source_file *f);

int source_join_path(const char *dir, const char *name, char **out)
{
	int n = dir && dir[0] ? asprintf(out, "%s/%s", dir, name) : asprintf(out, "%s", name);

	return n < 0 ? -ENOMEM : 0;
}

/* An entry of a source this build cannot fetch yet: listed with a reason. */
static int unsupported(const struct config_entry *e, struct source_file **files, size_t *n)
{
	struct source_file *f = calloc(1, sizeof(*f));
	char *reason = NULL;

	if (!f)
		return -ENOMEM;
	f->entry = e;
	f->size = e->size;
	f->mtime = -1;
	f->err = -ENOTSUP;
	if (asprintf(&reason, "%s entries are not supported yet by this modelfs",
		     config_source_name(e->source)) < 0 ||
	    (e->filename && source_join_path(e->dir, e->filename, &f->path)) ||
	    (!e->filename && source_join_path(e->dir, e->name, &f->path))) {
		free(reason);
		source_files_free(f, 1);
		return -ENOMEM;
	}
	f->error = reason;
	*files = f;
	*n = 1;
	return 0;
}

int source_resolve(struct http_client *c, const struct config *cfg,
		   const struct config_entry *e, struct source_file **files, size_t *n)
{
	*files = NULL;
	*n = 0;
	switch (e->source) {
	case CONFIG_SOURCE_URL:
		return source_url_resolve(c, cfg, e, files, n);
	default:
		return unsupported(e, files, n);
	}
}

int source_refresh(struct http_client *c, const struct config *cfg, struct source_file *f)
{
	switch (f->entry->source) {
	case CONFIG_SOURCE_URL:
		return source_url_refresh(c, cfg, f);
	default:
		return -ENOTSUP;
	}
}

static void spec_add(struct hexhash *h, const char *field, const char *value)
{
	hexhash_update(h, field, strlen(field) + 1);
	if (value)
		hexhash_update(h, value, strlen(value) + 1);
	else
		hexhash_update(h, "", 1);
}

void source_spec_hash(const struct config_entry *e, char out[65])
{
	struct hexhash *h;
	char size[32];
	size_t qlen = e->url ? strcspn(e->url, "?#") : 0;
	char *url = e->url ? strndup(e->url, qlen) : NULL;

	if (hexhash_new(&h) != 0) {
		memset(out, '0', 64);
		out[64] = '\0';
		free(url);
		return;
	}
	snprintf(size, sizeof(size), "%lld", (long long)e->size);
	spec_add(h, "source", config_source_name(e->source));
	spec_add(h, "url", url);
	spec_add(h, "repo", e->repo);
	spec_add(h, "revision", e->revision);
	spec_add(h, "file", e->file);
	spec_add(h, "model_id", e->model_id);
	spec_add(h, "version_id", e->version_id);
	spec_add(h, "file_id", e->file_id);
	spec_add(h, "filename", e->filename);
	spec_add(h, "sha256", e->sha256);
	spec_add(h, "size", size);
	hexhash_final(h, out);
	free(url);
}

int source_content_key(const struct source_file *f, char **out)
{
	char hash[65], *text = NULL;
	const char *url = f->entry->url ? f->entry->url : f->path;
	int rc;

	if (f->sha256)
		return asprintf(out, "sha256:%s", f->sha256) < 0 ? -ENOMEM : 0;
	/* The URL without its query: a presigned link changes its signature
	 * on every resolution, not its content. */
	if (asprintf(&text, "%.*s\n%s\n%lld", (int)strcspn(url, "?#"), url,
		     f->validator ? f->validator : "", (long long)f->size) < 0)
		return -ENOMEM;
	rc = hexhash_sha256(text, strlen(text), hash);
	free(text);
	if (rc)
		return rc;
	return asprintf(out, "url:%s", hash) < 0 ? -ENOMEM : 0;
}

void source_file_clear(struct source_file *f)
{
	free(f->path);
	free(f->validator);
	free(f->sha256);
	free(f->data_url);
	free(f->error);
	memset(f, 0, sizeof(*f));
}

void source_files_free(struct source_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++)
		source_file_clear(&files[i]);
	free(files);
}
