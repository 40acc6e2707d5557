/*
 * bandwidth.c: the process-wide download cap as a virtual clock: each
 * take reserves the span of time its bytes need at the rate, after the
 * previous reservation, and sleeps until its span starts. That is a token
 * bucket whose tokens are time; reserving under one lock is what makes
 * the cap hold across all connections.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "modelfs/bandwidth.h"

static atomic_uint_fast64_t rate;	/* bytes per second; 0: no cap */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t next_free_us;		/* when the next byte may arrive; under lock */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void bandwidth_set(uint64_t bytes_per_sec)
{
	atomic_store(&rate, bytes_per_sec);
}

void bandwidth_take(size_t n)
{
	uint64_t r = atomic_load(&rate);
	int64_t now, start, span;

	if (r == 0 || n == 0)
		return;
	span = (int64_t)((double)n * 1e6 / (double)r);
	now = now_us();
	pthread_mutex_lock(&lock);
	/* Idle time earns at most one second of burst. */
	if (next_free_us < now - 1000000)
		next_free_us = now - 1000000;
	start = next_free_us;
	next_free_us += span;
	pthread_mutex_unlock(&lock);
	if (start > now) {
		struct timespec ts = { .tv_sec = (start - now) / 1000000,
				       .tv_nsec = ((start - now) % 1000000) * 1000 };

		while (nanosleep(&ts, &ts) != 0)
			;
	}
}
