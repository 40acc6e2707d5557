/*
 * test_config.c: config.c against the seed format of DESIGN.md §4 and
 * against the mistakes users make: each bad config must fail with
 * "FILE:LINE:COL: ..." naming the key, entry or variable at fault.
 */
#include "modelfs/config.h"
#include "modelfs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"




/* Parses text as "t.toml"; NULL (and a report) on failure. */
static struct config *ok_at(const char *text, int line)
{
	struct config_error err;
	struct config *cfg = NULL;
	int rc = config_parse(text, strlen(text), "t.toml", &cfg, &err);

	if (rc == 0 && cfg) {
		passed++;
		return cfg;
	}
	failed++;
	fprintf(stderr, "%s:%d: config_parse failed (%d): %s\n", __FILE__, line, rc, err.msg);
	return NULL;
}
#define OK(text) ok_at(text, __LINE__)

/* Expects text to fail with -EINVAL and a message holding want. */
static void bad_at(const char *text, const char *want, int line)
{
	struct config_error err;
	struct config *cfg = NULL;
	int rc = config_parse(text, strlen(text), "t.toml", &cfg, &err);

	if (rc == -EINVAL && !cfg && strstr(err.msg, want)) {
		passed++;
		return;
	}
	failed++;
	fprintf(stderr, "%s:%d: want error containing\n    %s\n  got rc=%d\n    %s\n", __FILE__, line,
		want, rc, rc ? err.msg : "(success)");
	config_free(cfg);
}
#define BAD(text, want) bad_at(text, want, __LINE__)

static const struct config_entry *find(const struct config *cfg, const char *id)
{
	for (size_t i = 0; cfg && i < cfg->n_entries; i++)
		if (strcmp(cfg->entries[i].id, id) == 0)
			return &cfg->entries[i];
	fprintf(stderr, "no entry %s\n", id);
	return NULL;
}

