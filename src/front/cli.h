/*
 * cli.h: what the modelfs subcommands share (private to src/front):
 * options, where the cache is, and finding a mount to ask. Each command
 * is cli_<name>(argc, argv) returning the process's exit code; main.c
 * dispatches and is the only place that exits.
 *
 * A command that works on the cache (prefetch, status, verify, evict,
 * info) first looks for a mount using it: a daemon listening on
 * CACHE_DIR/control.sock (control.h). Found, it asks the daemon; not
 * found, it opens the cache itself, holding its lock for as long as it
 * runs, so that no mount can start on it meanwhile.
 */
#ifndef MODELFS_FRONT_CLI_H
#define MODELFS_FRONT_CLI_H

#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "modelfs/cache.h"
#include "modelfs/config.h"
#include "modelfs/engine.h"

#define EXIT_MODEL 1
#define EXIT_USAGE 2
#define EXIT_PARTIAL 3			/* mount: live, but some entries failed */
#define EXIT_INTERRUPTED 130		/* 128 + SIGINT, as shells report it */
#define DEFAULT_MOUNTPOINT "/workspace/models"
#define DEFAULT_HISTORY 50
#define MAX_MODELS 64			/* mount --model, at most */

struct cli_opts {
	const char *cache_dir;		/* --cache-dir */
	const char *config;		/* --config */
	const char *log_file;
	const char *fuse_opts;		/* every -o, joined by commas (as mount(8) does) */
	char fuse_opts_buf[4096];
	const char *into;		/* prefetch --into DIR */
	const char *base;		/* webui --base MOUNTPOINT */
	char *models[MAX_MODELS];	/* mount --model LINK, in order */
	int nmodels;
	const char *category;		/* mount --category, for --model */
	const char *listen;		/* serve --listen ADDR:PORT */
	const char *prefix;		/* serve --prefix /PATH */
	const char *token_file;		/* serve --token-file FILE: the access token */
	const char *output;		/* lock --output FILE */
	const char *lock;		/* mount, lock: --lock FILE */
	bool check, update;		/* lock --check, lock --update */
	bool metrics;			/* status --metrics */
	bool daemon;			/* serve --daemon */
	const char *layout;		/* mount -o layout=, over the config's; or NULL */
	bool foreground, offline, debug, json, pin, force, keep_cache;
	bool log_json;			/* --log-format json */
	int jobs;			/* -j, 0: default */
	int history;			/* --history[=N] rows, 0: none */
	int unused_for;			/* evict --unused-for, seconds; -1: not given */
	int nargs;
	char **args;
};

/* Options of command cmd ("prefetch", "status", ...): 0, or -EINVAL with
 * a message printed (exit 2). -h prints the usage and gives 1 (exit 0). */
int cli_parse(int argc, char **argv, const char *cmd, struct cli_opts *o);
extern const char cli_usage_text[];

/* --cache-dir, $MODELFS_CACHE_DIR, the config's cache_dir, then the
 * system's or the user's cache. */
const char *cli_cache_dir(const struct cli_opts *o, const struct config *cfg, char *buf,
			  size_t len);
/* A config from a file or URL: 0; -EINVAL for a bad one (exit 2, message
 * printed); other -errno when it could not be had (exit 1). */
int cli_load_config(const struct cli_opts *o, const char *arg, struct config **cfg);
void cli_limits(const struct config *cfg, struct cache_limits *lim);
/* The exit code for a cli_load_config() failure. */
int cli_config_exit(int rc);

/* Whether a serve address ("127.0.0.1:8080", "[::1]:8080") is loopback:
 * serving beyond it waits for client tokens (issue 14). Not an address at
 * all counts as true: serve_open() refuses it with its own message. */
bool cli_listen_is_loopback(const char *addr);
/* The access token a server on listen needs, from path (--token-file,
 * serve_token_file) or none: 0 and *out (NULL without path; free with
 * secret_free()); EXIT_USAGE, said on stderr as who, when listen is not
 * loopback and there is no path, or the file cannot be read, is empty
 * or holds fewer than 16 characters. */
int cli_serve_token(const char *path, const char *listen, const char *who, char **out);

/* ---- daemon.c: going to the background ---- */

/* Fork; the parent waits until the child calls cli_notify_parent() (or
 * dies: EXIT_MODEL) and exits with parent_code(code), or code when
 * parent_code is NULL. In the child: the pipe's end, after setsid(); or
 * -errno in the caller when there is no child. */
int cli_daemonize(int (*parent_code)(int code));
/* Tell the waiting parent the start's exit code; fd < 0: nothing. */
void cli_notify_parent(int fd, int code);
/* stdin and stdout to /dev/null, stderr to log_fd (or /dev/null). */
void cli_detach_stdio(int log_fd);
/* CACHE_DIR/modelfs.log opened for a background daemon without
 * --log-file: the fd, or -1 (said on stderr). */
int cli_default_log(const char *cache_dir);

/* Live and stale modelfs mounts: their mountpoints, from mountinfo (the
 * caller frees with cli_mounts_free). 0 or -errno. */
