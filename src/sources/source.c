/*
 * source.c: what every source shares: dispatch by kind, paths, the spec
 * hash that decides whether a stored resolution still applies, and the
 * content key that names a file in the cache.
 */
#include "modelfs/source.h"

#include <errno.h>
#include <limits.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/hexhash.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"
#include "modelfs/text.h"
#include "source_i.h"

/* Every source this build can fetch; others are parsed but left out. */
static const struct source_ops *const sources[] = {
	&source_url_ops,
	&source_civitai_ops,
	&source_s3_ops,
	&source_hf_ops,
};

static const struct source_ops *ops_for(enum config_source kind)
{
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (sources[i]->kind == kind)
			return sources[i];
	return NULL;
}

static void token_init(struct source_token *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

static void token_clear(struct source_token *t)
{
	if (t->value)
		explicit_bzero(t->value, strlen(t->value));
	free(t->value);
	free(t->name);
	free(t->user);
	free(t->error);
	pthread_mutex_destroy(&t->lock);
}

int source_ctx_new(const struct config *cfg, struct source_ctx **out)
{
	struct source_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return -ENOMEM;
	ctx->cfg = cfg;
	token_init(&ctx->hf);
	token_init(&ctx->civitai);
	pthread_mutex_init(&ctx->facts_lock, NULL);
	*out = ctx;
	return 0;
}

void source_ctx_free(struct source_ctx *ctx)
{
	if (!ctx)
		return;
	token_clear(&ctx->hf);
	token_clear(&ctx->civitai);
	for (size_t i = 0; i < ctx->n_facts; i++)
		free(ctx->facts[i].key);
	free(ctx->facts);
	pthread_mutex_destroy(&ctx->facts_lock);
	free(ctx);
}

bool source_fact_get(struct source_ctx *ctx, const char *key, struct source_revision_fact *out)
{
	bool found = false;

	pthread_mutex_lock(&ctx->facts_lock);
	for (size_t i = 0; !found && i < ctx->n_facts; i++)
		if (strcmp(ctx->facts[i].key, key) == 0) {
			*out = ctx->facts[i];
			out->key = NULL;
			found = true;
		}
	pthread_mutex_unlock(&ctx->facts_lock);
	return found;
}

void source_fact_put(struct source_ctx *ctx, const char *key, int64_t time, bool open)
{
	struct source_revision_fact *grown;
	char *copy = strdup(key);

	if (!copy)
		return;
	pthread_mutex_lock(&ctx->facts_lock);
	grown = realloc(ctx->facts, (ctx->n_facts + 1) * sizeof(*grown));
	if (grown) {
		ctx->facts = grown;
		grown[ctx->n_facts++] = (struct source_revision_fact){ .key = copy, .time = time,
								       .open = open };
		copy = NULL;
	}
	pthread_mutex_unlock(&ctx->facts_lock);
	free(copy);
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*oom = true;
	return d;
}

int source_token_get(struct source_token *t,
		     int (*lookup)(struct source_token *t),
		     int (*validate)(struct source_ctx *ctx, struct http_client *c,
				     struct source_token *t),
		     struct source_ctx *ctx, struct http_client *c,
		     char **value, char **name, char **error)
{
	bool oom = false;
	int rc;

	pthread_mutex_lock(&t->lock);
	if (!t->done) {
		t->status = lookup(t);
		if (t->status == 0 && t->value && validate)
			t->status = validate(ctx, c, t);
		/* An unreachable service is asked again by the next resolution. */
		t->done = t->status != -EAGAIN;
	}
	rc = t->status;
	*value = dup_or_null(t->value, &oom);
	*name = dup_or_null(t->name, &oom);
	if (error)
		*error = dup_or_null(t->error, &oom);
	pthread_mutex_unlock(&t->lock);
	return oom ? -ENOMEM : rc;
}

int source_files_new(const struct config_entry *e, size_t n, struct source_file **out)
{
	struct source_file *f = calloc(n ? n : 1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		f[i].entry = e;
		f[i].size = -1;
		f[i].mtime = -1;
	}
	*out = f;
	return 0;
}

static int resolve_one(struct source_ctx *ctx, struct http_client *c,
		       const struct config_entry *e, source_probe_fn probe,
		       struct source_file **files, size_t *n)
{
	struct source_file *f;
	int rc = source_files_new(e, 1, &f);

	if (rc)
		return rc;
	f->size = e->size;
	if ((e->sha256 && !(f->sha256 = strdup(e->sha256))) ||
	    source_join_path(e->dir, e->filename ? e->filename : e->name, &f->path)) {
		source_files_free(f, 1);
		return -ENOMEM;
	}
	rc = probe(ctx, c, f);
	if (rc && rc != -EAGAIN) {
		source_files_free(f, 1);
		return rc;
	}
	*files = f;
	*n = 1;
	return rc;
}

static int refresh_same(struct source_ctx *ctx, struct http_client *c, struct source_file *f,
			source_probe_fn probe)
{
	char *validator = f->validator ? strdup(f->validator) : NULL;
	int64_t size = f->size;
	int rc;

	if (f->validator && !validator)
		return -ENOMEM;
	rc = probe(ctx, c, f);
	if (rc == 0 && f->err)
		rc = f->err;
	if (rc == 0 && f->size != size) {
		source_set_error(f, -ESTALE, "%s changed at its origin: it was %lld bytes, the origin "
				 "now has %lld", f->path, (long long)size, (long long)f->size);
		rc = -ESTALE;
	} else if (rc == 0 && validator && (!f->validator || strcmp(validator, f->validator) != 0)) {
		source_set_error(f, -ESTALE, "%s changed at its origin: its validator was %s, the "
				 "origin now gives %s", f->path, validator,
				 f->validator ? f->validator : "none");
		rc = -ESTALE;
	}
	free(validator);
	return rc;
}

void source_take_probe(struct source_file *f, const struct http_meta *m)
{
	f->size = m->total_size;
	f->mtime = m->mtime;
	free(f->validator);
	f->validator = NULL;
	if (m->etag && http_etag_is_strong(m->etag))
		f->validator = strdup(m->etag);
	else if (m->last_modified)
		f->validator = strdup(m->last_modified);
}

int source_fill_mirrors(struct source_file *f)
{
	char *const *m = f->entry->mirrors;
	size_t n = 0;

	for (size_t i = 0; f->mirror_urls && f->mirror_urls[i]; i++)
		free(f->mirror_urls[i]);
	free(f->mirror_urls);
	f->mirror_urls = NULL;
	while (m && m[n])
		n++;
	if (n == 0)
		return 0;
	f->mirror_urls = calloc(n + 1, sizeof(*f->mirror_urls));
	for (size_t i = 0; f->mirror_urls && i < n; i++) {
		f->mirror_urls[i] = strdup(m[i]);
		if (!f->mirror_urls[i])
			return -ENOMEM;		/* NULL-terminated so far: freed with f */
	}
	return f->mirror_urls ? 0 : -ENOMEM;
}

void source_set_error(struct source_file *f, int err, const char *fmt, ...)
{
	char buf[512], shown[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Errors are shown in xattrs and status: no secret, no signed query. */
	log_redact(buf, shown, sizeof(shown));
	free(f->error);
	f->error = strdup(shown);
	f->err = err;
}

int source_join_path(const char *dir, const char *name, char **out)
{
	int n = dir && dir[0] ? asprintf(out, "%s/%s", dir, name) : asprintf(out, "%s", name);

	return n < 0 ? -ENOMEM : 0;
}

/* An origin that reports more than this is wrong: no model is that large,
 * and no data file can be (ext4 stops at 16 TiB). */
#define SOURCE_SIZE_MAX (16LL << 40)

static void refuse_absurd_sizes(struct source_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct source_file *f = &files[i];
		char shown[32];

		if (f->err || f->size <= SOURCE_SIZE_MAX)
			continue;
		source_set_error(f, -EFBIG, "the origin reports a size of %lld bytes (%s), more "
				 "than any model and than a cache file can hold: check the url",
				 (long long)f->size, humanize_bytes((uint64_t)f->size, shown,
								    sizeof(shown)));
		f->size = 0;	/* listed empty, with the error */
	}
}

/* ---- names servers choose ---------------------------------------------- */

/* Where the extension of name (len bytes) starts: its last '.', when that
 * is not the first byte and leaves at most SOURCE_EXT_MAX bytes; else len. */
static size_t ext_start(const char *name, size_t len)
{
	const char *dot = memrchr(name, '.', len);

	if (!dot || dot == name || len - (size_t)(dot - name) > SOURCE_EXT_MAX)
		return len;
	return (size_t)(dot - name);
}

int source_safe_name(const char *raw, char **out)
{
	size_t n = strlen(raw), o = 0, ext, stem;
	char *s = malloc(n + 1);

	*out = NULL;
	if (!s)
		return -ENOMEM;
	/* Each character kept whole or each of its bytes replaced: what is
	 * left is printable UTF-8, so it can be cut between characters. */
	for (size_t i = 0; i < n;) {
		size_t len = raw[i] == '/' ? 0 : text_char_len(raw + i, n - i);

		if (len == 0) {
			s[o++] = '_';
			i++;
		} else {
			memcpy(s + o, raw + i, len);
			o += len;
			i += len;
		}
	}
	s[o] = '\0';
	if (o > NAME_MAX) {
		ext = ext_start(s, o);
		stem = NAME_MAX - (o - ext);
		while (stem > 0 && ((unsigned char)s[stem] & 0xC0) == 0x80)
			stem--;		/* not inside a character */
		memmove(s + stem, s + ext, o - ext + 1);
	}
	if (s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		free(s);
		return 0;
	}
	*out = s;
	return 0;
}

/* ---- one path, one entry ------------------------------------------------- */

struct source_paths {
	void *root;			/* tsearch tree of struct claim, by path */
};

struct claim {
	char *path;
	const struct config_entry *entry;	/* the config's */
};

static int claim_cmp(const void *a, const void *b)
{
	return strcmp(((const struct claim *)a)->path, ((const struct claim *)b)->path);
}

static void claim_free(void *node)
{
	struct claim *c = node;

	free(c->path);
	free(c);
}

int source_paths_new(struct source_paths **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void source_paths_free(struct source_paths *p)
{
	if (!p)
		return;
	tdestroy(p->root, claim_free);
	free(p);
}

int source_paths_claim(struct source_paths *p, struct source_file *f)
{
	struct claim *c, **slot = NULL;

	if (f->err && f->err != -EAGAIN)
		return 0;	/* it cannot be read: its own error says more */
	c = malloc(sizeof(*c));
	if (c) {
		c->path = strdup(f->path);
		c->entry = f->entry;
	}
	if (c && c->path)
		slot = tsearch(c, &p->root, claim_cmp);
	if (!slot) {
		if (c)
			claim_free(c);
		return -ENOMEM;
	}
	if (*slot == c)
		return 0;
	claim_free(c);
	/* Which one a user would want shown is not ours to guess: the first
	 * in the config keeps the name, the other says why it is missing. */
	source_set_error(f, -EEXIST, "the path %s is already entry %s's, so this entry is not "
			 "in the mount: give one of them a filename", f->path, (*slot)->entry->id);
	return -EEXIST;
}

int source_resolve(struct source_ctx *ctx, struct http_client *c,
		   const struct config_entry *e, struct source_file **files, size_t *n)
{
	const struct source_ops *ops = ops_for(e->source);
	int rc;

	*files = NULL;
	*n = 0;
	if (!ops)
		return -ENOTSUP;
	rc = ops->resolve ? ops->resolve(ctx, c, e, files, n)
			  : resolve_one(ctx, c, e, ops->probe, files, n);
	refuse_absurd_sizes(*files, *n);
	return rc;
}

int source_refresh(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	const struct source_ops *ops = ops_for(f->entry->source);

	if (!ops)
		return -ENOTSUP;
	return ops->refresh ? ops->refresh(ctx, c, f) : refresh_same(ctx, c, f, ops->probe);
}

void source_auth_describe(struct source_ctx *ctx, const struct source_file *f,
			  char *out, size_t outlen)
{
	struct source_token *t = f->entry->source == CONFIG_SOURCE_HUGGINGFACE ? &ctx->hf
			       : f->entry->source == CONFIG_SOURCE_CIVITAI ? &ctx->civitai : NULL;
	char user[96] = "";

	if (t) {
		pthread_mutex_lock(&t->lock);
		snprintf(user, sizeof(user), "%s", t->user ? t->user : "");
		pthread_mutex_unlock(&t->lock);
	}
	if (f->auth.token_name && user[0])
		snprintf(out, outlen, "%s (user %s)", f->auth.token_name, user);
	else if (f->auth.token_name)
		snprintf(out, outlen, "%s", f->auth.token_name);
	else if (f->auth.authorization)
		snprintf(out, outlen, "auth_header");
	else
		snprintf(out, outlen, "none");
}

static void spec_add(struct hexhash *h, const char *field, const char *value)
{
	hexhash_update(h, field, strlen(field) + 1);
	if (value)
		hexhash_update(h, value, strlen(value) + 1);
	else
		hexhash_update(h, "", 1);
}

void source_spec_hash(const struct config_entry *e, char out[65])
{
	struct hexhash *h;
	char size[32];
	size_t qlen = e->url ? strcspn(e->url, "?#") : 0;
	char *url = e->url ? strndup(e->url, qlen) : NULL;

	if (hexhash_new(&h) != 0) {
		memset(out, '0', 64);
		out[64] = '\0';
		free(url);
		return;
	}
	snprintf(size, sizeof(size), "%lld", (long long)e->size);
	spec_add(h, "source", config_source_name(e->source));
	spec_add(h, "url", url);
	spec_add(h, "repo", e->repo);
	spec_add(h, "revision", e->revision);
	spec_add(h, "file", e->file);
	spec_add(h, "model_id", e->model_id);
	spec_add(h, "version_id", e->version_id);
	spec_add(h, "file_id", e->file_id);
	spec_add(h, "endpoint", e->endpoint);
	spec_add(h, "region", e->region);
	spec_add(h, "filename", e->filename);
	spec_add(h, "sha256", e->sha256);
	spec_add(h, "size", size);
	hexhash_final(h, out);
	free(url);
}

int source_content_key(const struct source_file *f, char **out)
{
	char hash[65], *text = NULL;
	const char *url = f->entry->url ? f->entry->url : f->path;
	int rc;

	if (f->sha256 && !f->hash_fetched)
		return asprintf(out, "sha256:%s", f->sha256) < 0 ? -ENOMEM : 0;
	if (f->git_sha1)
		return asprintf(out, "git:%s", f->git_sha1) < 0 ? -ENOMEM : 0;
	/* The URL without its query: a presigned link changes its signature
	 * on every resolution, not its content. */
	if (asprintf(&text, "%.*s\n%s\n%lld", (int)strcspn(url, "?#"), url,
		     f->validator ? f->validator : "", (long long)f->size) < 0)
		return -ENOMEM;
	rc = hexhash_sha256(text, strlen(text), hash);
	free(text);
	if (rc)
		return rc;
	return asprintf(out, "url:%s", hash) < 0 ? -ENOMEM : 0;
}

bool source_content_key_settled(const struct source_file *f)
{
	return f->sha256 && !f->hash_fetched;
}

static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

void source_auth_clear(struct source_auth *a)
{
	free(a->origin_url);
	free_secret(a->authorization);
	free(a->aws_sigv4);
	free_secret(a->aws_credentials);
	free_secret(a->aws_session_token);
	free(a->token_name);
	memset(a, 0, sizeof(*a));
}

int source_auth_copy(struct source_auth *dst, const struct source_auth *src)
{
	struct source_auth a = { .headers = src->headers, .n_headers = src->n_headers };
	bool oom = false;

	a.origin_url = dup_or_null(src->origin_url, &oom);
	a.authorization = dup_or_null(src->authorization, &oom);
	a.aws_sigv4 = dup_or_null(src->aws_sigv4, &oom);
	a.aws_credentials = dup_or_null(src->aws_credentials, &oom);
	a.aws_session_token = dup_or_null(src->aws_session_token, &oom);
	a.token_name = dup_or_null(src->token_name, &oom);
	if (oom) {
		source_auth_clear(&a);
		return -ENOMEM;
	}
	source_auth_clear(dst);
	*dst = a;
	return 0;
}

void source_file_clear(struct source_file *f)
{
	free(f->path);
	free(f->remote_path);
	free(f->validator);
	free(f->revision);
	free(f->sha256);
	free(f->git_sha1);
	free_secret(f->data_url);
	free(f->stable_url);
	for (size_t i = 0; f->mirror_urls && f->mirror_urls[i]; i++)
		free(f->mirror_urls[i]);
	free(f->mirror_urls);
	source_auth_clear(&f->auth);
	free(f->error);
	memset(f, 0, sizeof(*f));
}

void source_files_free(struct source_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++)
		source_file_clear(&files[i]);
	free(files);
}