static size_t count(char **v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

static bool has_dir(const struct config *cfg, const char *dir)
{
	for (char **d = cfg->dirs; d && *d; d++)
		if (strcmp(*d, dir) == 0)
			return true;
	return false;
}

/* DESIGN.md §4, verbatim but for the sha256 placeholder. */
#define SEED_HEAD \
	"[modelfs]                       # all optional\n" \
	"cache_dir = \"/var/cache/modelfs\"\n" \
	"cache_max_size = \"200G\"         # also \"80%\" of the cache filesystem\n" \
	"cache_min_free = \"5%\"\n" \
	"block_size = \"8M\"\n" \
	"layout = \"forge\"                # forge | comfyui | flat, or a [layout] table category -> folder\n" \
	"verify = \"lazy\"                 # lazy | strict\n" \
	"connections = 16\n" \
	"hf_endpoint = \"https://huggingface.co\"        # default $HF_ENDPOINT, else this\n" \
	"civitai_endpoint = \"https://civitai.com\"      # API and download host for civitai entries\n" \
	"gdrive_endpoint = \"https://drive.google.com\"  # Drive links are rewritten onto this host\n" \
	"\n" \
	"[models.checkpoints]\n" \
	"\"sdxl-base\" = { source = \"huggingface\", repo = \"stabilityai/stable-diffusion-xl-base-1.0\",\n" \
	"                file = \"sd_xl_base_1.0.safetensors\", revision = \"main\" }\n" \
	"\"flux-schnell\" = { source = \"huggingface\", repo = \"black-forest-labs/FLUX.1-schnell\",\n" \
	"                   include = [\"*.json\", \"transformer/*\"] }    # no file → the repo as a folder\n" \
	"[models.lora]\n" \
	"\"detail\" = { source = \"civitai\", model_id = \"58390\", filename = \"detail.safetensors\" }\n" \
	"[models.vae]\n" \
	"\"vae\" = \"https://example.com/vae.safetensors\"                # a bare string is a URL\n" \
	"\"drive\" = { source = \"url\", url = \"https://drive.google.com/file/d/ID/view\",\n" \
	"            headers = { \"User-Agent\" = \"x\" }, auth_header = \"Bearer ${S3_TOKEN}\", sha256 = "
#define SEED_TAIL " }\n"

static void test_seed(void)
{
	const char *seed_bad = SEED_HEAD "\"…\"" SEED_TAIL;
	const char *seed = SEED_HEAD
		"\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"" SEED_TAIL;
	const struct config_entry *e;
	struct config *cfg;
	char line[256];

	setenv("S3_TOKEN", "tok-seed-secret-123", 1);
	/* The seed's "…" is a placeholder, not a hash. */
	BAD(seed_bad, "t.toml:23:");
	BAD(seed_bad, "models.vae.drive.sha256 must be the file's SHA-256 as 64 hex digits");

	cfg = OK(seed);
	if (!cfg)
		return;
	CHECK_STR(cfg->path, "t.toml");
	CHECK_STR(cfg->cache_dir, "/var/cache/modelfs");
	CHECK(cfg->cache_max_size == 200LL << 30);
	CHECK(cfg->cache_min_free == -1 && cfg->cache_min_free_percent == 5);
	CHECK(cfg->block_size == 8u << 20);
	CHECK_STR(cfg->layout, "forge");
	CHECK(cfg->verify == CONFIG_VERIFY_LAZY);
	CHECK(cfg->connections == 16);
	CHECK(cfg->retry_timeout_sec == 120);
	CHECK(cfg->mountpoint == NULL);
	CHECK_STR(cfg->hf_endpoint, "https://huggingface.co");
	CHECK_STR(cfg->civitai_endpoint, "https://civitai.com");
	CHECK_STR(cfg->gdrive_endpoint, "https://drive.google.com");
	CHECK(cfg->n_entries == 5);

	e = find(cfg, "checkpoints/sdxl-base");
	CHECK(e && e->source == CONFIG_SOURCE_HUGGINGFACE);
	if (e) {
		CHECK_STR(e->category, "checkpoints");
		CHECK_STR(e->name, "sdxl-base");
		CHECK_STR(e->repo, "stabilityai/stable-diffusion-xl-base-1.0");
		CHECK_STR(e->file, "sd_xl_base_1.0.safetensors");
		CHECK_STR(e->revision, "main");
		CHECK_STR(e->repo_type, "model");
		CHECK_STR(e->dir, "Stable-diffusion");
		CHECK_STR(e->filename, "sd_xl_base_1.0.safetensors");
		CHECK(e->line == 14 && e->col == 1);
		CHECK(e->size == -1 && !e->sha256 && !e->gated && !e->pin && !e->prefetch);
	}
	e = find(cfg, "checkpoints/flux-schnell");
	CHECK(e && e->source == CONFIG_SOURCE_HUGGINGFACE);
	if (e) {
		CHECK_STR(e->dir, "Stable-diffusion/flux-schnell");
		CHECK(e->filename == NULL && e->file == NULL);
		CHECK(count(e->include) == 2 && e->exclude == NULL);
		CHECK_STR(e->include[1], "transformer/*");
		CHECK_STR(e->revision, "main");
	}
	e = find(cfg, "lora/detail");
	CHECK(e && e->source == CONFIG_SOURCE_CIVITAI);
	if (e) {
		CHECK_STR(e->model_id, "58390");
		CHECK(e->version_id == NULL);
		CHECK_STR(e->dir, "Lora");
		CHECK_STR(e->filename, "detail.safetensors");
		CHECK(e->revision == NULL && e->repo_type == NULL);
	}
	e = find(cfg, "vae/vae");
	CHECK(e && e->source == CONFIG_SOURCE_URL);
	if (e) {
		CHECK_STR(e->url, "https://example.com/vae.safetensors");
		CHECK_STR(e->dir, "VAE");
		CHECK_STR(e->filename, "vae.safetensors");
	}
	e = find(cfg, "vae/drive");
	CHECK(e && e->source == CONFIG_SOURCE_URL);
	if (e) {
		CHECK(e->filename == NULL);	/* a Drive link names no file */
		CHECK(e->n_headers == 1);
		CHECK_STR(e->headers[0].name, "User-Agent");
		CHECK_STR(e->headers[0].value, "x");
		CHECK_STR(e->auth_header, "Bearer tok-seed-secret-123");
		CHECK_STR(e->sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
		CHECK(e->verify == CONFIG_VERIFY_LAZY);
	}
	/* Forge's folders, the repo folder, sorted, no duplicates. */
	CHECK(has_dir(cfg, "Stable-diffusion") && has_dir(cfg, "Lora") && has_dir(cfg, "VAE") &&
	      has_dir(cfg, "ControlNet") && has_dir(cfg, "ESRGAN") && has_dir(cfg, "embeddings") &&
	      has_dir(cfg, "hypernetworks") && has_dir(cfg, "text_encoder") &&
	      has_dir(cfg, "ControlNetPreprocessor") && has_dir(cfg, "diffusers") &&
	      has_dir(cfg, "Stable-diffusion/flux-schnell"));
	CHECK(count(cfg->dirs) == 11);
	for (size_t i = 1; cfg->dirs[i]; i++)
		CHECK(strcmp(cfg->dirs[i - 1], cfg->dirs[i]) < 0);

	/* The expanded token never reaches a log line. */
	log_redact("sent tok-seed-secret-123 to host", line, sizeof(line));
	CHECK(strstr(line, "tok-seed-secret-123") == NULL && strstr(line, "***") != NULL);
	config_free(cfg);

	unsetenv("S3_TOKEN");
	BAD(seed, "t.toml:23:");
	BAD(seed, "environment variable S3_TOKEN is not set (used in models.vae.drive.auth_header); "
	    "export it or remove the reference");
}

static void test_sizes(void)
{
	int64_t b;
	double pct;

	CHECK(config_parse_size("200G", &b, &pct) == 0 && b == 200LL << 30 && pct == 0);
	CHECK(config_parse_size("512MiB", &b, &pct) == 0 && b == 512LL << 20);
	CHECK(config_parse_size("8M", &b, NULL) == 0 && b == 8LL << 20);
	CHECK(config_parse_size("8 mb", &b, NULL) == 0 && b == 8LL << 20);
	CHECK(config_parse_size("1kb", &b, NULL) == 0 && b == 1024);
	CHECK(config_parse_size("1KiB", &b, NULL) == 0 && b == 1024);
	CHECK(config_parse_size("2t", &b, NULL) == 0 && b == 2LL << 40);
	CHECK(config_parse_size("1024", &b, NULL) == 0 && b == 1024);
	CHECK(config_parse_size("0", &b, NULL) == 0 && b == 0);
	CHECK(config_parse_size("100B", &b, NULL) == 0 && b == 100);
	CHECK(config_parse_size(" 7G ", &b, NULL) == 0 && b == 7LL << 30);
	CHECK(config_parse_size("9223372036854775807", &b, NULL) == 0 && b == INT64_MAX);
	CHECK(config_parse_size("80%", &b, &pct) == 0 && b == -1 && pct == 80);
	CHECK(config_parse_size("12.5%", &b, &pct) == 0 && pct == 12.5);
	CHECK(config_parse_size("100 %", &b, &pct) == 0 && pct == 100);
	CHECK(config_parse_size("0.01%", &b, &pct) == 0 && pct > 0.0099 && pct < 0.0101);

	CHECK(config_parse_size("80%", &b, NULL) == -EINVAL);	/* no percent wanted */
	CHECK(config_parse_size("-1", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("-1G", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("+1G", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("1.5G", &b, &pct) == -EINVAL);
	CHECK(config_parse_size(".5%", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("0%", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("0.0%", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("100.1%", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("101%", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("G", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("8X", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("8 G B", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("8Gibibytes", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("9223372036854775808", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("8589934592G", &b, &pct) == -EINVAL);
	CHECK(config_parse_size("8388607T", &b, &pct) == 0);
	CHECK(config_parse_size("8388608T", &b, &pct) == -EINVAL);
	CHECK(config_parse_size(NULL, &b, &pct) == -EINVAL);
}

static void test_durations(void)
{
	int s = -1;

	CHECK(config_parse_duration("90s", &s) == 0 && s == 90);
	CHECK(config_parse_duration("2m", &s) == 0 && s == 120);
	CHECK(config_parse_duration("1h", &s) == 0 && s == 3600);
	CHECK(config_parse_duration("45", &s) == 0 && s == 45);
	CHECK(config_parse_duration("0", &s) == 0 && s == 0);
	CHECK(config_parse_duration("1h30m", &s) == 0 && s == 5400);
	CHECK(config_parse_duration("1h 30m 5s", &s) == 0 && s == 5405);
	CHECK(config_parse_duration("2 min", &s) == 0 && s == 120);
	CHECK(config_parse_duration("1D", &s) == 0 && s == 86400);
	CHECK(config_parse_duration("", &s) == -EINVAL);
	CHECK(config_parse_duration("-5", &s) == -EINVAL);
	CHECK(config_parse_duration("5x", &s) == -EINVAL);
	CHECK(config_parse_duration("1h30", &s) == -EINVAL);
	CHECK(config_parse_duration("1.5h", &s) == -EINVAL);
	CHECK(config_parse_duration("s", &s) == -EINVAL);
	CHECK(config_parse_duration("99999999999", &s) == -EINVAL);
	CHECK(config_parse_duration("596524h", &s) == -EINVAL);
}

static void test_defaults(void)
{
	struct config *cfg;

	unsetenv("HF_ENDPOINT");
	cfg = OK("");
	if (cfg) {
		CHECK(cfg->cache_dir == NULL && cfg->mountpoint == NULL);
		CHECK(cfg->cache_max_size == -1 && cfg->cache_max_percent == 0);
		CHECK(cfg->cache_min_free == -1 && cfg->cache_min_free_percent == 5);
		CHECK(cfg->block_size == 8u << 20);
		CHECK_STR(cfg->layout, "forge");
		CHECK(cfg->verify == CONFIG_VERIFY_LAZY);
		CHECK(cfg->connections == 32 && cfg->retry_timeout_sec == 120);
		CHECK(cfg->header_prefetch);
		CHECK_STR(cfg->hf_endpoint, "https://huggingface.co");
		CHECK_STR(cfg->civitai_endpoint, "https://civitai.com");
		CHECK_STR(cfg->gdrive_endpoint, "https://drive.google.com");
		CHECK(cfg->n_entries == 0 && cfg->entries == NULL);
		CHECK(count(cfg->dirs) == 10 && has_dir(cfg, "Stable-diffusion"));
		config_free(cfg);
	}
	cfg = OK("[modelfs]\nheader_prefetch = false\n");
	if (cfg)
		CHECK(!cfg->header_prefetch);
	config_free(cfg);
	BAD("[modelfs]\nheader_prefetch = 1\n", "header_prefetch");
	setenv("HF_ENDPOINT", "http://127.0.0.1:8080/", 1);
	cfg = OK("[modelfs]\n");
	if (cfg)
		CHECK_STR(cfg->hf_endpoint, "http://127.0.0.1:8080");
	config_free(cfg);
	cfg = OK("[modelfs]\nhf_endpoint = \"https://mirror.example//\"\n");
	if (cfg)
		CHECK_STR(cfg->hf_endpoint, "https://mirror.example");	/* the file wins */
	config_free(cfg);
	setenv("HF_ENDPOINT", "ftp://nope", 1);
	BAD("", "t.toml: HF_ENDPOINT in the environment is not an http(s) URL");
	unsetenv("HF_ENDPOINT");
}

static void test_modelfs_keys(void)
{
	struct config *cfg;

	cfg = OK("[modelfs]\ncache_max_size = \"80%\"\ncache_min_free = \"10G\"\nblock_size = 65536\n"
		 "layout = \"ComfyUI\"\nverify = \"strict\"\nconnections = 64\nretry_timeout = \"2m\"\n"
		 "mountpoint = \"/mnt/models\"\ncivitai_endpoint = \"http://127.0.0.1:9/\"\n"
		 "lock = \"models.lock\"\n"
		 "[models.vae]\nv = \"https://e.x/v.bin\"\n");
	if (cfg) {
		CHECK(cfg->cache_max_size == -1 && cfg->cache_max_percent == 80);
		CHECK(cfg->cache_min_free == 10LL << 30 && cfg->cache_min_free_percent == 0);
		CHECK(cfg->block_size == 65536);
		CHECK_STR(cfg->layout, "comfyui");
		CHECK(cfg->verify == CONFIG_VERIFY_STRICT);
		CHECK(cfg->entries[0].verify == CONFIG_VERIFY_STRICT);	/* inherited */
		CHECK(cfg->connections == 64 && cfg->retry_timeout_sec == 120);
		CHECK_STR(cfg->mountpoint, "/mnt/models");
		CHECK_STR(cfg->lock, "models.lock");	/* relative: to the config's folder */
		CHECK_STR(cfg->civitai_endpoint, "http://127.0.0.1:9");
		CHECK_STR(cfg->entries[0].dir, "vae");
	}
	config_free(cfg);
	/* [modelfs] written after the entries still applies to them. */
	cfg = OK("[models.vae]\nv = { url = \"https://e.x/v.bin\" }\n"
		 "[modelfs]\nverify = \"strict\"\nretry_timeout = 45\nblock_size = \"256 MiB\"\n");
	if (cfg) {
		CHECK(cfg->entries[0].verify == CONFIG_VERIFY_STRICT);
		CHECK(cfg->retry_timeout_sec == 45 && cfg->block_size == 256u << 20);
	}
	config_free(cfg);
	setenv("CACHE_HOME", "/srv/cache", 1);
	cfg = OK("[modelfs]\ncache_dir = \"${CACHE_HOME}/modelfs\"\nretry_timeout = \"1h\"\n");
	if (cfg) {
		CHECK_STR(cfg->cache_dir, "/srv/cache/modelfs");
		CHECK(cfg->retry_timeout_sec == 3600);
	}
	config_free(cfg);

	BAD("[modelfs]\nconnections = 0\n", "t.toml:2:15: modelfs.connections must be from 1 to 64, not 0");
	BAD("[modelfs]\nconnections = 65\n", "modelfs.connections must be from 1 to 64");
	BAD("[modelfs]\nconnections = \"16\"\n", "modelfs.connections must be an integer, not a string");
	BAD("[modelfs]\nconections = 4\n",
	    "t.toml:2:1: unknown key \"conections\" in [modelfs] (did you mean \"connections\"?)");
	BAD("[modelfs]\nzzz = 4\n", "unknown key \"zzz\" in [modelfs] (known keys: cache_dir");
	BAD("[modelfs]\nblock_size = \"3M\"\n", "modelfs.block_size must be a power of two from 64K to 256M");
	BAD("[modelfs]\nblock_size = \"32K\"\n", "power of two");
	BAD("[modelfs]\nblock_size = \"512M\"\n", "power of two");
	BAD("[modelfs]\nblock_size = \"8.5M\"\n", "modelfs.block_size: \"8.5M\" is not a size");
	BAD("[modelfs]\nblock_size = 8.0\n", "modelfs.block_size must be a size like \"8M\", not a float");
	BAD("[modelfs]\nlayout = \"forgee\"\n",
	    "t.toml:2:10: modelfs.layout must be \"forge\", \"comfyui\" or \"flat\", not \"forgee\" "
	    "(did you mean \"forge\"?)");
	BAD("[modelfs]\nverify = \"paranoid\"\n", "modelfs.verify must be \"lazy\" or \"strict\", not \"paranoid\"");
	BAD("[modelfs]\nverify = true\n", "modelfs.verify must be \"lazy\" or \"strict\", not a boolean");
	BAD("[modelfs]\nretry_timeout = \"soon\"\n", "modelfs.retry_timeout: \"soon\" is not an integer "
	    "(seconds) or a duration");
	BAD("[modelfs]\nretry_timeout = -1\n", "modelfs.retry_timeout must be from 0");
	BAD("[modelfs]\ncache_dir = \"cache\"\n", "modelfs.cache_dir must be an absolute path, not \"cache\"");
	BAD("[modelfs]\nmountpoint = 5\n", "modelfs.mountpoint must be an absolute path, not an integer");
	BAD("[modelfs]\ncache_max_size = \"-5G\"\n", "modelfs.cache_max_size: \"-5G\" is not");
	BAD("[modelfs]\ncache_max_size = -5\n", "modelfs.cache_max_size must not be negative");
	BAD("[modelfs]\ncache_max_size = \"0\"\n", "modelfs.cache_max_size must be more than 0");
	BAD("[modelfs]\ncache_max_size = \"150%\"\n", "a percentage is 0 < p <= 100");
	BAD("[modelfs]\ncache_max_size = \"1M\"\n", "t.toml:2:18: modelfs.cache_max_size (1048576 bytes) "
	    "must hold at least one block");
	BAD("[modelfs]\ncache_min_free = \"0%\"\n", "modelfs.cache_min_free: \"0%\" is not");
	BAD("[modelfs]\nhf_endpoint = \"huggingface.co\"\n",
	    "modelfs.hf_endpoint must be an http:// or https:// URL");
	BAD("[modelfs]\nhf_endpoint = \"https://h.co/?x=1\"\n", "(no query)");
	cfg = OK("[modelfs]\nshared_cache = \"s3://team-models/cache\"\n"
		 "shared_cache_mode = \"read-only\"\n"
		 "shared_cache_allow = [\"stabilityai/*\", \"checkpoints/sdxl-*\"]\n");
	if (cfg) {
		CHECK_STR(cfg->shared_cache, "s3://team-models/cache");
		CHECK(cfg->shared_cache_mode == CONFIG_SHARED_READ_ONLY);
		CHECK(count(cfg->shared_cache_allow) == 2);
		CHECK_STR(cfg->shared_cache_allow[0], "stabilityai/*");
	}
	config_free(cfg);
	cfg = OK("[modelfs]\nshared_cache = \"s3://b\"\n");
	if (cfg)
		CHECK(cfg->shared_cache_mode == CONFIG_SHARED_READ_WRITE && !cfg->shared_cache_allow);
	config_free(cfg);
	BAD("[modelfs]\nshared_cache = \"https://b.example/x\"\n",
	    "t.toml:2:16: modelfs.shared_cache must be an S3 bucket and prefix like "
	    "\"s3://bucket/prefix\", not \"https://b.example/x\"");
	BAD("[modelfs]\nshared_cache = \"s3:///x\"\n", "modelfs.shared_cache must be an S3 bucket");
	BAD("[modelfs]\nshared_cache_mode = \"write-only\"\n",
	    "modelfs.shared_cache_mode must be \"read-write\" or \"read-only\", not \"write-only\"");
	BAD("[modelfs]\nshared_cache_allow = \"stabilityai/*\"\n",
	    "modelfs.shared_cache_allow must be an array of strings, not a string");
	BAD("modelfs = 3\n", "t.toml:1:11: modelfs must be a table ([modelfs]), not an integer");
	BAD("[model.vae]\nv = \"https://e.x/v\"\n",
	    "t.toml:1:2: unknown top-level key \"model\" (did you mean \"models\"?)");
	/* A TOML syntax error, reported the same way. */
	BAD("[modelfs]\nconnections = = 4\n", "t.toml:2:");
	BAD("[modelfs\n", "t.toml:1:");
}

static void test_env(void)
{
	struct config *cfg;
	char line[256];

	setenv("MODELFS_T_TOKEN", "hf_secret_value_42", 1);
	unsetenv("MODELFS_T_UNSET");
	setenv("MODELFS_T_EMPTY", "", 1);
	cfg = OK("[models.vae]\n"
		 "a = { url = \"https://e.x/a.bin\", auth_header = \"Bearer ${MODELFS_T_TOKEN}\" }\n"
		 "b = { url = \"https://e.x/${MODELFS_T_UNSET:-fallback}.bin\" }\n"
		 "c = { url = \"https://e.x/c.bin\", headers = { X-Lit = \"$${NOT_A_VAR} $5 $\" } }\n"
		 "d = { url = \"https://e.x/d.bin\", auth_header = \"${MODELFS_T_UNSET:-}\" }\n"
		 "e = { url = \"https://e.x/${MODELFS_T_EMPTY:-empty}.bin\" }\n"
		 "f = { url = \"https://e.x/f${MODELFS_T_EMPTY}.bin\" }\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].auth_header, "Bearer hf_secret_value_42");
		CHECK_STR(cfg->entries[1].url, "https://e.x/fallback.bin");
		CHECK_STR(cfg->entries[1].filename, "fallback.bin");
		CHECK_STR(cfg->entries[2].headers[0].value, "${NOT_A_VAR} $5 $");
		CHECK(cfg->entries[3].auth_header == NULL);	/* an optional token, absent */
		CHECK_STR(cfg->entries[4].url, "https://e.x/empty.bin");
		CHECK_STR(cfg->entries[5].url, "https://e.x/f.bin");
	}
	config_free(cfg);
	log_redact("token hf_secret_value_42", line, sizeof(line));
	CHECK(strstr(line, "hf_secret_value_42") == NULL);

	BAD("[models.vae]\nx = { url = \"https://e.x/${MODELFS_T_UNSET}\" }\n",
	    "t.toml:2:13: environment variable MODELFS_T_UNSET is not set (used in models.vae.x.url); "
	    "export it or remove the reference");
	BAD("[models.vae]\nx = \"https://e.x/${MODELFS_T_UNSET}\"\n",
	    "t.toml:2:5: environment variable MODELFS_T_UNSET is not set (used in models.vae.x)");
	BAD("[modelfs]\ncache_dir = \"/${MODELFS_T_UNSET}\"\n",
	    "environment variable MODELFS_T_UNSET is not set (used in modelfs.cache_dir)");
	BAD("[models.vae]\nx = { url = \"https://e.x/${MODELFS_T_TOKEN\" }\n",
	    "unterminated \"${\" in models.vae.x.url; write \"$${\" for a literal \"${\"");
	BAD("[models.vae]\nx = { url = \"https://e.x/${1X}\" }\n", "bad variable reference \"${1X}\"");
	BAD("[models.vae]\nx = { url = \"https://e.x/${}\" }\n", "bad variable reference");
	BAD("[models.vae]\nx = { url = \"https://e.x/${A-b}\" }\n", "bad variable reference");
	BAD("[models.vae]\nx = { url = \"https://e.x/\", mirrors = [\"${MODELFS_T_UNSET}\"] }\n",
	    "(used in models.vae.x.mirrors[0])");
	BAD("[models.vae]\nx = { url = \"https://e.x/\", headers = { A = \"${MODELFS_T_UNSET}\" } }\n",
	    "(used in models.vae.x.headers.A)");
}

static void test_entry_errors(void)
{
	BAD("[models.vae]\n"
	    "drive = { url = \"https://drive.google.com/file/d/ID/view\", sha265 = \"ab\" }\n",
	    "t.toml:2:60: unknown key \"sha265\" in entry models.vae.drive (did you mean \"sha256\"?)");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", qqqqqq = 1 }\n",
	    "unknown key \"qqqqqq\" in entry models.vae.x (known keys: source url repo");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", gated = \"yes\" }\n",
	    "t.toml:2:38: models.vae.x.gated must be true or false, not a string");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", size = true }\n",
	    "models.vae.x.size must be an integer (bytes) or a size like \"8G\" or \"512MiB\", not a boolean");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", size = -3 }\n", "models.vae.x.size must not be negative");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", size = \"50%\" }\n", "models.vae.x.size: \"50%\" is not");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", sha256 = \"abc\" }\n",
	    "models.vae.x.sha256 must be the file's SHA-256 as 64 hex digits, not \"abc\" (3 characters)");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", sha256 = 5 }\n",
	    "models.vae.x.sha256 must be a string of 64 hex digits, not an integer");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", mirrors = \"https://m/a\" }\n",
	    "models.vae.x.mirrors must be an array of http(s) URLs, not a string");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", mirrors = [\"ftp://m/a\"] }\n",
	    "models.vae.x.mirrors[0] must be an http:// or https:// URL, not \"ftp://m/a\"");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", headers = { \"Bad Name\" = \"v\" } }\n",
	    "models.vae.x.headers.\"Bad Name\": \"Bad Name\" is not a valid header name");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", headers = { A = \"v\\r\\nEvil: 1\" } }\n",
	    "models.vae.x.headers.A contains a control character");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", headers = { A = 1 } }\n",
	    "models.vae.x.headers.A must be a string, not an integer");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", auth_header = \"t\", headers = { authorization = \"u\" } }\n",
	    "models.vae.x sets Authorization twice");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", verify = \"strikt\" }\n",
	    "models.vae.x.verify must be \"lazy\" or \"strict\", not \"strikt\" (did you mean \"strict\"?)");
	BAD("[models.vae]\nx = { source = \"hugginface\", repo = \"a/b\" }\n",
	    "models.vae.x.source must be \"url\", \"huggingface\", \"civitai\", \"s3\" or \"local\", "
	    "not \"hugginface\" "
	    "(did you mean \"huggingface\"?)");
	BAD("[models.vae]\nx = 5\n", "t.toml:2:5: entry models.vae.x must be a URL string or a table");
	BAD("[models.vae]\nx = { gated = true }\n", "t.toml:2:1: entry models.vae.x has no source");
	BAD("[models.vae]\nx = { source = \"local\" }\n",
	    "entry models.vae.x (source local) needs path = \"/path/to/model.safetensors\"");
	BAD("[models.vae]\nx = { source = \"local\", path = \"rel/x.bin\" }\n",
	    "models.vae.x.path must be an absolute path, not \"rel/x.bin\"");
	BAD("[models.vae]\nx = { path = \"/data/..\" }\n", "(source local) needs path");
	BAD("[models.vae]\nx = { path = \"/data/x.bin\", sha256 = \"" 
	    "0000000000000000000000000000000000000000000000000000000000000000\" }\n",
	    "key \"sha256\" in entry models.vae.x is for url or huggingface or civitai or s3 "
	    "entries; this is a local entry");
	BAD("[models]\nx = \"https://e.x/a\"\n",
	    "t.toml:2:1: models.x must be a category table of entries; put entries under a category");
	BAD("models = 1\n", "models must be a table of categories");
	BAD("[models.\"a/b\"]\nx = \"https://e.x/a\"\n", "category models.\"a/b\" must be usable as a folder name");
	BAD("[models.vae]\n\"a/b\" = \"https://e.x/a\"\n",
	    "t.toml:2:1: entry name models.vae.\"a/b\" must be 1 to 255 bytes, without '/'");
	BAD("[models.vae]\n\"..\" = \"https://e.x/a\"\n", "entry name models.vae.\"..\"");
}

static void test_sources(void)
{
	const struct config_entry *e;
	struct config *cfg;

	cfg = OK("[models.checkpoints]\n"
		 "s3a = \"s3://bucket/dir/model%20v2.safetensors\"\n"
		 "s3b = { source = \"s3\", url = \"s3://b/k.bin\", endpoint = \"http://127.0.0.1:9000/\", "
		 "region = \"us-east-1\" }\n"
		 "hf = { repo = \"owner/name\", file = \"unet/diffusion_pytorch_model.safetensors\", "
		 "revision = \"refs/pr/1\", repo_type = \"Dataset\" }\n"
		 "civ = { version_id = 2514310, file_id = \"77\" }\n"
		 "civ2 = { source = \"civitai\", model_id = 58390, verify = \"strict\", pin = true, "
		 "prefetch = true, gated = true }\n"
		 "u = { url = \"HTTPS://e.x/a/b/c.ckpt?token=abc#frag\", size = \"2G\", "
		 "mirrors = [\"https://m1/c.ckpt\", \"http://m2/c.ckpt\"] }\n"
		 "sized = { url = \"https://e.x/sized.bin\", size = 1234 }\n");
	if (!cfg)
		return;
	e = find(cfg, "checkpoints/s3a");
	CHECK(e && e->source == CONFIG_SOURCE_S3);
	if (e)
		CHECK_STR(e->filename, "model%20v2.safetensors");	/* an s3 key is raw */
	e = find(cfg, "checkpoints/s3b");
	CHECK(e && e->source == CONFIG_SOURCE_S3);
	if (e) {
		CHECK_STR(e->endpoint, "http://127.0.0.1:9000");
		CHECK_STR(e->region, "us-east-1");
		CHECK_STR(e->filename, "k.bin");
	}
	e = find(cfg, "checkpoints/hf");
	CHECK(e && e->source == CONFIG_SOURCE_HUGGINGFACE);
	if (e) {
		CHECK_STR(e->filename, "diffusion_pytorch_model.safetensors");
		CHECK_STR(e->revision, "refs/pr/1");
		CHECK_STR(e->repo_type, "dataset");
		CHECK_STR(e->dir, "Stable-diffusion");
	}
	e = find(cfg, "checkpoints/civ");
	CHECK(e && e->source == CONFIG_SOURCE_CIVITAI);
	if (e) {
		CHECK_STR(e->version_id, "2514310");
		CHECK_STR(e->file_id, "77");
		CHECK(e->model_id == NULL && e->filename == NULL);
	}
	e = find(cfg, "checkpoints/civ2");
	CHECK(e && e->source == CONFIG_SOURCE_CIVITAI);
	if (e) {
		CHECK_STR(e->model_id, "58390");
		CHECK(e->verify == CONFIG_VERIFY_STRICT && e->pin && e->prefetch && e->gated);
	}
	e = find(cfg, "checkpoints/u");
	CHECK(e && e->source == CONFIG_SOURCE_URL);
	if (e) {
		CHECK_STR(e->filename, "c.ckpt");
		CHECK(e->size == 2LL << 30);
		CHECK(count(e->mirrors) == 2);
		CHECK_STR(e->mirrors[1], "http://m2/c.ckpt");
	}
	e = find(cfg, "checkpoints/sized");
	CHECK(e && e->size == 1234);
	config_free(cfg);

	BAD("[models.vae]\nx = { source = \"url\", url = \"s3://b/k\" }\n",
	    "t.toml:2:29: models.vae.x: an s3:// URL needs source = \"s3\"");
	BAD("[models.vae]\nx = { source = \"s3\", url = \"https://b/k\" }\n",
	    "models.vae.x.url must be \"s3://bucket/key\" for an s3 entry");
	BAD("[models.vae]\nx = \"s3://bucket\"\n", "must be \"s3://bucket/key\"");
	BAD("[models.vae]\nx = \"s3:///key\"\n", "must be \"s3://bucket/key\"");
	BAD("[models.vae]\nx = \"ftp://e.x/a\"\n", "t.toml:2:5: models.vae.x must be an http:// or https:// URL");
	BAD("[models.vae]\nx = { url = \"https:///a\" }\n", "models.vae.x.url must be an http:// or https:// URL");
	BAD("[models.vae]\nx = { source = \"url\" }\n", "entry models.vae.x (source url) needs url = ");
	BAD("[models.vae]\nx = { source = \"s3\" }\n", "entry models.vae.x (source s3) needs url = \"s3://bucket/key\"");
	BAD("[models.vae]\nx = { source = \"huggingface\" }\n",
	    "entry models.vae.x (source huggingface) needs repo = \"owner/name\"");
	BAD("[models.vae]\nx = { source = \"civitai\" }\n",
	    "entry models.vae.x (source civitai) needs model_id or version_id");
	BAD("[models.vae]\nx = { repo = \"justname\" }\n", "models.vae.x.repo must be \"owner/name\"");
	BAD("[models.vae]\nx = { repo = \"a/b/c\" }\n", "models.vae.x.repo must be \"owner/name\"");
	BAD("[models.vae]\nx = { repo = \"a/b\", file = \"../x\" }\n", "models.vae.x.file must be a path inside the repo");
	BAD("[models.vae]\nx = { repo = \"a/b\", file = \"/x\" }\n", "models.vae.x.file must be a path");
	BAD("[models.vae]\nx = { repo = \"a/b\", file = \"d/\" }\n", "models.vae.x.file must be a path");
	BAD("[models.vae]\nx = { repo = \"a/b\", file = \"\" }\n", "models.vae.x.file must be a path");
	BAD("[models.vae]\nx = { repo = \"a/b\", revision = \"\" }\n", "models.vae.x.revision is empty");
	BAD("[models.vae]\nx = { repo = \"a/b\", repo_type = \"models\" }\n",
	    "models.vae.x.repo_type must be \"model\", \"dataset\" or \"space\", not \"models\" "
	    "(did you mean \"model\"?)");
	BAD("[models.vae]\nx = { repo = \"a/b\", file = \"f\", include = [\"*\"] }\n",
	    "t.toml:2:33: models.vae.x.include picks files of a whole repo");
	BAD("[models.vae]\nx = { repo = \"a/b\", sha256 = \"" "0000000000000000000000000000000000000000000000000000000000000000" "\" }\n",
	    "models.vae.x.sha256 is about one file, but this entry has no file");
	BAD("[models.vae]\nx = { repo = \"a/b\", filename = \"x.bin\" }\n", "models.vae.x.filename is about one file");
	BAD("[models.vae]\nx = { repo = \"a/b\", include = [1] }\n",
	    "models.vae.x.include[0] must be a string, not an integer");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", repo = \"a/b\" }\n",
	    "t.toml:2:30: key \"repo\" in entry models.vae.x is for huggingface entries; this is a url entry");
	BAD("[models.vae]\nx = { url = \"s3://b/k\", model_id = 5 }\n",
	    "key \"model_id\" in entry models.vae.x is for civitai entries; this is an s3 entry");
	BAD("[models.vae]\nx = { repo = \"a/b\", endpoint = \"https://s3\" }\n",
	    "key \"endpoint\" in entry models.vae.x is for s3 entries; this is a huggingface entry");
	BAD("[models.vae]\nx = { model_id = \"abc\" }\n", "models.vae.x.model_id must be a positive number like");
	BAD("[models.vae]\nx = { model_id = 0 }\n", "models.vae.x.model_id must be a positive number");
	BAD("[models.vae]\nx = { model_id = \"00\" }\n", "models.vae.x.model_id must be a positive number");
	BAD("[models.vae]\nx = { model_id = 1.5 }\n", "models.vae.x.model_id must be a number (an integer or a string of digits), not a float");
}

