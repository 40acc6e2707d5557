/*
 * test_manifest.c: manifest.c. A manifest in the documented shape reads
 * into its fields (unknown keys ignored, hashes lowercased); a written one
 * reads back to the same fields and writes the same bytes; each malformed
 * one fails with "FILE:LINE:COL: ..." naming what is wrong.
 */
#include "modelfs/manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char good[] =
	"model_id: \"org/pipeline\"\n"
	"version: 2026-01-15\n"
	"profile: \"hf-diffusers-standard\"\n"
	"license: \"apache-2.0\"\n"
	"source: { provider: \"huggingface\", repo_id: \"org/pipeline\", revision: \"main\" }\n"
	"artifacts:\n"
	"  - path: \"transformer/diffusion_pytorch_model.safetensors\"\n"
	"    sha256: \"" SHA_B "\"\n"
	"  - path: model_index.json\n"
	"    sha256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
	"    size: 123\n"
	"entrypoint: { loader: \"diffusers\", class: \"SomePipeline\" }\n";

static char *written(struct manifest *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CHECK(f && manifest_write(m, f) == 0);
	if (f)
		fclose(f);
	return buf;
}

static void test_good(void)
{
	struct manifest_error err;
	struct manifest *m = NULL, *again = NULL;
	char *first, *second;

	CHECK(manifest_parse(good, strlen(good), "m.yaml", &m, &err) == 0);
	if (!m)
		return;
	CHECK_STR(m->model_id, "org/pipeline");
	CHECK_STR(m->version, "2026-01-15");
	CHECK_STR(m->license, "apache-2.0");
	CHECK(m->provider == MANIFEST_HUGGINGFACE);
	CHECK_STR(m->repo_id, "org/pipeline");
	CHECK_STR(m->revision, "main");
	CHECK(m->n_artifacts == 2);
	CHECK_STR(m->artifacts[1].path, "model_index.json");
	CHECK_STR(m->artifacts[1].sha256, SHA_A);
	CHECK(m->artifacts[1].line == 9 && m->artifacts[1].col == 5);
	first = written(m);
	CHECK(first && strstr(first, "- path: \"model_index.json\"") <
	      strstr(first, "- path: \"transformer/"));
	CHECK(manifest_parse(first, strlen(first), "w.yaml", &again, &err) == 0);
	second = again ? written(again) : NULL;
	CHECK(second && strcmp(first, second) == 0);
	CHECK(again && again->n_artifacts == 2 && strcmp(again->artifacts[0].sha256, SHA_A) == 0);
	free(first);
	free(second);
	manifest_free(again);
	manifest_free(m);
}

static void test_url_and_civitai(void)
{
	static const char url[] =
		"source:\n  provider: url\nartifacts:\n"
		"  - { path: a.bin, sha256: " SHA_A ", url: \"https://h/a.bin\" }\n";
	static const char civitai[] =
		"source: { provider: civitai, model_id: 12, version_id: 345 }\n"
		"artifacts: [{ path: l.safetensors, sha256: " SHA_B " }]\n";
	struct manifest_error err;
	struct manifest *m = NULL;

	CHECK(manifest_parse(url, strlen(url), "u.yaml", &m, &err) == 0);
	CHECK(m && m->provider == MANIFEST_URL && m->artifacts[0].url &&
	      strcmp(m->artifacts[0].url, "https://h/a.bin") == 0);
	manifest_free(m);
	CHECK(manifest_parse(civitai, strlen(civitai), "c.yaml", &m, &err) == 0);
	CHECK(m && m->provider == MANIFEST_CIVITAI && strcmp(m->civitai_version_id, "345") == 0 &&
	      strcmp(m->civitai_model_id, "12") == 0);
	manifest_free(m);
}

static void bad(const char *text, const char *where, const char *says)
{
	struct manifest_error err;
	struct manifest *m = NULL;
	int rc = manifest_parse(text, strlen(text), "b.yaml", &m, &err);

	CHECK(rc == -EINVAL && !m);
	if (!strstr(err.msg, where) || !strstr(err.msg, says)) {
		failed++;
		fprintf(stderr, "for %s: got \"%s\", want %s and %s\n", text, err.msg, where, says);
	} else {
		passed++;
	}
	manifest_free(m);
}

#define HF "source: { provider: huggingface, repo_id: org/x }\n"

static void test_bad(void)
{
	bad("", "b.yaml:1:1:", "empty");
	bad("- a\n- b\n", "b.yaml:1:1:", "a mapping");
	bad("source: [\n", "b.yaml:2:1:", "not YAML");
	bad("artifacts: []\n", "b.yaml:1:1:", "source is missing");
	bad("source: huggingface\n", "b.yaml:1:9:", "source must be a mapping");
	bad("source: { provider: hf }\n", "b.yaml:1:21:", "not one of huggingface, civitai, url");
	bad("source: { provider: huggingface }\n", "b.yaml:1:9:", "source.repo_id is missing");
	bad("source: { provider: huggingface, repo_id: x }\n", "b.yaml:1:43:", "ORG/NAME");
	bad("source: { provider: civitai, version_id: v1 }\n", "b.yaml:1:42:", "must be a number");
	bad(HF, "b.yaml:1:1:", "artifacts must be a list");
	bad(HF "artifacts: [a]\n", "b.yaml:2:13:", "artifacts[0] must be a mapping");
	bad(HF "artifacts: [{ sha256: " SHA_A " }]\n", "b.yaml:2:13:", "artifacts[0].path is missing");
	bad(HF "artifacts: [{ path: /etc/passwd, sha256: " SHA_A " }]\n", "b.yaml:2:21:",
	    "relative path");
	bad(HF "artifacts: [{ path: a/../b, sha256: " SHA_A " }]\n", "b.yaml:2:21:", "relative path");
	bad(HF "artifacts: [{ path: a, sha256: abc }]\n", "b.yaml:2:32:", "64 hex digits");
	bad(HF "artifacts: [{ path: a, sha256: [x] }]\n", "b.yaml:2:32:", "must be a string");
	bad(HF "artifacts: [{ path: a, sha256: " SHA_A ", url: \"https://h/a\" }]\n", "b.yaml:2:",
	    "url goes with provider url");
	bad(HF "artifacts:\n- { path: a, sha256: " SHA_A " }\n- { path: a, sha256: " SHA_A " }\n",
	    "b.yaml:4:11:", "listed twice (first at line 3)");
	bad("source: { provider: url }\nartifacts: [{ path: a, sha256: " SHA_A ", url: ftp://h }]\n",
	    "b.yaml:2:", "http:// or https://");
}

int main(void)
{
	test_good();
	test_url_and_civitai();
	test_bad();
	return check_summary();
}
