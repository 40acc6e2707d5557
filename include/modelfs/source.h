/*
 * source.h: turn a config entry into the files it shows in the mount:
 * their path, size, mtime, validator, expected hash and the URL their
 * bytes come from.
 *
 * (1) Resolution asks the origin once per file (for a plain URL, one GET
 *     of bytes 0-0 that follows redirects) and never downloads the body.
 * (2) data_url may be a signed URL: it lives in memory only, is never
 *     logged unredacted and never stored.
 * (3) An entry whose source is not supported yet, or whose origin gives a
 *     final answer (404, 401, an HTML page, no Range support), resolves
 *     with err and a one-line reason in error; -EAGAIN means "try later".
 * Ownership: source_resolve() gives an array the caller frees with
 * source_files_free().
 * Threads: no shared state; each call uses the http client it is given.
 */
#ifndef MODELFS_SOURCE_H
#define MODELFS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/config.h"
#include "modelfs/http.h"

struct source_file {
	const struct config_entry *entry;
	char *path;		/* in the mount: "Stable-diffusion/x.safetensors" */
	int64_t size;		/* bytes; -1 unknown */
	int64_t mtime;		/* from the origin, -1 unknown */
	char *validator;	/* strong ETag or Last-Modified (If-Range), or NULL */
	char *sha256;		/* expected, lowercase hex, or NULL */
	char *data_url;		/* where the bytes are now; secret */
	int err;		/* 0, or the -errno of a failed resolution */
	char *error;		/* reason when err, safe to log */
};

/* Resolve e into *files (*n of them). Returns 0 when the entry could be
 * looked at (each file then carries its own err), or -EAGAIN when the
 * origin could not be reached (the caller may reuse an older resolution). */
int source_resolve(struct http_client *c, const struct config *cfg,
		   const struct config_entry *e, struct source_file **files, size_t *n);

/* Get a fresh data_url for f (a signed URL expired): 0 or -errno. */
int source_refresh(struct http_client *c, const struct config *cfg, struct source_file *f);

/* A hash of what the entry asks for (source, URL without query, repo,
 * revision, file, sha256, size): a stored resolution is reused only
 * while this is unchanged. 64 hex + NUL into out. */
void source_spec_hash(const struct config_entry *e, char out[65]);

/* The cache key of a file's content: "sha256:<hex>" when the hash is
 * known, else a hash of its URL without query, validator and size. */
int source_content_key(const struct source_file *f, char **out);

/* The path of a file in the mount: dir + "/" + name, or name. */
int source_join_path(const char *dir, const char *name, char **out);

void source_file_clear(struct source_file *f);
void source_files_free(struct source_file *files, size_t n);

#endif
