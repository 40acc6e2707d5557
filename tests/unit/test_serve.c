/*
 * test_serve.c: the parts of serve that need no network: Range headers
 * read as the Hub's CDN reads them (one range served, a start past the
 * end refused, the rest ignored), the errno -> status table, and request
 * targets split before decoding, with traversal in any spelling refused.
 */
#include "modelfs/serve.h"
#include "src/serve/serve_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void test_range(void)
{
	uint64_t a = 99, b = 99;

	CHECK(serve_parse_range(NULL, 10, &a, &b) == 0);
	CHECK(serve_parse_range("bytes=2-5", 10, &a, &b) == 1 && a == 2 && b == 5);
	CHECK(serve_parse_range("bytes = 2 - 5", 10, &a, &b) == 1 && a == 2 && b == 5);
	CHECK(serve_parse_range("bytes=0-0", 10, &a, &b) == 1 && a == 0 && b == 0);
	CHECK(serve_parse_range("bytes=7-", 10, &a, &b) == 1 && a == 7 && b == 9);
	CHECK(serve_parse_range("bytes=7-100", 10, &a, &b) == 1 && a == 7 && b == 9);
	CHECK(serve_parse_range("bytes=-3", 10, &a, &b) == 1 && a == 7 && b == 9);
	CHECK(serve_parse_range("bytes=-30", 10, &a, &b) == 1 && a == 0 && b == 9);
	CHECK(serve_parse_range("bytes=9-9", 10, &a, &b) == 1 && a == 9 && b == 9);
	/* unsatisfiable */
	CHECK(serve_parse_range("bytes=10-", 10, &a, &b) == -ERANGE);
	CHECK(serve_parse_range("bytes=10-20", 10, &a, &b) == -ERANGE);
	CHECK(serve_parse_range("bytes=-0", 10, &a, &b) == -ERANGE);
	CHECK(serve_parse_range("bytes=0-", 0, &a, &b) == -ERANGE);
	/* ignored: the whole body */
	CHECK(serve_parse_range("bytes=0-1,4-5", 10, &a, &b) == 0);
	CHECK(serve_parse_range("bytes=5-2", 10, &a, &b) == 0);
	CHECK(serve_parse_range("items=0-1", 10, &a, &b) == 0);
	CHECK(serve_parse_range("bytes=-", 10, &a, &b) == 0);
	CHECK(serve_parse_range("bytes=a-b", 10, &a, &b) == 0);
	CHECK(serve_parse_range("bytes=99999999999999999999999-", 10, &a, &b) == 0);
	/* past 4 GiB */
	CHECK(serve_parse_range("bytes=5368709120-", 5368721465ull, &a, &b) == 1 &&
	      a == 5368709120ull && b == 5368721464ull);
}

static void test_status(void)
{
	const char *code;

	CHECK(serve_status(-ENOENT, &code) == 404 && strcmp(code, "EntryNotFound") == 0);
	CHECK(serve_status(-ENXIO, &code) == 404 && strcmp(code, "RepoNotFound") == 0);
	CHECK(serve_status(-ESRCH, &code) == 404 && strcmp(code, "RevisionNotFound") == 0);
	CHECK(serve_status(-ENODEV, &code) == 404 && code == NULL);
	CHECK(serve_status(-EACCES, &code) == 403 && code == NULL);
	CHECK(serve_status(-EINVAL, &code) == 400);
	CHECK(serve_status(-ERANGE, &code) == 416);
	CHECK(serve_status(-ENOSYS, &code) == 405);
	CHECK(serve_status(-EAGAIN, &code) == 503);
	CHECK(serve_status(-EIO, &code) == 500 && code == NULL);
}

static void check_route(const char *target, int want, enum route_kind kind, const char *type,
			const char *repo, const char *rev, const char *path)
{
	struct route r;
	int rc = route_parse(target, &r);

	if (rc != want) {
		fprintf(stderr, "route_parse(%s) = %d, want %d\n", target, rc, want);
		CHECK(rc == want);
	}
	if (rc != 0)
		return;
	CHECK(r.kind == kind);
	CHECK_STR(r.type, type);
	CHECK_STR(r.repo, repo);
	CHECK_STR(r.rev, rev);
	CHECK_STR(r.path, path);
	route_clear(&r);
}