static void test_filenames(void)
{
	struct config *cfg;

	cfg = OK("[models.lora]\n"
		 "a = \"https://e.x/dl/my%20lora%2Bv2.safetensors\"\n"
		 "b = \"https://e.x/dl/\"\n"
		 "c = \"https://e.x\"\n"
		 "d = \"https://e.x/a%2Fb\"\n"
		 "e = \"https://docs.google.com/uc?id=X\"\n"
		 "f = \"https://drive.usercontent.google.com/download?id=X&confirm=t\"\n"
		 "g = { url = \"https://drive.google.com/file/d/ID/view\", filename = \"given.bin\" }\n"
		 "h = \"https://e.x/%2e%2e\"\n"
		 "i = \"https://e.x/x%00y\"\n"
		 "j = \"https://e.x/100%\"\n"
		 "k = \"https://e.x/a%0Ab\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].filename, "my lora+v2.safetensors");
		for (size_t i = 1; i <= 5; i++)
			CHECK(cfg->entries[i].filename == NULL);
		CHECK_STR(cfg->entries[6].filename, "given.bin");
		CHECK(cfg->entries[7].filename == NULL && cfg->entries[8].filename == NULL);
		CHECK_STR(cfg->entries[9].filename, "100%");
		CHECK(cfg->entries[10].filename == NULL);
		CHECK_STR(cfg->entries[0].dir, "Lora");
	}
	config_free(cfg);
	cfg = OK("[models.lora]\n"
		 "a = { source = \"local\", path = \"/data/my lora.safetensors\" }\n"
		 "b = { path = \"/data/x.bin\", filename = \"y.bin\" }\n");
	if (cfg) {
		CHECK(cfg->entries[0].source == CONFIG_SOURCE_LOCAL);
		CHECK_STR(cfg->entries[0].path, "/data/my lora.safetensors");
		CHECK_STR(cfg->entries[0].filename, "my lora.safetensors");
		CHECK(cfg->entries[1].source == CONFIG_SOURCE_LOCAL);
		CHECK_STR(cfg->entries[1].filename, "y.bin");
		CHECK_STR(cfg->entries[1].dir, "Lora");
	}
	config_free(cfg);
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", filename = \"a/b\" }\n",
	    "t.toml:2:41: models.vae.x.filename: \"a/b\" is not a file name");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", filename = \"..\" }\n", "is not a file name");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", filename = \"\" }\n", "is not a file name");
	BAD("[models.vae]\nx = { url = \"https://e.x/a\", filename = \"a\\u0000b\" }\n",
	    "models.vae.x.filename contains a control character (a NUL byte)");
}

