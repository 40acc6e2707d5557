/*
 * download_i.h: what the download path shares (fetch.c, download.c,
 * sink.c, refresh.c, stream.c, backoff.c). Private to src/engine/; the lock order
 * is engine_i.h's.
 */
#ifndef MODELFS_DOWNLOAD_I_H
#define MODELFS_DOWNLOAD_I_H

#include <xxhash.h>

#include "engine_i.h"
#include "modelfs/http.h"

/* Bytes of a block are gathered into writes of this size: many workers
 * writing one data file contend for its inode lock once per write(2),
 * and curl hands over 16 KiB at a time. One buffer per connection: 1 MiB
 * cost 20 MiB more RSS at 32 connections for no measured gain. */
#define SINK_BUFFER (256 * 1024)
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000

/* Where the bytes of one download (a block, a part of one, or a run of
 * blocks) go while they arrive. Owned by the worker downloading. */
struct block_sink {
	struct engine_file *f;
	struct inflight *inf;		/* the block being filled */
	struct cache_file *cf;
	uint64_t idx;
	uint64_t start;			/* file offset of the block */
	/* A run (nrun > 1): blocks run[0..nrun) in one request, each
	 * committed as its last byte lands; run[cur] is being filled. */
	struct inflight **run;
	struct run_ctl *ctl;
	int nrun, cur;
	int committed;			/* run[0..committed) are present, held */
	bool cur_aborted;		/* run[cur]'s commit failed (and aborted it) */
	uint64_t run_end;		/* file offset where the run ends */
	bool via_tier;			/* this attempt goes through the shared tier */
	bool via_bucket;		/* ... comes from the shared bucket */
	char *mem;			/* uncached: the block's bytes go here */
	XXH3_state_t *xxh;
	char *buf;			/* cached: bytes not written yet... */
	uint32_t buf_at;		/* ...which start at this offset in the block */
	uint32_t buf_len;
	uint32_t from;			/* the range being fetched starts here in the block... */
	uint32_t arrived;		/* ...and this attempt has had it up to here */
	uint32_t tail_from;		/* [tail_from, len) is in already (fetched first) */
	uint64_t counted;		/* what this sink added to f->arriving */
	int disk_err;			/* the cache's disk failed a write or read-back */
};

/* Where an attempt goes, copied under f->lock (a refresh may swap them). */
struct attempt {
	char *url;
	char *validator;
	struct source_auth auth;
	uint32_t url_gen;		/* the data URL's renewal count then */
};

/* sink.c */
/* An http_sink (http.h) for a block_sink: bytes at a file offset. */
int sink_write(void *ctx, uint64_t offset, const void *data, size_t len);
/* Answer the reads waiting on s's block whose bytes have all arrived. */
int answer_arrived(struct block_sink *s);
/* The sink's bytes leave f->arriving (a retry, or its block ended). */
void sink_uncount(struct block_sink *s);
/* Write the buffered bytes to the cache: 0 or -errno. */
int sink_flush(struct block_sink *s);
/* rc of a write to (or read back from) the cache's disk, kept in s. */
int sink_disk(struct block_sink *s, int rc);

/* refresh.c */
/* f's cache file, resolving f first if it was listed unresolved. */
int file_cache(struct engine_file *f, struct http_client *http, struct cache_file **out);
/* A fresh data URL, unless renewed since generation gen: 0 or -errno. */
int refresh_url(struct engine_file *f, struct http_client *http, uint32_t gen);

/* backoff.c */
/* How long to wait before retry number attempt (jittered), or what the
 * origin's Retry-After said (>= 0). */
int64_t backoff_ms(int attempt, int retry_after_sec);
/* Sleep up to ms, waking early at stop: false when stopping. */
bool engine_sleep_ms(struct engine *e, int64_t ms);

/* download.c */
/* The target of try number which (0: the data URL, k: mirror k): 0,
 * -ENOENT when there is no such mirror, -ENODATA when the data URL must
 * be resolved first. Clear with attempt_clear(). */
int attempt_get(struct engine_file *f, int which, struct attempt *a);
void attempt_clear(struct attempt *a);
/* Download len bytes from sink->from through the tier, else from the
 * data URL, then from each mirror in turn: 0 or -errno, reason filled. */
int download_range(struct engine_file *f, struct http_client *http, struct block_sink *sink,
		   uint32_t len, uint64_t *xxh3, char *reason, size_t reason_len);

/* stream.c */
/* f ignores Range: stream it whole, completing blocks in order. */
void fetch_streamed(struct engine_file *f, struct http_client *http);

#endif
