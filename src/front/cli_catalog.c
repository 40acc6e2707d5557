/*
 * cli_catalog.c: modelfs catalog [search WORDS ...] [--json]
 *
 * Lists the built-in catalog (model_catalog.h), or the models every word
 * matches (in the name, title, repo, file, category or licence, any case),
 * with the GPU memory `modelfs info` would estimate from the weights'
 * size. Exit 1 when nothing matches.
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
	if (o.nargs > 0 && strcmp(o.args[0], "search") != 0) {
		fprintf(stderr, "usage: modelfs catalog [search WORDS ...] [--json]\n");
		return EXIT_USAGE;
	}
	words = o.nargs ? o.args + 1 : NULL;
	nwords = o.nargs ? o.nargs - 1 : 0;
	rc = model_catalog_load(model_catalog_path(path, sizeof(path)), &c, &err);
	if (rc) {
		fprintf(stderr, "modelfs catalog: %s\n", err.msg);
		return rc == -EINVAL ? EXIT_USAGE : EXIT_MODEL;
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
