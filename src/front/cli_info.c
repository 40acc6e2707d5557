/*
 * cli_info.c: modelfs info FILE. Reads a .safetensors or .gguf header
 * (modelinfo.h) and nothing more: a file here (in the mount too) is read
 * with plain preads, with kernel readahead off so that a header read
 * does not pull in the next blocks; a file named by its path in the
 * mount or its entry is found through the mount's daemon, or, with
 * --config and no mount, read through an engine of our own, which
 * fetches only the blocks the header lies in.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/engine.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"
#include "modelfs/modelinfo.h"
#include "modelfs/ops.h"

#define FIRST_READ (64 * 1024)

/* A source of the file's bytes: n read at off, or -errno. */
typedef ssize_t (*read_fn)(void *ctx, void *buf, uint64_t off, size_t len);

static ssize_t fd_read(void *ctx, void *buf, uint64_t off, size_t len)
{
	int fd = *(int *)ctx;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t engine_file_read(void *ctx, void *buf, uint64_t off, size_t len)
{
	return engine_read_wait(ctx, buf, off, len);
}

/* Read as much of the start of the file as its header takes. */
static int read_header(read_fn rd, void *ctx, uint64_t size, struct modelinfo *mi,
		       char *reason, size_t rlen)
{
	size_t have = 0, want = size < FIRST_READ ? (size_t)size : FIRST_READ;
	char *buf = NULL;
	uint64_t need = 0;
	int rc;

	for (;;) {
		if (want > have) {
			char *grown = realloc(buf, want);
			ssize_t n;

			if (!grown) {
				rc = -ENOMEM;
				break;
			}
			buf = grown;
			n = rd(ctx, buf + have, have, want - have);
			if (n < 0) {
				rc = (int)n;
				snprintf(reason, rlen, "reading the header: %s", strerror(-rc));
				break;
			}
			have += (size_t)n;
		}
		rc = modelinfo_parse(buf, have, size, mi, &need, reason, rlen);
		if (rc != -EAGAIN)
			break;
		if (need <= have) {
			rc = -EIO;
			snprintf(reason, rlen, "the file is shorter than its size says");
			break;
		}
		want = (size_t)need;
	}
	free(buf);
	return rc;
}

/* ---- output -------------------------------------------------------------------- */

static const char *format_name(enum modelinfo_format f)
{
	return f == MODELINFO_GGUF ? "gguf" : f == MODELINFO_SAFETENSORS ? "safetensors" : "unknown";
}

static char *params_human(uint64_t n, char *buf, size_t len)
{
	if (n >= 1000000000ull)
		snprintf(buf, len, "%.2f B", (double)n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, len, "%.1f M", (double)n / 1e6);
	else if (n >= 1000ull)
		snprintf(buf, len, "%.1f K", (double)n / 1e3);
	else
		snprintf(buf, len, "%llu", (unsigned long long)n);
	return buf;
}

static json_t *info_json(const char *path, const struct modelinfo *mi)
{
	json_t *dtypes = json_array(), *o;
	uint64_t vram = modelinfo_vram_estimate(mi);
	int fit = modelinfo_gpu_fit(vram);

	for (size_t i = 0; i < mi->n_dtypes; i++)
		json_array_append_new(dtypes, json_pack("{s:s, s:I, s:I, s:I}",
			"dtype", mi->dtypes[i].name, "tensors", (json_int_t)mi->dtypes[i].tensors,
			"parameters", (json_int_t)mi->dtypes[i].params,
			"bytes", (json_int_t)mi->dtypes[i].bytes));
	o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:I, s:f, s:I, s:o, s:I}",
		      "path", path, "format", format_name(mi->format),
		      "file_size", (json_int_t)mi->file_size,
		      "header_bytes", (json_int_t)mi->header_bytes,
		      "tensors", (json_int_t)mi->tensors, "parameters", (json_int_t)mi->params,
		      "dtypes", dtypes, "weight_bytes", (json_int_t)mi->weight_bytes,
		      "overhead", MODELINFO_OVERHEAD, "vram_bytes", (json_int_t)vram,
		      "gpu_gb", fit ? json_integer(fit) : json_null(),
		      "metadata_keys", (json_int_t)mi->metadata_keys);
	json_object_set_new(o, "gguf_version", mi->gguf_version ? json_integer(mi->gguf_version)
			    : json_null());
	json_object_set_new(o, "architecture", mi->arch[0] ? json_string(mi->arch) : json_null());
	json_object_set_new(o, "name", mi->name[0] ? json_string(mi->name) : json_null());
	return o;
}

