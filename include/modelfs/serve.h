/*
 * serve.h: the engine's Hugging Face files over HTTP, as the Hub's
 * download protocol (PROTOCOLS.md §1) serves them, so that any client
 * that honours HF_ENDPOINT (huggingface_hub, @huggingface/hub) reads the
 * cache as it would read the Hub. libmicrohttpd does the HTTP; this
 * module routes, answers from the engine and turns errnos into the
 * Hub's statuses.
 *
 * Served (under an optional prefix, "/huggingface"):
 *   HEAD|GET /{repo}/resolve/{rev}/{path}        also /datasets/, /spaces/
 *   GET /api/{models|datasets|spaces}/{repo}[/revision/{rev}][?blobs=true]
 *   GET /api/{...}/{repo}/tree/{rev}[/{path}][?recursive=true][&cursor=C]
 *   GET /metrics                                 Prometheus text (serve_opts)
 *   HEAD|GET /files/{mount path}                 any configured file, as a
 *       mirror of its origin (its strong ETag, If-Range); a non-Hub file
 *       whose source may take credentials only with the access token
 *   HEAD|GET /sha256-{hex}/... and /commit-{hex}/{scheme}/{host}/{resolve
 *       path}: tier.h's scheme, so that neighbours can use this server as
 *       their cache_proxy (a file it does not serve is a 404: they go to
 *       the origin)
 *
 * (1) Only what the config names is served: each Hugging Face repo at the
 *     one commit the engine pinned it to, with the files its entries keep.
 *     "main", a revision an entry names and the full commit all mean that
 *     commit; any other revision is RevisionNotFound.
 * (2) A body is streamed: the engine is asked for SERVE_CHUNK bytes at a
 *     time and each chunk is sent as it arrives, so a connection holds at
 *     most two chunks whatever the file's size. Missing blocks are
 *     fetched by the engine (single flight, verified as a mount's are).
 *     A file verified whole goes out from its data file instead
 *     (sendfile), its blocks checked this run and held until the
 *     request ends (cache_range_hold()).
 * (3) Nothing upstream leaks: a response carries no token, no signed
 *     URL and no X-Xet-* header. A request's Authorization is used only
 *     to decide whether the client may have what it asks (6).
 * (4) A single satisfiable range answers 206 with its exact
 *     Content-Range; an unsatisfiable one 416 with "bytes {*}/SIZE"
 *     (braces ours); a multi-range or malformed Range the whole body,
 *     200, as the Hub does.
 * (5) Every failure is answered with the Hub's JSON error shape,
 *     {"error": "..."} with X-Error-Code and X-Error-Message, its status
 *     given by serve_status() and nowhere else; except a 416, which has
 *     an empty body and its Content-Range, as the Hub's CDN answers it.
 * (6) Access: with an access token (serve_opts.access_token) every
 *     request must carry it ("Authorization: Bearer T", a client's
 *     HF_TOKEN), else 401. A repo the Hub does not give anonymous
 *     clients (gated, private) is served only to a client showing the
 *     access token or a token the Hub accepts for that repo, asked once
 *     per (token, repo) and remembered for minutes (access.c); else
 *     401 (no token) or 403 (a refused token), code GatedRepo. While
 *     the Hub cannot be asked, a repo it once gave anyone is still
 *     served; anything else is 503.
 * (7) On demand (serve_opts.allow, [modelfs] serve_allow, off by
 *     default): a Hub repo the config does not name, asked for at a
 *     revision, whose id matches a pattern of serve_allow (fnmatch(3)
 *     with FNM_PATHNAME, over "org/name" or "datasets/org/name") is
 *     resolved there with the server's
 *     own resolver and credentials, added to the engine, and from then
 *     on served and cached as a configured repo is, (6) included: a
 *     gated or private one goes only to clients the Hub accepts. At most
 *     allow_max repo revisions are added so in a run, and as many may
 *     fail to be (a repo the Hub does not have); past either, and for
 *     a repo no pattern allows, the answer is RepoNotFound as for any
 *     repo not in the config. Spaces are never added.
 * Ownership: serve_open() gives a server; serve_close() stops and frees
 * it. The engine must outlive it and must not be stopped before it.
 * Threads: one thread per connection (bounded by SERVE_MAX_CONNECTIONS);
 * a connection waits for its chunk on its own condition variable, never
 * holding a lock across the network. serve_close() ends the waits and
 * joins every thread.
 */
