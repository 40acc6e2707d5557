/*
 * select.h: which files a command line names. An argument is
 *   - a path in the mount: absolute under the mountpoint, or relative to
 *     its root ("Stable-diffusion/x.safetensors"); a folder names every
 *     file below it, and the mount root (or "/") names them all;
 *   - a config entry id ("checkpoints/sdxl") or an entry name ("sdxl").
 * An argument may match several files; every argument must match one.
 * Threads: no shared state.
 */
#ifndef MODELFS_SELECT_H
#define MODELFS_SELECT_H

#include <stdbool.h>
#include <stddef.h>

struct select_item {
	const char *path;		/* in the mount; NULL when unknown */
	const char *entry_id;		/* NULL when unknown */
	const char *entry_name;		/* NULL when unknown */
};

/* Set chosen[i] for every item some argument names (every item when
 * nargs is 0). mountpoint (NULL when none) is stripped from absolute
 * arguments. 0, or -ENOENT with *unmatched set to the first argument
 * that names nothing. */
int select_match(const struct select_item *items, size_t n, char *const *args, size_t nargs,
		 const char *mountpoint, bool *chosen, const char **unmatched);

#endif