static void print_info(const char *path, const struct modelinfo *mi)
{
	uint64_t vram = modelinfo_vram_estimate(mi);
	int fit = modelinfo_gpu_fit(vram);
	char a[32], b[32], c[32];

	printf("file:        %s\n", path);
	printf("format:      %s", format_name(mi->format));
	if (mi->gguf_version)
		printf(" v%u", mi->gguf_version);
	printf(" (header %s)\n", humanize_bytes(mi->header_bytes, a, sizeof(a)));
	if (mi->arch[0] || mi->name[0])
		printf("model:       %s%s%s\n", mi->name, mi->name[0] && mi->arch[0] ? ", " : "",
		       mi->arch);
	printf("size:        %s (%llu bytes)\n", humanize_bytes(mi->file_size, a, sizeof(a)),
	       (unsigned long long)mi->file_size);
	printf("tensors:     %llu\n", (unsigned long long)mi->tensors);
	printf("parameters:  %s (%llu)\n", params_human(mi->params, a, sizeof(a)),
	       (unsigned long long)mi->params);
	printf("dtypes:     ");
	for (size_t i = 0; i < mi->n_dtypes; i++)
		printf("%s %s: %llu tensors, %s params, %s", i ? "\n            " : "",
		       mi->dtypes[i].name, (unsigned long long)mi->dtypes[i].tensors,
		       params_human(mi->dtypes[i].params, b, sizeof(b)),
		       humanize_bytes(mi->dtypes[i].bytes, c, sizeof(c)));
	printf("%s\n", mi->n_dtypes ? "" : " none");
	printf("weights:     %s\n", humanize_bytes(mi->weight_bytes, a, sizeof(a)));
	printf("GPU memory:  about %s to load (weights x %.1f for the CUDA context, activations "
	       "and buffers); ", humanize_bytes(vram, b, sizeof(b)), MODELINFO_OVERHEAD);
	if (fit)
		printf("fits a%s %d GB GPU\n", fit == 8 || fit == 80 ? "n" : "", fit);
	else
		printf("more than an 80 GB GPU: split it across GPUs or quantize it\n");
}

static int report(const struct cli_opts *o, const char *path, read_fn rd, void *ctx,
		  uint64_t size)
{
	struct modelinfo mi;
	char reason[512];
	int rc = read_header(rd, ctx, size, &mi, reason, sizeof(reason));

	if (rc) {
		fprintf(stderr, "modelfs info: %s: %s\n", path, reason[0] ? reason : strerror(-rc));
		return rc == -EINVAL ? EXIT_USAGE : EXIT_MODEL;
	}
	if (o->json) {
		json_t *j = info_json(path, &mi);

		cli_print_json(j);
		json_decref(j);
	} else {
		print_info(path, &mi);
	}
	modelinfo_clear(&mi);
	return 0;
}

static int info_local(const struct cli_opts *o, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), code;

	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "modelfs info: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_MODEL;
	}
	/* Only the pages asked for: in a mount, readahead would fetch more. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	code = report(o, path, fd_read, &fd, (uint64_t)st.st_size);
	close(fd);
	return code;
}

/* The one file arg names in a mount's status, as a path in the mount. */
static int find_in_status(json_t *st, const char *arg, const char *mnt, char **path)
{
	json_t *files = json_object_get(st, "files"), *f;
	struct ops_list l = { 0 };
	bool *chosen = NULL;
	char err[512];
	size_t i, hits = 0;
	int rc;

	l.items = calloc(json_array_size(files) + 1, sizeof(*l.items));
	if (!l.items)
		return -ENOMEM;
	json_array_foreach(files, i, f) {
		const char *id = json_string_value(json_object_get(f, "entry"));
		const char *p = json_string_value(json_object_get(f, "path"));

		l.items[l.n].path = p ? strdup(p) : NULL;
		l.items[l.n].entry_id = id ? strdup(id) : NULL;
		l.items[l.n].entry_name = id && strchr(id, '/') ? strdup(strchr(id, '/') + 1) : NULL;
		l.n++;
	}
	rc = ops_select(&l, (char *const *)&arg, 1, mnt, &chosen, err, sizeof(err));
	if (rc == -ENOENT)
		fprintf(stderr, "modelfs info: %s\n", err);
	for (i = 0; rc == 0 && i < l.n; i++)
		if (chosen[i] && l.items[i].path && hits++ == 0)
			*path = strdup(l.items[i].path);
	if (rc == 0 && hits != 1) {
		fprintf(stderr, "modelfs info: \"%s\" names %zu files; name one file\n", arg, hits);
		free(*path);
		*path = NULL;
		rc = -EINVAL;
	}
	free(chosen);
	ops_list_free(&l);
	return rc;
}

