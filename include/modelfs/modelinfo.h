/*
 * modelinfo.h: what a model file's header says, for `modelfs info`:
 * tensors, dtypes, parameters, and the memory it takes to load; and how
 * long the header is, for the engine (header prefetch, loader
 * detection): one parser below both (src/formats/). Knows
 * .safetensors (u64 LE header length, then JSON) and GGUF v2/v3 (binary
 * key/values, then tensor infos, ggml types incl. block-quantized ones).
 *
 * (1) The parser reads only the bytes it is given and checks every
 *     length and count against them before use: any input, however
 *     malformed, gives 0, -EAGAIN or -EINVAL, never a crash.
 * (2) Only the header is needed: a caller reads a prefix of the file and
 *     calls again with more when told (-EAGAIN and *need).
 * Ownership: modelinfo_parse() fills a struct the caller clears with
 * modelinfo_clear().
 * Threads: no shared state.
 */
#ifndef MODELFS_MODELINFO_H
#define MODELFS_MODELINFO_H

#include <stddef.h>
#include <stdint.h>

/* Headers larger than this are refused as malformed. */
#define MODELINFO_MAX_HEADER (100u << 20)
/* Loading takes more than the weights: the CUDA context, activations and
 * the framework's buffers. A rule of thumb, stated wherever it is used. */
#define MODELINFO_OVERHEAD 1.2

enum modelinfo_format { MODELINFO_UNKNOWN, MODELINFO_SAFETENSORS, MODELINFO_GGUF };

struct modelinfo_dtype {
	char name[16];		/* "F16", "BF16", "Q4_K", ... */
	uint64_t tensors;
	uint64_t params;	/* elements */
	uint64_t bytes;		/* of tensor data */
};

struct modelinfo {
	enum modelinfo_format format;
	uint64_t file_size;
	uint64_t header_bytes;		/* bytes before the tensor data */
	uint64_t tensors;
	uint64_t params;
	uint64_t weight_bytes;		/* all tensor data */
	struct modelinfo_dtype *dtypes;	/* most parameters first */
	size_t n_dtypes;
	uint64_t metadata_keys;		/* __metadata__ entries, or GGUF key/values */
	uint32_t gguf_version;		/* 0 for safetensors */
	char arch[64];			/* GGUF general.architecture, or "" */
	char name[128];			/* GGUF general.name, or "" */
};

/* The format of a file from its first bytes (8 are enough). */
enum modelinfo_format modelinfo_detect(const void *buf, size_t len);

/* Parse the header at the start of buf (the file's first len bytes;
 * file_size is the whole file's). 0 with *out filled; -EAGAIN with *need
 * set when the header goes on past len (read that many bytes and call
 * again); -EINVAL with a one-line reason for anything malformed or
 * unknown. */
int modelinfo_parse(const void *buf, size_t len, uint64_t file_size, struct modelinfo *out,
		    uint64_t *need, char *reason, size_t reason_len);
void modelinfo_clear(struct modelinfo *mi);

/* How many bytes from the start of a file of format fmt come before its
 * tensor data (what header_bytes counts), from its first len bytes,
 * without the rest of modelinfo_parse()'s work: a safetensors file's
 * first 8 bytes say it (no JSON is parsed); a GGUF header is walked over
 * (its tensors' types and shapes unchecked). MODELINFO_UNKNOWN: the
 * format is detected first (9 bytes). 0 with *header_len; -EAGAIN with
 * *need (read that many and call again); -EINVAL when buf starts no such
 * header, or an implausible one. */
int modelinfo_header_len(enum modelinfo_format fmt, const void *buf, size_t len,
			 uint64_t file_size, uint64_t *header_len, uint64_t *need);

/* Where each tensor of a safetensors file starts, as file offsets in
 * ascending order, from its first len bytes (the whole header): 0 with
 * *starts (the caller frees it; NULL when there are none) and *n;
 * -EAGAIN with *need; -EINVAL when buf starts no safetensors header, or
 * a malformed one. For the engine's loader detection: a loader reads
 * tensors, so its reads start where they do. */
int modelinfo_tensor_starts(const void *buf, size_t len, uint64_t file_size, uint64_t **starts,
			    size_t *n, uint64_t *need);

/* Bytes of GPU memory to load the weights: weight_bytes x MODELINFO_OVERHEAD. */
uint64_t modelinfo_vram_estimate(const struct modelinfo *mi);
/* The smallest common GPU memory size in GB (8, 12, 16, 24, 40, 48, 80;
 * GB of 2^30 bytes, as cards are sold) that holds bytes; 0 when none does. */
int modelinfo_gpu_fit(uint64_t bytes);

#endif
