/*
 * manifest.c: model manifests (manifest.h) read and written with libyaml.
 *
 * The document is loaded whole (yaml_parser_load) and walked as a tree:
 * a manifest is small, and node marks give every error its line.
 */
#include "modelfs/manifest.h"
#include "modelfs/readfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "modelfs/config.h"
#include "modelfs/text.h"

#define MANIFEST_MAX (4 << 20)	/* a manifest is a list of files, never megabytes */

static const char *const provider_names[] = {
	[MANIFEST_HUGGINGFACE] = "huggingface", [MANIFEST_CIVITAI] = "civitai",
	[MANIFEST_URL] = "url",
};

const char *manifest_provider_name(enum manifest_provider p)
{
	return provider_names[p];
}

struct reader {
	yaml_document_t *doc;
	const char *name;
	struct manifest_error *err;
};

__attribute__((format(printf, 3, 4)))
static int fail_at(struct reader *r, const yaml_node_t *at, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err->msg, sizeof(r->err->msg), "%s:%zu:%zu: ", r->name,
			 at ? at->start_mark.line + 1 : 1, at ? at->start_mark.column + 1 : 1);

	va_start(ap, fmt);
	vsnprintf(r->err->msg + n, sizeof(r->err->msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool key_is(const yaml_node_t *k, const char *name)
{
	return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(name) &&
	       memcmp(k->data.scalar.value, name, k->data.scalar.length) == 0;
}

/* The value under key in mapping map, or NULL. */
static yaml_node_t *get(struct reader *r, yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++)
		if (key_is(yaml_document_get_node(r->doc, p->key), key))
			return yaml_document_get_node(r->doc, p->value);
	return NULL;
}

/* A scalar as a new string; an absent key leaves *out NULL. Numbers are
 * scalars too (version: 2026, version_id: 123). */
static int get_text(struct reader *r, yaml_node_t *map, const char *key, const char *where,
		    char **out)
{
	yaml_node_t *v = get(r, map, key);

	*out = NULL;
	if (!v)
		return 0;
	if (v->type != YAML_SCALAR_NODE)
		return fail_at(r, v, "%s%s must be a string", where, key);
	if (memchr(v->data.scalar.value, '\0', v->data.scalar.length))
		return fail_at(r, v, "%s%s holds a NUL byte", where, key);
	*out = strndup((const char *)v->data.scalar.value, v->data.scalar.length);
	return *out ? 0 : -ENOMEM;
}

static int need_text(struct reader *r, yaml_node_t *map, const char *key, const char *where,
		     const char *hint, char **out)
{
	int rc = get_text(r, map, key, where, out);

	if (rc == 0 && (!*out || !**out)) {
		free(*out);
		*out = NULL;
		return fail_at(r, map, "%s%s is missing%s", where, key, hint);
	}
	return rc;
}

static bool is_decimal(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* A relative path inside the model, as a repo path must be
 * (config_valid_repo_path()), and no control byte or backslash: a YAML
 * string may hold them, a config's may not. */
static bool safe_path(const char *p)
{
	for (const char *s = p; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == '\\')
			return false;
	return config_valid_repo_path(p);
}

/* A sha256 in either case, kept lowercase. */
static bool sha256_text(char *s)
{
	if (!text_is_hex(s, 64, false))
		return false;
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
	return true;
}

static int read_source(struct reader *r, yaml_node_t *root, struct manifest *m)
{
	yaml_node_t *src = get(r, root, "source");
	char *provider = NULL;
	int rc;

	if (!src)
		return fail_at(r, root, "source is missing: give source: { provider: huggingface, "
			       "repo_id: ORG/NAME, revision: COMMIT } (or civitai, url)");
	if (src->type != YAML_MAPPING_NODE)
		return fail_at(r, src, "source must be a mapping like { provider: huggingface, "
			       "repo_id: ORG/NAME, revision: COMMIT }");
	rc = need_text(r, src, "provider", "source.", " (huggingface, civitai or url)", &provider);
	if (rc)
		return rc;
	for (m->provider = 0; m->provider <= MANIFEST_URL; m->provider++)
		if (strcmp(provider, provider_names[m->provider]) == 0)
			break;
	if (m->provider > MANIFEST_URL) {
		rc = fail_at(r, get(r, src, "provider"), "source.provider \"%.60s\" is not one of "
			     "huggingface, civitai, url", provider);
		goto out;
	}
	switch (m->provider) {
	case MANIFEST_HUGGINGFACE:
		rc = need_text(r, src, "repo_id", "source.", " (ORG/NAME on the Hub)", &m->repo_id);
		if (rc == 0 && !config_valid_repo(m->repo_id))
			rc = fail_at(r, get(r, src, "repo_id"), "source.repo_id must be ORG/NAME, "
				     "not \"%.80s\"", m->repo_id);
		if (rc == 0)
			rc = get_text(r, src, "revision", "source.", &m->revision);
		if (rc == 0 && m->revision && !m->revision[0])
			rc = fail_at(r, get(r, src, "revision"), "source.revision is empty (leave it "
				     "out for main)");
		if (rc == 0)
			rc = get_text(r, src, "repo_type", "source.", &m->repo_type);
		if (rc == 0 && m->repo_type && strcmp(m->repo_type, "model") != 0 &&
		    strcmp(m->repo_type, "dataset") != 0)
			rc = fail_at(r, get(r, src, "repo_type"), "source.repo_type must be model or "
				     "dataset");
		break;
	case MANIFEST_CIVITAI:
		rc = need_text(r, src, "version_id", "source.", " (the modelVersionId of the "
			       "model page's link)", &m->civitai_version_id);
		if (rc == 0 && !is_decimal(m->civitai_version_id))
			rc = fail_at(r, get(r, src, "version_id"), "source.version_id must be a "
				     "number");
		if (rc == 0)
			rc = get_text(r, src, "model_id", "source.", &m->civitai_model_id);
		if (rc == 0 && m->civitai_model_id && !is_decimal(m->civitai_model_id))
			rc = fail_at(r, get(r, src, "model_id"), "source.model_id must be a number");
		break;
	case MANIFEST_URL:
		break;
	}
out:
	free(provider);
	return rc;
}

static int read_artifact(struct reader *r, yaml_node_t *node, struct manifest *m, size_t i)
{
	struct manifest_artifact *a = &m->artifacts[i];
	char where[48];
	int rc;

	a->line = (int)node->start_mark.line + 1;
	a->col = (int)node->start_mark.column + 1;
	snprintf(where, sizeof(where), "artifacts[%zu].", i);
	if (node->type != YAML_MAPPING_NODE)
		return fail_at(r, node, "artifacts[%zu] must be a mapping with path and sha256", i);
	rc = need_text(r, node, "path", where, " (the file's path inside the model)", &a->path);
	if (rc == 0 && !safe_path(a->path))
		rc = fail_at(r, get(r, node, "path"), "%spath must be a relative path inside the "
			     "model (no leading '/', no \".\" or \"..\"), not \"%.80s\"", where,
			     a->path);
	if (rc == 0)
		rc = need_text(r, node, "sha256", where, " (64 hex digits)", &a->sha256);
	if (rc == 0 && !sha256_text(a->sha256))
		rc = fail_at(r, get(r, node, "sha256"), "%ssha256 must be 64 hex digits", where);
	if (rc == 0)
		rc = get_text(r, node, "url", where, &a->url);
	if (rc == 0 && m->provider == MANIFEST_URL && !a->url)
		rc = fail_at(r, node, "%surl is missing: with provider url every artifact names "
			     "its url", where);
	if (rc == 0 && a->url && strncmp(a->url, "http://", 7) != 0 &&
	    strncmp(a->url, "https://", 8) != 0)
		rc = fail_at(r, get(r, node, "url"), "%surl must be an http:// or https:// URL",
			     where);
	if (rc == 0 && a->url && m->provider != MANIFEST_URL)
		rc = fail_at(r, get(r, node, "url"), "%surl goes with provider url; this manifest's "
			     "provider is %s", where, provider_names[m->provider]);
	for (size_t k = 0; rc == 0 && k < i; k++)
		if (strcmp(m->artifacts[k].path, a->path) == 0)
			rc = fail_at(r, get(r, node, "path"), "%spath \"%.80s\" is listed twice "
				     "(first at line %d)", where, a->path, m->artifacts[k].line);
	return rc;
}

static int read_manifest(struct reader *r, struct manifest *m)
{
	yaml_node_t *root = yaml_document_get_root_node(r->doc), *arts;
	int rc;

	if (!root)
		return fail_at(r, NULL, "the manifest is empty");
	if (root->type != YAML_MAPPING_NODE)
		return fail_at(r, root, "a manifest is a mapping with source and artifacts");
	if ((rc = get_text(r, root, "model_id", "", &m->model_id)) ||
	    (rc = get_text(r, root, "version", "", &m->version)) ||
	    (rc = get_text(r, root, "profile", "", &m->profile)) ||
	    (rc = get_text(r, root, "license", "", &m->license)) ||
	    (rc = read_source(r, root, m)))
		return rc;
	arts = get(r, root, "artifacts");
	if (!arts || arts->type != YAML_SEQUENCE_NODE ||
	    arts->data.sequence.items.top == arts->data.sequence.items.start)
		return fail_at(r, arts ? arts : root, "artifacts must be a list of { path, sha256 }, "
			       "with at least one");
	m->n_artifacts = (size_t)(arts->data.sequence.items.top - arts->data.sequence.items.start);
	m->artifacts = calloc(m->n_artifacts, sizeof(*m->artifacts));
	if (!m->artifacts)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_artifacts; i++) {
		rc = read_artifact(r, yaml_document_get_node(r->doc,
				   arts->data.sequence.items.start[i]), m, i);
		if (rc)
			return rc;
	}
	return 0;
}

int manifest_parse(const char *text, size_t len, const char *name, struct manifest **out,
		   struct manifest_error *err)
{
	struct manifest *m = calloc(1, sizeof(*m));
	yaml_parser_t parser;
	yaml_document_t doc;
	struct reader r = { .doc = &doc, .name = name, .err = err };
	int rc;

	*out = NULL;
	err->msg[0] = '\0';
	if (!m)
		return -ENOMEM;
	if (!yaml_parser_initialize(&parser)) {
		free(m);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err->msg, sizeof(err->msg), "%s:%zu:%zu: not YAML: %s%s%s", name,
			 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "unreadable",
			 parser.context ? ", " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		manifest_free(m);
		return parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
	}
	rc = read_manifest(&r, m);
	if (rc == -ENOMEM && !err->msg[0])
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", name);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc) {
		manifest_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int manifest_load(const char *path, struct manifest **out, struct manifest_error *err)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	err->msg[0] = '\0';
	rc = read_small_file(path, MANIFEST_MAX, READFILE_REGULAR_ONLY, &text, &len);
	if (rc == 0)
		rc = manifest_parse(text, len, path, out, err);
	else if (rc == -EFBIG)
		snprintf(err->msg, sizeof(err->msg), "%s: larger than %d MiB: not a manifest", path,
			 MANIFEST_MAX >> 20);
	else if (rc == -EINVAL || rc == -EISDIR)
		snprintf(err->msg, sizeof(err->msg), "%s: not a regular file", path);
	else
		snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(-rc));
	free(text);
	return rc;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; m->artifacts && i < m->n_artifacts; i++) {
		free(m->artifacts[i].path);
		free(m->artifacts[i].sha256);
		free(m->artifacts[i].url);
	}
	free(m->artifacts);
	free(m->model_id);
	free(m->version);
	free(m->profile);
	free(m->license);
	free(m->repo_id);
	free(m->revision);
	free(m->repo_type);
	free(m->civitai_model_id);
	free(m->civitai_version_id);
	free(m);
}

