/*
 * tier.c: the origin URL -> tier URL rewrite (tier.h's one scheme), the
 * policy of what may go through, and the tier's up/down state.
 *
 * Why "down for a while" and not "retry the tier": the tier is an
 * optimisation. A node whose tier died must go on at the origin's speed
 * at once, not after each block's retries and backoff; a tier that comes
 * back is found by the first request after TIER_RETRY_MS.
 */
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/downtime.h"
#include "modelfs/http.h"
#include "modelfs/log.h"
#include "modelfs/tier.h"

struct tier {
	char *proxy;			/* no trailing '/' */
	char origin[512];		/* scheme://host:port of proxy: what logs show */
	bool private_ok;
	char *authorization;		/* "Bearer T" for the tier's host, or NULL; secret; set once */
	struct downtime down;		/* (3) */
};

int tier_new(const char *proxy, bool private_ok, struct tier **out)
{
	char origin[512];
	struct tier *t;
	size_t n;

	if (!proxy || http_url_origin(proxy, origin, sizeof(origin)) != 0 || strchr(proxy, '?'))
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t || !(t->proxy = strdup(proxy))) {
		free(t);
		return -ENOMEM;
	}
	n = strlen(t->proxy);
	while (n > 0 && t->proxy[n - 1] == '/')
		t->proxy[--n] = '\0';
	t->private_ok = private_ok;
	memcpy(t->origin, origin, sizeof(t->origin));
	downtime_init(&t->down);
	*out = t;
	return 0;
}

void tier_free(struct tier *t)
{
	if (!t)
		return;
	downtime_destroy(&t->down);
	if (t->authorization)
		explicit_bzero(t->authorization, strlen(t->authorization));
	free(t->authorization);
	free(t->proxy);
	free(t);
}

int tier_set_token(struct tier *t, const char *token)
{
	if (asprintf(&t->authorization, "Bearer %s", token) < 0) {
		t->authorization = NULL;
		return -ENOMEM;
	}
	log_add_secret(t->authorization);
	return 0;
}

char *tier_authorization(const struct tier *t)
{
	return t->authorization ? strdup(t->authorization) : NULL;
}

static bool all_hex(const char *s, size_t min, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return true;
}

int tier_url(const char *proxy, const struct tier_target *tg, char **out)
{
	char *path = NULL, *query = NULL, *user = NULL;
	char key[80], origin[512], *authority;
	CURLU *u = NULL;
	int rc = -EINVAL;

	*out = NULL;
	if (!tg->origin_url)
		return -ENOENT;
	if (all_hex(tg->sha256, 64, 64))
		snprintf(key, sizeof(key), "sha256-%s", tg->sha256);
	else if (all_hex(tg->commit, 40, 64) && strstr(tg->origin_url, tg->commit))
		snprintf(key, sizeof(key), "commit-%s", tg->commit);
	else
		return -ENOENT;
	/* "scheme://host:port", the port always written: one spelling per origin. */
	if (http_url_origin(tg->origin_url, origin, sizeof(origin)) != 0)
		return -EINVAL;
	authority = strstr(origin, "://");
	*authority = '\0';
	authority += 3;
	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, tg->origin_url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		goto out;
	/* No userinfo ever: it would be a credential in the tier's logs. */
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
		query = NULL;
	if (asprintf(out, "%s/%s/%s/%s%s%s%s", proxy, key, origin, authority, path,
		     query ? "?" : "", query ? query : "") < 0) {
		*out = NULL;
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	curl_free(user);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return rc;
}

int tier_route(struct tier *t, const struct tier_target *tg, char **url, bool *to_tier_auth)
{
	*url = NULL;
	*to_tier_auth = false;
	if (!t || tg->sigv4 || (tg->credentials && !t->private_ok))
		return -ENOENT;
	if (downtime_skipping(&t->down))
		return -ENOENT;
	*to_tier_auth = tg->credentials;
	return tier_url(t->proxy, tg, url);
}

/* The tier itself failed, not the file at its origin: a 404 or 403 is the
 * origin's answer passed on (or a peer without the file), and says nothing
 * about the other files. */
static bool tier_broken(int rc, long status)
{
	return rc == -EAGAIN || rc == -EIO || rc == -EPROTO || status >= 500;
}

void tier_report(struct tier *t, int rc, long status, const char *why)
{
	enum downtime_change change;

	if (!t || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
		return;
	change = downtime_report(&t->down, rc != 0 && tier_broken(rc, status), TIER_RETRY_MS);
	if (change == DOWNTIME_WENT_DOWN)
		log_warn("event=tier_down proxy=%s error=\"%s\" action=\"reading from the origins; "
			 "trying the tier again in %d s\"", t->origin,
			 why ? why : strerror(-rc), TIER_RETRY_MS / 1000);
	if (change == DOWNTIME_CAME_BACK)
		log_info("event=tier_up proxy=%s", t->origin);
}

int tier_parse_target(const char *target, char *key_kind, char key[65], const char **path)
{
	const char *p = target, *slash;
	size_t klen;

	if (*p == '/')
		p++;
	if (strncmp(p, "sha256-", 7) == 0) {
		*key_kind = 's';
		p += 7;
	} else if (strncmp(p, "commit-", 7) == 0) {
		*key_kind = 'c';
		p += 7;
	} else {
		return -ENOENT;
	}
	slash = strchr(p, '/');
	klen = slash ? (size_t)(slash - p) : 0;
	if (!slash || klen < 40 || klen > 64)
		return -ENOENT;
	memcpy(key, p, klen);
	key[klen] = '\0';
	if (!all_hex(key, 40, 64))
		return -ENOENT;
	p = slash + 1;			/* scheme */
	if (strncmp(p, "http/", 5) != 0 && strncmp(p, "https/", 6) != 0)
		return -ENOENT;
	p = strchr(p, '/') + 1;		/* authority */
	slash = strchr(p, '/');
	if (!slash || slash == p)
		return -ENOENT;
	*path = slash;
	return 0;
}
