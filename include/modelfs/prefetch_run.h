/*
 * prefetch_run.h: prefetching a set of files, several at a time, with a
 * stream of events to show progress by. The same runner serves
 * `modelfs prefetch` without a mount, the mount daemon answering a
 * prefetch on its control channel, and the daemon warming the files the
 * config marks `prefetch` right after mounting.
 *
 * Events (JSON objects, in this order; the protocol of control.h):
 *   {"event": "plan", "files": [{"path", "entry", "size", "cached"}], "jobs"}
 *   {"event": "start", "file": I, "cached": N}            I indexes plan
 *   {"event": "progress", "ms": T, "files": [[I, cached], ...]}
 *                                  running files, every progress_ms
 *   {"event": "done", "file": I, "ok": B, "state": S, "cached": N,
 *    "error": E|null, "cancelled": B}
 *   {"event": "end", "ok": B, "failed": N, "cancelled": B, "ms": T}
 * Threads: prefetch_run() blocks its caller, which gets every callback;
 * the fetching happens on `jobs` threads of its own and the engine's
 * workers.
 */
#ifndef MODELFS_PREFETCH_RUN_H
#define MODELFS_PREFETCH_RUN_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "modelfs/engine.h"

struct prefetch_run_opts {
	int jobs;			/* files fetched at a time (default 4) */
	int connections;		/* the engine's workers, to size each file's window */
	bool pin;			/* pin every file (prefetch --pin) */
	bool check_blocks;		/* engine_prefetch_opts.check_blocks */
	const atomic_int *cancel;	/* stop when it becomes non-zero; may be NULL */
	int progress_ms;		/* between progress events (default 250) */
	/* Each event, on the caller's thread; the runner frees it after.
	 * Non-zero: cancel (the client went away). */
	int (*emit)(void *arg, json_t *event);
	/* About every 100 ms, on the caller's thread; non-zero: cancel.
	 * May be NULL. */
	int (*tick)(void *arg);
	void *arg;
};

/* Prefetch the n files; see the file comment. Returns how many failed
 * (0: every file is verified or complete), -ECANCELED when cancelled,
 * or -errno when the runner could not start. */
int prefetch_run(struct engine *e, struct engine_file *const *files, size_t n,
		 const struct prefetch_run_opts *o);

/* A prefetch of files in the background (the config's `prefetch`),
 * logging a line per file; stopped and joined by prefetch_bg_stop(). */
struct prefetch_bg;
int prefetch_bg_start(struct engine *e, struct engine_file *const *files, size_t n,
		      int connections, struct prefetch_bg **out);
void prefetch_bg_stop(struct prefetch_bg *bg);

#endif
