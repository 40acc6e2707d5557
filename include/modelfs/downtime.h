/*
 * downtime.h: a shared source that failed is skipped for a while (the
 * cache tier, tier.h (3); the shared bucket, bucket.h (0)): a node whose
 * tier or bucket died goes on at the origins' speed at once, not after
 * each block's retries, and finds it back with the first request after
 * the wait. Only a request made after the wait brings it back: one sent
 * before the failure that ends well must not make it flap.
 * Threads: all functions are thread-safe; the lock is a leaf.
 */
#ifndef MODELFS_DOWNTIME_H
#define MODELFS_DOWNTIME_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct downtime {
	pthread_mutex_t lock;
	int64_t until_ms;		/* skipped until then (clock_now_ms()); 0: up;
					 * protected by lock */
};

void downtime_init(struct downtime *d);
void downtime_destroy(struct downtime *d);
/* Whether requests skip it now. */
bool downtime_skipping(struct downtime *d);

enum downtime_change {
	DOWNTIME_SAME,
	DOWNTIME_WENT_DOWN,		/* log it: the first failure */
	DOWNTIME_CAME_BACK,		/* log it: a request after the wait went well */
};
/* A request's outcome: broken (the source failed in itself) or not.
 * Broken, it is skipped for wait_ms more (unless it is already, by
 * requests under way when it failed). */
enum downtime_change downtime_report(struct downtime *d, bool broken, int64_t wait_ms);

#endif
