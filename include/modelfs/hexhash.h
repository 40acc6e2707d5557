/*
 * hexhash.h: SHA-256 as lowercase hex, incrementally or in one call.
 * Threads: no shared state.
 */
#ifndef MODELFS_HEXHASH_H
#define MODELFS_HEXHASH_H

#include <stddef.h>

struct hexhash;

int hexhash_new(struct hexhash **out);			/* SHA-256 */
int hexhash_new_sha1(struct hexhash **out);		/* SHA-1, for git blob ids */
void hexhash_update(struct hexhash *h, const void *data, size_t len);
/* Finish into out (64 hex for SHA-256, 40 for SHA-1, + NUL) and free h. */
void hexhash_final(struct hexhash *h, char out[65]);
void hexhash_free(struct hexhash *h);

/* SHA-256 of data as hex; 0 or -ENOMEM. */
int hexhash_sha256(const void *data, size_t len, char out[65]);

#endif
