/*
 * fuzz_civitai.c: what CivitAI's API answers, parsed apart from the
 * requests (src/sources/source_i.h): the version a model body names, and
 * the file of a version body with the fields a source_file takes from it.
 *
 * The first input byte picks the entry (file_id, filename, version_id,
 * sha256 given or not); the rest is the JSON body, read both as a model
 * and as a version. Checks: a chosen version is one of the model's; a
 * chosen file is one of the version's; f's path is the entry's folder and
 * a safe name (one component, 1 to 255 bytes, printable), sha256 is NULL
 * or 64 lowercase hex, and an error comes with a reason.
 */
#include <errno.h>

#include "fuzz.h"
#include "modelfs/text.h"
#include "src/sources/source_i.h"

static bool is_member(const json_t *array, const json_t *v)
{
	size_t i;
	json_t *x;

	json_array_foreach(array, i, x)
		if (x == v)
			return true;
	return false;
}

static void check_file(const struct config_entry *e, const struct source_file *f)
{
	const char *name;
	size_t dlen = strlen(e->dir);

	FUZZ_CHECK(f->path && f->revision && f->remote_path);
	FUZZ_CHECK(strncmp(f->path, e->dir, dlen) == 0 && f->path[dlen] == '/');
	name = f->path + dlen + 1;
	FUZZ_CHECK(name[0] && strlen(name) <= 255 && !strchr(name, '/'));
	FUZZ_CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
	FUZZ_CHECK(fuzz_utf8(name, strlen(name)) && text_printable(name));
	if (f->sha256)
		FUZZ_CHECK(strlen(f->sha256) == 64 && strspn(f->sha256, "0123456789abcdef") == 64);
}

static void version_file(const struct config_entry *e, const json_t *version)
{
	struct source_file f = { .entry = e, .size = -1, .mtime = -1 };
	const json_t *file = NULL;
	int rc = source_civitai_version_file(&f, version, &file);

	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EPROTO || rc == -ENOMEM);
	if (rc == 0) {
		FUZZ_CHECK(file && is_member(json_object_get(version, "files"), file));
		check_file(e, &f);
	} else if (rc != -ENOMEM) {
		FUZZ_CHECK(f.err == rc && f.error && f.error[0]);
	}
	source_file_clear(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_entry e = {
		.category = "lora", .name = "detail", .id = "lora/detail", .dir = "Lora",
		.source = CONFIG_SOURCE_CIVITAI, .model_id = "58390", .size = -1,
	};
	json_t *root, *v;
	unsigned pick;

	if (size == 0)
		return 0;
	pick = data[0];
	e.file_id = pick & 1 ? "1001" : NULL;
	e.filename = pick & 2 ? "detail.safetensors" : NULL;
	e.version_id = pick & 4 ? "128713" : NULL;
	e.sha256 = pick & 8 ? "a0b1c2d3e4f5a0b1c2d3e4f5a0b1c2d3e4f5a0b1c2d3e4f5a0b1c2d3e4f5a0b1" : NULL;
	root = json_loadb((const char *)data + 1, size - 1, 0, NULL);
	if (!root)
		return 0;
	v = source_civitai_model_version(root, pick & 16 ? 128713 : 0);
	if (v) {
		FUZZ_CHECK(is_member(json_object_get(root, "modelVersions"), v));
		version_file(&e, v);
	}
	version_file(&e, root);
	json_decref(root);
	return 0;
}
