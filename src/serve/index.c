/*
 * index.c: the engine's Hugging Face files as the Hub would list them:
 * repos at commits, each with its files sorted by path, their sizes and
 * the two hashes the Hub gives. An LFS file (the source knows its
 * SHA-256) is stored in git as a pointer; the Hub's "oid"/"blobId" is
 * that pointer's git blob id, which is computed here from the pointer's
 * fixed text, so the tree and model-info answers match the Hub's without
 * asking it. A regular file's blob id is its own, from the resolution.
 * Built before the first request and again when the engine's files
 * change (serve_refresh()); each one read-only once built.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/hexhash.h"
#include "modelfs/log.h"
#include "serve_i.h"

static const char *type_name(const char *repo_type)
{
	if (repo_type && strcmp(repo_type, "dataset") == 0)
		return "dataset";
	if (repo_type && strcmp(repo_type, "space") == 0)
		return "space";
	return "model";
}

/* The git blob id and size of the LFS pointer git stores for a file
 * with this sha256 and size (git-lfs spec v1: three lines, this order). */
static int pointer_blob(const char *sha256, uint64_t size, char **blob, size_t *psize)
{
	struct hexhash *h;
	char pointer[200], hdr[32], hex[65];
	int n, hn;

	n = snprintf(pointer, sizeof(pointer),
		     "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %llu\n", sha256,
		     (unsigned long long)size);
	hn = snprintf(hdr, sizeof(hdr), "blob %d", n);
	if (hexhash_new_sha1(&h) != 0)
		return -ENOMEM;
	hexhash_update(h, hdr, (size_t)hn + 1);		/* with its NUL */
	hexhash_update(h, pointer, (size_t)n);
	hexhash_final(h, hex);
	*blob = strdup(hex);
	*psize = (size_t)n;
	return *blob ? 0 : -ENOMEM;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct hub_file *)a)->path, ((const struct hub_file *)b)->path);
}

static struct hub_pin *pin_for(struct hub_index *x, const char *type, const char *repo,
			       const char *commit)
{
	struct hub_pin *p, *grown;

	for (size_t i = 0; i < x->npins; i++) {
		p = &x->pins[i];
		if (p->type == type && strcmp(p->repo, repo) == 0 && strcmp(p->commit, commit) == 0)
			return p;
	}
	grown = realloc(x->pins, (x->npins + 1) * sizeof(*x->pins));
	if (!grown)
		return NULL;
	x->pins = grown;
	p = &x->pins[x->npins];
	memset(p, 0, sizeof(*p));
	p->type = type;
	p->repo = strdup(repo);
	p->commit = strdup(commit);
	p->revisions = calloc(1, sizeof(*p->revisions));
	if (!p->repo || !p->commit || !p->revisions) {
		free(p->repo);
		free(p->commit);
		free(p->revisions);
		return NULL;
	}
	x->npins++;
	return p;
}

