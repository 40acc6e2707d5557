/*
 * config.c: turns the TOML tree from toml.c into a validated struct
 * config. Each section is checked against a table of key specs (name,
 * kind of value, where it is stored, which sources take it), so a new
 * key is one line, and unknown keys, wrong types and bad values all get
 * the same "FILE:LINE:COL: what, and what to write instead" messages.
 * After the keys, each entry gets its source, its folder from the layout
 * and its file name; last, the folders of the mount are listed and two
 * entries that would land on the same path are refused.
 */
#include "modelfs/config.h"

#include "modelfs/log.h"
#include "modelfs/manifest.h"
#include "modelfs/model_catalog.h"
#include "modelfs/readfile.h"
#include "modelfs/suggest.h"
#include "modelfs/text.h"
#include "modelfs/toml.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A config is a few KiB; a bigger file is a mistake (a model passed by
 * accident), not something to read into memory. */
#define CONFIG_MAX_BYTES (16 << 20)
#define NAME_MAX_BYTES 255
#define WHERE_MAX 320

/* ---- layouts ---------------------------------------------------------- */

/*
 * A category is a kind of model. Users name it the way the webui they
 * know does: Forge's folder ("Lora"), ComfyUI's ("loras") or the name of
 * DESIGN §4 ("lora"). Every name of a row means the same category,
 * matched ignoring case, and goes to that row's folder in the chosen
 * layout, so a config written for one webui mounts right for the other.
 * The rows are every model folder of WEBUI.md §4; a category within two
 * edits of one of these names is taken for a typo (check_category()).
 */
enum { L_FORGE, L_COMFYUI, L_NCOLS };

struct category {
	const char *names[4];		/* [0]: the name of DESIGN §4 */
	const char *folder[L_NCOLS];	/* in forge, in comfyui */
	unsigned shown;			/* 1 << L_*: the layouts that show its folder
					 * even when empty */
};

#define SHOW_F (1u << L_FORGE)
#define SHOW_C (1u << L_COMFYUI)

static const struct category categories[] = {
	{ { "checkpoints", "Stable-diffusion" }, { "Stable-diffusion", "checkpoints" }, SHOW_F | SHOW_C },
	{ { "lora", "loras" }, { "Lora", "loras" }, SHOW_F | SHOW_C },
	{ { "vae" }, { "VAE", "vae" }, SHOW_F | SHOW_C },
	{ { "controlnet", "t2i_adapter" }, { "ControlNet", "controlnet" }, SHOW_F | SHOW_C },
	{ { "esrgan", "upscale_models" }, { "ESRGAN", "upscale_models" }, SHOW_F | SHOW_C },
	{ { "embeddings" }, { "embeddings", "embeddings" }, SHOW_F | SHOW_C },
	{ { "hypernetworks" }, { "hypernetworks", "hypernetworks" }, SHOW_F | SHOW_C },
	/* Forge's --text-encoder-dir. */
	{ { "clip", "text_encoders", "text_encoder" }, { "text_encoder", "text_encoders" },
	  SHOW_F | SHOW_C },
	/* Forge has no folder for a bare diffusion model (Flux, GGUF): it
	 * loads them from its checkpoint folder. */
	{ { "unet", "diffusion_models" }, { "Stable-diffusion", "diffusion_models" }, SHOW_C },
	{ { "clip_vision" }, { "clip_vision", "clip_vision" }, SHOW_C },
	/* Forge os.makedirs()es these at import; on a read-only mount a
	 * missing one kills its startup (WEBUI.md §1), so they are always
	 * there. */
	{ { "ControlNetPreprocessor" }, { "ControlNetPreprocessor", "ControlNetPreprocessor" }, SHOW_F },
	{ { "diffusers" }, { "diffusers", "diffusers" }, SHOW_F },
	/* Forge's other folders: ComfyUI keeps every upscaler in one. */
	{ { "vae_approx", "VAE-approx" }, { "VAE-approx", "vae_approx" }, 0 },
	{ { "VAE-taesd" }, { "VAE-taesd", "vae_approx" }, 0 },
	{ { "RealESRGAN" }, { "RealESRGAN", "upscale_models" }, 0 },
	{ { "DAT" }, { "DAT", "upscale_models" }, 0 },
	{ { "SwinIR" }, { "SwinIR", "upscale_models" }, 0 },
	{ { "ScuNET" }, { "ScuNET", "upscale_models" }, 0 },
	{ { "GFPGAN" }, { "GFPGAN", "GFPGAN" }, 0 },
	{ { "Codeformer" }, { "Codeformer", "Codeformer" }, 0 },
	/* ComfyUI's other folders: Forge reads none of them. */
	{ { "configs" }, { "configs", "configs" }, 0 },
	{ { "style_models" }, { "style_models", "style_models" }, 0 },
	{ { "gligen" }, { "gligen", "gligen" }, 0 },
	{ { "photomaker" }, { "photomaker", "photomaker" }, 0 },
	{ { "classifiers" }, { "classifiers", "classifiers" }, 0 },
	{ { "model_patches" }, { "model_patches", "model_patches" }, 0 },
	{ { "audio_encoders" }, { "audio_encoders", "audio_encoders" }, 0 },
	{ { "latent_upscale_models" }, { "latent_upscale_models", "latent_upscale_models" }, 0 },
};
#define N_CATEGORIES (sizeof(categories) / sizeof(categories[0]))
#define N_NAMES (sizeof(categories[0].names) / sizeof(categories[0].names[0]))

struct layout {
	const char *name;
	bool flat;			/* every entry in the mount root */
	int col;			/* its column of categories[].folder */
};

static const struct layout layouts[] = {
	{ "forge", false, L_FORGE },
	{ "comfyui", false, L_COMFYUI },
	{ "flat", true, L_NCOLS },
};
#define N_LAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

static const char *const layout_names[] = { "forge", "comfyui", "flat", NULL };

static const struct layout *find_layout(const char *name)
{
	for (size_t i = 0; i < N_LAYOUTS; i++)
		if (strcasecmp(layouts[i].name, name) == 0)
			return &layouts[i];
	return NULL;
}

/* The known category a name means, or NULL. */
static const struct category *find_category(const char *name)
{
	for (size_t i = 0; i < N_CATEGORIES; i++)
		for (size_t k = 0; k < N_NAMES && categories[i].names[k]; k++)
			if (strcasecmp(categories[i].names[k], name) == 0)
				return &categories[i];
	return NULL;
}

/* Do two names written in a config mean one category? Unknown ones
 * only when spelt alike: each is a folder of its own name. */
static bool same_category(const char *a, const char *b)
{
	const struct category *c = find_category(a);

	return c ? c == find_category(b) : strcmp(a, b) == 0;
}

static const char *layout_folder(const struct layout *l, const char *category)
{
	const struct category *c;

	if (l->flat)
		return "";
	c = find_category(category);
	return c ? c->folder[l->col] : category;
}

const char *config_layout_dir(const char *layout, const char *category)
{
	const struct layout *l = find_layout(layout ? layout : "forge");

	if (!l || !category)
		return NULL;
	return layout_folder(l, category);
}

static const char *const source_names[] = { "url", "huggingface", "civitai", "s3", "local",
					     NULL };

const char *config_source_name(enum config_source source)
{
	if ((unsigned)source < sizeof(source_names) / sizeof(source_names[0]) - 1)
		return source_names[source];
	return "unknown";
}

/* ---- sizes and durations ---------------------------------------------- */

static const char *skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Reads the digits at *ps into *n; false on overflow past max. */
static bool read_digits(const char **ps, uint64_t max, uint64_t *n)
{
	const char *s = *ps;
	uint64_t v = 0;

	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*ps = s;
	*n = v;
	return true;
}

/* The run of letters at *ps, lower-cased into buf (n >= 2): "" when
 * there is none, "?" (no unit) when it is too long to be one. */
static void read_unit(const char **ps, char *buf, size_t n)
{
	const char *s = *ps;
	bool too_long = false;
	size_t i = 0;

	for (; isalpha((unsigned char)*s); s++) {
		if (i + 1 < n)
			buf[i++] = (char)tolower((unsigned char)*s);
		else
			too_long = true;
	}
	buf[i] = '\0';
	if (too_long)
		strcpy(buf, "?");
	*ps = s;
}

int config_parse_size(const char *text, int64_t *bytes, double *percent)
{
	static const struct {
		const char *unit;
		int shift;
	} units[] = {
		{ "", 0 }, { "b", 0 },
		{ "k", 10 }, { "kb", 10 }, { "kib", 10 },
		{ "m", 20 }, { "mb", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gb", 30 }, { "gib", 30 },
		{ "t", 40 }, { "tb", 40 }, { "tib", 40 },
	};
	const char *s;
	char unit[8];
	uint64_t n;

	if (!text)
		return -EINVAL;
	s = skip_space(text);
	if (!isdigit((unsigned char)*s))
		return -EINVAL;		/* also "-5G", "+5G", ".5G" */
	if (!read_digits(&s, INT64_MAX, &n))
		return -EINVAL;
	if (*s == '.' || *skip_space(s) == '%') {
		/* A percentage, the only place a fraction makes sense: "12.5%".
		 * Digits past the 15th can't change a double; they are read
		 * but ignored so that scale stays finite. */
		double frac = 0, scale = 1, p;
		int nd = 0;

		if (*s == '.') {
			s++;
			if (!isdigit((unsigned char)*s))
				return -EINVAL;
			for (; isdigit((unsigned char)*s); s++, nd++) {
				if (nd >= 15)
					continue;
				frac = frac * 10 + (*s - '0');
				scale *= 10;
			}
		}
		s = skip_space(s);
		if (*s != '%' || *skip_space(s + 1) != '\0' || !percent)
			return -EINVAL;
		p = (double)n + frac / scale;
		if (!(p > 0 && p <= 100))
			return -EINVAL;
		*percent = p;
		if (bytes)
			*bytes = -1;
		return 0;
	}
	s = skip_space(s);
	read_unit(&s, unit, sizeof(unit));
	if (*skip_space(s) != '\0')
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(unit, units[i].unit) != 0)
			continue;
		if (n > ((uint64_t)INT64_MAX >> units[i].shift))
			return -EINVAL;
		if (bytes)
			*bytes = (int64_t)(n << units[i].shift);
		if (percent)
			*percent = 0;
		return 0;
	}
	return -EINVAL;
}

int config_parse_duration(const char *text, int *seconds)
{
	static const struct {
		const char *unit;
		int mult;
	} units[] = {
		{ "s", 1 }, { "sec", 1 }, { "secs", 1 }, { "second", 1 }, { "seconds", 1 },
		{ "m", 60 }, { "min", 60 }, { "mins", 60 }, { "minute", 60 }, { "minutes", 60 },
		{ "h", 3600 }, { "hr", 3600 }, { "hrs", 3600 }, { "hour", 3600 }, { "hours", 3600 },
		{ "d", 86400 }, { "day", 86400 }, { "days", 86400 },
	};
	const char *s;
	uint64_t total = 0;
	int parts = 0;

	if (!text)
		return -EINVAL;
	s = skip_space(text);
	if (*s == '\0')
		return -EINVAL;
	/* "90", "90s", "2m", "1h30m", "1h 30m": a bare number only alone. */
	while (*s) {
		char unit[10];
		uint64_t n, mult = 0;

		if (!isdigit((unsigned char)*s) || !read_digits(&s, INT_MAX, &n))
			return -EINVAL;
		s = skip_space(s);
		read_unit(&s, unit, sizeof(unit));
		s = skip_space(s);
		if (unit[0] == '\0') {
			if (parts > 0 || *s)
				return -EINVAL;
			mult = 1;
		}
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && !mult; i++)
			if (strcmp(unit, units[i].unit) == 0)
				mult = (uint64_t)units[i].mult;
		if (!mult || n > (INT_MAX - total) / mult)
			return -EINVAL;
		total += n * mult;
		parts++;
	}
	*seconds = (int)total;
	return 0;
}

/* ---- the parser's state and messages ---------------------------------- */

struct override {
	const char *category, *folder;	/* point into the TOML tree */
	int line, col;
};

struct parser {
	const char *name;		/* the file, for messages */
	struct config_error *err;
	struct config *cfg;		/* being filled */
	const struct layout *layout;
	const char *layout_over;	/* a mount's -o layout=, over [modelfs]'s; or NULL */
	struct override *ov;		/* [layout] category -> folder */
	size_t n_ov;
	struct model_catalog *catalog;	/* read at the first { catalog = ... } */
	const char **view_names;	/* layout = [...]: the views' layouts, or NULL */
	size_t n_view_names;
	const char *view;		/* the view this parse lays out, or NULL: the first */
};

