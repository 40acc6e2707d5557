/*
 * test_modelinfo.c: modelinfo.c against modelinfo.h on headers built
 * here: safetensors and GGUF v2/v3 (metadata of every type, nested
 * arrays, quantized tensors), read in growing prefixes as `info` does;
 * then malformed ones (wrong lengths, overflowing shapes, unknown types,
 * every truncation, random byte flips), which must give -EINVAL or
 * -EAGAIN and never read outside the buffer (run under ASan).
 */
#include "modelfs/modelinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ---- a growable byte buffer ---------------------------------------------- */

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void put_u32(struct buf *b, uint32_t v)
{
	unsigned char x[4] = { v, v >> 8, v >> 16, v >> 24 };

	put(b, x, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
	unsigned char x[8];

	for (int i = 0; i < 8; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	put(b, x, 8);
}

static void put_str(struct buf *b, const char *s)
{
	put_u64(b, strlen(s));
	put(b, s, strlen(s));
}

static void put_zeros(struct buf *b, size_t n)
{
	while (n--)
		put(b, "", 1);
}

/* ---- parse as `info` does: a prefix, then more when asked -------------- */

static int parse_growing(const struct buf *b, struct modelinfo *mi, char *reason, int *rounds)
{
	uint64_t want = 16, need = 0;
	int rc;

	*rounds = 0;
	for (;;) {
		size_t len = want < b->len ? (size_t)want : b->len;
		/* An exact-size copy, so that ASan sees any read past len. */
		unsigned char *copy = malloc(len ? len : 1);

		memcpy(copy, b->p, len);
		rc = modelinfo_parse(copy, len, b->len, mi, &need, reason, 256);
		free(copy);
		(*rounds)++;
		if (rc != -EAGAIN || *rounds > 64)
			return rc;
		CHECK(need > len);
		want = need;
	}
}

static const struct modelinfo_dtype *dtype(const struct modelinfo *mi, const char *name)
{
	for (size_t i = 0; i < mi->n_dtypes; i++)
		if (strcmp(mi->dtypes[i].name, name) == 0)
			return &mi->dtypes[i];
	return NULL;
}

/* ---- safetensors ---------------------------------------------------------- */

static void safetensors(struct buf *b, const char *json, size_t data)
{
	size_t n = strlen(json), pad = (8 - n % 8) % 8;

	b->len = 0;
	put_u64(b, n + pad);
	put(b, json, n);
	for (size_t i = 0; i < pad; i++)
		put(b, " ", 1);
	put_zeros(b, data);
}

static void test_safetensors(void)
{
	struct buf b = { 0 };
	struct modelinfo mi;
	char reason[256];
	int rounds;
	/* 2x3 F16 = 12 bytes, 4 F32 = 16 bytes, 10x10 BF16 = 200, 7 F4 = 4 */
	const char *json = "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
		"\"a.weight\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
		"\"a.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[12,28]},"
		"\"b\":{\"dtype\":\"BF16\",\"shape\":[10,10],\"data_offsets\":[28,228]},"
		"\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[228,230]},"
		"\"q\":{\"dtype\":\"F4\",\"shape\":[7],\"data_offsets\":[230,234]}}";

	safetensors(&b, json, 234);
	CHECK(modelinfo_detect(b.p, b.len) == MODELINFO_SAFETENSORS);
	CHECK(parse_growing(&b, &mi, reason, &rounds) == 0);
	CHECK(rounds == 2);		/* the length, then the whole header */
	CHECK(mi.format == MODELINFO_SAFETENSORS);
	CHECK(mi.tensors == 5);
	CHECK(mi.params == 6 + 4 + 100 + 1 + 7);
	CHECK(mi.weight_bytes == 234);
	CHECK(mi.metadata_keys == 2);
	CHECK(mi.header_bytes == b.len - 234);
	CHECK(mi.n_dtypes == 4);
	CHECK_STR(mi.dtypes[0].name, "BF16");	/* most parameters first */
	CHECK(dtype(&mi, "F16") && dtype(&mi, "F16")->tensors == 2 && dtype(&mi, "F16")->params == 7);
	CHECK(dtype(&mi, "F32") && dtype(&mi, "F32")->bytes == 16);
	modelinfo_clear(&mi);

	/* An empty header: no tensors is still a valid file. */
	safetensors(&b, "{}", 0);
	CHECK(parse_growing(&b, &mi, reason, &rounds) == 0 && mi.tensors == 0);
	modelinfo_clear(&mi);
	free(b.p);
}

static void expect_bad_safetensors(const char *json, size_t data, const char *why)
{
	struct buf b = { 0 };
	struct modelinfo mi;
	char reason[256];
	int rounds, rc;

	safetensors(&b, json, data);
	rc = parse_growing(&b, &mi, reason, &rounds);
	CHECK(rc == -EINVAL);
	if (rc != -EINVAL)
		fprintf(stderr, "  not refused: %s\n", json);
	if (rc == -EINVAL && !strstr(reason, why)) {
		fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", reason, why);
		CHECK(0);
	}
	CHECK(mi.dtypes == NULL);
	free(b.p);
}

static void test_safetensors_malformed(void)
{
	struct buf b = { 0 };
	struct modelinfo mi;
	char reason[256];
	uint64_t need;

	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,5]}}", 5,
			       "bytes of data");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 2,
			       "outside");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,0]}}", 8,
			       "outside");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
			       "unknown dtype");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\",\"shape\":[-2],\"data_offsets\":[0,4]}}", 4,
			       "shape");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296,16],"
			       "\"data_offsets\":[0,4]}}", 4, "overflows");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\",\"shape\":[2]}}", 4, "data_offsets");
	expect_bad_safetensors("{\"a\":3}", 0, "needs dtype");
	expect_bad_safetensors("[1,2]", 0, "neither");
	expect_bad_safetensors("{\"a\":{}, \"a\":{}}", 0, "not JSON");
	expect_bad_safetensors("{\"a\":{\"dtype\":\"F16\"", 0, "not JSON");

	/* A length longer than the file, or absurd. */
	b.len = 0;
	put_u64(&b, 1000);
	put(&b, "{}      ", 8);
	CHECK(modelinfo_parse(b.p, b.len, b.len, &mi, &need, reason, sizeof(reason)) == -EINVAL);
	CHECK(strstr(reason, "longer than the file") != NULL);
	b.len = 0;
	put_u64(&b, UINT64_MAX);
	put(&b, "{}      ", 8);
	CHECK(modelinfo_parse(b.p, b.len, 1ull << 40, &mi, &need, reason, sizeof(reason)) == -EINVAL);
	/* Not a model at all. */
	CHECK(modelinfo_parse("hello, world", 12, 12, &mi, &need, reason, sizeof(reason)) == -EINVAL);
	CHECK(modelinfo_parse("", 0, 0, &mi, &need, reason, sizeof(reason)) == -EINVAL);
	free(b.p);
}

