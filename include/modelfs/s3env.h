/*
 * s3env.h: what S3 requests take from the environment and the rules for
 * bucket names, shared by the S3 source (source_s3.c) and the shared
 * bucket (bucket.c), so that both read AWS_* alike.
 * Threads: reads the environment; no state of its own.
 */
#ifndef MODELFS_S3ENV_H
#define MODELFS_S3ENV_H

#include <stdbool.h>
#include <stddef.h>

/* $name when set and not empty, else NULL. */
const char *s3env_get(const char *name);

/* $AWS_REGION, else $AWS_DEFAULT_REGION, else "us-east-1". */
const char *s3env_region(void);

/* $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL, else NULL (AWS itself). */
const char *s3env_endpoint(void);

/* Bucket names are at most 63 of [a-z0-9.-] today; older ones may carry
 * upper case and '_', so those are allowed too. len bytes of name. */
bool s3env_bucket_ok(const char *name, size_t len);

/* $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY as "KEY:SECRET" and
 * $AWS_SESSION_TOKEN, each registered as a log secret: 0 with both out
 * NULL when neither is set (anonymous), or copies the caller frees
 * (token NULL when unset); -EINVAL with *why when only one of the pair
 * is set; -ENOMEM (nothing out). */
int s3env_credentials(char **credentials, char **session_token, const char **why);

#endif
