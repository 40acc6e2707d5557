/*
 * store.c: the cache index in SQLite. One connection behind one mutex:
 * every call is short (no call waits on the network or on another lock),
 * so a single connection is simpler than a pool and fast enough for an
 * index written once per block (8 MiB by default).
 */
#include "modelfs/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/log.h"

#define STORE_SCHEMA_VERSION 2

struct store {
	pthread_mutex_t lock;
	sqlite3 *db;		/* protected by lock */
	/* A block row is written per 256 KiB that lands (4,096 per GiB): its
	 * statement is prepared once, not parsed each time. Under lock. */
	sqlite3_stmt *block_put;
	int64_t created;
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS files("
	"  id INTEGER PRIMARY KEY,"
	"  key TEXT NOT NULL UNIQUE,"
	"  size INTEGER NOT NULL,"
	"  block_size INTEGER NOT NULL,"
	"  state INTEGER NOT NULL DEFAULT 0,"
	"  sha256 TEXT,"
	"  error TEXT,"
	"  pinned INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS blocks("
	"  file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL,"
	"  len INTEGER NOT NULL,"
	"  xxh3 INTEGER NOT NULL,"
	"  atime INTEGER NOT NULL,"
	"  PRIMARY KEY(file_id, idx)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS blocks_atime ON blocks(atime);"
	"CREATE TABLE IF NOT EXISTS resolutions("
	"  entry_id TEXT NOT NULL,"
	"  path TEXT NOT NULL,"
	"  spec_hash TEXT NOT NULL,"
	"  file_key TEXT NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  mtime INTEGER NOT NULL,"
	"  validator TEXT,"
	"  sha256 TEXT,"
	"  resolved_at INTEGER NOT NULL,"
	"  remote_path TEXT,"
	"  revision TEXT,"
	"  git_sha1 TEXT,"
	"  PRIMARY KEY(entry_id, path));"
	"CREATE TABLE IF NOT EXISTS fetch_log("
	"  id INTEGER PRIMARY KEY,"
	"  ts INTEGER NOT NULL,"
	"  file_id INTEGER NOT NULL,"
	"  first INTEGER NOT NULL,"
	"  len INTEGER NOT NULL,"
	"  ms INTEGER NOT NULL,"
	"  rc INTEGER NOT NULL,"
	"  error TEXT);";

/* The one translation of SQLite result codes. */
static int sql_errno(struct store *s, int rc, const char *what)
{
	switch (rc) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		log_error("event=store_error what=%s error=\"disk full\"", what);
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		log_error("event=store_error what=%s error=\"database is locked by another process\"", what);
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		log_error("event=store_error what=%s error=\"%s\"", what, sqlite3_errmsg(s->db));
		return -EACCES;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		log_error("event=store_error what=%s error=\"%s\"", what, sqlite3_errmsg(s->db));
		return -EUCLEAN;
	default:
		log_error("event=store_error what=%s error=\"%s\"", what, sqlite3_errmsg(s->db));
		return -EIO;
	}
}

static char *col_strdup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? strdup((const char *)t) : NULL;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* Run sql with no result rows; the caller holds s->lock. */
static int exec_locked(struct store *s, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);

	sqlite3_free(msg);
	return sql_errno(s, rc, what);
}

static int prepare(struct store *s, const char *sql, sqlite3_stmt **st)
{
	return sql_errno(s, sqlite3_prepare_v2(s->db, sql, -1, st, NULL), "prepare");
}

static int64_t meta_created_locked(struct store *s)
{
	sqlite3_stmt *st = NULL;
	int64_t v = 0;

	if (prepare(s, "SELECT value FROM meta WHERE key='created'", &st) == 0 &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = strtoll((const char *)sqlite3_column_text(st, 0), NULL, 10);
	sqlite3_finalize(st);
	return v;
}

/* True when table has column; the caller holds s->lock. */
static bool has_column(struct store *s, const char *table, const char *column)
{
	sqlite3_stmt *st = NULL;
	char sql[128];
	bool found = false;

	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (prepare(s, sql, &st) == 0)
		while (!found && sqlite3_step(st) == SQLITE_ROW)
			found = strcmp((const char *)sqlite3_column_text(st, 1), column) == 0;
	sqlite3_finalize(st);
	return found;
}

/* Bring an index written by an older modelfs up to this schema, in the
 * open transaction. Version 2 added what a repo file needs to be read
 * again offline. */
static int migrate_locked(struct store *s)
{
	static const char *const v2_columns[] = { "remote_path", "revision", "git_sha1" };
	char sql[128];
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < sizeof(v2_columns) / sizeof(v2_columns[0]); i++) {
		if (has_column(s, "resolutions", v2_columns[i]))
			continue;
		snprintf(sql, sizeof(sql), "ALTER TABLE resolutions ADD COLUMN %s TEXT", v2_columns[i]);
		rc = exec_locked(s, sql, "migrate");
	}
	if (rc == 0) {
		snprintf(sql, sizeof(sql), "UPDATE meta SET value='%d' WHERE key='schema_version'",
			 STORE_SCHEMA_VERSION);
		rc = exec_locked(s, sql, "migrate_version");
	}
	return rc;
}

