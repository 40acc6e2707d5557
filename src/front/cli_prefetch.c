/*
 * cli_prefetch.c: modelfs prefetch. Through a mount, the daemon runs the
 * prefetch (its blocks are the mount's, single flight holds) and streams
 * events back; without one, this process runs the engine itself, with
 * no FUSE, on the cache a later mount uses. Either way the events feed
 * the same progress display (progress.h), or are printed as they are
 * with --json.
 *
 * Ctrl-C: through a mount the connection is closed, which cancels the
 * daemon's prefetch; alone, the runner is cancelled and the engine
 * stopped. What arrived stays cached and a rerun resumes from there.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/control.h"
#include "modelfs/engine.h"
#include "modelfs/log.h"
#include "modelfs/ops.h"
#include "modelfs/prefetch_run.h"
#include "progress.h"

#define TICK_MS 100

struct view {
	struct progress *progress;	/* NULL with --json */
	const struct cli_opts *o;
	struct engine_file **files;	/* standalone: what the events' "file" indexes */
	size_t nfiles;
	size_t placed;			/* --into: files put under the folder */
	int log_fd;			/* engine log lines to show above the bars, or -1 */
	int log_wfd;			/* the logger's end of that pipe, or -1 */
	char logbuf[4096];
	size_t loglen;
	bool ended, ok;
	int failed;
};

static void show(struct view *v, json_t *ev)
{
	const char *what = json_string_value(json_object_get(ev, "event"));

	if (what && strcmp(what, "end") == 0) {
		v->ended = true;
		v->ok = json_is_true(json_object_get(ev, "ok"));
		v->failed = (int)json_integer_value(json_object_get(ev, "failed"));
	}
	if (v->progress) {
		progress_event(v->progress, ev);
	} else {
		json_dumpf(ev, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
		fputc('\n', stdout);
		fflush(stdout);
	}
}

/* Log lines written while bars are drawn come through a pipe and are
 * shown above the bars instead of across them. */
static void drain_log(struct view *v)
{
	for (;;) {
		ssize_t n;
		char *nl;

		if (v->log_fd < 0)
			return;
		n = read(v->log_fd, v->logbuf + v->loglen, sizeof(v->logbuf) - 1 - v->loglen);
		if (n <= 0)
			return;
		v->loglen += (size_t)n;
		while ((nl = memchr(v->logbuf, '\n', v->loglen)) != NULL) {
			*nl = '\0';
			progress_note(v->progress, v->logbuf);
			v->loglen -= (size_t)(nl + 1 - v->logbuf);
			memmove(v->logbuf, nl + 1, v->loglen);
		}
		if (v->loglen == sizeof(v->logbuf) - 1)
			v->loglen = 0;	/* a line longer than the buffer: dropped */
	}
}

static void tick(struct view *v)
{
	drain_log(v);
	if (v->progress)
		progress_tick(v->progress);
}

/* ---- through the mount ------------------------------------------------------ */

static int via_daemon(struct cli_target *t, const struct cli_opts *o, struct view *v)
{
	json_t *req = json_pack("{s:s, s:o, s:b, s:i}", "cmd", "prefetch", "paths",
				cli_paths_json(o->args, o->nargs), "pin", o->pin, "jobs", o->jobs);
	struct control_reader r;
	int rc = control_send(t->fd, req), code = 0;

	json_decref(req);
	if (rc) {
		fprintf(stderr, "modelfs prefetch: cannot ask the mount: %s\n", strerror(-rc));
		return EXIT_MODEL;
	}
	control_reader_init(&r, t->fd);
	while (!v->ended) {
		json_t *ev = NULL;

		if (atomic_load(&cli_interrupted)) {
			code = EXIT_INTERRUPTED;
			break;
		}
		rc = control_read(&r, TICK_MS, &ev);
		if (rc == -ETIMEDOUT || rc == -EINTR) {
			tick(v);
			continue;
		}
		if (rc) {
			fprintf(stderr, "modelfs prefetch: the mount stopped answering: %s\n",
				rc == -EPIPE ? "it closed the connection" : strerror(-rc));
			code = EXIT_MODEL;
			break;
		}
		/* A refusal is a reply with no "event"; a failed file is an event. */
		if (!json_object_get(ev, "event") && !json_is_true(json_object_get(ev, "ok"))) {
			fprintf(stderr, "modelfs prefetch: %s\n", json_string_value(json_object_get(ev, "error")));
			code = json_integer_value(json_object_get(ev, "code")) == EXIT_USAGE ? EXIT_USAGE
			     : EXIT_MODEL;
			json_decref(ev);
			break;
		}
		show(v, ev);
		json_decref(ev);
	}
	control_reader_clear(&r);
	/* Closing the connection is what cancels the daemon's prefetch. */
	close(t->fd);
	t->fd = -1;
	return code;
}

/* ---- without a mount ---------------------------------------------------------- */

/* A line above the bars, or on stderr without them. */
static void note(struct view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct view *v, const char *fmt, ...)
{
	char line[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (v->progress)
		progress_note(v->progress, line);
	else if (!v->o->json)
		fprintf(stderr, "%s\n", line);
}

/* --into: a file that is done goes to its place at once, so the disk
 * holds each one once; a failure to place it fails the file. */
static void place_done(struct view *v, json_t *ev)
{
	json_int_t i = json_integer_value(json_object_get(ev, "file"));
	char err[PATH_MAX + 128];

	if (!v->o->into || strcmp(json_string_value(json_object_get(ev, "event")) ?: "", "done") ||
	    !json_is_true(json_object_get(ev, "ok")) || i < 0 || (size_t)i >= v->nfiles)
		return;
	if (into_place(v->o->into, v->files[i], v->o->keep_cache, err, sizeof(err)) == 0) {
		v->placed++;
		return;
	}
	json_object_set_new(ev, "ok", json_false());
	json_object_set_new(ev, "error", json_string(err));
}

static int emit_local(void *arg, json_t *ev)
{
	place_done(arg, ev);
	show(arg, ev);
	return 0;
}

static int tick_local(void *arg)
{
	tick(arg);
	return 0;
}

static int standalone(struct cli_target *t, const struct cli_opts *o, struct view *v)
{
	const struct config *cfg = t->cfg;
	struct prefetch_run_opts po = {
		.jobs = o->jobs, .connections = cfg->connections, .pin = o->pin,
		.check_blocks = o->into != NULL,
		.cancel = &cli_interrupted, .emit = emit_local, .tick = tick_local, .arg = v,
	};
	struct engine *engine = NULL;
	struct engine_file **files = NULL;
	struct ops_list l = { 0 };
	bool *chosen = NULL;
	char err[512];
	size_t n = 0, there = 0;
	int rc, code = 0;

	if (!o->json && v->progress)
		progress_note(v->progress, "resolving the config's entries...");
	rc = engine_open(cfg, t->cache, &engine);
	if (rc == 0) {
		engine_set_prefetch_reserve(engine, 0);	/* no reader to keep workers for */
		rc = engine_start(engine);
	}
	if (rc) {
		fprintf(stderr, "modelfs prefetch: cannot start: %s\n", strerror(-rc));
		code = EXIT_MODEL;
		goto out;
	}
	rc = ops_list_engine(engine, t->cache, &l);
	if (rc == 0)
		rc = ops_select(&l, o->args, (size_t)o->nargs,
				cfg->mountpoint ? cfg->mountpoint : DEFAULT_MOUNTPOINT, &chosen, err,
				sizeof(err));
	if (rc) {
		fprintf(stderr, "modelfs prefetch: %s\n", rc == -ENOENT ? err : strerror(-rc));
		code = rc == -ENOENT ? EXIT_USAGE : EXIT_MODEL;
		goto out;
	}
	files = calloc(l.n ? l.n : 1, sizeof(*files));
	if (!files) {
		code = EXIT_MODEL;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++) {
		if (!chosen[i])
			continue;
		if (o->into && into_has(o->into, l.items[i].ef)) {
			there++;
			continue;
		}
		files[n++] = l.items[i].ef;
	}
	if (there)
		note(v, "%zu file%s already in %s", there, there == 1 ? " is" : "s are", o->into);
	v->files = files;
	v->nfiles = n;
	rc = prefetch_run(engine, files, n, &po);
	if (rc == -ECANCELED || atomic_load(&cli_interrupted))
		code = EXIT_INTERRUPTED;
	else if (rc < 0) {
		fprintf(stderr, "modelfs prefetch: %s\n", strerror(-rc));
		code = EXIT_MODEL;
	}
out:
	/* Stops the transfers in flight; every block that arrived stays. */
	engine_close(engine);
	free(files);
	free(chosen);
	ops_list_free(&l);
	return code;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) != 0)
		log_warn("event=into_cleanup path=%s error=\"%s\"", path, strerror(errno));
	return 0;
}

