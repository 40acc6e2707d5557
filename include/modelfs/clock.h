/*
 * clock.h: the one clock of each kind, in milliseconds.
 * clock_now_ms() is monotonic: for timeouts, deadlines and durations.
 * clock_wall_ms() is the time of day: for what is stored or shown.
 */
#ifndef MODELFS_CLOCK_H
#define MODELFS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
static inline int64_t clock_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

/* ms from now on clock id, as pthread_cond_timedwait() takes it (its
 * clock: CLOCK_REALTIME unless the condition was made otherwise). */
static inline struct timespec clock_deadline(clockid_t id, int64_t ms)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

#endif
