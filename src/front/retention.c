/*
 * retention.c: the cache_ttl pass (retention.h), a thread that sleeps on
 * a condition variable so that stopping does not wait out a period.
 */
#include "modelfs/retention.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modelfs/clock.h"
#include "modelfs/log.h"
#include "modelfs/ops.h"

#define PERIOD_MAX_SEC 3600

struct retention {
	struct cache *cache;
	int ttl_sec;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;		/* protected by lock */
};

static void retention_pass(struct retention *r)
{
	int64_t before = ops_unused_before(r->ttl_sec);
	json_t *res, *f;
	size_t i;
	int rc;

	res = ops_retain(r->cache, before, &rc);
	if (!res) {
		log_warn("event=cache_ttl_failed error=\"%s\"", strerror(-rc));
		return;
	}
	json_array_foreach(json_object_get(res, "files"), i, f) {
		const char *path = json_string_value(json_object_get(f, "path"));

		if (strcmp(json_string_value(json_object_get(f, "result")), "evicted") != 0)
			continue;
		log_info("event=cache_ttl_evicted path=%s freed=%lld last_used=%lld ttl_s=%d",
			 path ? path : "(no entry)",
			 (long long)json_integer_value(json_object_get(f, "freed")),
			 (long long)json_integer_value(json_object_get(f, "last_used")), r->ttl_sec);
	}
	json_decref(res);
}

static void *retention_main(void *arg)
{
	struct retention *r = arg;
	int period = r->ttl_sec / 4;

	if (period < 1)
		period = 1;
	if (period > PERIOD_MAX_SEC)
		period = PERIOD_MAX_SEC;
	pthread_mutex_lock(&r->lock);
	while (!r->stopping) {
		struct timespec until;

		pthread_mutex_unlock(&r->lock);
		retention_pass(r);
		until = clock_deadline(CLOCK_MONOTONIC, (int64_t)period * 1000);
		pthread_mutex_lock(&r->lock);
		while (!r->stopping && pthread_cond_timedwait(&r->wake, &r->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int retention_start(struct cache *c, int ttl_sec, struct retention **out)
{
	struct retention *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
	int rc;

	if (!r)
		return -ENOMEM;
	r->cache = c;
	r->ttl_sec = ttl_sec;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&r->thread, NULL, retention_main, r);
	if (rc) {
		pthread_cond_destroy(&r->wake);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return -rc;
	}
	*out = r;
	return 0;
}

void retention_stop(struct retention *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