/* ---- writing ------------------------------------------------------------------- */

struct writer {
	yaml_emitter_t em;
	bool ok;
};

/* The emitter frees an event it is given, even when it fails. */
static void emit(struct writer *w, yaml_event_t *ev)
{
	if (!w->ok)
		yaml_event_delete(ev);
	else if (!yaml_emitter_emit(&w->em, ev))
		w->ok = false;
}

static void scalar(struct writer *w, const char *text, bool quoted)
{
	yaml_event_t ev;

	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text),
					  1, 1, quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
					  : YAML_PLAIN_SCALAR_STYLE)) {
		w->ok = false;
		return;
	}
	emit(w, &ev);
}

static void pair(struct writer *w, const char *key, const char *value)
{
	if (!value)
		return;
	scalar(w, key, false);
	scalar(w, value, true);
}

static void mapping(struct writer *w, bool start, bool flow)
{
	yaml_event_t ev;

	if (start)
		yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, flow ? YAML_FLOW_MAPPING_STYLE
						    : YAML_BLOCK_MAPPING_STYLE);
	else
		yaml_mapping_end_event_initialize(&ev);
	emit(w, &ev);
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct manifest_artifact *)a)->path,
		      ((const struct manifest_artifact *)b)->path);
}

static int file_writer(void *data, unsigned char *buf, size_t size)
{
	return fwrite(buf, 1, size, data) == size;
}

