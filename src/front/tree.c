/*
 * tree.c: the static directory tree of a mount, with inodes that are a
 * hash of each path so they stay the same across remounts.
 */
#include "modelfs/tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "modelfs/log.h"

struct tree {
	struct tree_node *root;
	struct tree_node **by_ino;	/* sorted by ino */
	size_t n, cap;
	const struct tree_rebuild *re;	/* while building: what it replaces, or NULL */
	const struct tree *prev;	/* re's prev, or NULL */
	uint64_t generation;		/* trees before it (reloads) */
};

static int register_node(struct tree *t, struct tree_node *node)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct tree_node **grown = realloc(t->by_ino, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		t->by_ino = grown;
		t->cap = cap;
	}
	t->by_ino[t->n++] = node;
	return 0;
}

static struct tree_node *new_node(struct tree *t, struct tree_node *parent, const char *name)
{
	struct tree_node *node = calloc(1, sizeof(*node));
	struct tree_node **grown;

	if (!node || !(node->name = strdup(name))) {
		free(node);
		return NULL;
	}
	node->parent = parent;
	if (parent) {
		grown = realloc(parent->children, (parent->nchildren + 1) * sizeof(*grown));
		if (!grown) {
			free(node->name);
			free(node);
			return NULL;
		}
		parent->children = grown;
		parent->children[parent->nchildren++] = node;
	}
	if (register_node(t, node) != 0)
		return NULL;	/* freed with the tree: it is already a child */
	return node;
}

static struct tree_node *find_child(const struct tree_node *dir, const char *name)
{
	for (size_t i = 0; i < dir->nchildren; i++)
		if (strcmp(dir->children[i]->name, name) == 0)
			return dir->children[i];
	return NULL;
}

/* The folder at path (created along the way), or NULL on ENOMEM. */
static struct tree_node *mkdirs(struct tree *t, const char *path, size_t len)
{
	struct tree_node *dir = t->root;
	char *copy = strndup(path, len), *save = NULL;

	if (!copy)
		return NULL;
	for (char *part = strtok_r(copy, "/", &save); part && dir; part = strtok_r(NULL, "/", &save)) {
		struct tree_node *next = find_child(dir, part);

		dir = next ? next : new_node(t, dir, part);
	}
	free(copy);
	return dir;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(struct tree_node *const *)a)->name, (*(struct tree_node *const *)b)->name);
}

static int cmp_ino(const void *a, const void *b)
{
	uint64_t x = (*(struct tree_node *const *)a)->ino, y = (*(struct tree_node *const *)b)->ino;

	return x < y ? -1 : x > y;
}

/* A file's inode when the tree replaces another (tree.h (1)): the same
 * file at the same path keeps the inode it had; any other file gets one
 * no earlier tree gave (the kernel may still hold an old one, with the
 * cached pages of the file it was, for a reader that has it open). */
static uint64_t file_ino(const struct tree *t, const struct tree_node *c, const char *path)
{
	const struct tree_node *was = t->prev ? tree_find((struct tree *)t->prev, path) : NULL;

	if (!t->prev)
		return XXH3_64bits(path, strlen(path));
	if (was && tree_node_is_file(was) && was->file == c->file && was->local == c->local)
		return was->ino;
	return XXH3_64bits_withSeed(path, strlen(path), t->generation);
}

/* Sort children, give inodes and folder mtimes, depth first. */
static int64_t finish(struct tree *t, struct tree_node *node, const char *path,
		      int64_t empty_mtime)
{
	int64_t newest = 0;

	if (node->nchildren > 1)
		qsort(node->children, node->nchildren, sizeof(*node->children), cmp_name);
	for (size_t i = 0; i < node->nchildren; i++) {
		struct tree_node *c = node->children[i];
		size_t len = strlen(path) + strlen(c->name) + 2;
		char *sub = malloc(len);
		int64_t m;

		if (!sub)
			return newest;
		snprintf(sub, len, "%s/%s", path, c->name);
		c->ino = tree_node_is_file(c) ? file_ino(t, c, sub) : XXH3_64bits(sub, strlen(sub));
		m = tree_node_is_file(c) ? c->mtime : finish(t, c, sub, empty_mtime);
		if (m > newest)
			newest = m;
		free(sub);
	}
	if (!tree_node_is_file(node))
		node->mtime = node->nchildren ? newest : empty_mtime;
	return node->mtime;
}

