/*
 * cli_lock.c: modelfs lock, and the lock a mount is given (lock.h).
 *
 *   lock CONFIG [--output FILE]       resolve every entry, write the lock
 *   lock --check CONFIG [--lock FILE] what changed at the sources since
 *   lock --update CONFIG [ENTRY ...]  re-pin the named entries (all when
 *                                     none), keep the others as locked
 *
 * Entries are resolved by the mount's own resolver (engine_resolve()),
 * without the cache, so --check runs beside a live mount. A file whose
 * source states no hash (a plain URL, S3, Drive) is fetched and hashed
 * through the cache by an engine opened on the lock being written (no
 * second resolution; its bytes are held to the size and validator just
 * seen), with prefetch's progress display: every locked file has a hash.
 * A lock is written whole or not at all: one entry that fails to resolve
 * or to hash fails the command and leaves the old lock as it was.
 */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/config_fetch.h"
#include "modelfs/engine.h"
#include "modelfs/http.h"
#include "modelfs/lock.h"
#include "modelfs/log.h"
#include "modelfs/prefetch_run.h"
#include "modelfs/source.h"
#include "progress.h"

#define DEFAULT_LOCK "models.lock"

/* Where the lock is: --lock or --output, else the config's `lock` (a
 * relative one from the config file's folder), else models.lock here. */
static void lock_path(const struct cli_opts *o, const struct config *cfg, const char *config,
		      char *buf, size_t len)
{
	char dir[PATH_MAX];

	if (o->lock || o->output) {
		snprintf(buf, len, "%s", o->lock ? o->lock : o->output);
	} else if (cfg->lock && cfg->lock[0] != '/' && config && !config_is_url(config)) {
		snprintf(dir, sizeof(dir), "%s", config);
		snprintf(buf, len, "%s/%s", dirname(dir), cfg->lock);
	} else {
		snprintf(buf, len, "%s", cfg->lock ? cfg->lock : DEFAULT_LOCK);
	}
}

int cli_mount_lock(const struct cli_opts *o, const struct config *cfg, const char *config,
		   struct lock **out)
{
	struct lock_error err;
	char path[PATH_MAX];
	int rc;

	*out = NULL;
	if (!o->lock && !cfg->lock)
		return 0;
	lock_path(o, cfg, config, path, sizeof(path));
	rc = lock_load(path, out, &err);
	if (rc) {
		fprintf(stderr, "modelfs: %s\n", err.msg);
		return rc == -EINVAL || rc == -ENOENT ? EXIT_USAGE : EXIT_MODEL;
	}
	log_info("event=lock_loaded lock=%s entries=%zu", path, (*out)->n_entries);
	return 0;
}

/* ---- resolving into a lock ----------------------------------------------------- */

/* civitai's file id, from its download path "...?fileId=N". */
static char *civitai_file_id(const char *remote_path)
{
	const char *p = remote_path ? strstr(remote_path, "fileId=") : NULL;

	return p ? strndup(p + 7, strspn(p + 7, "0123456789")) : NULL;
}

/* The licence the source states for le at its commit, when sources is
 * given; a source that cannot tell leaves it out, with a warning. */
static int add_license(const char *cmd, struct source_ctx *sources, struct http_client *http,
		       const struct config_entry *ce, struct lock_entry *le)
{
	int rc;

	if (!sources || ce->source != CONFIG_SOURCE_HUGGINGFACE)
		return 0;
	rc = source_license(sources, http, ce, le->commit, &le->license);
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		fprintf(stderr, "modelfs %s: %s: the licence could not be read (%s); written "
			"without one\n", cmd, ce->id, strerror(-rc));
	return 0;
}

/* e's row of a fresh resolution as a lock entry (files without a hash
 * get one later), with its licence when sources is given: 0, or -ENOMEM. */
static int lock_entry_of(const char *cmd, struct lock *l, const struct engine_resolved *r,
			 struct source_ctx *sources, struct http_client *http)
{
	const struct config_entry *ce = r->entry;
	struct lock_entry *le;
	int rc = lock_entry_add(l, ce->id, &le);

