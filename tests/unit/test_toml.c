/*
 * test_toml.c: unit tests of the TOML parser (src/config/toml.c) beyond
 * toml-test's conformance cases: error and value positions, the seed
 * config, the nesting limit, NULs in strings and keys, int64 edges and
 * big tables. Prints "N passed, N failed"; exits 1 on any failure.
 */
#include "modelfs/toml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"



static int parse(const char *text, struct toml_value **out, struct toml_error *err)
{
	return toml_parse(text, strlen(text), out, err);
}

/* Parse text that must fail; the error's position and message. */
static void expect_error(const char *text, int line, int col, const char *msg_part)
{
	struct toml_value *v = NULL;
	struct toml_error err;
	int rc = parse(text, &v, &err);

	CHECK(rc == -EINVAL);
	CHECK(v == NULL);
	if (rc == -EINVAL && (err.line != line || err.col != col || !strstr(err.msg, msg_part)))
		fprintf(stderr, "  got %d:%d: %s; want %d:%d: ...%s...\n",
			err.line, err.col, err.msg, line, col, msg_part);
	CHECK(err.line == line);
	CHECK(err.col == col);
	CHECK(strstr(err.msg, msg_part) != NULL);
}

/* Walk a dotted path of plain keys ("a.b.c") from t. */
static const struct toml_value *get(const struct toml_value *t, const char *path)
{
	char key[128];
	const char *dot;

	while (t && (dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		t = toml_table_get(t, key);
		path = dot + 1;
	}
	return t ? toml_table_get(t, path) : NULL;
}

static bool is_string(const struct toml_value *v, const char *s)
{
	return v && v->type == TOML_STRING && v->u.str.len == strlen(s) &&
	       memcmp(v->u.str.ptr, s, v->u.str.len) == 0;
}

static void test_error_positions(void)
{
	expect_error("a = 1\nb = 2\na = 3\n", 3, 1, "duplicate key 'a' (first at 1:1)");
	expect_error("[t]\nx = 1\n\n[t]\n", 4, 2, "already defined (at 1:2)");
	expect_error("[fruit]\napple.color = 'red'\n[fruit.apple]\n", 3, 8, "already defined");
	expect_error("a = { b = 1 }\na.c = 2\n", 2, 1, "inline table 'a'");
	expect_error("x = [1, 2\n", 2, 1, "expected ',' or ']'");
	expect_error("k = \"abc", 1, 9, "unterminated string");
	expect_error("k = 'a\nb'", 1, 7, "newline in a single-line string");
	expect_error("  k = 0x_1\n", 1, 7, "invalid number");
	expect_error("k = 1979-02-29\n", 1, 5, "invalid date");
	expect_error("k = \"\\q\"\n", 1, 6, "invalid escape");
	expect_error("k = 1 2\n", 1, 7, "expected a newline");
	expect_error("k = tru\n", 1, 5, "invalid value 'tru'");
	/* Encoding errors are found first but reported only if no syntax
	 * error comes before them. */
	expect_error("a = 1\nb = \"x\x01\"\n", 2, 7, "control character U+0001");
	expect_error("a = \nb = \"\x01\"\n", 1, 5, "expected a value");
	expect_error("a = \"\xc3\"\n", 1, 6, "invalid UTF-8");
	expect_error("a = 1\r\n\rb = 2\n", 2, 1, "carriage return");
}

static void test_positions(void)
{
	const char *text =
		"# top\n"
		"[server]\n"
		"  port = 8080\n"
		"  name = { first = \"a\",\n"
		"           second = [1,\n"
		"                     2] }\n";
	struct toml_value *root = NULL;
	const struct toml_value *server, *v;
	struct toml_error err;
	int rc = parse(text, &root, &err);

	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "  %d:%d: %s\n", err.line, err.col, err.msg);
		return;
	}
	CHECK(root->type == TOML_TABLE && root->u.table.len == 1);
	server = toml_table_get(root, "server");
	CHECK(server && server->type == TOML_TABLE);
	CHECK(server->u.table.len == 2);
	CHECK(server->u.table.items[0].line == 3 && server->u.table.items[0].col == 3);
	v = server->u.table.items[0].value;
	CHECK(v->type == TOML_INTEGER && v->u.integer == 8080);
	CHECK(v->line == 3 && v->col == 10);
	v = get(root, "server.name.second");
	CHECK(v && v->type == TOML_ARRAY && v->u.array.len == 2);
	CHECK(v && v->line == 5 && v->col == 21);
	CHECK(v && v->u.array.items[1]->line == 6 && v->u.array.items[1]->col == 22);
	v = get(root, "server.name");
	CHECK(v && v->u.table.items[1].line == 5 && v->u.table.items[1].col == 12);
	CHECK(toml_table_get(v, "missing") == NULL);
	CHECK(toml_table_get(get(root, "server.port"), "x") == NULL);	/* not a table */
	toml_free(root);
}

