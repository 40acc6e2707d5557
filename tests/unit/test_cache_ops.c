/*
 * test_cache_ops.c: what verify, evict and status need of cache.c and
 * store.c: re-checking present blocks (a damaged one is dropped, a good
 * one stays), the whole-file verdict (complete, verified, corrupt), pins
 * with two owners that survive a reopen, the running hash (hashed as
 * blocks land, started over when a hashed block goes), and the index's listings: files
 * with their cached bytes, every resolution, the newest fetch-log rows.
 */
#include "modelfs/cache.h"
#include "modelfs/hexhash.h"
#include "modelfs/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache_index.h"
#include "check.h"

#define BS 4096u
#define NBLOCKS 4

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static struct cache *open_cache(void)
{
	struct cache_limits lim = { .max_bytes = 0, .min_free_bytes = 0 };
	struct cache *c = NULL;

	if (cache_open(tmpdir, &lim, &c) != 0) {
		fprintf(stderr, "cache_open %s failed\n", tmpdir);
		exit(2);
	}
	return c;
}

static void block_bytes(uint8_t *buf, uint64_t idx)
{
	for (uint32_t i = 0; i < BS; i++)
		buf[i] = (uint8_t)(idx * 31 + i * 7 + 3);
}

/* Cache every block of f with its right checksum. */
static void fill_file(struct cache_file *f)
{
	uint8_t buf[BS];

	for (uint64_t i = 0; i < cache_file_nblocks(f); i++) {
		if (cache_block_present(f, i))
			continue;
		block_bytes(buf, i);
		CHECK(cache_block_reserve(f, i) == 0);
		CHECK(cache_block_write(f, i, 0, buf, BS) == 0);
		CHECK(cache_block_commit(f, i, XXH3_64bits(buf, BS)) == 0);
		cache_block_release(f, i);
	}
}

static void expected_sha(char out[65])
{
	uint8_t all[BS * NBLOCKS];

	for (int i = 0; i < NBLOCKS; i++)
		block_bytes(all + i * BS, (uint64_t)i);
	hexhash_sha256(all, sizeof(all), out);
}

/* Flip a byte of the data file behind the cache's back. */
static void damage(struct cache_file *f, off_t at)
{
	char path[128];
	uint8_t b;
	int fd;

	snprintf(path, sizeof(path), "%s/data/%lld", tmpdir, (long long)cache_file_id(f));
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && pread(fd, &b, 1, at) == 1);
	b ^= 0xff;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	close(fd);
}

