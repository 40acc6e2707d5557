/*
 * bucket.h: an S3-compatible bucket as a cache shared by nodes
 * ([modelfs] shared_cache = "s3://bucket/prefix"). Files are named by
 * their SHA-256, so only files whose SHA-256 is known are read or written.
 *
 * Objects under prefix ("P/" below; none when the URL has no prefix):
 *   P/sha256/<hex>          the file's bytes
 *   P/sha256/<hex>.blocks   its block checksums (the sidecar)
 *   P/sha256/<hex>.claim    who uploads it (created with If-None-Match: *)
 * The sidecar is text: a 128-byte header line
 *   "modelfs-blocks 1 block=262144 size=<20 digits> sha256=<hex>" padded
 *   with spaces to 127 bytes, then '\n';
 * then one 65-byte line per BUCKET_BLOCK bytes of the file (the last block
 * may be short): 64 hex of SHA-256("modelfs-block\0" <file hex> <block
 * index, 8 bytes little-endian> <the block's bytes>), then '\n'. So line
 * i is at 128 + 65 i, and a checksum names its file and its place: a
 * block of another file, or of another place, never matches.
 *
 * (0) A read is one try: the caller's next source is the origin. A
 *     bucket that failed in itself (no connection, a timeout, a 5xx, a
 *     wrong answer) or refused the credentials (401, 403) is skipped by
 *     reads for BUCKET_RETRY_MS, with one log
 *     line (event=bucket_down), as a dead tier is (tier.h (3)).
 * (1) A byte read from the bucket reaches the caller's sink only after
 *     the whole block it is in matched its checksum; a block that does
 *     not is reported once (log), never passed on, and the bucket is not
 *     asked for that file again by this handle.
 * (2) An object is written once, the sidecar last: a look for the
 *     sidecar (a 1-byte GET: a node offers each file it has verified at
 *     each start), a claim (PUT with
 *     If-None-Match: *, so of racing nodes one uploads), the bytes (one
 *     PUT, or a multipart upload, completed with If-None-Match: *), then
 *     the sidecar (If-None-Match: *). A reader that finds the sidecar
 *     finds the bytes complete. A claim stays; one older than
 *     BUCKET_CLAIM_STALE_SEC without a sidecar (its node died mid-upload)
 *     is deleted and made afresh by the next node that verified the file.
 * (3) The bytes are streamed from a file descriptor, each part read
 *     twice (hashed, then sent): memory is one BUCKET_BLOCK buffer, the
 *     sidecar (65 bytes per BUCKET_BLOCK: 6.5 MB for 25 GB) and the part
 *     list.
 * (4) AWS_* credentials (as the S3 source: SigV4 by libcurl) go to the
 *     bucket's host only: every request's origin is the bucket's URL and
 *     none follows a redirect.
 * What the checksums are for: a torn, truncated, bit-rotten or misnamed
 * object. They do not make a bucket that others may write trustworthy:
 * whoever writes the bucket can write both. A file read whole is still
 * checked against its SHA-256 (verify.c) as any other.
 * Ownership: bucket_new() gives a handle, bucket_free() frees it.
 * Threads: a handle may be used from any thread (each with its own
 * http_client).
 */
#ifndef MODELFS_BUCKET_H
#define MODELFS_BUCKET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "modelfs/http.h"

#define BUCKET_BLOCK (256u << 10)	/* bytes per checksum */
#define BUCKET_SIDECAR_HEADER 128
#define BUCKET_SIDECAR_LINE 65
#define BUCKET_PART (8u << 20)		/* multipart part size (S3's minimum is 5 MiB) */
#define BUCKET_ABSENT_MS 60000		/* a file not in the bucket is not asked for again
					 * for this long */
#define BUCKET_RETRY_MS 30000		/* a bucket that failed is skipped for this long */
#define BUCKET_CLAIM_STALE_SEC (6 * 3600)	/* a claim this old is taken over */

struct bucket;

/* url: "s3://bucket[/prefix]". Endpoint, region and credentials as the
 * S3 source takes them ($AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else
 * AWS; $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1; $AWS_ACCESS_KEY_ID,
 * $AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN). 0 and *out; -EINVAL with
 * *why (a sentence naming what to fix); -ENOMEM. */
int bucket_new(const char *url, struct bucket **out, const char **why);
void bucket_free(struct bucket *b);
/* "s3://bucket/prefix at http://host:port": for logs, no secret. */
const char *bucket_name(const struct bucket *b);

/* The key of a file's object (kind "" for the bytes, ".blocks",
 * ".claim"): a string the caller frees, or NULL (no memory). */
char *bucket_key(const struct bucket *b, const char *sha256, const char *kind);

/* Checksum line body (64 hex + NUL) of block idx of the file sha256. */
int bucket_block_sum(const char *sha256, uint64_t idx, const void *data, size_t len,
		     char out[65]);

/*
 * Bytes [off, off+len) of the file sha256 (size bytes), checked block by
 * block (1), to sink in order. Blocks on the network. 0; -ENOENT when
 * the bucket has no (complete) object for it, was found bad before, or
 * is skipped after a failure (0);
 * -EBADMSG when a block failed its checksum (logged); -ECANCELED at
 * *cancel; the sink's -errno; or http_get()'s.
 */
int bucket_read(struct bucket *b, struct http_client *c, const char *sha256, uint64_t size,
		uint64_t off, uint64_t len, const atomic_int *cancel, http_sink_fn sink,
		void *ctx);

/*
 * Upload the file sha256, size bytes read from fd (which must stay
 * valid and unchanged), as (2) and (3) say. Blocks on the network and
 * the disk for as long as that takes. 0 when uploaded; -EEXIST when it
 * is there already or another node claimed it; -ECANCELED; -EIO, -EAGAIN
 * ... from the requests (a failed upload is aborted and its claim
 * deleted, so another node may try).
 */
int bucket_upload(struct bucket *b, struct http_client *c, const char *sha256, int fd,
		  uint64_t size, const atomic_int *cancel);

#endif