#ifndef MODELFS_SERVE_H
#define MODELFS_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/engine.h"

#define SERVE_CHUNK (1u << 20)		/* bytes asked of the engine at a time */
#define SERVE_MAX_CONNECTIONS 256	/* beyond: refused at accept, never queued */
#define SERVE_IDLE_TIMEOUT_SEC 30	/* a connection silent this long is closed */
#define SERVE_TREE_PAGE 1000		/* tree entries per page (the Hub's is unpublished) */

struct serve;

/* What a server has answered since it started. */
struct serve_stats {
	uint64_t requests;
	uint64_t status_class[6];	/* [2] 2xx, [4] 4xx, [5] 5xx */
	uint64_t bytes_cache;		/* body bytes the cache had when asked */
	uint64_t bytes_origin;		/* body bytes that waited for a download */
	uint64_t bodies_cut;		/* bodies ended early (the engine failed, a stop) */
};

/* GET /metrics: the Prometheus text for s into *text (the caller frees):
 * 0 or -errno. Called on a connection's thread. */
typedef int (*serve_metrics_fn)(void *arg, struct serve *s, char **text);

struct serve_opts {
	const char *listen;		/* "127.0.0.1:8080", "[::1]:8080" */
	const char *prefix;		/* "/huggingface", or NULL/"" for none */
	int tree_page;			/* entries per tree page; 0: SERVE_TREE_PAGE */
	const char *hub;		/* the Hub that decides access (hf_endpoint) */
	const char *access_token;	/* clients must show it, or NULL (6); copied */
	int access_ttl_ms;		/* how long the Hub's yes is kept; 0: 10 minutes */
	serve_metrics_fn metrics;	/* answers GET {prefix}/metrics; NULL: 404 */
	void *metrics_arg;
	char *const *allow;		/* serve_allow (7), NULL-terminated; NULL: off */
	int allow_max;			/* serve_allow_max; 0: CONFIG_SERVE_ALLOW_MAX */
};

/* Index the engine's Hugging Face files and listen on o->listen. 0 and
 * *out; -EINVAL for a listen address or prefix that does not parse;
 * -EADDRINUSE, -EACCES or another -errno when the socket cannot be had
 * (the message is logged). */
int serve_open(struct engine *e, const struct serve_opts *o, struct serve **out);
/* Stop accepting, end every connection (a body being sent is cut), join
 * the threads, free. NULL is a no-op. */
void serve_close(struct serve *s);
/* Its counters now; thread-safe. */
void serve_stats(struct serve *s, struct serve_stats *out);
/* How many files the server publishes. */
size_t serve_nfiles(struct serve *s);
/* Index the engine's files again (they changed: a reload): requests
 * under way finish on the old index. 0 or -ENOMEM (the old one stays). */
int serve_refresh(struct serve *s);

/* The one map from an errno to what a Hub client expects:
 *   -ENOENT   404  EntryNotFound       (a path not in the repo)
 *   -ENXIO    404  RepoNotFound        (a repo not in the config)
 *   -ESRCH    404  RevisionNotFound
 *   -ENODEV   404  (none)              (no such endpoint)
 *   -EACCES   403  (none)              (the engine was refused the bytes)
 *   -EPERM    401  (none)              (not the server's access token)
 *   -EKEYEXPIRED  401 GatedRepo        (no token, and the repo is not public)
 *   -EKEYREJECTED 403 GatedRepo        (the Hub refuses the client's token)
 *   -EINVAL   400  (none)              (an encoded repo id, a bad cursor)
 *   -ERANGE   416  (none)
 *   -ENOSYS   405  (none)              (a method other than GET or HEAD)
 *   -EAGAIN   503  (none)              (the origin could not be reached)
 *   anything else 500 (none).
 * *code is the X-Error-Code value or NULL. */
unsigned serve_status(int err, const char **code);

/* Range (RFC 9110 §14) against a body of size bytes: 0 when the whole
 * body is to be sent (no header, another unit, a multi-range or a
 * malformed one); 1 with [*first, *last] for one satisfiable range;
 * -ERANGE when it cannot be satisfied. */
int serve_parse_range(const char *header, uint64_t size, uint64_t *first, uint64_t *last);

#endif