/* ---- GGUF ------------------------------------------------------------------ */

struct gtensor {
	const char *name;
	uint32_t ndims;
	uint64_t dims[8];
	uint32_t type;
};

/* A GGUF file with some metadata of every kind, the given tensors and
 * their data (zeros) after alignment padding. */
static void gguf(struct buf *b, uint32_t version, const struct gtensor *t, size_t nt,
		 uint64_t data_bytes, uint32_t alignment)
{
	b->len = 0;
	put(b, "GGUF", 4);
	put_u32(b, version);
	put_u64(b, nt);
	put_u64(b, 7);			/* key/values */
	put_str(b, "general.architecture");
	put_u32(b, 8);
	put_str(b, "llama");
	put_str(b, "general.name");
	put_u32(b, 8);
	put_str(b, "Tiny\x01Llama");
	put_str(b, "general.alignment");
	put_u32(b, 4);
	put_u32(b, alignment);
	put_str(b, "llama.rope.freq_base");
	put_u32(b, 6);
	put_u32(b, 0x461c4000);
	put_str(b, "tokenizer.ggml.tokens");	/* an array of strings */
	put_u32(b, 9);
	put_u32(b, 8);
	put_u64(b, 3);
	put_str(b, "<s>");
	put_str(b, "</s>");
	put_str(b, "hello");
	put_str(b, "tokenizer.ggml.scores");	/* an array of f32 */
	put_u32(b, 9);
	put_u32(b, 6);
	put_u64(b, 3);
	put_zeros(b, 12);
	put_str(b, "nested");			/* an array of arrays of u64 */
	put_u32(b, 9);
	put_u32(b, 9);
	put_u64(b, 2);
	put_u32(b, 10);
	put_u64(b, 1);
	put_u64(b, 42);
	put_u32(b, 10);
	put_u64(b, 0);
	for (size_t i = 0; i < nt; i++) {
		put_str(b, t[i].name);
		put_u32(b, t[i].ndims);
		for (uint32_t d = 0; d < t[i].ndims; d++)
			put_u64(b, t[i].dims[d]);
		put_u32(b, t[i].type);
		put_u64(b, 0);
	}
	put_zeros(b, (alignment - b->len % alignment) % alignment);
	put_zeros(b, data_bytes);
}

