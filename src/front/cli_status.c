/*
 * cli_status.c: modelfs status, verify and evict. Each asks the mount's
 * daemon when there is one, or works on the cache and its index here;
 * either way the answer is ops.h's JSON, printed as it is (--json) or as
 * a table for people.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/control.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"
#include "modelfs/metrics.h"
#include "modelfs/ops.h"
#include "modelfs/text.h"

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static uint64_t num(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	return v > 0 ? (uint64_t)v : 0;
}

static const char *bytes(json_t *o, const char *key, char *buf, size_t len)
{
	if (!json_is_integer(json_object_get(o, key)))
		return "?";
	return humanize_bytes(num(o, key), buf, len);
}

/* Every string in j made safe for a terminal (text.h), in place: the
 * tables are for people, and a name or an error that came from a server
 * (or from an index an older modelfs wrote) must not drive the terminal.
 * --json needs none of this: JSON escapes control characters itself. */
static void make_printable(json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach(j, key, v)
			make_printable(v);
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			make_printable(v);
	} else if (json_is_string(j) && !text_printable(json_string_value(j))) {
		char *safe = text_escape(json_string_value(j));

		json_string_set(j, safe ? safe : "?");
		free(safe);
	}
}

/* The mountpoint arguments are relative to without a daemon. */
static const char *standalone_mountpoint(const struct cli_target *t)
{
	return t->cfg && t->cfg->mountpoint ? t->cfg->mountpoint : DEFAULT_MOUNTPOINT;
}

/* The list of files a command works on without a daemon. */
static int standalone_list(struct cli_target *t, struct ops_list *l)
{
	int rc = ops_list_store(t->cache, t->cfg, l);

	if (rc)
		fprintf(stderr, "modelfs: cannot read the cache index in %s: %s\n", t->cache_dir,
			strerror(-rc));
	return rc ? EXIT_MODEL : 0;
}

/* ---- status ------------------------------------------------------------------- */

/* "3h ago" for a file's last_used, "-" when it has none. */
static const char *age(json_t *f, time_t now, char *buf, size_t len)
{
	json_t *t = json_object_get(f, "last_used");
	char a[24];

	if (!json_is_integer(t))
		return "-";
	snprintf(buf, len, "%s ago", humanize_age(now - json_integer_value(t), a, sizeof(a)));
	return buf;
}

/* Where this run's downloads of a file came from, when the tier or the
 * bucket took part (without them every byte is the origin's: nothing to
 * tell). */
static void print_downloaded(json_t *d)
{
	char tier[32], bucket[32], origin[32];

	if (!json_is_object(d) || (num(d, "tier") == 0 && num(d, "bucket") == 0))
		return;
	printf("    downloaded: %s from the tier, %s from the bucket, %s from the origin\n",
	       bytes(d, "tier", tier, sizeof(tier)), bytes(d, "bucket", bucket, sizeof(bucket)),
	       bytes(d, "origin", origin, sizeof(origin)));
}

static void print_files(json_t *files)
{
	char size[32], cached[32], state[48], read[32];
	time_t now = time(NULL);
	json_t *f;
	size_t i;

	printf("%-52s %10s %10s  %-16s %-9s %s\n", "PATH", "SIZE", "CACHED", "STATE", "LAST USE",
	       "SOURCE");
	json_array_foreach(files, i, f) {
		const char *path = json_is_string(json_object_get(f, "path")) ? str(f, "path")
				 : json_is_string(json_object_get(f, "entry")) ? str(f, "entry")
				 : str(f, "key");

		snprintf(state, sizeof(state), "%s%s%s", str(f, "state"),
			 json_is_true(json_object_get(f, "pinned")) ? ",pinned" : "",
			 json_is_true(json_object_get(f, "shadowed")) ? ",shadowed" : "");
		printf("%-52s %10s %10s  %-16s %-9s %s\n", path, bytes(f, "size", size, sizeof(size)),
		       bytes(f, "cached", cached, sizeof(cached)), state,
		       age(f, now, read, sizeof(read)),
		       json_is_string(json_object_get(f, "source")) ? str(f, "source") : "-");
		if (json_is_string(json_object_get(f, "error")))
			printf("    error: %s\n", str(f, "error"));
		print_downloaded(json_object_get(f, "downloaded"));
	}
}

