/*
 * download.c: one range of a file from wherever it can come from. The
 * shared bucket first (shared_cache, bucket.h: one try, for a file whose
 * SHA-256 is known), then the shared tier (cache_proxy, tier.h), then the
 * data URL, then each mirror in turn; each origin try retried with
 * backoff on transient failures until retry_timeout, an expired signed
 * link renewed once. Credentials go only where they belong: the origin's
 * to the origin, a mirror's token to that mirror, the tier's to the tier.
 *
 * Locks: f->lock is held only to copy a target (attempt_get(),
 * tier_attempt(), which also takes the tier's lock inside tier_route());
 * never across a request or a backoff sleep.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "download_i.h"
#include "modelfs/clock.h"
#include "modelfs/log.h"

void attempt_clear(struct attempt *a)
{
	free(a->url);
	free(a->validator);
	source_auth_clear(&a->auth);
}

/* A mirror's own credential (config.h mirror_token_file) on a, when
 * a->url is on the host of one of the entry's configured mirrors (not
 * the origin a resolution through a mirror puts among them): 0 or
 * -ENOMEM. Kept apart from attempt_get(): the one place a mirror
 * credential enters a request, and only for that mirror's origin. */
static int mirror_credential(struct engine_file *f, struct attempt *a)
{
	const struct config_entry *e = f->src.entry;
	const char *bearer = f->mirror_bearer;
	char at[512], mirror[512];
	bool ours = false;

	if (!bearer || http_url_origin(a->url, at, sizeof(at)) != 0)
		return 0;
	for (size_t i = 0; !ours && e->mirrors && e->mirrors[i]; i++)
		ours = http_url_origin(e->mirrors[i], mirror, sizeof(mirror)) == 0 &&
		       strcmp(at, mirror) == 0;
	if (!ours)
		return 0;
	source_auth_clear(&a->auth);
	a->auth.origin_url = strdup(a->url);
	a->auth.authorization = strdup(bearer);
	return a->auth.origin_url && a->auth.authorization ? 0 : -ENOMEM;
}

/* The target of try number `which` (0: the data URL, k: mirror k):
 * 0, -ENOENT when there is no such mirror, -ENODATA when the data URL
 * must be resolved first. */
int attempt_get(struct engine_file *f, int which, struct attempt *a)
{
	const struct source_file *src = &f->src;
	const char *url;
	int rc = 0;

	memset(a, 0, sizeof(*a));
	pthread_mutex_lock(&f->lock);
	a->url_gen = f->url_gen;
	url = which == 0 ? src->data_url : NULL;
	for (int k = 0; which > 0 && src->mirror_urls && src->mirror_urls[k]; k++)
		if (k == which - 1)
			url = src->mirror_urls[k];
	if (!url)
		rc = which == 0 ? -ENODATA : -ENOENT;
	else if (!(a->url = strdup(url)) || source_auth_copy(&a->auth, &src->auth))
		rc = -ENOMEM;
	else if (src->validator && http_etag_is_strong(src->validator) &&
		 !(a->validator = strdup(src->validator)))
		rc = -ENOMEM;
	else if (which > 0)
		rc = mirror_credential(f, a);
	pthread_mutex_unlock(&f->lock);
	if (rc)
		attempt_clear(a);
	return rc;
}

/* What an attempt at sink's range asks for: len bytes from sink->from,
 * or the rest of the run. */
static uint64_t sink_range_len(const struct block_sink *sink, uint32_t len)
{
	return sink->nrun > 1 ? sink->run_end - sink->start : len;
}

static const atomic_int *sink_cancel(const struct block_sink *sink)
{
	return sink->ctl ? &sink->ctl->cancel : &sink->inf->cancel;
}

/* Before an attempt: a retry starts the range again. 0 or -ENOMEM. */
static int sink_begin(struct block_sink *sink)
{
	sink->xxh = XXH3_createState();
	if (!sink->xxh)
		return -ENOMEM;
	XXH3_64bits_reset(sink->xxh);
	sink->buf_len = 0;
	sink->arrived = sink->from;
	sink_uncount(sink);
	return 0;
}