static void test_duplicates(void)
{
	struct config *cfg;

	BAD("[models.vae]\n"
	    "a = \"https://one.example/vae.safetensors\"\n"
	    "b = \"https://two.example/x/vae.safetensors\"\n",
	    "t.toml:3:1: entries models.vae.b and models.vae.a (line 2:1) would both be "
	    "\"VAE/vae.safetensors\" in the mount");
	/* The same name in two folders is fine. */
	cfg = OK("[models.vae]\na = \"https://e.x/m.bin\"\n[models.lora]\na = \"https://e.x/m.bin\"\n");
	config_free(cfg);
	/* Two categories sent to one folder by [layout]. */
	BAD("[layout]\nlora = \"VAE\"\n[models.vae]\na = \"https://e.x/m.bin\"\n"
	    "[models.lora]\nb = { url = \"https://f.x/z\", filename = \"m.bin\" }\n",
	    "t.toml:6:1: entries models.lora.b and models.vae.a (line 4:1)");
	/* A repo folder and a file of the same name, flat layout. */
	BAD("[modelfs]\nlayout = \"flat\"\n[models.a]\nx = { repo = \"o/n\" }\n[models.b]\ny = \"https://e.x/x\"\n",
	    "entries models.b.y and models.a.x (line 4:1) would both be \"x\"");
	/* A file where the layout shows a folder. */
	BAD("[modelfs]\nlayout = \"flat\"\n[layout]\nlora = \"Lora\"\n[models.vae]\nv = \"https://e.x/Lora\"\n",
	    "entry models.vae.v would be the file \"Lora\", which is a folder of this layout");
}

