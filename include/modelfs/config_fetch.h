/*
 * config_fetch.h: a config given as an http(s) URL (the provisioning
 * scripts' $PROVISION_URL). The fetched text is kept under
 * CACHE_DIR/configs/, so a remount without network uses the last copy,
 * with a warning, instead of failing.
 * Threads: call before any other thread runs (it uses one http client).
 */
#ifndef MODELFS_CONFIG_FETCH_H
#define MODELFS_CONFIG_FETCH_H

#include <stdbool.h>

/* True for "http://..." and "https://...". */
bool config_is_url(const char *arg);

/* Fetch url into cache_dir/configs/<hash>.toml (atomically) and give
 * that path in *path (the caller frees). When the fetch fails for a
 * transient reason and a copy exists, the copy is used. 0, or -errno
 * with a message on stderr. */
int config_fetch(const char *url, const char *cache_dir, char **path);

#endif
