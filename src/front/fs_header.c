/*
 * fs_header.c: a safetensors header read leaves the kernel nothing to read
 * ahead. A program reads a header as 8 bytes, then the N bytes they
 * announce; the kernel turns that into reads of 16, 64, 128, 256, 512 KiB
 * (read_ahead_kb 1024), each asked for as soon as the reader touches the
 * one before. A 187 KiB header so cost 464 KiB of reads (two 256 KiB cache
 * blocks where one held it), a 300 KiB one 1 MiB (four). So the first
 * read of such a file, at offset 0, is answered only once the rest of the
 * header's pages have been stored into the kernel's page cache
 * (FUSE_NOTIFY_STORE): the reader then finds them there, and a read that
 * finds its pages cached makes the kernel read nothing ahead.
 *
 * This thread waits for the reads (the header's blocks are usually
 * cached or on their way: the mount's header prefetch), not an engine
 * worker: a store waits for any read of those pages in flight, which an
 * engine worker may be the one to answer.
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

static atomic_int header_reads;

struct sync_read {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	char *buf;		/* a copy of what was read: the caller frees it */
	ssize_t len;		/* or -errno */
};

static void sync_read_done(void *arg, const char *buf, ssize_t len)
{
	struct sync_read *s = arg;
	char *copy = NULL;

	if (len > 0 && (copy = malloc((size_t)len)) == NULL)
		len = -ENOMEM;
	else if (len > 0)
		memcpy(copy, buf, (size_t)len);
	pthread_mutex_lock(&s->lock);
	s->buf = copy;
	s->len = len;
	s->done = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* [off, off + len) of f into a new *buf: its length, or -errno. */
static ssize_t read_sync(struct engine_file *f, uint64_t off, size_t len, char **buf)
{
	struct sync_read s = { .lock = PTHREAD_MUTEX_INITIALIZER,
			       .cond = PTHREAD_COND_INITIALIZER };

	engine_read(f, off, len, sync_read_done, &s);
	pthread_mutex_lock(&s.lock);
	while (!s.done)
		pthread_cond_wait(&s.cond, &s.lock);
	pthread_mutex_unlock(&s.lock);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	*buf = s.buf;
	return s.len;
}

/* Store the pages of f's header after the first len bytes (buf, f's
 * first bytes) into the kernel's page cache. */
static void store_header_pages(struct fs *fs, fuse_ino_t ino, struct engine_file *f,
			       const char *buf, size_t len)
{
	uint64_t size = engine_file_size(f), hlen, need, end;
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
	char *rest = NULL;
	ssize_t got;
	int rc;

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
	bv.buf[0].mem = rest;
	bv.buf[0].size = (size_t)got;
	rc = fuse_lowlevel_notify_store(fs->se, ino, (off_t)len, &bv, 0);
	if (rc)
		log_debug("event=header_store_failed path=%s error=\"%s\"", engine_file_path(f),
			  strerror(-rc));
	free(rest);
}

bool fs_read_header(struct fs *fs, fuse_req_t req, fuse_ino_t ino, struct engine_file *f,
		    size_t size)
{
	const char *path = engine_file_path(f), *dot = strrchr(path, '.');
	char *buf = NULL;
	ssize_t len;

	if (!fs->se || !dot || strcasecmp(dot, ".safetensors") != 0)
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
