/*
 * backoff.c: waiting before a try again. backoff_ms() says how long
 * (doubling from BACKOFF_FIRST_MS up to BACKOFF_MAX_MS, jittered, or what
 * the origin's Retry-After asked), engine_sleep_ms() waits that long
 * unless the engine stops. Used by every retry loop of the download path
 * (download.c, stream.c, refresh.c), and by nothing it calls.
 *
 * Locks: engine_sleep_ms() waits on stop_cond with qlock, alone.
 */
#include <stdlib.h>
#include <time.h>

#include "download_i.h"
#include "modelfs/clock.h"

int64_t backoff_ms(int attempt, int retry_after_sec)
{
	int64_t ms;

	if (retry_after_sec >= 0)
		return (int64_t)retry_after_sec * 1000 + 250;
	ms = (int64_t)BACKOFF_FIRST_MS << (attempt < 6 ? attempt : 6);
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	return ms / 2 + rand() % (ms / 2 + 1);	/* jitter: retries of many blocks spread out */
}

bool engine_sleep_ms(struct engine *e, int64_t ms)
{
	struct timespec until = clock_deadline(CLOCK_REALTIME, ms);

	pthread_mutex_lock(&e->qlock);
	while (!atomic_load(&e->stop) &&
	       pthread_cond_timedwait(&e->stop_cond, &e->qlock, &until) == 0)
		;
	pthread_mutex_unlock(&e->qlock);
	return !atomic_load(&e->stop);
}
