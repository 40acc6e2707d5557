/*
 * progress.h: how `modelfs prefetch` shows what a prefetch does (private
 * to src/front). It is fed the events of prefetch_run.h, whether they
 * come from a runner in this process or from a mount's control socket.
 *
 * On a terminal: finished files are printed once, as permanent lines,
 * and below them one bar per running file and a total line (bytes,
 * speed, ETA) are redrawn in place with ANSI cursor movement, at most
 * ten times a second; lines never wrap (they are cut to the width).
 * Elsewhere (a log, a pipe): one line per file started and finished and
 * a progress line every PROGRESS_PLAIN_SECONDS.
 * Ownership: progress_new() gives what progress_free() frees.
 * Threads: one thread uses a progress.
 */
#ifndef MODELFS_FRONT_PROGRESS_H
#define MODELFS_FRONT_PROGRESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#define PROGRESS_PLAIN_SECONDS 5

struct progress;

/* tty: draw bars on out; width: columns (0: ask the terminal, else 80). */
struct progress *progress_new(FILE *out, bool tty, int width);
void progress_free(struct progress *p);

/* One event from a prefetch. */
void progress_event(struct progress *p, json_t *ev);
/* Redraw when due; call often. */
void progress_tick(struct progress *p);
/* A line to show above the bars (a log line, a warning). */
void progress_note(struct progress *p, const char *line);
/* The last drawing and the summary; interrupted: by Ctrl-C. Prints each
 * failed file with its reason to err. Returns how many failed. */
int progress_finish(struct progress *p, bool interrupted, FILE *err);

#endif
