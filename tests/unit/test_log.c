/*
 * test_log.c: what log.c removes from lines and from URLs shown to users.
 */
#include <stdlib.h>

#include "check.h"
#include "modelfs/log.h"

static void check_redact(const char *in, const char *want)
{
	char out[512];

	log_redact(in, out, sizeof(out));
	CHECK_STR(out, want);
}

static void check_public(const char *url, const char *want)
{
	char *got = log_url_public(url);

	CHECK_STR(got, want);
	free(got);
}

int main(void)
{
	log_add_secret("tok-secret-1");

	check_redact("GET https://h.example/a?X-Amz-Signature=abc done",
		     "GET https://h.example/a?<redacted> done");
	check_redact("url=\"http://bob:pw@h.example:81/f.bin\" ok",
		     "url=\"http://***@h.example:81/f.bin\" ok");
	check_redact("https://a@b@h.example/x and http://h.example/@notuser",
		     "https://***@h.example/x and http://h.example/@notuser");
	check_redact("header Bearer tok-secret-1 and /files/tok-secret-1/x",
		     "header Bearer *** and /files/***/x");
	check_redact("mail user@h.example stays", "mail user@h.example stays");
	check_redact("url='https://u:it's@h/a' ok", "url='https://***@h/a' ok");

	check_public("https://h.example/m.safetensors?sig=1#frag", "https://h.example/m.safetensors");
	check_public("http://u:p@h.example/a/b", "http://***@h.example/a/b");
	check_public("http://x@h/a", "http://***@h/a");
	check_public("https://h.example/tok-secret-1/m.bin", "https://h.example/***/m.bin");
	check_public("https://h.example/${TOKEN}/m.bin", "https://h.example/${TOKEN}/m.bin");
	check_public("s3://bucket/key?versionId=3", "s3://bucket/key");
	check_public("https://h.example/q?user@x", "https://h.example/q");
	check_public("https://user:'w@h.example/a", "https://***@h.example/a");
	return check_summary();
}