/* Manifest models: available only when every artifact is verified. */
static void print_models(json_t *models)
{
	char label[256];
	json_t *m;
	size_t i;

	json_array_foreach(models, i, m) {
		bool has_model = json_is_string(json_object_get(m, "model_id"));
		bool has_version = json_is_string(json_object_get(m, "version"));

		snprintf(label, sizeof(label), "%s%s%s", has_model ? str(m, "model_id") : "",
			 has_model && has_version ? " " : "", has_version ? str(m, "version") : "");
		if (i == 0)
			printf("\nmodels from manifests:\n");
		printf("%s%s%s%s: %s, %lld of %lld artifacts verified\n", str(m, "entry"),
		       label[0] ? " (" : "", label, label[0] ? ")" : "",
		       json_is_true(json_object_get(m, "available")) ? "available" : "not available",
		       (long long)num(m, "verified"), (long long)num(m, "artifacts"));
	}
}

static void print_history(json_t *history)
{
	char when[32], size[32];
	json_t *h;
	size_t i;

	printf("\nrecent fetches (oldest first):\n");
	printf("%-19s  %-44s %10s %8s  %s\n", "TIME (UTC)", "FILE", "BYTES", "TOOK", "OUTCOME");
	json_array_foreach(history, i, h) {
		time_t t = (time_t)num(h, "time");
		struct tm tm;
		const char *file = json_is_string(json_object_get(h, "path")) ? str(h, "path")
				 : str(h, "key");
		char took[32];

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(took, sizeof(took), "%.2fs", (double)num(h, "ms") / 1000.0);
		printf("%-19s  %-44s %10s %8s  %s%s%s\n", when, file, bytes(h, "bytes", size, sizeof(size)),
		       took, str(h, "outcome"), json_is_string(json_object_get(h, "error")) ? ": " : "",
		       str(h, "error"));
	}
	if (json_array_size(history) == 0)
		printf("(none)\n");
}

static void print_status(json_t *st)
{
	json_t *cache = json_object_get(st, "cache");
	json_t *srv = json_object_get(st, "serve");
	char used[32], limit[32], free_[32], keep[32], sent_cache[32], sent_origin[32];

	if (json_is_true(json_object_get(st, "mounted")))
		printf("mounted at %s (pid %lld), cache %s\n", str(st, "mountpoint"),
		       (long long)num(st, "pid"), str(st, "cache_dir"));
	else if (json_is_object(srv))
		printf("modelfs serve on %s (pid %lld), cache %s\n", str(srv, "listen"),
		       (long long)num(st, "pid"), str(st, "cache_dir"));
	else
		printf("not mounted; cache %s\n", str(st, "cache_dir"));
	if (json_is_object(srv)) {
		json_t *resp = json_object_get(srv, "responses");

		printf("served: %lld requests (%lld 2xx, %lld 4xx, %lld 5xx), %s from the cache, "
		       "%s from the origin, %lld bodies cut\n", (long long)num(srv, "requests"),
		       (long long)num(resp, "2xx"), (long long)num(resp, "4xx"),
		       (long long)num(resp, "5xx"),
		       bytes(srv, "bytes_from_cache", sent_cache, sizeof(sent_cache)),
		       bytes(srv, "bytes_from_origin", sent_origin, sizeof(sent_origin)),
		       (long long)num(srv, "bodies_cut"));
	}
	print_files(json_object_get(st, "files"));
	print_models(json_object_get(st, "models"));
	printf("\ncache: %s used, limit %s, %s free on disk (keeps %s free)\n",
	       bytes(cache, "used", used, sizeof(used)),
	       json_is_integer(json_object_get(cache, "limit"))
		       ? bytes(cache, "limit", limit, sizeof(limit)) : "none",
	       bytes(cache, "fs_free", free_, sizeof(free_)),
	       bytes(cache, "min_free", keep, sizeof(keep)));
	if (json_is_true(json_object_get(cache, "lost")))
		printf("the cache directory was deleted while mounted: nothing new is cached; "
		       "unmount and mount again to cache\n");
	if (json_is_array(json_object_get(st, "history")))
		print_history(json_object_get(st, "history"));
}

