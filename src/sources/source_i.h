/*
 * source_i.h: what the sources share, private to src/sources/. Each
 * source is a file with a struct source_ops; source.c dispatches on the
 * entry's kind.
 */
#ifndef MODELFS_SOURCE_I_H
#define MODELFS_SOURCE_I_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

#include "modelfs/http.h"
#include "modelfs/source.h"

/* One service's credential, looked up and validated once per config.
 * The lock is held while that happens (one request at start-up), so
 * that every resolution of that service waits for the verdict. */
struct source_token {
	pthread_mutex_t lock;
	bool done;			/* protected by lock */
	char *value;			/* NULL: none found; secret; protected by lock */
	char *name;			/* where it came from, e.g. "HF_TOKEN"; protected by lock */
	char *user;			/* whom the service says it is; protected by lock */
	int status;			/* 0 valid (or none), -EACCES refused, -EAGAIN unknown */
	char *error;			/* why it was refused; protected by lock */
};

/* What the Hub said of a repo at a commit, asked once a run however many
 * single files of it are configured (source_hf.c). */
struct source_revision_fact {
	char *key;			/* "repo@commit" */
	int64_t time;			/* the commit's date, -1 unknown */
	bool open;			/* neither gated nor private */
};

struct source_ctx {
	const struct config *cfg;
	struct source_token hf, civitai;
	pthread_mutex_t facts_lock;
	struct source_revision_fact *facts;	/* protected by facts_lock */
	size_t n_facts;
};

/* The fact kept for key: true and *out, or false. */
bool source_fact_get(struct source_ctx *ctx, const char *key, struct source_revision_fact *out);
/* Keep a fact (key copied); best effort. */
void source_fact_put(struct source_ctx *ctx, const char *key, int64_t time, bool open);

/* Finds a single-file entry's file at its origin: 0 (f's own err tells),
 * -EAGAIN (unreachable) or -ENOMEM. */
typedef int (*source_probe_fn)(struct source_ctx *ctx, struct http_client *c,
			       struct source_file *f);

struct source_ops {
	enum config_source kind;
	int (*resolve)(struct source_ctx *ctx, struct http_client *c,
		       const struct config_entry *e, struct source_file **files, size_t *n);
	int (*refresh)(struct source_ctx *ctx, struct http_client *c, struct source_file *f);
	/* Or, for an entry that is one file found by one probe, just this:
	 * resolve gives one file (size and sha256 from the config, its path
	 * from filename or the entry's name), and refresh probes again,
	 * -ESTALE when the name no longer means the same bytes (another
	 * size or validator). */
	source_probe_fn probe;
};

extern const struct source_ops source_url_ops;
extern const struct source_ops source_civitai_ops;
extern const struct source_ops source_s3_ops;
extern const struct source_ops source_hf_ops;

/* A zeroed array of n files for e, each with entry set, size and mtime
 * unknown: 0 or -ENOMEM. */
int source_files_new(const struct config_entry *e, size_t n, struct source_file **out);
/* f's size, mtime and validator (a strong ETag, else Last-Modified, for
 * If-Range) from a probe's answer. */
void source_take_probe(struct source_file *f, const struct http_meta *m);
/* f->mirror_urls: the entry's mirrors as written, URLs of the same bytes
 * (the SHA-256 check at completion holds them to it): 0 or -ENOMEM. */
int source_fill_mirrors(struct source_file *f);
/* Set f->err and f->error from a printf format, redacted (log.h). */
void source_set_error(struct source_file *f, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The token slot's value, name and status, looked up (and validated by
 * validate, once) under its lock; copies the caller frees. */
int source_token_get(struct source_token *t,
		     int (*lookup)(struct source_token *t),
		     int (*validate)(struct source_ctx *ctx, struct http_client *c,
				     struct source_token *t),
		     struct source_ctx *ctx, struct http_client *c,
		     char **value, char **name, char **error);

/* ---- Hugging Face answers, parsed apart from the requests (source_hf.c) */

/* A file of a repo tree listing. */
struct hf_tree_file {
	char *path;			/* a safe relative path: no "", ".", ".." part */
	int64_t size;			/* the LFS size if any, else size; -1 if neither */
	char *oid;			/* git blob sha1, lowercase, or NULL */
	char *lfs_oid;			/* sha256 of an LFS file, lowercase, or NULL */
};

/* Append the files of one page of /api/models/REPO/tree/REV (json[0..len),
 * a JSON array) to *t (n used, cap allocated; both 0 with *t NULL at the
 * first page). Entries that are not files, or whose path is unusable in
 * the mount, are skipped. 0; -EPROTO when json is not an array; -ENOMEM.
 * *t grows on every return: free it with source_hf_tree_free(*t, *n). */
int source_hf_tree_page(const char *json, size_t len, struct hf_tree_file **t, size_t *n,
			size_t *cap);
void source_hf_tree_free(struct hf_tree_file *t, size_t n);
/* The URL of rel="next" in a Link header value v (NULL is fine), as
 * written between its <>; a new string, or NULL when there is none. */
char *source_hf_link_next(const char *v);

/* ---- CivitAI answers, parsed apart from the requests (source_civitai.c) */

/* The version of a /api/v1/models/ID body that vid names, or with vid 0
 * its first published one (the API lists them newest first); borrowed
 * from model, or NULL when there is none. */
json_t *source_civitai_model_version(const json_t *model, uint64_t vid);
/* From a version body (as /api/v1/model-versions/ID gives it, or one of
 * a model's modelVersions): the file f's entry means (by file_id, then
 * filename, primary, first "Model"; never a guess) into *file, borrowed
 * from version, and f's path (the name made safe), revision,
 * remote_path, mtime and sha256 (64 lowercase hex, or NULL). 0; f's err
 * (-ENOENT, -EPROTO: f->error says why); -ENOMEM. */
int source_civitai_version_file(struct source_file *f, const json_t *version,
				const json_t **file);

#endif