/* A damaged index must not vouch for bytes: quick_check reads every page
 * (a few ms for a cache's index). 0, or -EUCLEAN. */
static int check_intact_locked(struct store *s)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, "PRAGMA quick_check(1)", &st);

	if (rc)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *verdict = (const char *)sqlite3_column_text(st, 0);

		rc = verdict && strcmp(verdict, "ok") == 0 ? 0 : -EUCLEAN;
		if (rc)
			log_error("event=store_error what=quick_check error=\"%s\"",
				  verdict ? verdict : "no answer");
	} else {
		rc = sql_errno(s, rc, "quick_check");
	}
	sqlite3_finalize(st);
	return rc;
}

int store_open(const char *db_path, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	char sql[256];
	int rc;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	/* Made (or, from an older release, left) owner-only before SQLite
	 * opens it: its -wal and -shm take the database's mode. */
	rc = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (rc >= 0) {
		if (fchmod(rc, 0600) != 0)
			log_warn("event=store_open path=%s error=\"cannot make it private: %s\"",
				 db_path, strerror(errno));
		close(rc);
	}
	rc = sqlite3_open_v2(db_path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		log_error("event=store_open path=%s error=\"%s\"", db_path,
			  s->db ? sqlite3_errmsg(s->db) : "out of memory");
		rc = -EIO;
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	rc = exec_locked(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			 "PRAGMA foreign_keys=ON;", "pragma");
	if (rc == 0)
		rc = check_intact_locked(s);
	if (rc)
		goto fail;
	rc = exec_locked(s, "BEGIN IMMEDIATE", "begin");
	if (rc)
		goto fail;
	rc = exec_locked(s, schema, "schema");
	if (rc == 0)
		rc = migrate_locked(s);
	if (rc == 0) {
		snprintf(sql, sizeof(sql),
			 "INSERT OR IGNORE INTO meta VALUES('schema_version','%d');"
			 "INSERT OR IGNORE INTO meta VALUES('created','%lld');",
			 STORE_SCHEMA_VERSION, (long long)time(NULL));
		rc = exec_locked(s, sql, "meta");
	}
	if (rc) {
		exec_locked(s, "ROLLBACK", "rollback");
		goto fail;
	}
	rc = exec_locked(s, "COMMIT", "commit");
	if (rc)
		goto fail;
	s->created = meta_created_locked(s);
	*out = s;
	return 0;
fail:
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->block_put);
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int64_t store_created(struct store *s)
{
	return s->created;
}

const char *store_state_name(enum store_file_state st)
{
	static const char *const names[] = { "remote", "partial", "complete", "verified", "corrupt" };

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "unknown";
}

static void file_from_row(sqlite3_stmt *st, struct store_file *f)
{
	f->id = sqlite3_column_int64(st, 0);
	f->key = col_strdup(st, 1);
	f->size = (uint64_t)sqlite3_column_int64(st, 2);
	f->block_size = (uint32_t)sqlite3_column_int64(st, 3);
	f->state = (enum store_file_state)sqlite3_column_int(st, 4);
	f->sha256 = col_strdup(st, 5);
	f->error = col_strdup(st, 6);
	f->pin_mask = (unsigned)sqlite3_column_int(st, 7);
	f->pinned = f->pin_mask != 0;
}

static int file_find_locked(struct store *s, const char *key, struct store_file *out)
{
	sqlite3_stmt *st = NULL;
	int rc = prepare(s, "SELECT id,key,size,block_size,state,sha256,error,pinned "
			 "FROM files WHERE key=?", &st);

	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		file_from_row(st, out);
		rc = out->key ? 0 : -ENOMEM;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : sql_errno(s, rc, "file_find");
	}
	sqlite3_finalize(st);
	return rc;
}

