/*
 * ops.c: status, verify and evict over a list of files, the same JSON
 * whether the list comes from the mount daemon's engine or, with nothing
 * mounted, from the cache index (see ops.h for the shapes).
 *
 * A list from the index is a snapshot of what it says; nothing here
 * writes to the cache except verify (a bad block or file is dropped, a
 * good one gets its state) and evict, and neither touches the network.
 */
#include "modelfs/ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/clock.h"
#include "modelfs/select.h"
#include "modelfs/source.h"

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void item_clear(struct ops_item *it)
{
	free(it->path);
	free(it->entry_id);
	free(it->entry_name);
	free(it->key);
	free(it->source);
	free(it->want_sha256);
	free(it->want_git1);
	free(it->stored_sha256);
	free(it->stored_error);
	memset(it, 0, sizeof(*it));
}

void ops_list_free(struct ops_list *l)
{
	for (size_t i = 0; l->items && i < l->n; i++)
		item_clear(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static struct ops_item *list_add(struct ops_list *l)
{
	struct ops_item *grown = realloc(l->items, (l->n + 1) * sizeof(*grown));

	if (!grown)
		return NULL;
	l->items = grown;
	memset(&grown[l->n], 0, sizeof(grown[l->n]));
	grown[l->n].size = -1;
	return &grown[l->n++];
}

/* ---- lists ----------------------------------------------------------------- */

int ops_list_engine(struct engine *e, struct cache *c, struct ops_list *out)
{
	memset(out, 0, sizeof(*out));
	out->engine = e;
	out->cache = c;
	for (size_t i = 0, n = engine_nfiles(e); i < n; i++) {
		struct engine_file *f = engine_file_at(e, i);
		const struct config_entry *ent = engine_file_entry(f);
		struct cache_file *cf;
		struct ops_item *it;

		if (engine_file_gone(f))
			continue;	/* a reload took it out of the mount */
		cf = engine_file_cache(f);
		it = list_add(out);
		if (!it) {
			ops_list_free(out);
			return -ENOMEM;
		}
		it->ef = f;
		it->entry = ent;
		it->path = strdup(engine_file_path(f));
		it->entry_id = strdup(ent->id);
		it->entry_name = strdup(ent->name);
		it->source = engine_file_source(f);
		it->size = (int64_t)engine_file_size(f);
		if (cf) {
			it->file_id = cache_file_id(cf);
			it->block_size = cache_file_block_size(cf);
		}
		if (!it->path || !it->entry_id || !it->entry_name) {
			ops_list_free(out);
			return -ENOMEM;
		}
	}
	return 0;
}

/* Fill it's cache fields from the index row with its key. */
static void from_file_row(struct ops_item *it, const struct store_file *files, int nfiles)
{
	for (int k = 0; it->key && k < nfiles; k++) {
		const struct store_file *sf = &files[k];

		if (strcmp(sf->key, it->key) != 0)
			continue;
		it->file_id = sf->id;
		it->block_size = sf->block_size;
		it->size = (int64_t)sf->size;
		it->stored_state = sf->state;
		it->stored_cached = sf->cached_bytes;
		it->stored_pinned = sf->pinned;
		it->stored_last_used = sf->last_used;
		it->stored_sha256 = dup_or_null(sf->sha256);
		it->stored_error = dup_or_null(sf->error);
		break;
	}
	/* A content key of "sha256:<hex>" is its expected hash. */
	if (!it->want_sha256 && it->key && strncmp(it->key, "sha256:", 7) == 0)
		it->want_sha256 = strdup(it->key + 7);
}

static int item_from_resolution(struct ops_list *l, const struct store_resolution *r,
				const struct config_entry *ent, const struct store_file *files,
				int nfiles)
{
	struct ops_item *it = list_add(l);
	const char *slash;

	if (!it)
		return -ENOMEM;
	it->path = dup_or_null(r->path);
	it->entry_id = dup_or_null(r->entry_id);
	slash = r->entry_id ? strchr(r->entry_id, '/') : NULL;
	it->entry_name = ent ? strdup(ent->name) : dup_or_null(slash ? slash + 1 : r->entry_id);
	it->key = dup_or_null(r->file_key);
	it->entry = ent;
	it->source = ent ? engine_entry_source(ent) : NULL;
	it->want_sha256 = dup_or_null(r->sha256);
	it->want_git1 = dup_or_null(r->git_sha1);
	it->size = r->size;
	from_file_row(it, files, nfiles);
	return 0;
}

/* An entry without a usable stored resolution: listed by what the
 * config says. */
static int item_from_entry(struct ops_list *l, const struct config_entry *ent)
{
	struct ops_item *it = list_add(l);

	if (!it)
		return -ENOMEM;
	if (ent->filename && source_join_path(ent->dir, ent->filename, &it->path) != 0)
		it->path = NULL;
	it->entry_id = strdup(ent->id);
	it->entry_name = strdup(ent->name);
	it->entry = ent;
	it->source = engine_entry_source(ent);
	it->want_sha256 = dup_or_null(ent->sha256);
	it->size = ent->size;
	return 0;
}

int ops_list_store(struct cache *c, const struct config *cfg, struct ops_list *out)
{
	struct store_resolution *res = NULL;
	struct store_file *files = NULL;
	int nres = 0, nfiles = 0, rc;

	memset(out, 0, sizeof(*out));
	out->cache = c;
	rc = cache_resolutions_all(c, &res, &nres);
	if (rc == 0)
		rc = cache_files_list(c, &files, &nfiles);
	for (size_t e = 0; rc == 0 && cfg && e < cfg->n_entries; e++) {
		const struct config_entry *ent = &cfg->entries[e];
		char spec[65];
		int found = 0;

		/* Only a resolution of the entry as it is configured now. */
		source_spec_hash(ent, spec);
		for (int i = 0; rc == 0 && i < nres; i++)
			if (strcmp(res[i].entry_id, ent->id) == 0 && strcmp(res[i].spec_hash, spec) == 0) {
				rc = item_from_resolution(out, &res[i], ent, files, nfiles);
				found++;
			}
		if (rc == 0 && !found)
			rc = item_from_entry(out, ent);
	}
	for (int i = 0; rc == 0 && !cfg && i < nres; i++)
		rc = item_from_resolution(out, &res[i], NULL, files, nfiles);
	for (int k = 0; rc == 0 && !cfg && k < nfiles; k++) {
		struct ops_item *it;
		bool named = false;

		for (int i = 0; !named && i < nres; i++)
			named = strcmp(res[i].file_key, files[k].key) == 0;
		if (named)
			continue;
		it = list_add(out);
		if (!it) {
			rc = -ENOMEM;
			break;
		}
		it->key = strdup(files[k].key);
		from_file_row(it, files, nfiles);
	}
	store_resolutions_free(res, nres);
	store_files_free(files, nfiles);
	if (rc)
		ops_list_free(out);
	return rc;
}

int ops_select(const struct ops_list *l, char *const *args, size_t nargs, const char *mountpoint,
	       bool **chosen, char *err, size_t errlen)
{
	struct select_item *items = calloc(l->n ? l->n : 1, sizeof(*items));
	const char *unmatched = NULL;
	int rc;

	*chosen = calloc(l->n ? l->n : 1, sizeof(**chosen));
	if (!items || !*chosen) {
		free(items);
		free(*chosen);
		*chosen = NULL;
		return -ENOMEM;
	}
	for (size_t i = 0; i < l->n; i++)
		items[i] = (struct select_item){ l->items[i].path, l->items[i].entry_id,
						 l->items[i].entry_name };
	rc = select_match(items, l->n, args, nargs, mountpoint, *chosen, &unmatched);
	if (rc == -ENOENT)
		snprintf(err, errlen, "no file, folder or config entry matches \"%s\"%s%s", unmatched,
			 mountpoint ? " in the mount " : "", mountpoint ? mountpoint : "");
	free(items);
	if (rc) {
		free(*chosen);
		*chosen = NULL;
	}
	return rc;
}

/* ---- what an item is now ----------------------------------------------------- */

static const char *state_from(enum store_file_state st, uint64_t cached)
{
	if (st == STORE_CORRUPT)
		return "corrupt";
	if (st == STORE_COMPLETE || st == STORE_VERIFIED)
		return store_state_name(st);
	return cached ? "partial" : "remote";
}

/* The item's cache file: the engine's, or opened by its key in the index
 * (NULL when nothing of it was ever cached). */
static struct cache_file *item_cache(const struct ops_list *l, const struct ops_item *it)
{
	struct cache_file *cf = NULL;

	if (it->ef)
		return engine_file_cache(it->ef);
	if (!it->key || !it->file_id || it->size < 0)
		return NULL;
	if (cache_file_open(l->cache, it->key, (uint64_t)it->size, it->block_size, &cf) != 0)
		return NULL;
	if (it->path)
		cache_file_add_name(cf, it->path);	/* for its log lines; best effort */
	return cf;
}

static const char *item_state(const struct ops_item *it, struct cache_file *cf)
{
	if (it->ef)
		return engine_file_state(it->ef);
	if (cf)
		return state_from(cache_file_state(cf, NULL, NULL), cache_file_cached_bytes(cf));
	return state_from(it->stored_state, it->stored_cached);
}

static json_t *size_json(int64_t v)
{
	return v >= 0 ? json_integer(v) : json_null();
}

/* {"tier", "bucket", "origin"}: bytes the daemon downloaded for the file
 * this run, through the shared tier, from the shared bucket and from the
 * origin; null without a daemon. */
static json_t *downloaded_json(const struct ops_item *it)
{
	uint64_t tier, bucket, origin;

	if (!it->ef)
		return json_null();
	engine_file_bytes_from(it->ef, &tier, &bucket, &origin);
	return json_pack("{s:I, s:I, s:I}", "tier", (json_int_t)tier, "bucket", (json_int_t)bucket,
			 "origin", (json_int_t)origin);
}

/* Steals s (may be NULL). */
static json_t *str_json(char *s)
{
	json_t *j = s ? json_string(s) : json_null();

	free(s);
	return j ? j : json_null();
}

/* Seconds since the epoch, or null for 0 (never). */
static json_t *time_json(int64_t ms)
{
	return ms > 0 ? json_integer((json_int_t)(ms / 1000)) : json_null();
}

static json_t *file_status(const struct ops_item *it)
{
	json_t *o = json_object();
	uint64_t cached;
	int64_t last_used;
	bool pinned;
	char *sha, *error;

	if (it->ef) {
		struct cache_file *cf = engine_file_cache(it->ef);

		cached = engine_file_cached(it->ef);
		pinned = cf && cache_file_pinned(cf);
		last_used = cf ? cache_file_last_used(cf) : 0;
		sha = engine_file_sha256(it->ef);
		error = engine_file_error(it->ef);
	} else {
		cached = it->stored_cached;
		pinned = it->stored_pinned;
		last_used = it->stored_last_used;
		sha = dup_or_null(it->stored_sha256 ? it->stored_sha256 : it->want_sha256);
		error = dup_or_null(it->stored_error);
	}
	json_object_set_new(o, "path", str_json(dup_or_null(it->path)));
	json_object_set_new(o, "entry", str_json(dup_or_null(it->entry_id)));
	json_object_set_new(o, "key", str_json(dup_or_null(it->key)));
	json_object_set_new(o, "size", size_json(it->size));
	json_object_set_new(o, "cached", json_integer((json_int_t)cached));
	json_object_set_new(o, "state", json_string(item_state(it, NULL)));
	json_object_set_new(o, "pinned", json_boolean(pinned));
	json_object_set_new(o, "shadowed", json_boolean(it->ef && engine_file_shadowed(it->ef)));
	json_object_set_new(o, "source", str_json(dup_or_null(it->source)));
	/* What kind of source, for counting by it: "huggingface", "url"... */
	json_object_set_new(o, "source_kind", it->entry ? json_string(config_source_name(
			    it->entry->source)) : json_null());
	json_object_set_new(o, "sha256", str_json(sha));
	json_object_set_new(o, "error", str_json(error));
	json_object_set_new(o, "last_used", time_json(last_used));
	json_object_set_new(o, "downloaded", downloaded_json(it));
	return o;
}

/* The path (else the key) of the file with this index id, for history. */
static const struct ops_item *item_by_id(const struct ops_list *l, int64_t id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].file_id == id)
			return &l->items[i];
	return NULL;
}

