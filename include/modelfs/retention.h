/*
 * retention.h: the mount daemon's `cache_ttl`: files of the cache not
 * read for that long are evicted (pinned ones excepted), once right after
 * mounting and then every ttl/4 (at least a second, at most an hour).
 * A lock file pins versions, not residency: it does not keep a file.
 * Threads: one thread of its own, stopped and joined by retention_stop();
 * it uses only the cache, never the network.
 */
#ifndef MODELFS_RETENTION_H
#define MODELFS_RETENTION_H

#include "modelfs/cache.h"

struct retention;

/* ttl_sec > 0. 0 or -errno. */
int retention_start(struct cache *c, int ttl_sec, struct retention **out);
/* NULL is a no-op. */
void retention_stop(struct retention *r);

#endif