static const struct gtensor tiny[] = {
	{ "token_embd.weight", 2, { 256, 32 }, 12 },	/* Q4_K: 32 blocks of 144 */
	{ "blk.0.attn_q.weight", 2, { 64, 64 }, 8 },	/* Q8_0: 128 blocks of 34 */
	{ "blk.0.attn_norm.weight", 1, { 64 }, 0 },	/* F32 */
	{ "output.weight", 2, { 64, 8 }, 1 },		/* F16 */
	{ "blk.0.ffn.weight", 2, { 512, 2 }, 14 },	/* Q6_K: 4 blocks of 210 */
};
#define TINY_BYTES (32 * 144 + 128 * 34 + 64 * 4 + 512 * 2 + 4 * 210)

static void test_gguf(void)
{
	struct buf b = { 0 };
	struct modelinfo mi;
	char reason[256];
	int rounds;

	for (uint32_t version = 2; version <= 3; version++) {
		gguf(&b, version, tiny, 5, TINY_BYTES, 32);
		CHECK(modelinfo_detect(b.p, b.len) == MODELINFO_GGUF);
		CHECK(parse_growing(&b, &mi, reason, &rounds) == 0);
		if (reason[0])
			fprintf(stderr, "  reason: %s\n", reason);
		CHECK(mi.format == MODELINFO_GGUF && mi.gguf_version == version);
		CHECK(mi.tensors == 5);
		CHECK(mi.params == 256 * 32 + 64 * 64 + 64 + 64 * 8 + 1024);
		CHECK(mi.weight_bytes == TINY_BYTES);
		CHECK(mi.header_bytes == b.len - TINY_BYTES && mi.header_bytes % 32 == 0);
		CHECK(mi.metadata_keys == 7);
		CHECK_STR(mi.arch, "llama");
		CHECK_STR(mi.name, "Tiny?Llama");	/* control bytes are not printed */
		CHECK(dtype(&mi, "Q4_K") && dtype(&mi, "Q4_K")->bytes == 32 * 144);
		CHECK(dtype(&mi, "Q8_0") && dtype(&mi, "Q8_0")->params == 4096);
		CHECK(dtype(&mi, "Q6_K") && dtype(&mi, "Q6_K")->bytes == 840);
		CHECK(dtype(&mi, "F16") && dtype(&mi, "F32"));
		modelinfo_clear(&mi);
	}
	/* Another alignment moves the start of the data. */
	gguf(&b, 3, tiny, 5, TINY_BYTES, 64);
	CHECK(parse_growing(&b, &mi, reason, &rounds) == 0 && mi.header_bytes % 64 == 0);
	modelinfo_clear(&mi);
	free(b.p);
}