static json_t *history_json(const struct ops_list *l, int max)
{
	struct store_fetch *rows = NULL;
	json_t *a = json_array();
	int n = 0;

	if (cache_fetch_log_recent(l->cache, max, &rows, &n) != 0)
		return a;
	for (int i = 0; i < n; i++) {
		const struct store_fetch *r = &rows[i];
		const struct ops_item *it = item_by_id(l, r->file_id);
		json_t *o = json_object();

		json_object_set_new(o, "time", json_integer(r->ts));
		json_object_set_new(o, "path", str_json(dup_or_null(it ? it->path : NULL)));
		json_object_set_new(o, "key", str_json(dup_or_null(r->file_key)));
		json_object_set_new(o, "offset", json_integer((json_int_t)r->first));
		json_object_set_new(o, "bytes", json_integer((json_int_t)r->len));
		json_object_set_new(o, "ms", json_integer(r->ms));
		json_object_set_new(o, "outcome", json_string(r->rc == 0 ? "ok" : r->rc == -ECANCELED
							     ? "cancelled" : "error"));
		json_object_set_new(o, "error", r->rc == 0 ? json_null()
				    : json_string(r->error ? r->error : strerror(-r->rc)));
		json_array_append_new(a, o);
	}
	store_fetches_free(rows, n);
	return a;
}

