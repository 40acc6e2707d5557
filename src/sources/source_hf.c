/*
 * source_hf.c: Hugging Face Hub entries (PROTOCOLS.md §1). A single file
 * is resolved with one GET of bytes 0-0 on its /resolve/ URL that follows
 * only same-origin (relative) redirects, with the token: the answer that
 * ends there (the 302 to the signed CDN, or the file itself) carries the
 * commit (X-Repo-Commit), the size (X-Linked-Size, else the Content-Range
 * total) and the hash (X-Linked-Etag: the sha256 of an LFS file; ETag: the
 * git blob sha1 of a regular one). A CDN answer carries none of these,
 * which is why the absolute redirect is not followed. A repo as a folder
 * pins its revision to a commit (model info), lists the tree at that
 * commit (Link-header pages) and makes one file per path the entry's
 * include/exclude globs keep, with size and hash from the listing; an LFS
 * one gets its signed CDN URL at its first read (source_refresh), a
 * regular one is read through its /resolve/ URL at the commit, whose
 * same-origin redirects keep the token. Every URL is built on the commit,
 * so a branch that moves never changes the bytes under a running program;
 * the CDN never sees the token (http.c sends it to hf_endpoint only).
 *
 * The token is looked up as huggingface_hub does (HF_TOKEN,
 * HUGGING_FACE_HUB_TOKEN, the token file) and checked once against
 * /api/whoami-v2 (source_token_get()); a refused token fails every entry
 * with one message that names where the token came from, never its value.
 * The Hub's answers become errnos in one place, hf_fail(), X-Error-Code
 * first. 429/5xx answers are retried here, honouring Retry-After and
 * RateLimit t= (http.c puts either in retry_after_sec); an unreachable
 * Hub is -EAGAIN at once, so the catalog can fall back to the stored
 * resolution. Mirrors are other endpoints with the same paths: tried in
 * order when the Hub cannot be reached, and given to the engine as
 * mirror_urls. No state is shared but the token slot.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "modelfs/clock.h"
#include "modelfs/log.h"
#include "modelfs/secret.h"
#include "modelfs/text.h"
#include "source_i.h"

#define PROBE_HOPS		10		/* same-origin redirects followed by a probe */
#define HF_TRIES		5		/* answers (429, 5xx) tried this often in all */
#define HF_WAIT_MAX_SEC		30		/* a longer Retry-After is not waited for */
#define HF_BUDGET_MAX_SEC	60		/* retry waits of one resolution, at most */
#define BODY_MAX		(64u << 20)	/* an API answer larger than this is refused */
#define TREE_PAGES_MAX		10000
#define SETTINGS_URL		"https://huggingface.co/settings/tokens"

/* Headers the Hub's answers carry that http_meta has no field for. */
static const char *const want_headers[] = {
	"X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size", "X-Error-Code", "Link", NULL
};
enum { H_COMMIT, H_LINKED_ETAG, H_LINKED_SIZE, H_ERROR_CODE, H_LINK };

/* One resolution: the entry, where it is asked, with what credential. */
struct hf {
	struct source_ctx *ctx;
	struct http_client *c;
	const struct config_entry *e;
	const struct config *cfg;
	const char *endpoint;		/* where requests go now: hf_endpoint or a mirror */
	const char *authorization;	/* for endpoint; NULL on a mirror; secret */
	char *bearer;			/* "Bearer <token>" or the entry's auth_header; secret */
	char *token_name;		/* "HF_TOKEN", a token file, or NULL */
	int token_rc;			/* -EACCES: the token was refused */
	char *token_error;		/* why, naming token_name */
	int64_t deadline_ms;		/* no retry wait goes past this */
};

/* What a probe of a /resolve/ URL found. */
struct probe {
	char *commit;
	char *etag;			/* X-Linked-Etag, else ETag, without W/ and quotes */
	int64_t size;
	char *cdn_url;			/* the absolute redirect target, or NULL */
	bool range_ignored;
};

/* One file of a tree listing. */
/* ---- small helpers ------------------------------------------------------ */

static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

static const char *header(const struct http_meta *m, int which)
{
	return m->header_values && (size_t)which < m->n_header_values ?
	       m->header_values[which] : NULL;
}

