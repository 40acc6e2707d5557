/*
 * reload.c: a live mount takes its config again (reload.h): compare the
 * entries, drop and add files in the engine, build a new tree and swap
 * it in. SIGHUP is caught into a pipe that a thread of ours reads, so the
 * reload runs as a `modelfs reload` does, never in a signal handler.
 */
#include "modelfs/reload.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelfs/config_fetch.h"
#include "modelfs/log.h"
#include "modelfs/text.h"
#include "modelfs/tree.h"

struct reloader {
	struct reload_opts o;		/* strings copied */
	char *config, *layout, *cache_dir, *lock_path;
	const struct lock *lock_now;	/* the lock in force, or NULL */
	struct lock *lock_owned;	/* lock_now when a reload loaded it */
	struct engine *engine;
	struct fs *fs;
	const struct config *now;	/* the config in force */
	struct config **loaded;		/* every config a reload put in force */
	size_t nloaded;
	pthread_mutex_t lock;		/* one reload at a time; protects now and loaded */
	pthread_t thread;
	bool listening;
	int stop[2];			/* a byte in stop[1] ends the SIGHUP thread */
};

static int hup_pipe[2] = { -1, -1 };

static void on_sighup(int sig)
{
	char c = 1;
	int saved = errno;

	(void)sig;
	if (write(hup_pipe[1], &c, 1) < 0) {
		/* full: a reload is asked for already */
	}
	errno = saved;
}