static void test_verify(void)
{
	struct cache *c = open_cache();
	struct cache_file *f = NULL;
	struct cache_verify v;
	char sha[65];
	atomic_int cancel = 0;

	expected_sha(sha);
	CHECK(cache_file_open(c, "k1", BS * NBLOCKS, BS, &f) == 0);
	fill_file(f);

	/* Nothing to compare with: complete, and the hash is recorded. */
	CHECK(cache_file_verify(f, NULL, NULL, NULL, &v) == 0);
	CHECK(v.blocks == NBLOCKS && v.bad_blocks == 0 && v.hash == CACHE_HASH_COMPLETE);
	CHECK_STR(v.sha256, sha);
	CHECK(cache_file_state(f, NULL, NULL) == STORE_COMPLETE);
	/* The right hash: verified. */
	CHECK(cache_file_verify(f, sha, NULL, &cancel, &v) == 0 && v.hash == CACHE_HASH_VERIFIED);
	CHECK(cache_file_state(f, NULL, NULL) == STORE_VERIFIED);

	/* A damaged block fails its check even though it was checked before,
	 * and only it is dropped; a partial file is not hashed. */
	damage(f, 2 * BS + 100);
	CHECK(cache_file_verify(f, sha, NULL, NULL, &v) == 0);
	CHECK(v.blocks == NBLOCKS && v.bad_blocks == 1 && v.bad_bytes == BS);
	CHECK(v.hash == CACHE_HASH_SKIPPED);
	CHECK(!cache_block_present(f, 2) && cache_block_present(f, 1));
	CHECK(cache_file_cached_bytes(f) == 3 * BS);
	CHECK(cache_file_state(f, NULL, NULL) == STORE_PARTIAL);
	/* Checking is not a use, and a checked block reads fine. */
	CHECK(cache_block_check(f, 1) == 0);
	CHECK(cache_block_check(f, 2) == -ENODATA);
	CHECK(cache_block_check(f, 99) == -ENODATA);

	/* Fetched again: whole. Then the wrong expected hash: corrupt. */
	fill_file(f);
	CHECK(cache_file_verify(f, "ab" "ababababababababababababababababababababababababababababababab",
				NULL, NULL, &v) == 0);
	CHECK(v.hash == CACHE_HASH_MISMATCH && strstr(v.reason, "checksum mismatch") != NULL);
	CHECK(cache_file_state(f, NULL, NULL) == STORE_CORRUPT);
	CHECK(cache_file_cached_bytes(f) == 0);

	/* A corrupt file keeps no block until it is started afresh. */
	CHECK(cache_block_reserve(f, 0) == 0);
	CHECK(cache_block_commit(f, 0, 0) == -EIO);
	CHECK(cache_file_cached_bytes(f) == 0);
	CHECK(cache_file_set_state(f, STORE_REMOTE, NULL, NULL) == 0);

	/* Cancelled before it starts: nothing is decided. */
	fill_file(f);
	cancel = 1;
	CHECK(cache_file_verify(f, sha, NULL, &cancel, &v) == -ECANCELED);
	cache_close(c);
}

/* Block idx of f with its bytes, the first one flipped when flip. */
static void put_block(struct cache_file *f, uint64_t idx, bool flip)
{
	uint8_t buf[BS];

	block_bytes(buf, idx);
	buf[0] ^= flip ? 0xff : 0;
	CHECK(cache_block_reserve(f, idx) == 0);
	CHECK(cache_block_write(f, idx, 0, buf, BS) == 0);
	CHECK(cache_block_commit(f, idx, XXH3_64bits(buf, BS)) == 0);
	cache_block_release(f, idx);
}

/* SHA-256 and git blob id of the NBLOCKS blocks, block 0 flipped when flip. */
static void expected_hashes(bool flip, char sha[65], char git1[65])
{
	uint8_t all[BS * NBLOCKS];
	char head[32];
	struct hexhash *g = NULL;
	int n = snprintf(head, sizeof(head), "blob %u", BS * NBLOCKS);

	for (int i = 0; i < NBLOCKS; i++)
		block_bytes(all + i * BS, (uint64_t)i);
	all[0] ^= flip ? 0xff : 0;
	hexhash_sha256(all, sizeof(all), sha);
	CHECK(hexhash_new_sha1(&g) == 0);
	hexhash_update(g, head, (size_t)n + 1);
	hexhash_update(g, all, sizeof(all));
	hexhash_final(g, git1);
}

