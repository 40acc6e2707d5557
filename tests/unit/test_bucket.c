/*
 * test_bucket.c: bucket.h's names and checksums: where a shared_cache URL
 * and the AWS_* environment put the objects, which URLs are refused and
 * why, and that a block's checksum names its file and its place (the
 * value is the one bucket.h defines, computed independently in Python).
 * Reads and uploads run against the fake S3 in test_bucket.py.
 */
#include "modelfs/bucket.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SHA "abababababababababababababababababababababababababababababababab"
#define OTHER "cdababababababababababababababababababababababababababababababab"

static void clear_env(void)
{
	static const char *const names[] = {
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unsetenv(names[i]);
}

static void test_names(void)
{
	struct bucket *b = NULL;
	const char *why = NULL;
	char *k;

	clear_env();
	CHECK(bucket_new("s3://models/cache/v1/", &b, &why) == 0 && why == NULL);
	k = bucket_key(b, SHA, ".blocks");
	CHECK_STR(k, "cache/v1/sha256/" SHA ".blocks");
	free(k);
	CHECK_STR(bucket_name(b), "s3://models/cache/v1 at https://s3.us-east-1.amazonaws.com:443");
	bucket_free(b);

	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
	setenv("AWS_REGION", "eu-west-3", 1);
	CHECK(bucket_new("s3://models", &b, &why) == 0);
	k = bucket_key(b, SHA, "");
	CHECK_STR(k, "sha256/" SHA);
	free(k);
	CHECK_STR(bucket_name(b), "s3://models at http://127.0.0.1:9000");
	bucket_free(b);
	clear_env();
}

static void test_refused(void)
{
	static const char *const bad[] = {
		"models", "https://models/x", "s3://", "s3:///x", "s3://bad bucket/x",
		"s3://models/a//b", "s3://models/../x", "s3://models/a b", "s3://models/a?b",
	};
	struct bucket *b = NULL;
	const char *why = NULL;

	clear_env();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		CHECK(bucket_new(bad[i], &b, &why) == -EINVAL && b == NULL && why != NULL);
	}
	setenv("AWS_ACCESS_KEY_ID", "AKIAONLY", 1);
	CHECK(bucket_new("s3://models", &b, &why) == -EINVAL);
	CHECK_STR(why, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
	setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
	setenv("AWS_ENDPOINT_URL", "ftp://x", 1);
	CHECK(bucket_new("s3://models", &b, &why) == -EINVAL);
	CHECK_STR(why, "AWS_ENDPOINT_URL(_S3) is not an http(s) URL");
	clear_env();
}

static void test_block_sum(void)
{
	char a[65], b[65], c[65];

	CHECK(bucket_block_sum(SHA, 3, "hello", 5, a) == 0);
	/* sha256(b"modelfs-block\0" + SHA + (3).to_bytes(8, "little") + b"hello") */
	CHECK_STR(a, "00f1f91202c60199b2a520bc2f154300cb6fd925f5ae9fe098af97d77222295b");
	CHECK(bucket_block_sum(SHA, 4, "hello", 5, b) == 0);
	CHECK(strcmp(a, b) != 0);	/* another place */
	CHECK(bucket_block_sum(OTHER, 3, "hello", 5, c) == 0);
	CHECK(strcmp(a, c) != 0);	/* another file */
}

int main(void)
{
	test_names();
	test_refused();
	test_block_sum();
	return check_summary();
}