/* --metrics: the daemon's (metrics.h), or the cache's own without one. */
static int print_metrics(struct cli_target *t)
{
	struct ops_list l;
	json_t *res = NULL;
	char *text = NULL;
	int code = 0;

	if (t->fd >= 0) {
		json_t *req = json_pack("{s:s}", "cmd", "metrics");

		code = cli_call(t, req, &res);
		json_decref(req);
		if (code == 0 && json_is_string(json_object_get(res, "text")))
			fputs(json_string_value(json_object_get(res, "text")), stdout);
		json_decref(res);
		return code;
	}
	code = standalone_list(t, &l);
	if (code)
		return code;
	res = ops_status(&l, NULL, t->cache_dir, 0, METRICS_HISTORY);
	ops_list_free(&l);
	if (!res || metrics_text(res, NULL, &text) != 0) {
		fprintf(stderr, "modelfs status: out of memory\n");
		code = EXIT_MODEL;
	} else {
		fputs(text, stdout);
	}
	free(text);
	json_decref(res);
	return code;
}

static json_t *mount_info(const char *mnt);

static bool in_a_mount(const char *path)
{
	char mnt[PATH_MAX];

	return cli_mount_of(path, mnt, sizeof(mnt)) == 0;
}

/* A status that found no mount says which mounts there are, stale ones
 * too: the user may have meant one of them. */
