/*
 * test_lock.c: lock.c. A written lock reads back to the same
 * resolutions and writes again to the same bytes; every malformed lock
 * fails with "FILE:LINE:COL: ..." naming what is wrong; the config
 * entry a lock entry was made for matches it, a changed one says which
 * field changed and both values.
 */
#include "modelfs/lock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define GIT_C "cccccccccccccccccccccccccccccccccccccccc"
#define COMMIT "0123456789abcdef0123456789abcdef01234567"

static const char good[] =
	"lock_version = 1\n"
	"\n"
	"[[entry]]\n"
	"id = \"vae/plain\"\n"
	"source = \"url\"\n"
	"url = \"https://example.com/${DIR}/vae.safetensors\"\n"
	"\n"
	"  [[entry.files]]\n"
	"  path = \"VAE/vae.safetensors\"\n"
	"  size = 1234\n"
	"  sha256 = \"" SHA_B "\"\n"
	"  hash_from = \"lock\"\n"
	"  etag = \"\\\"v1\\\"\"\n"
	"\n"
	"[[entry]]\n"
	"id = \"checkpoints/tiny\"\n"
	"source = \"huggingface\"\n"
	"repo = \"org/tiny\"\n"
	"repo_type = \"model\"\n"
	"revision = \"main\"\n"
	"include = [\"*.json\", \"tokenizer/\"]\n"
	"commit = \"" COMMIT "\"\n"
	"license = \"mit\"\n"
	"\n"
	"  [[entry.files]]\n"
	"  path = \"Stable-diffusion/tiny/z.json\"\n"
	"  remote_path = \"z.json\"\n"
	"  size = 10\n"
	"  git_sha1 = \"" GIT_C "\"\n"
	"\n"
	"  [[entry.files]]\n"
	"  path = \"Stable-diffusion/tiny/a.safetensors\"\n"
	"  remote_path = \"a.safetensors\"\n"
	"  size = 3145851\n"
	"  sha256 = \"" SHA_A "\"\n"
	"  hash_from = \"source\"\n"
	"  modified = 2026-01-15T10:00:00Z\n";

static char *written(struct lock *l)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	CHECK(out != NULL);
	if (!out)
		return NULL;
	CHECK(lock_write(l, out) == 0);
	fclose(out);
	return buf;
}

static void test_read_good(void)
{
	struct lock_error err;
	struct lock *l = NULL;
	struct lock_entry *e;

	CHECK(lock_parse(good, strlen(good), "m.lock", &l, &err) == 0);
	if (!l) {
		fprintf(stderr, "  %s\n", err.msg);
		return;
	}
	CHECK(l->n_entries == 2);
	e = lock_find(l, "checkpoints/tiny");
	CHECK(e != NULL);
	if (e) {
		CHECK(e->source == CONFIG_SOURCE_HUGGINGFACE);
		CHECK_STR(e->repo, "org/tiny");
		CHECK_STR(e->commit, COMMIT);
		CHECK_STR(e->license, "mit");
		CHECK(e->include && e->include[1] && !e->include[2]);
		CHECK_STR(e->include[1], "tokenizer/");
		CHECK(e->n_files == 2);
		CHECK_STR(e->files[0].git_sha1, GIT_C);
		CHECK(e->files[0].sha256 == NULL);
		CHECK(e->files[1].size == 3145851);
		CHECK(!e->files[1].hash_fetched);
		CHECK(e->files[1].mtime == 1768471200);	/* 2026-01-15T10:00:00Z */
		CHECK(e->files[0].mtime == -1);		/* not written: not known */
	}
	e = lock_find(l, "vae/plain");
	CHECK(e != NULL);
	if (e) {
		CHECK_STR(e->url, "https://example.com/${DIR}/vae.safetensors");
		CHECK(e->files[0].hash_fetched);
		CHECK_STR(e->files[0].etag, "\"v1\"");
		CHECK(e->files[0].line == 8);
	}
	CHECK(lock_find(l, "nope") == NULL);
	lock_free(l);
}

/* Written, read back, written again: the same bytes, sorted. */
static void test_round_trip(void)
{
	struct lock_error err;
	struct lock *l = NULL, *again = NULL;
	char *one, *two;

	CHECK(lock_parse(good, strlen(good), "m.lock", &l, &err) == 0);
	if (!l)
		return;
	one = written(l);
	CHECK(one != NULL);
	CHECK(lock_parse(one, strlen(one), "w.lock", &again, &err) == 0);
	if (!again) {
		fprintf(stderr, "  %s\n%s", err.msg, one);
		free(one);
		lock_free(l);
		return;
	}
	two = written(again);
	CHECK_STR(one, two);
	/* Entries by id, files by path. */
	CHECK(strstr(one, "checkpoints/tiny") < strstr(one, "vae/plain"));
	CHECK(strstr(one, "tiny/a.safetensors") < strstr(one, "tiny/z.json"));
	CHECK(strstr(one, "etag = \"\\\"v1\\\"\"") != NULL);
	CHECK(strstr(one, "\n  modified = 2026-01-15T10:00:00Z\n") != NULL);
	CHECK(strstr(strstr(one, "modified") + 1, "modified") == NULL);	/* z.json has none */
	free(one);
	free(two);
	lock_free(l);
	lock_free(again);
}

