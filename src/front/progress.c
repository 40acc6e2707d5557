/*
 * progress.c: bars on a terminal, plain lines elsewhere; see progress.h.
 *
 * Speed is measured over a sliding window of the last few seconds of
 * samples (bytes cached in total), so that it follows the network and
 * not the average since the start; bytes that were cached before the
 * prefetch began never count as speed.
 */
#include "progress.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/clock.h"
#include "modelfs/humanize.h"

#define REDRAW_MS 100
#define SPEED_WINDOW_MS 4000
#define SAMPLES 64
#define BAR_MAX 30

enum { F_WAITING, F_RUNNING, F_DONE };

struct pfile {
	char *path;
	uint64_t size, cached, cached_at_start;
	int status;
	bool ok, cancelled;
	char *state, *error;
	int64_t t_start, t_done;
};

struct progress {
	FILE *out;
	bool tty;
	int width;
	int bar_w;			/* columns of a bar's inside, by the width */
	struct pfile *files;
	size_t n;
	int64_t t0, last_draw, last_plain;
	int live_lines;			/* lines of the redrawn area now on screen */
	char **notes;			/* permanent lines not printed yet */
	size_t n_notes;
	struct { int64_t t; uint64_t bytes; } samples[SAMPLES];
	int n_samples;
	bool ended, cancelled;
	int64_t end_ms;
};

struct progress *progress_new(FILE *out, bool tty, int width)
{
	struct progress *p = calloc(1, sizeof(*p));
	struct winsize ws;

	if (!p)
		return NULL;
	p->out = out;
	p->tty = tty;
	p->width = width;
	if (p->width <= 0 && tty && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		p->width = ws.ws_col;
	if (p->width <= 0)
		p->width = 80;
	if (p->width < 40)
		p->width = 40;
	p->bar_w = p->width >= 120 ? BAR_MAX : p->width >= 100 ? 24 : 14;
	p->t0 = p->last_plain = clock_now_ms();
	return p;
}

void progress_free(struct progress *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->files[i].path);
		free(p->files[i].state);
		free(p->files[i].error);
	}
	free(p->files);
	for (size_t i = 0; i < p->n_notes; i++)
		free(p->notes[i]);
	free(p->notes);
	free(p);
}

/* ---- numbers ---------------------------------------------------------------- */

static uint64_t total_size(const struct progress *p)
{
	uint64_t t = 0;

	for (size_t i = 0; i < p->n; i++)
		t += p->files[i].size;
	return t;
}

static uint64_t total_cached(const struct progress *p)
{
	uint64_t t = 0;

	for (size_t i = 0; i < p->n; i++)
		t += p->files[i].cached < p->files[i].size ? p->files[i].cached : p->files[i].size;
	return t;
}

/* Bytes that arrived since the start (never negative: evict may shrink). */
static uint64_t total_fetched(const struct progress *p)
{
	uint64_t t = 0;

	for (size_t i = 0; i < p->n; i++)
		if (p->files[i].cached > p->files[i].cached_at_start)
			t += p->files[i].cached - p->files[i].cached_at_start;
	return t;
}

static void sample(struct progress *p)
{
	int64_t t = clock_now_ms();

	if (p->n_samples == SAMPLES) {
		memmove(p->samples, p->samples + 1, (SAMPLES - 1) * sizeof(p->samples[0]));
		p->n_samples--;
	}
	p->samples[p->n_samples].t = t;
	p->samples[p->n_samples].bytes = total_fetched(p);
	p->n_samples++;
}

/* Bytes per second over the last SPEED_WINDOW_MS. */
static double speed(const struct progress *p)
{
	int first = 0, last = p->n_samples - 1;

	if (p->n_samples < 2)
		return 0;
	while (first < last - 1 && p->samples[last].t - p->samples[first].t > SPEED_WINDOW_MS)
		first++;
	if (p->samples[last].t <= p->samples[first].t ||
	    p->samples[last].bytes < p->samples[first].bytes)
		return 0;
	return (double)(p->samples[last].bytes - p->samples[first].bytes) * 1000.0 /
	       (double)(p->samples[last].t - p->samples[first].t);
}