int manifest_write(struct manifest *m, FILE *out)
{
	struct writer w = { .ok = true };
	yaml_event_t ev;

	if (m->n_artifacts)
		qsort(m->artifacts, m->n_artifacts, sizeof(*m->artifacts), by_path);
	if (!yaml_emitter_initialize(&w.em))
		return -ENOMEM;
	yaml_emitter_set_output(&w.em, file_writer, out);
	yaml_emitter_set_unicode(&w.em, 1);
	yaml_emitter_set_width(&w.em, -1);
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	emit(&w, &ev);
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	emit(&w, &ev);
	mapping(&w, true, false);
	pair(&w, "model_id", m->model_id);
	pair(&w, "version", m->version);
	pair(&w, "profile", m->profile);
	pair(&w, "license", m->license);
	scalar(&w, "source", false);
	mapping(&w, true, true);
	pair(&w, "provider", provider_names[m->provider]);
	pair(&w, "repo_id", m->repo_id);
	pair(&w, "repo_type", m->repo_type && strcmp(m->repo_type, "model") ? m->repo_type : NULL);
	pair(&w, "revision", m->revision);
	pair(&w, "model_id", m->civitai_model_id);
	pair(&w, "version_id", m->civitai_version_id);
	mapping(&w, false, true);
	scalar(&w, "artifacts", false);
	yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
	emit(&w, &ev);
	for (size_t i = 0; i < m->n_artifacts; i++) {
		mapping(&w, true, false);
		pair(&w, "path", m->artifacts[i].path);
		pair(&w, "sha256", m->artifacts[i].sha256);
		pair(&w, "url", m->artifacts[i].url);
		mapping(&w, false, false);
	}
	yaml_sequence_end_event_initialize(&ev);
	emit(&w, &ev);
	mapping(&w, false, false);
	yaml_document_end_event_initialize(&ev, 1);
	emit(&w, &ev);
	yaml_stream_end_event_initialize(&ev);
	emit(&w, &ev);
	if (w.ok && !yaml_emitter_flush(&w.em))
		w.ok = false;
	yaml_emitter_delete(&w.em);
	return w.ok && !ferror(out) ? 0 : -EIO;
}
