/*
 * fs_pages.c: bytes the daemon puts into the kernel's page cache before
 * anyone asks (FUSE_NOTIFY_STORE), where a read that finds its pages
 * cached costs no FUSE round trip and makes the kernel read nothing
 * ahead.
 *
 * A safetensors header. A program reads one as 8 bytes, then the N bytes
 * they announce; the kernel turns that into reads of 16, 64, 128, 256,
 * 512 KiB (read_ahead_kb 1024), each asked for as soon as the reader
 * touches the one before. A 187 KiB header so cost 464 KiB of reads (two
 * 256 KiB cache blocks where one held it), a 300 KiB one 1 MiB (four).
 * So the first read of such a file, at offset 0, is answered only once
 * the rest of the header's pages are stored: the header read then finds
 * them. The FUSE thread waits for that (the header's blocks are usually
 * cached or on their way: the mount's header prefetch), not an engine
 * worker: a store waits for any read of those pages in flight, which an
 * engine worker may be the one to answer.
 *
 * A loader's blocks. A loader reads tensors in model order; the engine
 * fetches the whole file in file order meanwhile (read.c), so nearly
 * every block arrives before the loader wants it, and the loader then
 * read it all back through FUSE, 1 MiB per round trip, after the
 * download had ended (94% of a 1 GiB mmap load's reads). Each block is
 * stored as it arrives instead (engine_set_loader_sink()), by one thread
 * of its own, for the same reason as above.
 */
#include "fs_i.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/log.h"
#include "modelfs/modelinfo.h"

#define PAGE_BYTES 4096u
/* A longer header is read the usual way. */
#define HEADER_STORE_MAX (8u << 20)
/* Threads that may wait here at once: the rest answer as usual, so the
 * loop keeps threads for the reads a store may wait for. */
#define HEADER_READS_AT_ONCE 4
/* Blocks waiting to be stored: more are dropped (the loader reads them
 * through FUSE, as it would have). */
#define PUSH_QUEUE 1024
#define PUSH_MOST (2u << 20)		/* bytes stored at once */
/* Files whose inode is known, by their engine_file (direct-mapped). */
#define PUSH_INOS 64

static atomic_int header_reads;

struct block_push {
	struct engine_file *f;
	uint64_t off;
	uint32_t len;
};

struct fs_pages {
	struct fs *fs;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;				/* under lock */
	struct block_push q[PUSH_QUEUE];	/* a ring; under lock */
	size_t head, n;				/* under lock */
	struct {
		struct engine_file *f;
		fuse_ino_t ino;
	} inos[PUSH_INOS];			/* under lock */
};

/* [off, off + len) of f into a new *buf: its length, or -errno. */
static ssize_t read_sync(struct engine_file *f, uint64_t off, size_t len, char **buf)
{
	ssize_t got;

	*buf = malloc(len ? len : 1);
	if (!*buf)
		return -ENOMEM;
	got = engine_read_wait(f, *buf, off, len);
	if (got <= 0) {
		free(*buf);
		*buf = NULL;
	}
	return got;
}

/* Store [off, off + len) of buf, f's bytes there, into the kernel's page
 * cache for inode ino; waits for reads of those pages in flight. */
static void store(struct fs *fs, fuse_ino_t ino, struct engine_file *f, uint64_t off,
		  char *buf, size_t len)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
	int rc;

	bv.buf[0].mem = buf;
	rc = fuse_lowlevel_notify_store(fs->se, ino, (off_t)off, &bv, 0);
	if (rc)
		log_debug("event=page_store_failed path=%s off=%llu error=\"%s\"",
			  engine_file_path(f), (unsigned long long)off, strerror(-rc));
}

/* Store the pages of f's header after the first len bytes (buf, f's
 * first bytes) into the kernel's page cache. */
static void store_header_pages(struct fs *fs, fuse_ino_t ino, struct engine_file *f,
			       const char *buf, size_t len)
{
	uint64_t size = engine_file_size(f), hlen, need, end;
	char *rest = NULL;
	ssize_t got;

	if (len % PAGE_BYTES != 0 ||
	    modelinfo_header_len(MODELINFO_SAFETENSORS, buf, len, size, &hlen, &need) != 0)
		return;
	end = (hlen + PAGE_BYTES - 1) / PAGE_BYTES * PAGE_BYTES;
	if (end > size)
		end = size;
	if (end <= len || end > HEADER_STORE_MAX)
		return;
	got = read_sync(f, len, (size_t)(end - len), &rest);
	if (got != (ssize_t)(end - len)) {
		free(rest);
		return;		/* the reader's own reads will say what went wrong */
	}
	store(fs, ino, f, len, rest, (size_t)got);
	free(rest);
}