static void test_seed_config(void)
{
	static const char seed[] =
		"[modelfs]                       # all optional\n"
		"cache_dir = \"/var/cache/modelfs\"\n"
		"cache_max_size = \"200G\"         # also \"80%\" of the cache filesystem\n"
		"block_size = \"8M\"\n"
		"layout = \"forge\"                # forge | comfyui | flat, or a [layout] table category -> folder\n"
		"connections = 16\n"
		"\n"
		"[models.checkpoints]\n"
		"\"sdxl-base\" = { source = \"huggingface\", repo = \"stabilityai/stable-diffusion-xl-base-1.0\",\n"
		"                file = \"sd_xl_base_1.0.safetensors\", revision = \"main\" }\n"
		"\"flux-schnell\" = { source = \"huggingface\", repo = \"black-forest-labs/FLUX.1-schnell\",\n"
		"                   include = [\"*.json\", \"transformer/*\"] }    # no file \xe2\x86\x92 the repo as a folder\n"
		"[models.lora]\n"
		"\"detail\" = { source = \"civitai\", model_id = \"58390\", filename = \"detail.safetensors\" }\n"
		"[models.vae]\n"
		"\"vae\" = \"https://example.com/vae.safetensors\"                # a bare string is a URL\n"
		"\"drive\" = { source = \"url\", url = \"https://drive.google.com/file/d/ID/view\",\n"
		"            headers = { \"User-Agent\" = \"x\" }, auth_header = \"Bearer ${S3_TOKEN}\", sha256 = \"\xe2\x80\xa6\" }\n";
	struct toml_value *root = NULL;
	const struct toml_value *v;
	struct toml_error err;
	int rc = toml_parse(seed, sizeof(seed) - 1, &root, &err);

	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "  seed: %d:%d: %s\n", err.line, err.col, err.msg);
		return;
	}
	CHECK(is_string(get(root, "modelfs.cache_dir"), "/var/cache/modelfs"));
	CHECK(is_string(get(root, "modelfs.layout"), "forge"));
	v = get(root, "modelfs.connections");
	CHECK(v && v->type == TOML_INTEGER && v->u.integer == 16);
	v = get(root, "models.checkpoints");
	CHECK(v && v->type == TOML_TABLE && v->u.table.len == 2);
	CHECK(v && strcmp(v->u.table.items[0].key, "sdxl-base") == 0);
	CHECK(v && v->u.table.items[0].line == 9 && v->u.table.items[0].col == 1);
	v = toml_table_get(v, "sdxl-base");
	CHECK(is_string(toml_table_get(v, "file"), "sd_xl_base_1.0.safetensors"));
	CHECK(v && v->u.table.len == 4 && v->u.table.items[2].line == 10 &&
	      v->u.table.items[2].col == 17);
	v = toml_table_get(get(root, "models.checkpoints"), "flux-schnell");
	v = toml_table_get(v, "include");
	CHECK(v && v->type == TOML_ARRAY && v->u.array.len == 2);
	CHECK(v && is_string(v->u.array.items[1], "transformer/*"));
	CHECK(is_string(get(root, "models.lora.detail.model_id"), "58390"));
	CHECK(is_string(get(root, "models.vae.vae"), "https://example.com/vae.safetensors"));
	CHECK(is_string(get(root, "models.vae.drive.headers.User-Agent"), "x"));
	CHECK(is_string(get(root, "models.vae.drive.auth_header"), "Bearer ${S3_TOKEN}"));
	CHECK(is_string(get(root, "models.vae.drive.sha256"), "\xe2\x80\xa6"));
	v = get(root, "models.vae.drive");
	CHECK(v && v->line == 17 && v->col == 11);
	toml_free(root);
}

