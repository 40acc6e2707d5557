/*
 * cli_catalog.c: modelfs catalog [search WORDS ...] [--json]
 *                modelfs catalog add NAME --config FILE [--category C]
 *
 * Lists the built-in catalog (model_catalog.h), or the models every word
 * matches (in the name, title, repo, file, category or licence, any case),
 * with the GPU memory `modelfs info` would estimate from the weights'
 * size. Exit 1 when nothing matches. `add` writes NAME = { catalog =
 * "NAME" } into a config file, in the catalog's category unless told
 * another: into that category's table where the file has one, the rest of
 * the file as it was; the result must load as a config, or nothing is
 * written.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "modelfs/humanize.h"
#include "modelfs/model_catalog.h"
#include "modelfs/modelinfo.h"
#include "modelfs/toml.h"

static bool matches(const struct catalog_model *m, char *const *words, int n)
{
	for (int i = 0; i < n; i++) {
		const char *fields[] = { m->name, m->title, m->repo, m->file, m->category,
					 m->license };
		bool hit = false;

		for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]) && !hit; f++)
			hit = strcasestr(fields[f], words[i]) != NULL;
		if (!hit)
			return false;
	}
	return true;
}

/* Weights x MODELINFO_OVERHEAD, as `info` estimates; -1 when unknown. */
static int64_t vram_of(const struct catalog_model *m)
{
	return m->size > 0 ? (int64_t)((double)m->size * MODELINFO_OVERHEAD) : -1;
}

static json_t *model_json(const struct catalog_model *m)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:o}",
			 "name", m->name, "title", m->title, "category", m->category,
			 "repo", m->repo, "file", m->file, "revision", m->revision,
			 "license", m->license, "gated", m->gated,
			 "size", m->size > 0 ? json_integer(m->size) : json_null(),
			 "vram_bytes", vram_of(m) > 0 ? json_integer(vram_of(m)) : json_null(),
			 "sha256", m->sha256 ? json_string(m->sha256) : json_null());
}

/* Column widths: the longest name and licence shown. */
struct widths {
	int name, license;
};

static void print_model(const struct catalog_model *m, struct widths w)
{
	char size[32] = "-", vram[32] = "-";

	if (m->size > 0)
		humanize_bytes((uint64_t)m->size, size, sizeof(size));
	if (vram_of(m) > 0)
		humanize_bytes((uint64_t)vram_of(m), vram, sizeof(vram));
	printf("%-*s %-16s %10s %10s  %-*s %-5s %s\n", w.name, m->name, m->category, size, vram,
	       w.license, m->license, m->gated ? "yes" : "no", m->title);
}

/* The byte offset where line (1-based) starts in text, or len. */
static size_t line_start(const char *text, size_t len, int line)
{
	size_t at = 0;

	for (int l = 1; l < line && at < len; at++)
		if (text[at] == '\n')
			l++;
	return at;
}

/* text with the entry line put in: just after the category's [models.C]
 * header, or in a new table at the end. NULL (message printed) when the
 * file cannot take it that way. */
static char *with_entry(const char *text, size_t len, const char *file, const char *category,
			const char *name, const char *line)
{
	const struct toml_value *models, *table = NULL;
	struct toml_value *root = NULL;
	struct toml_error terr;
	char *out = NULL;
	size_t at;

	if (toml_parse(text, len, &root, &terr) != 0) {
		fprintf(stderr, "modelfs catalog: %s:%d:%d: %s\n", file, terr.line, terr.col, terr.msg);
		return NULL;
	}
	models = toml_table_get(root, "models");
	if (models && models->type == TOML_TABLE)
		table = toml_table_get(models, category);
	if (table && (table->type != TOML_TABLE || toml_table_get(table, name))) {
		fprintf(stderr, "modelfs catalog: %s already has %s in [models.%s]%s\n", file, name,
			category, table->type != TOML_TABLE ? " (not a table)" : "");
		goto out;
	}
	if (!table) {
		bool nl = len && text[len - 1] != '\n';

		if (asprintf(&out, "%.*s%s\n[models.%s]\n%s\n", (int)len, text, nl ? "\n" : "",
			     category, line) < 0)
			out = NULL;
		goto out;
	}
	at = line_start(text, len, table->line);
	if (at >= len || text[at + strspn(text + at, " \t")] != '[') {
		fprintf(stderr, "modelfs catalog: %s writes models.%s inline; add %s = { catalog = "
			"\"%s\" } there by hand\n", file, category, name, name);
		goto out;
	}
	at += strcspn(text + at, "\n");
	if (asprintf(&out, "%.*s\n%s%.*s", (int)at, text, line, (int)(len - at), text + at) < 0)
		out = NULL;
out:
	toml_free(root);
	return out;
}

static int put_text(FILE *f, void *text)
{
	return fputs(text, f) < 0 ? -EIO : 0;
}

