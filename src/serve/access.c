/*
 * access.c: who may read a repo through this server. The server's own
 * tokens fetched what it holds, so holding a file says nothing about
 * whether a client may have it: the Hub decides, once per (token, repo),
 * and its answer is remembered for a bounded time.
 *
 * The question asked of the Hub is the one a download asks: a GET of the
 * first byte of one of the repo's files at the pinned commit (the probe a
 * mount's resolution makes too), with the client's token (or none),
 * following no redirect. A 2xx or a 3xx (to the CDN) is yes; a 401, 403
 * or 404 is no; anything else is "cannot tell", which is not remembered
 * and refuses the request (503): a server that cannot ask fails closed.
 *
 * A repo anyone may read (the anonymous question says yes) is served to
 * every client without asking about its token: the Hub would give such a
 * client the bytes too. The server's access token (serve_token_file) is
 * accepted for every repo without asking.
 *
 * The memory is a small table of slots keyed by the SHA-256 of token,
 * type and repo (a token is never kept), each with the time its answer
 * expires; a full table reuses the slot that expires first. An expired
 * anonymous yes still stands while the Hub cannot be asked (may_read()).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/clock.h"
#include "modelfs/hexhash.h"
#include "modelfs/http.h"
#include "modelfs/log.h"
#include "serve_i.h"

#define ACCESS_SLOTS 512
#define ACCESS_YES_MS (10 * 60 * 1000)	/* a yes is remembered this long */
#define ACCESS_NO_MS (60 * 1000)	/* a no this long: access may be granted soon */
#define ACCESS_TIMEOUT_SEC 15

struct access_slot {
	char key[65];			/* SHA-256 of "token\ntype\nrepo"; "" unused */
	bool allowed;
	int64_t expires_ms;
};

struct access {
	char *hub;			/* hf_endpoint, no trailing '/' */
	int64_t yes_ms, no_ms;		/* how long answers are kept */
	char *server_token;		/* serve_token_file's, or NULL; secret */
	pthread_mutex_t lock;
	struct access_slot slots[ACCESS_SLOTS];	/* protected by lock */
};

int access_new(const char *hub, const char *server_token, int ttl_ms, struct access **out)
{
	struct access *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->yes_ms = ttl_ms > 0 ? ttl_ms : ACCESS_YES_MS;
	a->no_ms = ttl_ms > 0 && ttl_ms < ACCESS_NO_MS ? ttl_ms : ACCESS_NO_MS;
	a->hub = strdup(hub ? hub : "https://huggingface.co");
	a->server_token = server_token ? strdup(server_token) : NULL;
	if (!a->hub || (server_token && !a->server_token)) {
		access_free(a);
		return -ENOMEM;
	}
	pthread_mutex_init(&a->lock, NULL);
	*out = a;
	return 0;
}