/* Delete every block row of file_id, telling how many bytes they held;
 * the caller holds s->lock. */
static int blocks_drop_locked(struct store *s, int64_t file_id, uint64_t *bytes)
{
	sqlite3_stmt *st = NULL;
	char sql[96];
	int rc = prepare(s, "SELECT COALESCE(SUM(len),0) FROM blocks WHERE file_id=?", &st);

	*bytes = 0;
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, file_id);
		if (sqlite3_step(st) == SQLITE_ROW)
			*bytes = (uint64_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	snprintf(sql, sizeof(sql), "DELETE FROM blocks WHERE file_id=%lld", (long long)file_id);
	return rc ? rc : exec_locked(s, sql, "blocks_drop");
}

int store_file_get_or_create(struct store *s, const char *key, uint64_t size,
			     uint32_t block_size, struct store_file *out)
{
	sqlite3_stmt *st = NULL;
	uint64_t dropped = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	rc = file_find_locked(s, key, out);
	if (rc == 0 && out->size != size) {
		/* The same key with another size cannot hold valid blocks. */
		log_warn("event=cache_reset key=%s old_size=%llu new_size=%llu", key,
			 (unsigned long long)out->size, (unsigned long long)size);
		rc = prepare(s, "UPDATE files SET size=?, state=0, sha256=NULL, error=NULL WHERE id=?", &st);
		if (rc == 0) {
			sqlite3_bind_int64(st, 1, (int64_t)size);
			sqlite3_bind_int64(st, 2, out->id);
			rc = sql_errno(s, sqlite3_step(st), "file_resize");
		}
		sqlite3_finalize(st);
		st = NULL;
		if (rc == 0)
			rc = blocks_drop_locked(s, out->id, &dropped);
		out->dropped_bytes = dropped;
		out->size = size;
		out->state = STORE_REMOTE;
		free(out->sha256);
		free(out->error);
		out->sha256 = out->error = NULL;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	rc = prepare(s, "INSERT INTO files(key,size,block_size) VALUES(?,?,?)", &st);
	if (rc)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)size);
	sqlite3_bind_int64(st, 3, block_size);
	rc = sql_errno(s, sqlite3_step(st), "file_create");
	if (rc)
		goto out;
	out->id = sqlite3_last_insert_rowid(s->db);
	out->key = strdup(key);
	out->size = size;
	out->block_size = block_size;
	out->state = STORE_REMOTE;
	rc = out->key ? 0 : -ENOMEM;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (rc)
		store_file_clear(out);
	return rc;
}

int store_file_get(struct store *s, const char *key, struct store_file *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	rc = file_find_locked(s, key, out);
	pthread_mutex_unlock(&s->lock);
	if (rc)
		store_file_clear(out);
	return rc;
}

void store_file_clear(struct store_file *f)
{
	free(f->key);
	free(f->sha256);
	free(f->error);
	memset(f, 0, sizeof(*f));
}

static int file_set_state_locked(struct store *s, int64_t file_id, enum store_file_state state,
				 const char *sha256, const char *error)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prepare(s, "UPDATE files SET state=?, sha256=?, error=? WHERE id=?", &st);
	if (rc == 0) {
		sqlite3_bind_int(st, 1, state);
		bind_text_or_null(st, 2, sha256);
		bind_text_or_null(st, 3, error);
		sqlite3_bind_int64(st, 4, file_id);
		rc = sql_errno(s, sqlite3_step(st), "file_state");
	}
	sqlite3_finalize(st);
	return rc;
}

