/*
 * source.h: turn a config entry into the files it shows in the mount:
 * their path, size, mtime, validator, expected hash and the URL their
 * bytes come from.
 *
 * (1) Resolution asks the origin once per file (for a plain URL, one GET
 *     of bytes 0-0 that follows redirects) and never downloads the body.
 * (2) data_url may be a signed URL: it lives in memory only, is never
 *     logged unredacted and never stored.
 * (3) An entry whose origin gives a final answer (404, 401, an HTML page,
 *     no Range support) resolves with err and a one-line reason in error;
 *     -EAGAIN means "try later".
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

/* How to ask for a file's bytes: which origin may see credentials, and
 * which ones. Requests to any other host (a CDN, a signed storage URL)
 * carry none of them. */
struct source_auth {
	char *origin_url;		/* scheme://host:port that may see the rest */
	char *authorization;		/* full Authorization value, or NULL; secret */
	const struct config_header *headers;	/* the entry's own; not owned */
	size_t n_headers;
	char *aws_sigv4;		/* "aws:amz:REGION:s3": sign with SigV4, or NULL */
	char *aws_credentials;		/* "KEY:SECRET" for SigV4; secret */
	char *aws_session_token;	/* sent as x-amz-security-token, or NULL; secret */
	char *token_name;		/* where the credential came from ("HF_TOKEN"), never its value */
};

struct source_file {
	const struct config_entry *entry;
	char *path;		/* in the mount: "Stable-diffusion/x.safetensors" */
	char *remote_path;	/* its path at the source (repo path, object key), or NULL */
	int64_t size;		/* bytes; -1 unknown */
	int64_t mtime;		/* from the origin, -1 unknown */
	char *validator;	/* strong ETag or Last-Modified (If-Range), or NULL */
	char *revision;		/* what the name was pinned to (a commit, a version id), or NULL */
	char *sha256;		/* expected, lowercase hex, or NULL */
	char *git_sha1;		/* expected git blob SHA-1 when no sha256 is known, or NULL */
	bool hash_fetched;	/* sha256 was learnt from the bytes (a lock file), the
				 * origin states none: the cache key stays the origin's */
	char *data_url;		/* where the bytes are now; secret */
	char **mirror_urls;	/* the same bytes elsewhere, tried in order; NULL-terminated or NULL */
	char *stable_url;	/* an origin URL that names these bytes for good, for a shared
				 * tier (tier.h) to fetch and follow: the Hub's /resolve/ at the
				 * commit, or a URL whose bytes sha256 pins; no secret in it.
				 * NULL: the bytes have no stable name and go to the origin */
	bool stable_by_commit;	/* stable_url's path holds revision (a commit); else
				 * only sha256 names the bytes */
	bool public_bytes;	/* the origin gives these bytes to anyone (a public Hub
				 * repo): a shared tier may have them though auth holds a
				 * token; false when not known */
	struct source_auth auth;
	bool no_range;		/* the origin ignores Range: the file is streamed in order */
	int err;		/* 0, or the -errno of a failed resolution */
	bool gated;		/* err is -EACCES because the model is gated (Hugging Face)
				 * or in early access (CivitAI): access must be asked for */
	char *error;		/* reason when err, safe to log */
};

/* What the resolutions of one config share: each service's token, looked
 * up and validated once (a bad token is one clear error, not a 401 per
 * file). */
struct source_ctx;

int source_ctx_new(const struct config *cfg, struct source_ctx **out);
void source_ctx_free(struct source_ctx *ctx);

/* Resolve e into *files (*n of them). Returns 0 when the entry could be
 * looked at (each file then carries its own err), or -EAGAIN when the
 * origin could not be reached (the caller may reuse an older resolution). */
int source_resolve(struct source_ctx *ctx, struct http_client *c,
		   const struct config_entry *e, struct source_file **files, size_t *n);

/* Fill f's data_url and auth afresh (a signed URL expired, or f came from
 * a stored resolution or a lock): 0 or -errno; -ESTALE when the name now
 * means other bytes (another size, validator, hash or revision), with
 * f->error naming what changed and both values. */
int source_refresh(struct source_ctx *ctx, struct http_client *c, struct source_file *f);