static int catalog_add(const struct model_catalog *c, const struct cli_opts *o)
{
	const struct catalog_model *m = o->nargs == 2 ? model_catalog_find(c, o->args[1]) : NULL;
	struct config_error cerr;
	struct config *cfg = NULL;
	char *text = NULL, *line = NULL, *out = NULL;
	const char *category;
	size_t len = 0;
	FILE *f;
	int rc, code = EXIT_MODEL;

	if (o->nargs != 2 || !o->config) {
		fputs("usage: modelfs catalog add NAME --config FILE [--category C]\n", stderr);
		return EXIT_USAGE;
	}
	if (!m) {
		fprintf(stderr, "modelfs catalog: no model %s in the catalog; `modelfs catalog "
			"search WORDS` finds one\n", o->args[1]);
		return EXIT_USAGE;
	}
	category = o->category ? o->category : m->category;
	f = fopen(o->config, "r");
	if (!f || (text = malloc(1 << 20)) == NULL ||
	    (len = fread(text, 1, (1 << 20) - 1, f), ferror(f))) {
		fprintf(stderr, "modelfs catalog: cannot read %s: %s\n", o->config,
			strerror(errno ? errno : EIO));
		goto out;
	}
	text[len] = '\0';
	if (asprintf(&line, "\"%s\" = { catalog = \"%s\" }", m->name, m->name) < 0) {
		line = NULL;
		goto out;
	}
	out = with_entry(text, len, o->config, category, m->name, line);
	if (!out) {
		code = EXIT_USAGE;
		goto out;
	}
	/* What is written must load as a config: nothing else is written. */
	rc = config_parse(out, strlen(out), o->config, &cfg, &cerr);
	if (rc) {
		fprintf(stderr, "modelfs catalog: with %s added, %s would not load: %s; left as it "
			"was\n", m->name, o->config, cerr.msg);
		code = EXIT_USAGE;
		goto out;
	}
	rc = cli_write_whole(o->config, put_text, out);
	if (rc) {
		fprintf(stderr, "modelfs catalog: cannot write %s: %s\n", o->config, strerror(-rc));
		goto out;
	}
	printf("added %s to [models.%s] of %s%s\n", m->name, category, o->config,
	       m->gated ? " (gated: set HF_TOKEN and accept its terms on the Hub)" : "");
	code = 0;
out:
	if (f)
		fclose(f);
	config_free(cfg);
	free(text);
	free(line);
	free(out);
	return code;
}

int cli_catalog(int argc, char **argv)
{
	struct model_catalog_error err;
	struct model_catalog *c = NULL;
	struct cli_opts o;
	char path[PATH_MAX];
	char *const *words;
	json_t *list = NULL;
	struct widths w = { .name = 4, .license = 7 };
	int rc, nwords, shown = 0;

	rc = cli_parse(argc, argv, "catalog", &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	if (o.nargs > 0 && strcmp(o.args[0], "search") != 0 && strcmp(o.args[0], "add") != 0) {
		fprintf(stderr, "usage: modelfs catalog [search WORDS ...] [--json]\n"
			"       modelfs catalog add NAME --config FILE [--category C]\n");
		return EXIT_USAGE;
	}
	words = o.nargs ? o.args + 1 : NULL;
	nwords = o.nargs ? o.nargs - 1 : 0;
	rc = model_catalog_load(model_catalog_path(path, sizeof(path)), &c, &err);
	if (rc) {
		fprintf(stderr, "modelfs catalog: %s\n", err.msg);
		return rc == -EINVAL ? EXIT_USAGE : EXIT_MODEL;
	}
	if (o.nargs > 0 && strcmp(o.args[0], "add") == 0) {
		rc = catalog_add(c, &o);
		model_catalog_free(c);
		return rc;
	}
	list = o.json ? json_array() : NULL;
	for (size_t i = 0; i < c->n; i++)
		if (matches(&c->models[i], words, nwords)) {
			int nl = (int)strlen(c->models[i].name), ll = (int)strlen(c->models[i].license);

			w.name = nl > w.name ? nl : w.name;
			w.license = ll > w.license ? ll : w.license;
		}
	if (!o.json)
		printf("%-*s %-16s %10s %10s  %-*s %-5s %s\n", w.name, "NAME", "CATEGORY", "SIZE",
		       "GPU MEM", w.license, "LICENSE", "GATED", "TITLE");
	for (size_t i = 0; i < c->n; i++) {
		if (!matches(&c->models[i], words, nwords))
			continue;
		shown++;
		if (list)
			json_array_append_new(list, model_json(&c->models[i]));
		else
			print_model(&c->models[i], w);
	}
	if (list)
		cli_print_json(list);
	else if (shown)
		printf("\nin a config: [models.CATEGORY] NAME = { catalog = \"NAME\" } (gated ones "
		       "need HF_TOKEN and the model's terms accepted on the Hub)\n");
	else
		printf("(no model matches)\n");
	json_decref(list);
	model_catalog_free(c);
	return shown ? 0 : EXIT_MODEL;
}
