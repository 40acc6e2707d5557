/*
 * config.h: the modelfs TOML config, read, validated and laid out.
 *
 * (1) A config that loads is complete: every entry has a source, a
 *     category folder and (for sources whose file name is known without
 *     the network) a file name; sizes, durations and enums are parsed.
 * (2) Every error names the place: "FILE:LINE:COL: what is wrong", the
 *     key for an unknown key, the variable for an unset ${VAR}, both
 *     entries for two entries with the same path in the mount.
 * (3) A category within two edits of a known name (a typo: "chekpoints")
 *     is refused with a did-you-mean, unless [layout] names its folder.
 * (4) ${VAR} is expanded in every string value of an entry (and in the
 *     [modelfs] strings); each expanded value is registered with
 *     log_add_secret(), so it never reaches a log line. "$${" writes a
 *     literal "${".
 * Ownership: config_load() gives a struct config; config_free() frees it
 * and everything it points to.
 * Threads: a loaded config is immutable and may be read from any thread.
 */
#ifndef MODELFS_CONFIG_H
#define MODELFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_source {
	CONFIG_SOURCE_URL,		/* plain http(s), incl. Drive and presigned links */
	CONFIG_SOURCE_HUGGINGFACE,
	CONFIG_SOURCE_CIVITAI,
	CONFIG_SOURCE_S3,
	CONFIG_SOURCE_LOCAL,		/* a file on this machine, served as it is (no cache) */
};

enum config_verify {
	CONFIG_VERIFY_LAZY,		/* serve blocks as they arrive, hash at completion */
	CONFIG_VERIFY_STRICT,		/* serve nothing until the whole file is verified */
};

struct config_header {
	char *name;
	char *value;			/* may hold a secret: never log it */
};

struct config_entry {
	char *category;			/* table name under [models]: "checkpoints" */
	char *name;			/* key in that table: "sdxl-base" */
	char *id;			/* "checkpoints/sdxl-base": unique, stable */
	char *dir;			/* folder in the mount from the layout: "Stable-diffusion";
					 * "" in the flat layout; a huggingface repo without
					 * file is the folder itself: "Stable-diffusion/NAME" */
	char *filename;			/* name in dir; NULL when only the source knows it
					 * (Drive links, civitai, URLs ending in '/') and for
					 * a repo folder */
	enum config_source source;

	char *url;			/* url, s3: as written, ${VAR} expanded */
	char *url_written;		/* the same before expansion, for showing
					 * (log_url_public() still hides userinfo) */
	char *repo, *file, *revision, *repo_type;	/* huggingface */
	char **include, **exclude;	/* huggingface repo folders; NULL-terminated or NULL */
	char *model_id, *version_id, *file_id;		/* civitai */
	char *endpoint, *region;	/* s3 */
	char *path;			/* local: absolute */
	char **mirrors;			/* NULL-terminated or NULL */
	char *mirror_token_file;	/* sent as Bearer to the mirrors' hosts only, or NULL:
					 * [modelfs] mirror_token_file then */

	struct config_header *headers;	/* sent to the entry's own host only */
	size_t n_headers;
	char *auth_header;		/* Authorization value, or NULL */

	char *sha256;			/* expected, 64 lowercase hex, or NULL */
	int64_t size;			/* expected size in bytes, or -1 */
	bool gated, prefetch, pin;
	enum config_verify verify;
	int line, col;			/* where the entry is written */

	/* An artifact of a manifest entry ({ source = "manifest", path =
	 * "x.yaml" }, manifest.h): it is expanded into one entry per
	 * artifact, all with the manifest entry's category and name, ids
	 * "CATEGORY/NAME/PATH", the model's folder "FOLDER/NAME". NULL for
	 * any other entry. */
	char *manifest;			/* the manifest file, as opened */
	char *manifest_model;		/* its model_id and version, or NULL */
	char *manifest_version;
};

#define CONFIG_SERVE_ALLOW_MAX 64

