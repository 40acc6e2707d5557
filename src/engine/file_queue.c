/*
 * file_queue.c: a queue of files for one background thread (the verifier,
 * the uploader): push from any thread, pop waits, and a stop empties it.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"

void file_queue_init(struct file_queue *q, atomic_int *stop)
{
	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->stop = stop;
}

void file_queue_destroy(struct file_queue *q)
{
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
}

bool file_queue_push(struct file_queue *q, struct engine_file *f)
{
	struct engine_file **grown;
	bool pushed = false;

	pthread_mutex_lock(&q->lock);
	if (atomic_load(q->stop))
		goto out;
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;

		grown = realloc(q->items, cap * sizeof(*grown));
		if (!grown)
			goto out;
		q->items = grown;
		q->cap = cap;
	}
	q->items[q->len++] = f;
	pthread_cond_signal(&q->cond);
	pushed = true;
out:
	pthread_mutex_unlock(&q->lock);
	return pushed;
}

struct engine_file *file_queue_pop(struct file_queue *q)
{
	struct engine_file *f = NULL;

	pthread_mutex_lock(&q->lock);
	while (!atomic_load(q->stop) && q->len == 0)
		pthread_cond_wait(&q->cond, &q->lock);
	if (!atomic_load(q->stop)) {
		f = q->items[0];
		memmove(q->items, q->items + 1, --q->len * sizeof(*q->items));
	}
	pthread_mutex_unlock(&q->lock);
	return f;
}

void file_queue_stop(struct file_queue *q, pthread_t *thread, bool *started)
{
	pthread_mutex_lock(&q->lock);
	atomic_store(q->stop, 1);
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (*started)
		pthread_join(*thread, NULL);
	*started = false;
	pthread_mutex_lock(&q->lock);
	free(q->items);
	q->items = NULL;
	q->len = q->cap = 0;
	pthread_mutex_unlock(&q->lock);
}