static int add_revision(struct hub_pin *p, const char *rev)
{
	size_t n = 0;
	char **grown;

	while (p->revisions[n]) {
		if (strcmp(p->revisions[n], rev) == 0)
			return 0;
		n++;
	}
	grown = realloc(p->revisions, (n + 2) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	p->revisions = grown;
	p->revisions[n] = strdup(rev);
	p->revisions[n + 1] = NULL;
	return p->revisions[n] ? 0 : -ENOMEM;
}

/* f into x, or left out with a log line when the Hub's names for it are
 * not known yet. 0 or -ENOMEM. */
static int add_file(struct hub_index *x, struct engine_file *f)
{
	const struct config_entry *e = engine_file_entry(f);
	const char *type = type_name(e->repo_type);
	struct engine_origin o;
	struct hub_pin *p;
	struct hub_file *hf, *grown;
	int rc = engine_file_origin(f, &o);

	if (rc)
		return rc;
	if (!o.remote_path || !o.revision || (!o.sha256 && !o.git_sha1)) {
		log_warn("event=serve_skip path=%s reason=\"%s\"", engine_file_path(f),
			 !o.revision ? "not resolved to a commit yet (origin unreachable at start)"
				     : "no hash known to give as its ETag");
		goto out;
	}
	p = pin_for(x, type, e->repo, o.revision);
	if (!p || add_revision(p, e->revision ? e->revision : "main") != 0) {
		rc = -ENOMEM;
		goto out;
	}
	if (hub_pin_file(p, o.remote_path))
		goto out;	/* two entries keep the same file: once is enough */
	grown = realloc(p->files, (p->nfiles + 1) * sizeof(*p->files));
	if (!grown) {
		rc = -ENOMEM;
		goto out;
	}
	p->files = grown;
	hf = &p->files[p->nfiles];
	memset(hf, 0, sizeof(*hf));
	hf->ef = f;
	hf->size = engine_file_size(f);
	hf->path = o.remote_path;
	o.remote_path = NULL;
	if (o.sha256) {
		hf->sha256 = o.sha256;
		o.sha256 = NULL;
		rc = pointer_blob(hf->sha256, hf->size, &hf->blob_id, &hf->pointer_size);
	} else {
		hf->blob_id = o.git_sha1;
		o.git_sha1 = NULL;
	}
	p->nfiles++;
	x->nfiles++;
	/* Kept sorted as it grows: lookups are binary searches. */
	qsort(p->files, p->nfiles, sizeof(*p->files), cmp_file);
out:
	engine_origin_clear(&o);
	return rc;
}

int hub_index_build(struct engine *e, struct hub_index **out)
{
	struct hub_index *x = calloc(1, sizeof(*x));
	int rc = 0;

	if (!x)
		return -ENOMEM;
	for (size_t i = 0, n = engine_nfiles(e); rc == 0 && i < n; i++) {
		struct engine_file *f = engine_file_at(e, i);

		if (engine_file_entry(f)->source == CONFIG_SOURCE_HUGGINGFACE && !engine_file_gone(f))
			rc = add_file(x, f);
	}
	if (rc) {
		hub_index_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

void hub_index_free(struct hub_index *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->npins; i++) {
		struct hub_pin *p = &x->pins[i];

		for (size_t k = 0; k < p->nfiles; k++) {
			free(p->files[k].path);
			free(p->files[k].sha256);
			free(p->files[k].blob_id);
		}
		for (size_t k = 0; p->revisions && p->revisions[k]; k++)
			free(p->revisions[k]);
		free(p->revisions);
		free(p->files);
		free(p->repo);
		free(p->commit);
	}
	free(x->pins);
	free(x);
}

int hub_index_find(const struct hub_index *x, const char *type, const char *repo,
		   const char *rev, const struct hub_pin **pin)
{
	const struct hub_pin *first = NULL;

	for (size_t i = 0; i < x->npins; i++) {
		const struct hub_pin *p = &x->pins[i];

		if (strcmp(p->type, type) != 0 || strcmp(p->repo, repo) != 0)
			continue;
		if (!first)
			first = p;
		if (strcmp(p->commit, rev) == 0)
			goto found;
		for (size_t k = 0; p->revisions[k]; k++)
			if (strcmp(p->revisions[k], rev) == 0)
				goto found;
		continue;
found:
		*pin = p;
		return 0;
	}
	if (!first)
		return -ENXIO;
	/* Clients ask for main unless told otherwise: it means the version
	 * the config pins (the first entry's, when entries pin several). */
	if (strcmp(rev, "main") == 0) {
		*pin = first;
		return 0;
	}
	return -ESRCH;
}

int hub_index_find_sha256(const struct hub_index *x, const char *sha256,
			  const struct hub_pin **pin, const struct hub_file **file)
{
	for (size_t i = 0; i < x->npins; i++)
		for (size_t k = 0; k < x->pins[i].nfiles; k++) {
			const struct hub_file *f = &x->pins[i].files[k];

			if (f->sha256 && strcmp(f->sha256, sha256) == 0) {
				*pin = &x->pins[i];
				*file = f;
				return 0;
			}
		}
	return -ENOENT;
}

int hub_index_find_file(const struct hub_index *x, const struct engine_file *ef,
			const struct hub_pin **pin, const struct hub_file **file)
{
	for (size_t i = 0; i < x->npins; i++)
		for (size_t k = 0; k < x->pins[i].nfiles; k++)
			if (x->pins[i].files[k].ef == ef) {
				*pin = &x->pins[i];
				*file = &x->pins[i].files[k];
				return 0;
			}
	return -ENOENT;
}

const struct hub_file *hub_pin_file(const struct hub_pin *p, const char *path)
{
	struct hub_file key = { .path = (char *)path };

	if (!p->nfiles)
		return NULL;
	return bsearch(&key, p->files, p->nfiles, sizeof(*p->files), cmp_file);
}