static void test_layouts(void)
{
	struct config *cfg;

	CHECK_STR(config_layout_dir("forge", "checkpoints"), "Stable-diffusion");
	CHECK_STR(config_layout_dir("forge", "lora"), "Lora");
	CHECK_STR(config_layout_dir("forge", "vae"), "VAE");
	CHECK_STR(config_layout_dir("forge", "controlnet"), "ControlNet");
	CHECK_STR(config_layout_dir("forge", "esrgan"), "ESRGAN");
	CHECK_STR(config_layout_dir("forge", "embeddings"), "embeddings");
	CHECK_STR(config_layout_dir("forge", "hypernetworks"), "hypernetworks");
	CHECK_STR(config_layout_dir("forge", "clip"), "text_encoder");
	CHECK_STR(config_layout_dir("forge", "unet"), "Stable-diffusion");
	CHECK_STR(config_layout_dir(NULL, "lora"), "Lora");
	CHECK_STR(config_layout_dir("comfyui", "checkpoints"), "checkpoints");
	CHECK_STR(config_layout_dir("comfyui", "lora"), "loras");
	CHECK_STR(config_layout_dir("comfyui", "vae"), "vae");
	CHECK_STR(config_layout_dir("comfyui", "controlnet"), "controlnet");
	CHECK_STR(config_layout_dir("comfyui", "esrgan"), "upscale_models");
	CHECK_STR(config_layout_dir("comfyui", "embeddings"), "embeddings");
	CHECK_STR(config_layout_dir("comfyui", "hypernetworks"), "hypernetworks");
	CHECK_STR(config_layout_dir("comfyui", "clip"), "text_encoders");
	CHECK_STR(config_layout_dir("comfyui", "unet"), "diffusion_models");
	CHECK_STR(config_layout_dir("comfyui", "clip_vision"), "clip_vision");
	CHECK_STR(config_layout_dir("comfyui", "ipadapter"), "ipadapter");
	CHECK_STR(config_layout_dir("flat", "lora"), "");
	CHECK(config_layout_dir("nope", "lora") == NULL);
	CHECK_STR(config_source_name(CONFIG_SOURCE_URL), "url");
	CHECK_STR(config_source_name(CONFIG_SOURCE_HUGGINGFACE), "huggingface");
	CHECK_STR(config_source_name(CONFIG_SOURCE_CIVITAI), "civitai");
	CHECK_STR(config_source_name(CONFIG_SOURCE_S3), "s3");

	cfg = OK("[modelfs]\nlayout = \"comfyui\"\n[models.clip]\nt5 = \"https://e.x/t5.safetensors\"\n"
		 "[models.custom]\nx = \"https://e.x/x.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "text_encoders");
		CHECK_STR(cfg->entries[1].dir, "custom");
		CHECK(count(cfg->dirs) == 11 && has_dir(cfg, "custom") && has_dir(cfg, "upscale_models") &&
		      has_dir(cfg, "diffusion_models") && !has_dir(cfg, "Lora"));
		CHECK_STR(cfg->dirs[0], "checkpoints");
	}
	config_free(cfg);

	cfg = OK("[modelfs]\nlayout = \"flat\"\n[models.lora]\nx = \"https://e.x/x.bin\"\n"
		 "[models.checkpoints]\nrepo = { repo = \"o/n\" }\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "");
		CHECK_STR(cfg->entries[1].dir, "repo");
		CHECK(count(cfg->dirs) == 1);
		CHECK_STR(cfg->dirs[0], "repo");
	}
	config_free(cfg);
	cfg = OK("[modelfs]\nlayout = \"flat\"\n");
	if (cfg)
		CHECK(cfg->dirs && cfg->dirs[0] == NULL);
	config_free(cfg);

	/* [layout] overrides a folder of the chosen layout and adds one. */
	cfg = OK("[layout]\nlora = \"MyLoras\"\nipadapter = \"ipadapter-models\"\n"
		 "[models.lora]\nx = \"https://e.x/x.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "MyLoras");
		CHECK(has_dir(cfg, "MyLoras") && !has_dir(cfg, "Lora") && has_dir(cfg, "ipadapter-models"));
	}
	config_free(cfg);
	/* [modelfs] layout = { ... }: forge with changes. */
	cfg = OK("[modelfs]\nlayout = { vae = \"vae-folder\" }\n[models.vae]\nx = \"https://e.x/x.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->layout, "forge");
		CHECK_STR(cfg->entries[0].dir, "vae-folder");
	}
	config_free(cfg);
	BAD("[layout]\nlora = \"a/b\"\n", "t.toml:2:8: layout.lora: \"a/b\" is not a folder name");
	BAD("[layout]\nlora = \"..\"\n", "is not a folder name");
	BAD("[layout]\nlora = \"\"\n", "is not a folder name");
	BAD("[layout]\nlora = 1\n", "layout.lora must be a folder name string, not an integer");
	BAD("layout = \"comfyui\"\n", "t.toml:1:10: layout must be a [layout] table of category = \"folder\"");
	BAD("[modelfs]\nlayout = { lora = \"A\" }\n[layout]\nlora = \"B\"\n",
	    "t.toml:4:1: the folder of category \"lora\" is set twice (also at line 2:12)");
}