static int info_via_daemon(struct cli_target *t, const struct cli_opts *o, const char *arg)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *st = NULL;
	char *rel = NULL, *full = NULL;
	int code = cli_call(t, req, &st);

	json_decref(req);
	if (code)
		return code;
	if (find_in_status(st, arg, t->mountpoint, &rel) != 0)
		code = EXIT_USAGE;
	else if (asprintf(&full, "%s/%s", t->mountpoint, rel) < 0)
		code = EXIT_MODEL;
	else
		code = info_local(o, full);
	free(rel);
	free(full);
	json_decref(st);
	return code;
}

static int info_standalone(struct cli_target *t, const struct cli_opts *o, const char *arg)
{
	const struct config *cfg = t->cfg;
	struct engine *engine = NULL;
	struct ops_list l = { 0 };
	struct engine_file *f = NULL;
	bool *chosen = NULL;
	char err[512];
	size_t hits = 0;
	int rc, code = 0;

	rc = engine_open(cfg, t->cache, &engine);
	if (rc == 0)
		rc = engine_start(engine);
	if (rc == 0)
		rc = ops_list_engine(engine, t->cache, &l);
	if (rc == 0)
		rc = ops_select(&l, (char *const *)&arg, 1,
				cfg->mountpoint ? cfg->mountpoint : DEFAULT_MOUNTPOINT, &chosen, err,
				sizeof(err));
	for (size_t i = 0; rc == 0 && i < l.n; i++)
		if (chosen[i] && hits++ == 0)
			f = l.items[i].ef;
	if (rc) {
		fprintf(stderr, "modelfs info: %s\n", rc == -ENOENT ? err : strerror(-rc));
		code = rc == -ENOENT ? EXIT_USAGE : EXIT_MODEL;
	} else if (hits != 1) {
		fprintf(stderr, "modelfs info: \"%s\" names %zu files; name one file\n", arg, hits);
		code = EXIT_USAGE;
	} else if ((rc = engine_file_open_error(f)) != 0) {
		char *why = engine_file_error(f);

		fprintf(stderr, "modelfs info: %s: %s\n", engine_file_path(f), why ? why : strerror(-rc));
		free(why);
		code = EXIT_MODEL;
	} else {
		code = report(o, engine_file_path(f), engine_file_read, f, engine_file_size(f));
	}
	free(chosen);
	ops_list_free(&l);
	engine_close(engine);
	return code;
}

int cli_info(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t;
	struct stat st;
	int code, rc;

	rc = cli_parse(argc, argv, "info", &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	if (o.nargs != 1) {
		fprintf(stderr, "modelfs info: give one FILE (.safetensors or .gguf)\n");
		return EXIT_USAGE;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	if (stat(o.args[0], &st) == 0 && S_ISREG(st.st_mode))
		return info_local(&o, o.args[0]);
	code = cli_target_open(&o, false, "info", &t);
	if (code)
		return code;
	if (t.fd >= 0)
		code = info_via_daemon(&t, &o, o.args[0]);
	else if (t.cfg)
		code = info_standalone(&t, &o, o.args[0]);
	else {
		fprintf(stderr, "modelfs info: %s: no such file; name a file in the mount, or give "
			"--config CONFIG to read one through the cache without a mount\n", o.args[0]);
		code = EXIT_USAGE;
	}
	cli_target_close(&t);
	return code;
}