/* One object per manifest entry (its artifacts are entries "C/N/PATH"
 * with one category and name): a model is available only when every
 * artifact is verified. */
static json_t *models_json(const struct ops_list *l)
{
	json_t *models = json_array(), *m;
	size_t k;

	for (size_t i = 0; i < l->n; i++) {
		const struct config_entry *ent = l->items[i].entry;
		json_t *found = NULL;
		char *group;

		if (!ent || !ent->manifest || asprintf(&group, "%s/%s", ent->category, ent->name) < 0)
			continue;
		json_array_foreach(models, k, m)
			if (!found && strcmp(json_string_value(json_object_get(m, "entry")), group) == 0)
				found = m;
		if (!found) {
			found = json_pack("{s:s, s:s, s:o, s:o, s:i, s:i}", "entry", group,
					  "manifest", ent->manifest, "model_id",
					  str_json(dup_or_null(ent->manifest_model)), "version",
					  str_json(dup_or_null(ent->manifest_version)), "artifacts", 0,
					  "verified", 0);
			json_array_append_new(models, found);
		}
		free(group);
		if (!found)
			continue;
		json_object_set_new(found, "artifacts", json_integer(
			json_integer_value(json_object_get(found, "artifacts")) + 1));
		if (strcmp(item_state(&l->items[i], NULL), "verified") == 0)
			json_object_set_new(found, "verified", json_integer(
				json_integer_value(json_object_get(found, "verified")) + 1));
	}
	json_array_foreach(models, k, m)
		json_object_set_new(m, "available", json_boolean(
			json_integer_value(json_object_get(m, "verified")) ==
			json_integer_value(json_object_get(m, "artifacts"))));
	return models;
}