	if (rc == 0)
		rc = lock_entry_set_spec(le, ce);
	if (rc == 0 && r->n && r->files[0].revision) {
		char **pin = ce->source == CONFIG_SOURCE_HUGGINGFACE ? &le->commit
			   : ce->source == CONFIG_SOURCE_CIVITAI ? &le->version_id : NULL;

		if (pin) {
			free(*pin);
			*pin = strdup(r->files[0].revision);
			rc = *pin ? 0 : -ENOMEM;
		}
	}
	if (rc == 0)
		rc = add_license(cmd, sources, http, ce, le);
	for (size_t i = 0; rc == 0 && i < r->n; i++) {
		const struct source_file *f = &r->files[i];
		bool origin_validator = ce->source == CONFIG_SOURCE_URL ||
					ce->source == CONFIG_SOURCE_S3;
		struct lock_file *lf;

		rc = lock_file_add(le, f->path, &lf);
		if (rc)
			break;
		lf->size = f->size;
		lf->mtime = f->mtime;
		if (lf->mtime < 0 && sources && source_commit_date(sources, http, f, &lf->mtime) != 0)
			lf->mtime = -1;
		if ((f->remote_path && !(lf->remote_path = strdup(f->remote_path))) ||
		    (f->sha256 && !(lf->sha256 = strdup(f->sha256))) ||
		    (!f->sha256 && f->git_sha1 && !(lf->git_sha1 = strdup(f->git_sha1))) ||
		    (origin_validator && f->validator && !(lf->etag = strdup(f->validator))))
			rc = -ENOMEM;
		if (ce->source == CONFIG_SOURCE_CIVITAI)
			lf->file_id = civitai_file_id(f->remote_path);
		/* A URL's own path is its url: no remote_path beside it. */
		if (origin_validator) {
			free(lf->remote_path);
			lf->remote_path = NULL;
		}
	}
	return rc;
}

/* Resolve the entries chosen (all when chosen is NULL) into l, claiming
 * paths as a mount does, with licences when asked (one more request per
 * Hugging Face entry). Failed files are printed; *nfailed counts them. */
int cli_lock_resolve(const char *cmd, const struct config *cfg, const bool *chosen,
		     bool licenses, struct lock *l, size_t *nfailed)
{
	struct engine_resolved *r = NULL;
	struct source_paths *paths = NULL;
	struct source_ctx *sources = NULL;
	struct http_client *http = NULL;
	int rc = engine_resolve(cfg, chosen, &r);

	*nfailed = 0;
	if (rc == 0)
		rc = source_paths_new(&paths);
	if (rc == 0 && licenses && (http_client_new(&http) != 0 || source_ctx_new(cfg, &sources) != 0))
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < cfg->n_entries; i++) {
		/* a local file has no origin to pin */
		if ((chosen && !chosen[i]) || cfg->entries[i].source == CONFIG_SOURCE_LOCAL)
			continue;
		for (size_t k = 0; k < r[i].n; k++)
			source_paths_claim(paths, &r[i].files[k]);
		for (size_t k = 0; k < r[i].n; k++) {
			const struct source_file *f = &r[i].files[k];
			char why[600];

			if (!f->err)
				continue;
			log_redact(f->error ? f->error : strerror(-f->err), why, sizeof(why));
			fprintf(stderr, "modelfs %s: %s (%s): %s\n", cmd, f->path, r[i].entry->id, why);
			(*nfailed)++;
		}
		if (r[i].n == 0 && r[i].rc) {
			fprintf(stderr, "modelfs %s: %s: %s\n", cmd, r[i].entry->id, strerror(-r[i].rc));
			(*nfailed)++;
		}
		if (*nfailed == 0)
			rc = lock_entry_of(cmd, l, &r[i], sources, http);
	}
	source_ctx_free(sources);
	http_client_free(http);
	source_paths_free(paths);
	engine_resolved_free(r, cfg->n_entries);
	return rc;
}

/* ---- hashing what the sources give no hash for ---------------------------------- */

struct hash_view {
	struct progress *progress;
};

static int hash_emit(void *arg, json_t *ev)
{
	struct hash_view *v = arg;

	progress_event(v->progress, ev);
	return 0;
}

static int hash_tick(void *arg)
{
	struct hash_view *v = arg;

	progress_tick(v->progress);
	return 0;
}

/* A file to fetch and hash: no hash, or only a git blob id when a
 * sha256 is wanted (a manifest's). */
static bool needs_hash(const struct lock_file *f, bool want_sha256)
{
	return !f->sha256 && (!f->git_sha1 || want_sha256);
}

static struct lock_file *unhashed(struct lock *l, const char *path, bool want_sha256)
{
	for (size_t i = 0; i < l->n_entries; i++)
		for (size_t k = 0; k < l->entries[i].n_files; k++) {
			struct lock_file *f = &l->entries[i].files[k];

			if (needs_hash(f, want_sha256) && strcmp(f->path, path) == 0)
				return f;
		}
	return NULL;
}