static void test_running_hash(void)
{
	struct cache *c = open_cache();
	struct cache_file *f = NULL;
	char sha[65], git1[65], flipped[65], flipped_git1[65], got[65], got_git1[65];
	uint64_t gen;

	expected_hashes(false, sha, git1);
	expected_hashes(true, flipped, flipped_git1);
	CHECK(cache_file_open(c, "run", BS * NBLOCKS, BS, &f) == 0);
	/* Blocks land in any order; the hash follows the start as it grows. */
	put_block(f, 2, false);
	CHECK(!cache_file_hash_behind(f));
	put_block(f, 0, false);
	CHECK(cache_file_hash_behind(f));
	CHECK(cache_file_hash_advance(f, true, UINT64_MAX, NULL) == 0);
	CHECK(!cache_file_hash_behind(f));	/* block 1 is missing */
	put_block(f, 1, false);
	CHECK(cache_file_hash_behind(f));
	/* A bounded step says when present blocks are left for later. */
	CHECK(cache_file_hash_advance(f, true, BS, NULL) == 1);
	CHECK(cache_file_hash_behind(f));
	CHECK(cache_file_hash_advance(f, true, UINT64_MAX, NULL) == 0);
	put_block(f, 3, false);
	/* Bytes hashed as they landed are not read again: damage behind the
	 * cache's back after that is for the XXH3 check at a restart. */
	damage(f, 0);
	CHECK(cache_file_hash(f, got, got_git1, NULL, &gen) == 0);
	CHECK_STR(got, sha);
	CHECK_STR(got_git1, git1);
	/* Finished: the next hash reads the file whole (and sees the damage). */
	CHECK(cache_file_hash(f, got, NULL, NULL, &gen) == 0);
	CHECK_STR(got, flipped);

	/* A block dropped after it was hashed: the hash starts over, from the
	 * bytes cached now, and a verdict for the bytes gone is not recorded. */
	cache_file_drop(f);
	CHECK(cache_file_set_hashed(f, gen, STORE_VERIFIED, sha, NULL) == -ESTALE);
	CHECK(cache_file_state(f, NULL, NULL) != STORE_VERIFIED);
	put_block(f, 0, false);
	CHECK(cache_file_hash_advance(f, false, UINT64_MAX, NULL) == 0);
	cache_file_drop(f);
	put_block(f, 0, true);
	for (uint64_t i = 1; i < NBLOCKS; i++) {
		put_block(f, i, false);
		CHECK(cache_file_hash_advance(f, false, UINT64_MAX, NULL) == 0);
	}
	CHECK(cache_file_hash(f, got, NULL, NULL, &gen) == 0);
	CHECK_STR(got, flipped);
	CHECK(cache_file_set_hashed(f, gen, STORE_COMPLETE, got, NULL) == 0);
	CHECK(cache_file_state(f, NULL, NULL) == STORE_COMPLETE);
	CHECK(!cache_file_hash_behind(f));	/* nothing to do for a hashed file */
	cache_close(c);
}

/* The running hash reads several present blocks at once (one mapping of
 * the data file): what it hashes is what the disk holds now, byte for
 * byte, so a byte changed on disk in the middle of such a stretch, after
 * its block was written and before the hash got there, makes the digest
 * differ from the right one; and a bounded step stops at its bound. */
static void test_running_hash_reads_the_disk(void)
{
	struct cache *c = open_cache();
	struct cache_file *f = NULL;
	uint8_t all[BS * NBLOCKS];
	char sha[65], damaged[65], got[65];
	uint64_t gen;

	for (int i = 0; i < NBLOCKS; i++)
		block_bytes(all + i * BS, (uint64_t)i);
	hexhash_sha256(all, sizeof(all), sha);
	all[2 * BS + 100] ^= 0xff;
	hexhash_sha256(all, sizeof(all), damaged);
	CHECK(strcmp(sha, damaged) != 0);
	CHECK(cache_file_open(c, "stretch", BS * NBLOCKS, BS, &f) == 0);
	for (uint64_t i = 1; i < NBLOCKS; i++)
		put_block(f, i, false);
	put_block(f, 0, false);
	/* Two blocks at most: the step stops there, with more to do. */
	CHECK(cache_file_hash_advance(f, false, 2 * BS, NULL) == 1);
	CHECK(cache_file_hash_behind(f));
	/* A byte of block 2 changes on disk before the hash reads it. */
	damage(f, 2 * BS + 100);
	CHECK(cache_file_hash(f, got, NULL, NULL, &gen) == 0);
	CHECK_STR(got, damaged);
	cache_close(c);
}