static void expect_bad_gguf(struct buf *b, const char *why)
{
	struct modelinfo mi;
	char reason[256];
	int rounds, rc = parse_growing(b, &mi, reason, &rounds);

	CHECK(rc == -EINVAL);
	if (rc == -EINVAL && !strstr(reason, why)) {
		fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", reason, why);
		CHECK(0);
	}
}

static void test_gguf_malformed(void)
{
	struct buf b = { 0 };
	struct gtensor t;

	gguf(&b, 1, tiny, 5, TINY_BYTES, 32);
	expect_bad_gguf(&b, "version 1");
	gguf(&b, 3, tiny, 5, TINY_BYTES - 1, 32);
	expect_bad_gguf(&b, "bytes of data");
	gguf(&b, 3, tiny, 5, TINY_BYTES, 24);
	expect_bad_gguf(&b, "power of two");
	t = (struct gtensor){ "x", 2, { 100, 3 }, 2 };		/* 300 is not whole Q4_0 blocks */
	gguf(&b, 3, &t, 1, 1000, 32);
	expect_bad_gguf(&b, "blocks");
	t = (struct gtensor){ "x", 1, { 8 }, 4 };		/* retired Q4_2 */
	gguf(&b, 3, &t, 1, 100, 32);
	expect_bad_gguf(&b, "unknown ggml type");
	t = (struct gtensor){ "x", 1, { 8 }, 4000 };
	gguf(&b, 3, &t, 1, 100, 32);
	expect_bad_gguf(&b, "unknown ggml type");
	t = (struct gtensor){ "x", 5, { 1, 1, 1, 1 }, 0 };
	gguf(&b, 3, &t, 1, 100, 32);
	expect_bad_gguf(&b, "dimensions");
	t = (struct gtensor){ "x", 3, { 1ull << 32, 1ull << 32, 1ull << 8 }, 0 };
	gguf(&b, 3, &t, 1, 100, 32);
	expect_bad_gguf(&b, "overflows");
	t = (struct gtensor){ "x", 2, { 1ull << 30, 1ull << 4 }, 0 };	/* 64 GiB in a tiny file */
	gguf(&b, 3, &t, 1, 100, 32);
	expect_bad_gguf(&b, "larger than the file");

	/* Counts and lengths that claim more than there is. */
	b.len = 0;
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, UINT64_MAX);
	put_u64(&b, 1);
	expect_bad_gguf(&b, "plausible");
	b.len = 0;
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 0);
	put_u64(&b, 1);
	put_u64(&b, UINT64_MAX);	/* a key of 16 EiB */
	put_zeros(&b, 100);
	expect_bad_gguf(&b, "past the end");
	b.len = 0;
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 0);
	put_u64(&b, 1);
	put_str(&b, "k");
	put_u32(&b, 9);			/* array of 2^60 u64 */
	put_u32(&b, 10);
	put_u64(&b, 1ull << 60);
	put_zeros(&b, 100);
	expect_bad_gguf(&b, "past the end");
	b.len = 0;
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 0);
	put_u64(&b, 1);
	put_str(&b, "k");
	put_u32(&b, 13);		/* no such value type */
	put_zeros(&b, 100);
	expect_bad_gguf(&b, "unknown type");
	b.len = 0;
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 0);
	put_u64(&b, 1);
	put_str(&b, "deep");		/* arrays nested 5 deep */
	put_u32(&b, 9);
	for (int i = 0; i < 5; i++) {
		put_u32(&b, 9);
		put_u64(&b, 1);
	}
	put_u32(&b, 0);
	put_u64(&b, 0);
	put_zeros(&b, 100);
	expect_bad_gguf(&b, "too deep");
	free(b.p);
}

