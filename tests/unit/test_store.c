/*
 * test_store.c: store.c against the contract of store.h: the schema and
 * the created time survive a reopen, a file keeps its block_size and
 * loses its blocks when its size changes, block rows and LRU order,
 * resolutions replaced per entry, the fetch log. Each test uses a fresh
 * temp dir; the database is also inspected with plain SQLite.
 */
#include "modelfs/store.h"
#include "modelfs/log.h"

#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"




/* ---- temp dirs ---------------------------------------------------------- */

static char tmpdir[64];
static char dbpath[128];

static void tmp_make(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/modelfs-ut-store-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(dbpath, sizeof(dbpath), "%s/index.sqlite", tmpdir);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void tmp_remove(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct store *open_fresh(void)
{
	struct store *s = NULL;

	tmp_make();
	CHECK(store_open(dbpath, &s) == 0);
	if (!s) {
		fprintf(stderr, "store_open %s failed\n", dbpath);
		exit(2);
	}
	return s;
}

/* One integer from sql run on a separate read-only connection; -1 on error. */
static int64_t sql_int(const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static int sql_exec(const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open(dbpath, &db);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

/* ---- open / schema / created -------------------------------------------- */

static void test_open_schema(void)
{
	struct store *s = open_fresh();
	struct store_file f;
	int64_t created = store_created(s);

	CHECK(created > 1600000000);
	CHECK(sql_int("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name IN "
		      "('meta','files','blocks','resolutions','fetch_log')") == 5);
	CHECK(sql_int("SELECT COUNT(*) FROM sqlite_master WHERE name='blocks_atime'") == 1);
	CHECK(sql_int("SELECT CAST(value AS INTEGER) >= 1 FROM meta WHERE key='schema_version'") == 1);
	CHECK(sql_int("SELECT value FROM meta WHERE key='created'") == created);
	CHECK(access(dbpath, F_OK) == 0);
	CHECK(store_file_get_or_create(s, "k1", 100, 10, &f) == 0);
	store_file_clear(&f);
	store_close(s);

	/* WAL mode is persistent in the file. */
	{
		sqlite3 *db = NULL;
		sqlite3_stmt *st = NULL;

		CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
		CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
		CHECK(sqlite3_step(st) == SQLITE_ROW);
		CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
		sqlite3_finalize(st);
		sqlite3_close(db);
	}

	/* Reopen keeps data and the created time (set it far in the past so
	 * a fresh time(NULL) cannot pass for it). */
	CHECK(sql_exec("UPDATE meta SET value='1234567' WHERE key='created'") == SQLITE_OK);
	CHECK(store_open(dbpath, &s) == 0);
	CHECK(store_created(s) == 1234567);
	CHECK(store_file_get_or_create(s, "k1", 100, 10, &f) == 0);
	CHECK(f.id > 0 && f.size == 100 && f.block_size == 10);
	store_file_clear(&f);
	CHECK(sql_int("SELECT COUNT(*) FROM files") == 1);
	store_close(s);

	/* A path in a missing directory fails cleanly. */
	{
		char bad[192];

		s = NULL;
		snprintf(bad, sizeof(bad), "%s/no/such/dir/index.sqlite", tmpdir);
		CHECK(store_open(bad, &s) < 0);
		CHECK(s == NULL);
	}
	tmp_remove();
}

/* ---- files ---------------------------------------------------------------- */

static void count_block(void *ctx, const struct store_block *b)
{
	(void)b;
	(*(int *)ctx)++;
}

static int nblocks(struct store *s, int64_t id)
{
	int n = 0;

	CHECK(store_blocks_load(s, id, count_block, &n) == 0);
	return n;
}

static void test_files(void)
{
	struct store *s = open_fresh();
	struct store_file a, b, c;
	struct store_block blk = { .len = 10, .xxh3 = 1 };
	uint64_t used = 1;

	CHECK(store_file_get_or_create(s, "sha:aaa", 100, 10, &a) == 0);
	CHECK(a.id > 0);
	CHECK_STR(a.key, "sha:aaa");
	CHECK(a.size == 100 && a.block_size == 10);
	CHECK(a.state == STORE_REMOTE && !a.sha256 && !a.error && !a.pinned);

	/* Same key: same id. Another block_size asked: the stored one stays. */
	CHECK(store_file_get_or_create(s, "sha:aaa", 100, 64, &b) == 0);
	CHECK(b.id == a.id);
	CHECK(b.block_size == 10);
	CHECK(b.size == 100);
	store_file_clear(&b);

	/* Another key: another id. */
	CHECK(store_file_get_or_create(s, "sha:bbb", 5, 64, &c) == 0);
	CHECK(c.id != a.id && c.block_size == 64 && c.size == 5);

	/* State, sha256, error and pin are stored. */
	CHECK(store_file_set_state(s, a.id, STORE_VERIFIED, "abc123", "old error") == 0);
	CHECK(store_file_set_pinned(s, a.id, true) == 0);
	CHECK(store_file_get_or_create(s, "sha:aaa", 100, 10, &b) == 0);
	CHECK(b.state == STORE_VERIFIED && b.pinned);
	CHECK_STR(b.sha256, "abc123");
	CHECK_STR(b.error, "old error");
	store_file_clear(&b);
	CHECK(store_file_set_state(s, a.id, STORE_PARTIAL, NULL, NULL) == 0);
	CHECK(store_file_get_or_create(s, "sha:aaa", 100, 10, &b) == 0);
	CHECK(b.state == STORE_PARTIAL && !b.sha256 && !b.error);
	store_file_clear(&b);
	CHECK(store_file_set_state(s, a.id, STORE_COMPLETE, "abc123", NULL) == 0);

	/* Blocks of both files. */
	for (uint64_t i = 0; i < 10; i++) {
		blk.file_id = a.id;
		blk.idx = i;
		CHECK(store_block_put(s, &blk, 1000 + (int64_t)i) == 0);
	}
	blk.file_id = c.id;
	blk.idx = 0;
	blk.len = 5;
	CHECK(store_block_put(s, &blk, 5) == 0);
	CHECK(nblocks(s, a.id) == 10);
	CHECK(store_bytes_used(s, &used) == 0 && used == 105);

	/* A size change drops the blocks and resets the state; the block_size
	 * and the pin stay. */
	CHECK(store_file_get_or_create(s, "sha:aaa", 120, 32, &b) == 0);
	CHECK(b.id == a.id && b.size == 120 && b.block_size == 10);
	CHECK(b.state == STORE_REMOTE && !b.sha256);
	CHECK(b.pinned);
	store_file_clear(&b);
	CHECK(nblocks(s, a.id) == 0);
	CHECK(nblocks(s, c.id) == 1);
	CHECK(store_bytes_used(s, &used) == 0 && used == 5);
	/* ... in the store too, seen by the next caller. */
	CHECK(store_file_get_or_create(s, "sha:aaa", 120, 10, &b) == 0);
	CHECK(b.size == 120 && b.state == STORE_REMOTE && !b.sha256 && !b.error);
	store_file_clear(&b);

	/* A zero-size file is a file. */
	CHECK(store_file_get_or_create(s, "empty", 0, 10, &b) == 0);
	CHECK(b.id > 0 && b.size == 0);
	store_file_clear(&b);

	store_file_clear(&a);
	store_file_clear(&c);
	store_close(s);
	tmp_remove();
}

/* ---- blocks --------------------------------------------------------------- */

struct seen {
	int n;
	struct store_block b[16];
};

static void collect_block(void *ctx, const struct store_block *b)
{
	struct seen *s = ctx;

	if (s->n < 16)
		s->b[s->n] = *b;
	s->n++;
}

static const struct store_block *seen_find(const struct seen *s, uint64_t idx)
{
	for (int i = 0; i < s->n && i < 16; i++)
		if (s->b[i].idx == idx)
			return &s->b[i];
	return NULL;
}

static void test_blocks(void)
{
	struct store *s = open_fresh();
	struct store_file a, b;
	struct store_block blk;
	struct seen seen = { 0 };
	const struct store_block *p;
	uint64_t used = 1;

	CHECK(store_bytes_used(s, &used) == 0 && used == 0);
	CHECK(store_file_get_or_create(s, "a", 1000, 100, &a) == 0);
	CHECK(store_file_get_or_create(s, "b", 250, 100, &b) == 0);

	/* An XXH3 with the top bit set survives the int64 column. */
	blk = (struct store_block){ .file_id = a.id, .idx = 0, .len = 100,
				    .xxh3 = 0xfedcba9876543210ull };
	CHECK(store_block_put(s, &blk, 10) == 0);
	blk = (struct store_block){ .file_id = a.id, .idx = 7, .len = 100, .xxh3 = 7 };
	CHECK(store_block_put(s, &blk, 20) == 0);
	blk = (struct store_block){ .file_id = b.id, .idx = 2, .len = 50, .xxh3 = 2 };
	CHECK(store_block_put(s, &blk, 30) == 0);

	CHECK(store_blocks_load(s, a.id, collect_block, &seen) == 0);
	CHECK(seen.n == 2);
	p = seen_find(&seen, 0);
	CHECK(p && p->file_id == a.id && p->len == 100 && p->xxh3 == 0xfedcba9876543210ull);
	p = seen_find(&seen, 7);
	CHECK(p && p->len == 100 && p->xxh3 == 7);
	CHECK(store_bytes_used(s, &used) == 0 && used == 250);

	/* Put on an existing row replaces it. */
	blk = (struct store_block){ .file_id = a.id, .idx = 7, .len = 100, .xxh3 = 77 };
	CHECK(store_block_put(s, &blk, 21) == 0);
	seen.n = 0;
	CHECK(store_blocks_load(s, a.id, collect_block, &seen) == 0);
	CHECK(seen.n == 2);
	p = seen_find(&seen, 7);
	CHECK(p && p->xxh3 == 77);
	CHECK(store_bytes_used(s, &used) == 0 && used == 250);

	/* Delete one; deleting an absent one is not an error. */
	CHECK(store_block_delete(s, a.id, 7) == 0);
	CHECK(store_block_delete(s, a.id, 7) == 0);
	seen.n = 0;
	CHECK(store_blocks_load(s, a.id, collect_block, &seen) == 0);
	CHECK(seen.n == 1 && seen.b[0].idx == 0);
	CHECK(store_bytes_used(s, &used) == 0 && used == 150);

	/* Delete all of a, b untouched. */
	blk = (struct store_block){ .file_id = a.id, .idx = 3, .len = 100, .xxh3 = 3 };
	CHECK(store_block_put(s, &blk, 40) == 0);
	CHECK(store_blocks_delete_all(s, a.id) == 0);
	CHECK(nblocks(s, a.id) == 0);
	CHECK(nblocks(s, b.id) == 1);
	CHECK(store_bytes_used(s, &used) == 0 && used == 50);

	/* Loading a file without blocks calls nothing. */
	seen.n = 0;
	CHECK(store_blocks_load(s, 999, collect_block, &seen) == 0);
	CHECK(seen.n == 0);

	/* A block of no file is refused (foreign key). */
	blk = (struct store_block){ .file_id = 999, .idx = 0, .len = 1, .xxh3 = 1 };
	CHECK(store_block_put(s, &blk, 1) < 0);
	CHECK(store_bytes_used(s, &used) == 0 && used == 50);

	store_file_clear(&a);
	store_file_clear(&b);
	store_close(s);
	tmp_remove();
}

static void test_lru(void)
{
	struct store *s = open_fresh();
	struct store_file a, b, p;
	struct store_block out[8], blk;
	int n = -1;

	CHECK(store_file_get_or_create(s, "a", 1000, 100, &a) == 0);
	CHECK(store_file_get_or_create(s, "b", 1000, 64, &b) == 0);
	CHECK(store_file_get_or_create(s, "pinned", 1000, 32, &p) == 0);
	CHECK(store_file_set_pinned(s, p.id, true) == 0);

	CHECK(store_lru_blocks(s, out, 8, &n) == 0 && n == 0);

	/* atimes: a/0=50 a/1=10 b/0=30 p/0=1 (oldest, but pinned) b/1=40 */
	blk = (struct store_block){ .file_id = a.id, .idx = 0, .len = 100, .xxh3 = 100 };
	CHECK(store_block_put(s, &blk, 50) == 0);
	blk = (struct store_block){ .file_id = a.id, .idx = 1, .len = 100, .xxh3 = 101 };
	CHECK(store_block_put(s, &blk, 10) == 0);
	blk = (struct store_block){ .file_id = b.id, .idx = 0, .len = 64, .xxh3 = 200 };
	CHECK(store_block_put(s, &blk, 30) == 0);
	blk = (struct store_block){ .file_id = p.id, .idx = 0, .len = 32, .xxh3 = 300 };
	CHECK(store_block_put(s, &blk, 1) == 0);
	blk = (struct store_block){ .file_id = b.id, .idx = 1, .len = 64, .xxh3 = 201 };
	CHECK(store_block_put(s, &blk, 40) == 0);

	CHECK(store_lru_blocks(s, out, 8, &n) == 0);
	CHECK(n == 4);
	if (n == 4) {
		CHECK(out[0].file_id == a.id && out[0].idx == 1 && out[0].block_size == 100);
		CHECK(out[0].len == 100 && out[0].xxh3 == 101);
		CHECK(out[1].file_id == b.id && out[1].idx == 0 && out[1].block_size == 64);
		CHECK(out[2].file_id == b.id && out[2].idx == 1 && out[2].block_size == 64);
		CHECK(out[3].file_id == a.id && out[3].idx == 0 && out[3].block_size == 100);
	}

	/* max bounds the answer. */
	CHECK(store_lru_blocks(s, out, 2, &n) == 0 && n == 2);
	CHECK(out[0].idx == 1 && out[1].file_id == b.id);

	/* Touch reorders: a/1 becomes the newest. */
	CHECK(store_block_touch(s, a.id, 1, 100) == 0);
	CHECK(store_lru_blocks(s, out, 8, &n) == 0 && n == 4);
	CHECK(out[0].file_id == b.id && out[0].idx == 0);
	CHECK(out[3].file_id == a.id && out[3].idx == 1);

	/* Unpinning brings p's block in, first. */
	CHECK(store_file_set_pinned(s, p.id, false) == 0);
	CHECK(store_lru_blocks(s, out, 8, &n) == 0 && n == 5);
	CHECK(out[0].file_id == p.id && out[0].block_size == 32);

	/* Pinning a hides all its blocks. */
	CHECK(store_file_set_pinned(s, a.id, true) == 0);
	CHECK(store_lru_blocks(s, out, 8, &n) == 0 && n == 3);
	for (int i = 0; i < n; i++)
		CHECK(out[i].file_id != a.id);

	store_file_clear(&a);
	store_file_clear(&b);
	store_file_clear(&p);
	store_close(s);
	tmp_remove();
}

/* ---- resolutions ---------------------------------------------------------- */

static void test_resolutions(void)
{
	struct store *s = open_fresh();
	struct store_resolution in[2] = {
		{ .path = "m/b.bin", .spec_hash = "h1", .file_key = "sha:b", .size = 20,
		  .mtime = 200, .validator = NULL, .sha256 = NULL, .resolved_at = 1000 },
		{ .path = "m/a.bin", .spec_hash = "h1", .file_key = "sha:a", .size = 10,
		  .mtime = 100, .validator = "\"etag\"", .sha256 = "deadbeef", .resolved_at = 1001,
		  .remote_path = "sub/a.bin", .revision = "0123abcd", .git_sha1 = "9f8e" },
	};
	struct store_resolution other = { .path = "x", .spec_hash = "h2", .file_key = "k",
					  .size = 1, .mtime = 2, .resolved_at = 3 };
	struct store_resolution *r = NULL;
	int n = -1;

	CHECK(store_resolution_get(s, "e1", &r, &n) == 0 && n == 0);
	store_resolutions_free(r, n);

	CHECK(store_resolution_put(s, "e1", in, 2) == 0);
	CHECK(store_resolution_put(s, "e2", &other, 1) == 0);
	CHECK(store_resolution_get(s, "e1", &r, &n) == 0);
	CHECK(n == 2);
	if (n == 2) {
		/* Ordered by path. */
		CHECK_STR(r[0].entry_id, "e1");
		CHECK_STR(r[0].path, "m/a.bin");
		CHECK_STR(r[0].spec_hash, "h1");
		CHECK_STR(r[0].file_key, "sha:a");
		CHECK(r[0].size == 10 && r[0].mtime == 100 && r[0].resolved_at == 1001);
		CHECK_STR(r[0].validator, "\"etag\"");
		CHECK_STR(r[0].sha256, "deadbeef");
		CHECK_STR(r[0].remote_path, "sub/a.bin");
		CHECK_STR(r[0].revision, "0123abcd");
		CHECK_STR(r[0].git_sha1, "9f8e");
		CHECK_STR(r[1].path, "m/b.bin");
		CHECK(r[1].size == 20 && r[1].mtime == 200 && r[1].resolved_at == 1000);
		CHECK(r[1].validator == NULL);
		CHECK(r[1].sha256 == NULL);
		CHECK(!r[1].remote_path && !r[1].revision && !r[1].git_sha1);
	}
	store_resolutions_free(r, n);

	/* Put replaces every resolution of e1 and none of e2. */
	in[0].path = "m/c.bin";
	CHECK(store_resolution_put(s, "e1", in, 1) == 0);
	CHECK(store_resolution_get(s, "e1", &r, &n) == 0 && n == 1);
	if (n == 1)
		CHECK_STR(r[0].path, "m/c.bin");
	store_resolutions_free(r, n);
	CHECK(store_resolution_get(s, "e2", &r, &n) == 0 && n == 1);
	if (n == 1) {
		CHECK_STR(r[0].entry_id, "e2");
		CHECK_STR(r[0].path, "x");
		CHECK(!r[0].validator && !r[0].sha256);
	}
	store_resolutions_free(r, n);

	/* Zero resolutions clears the entry. */
	CHECK(store_resolution_put(s, "e1", NULL, 0) == 0);
	CHECK(store_resolution_get(s, "e1", &r, &n) == 0 && n == 0);
	store_resolutions_free(r, n);

	/* Two rows with the same path: refused, and the old rows stay. */
	in[0].path = in[1].path = "same";
	CHECK(store_resolution_put(s, "e2", in, 2) < 0);
	CHECK(store_resolution_get(s, "e2", &r, &n) == 0 && n == 1);
	if (n == 1)
		CHECK_STR(r[0].path, "x");
	store_resolutions_free(r, n);

	/* Still usable after the rollback. */
	CHECK(store_resolution_put(s, "e3", &other, 1) == 0);
	CHECK(store_resolution_get(s, "e3", &r, &n) == 0 && n == 1);
	store_resolutions_free(r, n);

	store_close(s);

	/* They survive a reopen. */
	CHECK(store_open(dbpath, &s) == 0);
	CHECK(store_resolution_get(s, "e2", &r, &n) == 0 && n == 1);
	store_resolutions_free(r, n);
	store_close(s);
	tmp_remove();
}

/* An index written by schema version 1 (no remote_path, revision, git_sha1
 * in resolutions) is brought up to date at open and keeps its rows. */
static void test_migrate_v1(void)
{
	static const char v1[] =
		"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
		"CREATE TABLE files(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
		"  size INTEGER NOT NULL, block_size INTEGER NOT NULL,"
		"  state INTEGER NOT NULL DEFAULT 0, sha256 TEXT, error TEXT,"
		"  pinned INTEGER NOT NULL DEFAULT 0);"
		"CREATE TABLE blocks(file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,"
		"  idx INTEGER NOT NULL, len INTEGER NOT NULL, xxh3 INTEGER NOT NULL,"
		"  atime INTEGER NOT NULL, PRIMARY KEY(file_id, idx)) WITHOUT ROWID;"
		"CREATE INDEX blocks_atime ON blocks(atime);"
		"CREATE TABLE resolutions(entry_id TEXT NOT NULL, path TEXT NOT NULL,"
		"  spec_hash TEXT NOT NULL, file_key TEXT NOT NULL, size INTEGER NOT NULL,"
		"  mtime INTEGER NOT NULL, validator TEXT, sha256 TEXT,"
		"  resolved_at INTEGER NOT NULL, PRIMARY KEY(entry_id, path));"
		"CREATE TABLE fetch_log(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
		"  file_id INTEGER NOT NULL, first INTEGER NOT NULL, len INTEGER NOT NULL,"
		"  ms INTEGER NOT NULL, rc INTEGER NOT NULL, error TEXT);"
		"INSERT INTO meta VALUES('schema_version','1');"
		"INSERT INTO meta VALUES('created','4242');"
		"INSERT INTO files(key,size,block_size) VALUES('old',100,10);"
		"INSERT INTO blocks VALUES(1,0,10,99,5);"
		"INSERT INTO resolutions VALUES('e','p','h','old',100,7,'v',NULL,8);";
	struct store_resolution *r = NULL, nr = { .path = "q", .spec_hash = "h", .file_key = "k",
						  .revision = "main" };
	struct store_file f;
	struct store *s = NULL;
	uint64_t used = 0;
	int n = -1;

	tmp_make();
	CHECK(sql_exec(v1) == SQLITE_OK);
	CHECK(store_open(dbpath, &s) == 0);
	if (!s) {
		tmp_remove();
		return;
	}
	CHECK(store_created(s) == 4242);
	CHECK(sql_int("SELECT CAST(value AS INTEGER) >= 2 FROM meta WHERE key='schema_version'") == 1);
	CHECK(sql_int("SELECT COUNT(*) FROM pragma_table_info('resolutions') WHERE name IN "
		      "('remote_path','revision','git_sha1')") == 3);
	CHECK(store_resolution_get(s, "e", &r, &n) == 0 && n == 1);
	if (n == 1) {
		CHECK_STR(r[0].file_key, "old");
		CHECK_STR(r[0].validator, "v");
		CHECK(r[0].mtime == 7 && r[0].resolved_at == 8);
		CHECK(!r[0].remote_path && !r[0].revision && !r[0].git_sha1);
	}
	store_resolutions_free(r, n);
	CHECK(store_resolution_put(s, "e2", &nr, 1) == 0);
	CHECK(store_resolution_get(s, "e2", &r, &n) == 0 && n == 1);
	if (n == 1)
		CHECK_STR(r[0].revision, "main");
	store_resolutions_free(r, n);
	CHECK(store_file_get_or_create(s, "old", 100, 64, &f) == 0);
	CHECK(f.id == 1 && f.block_size == 10);
	store_file_clear(&f);
	CHECK(store_bytes_used(s, &used) == 0 && used == 10);
	store_close(s);

	/* Opening a current index again changes nothing. */
	CHECK(store_open(dbpath, &s) == 0);
	CHECK(store_created(s) == 4242);
	store_close(s);
	tmp_remove();
}

/* ---- fetch log, state names ----------------------------------------------- */

static void test_fetch_log(void)
{
	struct store *s = open_fresh();

	CHECK(store_log_fetch(s, 1, 0, 4096, 12, 0, NULL) == 0);
	CHECK(store_log_fetch(s, 1, 4096, 4096, 34, -EIO, "HTTP 500") == 0);
	CHECK(sql_int("SELECT COUNT(*) FROM fetch_log") == 2);
	CHECK(sql_int("SELECT COUNT(*) FROM fetch_log WHERE file_id=1 AND first=4096 AND "
		      "len=4096 AND ms=34 AND error='HTTP 500'") == 1);
	CHECK(sql_int("SELECT rc FROM fetch_log WHERE first=4096") == -EIO);
	CHECK(sql_int("SELECT COUNT(*) FROM fetch_log WHERE first=0 AND error IS NULL AND rc=0") == 1);
	CHECK(sql_int("SELECT COUNT(*) FROM fetch_log WHERE ts > 1600000000") == 2);
	store_close(s);
	tmp_remove();
}

static void test_state_names(void)
{
	CHECK_STR(store_state_name(STORE_REMOTE), "remote");
	CHECK_STR(store_state_name(STORE_PARTIAL), "partial");
	CHECK_STR(store_state_name(STORE_COMPLETE), "complete");
	CHECK_STR(store_state_name(STORE_VERIFIED), "verified");
	CHECK_STR(store_state_name(STORE_CORRUPT), "corrupt");
	CHECK_STR(store_state_name((enum store_file_state)99), "unknown");
	CHECK_STR(store_state_name((enum store_file_state)-1), "unknown");
}

/* A size change resets the row, error included. */
static void test_resize_clears_error(void)
{
	struct store *s = open_fresh();
	struct store_file a, b;

	CHECK(store_file_get_or_create(s, "k", 100, 10, &a) == 0);
	CHECK(store_file_set_state(s, a.id, STORE_CORRUPT, "abc", "hash differed") == 0);
	CHECK(store_file_get_or_create(s, "k", 120, 10, &b) == 0);
	CHECK(b.state == STORE_REMOTE && !b.sha256);
	CHECK(b.error == NULL);		/* today "hash differed", while the row says NULL */
	store_file_clear(&a);
	store_file_clear(&b);
	store_close(s);
	tmp_remove();
}

int main(void)
{
	/* The errors provoked on purpose are logged; keep them off unless asked. */
	log_init(2, 0, getenv("MODELFS_LOG") ? LOG_LVL_DEBUG : (enum log_level)-1);
	test_open_schema();
	test_files();
	test_blocks();
	test_lru();
	test_resolutions();
	test_migrate_v1();
	test_fetch_log();
	test_state_names();
	test_resize_clears_error();
	return check_summary();
}