static void test_pins(void)
{
	struct cache *c = open_cache();
	struct cache_file *f = NULL;
	struct store_file *files = NULL;
	int n = 0;

	CHECK(cache_file_open(c, "k2", BS, BS, &f) == 0);
	CHECK(!cache_file_pinned(f));
	CHECK(cache_file_pin(f, CACHE_PIN_USER, true) == 0 && cache_file_pinned(f));
	/* The config's owner letting go leaves the user's pin. */
	CHECK(cache_file_set_pinned(f, false) == 0 && cache_file_pinned(f));
	CHECK(cache_file_set_pinned(f, true) == 0);
	CHECK(cache_file_pin(f, CACHE_PIN_USER, false) == 0 && cache_file_pinned(f));
	CHECK(cache_file_pin(f, CACHE_PIN_USER, true) == 0);
	cache_close(c);

	/* Both owners are remembered. */
	c = open_cache();
	CHECK(cache_file_open(c, "k2", BS, BS, &f) == 0 && cache_file_pinned(f));
	CHECK(cache_files_list(c, &files, &n) == 0);
	for (int i = 0; i < n; i++)
		if (strcmp(files[i].key, "k2") == 0)
			CHECK(files[i].pin_mask == (CACHE_PIN_CONFIG | CACHE_PIN_USER) && files[i].pinned);
	store_files_free(files, n);
	CHECK(cache_file_pin(f, CACHE_PIN_CONFIG | CACHE_PIN_USER, false) == 0);
	CHECK(!cache_file_pinned(f));
	cache_close(c);
}

static void test_listings(void)
{
	struct cache *c = open_cache();
	struct store *s;
	struct cache_file *f = NULL;
	struct store_file *files = NULL;
	struct store_resolution *res = NULL;
	struct store_fetch *log = NULL;
	struct store_resolution rows[2] = {
		{ .path = "VAE/b.bin", .spec_hash = "s", .file_key = "k3", .size = BS * NBLOCKS },
		{ .path = "VAE/a.bin", .spec_hash = "s", .file_key = "k3", .size = BS * NBLOCKS },
	};
	int n = 0;

	CHECK(cache_file_open(c, "k3", BS * NBLOCKS, BS, &f) == 0);
	fill_file(f);
	CHECK(cache_files_list(c, &files, &n) == 0);
	for (int i = 0; i < n; i++)
		if (strcmp(files[i].key, "k3") == 0)
			CHECK(files[i].cached_bytes == BS * NBLOCKS && files[i].size == BS * NBLOCKS);
		else if (strcmp(files[i].key, "k2") == 0)
			CHECK(files[i].cached_bytes == 0);
	store_files_free(files, n);

	CHECK(cache_resolution_put(c, "vae/x", rows, 2) == 0);
	CHECK(cache_resolutions_all(c, &res, &n) == 0 && n == 2);
	CHECK(n == 2 && strcmp(res[0].path, "VAE/a.bin") == 0 && strcmp(res[0].entry_id, "vae/x") == 0);
	store_resolutions_free(res, n);

	for (int i = 0; i < 5; i++)
		CHECK(cache_file_log_fetch(f, (uint64_t)i * BS, BS, i, i == 4 ? -EIO : 0,
					   i == 4 ? "HTTP 500" : NULL) == 0);
	s = cache_index_open(tmpdir);
	CHECK(store_log_fetch(s, 999999, 0, 1, 1, 0, NULL) == 0);	/* a file that is gone */
	store_close(s);
	CHECK(cache_fetch_log_recent(c, 3, &log, &n) == 0 && n == 3);
	/* The newest three, oldest first. */
	CHECK(log[0].first == 3 * BS && log[1].first == 4 * BS && log[2].file_id == 999999);
	CHECK(log[1].rc == -EIO && log[1].error && strcmp(log[1].error, "HTTP 500") == 0);
	CHECK(log[0].file_key && strcmp(log[0].file_key, "k3") == 0 && log[2].file_key == NULL);
	store_fetches_free(log, n);
	CHECK(cache_fetch_log_recent(c, 0, &log, &n) == 0 && n == 0);
	cache_close(c);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/modelfs-ut-cacheops-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_verify();
	test_running_hash();
	test_running_hash_reads_the_disk();
	test_pins();
	test_listings();
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return check_summary();
}
