/*
 * serve_i.h: what the parts of src/serve/ share. Private to src/serve/.
 *
 *   route.c   a request target to what it asks for (no I/O)
 *   index.c   the engine's Hugging Face files as repos at commits
 *   api.c     the JSON answers: model info, tree pages
 *   stream.c  a body from the engine, a chunk at a time
 *   access.c  whether a client may read a repo (the Hub decides, remembered)
 *   ondemand.c repos serve_allow lets clients have that the config lacks
 *   server.c  libmicrohttpd: listening, dispatch, headers, errors
 *
 * Lock order: server.c takes none of its own; a stream's lock is a leaf
 * (nothing is taken while it is held, no engine call is made under it).
 * An index never changes once built, so it is read without a lock: a
 * new one replaces it (serve_refresh()) and the old one is kept until
 * serve_close(), for the requests still using it. server.c's add_lock
 * (one on-demand add at a time) comes before the engine's locks.
 */
#ifndef MODELFS_SERVE_I_H
#define MODELFS_SERVE_I_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "modelfs/engine.h"
#include "modelfs/serve.h"

/* ---- route.c -------------------------------------------------------------- */

enum route_kind {
	ROUTE_RESOLVE,			/* /{repo}/resolve/{rev}/{path} */
	ROUTE_INFO,			/* /api/{types}/{repo}[/revision/{rev}] */
	ROUTE_TREE,			/* /api/{types}/{repo}/tree/{rev}[/{path}] */
};

struct route {
	enum route_kind kind;
	const char *type;		/* "model", "dataset" or "space" (static) */
	char *repo;			/* "org/name", decoded */
	char *rev;			/* decoded; "main" for model info without one */
	char *path;			/* decoded, no leading or trailing '/'; "" for none */
};

/* Split target (the request's path, still percent-encoded, without the
 * query and the server's prefix) into r. 0; -ENOENT when no route
 * matches; -EINVAL for a target the Hub refuses (an encoded '/' in the
 * repo id, a segment "." or ".." after decoding, a NUL, bad escapes);
 * -ENOMEM. On failure r holds nothing to free. */
int route_parse(const char *target, struct route *r);
void route_clear(struct route *r);
/* A mount path from a /files/ target (after "/files/", still encoded):
 * each segment decoded, none empty, ".", ".." or holding a '/'. 0 and
 * *out; -EINVAL; -ENOMEM. */
int route_mount_path(const char *target, char **out);
/* Percent-decode s[0..len) into a new string: 0 or -EINVAL (a bad
 * escape, a NUL) or -ENOMEM. */
int route_unescape(const char *s, size_t len, char **out);

/* ---- index.c -------------------------------------------------------------- */

struct hub_file {
	struct engine_file *ef;
	char *path;			/* in the repo */
	uint64_t size;
	char *sha256;			/* an LFS file's content hash, else NULL */
	char *blob_id;			/* git blob id: the file's, or its LFS pointer's */
	size_t pointer_size;		/* an LFS pointer's size, else 0 */
};

/* One repo at one commit, with the files the config's entries keep. */
struct hub_pin {
	const char *type;		/* "model", "dataset", "space" (static) */
	char *repo;
	char *commit;
	char **revisions;		/* the names entries give it; NULL-terminated */
	struct hub_file *files;		/* sorted by path */
	size_t nfiles;
};

struct hub_index {
	struct hub_pin *pins;		/* in config order */
	size_t npins;
	size_t nfiles;
};

/* Every resolved Hugging Face file of e, grouped by repo and commit. A
 * file whose commit or hash is not known yet is left out (logged). */
int hub_index_build(struct engine *e, struct hub_index **out);
void hub_index_free(struct hub_index *x);
/* The pin rev names in repo: 0 and *pin; -ENXIO for a repo the config
 * does not name, -ESRCH for a revision it does not serve. */
int hub_index_find(const struct hub_index *x, const char *type, const char *repo,
		   const char *rev, const struct hub_pin **pin);
/* path in p, or NULL. */
const struct hub_file *hub_pin_file(const struct hub_pin *p, const char *path);
/* The LFS file whose content hash is sha256 (lowercase hex), in any pin:
 * 0 with *pin and *file; -ENOENT. */