int store_file_set_state(struct store *s, int64_t file_id, enum store_file_state state,
			 const char *sha256, const char *error)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = file_set_state_locked(s, file_id, state, sha256, error);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_file_set_state_synced(struct store *s, int64_t file_id, enum store_file_state state,
				const char *sha256, const char *error)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = exec_locked(s, "PRAGMA synchronous=FULL", "pragma");
	if (rc == 0)
		rc = file_set_state_locked(s, file_id, state, sha256, error);
	exec_locked(s, "PRAGMA synchronous=NORMAL", "pragma");
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_file_set_pin_mask(struct store *s, int64_t file_id, unsigned mask)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "UPDATE files SET pinned=? WHERE id=?", &st);
	if (rc == 0) {
		sqlite3_bind_int(st, 1, (int)mask);
		sqlite3_bind_int64(st, 2, file_id);
		rc = sql_errno(s, sqlite3_step(st), "file_pin");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_file_set_pinned(struct store *s, int64_t file_id, bool pinned)
{
	return store_file_set_pin_mask(s, file_id, pinned ? 1u : 0u);
}

int store_files_list(struct store *s, struct store_file **out, int *n)
{
	struct store_file *rows = NULL, *grown;
	sqlite3_stmt *st = NULL;
	int rc, count = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "SELECT f.id,f.key,f.size,f.block_size,f.state,f.sha256,f.error,f.pinned,"
		     "(SELECT COALESCE(SUM(b.len),0) FROM blocks b WHERE b.file_id=f.id),"
		     "(SELECT COALESCE(MAX(b.atime),0) FROM blocks b WHERE b.file_id=f.id) "
		     "FROM files f ORDER BY f.id", &st);
	if (rc)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		grown = realloc(rows, (count + 1) * sizeof(*rows));
		if (!grown) {
			rc = SQLITE_NOMEM;
			break;
		}
		rows = grown;
		memset(&rows[count], 0, sizeof(rows[count]));
		file_from_row(st, &rows[count]);
		rows[count].cached_bytes = (uint64_t)sqlite3_column_int64(st, 8);
		rows[count].last_used = sqlite3_column_int64(st, 9);
		count++;
	}
	rc = sql_errno(s, rc, "files_list");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (rc) {
		store_files_free(rows, count);
		return rc;
	}
	*out = rows;
	*n = count;
	return 0;
}

void store_files_free(struct store_file *files, int n)
{
	for (int i = 0; i < n; i++)
		store_file_clear(&files[i]);
	free(files);
}

int store_blocks_load(struct store *s, int64_t file_id,
		      void (*fn)(void *ctx, const struct store_block *b), void *ctx)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "SELECT idx,len,xxh3,atime FROM blocks WHERE file_id=?", &st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, file_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_block b = {
			.file_id = file_id,
			.idx = (uint64_t)sqlite3_column_int64(st, 0),
			.len = (uint32_t)sqlite3_column_int64(st, 1),
			.xxh3 = (uint64_t)sqlite3_column_int64(st, 2),
			.atime = sqlite3_column_int64(st, 3),
		};
		fn(ctx, &b);
	}
	rc = sql_errno(s, rc, "blocks_load");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_block_put(struct store *s, const struct store_block *b, int64_t atime)
{
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->block_put)
		rc = sql_errno(s, sqlite3_prepare_v3(s->db, "INSERT OR REPLACE INTO blocks"
						     "(file_id,idx,len,xxh3,atime) VALUES(?,?,?,?,?)",
						     -1, SQLITE_PREPARE_PERSISTENT, &s->block_put,
						     NULL), "prepare");
	if (rc == 0) {
		sqlite3_stmt *st = s->block_put;

		sqlite3_bind_int64(st, 1, b->file_id);
		sqlite3_bind_int64(st, 2, (int64_t)b->idx);
		sqlite3_bind_int64(st, 3, b->len);
		sqlite3_bind_int64(st, 4, (int64_t)b->xxh3);
		sqlite3_bind_int64(st, 5, atime);
		rc = sql_errno(s, sqlite3_step(st), "block_put");
		sqlite3_reset(st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_block_touch(struct store *s, int64_t file_id, uint64_t idx, int64_t atime)
{
	struct store_touch t = { .file_id = file_id, .idx = idx, .atime = atime };

	return store_blocks_touch(s, &t, 1);
}

int store_blocks_touch(struct store *s, const struct store_touch *t, int n)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = exec_locked(s, "BEGIN IMMEDIATE", "begin");
	if (rc)
		goto out;
	rc = prepare(s, "UPDATE blocks SET atime=MAX(atime,?3) WHERE file_id=?1 AND idx=?2", &st);
	for (int i = 0; rc == 0 && i < n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, t[i].file_id);
		sqlite3_bind_int64(st, 2, (int64_t)t[i].idx);
		sqlite3_bind_int64(st, 3, t[i].atime);
		rc = sql_errno(s, sqlite3_step(st), "blocks_touch");
	}
	exec_locked(s, rc ? "ROLLBACK" : "COMMIT", "end");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_block_delete(struct store *s, int64_t file_id, uint64_t idx)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "DELETE FROM blocks WHERE file_id=?1 AND idx=?2", &st);
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, file_id);
		sqlite3_bind_int64(st, 2, (int64_t)idx);
		rc = sql_errno(s, sqlite3_step(st), "block_delete");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_blocks_delete_all(struct store *s, int64_t file_id)
{
	char sql[96];
	int rc;

	snprintf(sql, sizeof(sql), "DELETE FROM blocks WHERE file_id=%lld", (long long)file_id);
	pthread_mutex_lock(&s->lock);
	rc = exec_locked(s, sql, "blocks_delete_all");
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_bytes_used(struct store *s, uint64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "SELECT COALESCE(SUM(len),0) FROM blocks", &st);
	if (rc == 0) {
		rc = sqlite3_step(st);
		*out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
		rc = sql_errno(s, rc, "bytes_used");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_lru_blocks(struct store *s, struct store_block *out, int max, int *n)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*n = 0;
	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "SELECT b.file_id,b.idx,b.len,b.xxh3,f.block_size FROM blocks b "
		     "JOIN files f ON f.id=b.file_id WHERE f.pinned=0 "
		     "ORDER BY b.atime LIMIT ?", &st);
	if (rc)
		goto out;
	sqlite3_bind_int(st, 1, max);
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		out[*n].file_id = sqlite3_column_int64(st, 0);
		out[*n].idx = (uint64_t)sqlite3_column_int64(st, 1);
		out[*n].len = (uint32_t)sqlite3_column_int64(st, 2);
		out[*n].xxh3 = (uint64_t)sqlite3_column_int64(st, 3);
		out[*n].block_size = (uint32_t)sqlite3_column_int64(st, 4);
		(*n)++;
	}
	rc = sql_errno(s, rc, "lru_blocks");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Rows of a resolutions query (the columns of store_resolution_get);
 * entry_id is bound when not NULL. */
