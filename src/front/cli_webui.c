/*
 * cli_webui.c: modelfs webui comfyui|forge, the one command that points a
 * webui at the mount. ComfyUI reads extra folders from an
 * extra_model_paths.yaml (a section with a base_path and one key per
 * category); Forge and A1111 take one flag per folder (WEBUI.md §4).
 * Both are written from the config's layout, so they name the folders the
 * mount really shows, whichever layout it uses.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "modelfs/log.h"

/* ComfyUI's categories (folder_paths.py) and the flag Forge takes for
 * the same folder, NULL where Forge has none. */
static const struct {
	const char *comfyui;
	const char *forge_flag;
} targets[] = {
	{ "checkpoints", "--ckpt-dir" },
	{ "loras", "--lora-dir" },
	{ "vae", "--vae-dir" },
	{ "text_encoders", "--text-encoder-dir" },
	{ "diffusion_models", NULL },	/* Forge loads them from --ckpt-dir */
	{ "clip_vision", NULL },
	{ "controlnet", "--controlnet-dir" },
	{ "upscale_models", "--esrgan-models-path" },
	{ "embeddings", "--embeddings-dir" },
	{ "hypernetworks", "--hypernetwork-dir" },
	{ "ControlNetPreprocessor", "--controlnet-preprocessor-models-dir" },
	{ "style_models", NULL },
	{ "gligen", NULL },
	{ "photomaker", NULL },
	{ "vae_approx", NULL },
};
#define N_TARGETS (sizeof(targets) / sizeof(targets[0]))

/* The mount's folder for a category, when the mount shows one: an entry's
 * of that category (a [layout] table may have moved it), else the
 * layout's. Two names are one category when the layout gives them one
 * folder. */
static const char *shown_folder(const struct config *cfg, const char *category)
{
	const char *dir = config_layout_dir(cfg->layout, category);

	if (!dir || !dir[0])
		return NULL;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		const char *its = config_layout_dir(cfg->layout, e->category);
		bool repo_folder = e->source == CONFIG_SOURCE_HUGGINGFACE && !e->file;

		if (its && strcmp(its, dir) == 0 && !repo_folder && e->dir[0])
			return e->dir;
	}
	for (char **d = cfg->dirs; d && *d; d++)
		if (strcmp(*d, dir) == 0)
			return dir;
	return NULL;
}

/* YAML's plain scalars are not safe for every path: single-quote it. */
static void yaml_quoted(FILE *out, const char *s)
{
	fputc('\'', out);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', out);
		fputc(*s, out);
	}
	fputc('\'', out);
}

static void print_comfyui(const struct config *cfg, const char *base)
{
	printf("# extra_model_paths.yaml for the modelfs mount at %s.\n"
	       "# Put it beside ComfyUI's main.py, or pass --extra-model-paths-config FILE.\n"
	       "modelfs:\n"
	       "    base_path: ", base);
	yaml_quoted(stdout, base);
	putchar('\n');
	for (size_t i = 0; i < N_TARGETS; i++) {
		const char *dir = shown_folder(cfg, targets[i].comfyui);

		if (!dir)
			continue;
		printf("    %s: ", targets[i].comfyui);
		yaml_quoted(stdout, dir);
		putchar('\n');
	}
}

/* A word a shell takes as one argument. */
static void shell_quoted(const char *s)
{
	if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@")
	    == strlen(s)) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (; *s; s++)
		if (*s == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*s);
	putchar('\'');
}

static void print_forge(const struct config *cfg, const char *base)
{
	bool first = true;

	for (size_t i = 0; i < N_TARGETS; i++) {
		const char *dir = targets[i].forge_flag ? shown_folder(cfg, targets[i].comfyui) : NULL;
		char path[4096];

		if (!dir)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, dir);
		printf("%s%s ", first ? "" : " ", targets[i].forge_flag);
		shell_quoted(path);
		first = false;
	}
	putchar('\n');
}

int cli_webui(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	const char *which, *base;
	int rc = cli_parse(argc, argv, "webui", &o);

	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	which = o.nargs == 1 ? o.args[0] : NULL;
	if (!which || (strcmp(which, "comfyui") != 0 && strcmp(which, "forge") != 0)) {
		fprintf(stderr, "modelfs webui: say which: modelfs webui comfyui|forge --config CONFIG "
			"[--base MOUNTPOINT]\n");
		return EXIT_USAGE;
	}
	if (!o.config && !(o.config = getenv("PROVISION_URL"))) {
		fprintf(stderr, "modelfs webui: give --config CONFIG (the config that is mounted)\n");
		return EXIT_USAGE;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	rc = cli_load_config(&o, o.config, &cfg);
	if (rc)
		return cli_config_exit(rc);
	base = o.base ? o.base : cfg->mountpoint ? cfg->mountpoint : DEFAULT_MOUNTPOINT;
	if (strcmp(which, "comfyui") == 0)
		print_comfyui(cfg, base);
	else
		print_forge(cfg, base);
	config_free(cfg);
	return 0;
}