/* A source = "local" entry's node; 0 or -ENOMEM. */
static int add_local_entry(struct tree *t, const struct config_entry *ce, int64_t empty_mtime)
{
	struct tree_node *dir = ce->dir[0] ? mkdirs(t, ce->dir, strlen(ce->dir)) : t->root;
	struct tree_node *node;
	struct stat st;

	if (!dir)
		return -ENOMEM;
	if (find_child(dir, ce->filename)) {
		log_warn("event=path_taken entry=%s path=%s%s%s action=\"another entry has this "
			 "name; give this one a filename\"", ce->id, ce->dir, ce->dir[0] ? "/" : "",
			 ce->filename);
		return 0;
	}
	node = new_node(t, dir, ce->filename);
	if (!node)
		return -ENOMEM;
	node->local = ce;
	node->mtime = stat(ce->path, &st) == 0 ? st.st_mtime : empty_mtime;
	return 0;
}

/* f's node at path (its own, or another view's of it); 0 or -ENOMEM. */
static int add_file(struct tree *t, struct engine_file *f, const char *path)
{
	const char *slash = strrchr(path, '/');
	struct tree_node *dir = slash ? mkdirs(t, path, (size_t)(slash - path)) : t->root;
	struct tree_node *node;

	if (!dir)
		return -ENOMEM;
	node = find_child(dir, slash ? slash + 1 : path);
	if (node) {
		/* Only files that resolved claim a path (source.h): one that
		 * failed gives its place to one that can be read. Anything
		 * else is a file vs folder clash. */
		if (node->file && engine_file_open_error(node->file) && !engine_file_open_error(f)) {
			node->file = f;
			node->mtime = engine_file_mtime(f);
		}
		return 0;
	}
	node = new_node(t, dir, slash ? slash + 1 : path);
	if (!node)
		return -ENOMEM;
	node->file = f;
	node->mtime = engine_file_mtime(f);
	return 0;
}

/* The index in cfg of the entry ce is, or of cfg's entry with ce's id
 * (ce from an earlier config of a reloaded mount); -1 when none. */
static ssize_t entry_index(const struct config *cfg, const struct config_entry *ce)
{
	if (ce >= cfg->entries && ce < cfg->entries + cfg->n_entries)
		return ce - cfg->entries;
	for (size_t k = 0; k < cfg->n_entries; k++)
		if (strcmp(cfg->entries[k].id, ce->id) == 0)
			return (ssize_t)k;
	return -1;
}

/* f's path in another view of the config (config.h views): its entry's
 * folder there, then what follows its folder in f's own path. NULL when
 * f is not of cfg's entries (a file a lock added). */
static char *view_path(const struct config *cfg, const struct config *view,
		       struct engine_file *f)
{
	const struct config_entry *ce = engine_file_entry(f);
	const char *path = engine_file_path(f);
	ssize_t at = entry_index(cfg, ce);
	size_t k, dirlen;
	char *out;

	if (at < 0)
		return NULL;
	k = (size_t)at;
	dirlen = strlen(ce->dir);
	if (k >= view->n_entries || strncmp(path, ce->dir, dirlen) != 0)
		return NULL;
	return asprintf(&out, "%s%s", view->entries[k].dir, path + dirlen) < 0 ? NULL : out;
}

