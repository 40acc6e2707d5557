/*
 * manifest.h: a model manifest, a YAML file that names one model's files
 * and their hashes (a deploy service's shape, issue 16):
 *
 *   model_id: "org/pipeline"          optional; names the model
 *   version: "2026-01-15"             optional
 *   profile: "hf-diffusers-standard"  optional
 *   license: "apache-2.0"             optional
 *   source: { provider: huggingface, repo_id: "org/pipeline", revision: "main" }
 *           { provider: civitai, version_id: 123 }     (model_id optional)
 *           { provider: url }         then each artifact has its url
 *   artifacts:
 *     - path: "transformer/diffusion_pytorch_model.safetensors"
 *       sha256: "<64 hex>"
 *       url: "https://..."            provider url only
 *
 * (1) Every artifact has a path inside the model (no leading '/', no "."
 *     or ".." part, no two alike) and a sha256 (64 hex, kept lowercase).
 * (2) Keys not named here are kept out and ignored (entrypoint, ...);
 *     a key named here with a value of the wrong kind is an error.
 * (3) Errors name the place: "FILE:LINE:COL: what is wrong".
 * Parsed with libyaml (YAML 1.1), one document; anchors and aliases are
 * resolved by libyaml.
 * Ownership: manifest_parse()/manifest_load() give a struct manifest;
 * manifest_free() frees it. manifest_write() does not take it.
 * Threads: no global state.
 */
#ifndef MODELFS_MANIFEST_H
#define MODELFS_MANIFEST_H

#include <stddef.h>
#include <stdio.h>

enum manifest_provider {
	MANIFEST_HUGGINGFACE,
	MANIFEST_CIVITAI,
	MANIFEST_URL,
};

struct manifest_artifact {
	char *path;
	char *sha256;
	char *url;			/* provider url: required; else NULL */
	int line, col;			/* where the artifact is written (1-based) */
};

struct manifest {
	char *model_id, *version, *profile, *license;	/* NULL when absent */
	enum manifest_provider provider;
	char *repo_id, *revision;	/* huggingface (revision NULL: "main") */
	char *repo_type;		/* huggingface: "model" (default), "dataset" */
	char *civitai_model_id, *civitai_version_id;	/* civitai, as decimal text */
	struct manifest_artifact *artifacts;
	size_t n_artifacts;
};

struct manifest_error {
	char msg[512];
};

int manifest_parse(const char *text, size_t len, const char *name, struct manifest **out,
		   struct manifest_error *err);
/* 0; -EINVAL (err filled) for a bad manifest; -errno (err filled) when
 * the file cannot be read. */
int manifest_load(const char *path, struct manifest **out, struct manifest_error *err);
void manifest_free(struct manifest *m);
/* Write m as YAML in the shape above (keys in that order, artifacts
 * sorted by path). 0, or -EIO. */
int manifest_write(struct manifest *m, FILE *out);
const char *manifest_provider_name(enum manifest_provider p);

#endif