static int resolutions_query(struct store *s, const char *sql, const char *entry_id,
			     struct store_resolution **out, int *n)
{
	struct store_resolution *r = NULL, *grown;
	sqlite3_stmt *st = NULL;
	int rc, count = 0;

	pthread_mutex_lock(&s->lock);
	rc = prepare(s, sql, &st);
	if (rc)
		goto out;
	if (entry_id)
		sqlite3_bind_text(st, 1, entry_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		grown = realloc(r, (count + 1) * sizeof(*r));
		if (!grown) {
			rc = SQLITE_NOMEM;
			break;
		}
		r = grown;
		r[count] = (struct store_resolution){
			.entry_id = col_strdup(st, 0),
			.path = col_strdup(st, 1),
			.spec_hash = col_strdup(st, 2),
			.file_key = col_strdup(st, 3),
			.size = sqlite3_column_int64(st, 4),
			.mtime = sqlite3_column_int64(st, 5),
			.validator = col_strdup(st, 6),
			.sha256 = col_strdup(st, 7),
			.resolved_at = sqlite3_column_int64(st, 8),
			.remote_path = col_strdup(st, 9),
			.revision = col_strdup(st, 10),
			.git_sha1 = col_strdup(st, 11),
		};
		count++;
	}
	rc = sql_errno(s, rc, "resolution_get");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (rc) {
		store_resolutions_free(r, count);
		return rc;
	}
	*out = r;
	*n = count;
	return 0;
}

#define RESOLUTION_COLUMNS "entry_id,path,spec_hash,file_key,size,mtime,validator,sha256," \
	"resolved_at,remote_path,revision,git_sha1"

int store_resolution_get(struct store *s, const char *entry_id,
			 struct store_resolution **out, int *n)
{
	return resolutions_query(s, "SELECT " RESOLUTION_COLUMNS " FROM resolutions "
				 "WHERE entry_id=? ORDER BY path", entry_id, out, n);
}

int store_resolutions_all(struct store *s, struct store_resolution **out, int *n)
{
	return resolutions_query(s, "SELECT " RESOLUTION_COLUMNS " FROM resolutions "
				 "ORDER BY path, entry_id", NULL, out, n);
}