json_t *ops_status(const struct ops_list *l, const char *mountpoint, const char *cache_dir,
		   long pid, int history)
{
	json_t *o = json_object(), *files = json_array(), *cache = json_object();
	struct cache_usage u;

	json_object_set_new(o, "mounted", json_boolean(pid != 0));
	json_object_set_new(o, "pid", pid ? json_integer(pid) : json_null());
	json_object_set_new(o, "mountpoint", mountpoint ? json_string(mountpoint) : json_null());
	json_object_set_new(o, "cache_dir", json_string(cache_dir));
	if (cache_usage_get(l->cache, &u) == 0) {
		json_object_set_new(cache, "used", json_integer((json_int_t)u.used));
		json_object_set_new(cache, "limit", u.limit == UINT64_MAX ? json_null()
				    : json_integer((json_int_t)u.limit));
		json_object_set_new(cache, "fs_free", json_integer((json_int_t)u.fs_free));
		json_object_set_new(cache, "min_free", json_integer((json_int_t)u.min_free));
		json_object_set_new(cache, "lost", json_boolean(u.lost));
	}
	json_object_set_new(o, "cache", cache);
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(files, file_status(&l->items[i]));
	json_object_set_new(o, "files", files);
	json_object_set_new(o, "models", models_json(l));
	if (history > 0)
		json_object_set_new(o, "history", history_json(l, history));
	return o;
}

/* ---- verify and evict -------------------------------------------------------- */

static const char *const hash_names[] = {
	[CACHE_HASH_SKIPPED] = "skipped", [CACHE_HASH_COMPLETE] = "complete",
	[CACHE_HASH_VERIFIED] = "verified", [CACHE_HASH_MISMATCH] = "mismatch",
};

static json_t *item_head(const struct ops_item *it)
{
	json_t *o = json_object();

	json_object_set_new(o, "path", str_json(dup_or_null(it->path ? it->path : it->key)));
	json_object_set_new(o, "entry", str_json(dup_or_null(it->entry_id)));
	return o;
}