/* Expects text to fail with -EINVAL and a message starting with want. */
static void bad_at(const char *text, const char *want, int line)
{
	struct lock_error err = { "" };
	struct lock *l = NULL;
	int rc = lock_parse(text, strlen(text), "m.lock", &l, &err);

	if (rc == -EINVAL && !l && strncmp(err.msg, want, strlen(want)) == 0) {
		passed++;
		return;
	}
	failed++;
	fprintf(stderr, "%s:%d: want \"%s...\", got rc %d \"%s\"\n", __FILE__, line, want, rc,
		err.msg);
	lock_free(l);
}
#define BAD(text, want) bad_at(text, want, __LINE__)

#define ENTRY "lock_version = 1\n[[entry]]\nid = \"a/b\"\nsource = \"url\"\n"
#define FILE_HEAD "[[entry.files]]\npath = \"A/b\"\n"

static void test_errors(void)
{
	BAD("", "m.lock:1:1: no lock_version");
	BAD("lock_version = 2\n", "m.lock:1:16: lock_version given is not one");
	BAD("lock_version = 1\nentry = 3\n", "m.lock:2:9: entry must be an array");
	BAD("lock_version = 1\nextra = 3\n", "m.lock:2:1: unknown key \"extra\"");
	BAD("lock_version = 1\n[[entry]]\nsource = \"url\"\n", "m.lock:2:1: an entry without an id");
	BAD(ENTRY, "m.lock:2:1: entry a/b has no files");
	BAD(ENTRY "colour = \"red\"\n", "m.lock:5:1: unknown key \"colour\" in entry a/b");
	BAD("lock_version = 1\n[[entry]]\nid = \"a/b\"\nsource = \"ftp\"\n",
	    "m.lock:4:10: unknown source \"ftp\"");
	BAD(ENTRY FILE_HEAD "size = 3\n", "m.lock:5:1: A/b: no sha256 or git_sha1");
	BAD(ENTRY FILE_HEAD "sha256 = \"" SHA_A "\"\n", "m.lock:5:1: A/b: no size");
	BAD(ENTRY FILE_HEAD "size = -1\n", "m.lock:7:8: size must be a non-negative");
	BAD(ENTRY FILE_HEAD "size = 1\nsha256 = \"ABC\"\n", "m.lock:8:10: sha256 must be 64");
	BAD(ENTRY FILE_HEAD "size = 1\ngit_sha1 = \"" SHA_A "\"\n", "m.lock:8:12: git_sha1 must be 40");
	BAD(ENTRY FILE_HEAD "size = 1\nsha256 = \"" SHA_A "\"\nhash_from = \"guess\"\n",
	    "m.lock:9:13: hash_from must be");
	BAD(ENTRY FILE_HEAD "size = 1\nsha256 = \"" SHA_A "\"\nsize_kb = 1\n",
	    "m.lock:9:1: unknown key \"size_kb\" in a file of entry a/b");
	BAD(ENTRY "commit = \"main\"\n" FILE_HEAD "size = 1\nsha256 = \"" SHA_A "\"\n",
	    "m.lock:5:10: commit must be 40");
	BAD(ENTRY "url = 5\n", "m.lock:5:7: url must be a string, not integer");
	BAD(ENTRY FILE_HEAD "size = 1\nsha256 = \"" SHA_A "\"\n"
	    "[[entry]]\nid = \"a/b\"\nsource = \"url\"\n", "m.lock:10:6: entry a/b is locked twice");
	BAD(ENTRY FILE_HEAD "size = 1\nsha256 = \"" SHA_A "\"\nmodified = \"yesterday\"\n",
	    "m.lock:9:12: modified must be a UTC date-time");
	BAD(ENTRY FILE_HEAD "size = 1\nsha256 = \"" SHA_A "\"\nmodified = 2026-01-15T10:00:00+02:00\n",
	    "m.lock:9:12: modified must be a UTC date-time");
	BAD("lock_version = 1\n[[entry]\n", "m.lock:2:");	/* the TOML parser's own */
}

static void test_matches(void)
{
	char *inc[] = { "*.json", NULL }, why[256] = "";
	struct config_entry ce = {
		.id = "checkpoints/tiny", .source = CONFIG_SOURCE_HUGGINGFACE, .repo = "org/tiny",
		.repo_type = "model", .revision = "main", .include = inc,
	};
	struct lock_entry e = { 0 };

	CHECK(lock_entry_set_spec(&e, &ce) == 0);
	CHECK(lock_entry_matches(&e, &ce, why, sizeof(why)));
	ce.revision = "dev";
	CHECK(!lock_entry_matches(&e, &ce, why, sizeof(why)));
	CHECK_STR(why, "revision: the lock has main, the config dev");
	ce.revision = "main";
	ce.include = NULL;
	CHECK(!lock_entry_matches(&e, &ce, why, sizeof(why)));
	lock_entry_clear(&e);

	/* A URL is kept as written, without its query: no signature in a lock. */
	struct config_entry u = { .id = "vae/x", .source = CONFIG_SOURCE_URL,
				  .url = "https://h/x.bin?X-Amz-Signature=s3cr3t",
				  .url_written = "https://${HOST}/x.bin?X-Amz-Signature=s3cr3t" };

	CHECK(lock_entry_set_spec(&e, &u) == 0);
	CHECK_STR(e.url, "https://${HOST}/x.bin");
	CHECK(lock_entry_matches(&e, &u, why, sizeof(why)));
	u.url_written = "https://${HOST}/y.bin";
	CHECK(!lock_entry_matches(&e, &u, why, sizeof(why)));
	CHECK_STR(why, "url: the lock has https://${HOST}/x.bin, the config https://${HOST}/y.bin");
	lock_entry_clear(&e);
}

int main(void)
{
	test_read_good();
	test_round_trip();
	test_errors();
	test_matches();
	return check_summary();
}
