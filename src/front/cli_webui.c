/*
 * cli_webui.c: modelfs webui comfyui|forge, the one command that points a
 * webui at the mount. ComfyUI reads extra folders from an
 * extra_model_paths.yaml (a section with a base_path and one key per
 * category); Forge and A1111 take one flag per folder (WEBUI.md §4).
 * Both are written from the config's layout, so they name the folders the
 * mount really shows, whichever layout it uses. forge-hashes and
 * a1111-hashes fill the hash cache the webui keeps, from the hashes the
 * mount's files carry, so the webui never reads a whole checkpoint to
 * hash it.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/log.h"

/* The categories a webui is pointed at: the key ComfyUI's
 * extra_model_paths.yaml takes (folder_paths.py), NULL where it has none,
 * and the flag Forge takes, NULL where Forge has none. */
static const struct {
	const char *category;
	const char *comfyui;
	const char *forge_flag;
} targets[] = {
	{ "checkpoints", "checkpoints", "--ckpt-dir" },
	{ "loras", "loras", "--lora-dir" },
	{ "vae", "vae", "--vae-dir" },
	{ "text_encoders", "text_encoders", "--text-encoder-dir" },
	{ "diffusion_models", "diffusion_models", NULL },	/* Forge: from --ckpt-dir */
	{ "clip_vision", "clip_vision", NULL },
	{ "controlnet", "controlnet", "--controlnet-dir" },
	{ "upscale_models", "upscale_models", "--esrgan-models-path" },
	{ "embeddings", "embeddings", "--embeddings-dir" },
	{ "hypernetworks", "hypernetworks", "--hypernetwork-dir" },
	{ "diffusers", "diffusers", NULL },	/* folders with a model_index.json */
	{ "ControlNetPreprocessor", NULL, "--controlnet-preprocessor-models-dir" },
	{ "style_models", "style_models", NULL },
	{ "gligen", "gligen", NULL },
	{ "photomaker", "photomaker", NULL },
	{ "vae_approx", "vae_approx", NULL },
};
#define N_TARGETS (sizeof(targets) / sizeof(targets[0]))

/* With several layouts (config.h views): the view a webui reads (its own
 * layout's), else the first; with one layout, the config itself. */
static const struct config *view_for(const struct config *cfg, const char *layout)
{
	for (size_t i = 0; i < cfg->n_views; i++)
		if (strcmp(cfg->views[i]->layout, layout) == 0)
			return cfg->views[i];
	return cfg;
}

/* dir as the view's own layout names it, without the view's folder. */
static const char *in_view(const struct config *cfg, const char *dir)
{
	size_t n = cfg->view ? strlen(cfg->view) : 0;

	if (n && strncmp(dir, cfg->view, n) == 0 && (dir[n] == '/' || !dir[n]))
		return dir[n] ? dir + n + 1 : dir + n;
	return dir;
}

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

		if (its && strcmp(its, dir) == 0 && !repo_folder && in_view(cfg, e->dir)[0])
			return in_view(cfg, e->dir);
	}
	for (char **d = cfg->dirs; d && *d; d++)
		if (strcmp(in_view(cfg, *d), dir) == 0)
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
		const char *dir = targets[i].comfyui ? shown_folder(cfg, targets[i].category) : NULL;

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
		const char *dir = targets[i].forge_flag ? shown_folder(cfg, targets[i].category) : NULL;
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

/* ---- forge-hashes, a1111-hashes: the webui's hash cache, filled ------------- */

/* The hash a file in the mount carries, when the source or config gave
 * one: 0, or -ENODATA. */
static int file_sha256(const char *path, char out[65])
{
	ssize_t n = getxattr(path, "user.modelfs.sha256", out, 64);

	if (n != 64)
		return -ENODATA;
	out[64] = '\0';
	return 0;
}

/* Every file under dir (a folder of the mount), as title -> {"mtime",
 * "sha256"} into section. A checkpoint's title is checkpoint/RELPATH; a
 * LoRA's lora/NAME, its file name without the extension. */