static char *lower_dup(const char *s)
{
	char *d = strdup(s);

	for (char *p = d; p && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

/* Strict decimal into *out: 0 or -EINVAL. */
static int parse_size(const char *s, int64_t *out)
{
	int64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return 0;
}

/* Python's quote(s, safe="/" or ""): everything but A-Za-z0-9_.-~ (and '/'
 * when keep_slash) as %XX of its UTF-8 bytes (PROTOCOLS §1.1). */
static char *quote(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '_' || *p == '.' || *p == '-' || *p == '~' ||
		    (keep_slash && *p == '/')) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static const char *url_prefix(const struct config_entry *e)
{
	if (e->repo_type && strcmp(e->repo_type, "dataset") == 0)
		return "datasets/";
	if (e->repo_type && strcmp(e->repo_type, "space") == 0)
		return "spaces/";
	return "";
}

static const char *api_plural(const struct config_entry *e)
{
	if (e->repo_type && strcmp(e->repo_type, "dataset") == 0)
		return "datasets";
	if (e->repo_type && strcmp(e->repo_type, "space") == 0)
		return "spaces";
	return "models";
}

/* {endpoint}/{prefix}{repo}/resolve/{quote(rev,"")}/{quote(path,"/")}, the
 * endpoint without a trailing '/' (mirrors are written either way). */
static char *resolve_url(const char *endpoint, const struct config_entry *e,
			 const char *rev, const char *path)
{
	char *qrev = quote(rev, false), *qpath = quote(path, true), *url = NULL;
	int elen = (int)strlen(endpoint);

	while (elen > 0 && endpoint[elen - 1] == '/')
		elen--;
	if (qrev && qpath && asprintf(&url, "%.*s/%s%s/resolve/%s/%s", elen, endpoint,
				      url_prefix(e), e->repo, qrev, qpath) < 0)
		url = NULL;
	free(qrev);
	free(qpath);
	return url;
}

static bool same_origin(const char *a, const char *b)
{
	char oa[320], ob[320];

	return http_url_origin(a, oa, sizeof(oa)) == 0 && http_url_origin(b, ob, sizeof(ob)) == 0 &&
	       strcmp(oa, ob) == 0;
}


/* ---- the token (PROTOCOLS §1.8) ------------------------------------------ */

static bool truthy(const char *v)
{
	return v && (strcasecmp(v, "1") == 0 || strcasecmp(v, "on") == 0 ||
		     strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0);
}

/* "~" and "~/x" as Python's expanduser reads them (with $HOME). */
static char *expand_user(const char *p)
{
	const char *home = getenv("HOME");
	char *out = NULL;

	if (p[0] == '~' && (p[1] == '/' || p[1] == '\0') && home)
		return asprintf(&out, "%s%s", home, p + 1) < 0 ? NULL : out;
	return strdup(p);
}

/* HF_TOKEN_PATH, else $HF_HOME/token, HF_HOME defaulting to
 * $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface. */
static char *token_path(void)
{
	const char *v = getenv("HF_TOKEN_PATH"), *xdg = getenv("XDG_CACHE_HOME");
	char *home = NULL, *path = NULL;

	if (v && *v)
		return expand_user(v);
	if ((v = getenv("HF_HOME")) && *v)
		home = expand_user(v);
	else if (xdg && *xdg && asprintf(&home, "%s/huggingface", xdg) < 0)
		home = NULL;
	else if (!(xdg && *xdg))
		home = expand_user("~/.cache/huggingface");
	if (home && asprintf(&path, "%s/token", home) < 0)
		path = NULL;
	free(home);
	return path;
}

static char *read_token_file(const char *path)
{
	char *token = NULL;
	int rc = secret_read_file(path, &token);

	if (rc && rc != -ENOENT && rc != -ENOTDIR && rc != -ENODATA)
		log_warn("event=hf_token_unreadable path=%s error=\"%s\" action=\"no token "
			 "used\"", path, strerror(-rc));
	return token;
}

/* source_token lookup: value and name, or neither; 0 or -ENOMEM. */
static int hf_token_lookup(struct source_token *t)
{
	static const char *const envs[] = { "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN" };
	char *path;

	/* A Hub that could not be reached has the lookup run again. */
	free_secret(t->value);
	free(t->name);
	t->value = t->name = NULL;
	/* Read calls send no implicit token at all (environment docs). */
	if (truthy(getenv("HF_HUB_DISABLE_IMPLICIT_TOKEN")))
		return 0;
	/* `HF_TOKEN or HUGGING_FACE_HUB_TOKEN`, then cleaned: a blank value
	 * falls through to the token file as in huggingface_hub. */
	for (size_t i = 0; i < 2; i++) {
		const char *v = getenv(envs[i]);

		if (!v || !*v)
			continue;
		t->value = secret_clean(v);
		if (t->value) {
			t->name = strdup(envs[i]);
			goto found;
		}
		break;
	}
	path = token_path();
	if (!path)
		return -ENOMEM;
	t->value = read_token_file(path);
	if (t->value && asprintf(&t->name, "the token file %s", path) < 0)
		t->name = NULL;
	free(path);
	if (!t->value)
		return 0;
found:
	if (!t->name)
		return -ENOMEM;
	log_add_secret(t->value);
	return 0;
}

/* source_token validate: ask whoami-v2 once. 0 valid (or not decidable:
 * the resolutions will tell), -EACCES refused, -EAGAIN Hub unreachable. */
static int hf_token_validate(struct source_ctx *ctx, struct http_client *c, struct source_token *t)
{
	struct http_request rq = { .follow_redirects = true, .timeout_sec = 30 };
	struct http_body b = { .max = BODY_MAX };
	struct http_meta m;
	char *url = NULL, *auth = NULL;
	json_t *root = NULL, *name;
	int rc;

	if (asprintf(&url, "%s/api/whoami-v2", ctx->cfg->hf_endpoint) < 0)
		return -ENOMEM;
	if (asprintf(&auth, "Bearer %s", t->value) < 0) {
		free(url);
		return -ENOMEM;
	}
	rq.url = url;
	rq.authorization = auth;
	rc = http_get(c, &rq, http_body_sink, &b, &m);
	free_secret(auth);
	if (rc == 0) {
		root = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
		name = json_is_object(root) ? json_object_get(root, "name") : NULL;
		if (json_is_string(name))
			t->user = strdup(json_string_value(name));
		log_info("event=hf_token source=%s user=%s", t->name, t->user ? t->user : "?");
	} else if (rc == -EACCES && m.status == 401) {
		if (asprintf(&t->error, "%s is invalid (whoami-v2 said 401): create a new token at "
			     SETTINGS_URL, t->name) < 0)
			t->error = NULL;
		log_error("event=hf_token_invalid source=%s error=\"%s\"", t->name,
			  t->error ? t->error : "invalid");
	} else if (rc == -EAGAIN && m.status == 0) {
		log_warn("event=hf_token_unchecked source=%s reason=\"%s\"", t->name,
			 m.error_text ? m.error_text : "no answer");
	} else {
		/* A 429 (whoami-v2 is strict), a 5xx, a 403: the token may well be
		 * good; each resolution will see what the Hub thinks of it. */
		log_warn("event=hf_token_unchecked source=%s status=%ld reason=\"%s\"", t->name,
			 m.status, m.error_text ? m.error_text : "");
		rc = 0;
	}
	json_decref(root);
	free(b.data);
	free(url);
	http_meta_clear(&m);
	if (rc == -EACCES)
		return -EACCES;
	return rc == -EAGAIN ? -EAGAIN : 0;
}

/* Set h's credential: the entry's own auth_header, else the token. */
static int hf_init(struct hf *h, struct source_ctx *ctx, struct http_client *c,
		   const struct config_entry *e)
{
	char *value = NULL;
	int rc;

	memset(h, 0, sizeof(*h));
	h->ctx = ctx;
	h->c = c;
	h->e = e;
	h->cfg = ctx->cfg;
	h->endpoint = ctx->cfg->hf_endpoint;
	/* A mount waits for its resolutions: rate limits are honoured, but
	 * only so long (the catalog falls back to a stored resolution). */
	h->deadline_ms = clock_now_ms() + (int64_t)(ctx->cfg->retry_timeout_sec < HF_BUDGET_MAX_SEC ?
					      ctx->cfg->retry_timeout_sec : HF_BUDGET_MAX_SEC) * 1000;
	if (e->auth_header) {
		/* Explicit: sent as written, not validated (it may not be a token). */
		h->bearer = strdup(e->auth_header);
		if (!h->bearer)
			return -ENOMEM;
		h->authorization = h->bearer;
		return 0;
	}
	rc = source_token_get(&ctx->hf, hf_token_lookup, hf_token_validate, ctx, c, &value,
			      &h->token_name, &h->token_error);
	if (rc == -ENOMEM) {
		free_secret(value);
		return rc;
	}
	/* -EAGAIN: whoami could not be asked; the token is still the one to use. */
	h->token_rc = rc == -EACCES ? -EACCES : 0;
	if (value) {
		rc = asprintf(&h->bearer, "Bearer %s", value);
		free_secret(value);
		if (rc < 0) {
			h->bearer = NULL;
			return -ENOMEM;
		}
		h->authorization = h->bearer;
	}
	return 0;
}

static void hf_clear(struct hf *h)
{
	free_secret(h->bearer);
	free(h->token_name);
	free(h->token_error);
}

/* Use endpoint (the Hub itself, or a mirror that must not see the token). */
static void hf_use(struct hf *h, const char *endpoint)
{
	h->endpoint = endpoint;
	h->authorization = strcmp(endpoint, h->cfg->hf_endpoint) == 0 ? h->bearer : NULL;
}

/* ---- requests ----------------------------------------------------------- */

/*
 * One GET to the current endpoint: a probe (bytes 0-0, redirects returned
 * to the caller) or an API call (redirects followed, body into b). Answers
 * that ask to come back (429, 5xx, 408) are retried up to HF_TRIES times,
 * waiting what the Hub said (Retry-After, RateLimit t=) or 1, 2, 4 s; no
 * answer at all is -EAGAIN at once. http_get's return; *m to be cleared.
 */
static int hf_get(struct hf *h, const char *url, bool probe, struct http_body *b, struct http_meta *m)
{
	/* The entry's headers are for the Hub, like its token: not for a mirror. */
	bool hub = strcmp(h->endpoint, h->cfg->hf_endpoint) == 0;

	for (int attempt = 1;; attempt++) {
		struct http_request rq = {
			.url = url,
			.origin_url = h->endpoint,
			.headers = hub ? h->e->headers : NULL,
			.n_headers = hub ? h->e->n_headers : 0,
			.authorization = h->authorization,
			.range_first = 0,
			.range_len = probe ? 1 : 0,
			.follow_redirects = !probe,
			.timeout_sec = 30,
			.want_headers = want_headers,
		};
		int64_t wait_ms;
		int rc;

		if (b)
			b->len = 0;
		rc = http_get(h->c, &rq, b ? http_body_sink : NULL, b, m);
		if (rc != -EAGAIN || m->status == 0 || attempt == HF_TRIES)
			return rc;
		wait_ms = m->retry_after_sec >= 0 ? (int64_t)m->retry_after_sec * 1000 + 100
						  : (int64_t)1000 << (attempt - 1);
		if (wait_ms > (int64_t)HF_WAIT_MAX_SEC * 1000 || clock_now_ms() + wait_ms > h->deadline_ms)
			return rc;
		log_warn("event=hf_retry entry=%s status=%ld attempt=%d wait_ms=%lld reason=\"%s\"",
			 h->e->id, m->status, attempt, (long long)wait_ms,
			 m->error_text ? m->error_text : "");
		http_meta_clear(m);
		struct timespec ts = { .tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}

/*
 * The one place an answer of the Hub becomes f's errno and message
 * (PROTOCOLS §1.6): X-Error-Code first, then the status. path is the
 * file asked for, or NULL for the repo. Returns -EAGAIN when the Hub was
 * not reached or kept asking to come back, else 0 (f->err tells).
 */
static int hf_fail(struct hf *h, struct source_file *f, int rc, const struct http_meta *m,
		   const char *rev, const char *path)
{
	const struct config_entry *e = h->e;
	const char *code = header(m, H_ERROR_CODE), *text = m->error_text ? m->error_text : "";
	const char *who = h->token_name ? h->token_name : e->auth_header ? "auth_header" : NULL;
	char hint[200];

	if (who)
		snprintf(hint, sizeof(hint), "the token (%s) cannot read it", who);
	else
		snprintf(hint, sizeof(hint), "no token was sent: set HF_TOKEN");
	if (rc == -EAGAIN) {
		if (m->status == 0)
			source_set_error(f, -EAGAIN, "cannot reach the Hub at %s: %s", h->endpoint,
					 text[0] ? text : "no answer");
		else
			source_set_error(f, -EAGAIN, "the Hub at %s kept answering %s; try again later",
					 h->endpoint, text[0] ? text : "errors");
		return -EAGAIN;
	}
	if (code && strcmp(code, "GatedRepo") == 0) {
		source_set_error(f, -EACCES, "%s is gated: request access at %s/%s%s and use a token "
				 "that has it (token: %s)", e->repo, h->cfg->hf_endpoint,
				 url_prefix(e), e->repo, who ? who : "none, set HF_TOKEN");
		f->gated = true;
	} else if (code && strcmp(code, "RevisionNotFound") == 0) {
		source_set_error(f, -ENOENT, "revision \"%s\" not found in %s: check revision",
				 rev, e->repo);
	} else if (code && strcmp(code, "EntryNotFound") == 0) {
		source_set_error(f, -ENOENT, "%s not found in %s at revision \"%s\": check file",
				 path ? path : "path", e->repo, rev);
	} else if (m->status == 401 && strstr(text, "Invalid credentials")) {
		source_set_error(f, -EACCES, "%s is invalid (the Hub said 401 Invalid credentials "
				 "in Authorization header): create a new token at " SETTINGS_URL,
				 who ? who : "the token");
	} else if ((code && strcmp(code, "RepoNotFound") == 0) || m->status == 401) {
		/* A 401 on a repo URL without the credentials message is
		 * RepoNotFound: private and gated repos look missing too. */
		source_set_error(f, -ENOENT, "repository %s%s not found at %s (or it is private "
				 "and %s)", url_prefix(e), e->repo, h->endpoint, hint);
	} else if (m->status == 403 && strstr(text, "disabled")) {
		source_set_error(f, -EACCES, "%s is disabled on the Hub (%s)", e->repo, text);
	} else if (m->status == 403) {
		source_set_error(f, -EACCES, "the Hub refused access to %s (%s); %s", e->repo,
				 text, hint);
	} else if (rc == -ENOENT) {
		source_set_error(f, -ENOENT, "%s%s%s not found at revision \"%s\" (%s)", e->repo,
				 path ? "/" : "", path ? path : "", rev, text);
	} else {
		source_set_error(f, rc == -EPROTO ? -EPROTO : -EIO, "unusable answer from the Hub "
				 "at %s: %s", h->endpoint, text[0] ? text : strerror(-rc));
	}
	return 0;
}

static void probe_clear(struct probe *p)
{
	free(p->commit);
	free(p->etag);
	free_secret(p->cdn_url);
	memset(p, 0, sizeof(*p));
}

/* "W/\"abc\"" -> "abc". */
static char *normalize_etag(const char *v)
{
	size_t n;

	if (!v)
		return NULL;
	if (strncmp(v, "W/", 2) == 0)
		v += 2;
	n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
		return strndup(v + 1, n - 2);
	return strdup(v);
}

/* Read a final answer's metadata into p (§1.2): 0, or -EPROTO with f's
 * error set when the answer is not the Hub's. */
static int probe_take(struct hf *h, struct source_file *f, const struct http_meta *m,
		      bool redirect, struct probe *p)
{
	const char *commit = header(m, H_COMMIT), *lsize = header(m, H_LINKED_SIZE);
	const char *letag = header(m, H_LINKED_ETAG);

	if (!text_is_hex(commit, 40, false)) {
		source_set_error(f, -EPROTO, "%s does not answer like a Hugging Face Hub (no "
				 "X-Repo-Commit): check hf_endpoint", h->endpoint);
		return -EPROTO;
	}
	p->commit = lower_dup(commit);
	p->etag = normalize_etag(letag ? letag : m->etag);
	p->size = -1;
	if (lsize)
		parse_size(lsize, &p->size);
	else if (!redirect)
		p->size = m->total_size;	/* a redirect's Content-Length is its body's */
	if (!p->commit || ((letag || m->etag) && !p->etag))
		return -ENOMEM;
	if (p->size < 0) {
		source_set_error(f, -EPROTO, "the Hub gave no size for %s (no X-Linked-Size, no "
				 "Content-Range)", f->remote_path ? f->remote_path : h->e->file);
		return -EPROTO;
	}
	return 0;
}

/*
 * GET bytes=0-0 of path at rev on the current endpoint, following
 * same-origin redirects only (renamed repos, /api/resolve-cache/: the
 * token goes along) and stopping at an absolute one (the CDN). 0 with p
 * filled, or f's error set: -EAGAIN (Hub not reached), 0 with f->err,
 * -ENOMEM.
 */
static int probe(struct hf *h, struct source_file *f, const char *rev, const char *path,
		 struct probe *p)
{
	char *url = resolve_url(h->endpoint, h->e, rev, path);
	struct http_meta m;
	int rc = -ENOMEM;

	memset(p, 0, sizeof(*p));
	for (int hop = 0; url; hop++) {
		rc = hf_get(h, url, true, NULL, &m);
		if (rc == -EPROTO && m.range_ignored) {
			/* The file came whole: its headers still describe it. */
			p->range_ignored = true;
			rc = 0;
		}
		if (rc) {
			rc = hf_fail(h, f, rc, &m, rev, path);
			break;
		}
		if (m.status >= 300 && m.status < 400 && m.location && same_origin(m.location, url)) {
			if (hop == PROBE_HOPS) {
				source_set_error(f, -EPROTO, "more than %d redirects at %s",
						 PROBE_HOPS, h->endpoint);
				rc = 0;
				break;
			}
			free(url);
			url = strdup(m.location);
			http_meta_clear(&m);
			rc = -ENOMEM;
			continue;
		}
		if (m.status >= 300 && m.status < 400) {
			p->cdn_url = m.location ? strdup(m.location) : NULL;
			rc = p->cdn_url ? probe_take(h, f, &m, true, p) : -ENOMEM;
		} else {
			rc = probe_take(h, f, &m, false, p);
		}
		if (rc == -EPROTO)
			rc = 0;		/* f->err tells */
		break;
	}
	if (url)
		http_meta_clear(&m);
	free(url);
	if (rc || f->err)
		probe_clear(p);
	return rc;
}

/* ---- files ------------------------------------------------------------- */

/* f's auth: the token for the Hub's own origin, never for a mirror or CDN. */
static int fill_auth(struct hf *h, struct source_file *f)
{
	struct source_auth a = {
		.origin_url = (char *)h->cfg->hf_endpoint,
		.authorization = h->bearer,
		.headers = h->e->headers,
		.n_headers = h->e->n_headers,
		.token_name = h->token_name,
	};

	return source_auth_copy(&f->auth, &a);
}

/* f->mirror_urls: path at commit on every endpoint but the one used (the
 * Hub first when a mirror was used). */
static int fill_mirrors(struct hf *h, struct source_file *f, const char *commit, const char *path)
{
	const struct config_entry *e = h->e;
	size_t n = 0, k = 0;
	char **urls;

	for (size_t i = 0; e->mirrors && e->mirrors[i]; i++)
		n++;
	for (size_t i = 0; f->mirror_urls && f->mirror_urls[i]; i++)
		free(f->mirror_urls[i]);
	free(f->mirror_urls);
	f->mirror_urls = NULL;
	if (n == 0)
		return 0;
	urls = calloc(n + 2, sizeof(*urls));
	if (!urls)
		return -ENOMEM;
	f->mirror_urls = urls;
	if (strcmp(h->endpoint, h->cfg->hf_endpoint) != 0 &&
	    !(urls[k++] = resolve_url(h->cfg->hf_endpoint, e, commit, path)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (e->mirrors[i] == h->endpoint)
			continue;
		if (!(urls[k++] = resolve_url(e->mirrors[i], e, commit, path)))
			return -ENOMEM;
	}
	return 0;
}

/* f->stable_url: the file at its commit on the endpoint in use, which a
 * tier can fetch and follow to the CDN for as long as the commit exists
 * (a signed CDN URL expires, and "main" moves). */
static int set_stable_url(struct hf *h, struct source_file *f, const char *commit,
			  const char *path)
{
	free(f->stable_url);
	f->stable_url = resolve_url(h->endpoint, h->e, commit, path);
	f->stable_by_commit = true;
	return f->stable_url ? 0 : -ENOMEM;
}

static void clear_error(struct source_file *f)
{
	f->err = 0;
	free(f->error);
	f->error = NULL;
}

/* The hash a probe or listing gives, checked against the config's pins. */
static int take_hashes(struct hf *h, struct source_file *f, const char *etag, int64_t size,
		       const char *commit)
{
	const struct config_entry *e = h->e;
	char *sha = NULL, *git = NULL;

	if ((text_is_hex(etag, 64, false) && !(sha = lower_dup(etag))) ||
	    (text_is_hex(etag, 40, false) && !(git = lower_dup(etag))))
		return -ENOMEM;		/* (an etag has one of the two lengths) */
	if (e->size >= 0 && e->size != size) {
		source_set_error(f, -EPROTO, "size mismatch: %s at %.12s has %lld bytes but the config "
				 "says %lld", f->remote_path, commit, (long long)size, (long long)e->size);
		goto out;
	}
	if (e->sha256 && sha && strcasecmp(e->sha256, sha) != 0) {
		source_set_error(f, -EPROTO, "sha256 mismatch: the config pins %s but %s at %.12s "
				 "has %s", e->sha256, f->remote_path, commit, sha);
		goto out;
	}
	if (e->sha256 && !sha && !(sha = strdup(e->sha256))) {
		free(git);
		return -ENOMEM;
	}
	free(f->sha256);
	free(f->git_sha1);
	f->sha256 = sha;
	f->git_sha1 = sha ? NULL : git;
	if (sha)
		free(git);
	f->size = size;
	return 0;
out:
	free(sha);
	free(git);
	return 0;
}

/*
 * Resolve f (remote_path at rev) on the current endpoint: 0 with f filled
 * or f->err set, -EAGAIN when the endpoint was not reached, -ENOMEM.
 */
static int resolve_at(struct hf *h, struct source_file *f, const char *rev)
{
	struct probe p;
	char *commit;
	int rc;

	clear_error(f);
	if (h->token_rc == -EACCES && h->authorization) {
		source_set_error(f, -EACCES, "%s", h->token_error ? h->token_error :
				 "the Hugging Face token is invalid");
		return 0;
	}
	rc = probe(h, f, rev, f->remote_path, &p);
	if (rc || f->err)
		return rc;
	rc = take_hashes(h, f, p.etag, p.size, p.commit);
	if (rc || f->err)
		goto out;
	commit = p.commit;
	p.commit = NULL;
	free(f->revision);
	f->revision = commit;
	free_secret(f->data_url);
	/* The signed CDN URL, else the file at its commit (never at a branch). */
	f->data_url = p.cdn_url ? p.cdn_url : resolve_url(h->endpoint, h->e, commit,
							  f->remote_path);
	p.cdn_url = NULL;
	f->no_range = p.range_ignored;
	/* Without a hash, the commit names the content (in the cache key);
	 * it is no ETag, so it is never sent as If-Range. */
	free(f->validator);
	f->validator = NULL;
	if ((!f->sha256 && !f->git_sha1 && !(f->validator = strdup(commit))) || !f->data_url ||
	    fill_auth(h, f) || fill_mirrors(h, f, commit, f->remote_path) ||
	    set_stable_url(h, f, commit, f->remote_path))
		rc = -ENOMEM;
	log_debug("event=hf_resolved entry=%s path=%s commit=%.12s size=%lld cdn=%d", h->e->id,
		  f->remote_path, commit, (long long)f->size, f->data_url &&
		  !same_origin(f->data_url, h->endpoint));
out:
	probe_clear(&p);
	return rc;
}

/* resolve_at on the Hub, then on each mirror while none could be reached. */
static int resolve_anywhere(struct hf *h, struct source_file *f, const char *rev)
{
	const struct config_entry *e = h->e;
	int rc;

	if (truthy(getenv("HF_HUB_OFFLINE")) || truthy(getenv("TRANSFORMERS_OFFLINE"))) {
		source_set_error(f, -EAGAIN, "HF_HUB_OFFLINE is set: not asking the Hub");
		return -EAGAIN;
	}
	hf_use(h, h->cfg->hf_endpoint);
	rc = resolve_at(h, f, rev);
	for (size_t i = 0; rc == -EAGAIN && e->mirrors && e->mirrors[i]; i++) {
		log_warn("event=hf_try_mirror entry=%s mirror=%s reason=\"%s\"", e->id, e->mirrors[i],
			 f->error ? f->error : "");
		hf_use(h, e->mirrors[i]);
		rc = resolve_at(h, f, rev);
	}
	return rc;
}

/* ---- a gated file's size, from the (public) listing ---------------------- */

void source_hf_tree_free(struct hf_tree_file *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].path);
		free(t[i].oid);
		free(t[i].lfs_oid);
	}
	free(t);
}

/* A repo path that is safe as a path in the mount. */
static bool safe_repo_path(const char *p, size_t len)
{
	if (len == 0 || strlen(p) != len || p[0] == '/' || p[len - 1] == '/')
		return false;
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");

		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n;
		if (*s)
			s++;
	}
	return true;
}

/* One page of the tree listing: see source_i.h. */
int source_hf_tree_page(const char *json, size_t len, struct hf_tree_file **t, size_t *n,
			size_t *cap)
{
	json_t *root = json_loadb(json ? json : "", len, 0, NULL), *item;
	size_t i;
	int rc = 0;

	if (!json_is_array(root)) {
		json_decref(root);
		return -EPROTO;
	}
	json_array_foreach(root, i, item) {
		json_t *type = json_object_get(item, "type"), *path = json_object_get(item, "path");
		json_t *size = json_object_get(item, "size"), *oid = json_object_get(item, "oid");
		json_t *lfs = json_object_get(item, "lfs");
		json_t *loid = json_is_object(lfs) ? json_object_get(lfs, "oid") : NULL;
		json_t *lsize = json_is_object(lfs) ? json_object_get(lfs, "size") : NULL;
		struct hf_tree_file *tf;

		if (!json_is_string(type) || strcmp(json_string_value(type), "file") != 0)
			continue;	/* directories, "unknown" */
		if (!json_is_string(path) ||
		    !safe_repo_path(json_string_value(path), json_string_length(path))) {
			log_warn("event=hf_tree_skip reason=\"a path unusable in the mount\"");
			continue;
		}
		if (*n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 64;
			struct hf_tree_file *grown = realloc(*t, ncap * sizeof(**t));

			if (!grown) {
				rc = -ENOMEM;
				break;
			}
			*t = grown;
			*cap = ncap;
		}
		tf = &(*t)[*n];
		memset(tf, 0, sizeof(*tf));
		tf->size = json_is_integer(lsize) ? json_integer_value(lsize) :
			   json_is_integer(size) ? json_integer_value(size) : -1;
		if (tf->size < 0)
			tf->size = -1;	/* unknown: a negative size is no size */
		tf->path = strdup(json_string_value(path));
		tf->oid = json_is_string(oid) ? lower_dup(json_string_value(oid)) : NULL;
		tf->lfs_oid = json_is_string(loid) ? lower_dup(json_string_value(loid)) : NULL;
		(*n)++;
		if (!tf->path || (json_is_string(oid) && !tf->oid) ||
		    (json_is_string(loid) && !tf->lfs_oid)) {
			rc = -ENOMEM;
			break;
		}
	}
	json_decref(root);
	return rc;
}

/* The next page's URL from a Link header: see source_i.h. */
char *source_hf_link_next(const char *v)
{
	for (const char *p = v ? strchr(v, '<') : NULL; p; p = strchr(p, '<')) {
		const char *end = strchr(p, '>'), *params, *stop;
		size_t plen;

		if (!end)
			break;
		params = end + 1;
		stop = strchr(params, '<');
		plen = stop ? (size_t)(stop - params) : strlen(params);
		for (const char *r = params; r < params + plen; r++) {
			const char *val;
			size_t vlen;

			if (strncasecmp(r, "rel=", 4) != 0)
				continue;
			val = r + 4 + (r[4] == '"');
			vlen = strcspn(val, "\";,");
			/* rel may list several types: "next last". */
			for (const char *w = val; w < val + vlen;) {
				size_t wl = strcspn(w, " \";,");

				if (wl == 4 && strncasecmp(w, "next", 4) == 0)
					return strndup(p + 1, (size_t)(end - p - 1));
				w += wl ? wl : 1;
			}
		}
		p = end + 1;
	}
	return NULL;
}

/* The next page, sent verbatim (§1.9), except that a Hub behind a mirror
 * or proxy may still name https://huggingface.co: that part becomes the
 * endpoint asked, as huggingface_hub's fix_hf_endpoint_in_url does. */
static char *next_page(struct hf *h, const char *link)
{
	static const char hub[] = "https://huggingface.co/";
	char *url = source_hf_link_next(link), *fixed = NULL;

	if (!url || strncmp(url, hub, sizeof(hub) - 1) != 0 ||
	    strncmp(h->endpoint, hub, sizeof(hub) - 2) == 0)
		return url;
	if (asprintf(&fixed, "%s/%s", h->endpoint, url + sizeof(hub) - 1) < 0)
		fixed = NULL;
	free(url);
	return fixed;
}

/*
 * Every file under dir ("" for all) at rev, recursively or not, following
 * the Link pages verbatim (§1.9). 0 with *out, or f's error set as
 * resolve_at() does.
 */
static int tree_list(struct hf *h, struct source_file *f, const char *rev, const char *dir,
		     bool recursive, struct hf_tree_file **out, size_t *nout)
{
	const struct config_entry *e = h->e;
	char *qrev = quote(rev, false), *qdir = dir[0] ? quote(dir, false) : strdup("");
	char *url = NULL, *prev = NULL;
	struct hf_tree_file *t = NULL;
	struct http_body b = { .max = BODY_MAX };
	size_t n = 0, cap = 0;
	int rc = -ENOMEM, pages = 0;

	*out = NULL;
	*nout = 0;
	if (qrev && qdir && asprintf(&url, "%s/api/%s/%s/tree/%s%s%s?recursive=%s&expand=false",
				     h->endpoint, api_plural(e), e->repo, qrev, dir[0] ? "/" : "",
				     qdir, recursive ? "true" : "false") < 0)
		url = NULL;
	while (url) {
		struct http_meta m;

		rc = hf_get(h, url, false, &b, &m);
		if (rc) {
			rc = hf_fail(h, f, rc, &m, rev, dir[0] ? dir : NULL);
			http_meta_clear(&m);
			break;
		}
		rc = source_hf_tree_page(b.data, b.len, &t, &n, &cap);
		free(prev);
		prev = url;
		url = rc ? NULL : next_page(h, header(&m, H_LINK));
		http_meta_clear(&m);
		if (rc == -EPROTO) {
			source_set_error(f, -EPROTO, "the tree listing of %s is not a JSON array",
					 e->repo);
			rc = 0;
			break;
		}
		if (rc)
			break;
		if (url && (++pages >= TREE_PAGES_MAX || strcmp(url, prev) == 0)) {
			source_set_error(f, -EPROTO, "the tree listing of %s does not end", e->repo);
			break;
		}
	}
	free(url);
	free(prev);
	free(qrev);
	free(qdir);
	free(b.data);
	if (rc || f->err) {
		source_hf_tree_free(t, n);
		return rc;
	}
	*out = t;
	*nout = n;
	return 0;
}

/* A gated file is listed all the same: its size and hash from the listing
 * of its folder (metadata of gated repos is public), else the config's. */
static void gated_details(struct hf *h, struct source_file *f, const char *rev)
{
	struct source_file probe_f = { .entry = h->e };
	const char *slash = strrchr(f->remote_path, '/');
	char *dir = slash ? strndup(f->remote_path, (size_t)(slash - f->remote_path)) : strdup("");
	struct hf_tree_file *t = NULL;
	size_t n = 0;

	f->size = h->e->size;
	if (dir && tree_list(h, &probe_f, rev, dir, false, &t, &n) == 0 && !probe_f.err) {
		for (size_t i = 0; i < n; i++) {
			if (strcmp(t[i].path, f->remote_path) != 0)
				continue;
			f->size = t[i].size;
			if (t[i].lfs_oid && text_is_hex(t[i].lfs_oid, 64, false) && !f->sha256)
				f->sha256 = strdup(t[i].lfs_oid);
		}
	}
	source_hf_tree_free(t, n);
	free(probe_f.error);
	free(dir);
}

/* ---- single files --------------------------------------------------------- */

static int pin_revision(struct hf *h, struct source_file *f, const char *rev, char **commit,
			bool *gated, bool *open, int64_t *date);

/* What the Hub says of the repo at f's commit: the commit's date and
 * whether its bytes are public, asked once a run per repo and commit. 0,
 * or -errno when it could not be asked (a failure leaves f as it was). */
static int revision_fact(struct hf *h, const struct source_file *f,
			 struct source_revision_fact *fact)
{
	struct source_file probe_f = { .entry = h->e };
	char *commit = NULL, *key = NULL;
	bool gated;
	int rc;

	if (!f->revision)
		return -EINVAL;
	if (asprintf(&key, "%s@%s", h->e->repo, f->revision) < 0)
		return -ENOMEM;
	rc = 0;
	if (!source_fact_get(h->ctx, key, fact)) {
		*fact = (struct source_revision_fact){ .time = -1 };
		rc = pin_revision(h, &probe_f, f->revision, &commit, &gated, &fact->open,
				  &fact->time);
		if (rc == 0 && probe_f.err)
			rc = probe_f.err;
		if (rc == 0)
			source_fact_put(h->ctx, key, fact->time, fact->open);
	}
	free(key);
	free(commit);
	free(probe_f.error);
	return rc;
}

/* f->public_bytes, for a shared tier: worth one model info request only
 * when a token would otherwise keep f's bytes away from the tier (without
 * one, nothing secret goes there anyway). A failure leaves f private. */
static void learn_public(struct hf *h, struct source_file *f)
{
	struct source_revision_fact fact;

	if (h->cfg->cache_proxy && h->bearer && revision_fact(h, f, &fact) == 0)
		f->public_bytes = fact.open;
}

static int resolve_single(struct hf *h, struct source_file **files, size_t *n)
{
	const struct config_entry *e = h->e;
	struct source_file *f;
	int rc = source_files_new(e, 1, &f);

	if (rc)
		return rc;
	f->size = e->size;
	if (!(f->remote_path = strdup(e->file)) ||
	    source_join_path(e->dir, e->filename ? e->filename : e->name, &f->path)) {
		source_files_free(f, 1);
		return -ENOMEM;
	}
	rc = resolve_anywhere(h, f, e->revision);
	if (rc == 0 && f->err == -EACCES && strstr(f->error, " is gated: "))
		gated_details(h, f, e->revision);
	if (rc == 0 && !f->err)
		learn_public(h, f);
	if (rc && rc != -EAGAIN) {
		source_files_free(f, 1);
		return rc;
	}
	*files = f;
	*n = 1;
	return rc;
}

/* ---- repos as folders -------------------------------------------------------- */

/* Does the entry's include/exclude keep path? fnmatch as Python's (a '*'
 * crosses '/'); a pattern ending in '/' means everything under it. */
static bool glob_any(char *const *pats, const char *path)
{
	for (size_t i = 0; pats && pats[i]; i++) {
		size_t len = strlen(pats[i]);
		char *p = NULL;
		bool hit;

		if (len && pats[i][len - 1] == '/' && asprintf(&p, "%s*", pats[i]) < 0)
			p = NULL;
		hit = fnmatch(p ? p : pats[i], path, FNM_NOESCAPE) == 0;
		free(p);
		if (hit)
			return true;
	}
	return false;
}

static bool kept(const struct config_entry *e, const char *path)
{
	return (!e->include || glob_any(e->include, path)) && !glob_any(e->exclude, path);
}

/* The commit rev names, whether the repo is gated, and whether anyone may
 * read its bytes (neither gated nor private), from the model info. */
static int pin_revision(struct hf *h, struct source_file *f, const char *rev, char **commit,
			bool *gated, bool *open, int64_t *date)
{
	const struct config_entry *e = h->e;
	char *qrev = quote(rev, false), *url = NULL;
	struct http_body b = { .max = BODY_MAX };
	struct http_meta m;
	json_t *root = NULL, *sha, *g, *priv;
	int rc = -ENOMEM;

	*commit = NULL;
	*gated = *open = false;
	if (!qrev || asprintf(&url, "%s/api/%s/%s/revision/%s", h->endpoint, api_plural(e),
			      e->repo, qrev) < 0) {
		free(qrev);
		return -ENOMEM;
	}
	rc = hf_get(h, url, false, &b, &m);
	if (rc) {
		rc = hf_fail(h, f, rc, &m, rev, NULL);
		goto out;
	}
	root = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
	sha = json_is_object(root) ? json_object_get(root, "sha") : NULL;
	g = json_is_object(root) ? json_object_get(root, "gated") : NULL;
	priv = json_is_object(root) ? json_object_get(root, "private") : NULL;
	if (!json_is_string(sha) || !text_is_hex(json_string_value(sha), 40, false)) {
		source_set_error(f, -EPROTO, "%s does not answer like a Hugging Face Hub (no commit "
				 "in the model info of %s): check hf_endpoint", h->endpoint, e->repo);
		goto out;
	}
	*gated = json_is_true(g) || json_is_string(g);
	*open = json_is_false(priv) && json_is_false(g);
	/* lastModified at a revision: the date of its commit. */
	*date = text_iso_time(json_string_value(json_object_get(root, "lastModified")));
	*commit = lower_dup(json_string_value(sha));
	if (!*commit)
		rc = -ENOMEM;
out:
	json_decref(root);
	http_meta_clear(&m);
	free(b.data);
	free(url);
	free(qrev);
	return rc;
}

/* One source_file for a listed path. */
static int folder_file(struct hf *h, struct source_file *f, const struct hf_tree_file *t,
		       const char *commit)
{
	const char *hash = t->lfs_oid ? t->lfs_oid : t->oid;

	if (!(f->remote_path = strdup(t->path)) || source_join_path(h->e->dir, t->path, &f->path) ||
	    !(f->revision = strdup(commit)))
		return -ENOMEM;
	/* Only an LFS oid is a sha256; a regular file's oid is its git blob id. */
	if (t->lfs_oid && !text_is_hex(t->lfs_oid, 64, false))
		hash = NULL;
	if (!t->lfs_oid && !text_is_hex(t->oid, 40, false))
		hash = NULL;
	f->size = t->size;
	if (hash && text_is_hex(hash, 64, false) && !(f->sha256 = strdup(hash)))
		return -ENOMEM;
	if (hash && text_is_hex(hash, 40, false) && !(f->git_sha1 = strdup(hash)))
		return -ENOMEM;
	if (!hash && !(f->validator = strdup(commit)))
		return -ENOMEM;
	if (t->size < 0) {
		source_set_error(f, -EPROTO, "the tree listing gave no size for %s", t->path);
		return 0;
	}
	/* An LFS file's bytes are on the CDN: its data URL is left unset, so
	 * that its first read resolves it once (source_refresh) and every
	 * block then goes to the signed URL; through the /resolve/ URL each
	 * block would cost a resolver request too (a 20 GB file: 2500), and
	 * resolvers are rate-limited. A regular file is served by the Hub
	 * itself: its /resolve/ URL at the commit. */
	if (!t->lfs_oid && !(f->data_url = resolve_url(h->endpoint, h->e, commit, t->path)))
		return -ENOMEM;
	if (fill_auth(h, f) || fill_mirrors(h, f, commit, t->path) ||
	    set_stable_url(h, f, commit, t->path))
		return -ENOMEM;
	return 0;
}

/*
 * The repo at the current endpoint as files: 0 with *files, or with f
 * (one file at the folder's own path) carrying the error; -EAGAIN when
 * the endpoint was not reached.
 */
static int folder_at(struct hf *h, struct source_file *f, struct source_file **files, size_t *n)
{
	const struct config_entry *e = h->e;
	struct hf_tree_file *t = NULL;
	struct source_file *out = NULL;
	size_t nt = 0, nk = 0, k = 0;
	char *commit = NULL;
	bool gated, open;
	int64_t date = -1;
	int rc;

	clear_error(f);
	if (h->token_rc == -EACCES && h->authorization) {
		source_set_error(f, -EACCES, "%s", h->token_error ? h->token_error :
				 "the Hugging Face token is invalid");
		return 0;
	}
	rc = pin_revision(h, f, e->revision, &commit, &gated, &open, &date);
	if (rc == 0 && !f->err)
		rc = tree_list(h, f, commit, "", true, &t, &nt);
	if (rc || f->err)
		goto out;
	for (size_t i = 0; i < nt; i++)
		nk += kept(e, t[i].path);
	if (nk == 0) {
		source_set_error(f, -ENOENT, "include/exclude keep none of the %zu files of %s at "
				 "revision \"%s\"", nt, e->repo, e->revision);
		goto out;
	}
	rc = source_files_new(e, nk, &out);
	for (size_t i = 0; rc == 0 && i < nt; i++)
		if (kept(e, t[i].path)) {
			out[k].public_bytes = open;
			out[k].mtime = date;	/* the commit's date: the same on every box */
			rc = folder_file(h, &out[k++], &t[i], commit);
		}
	if (rc)
		goto out;
	if (gated) {
		/* Listing a gated repo is public; its bytes are not. One probe
		 * tells whether this token may read them. */
		struct probe p;
		struct source_file tmp = { .entry = e, .remote_path = out[0].remote_path };

		rc = probe(h, &tmp, commit, out[0].remote_path, &p);
		probe_clear(&p);
		for (size_t i = 0; rc == 0 && tmp.err == -EACCES && i < nk; i++) {
			source_set_error(&out[i], -EACCES, "%s", tmp.error);
			out[i].gated = tmp.gated;
		}
		free(tmp.error);
		if (rc == -EAGAIN)
			rc = 0;		/* the reads will tell */
		if (rc)
			goto out;
	}
	log_info("event=hf_folder entry=%s commit=%.12s files=%zu listed=%zu", e->id, commit, nk, nt);
	*files = out;
	*n = nk;
	out = NULL;
out:
	source_files_free(out, out ? nk : 0);
	source_hf_tree_free(t, nt);
	free(commit);
	return rc;
}

static int resolve_folder(struct hf *h, struct source_file **files, size_t *n)
{
	const struct config_entry *e = h->e;
	struct source_file *f;
	int rc = source_files_new(e, 1, &f);

	if (rc)
		return rc;
	if (!(f->path = strdup(e->dir))) {
		source_files_free(f, 1);
		return -ENOMEM;
	}
	if (truthy(getenv("HF_HUB_OFFLINE")) || truthy(getenv("TRANSFORMERS_OFFLINE"))) {
		source_set_error(f, -EAGAIN, "HF_HUB_OFFLINE is set: not asking the Hub");
		rc = -EAGAIN;
		goto fail;
	}
	hf_use(h, h->cfg->hf_endpoint);
	rc = folder_at(h, f, files, n);
	for (size_t i = 0; rc == -EAGAIN && e->mirrors && e->mirrors[i]; i++) {
		log_warn("event=hf_try_mirror entry=%s mirror=%s reason=\"%s\"", e->id, e->mirrors[i],
			 f->error ? f->error : "");
		hf_use(h, e->mirrors[i]);
		rc = folder_at(h, f, files, n);
	}
	if (rc == 0 && *n) {
		source_files_free(f, 1);
		return 0;
	}
fail:
	if (rc && rc != -EAGAIN) {
		source_files_free(f, 1);
		return rc;
	}
	/* The entry's one file at the folder's path says what went wrong. */
	*files = f;
	*n = 1;
	return rc;
}

/* ---- the licence ----------------------------------------------------------------- */

/* The licence a model card states: cardData.license (a string, or a list
 * of them), else a "license:X" tag; "other" with its license_name. A
 * copy the caller frees, or NULL when the card states none. */
static char *card_license(json_t *root)
{
	json_t *card = json_object_get(root, "cardData"), *lic = json_object_get(card, "license");
	json_t *name = json_object_get(card, "license_name"), *tags = json_object_get(root, "tags");
	const char *text = json_string_value(lic);
	char *out = NULL;
	size_t i;
	json_t *t;

	if (json_is_array(lic) && json_array_size(lic) > 0)
		text = json_string_value(json_array_get(lic, 0));
	if (text && strcmp(text, "other") == 0 && json_string_value(name)) {
		if (asprintf(&out, "other (%s)", json_string_value(name)) < 0)
			out = NULL;
		return out;
	}
	if (text)
		return strdup(text);
	json_array_foreach(tags, i, t)
		if (json_string_value(t) && strncmp(json_string_value(t), "license:", 8) == 0)
			return strdup(json_string_value(t) + 8);
	return NULL;
}

int source_license(struct source_ctx *ctx, struct http_client *c, const struct config_entry *e,
		   const char *revision, char **out)
{
	struct http_body b = { .max = BODY_MAX };
	struct source_file scratch = { .entry = e };
	struct http_meta m;
	char *qrev = NULL, *url = NULL;
	json_t *root = NULL;
	struct hf h;
	int rc;

	*out = NULL;
	if (e->source != CONFIG_SOURCE_HUGGINGFACE)
		return 0;	/* CivitAI states permissions, not a licence; URLs none */
	rc = hf_init(&h, ctx, c, e);
	if (rc)
		return rc;
	hf_use(&h, ctx->cfg->hf_endpoint);
	qrev = quote(revision ? revision : e->revision, false);
	if (!qrev || asprintf(&url, "%s/api/%s/%s/revision/%s", h.endpoint, api_plural(e), e->repo,
			      qrev) < 0) {
		url = NULL;
		rc = -ENOMEM;
		goto out;
	}
	rc = hf_get(&h, url, false, &b, &m);
	if (rc) {
		rc = hf_fail(&h, &scratch, rc, &m, revision, NULL);
		if (rc == 0)
			rc = scratch.err ? scratch.err : -EIO;
	} else {
		root = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
		*out = json_is_object(root) ? card_license(root) : NULL;
	}
	http_meta_clear(&m);
out:
	json_decref(root);
	free(scratch.error);
	free(b.data);
	free(url);
	free(qrev);
	hf_clear(&h);
	return rc;
}

int source_commit_date(struct source_ctx *ctx, struct http_client *c, const struct source_file *f,
		       int64_t *date)
{
	struct source_revision_fact fact;
	struct hf h;
	int rc;

	*date = -1;
	if (f->entry->source != CONFIG_SOURCE_HUGGINGFACE || !f->revision)
		return -ENOTSUP;
	rc = hf_init(&h, ctx, c, f->entry);
	if (rc == 0)
		rc = revision_fact(&h, f, &fact);
	if (rc == 0)
		*date = fact.time;
	hf_clear(&h);
	return rc;
}

/* ---- source_ops ---------------------------------------------------------------- */

static int hf_resolve(struct source_ctx *ctx, struct http_client *c,
		      const struct config_entry *e, struct source_file **files, size_t *n)
{
	struct hf h;
	int rc = hf_init(&h, ctx, c, e);

	if (rc == 0)
		rc = e->file ? resolve_single(&h, files, n) : resolve_folder(&h, files, n);
	hf_clear(&h);
	return rc;
}

/* A fresh data URL for f (a CDN link expired, or f came from the store):
 * the file at its pinned commit, asked again. */
static int hf_refresh(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	const struct config_entry *e = f->entry;
	char *rev = NULL, *sha = NULL, *git = NULL;
	int64_t size = f->size;
	struct hf h;
	int rc;

	if (!f->remote_path && !(e->file && (f->remote_path = strdup(e->file))))
		return e->file ? -ENOMEM : -EINVAL;
	rev = strdup(f->revision ? f->revision : e->revision);
	if ((f->sha256 && !(sha = strdup(f->sha256))) || (f->git_sha1 && !(git = strdup(f->git_sha1))) ||
	    !rev) {
		rc = -ENOMEM;
		goto out;
	}
	rc = hf_init(&h, ctx, c, e);
	if (rc == 0)
		rc = resolve_anywhere(&h, f, rev);
	if (rc == 0 && !f->err && !f->public_bytes)
		learn_public(&h, f);	/* not stored with a resolution */
	hf_clear(&h);
	if (rc == 0 && f->err)
		rc = f->err;
	/* The same name at the same commit must still mean the same bytes. */
	if (rc == 0 && size >= 0 && f->size != size) {
		source_set_error(f, -ESTALE, "%s changed at its origin: %s at %.12s was %lld bytes, "
				 "the Hub now says %lld", f->path, f->remote_path, rev, (long long)size,
				 (long long)f->size);
		rc = -ESTALE;
	} else if (rc == 0 && sha && f->sha256 && strcmp(sha, f->sha256) != 0) {
		source_set_error(f, -ESTALE, "%s changed at its origin: %s at %.12s had sha256 %s, "
				 "the Hub now says %s", f->path, f->remote_path, rev, sha, f->sha256);
		rc = -ESTALE;
	} else if (rc == 0 && git && f->git_sha1 && strcmp(git, f->git_sha1) != 0) {
		source_set_error(f, -ESTALE, "%s changed at its origin: %s at %.12s had git blob %s, "
				 "the Hub now says %s", f->path, f->remote_path, rev, git, f->git_sha1);
		rc = -ESTALE;
	}
out:
	free(rev);
	free(sha);
	free(git);
	return rc;
}

const struct source_ops source_hf_ops = {
	.kind = CONFIG_SOURCE_HUGGINGFACE,
	.resolve = hf_resolve,
	.refresh = hf_refresh,
};
