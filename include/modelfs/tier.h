/*
 * tier.h: a shared cache tier in front of the origins (an nginx slice
 * cache, `modelfs tier nginx`, or a neighbour's `modelfs serve`), and the
 * one URL scheme both answer:
 *
 *   {proxy}/{key}/{scheme}/{authority}{path}[?{query}]
 *
 *   key   "sha256-<64 hex>": the bytes' SHA-256, the tier's cache key on
 *         its own (one file named by two URLs is cached once; a signed
 *         query never enters the key);
 *         "commit-<hex>": the path names the bytes at that commit (the
 *         Hub's /resolve/{commit}/): the tier keys on the URL path.
 *   rest  the origin URL, fetched by the tier on a miss, following its
 *         redirects itself (the Hub's 302 to a fresh signed CDN URL).
 *
 * (1) Only stable names go through: a file with neither a SHA-256 nor a
 *     commit in its URL goes to its origin.
 * (2) A request carrying credentials (a token, the entry's headers) goes
 *     to its origin unless the tier is private (cache_proxy_private): a
 *     cache hit would hand gated bytes to anyone who reaches the tier.
 *     (Bytes the source knows to be public carry none: source.h.)
 *     Through a private tier the credentials go to the tier's host and no
 *     other. SigV4 signs the origin's Host: it never goes through.
 * (2a) A tier with its own token (cache_proxy_token_file: a neighbour's
 *     serve beyond loopback) is sent it as "Authorization: Bearer T" on
 *     every request, to the tier's host only; it replaces the origin's
 *     Authorization on a private tier's requests (the token gives access).
 * (3) A failure that says the tier is unusable (connect error, reset,
 *     timeout, 5xx) skips it for TIER_RETRY_MS, with one log line; the
 *     next request after that tries it again.
 * Ownership: tier_new() gives a tier, tier_free() frees it; strings out
 * are the caller's.
 * Threads: a tier may be used from any thread.
 */
#ifndef MODELFS_TIER_H
#define MODELFS_TIER_H

#include <stdbool.h>
#include <stddef.h>

#define TIER_RETRY_MS 30000

struct tier;

/* What a request for a file's bytes would go to without the tier. */
struct tier_target {
	const char *origin_url;		/* a stable origin URL (source.h stable_url), or NULL */
	const char *sha256;		/* lowercase hex, or NULL */
	const char *commit;		/* the commit in origin_url's path, or NULL */
	bool credentials;		/* the origin request would carry a secret */
	bool sigv4;			/* ... signed for the origin's Host */
};

/* proxy: "http://tier:8080[/prefix]"; private_ok: cache_proxy_private.
 * 0 and *out; -EINVAL for a proxy that is not an http(s) URL; -ENOMEM. */
int tier_new(const char *proxy, bool private_ok, struct tier **out);
void tier_free(struct tier *t);
/* Set the tier's token (2a), before the tier is used: 0 or -ENOMEM. */
int tier_set_token(struct tier *t, const char *token);
/* "Bearer T" for the tier's host: a copy the caller frees, or NULL when
 * the tier has no token (or no memory). */
char *tier_authorization(const struct tier *t);

/* Where tg's bytes are asked for: 0 and *url (the caller frees),
 * *to_tier_auth telling whether tg's credentials may go to that URL's
 * host (a private tier); -ENOENT to go to the origin (no tier, no stable
 * key, credentials, or the tier is skipped after a failure); -ENOMEM. */
int tier_route(struct tier *t, const struct tier_target *tg, char **url, bool *to_tier_auth);

/* The outcome of a request tier_route() sent to the tier: 0 or the
 * -errno of http_get(), status the HTTP status (0 when none), why its
 * reason (http_meta.error_text) or NULL. */
void tier_report(struct tier *t, int rc, long status, const char *why);

/* The tier URL of tg on proxy, with no policy: 0 and *out; -ENOENT when
 * tg has no stable key; -EINVAL for a bad origin URL; -ENOMEM. */
int tier_url(const char *proxy, const struct tier_target *tg, char **out);

/* A request target in the scheme ("/sha256-…/https/host/path"), split:
 * *key_kind 's' (sha256) or 'c' (commit), key (hex, NUL-terminated, up
 * to 64), and *path pointing into target at the origin path ("/org/…").
 * 0, or -ENOENT when target is not in the scheme. */
int tier_parse_target(const char *target, char *key_kind, char key[65], const char **path);

#endif