struct config {
	char *path;			/* as given to config_load() */
	char *cache_dir;		/* NULL: the caller's default */
	int64_t cache_max_size;		/* bytes, or -1 when given as a percentage */
	double cache_max_percent;	/* of the cache filesystem, when size is -1;
					 * size -1 with 0 here (the default): no limit */
	int64_t cache_min_free;		/* bytes, or -1 when given as a percentage */
	double cache_min_free_percent;	/* default 5 */
	uint32_t block_size;		/* power of two, 64 KiB .. 256 MiB; default 8 MiB */
	char *layout;			/* "forge", "comfyui", "flat" */
	enum config_verify verify;
	int connections;		/* 1 .. 64, default 32 */
	int retry_timeout_sec;		/* how long transient failures are retried, default 120 */
	int cache_ttl_sec;		/* evict files not used this long; 0 (default): never */
	char *mountpoint;		/* NULL: /workspace/models */
	char *local_dir;		/* local files live here; NULL: in the mountpoint's
					 * own folder */
	char *lock;			/* a lock file to mount with (lock.h), as written:
					 * relative to the config's folder; or NULL */
	char *serve;			/* [modelfs] serve: "ADDR:PORT" the mount's daemon
					 * also serves the Hub's protocol on, or NULL */
	char *serve_prefix;		/* its path prefix, or NULL */
	char *serve_token_file;		/* the server's access token: clients must send it
					 * (needed to serve beyond loopback), or NULL */
	char *hf_endpoint, *civitai_endpoint, *gdrive_endpoint;	/* no trailing '/' */
	char *cache_proxy;		/* a shared cache tier (tier.h), no trailing '/', or NULL */
	bool cache_proxy_private;	/* requests with credentials go through it too */
	char *cache_proxy_token_file;	/* the tier's access token (a neighbour's serve),
					 * sent to the tier's host only, or NULL */
	char *shared_cache;		/* "s3://bucket[/prefix]": a bucket shared by nodes
					 * (bucket.h), or NULL */
	enum config_shared_mode {
		CONFIG_SHARED_READ_WRITE,
		CONFIG_SHARED_READ_ONLY,	/* a platform fills it; never upload */
	} shared_cache_mode;
	char **shared_cache_allow;	/* upload only files matching one of these globs
					 * (repo ids, paths); NULL-terminated or NULL: all */
	char *mirror_token_file;	/* every entry's mirror_token_file unless it has one */
	int64_t bandwidth_limit;	/* bytes per second over all connections; 0: none */
	/* serve: Hub repos not in the config that a client may have fetched
	 * on demand, as fnmatch(3) patterns over "org/name" (models) and
	 * "datasets/org/name" with FNM_PATHNAME; NULL-terminated, or NULL
	 * (the default): only configured repos are served. At most
	 * serve_allow_max repo revisions are added this way in one run. */
	char **serve_allow;
	int serve_allow_max;		/* default CONFIG_SERVE_ALLOW_MAX */
	bool header_prefetch;		/* fetch safetensors/GGUF headers at mount
					 * (engine_prefetch_headers()); default true */
	char **prefetch;		/* [modelfs] prefetch: entry ids, entry names or
					 * paths in the mount to warm after mounting;
					 * NULL-terminated or NULL */

	/* layout = ["forge", "comfyui"]: one subtree per layout over one
	 * cache. views[i] is the config as layout i lays it out, everything
	 * under a folder of the layout's name ("forge/Stable-diffusion/..."),
	 * with the same entries in the same order; views[0] is this config.
	 * view: the folder this config's files are under, or NULL (one
	 * layout: views NULL, n_views 0). */
	struct config **views;
	size_t n_views;
	char *view;

	char **dirs;			/* every folder of the mount, NULL-terminated, sorted
					 * (parents first), no root: the layout's folders
					 * (shown even when empty), [layout]'s, and every
					 * folder an entry uses (a repo folder too) */
	struct config_entry *entries;
	size_t n_entries;
};

struct config_error {
	char msg[512];			/* "FILE:LINE:COL: what is wrong" */
};

/* Read and validate the config at path. 0 and *out; -EINVAL with err
 * filled for a bad config; -errno (err filled) when the file can't be
 * read. */
int config_load(const char *path, struct config **out, struct config_error *err);
/* A path ending in .yaml or .yml is a model manifest (manifest.h):
 * config_load() makes it a config of one manifest entry, under
 * [models.diffusers] for a diffusers pipeline (profile, model_index.json),
 * else [models.checkpoints]. */
bool config_is_manifest(const char *path);
/* A Hugging Face repo id, "owner/name" (letters, digits, "-_."), and a
 * relative path inside a repo (no empty, "." or ".." part, each a file
 * name): what huggingface entries, manifests and the catalog accept. */
bool config_valid_repo(const char *s);
bool config_valid_repo_path(const char *s);

/* The same from text already in memory; name is used in messages. */
int config_parse(const char *text, size_t len, const char *name,
		 struct config **out, struct config_error *err);

/* The same with the layout named by a mount's -o layout= ("forge",
 * "comfyui", "flat") in place of [modelfs] layout; [layout] tables still
 * move folders. layout NULL: as above. */
int config_load_layout(const char *path, const char *layout, struct config **out,
		       struct config_error *err);
int config_parse_layout(const char *text, size_t len, const char *name, const char *layout,
			struct config **out, struct config_error *err);

void config_free(struct config *cfg);

/* "42G", "512MiB", "8 m", "1024" -> *bytes (binary units, K = 1024);
 * "80%", "12.5%" -> *percent (0 < p <= 100) and *bytes = -1. With percent
 * NULL a percentage is refused. 0, or -EINVAL for anything else
 * (negative, fraction, overflow, unknown unit). */
int config_parse_size(const char *text, int64_t *bytes, double *percent);

/* "90s", "2m", "1h", "1h30m", "45" (seconds) -> seconds; 0 or -EINVAL. */
int config_parse_duration(const char *text, int *seconds);

/* The folder for a category under a layout. Either webui's folder name
 * is a name of the category, matched ignoring case: "lora", "loras" and
 * "Lora" -> "Lora" in forge, "loras" in comfyui. A category no layout
 * knows is a folder of its own name; "" in flat. layout NULL means
 * forge; an unknown layout gives NULL. Ignores a config's [layout] table:
 * use entry->dir for a loaded entry. */
const char *config_layout_dir(const char *layout, const char *category);

const char *config_source_name(enum config_source source);

#endif
