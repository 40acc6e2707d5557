/*
 * model_catalog.h: the built-in catalog of popular models (conf/
 * catalog.toml, installed as DATADIR/modelfs/catalog.toml): for each, a
 * Hugging Face file pinned to a commit, its category, licence, whether the
 * Hub gates it, and its size and sha256 where a public source states them.
 * An entry { catalog = "NAME" } is that source entry (config.c).
 *
 *   [[model]]
 *   name = "sdxl-base"              [a-z0-9.-], unique
 *   title = "..."
 *   category = "checkpoints"        the default for `modelfs catalog`
 *   repo = "org/name"  file = "path/in/repo"  revision = "<40 hex>"
 *   license = "openrail++"  gated = false
 *   size = 123  sha256 = "<64 hex>" optional
 *
 * (1) The data is checked like a config: an unknown key, a missing one, a
 *     revision that is no commit or a duplicate name is an error naming
 *     FILE:LINE:COL.
 * (2) model_catalog_path(): $MODELFS_CATALOG, else conf/catalog.toml
 *     beside a program run from its build folder, else the installed one.
 * Ownership: model_catalog_load() gives a catalog; model_catalog_free().
 * Threads: no global state; a loaded catalog is read-only.
 */
#ifndef MODELFS_MODEL_CATALOG_H
#define MODELFS_MODEL_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct catalog_model {
	char *name, *title, *category;
	char *repo, *file, *revision;
	char *license;
	bool gated;
	int64_t size;			/* -1 when not stated */
	char *sha256;			/* NULL when not stated */
};

struct model_catalog {
	struct catalog_model *models;
	size_t n;
};

struct model_catalog_error {
	char msg[512];
};

/* The catalog file to read (2), into buf. */
const char *model_catalog_path(char *buf, size_t len);
/* 0; -EINVAL (err filled) for bad data; -errno (err filled) when the file
 * cannot be read. */
int model_catalog_load(const char *path, struct model_catalog **out,
		       struct model_catalog_error *err);
int model_catalog_parse(const char *text, size_t len, const char *name,
			struct model_catalog **out, struct model_catalog_error *err);
void model_catalog_free(struct model_catalog *c);
const struct catalog_model *model_catalog_find(const struct model_catalog *c, const char *name);

#endif