/* "a = ", n times open, n times close: n nested values. */
static char *nested(size_t n, const char *open, char close)
{
	size_t len = 4 + (strlen(open) + 1) * n + 2;
	char *s = malloc(len);
	size_t i, k;

	if (!s)
		abort();
	memcpy(s, "a = ", 4);
	k = 4;
	for (i = 0; i < n; i++) {
		memcpy(s + k, open, strlen(open));
		k += strlen(open);
	}
	for (i = 0; i < n; i++)
		s[k++] = close;
	s[k++] = '\n';
	s[k] = '\0';
	return s;
}

static void test_depth(void)
{
	struct toml_value *root = NULL;
	struct toml_error err;
	char *s;
	int rc;

	/* a is at depth 1: 128 nested arrays reach depth 128. */
	s = nested(128, "[", ']');
	rc = parse(s, &root, &err);
	CHECK(rc == 0);
	toml_free(root);
	root = NULL;
	free(s);

	s = nested(129, "[", ']');
	rc = parse(s, &root, &err);
	CHECK(rc == -EINVAL && root == NULL && strstr(err.msg, "nesting") && err.col == 4 + 129);
	free(s);

	s = nested(100000, "{b = ", '}');
	rc = parse(s, &root, &err);
	CHECK(rc == -EINVAL && strstr(err.msg, "nesting"));
	free(s);

	/* Headers and dotted keys nest tables too. */
	s = malloc(2 * 300 + 8);
	if (!s)
		abort();
	strcpy(s, "[a");
	for (int i = 0; i < 300; i++)
		strcat(s, ".a");
	strcat(s, "]\n");
	rc = parse(s, &root, &err);
	CHECK(rc == -EINVAL && strstr(err.msg, "more than 128 parts"));
	s[2 + 2 * 127] = ']';	/* [a.a...a]: 128 parts, fine */
	s[2 + 2 * 127 + 1] = '\0';
	rc = parse(s, &root, &err);
	CHECK(rc == 0);
	toml_free(root);
	root = NULL;
	free(s);

	/* [[a]] adds two levels per part (the array and its element). */
	rc = parse("[[a.b.c]]\n[[a.b.c]]\n", &root, &err);
	CHECK(rc == 0);
	toml_free(root);
}

static void test_nul(void)
{
	const char text[] = "s = \"a\\u0000b\"\n\"k\\u0000x\" = 1\n\"k\\u0000y\" = 2\n"
			    "h = \"\\x00\"\n";
	struct toml_value *root = NULL;
	const struct toml_value *v;
	struct toml_error err;
	int rc = parse(text, &root, &err);

	CHECK(rc == 0);
	if (rc)
		return;
	v = toml_table_get(root, "s");
	CHECK(v && v->type == TOML_STRING && v->u.str.len == 3 &&
	      memcmp(v->u.str.ptr, "a\0b", 4) == 0);
	CHECK(root->u.table.len == 4);
	CHECK(root->u.table.items[1].key_len == 3 &&
	      memcmp(root->u.table.items[1].key, "k\0x", 4) == 0);
	CHECK(root->u.table.items[2].key_len == 3 &&
	      memcmp(root->u.table.items[2].key, "k\0y", 4) == 0);
	CHECK(toml_table_get(root, "k") == NULL);	/* "k\0x" is not "k" */
	v = toml_table_get(root, "h");
	CHECK(v && v->u.str.len == 1 && v->u.str.ptr[0] == '\0');
	toml_free(root);

	expect_error("\"k\\u0000x\" = 1\n\"k\\u0000x\" = 2\n", 2, 1, "duplicate key");
	/* A raw NUL is no escape: rejected. */
	rc = toml_parse("s = \"a\0b\"\n", 9, &root, &err);
	CHECK(rc == -EINVAL && err.line == 1 && err.col == 7 &&
	      strstr(err.msg, "control character U+0000"));
}

static void expect_int(const char *text, int64_t want)
{
	struct toml_value *root = NULL;
	const struct toml_value *v;
	struct toml_error err;
	int rc = parse(text, &root, &err);

	CHECK(rc == 0);
	v = toml_table_get(root, "i");
	CHECK(v && v->type == TOML_INTEGER && v->u.integer == want);
	if (v && v->type == TOML_INTEGER && v->u.integer != want)
		fprintf(stderr, "  %s: got %lld\n", text, (long long)v->u.integer);
	toml_free(root);
}