/* cfg with only the entries l has (a manifest hashes one entry; the
 * others would each be refused as "not in the lock"): a shallow copy
 * whose entries array is the caller's to free. 0 or -ENOMEM. */
static int config_of_lock(const struct config *cfg, const struct lock *l, struct config *out)
{
	*out = *cfg;
	out->views = NULL;
	out->n_views = 0;
	out->n_entries = 0;
	out->entries = calloc(cfg->n_entries ? cfg->n_entries : 1, sizeof(*out->entries));
	if (!out->entries)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_entries; i++)
		if (lock_find(l, cfg->entries[i].id))
			out->entries[out->n_entries++] = cfg->entries[i];
	return 0;
}

int cli_lock_hash(const char *cmd, const struct cli_opts *o, const struct config *cfg,
		  struct lock *l, bool want_sha256)
{
	struct config locked = { 0 };
	struct cache_limits lim;
	struct cache *cache = NULL;
	struct engine *engine = NULL;
	struct engine_file **files = NULL;
	struct hash_view v = { 0 };
	char buf[PATH_MAX];
	const char *dir = cli_cache_dir(o, cfg, buf, sizeof(buf));
	size_t n = 0;
	int rc, code = 0;
	bool tty = isatty(STDERR_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb") != 0;
	struct prefetch_run_opts po = {
		.connections = cfg->connections, .cancel = &cli_interrupted, .emit = hash_emit,
		.tick = hash_tick, .arg = &v,
	};

	for (size_t i = 0; i < l->n_entries; i++)
		for (size_t k = 0; k < l->entries[i].n_files; k++)
			n += needs_hash(&l->entries[i].files[k], want_sha256);
	if (n == 0)
		return 0;
	cli_limits(cfg, &lim);
	rc = cache_open(dir, &lim, &cache);
	if (rc) {
		fprintf(stderr, "modelfs %s: %zu file%s need%s hashing through the cache %s: %s%s\n",
			cmd, n, n == 1 ? "" : "s", n == 1 ? "s" : "", dir, strerror(-rc),
			rc == -EBUSY ? " (a mount uses it: give another --cache-dir)" : "");
		return EXIT_MODEL;
	}
	rc = config_of_lock(cfg, l, &locked);
	if (rc == 0)
		rc = engine_open_locked(&locked, l, cache, &engine);
	if (rc == 0) {
		engine_set_prefetch_reserve(engine, 0);	/* no reader to keep workers for */
		rc = engine_start(engine);
	}
	files = calloc(n, sizeof(*files));
	if (rc || !files) {
		fprintf(stderr, "modelfs %s: cannot start the engine: %s\n", cmd,
			strerror(rc ? -rc : ENOMEM));
		code = EXIT_MODEL;
		goto out;
	}
	n = 0;
	for (size_t i = 0; i < engine_nfiles(engine); i++)
		if (unhashed(l, engine_file_path(engine_file_at(engine, i)), want_sha256))
			files[n++] = engine_file_at(engine, i);
	v.progress = progress_new(stderr, tty, 0);
	progress_note(v.progress, "hashing the files whose source states no hash...");
	rc = prefetch_run(engine, files, n, &po);
	if (progress_finish(v.progress, rc == -ECANCELED, stderr) || rc) {
		code = rc == -ECANCELED ? EXIT_INTERRUPTED : EXIT_MODEL;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct lock_file *lf = unhashed(l, engine_file_path(files[i]), want_sha256);
		char *sha = engine_file_sha256(files[i]);

		if (!sha) {
			fprintf(stderr, "modelfs %s: %s: fetched, but no hash was computed\n", cmd,
				engine_file_path(files[i]));
			code = EXIT_MODEL;
			continue;
		}
		lf->sha256 = sha;
		lf->hash_fetched = true;
	}
out:
	engine_close(engine);
	free(locked.entries);	/* after the engine: it points into them */
	cache_close(cache);
	progress_free(v.progress);
	free(files);
	return code;
}

/* ---- --check -------------------------------------------------------------------- */

static const char *hash_of(const struct lock_file *f)
{
	return f->sha256 ? f->sha256 : f->git_sha1;
}

/* Drift of one entry between the lock (was) and now: lines printed,
 * their count returned. */
static size_t entry_drift(const struct lock_entry *was, const struct lock_entry *now)
{
	const char *pw = was->commit ? was->commit : was->version_id;
	const char *pn = now->commit ? now->commit : now->version_id;
	size_t n = 0;

	if (pw && pn && strcmp(pw, pn) != 0) {
		printf("changed  %s: %s %s now resolves to %s, the lock has %s\n", was->id,
		       was->commit ? "revision" : "version", was->commit ? was->revision : "latest",
		       pn, pw);
		n++;
	}
	for (size_t i = 0; i < was->n_files; i++) {
		const struct lock_file *a = &was->files[i], *b = NULL;

		for (size_t k = 0; k < now->n_files && !b; k++)
			if (strcmp(now->files[k].path, a->path) == 0)
				b = &now->files[k];
		if (!b) {
			printf("removed  %s: %s is no longer a file of the entry\n", was->id, a->path);
			n++;
		} else if (a->size != b->size) {
			printf("changed  %s: %s is %lld bytes now, the lock has %lld\n", was->id,
			       a->path, (long long)b->size, (long long)a->size);
			n++;
		} else if (hash_of(b) && strcmp(hash_of(a), hash_of(b)) != 0) {
			printf("changed  %s: %s has %s %s now, the lock has %s\n", was->id, a->path,
			       b->sha256 ? "sha256" : "git blob", hash_of(b), hash_of(a));
			n++;
		} else if (!hash_of(b) && a->etag && (!b->etag || strcmp(a->etag, b->etag) != 0)) {
			/* No hash without fetching: the validator tells a new version. */
			printf("changed  %s: %s has validator %s now, the lock has %s\n", was->id,
			       a->path, b->etag ? b->etag : "none", a->etag);
			n++;
		}
	}
	for (size_t k = 0; k < now->n_files; k++) {
		bool known = false;

		for (size_t i = 0; i < was->n_files && !known; i++)
			known = strcmp(was->files[i].path, now->files[k].path) == 0;
		if (!known) {
			printf("added    %s: %s is a new file of the entry\n", was->id,
			       now->files[k].path);
			n++;
		}
	}
	return n;
}

static void lock_clear(struct lock *l)
{
	for (size_t i = 0; i < l->n_entries; i++)
		lock_entry_clear(&l->entries[i]);
	free(l->entries);
	memset(l, 0, sizeof(*l));
}

/* Print what changed since old was written: 0 when nothing did, else
 * EXIT_MODEL (also when an entry cannot be resolved now). */
static int check_drift(const struct config *cfg, const struct lock *old, const char *path)
{
	struct lock now = { 0 };
	size_t nfailed = 0, drift = 0;
	char why[384];
	int rc = cli_lock_resolve("lock", cfg, NULL, false, &now, &nfailed);

	if (rc || nfailed) {
		if (rc)
			fprintf(stderr, "modelfs lock: %s\n", strerror(-rc));
		rc = EXIT_MODEL;
		goto out;
	}
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *ce = &cfg->entries[i];
		const struct lock_entry *was = lock_find(old, ce->id);

		if (!was) {
			printf("added    %s: not in the lock\n", ce->id);
			drift++;
		} else if (!lock_entry_matches(was, ce, why, sizeof(why))) {
			printf("changed  %s: %s\n", ce->id, why);
			drift++;
		} else {
			drift += entry_drift(was, lock_find(&now, ce->id));
		}
	}
	for (size_t i = 0; i < old->n_entries; i++) {
		bool known = false;

		for (size_t k = 0; k < cfg->n_entries && !known; k++)
			known = strcmp(cfg->entries[k].id, old->entries[i].id) == 0;
		if (!known) {
			printf("removed  %s: in the lock, not in the config\n", old->entries[i].id);
			drift++;
		}
	}
	if (drift == 0)
		printf("%s: no drift; every entry resolves as locked\n", path);
	else
		fprintf(stderr, "modelfs lock: %zu change%s since %s was written; `modelfs lock "
			"--update CONFIG ENTRY` re-pins an entry\n", drift, drift == 1 ? "" : "s",
			path);
	rc = drift ? EXIT_MODEL : 0;
out:
	lock_clear(&now);
	return rc;
}