int reload_catch_sighup(void)
{
	struct sigaction sa = { .sa_handler = on_sighup };

	if (hup_pipe[0] < 0 && pipe2(hup_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -errno;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	return sigaction(SIGHUP, &sa, NULL) == 0 ? 0 : -errno;
}

/* ---- comparing entries ------------------------------------------------------- */

/* Everything a file of the entry depends on: where it is shown, what is
 * asked for and how (credentials, mirrors, headers), and what it is held
 * to. Written the same, it is the same file: kept as it is (reload.h (4)). */
static bool entry_same(const struct config_entry *a, const struct config_entry *b)
{
	if (a->source != b->source || a->size != b->size || a->gated != b->gated ||
	    a->prefetch != b->prefetch || a->pin != b->pin || a->verify != b->verify ||
	    a->n_headers != b->n_headers)
		return false;
	for (size_t i = 0; i < a->n_headers; i++)
		if (!text_same(a->headers[i].name, b->headers[i].name) ||
		    !text_same(a->headers[i].value, b->headers[i].value))
			return false;
	return text_same(a->dir, b->dir) && text_same(a->filename, b->filename) &&
	       text_same(a->url, b->url) && text_same(a->repo, b->repo) && text_same(a->file, b->file) &&
	       text_same(a->revision, b->revision) && text_same(a->repo_type, b->repo_type) &&
	       text_same_list(a->include, b->include) && text_same_list(a->exclude, b->exclude) &&
	       text_same(a->model_id, b->model_id) && text_same(a->version_id, b->version_id) &&
	       text_same(a->file_id, b->file_id) && text_same(a->endpoint, b->endpoint) &&
	       text_same(a->region, b->region) && text_same(a->path, b->path) &&
	       text_same_list(a->mirrors, b->mirrors) &&
	       text_same(a->mirror_token_file, b->mirror_token_file) &&
	       text_same(a->auth_header, b->auth_header) && text_same(a->sha256, b->sha256) &&
	       text_same(a->manifest, b->manifest) && text_same(a->manifest_model, b->manifest_model) &&
	       text_same(a->manifest_version, b->manifest_version);
}

static const struct config_entry *find_entry(const struct config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->n_entries; i++)
		if (strcmp(cfg->entries[i].id, id) == 0)
			return &cfg->entries[i];
	return NULL;
}

/* [modelfs] settings that differ: they are the mount's (its cache, its
 * engine, its FUSE options) and apply at the next mount. */
static json_t *settings_changed(const struct config *a, const struct config *b)
{
	json_t *out = json_array();

#define SETTING(key, differs) \
	do { \
		if (out && (differs)) \
			json_array_append_new(out, json_string(key)); \
	} while (0)
	SETTING("cache_dir", !text_same(a->cache_dir, b->cache_dir));
	SETTING("cache_max_size", a->cache_max_size != b->cache_max_size ||
				  a->cache_max_percent != b->cache_max_percent);
	SETTING("cache_min_free", a->cache_min_free != b->cache_min_free ||
				  a->cache_min_free_percent != b->cache_min_free_percent);
	SETTING("block_size", a->block_size != b->block_size);
	SETTING("connections", a->connections != b->connections);
	SETTING("retry_timeout", a->retry_timeout_sec != b->retry_timeout_sec);
	SETTING("verify", a->verify != b->verify);
	SETTING("cache_ttl", a->cache_ttl_sec != b->cache_ttl_sec);
	SETTING("mountpoint", !text_same(a->mountpoint, b->mountpoint));
	SETTING("local_dir", !text_same(a->local_dir, b->local_dir));
	SETTING("lock", !text_same(a->lock, b->lock));
	SETTING("serve", !text_same(a->serve, b->serve) || !text_same(a->serve_prefix, b->serve_prefix) ||
			 !text_same(a->serve_token_file, b->serve_token_file));
	SETTING("hf_endpoint", !text_same(a->hf_endpoint, b->hf_endpoint));
	SETTING("civitai_endpoint", !text_same(a->civitai_endpoint, b->civitai_endpoint));
	SETTING("cache_proxy", !text_same(a->cache_proxy, b->cache_proxy));
	SETTING("mirror_token_file", !text_same(a->mirror_token_file, b->mirror_token_file));
	SETTING("bandwidth_limit", a->bandwidth_limit != b->bandwidth_limit);
	SETTING("header_prefetch", a->header_prefetch != b->header_prefetch);
#undef SETTING
	return out;
}

/* ---- reloading ------------------------------------------------------------------ */

int reloader_new(const struct reload_opts *o, const struct config *cfg, struct engine *e,
		 struct fs *fs, struct reloader **out)
{
	struct reloader *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->o = *o;
	r->config = o->config ? strdup(o->config) : NULL;
	r->layout = o->layout ? strdup(o->layout) : NULL;
	r->cache_dir = o->cache_dir ? strdup(o->cache_dir) : NULL;
	r->lock_path = o->lock ? strdup(o->lock) : NULL;
	r->lock_now = o->lock_now;
	r->engine = e;
	r->fs = fs;
	r->now = cfg;
	r->stop[0] = r->stop[1] = -1;
	pthread_mutex_init(&r->lock, NULL);
	if ((o->config && !r->config) || (o->layout && !r->layout) ||
	    (o->cache_dir && !r->cache_dir) || (o->lock && !r->lock_path)) {
		reloader_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

/* The config again, from where the mount read it, and its lock if it
 * was mounted with one: 0, or -errno with err. */
static int load_again(struct reloader *r, struct config **cfg, struct lock **lock, char *err,
		      size_t err_len)
{
	struct lock_error lerr;
	struct config_error cerr;
	char *fetched = NULL;
	const char *path = r->config;
	int rc;

	if (!r->config) {
		snprintf(err, err_len, "this mount was made from --model links: there is no config "
			 "to re-read (mount a config file to add models without unmounting)");
		return -ENOTSUP;
	}
	if (config_is_url(r->config)) {
		if (config_fetch(r->config, r->cache_dir, &fetched) != 0) {
			snprintf(err, err_len, "cannot fetch the config from %s (see the log)",
				 r->config);
			return -EIO;
		}
		path = fetched;
	}
	rc = config_load_layout(path, r->layout, cfg, &cerr);
	if (rc)
		snprintf(err, err_len, "%s", cerr.msg);
	free(fetched);
	if (rc == 0 && r->lock_path) {
		rc = lock_load(r->lock_path, lock, &lerr);
		if (rc) {
			snprintf(err, err_len, "%s", lerr.msg);
			config_free(*cfg);
			*cfg = NULL;
		}
	}
	return rc == -ENOMEM ? rc : rc ? -EINVAL : 0;
}

/* Did the lock pin entry id to the same files in both? */
static bool locked_same(const struct lock *a, const struct lock *b, const char *id)
{
	const struct lock_entry *x = a ? lock_find(a, id) : NULL, *y = b ? lock_find(b, id) : NULL;

	if (!x || !y)
		return x == y;
	if (!text_same(x->commit, y->commit) || !text_same(x->version_id, y->version_id) ||
	    !text_same(x->url, y->url) || !text_same(x->revision, y->revision) ||
	    x->n_files != y->n_files)
		return false;
	for (size_t i = 0; i < x->n_files; i++) {
		const struct lock_file *f = &x->files[i], *g = &y->files[i];

		if (f->size != g->size || f->mtime != g->mtime || !text_same(f->path, g->path) ||
		    !text_same(f->remote_path, g->remote_path) || !text_same(f->sha256, g->sha256) ||
		    !text_same(f->git_sha1, g->git_sha1) || !text_same(f->etag, g->etag))
			return false;
	}
	return true;
}

static int keep_config(struct reloader *r, struct config *cfg)
{
	struct config **grown = realloc(r->loaded, (r->nloaded + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	r->loaded = grown;
	r->loaded[r->nloaded++] = cfg;
	return 0;
}

/* A reload under way: the config coming into force, and which of its
 * entries are added (again). */
struct change {
	const struct config *cfg;
	const bool *readd;
};

/* Does f go with this reload? Its entry is gone from the new config, or
 * added again there (its new files are the config's own, just added). */
static bool leaving(void *arg, struct engine_file *f)
{
	const struct change *ch = arg;
	const struct config_entry *ce = engine_file_entry(f), *now;

	if (ce >= ch->cfg->entries && ce < ch->cfg->entries + ch->cfg->n_entries)
		return false;
	now = find_entry(ch->cfg, ce->id);
	return !now || ch->readd[now - ch->cfg->entries];
}

/* Drop the files that go (leaving()), once the tree without them shows. */
static void drop_files(struct reloader *r, struct change *ch)
{
	for (size_t i = 0, n = engine_nfiles(r->engine); i < n; i++) {
		struct engine_file *f = engine_file_at(r->engine, i);

		if (!engine_file_gone(f) && leaving(ch, f))
			engine_file_drop(f);
	}
}

/* Unchanged entries of cfg with a file that cannot be read (its origin
 * was away, a path was taken...) are resolved again, as at a remount:
 * set readd[] for them, and add their ids to retried. */
static void retry_failed(struct reloader *r, const struct config *cfg, bool *readd,
			 json_t *retried)
{
	for (size_t i = 0, n = engine_nfiles(r->engine); i < n; i++) {
		struct engine_file *f = engine_file_at(r->engine, i);
		const struct config_entry *ce;

		if (engine_file_gone(f) || engine_file_open_error(f) == 0)
			continue;
		ce = find_entry(cfg, engine_file_entry(f)->id);
		if (!ce || readd[ce - cfg->entries])
			continue;
		readd[ce - cfg->entries] = true;
		json_array_append_new(retried, json_string(ce->id));
	}
}

/* The entries among the files added at [first, first + n) that cannot be
 * read, each once with its first file's error. */
static json_t *failed_entries(struct engine *e, size_t first, size_t n)
{
	json_t *out = json_array();
	const char *last = NULL;

	for (size_t i = first; out && i < first + n; i++) {
		struct engine_file *f = engine_file_at(e, i);
		const char *id = engine_file_entry(f)->id;
		char *why;

		if (engine_file_open_error(f) == 0 || (last && strcmp(last, id) == 0))
			continue;	/* an entry's files are added together */
		last = id;
		why = engine_file_error(f);
		json_array_append_new(out, json_pack("{s:s, s:s}", "entry", id, "error",
						     why ? why : "cannot be read"));
		free(why);
	}
	return out;
}

/* Put cfg in force: 0 and *result, or -ENOMEM (files added or dropped
 * so far stay so; the tree is the old one). */
static int apply(struct reloader *r, struct config *cfg, const struct lock *lock,
		 json_t **result)
{
	bool *readd = calloc(cfg->n_entries + 1, sizeof(*readd));
	json_t *added = json_array(), *changed = json_array(), *removed = json_array();
	json_t *retried = json_array();
	struct change ch = { .cfg = cfg, .readd = readd };
	struct tree_rebuild re = { .prev = fs_tree_now(r->fs), .leaving = leaving, .arg = &ch };
	struct tree *t = NULL;
	size_t unchanged = 0, first = 0, nadded = 0;
	int rc = -ENOMEM;

	if (!readd || !added || !changed || !removed || !retried)
		goto out;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *ce = &cfg->entries[i];
		const struct config_entry *was = find_entry(r->now, ce->id);

		readd[i] = !was || !entry_same(was, ce) ||
			   (r->lock_path && !locked_same(r->lock_now, lock, ce->id));
		if (!was)
			json_array_append_new(added, json_string(ce->id));
		else if (readd[i])
			json_array_append_new(changed, json_string(ce->id));
	}
	retry_failed(r, cfg, readd, retried);
	for (size_t i = 0; i < cfg->n_entries; i++)
		unchanged += !readd[i];
	for (size_t i = 0; i < r->now->n_entries; i++)
		if (!find_entry(cfg, r->now->entries[i].id))
			json_array_append_new(removed, json_string(r->now->entries[i].id));
	/* Added first; the files that go are left out of the new tree and
	 * dropped once it shows: no name is missing while new ones resolve. */
	rc = engine_add_entries(r->engine, cfg, lock, readd, &first, &nadded);
	if (rc == 0)
		rc = tree_build(r->engine, cfg, r->o.empty_mtime, &re, &t);
	if (rc == 0)
		rc = fs_swap_tree(r->fs, t);
	if (rc) {
		tree_free(t);
		goto out;
	}
	drop_files(r, &ch);
	if (nadded && engine_prefetch_headers(r->engine) != 0)
		log_warn("event=header_prefetch_failed error=\"cannot start its thread\"");
	if (r->o.serve && serve_refresh(r->o.serve) != 0)
		log_warn("event=serve_refresh_failed error=\"out of memory\" action=\"the server "
			 "serves the files of before the reload\"");
	*result = json_pack("{s:s, s:O, s:O, s:O, s:O, s:I, s:I, s:o, s:o}", "config", r->config,
			    "added", added, "removed", removed, "changed", changed,
			    "retried", retried, "unchanged", (json_int_t)unchanged,
			    "files_added", (json_int_t)nadded,
			    "failed", failed_entries(r->engine, first, nadded),
			    "settings_not_applied", settings_changed(r->now, cfg));
	rc = *result ? 0 : -ENOMEM;
out:
	free(readd);
	json_decref(added);
	json_decref(changed);
	json_decref(removed);
	json_decref(retried);
	return rc;
}

/* "a, b" of a JSON array of strings, for the log. */
static void join_ids(json_t *a, char *buf, size_t len)
{
	size_t at = 0, i;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(a, i, v) {
		int n = snprintf(buf + at, len - at, "%s%s", i ? "," : "", json_string_value(v));

		if (n < 0 || (size_t)n >= len - at)
			break;
		at += (size_t)n;
	}
}

int reloader_run(struct reloader *r, json_t **result, char *err, size_t err_len)
{
	struct config *cfg = NULL;
	struct lock *lock = NULL;
	char a[512], d[512], c[512], s[256];
	int rc;

	*result = NULL;
	pthread_mutex_lock(&r->lock);
	rc = load_again(r, &cfg, &lock, err, err_len);
	if (rc == 0)
		rc = keep_config(r, cfg);
	if (rc == 0) {
		rc = apply(r, cfg, lock, result);
		if (rc)
			snprintf(err, err_len, "%s", strerror(-rc));
		/* In force now, even after a failure: the files' entries are cfg's. */
		r->now = cfg;
		if (lock) {
			lock_free(r->lock_owned);
			r->lock_owned = lock;
			r->lock_now = lock;
		}
	} else {
		if (rc == -ENOMEM)
			snprintf(err, err_len, "%s", strerror(-rc));
		config_free(cfg);
		lock_free(lock);
	}
	pthread_mutex_unlock(&r->lock);
	if (rc) {
		log_error("event=reload_failed config=%s error=\"%s\" action=\"the mount is unchanged; "
			  "fix the config and reload again\"", r->config ? r->config : "--model", err);
		return rc;
	}
	join_ids(json_object_get(*result, "added"), a, sizeof(a));
	join_ids(json_object_get(*result, "removed"), d, sizeof(d));
	join_ids(json_object_get(*result, "changed"), c, sizeof(c));
	join_ids(json_object_get(*result, "settings_not_applied"), s, sizeof(s));
	log_info("event=reloaded config=%s added=\"%s\" removed=\"%s\" changed=\"%s\" "
		 "unchanged=%lld%s%s%s",
		 r->config, a, d, c,
		 (long long)json_integer_value(json_object_get(*result, "unchanged")),
		 s[0] ? " settings_not_applied=\"" : "", s, s[0] ? "\" action=\"they apply at the "
		 "next mount\"" : "");
	return 0;
}

/* ---- SIGHUP ---------------------------------------------------------------------- */

static void *listen_main(void *arg)
{
	struct reloader *r = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = hup_pipe[0], .events = POLLIN },
				       { .fd = r->stop[0], .events = POLLIN } };
		char buf[64], err[600];
		json_t *res = NULL;

		if (poll(p, 2, -1) < 0)
			continue;	/* EINTR */
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		while (read(hup_pipe[0], buf, sizeof(buf)) > 0)
			;	/* several SIGHUPs: one reload */
		log_info("event=sighup action=\"reloading the config\"");
		reloader_run(r, &res, err, sizeof(err));	/* logs either way */
		json_decref(res);
	}
	return NULL;
}

int reloader_listen(struct reloader *r)
{
	int rc;

	if (hup_pipe[0] < 0)
		return -EBADF;
	if (pipe2(r->stop, O_CLOEXEC) != 0)
		return -errno;
	rc = pthread_create(&r->thread, NULL, listen_main, r);
	if (rc)
		return -rc;
	r->listening = true;
	return 0;
}

void reloader_stop(struct reloader *r)
{
	if (!r || !r->listening)
		return;
	if (write(r->stop[1], "x", 1) != 1)
		log_warn("event=reload_stop error=\"%s\"", strerror(errno));
	pthread_join(r->thread, NULL);
	r->listening = false;
}

void reloader_free(struct reloader *r)
{
	if (!r)
		return;
	reloader_stop(r);
	for (size_t i = 0; i < r->nloaded; i++)
		config_free(r->loaded[i]);
	free(r->loaded);
	for (int i = 0; i < 2; i++)
		if (r->stop[i] >= 0)
			close(r->stop[i]);
	pthread_mutex_destroy(&r->lock);
	free(r->config);
	free(r->layout);
	free(r->cache_dir);
	free(r->lock_path);
	lock_free(r->lock_owned);
	free(r);
}
