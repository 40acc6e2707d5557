/*
 * metrics.h: what a daemon has done, in the Prometheus text format
 * (version 0.0.4), for GET /metrics of a serve and `modelfs status
 * --metrics` (the control socket's "metrics" command) of a mount.
 *
 * (1) Every number comes from a status (ops.h's JSON, with its recent
 *     fetch history) and, for a server, its serve_stats: the metrics say
 *     nothing `modelfs status --json` does not.
 * (2) Counters are since the daemon started, except the fetch latency
 *     and errors, which are over the recent fetch history
 *     (METRICS_HISTORY fetches, the cache index keeps them across runs).
 * (3) No label value holds a token, a URL query or a path: sources are
 *     named by kind ("huggingface", "civitai", "url", "s3", ...).
 * Threads: no shared state.
 */
#ifndef MODELFS_METRICS_H
#define MODELFS_METRICS_H

#include <jansson.h>

#include "modelfs/cache.h"
#include "modelfs/engine.h"
#include "modelfs/serve.h"

#define METRICS_HISTORY 1000

/* The text for status (ops_status() with a history) and ss (NULL for a
 * mount that does not serve): 0 and *out (the caller frees), -ENOMEM. */
int metrics_text(json_t *status, const struct serve_stats *ss, char **out);

/* {"requests", "responses": {"2xx", "4xx", "5xx"}, "bytes_from_cache",
 * "bytes_from_origin", "bodies_cut"}: the "serve" object of a status. */
json_t *metrics_serve_json(const struct serve_stats *ss);

/* The whole answer for a daemon: its engine's status with the history,
 * and srv's counters when it serves (srv may be NULL). */
int metrics_for_daemon(struct engine *e, struct cache *c, const char *cache_dir,
		       struct serve *srv, char **out);

/* serve_opts.metrics for a server on e: arg is a struct metrics_daemon. */
struct metrics_daemon {
	struct engine *engine;
	struct cache *cache;
	const char *cache_dir;
};
int metrics_serve_hook(void *arg, struct serve *s, char **text);

#endif