/* ---- writing and updating ------------------------------------------------------- */

int cli_lock_choose(const char *cmd, const struct config *cfg, char *const *names, int n,
		    bool *chosen)
{
	for (size_t i = 0; i < cfg->n_entries; i++)
		chosen[i] = n == 0;
	for (int a = 0; a < n; a++) {
		bool hit = false;

		for (size_t i = 0; i < cfg->n_entries; i++)
			if (strcmp(cfg->entries[i].id, names[a]) == 0 ||
			    strcmp(cfg->entries[i].name, names[a]) == 0)
				chosen[i] = hit = true;
		if (!hit) {
			fprintf(stderr, "modelfs %s: no entry %s in the config (give an id like "
				"\"checkpoints/name\" or a name)\n", cmd, names[a]);
			return -ENOENT;
		}
	}
	return 0;
}

/* The entries of old that --update keeps: those not chosen that the
 * config still has. Copied into l by moving them out of old. */
static int keep_unchosen(const struct config *cfg, const bool *chosen, struct lock *old,
			 struct lock *l)
{
	for (size_t i = 0; i < cfg->n_entries; i++) {
		struct lock_entry *was = chosen[i] ? NULL : lock_find(old, cfg->entries[i].id);
		struct lock_entry *e;

		if (!was)
			continue;
		if (lock_entry_add(l, was->id, &e) != 0)
			return -ENOMEM;
		free(e->id);
		*e = *was;
		memset(was, 0, sizeof(*was));
		was->id = strdup("");	/* cleared: lock_find() never matches it */
		if (!was->id)
			return -ENOMEM;
	}
	return 0;
}