/* Each webui's folder names, as WEBUI.md §4 lists them, and where each
 * lands in the other layout. */
static const struct {
	const char *category, *forge, *comfyui;
} aliases[] = {
	/* ComfyUI's folders and its own aliases */
	{ "checkpoints", "Stable-diffusion", "checkpoints" },
	{ "loras", "Lora", "loras" },
	{ "vae", "VAE", "vae" },
	{ "text_encoders", "text_encoder", "text_encoders" },
	{ "clip", "text_encoder", "text_encoders" },
	{ "diffusion_models", "Stable-diffusion", "diffusion_models" },
	{ "unet", "Stable-diffusion", "diffusion_models" },
	{ "clip_vision", "clip_vision", "clip_vision" },
	{ "embeddings", "embeddings", "embeddings" },
	{ "diffusers", "diffusers", "diffusers" },
	{ "vae_approx", "VAE-approx", "vae_approx" },
	{ "controlnet", "ControlNet", "controlnet" },
	{ "t2i_adapter", "ControlNet", "controlnet" },
	{ "upscale_models", "ESRGAN", "upscale_models" },
	{ "hypernetworks", "hypernetworks", "hypernetworks" },
	{ "style_models", "style_models", "style_models" },
	{ "latent_upscale_models", "latent_upscale_models", "latent_upscale_models" },
	/* Forge's folders */
	{ "Stable-diffusion", "Stable-diffusion", "checkpoints" },
	{ "Lora", "Lora", "loras" },
	{ "lora", "Lora", "loras" },		/* --forge-ref-a1111-home's spelling */
	{ "VAE", "VAE", "vae" },
	{ "text_encoder", "text_encoder", "text_encoders" },
	{ "ControlNet", "ControlNet", "controlnet" },
	{ "ControlNetPreprocessor", "ControlNetPreprocessor", "ControlNetPreprocessor" },
	{ "ESRGAN", "ESRGAN", "upscale_models" },
	{ "RealESRGAN", "RealESRGAN", "upscale_models" },
	{ "DAT", "DAT", "upscale_models" },
	{ "SwinIR", "SwinIR", "upscale_models" },
	{ "ScuNET", "ScuNET", "upscale_models" },
	{ "GFPGAN", "GFPGAN", "GFPGAN" },
	{ "Codeformer", "Codeformer", "Codeformer" },
	{ "VAE-approx", "VAE-approx", "vae_approx" },
	{ "VAE-taesd", "VAE-taesd", "vae_approx" },
	/* what a user types: the case does not matter */
	{ "LoRA", "Lora", "loras" },
	{ "stable-diffusion", "Stable-diffusion", "checkpoints" },
	{ "esrgan", "ESRGAN", "upscale_models" },
};