int hub_index_find_sha256(const struct hub_index *x, const char *sha256,
			  const struct hub_pin **pin, const struct hub_file **file);

/* The pin and file of engine file ef: 0, or -ENOENT when ef is not
 * served as a Hub file (another source, or left out). */
int hub_index_find_file(const struct hub_index *x, const struct engine_file *ef,
			const struct hub_pin **pin, const struct hub_file **file);

/* ---- ondemand.c ------------------------------------------------------------ */

struct ondemand;
/* allow: serve_allow's patterns (copied); NULL or empty: *out NULL (off).
 * max: how many repo revisions may be added, and how many may fail to. */
int ondemand_new(struct engine *e, char *const *allow, int max, struct ondemand **out);
void ondemand_free(struct ondemand *o);
/* Whether a client may have repo (of type) fetched on demand; false for
 * o NULL. */
bool ondemand_allowed(const struct ondemand *o, const char *type, const char *repo);
/* Resolve repo at rev and add its files to the engine (network; blocks):
 * 0; -ESRCH a revision that cannot be one; -ENOENT the Hub gave nothing
 * readable (logged); -EDQUOT the bound is reached (logged once);
 * -ENOMEM. The caller refreshes its index after a 0. */
int ondemand_add(struct ondemand *o, const char *type, const char *repo, const char *rev);

/* ---- api.c ---------------------------------------------------------------- */

/* The model info body for p (siblings with size, blobId and lfs when
 * blobs is set). A new reference, or NULL without memory. */
json_t *api_info(const struct hub_pin *p, bool blobs);
/* One page of p's tree under dir ("" for the root) in path order,
 * directories included: entries [start, start + page) into *page_out
 * and the start of the next page, or 0 after the last, into *next.
 * -ENOENT when dir is neither a folder nor a file of p; -ENOMEM. */
int api_tree(const struct hub_pin *p, const char *dir, bool recursive, size_t start,
	     size_t page, json_t **page_out, size_t *next);

/* ---- access.c ------------------------------------------------------------- */

/* hub: the Hub to ask (hf_endpoint); server_token: the access token
 * clients may show instead, or NULL. Both copied. ttl_ms: how long a
 * yes is kept (a no at most a minute); 0: 10 minutes. 0 or -ENOMEM. */
struct access;
int access_new(const char *hub, const char *server_token, int ttl_ms, struct access **out);
void access_free(struct access *a);
/* Whether every client must show the server's access token. */
bool access_required(const struct access *a);
/* Whether token (may be NULL) is the server's access token. */
bool access_server_token(const struct access *a, const char *token);
/* May the client with token (NULL: none) read p? 0 yes; -EACCES the Hub
 * refuses it; -EAGAIN the Hub could not tell (refuse: fail closed);
 * -ENOMEM. Blocks on the Hub at most once per (token, repo) in
 * access.c's memory time. Thread-safe. */
int access_check(struct access *a, const char *token, const struct hub_pin *p);

/* What serve_stats() reads; each field counted with atomics. */
struct serve_counters {
	atomic_uint_fast64_t requests;
	atomic_uint_fast64_t status_class[6];
	atomic_uint_fast64_t bytes_cache;
	atomic_uint_fast64_t bytes_origin;
	atomic_uint_fast64_t bodies_cut;
};

/* ---- stream.c ------------------------------------------------------------- */

/* The body [first, last] of f, read through the engine. Bytes sent are
 * counted into k: as from the cache when the engine answered the chunk
 * at once, on the asking thread (it had every block), else as from the
 * origin; a body that ends in an error counts in bodies_cut. k must
 * outlive the stream (the server's do: serve_close() joins). */
struct stream;
int stream_new(struct engine_file *f, uint64_t first, uint64_t last, const atomic_int *stop,
	       struct serve_counters *k, struct stream **out);
/* libmicrohttpd's content reader: copies the bytes at body offset pos
 * into buf, waiting for the engine when they are not in yet. > 0, or
 * MHD_CONTENT_READER_END_WITH_ERROR when the engine failed or *stop was
 * set (the connection is then cut: the client sees a short body). */
ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max);
/* libmicrohttpd's free callback: the response is done with the stream
 * (it lives on until the engine has answered every read it was asked). */
void stream_release(void *cls);

#endif