static void remove_into_cache(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, INTO_CACHE);
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* On a terminal the engine logs into a pipe that the display drains. */
static void log_to_view(struct view *v, const struct cli_opts *o, bool tty)
{
	int pfd[2];

	v->log_fd = v->log_wfd = -1;
	if (!v->progress || !tty || pipe2(pfd, O_CLOEXEC | O_NONBLOCK) != 0) {
		log_init(2, 0, o->debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
		return;
	}
	v->log_fd = pfd[0];
	v->log_wfd = pfd[1];
	log_init(pfd[1], 0, o->debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
}

int cli_prefetch(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t;
	struct view v = { .log_fd = -1, .log_wfd = -1, .o = &o };
	bool tty;
	int code, failed = 0;

	if (!cli_start(argc, argv, "prefetch", true, true, &o, &t, &code))
		return code;
	if (o.into && t.fd >= 0) {
		fprintf(stderr, "modelfs prefetch: the cache %s belongs to the mount at %s; --into "
			"works without a mount: give it another --cache-dir\n", t.cache_dir,
			t.mountpoint ? t.mountpoint : "(unknown)");
		cli_target_close(&t);
		return EXIT_USAGE;
	}
	tty = isatty(STDOUT_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb") != 0;
	if (!o.json)
		v.progress = progress_new(stdout, tty, 0);
	if (t.fd < 0)
		log_to_view(&v, &o, tty);
	cli_catch_interrupt();
	code = t.fd >= 0 ? via_daemon(&t, &o, &v) : standalone(&t, &o, &v);
	drain_log(&v);
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	if (atomic_load(&cli_interrupted))
		code = EXIT_INTERRUPTED;
	if (v.progress && code != EXIT_USAGE)	/* no summary of a run that never started */
		failed = progress_finish(v.progress, code == EXIT_INTERRUPTED, stderr);
	else
		failed = v.failed;
	if (code == 0 && (failed || (v.ended && !v.ok)))
		code = EXIT_MODEL;
	if (o.into && code != EXIT_INTERRUPTED && !o.json)
		printf("placed %zu file%s in %s\n", v.placed, v.placed == 1 ? "" : "s", o.into);
	progress_free(v.progress);
	if (v.log_fd >= 0)
		close(v.log_fd);
	if (v.log_wfd >= 0)
		close(v.log_wfd);
	cli_target_close(&t);
	/* Every file is in place: the transit cache holds nothing of use. A
	 * failed or interrupted run keeps it, so the next one resumes. */
	if (o.into && !o.cache_dir && !o.keep_cache && code == 0)
		remove_into_cache(o.into);
	return code;
}