static char *fmt_duration(double s, char *buf, size_t len)
{
	long t = s < 0 ? 0 : (long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
	return buf;
}

static char *fmt_speed(double bps, char *buf, size_t len)
{
	char b[32];

	snprintf(buf, len, "%s/s", humanize_bytes((uint64_t)bps, b, sizeof(b)));
	return buf;
}

static int percent(uint64_t part, uint64_t whole)
{
	if (whole == 0)
		return 100;
	return (int)((double)part * 100.0 / (double)whole);
}

/* ---- lines -------------------------------------------------------------------- */

/* A path cut from the left to fit w columns. */
static void fit_path(const char *path, int w, char *out, size_t len)
{
	int n = (int)strlen(path);

	if (n <= w)
		snprintf(out, len, "%-*s", w, path);
	else
		snprintf(out, len, "...%s", path + n - (w - 3));
}

static void bar(int pct, int w, char *out, size_t len)
{
	int fill = pct * w / 100, i = 0;

	if (len < (size_t)w + 3)
		return;
	out[i++] = '[';
	for (int k = 0; k < w; k++)
		out[i++] = k < fill ? '#' : '-';
	out[i++] = ']';
	out[i] = '\0';
}

/* Print line cut to the width (a wrapped line would spoil the redraw). */
static void put_line(struct progress *p, const char *line)
{
	int max = p->width - 1;

	if (p->tty)
		fputs("\033[2K", p->out);
	fprintf(p->out, "%.*s\n", max, line);
}

static void file_bar_line(struct progress *p, const struct pfile *f, char *line, size_t len)
{
	int64_t t = clock_now_ms() - f->t_start;
	/* "  PATH [BAR] 100%  24.0 MiB/24.0 MiB  85.2 MiB/s" */
	int path_w = p->width - 1 - p->bar_w - 50;
	char path[512], b[BAR_MAX + 3], got[32], size[32], spd[32];
	uint64_t fetched = f->cached > f->cached_at_start ? f->cached - f->cached_at_start : 0;

	if (path_w < 12)
		path_w = 12;
	if (path_w > (int)sizeof(path) - 1)
		path_w = (int)sizeof(path) - 1;
	fit_path(f->path, path_w, path, sizeof(path));
	bar(percent(f->cached, f->size), p->bar_w, b, sizeof(b));
	humanize_bytes(f->cached, got, sizeof(got));
	humanize_bytes(f->size, size, sizeof(size));
	fmt_speed(t > 0 ? (double)fetched * 1000.0 / (double)t : 0, spd, sizeof(spd));
	snprintf(line, len, "  %s %s %3d%% %9s/%-9s %11s", path, b, percent(f->cached, f->size),
		 got, size, spd);
}

static void total_line(struct progress *p, char *line, size_t len)
{
	uint64_t cached = total_cached(p), size = total_size(p);
	double bps = p->ended ? 0 : speed(p);
	char b[BAR_MAX + 3], got[32], sz[32], spd[32], eta[32] = "--:--";
	size_t done = 0;

	for (size_t i = 0; i < p->n; i++)
		done += p->files[i].status == F_DONE;
	bar(percent(cached, size), p->bar_w, b, sizeof(b));
	humanize_bytes(cached, got, sizeof(got));
	humanize_bytes(size, sz, sizeof(sz));
	if (p->ended) {
		double secs = (double)(p->end_ms - p->t0) / 1000.0;

		fmt_duration(secs, eta, sizeof(eta));
		fmt_speed(secs > 0 ? (double)total_fetched(p) / secs : 0, spd, sizeof(spd));
		snprintf(line, len, "total %s %3d%% %s/%s %s avg in %s, %zu/%zu files", b,
			 percent(cached, size), got, sz, spd, eta, done, p->n);
		return;
	}
	if (bps > 0)
		fmt_duration((double)(size - cached) / bps, eta, sizeof(eta));
	fmt_speed(bps, spd, sizeof(spd));
	snprintf(line, len, "total %s %3d%% %s/%s %s ETA %s %zu/%zu files", b,
		 percent(cached, size), got, sz, spd, eta, done, p->n);
}

static void add_note(struct progress *p, const char *text)
{
	char **grown = realloc(p->notes, (p->n_notes + 1) * sizeof(*grown));
	char *copy = strdup(text);

	if (!grown || !copy) {
		free(copy);
		if (grown)
			p->notes = grown;
		return;
	}
	p->notes = grown;
	p->notes[p->n_notes++] = copy;
}

static void done_line(const struct pfile *f, char *line, size_t len)
{
	char size[32], t[32];

	humanize_bytes(f->size, size, sizeof(size));
	fmt_duration((double)(f->t_done - f->t_start) / 1000.0, t, sizeof(t));
	if (f->ok)
		snprintf(line, len, "done   %s  %s  %s in %s", f->path, f->state ? f->state : "",
			 size, t);
	else if (f->cancelled)
		snprintf(line, len, "stopped %s  (%d%% cached)", f->path, percent(f->cached, f->size));
	else
		snprintf(line, len, "FAILED %s: %s", f->path, f->error ? f->error : "unknown error");
}

/* Redraw the area: notes become permanent lines, then the bars. */
static void draw(struct progress *p)
{
	char line[1024];
	int lines = 0;

	if (p->live_lines > 0)
		fprintf(p->out, "\r\033[%dA", p->live_lines);
	for (size_t i = 0; i < p->n_notes; i++) {
		put_line(p, p->notes[i]);
		free(p->notes[i]);
	}
	p->n_notes = 0;
	for (size_t i = 0; !p->ended && i < p->n; i++) {
		if (p->files[i].status != F_RUNNING)
			continue;
		file_bar_line(p, &p->files[i], line, sizeof(line));
		put_line(p, line);
		lines++;
	}
	total_line(p, line, sizeof(line));
	put_line(p, line);
	lines++;
	fputs("\033[J", p->out);	/* lines the area had before and has no more */
	p->live_lines = lines;
	fflush(p->out);
	p->last_draw = clock_now_ms();
}

static void plain_progress(struct progress *p)
{
	uint64_t cached = total_cached(p), size = total_size(p);
	double bps = speed(p);
	char got[32], sz[32], spd[32], eta[32] = "?";
	size_t running = 0, done = 0;

	for (size_t i = 0; i < p->n; i++) {
		running += p->files[i].status == F_RUNNING;
		done += p->files[i].status == F_DONE;
	}
	if (bps > 0)
		fmt_duration((double)(size - cached) / bps, eta, sizeof(eta));
	fprintf(p->out, "progress %d%% %s of %s, %s, ETA %s, %zu running, %zu/%zu files done\n",
		percent(cached, size), humanize_bytes(cached, got, sizeof(got)),
		humanize_bytes(size, sz, sizeof(sz)), fmt_speed(bps, spd, sizeof(spd)), eta, running,
		done, p->n);
	fflush(p->out);
	p->last_plain = clock_now_ms();
}

/* ---- events ----------------------------------------------------------------------- */

static struct pfile *file_of(struct progress *p, json_t *ev)
{
	json_int_t i = json_integer_value(json_object_get(ev, "file"));

	return i >= 0 && (size_t)i < p->n ? &p->files[i] : NULL;
}

static char *dup_str(json_t *v)
{
	return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static void on_plan(struct progress *p, json_t *ev)
{
	json_t *files = json_object_get(ev, "files"), *f;
	size_t i;

	p->files = calloc(json_array_size(files) + 1, sizeof(*p->files));
	if (!p->files)
		return;
	json_array_foreach(files, i, f) {
		struct pfile *pf = &p->files[p->n++];

		pf->path = dup_str(json_object_get(f, "path"));
		if (!pf->path)
			pf->path = strdup("?");
		pf->size = (uint64_t)json_integer_value(json_object_get(f, "size"));
		pf->cached = pf->cached_at_start =
			(uint64_t)json_integer_value(json_object_get(f, "cached"));
	}
	if (!p->tty) {
		char sz[32], got[32];

		fprintf(p->out, "prefetch %zu file%s, %s, %s cached already\n", p->n,
			p->n == 1 ? "" : "s", humanize_bytes(total_size(p), sz, sizeof(sz)),
			humanize_bytes(total_cached(p), got, sizeof(got)));
	}
}

void progress_event(struct progress *p, json_t *ev)
{
	const char *what = json_string_value(json_object_get(ev, "event"));
	struct pfile *f;
	char line[1024], sz[32], got[32];

	if (!what)
		return;
	if (strcmp(what, "plan") == 0) {
		on_plan(p, ev);
	} else if (strcmp(what, "start") == 0 && (f = file_of(p, ev))) {
		f->status = F_RUNNING;
		f->t_start = clock_now_ms();
		f->cached = f->cached_at_start = (uint64_t)json_integer_value(json_object_get(ev, "cached"));
		if (!p->tty)
			fprintf(p->out, "start  %s  %s, %s cached\n", f->path,
				humanize_bytes(f->size, sz, sizeof(sz)),
				humanize_bytes(f->cached, got, sizeof(got)));
	} else if (strcmp(what, "progress") == 0) {
		json_t *files = json_object_get(ev, "files"), *pair;
		size_t i;

		json_array_foreach(files, i, pair) {
			json_int_t k = json_integer_value(json_array_get(pair, 0));

			uint64_t now = (uint64_t)json_integer_value(json_array_get(pair, 1));

			/* Forward only: bytes of a request that is cut and retried
			 * count as arriving, then no longer. */
			if (k >= 0 && (size_t)k < p->n && now > p->files[k].cached)
				p->files[k].cached = now;
		}
	} else if (strcmp(what, "done") == 0 && (f = file_of(p, ev))) {
		if (f->status == F_WAITING)
			f->t_start = clock_now_ms();
		f->status = F_DONE;
		f->t_done = clock_now_ms();
		f->ok = json_is_true(json_object_get(ev, "ok"));
		f->cancelled = json_is_true(json_object_get(ev, "cancelled"));
		f->cached = (uint64_t)json_integer_value(json_object_get(ev, "cached"));
		f->state = dup_str(json_object_get(ev, "state"));
		f->error = dup_str(json_object_get(ev, "error"));
		done_line(f, line, sizeof(line));
		if (p->tty)
			add_note(p, line);
		else
			fprintf(p->out, "%s\n", line);
	} else if (strcmp(what, "end") == 0) {
		p->ended = true;
		p->cancelled = json_is_true(json_object_get(ev, "cancelled"));
		p->end_ms = clock_now_ms();
	}
	sample(p);
	if (p->tty && (strcmp(what, "progress") != 0 || clock_now_ms() - p->last_draw >= REDRAW_MS))
		draw(p);
	fflush(p->out);
}

void progress_tick(struct progress *p)
{
	if (p->tty && clock_now_ms() - p->last_draw >= REDRAW_MS && p->n)
		draw(p);
	else if (!p->tty && p->n && !p->ended &&
		 clock_now_ms() - p->last_plain >= PROGRESS_PLAIN_SECONDS * 1000)
		plain_progress(p);
}

void progress_note(struct progress *p, const char *line)
{
	if (p->tty && p->n) {
		add_note(p, line);
		draw(p);
	} else {
		fprintf(p->out, "%s\n", line);
		fflush(p->out);
	}
}

int progress_finish(struct progress *p, bool interrupted, FILE *err)
{
	uint64_t fetched = total_fetched(p);
	size_t ok = 0, failed = 0, left = 0;
	char sz[32], got[32], t[32];

	if (!p->ended) {
		p->ended = true;
		p->end_ms = clock_now_ms();
	}
	if (p->tty && p->n)
		draw(p);
	for (size_t i = 0; i < p->n; i++) {
		const struct pfile *f = &p->files[i];

		if (f->status == F_DONE && f->ok)
			ok++;
		else if (f->status == F_DONE && !f->cancelled)
			failed++;
		else
			left++;
	}
	fmt_duration((double)(p->end_ms - p->t0) / 1000.0, t, sizeof(t));
	humanize_bytes(total_size(p), sz, sizeof(sz));
	humanize_bytes(fetched, got, sizeof(got));
	if (interrupted || (p->cancelled && left))
		fprintf(p->out, "interrupted after %s: %zu of %zu files ready, %s fetched; run the same "
			"command again to resume\n", t, ok, p->n, got);
	else
		fprintf(p->out, "prefetched %zu of %zu file%s (%s, %s fetched) in %s%s\n", ok, p->n,
			p->n == 1 ? "" : "s", sz, got, t, failed ? "" : ", all verified or complete");
	fflush(p->out);
	for (size_t i = 0; i < p->n; i++) {
		const struct pfile *f = &p->files[i];

		if (f->status == F_DONE && !f->ok && !f->cancelled)
			fprintf(err, "modelfs prefetch: %s: %s\n", f->path,
				f->error ? f->error : "failed");
	}
	return (int)failed;
}