/* The folders and files of one config, or of one more view of it. */
static int add_view(struct tree *t, struct engine *e, const struct config *cfg,
		    const struct config *view, int64_t empty_mtime)
{
	int rc = 0;

	for (size_t i = 0; view->dirs && view->dirs[i]; i++)
		if (view->dirs[i][0] && !mkdirs(t, view->dirs[i], strlen(view->dirs[i])))
			return -ENOMEM;
	for (size_t i = 0; rc == 0 && i < engine_nfiles(e); i++) {
		struct engine_file *f = engine_file_at(e, i);
		char *path;

		if (engine_file_gone(f) || (t->re && t->re->leaving && t->re->leaving(t->re->arg, f)))
			continue;
		path = view == cfg ? NULL : view_path(cfg, view, f);
		if (view == cfg || path)
			rc = add_file(t, f, path ? path : engine_file_path(f));
		free(path);
	}
	for (size_t i = 0; rc == 0 && i < view->n_entries; i++)
		if (view->entries[i].source == CONFIG_SOURCE_LOCAL)
			rc = add_local_entry(t, &view->entries[i], empty_mtime);
	return rc;
}

int tree_build(struct engine *e, const struct config *cfg, int64_t empty_mtime,
	       const struct tree_rebuild *re, struct tree **out)
{
	struct tree *t = calloc(1, sizeof(*t));
	int rc = -ENOMEM;

	if (!t)
		return -ENOMEM;
	t->re = re;
	t->prev = re ? re->prev : NULL;
	t->generation = t->prev ? t->prev->generation + 1 : 0;
	t->root = new_node(t, NULL, "");
	if (!t->root)
		goto fail;
	rc = add_view(t, e, cfg, cfg, empty_mtime);
	for (size_t v = 1; rc == 0 && v < cfg->n_views; v++)
		rc = add_view(t, e, cfg, cfg->views[v], empty_mtime);
	if (rc)
		goto fail;
	finish(t, t->root, "", empty_mtime);
	t->re = NULL;
	t->prev = NULL;
	t->root->ino = 1;
	/* Inode 0 and 1 are taken, and two paths may hash alike: nudge. */
	qsort(t->by_ino, t->n, sizeof(*t->by_ino), cmp_ino);
	for (size_t i = 1; i < t->n; i++) {
		if (t->by_ino[i]->ino <= 1)
			t->by_ino[i]->ino = 2;
		if (t->by_ino[i]->ino <= t->by_ino[i - 1]->ino && t->by_ino[i] != t->root)
			t->by_ino[i]->ino = t->by_ino[i - 1]->ino + 1;
	}
	qsort(t->by_ino, t->n, sizeof(*t->by_ino), cmp_ino);
	*out = t;
	return 0;
fail:
	tree_free(t);
	return rc;
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->by_ino[i]->name);
		free(t->by_ino[i]->children);
		free(t->by_ino[i]);
	}
	free(t->by_ino);
	free(t);
}

struct tree_node *tree_root(struct tree *t)
{
	return t->root;
}

struct tree_node *tree_get(struct tree *t, uint64_t ino)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->by_ino[mid]->ino == ino)
			return t->by_ino[mid];
		if (t->by_ino[mid]->ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct tree_node *tree_child(const struct tree_node *dir, const char *name)
{
	size_t lo = 0, hi = dir->nchildren;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(dir->children[mid]->name, name);

		if (c == 0)
			return dir->children[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

size_t tree_nnodes(const struct tree *t)
{
	return t->n;
}

struct tree_node *tree_node_at(struct tree *t, size_t i)
{
	return t->by_ino[i];
}

struct tree_node *tree_find(struct tree *t, const char *path)
{
	struct tree_node *node = t->root;
	char *copy = strdup(path), *save = NULL;

	if (!copy)
		return NULL;
	for (char *part = strtok_r(copy, "/", &save); part && node; part = strtok_r(NULL, "/", &save))
		node = tree_child(node, part);
	free(copy);
	return node;
}

int tree_node_path(const struct tree_node *node, char *buf, size_t len)
{
	size_t at = len - 1;

	if (len == 0)
		return -ENAMETOOLONG;
	buf[at] = '\0';
	for (; node && node->parent; node = node->parent) {
		size_t n = strlen(node->name) + (node->parent->parent ? 1 : 0);

		if (n > at)
			return -ENAMETOOLONG;
		at -= n;
		memcpy(buf + at + (node->parent->parent ? 1 : 0), node->name, strlen(node->name));
		if (node->parent->parent)
			buf[at] = '/';
	}
	memmove(buf, buf + at, len - at);
	return 0;
}
