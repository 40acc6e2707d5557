/*
 * metrics.c: a status as Prometheus text (metrics.h). The status is the
 * one `modelfs status --json` prints, so the two never disagree; this
 * file only sums it up and names the sums.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/metrics.h"
#include "modelfs/ops.h"

struct text {
	char *buf;
	size_t len;
	FILE *f;
};

static json_int_t num(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per source kind, over the history: fetches, errors, seconds. */
struct by_source {
	char kind[32];
	long long fetches, errors;
	double seconds;
};

static void history_by_source(json_t *status, struct by_source *k, size_t max, size_t *n)
{
	json_t *files = json_object_get(status, "files"), *h, *f;
	size_t i, j;

	*n = 0;
	json_array_foreach(json_object_get(status, "history"), i, h) {
		const char *path = json_string_value(json_object_get(h, "path")), *kind = NULL;
		size_t at;

		json_array_foreach(files, j, f)
			if (path && json_is_string(json_object_get(f, "path")) &&
			    strcmp(json_string_value(json_object_get(f, "path")), path) == 0)
				kind = json_string_value(json_object_get(f, "source_kind"));
		if (!kind)
			kind = "unknown";	/* a file no longer configured */
		for (at = 0; at < *n && strcmp(k[at].kind, kind) != 0; at++)
			;
		if (at == *n) {
			if (*n == max)
				continue;
			memset(&k[at], 0, sizeof(k[at]));
			snprintf(k[at].kind, sizeof(k[at].kind), "%s", kind);
			(*n)++;
		}
		k[at].fetches++;
		k[at].seconds += (double)num(h, "ms") / 1000.0;
		if (strcmp(json_string_value(json_object_get(h, "outcome")) ?: "", "error") == 0)
			k[at].errors++;
	}
}

static void engine_part(FILE *f, json_t *status)
{
	json_t *cache = json_object_get(status, "cache"), *file, *d;
	long long tier = 0, bucket = 0, origin = 0, errors = 0;
	struct by_source k[16];
	size_t i, n;

	json_array_foreach(json_object_get(status, "files"), i, file) {
		d = json_object_get(file, "downloaded");
		tier += num(d, "tier");
		bucket += num(d, "bucket");
		origin += num(d, "origin");
		if (json_is_string(json_object_get(file, "error")))
			errors++;
	}
	family(f, "modelfs_downloaded_bytes_total", "counter",
	       "Bytes downloaded since the daemon started, by where they came from.");
	fprintf(f, "modelfs_downloaded_bytes_total{from=\"origin\"} %lld\n", origin);
	fprintf(f, "modelfs_downloaded_bytes_total{from=\"tier\"} %lld\n", tier);
	fprintf(f, "modelfs_downloaded_bytes_total{from=\"bucket\"} %lld\n", bucket);
	family(f, "modelfs_cache_used_bytes", "gauge", "Bytes the cache holds.");
	fprintf(f, "modelfs_cache_used_bytes %lld\n", (long long)num(cache, "used"));
	family(f, "modelfs_cache_limit_bytes", "gauge",
	       "The cache's size limit (absent: none but the disk).");
	if (json_is_integer(json_object_get(cache, "limit")))
		fprintf(f, "modelfs_cache_limit_bytes %lld\n", (long long)num(cache, "limit"));
	family(f, "modelfs_files", "gauge", "Files of the config.");
	fprintf(f, "modelfs_files %zu\n", json_array_size(json_object_get(status, "files")));
	family(f, "modelfs_files_failed", "gauge", "Files that cannot be read (an error).");
	fprintf(f, "modelfs_files_failed %lld\n", errors);
	history_by_source(status, k, sizeof(k) / sizeof(k[0]), &n);
	family(f, "modelfs_fetches", "gauge", "Block fetches in the recent history, by source.");
	for (i = 0; i < n; i++)
		fprintf(f, "modelfs_fetches{source=\"%s\"} %lld\n", k[i].kind, k[i].fetches);
	family(f, "modelfs_fetch_errors", "gauge",
	       "Failed block fetches in the recent history, by source.");
	for (i = 0; i < n; i++)
		fprintf(f, "modelfs_fetch_errors{source=\"%s\"} %lld\n", k[i].kind, k[i].errors);
	family(f, "modelfs_fetch_seconds", "gauge",
	       "Seconds the recent block fetches took, summed, by source (divide by "
	       "modelfs_fetches for the mean latency).");
	for (i = 0; i < n; i++)
		fprintf(f, "modelfs_fetch_seconds{source=\"%s\"} %.3f\n", k[i].kind, k[i].seconds);
}

static void serve_part(FILE *f, const struct serve_stats *ss)
{
	static const char *const classes[] = { NULL, NULL, "2xx", "3xx", "4xx", "5xx" };

	family(f, "modelfs_serve_requests_total", "counter", "Requests answered, by status class.");
	for (int i = 2; i < 6; i++)
		fprintf(f, "modelfs_serve_requests_total{code=\"%s\"} %llu\n", classes[i],
			(unsigned long long)ss->status_class[i]);
	family(f, "modelfs_serve_bytes_total", "counter",
	       "Body bytes sent: from the cache (there when asked) or the origin (waited for).");
	fprintf(f, "modelfs_serve_bytes_total{from=\"cache\"} %llu\n",
		(unsigned long long)ss->bytes_cache);
	fprintf(f, "modelfs_serve_bytes_total{from=\"origin\"} %llu\n",
		(unsigned long long)ss->bytes_origin);
	family(f, "modelfs_serve_bodies_cut_total", "counter",
	       "Bodies ended early (the engine failed, the server stopped).");
	fprintf(f, "modelfs_serve_bodies_cut_total %llu\n", (unsigned long long)ss->bodies_cut);
}

int metrics_text(json_t *status, const struct serve_stats *ss, char **out)
{
	struct text t = { 0 };

	t.f = open_memstream(&t.buf, &t.len);
	if (!t.f)
		return -ENOMEM;
	engine_part(t.f, status);
	if (ss)
		serve_part(t.f, ss);
	if (fclose(t.f) != 0) {
		free(t.buf);
		return -ENOMEM;
	}
	*out = t.buf;
	return 0;
}

json_t *metrics_serve_json(const struct serve_stats *ss)
{
	return json_pack("{s:I, s:{s:I, s:I, s:I}, s:I, s:I, s:I}",
			 "requests", (json_int_t)ss->requests,
			 "responses", "2xx", (json_int_t)ss->status_class[2],
			 "4xx", (json_int_t)ss->status_class[4], "5xx", (json_int_t)ss->status_class[5],
			 "bytes_from_cache", (json_int_t)ss->bytes_cache,
			 "bytes_from_origin", (json_int_t)ss->bytes_origin,
			 "bodies_cut", (json_int_t)ss->bodies_cut);
}

int metrics_for_daemon(struct engine *e, struct cache *c, const char *cache_dir,
		       struct serve *srv, char **out)
{
	struct serve_stats ss;
	struct ops_list l;
	json_t *st;
	int rc = ops_list_engine(e, c, &l);

	if (rc)
		return rc;
	st = ops_status(&l, NULL, cache_dir, 0, METRICS_HISTORY);
	ops_list_free(&l);
	if (!st)
		return -ENOMEM;
	if (srv)
		serve_stats(srv, &ss);
	rc = metrics_text(st, srv ? &ss : NULL, out);
	json_decref(st);
	return rc;
}

int metrics_serve_hook(void *arg, struct serve *s, char **text)
{
	struct metrics_daemon *d = arg;

	return metrics_for_daemon(d->engine, d->cache, d->cache_dir, s, text);
}