void access_free(struct access *a)
{
	if (!a)
		return;
	if (a->server_token)
		explicit_bzero(a->server_token, strlen(a->server_token));
	free(a->server_token);
	free(a->hub);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* Both NUL-terminated; time depends on the lengths only. */
static bool same_secret(const char *x, const char *y)
{
	size_t nx = strlen(x), ny = strlen(y);
	unsigned char diff = nx != ny;

	for (size_t i = 0; i < nx && i < ny; i++)
		diff |= (unsigned char)(x[i] ^ y[i]);
	return diff == 0;
}

bool access_server_token(const struct access *a, const char *token)
{
	return a->server_token && token && same_secret(a->server_token, token);
}

bool access_required(const struct access *a)
{
	return a->server_token != NULL;
}

/* The slot for key: 1 and *allowed when a live answer is kept, else 0;
 * *was_yes when the kept answer, live or expired, is a yes. */
static int remembered(struct access *a, const char *key, bool *allowed, bool *was_yes)
{
	int64_t now = clock_now_ms();
	int hit = 0;

	*was_yes = false;
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < ACCESS_SLOTS; i++) {
		struct access_slot *s = &a->slots[i];

		if (s->key[0] && strcmp(s->key, key) == 0) {
			*was_yes = s->allowed;
			*allowed = s->allowed;
			hit = s->expires_ms > now;
			break;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return hit;
}

static void remember(struct access *a, const char *key, bool allowed)
{
	struct access_slot *use = &a->slots[0];

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < ACCESS_SLOTS; i++) {
		struct access_slot *s = &a->slots[i];

		if (strcmp(s->key, key) == 0) {
			use = s;
			break;
		}
		if (s->expires_ms < use->expires_ms)
			use = s;
	}
	memcpy(use->key, key, sizeof(use->key));
	use->allowed = allowed;
	use->expires_ms = clock_now_ms() + (allowed ? a->yes_ms : a->no_ms);
	pthread_mutex_unlock(&a->lock);
}

static const char *url_prefix(const char *type)
{
	if (strcmp(type, "dataset") == 0)
		return "datasets/";
	if (strcmp(type, "space") == 0)
		return "spaces/";
	return "";
}

/* path with every byte but [A-Za-z0-9._~/-] as %XX. */
static char *path_escaped(const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(path) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if (strchr("._~/-", *p) || (*p >= '0' && *p <= '9') || ((*p | 0x20) >= 'a' &&
									 (*p | 0x20) <= 'z')) {
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

/* Ask the Hub whether token (NULL: anonymous) may download p's bytes:
 * 1 yes, 0 no, -EAGAIN cannot tell, -ENOMEM. */
static int ask_hub(struct access *a, const char *token, const struct hub_pin *p)
{
	struct http_client *c = NULL;
	struct http_meta m = { 0 };
	char *url = NULL, *path = NULL, *bearer = NULL;
	struct http_request rq = { .timeout_sec = ACCESS_TIMEOUT_SEC };
	int rc;

	if (p->nfiles == 0)
		return 0;
	path = path_escaped(p->files[0].path);
	rc = -ENOMEM;
	if (!path || asprintf(&url, "%s/%s%s/resolve/%s/%s", a->hub, url_prefix(p->type), p->repo,
			      p->commit, path) < 0) {
		url = NULL;
		goto out;
	}
	if (token && asprintf(&bearer, "Bearer %s", token) < 0) {
		bearer = NULL;
		goto out;
	}
	rc = http_client_new(&c);
	if (rc)
		goto out;
	rq.url = url;
	rq.authorization = bearer;
	rq.follow_redirects = false;
	rq.range_len = 1;
	rc = http_get(c, &rq, http_discard_sink, NULL, &m);
	/* The status is the answer: a 200 to the Range is a yes all the same. */
	if (m.status >= 200 && m.status < 400)
		rc = 1;
	else if (rc == 0)
		rc = 0;
	else if (rc == -EACCES || rc == -ENOENT)
		rc = 0;
	else if (rc != -ENOMEM) {
		log_warn("event=serve_access_unknown repo=%s status=%ld error=\"%s\"", p->repo,
			 m.status, m.error_text ? m.error_text : strerror(-rc));
		rc = -EAGAIN;
	}
	log_debug("event=serve_access repo=%s client_token=%s allowed=%d", p->repo,
		  token ? "yes" : "no", rc);
out:
	http_meta_clear(&m);
	http_client_free(c);
	if (bearer)
		explicit_bzero(bearer, strlen(bearer));
	free(bearer);
	free(url);
	free(path);
	return rc;
}

/* The answer for (token, p), remembered or asked: 1, 0 or -errno. A
 * repo the Hub once gave anyone stays served while the Hub cannot be
 * asked again (it is public bytes the server holds); nothing else does. */
static int may_read(struct access *a, const char *token, const struct hub_pin *p)
{
	struct hexhash *h;
	char key[65];
	bool allowed, was_yes;
	int rc;

	rc = hexhash_new(&h);
	if (rc)
		return rc;
	hexhash_update(h, token ? token : "", token ? strlen(token) + 1 : 0);
	hexhash_update(h, "\n", 1);
	hexhash_update(h, p->type, strlen(p->type) + 1);
	hexhash_update(h, p->repo, strlen(p->repo) + 1);
	hexhash_final(h, key);
	if (remembered(a, key, &allowed, &was_yes))
		return allowed;
	rc = ask_hub(a, token, p);
	if (rc >= 0)
		remember(a, key, rc == 1);
	else if (rc == -EAGAIN && !token && was_yes)
		rc = 1;
	return rc;
}

int access_check(struct access *a, const char *token, const struct hub_pin *p)
{
	int rc;

	if (access_server_token(a, token))
		return 0;
	rc = may_read(a, NULL, p);
	if (rc == 1)
		return 0;
	if (rc == 0 && token)
		rc = may_read(a, token, p);
	if (rc < 0)
		return rc;
	return rc == 1 ? 0 : -EACCES;
}
