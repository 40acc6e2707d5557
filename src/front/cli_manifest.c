/*
 * cli_manifest.c: modelfs manifest CONFIG ENTRY [--output FILE]
 *
 * Writes the manifest (manifest.h) of one entry as the config resolves it
 * now: the source pinned (a Hugging Face commit, a CivitAI version), and
 * every file with its sha256. It resolves and hashes as `modelfs lock`
 * does (cli_lock.c): a file whose source states no sha256 (a URL, a Hub
 * file that is no LFS file) is fetched through the cache and hashed. A
 * URL is written in public form (no query, no userinfo), as in a lock:
 * a manifest holds no secret. --output is written whole or not at all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/lock.h"
#include "modelfs/log.h"
#include "modelfs/manifest.h"

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static int set(char **field, const char *value)
{
	if (!value)
		return 0;
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

/* The chosen entries of l must be one model from one place: the same
 * source and the same repo or version. NULL when they are, else why. */
static const char *one_model(const struct lock *l)
{
	const struct lock_entry *a = &l->entries[0];

	if (a->source == CONFIG_SOURCE_S3)
		return "s3 entries have no manifest provider (huggingface, civitai or url)";
	for (size_t i = 1; i < l->n_entries; i++) {
		const struct lock_entry *b = &l->entries[i];

		if (b->source != a->source || (a->repo && (!b->repo || strcmp(a->repo, b->repo))) ||
		    (a->commit && (!b->commit || strcmp(a->commit, b->commit))) ||
		    (a->version_id && (!b->version_id || strcmp(a->version_id, b->version_id))))
			return "the entries named are not one model from one source; name one entry";
	}
	return NULL;
}

/* A file's path inside the model: its repo path for the Hub, its name
 * for the others. */
static const char *artifact_path(const struct lock_entry *e, const struct lock_file *f)
{
	return e->source == CONFIG_SOURCE_HUGGINGFACE && f->remote_path ? f->remote_path
	       : base_name(f->path);
}

static int manifest_of(const struct lock *l, const char *name, struct manifest *m)
{
	const struct lock_entry *first = &l->entries[0];
	size_t n = 0, k = 0;
	int rc;

	for (size_t i = 0; i < l->n_entries; i++)
		n += l->entries[i].n_files;
	m->artifacts = calloc(n ? n : 1, sizeof(*m->artifacts));
	if (!m->artifacts)
		return -ENOMEM;
	m->n_artifacts = n;
	switch (first->source) {
	case CONFIG_SOURCE_HUGGINGFACE:
		m->provider = MANIFEST_HUGGINGFACE;
		rc = set(&m->model_id, first->repo);
		if (!rc)
			rc = set(&m->repo_id, first->repo);
		if (!rc)
			rc = set(&m->revision, first->commit);
		if (!rc)
			rc = set(&m->version, first->commit);
		if (!rc && first->repo_type && strcmp(first->repo_type, "model") != 0)
			rc = set(&m->repo_type, first->repo_type);
		break;
	case CONFIG_SOURCE_CIVITAI:
		m->provider = MANIFEST_CIVITAI;
		rc = set(&m->civitai_model_id, first->model_id);
		if (!rc)
			rc = set(&m->civitai_version_id, first->version_id);
		if (!rc)
			rc = set(&m->version, first->version_id);
		if (!rc)
			rc = set(&m->model_id, name);
		break;
	default:
		m->provider = MANIFEST_URL;
		rc = set(&m->model_id, name);
		break;
	}
	if (!rc)
		rc = set(&m->license, first->license);
	for (size_t i = 0; !rc && i < l->n_entries; i++)
		for (size_t f = 0; !rc && f < l->entries[i].n_files; f++, k++) {
			const struct lock_entry *e = &l->entries[i];
			struct manifest_artifact *a = &m->artifacts[k];

			rc = set(&a->path, artifact_path(e, &e->files[f]));
			if (!rc)
				rc = set(&a->sha256, e->files[f].sha256);
			if (!rc && m->provider == MANIFEST_URL)
				rc = set(&a->url, e->url);
		}
	return rc;
}

static int put_manifest(FILE *f, void *m)
{
	return manifest_write(m, f);
}

/* To path whole, or to stdout. */
static int write_out(struct manifest *m, const char *path)
{
	if (!path)
		return manifest_write(m, stdout) || fflush(stdout) ? -EIO : 0;
	return cli_write_whole(path, put_manifest, m);
}

int cli_manifest(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	struct manifest *m = calloc(1, sizeof(*m));
	struct lock *l = calloc(1, sizeof(*l));
	bool *chosen = NULL;
	size_t nfailed = 0;
	const char *why;
	int rc, code = EXIT_MODEL;

	rc = cli_parse(argc, argv, "manifest", &o);
	if (rc) {
		code = rc > 0 ? 0 : EXIT_USAGE;
		goto out;
	}
	if (o.nargs != 2) {
		fputs("usage: modelfs manifest CONFIG ENTRY [--output FILE]\n", stderr);
		code = EXIT_USAGE;
		goto out;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	rc = cli_load_config(&o, o.args[0], &cfg);
	if (rc) {
		code = cli_config_exit(rc);
		goto out;
	}
	chosen = calloc(cfg->n_entries + 1, sizeof(*chosen));
	if (!chosen || !m || !l)
		goto out;
	if (cli_lock_choose("manifest", cfg, o.args + 1, 1, chosen) != 0) {
		code = EXIT_USAGE;
		goto out;
	}
	cli_catch_interrupt();
	rc = cli_lock_resolve("manifest", cfg, chosen, true, l, &nfailed);
	if (rc || nfailed) {
		fprintf(stderr, "modelfs manifest: %s\n", rc ? strerror(-rc) : "nothing written");
		goto out;
	}
	why = l->n_entries ? one_model(l) : "the entry has no file";
	if (why) {
		fprintf(stderr, "modelfs manifest: %s: %s\n", o.args[1], why);
		code = EXIT_USAGE;
		goto out;
	}
	code = cli_lock_hash("manifest", &o, cfg, l, true);
	if (code)
		goto out;
	rc = manifest_of(l, o.args[1], m);
	if (rc == 0)
		rc = write_out(m, o.output);
	if (rc) {
		fprintf(stderr, "modelfs manifest: cannot write %s: %s\n",
			o.output ? o.output : "the manifest", strerror(-rc));
		code = EXIT_MODEL;
		goto out;
	}
	if (o.output)
		fprintf(stderr, "wrote %s: %zu artifact%s\n", o.output, m->n_artifacts,
			m->n_artifacts == 1 ? "" : "s");
	code = 0;
out:
	manifest_free(m);
	lock_free(l);
	free(chosen);
	config_free(cfg);
	return code;
}
