/*
 * tree.h: the mount's directory tree, built at mount (and again at each
 * reload, as a new tree) and never changed once built, so lookups need
 * no lock and no network.
 *
 * (1) Inode numbers are a hash of the path: the same path has the same
 *     inode across remounts. The root is inode 1. A tree built to
 *     replace another (a reload) keeps each file's inode when the path
 *     has the same file; a file new at its path gets an inode no earlier
 *     tree of the mount gave.
 * (2) A folder's mtime is the newest mtime of its entries (or the
 *     cache's creation time when empty), so it changes only when they do.
 * (3) shadowed is set by the front before it mounts (a local file had
 *     the entry's name) and never changes after.
 * Ownership: tree_build() gives the tree; tree_free() frees it. Nodes
 * point at engine files, which the engine owns.
 * Threads: read-only after build; safe from any thread.
 */
#ifndef MODELFS_TREE_H
#define MODELFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/config.h"
#include "modelfs/engine.h"

struct tree_node {
	uint64_t ino;
	char *name;
	struct tree_node *parent;
	struct tree_node **children;	/* sorted by name */
	size_t nchildren;
	struct engine_file *file;	/* a remote file, else NULL */
	const struct config_entry *local;	/* a source = "local" entry's file, else NULL */
	int64_t mtime;
	bool shadowed;			/* a local file of that name wins (3) */
};

/* A file (remote or source = "local"), not a folder. */
static inline bool tree_node_is_file(const struct tree_node *n)
{
	return n->file || n->local;
}

struct tree;

/* A tree built to replace another (a reload). */
struct tree_rebuild {
	const struct tree *prev;	/* the tree it replaces, for (1) */
	/* Files of e to leave out (about to be dropped), besides the gone ones. */
	bool (*leaving)(void *arg, struct engine_file *f);
	void *arg;
};

/* cfg's folders (always shown), every file of e but the gone ones, then
 * cfg's source = "local" entries (a path a remote file has already is
 * logged and left out); with several layouts (config.h views), the same
 * for each view, whose nodes point at the same engine files (a file of
 * an earlier config goes where cfg's entry of its id does). re: NULL at
 * mount. cfg must outlive the tree. */
int tree_build(struct engine *e, const struct config *cfg, int64_t empty_mtime,
	       const struct tree_rebuild *re, struct tree **out);
void tree_free(struct tree *t);

struct tree_node *tree_root(struct tree *t);
struct tree_node *tree_get(struct tree *t, uint64_t ino);
struct tree_node *tree_child(const struct tree_node *dir, const char *name);
/* Every node, in no particular order: i < tree_nnodes(). */
size_t tree_nnodes(const struct tree *t);
struct tree_node *tree_node_at(struct tree *t, size_t i);
/* The node at path ("VAE/x.bin"; "" is the root), or NULL. */
struct tree_node *tree_find(struct tree *t, const char *path);
/* node's path from the root ("" for the root) into buf: 0, or
 * -ENAMETOOLONG when it does not fit. */
int tree_node_path(const struct tree_node *node, char *buf, size_t len);

#endif