/* After an attempt that ended with rc: the XXH3 of the block, rc. */
static int sink_end(struct block_sink *sink, int rc, uint64_t *xxh3)
{
	if (rc == 0 && !sink->mem)
		rc = sink_flush(sink);
	*xxh3 = XXH3_64bits_digest(sink->xxh);
	XXH3_freeState(sink->xxh);
	sink->xxh = NULL;
	return rc;
}

/* One GET of sink's range (len bytes from sink->from) from a->url: 0 or
 * -errno (http.h). */
static int attempt_run(struct engine_file *f, struct http_client *http, const struct attempt *a,
		       struct block_sink *sink, uint32_t len, uint64_t *xxh3, struct http_meta *meta)
{
	struct http_request rq = {
		.url = a->url,
		.origin_url = a->auth.origin_url,
		.headers = a->auth.headers,
		.n_headers = a->auth.n_headers,
		.authorization = a->auth.authorization,
		.aws_sigv4 = a->auth.aws_sigv4,
		.aws_credentials = a->auth.aws_credentials,
		.aws_session_token = a->auth.aws_session_token,
		.if_range = a->validator,
		.range_first = sink->start + sink->from,
		.range_len = sink_range_len(sink, len),
		.follow_redirects = true,
		.cancel = sink_cancel(sink),
	};
	int rc = sink_begin(sink);

	if (rc)
		return rc;
	rc = http_get(http, &rq, sink_write, sink, meta);
	return sink_end(sink, rc, xxh3);
}

/* Wait before try number ++*attempt (never past the deadline), saying
 * so: false when the engine stops meanwhile. */
static bool wait_to_retry(struct engine_file *f, uint64_t idx, int *attempt, int retry_after_sec,
			  int64_t deadline, const char *reason)
{
	int64_t wait = backoff_ms((*attempt)++, retry_after_sec);

	if (wait > deadline - clock_now_ms())
		wait = deadline - clock_now_ms();	/* the last try is at the deadline */
	log_warn("event=fetch_retry path=%s block=%llu attempt=%d wait_ms=%lld error=\"%s\"",
		 f->src.path, (unsigned long long)idx, *attempt, (long long)wait, reason);
	return engine_sleep_ms(f->eng, wait);
}

/* Download block idx from try `which` (see attempt_get), retrying
 * transient failures until the deadline: 0 or -errno, reason filled. */
static int download_from(struct engine_file *f, struct http_client *http, struct block_sink *sink,
			 uint32_t len, int which, uint64_t *xxh3, char *reason, size_t reason_len)
{
	struct engine *e = f->eng;
	int64_t deadline = clock_now_ms() + (int64_t)e->cfg->retry_timeout_sec * 1000;
	bool refreshed = false;
	int rc, attempt = 0;

	for (;;) {
		struct http_meta meta;
		struct attempt a;

		rc = attempt_get(f, which, &a);
		if (rc == -ENODATA) {
			/* Listed from a stored resolution, or a signed URL to renew. */
			refreshed = true;
			rc = refresh_url(f, http, a.url_gen);
			if (rc == 0)
				continue;
			resolve_reason(rc, reason, reason_len);
			if (rc != -EAGAIN || clock_now_ms() >= deadline)
				return rc;
			if (wait_to_retry(f, sink->idx, &attempt, -1, deadline, reason))
				continue;
			return -ECANCELED;
		}
		if (rc)
			return rc;
		rc = attempt_run(f, http, &a, sink, len, xxh3, &meta);
		snprintf(reason, reason_len, "%s", meta.error_text ? meta.error_text : strerror(-rc));
		if (rc == -EACCES && which == 0 && !refreshed && meta.final_url &&
		    a.auth.origin_url && strcmp(meta.final_url, a.auth.origin_url) != 0) {
			/* A signed link expired: ask the origin for a fresh one, once. */
			refreshed = true;
			rc = refresh_url(f, http, a.url_gen);
			http_meta_clear(&meta);
			attempt_clear(&a);
			if (rc == 0)
				continue;
			return -EACCES;
		}
		attempt_clear(&a);
		if (rc == -EAGAIN && clock_now_ms() < deadline) {
			int retry_after = meta.retry_after_sec;

			http_meta_clear(&meta);
			if (wait_to_retry(f, sink->idx, &attempt, retry_after, deadline, reason))
				continue;
			return -ECANCELED;
		}
		http_meta_clear(&meta);
		return rc;
	}
}