/* The licence the source states for e at revision (a commit), for a
 * lock file: Hugging Face's model card (cardData.license, else a
 * "license:X" tag), one API request. 0 and *out (the caller frees), *out
 * NULL when none is stated or the source has no such notion (CivitAI
 * states permissions, not a licence; URLs and S3 nothing); -errno when
 * the Hub could not tell (-EAGAIN unreachable). */
int source_license(struct source_ctx *ctx, struct http_client *c, const struct config_entry *e,
		   const char *revision, char **out);

/* The line `check` shows for the credential used, e.g. "HF_TOKEN (user
 * alice)" or "none"; into out. */
void source_auth_describe(struct source_ctx *ctx, const struct source_file *f,
			  char *out, size_t outlen);

/* A hash of what the entry asks for (source, URL without query, repo,
 * revision, file, sha256, size): a stored resolution is reused only
 * while this is unchanged. 64 hex + NUL into out. */
void source_spec_hash(const struct config_entry *e, char out[65]);

/* The cache key of a file's content: "sha256:<hex>" when the origin
 * states the hash, "git:<sha1>" for a git blob, else (also when the hash
 * was only learnt from the bytes: hash_fetched) a hash of its URL
 * without query, validator and size, so that a lock's hashing and a
 * mount without the lock share the cached bytes. */
int source_content_key(const struct source_file *f, char **out);
/* f's content key is already what resolving f would make it: a sha256
 * given before any resolution (the config's) names the bytes, and a
 * source that states another one fails the file instead of changing it.
 * So a file whose origin is down can be found in the cache by it. */
bool source_content_key_settled(const struct source_file *f);

/* The path of a file in the mount: dir + "/" + name, or name. */
int source_join_path(const char *dir, const char *name, char **out);

/* A file name a server chose (Content-Disposition, an API's file name),
 * made one safe path component, as modelfs.toml(5) promises: every byte
 * of a character that is not printable (text.h) and every '/' becomes
 * '_'; a name over NAME_MAX (255) bytes is cut on a character boundary,
 * keeping its extension (up to SOURCE_EXT_MAX bytes from the last '.').
 * 0 and *out (the caller frees), *out NULL when nothing usable is left
 * ("", ".", ".."): the entry's own name stands then. -ENOMEM. */
#define SOURCE_EXT_MAX 32
int source_safe_name(const char *raw, char **out);

/* The file name a Content-Disposition header value cd gives
 * (filename*=UTF-8'' preferred over filename=), made safe by
 * source_safe_name(): 0 and *out (the caller frees), *out NULL when cd
 * is NULL, names none, or nothing usable is left of it; -ENOMEM. Used by
 * the url source; public so that it can be tested on its own. */
int source_disposition_name(const char *cd, char **out);

/* The paths of a mount, claimed by its entries' files in config order,
 * so that two entries never show the same path (the first keeps it).
 * Used by the mount and by check alike. Not thread-safe. */
struct source_paths;
int source_paths_new(struct source_paths **out);
void source_paths_free(struct source_paths *p);
/* Claim f's path: 0; -EEXIST when an earlier file has it (f then carries
 * -EEXIST and an error naming that file's entry: it is listed but not in
 * the mount); -ENOMEM. A file that failed to resolve (err other than
 * -EAGAIN) claims nothing and keeps its own error: 0. p keeps a copy of
 * the path; entries must outlive p. */
int source_paths_claim(struct source_paths *p, struct source_file *f);

/* Copy src's auth into dst (dst's old one freed): 0 or -ENOMEM. */
int source_auth_copy(struct source_auth *dst, const struct source_auth *src);
void source_auth_clear(struct source_auth *a);
void source_file_clear(struct source_file *f);
void source_files_free(struct source_file *files, size_t n);

/* The date of the commit a Hugging Face file was resolved at (the
 * Hub's lastModified at that revision): an mtime the same on every box.
 * Asked once a run per repo and commit. 0 and *date (-1 when the Hub
 * gives none); -ENOTSUP for other sources; -errno when it could not be
 * asked. */
int source_commit_date(struct source_ctx *ctx, struct http_client *c, const struct source_file *f,
		       int64_t *date);

#endif
