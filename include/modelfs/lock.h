/*
 * lock.h: a lock file, the resolutions of a config written down (DESIGN
 * §6 "Reproducibility"): for every entry the source ids it was resolved
 * from and what they resolved to (a commit, a version id), and for every
 * file of the entry its path in the mount, size and hash. `modelfs lock`
 * writes one; a mount with one fills its catalog from it instead of
 * asking the sources.
 *
 * The format is TOML (toml.h), one [[entry]] table per entry and one
 * [[entry.files]] table per file, one key per line:
 *
 *   lock_version = 1
 *   [[entry]]
 *   id = "checkpoints/base"        the config's entry id
 *   source = "huggingface"         config_source_name()
 *   repo = "org/name"              huggingface: repo, repo_type, revision
 *   repo_type = "model"              (as written), file or include/exclude,
 *   revision = "main"                commit (what revision resolved to),
 *   file = "x.safetensors"           license (when the Hub states one)
 *   commit = "<40 hex>"
 *   model_id = "1"                 civitai: model_id, version_id (resolved)
 *   version_id = "2"
 *   url = "https://h/x?…"          url, s3: the URL as written, ${VAR}s
 *   [[entry.files]]                  unexpanded, without query or userinfo
 *   path = "Stable-diffusion/x.safetensors"
 *   remote_path = "x.safetensors"  its name at the source, when it has one
 *   file_id = "3"                  civitai
 *   size = 123
 *   sha256 = "<64 hex>"            or git_sha1 = "<40 hex>" (a git blob id)
 *   hash_from = "source"           "source": the origin stated it; "lock":
 *                                    lock fetched the bytes and hashed them
 *   etag = "\"abc\""               url, s3: the validator the origin gave
 *   modified = 2026-01-15T10:00:00Z  its mtime in the mount (a Hub file's
 *                                    commit date), so every box shows the same
 *
 * (1) Every file has a size and a hash (sha256 or git_sha1); a lock that
 *     lacks either does not load.
 * (2) lock_write() is deterministic: entries sorted by id, files by
 *     path, no time stamp, so writing the same resolutions twice gives
 *     the same bytes and a change is a small diff.
 * (3) lock_parse() errors name the place: "FILE:LINE:COL: what is wrong",
 *     as config.h's; unknown keys are errors (a typo must not unpin).
 * (4) A lock holds no secret: URLs lose their query and userinfo before
 *     they are written (log_url_public()).
 * Ownership: lock_parse()/lock_load() give a struct lock; lock_free()
 * frees it and everything in it. lock_entry_add()/lock_file_add() grow
 * a lock being built.
 * Threads: no global state; a loaded lock is read-only and may be read
 * from many threads.
 */
#ifndef MODELFS_LOCK_H
#define MODELFS_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "modelfs/config.h"

#define LOCK_VERSION 1

struct lock_file {
	char *path;			/* in the mount */
	char *remote_path;		/* at the source (repo path, download path), or NULL */
	char *file_id;			/* civitai, or NULL */
	int64_t size;
	char *sha256;			/* 64 lowercase hex, or NULL when git_sha1 is set */
	char *git_sha1;			/* 40 lowercase hex, or NULL */
	bool hash_fetched;		/* hash_from = "lock": the source states none */
	char *etag;			/* url, s3: the origin's validator, or NULL */
	int64_t mtime;			/* modified, epoch seconds; -1 when not written */
	int line, col;			/* where [[entry.files]] is written; 0 when built */
};

struct lock_entry {
	char *id;
	enum config_source source;
	char *repo, *repo_type, *revision, *file;	/* huggingface, as written */
	char **include, **exclude;	/* huggingface folders; NULL-terminated or NULL */
	char *commit;			/* huggingface: what revision resolved to */
	char *model_id, *version_id;	/* civitai; version_id as resolved */
	char *url;			/* url, s3: public form of the URL as written */
	char *license;			/* as the source states it, or NULL */
	struct lock_file *files;
	size_t n_files;
	int line, col;
};

struct lock {
	char *path;			/* as given to lock_load(), or NULL */
	struct lock_entry *entries;
	size_t n_entries;
};

struct lock_error {
	char msg[512];			/* "FILE:LINE:COL: what is wrong" */
};

/* Read the lock at path: 0 and *out; -EINVAL with err filled for a bad
 * lock; -errno (err filled) when it cannot be read. */
int lock_load(const char *path, struct lock **out, struct lock_error *err);
/* The same from text in memory; name is used in messages. */
int lock_parse(const char *text, size_t len, const char *name, struct lock **out,
	       struct lock_error *err);
void lock_free(struct lock *l);

/* Write l to out in the format above, sorting l's entries and files
 * first (lock.h (2)). 0, or -EIO when out failed. */
int lock_write(struct lock *l, FILE *out);
/* Write l to path atomically (a temp file in its folder, fsync, rename):
 * 0 or -errno. */
int lock_save(struct lock *l, const char *path);

/* The entry with that id, or NULL. */
struct lock_entry *lock_find(const struct lock *l, const char *id);
/* A new zeroed entry at the end of l's (id copied): 0 and *out, or
 * -ENOMEM. Pointers to l's entries move. */
int lock_entry_add(struct lock *l, const char *id, struct lock_entry **out);
/* A new zeroed file at the end of e's (path copied, size -1). */
int lock_file_add(struct lock_entry *e, const char *path, struct lock_file **out);
/* Take e out of l (freed). */
void lock_entry_remove(struct lock *l, struct lock_entry *e);
/* Free what e holds (not e itself). */
void lock_entry_clear(struct lock_entry *e);

/* Fill e's source ids from the config entry ce (the URL in public form):
 * 0 or -ENOMEM. What a resolution adds (commit, version_id, license,
 * files) is left as it is. */
int lock_entry_set_spec(struct lock_entry *e, const struct config_entry *ce);
/* Does e still describe what ce asks for? true, or false with one line
 * into why naming the field and both values ("repo: the lock has a/b,
 * the config c/d"). A version_id the config leaves out matches any. */
bool lock_entry_matches(const struct lock_entry *e, const struct config_entry *ce, char *why,
			size_t whylen);

#endif
