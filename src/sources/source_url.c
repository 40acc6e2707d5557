/*
 * source_url.c: plain http(s) entries. A file is resolved with one GET of
 * bytes 0-0 that follows redirects: the 206 gives the size (Content-Range
 * total), the validator and the final (maybe signed) URL, and proves the
 * server honours Range. HEAD is not used: presigned GET URLs refuse it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/log.h"
#include "source_i.h"

static int discard(void *ctx, uint64_t offset, const void *data, size_t len)
{
	return 0;
}

/* The file name a Content-Disposition header gives (filename*=UTF-8''
 * preferred over filename=), or NULL. Never a path: a '/' rejects it. */
static char *disposition_name(const char *cd)
{
	const char *p;
	char *name = NULL;
	size_t o = 0;

	if (!cd)
		return NULL;
	if ((p = strstr(cd, "filename*=")) && strncasecmp(p + 10, "UTF-8''", 7) == 0) {
		p += 17;
		name = malloc(strlen(p) + 1);
		for (; name && *p && *p != ';' && *p != ' '; p++) {
			unsigned int ch;

			if (*p == '%' && sscanf(p + 1, "%2x", &ch) == 1) {
				name[o++] = (char)ch;
				p += 2;
			} else {
				name[o++] = *p;
			}
		}
	} else if ((p = strstr(cd, "filename=\"")) != NULL) {
		p += 10;
		name = malloc(strlen(p) + 1);
		for (; name && *p && *p != '"'; p++)
			name[o++] = *p;
	}
	if (!name)
		return NULL;
	name[o] = '\0';
	if (o == 0 || memchr(name, '/', o) || strlen(name) != o ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		free(name);
		return NULL;
	}
	return name;
}

/* The entry's own headers and Authorization, for its own host only. */
static int fill_auth(struct source_file *f)
{
	const struct config_entry *e = f->entry;
	struct source_auth a = {
		.origin_url = (char *)e->url,
		.authorization = e->auth_header,
		.headers = e->headers,
		.n_headers = e->n_headers,
	};

	return source_auth_copy(&f->auth, &a);
}

/* Turn the probe's outcome into f's fields or its error. */
static int apply_probe(struct source_file *f, int rc, struct http_meta *m)
{
	const struct config_entry *e = f->entry;

	if (rc == -ERANGE && m->total_size == 0)
		rc = 0;		/* an empty file: bytes 0-0 is unsatisfiable */
	switch (rc) {
	case 0:
		break;
	case -EAGAIN:
		source_set_error(f, -EAGAIN, "origin unreachable: %s", m->error_text ? m->error_text : "no answer");
		return -EAGAIN;
	case -ENOENT:
		source_set_error(f, -ENOENT, "not found at the origin (HTTP %ld): check the url", m->status);
		return 0;
	case -EACCES:
		source_set_error(f, -EACCES, "access denied (HTTP %ld): check auth_header/headers or the "
			  "link's sharing settings", m->status);
		return 0;
	case -EPROTO:
		/* A server that ignores Range still serves the file: the engine
		 * streams it once, in order. Nothing else is usable. */
		if (m->range_ignored && m->total_size >= 0) {
			f->no_range = true;
			break;
		}
		source_set_error(f, -EPROTO, "unusable answer: %s",
				 m->error_text ? m->error_text : "malformed response");
		return 0;
	default:
		source_set_error(f, rc, "resolution failed: %s", m->error_text ? m->error_text : strerror(-rc));
		return 0;
	}
	if (m->total_size < 0) {
		source_set_error(f, -EPROTO, "the server gave no size (no Content-Range total)");
		return 0;
	}
	if (e->size >= 0 && e->size != m->total_size) {
		source_set_error(f, -EPROTO, "size mismatch: the origin has %lld bytes but the config "
			  "says %lld", (long long)m->total_size, (long long)e->size);
		return 0;
	}
	f->size = m->total_size;
	f->mtime = m->mtime;
	free(f->validator);
	f->validator = NULL;
	if (m->etag && http_etag_is_strong(m->etag))
		f->validator = strdup(m->etag);
	else if (m->last_modified)
		f->validator = strdup(m->last_modified);
	free(f->data_url);
	f->data_url = strdup(m->final_url ? m->final_url : e->url);
	if (!f->data_url || fill_auth(f) != 0)
		return -ENOMEM;
	if (!e->filename) {
		char *name = disposition_name(m->content_disposition);

		if (name) {
			free(f->path);
			f->path = NULL;
			rc = source_join_path(e->dir, name, &f->path);
			free(name);
			if (rc)
				return rc;
		}
	}
	f->err = 0;
	free(f->error);
	f->error = NULL;
	return 0;
}

static int probe(struct http_client *c, struct source_file *f)
{
	const struct config_entry *e = f->entry;
	struct http_meta m;
	struct http_request rq = {
		.url = e->url,
		.headers = e->headers,
		.n_headers = e->n_headers,
		.authorization = e->auth_header,
		.range_first = 0,
		.range_len = 1,
		.follow_redirects = true,
		.timeout_sec = 30,
	};
	int rc = http_get(c, &rq, discard, NULL, &m);

	rc = apply_probe(f, rc, &m);
	log_debug("event=resolve entry=%s status=%ld size=%lld rc=%d", e->id, m.status,
		  (long long)f->size, f->err);
	http_meta_clear(&m);
	return rc;
}

static int url_resolve(struct source_ctx *ctx, struct http_client *c,
		       const struct config_entry *e, struct source_file **files, size_t *n)
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
	rc = probe(c, f);
	if (rc && rc != -EAGAIN) {
		source_files_free(f, 1);
		return rc;
	}
	*files = f;
	*n = 1;
	return rc;
}

static int url_refresh(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	char *validator = f->validator ? strdup(f->validator) : NULL;
	int64_t size = f->size;
	int rc = probe(c, f);

	if (rc == 0 && f->err)
		rc = f->err;
	/* The same name must still mean the same bytes. */
	if (rc == 0 && (f->size != size ||
			(validator && (!f->validator || strcmp(validator, f->validator) != 0))))
		rc = -ESTALE;
	free(validator);
	return rc;
}

const struct source_ops source_url_ops = {
	.kind = CONFIG_SOURCE_URL,
	.resolve = url_resolve,
	.refresh = url_refresh,
};