int store_resolution_put(struct store *s, const char *entry_id,
			 const struct store_resolution *r, int n)
{
	sqlite3_stmt *del = NULL, *ins = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = exec_locked(s, "BEGIN IMMEDIATE", "begin");
	if (rc)
		goto out;
	rc = prepare(s, "DELETE FROM resolutions WHERE entry_id=?", &del);
	if (rc == 0) {
		sqlite3_bind_text(del, 1, entry_id, -1, SQLITE_STATIC);
		rc = sql_errno(s, sqlite3_step(del), "resolution_delete");
	}
	if (rc == 0)
		rc = prepare(s, "INSERT INTO resolutions(entry_id,path,spec_hash,file_key,size,"
			     "mtime,validator,sha256,resolved_at,remote_path,revision,git_sha1) "
			     "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", &ins);
	for (int i = 0; rc == 0 && i < n; i++) {
		sqlite3_reset(ins);
		sqlite3_bind_text(ins, 1, entry_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 2, r[i].path, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 3, r[i].spec_hash, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 4, r[i].file_key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 5, r[i].size);
		sqlite3_bind_int64(ins, 6, r[i].mtime);
		bind_text_or_null(ins, 7, r[i].validator);
		bind_text_or_null(ins, 8, r[i].sha256);
		sqlite3_bind_int64(ins, 9, r[i].resolved_at);
		bind_text_or_null(ins, 10, r[i].remote_path);
		bind_text_or_null(ins, 11, r[i].revision);
		bind_text_or_null(ins, 12, r[i].git_sha1);
		rc = sql_errno(s, sqlite3_step(ins), "resolution_put");
	}
	exec_locked(s, rc ? "ROLLBACK" : "COMMIT", "end");
out:
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void store_resolutions_free(struct store_resolution *r, int n)
{
	for (int i = 0; i < n; i++) {
		free(r[i].entry_id);
		free(r[i].path);
		free(r[i].spec_hash);
		free(r[i].file_key);
		free(r[i].validator);
		free(r[i].sha256);
		free(r[i].remote_path);
		free(r[i].revision);
		free(r[i].git_sha1);
	}
	free(r);
}

int store_log_fetch(struct store *s, int64_t file_id, uint64_t first, uint64_t len,
		    int64_t ms, int rc_fetch, const char *error)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = prepare(s, "INSERT INTO fetch_log(ts,file_id,first,len,ms,rc,error) "
		     "VALUES(?,?,?,?,?,?,?)", &st);
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
		sqlite3_bind_int64(st, 2, file_id);
		sqlite3_bind_int64(st, 3, (int64_t)first);
		sqlite3_bind_int64(st, 4, (int64_t)len);
		sqlite3_bind_int64(st, 5, ms);
		sqlite3_bind_int(st, 6, rc_fetch);
		bind_text_or_null(st, 7, error);
		rc = sql_errno(s, sqlite3_step(st), "log_fetch");
	}
	/* Keep the log bounded: the newest 10000 rows are plenty for status --history. */
	if (rc == 0 && sqlite3_last_insert_rowid(s->db) % 1000 == 0)
		exec_locked(s, "DELETE FROM fetch_log WHERE id <= (SELECT MAX(id) - 10000 FROM fetch_log)",
			    "log_trim");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_fetch_log_recent(struct store *s, int max, struct store_fetch **out, int *n)
{
	struct store_fetch *rows = NULL;
	sqlite3_stmt *st = NULL;
	int rc, count = 0;

	*out = NULL;
	*n = 0;
	if (max <= 0)
		return 0;
	rows = calloc((size_t)max, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	/* The newest max, then turned oldest first below. */
	rc = prepare(s, "SELECT l.ts,l.file_id,f.key,l.first,l.len,l.ms,l.rc,l.error "
		     "FROM fetch_log l LEFT JOIN files f ON f.id=l.file_id "
		     "ORDER BY l.id DESC LIMIT ?", &st);
	if (rc)
		goto out;
	sqlite3_bind_int(st, 1, max);
	while (count < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows[count] = (struct store_fetch){
			.ts = sqlite3_column_int64(st, 0),
			.file_id = sqlite3_column_int64(st, 1),
			.file_key = col_strdup(st, 2),
			.first = (uint64_t)sqlite3_column_int64(st, 3),
			.len = (uint64_t)sqlite3_column_int64(st, 4),
			.ms = sqlite3_column_int64(st, 5),
			.rc = sqlite3_column_int(st, 6),
			.error = col_strdup(st, 7),
		};
		count++;
	}
	rc = sql_errno(s, rc, "fetch_log_recent");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	if (rc) {
		store_fetches_free(rows, count);
		return rc;
	}
	for (int i = 0; i < count / 2; i++) {
		struct store_fetch t = rows[i];

		rows[i] = rows[count - 1 - i];
		rows[count - 1 - i] = t;
	}
	*out = rows;
	*n = count;
	return 0;
}

void store_fetches_free(struct store_fetch *rows, int n)
{
	for (int i = 0; i < n; i++) {
		free(rows[i].file_key);
		free(rows[i].error);
	}
	free(rows);
}
