/*
 * test_tier.c: tier.h's one URL scheme (the rewrite and its parse, which
 * serve uses), and its policy: no stable key or a credential means the
 * origin; a private tier takes credentials, never SigV4; a failed tier is
 * skipped (a 5xx too), a 404 from it is not a failure of the tier.
 */
#include "modelfs/tier.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SHA "a3f1c2d4e5b6978812345678901234567890abcdefabcdefabcdefabcdef0123"
#define COMMIT "0123456789abcdef0123456789abcdef01234567"

static void test_url(void)
{
	struct tier_target tg = {
		.origin_url = "https://huggingface.co/org/m/resolve/" COMMIT "/w.safetensors",
		.sha256 = SHA,
		.commit = COMMIT,
	};
	char *u = NULL;

	CHECK(tier_url("http://tier:8080", &tg, &u) == 0);
	CHECK_STR(u, "http://tier:8080/sha256-" SHA "/https/huggingface.co:443/org/m/resolve/"
		  COMMIT "/w.safetensors");
	free(u);
	tg.sha256 = NULL;	/* a git file: the commit path is the key */
	CHECK(tier_url("http://tier:8080", &tg, &u) == 0);
	CHECK_STR(u, "http://tier:8080/commit-" COMMIT "/https/huggingface.co:443/org/m/resolve/"
		  COMMIT "/w.safetensors");
	free(u);
	tg.origin_url = "https://huggingface.co/org/m/resolve/main/w.safetensors";
	CHECK(tier_url("http://tier:8080", &tg, &u) == -ENOENT);	/* a branch names nothing */
	tg.origin_url = "http://Civitai.COM:8081/api/download/models/42?type=Model";
	tg.sha256 = SHA;
	CHECK(tier_url("http://t", &tg, &u) == 0);
	CHECK_STR(u, "http://t/sha256-" SHA "/http/civitai.com:8081/api/download/models/42?type=Model");
	free(u);
	tg.origin_url = "https://user:pw@example.com/x.bin";
	CHECK(tier_url("http://t", &tg, &u) == -EINVAL);	/* never a credential in a tier URL */
	tg.origin_url = NULL;
	CHECK(tier_url("http://t", &tg, &u) == -ENOENT);
}

static void test_parse(void)
{
	const char *path = NULL;
	char kind = 0, key[65];

	CHECK(tier_parse_target("/sha256-" SHA "/https/huggingface.co:443/org/m/resolve/x/y", &kind,
				key, &path) == 0);
	CHECK(kind == 's');
	CHECK_STR(key, SHA);
	CHECK_STR(path, "/org/m/resolve/x/y");
	CHECK(tier_parse_target("/commit-" COMMIT "/http/h:80/a/resolve/" COMMIT "/f", &kind, key,
				&path) == 0);
	CHECK(kind == 'c');
	CHECK_STR(path, "/a/resolve/" COMMIT "/f");
	CHECK(tier_parse_target("/org/m/resolve/main/f", &kind, key, &path) == -ENOENT);
	CHECK(tier_parse_target("/sha256-XYZ/https/h/f", &kind, key, &path) == -ENOENT);
	CHECK(tier_parse_target("/sha256-" SHA "/ftp/h/f", &kind, key, &path) == -ENOENT);
	CHECK(tier_parse_target("/sha256-" SHA "/https/h", &kind, key, &path) == -ENOENT);
}

static void test_policy(void)
{
	struct tier_target tg = { .origin_url = "http://o/a.bin", .sha256 = SHA };
	struct tier *pub = NULL, *priv = NULL;
	bool with_auth = true;
	char *u = NULL;

	CHECK(tier_new("ftp://x", false, &pub) == -EINVAL);
	CHECK(tier_new("http://tier:8080/", false, &pub) == 0);
	CHECK(tier_new("http://tier:8080", true, &priv) == 0);
	CHECK(tier_route(pub, &tg, &u, &with_auth) == 0 && !with_auth);
	CHECK_STR(u, "http://tier:8080/sha256-" SHA "/http/o:80/a.bin");
	free(u);
	tg.credentials = true;
	CHECK(tier_route(pub, &tg, &u, &with_auth) == -ENOENT && !u);
	CHECK(tier_route(priv, &tg, &u, &with_auth) == 0 && with_auth);
	free(u);
	tg.sigv4 = true;
	CHECK(tier_route(priv, &tg, &u, &with_auth) == -ENOENT);
	tg.credentials = tg.sigv4 = false;
	CHECK(tier_route(NULL, &tg, &u, &with_auth) == -ENOENT);
	/* A 404 is the origin's answer (or a peer without the file). */
	tier_report(pub, -ENOENT, 404, NULL);
	CHECK(tier_route(pub, &tg, &u, &with_auth) == 0);
	free(u);
	/* A dead tier is skipped for TIER_RETRY_MS; a request sent before it
	 * failed that ends well does not bring it back early. */
	tier_report(pub, -EAGAIN, 0, "Connection refused");
	CHECK(tier_route(pub, &tg, &u, &with_auth) == -ENOENT);
	tier_report(pub, 0, 206, NULL);
	CHECK(tier_route(pub, &tg, &u, &with_auth) == -ENOENT);
	tier_report(priv, -EIO, 502, "HTTP 502");
	CHECK(tier_route(priv, &tg, &u, &with_auth) == -ENOENT);
	tier_free(pub);
	tier_free(priv);
}

int main(void)
{
	test_url();
	test_parse();
	test_policy();
	return check_summary();
}