static int add_hashes(json_t *section, const char *dir, const char *rel, bool lora, int *added)
{
	char path[PATH_MAX], sub[PATH_MAX], sha[65], title[PATH_MAX + 16];
	struct dirent *d;
	struct stat st;
	DIR *dh;

	snprintf(path, sizeof(path), "%s%s%s", dir, rel[0] ? "/" : "", rel);
	dh = opendir(path);
	if (!dh)
		return errno == ENOENT ? 0 : -errno;
	while ((d = readdir(dh)) != NULL) {
		char full[PATH_MAX * 2];

		if (d->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", d->d_name);
		snprintf(full, sizeof(full), "%s/%s", dir, sub);
		if (stat(full, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			add_hashes(section, dir, sub, lora, added);
			continue;
		}
		if (!S_ISREG(st.st_mode) || file_sha256(full, sha) != 0)
			continue;
		if (lora) {
			const char *dot = strrchr(d->d_name, '.');

			snprintf(title, sizeof(title), "lora/%.*s",
				 dot ? (int)(dot - d->d_name) : (int)strlen(d->d_name), d->d_name);
		} else {
			snprintf(title, sizeof(title), "checkpoint/%s", sub);
		}
		json_object_set_new(section, title, json_pack("{s:f, s:s}", "mtime",
					(double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9,
					"sha256", sha));
		(*added)++;
	}
	closedir(dh);
	return 0;
}

/* DATA_DIR/cache.json, which Forge and A1111 read their hashes from (and
 * import into their diskcache cache/ folder when that is absent): the
 * entries there are kept, the mount's files added, written atomically.
 * LoRAs only for Forge: it keeps the whole file's SHA-256 for one, A1111
 * the SHA-256 of the bytes after the header (WEBUI.md §2), which no
 * source states. */
static int webui_hashes(const struct config *cfg, const char *base, const char *data_dir,
			bool loras)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16], dir[PATH_MAX];
	json_t *cache, *hashes, *addnet;
	json_error_t jerr;
	const char *folder;
	int added = 0, rc = 0;

	snprintf(path, sizeof(path), "%s/cache.json", data_dir);
	cache = json_load_file(path, 0, &jerr);
	if (!cache && access(path, F_OK) == 0) {
		fprintf(stderr, "modelfs webui: %s is not JSON (%s); move it aside\n", path, jerr.text);
		return EXIT_MODEL;
	}
	if (!cache)
		cache = json_object();
	hashes = json_object_get(cache, "hashes");
	if (!json_is_object(hashes))
		json_object_set_new(cache, "hashes", hashes = json_object());
	addnet = json_object_get(cache, "hashes-addnet");
	if (!json_is_object(addnet))
		json_object_set_new(cache, "hashes-addnet", addnet = json_object());
	if ((folder = shown_folder(cfg, "checkpoints")) != NULL) {
		snprintf(dir, sizeof(dir), "%s/%s", base, folder);
		rc = add_hashes(hashes, dir, "", false, &added);
	}
	if (rc == 0 && loras && (folder = shown_folder(cfg, "loras")) != NULL) {
		snprintf(dir, sizeof(dir), "%s/%s", base, folder);
		rc = add_hashes(addnet, dir, "", true, &added);
	}
	snprintf(tmp, sizeof(tmp), "%s.modelfs-tmp", path);
	if (rc == 0 && json_dump_file(cache, tmp, JSON_INDENT(4) | JSON_SORT_KEYS) != 0)
		rc = -EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	json_decref(cache);
	if (rc) {
		unlink(tmp);
		fprintf(stderr, "modelfs webui: cannot write %s: %s\n", path, strerror(-rc));
		return EXIT_MODEL;
	}
	printf("%d hash%s written to %s\n", added, added == 1 ? "" : "es", path);
	return 0;
}

int cli_webui(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	const struct config *view;
	const char *which, *base;
	char *view_base = NULL;
	bool hashes;
	int rc = cli_parse(argc, argv, "webui", &o);

	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	which = o.nargs >= 1 ? o.args[0] : NULL;
	hashes = which && (strcmp(which, "forge-hashes") == 0 || strcmp(which, "a1111-hashes") == 0);
	if (!which || (strcmp(which, "comfyui") != 0 && strcmp(which, "forge") != 0 && !hashes) ||
	    o.nargs != (hashes ? 2 : 1)) {
		fprintf(stderr, "modelfs webui: say which: modelfs webui comfyui|forge --config CONFIG "
			"[--base MOUNTPOINT], or webui forge-hashes|a1111-hashes DATA_DIR --config "
			"CONFIG [--base MOUNTPOINT]\n");
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
	view = view_for(cfg, strcmp(which, "comfyui") == 0 ? "comfyui" : "forge");
	if (view->view) {
		if (asprintf(&view_base, "%s/%s", base, view->view) < 0) {
			config_free(cfg);
			return EXIT_MODEL;
		}
		base = view_base;
	}
	rc = 0;
	if (strcmp(which, "comfyui") == 0)
		print_comfyui(view, base);
	else if (strcmp(which, "forge") == 0)
		print_forge(view, base);
	else
		rc = webui_hashes(view, base, o.args[1], strcmp(which, "forge-hashes") == 0);
	free(view_base);
	config_free(cfg);
	return rc;
}