#define MOUNT_FSTYPE "fuse.modelfs"
int cli_mounts_list(char ***out, size_t *n);
void cli_mounts_free(char **list, size_t n);
/* The modelfs mount path lies in (the deepest): 0, or -ENOENT. */
int cli_mount_of(const char *path, char *mnt, size_t mntlen);
/* The cache dir a mount's root names: 0, -ENOTCONN for a stale mount,
 * -ETIMEDOUT for one whose daemon does not answer within 3 s. Neither
 * call waits longer than that on a hung mount. */
int cli_mount_cache_dir(const char *mnt, char *out, size_t len);
#define CLI_HUNG_RECOVER "recover with: kill -9 its daemon (pgrep -af 'modelfs mount'), then " \
			 "fusermount3 -uz MOUNTPOINT"

/* Where a command runs. */
struct cli_target {
	int fd;				/* connected to the mount's daemon, or -1 */
	char *mountpoint;		/* the daemon's, or NULL */
	long pid;			/* the daemon's, or 0 */
	struct cache *cache;		/* opened here when there is no daemon */
	struct config *cfg;		/* --config, or NULL */
	struct config *defaults;	/* an empty config's settings when no --config */
	const char *cache_dir;
	char cache_buf[PATH_MAX];
};

/* What every command that works on a mount or a cache does first: parse
 * argv, set the log up, then cli_target_open(). true to go on (*code 0,
 * close t at the end); false to return *code at once (message printed,
 * nothing to close). Without takes_args, arguments are a usage error. */
bool cli_start(int argc, char **argv, const char *cmd, bool need_config, bool takes_args,
	       struct cli_opts *o, struct cli_target *t, int *code);

/* Find the daemon or open the cache: 0, or an exit code (message
 * printed). With need_config, working without a daemon needs --config. */
int cli_target_open(const struct cli_opts *o, bool need_config, const char *cmd,
		    struct cli_target *t);
void cli_target_close(struct cli_target *t);
/* The settings in force: --config, else the defaults. */
const struct config *cli_target_config(const struct cli_target *t);

/* Send req to the daemon, read one reply (asked for in parts, see
 * control.h; req gains "parts"): 0 and *result (a new reference to the
 * reply's "result"), or an exit code with the message printed. */
int cli_call(struct cli_target *t, json_t *req, json_t **result);
/* The arguments as a daemon takes them: those that exist here, absolute. */
json_t *cli_paths_json(char *const *args, int n);

void cli_print_json(json_t *j);

/* Ctrl-C: the first sets cli_interrupted (no restart of system calls, so
 * a blocked poll returns); a second one kills as usual. */
extern atomic_int cli_interrupted;
void cli_catch_interrupt(void);

/* prefetch --into DIR (into.c): whether f is at its place under dir
 * already (its size, and the hash written there); placing a complete f
 * there, atomically: 0, or -errno with err filled. */
bool into_has(const char *dir, struct engine_file *f);
int into_place(const char *dir, struct engine_file *f, bool keep_cache, char *err,
	       size_t errlen);
/* mount --model (model_links.c): the text of a config whose entries are
 * links (n of them) in category: 0 and *out (the caller frees), or
 * -EINVAL with err saying which link and what is understood. */
int models_config(char *const *links, size_t n, const char *category, char **out, char *err,
		  size_t errlen);

/* The cache prefetch --into uses unless --cache-dir is given. */
#define INTO_CACHE ".modelfs-cache"

/* The lock a mount is given (--lock, else the config's `lock`, a
 * relative one from the config file's folder) into *out, NULL when none,
 * and its path (absolute when it exists) into path: 0, or an exit code
 * with the message printed (cli_lock.c). */
struct lock;
int cli_mount_lock(const struct cli_opts *o, const struct config *cfg, const char *config,
		   struct lock **out, char *path, size_t path_len);

/* The commands. */
/* Write path whole or not at all: fill(f, arg) writes into a temporary
 * file beside it (0 or -errno), which is synced, given path's mode when
 * path exists, and renamed over it. 0 or -errno; nothing is left behind
 * on failure. */
int cli_write_whole(const char *path, int (*fill)(FILE *f, void *arg), void *arg);

/* What `lock` and `manifest` share (cli_lock.c); cmd names the command
 * in messages. cli_lock_choose(): chosen[] for entry ids or names (all
 * when n is 0), -ENOENT (printed) for a name that matches none.
 * cli_lock_resolve(): resolve the chosen entries (all when NULL) into l,
 * with licences when asked; failed files printed and counted.
 * cli_lock_hash(): fetch through the cache and hash every file of l that
 * has no hash (with want_sha256, also those with only a git blob id):
 * 0 or an exit code, printed. */
struct lock;
int cli_lock_choose(const char *cmd, const struct config *cfg, char *const *names, int n,
		    bool *chosen);
int cli_lock_resolve(const char *cmd, const struct config *cfg, const bool *chosen,
		     bool licenses, struct lock *l, size_t *nfailed);
int cli_lock_hash(const char *cmd, const struct cli_opts *o, const struct config *cfg,
		  struct lock *l, bool want_sha256);

int cli_prefetch(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_reload(int argc, char **argv);
int cli_mounts(int argc, char **argv);
int cli_webui(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_evict(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_serve(int argc, char **argv);
/* cli_tier.c: modelfs tier nginx */
int cli_tier(int argc, char **argv);
int cli_lock(int argc, char **argv);
int cli_manifest(int argc, char **argv);
int cli_catalog(int argc, char **argv);

#endif