/* Every prefix of a good header must ask for more (or, when the file is
 * that short, be refused); never crash or claim a wrong success. */
static void test_truncations(void)
{
	struct buf b = { 0 };
	struct modelinfo mi;
	char reason[256];
	uint64_t need;
	int n_fail = 0;

	for (int kind = 0; kind < 2; kind++) {
		if (kind == 0)
			gguf(&b, 3, tiny, 5, TINY_BYTES, 32);
		else
			safetensors(&b, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
		size_t header = kind == 0 ? b.len - TINY_BYTES : b.len - 4;

		for (size_t len = 0; len < header; len++) {
			unsigned char *copy = malloc(len ? len : 1);
			int rc;

			memcpy(copy, b.p, len);
			/* As a prefix of the whole file: "read more". */
			rc = modelinfo_parse(copy, len, b.len, &mi, &need, reason, sizeof(reason));
			/* (GGUF's alignment padding after the tensor infos is not needed.) */
			n_fail += !((rc == -EAGAIN && need > len && need <= b.len) ||
				    (rc == 0 && kind == 0 && mi.tensors == 5));
			if (rc == 0)
				modelinfo_clear(&mi);
			/* As the whole (cut) file: refused. */
			rc = modelinfo_parse(copy, len, len, &mi, &need, reason, sizeof(reason));
			n_fail += rc != -EINVAL;
			free(copy);
		}
	}
	CHECK(n_fail == 0);
	free(b.p);
}

/* Random damage: whatever the result, no crash, no leak, sane numbers. */
static void test_fuzz(void)
{
	struct buf good = { 0 }, b = { 0 };
	struct modelinfo mi;
	char reason[256];
	uint64_t need;
	unsigned seed = 12345;
	int ok = 0, insane = 0;

	for (int round = 0; round < 20000; round++) {
		if (round % 2)
			gguf(&good, 3, tiny, 5, TINY_BYTES, 32);
		else
			safetensors(&good, "{\"__metadata__\":{},\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],"
				    "\"data_offsets\":[0,12]},\"b\":{\"dtype\":\"I8\",\"shape\":[3],"
				    "\"data_offsets\":[12,15]}}", 15);
		b.len = 0;
		put(&b, good.p, good.len);
		for (int k = 1 + (int)(rand_r(&seed) % 4); k > 0; k--)
			b.p[rand_r(&seed) % b.len] = (unsigned char)rand_r(&seed);
		unsigned char *copy = malloc(b.len);

		memcpy(copy, b.p, b.len);
		int rc = modelinfo_parse(copy, b.len, b.len, &mi, &need, reason, sizeof(reason));
		free(copy);
		if (rc == 0) {
			ok++;
			insane += mi.weight_bytes > b.len || mi.header_bytes > b.len;
			modelinfo_clear(&mi);
		} else {
			insane += rc != -EINVAL && rc != -EAGAIN;
		}
	}
	CHECK(insane == 0);
	CHECK(ok > 0);		/* some flips land in padding or values */
	free(good.p);
	free(b.p);
}

static void test_vram(void)
{
	struct modelinfo mi = { .weight_bytes = 10ull << 30 };

	CHECK(modelinfo_vram_estimate(&mi) == (uint64_t)(10.0 * 1.2 * (1 << 30)));
	CHECK(modelinfo_gpu_fit(modelinfo_vram_estimate(&mi)) == 12);
	mi.weight_bytes = 11ull << 30;
	CHECK(modelinfo_gpu_fit(modelinfo_vram_estimate(&mi)) == 16);
	CHECK(modelinfo_gpu_fit(8ull << 30) == 8);
	CHECK(modelinfo_gpu_fit((8ull << 30) + 1) == 12);
	CHECK(modelinfo_gpu_fit(80ull << 30) == 80);
	CHECK(modelinfo_gpu_fit(81ull << 30) == 0);
}

/* modelinfo_header_len(): the length modelinfo_parse() finds, from as
 * few bytes as it takes (8 for safetensors), without checking tensors. */
static void test_header_len(void)
{
	struct gtensor odd = { "x", 1, { 7 }, 200 };	/* no such ggml type */
	struct buf b = { 0 };
	struct modelinfo mi;
	uint64_t len = 0, need = 0;
	char reason[256];
	int rounds;

	safetensors(&b, "{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
	CHECK(modelinfo_header_len(MODELINFO_SAFETENSORS, b.p, 4, b.len, &len, &need) == -EAGAIN &&
	      need == 8);
	CHECK(modelinfo_header_len(MODELINFO_SAFETENSORS, b.p, 8, b.len, &len, &need) == 0 &&
	      len == b.len - 4);
	CHECK(modelinfo_header_len(MODELINFO_UNKNOWN, b.p, b.len, b.len, &len, &need) == 0 &&
	      len == b.len - 4);
	CHECK(modelinfo_header_len(MODELINFO_SAFETENSORS, b.p, 8, 12, &len, &need) == -EINVAL);

	gguf(&b, 3, tiny, 5, TINY_BYTES, 32);
	CHECK(parse_growing(&b, &mi, reason, &rounds) == 0);
	CHECK(modelinfo_header_len(MODELINFO_GGUF, b.p, b.len, b.len, &len, &need) == 0 &&
	      len == mi.header_bytes);
	CHECK(modelinfo_header_len(MODELINFO_GGUF, b.p, 100, b.len, &len, &need) == -EAGAIN &&
	      need >= 100);
	modelinfo_clear(&mi);
	/* Only the length: a tensor type the parser does not know is no matter. */
	gguf(&b, 3, &odd, 1, 64, 32);
	CHECK(modelinfo_header_len(MODELINFO_GGUF, b.p, b.len, b.len, &len, &need) == 0 &&
	      len == b.len - 64);
	CHECK(modelinfo_header_len(MODELINFO_UNKNOWN, "not a model", 11, 11, &len, &need) == -EINVAL);
	free(b.p);
}

/* modelinfo_tensor_starts(): file offsets, ascending whatever the
 * header's order, only for a whole and valid safetensors header. */
static void test_tensor_starts(void)
{
	struct buf b = { 0 };
	uint64_t *starts = NULL, need = 0, h;
	size_t n = 0;

	safetensors(&b, "{\"__metadata__\":{\"a\":\"b\"},"
		    "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
		    "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 12);
	h = b.len - 12;
	CHECK(modelinfo_tensor_starts(b.p, b.len, b.len, &starts, &n, &need) == 0 && n == 2 &&
	      starts[0] == h && starts[1] == h + 4);
	free(starts);
	CHECK(modelinfo_tensor_starts(b.p, (size_t)h - 1, b.len, &starts, &n, &need) == -EAGAIN &&
	      need == h && !starts && n == 0);
	safetensors(&b, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,40]}}", 12);
	CHECK(modelinfo_tensor_starts(b.p, b.len, b.len, &starts, &n, &need) == -EINVAL && !starts);
	safetensors(&b, "{\"__metadata__\":{}}", 0);
	CHECK(modelinfo_tensor_starts(b.p, b.len, b.len, &starts, &n, &need) == 0 && n == 0 &&
	      !starts);
	CHECK(modelinfo_tensor_starts("GGUF\3\0\0\0", 8, 8, &starts, &n, &need) == -EINVAL);
	free(b.p);
}

int main(void)
{
	test_safetensors();
	test_safetensors_malformed();
	test_gguf();
	test_gguf_malformed();
	test_header_len();
	test_tensor_starts();
	test_truncations();
	test_fuzz();
	test_vram();
	return check_summary();
}
