/*
 * cache_index.h: a cache's index (DIR/index.sqlite) through a store
 * connection of the test's own, as a restart or another process sees it.
 * The cache keeps its store to itself; tests of what it wrote there, and
 * rows only the store can write, go through this.
 */
#ifndef MODELFS_TEST_CACHE_INDEX_H
#define MODELFS_TEST_CACHE_INDEX_H

#include <stdio.h>
#include <stdlib.h>

#include "modelfs/store.h"

/* Exits when the index cannot be opened: every check after would fail. */
static inline struct store *cache_index_open(const char *dir)
{
	char path[4096];
	struct store *s = NULL;

	snprintf(path, sizeof(path), "%s/index.sqlite", dir);
	if (store_open(path, &s) != 0) {
		fprintf(stderr, "store_open %s failed\n", path);
		exit(2);
	}
	return s;
}

#endif
