/*
 * downtime.c: skipping a shared source that failed, for a while
 * (downtime.h).
 */
#include "modelfs/clock.h"
#include "modelfs/downtime.h"

void downtime_init(struct downtime *d)
{
	pthread_mutex_init(&d->lock, NULL);
	d->until_ms = 0;
}

void downtime_destroy(struct downtime *d)
{
	pthread_mutex_destroy(&d->lock);
}

bool downtime_skipping(struct downtime *d)
{
	int64_t until;

	pthread_mutex_lock(&d->lock);
	until = d->until_ms;
	pthread_mutex_unlock(&d->lock);
	return until && clock_now_ms() < until;
}

enum downtime_change downtime_report(struct downtime *d, bool broken, int64_t wait_ms)
{
	enum downtime_change change = DOWNTIME_SAME;
	int64_t now = clock_now_ms();
	bool was_down;

	pthread_mutex_lock(&d->lock);
	was_down = d->until_ms != 0;
	if (!broken) {
		if (was_down && now >= d->until_ms) {
			d->until_ms = 0;
			change = DOWNTIME_CAME_BACK;
		}
	} else if (!was_down || now >= d->until_ms) {
		/* Requests under way when it failed report too: only the
		 * first of them says so. */
		d->until_ms = now + wait_ms;
		if (!was_down)
			change = DOWNTIME_WENT_DOWN;
	}
	pthread_mutex_unlock(&d->lock);
	return change;
}
