/*
 * fuzz_modelinfo.c: modelinfo_parse() on any bytes (modelinfo.h), as the
 * whole file, as the start of a 1 TiB file, and cut in half.
 *
 * Checks (1): 0, -EAGAIN or -EINVAL and nothing else, a reason for every
 * -EINVAL; (2): -EAGAIN only while more of the file is there to read
 * (len < *need <= file_size), so that `modelfs info` cannot loop. On
 * success the per-dtype counts add up to the totals, the dtypes come
 * most parameters first, the header and the weights fit in the file and
 * every string is terminated and free of control bytes.
 */
#include <errno.h>

#include "fuzz.h"
#include "modelfs/modelinfo.h"

static void check_label(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		FUZZ_CHECK(*p >= 0x20);
}

static void check_info(const struct modelinfo *mi, uint64_t file_size)
{
	uint64_t tensors = 0, params = 0, bytes = 0;

	FUZZ_CHECK(mi->format == MODELINFO_SAFETENSORS || mi->format == MODELINFO_GGUF);
	FUZZ_CHECK(mi->file_size == file_size);
	FUZZ_CHECK(mi->header_bytes <= file_size);
	FUZZ_CHECK(mi->weight_bytes <= file_size - mi->header_bytes);
	for (size_t i = 0; i < mi->n_dtypes; i++) {
		const struct modelinfo_dtype *d = &mi->dtypes[i];

		check_label(d->name, sizeof(d->name));
		FUZZ_CHECK(i == 0 || mi->dtypes[i - 1].params >= d->params);
		tensors += d->tensors;
		params += d->params;
		bytes += d->bytes;
	}
	FUZZ_CHECK(tensors == mi->tensors && params == mi->params && bytes == mi->weight_bytes);
	check_label(mi->arch, sizeof(mi->arch));
	check_label(mi->name, sizeof(mi->name));
	/* Used by `info` on what was parsed: must not overflow either. */
	FUZZ_CHECK(modelinfo_vram_estimate(mi) >= mi->weight_bytes);
	(void)modelinfo_gpu_fit(modelinfo_vram_estimate(mi));
}

static void parse(const uint8_t *data, size_t len, uint64_t file_size)
{
	struct modelinfo mi;
	char reason[160];
	uint64_t need = 0;
	int rc;

	memset(reason, 0x55, sizeof(reason));
	rc = modelinfo_parse(data, len, file_size, &mi, &need, reason, sizeof(reason));
	FUZZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EINVAL);
	FUZZ_CHECK(memchr(reason, '\0', sizeof(reason)) != NULL);
	if (rc == 0)
		check_info(&mi, file_size);
	else if (rc == -EAGAIN)
		FUZZ_CHECK(need > len && need <= file_size);
	else
		FUZZ_CHECK(reason[0] != '\0');
	modelinfo_clear(&mi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)modelinfo_detect(data, size);
	parse(data, size, size);		/* the whole file */
	parse(data, size, (uint64_t)1 << 40);	/* the start of a large one */
	parse(data, size / 2, size);		/* a prefix: asks for more */
	return 0;
}