static void test_category_aliases(void)
{
	struct config *cfg;

	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
		CHECK_STR(config_layout_dir("forge", aliases[i].category), aliases[i].forge);
		CHECK_STR(config_layout_dir("comfyui", aliases[i].category), aliases[i].comfyui);
		CHECK_STR(config_layout_dir("flat", aliases[i].category), "");
	}

	/* A config written for ComfyUI mounts in Forge's folders, and the
	 * other way round; the folders shown stay the layout's own. */
	cfg = OK("[models.loras]\na = \"https://e.x/a.bin\"\n[models.upscale_models]\n"
		 "b = \"https://e.x/b.bin\"\n[models.diffusion_models]\nc = \"https://e.x/c.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "Lora");
		CHECK_STR(cfg->entries[0].id, "loras/a");
		CHECK_STR(cfg->entries[1].dir, "ESRGAN");
		CHECK_STR(cfg->entries[2].dir, "Stable-diffusion");
		CHECK(count(cfg->dirs) == 10 && !has_dir(cfg, "loras") && !has_dir(cfg, "unet"));
	}
	config_free(cfg);
	cfg = OK("[modelfs]\nlayout = \"comfyui\"\n[models.Lora]\na = \"https://e.x/a.bin\"\n"
		 "[models.Stable-diffusion]\nb = \"https://e.x/b.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "loras");
		CHECK_STR(cfg->entries[1].dir, "checkpoints");
		CHECK(count(cfg->dirs) == 10 && !has_dir(cfg, "Lora"));
	}
	config_free(cfg);
	/* Two names of one category are one folder: a clash is a clash. */
	BAD("[models.lora]\na = \"https://e.x/x.bin\"\n[models.loras]\nb = \"https://e.x/x.bin\"\n",
	    "t.toml:4:1: entries models.loras.b and models.lora.a (line 2:1) would both be "
	    "\"Lora/x.bin\"");

	/* [layout] moves a category under any of its names. */
	cfg = OK("[layout]\nloras = \"MyLoras\"\n[models.lora]\na = \"https://e.x/a.bin\"\n"
		 "[models.Lora]\nb = \"https://e.x/b.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "MyLoras");
		CHECK_STR(cfg->entries[1].dir, "MyLoras");
		CHECK(has_dir(cfg, "MyLoras") && !has_dir(cfg, "Lora"));
	}
	config_free(cfg);
	BAD("[layout]\nlora = \"A\"\nLoras = \"B\"\n",
	    "t.toml:3:1: the folder of category \"Loras\" is set twice (also at line 2:1, as \"lora\")");
}