bool fs_read_header(struct fs *fs, fuse_req_t req, fuse_ino_t ino, struct engine_file *f,
		    size_t size)
{
	const char *path = engine_file_path(f), *dot = strrchr(path, '.');
	char *buf = NULL;
	ssize_t len;

	/* A strict file answers nothing before it is verified: a thread
	 * would wait here for the whole download. */
	if (!fs->se || !dot || strcasecmp(dot, ".safetensors") != 0 ||
	    engine_file_entry(f)->verify == CONFIG_VERIFY_STRICT)
		return false;
	if (atomic_fetch_add(&header_reads, 1) >= HEADER_READS_AT_ONCE) {
		atomic_fetch_sub(&header_reads, 1);
		return false;
	}
	len = read_sync(f, 0, size, &buf);
	if (len > 0)
		store_header_pages(fs, ino, f, buf, (size_t)len);
	atomic_fetch_sub(&header_reads, 1);
	if (len < 0)
		fuse_reply_err(req, (int)-len);
	else
		fuse_reply_buf(req, buf, (size_t)len);
	free(buf);
	return true;
}

/* ---- a loader's blocks ---------------------------------------------------- */

static size_t ino_slot(const struct engine_file *f)
{
	return ((uintptr_t)f >> 4) % PUSH_INOS;
}

void fs_pages_opened(struct fs_pages *p, struct engine_file *f, fuse_ino_t ino)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->inos[ino_slot(f)].f = f;
	p->inos[ino_slot(f)].ino = ino;
	pthread_mutex_unlock(&p->lock);
}

/* engine_block_sink: queue it, never wait. */
static void loader_block(void *arg, struct engine_file *f, uint64_t off, uint32_t len)
{
	struct fs_pages *p = arg;

	pthread_mutex_lock(&p->lock);
	if (!p->stop && p->n < PUSH_QUEUE && p->inos[ino_slot(f)].f == f) {
		p->q[(p->head + p->n) % PUSH_QUEUE] = (struct block_push){ f, off, len };
		p->n++;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

/* Take the queued blocks that follow b in its file into b, up to
 * PUSH_MOST: fewer, larger stores. Blocks come from many downloads at
 * once, so the next one is rarely next in the queue. Under p->lock. */
static void merge_following(struct fs_pages *p, struct block_push *b)
{
	bool found = true;

	while (found && b->len < PUSH_MOST) {
		found = false;
		for (size_t i = 0; i < p->n && !found; i++) {
			struct block_push *c = &p->q[(p->head + i) % PUSH_QUEUE];

			if (c->f == b->f && c->off == b->off + b->len) {
				b->len += c->len;
				c->f = NULL;	/* skipped when its turn comes */
				found = true;
			}
		}
	}
}

static void *pages_main(void *arg)
{
	struct fs_pages *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct block_push b;
		fuse_ino_t ino;
		char *buf = NULL;
		ssize_t got;

		while (!p->stop && p->n == 0)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		b = p->q[p->head];
		p->head = (p->head + 1) % PUSH_QUEUE;
		p->n--;
		if (!b.f || p->inos[ino_slot(b.f)].f != b.f)
			continue;	/* merged, or another file took its slot since */
		merge_following(p, &b);
		ino = p->inos[ino_slot(b.f)].ino;
		pthread_mutex_unlock(&p->lock);
		got = read_sync(b.f, b.off, b.len, &buf);
		if (got > 0)
			store(p->fs, ino, b.f, b.off, buf, (size_t)got);
		free(buf);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int fs_pages_start(struct fs *fs, struct fs_pages **out)
{
	struct fs_pages *p = calloc(1, sizeof(*p));
	int rc;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->fs = fs;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	rc = pthread_create(&p->thread, NULL, pages_main, p);
	if (rc) {
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return -rc;
	}
	engine_set_loader_sink(fs->engine, loader_block, p);
	*out = p;
	return 0;
}

void fs_pages_stop(struct fs_pages *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
}

void fs_pages_free(struct fs_pages *p)
{
	if (!p)
		return;
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