json_t *ops_verify(const struct ops_list *l, const bool *chosen, const atomic_int *cancel)
{
	json_t *o = json_object(), *files = json_array();
	int bad = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct ops_item *it = &l->items[i];
		struct cache_verify v;
		struct cache_file *cf;
		json_t *r;
		int rc = 0;

		if (!chosen[i])
			continue;
		if (cancel && atomic_load(cancel))
			break;
		memset(&v, 0, sizeof(v));
		cf = item_cache(l, it);
		if (it->ef)
			rc = engine_file_verify(it->ef, &v);
		else if (cf)
			rc = cache_file_verify(cf, it->want_sha256, it->want_git1, cancel, &v);
		r = item_head(it);
		json_object_set_new(r, "checked_blocks", json_integer((json_int_t)v.blocks));
		json_object_set_new(r, "bad_blocks", json_integer((json_int_t)v.bad_blocks));
		json_object_set_new(r, "bad_bytes", json_integer((json_int_t)v.bad_bytes));
		json_object_set_new(r, "hash", json_string(hash_names[v.hash]));
		json_object_set_new(r, "state", json_string(item_state(it, cf)));
		json_object_set_new(r, "error", v.hash == CACHE_HASH_MISMATCH ? json_string(v.reason)
				    : rc ? json_string(strerror(-rc)) : json_null());
		json_array_append_new(files, r);
		bad += v.bad_blocks > 0 || v.hash == CACHE_HASH_MISMATCH || (rc && rc != -ECANCELED);
	}
	json_object_set_new(o, "files", files);
	json_object_set_new(o, "bad", json_integer(bad));
	return o;
}

json_t *ops_evict(const struct ops_list *l, const bool *chosen, bool force,
		  int64_t unused_before)
{
	json_t *o = json_object(), *files = json_array();
	uint64_t total = 0;
	int refused = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct ops_item *it = &l->items[i];
		struct cache_file *cf;
		const char *result;
		uint64_t before = 0, after = 0;
		int64_t last_used = 0;
		json_t *r;

		if (!chosen[i])
			continue;
		cf = item_cache(l, it);
		if (cf) {
			before = cache_file_cached_bytes(cf);
			last_used = cache_file_last_used(cf);
		}
		if (!cf || before == 0) {
			result = "empty";
		} else if (unused_before > 0 && last_used >= unused_before) {
			result = "recent";
		} else if (cache_file_pinned(cf) && !force) {
			result = "pinned";
			refused += unused_before <= 0;
		} else {
			if (force)
				cache_file_pin(cf, CACHE_PIN_CONFIG | CACHE_PIN_USER, false);
			/* Blocks being read or written stay: a reader never sees a hole. */
			cache_file_drop(cf);
			result = "evicted";
		}
		if (cf)
			after = cache_file_cached_bytes(cf);
		r = item_head(it);
		json_object_set_new(r, "freed", json_integer((json_int_t)(before - after)));
		json_object_set_new(r, "kept", json_integer((json_int_t)after));
		json_object_set_new(r, "result", json_string(result));
		json_object_set_new(r, "last_used", time_json(last_used));
		json_array_append_new(files, r);
		total += before - after;
	}
	json_object_set_new(o, "files", files);
	json_object_set_new(o, "freed", json_integer((json_int_t)total));
	json_object_set_new(o, "refused", json_integer(refused));
	if (unused_before > 0)
		json_object_set_new(o, "unused_before", time_json(unused_before));
	return o;
}

int64_t ops_unused_before(int secs)
{
	int64_t t = clock_wall_ms() - (int64_t)secs * 1000;

	return t > 0 ? t : 1;
}

json_t *ops_retain(struct cache *c, int64_t unused_before, int *err)
{
	struct ops_list l;
	json_t *res = NULL;
	bool *all = NULL;

	*err = ops_list_store(c, NULL, &l);
	if (*err)
		return NULL;
	all = malloc((l.n ? l.n : 1) * sizeof(*all));
	if (!all) {
		*err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++)
		all[i] = true;
	res = ops_evict(&l, all, false, unused_before);
	if (!res)
		*err = -ENOMEM;
out:
	free(all);
	ops_list_free(&l);
	return res;
}

json_t *ops_trim(struct cache *c)
{
	struct cache_usage before, after;
	json_t *o = json_object();
	int rc;

	memset(&before, 0, sizeof(before));
	memset(&after, 0, sizeof(after));
	cache_usage_get(c, &before);
	rc = cache_trim(c);
	cache_usage_get(c, &after);
	json_object_set_new(o, "trimmed", json_true());
	json_object_set_new(o, "freed", json_integer((json_int_t)(before.used > after.used
								   ? before.used - after.used : 0)));
	json_object_set_new(o, "used", json_integer((json_int_t)after.used));
	json_object_set_new(o, "limit", after.limit == UINT64_MAX ? json_null()
			    : json_integer((json_int_t)after.limit));
	json_object_set_new(o, "error", rc ? json_string(rc == -ENOSPC
			    ? "still over the limits: the rest is pinned or in use" : strerror(-rc))
			    : json_null());
	return o;
}