static void test_category_typos(void)
{
	struct config *cfg;

	BAD("[models.chekpoints]\nx = \"https://e.x/x.bin\"\n",
	    "t.toml:1:9: unknown category models.chekpoints (did you mean \"checkpoints\"?): no webui "
	    "reads a folder of that name; to have one anyway, add to [layout]: "
	    "chekpoints = \"chekpoints\"");
	BAD("[models.vae]\nv = \"https://e.x/v.bin\"\n\n[models.lorra]\nx = \"https://e.x/x.bin\"\n",
	    "t.toml:4:9: unknown category models.lorra (did you mean \"lora\"?)");
	BAD("[models.lroa]\nx = \"https://e.x/x.bin\"\n", "(did you mean \"lora\"?)");	/* a swap */
	BAD("[models.vea]\nx = \"https://e.x/x.bin\"\n", "(did you mean \"vae\"?)");
	BAD("[models.Stable-difusion]\nx = \"https://e.x/x.bin\"\n",
	    "(did you mean \"Stable-diffusion\"?)");
	BAD("[models.upscale_model]\nx = \"https://e.x/x.bin\"\n",
	    "(did you mean \"upscale_models\"?)");
	BAD("[models.text_encodrs]\nx = \"https://e.x/x.bin\"\n", "(did you mean \"text_encoders\"?)");
	BAD("[models.\"check points\"]\nx = \"https://e.x/x.bin\"\n",
	    "add to [layout]: \"check points\" = \"check points\"");
	/* In every layout: a typo there still names a folder in another. */
	BAD("[modelfs]\nlayout = \"flat\"\n[models.chekpoints]\nx = \"https://e.x/x.bin\"\n",
	    "unknown category models.chekpoints");

	/* [layout] naming its folder says the name is meant. */
	cfg = OK("[layout]\nchekpoints = \"chekpoints\"\n[models.chekpoints]\nx = \"https://e.x/x.bin\"\n");
	if (cfg)
		CHECK_STR(cfg->entries[0].dir, "chekpoints");
	config_free(cfg);

	/* Names far from every known one are folders of their own, even
	 * short ones ("sam" is two edits from "vae", but two of three letters). */
	cfg = OK("[models.ipadapter]\na = \"https://e.x/a.bin\"\n[models.insightface]\n"
		 "b = \"https://e.x/b.bin\"\n[models.sam]\nc = \"https://e.x/c.bin\"\n"
		 "[models.animatediff_models]\nd = \"https://e.x/d.bin\"\n");
	if (cfg) {
		CHECK_STR(cfg->entries[0].dir, "ipadapter");
		CHECK_STR(cfg->entries[1].dir, "insightface");
		CHECK_STR(cfg->entries[2].dir, "sam");
		CHECK_STR(cfg->entries[3].dir, "animatediff_models");
	}
	config_free(cfg);
}

static void test_table_forms(void)
{
	struct config *cfg;

	cfg = OK("[models.vae.\"my vae\"]\n"
		 "url = \"https://e.x/v.safetensors\"\n"
		 "sha256 = \"0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789ABCDEF\"\n"
		 "headers.User-Agent = \"modelfs\"\n"
		 "[models.lora]\n"
		 "multi = {\n"
		 "  source = \"huggingface\",   # TOML 1.1 multi-line inline table\n"
		 "  repo = \"o/n\",\n"
		 "  file = \"l.safetensors\",\n"
		 "}\n");
	if (cfg) {
		CHECK(cfg->n_entries == 2);
		CHECK_STR(cfg->entries[0].id, "vae/my vae");
		CHECK_STR(cfg->entries[0].sha256,
			  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
		CHECK(cfg->entries[0].n_headers == 1);
		CHECK_STR(cfg->entries[1].filename, "l.safetensors");
		CHECK_STR(cfg->entries[1].dir, "Lora");
	}
	config_free(cfg);
	BAD("[models.vae.\"my vae\"]\nurl = \"https://e.x/v\"\nsha265 = \"\"\n",
	    "t.toml:3:1: unknown key \"sha265\" in entry models.vae.\"my vae\" (did you mean \"sha256\"?)");
}

/* Links people paste become entries of their source. */
static void test_links(void)
{
	const struct config_entry *e;
	struct config *cfg;

	cfg = OK("[modelfs]\nhf_endpoint = \"http://127.0.0.1:8080\"\n"
		 "[models.checkpoints]\n"
		 "a = \"https://huggingface.co/o/r/resolve/main/sd.safetensors\"\n"
		 "b = \"https://hf.co/datasets/o/d/blob/v1.0/sub%20dir/x.bin?download=true\"\n"
		 "c = \"http://127.0.0.1:8080/o/r/resolve/abc/unet/m.safetensors\"\n"
		 "[models.lora]\n"
		 "d = \"https://civitai.com/models/58390?modelVersionId=62833\"\n"
		 "e = \"https://civitai.com/api/download/models/62833?type=Model&fileId=123\"\n"
		 "f = \"https://civitai.com/models/58390/detail-tweaker\"\n"
		 "[models.vae]\n"
		 "g = \"https://example.com/o/r/resolve/main/z.bin\"\n"
		 "h = { source = \"url\", url = \"https://huggingface.co/o/r/resolve/main/k.bin\" }\n");
	if (!cfg)
		return;
	e = find(cfg, "checkpoints/a");
	CHECK(e && e->source == CONFIG_SOURCE_HUGGINGFACE && !e->url);
	CHECK_STR(e ? e->repo : NULL, "o/r");
	CHECK_STR(e ? e->revision : NULL, "main");
	CHECK_STR(e ? e->file : NULL, "sd.safetensors");
	CHECK_STR(e ? e->filename : NULL, "sd.safetensors");
	e = find(cfg, "checkpoints/b");
	CHECK_STR(e ? e->repo_type : NULL, "dataset");
	CHECK_STR(e ? e->revision : NULL, "v1.0");
	CHECK_STR(e ? e->file : NULL, "sub dir/x.bin");
	e = find(cfg, "checkpoints/c");	/* on the configured endpoint */
	CHECK(e && e->source == CONFIG_SOURCE_HUGGINGFACE);
	CHECK_STR(e ? e->file : NULL, "unet/m.safetensors");
	e = find(cfg, "lora/d");
	CHECK(e && e->source == CONFIG_SOURCE_CIVITAI);
	CHECK_STR(e ? e->model_id : NULL, "58390");
	CHECK_STR(e ? e->version_id : NULL, "62833");
	e = find(cfg, "lora/e");
	CHECK_STR(e ? e->version_id : NULL, "62833");
	CHECK_STR(e ? e->file_id : NULL, "123");
	e = find(cfg, "lora/f");
	CHECK(e && e->version_id == NULL && e->model_id && strcmp(e->model_id, "58390") == 0);
	e = find(cfg, "vae/g");		/* another host: a plain URL */
	CHECK(e && e->source == CONFIG_SOURCE_URL);
	e = find(cfg, "vae/h");		/* source = "url" written: kept as a URL */
	CHECK(e && e->source == CONFIG_SOURCE_URL);
	config_free(cfg);
}

static void test_load(void)
{
	char path[] = "/tmp/test_config_XXXXXX";
	const char *text = "[models.vae]\nv = \"https://e.x/v.bin\"\n";
	struct config_error err;
	struct config *cfg = NULL;
	int fd = mkstemp(path), rc;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	rc = config_load(path, &cfg, &err);
	CHECK(rc == 0 && cfg && cfg->n_entries == 1);
	if (cfg)
		CHECK_STR(cfg->path, path);
	config_free(cfg);

	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "[modelfs]\nverify = 1\n", 21) == 21);
	close(fd);
	cfg = NULL;
	rc = config_load(path, &cfg, &err);
	CHECK(rc == -EINVAL && !cfg && strncmp(err.msg, path, strlen(path)) == 0 &&
	      strstr(err.msg, ":2:10: modelfs.verify must be"));
	unlink(path);

	rc = config_load(path, &cfg, &err);
	CHECK(rc == -ENOENT && !cfg);
	CHECK(strstr(err.msg, path) == err.msg && strstr(err.msg, ": cannot read: No such file or directory"));
	rc = config_load("/tmp", &cfg, &err);
	CHECK(rc == -EISDIR && strstr(err.msg, "/tmp: cannot read: Is a directory"));
}

int main(void)
{
	log_init(2, 0, LOG_LVL_ERROR);
	unsetenv("HF_ENDPOINT");
	test_seed();
	test_sizes();
	test_durations();
	test_defaults();
	test_modelfs_keys();
	test_env();
	test_entry_errors();
	test_sources();
	test_filenames();
	test_duplicates();
	test_layouts();
	test_category_aliases();
	test_category_typos();
	test_table_forms();
	test_links();
	test_load();
	return check_summary();
}