static void hint_other_mounts(const char *cache_dir)
{
	char **list = NULL;
	size_t n = 0;

	if (cli_mounts_list(&list, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		json_t *m = mount_info(list[i]);
		const char *state = str(m, "state");

		if (strcmp(state, "stale") == 0)
			fprintf(stderr, "note: %s is a stale modelfs mount (its daemon is gone): "
				"%s, then mount it again\n", list[i], str(m, "recover"));
		else if (strcmp(state, "hung") == 0)
			fprintf(stderr, "note: %s is a modelfs mount whose daemon does not answer: "
				"%s\n", list[i], str(m, "recover"));
		else if (json_is_string(json_object_get(m, "cache_dir")) &&
			 strcmp(str(m, "cache_dir"), cache_dir) != 0)
			fprintf(stderr, "note: %s is mounted with the cache %s: modelfs status %s\n",
				list[i], str(m, "cache_dir"), list[i]);
		json_decref(m);
	}
	cli_mounts_free(list, n);
}

int cli_status(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t;
	json_t *st = NULL;
	int code;

	if (!cli_start(argc, argv, "status", false, true, &o, &t, &code))
		return code;
	if (o.nargs > 1 || (o.nargs == 1 && !in_a_mount(o.args[0]))) {
		if (o.nargs > 1)
			fprintf(stderr, "modelfs status: takes one path (a mount, or a path inside "
				"one), not %d\n", o.nargs);
		else
			fprintf(stderr, "modelfs status: %s is not inside a modelfs mount (modelfs "
				"mounts lists them)\n", o.args[0]);
		cli_target_close(&t);
		return EXIT_USAGE;
	}
	if (o.metrics) {
		code = print_metrics(&t);
		cli_target_close(&t);
		return code;
	}
	if (t.fd >= 0) {
		json_t *req = json_pack("{s:s, s:i}", "cmd", "status", "history", o.history);

		code = cli_call(&t, req, &st);
		json_decref(req);
	} else {
		struct ops_list l;

		code = standalone_list(&t, &l);
		if (code == 0) {
			st = ops_status(&l, NULL, t.cache_dir, 0, o.history);
			ops_list_free(&l);
		}
	}
	if (code == 0 && o.json) {
		cli_print_json(st);
	} else if (code == 0) {
		make_printable(st);
		print_status(st);
	}
	if (code == 0 && t.fd < 0 && !o.json)
		hint_other_mounts(t.cache_dir);
	json_decref(st);
	cli_target_close(&t);
	return code;
}

/* ---- reload -------------------------------------------------------------------- */

/* "N added (a, b)" of one of a reload's lists, into buf. */
static void reload_line(json_t *res, const char *key, const char *word, char *buf, size_t len)
{
	json_t *a = json_object_get(res, key), *v;
	size_t at, i;

	at = (size_t)snprintf(buf, len, "%zu %s", json_array_size(a), word);
	json_array_foreach(a, i, v) {
		int n = snprintf(buf + at, len - at, "%s%s", i ? ", " : " (", json_string_value(v));

		if (n < 0 || (size_t)n >= len - at)
			break;
		at += (size_t)n;
	}
	if (json_array_size(a) && at + 1 < len)
		snprintf(buf + at, len - at, ")");
}

int cli_reload(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t;
	json_t *req, *res = NULL;
	char added[1024], removed[1024], changed[1024], settings[256];
	int code;

	if (!cli_start(argc, argv, "reload", false, true, &o, &t, &code))
		return code;
	if (t.fd < 0) {
		fprintf(stderr, "modelfs reload: nothing is mounted with the cache %s; give the "
			"MOUNTPOINT, or run it inside the mount\n", t.cache_dir);
		cli_target_close(&t);
		return EXIT_MODEL;
	}
	req = json_pack("{s:s}", "cmd", "reload");
	code = cli_call(&t, req, &res);
	json_decref(req);
	if (code == 0 && o.json) {
		cli_print_json(res);
	} else if (code == 0) {
		reload_line(res, "added", "added", added, sizeof(added));
		reload_line(res, "removed", "removed", removed, sizeof(removed));
		reload_line(res, "changed", "changed", changed, sizeof(changed));
		printf("reloaded %s: %s, %s, %s, %lld unchanged\n", t.mountpoint ? t.mountpoint : "",
		       added, removed, changed,
		       (long long)json_integer_value(json_object_get(res, "unchanged")));
		if (json_array_size(json_object_get(res, "retried"))) {
			reload_line(res, "retried", "failed before, resolved again", changed,
				    sizeof(changed));
			printf("%s\n", changed);
		}
		if (json_array_size(json_object_get(res, "settings_not_applied"))) {
			reload_line(res, "settings_not_applied", "[modelfs] settings changed", settings,
				    sizeof(settings));
			printf("%s: they apply at the next mount\n", settings);
		}
	}
	if (code == 0 && json_array_size(json_object_get(res, "failed"))) {
		json_t *f;
		size_t i;

		/* Live, as a mount with failed entries is: exit as it does. */
		fprintf(stderr, "modelfs reload: %zu entr%s cannot be read:\n",
			json_array_size(json_object_get(res, "failed")),
			json_array_size(json_object_get(res, "failed")) == 1 ? "y" : "ies");
		json_array_foreach(json_object_get(res, "failed"), i, f)
			fprintf(stderr, "  %s: %s\n", json_string_value(json_object_get(f, "entry")),
				json_string_value(json_object_get(f, "error")));
		fprintf(stderr, "modelfs reload: fix them, then reload again\n");
		code = EXIT_PARTIAL;
	}
	json_decref(res);
	cli_target_close(&t);
	return code;
}

/* ---- mounts -------------------------------------------------------------------- */

/* What one modelfs mount says of itself: {"mountpoint", "state": "live" |
 * "stale" | "hung" | "unknown", "pid", "cache_dir", "recover"}. */
static json_t *mount_info(const char *mnt)
{
	json_t *m = json_pack("{s:s}", "mountpoint", mnt), *req, *reply = NULL;
	char cache_dir[PATH_MAX];
	struct control_reader r;
	int fd = -1, rc;

	rc = cli_mount_cache_dir(mnt, cache_dir, sizeof(cache_dir));
	if (rc == -ENOTCONN) {
		json_object_set_new(m, "state", json_string("stale"));
		json_object_set_new(m, "recover", json_sprintf("fusermount3 -uz %s", mnt));
		return m;
	}
	if (rc == -ETIMEDOUT) {
		json_object_set_new(m, "state", json_string("hung"));
		json_object_set_new(m, "recover", json_string(CLI_HUNG_RECOVER));
		return m;
	}
	if (rc == 0)
		json_object_set_new(m, "cache_dir", json_string(cache_dir));
	if (rc == 0)
		rc = control_connect(cache_dir, &fd);
	req = json_pack("{s:s}", "cmd", "hello");
	if (rc == 0)
		rc = control_send(fd, req);
	json_decref(req);
	control_reader_init(&r, fd);
	if (rc == 0)
		rc = control_read(&r, 5000, &reply);
	control_reader_clear(&r);
	if (fd >= 0)
		close(fd);
	json_object_set_new(m, "state", json_string(rc == 0 ? "live" : "unknown"));
	if (rc == 0)
		json_object_set(m, "pid", json_object_get(reply, "pid") ?: json_null());
	json_decref(reply);
	return m;
}

int cli_mounts(int argc, char **argv)
{
	struct cli_opts o;
	json_t *all = json_array(), *m;
	char **list = NULL;
	size_t n = 0, i;
	int rc = cli_parse(argc, argv, "mounts", &o);

	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	rc = cli_mounts_list(&list, &n);
	if (rc) {
		fprintf(stderr, "modelfs mounts: cannot read /proc/self/mountinfo: %s\n", strerror(-rc));
		return EXIT_MODEL;
	}
	for (i = 0; i < n; i++)
		json_array_append_new(all, mount_info(list[i]));
	cli_mounts_free(list, n);
	if (o.json) {
		cli_print_json(all);
	} else {
		json_array_foreach(all, i, m) {
			const char *state = json_string_value(json_object_get(m, "state"));

			printf("%s  %s", json_string_value(json_object_get(m, "mountpoint")), state);
			if (json_is_integer(json_object_get(m, "pid")))
				printf("  pid %lld  cache %s", (long long)json_integer_value(
				       json_object_get(m, "pid")), str(m, "cache_dir"));
			if (strcmp(state, "stale") == 0)
				printf("  (its daemon is gone: %s, then mount again)", str(m, "recover"));
			else if (strcmp(state, "hung") == 0)
				printf("  (its daemon does not answer: %s)", str(m, "recover"));
			putchar('\n');
		}
		if (n == 0)
			printf("no modelfs mounts\n");
	}
	json_decref(all);
	return 0;
}

/* ---- verify -------------------------------------------------------------------- */

static void print_verify(json_t *res)
{
	json_t *f;
	size_t i;

	json_array_foreach(json_object_get(res, "files"), i, f) {
		const char *hash = str(f, "hash");
		char bad[32];

		if (strcmp(hash, "mismatch") == 0)
			printf("CORRUPT  %s: %s; its blocks were dropped\n", str(f, "path"), str(f, "error"));
		else if (num(f, "bad_blocks"))
			printf("BAD      %s: %llu of %llu blocks failed their checksum (%s), dropped; "
			       "they are fetched again when read\n", str(f, "path"),
			       (unsigned long long)num(f, "bad_blocks"),
			       (unsigned long long)num(f, "checked_blocks"),
			       bytes(f, "bad_bytes", bad, sizeof(bad)));
		else if (json_is_string(json_object_get(f, "error")))
			printf("ERROR    %s: %s\n", str(f, "path"), str(f, "error"));
		else if (num(f, "checked_blocks") == 0)
			printf("empty    %s: nothing cached\n", str(f, "path"));
		else
			printf("ok       %s: %llu block%s%s%s\n", str(f, "path"),
			       (unsigned long long)num(f, "checked_blocks"),
			       num(f, "checked_blocks") == 1 ? "" : "s",
			       strcmp(hash, "skipped") == 0 ? "" : ", whole file ",
			       strcmp(hash, "skipped") == 0 ? " (partial: no whole-file hash yet)"
			       : strcmp(hash, "verified") == 0 ? "verified" : "hashed (nothing to compare)");
	}
	printf("%lld bad\n", (long long)num(res, "bad"));
}

/* Select the files named on the command line in a standalone list. */
static int standalone_select(struct cli_target *t, const struct cli_opts *o, struct ops_list *l,
			     bool **chosen)
{
	char err[512];
	int code = standalone_list(t, l), rc;

	if (code)
		return code;
	rc = ops_select(l, o->args, (size_t)o->nargs, standalone_mountpoint(t), chosen, err,
			sizeof(err));
	if (rc == 0)
		return 0;
	if (rc == -ENOENT)
		fprintf(stderr, "modelfs: %s%s\n", err, t->cfg ? "" : " (give --config CONFIG to name "
			"entries that were never fetched)");
	ops_list_free(l);
	return rc == -ENOENT ? EXIT_USAGE : EXIT_MODEL;
}

int cli_verify(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t;
	json_t *res = NULL;
	int code;

	if (!cli_start(argc, argv, "verify", false, true, &o, &t, &code))
		return code;
	cli_catch_interrupt();
	if (t.fd >= 0) {
		json_t *req = json_pack("{s:s, s:o}", "cmd", "verify", "paths",
					cli_paths_json(o.args, o.nargs));

		code = cli_call(&t, req, &res);
		json_decref(req);
	} else {
		struct ops_list l;
		bool *chosen = NULL;

		code = standalone_select(&t, &o, &l, &chosen);
		if (code == 0) {
			res = ops_verify(&l, chosen, &cli_interrupted);
			free(chosen);
			ops_list_free(&l);
		}
	}
	if (code == 0) {
		if (o.json) {
			cli_print_json(res);
		} else {
			make_printable(res);
			print_verify(res);
		}
		code = atomic_load(&cli_interrupted) ? EXIT_INTERRUPTED
		     : num(res, "bad") ? EXIT_MODEL : 0;
	}
	json_decref(res);
	cli_target_close(&t);
	return code;
}

/* ---- evict --------------------------------------------------------------------- */

static void print_evict(json_t *res)
{
	bool retention = json_is_integer(json_object_get(res, "unused_before"));
	char freed[32], kept[32], read[32];
	time_t now = time(NULL);
	json_t *f;
	size_t i;

	if (json_is_true(json_object_get(res, "trimmed"))) {
		printf("trimmed to the cache limits: freed %s, %s used now\n",
		       bytes(res, "freed", freed, sizeof(freed)), bytes(res, "used", kept, sizeof(kept)));
		if (json_is_string(json_object_get(res, "error")))
			printf("note: %s\n", str(res, "error"));
		return;
	}
	json_array_foreach(json_object_get(res, "files"), i, f) {
		const char *result = str(f, "result");
		const char *path = json_is_string(json_object_get(f, "path")) ? str(f, "path")
				 : "(a file no entry names)";

		if (strcmp(result, "pinned") == 0 && retention)
			printf("kept     %s: pinned, last used %s\n", path, age(f, now, read, sizeof(read)));
		else if (strcmp(result, "pinned") == 0)
			printf("refused  %s: pinned (evict --force unpins and evicts it)\n", path);
		else if (strcmp(result, "recent") == 0)
			printf("kept     %s: used %s\n", path, age(f, now, read, sizeof(read)));
		else if (strcmp(result, "empty") == 0 && !retention)
			printf("empty    %s: nothing cached\n", path);
		else if (strcmp(result, "evicted") == 0)
			printf("evicted  %s: freed %s%s%s%s\n", path,
			       bytes(f, "freed", freed, sizeof(freed)), num(f, "kept") ? " (" : "",
			       num(f, "kept") ? bytes(f, "kept", kept, sizeof(kept)) : "",
			       num(f, "kept") ? " kept: being read right now)" : "");
	}
	printf("freed %s\n", bytes(res, "freed", freed, sizeof(freed)));
}

int cli_evict(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t;
	json_t *res = NULL;
	int code;

	if (!cli_start(argc, argv, "evict", false, true, &o, &t, &code))
		return code;
	if (t.fd >= 0) {
		json_t *req = json_pack("{s:s, s:o, s:b}", "cmd", "evict", "paths",
					cli_paths_json(o.args, o.nargs), "force", o.force);

		if (o.unused_for >= 0)
			json_object_set_new(req, "unused_for", json_integer(o.unused_for));
		code = cli_call(&t, req, &res);
		json_decref(req);
	} else if (o.nargs == 0 && o.unused_for >= 0) {
		int rc;

		res = ops_retain(t.cache, ops_unused_before(o.unused_for), &rc);
		if (!res) {
			fprintf(stderr, "modelfs: cannot read the cache index in %s: %s\n",
				t.cache_dir, strerror(-rc));
			code = EXIT_MODEL;
		}
	} else if (o.nargs == 0) {
		res = ops_trim(t.cache);
	} else {
		struct ops_list l;
		bool *chosen = NULL;

		code = standalone_select(&t, &o, &l, &chosen);
		if (code == 0) {
			res = ops_evict(&l, chosen, o.force, o.unused_for >= 0
					? ops_unused_before(o.unused_for) : 0);
			free(chosen);
			ops_list_free(&l);
		}
	}
	if (code == 0) {
		if (o.json) {
			cli_print_json(res);
		} else {
			make_printable(res);
			print_evict(res);
		}
		code = num(res, "refused") ? EXIT_MODEL : 0;
	}
	json_decref(res);
	cli_target_close(&t);
	return code;
}