static int mirror_count(struct engine_file *f)
{
	int n = 0;

	pthread_mutex_lock(&f->lock);
	while (f->src.mirror_urls && f->src.mirror_urls[n])
		n++;
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* ---- the shared tier (tier.h) ------------------------------------------ */

/* The tier's own token (tier.h (2a)) on a, for the tier's host only: 0
 * or -ENOMEM. Kept apart from tier_attempt() on purpose: it is the one
 * place the tier's credential enters a request. */
static int tier_credential(struct tier *t, struct attempt *a)
{
	char *bearer = tier_authorization(t);

	if (!bearer)
		return 0;
	free(a->auth.authorization);
	a->auth.authorization = bearer;
	if (!a->auth.origin_url)
		a->auth.origin_url = strdup(a->url);
	return a->auth.origin_url ? 0 : -ENOMEM;
}

/* Where the tier would take f's bytes from, under f->lock: 0 and a->url
 * (with the credentials only for a private tier); -ENOENT to go to the
 * origin. */
static int tier_attempt(struct engine_file *f, struct attempt *a)
{
	const struct source_file *src = &f->src;
	const struct source_auth *au = &src->auth;
	struct tier_target tg = {
		.origin_url = src->stable_url,
		.sha256 = src->sha256,
		.commit = src->stable_by_commit ? src->revision : NULL,
		/* Public bytes need none of them: the tier fetches them as anyone. */
		.credentials = !src->public_bytes && (au->authorization || au->n_headers ||
						      au->aws_credentials || au->aws_session_token),
		.sigv4 = au->aws_sigv4 != NULL,
	};
	bool with_auth = false;
	int rc;

	memset(a, 0, sizeof(*a));
	pthread_mutex_lock(&f->lock);
	rc = tier_route(f->eng->tier, &tg, &a->url, &with_auth);
	if (rc == 0 && with_auth) {
		/* A private tier: the credentials go to its host, none other. */
		rc = source_auth_copy(&a->auth, au);
		free(a->auth.origin_url);
		a->auth.origin_url = rc ? NULL : strdup(a->url);
		if (rc == 0 && !a->auth.origin_url)
			rc = -ENOMEM;
	}
	if (rc == 0)
		rc = tier_credential(f->eng->tier, a);
	pthread_mutex_unlock(&f->lock);
	if (rc)
		attempt_clear(a);
	return rc;
}

/* One try of sink's range through the tier: 0, -ENOENT when the tier is
 * not for this file or failed (the origin is next; a failure is the
 * tier's to report, tier.h (3)), or our own failure (stopping, memory,
 * a full disk). No If-Range: the key names the bytes, and nginx's slice
 * module answers If-Range from its slice 0. */
static int download_via_tier(struct engine_file *f, struct http_client *http,
			     struct block_sink *sink, uint32_t len, uint64_t *xxh3)
{
	struct http_meta meta;
	struct attempt a;
	bool unresolved;
	int rc = tier_attempt(f, &a);

	pthread_mutex_lock(&f->lock);
	unresolved = rc == -ENOENT && f->eng->tier && !f->src.stable_url && !f->src.data_url;
	a.url_gen = f->url_gen;
	pthread_mutex_unlock(&f->lock);
	/* Listed from a stored resolution, which keeps no stable URL: resolve
	 * it first, or this block would come from the origin. */
	if (unresolved && refresh_url(f, http, a.url_gen) == 0)
		rc = tier_attempt(f, &a);
	if (rc)
		return rc == -ENOMEM ? rc : -ENOENT;
	sink->via_tier = true;
	rc = attempt_run(f, http, &a, sink, len, xxh3, &meta);
	sink->via_tier = false;
	tier_report(f->eng->tier, rc, meta.status, meta.error_text);
	if (rc == 0 && sink->nrun <= 1)		/* a run counts block by block */
		atomic_fetch_add(&f->bytes_tier, len);
	else if (rc != -ECANCELED && rc != -ENOMEM && rc != -ENOSPC)
		log_debug("event=tier_miss path=%s block=%llu status=%ld error=\"%s\"", f->src.path,
			  (unsigned long long)sink->idx, meta.status,
			  meta.error_text ? meta.error_text : strerror(-rc));
	http_meta_clear(&meta);
	attempt_clear(&a);
	if (rc == 0 || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
		return rc;
	return -ENOENT;
}

/* ---- the shared bucket (bucket.h) -------------------------------------- */

/* One try of sink's range from the shared bucket, for a file whose
 * SHA-256 is known: 0; -ENOENT when the bucket is not for this file, has
 * not got it, failed or gave a block that failed its checksum (bucket.c
 * reported it; no byte of that block reached the sink: the origin is
 * next, from where the bucket stopped); or our own failure (stopping,
 * memory, a full disk). */
static int download_via_bucket(struct engine_file *f, struct http_client *http,
			       struct block_sink *sink, uint32_t len, uint64_t *xxh3)
{
	struct file_hashes want;
	int rc;

	if (!f->eng->bucket)
		return -ENOENT;
	engine_file_hashes(f, &want);
	if (!want.sha256[0])
		return -ENOENT;
	rc = sink_begin(sink);
	if (rc)
		return rc;
	sink->via_bucket = true;
	rc = bucket_read(f->eng->bucket, http, want.sha256, (uint64_t)f->src.size,
			 sink->start + sink->from, sink_range_len(sink, len), sink_cancel(sink),
			 sink_write, sink);
	sink->via_bucket = false;
	rc = sink_end(sink, rc, xxh3);
	if (rc == 0 && sink->nrun <= 1)		/* a run counts block by block */
		atomic_fetch_add(&f->bytes_bucket, len);
	if (rc == 0 || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
		return rc;
	return -ENOENT;
}

/* Download len bytes from sink->from from the shared bucket, else through
 * the tier, else from the data URL, then from each mirror in turn: 0 or
 * -errno, reason filled. */
int download_range(struct engine_file *f, struct http_client *http,
			  struct block_sink *sink, uint32_t len, uint64_t *xxh3, char *reason,
			  size_t reason_len)
{
	int rc = download_via_bucket(f, http, sink, len, xxh3);

	if (rc == -ENOENT)
		rc = download_via_tier(f, http, sink, len, xxh3);

	if (rc != -ENOENT)
		return rc;
	for (int which = 0; which <= mirror_count(f); which++) {
		if (which > 0)
			log_warn("event=try_mirror path=%s block=%llu mirror=%d error=\"%s\"",
				 f->src.path, (unsigned long long)sink->idx, which, reason);
		rc = download_from(f, http, sink, len, which, xxh3, reason, reason_len);
		if (rc == 0 && sink->nrun <= 1)		/* a run counts block by block */
			atomic_fetch_add(&f->bytes_origin, len);
		/* Our own failures (stopping, memory, a full disk) are not the
		 * origin's: a mirror would fare no better. */
		if (rc == 0 || rc == -ECANCELED || rc == -ENOMEM || rc == -ENOSPC)
			break;
	}
	return rc;
}
