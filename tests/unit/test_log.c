/*
 * test_log.c: what log.c removes from lines and from URLs shown to users.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The last line written to fd's file, read back from path. */
static void last_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	out[0] = '\0';
	while (f && fgets(out, (int)len, f))
		;
	if (f)
		fclose(f);
}

static void check_json(void)
{
	char path[] = "/tmp/modelfs-test-log-XXXXXX", line[4096];
	int fd = mkstemp(path);

	log_init(fd, 0, LOG_LVL_INFO);
	log_set_json(true);
	log_info("event=mounted path=VAE/a.bin error=\"two words\" n=3");
	log_info("not key value");
	log_set_json(false);
	last_line(path, line, sizeof(line));
	CHECK(strstr(line, "\"level\":\"info\",\"msg\":\"not key value\"}") != NULL);
	{
		FILE *f = fopen(path, "r");

		CHECK(f && fgets(line, sizeof(line), f));
		if (f)
			fclose(f);
	}
	CHECK(strstr(line, "\"event\":\"mounted\",\"path\":\"VAE/a.bin\"") != NULL);
	CHECK(strstr(line, "\"error\":\"two words\",\"n\":\"3\"}") != NULL);
	close(fd);
	unlink(path);
}

/* A secret across the line's 2 KiB cut must not leave its first bytes. */
static void check_secret_at_the_cut(void)
{
	char path[] = "/tmp/modelfs-test-log-XXXXXX", pad[2048], *line = malloc(8192);
	int fd = mkstemp(path);
	FILE *f;

	memset(pad, 'a', sizeof(pad));
	pad[2030] = '\0';
	log_init(fd, 0, LOG_LVL_INFO);
	log_info("%s cut-secret-77f1e2d3 end", pad);
	log_init(2, 0, LOG_LVL_INFO);
	f = fopen(path, "r");
	CHECK(f && line && fgets(line, 8192, f));
	CHECK(line && !strstr(line, "cut-sec") && strstr(line, "a *** end") != NULL);
	if (f)
		fclose(f);
	free(line);
	close(fd);
	unlink(path);
}

static void check_turn_over(void)
{
	char path[] = "/tmp/modelfs-test-log-XXXXXX", old[64], pad[1500];
	struct stat st;
	int fd = mkstemp(path);

	close(fd);
	fd = log_open_file(path);
	CHECK(fd >= 0);
	log_init(fd, 0, LOG_LVL_INFO);
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (int i = 0; i < 12000; i++)		/* about 18 MiB */
		log_info("event=filler i=%d pad=%s", i, pad);
	snprintf(old, sizeof(old), "%s.1", path);
	CHECK(stat(old, &st) == 0 && st.st_size >= (15 << 20) && st.st_size <= (17 << 20));
	CHECK(stat(path, &st) == 0 && st.st_size < (4 << 20) && st.st_size > 0);
	log_init(2, 0, LOG_LVL_INFO);
	close(fd);
	unlink(path);
	unlink(old);
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
	log_add_secret("cut-secret-77f1e2d3");
	check_json();
	check_secret_at_the_cut();
	check_turn_over();
	return check_summary();
}