static void test_route(void)
{
	check_route("/org/m/resolve/main/config.json", 0, ROUTE_RESOLVE, "model", "org/m", "main",
		    "config.json");
	check_route("/gpt2/resolve/main/config.json", 0, ROUTE_RESOLVE, "model", "gpt2", "main",
		    "config.json");
	check_route("/datasets/org/d/resolve/v1/data/train.parquet", 0, ROUTE_RESOLVE, "dataset",
		    "org/d", "v1", "data/train.parquet");
	check_route("/org/m/resolve/refs%2Fpr%2F1/a%20b.bin", 0, ROUTE_RESOLVE, "model", "org/m",
		    "refs/pr/1", "a b.bin");
	check_route("/api/models/org/m", 0, ROUTE_INFO, "model", "org/m", "main", "");
	check_route("/api/models/org/m/revision/refs%2Fpr%2F1", 0, ROUTE_INFO, "model", "org/m",
		    "refs/pr/1", "");
	check_route("/api/datasets/org/d/tree/main", 0, ROUTE_TREE, "dataset", "org/d", "main", "");
	check_route("/api/models/org/m/tree/main/a%2Fb", 0, ROUTE_TREE, "model", "org/m", "main",
		    "a/b");
	check_route("/api/models/org/m/tree/main/a/b/", 0, ROUTE_TREE, "model", "org/m", "main",
		    "a/b");
	/* refused: 400 */
	check_route("/org%2Fm/resolve/main/x", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/api/models/org%2fm", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/resolve/main/../../etc/passwd", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/resolve/main/%2e%2e/x", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/resolve/main/a%2F..%2Fb", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/resolve/main/a%00b", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/resolve/main/a%zz", -EINVAL, 0, NULL, NULL, NULL, NULL);
	check_route("/api/models/org/m/tree/main/..", -EINVAL, 0, NULL, NULL, NULL, NULL);
	/* no such page: 404 */
	check_route("/", -ENOENT, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/resolve/main/", -ENOENT, 0, NULL, NULL, NULL, NULL);
	check_route("/org/m/blob/main/x", -ENOENT, 0, NULL, NULL, NULL, NULL);
	check_route("/api/whoami-v2", -ENOENT, 0, NULL, NULL, NULL, NULL);
	check_route("/api/models/org/m/xet-read-token/main", -ENOENT, 0, NULL, NULL, NULL, NULL);
}

/* A /files/ target (after "/files/") as a mount path. */
static void check_mount_path(const char *target, int want_rc, const char *want)
{
	char *path = NULL;
	int rc = route_mount_path(target, &path);

	CHECK(rc == want_rc);
	if (rc == 0)
		CHECK(path && strcmp(path, want) == 0);
	free(path);
}

static void test_mount_path(void)
{
	check_mount_path("Stable-diffusion/x.safetensors", 0, "Stable-diffusion/x.safetensors");
	check_mount_path("Lora/a%20b%2B.safetensors", 0, "Lora/a b+.safetensors");
	check_mount_path("a/b/", 0, "a/b");
	check_mount_path("", -EINVAL, NULL);
	check_mount_path("..", -EINVAL, NULL);
	check_mount_path("../config.toml", -EINVAL, NULL);
	check_mount_path("%2e%2e/%2e%2e/etc/passwd", -EINVAL, NULL);
	check_mount_path("a/%2E%2E%2Fb", -EINVAL, NULL);
	check_mount_path("a/.", -EINVAL, NULL);
	check_mount_path("a%5c..%5cb", -EINVAL, NULL);
	check_mount_path("a%00b", -EINVAL, NULL);
	check_mount_path("a%zz", -EINVAL, NULL);
}

/* The one map from an errno to a status, for the access refusals. */
static void test_access_status(void)
{
	const char *code;

	CHECK(serve_status(-EPERM, &code) == 401 && code == NULL);
	CHECK(serve_status(-EKEYEXPIRED, &code) == 401 && strcmp(code, "GatedRepo") == 0);
	CHECK(serve_status(-EKEYREJECTED, &code) == 403 && strcmp(code, "GatedRepo") == 0);
	CHECK(serve_status(-EAGAIN, &code) == 503);
}

int main(void)
{
	test_range();
	test_status();
	test_route();
	test_mount_path();
	test_access_status();
	return check_summary();
}