static int write_lock(const struct cli_opts *o, const struct config *cfg, const char *path,
		      struct lock *old)
{
	bool *chosen = calloc(cfg->n_entries + 1, sizeof(*chosen));
	struct lock l = { 0 };
	size_t nfailed = 0, nfiles = 0;
	int rc, code = EXIT_MODEL;

	if (!chosen)
		return EXIT_MODEL;
	/* Without a lock yet there is nothing to keep: every entry is pinned. */
	rc = cli_lock_choose("lock", cfg, o->update && old ? o->args + 1 : NULL, o->update && old ? o->nargs - 1 : 0,
		    chosen);
	if (rc) {
		code = EXIT_USAGE;
		goto out;
	}
	rc = cli_lock_resolve("lock", cfg, chosen, true, &l, &nfailed);
	if (rc == 0 && old)
		rc = keep_unchosen(cfg, chosen, old, &l);
	if (rc || nfailed) {
		if (rc)
			fprintf(stderr, "modelfs lock: %s\n", strerror(-rc));
		else
			fprintf(stderr, "modelfs lock: %zu file%s failed; %s is left as it was\n",
				nfailed, nfailed == 1 ? "" : "s", path);
		goto out;
	}
	code = cli_lock_hash("lock", o, cfg, &l, false);
	if (code)
		goto out;
	rc = lock_save(&l, path);
	if (rc) {
		fprintf(stderr, "modelfs lock: cannot write %s: %s\n", path, strerror(-rc));
		code = EXIT_MODEL;
		goto out;
	}
	for (size_t i = 0; i < l.n_entries; i++)
		nfiles += l.entries[i].n_files;
	printf("locked %zu entr%s, %zu file%s in %s\n", l.n_entries, l.n_entries == 1 ? "y" : "ies",
	       nfiles, nfiles == 1 ? "" : "s", path);
	code = 0;
out:
	lock_clear(&l);
	free(chosen);
	return code;
}

int cli_lock(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	struct lock *old = NULL;
	struct lock_error err;
	char path[PATH_MAX];
	int rc, code;

	rc = cli_parse(argc, argv, "lock", &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	if (o.nargs < 1 || (o.nargs > 1 && !o.update) || (o.check && o.update) ||
	    (o.check && o.output)) {
		fputs("usage: modelfs lock CONFIG [--output FILE]\n"
		      "       modelfs lock --check CONFIG [--lock FILE]\n"
		      "       modelfs lock --update CONFIG [ENTRY ...] [--lock FILE]\n", stderr);
		return EXIT_USAGE;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	rc = cli_load_config(&o, o.args[0], &cfg);
	if (rc)
		return cli_config_exit(rc);
	lock_path(&o, cfg, o.args[0], path, sizeof(path));
	if (o.check || (o.update && access(path, F_OK) == 0)) {
		rc = lock_load(path, &old, &err);
		if (rc) {
			fprintf(stderr, "modelfs lock: %s\n", err.msg);
			config_free(cfg);
			return rc == -EINVAL || rc == -ENOENT ? EXIT_USAGE : EXIT_MODEL;
		}
	}
	cli_catch_interrupt();
	code = o.check ? check_drift(cfg, old, path) : write_lock(&o, cfg, path, old);
	lock_free(old);
	config_free(cfg);
	return code;
}
