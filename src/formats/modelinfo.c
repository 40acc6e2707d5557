/*
 * modelinfo.c: safetensors and GGUF headers, read defensively. Every
 * read goes through a cursor that knows where the buffer ends; running
 * out of bytes is "need more" (-EAGAIN), never a read past the end, and
 * counts, lengths and products are checked before they size anything.
 * Below the engine (src/formats/): `modelfs info` parses whole headers
 * with it, the engine asks it only how long a header is
 * (modelinfo_header_len(): header prefetch, loader detection).
 *
 * safetensors: u64 LE N, then N bytes of JSON: {"name": {"dtype": "F16",
 * "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {}}.
 * GGUF (v2, v3; all little-endian): "GGUF", u32 version, u64 tensors,
 * u64 kv count, the key/values (string key, u32 type, value; arrays
 * hold a u32 type, a u64 count and their items), then per tensor: string
 * name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset.
 */
#include "modelfs/modelinfo.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAX_TENSORS (1u << 24)
#define GGUF_MAX_KV (1u << 24)
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_DEPTH 4		/* arrays of arrays */

static int bad(char *reason, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *reason, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- dtypes ------------------------------------------------------------ */

/* Per element, in bits: safetensors has sub-byte float types. */
static const struct { const char *name; unsigned bits; } st_dtypes[] = {
	{ "BOOL", 8 }, { "U8", 8 }, { "I8", 8 }, { "F8_E5M2", 8 }, { "F8_E4M3", 8 },
	{ "F8_E8M0", 8 }, { "I16", 16 }, { "U16", 16 }, { "F16", 16 }, { "BF16", 16 },
	{ "I32", 32 }, { "U32", 32 }, { "F32", 32 }, { "F64", 64 }, { "I64", 64 },
	{ "U64", 64 }, { "C64", 64 }, { "F4", 4 }, { "F6_E2M3", 6 }, { "F6_E3M2", 6 },
};

/* ggml types by number: elements per block and bytes per block (ggml's
 * type_traits). Numbers ggml retired have no name. */
static const struct { const char *name; unsigned block; unsigned bytes; } ggml_types[] = {
	[0] = { "F32", 1, 4 },		[1] = { "F16", 1, 2 },
	[2] = { "Q4_0", 32, 18 },	[3] = { "Q4_1", 32, 20 },
	[6] = { "Q5_0", 32, 22 },	[7] = { "Q5_1", 32, 24 },
	[8] = { "Q8_0", 32, 34 },	[9] = { "Q8_1", 32, 36 },
	[10] = { "Q2_K", 256, 84 },	[11] = { "Q3_K", 256, 110 },
	[12] = { "Q4_K", 256, 144 },	[13] = { "Q5_K", 256, 176 },
	[14] = { "Q6_K", 256, 210 },	[15] = { "Q8_K", 256, 292 },
	[16] = { "IQ2_XXS", 256, 66 },	[17] = { "IQ2_XS", 256, 74 },
	[18] = { "IQ3_XXS", 256, 98 },	[19] = { "IQ1_S", 256, 50 },
	[20] = { "IQ4_NL", 32, 18 },	[21] = { "IQ3_S", 256, 110 },
	[22] = { "IQ2_S", 256, 82 },	[23] = { "IQ4_XS", 256, 136 },
	[24] = { "I8", 1, 1 },		[25] = { "I16", 1, 2 },
	[26] = { "I32", 1, 4 },		[27] = { "I64", 1, 8 },
	[28] = { "F64", 1, 8 },		[29] = { "IQ1_M", 256, 56 },
	[30] = { "BF16", 1, 2 },	[31] = { "Q4_0_4_4", 32, 18 },
	[32] = { "Q4_0_4_8", 32, 18 },	[33] = { "Q4_0_8_8", 32, 18 },
	[34] = { "TQ1_0", 256, 54 },	[35] = { "TQ2_0", 256, 66 },
	[36] = { "IQ4_NL_4_4", 32, 18 },	[37] = { "IQ4_NL_4_8", 32, 18 },
	[38] = { "IQ4_NL_8_8", 32, 18 },	[39] = { "MXFP4", 32, 17 },
};
#define N_GGML_TYPES (sizeof(ggml_types) / sizeof(ggml_types[0]))

/* Count a tensor under its dtype. */
static int add_dtype(struct modelinfo *mi, const char *name, uint64_t params, uint64_t bytes)
{
	struct modelinfo_dtype *d = NULL, *grown;

	for (size_t i = 0; i < mi->n_dtypes; i++)
		if (strcmp(mi->dtypes[i].name, name) == 0)
			d = &mi->dtypes[i];
	if (!d) {
		grown = realloc(mi->dtypes, (mi->n_dtypes + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		mi->dtypes = grown;
		d = &mi->dtypes[mi->n_dtypes++];
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", name);
	}
	d->tensors++;
	d->params += params;
	d->bytes += bytes;
	mi->tensors++;
	mi->params += params;
	mi->weight_bytes += bytes;
	return 0;
}

static int by_params_desc(const void *a, const void *b)
{
	const struct modelinfo_dtype *x = a, *y = b;

	if (x->params != y->params)
		return x->params < y->params ? 1 : -1;
	return strcmp(x->name, y->name);
}

/* Elements of a shape: 0, or -EOVERFLOW. */
static int elements(const uint64_t *dims, size_t n, uint64_t *out)
{
	uint64_t total = 1;

	for (size_t i = 0; i < n; i++)
		if (__builtin_mul_overflow(total, dims[i], &total))
			return -EOVERFLOW;
	*out = total;
	return 0;
}

/* ---- safetensors -------------------------------------------------------- */

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One tensor entry of a safetensors header; data is the size of the data
 * region. */
static int st_tensor(struct modelinfo *mi, const char *key, json_t *t, uint64_t data,
		     uint64_t *pbegin, char *reason, size_t rlen)
{
	json_t *dtype = json_object_get(t, "dtype"), *shape = json_object_get(t, "shape");
	json_t *offs = json_object_get(t, "data_offsets"), *v;
	uint64_t dims[16], params, begin, end, want_bits = 0;
	const char *dt;
	size_t i, ndims;

	if (!json_is_object(t) || !json_is_string(dtype) || !json_is_array(shape) ||
	    !json_is_array(offs) || json_array_size(offs) != 2)
		return bad(reason, rlen, "tensor \"%.64s\" needs dtype, shape and data_offsets", key);
	dt = json_string_value(dtype);
	ndims = json_array_size(shape);
	if (ndims > sizeof(dims) / sizeof(dims[0]))
		return bad(reason, rlen, "tensor \"%.64s\" has %zu dimensions", key, ndims);
	json_array_foreach(shape, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return bad(reason, rlen, "tensor \"%.64s\": shape must be whole numbers", key);
		dims[i] = (uint64_t)json_integer_value(v);
	}
	if (elements(dims, ndims, &params))
		return bad(reason, rlen, "tensor \"%.64s\": shape overflows", key);
	for (i = 0; i < 2; i++)
		if (!json_is_integer(json_array_get(offs, i)) ||
		    json_integer_value(json_array_get(offs, i)) < 0)
			return bad(reason, rlen, "tensor \"%.64s\": data_offsets must be whole numbers",
				   key);
	begin = (uint64_t)json_integer_value(json_array_get(offs, 0));
	end = (uint64_t)json_integer_value(json_array_get(offs, 1));
	if (end < begin || end > data)
		return bad(reason, rlen, "tensor \"%.64s\": data_offsets [%llu, %llu] are outside the "
			   "%llu bytes of data", key, (unsigned long long)begin,
			   (unsigned long long)end, (unsigned long long)data);
	for (i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
		if (strcmp(dt, st_dtypes[i].name) == 0)
			want_bits = st_dtypes[i].bits;
	if (!want_bits)
		return bad(reason, rlen, "tensor \"%.64s\": unknown dtype \"%.16s\"", key, dt);
	if (params > UINT64_MAX / want_bits ||
	    params * want_bits / 8 + (params * want_bits % 8 != 0) != end - begin)
		return bad(reason, rlen, "tensor \"%.64s\": %llu bytes of data for %llu elements of %s",
			   key, (unsigned long long)(end - begin), (unsigned long long)params, dt);
	*pbegin = begin;
	return add_dtype(mi, dt, params, end - begin);
}

/* N of a safetensors header (its first 8 bytes): 0, -EAGAIN, -EINVAL. */
static int st_header_len(const unsigned char *buf, size_t len, uint64_t file_size, uint64_t *n,
			 uint64_t *need, char *reason, size_t rlen)
{
	if (len < 8) {
		*need = 8;
		return -EAGAIN;
	}
	*n = le64(buf);
	if (*n < 2 || *n > MODELINFO_MAX_HEADER)
		return bad(reason, rlen, "safetensors header length %llu is not plausible",
			   (unsigned long long)*n);
	if (8 + *n > file_size)
		return bad(reason, rlen, "safetensors header (%llu bytes) is longer than the file",
			   (unsigned long long)*n);
	return 0;
}

/* starts: when not NULL, where each tensor starts (file offsets, in the
 * header's order) into a new array of *nstarts. */
static int parse_safetensors(const unsigned char *buf, size_t len, struct modelinfo *mi,
			     uint64_t **starts, size_t *nstarts, uint64_t *need, char *reason,
			     size_t rlen)
{
	uint64_t n, data, begin = 0;
	json_error_t jerr;
	json_t *root, *v;
	const char *key;
	int rc = st_header_len(buf, len, mi->file_size, &n, need, reason, rlen);

	if (rc)
		return rc;
	if (len < 8 + n) {
		*need = 8 + n;
		return -EAGAIN;
	}
	mi->header_bytes = 8 + n;
	data = mi->file_size - 8 - n;
	root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return bad(reason, rlen, "safetensors header is not JSON: %s (at byte %d)", jerr.text,
			   jerr.position);
	if (!json_is_object(root)) {
		json_decref(root);
		return bad(reason, rlen, "safetensors header is not a JSON object");
	}
	if (starts) {
		*nstarts = 0;
		*starts = malloc((json_object_size(root) ? json_object_size(root) : 1) *
				 sizeof(**starts));
		if (!*starts) {
			json_decref(root);
			return -ENOMEM;
		}
	}
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			mi->metadata_keys = json_is_object(v) ? json_object_size(v) : 0;
			continue;
		}
		rc = st_tensor(mi, key, v, data, &begin, reason, rlen);
		if (rc)
			break;
		if (starts)
			(*starts)[(*nstarts)++] = 8 + n + begin;
	}
	json_decref(root);
	if (rc && starts) {
		free(*starts);
		*starts = NULL;
	}
	return rc;
}

/* ---- GGUF --------------------------------------------------------------- */

/* A bounded reader: running past end sets short_read instead of reading. */
struct cursor {
	const unsigned char *buf;
	size_t len, pos;
	bool short_read;
};

static bool take(struct cursor *c, size_t n, const unsigned char **p)
{
	if (c->short_read || n > c->len - c->pos) {
		c->short_read = true;
		return false;
	}
	*p = c->buf + c->pos;
	c->pos += n;
	return true;
}

static bool get_u32(struct cursor *c, uint32_t *v)
{
	const unsigned char *p;

	if (!take(c, 4, &p))
		return false;
	*v = le32(p);
	return true;
}

static bool get_u64(struct cursor *c, uint64_t *v)
{
	const unsigned char *p;

	if (!take(c, 8, &p))
		return false;
	*v = le64(p);
	return true;
}

/* A GGUF string: its bytes stay in the buffer. */
static bool get_str(struct cursor *c, const unsigned char **s, uint64_t *n)
{
	if (!get_u64(c, n))
		return false;
	if (*n > MODELINFO_MAX_HEADER) {
		c->short_read = true;	/* longer than any header we read: reported below */
		c->pos = c->len;
		*n = 0;
		return false;
	}
	return take(c, (size_t)*n, s);
}

enum gguf_type {
	GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
	GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_NTYPES
};

static const unsigned gguf_sizes[GGUF_NTYPES] = {
	[GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4,
	[GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8,
	[GGUF_F64] = 8,
};

/* Skip one value of type t: 0, -EAGAIN (short), -EINVAL. */
static int skip_value(struct cursor *c, uint32_t t, int depth, char *reason, size_t rlen)
{
	const unsigned char *p;
	uint64_t n;
	uint32_t et;

	if (t >= GGUF_NTYPES)
		return bad(reason, rlen, "GGUF value of unknown type %u", t);
	if (t == GGUF_STRING)
		return get_str(c, &p, &n) ? 0 : -EAGAIN;
	if (t != GGUF_ARRAY)
		return take(c, gguf_sizes[t], &p) ? 0 : -EAGAIN;
	if (depth >= GGUF_MAX_DEPTH)
		return bad(reason, rlen, "GGUF arrays nested too deep");
	if (!get_u32(c, &et) || !get_u64(c, &n))
		return -EAGAIN;
	if (et >= GGUF_NTYPES)
		return bad(reason, rlen, "GGUF array of unknown type %u", et);
	if (et != GGUF_STRING && et != GGUF_ARRAY) {
		/* Fixed-size items: one bounds check for all of them. */
		if (n > MODELINFO_MAX_HEADER / gguf_sizes[et]) {
			c->short_read = true;
			return -EAGAIN;
		}
		return take(c, (size_t)(n * gguf_sizes[et]), &p) ? 0 : -EAGAIN;
	}
	for (uint64_t i = 0; i < n; i++) {
		int rc = skip_value(c, et, depth + 1, reason, rlen);

		if (rc)
			return rc;
	}
	return 0;
}

static void copy_str(char *dst, size_t dstlen, const unsigned char *s, uint64_t n)
{
	size_t k = n < dstlen - 1 ? (size_t)n : dstlen - 1;

	memcpy(dst, s, k);
	dst[k] = '\0';
	for (size_t i = 0; i < k; i++)
		if ((unsigned char)dst[i] < 0x20)
			dst[i] = '?';	/* printed to a terminal: no control bytes */
}

static bool key_is(const unsigned char *k, uint64_t n, const char *want)
{
	return n == strlen(want) && memcmp(k, want, n) == 0;
}

static int gguf_kv(struct cursor *c, struct modelinfo *mi, uint64_t *alignment,
		   char *reason, size_t rlen)
{
	const unsigned char *key, *s;
	uint64_t klen, n;
	uint32_t t;
	size_t at;

	if (!get_str(c, &key, &klen) || !get_u32(c, &t))
		return -EAGAIN;
	at = c->pos;
	if (t == GGUF_STRING && (key_is(key, klen, "general.architecture") ||
				 key_is(key, klen, "general.name"))) {
		if (!get_str(c, &s, &n))
			return -EAGAIN;
		if (key_is(key, klen, "general.name"))
			copy_str(mi->name, sizeof(mi->name), s, n);
		else
			copy_str(mi->arch, sizeof(mi->arch), s, n);
		return 0;
	}
	if (key_is(key, klen, "general.alignment") && t == GGUF_U32) {
		uint32_t a;

		if (!get_u32(c, &a))
			return -EAGAIN;
		if (a == 0 || (a & (a - 1)))
			return bad(reason, rlen, "GGUF general.alignment %u is not a power of two", a);
		*alignment = a;
		return 0;
	}
	c->pos = at;
	return skip_value(c, t, 0, reason, rlen);
}

/* One tensor info; with lengths_only it is only walked over (its type
 * and shape unchecked: a header's length does not depend on them). */
static int gguf_tensor(struct cursor *c, struct modelinfo *mi, bool lengths_only, char *reason,
		       size_t rlen)
{
	const unsigned char *name;
	uint64_t nlen, dims[GGUF_MAX_DIMS], params, offset, blocks, bytes;
	uint32_t ndims, type;
	char label[16];

	if (!get_str(c, &name, &nlen) || !get_u32(c, &ndims))
		return -EAGAIN;
	if (ndims > GGUF_MAX_DIMS)
		return bad(reason, rlen, "GGUF tensor with %u dimensions (at most %d)", ndims,
			   GGUF_MAX_DIMS);
	for (uint32_t i = 0; i < ndims; i++)
		if (!get_u64(c, &dims[i]))
			return -EAGAIN;
	if (!get_u32(c, &type) || !get_u64(c, &offset))
		return -EAGAIN;
	if (lengths_only)
		return 0;
	if (elements(dims, ndims, &params))
		return bad(reason, rlen, "GGUF tensor shape overflows");
	if (type >= N_GGML_TYPES || !ggml_types[type].name)
		return bad(reason, rlen, "GGUF tensor of unknown ggml type %u", type);
	if (params % ggml_types[type].block)
		return bad(reason, rlen, "GGUF tensor of %llu elements is not whole %s blocks of %u",
			   (unsigned long long)params, ggml_types[type].name, ggml_types[type].block);
	blocks = params / ggml_types[type].block;
	if (__builtin_mul_overflow(blocks, (uint64_t)ggml_types[type].bytes, &bytes) ||
	    bytes > mi->file_size)
		return bad(reason, rlen, "GGUF tensor data (%llu elements of %s) is larger than the "
			   "file", (unsigned long long)params, ggml_types[type].name);
	snprintf(label, sizeof(label), "%s", ggml_types[type].name);
	return add_dtype(mi, label, params, bytes);
}

/* A GGUF header into mi; with lengths_only, only mi->header_bytes. */
static int parse_gguf(const unsigned char *buf, size_t len, struct modelinfo *mi,
		      bool lengths_only, uint64_t *need, char *reason, size_t rlen)
{
	struct cursor c = { .buf = buf, .len = len };
	uint64_t ntensors, nkv, alignment = 32;
	const unsigned char *magic;
	uint32_t version;
	int rc = 0;

	if (!take(&c, 4, &magic) || !get_u32(&c, &version) || !get_u64(&c, &ntensors) ||
	    !get_u64(&c, &nkv)) {
		rc = -EAGAIN;
		goto out;
	}
	if (version < 2 || version > 3)
		return bad(reason, rlen, "GGUF version %u is not supported (2 and 3 are)", version);
	if (ntensors > GGUF_MAX_TENSORS || nkv > GGUF_MAX_KV)
		return bad(reason, rlen, "GGUF counts are not plausible (%llu tensors, %llu keys)",
			   (unsigned long long)ntensors, (unsigned long long)nkv);
	mi->gguf_version = version;
	mi->metadata_keys = nkv;
	for (uint64_t i = 0; rc == 0 && i < nkv; i++)
		rc = gguf_kv(&c, mi, &alignment, reason, rlen);
	for (uint64_t i = 0; rc == 0 && i < ntensors; i++)
		rc = gguf_tensor(&c, mi, lengths_only, reason, rlen);
	if (rc == 0) {
		/* The data starts at the next multiple of the alignment. */
		uint64_t start = (c.pos + alignment - 1) / alignment * alignment;

		mi->header_bytes = start;
		if (!lengths_only && start + mi->weight_bytes > mi->file_size)
			return bad(reason, rlen, "GGUF tensors need %llu bytes of data, the file has %llu",
				   (unsigned long long)mi->weight_bytes,
				   (unsigned long long)(mi->file_size > start ? mi->file_size - start : 0));
	}
out:
	if (rc == -EAGAIN) {
		/* Too short: the header goes on past what we have. */
		if (len >= mi->file_size || len >= MODELINFO_MAX_HEADER)
			return bad(reason, rlen, "GGUF header runs past the end of the %s",
				   len >= mi->file_size ? "file" : "first 100 MiB");
		*need = len < 65536 ? 65536 : (uint64_t)len * 2;
	}
	return rc;
}

/* ---- the interface ------------------------------------------------------- */

enum modelinfo_format modelinfo_detect(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	if (len >= 4 && memcmp(p, "GGUF", 4) == 0)
		return MODELINFO_GGUF;
	if (len >= 9 && p[8] == '{' && le64(p) >= 2 && le64(p) <= MODELINFO_MAX_HEADER)
		return MODELINFO_SAFETENSORS;
	return MODELINFO_UNKNOWN;
}

int modelinfo_parse(const void *buf, size_t len, uint64_t file_size, struct modelinfo *out,
		    uint64_t *need, char *reason, size_t reason_len)
{
	int rc;

	memset(out, 0, sizeof(*out));
	reason[0] = '\0';
	*need = 0;
	out->file_size = file_size;
	if (len > file_size)
		len = (size_t)file_size;
	if (len < 9 && file_size >= 9) {
		*need = file_size < 4096 ? file_size : 4096;
		return -EAGAIN;
	}
	out->format = modelinfo_detect(buf, len);
	if (out->format == MODELINFO_GGUF)
		rc = parse_gguf(buf, len, out, false, need, reason, reason_len);
	else if (out->format == MODELINFO_SAFETENSORS)
		rc = parse_safetensors(buf, len, out, NULL, NULL, need, reason, reason_len);
	else
		rc = bad(reason, reason_len, "neither a safetensors nor a GGUF file");
	if (rc == -EAGAIN && *need > file_size)
		*need = file_size;
	if (rc) {
		modelinfo_clear(out);
		return rc;
	}
	if (out->n_dtypes > 1)
		qsort(out->dtypes, out->n_dtypes, sizeof(*out->dtypes), by_params_desc);
	return 0;
}

int modelinfo_header_len(enum modelinfo_format fmt, const void *buf, size_t len,
			 uint64_t file_size, uint64_t *header_len, uint64_t *need)
{
	struct modelinfo mi = { .file_size = file_size };
	char reason[256];		/* the caller asked for none */
	uint64_t n;
	int rc;

	*need = 0;
	if (len > file_size)
		len = (size_t)file_size;
	if (fmt == MODELINFO_UNKNOWN) {
		if (len < 9 && file_size >= 9) {
			*need = 9;
			return -EAGAIN;
		}
		fmt = modelinfo_detect(buf, len);
	}
	if (fmt == MODELINFO_SAFETENSORS) {
		rc = st_header_len(buf, len, file_size, &n, need, reason, sizeof(reason));
		if (rc == 0)
			*header_len = 8 + n;
	} else if (fmt == MODELINFO_GGUF) {
		rc = parse_gguf(buf, len, &mi, true, need, reason, sizeof(reason));
		if (rc == 0)
			*header_len = mi.header_bytes;
		modelinfo_clear(&mi);
	} else {
		rc = -EINVAL;
	}
	if (rc == -EAGAIN && *need > file_size)
		*need = file_size;
	return rc;
}

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int modelinfo_tensor_starts(const void *buf, size_t len, uint64_t file_size, uint64_t **starts,
			    size_t *n, uint64_t *need)
{
	struct modelinfo mi = { .file_size = file_size };
	char reason[256];		/* the caller asked for none */
	int rc;

	*starts = NULL;
	*n = 0;
	*need = 0;
	if (len > file_size)
		len = (size_t)file_size;
	/* Every tensor is checked (dtype, shape, offsets inside the data), so
	 * the offsets can be trusted. */
	rc = parse_safetensors(buf, len, &mi, starts, n, need, reason, sizeof(reason));
	modelinfo_clear(&mi);
	if (rc == 0 && *n > 1)
		qsort(*starts, *n, sizeof(**starts), by_u64);
	if (rc == 0 && *n == 0) {
		free(*starts);
		*starts = NULL;
	}
	return rc;
}

void modelinfo_clear(struct modelinfo *mi)
{
	free(mi->dtypes);
	memset(mi, 0, sizeof(*mi));
}

uint64_t modelinfo_vram_estimate(const struct modelinfo *mi)
{
	return (uint64_t)((double)mi->weight_bytes * MODELINFO_OVERHEAD);
}

int modelinfo_gpu_fit(uint64_t bytes)
{
	static const int sizes[] = { 8, 12, 16, 24, 40, 48, 80 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (bytes <= (uint64_t)sizes[i] << 30)
			return sizes[i];
	return 0;
}