static void test_int64(void)
{
	expect_int("i = 9223372036854775807", INT64_MAX);
	expect_int("i = +9_223_372_036_854_775_807", INT64_MAX);
	expect_int("i = -9223372036854775808", INT64_MIN);
	expect_int("i = 0x7fffffffffffffff", INT64_MAX);
	expect_int("i = 0o777777777777777777777", INT64_MAX);
	expect_int("i = 0b" "111111111111111111111111111111111111111111111111111111111111111",
		   INT64_MAX);
	expect_int("i = 0x0000000000000000000000000001", 1);
	expect_int("i = -0", 0);
	expect_int("i = +0", 0);
	expect_error("i = 9223372036854775808", 1, 5, "integer out of range");
	expect_error("i = -9223372036854775809", 1, 5, "integer out of range");
	expect_error("i = 0x8000000000000000", 1, 5, "integer out of range");
	expect_error("i = 99999999999999999999999999", 1, 5, "integer out of range");
	expect_error("i = 1e400", 1, 5, "float out of range");
	expect_error("i = -0x1", 1, 5, "cannot have a sign");
}

static void test_big_table(void)
{
	size_t n = 5000, cap = n * 32 + 64, k = 0;
	struct toml_value *root = NULL;
	struct toml_error err;
	char *s = malloc(cap);
	int rc, hits = 0;

	if (!s)
		abort();
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(s + k, cap - k, "key%zu = %zu\n", i, i);
	rc = toml_parse(s, k, &root, &err);
	CHECK(rc == 0);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char key[32];
		const struct toml_value *v;

		snprintf(key, sizeof(key), "key%zu", i);
		v = toml_table_get(root, key);
		hits += v && v->type == TOML_INTEGER && v->u.integer == (int64_t)i;
	}
	CHECK(hits == (int)n);
	CHECK(toml_table_get(root, "key5000") == NULL);
	toml_free(root);
	root = NULL;

	/* The index must also catch a late duplicate. */
	k += (size_t)snprintf(s + k, cap - k, "key1234 = 0\n");
	rc = toml_parse(s, k, &root, &err);
	CHECK(rc == -EINVAL && err.line == (int)n + 1 && strstr(err.msg, "first at 1235:1"));
	free(s);
}

static void test_misc(void)
{
	struct toml_value *root = NULL;
	const struct toml_value *v;
	struct toml_error err;
	int rc;

	/* A byte order mark is skipped; columns count from after it. */
	rc = parse("\xef\xbb\xbf" "a = 1\n", &root, &err);
	CHECK(rc == 0 && root->u.table.items[0].col == 1);
	toml_free(root);
	root = NULL;

	rc = parse("d = 1979-05-27 07:32Z\nt = 07:32\n", &root, &err);
	CHECK(rc == 0);
	v = toml_table_get(root, "d");
	CHECK(v && v->type == TOML_DATETIME && strcmp(v->u.str.ptr, "1979-05-27T07:32Z") == 0);
	v = toml_table_get(root, "t");
	CHECK(v && v->type == TOML_TIME_LOCAL && strcmp(v->u.str.ptr, "07:32") == 0);
	toml_free(root);
	root = NULL;

	/* CRLF inside a multi-line string reads as "\n". */
	rc = parse("s = \"\"\"\r\na\r\nb\"\"\"\r\nl = '''x\r\ny'''\r\n", &root, &err);
	CHECK(rc == 0);
	CHECK(is_string(toml_table_get(root, "s"), "a\nb"));
	CHECK(is_string(toml_table_get(root, "l"), "x\ny"));
	toml_free(root);
	root = NULL;

	rc = toml_parse("", 0, &root, &err);
	CHECK(rc == 0 && root->type == TOML_TABLE && root->u.table.len == 0);
	toml_free(root);
	toml_free(NULL);

	CHECK(strcmp(toml_type_name(TOML_DATE_LOCAL), "local date") == 0);
}

int main(void)
{
	test_error_positions();
	test_positions();
	test_seed_config();
	test_depth();
	test_nul();
	test_int64();
	test_big_table();
	test_misc();
	return check_summary();
}