__attribute__((format(printf, 4, 5)))
static int fail(struct parser *p, int line, int col, const char *fmt, ...)
{
	char *msg = p->err->msg;
	size_t size = sizeof(p->err->msg);
	va_list ap;
	int n;

	if (line > 0)
		n = snprintf(msg, size, "%s:%d:%d: ", p->name, line, col);
	else
		n = snprintf(msg, size, "%s: ", p->name);
	if (n < 0 || (size_t)n >= size)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg + n, size - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int nomem(struct parser *p)
{
	snprintf(p->err->msg, sizeof(p->err->msg), "%s: out of memory", p->name);
	return -ENOMEM;
}

/* "a string", "an integer", ... for "must be X, not Y". */
static const char *a_type(enum toml_type t)
{
	switch (t) {
	case TOML_STRING: return "a string";
	case TOML_INTEGER: return "an integer";
	case TOML_FLOAT: return "a float";
	case TOML_BOOL: return "a boolean";
	case TOML_ARRAY: return "an array";
	case TOML_TABLE: return "a table";
	default: return "a date/time";
	}
}

/* A value as written, for a message: at most 60 bytes, nothing after
 * a '?' (a signed URL carries its signature there), quotes and control
 * bytes escaped. Values are shown before ${VAR} expansion, so an
 * expanded secret never lands in a message. */
static const char *shown(const struct toml_value *v, char *buf, size_t n)
{
	const char *s = v->u.str.ptr, *q;
	size_t len = v->u.str.len, o = 0;
	bool cut = false;

	if (v->type != TOML_STRING)
		return "";
	q = memchr(s, '?', len);
	if (q && q + 1 < s + len) {
		len = (size_t)(q - s) + 1;
		cut = true;
	}
	if (len > 60) {
		len = 60;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;		/* not inside a UTF-8 sequence */
		cut = true;
	}
	for (size_t i = 0; i < len && o + 5 < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	if (cut && o + 4 < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o < n ? o : n - 1] = '\0';
	return buf;
}

/* Appends a TOML key to a dotted path, quoted when it isn't bare. */
static void add_key(char *buf, size_t n, const char *key)
{
	size_t len = strlen(buf);
	bool bare = key[0] != '\0';

	for (const char *k = key; *k; k++)
		if (!isalnum((unsigned char)*k) && *k != '_' && *k != '-')
			bare = false;
	snprintf(buf + len, n - len, "%s%s%s%s", len ? "." : "", bare ? "" : "\"", key,
		 bare ? "" : "\"");
}

/* "\"lazy\" or \"strict\"" */
static const char *choice_list(const char *const *choices, char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; choices[i] && o < n; i++) {
		const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : " or ";

		o += (size_t)snprintf(buf + o, n - o, "%s\"%s\"", sep, choices[i]);
	}
	return buf;
}

static size_t count_words(const char *const *words)
{
	size_t n = 0;

	while (words[n])
		n++;
	return n;
}

/* ---- strings and ${VAR} ----------------------------------------------- */

struct buf {
	char *s;
	size_t len, cap;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *grown = realloc(b->s, cap);

		if (!grown)
			return -ENOMEM;
		b->s = grown;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

/* Expands the ${NAME} or ${NAME:-default} starting at *ps (just past the
 * "${") into b and moves *ps past its '}'. The default runs to the first
 * '}': defaults don't nest. */
static int expand_var(struct parser *p, const struct toml_value *v, const char *where,
		      const char **ps, const char *end, struct buf *b)
{
	const char *s = *ps, *name_end, *close, *val;
	char name[128];
	size_t len;

	close = memchr(s, '}', (size_t)(end - s));
	if (!close)
		return fail(p, v->line, v->col,
			    "unterminated \"${\" in %s; write \"$${\" for a literal \"${\"", where);
	name_end = s;
	while (name_end < close && (isalnum((unsigned char)*name_end) || *name_end == '_'))
		name_end++;
	len = (size_t)(name_end - s);
	if (len == 0 || isdigit((unsigned char)*s) || len >= sizeof(name) ||
	    (name_end != close && (close - name_end < 2 || memcmp(name_end, ":-", 2) != 0)))
		return fail(p, v->line, v->col,
			    "bad variable reference \"${%.*s}\" in %s: write ${NAME} or "
			    "${NAME:-default} (NAME: letters, digits, '_'), or \"$${\" for a "
			    "literal \"${\"",
			    (int)(close - s > 60 ? 60 : close - s), s, where);
	memcpy(name, s, len);
	name[len] = '\0';
	val = getenv(name);
	if (name_end != close && (!val || !*val)) {
		/* ${NAME:-default}, with the shell's meaning: unset or empty.
		 * The default is in the file for all to see: no secret. */
		if (buf_add(b, name_end + 2, (size_t)(close - name_end - 2)))
			return nomem(p);
	} else if (!val) {
		return fail(p, v->line, v->col, "environment variable %s is not set (used in %s); "
			    "export it or remove the reference", name, where);
	} else {
		log_add_secret(val);
		if (buf_add(b, val, strlen(val)))
			return nomem(p);
	}
	*ps = close + 1;
	return 0;
}

/* The string value v, ${VAR}s expanded, in *out (the caller frees).
 * Control bytes are refused: no value here is multi-line, and a CR or LF
 * in a header or URL would split the request. */
static int get_string(struct parser *p, const struct toml_value *v, const char *where,
		      const char *expected, char **out)
{
	const char *s, *end;
	struct buf b = { 0 };
	int rc = 0;

	if (v->type != TOML_STRING)
		return fail(p, v->line, v->col, "%s must be %s, not %s", where, expected,
			    a_type(v->type));
	s = v->u.str.ptr;
	end = s + v->u.str.len;
	if (buf_add(&b, "", 0))
		return nomem(p);
	while (s < end) {
		const char *d = memchr(s, '$', (size_t)(end - s));

		if (!d)
			d = end;
		if (buf_add(&b, s, (size_t)(d - s))) {
			rc = nomem(p);
			goto out;
		}
		s = d;
		if (s == end)
			break;
		if (end - s >= 3 && s[1] == '$' && s[2] == '{') {
			rc = buf_add(&b, "${", 2) ? nomem(p) : 0;
			s += 3;
		} else if (end - s >= 2 && s[1] == '{') {
			s += 2;
			rc = expand_var(p, v, where, &s, end, &b);
		} else {
			rc = buf_add(&b, "$", 1) ? nomem(p) : 0;
			s++;
		}
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = (unsigned char)b.s[i];

		if (c < 0x20 || c == 0x7f) {
			rc = fail(p, v->line, v->col, "%s contains a control character (%s); "
				  "write it on one line", where,
				  c == 0 ? "a NUL byte" : c == '\n' ? "a newline" : "e.g. a tab");
			goto out;
		}
	}
	*out = b.s;
	b.s = NULL;
out:
	free(b.s);
	return rc;
}

/* ---- small checks ----------------------------------------------------- */

/* A single path component: a file or folder name in the mount. */
static bool valid_name(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && len <= NAME_MAX_BYTES && !strchr(s, '/') &&
	       strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Length of "http://" or "https://" at the start of s, else 0. */
static size_t http_scheme(const char *s)
{
	if (strncasecmp(s, "http://", 7) == 0)
		return 7;
	if (strncasecmp(s, "https://", 8) == 0)
		return 8;
	return 0;
}

/* The host of an http(s) URL: after userinfo, before port/path. */
static void url_host(const char *url, char *host, size_t n)
{
	const char *s = url + http_scheme(url), *e = s + strcspn(s, "/?#");
	const char *at = memchr(s, '@', (size_t)(e - s)), *colon;
	size_t len;

	if (at)
		s = at + 1;
	colon = memchr(s, ':', (size_t)(e - s));
	if (colon && s[0] != '[')
		e = colon;
	len = (size_t)(e - s) < n - 1 ? (size_t)(e - s) : n - 1;
	memcpy(host, s, len);
	host[len] = '\0';
}

static bool valid_http_url(const char *s)
{
	char host[256];

	if (!http_scheme(s) || strpbrk(s, " \"<>\\^`{|}"))
		return false;
	url_host(s, host, sizeof(host));
	return host[0] != '\0';
}

/* Drive links name no file; its name comes from Content-Disposition. */
static bool is_drive_url(const char *url)
{
	char host[256];

	url_host(url, host, sizeof(host));
	return strcasecmp(host, "drive.google.com") == 0 ||
	       strcasecmp(host, "docs.google.com") == 0 ||
	       strcasecmp(host, "drive.usercontent.google.com") == 0;
}

/* The last path segment of an http(s) or s3 URL, if it is a usable file
 * name; else *out is NULL. http(s) segments are percent-decoded; an
 * s3:// key is written raw (as the AWS CLI takes it), so "a%20b" there
 * is the object's name as it is. 0 or -ENOMEM. */
static int url_file_name(const char *url, char **out)
{
	const char *s = strstr(url, "://"), *path, *end, *seg;
	bool bad = false, raw = strncasecmp(url, "s3://", 5) == 0;
	char *name;
	size_t o = 0;

	*out = NULL;
	if (!s)
		return 0;
	s += 3;
	path = s + strcspn(s, "/?#");
	if (*path != '/')
		return 0;
	end = path + strcspn(path, "?#");
	seg = end;
	while (seg > path && seg[-1] != '/')
		seg--;
	if (seg == end)
		return 0;
	name = malloc((size_t)(end - seg) + 1);
	if (!name)
		return -ENOMEM;
	for (const char *c = seg; c < end; c++) {
		unsigned char byte = (unsigned char)*c;

		if (!raw && *c == '%' && end - c >= 3 && text_hex_digit(c[1]) >= 0 && text_hex_digit(c[2]) >= 0) {
			byte = (unsigned char)(text_hex_digit(c[1]) * 16 + text_hex_digit(c[2]));
			c += 2;
		}
		if (byte < 0x20 || byte == 0x7f)
			bad = true;	/* "%00", "%0A": not in a name */
		name[o++] = (char)byte;
	}
	name[o] = '\0';
	if (bad || !valid_name(name)) {
		free(name);		/* also "%2F", "..": not a name */
		return 0;
	}
	*out = name;
	return 0;
}

/* "owner/name", in Hugging Face's alphabet. */
bool config_valid_repo(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_./", *s))
			return false;
	return true;
}

bool config_valid_repo_path(const char *s)
{
	if (!*s)
		return false;
	while (*s) {
		size_t len = strcspn(s, "/");

		if (len == 0 || len > NAME_MAX_BYTES || (len == 1 && s[0] == '.') ||
		    (len == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += len;
		if (*s == '/' && !*++s)
			return false;
	}
	return true;
}

/* HTTP token characters (RFC 9110 §5.6.2). */
static bool valid_header_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

/* ---- key specs -------------------------------------------------------- */

enum kind {
	K_STRING,	/* char * */
	K_PATH,		/* char *, an absolute path */
	K_BASE_URL,	/* char *, http(s), no query, trailing '/' dropped */
	K_S3_URL,	/* char *, "s3://bucket[/prefix]" (bucket.c checks the rest) */
	K_FILENAME,	/* char *, one path component */
	K_SIZE,		/* int64_t: integer bytes or "8G" */
	K_SIZE_PCT,	/* int64_t bytes (-1 for a percentage) at off, double % at off2 */
	K_BLOCK_SIZE,	/* uint32_t, power of two in 64 KiB .. 256 MiB */
	K_COUNT,	/* int in min .. max */
	K_DURATION,	/* int seconds: integer or "90s" */
	K_CHOICE,	/* an enum (int-sized) indexing choices */
	K_CHOICE_STR,	/* char *, one of choices */
	K_BOOL,		/* bool */
	K_STRINGS,	/* char **, NULL-terminated; an empty array gives NULL */
	K_URLS,		/* the same, each an http(s) URL */
	K_ID,		/* char *, decimal digits: integer or string */
	K_SHA256,	/* char *, 64 lowercase hex */
	K_HEADERS,	/* struct config_header * at off, size_t count at off2 */
	K_LAYOUT,	/* the parser's layout: a name or a category -> folder table */
};

struct key_spec {
	const char *name;
	enum kind kind;
	size_t off, off2;		/* where the value goes in the struct */
	const char *const *choices;	/* K_CHOICE*: NULL-terminated, in enum order */
	int64_t min, max;		/* K_COUNT range; K_SIZE_PCT least bytes */
	unsigned sources;		/* entry keys: bit per config_source that takes it */
	bool secret;			/* the value is a credential */
};

_Static_assert(sizeof(enum config_verify) == sizeof(int), "K_CHOICE stores an int");
_Static_assert(sizeof(enum config_source) == sizeof(int), "K_CHOICE stores an int");
_Static_assert(sizeof(enum config_shared_mode) == sizeof(int), "K_CHOICE stores an int");

#define FIELD(obj, off, type) ((type *)(void *)((char *)(obj) + (off)))

static const char *const verify_names[] = { "lazy", "strict", NULL };
static const char *const shared_cache_modes[] = { "read-write", "read-only", NULL };
static const char *const repo_types[] = { "model", "dataset", "space", NULL };

#define CFG(f) offsetof(struct config, f)
static const struct key_spec modelfs_keys[] = {
	{ "cache_dir", K_PATH, .off = CFG(cache_dir) },
	{ "cache_max_size", K_SIZE_PCT, .off = CFG(cache_max_size),
	  .off2 = CFG(cache_max_percent), .min = 1 },
	{ "cache_min_free", K_SIZE_PCT, .off = CFG(cache_min_free),
	  .off2 = CFG(cache_min_free_percent) },
	{ "block_size", K_BLOCK_SIZE, .off = CFG(block_size) },
	{ "layout", K_LAYOUT, .choices = layout_names },
	{ "verify", K_CHOICE, .off = CFG(verify), .choices = verify_names },
	{ "connections", K_COUNT, .off = CFG(connections), .min = 1, .max = 64 },
	{ "retry_timeout", K_DURATION, .off = CFG(retry_timeout_sec) },
	{ "cache_ttl", K_DURATION, .off = CFG(cache_ttl_sec) },
	{ "mountpoint", K_PATH, .off = CFG(mountpoint) },
	{ "local_dir", K_PATH, .off = CFG(local_dir) },
	{ "lock", K_STRING, .off = CFG(lock) },
	{ "serve", K_STRING, .off = CFG(serve) },
	{ "serve_prefix", K_STRING, .off = CFG(serve_prefix) },
	{ "serve_token_file", K_PATH, .off = CFG(serve_token_file) },
	{ "hf_endpoint", K_BASE_URL, .off = CFG(hf_endpoint) },
	{ "civitai_endpoint", K_BASE_URL, .off = CFG(civitai_endpoint) },
	{ "gdrive_endpoint", K_BASE_URL, .off = CFG(gdrive_endpoint) },
	{ "prefetch", K_STRINGS, .off = CFG(prefetch) },
	{ "cache_proxy", K_BASE_URL, .off = CFG(cache_proxy) },
	{ "cache_proxy_private", K_BOOL, .off = CFG(cache_proxy_private) },
	{ "cache_proxy_token_file", K_PATH, .off = CFG(cache_proxy_token_file) },
	{ "shared_cache", K_S3_URL, .off = CFG(shared_cache) },
	{ "shared_cache_mode", K_CHOICE, .off = CFG(shared_cache_mode),
	  .choices = shared_cache_modes },
	{ "shared_cache_allow", K_STRINGS, .off = CFG(shared_cache_allow) },
	{ "mirror_token_file", K_PATH, .off = CFG(mirror_token_file) },
	{ "bandwidth_limit", K_SIZE, .off = CFG(bandwidth_limit) },
	{ "header_prefetch", K_BOOL, .off = CFG(header_prefetch) },
};
#define N_MODELFS_KEYS (sizeof(modelfs_keys) / sizeof(modelfs_keys[0]))

enum entry_key {
	E_SOURCE, E_URL, E_REPO, E_FILE, E_REVISION, E_REPO_TYPE, E_INCLUDE, E_EXCLUDE,
	E_MODEL_ID, E_VERSION_ID, E_FILE_ID, E_ENDPOINT, E_REGION, E_MIRRORS,
	E_FILENAME, E_SHA256, E_SIZE, E_HEADERS, E_AUTH_HEADER, E_GATED, E_VERIFY,
	E_PREFETCH, E_PIN, E_PATH, E_MIRROR_TOKEN_FILE, N_ENTRY_KEYS
};

#define S_URL (1u << CONFIG_SOURCE_URL)
#define S_HF (1u << CONFIG_SOURCE_HUGGINGFACE)
#define S_CIVITAI (1u << CONFIG_SOURCE_CIVITAI)
#define S_S3 (1u << CONFIG_SOURCE_S3)
#define S_LOCAL (1u << CONFIG_SOURCE_LOCAL)
#define S_REMOTE (S_URL | S_HF | S_CIVITAI | S_S3)
#define S_ALL (S_REMOTE | S_LOCAL)

#define ENT(f) offsetof(struct config_entry, f)
static const struct key_spec entry_keys[N_ENTRY_KEYS] = {
	[E_SOURCE] = { "source", K_CHOICE, .off = ENT(source), .choices = source_names,
			.sources = S_ALL },
	[E_URL] = { "url", K_STRING, .off = ENT(url), .sources = S_URL | S_S3 },
	[E_REPO] = { "repo", K_STRING, .off = ENT(repo), .sources = S_HF },
	[E_FILE] = { "file", K_STRING, .off = ENT(file), .sources = S_HF },
	[E_REVISION] = { "revision", K_STRING, .off = ENT(revision), .sources = S_HF },
	[E_REPO_TYPE] = { "repo_type", K_CHOICE_STR, .off = ENT(repo_type), .choices = repo_types,
			  .sources = S_HF },
	[E_INCLUDE] = { "include", K_STRINGS, .off = ENT(include), .sources = S_HF },
	[E_EXCLUDE] = { "exclude", K_STRINGS, .off = ENT(exclude), .sources = S_HF },
	[E_MODEL_ID] = { "model_id", K_ID, .off = ENT(model_id), .sources = S_CIVITAI },
	[E_VERSION_ID] = { "version_id", K_ID, .off = ENT(version_id), .sources = S_CIVITAI },
	[E_FILE_ID] = { "file_id", K_ID, .off = ENT(file_id), .sources = S_CIVITAI },
	[E_ENDPOINT] = { "endpoint", K_BASE_URL, .off = ENT(endpoint), .sources = S_S3 },
	[E_REGION] = { "region", K_STRING, .off = ENT(region), .sources = S_S3 },
	[E_MIRRORS] = { "mirrors", K_URLS, .off = ENT(mirrors), .sources = S_REMOTE },
	[E_FILENAME] = { "filename", K_FILENAME, .off = ENT(filename), .sources = S_ALL },
	[E_SHA256] = { "sha256", K_SHA256, .off = ENT(sha256), .sources = S_REMOTE },
	[E_SIZE] = { "size", K_SIZE, .off = ENT(size), .sources = S_REMOTE },
	[E_HEADERS] = { "headers", K_HEADERS, .off = ENT(headers), .off2 = ENT(n_headers),
			 .sources = S_REMOTE, .secret = true },
	[E_AUTH_HEADER] = { "auth_header", K_STRING, .off = ENT(auth_header),
			    .sources = S_REMOTE, .secret = true },
	[E_GATED] = { "gated", K_BOOL, .off = ENT(gated), .sources = S_REMOTE },
	[E_VERIFY] = { "verify", K_CHOICE, .off = ENT(verify), .choices = verify_names,
			.sources = S_REMOTE },
	[E_PREFETCH] = { "prefetch", K_BOOL, .off = ENT(prefetch), .sources = S_REMOTE },
	[E_PIN] = { "pin", K_BOOL, .off = ENT(pin), .sources = S_REMOTE },
	[E_PATH] = { "path", K_PATH, .off = ENT(path), .sources = S_LOCAL },
	[E_MIRROR_TOKEN_FILE] = { "mirror_token_file", K_PATH, .off = ENT(mirror_token_file),
				  .sources = S_REMOTE },
};

/* What a kind takes, for "must be ..." messages. */
static const char *expected(const struct key_spec *ks, char *buf, size_t n)
{
	char list[128];

	switch (ks->kind) {
	case K_STRING: return "a string";
	case K_PATH: return "an absolute path";
	case K_BASE_URL: return "an http:// or https:// URL";
	case K_S3_URL: return "an s3:// URL";
	case K_FILENAME: return "a file name";
	case K_SIZE: return "an integer (bytes) or a size like \"8G\" or \"512MiB\"";
	case K_SIZE_PCT: return "an integer (bytes), a size like \"200G\" or a percentage like \"80%\"";
	case K_BLOCK_SIZE: return "a size like \"8M\"";
	case K_COUNT: return "an integer";
	case K_DURATION: return "an integer (seconds) or a duration like \"90s\", \"2m\" or \"1h\"";
	case K_CHOICE:
	case K_CHOICE_STR:
		snprintf(buf, n, "%s", choice_list(ks->choices, list, sizeof(list)));
		return buf;
	case K_BOOL: return "true or false";
	case K_STRINGS: return "an array of strings";
	case K_URLS: return "an array of http(s) URLs";
	case K_ID: return "a number (an integer or a string of digits)";
	case K_SHA256: return "a string of 64 hex digits";
	case K_HEADERS: return "a table of \"Header-Name\" = \"value\"";
	case K_LAYOUT: return "\"forge\", \"comfyui\", \"flat\", an array of them or a table of "
			      "category = \"folder\"";
	}
	return "something else";
}

static int type_error(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		      const char *where)
{
	char buf[160];

	return fail(p, v->line, v->col, "%s must be %s, not %s", where, expected(ks, buf, sizeof(buf)),
		    a_type(v->type));
}

/* ---- values ----------------------------------------------------------- */

/* A size (integer bytes or size string); percent may be NULL. */
static int get_size(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		    const char *where, int64_t *bytes, double *percent)
{
	char *s = NULL, show[128], buf[160];
	int rc;

	if (v->type == TOML_INTEGER) {
		if (v->u.integer < 0)
			return fail(p, v->line, v->col, "%s must not be negative", where);
		*bytes = v->u.integer;
		if (percent)
			*percent = 0;
		return 0;
	}
	if (v->type != TOML_STRING)
		return type_error(p, ks, v, where);
	rc = get_string(p, v, where, "", &s);
	if (rc)
		return rc;
	if (config_parse_size(s, bytes, percent))
		rc = fail(p, v->line, v->col, "%s: \"%s\" is not %s (binary units: K = 1024; %s)",
			  where, shown(v, show, sizeof(show)), expected(ks, buf, sizeof(buf)),
			  percent ? "a percentage is 0 < p <= 100" : "whole numbers only");
	free(s);
	return rc;
}

static int get_choice(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		      const char *where, int *idx)
{
	char *s = NULL, show[128], list[128], hint[64];
	int rc;

	if (v->type != TOML_STRING)
		return type_error(p, ks, v, where);
	rc = get_string(p, v, where, "", &s);
	if (rc)
		return rc;
	for (int i = 0; ks->choices[i]; i++) {
		if (strcasecmp(s, ks->choices[i]) == 0) {
			*idx = i;
			goto out;
		}
	}
	rc = fail(p, v->line, v->col, "%s must be %s, not \"%s\"%s", where,
		  choice_list(ks->choices, list, sizeof(list)), shown(v, show, sizeof(show)),
		  suggest_word(s, ks->choices, count_words(ks->choices), hint, sizeof(hint)));
out:
	free(s);
	return rc;
}

/* An array of strings (URLs when urls); NULL for an empty array. */
static int get_strings(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		       const char *where, bool urls, char ***out)
{
	char **list = NULL, item_where[WHERE_MAX + 16], show[128];
	size_t n = v->type == TOML_ARRAY ? v->u.array.len : 0;
	int rc = 0;

	if (v->type != TOML_ARRAY)
		return type_error(p, ks, v, where);
	if (n == 0)
		goto out;
	list = calloc(n + 1, sizeof(*list));
	if (!list)
		return nomem(p);
	for (size_t i = 0; i < n; i++) {
		const struct toml_value *item = v->u.array.items[i];

		snprintf(item_where, sizeof(item_where), "%s[%zu]", where, i);
		rc = get_string(p, item, item_where, urls ? "an http(s) URL string" : "a string",
				&list[i]);
		if (rc)
			goto out;
		if (urls && !valid_http_url(list[i])) {
			rc = fail(p, item->line, item->col,
				  "%s must be an http:// or https:// URL, not \"%s\"", item_where,
				  shown(item, show, sizeof(show)));
			goto out;
		}
		if (!urls && !list[i][0]) {
			rc = fail(p, item->line, item->col, "%s is empty", item_where);
			goto out;
		}
	}
	*out = list;
	list = NULL;
out:
	if (list)
		for (size_t i = 0; i < n; i++)
			free(list[i]);
	free(list);
	return rc;
}

static int get_headers(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		       const char *where, struct config_header **out, size_t *n_out)
{
	struct config_header *h = NULL;
	char item_where[WHERE_MAX + 80];
	size_t n = 0;
	int rc = 0;

	if (v->type != TOML_TABLE)
		return type_error(p, ks, v, where);
	if (v->u.table.len == 0)
		return 0;
	h = calloc(v->u.table.len, sizeof(*h));
	if (!h)
		return nomem(p);
	for (; n < v->u.table.len; n++) {
		const struct toml_keyval *kv = &v->u.table.items[n];

		snprintf(item_where, sizeof(item_where), "%s", where);
		add_key(item_where, sizeof(item_where), kv->key);
		if (!valid_header_name(kv->key)) {
			rc = fail(p, kv->line, kv->col, "%s: \"%.60s\" is not a valid header name "
				  "(letters, digits and !#$%%&'*+-.^_`|~ only)", item_where, kv->key);
			goto out;
		}
		h[n].name = strdup(kv->key);
		if (!h[n].name) {
			rc = nomem(p);
			goto out;
		}
		rc = get_string(p, kv->value, item_where, "a string", &h[n].value);
		if (rc) {
			n++;
			goto out;
		}
		log_add_secret(h[n].value);
	}
	*out = h;
	*n_out = n;
	h = NULL;
out:
	if (h)
		for (size_t i = 0; i < n; i++) {
			free(h[i].name);
			free(h[i].value);
		}
	free(h);
	return rc;
}

/* [layout] or [modelfs] layout = { ... }: category -> folder. */
static int add_overrides(struct parser *p, const struct toml_value *t, const char *where)
{
	struct override *grown;
	char item_where[WHERE_MAX + 80], show[128];

	if (t->u.table.len == 0)
		return 0;
	grown = realloc(p->ov, (p->n_ov + t->u.table.len) * sizeof(*p->ov));
	if (!grown)
		return nomem(p);
	p->ov = grown;
	for (size_t i = 0; i < t->u.table.len; i++) {
		const struct toml_keyval *kv = &t->u.table.items[i];
		const struct toml_value *v = kv->value;

		snprintf(item_where, sizeof(item_where), "%s", where);
		add_key(item_where, sizeof(item_where), kv->key);
		if (v->type != TOML_STRING)
			return fail(p, v->line, v->col, "%s must be a folder name string, not %s",
				    item_where, a_type(v->type));
		if (strlen(v->u.str.ptr) != v->u.str.len || !valid_name(v->u.str.ptr))
			return fail(p, v->line, v->col, "%s: \"%s\" is not a folder name "
				    "(one non-empty path component: no '/', not \".\" or \"..\")",
				    item_where, shown(v, show, sizeof(show)));
		for (size_t j = 0; j < p->n_ov; j++) {
			const struct override *o = &p->ov[j];
			char as[80] = "";

			if (!same_category(o->category, kv->key))
				continue;
			if (strcmp(o->category, kv->key) != 0)	/* another name of it */
				snprintf(as, sizeof(as), ", as \"%.60s\"", o->category);
			return fail(p, kv->line, kv->col, "the folder of category \"%.60s\" is set "
				    "twice (also at line %d:%d%s)", kv->key, o->line, o->col, as);
		}
		p->ov[p->n_ov++] = (struct override){ kv->key, v->u.str.ptr, kv->line, kv->col };
	}
	return 0;
}

/* layout = ["forge", "comfyui"]: several layouts at once, each a view
 * under a folder of its name; this parse lays out p->view (the first
 * when NULL). */
static int get_views(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		     const char *where)
{
	const struct toml_value *chosen = NULL;
	int idx;

	if (v->u.array.len < 2)
		return fail(p, v->line, v->col, "%s as an array names two or more layouts, like "
			    "[\"forge\", \"comfyui\"]; for one, write layout = \"forge\"", where);
	p->view_names = calloc(v->u.array.len + 1, sizeof(*p->view_names));
	if (!p->view_names)
		return nomem(p);
	for (size_t i = 0; i < v->u.array.len; i++) {
		const struct toml_value *item = v->u.array.items[i];
		int rc = get_choice(p, ks, item, where, &idx);

		if (rc)
			return rc;
		for (size_t k = 0; k < p->n_view_names; k++)
			if (strcmp(p->view_names[k], layout_names[idx]) == 0)
				return fail(p, item->line, item->col, "%s names %s twice", where,
					    layout_names[idx]);
		p->view_names[p->n_view_names++] = layout_names[idx];
		if (!chosen && (!p->view || strcmp(p->view, layout_names[idx]) == 0))
			chosen = item;
		if (chosen == item)
			p->layout = find_layout(layout_names[idx]);
	}
	return 0;
}

/* Parses one key's value into obj as ks says. */
static int set_value(struct parser *p, const struct key_spec *ks, const struct toml_value *v,
		     const char *where, void *obj)
{
	char buf[160], show[128], *s = NULL;
	int64_t n;
	int idx, rc = 0;

	switch (ks->kind) {
	case K_STRING:
	case K_PATH:
	case K_BASE_URL:
	case K_S3_URL:
	case K_FILENAME:
		rc = get_string(p, v, where, expected(ks, buf, sizeof(buf)), &s);
		if (rc)
			return rc;
		if (ks->kind == K_PATH && s[0] != '/') {
			rc = fail(p, v->line, v->col, "%s must be an absolute path, not \"%s\" "
				  "(for a home folder write \"${HOME}/...\")", where,
				  shown(v, show, sizeof(show)));
		} else if (ks->kind == K_BASE_URL &&
			   (!valid_http_url(s) || strpbrk(s, "?#"))) {
			rc = fail(p, v->line, v->col, "%s must be an http:// or https:// URL like "
				  "\"https://example.com\" (no query), not \"%s\"", where,
				  shown(v, show, sizeof(show)));
		} else if (ks->kind == K_S3_URL &&
			   (strncmp(s, "s3://", 5) != 0 || !s[5] || s[5] == '/' || strpbrk(s, "?#"))) {
			rc = fail(p, v->line, v->col, "%s must be an S3 bucket and prefix like "
				  "\"s3://bucket/prefix\", not \"%s\"", where,
				  shown(v, show, sizeof(show)));
		} else if (ks->kind == K_FILENAME && !valid_name(s)) {
			rc = fail(p, v->line, v->col, "%s: \"%s\" is not a file name (1 to %d bytes, "
				  "no '/', not \".\" or \"..\")", where, shown(v, show, sizeof(show)),
				  NAME_MAX_BYTES);
		}
		if (rc)
			break;
		if (ks->kind == K_BASE_URL) {
			size_t len = strlen(s), min = http_scheme(s) + 1;

			while (len > min && s[len - 1] == '/')
				s[--len] = '\0';
		}
		if (ks->secret)
			log_add_secret(s);
		*FIELD(obj, ks->off, char *) = s;
		s = NULL;
		break;
	case K_SIZE:
		rc = get_size(p, ks, v, where, FIELD(obj, ks->off, int64_t), NULL);
		break;
	case K_SIZE_PCT: {
		int64_t *bytes = FIELD(obj, ks->off, int64_t);

		rc = get_size(p, ks, v, where, bytes, FIELD(obj, ks->off2, double));
		if (!rc && *bytes >= 0 && *bytes < ks->min)
			rc = fail(p, v->line, v->col,
				  "%s must be more than 0 (leave it out for no limit)", where);
		break;
	}
	case K_BLOCK_SIZE:
		rc = get_size(p, ks, v, where, &n, NULL);
		if (!rc && (n < (64 << 10) || n > (256 << 20) || (n & (n - 1))))
			rc = fail(p, v->line, v->col, "%s must be a power of two from 64K to 256M "
				  "(e.g. \"8M\"), not %lld bytes", where, (long long)n);
		if (!rc)
			*FIELD(obj, ks->off, uint32_t) = (uint32_t)n;
		break;
	case K_COUNT:
		if (v->type != TOML_INTEGER)
			return type_error(p, ks, v, where);
		if (v->u.integer < ks->min || v->u.integer > ks->max)
			return fail(p, v->line, v->col, "%s must be from %lld to %lld, not %lld", where,
				    (long long)ks->min, (long long)ks->max, (long long)v->u.integer);
		*FIELD(obj, ks->off, int) = (int)v->u.integer;
		break;
	case K_DURATION:
		if (v->type == TOML_INTEGER) {
			if (v->u.integer < 0 || v->u.integer > INT_MAX)
				return fail(p, v->line, v->col, "%s must be from 0 to %d seconds", where,
					    INT_MAX);
			*FIELD(obj, ks->off, int) = (int)v->u.integer;
			break;
		}
		if (v->type != TOML_STRING)
			return type_error(p, ks, v, where);
		rc = get_string(p, v, where, "", &s);
		if (!rc && config_parse_duration(s, FIELD(obj, ks->off, int)))
			rc = fail(p, v->line, v->col, "%s: \"%s\" is not %s", where,
				  shown(v, show, sizeof(show)), expected(ks, buf, sizeof(buf)));
		break;
	case K_CHOICE:
		rc = get_choice(p, ks, v, where, &idx);
		if (!rc)
			memcpy(FIELD(obj, ks->off, int), &idx, sizeof(int));
		break;
	case K_CHOICE_STR:
		rc = get_choice(p, ks, v, where, &idx);
		if (rc)
			break;
		s = strdup(ks->choices[idx]);
		if (!s)
			return nomem(p);
		*FIELD(obj, ks->off, char *) = s;
		s = NULL;
		break;
	case K_BOOL:
		if (v->type != TOML_BOOL)
			return type_error(p, ks, v, where);
		*FIELD(obj, ks->off, bool) = v->u.boolean;
		break;
	case K_STRINGS:
	case K_URLS:
		rc = get_strings(p, ks, v, where, ks->kind == K_URLS, FIELD(obj, ks->off, char **));
		break;
	case K_ID:
		if (v->type == TOML_INTEGER) {
			if (v->u.integer < 1)
				return fail(p, v->line, v->col, "%s must be a positive number", where);
			if (asprintf(&s, "%lld", (long long)v->u.integer) < 0)
				return nomem(p);
		} else if (v->type == TOML_STRING) {
			rc = get_string(p, v, where, "", &s);
			if (rc)
				break;
			if (!s[0] || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19 ||
			    strspn(s, "0") == strlen(s)) {
				rc = fail(p, v->line, v->col, "%s must be a positive number "
					  "like \"58390\", not \"%s\"", where,
					  shown(v, show, sizeof(show)));
				break;
			}
		} else {
			return type_error(p, ks, v, where);
		}
		*FIELD(obj, ks->off, char *) = s;
		s = NULL;
		break;
	case K_SHA256:
		if (v->type != TOML_STRING)
			return type_error(p, ks, v, where);
		rc = get_string(p, v, where, "", &s);
		if (rc)
			break;
		if (!text_is_hex(s, 64, false)) {
			rc = fail(p, v->line, v->col, "%s must be the file's SHA-256 as 64 hex "
				  "digits, not \"%s\" (%zu characters); leave it out if you don't "
				  "know it", where, shown(v, show, sizeof(show)), strlen(s));
			break;
		}
		for (char *c = s; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		*FIELD(obj, ks->off, char *) = s;
		s = NULL;
		break;
	case K_HEADERS:
		rc = get_headers(p, ks, v, where, FIELD(obj, ks->off, struct config_header *),
				 FIELD(obj, ks->off2, size_t));
		break;
	case K_LAYOUT:
		if (v->type == TOML_TABLE) {
			/* A table alone means: forge, with these folders changed. */
			rc = add_overrides(p, v, where);
			break;
		}
		if (v->type == TOML_ARRAY) {
			rc = get_views(p, ks, v, where);
			break;
		}
		rc = get_choice(p, ks, v, where, &idx);
		if (!rc)
			p->layout = find_layout(layout_names[idx]);
		break;
	}
	free(s);
	return rc;
}

/* Finds key in specs; -1 if it is not there. */
static int find_spec(const struct key_spec *specs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(specs[i].name, key) == 0)
			return (int)i;
	return -1;
}

static int unknown_key(struct parser *p, const struct toml_keyval *kv, const char *in,
		       const struct key_spec *specs, size_t n)
{
	const char *names[32];
	char hint[80], list[400];
	const char *h;
	size_t o = 0;

	for (size_t i = 0; i < n && i < 32; i++)
		names[i] = specs[i].name;
	h = suggest_word(kv->key, names, n < 32 ? n : 32, hint, sizeof(hint));
	if (!*h) {
		o = (size_t)snprintf(list, sizeof(list), " (known keys:");
		for (size_t i = 0; i < n && o < sizeof(list); i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, " %s", names[i]);
		if (o < sizeof(list))
			snprintf(list + o, sizeof(list) - o, ")");
		h = list;
	}
	return fail(p, kv->line, kv->col, "unknown key \"%.60s\" in %s%s", kv->key, in, h);
}

/* ---- [modelfs] -------------------------------------------------------- */

static int parse_modelfs(struct parser *p, const struct toml_value *t)
{
	struct config *cfg = p->cfg;
	char where[WHERE_MAX];
	int rc;

	if (t->type != TOML_TABLE)
		return fail(p, t->line, t->col, "modelfs must be a table ([modelfs]), not %s",
			    a_type(t->type));
	for (size_t i = 0; i < t->u.table.len; i++) {
		const struct toml_keyval *kv = &t->u.table.items[i];
		int k = find_spec(modelfs_keys, N_MODELFS_KEYS, kv->key);

		if (k < 0)
			return unknown_key(p, kv, "[modelfs]", modelfs_keys, N_MODELFS_KEYS);
		snprintf(where, sizeof(where), "modelfs.%s", kv->key);
		rc = set_value(p, &modelfs_keys[k], kv->value, where, cfg);
		if (rc)
			return rc;
	}
	if (cfg->cache_max_size >= 0 && cfg->cache_max_size < (int64_t)cfg->block_size) {
		const struct toml_value *v = toml_table_get(t, "cache_max_size");

		return fail(p, v->line, v->col, "modelfs.cache_max_size (%lld bytes) must hold at least "
			    "one block (block_size = %u bytes)", (long long)cfg->cache_max_size,
			    cfg->block_size);
	}
	return 0;
}

/* Endpoints not in the file: the environment's (HF_ENDPOINT, as the
 * huggingface_hub tools read it), else the public services. */
static int default_endpoints(struct parser *p)
{
	struct config *cfg = p->cfg;
	const char *env = getenv("HF_ENDPOINT");
	char **fields[] = { &cfg->hf_endpoint, &cfg->civitai_endpoint, &cfg->gdrive_endpoint };
	const char *values[] = {
		env && *env ? env : "https://huggingface.co",
		"https://civitai.com",
		"https://drive.google.com",
	};

	for (size_t i = 0; i < 3; i++) {
		size_t len;

		if (*fields[i])
			continue;
		if (!valid_http_url(values[i]) || strpbrk(values[i], "?#"))
			return fail(p, 0, 0, "HF_ENDPOINT in the environment is not an http(s) "
				    "URL like \"https://huggingface.co\"; fix it or set hf_endpoint "
				    "in [modelfs]");
		*fields[i] = strdup(values[i]);
		if (!*fields[i])
			return nomem(p);
		len = strlen(*fields[i]);
		while (len > http_scheme(*fields[i]) + 1 && (*fields[i])[len - 1] == '/')
			(*fields[i])[--len] = '\0';
	}
	return 0;
}

/* ---- entries ---------------------------------------------------------- */

/* The folder a category goes to: [layout] first (under any of the
 * category's names), then the layout. */
static const char *category_folder(const struct parser *p, const char *category)
{
	for (size_t i = 0; i < p->n_ov; i++)
		if (same_category(p->ov[i].category, category))
			return p->ov[i].folder;
	return layout_folder(p->layout, category);
}

/* "huggingface", "url or s3", ... */
static const char *source_list(unsigned mask, char *buf, size_t n)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int s = 0; source_names[s] && o < n; s++)
		if (mask & (1u << s))
			o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? " or " : "", source_names[s]);
	return buf;
}

/* Which source an entry is: as written, or what its keys imply. */
static int entry_source(struct parser *p, const char *prefix, const struct toml_keyval **seen,
			struct config_entry *e, int line, int col)
{
	if (seen[E_SOURCE]) {
		if (e->source == CONFIG_SOURCE_URL && e->url && strncasecmp(e->url, "s3://", 5) == 0)
			return fail(p, seen[E_URL]->value->line, seen[E_URL]->value->col,
				    "%s: an s3:// URL needs source = \"s3\" (or leave source out)",
				    prefix);
		return 0;
	}
	if (e->url)
		e->source = strncasecmp(e->url, "s3://", 5) == 0 ? CONFIG_SOURCE_S3 : CONFIG_SOURCE_URL;
	else if (seen[E_REPO])
		e->source = CONFIG_SOURCE_HUGGINGFACE;
	else if (seen[E_MODEL_ID] || seen[E_VERSION_ID])
		e->source = CONFIG_SOURCE_CIVITAI;
	else if (seen[E_PATH])
		e->source = CONFIG_SOURCE_LOCAL;
	else
		return fail(p, line, col, "entry %s has no source: give it url = \"https://...\", or "
			    "source = \"huggingface\" with repo, or source = \"civitai\" with model_id, "
			    "or source = \"local\" with path", prefix);
	return 0;
}

/* A huggingface entry: a repo, then either one file or the whole repo
 * as a folder, and keys that make sense only for the other one. */
static int check_hf(struct parser *p, const char *prefix, const struct toml_keyval **seen,
		    const struct config_entry *e, int line, int col)
{
	static const enum entry_key folder_only[] = { E_INCLUDE, E_EXCLUDE };
	static const enum entry_key file_only[] = { E_FILENAME, E_SHA256, E_SIZE };
	const struct toml_value *v;
	char show[128];

	if (!e->repo)
		return fail(p, line, col,
			    "entry %s (source huggingface) needs repo = \"owner/name\"", prefix);
	v = seen[E_REPO]->value;
	if (!config_valid_repo(e->repo))
		return fail(p, v->line, v->col, "%s.repo must be \"owner/name\", like "
			    "\"stabilityai/stable-diffusion-xl-base-1.0\", not \"%s\"",
			    prefix, shown(v, show, sizeof(show)));
	if (e->file && !config_valid_repo_path(e->file)) {
		v = seen[E_FILE]->value;
		return fail(p, v->line, v->col, "%s.file must be a path inside the repo like "
			    "\"unet/model.safetensors\" (no leading '/', no \".\" or \"..\"), "
			    "not \"%s\"", prefix, shown(v, show, sizeof(show)));
	}
	if (e->revision && !e->revision[0]) {
		v = seen[E_REVISION]->value;
		return fail(p, v->line, v->col,
			    "%s.revision is empty (leave it out for \"main\")", prefix);
	}
	for (size_t i = 0; e->file && i < 2; i++) {
		const struct toml_keyval *kv = seen[folder_only[i]];

		if (kv)
			return fail(p, kv->line, kv->col, "%s.%s picks files of a whole repo, "
				    "but this entry names one file (file = ...); remove one of "
				    "the two", prefix, kv->key);
	}
	for (size_t i = 0; !e->file && i < 3; i++) {
		const struct toml_keyval *kv = seen[file_only[i]];

		if (kv)
			return fail(p, kv->line, kv->col, "%s.%s is about one file, but this "
				    "entry has no file = ... and mounts the whole repo as a "
				    "folder; add file or remove %s", prefix, kv->key, kv->key);
	}
	return 0;
}

/* What each source needs, and keys that make no sense together. */
static int entry_checks(struct parser *p, const char *prefix, const struct toml_keyval **seen,
			struct config_entry *e, int line, int col)
{
	const struct toml_value *v = seen[E_URL] ? seen[E_URL]->value : NULL;
	const struct toml_keyval *auth = seen[E_AUTH_HEADER];
	const char *key;
	char show[128];
	int rc = 0;

	switch (e->source) {
	case CONFIG_SOURCE_URL:
		if (!e->url)
			return fail(p, line, col,
				    "entry %s (source url) needs url = \"https://...\"", prefix);
		if (!valid_http_url(e->url))
			return fail(p, v->line, v->col,
				    "%s%s must be an http:// or https:// URL, not \"%s\"", prefix,
				    seen[E_URL]->key[0] ? ".url" : "", shown(v, show, sizeof(show)));
		break;
	case CONFIG_SOURCE_S3:
		if (!e->url)
			return fail(p, line, col,
				    "entry %s (source s3) needs url = \"s3://bucket/key\"", prefix);
		key = strncasecmp(e->url, "s3://", 5) == 0 ? strchr(e->url + 5, '/') : NULL;
		if (!key || key == e->url + 5 || !key[1])
			return fail(p, v->line, v->col, "%s%s must be \"s3://bucket/key\" for an s3 "
				    "entry, not \"%s\"", prefix, seen[E_URL]->key[0] ? ".url" : "",
				    shown(v, show, sizeof(show)));
		break;
	case CONFIG_SOURCE_HUGGINGFACE:
		rc = check_hf(p, prefix, seen, e, line, col);
		break;
	case CONFIG_SOURCE_CIVITAI:
		if (!e->model_id && !e->version_id)
			return fail(p, line, col, "entry %s (source civitai) needs model_id or "
				    "version_id (the numbers in "
				    "civitai.com/models/MODEL?modelVersionId=VERSION)", prefix);
		break;
	case CONFIG_SOURCE_LOCAL:
		if (!e->path || !e->path[1] || e->path[strlen(e->path) - 1] == '/' ||
		    strcmp(strrchr(e->path, '/'), "/.") == 0 || strcmp(strrchr(e->path, '/'), "/..") == 0)
			return fail(p, line, col, "entry %s (source local) needs path = "
				    "\"/path/to/model.safetensors\", a file on this machine", prefix);
		break;
	}
	if (rc || !e->auth_header)
		return rc;
	for (size_t i = 0; i < e->n_headers; i++)
		if (strcasecmp(e->headers[i].name, "Authorization") == 0)
			return fail(p, auth->line, auth->col, "%s sets Authorization twice, in "
				    "auth_header and in headers; keep one", prefix);
	if (!e->auth_header[0]) {
		/* "${TOKEN:-}": the token is optional and absent. */
		free(e->auth_header);
		e->auth_header = NULL;
	}
	return 0;
}

/* The entry's folder and file name in the mount. */
static int entry_place(struct parser *p, struct config_entry *e)
{
	const char *folder = category_folder(p, e->category);
	int rc = 0;

	if (e->source == CONFIG_SOURCE_HUGGINGFACE && !e->file) {
		/* A repo is a folder named after the entry. */
		if (folder[0])
			rc = asprintf(&e->dir, "%s/%s", folder, e->name) < 0 ? -ENOMEM : 0;
		else
			e->dir = strdup(e->name);
		return rc || !e->dir ? nomem(p) : 0;
	}
	e->dir = strdup(folder);
	if (!e->dir)
		return nomem(p);
	if (e->filename)
		return 0;
	switch (e->source) {
	case CONFIG_SOURCE_HUGGINGFACE: {
		const char *base = strrchr(e->file, '/');

		e->filename = strdup(base ? base + 1 : e->file);
		if (!e->filename)
			return nomem(p);
		break;
	}
	case CONFIG_SOURCE_URL:
		if (is_drive_url(e->url))
			break;		/* named by Content-Disposition */
		/* fall through */
	case CONFIG_SOURCE_S3:
		if (url_file_name(e->url, &e->filename))
			return nomem(p);
		break;
	case CONFIG_SOURCE_CIVITAI:
		break;		/* named by the API */
	case CONFIG_SOURCE_LOCAL:
		e->filename = strdup(strrchr(e->path, '/') + 1);
		if (!e->filename)
			return nomem(p);
		break;
	}
	return 0;
}

/* ---- links people paste ---------------------------------------------- */

/* The authority ("host[:port]") of an http(s) URL into out, lowercase;
 * false when url is not one. */
static bool url_authority(const char *url, char *out, size_t outlen)
{
	const char *s = strstr(url, "://");
	size_t n;

	if (!s || (strncasecmp(url, "http", 4) != 0))
		return false;
	s += 3;
	n = strcspn(s, "/?#");
	if (n == 0 || n >= outlen)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[n] = '\0';
	return true;
}

/* True when url is on the service at endpoint, or on one of its public
 * hosts (a pasted link keeps its public form whatever endpoint is set). */
static bool on_service(const char *url, const char *endpoint, const char *const *hosts)
{
	char a[256], b[256];

	if (!url_authority(url, a, sizeof(a)))
		return false;
	if (endpoint && url_authority(endpoint, b, sizeof(b)) && strcmp(a, b) == 0)
		return true;
	for (size_t i = 0; hosts[i]; i++)
		if (strcmp(a, hosts[i]) == 0)
			return true;
	return false;
}

/* Percent-decode [s, s+len) into a new string; NULL on ENOMEM. */
static char *url_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && text_hex_digit(s[i + 1]) >= 0 && text_hex_digit(s[i + 2]) >= 0) {
			out[o++] = (char)(text_hex_digit(s[i + 1]) * 16 + text_hex_digit(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

/* The value of query parameter name in url, decoded; NULL if absent. */
static char *query_param(const char *url, const char *name)
{
	const char *q = strchr(url, '?');
	size_t nlen = strlen(name);

	while (q) {
		q++;
		if (strncmp(q, name, nlen) == 0 && q[nlen] == '=')
			return url_decode(q + nlen + 1, strcspn(q + nlen + 1, "&#"));
		q = strchr(q, '&');
	}
	return NULL;
}

/* A Hugging Face file link: .../[datasets/|spaces/]OWNER/REPO/(resolve|blob)/REV/PATH. */
static int hf_link(struct config_entry *e, const char *path, bool *matched)
{
	const char *seg[5], *p = path + 1;
	const char *kind = "model";
	size_t n = 0;

	if (strncmp(p, "datasets/", 9) == 0 || strncmp(p, "spaces/", 7) == 0) {
		kind = p[0] == 'd' ? "dataset" : "space";
		p += p[0] == 'd' ? 9 : 7;
	}
	/* owner, repo, "resolve"|"blob", revision, then the rest is the file. */
	for (seg[n++] = p; n < 5 && (p = strchr(p, '/')) != NULL; seg[n++] = ++p)
		;
	if (n < 5 || (strncmp(seg[2], "resolve/", 8) != 0 && strncmp(seg[2], "blob/", 5) != 0) ||
	    seg[4][0] == '\0')
		return 0;
	*matched = true;
	e->repo = strndup(seg[0], (size_t)(seg[2] - 1 - seg[0]));
	e->revision = url_decode(seg[3], (size_t)(seg[4] - 1 - seg[3]));
	e->file = url_decode(seg[4], strcspn(seg[4], "?#"));
	e->repo_type = strdup(kind);
	return e->repo && e->revision && e->file && e->repo_type ? 0 : -ENOMEM;
}

/* A CivitAI link: /models/ID[?modelVersionId=V] or /api/download/models/V[?fileId=F]. */
static int civitai_link(struct config_entry *e, const char *path, bool *matched)
{
	const char *digits;

	if (strncmp(path, "/api/download/models/", 21) == 0) {
		digits = path + 21;
		if (!isdigit((unsigned char)digits[0]))
			return 0;
		*matched = true;
		e->version_id = strndup(digits, strspn(digits, "0123456789"));
		e->file_id = query_param(path, "fileId");
		return e->version_id ? 0 : -ENOMEM;
	}
	if (strncmp(path, "/models/", 8) != 0 || !isdigit((unsigned char)path[8]))
		return 0;
	*matched = true;
	e->model_id = strndup(path + 8, strspn(path + 8, "0123456789"));
	e->version_id = query_param(path, "modelVersionId");
	return e->model_id ? 0 : -ENOMEM;
}

/* A bare URL that is a Hugging Face or CivitAI link becomes an entry of
 * that source, so it gets the same hashes, token rules and errors as
 * the long form. seen[] is updated so messages point at the link. */
static int recognise_link(struct parser *p, const struct toml_keyval **seen, struct config_entry *e)
{
	static const char *const hf_hosts[] = { "huggingface.co", "www.huggingface.co", "hf.co", NULL };
	static const char *const civitai_hosts[] = { "civitai.com", "www.civitai.com", NULL };
	const char *path;
	bool matched = false;
	int rc = 0;

	if (e->source != CONFIG_SOURCE_URL || seen[E_SOURCE] || !e->url)
		return 0;
	path = strstr(e->url, "://");
	path = path ? path + 3 + strcspn(path + 3, "/?#") : NULL;
	if (!path || *path != '/')
		return 0;
	if (on_service(e->url, p->cfg->hf_endpoint, hf_hosts)) {
		rc = hf_link(e, path, &matched);
		if (matched)
			e->source = CONFIG_SOURCE_HUGGINGFACE;
		if (matched)
			seen[E_REPO] = seen[E_FILE] = seen[E_REVISION] = seen[E_URL];
	} else if (on_service(e->url, p->cfg->civitai_endpoint, civitai_hosts)) {
		rc = civitai_link(e, path, &matched);
		if (matched)
			e->source = CONFIG_SOURCE_CIVITAI;
		if (matched)
			seen[E_MODEL_ID] = seen[E_VERSION_ID] = seen[E_URL];
	}
	if (rc)
		return nomem(p);
	if (matched) {
		/* The link's pieces are the entry now; its URL is not. */
		free(e->url);
		e->url = NULL;
		seen[E_URL] = NULL;
	}
	return 0;
}

/* One entry of [models.category]: its keys, then its source (written or
 * implied), what that source needs, and its place in the mount. */
/* "models.CATEGORY.NAME" for messages into prefix; an entry name that is
 * no folder name is refused. */
static int entry_where(struct parser *p, const char *category, const struct toml_keyval *kv,
		       char *prefix, size_t len)
{
	snprintf(prefix, len, "models");
	add_key(prefix, len, category);
	add_key(prefix, len, kv->key);
	if (!valid_name(kv->key))
		return fail(p, kv->line, kv->col, "entry name %s must be 1 to %d bytes, without '/', "
			    "and not \".\" or \"..\"", prefix, NAME_MAX_BYTES);
	return 0;
}

/* What every entry starts with: its category and name (the key), the
 * config's defaults, where it is written. -ENOMEM. */
static int entry_init(struct parser *p, const char *category, const struct toml_keyval *kv,
		      struct config_entry *e)
{
	e->size = -1;
	e->verify = p->cfg->verify;
	e->line = kv->line;
	e->col = kv->col;
	e->category = strdup(category);
	e->name = strdup(kv->key);
	return e->category && e->name ? 0 : -ENOMEM;
}

static int parse_entry(struct parser *p, const char *category, const struct toml_keyval *kv,
		       struct config_entry *e)
{
	const struct toml_keyval *seen[N_ENTRY_KEYS] = { 0 };
	struct toml_keyval bare;
	char prefix[WHERE_MAX - 40], where[WHERE_MAX];
	int rc;

	if (entry_init(p, category, kv, e) || asprintf(&e->id, "%s/%s", category, kv->key) < 0) {
		e->id = NULL;
		return nomem(p);
	}
	rc = entry_where(p, category, kv, prefix, sizeof(prefix));
	if (rc)
		return rc;
	if (kv->value->type == TOML_STRING) {
		/* "name" = "https://...": a URL entry. Its url has no key
		 * of its own (""), so messages name the entry. */
		bare = (struct toml_keyval){ .key = (char *)"", .line = kv->value->line,
					     .col = kv->value->col, .value = kv->value };
		seen[E_URL] = &bare;
		rc = set_value(p, &entry_keys[E_URL], kv->value, prefix, e);
		if (rc)
			return rc;
	} else if (kv->value->type == TOML_TABLE) {
		const struct toml_value *t = kv->value;
		char in[WHERE_MAX];

		for (size_t i = 0; i < t->u.table.len; i++) {
			const struct toml_keyval *item = &t->u.table.items[i];
			int k = find_spec(entry_keys, N_ENTRY_KEYS, item->key);

			if (k < 0) {
				snprintf(in, sizeof(in), "entry %s", prefix);
				return unknown_key(p, item, in, entry_keys, N_ENTRY_KEYS);
			}
			seen[k] = item;
			snprintf(where, sizeof(where), "%s.%s", prefix, item->key);
			rc = set_value(p, &entry_keys[k], item->value, where, e);
			if (rc)
				return rc;
		}
	} else {
		return fail(p, kv->value->line, kv->value->col,
			    "entry %s must be a URL string or a table like { source = \"huggingface\", "
			    "repo = \"owner/name\", file = \"...\" }, not %s", prefix,
			    a_type(kv->value->type));
	}

	rc = entry_source(p, prefix, seen, e, kv->line, kv->col);
	if (rc == 0)
		rc = recognise_link(p, seen, e);
	if (rc)
		return rc;
	for (int k = 0; k < N_ENTRY_KEYS; k++) {
		char list[64];

		if (seen[k] && !(entry_keys[k].sources & (1u << e->source)))
			return fail(p, seen[k]->line, seen[k]->col,
				    "key \"%s\" in entry %s is for %s entries; this is a%s %s entry",
				    entry_keys[k].name, prefix,
				    source_list(entry_keys[k].sources, list, sizeof(list)),
				    e->source == CONFIG_SOURCE_S3 ? "n" : "",
				    config_source_name(e->source));
	}
	rc = entry_checks(p, prefix, seen, e, kv->line, kv->col);
	if (rc)
		return rc;
	if (e->url && seen[E_URL]) {
		/* What status and xattrs show: an expanded ${VAR} may be a secret. */
		const struct toml_value *v = seen[E_URL]->value;

		e->url_written = strndup(v->u.str.ptr, v->u.str.len);
		if (!e->url_written)
			return nomem(p);
	}
	if (e->source == CONFIG_SOURCE_HUGGINGFACE) {
		if (!e->revision)
			e->revision = strdup("main");
		if (!e->repo_type)
			e->repo_type = strdup("model");
		if (!e->revision || !e->repo_type)
			return nomem(p);
	}
	return entry_place(p, e);
}

/* A category that is no known name but nearly one ("chekpoints") would
 * be a folder no webui reads, and its models would silently go missing:
 * refused, unless [layout] gives it a folder, which says it is meant.
 * Any other name is a folder of its own ([models.ipadapter]). */
static int check_category(struct parser *p, const struct toml_keyval *cat, const char *where)
{
	const char *names[N_CATEGORIES * N_NAMES];
	char hint[96], key[80] = "";
	size_t n = 0;

	if (find_category(cat->key))
		return 0;
	for (size_t i = 0; i < p->n_ov; i++)
		if (strcmp(p->ov[i].category, cat->key) == 0)
			return 0;
	for (size_t i = 0; i < N_CATEGORIES; i++)
		for (size_t k = 0; k < N_NAMES && categories[i].names[k]; k++)
			names[n++] = categories[i].names[k];
	if (!suggest_word(cat->key, names, n, hint, sizeof(hint))[0])
		return 0;
	add_key(key, sizeof(key), cat->key);
	return fail(p, cat->line, cat->col, "unknown category %s%s: no webui reads a folder of "
		    "that name; to have one anyway, add to [layout]: %s = \"%.60s\"", where, hint,
		    key, cat->key);
}

/* ---- manifest entries ------------------------------------------------- */

/* { source = "manifest", ... }: the one entry form whose source is no
 * source of its own (its artifacts' are). */
static bool is_manifest_entry(const struct toml_value *v)
{
	const struct toml_value *source = toml_table_get(v, "source");

	return source && source->type == TOML_STRING && strcmp(source->u.str.ptr, "manifest") == 0;
}

/* The manifest's file: as written when absolute, else from the config
 * file's folder (the current one for a config that is no file). */
static int manifest_file(struct parser *p, const char *written, char **out)
{
	const char *slash = strrchr(p->name, '/');

	if (written[0] == '/' || !slash || strstr(p->name, "://"))
		*out = strdup(written);
	else if (asprintf(out, "%.*s/%s", (int)(slash - p->name), p->name, written) < 0)
		*out = NULL;
	return *out ? 0 : nomem(p);
}

/* One artifact as an ordinary entry of its provider's source. */
static int artifact_entry(struct parser *p, const char *category, const struct toml_keyval *kv,
			  const char *file, const struct manifest *m,
			  const struct manifest_artifact *a, struct config_entry *e)
{
	const char *folder = category_folder(p, category), *base = strrchr(a->path, '/');
	int dirlen = base ? (int)(base - a->path) : 0;

	if (entry_init(p, category, kv, e))
		return nomem(p);
	e->sha256 = strdup(a->sha256);
	e->manifest = strdup(file);
	e->filename = strdup(base ? base + 1 : a->path);
	if (asprintf(&e->id, "%s/%s/%s", category, kv->key, a->path) < 0)
		e->id = NULL;
	if (asprintf(&e->dir, "%s%s%s%s%.*s", folder, folder[0] ? "/" : "", kv->key,
		     dirlen ? "/" : "", dirlen, a->path) < 0)
		e->dir = NULL;
	if ((m->model_id && !(e->manifest_model = strdup(m->model_id))) ||
	    (m->version && !(e->manifest_version = strdup(m->version))))
		return nomem(p);
	switch (m->provider) {
	case MANIFEST_HUGGINGFACE:
		e->source = CONFIG_SOURCE_HUGGINGFACE;
		e->repo = strdup(m->repo_id);
		e->file = strdup(a->path);
		e->revision = strdup(m->revision ? m->revision : "main");
		e->repo_type = strdup(m->repo_type ? m->repo_type : "model");
		if (!e->repo || !e->file || !e->revision || !e->repo_type)
			return nomem(p);
		break;
	case MANIFEST_CIVITAI:
		/* The version's file of this name (source_civitai.c). */
		e->source = CONFIG_SOURCE_CIVITAI;
		e->version_id = strdup(m->civitai_version_id);
		if (!e->version_id || (m->civitai_model_id &&
				       !(e->model_id = strdup(m->civitai_model_id))))
			return nomem(p);
		break;
	case MANIFEST_URL: {
		/* ${VAR}s expand as in the config (a manifest holds no secret). */
		struct toml_value v = { .type = TOML_STRING, .line = kv->line, .col = kv->col,
					.u.str = { .ptr = a->url, .len = strlen(a->url) } };
		char where[WHERE_MAX];
		int rc;

		snprintf(where, sizeof(where), "the url of %s in %s", a->path, file);
		rc = get_string(p, &v, where, "a URL", &e->url);
		if (rc)
			return rc;
		if (!valid_http_url(e->url))
			return fail(p, kv->line, kv->col, "%s is no http(s) URL once expanded", where);
		e->source = CONFIG_SOURCE_URL;
		e->url_written = strdup(a->url);
		if (!e->url_written)
			return nomem(p);
		break;
	}
	}
	if (!e->sha256 || !e->manifest || !e->filename || !e->id || !e->dir)
		return nomem(p);
	return 0;
}

static int grow_entries(struct parser *p, size_t *cap, size_t more)
{
	struct config *cfg = p->cfg;
	struct config_entry *grown;
	size_t want = cfg->n_entries + more;

	if (want <= *cap)
		return 0;
	want = want > 2 * *cap ? want : 2 * *cap;
	grown = realloc(cfg->entries, want * sizeof(*grown));
	if (!grown)
		return nomem(p);
	memset(grown + *cap, 0, (want - *cap) * sizeof(*grown));
	cfg->entries = grown;
	*cap = want;
	return 0;
}

/* { source = "manifest", path = "x.yaml" }: read the manifest and add
 * an entry per artifact. */
static int parse_manifest_entry(struct parser *p, const char *category,
				const struct toml_keyval *kv, size_t *cap)
{
	const struct toml_value *t = kv->value, *path = NULL;
	struct manifest_error merr;
	struct manifest *m = NULL;
	char prefix[WHERE_MAX - 40], *file = NULL;
	int rc;

	rc = entry_where(p, category, kv, prefix, sizeof(prefix));
	if (rc)
		return rc;
	for (size_t i = 0; i < t->u.table.len; i++) {
		const struct toml_keyval *item = &t->u.table.items[i];

		if (strcmp(item->key, "path") == 0)
			path = item->value;
		else if (strcmp(item->key, "source") != 0)
			return fail(p, item->line, item->col, "entry %s: a manifest entry takes "
				    "source and path only, not %s (the manifest says the rest)",
				    prefix, item->key);
	}
	if (!path || path->type != TOML_STRING || !path->u.str.ptr[0])
		return fail(p, path ? path->line : kv->line, path ? path->col : kv->col,
			    "entry %s needs path = \"model.yaml\": the manifest file, from the "
			    "config's folder", prefix);
	rc = manifest_file(p, path->u.str.ptr, &file);
	if (rc == 0 && manifest_load(file, &m, &merr) != 0)
		rc = fail(p, path->line, path->col, "%s.path: %s", prefix, merr.msg);
	if (rc == 0)
		rc = grow_entries(p, cap, m->n_artifacts);
	for (size_t i = 0; rc == 0 && i < m->n_artifacts; i++)
		rc = artifact_entry(p, category, kv, file, m, &m->artifacts[i],
				    &p->cfg->entries[p->cfg->n_entries++]);
	manifest_free(m);
	free(file);
	return rc;
}

/* ---- catalog entries ---------------------------------------------------- */

static int catalog_loaded(struct parser *p, const struct toml_value *at)
{
	struct model_catalog_error cerr;
	char path[PATH_MAX];

	if (p->catalog)
		return 0;
	if (model_catalog_load(model_catalog_path(path, sizeof(path)), &p->catalog, &cerr) != 0)
		return fail(p, at->line, at->col, "the model catalog cannot be read: %s", cerr.msg);
	return 0;
}

/* { catalog = "NAME" [, pin = B] [, prefetch = B] [, filename = "F"] }: the catalog's pinned
 * Hugging Face file, in the category of the table it is written under. */
static int parse_catalog_entry(struct parser *p, const char *category,
			       const struct toml_keyval *kv, struct config_entry *e)
{
	const struct toml_value *name = NULL;
	const struct catalog_model *m;
	char prefix[WHERE_MAX - 40], hint[96];
	const char *h;
	int rc;

	rc = entry_where(p, category, kv, prefix, sizeof(prefix));
	if (rc)
		return rc;
	if (entry_init(p, category, kv, e) || asprintf(&e->id, "%s/%s", category, kv->key) < 0) {
		e->id = NULL;
		return nomem(p);
	}
	for (size_t i = 0; i < kv->value->u.table.len; i++) {
		const struct toml_keyval *item = &kv->value->u.table.items[i];
		bool *flag = !strcmp(item->key, "pin") ? &e->pin
			   : !strcmp(item->key, "prefetch") ? &e->prefetch : NULL;

		if (strcmp(item->key, "catalog") == 0 && item->value->type != TOML_STRING)
			return fail(p, item->value->line, item->value->col, "%s.catalog must be a "
				    "model's name, a string like \"sdxl-base\"", prefix);
		if (strcmp(item->key, "catalog") == 0) {
			name = item->value;
		} else if (flag && item->value->type == TOML_BOOL) {
			*flag = item->value->u.boolean;
		} else if (strcmp(item->key, "filename") == 0 && item->value->type == TOML_STRING &&
			   valid_name(item->value->u.str.ptr) &&
			   strlen(item->value->u.str.ptr) == item->value->u.str.len) {
			free(e->filename);
			e->filename = strdup(item->value->u.str.ptr);
			if (!e->filename)
				return nomem(p);
		} else {
			return fail(p, item->line, item->col, "entry %s: a catalog entry takes catalog "
				    "= \"NAME\", pin and prefetch (true or false) and filename (a file "
				    "name); not this %s", prefix, item->key);
		}
	}
	rc = catalog_loaded(p, name);
	if (rc)
		return rc;
	m = model_catalog_find(p->catalog, name->u.str.ptr);
	if (!m) {
		const char **names = calloc(p->catalog->n + 1, sizeof(*names));

		if (!names)
			return nomem(p);
		for (size_t i = 0; i < p->catalog->n; i++)
			names[i] = p->catalog->models[i].name;
		h = suggest_word(name->u.str.ptr, names, p->catalog->n, hint, sizeof(hint));
		free(names);
		return fail(p, name->line, name->col, "%s.catalog: no model \"%.60s\" in the "
			    "catalog%s; `modelfs catalog` lists them", prefix, name->u.str.ptr, h);
	}
	e->source = CONFIG_SOURCE_HUGGINGFACE;
	e->repo = strdup(m->repo);
	e->file = strdup(m->file);
	e->revision = strdup(m->revision);
	e->repo_type = strdup("model");
	e->gated = m->gated;
	e->size = m->size;
	if (!e->repo || !e->file || !e->revision || !e->repo_type ||
	    (m->sha256 && !(e->sha256 = strdup(m->sha256))))
		return nomem(p);
	return entry_place(p, e);
}

static int parse_models(struct parser *p, const struct toml_value *models)
{
	struct config *cfg = p->cfg;
	size_t cap = 0;
	int rc;

	if (models->type != TOML_TABLE)
		return fail(p, models->line, models->col, "models must be a table of categories "
			    "([models.checkpoints], [models.lora], ...), not %s", a_type(models->type));
	for (size_t i = 0; i < models->u.table.len; i++) {
		const struct toml_keyval *cat = &models->u.table.items[i];
		char name[WHERE_MAX];

		snprintf(name, sizeof(name), "models");
		add_key(name, sizeof(name), cat->key);
		if (cat->value->type != TOML_TABLE)
			return fail(p, cat->line, cat->col, "%s must be a category table of entries; "
				    "put entries under a category, e.g. [models.checkpoints] "
				    "then \"%.60s\" = ...", name, cat->key);
		if (!valid_name(cat->key))
			return fail(p, cat->line, cat->col, "category %s must be usable as a "
				    "folder name: 1 to %d bytes, no '/', not \".\" or \"..\"", name,
				    NAME_MAX_BYTES);
		rc = check_category(p, cat, name);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < models->u.table.len; i++) {
		const struct toml_keyval *cat = &models->u.table.items[i];

		for (size_t j = 0; j < cat->value->u.table.len; j++) {
			const struct toml_keyval *kv = &cat->value->u.table.items[j];

			if (is_manifest_entry(kv->value)) {
				rc = parse_manifest_entry(p, cat->key, kv, &cap);
				if (rc)
					return rc;
				continue;
			}
			rc = grow_entries(p, &cap, 1);
			/* Counted first so config_free() frees a half-made entry. */
			if (rc == 0 && toml_table_get(kv->value, "catalog"))
				rc = parse_catalog_entry(p, cat->key, kv,
							 &cfg->entries[cfg->n_entries++]);
			else if (rc == 0)
				rc = parse_entry(p, cat->key, kv, &cfg->entries[cfg->n_entries++]);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- the mount's folders and paths ------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cfg->dirs: the layout's folders, [layout]'s folders and every folder
 * an entry uses (a repo folder and its parent), sorted, so parents come
 * before children; the root ("") is not listed. */
static int build_dirs(struct parser *p)
{
	struct config *cfg = p->cfg;
	const char **all;
	size_t n = 0, max = p->n_ov + 2 * cfg->n_entries, out = 0;
	int rc = 0;

	all = calloc(max + N_CATEGORIES + 1, sizeof(*all));
	if (!all)
		return nomem(p);
	for (size_t i = 0; i < N_CATEGORIES; i++)
		if (categories[i].shown & (1u << p->layout->col))
			all[n++] = category_folder(p, categories[i].names[0]);
	for (size_t i = 0; i < p->n_ov; i++)
		all[n++] = p->ov[i].folder;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		all[n++] = category_folder(p, cfg->entries[i].category);
		all[n++] = cfg->entries[i].dir;
	}
	qsort(all, n, sizeof(*all), cmp_str);
	cfg->dirs = calloc(n + 1, sizeof(*cfg->dirs));
	if (!cfg->dirs) {
		rc = nomem(p);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!all[i][0] || (out > 0 && strcmp(all[i], cfg->dirs[out - 1]) == 0))
			continue;
		cfg->dirs[out] = strdup(all[i]);
		if (!cfg->dirs[out]) {
			rc = nomem(p);
			goto out;
		}
		out++;
	}
out:
	free(all);
	return rc;
}

/* The entry's path in the mount: dir/filename for a file, dir for a
 * repo folder, NULL while the name is unknown. 0 or -ENOMEM. */
static int entry_path(const struct config_entry *e, char **out)
{
	*out = NULL;
	if (e->source == CONFIG_SOURCE_HUGGINGFACE && !e->file)
		*out = strdup(e->dir);
	else if (!e->filename)
		return 0;
	else if (!e->dir[0])
		*out = strdup(e->filename);
	else if (asprintf(out, "%s/%s", e->dir, e->filename) < 0)
		*out = NULL;
	return *out ? 0 : -ENOMEM;
}

/* Two entries on one path would hide one of them; a file where a folder
 * is shown would hide the folder. */
static int check_paths(struct parser *p)
{
	struct config *cfg = p->cfg;
	char **paths;
	int rc = 0;

	if (cfg->n_entries == 0)
		return 0;
	paths = calloc(cfg->n_entries, sizeof(*paths));
	if (!paths)
		return nomem(p);
	for (size_t i = 0; i < cfg->n_entries && !rc; i++) {
		const struct config_entry *e = &cfg->entries[i];
		char a[WHERE_MAX], b[WHERE_MAX];

		if (entry_path(e, &paths[i])) {
			rc = nomem(p);
			break;
		}
		if (!paths[i])
			continue;
		snprintf(a, sizeof(a), "models");
		add_key(a, sizeof(a), e->category);
		add_key(a, sizeof(a), e->name);
		for (size_t j = 0; j < i && !rc; j++) {
			const struct config_entry *o = &cfg->entries[j];

			if (!paths[j] || strcmp(paths[i], paths[j]) != 0)
				continue;
			snprintf(b, sizeof(b), "models");
			add_key(b, sizeof(b), o->category);
			add_key(b, sizeof(b), o->name);
			rc = fail(p, e->line, e->col, "entries %s and %s (line %d:%d) would both be "
				  "\"%s\" in the mount; give one of them another filename", a, b,
				  o->line, o->col, paths[i]);
		}
		if (rc || (e->source == CONFIG_SOURCE_HUGGINGFACE && !e->file))
			continue;
		for (char **d = cfg->dirs; *d && !rc; d++)
			if (strcmp(*d, paths[i]) == 0)
				rc = fail(p, e->line, e->col, "entry %s would be the file \"%s\", "
					  "which is a folder of this layout; give it another "
					  "filename", a, paths[i]);
	}
	for (size_t i = 0; i < cfg->n_entries; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

/* One view of several (get_views()): every folder and entry under a
 * folder of the layout's name, which is itself a folder of the mount. */
static int put_under_view(struct parser *p)
{
	struct config *cfg = p->cfg;
	const char *view = p->layout->name;
	size_t n = 0;
	char **dirs;

	cfg->view = strdup(view);
	if (!cfg->view)
		return nomem(p);
	for (size_t i = 0; i < cfg->n_entries; i++) {
		struct config_entry *e = &cfg->entries[i];
		char *dir;

		if (asprintf(&dir, "%s%s%s", view, e->dir[0] ? "/" : "", e->dir) < 0)
			return nomem(p);
		free(e->dir);
		e->dir = dir;
	}
	while (cfg->dirs && cfg->dirs[n])
		n++;
	dirs = calloc(n + 2, sizeof(*dirs));
	if (!dirs)
		return nomem(p);
	dirs[0] = strdup(view);
	for (size_t i = 0; i < n; i++)
		if (asprintf(&dirs[i + 1], "%s/%s", view, cfg->dirs[i]) < 0)
			dirs[i + 1] = NULL;
	for (size_t i = 0; i < n; i++)
		free(cfg->dirs[i]);
	free(cfg->dirs);
	cfg->dirs = dirs;
	for (size_t i = 0; i <= n; i++)
		if (!dirs[i])
			return nomem(p);
	return 0;
}

/* ---- entry points ----------------------------------------------------- */

static const char *const top_keys[] = { "modelfs", "layout", "models" };

static int parse_tree(struct parser *p, const struct toml_value *root)
{
	const struct toml_value *v;
	char hint[80];
	int rc;

	for (size_t i = 0; i < root->u.table.len; i++) {
		const struct toml_keyval *kv = &root->u.table.items[i];

		bool known = false;

		for (size_t k = 0; k < 3; k++)
			known = known || strcmp(kv->key, top_keys[k]) == 0;
		if (known)
			continue;
		return fail(p, kv->line, kv->col, "unknown top-level key \"%.60s\"%s; the config has "
			    "[modelfs], [layout] and [models.CATEGORY] tables", kv->key,
			    suggest_word(kv->key, top_keys, 3, hint, sizeof(hint)));
	}
	/* [modelfs] first wherever it is written: entries inherit verify
	 * and the layout. */
	v = toml_table_get(root, "modelfs");
	if (v) {
		rc = parse_modelfs(p, v);
		if (rc)
			return rc;
	}
	if (p->layout_over) {
		p->layout = find_layout(p->layout_over);
		if (!p->layout)
			return fail(p, 0, 0, "layout \"%.60s\" (given with -o layout=) is not one of "
				    "forge, comfyui, flat", p->layout_over);
	}
	v = toml_table_get(root, "layout");
	if (v) {
		if (v->type != TOML_TABLE)
			return fail(p, v->line, v->col, "layout must be a [layout] table of "
				    "category = \"folder\" (the layout's name goes in [modelfs]: "
				    "layout = \"comfyui\"), not %s", a_type(v->type));
		rc = add_overrides(p, v, "layout");
		if (rc)
			return rc;
	}
	p->cfg->layout = strdup(p->layout->name);
	if (!p->cfg->layout)
		return nomem(p);
	rc = default_endpoints(p);
	if (rc)
		return rc;
	v = toml_table_get(root, "models");
	if (v) {
		rc = parse_models(p, v);
		if (rc)
			return rc;
	}
	rc = build_dirs(p);
	if (rc == 0)
		rc = check_paths(p);
	if (rc == 0 && p->view_names && !p->layout_over)
		rc = put_under_view(p);
	return rc;
}

int config_parse(const char *text, size_t len, const char *name, struct config **out,
		 struct config_error *err)
{
	return config_parse_layout(text, len, name, NULL, out, err);
}

static int parse_text(const char *text, size_t len, const char *name, const char *layout,
		      const char *view, struct config **out, struct config_error *err);

/* The other views of a config with several layouts: the same text laid
 * out by each, kept in p->cfg->views after p->cfg itself. */
static int parse_views(struct parser *p, const char *text, size_t len)
{
	struct config *cfg = p->cfg;
	int rc = 0;

	cfg->views = calloc(p->n_view_names, sizeof(*cfg->views));
	if (!cfg->views)
		return nomem(p);
	cfg->views[0] = cfg;
	cfg->n_views = 1;
	for (size_t i = 1; rc == 0 && i < p->n_view_names; i++) {
		rc = parse_text(text, len, p->name, NULL, p->view_names[i], &cfg->views[i], p->err);
		if (rc == 0)
			cfg->n_views++;
	}
	return rc;
}

int config_parse_layout(const char *text, size_t len, const char *name, const char *layout,
			struct config **out, struct config_error *err)
{
	return parse_text(text, len, name, layout, NULL, out, err);
}

static int parse_text(const char *text, size_t len, const char *name, const char *layout,
		      const char *view, struct config **out, struct config_error *err)
{
	struct config_error dummy;
	struct parser p = { .name = name ? name : "config", .err = err ? err : &dummy,
			    .layout_over = layout, .view = view };
	struct toml_value *root = NULL;
	struct toml_error terr = { 0 };
	int rc;

	*out = NULL;
	p.err->msg[0] = '\0';
	p.layout = find_layout("forge");
	p.cfg = calloc(1, sizeof(*p.cfg));
	if (!p.cfg)
		return nomem(&p);
	p.cfg->path = strdup(p.name);
	if (!p.cfg->path) {
		rc = nomem(&p);
		goto out;
	}
	p.cfg->cache_max_size = -1;		/* no limit */
	p.cfg->cache_min_free = -1;
	p.cfg->cache_min_free_percent = 5;
	p.cfg->block_size = 8u << 20;
	p.cfg->verify = CONFIG_VERIFY_LAZY;
	p.cfg->connections = 32;
	p.cfg->retry_timeout_sec = 120;
	p.cfg->header_prefetch = true;

	rc = toml_parse(text, len, &root, &terr);
	if (rc == -EINVAL) {
		rc = fail(&p, terr.line, terr.col, "%s", terr.msg);
		goto out;
	}
	if (rc) {
		rc = rc == -ENOMEM ? nomem(&p) : fail(&p, 0, 0, "cannot parse: %s", strerror(-rc));
		goto out;
	}
	rc = parse_tree(&p, root);
	if (rc == 0 && p.view_names && !layout && !view)
		rc = parse_views(&p, text, len);
out:
	toml_free(root);
	free(p.ov);
	free(p.view_names);
	model_catalog_free(p.catalog);
	if (rc) {
		config_free(p.cfg);
		return rc;
	}
	*out = p.cfg;
	return 0;
}

bool config_is_manifest(const char *path)
{
	size_t n = strlen(path);

	return (n > 5 && strcmp(path + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(path + n - 4, ".yml") == 0);
}

/* s as a TOML basic string's body into out (len >= 2 * strlen(s) + 1). */
static void toml_escape(const char *s, char *out)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			*out++ = '\\';
		*out++ = *s;
	}
	*out = '\0';
}

/* A manifest as the whole config: its model as the one entry, under
 * diffusers for a diffusers pipeline (its profile says so, or it has a
 * model_index.json), else checkpoints, named after the
 * model_id's last part (else the file's name). */
static int manifest_config(const char *path, const char *text, size_t len, const char *layout,
			   struct config **out, struct config_error *err)
{
	char name[NAME_MAX_BYTES + 1], real[PATH_MAX], qpath[2 * PATH_MAX + 1], *toml = NULL;
	const char *category, *from, *dot;
	struct manifest_error merr;
	struct manifest *m = NULL;
	size_t n;
	int rc;

	rc = manifest_parse(text, len, path, &m, &merr);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "%s", merr.msg);
		return rc;
	}
	category = "checkpoints";
	for (size_t i = 0; i < m->n_artifacts; i++)
		if (strcmp(m->artifacts[i].path, "model_index.json") == 0)
			category = "diffusers";
	if (m->profile && strstr(m->profile, "diffusers"))
		category = "diffusers";
	from = m->model_id && m->model_id[0] ? m->model_id : path;
	from = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
	dot = from == path || !m->model_id ? strrchr(from, '.') : NULL;
	n = dot && dot > from ? (size_t)(dot - from) : strlen(from);
	n = n < NAME_MAX_BYTES ? n : NAME_MAX_BYTES;
	for (size_t i = 0; i < n; i++)
		name[i] = isalnum((unsigned char)from[i]) || strchr("._-", from[i]) ? from[i] : '-';
	name[n] = '\0';
	if (!realpath(path, real)) {
		rc = -errno;
		snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(errno));
		goto out;
	}
	toml_escape(real, qpath);
	if (asprintf(&toml, "[models.%s]\n\"%s\" = { source = \"manifest\", path = \"%s\" }\n",
		     category, name[0] && strcmp(name, ".") && strcmp(name, "..") ? name : "model",
		     qpath) < 0) {
		toml = NULL;
		rc = -ENOMEM;
		goto out;
	}
	rc = config_parse_layout(toml, strlen(toml), path, layout, out, err);
out:
	free(toml);
	manifest_free(m);
	return rc;
}

int config_load(const char *path, struct config **out, struct config_error *err)
{
	return config_load_layout(path, NULL, out, err);
}

int config_load_layout(const char *path, const char *layout, struct config **out,
		       struct config_error *err)
{
	struct config_error dummy;
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	if (!err)
		err = &dummy;
	rc = read_small_file(path, CONFIG_MAX_BYTES, 0, &text, &len);
	if (rc == -EFBIG)
		snprintf(err->msg, sizeof(err->msg), "%s: cannot read: larger than %d MiB; is it "
			 "really the config?", path, CONFIG_MAX_BYTES >> 20);
	else if (rc)
		snprintf(err->msg, sizeof(err->msg), "%s: cannot read: %s", path, strerror(-rc));
	else if (config_is_manifest(path))
		rc = manifest_config(path, text, len, layout, out, err);
	else
		rc = config_parse_layout(text, len, path, layout, out, err);
	free(text);
	return rc;
}

static void free_strv(char **v)
{
	if (!v)
		return;
	for (char **s = v; *s; s++)
		free(*s);
	free(v);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 1; i < cfg->n_views; i++)
		config_free(cfg->views[i]);
	free(cfg->views);
	free(cfg->view);
	for (size_t i = 0; i < cfg->n_entries; i++) {
		struct config_entry *e = &cfg->entries[i];

		free(e->category);
		free(e->name);
		free(e->id);
		free(e->dir);
		free(e->filename);
		free(e->url);
		free(e->url_written);
		free(e->repo);
		free(e->file);
		free(e->revision);
		free(e->repo_type);
		free_strv(e->include);
		free_strv(e->exclude);
		free(e->model_id);
		free(e->version_id);
		free(e->file_id);
		free(e->endpoint);
		free(e->region);
		free(e->path);
		free_strv(e->mirrors);
		free(e->mirror_token_file);
		for (size_t h = 0; h < e->n_headers; h++) {
			free(e->headers[h].name);
			free(e->headers[h].value);
		}
		free(e->headers);
		free(e->auth_header);
		free(e->sha256);
		free(e->manifest);
		free(e->manifest_model);
		free(e->manifest_version);
	}
	free(cfg->entries);
	free_strv(cfg->dirs);
	free(cfg->path);
	free(cfg->cache_dir);
	free(cfg->layout);
	free(cfg->mountpoint);
	free(cfg->local_dir);
	free(cfg->lock);
	free(cfg->serve);
	free(cfg->serve_prefix);
	free(cfg->serve_token_file);
	free(cfg->cache_proxy_token_file);
	free(cfg->mirror_token_file);
	free(cfg->cache_proxy);
	free(cfg->shared_cache);
	free_strv(cfg->shared_cache_allow);
	free(cfg->hf_endpoint);
	free(cfg->civitai_endpoint);
	free(cfg->gdrive_endpoint);
	free_strv(cfg->prefetch);
	free(cfg);
}
