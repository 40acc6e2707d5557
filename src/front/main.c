/*
 * main.c: the modelfs command line: mount and check here, the commands
 * that work on a cache in cli_*.c (cli.h). Each subcommand is a function
 * cli_<name>(argc, argv) returning the process exit code:
 *   0 ok, 1 a model (or the mount) failed, 2 usage or config error,
 *   3 (mount only) the mount is live but some entries failed,
 *   130 interrupted.
 * Nothing else in modelfs exits.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/cache.h"
#include "modelfs/config.h"
#include "modelfs/config_fetch.h"
#include "modelfs/control.h"
#include "modelfs/engine.h"
#include "modelfs/fs.h"
#include "modelfs/http.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"
#include "modelfs/mountopts.h"
#include "modelfs/prefetch_run.h"
#include "modelfs/retention.h"
#include "modelfs/reload.h"
#include "modelfs/sdnotify.h"
#include "modelfs/select.h"
#include "modelfs/metrics.h"
#include "modelfs/secret.h"
#include "modelfs/serve.h"
#include "modelfs/source.h"
#include "modelfs/suggest.h"
#include "modelfs/tree.h"
#include "modelfs_config.h"

#define FUSE_SUPER_MAGIC 0x65735546

extern char **environ;

/* With $PROVISION_URL set, `mount FOLDER` names the mountpoint, not a
 * config: a folder is never a config. */
static bool only_mountpoint_given(const struct cli_opts *o)
{
	const char *env = getenv("PROVISION_URL");
	struct stat st;

	return !o->nmodels && o->nargs == 1 && env && env[0] && stat(o->args[0], &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

/* CONFIG from the command line, else $PROVISION_URL; NULL when neither. */
static const char *config_arg(const struct cli_opts *o)
{
	const char *env = getenv("PROVISION_URL");

	if (o->nmodels)
		return "--model";	/* the config is made of the links */
	if (o->nargs >= 1 && !only_mountpoint_given(o))
		return o->args[0];
	return env && env[0] ? env : NULL;
}

/* The mount's config: CONFIG's, or one made of --model links. */
static int mount_config(const struct cli_opts *o, struct config **cfg)
{
	struct config_error err;
	char why[512], *text = NULL;
	int rc;

	if (!o->nmodels)
		return cli_load_config(o, config_arg(o), cfg);
	rc = models_config(o->models, (size_t)o->nmodels, o->category ? o->category : "checkpoints",
			   &text, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "modelfs: %s\n", why);
		return rc;
	}
	rc = config_parse(text, strlen(text), "--model", cfg, &err);
	if (rc)
		fprintf(stderr, "modelfs: %s\n", err.msg);
	free(text);
	return rc;
}

/* ---- mount ------------------------------------------------------------ */

/* Run fusermount3 with flag ("-u", "-uz") on mnt; 0 if it worked. */
static int fusermount(const char *flag, const char *mnt)
{
	char *const argv[] = { "fusermount3", (char *)flag, (char *)mnt, NULL };
	pid_t pid;
	int status;

	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) != 0)
		return -errno;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -EIO;
	return 0;
}

/* Make mnt a usable folder: create it, or clear a dead mount. stat()
 * may still answer from the kernel's attribute cache on a dead FUSE
 * mount; statfs() always asks the daemon, so it tells. */
static int prepare_mountpoint(const char *mnt)
{
	struct statfs sfs;
	struct stat st;

	if (statfs(mnt, &sfs) == 0) {
		if (stat(mnt, &st) != 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "modelfs: mountpoint %s is not a folder\n", mnt);
			return -ENOTDIR;
		}
		if (sfs.f_type == FUSE_SUPER_MAGIC) {
			fprintf(stderr, "modelfs: %s is already a live FUSE mount; unmount it first: "
				"fusermount3 -u %s\n", mnt, mnt);
			return -EBUSY;
		}
		return 0;
	}
	if (errno == ENOTCONN) {
		log_warn("event=stale_mount mountpoint=%s action=\"fusermount3 -uz\"", mnt);
		if (fusermount("-uz", mnt) != 0 || statfs(mnt, &sfs) != 0) {
			fprintf(stderr, "modelfs: %s is a dead mount (\"Transport endpoint is not "
				"connected\") that could not be cleared; run: fusermount3 -uz %s\n",
				mnt, mnt);
			return -ENOTCONN;
		}
		return 0;
	}
	if (errno == ENOENT) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s", mnt);
		for (char *p = path + 1; *p; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			mkdir(path, 0755);
			*p = '/';
		}
		if (mkdir(path, 0755) == 0 || errno == EEXIST)
			return 0;
	}
	fprintf(stderr, "modelfs: mountpoint %s: %s\n", mnt, strerror(errno));
	return -errno;
}

/* The cache may not live under the mount: reading it would re-enter us. */
/* realpath() of a path that need not exist yet (a cache dir a mount
 * would create): its deepest existing folder resolved, the rest as given. */
static bool resolve_for_compare(const char *path, char *out)
{
	char head[PATH_MAX], real[PATH_MAX];
	const char *rest = "";

	if (snprintf(head, sizeof(head), "%s", path) >= (int)sizeof(head))
		return false;
	while (!realpath(head, real)) {
		char *slash = strrchr(head, '/');

		if (errno != ENOENT || !slash || slash == head)
			return false;
		*slash = '\0';
		rest = path + (slash - head);
	}
	return snprintf(out, PATH_MAX, "%s%s", real, rest) < PATH_MAX;
}

static bool path_within(const char *inner, const char *outer)
{
	char a[PATH_MAX], b[PATH_MAX];
	size_t n;

	if (!resolve_for_compare(inner, a) || !realpath(outer, b))
		return false;
	n = strlen(b);
	return strncmp(a, b, n) == 0 && (a[n] == '/' || a[n] == '\0');
}

/* A source = "local" entry inside the mountpoint would have the daemon
 * read through its own mount, waiting on itself: refused by name.
 * Asked before mounting, when the paths still lead to the real disk. */
static bool local_entries_outside(const struct config *cfg, const char *mnt)
{
	size_t n = strlen(mnt);

	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *ce = &cfg->entries[i];

		if (ce->source != CONFIG_SOURCE_LOCAL)
			continue;
		if (path_within(ce->path, mnt) ||
		    (strncmp(ce->path, mnt, n) == 0 && (ce->path[n] == '/' || !ce->path[n]))) {
			fprintf(stderr, "modelfs: entry %s (%s:%d): path %s is inside the mountpoint "
				"%s; a file already there shows in the mount as it is, so remove the "
				"entry, or move the file elsewhere\n", ce->id, cfg->path, ce->line,
				ce->path, mnt);
			return false;
		}
	}
	return true;
}

/* What a mount helper exits with: mount(8) expects 0 for a live mount,
 * some entries failed or not (the warning is printed); 1 for a bad
 * invocation, 32 for a mount that failed. */
static int helper_exit_code(int code)
{
	return code == 0 || code == EXIT_PARTIAL ? 0 : code == EXIT_USAGE ? 1 : 32;
}

/* --log-file syslog: the one way to syslog, which containers lack. */
static bool want_syslog(const struct cli_opts *o)
{
	return o->log_file && strcmp(o->log_file, "syslog") == 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The files the config wants warm: entries with prefetch = true and
 * those [modelfs] prefetch names. */
static int warm_files(struct engine *e, const struct config *cfg, const char *mnt,
		      struct engine_file ***out, size_t *n)
{
	size_t nf = engine_nfiles(e), nargs = 0;
	struct select_item *items = calloc(nf + 1, sizeof(*items));
	bool *chosen = calloc(nf + 1, sizeof(*chosen));
	const char *unmatched = NULL;
	int rc = 0;

	*out = calloc(nf + 1, sizeof(**out));
	*n = 0;
	if (!items || !chosen || !*out) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nf; i++) {
		struct engine_file *f = engine_file_at(e, i);

		items[i] = (struct select_item){ engine_file_path(f), engine_file_entry(f)->id,
						 engine_file_entry(f)->name };
	}
	while (cfg->prefetch && cfg->prefetch[nargs])
		nargs++;
	if (nargs) {
		rc = select_match(items, nf, cfg->prefetch, nargs, mnt, chosen, &unmatched);
		if (rc == -ENOENT) {
			log_warn("event=warmup_unknown name=\"%s\" reason=\"[modelfs] prefetch names no "
				 "file, folder or entry of the mount\"", unmatched);
			/* The others still count: match them one by one. */
			memset(chosen, 0, nf * sizeof(*chosen));
			for (size_t a = 0; a < nargs; a++) {
				bool *one = calloc(nf + 1, sizeof(*one));

				if (one && select_match(items, nf, &cfg->prefetch[a], 1, mnt, one,
							&unmatched) == 0)
					for (size_t i = 0; i < nf; i++)
						chosen[i] |= one[i];
				free(one);
			}
			rc = 0;
		}
	}
	for (size_t i = 0; i < nf; i++)
		if (chosen[i] || engine_file_entry(engine_file_at(e, i))->prefetch)
			(*out)[(*n)++] = engine_file_at(e, i);
out:
	free(items);
	free(chosen);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* How one entry came out of the mount's resolving. */
struct entry_outcome {
	size_t files, failed;		/* its files, those not resolved */
	struct engine_file *first;	/* the first not resolved, or NULL */
	int local_err;			/* source = "local": why its path is no file */
};

/* 0 when a source = "local" entry's path is a file to serve, else an
 * errno (EISDIR for a folder). */
static int local_entry_err(const struct config_entry *ce)
{
	struct stat st;

	if (stat(ce->path, &st) != 0)
		return errno;
	return S_ISREG(st.st_mode) ? 0 : EISDIR;
}

/* A file failed when it did not resolve, neither from its origin nor
 * from a stored resolution (an offline remount is resolved); one whose
 * sha256 found its cached bytes is served, but still not resolved. An
 * entry failed when one of its files did, or when it has none in the
 * mount. 0 or -ENOMEM; out[] has one row per entry. */
static int entry_outcomes(struct engine *e, const struct config *cfg,
			  struct entry_outcome **out, size_t *nfailed)
{
	struct entry_outcome *o = calloc(cfg->n_entries + 1, sizeof(*o));

	*nfailed = 0;
	if (!o)
		return -ENOMEM;
	for (size_t k = 0; k < engine_nfiles(e); k++) {
		struct engine_file *f = engine_file_at(e, k);
		size_t i = (size_t)(engine_file_entry(f) - cfg->entries);

		assert(i < cfg->n_entries);	/* the engine's entries are cfg's */
		o[i].files++;
		if (engine_file_resolved(f))
			continue;
		o[i].failed++;
		if (!o[i].first)
			o[i].first = f;
	}
	for (size_t i = 0; i < cfg->n_entries; i++) {
		if (cfg->entries[i].source == CONFIG_SOURCE_LOCAL) {
			o[i].local_err = local_entry_err(&cfg->entries[i]);
			o[i].files = 1;
			o[i].failed = o[i].local_err != 0;
		}
		*nfailed += o[i].failed || !o[i].files;
	}
	*out = o;
	return 0;
}

/* One line on stderr for a failed entry: where it is written, which
 * file, and the reason, which says what to do. */
static void print_failed_entry(const struct config *cfg, const struct config_entry *ce,
			       const struct entry_outcome *o)
{
	char *error, why[1024];

	fprintf(stderr, "  %s (%s:%d): ", ce->id, cfg->path, ce->line);
	if (ce->source == CONFIG_SOURCE_LOCAL) {
		fprintf(stderr, "path %s: %s; fix path (a file on this machine)\n", ce->path,
			strerror(o->local_err));
		return;
	}
	if (!o->first) {
		fputs("no file in the mount; the log says why (another entry may have its "
		      "path)\n", stderr);
		return;
	}
	if (o->files > 1)
		fprintf(stderr, "%zu of %zu files failed, first ", o->failed, o->files);
	/* No error is an entry whose origin was unreachable but whose size
	 * the config gives: it is listed, and resolved at first read. */
	error = engine_file_error(o->first);
	log_redact(error ? error : "its origin could not be reached; listed with the configured "
		   "size and fetched at first read once the origin answers", why, sizeof(why));
	fprintf(stderr, "%s: %s\n", engine_file_path(o->first), why);
	free(error);
}

/* After mounting: 0 when every entry resolved; else EXIT_PARTIAL, with
 * a summary on stderr naming each failed entry and what to do. The mount
 * stays live either way: the entries that resolved are usable, and a
 * provisioning script sees from the exit code that some are not. */
static int report_mount(struct engine *e, const struct config *cfg, const char *config,
			const char *mnt)
{
	/* A config URL may carry a token in its query: not shown. */
	const char *shown = config_is_url(config) ? "CONFIG"
			  : strcmp(config, "--model") == 0 ? "--model LINK ..." : config;
	struct entry_outcome *o = NULL;
	size_t nfailed = 0;

	if (entry_outcomes(e, cfg, &o, &nfailed) != 0) {
		fputs("modelfs: mounted, but out of memory while checking the entries\n", stderr);
		return EXIT_PARTIAL;
	}
	if (nfailed > 0) {
		log_warn("event=mount_partial mountpoint=%s failed=%zu entries=%zu", mnt, nfailed,
			 cfg->n_entries);
		fprintf(stderr, "modelfs: mounted %s, but %zu of %zu entr%s failed:\n", mnt, nfailed,
			cfg->n_entries, cfg->n_entries == 1 ? "y" : "ies");
		for (size_t i = 0; i < cfg->n_entries; i++)
			if (o[i].failed || !o[i].files)
				print_failed_entry(cfg, &cfg->entries[i], &o[i]);
		fprintf(stderr, "modelfs: the mount is live; the failed entries' files are listed "
			"but cannot be read. Fix them (`modelfs check %s` checks every entry "
			"without mounting), then %s%s%sunmount (fusermount3 -u %s) and mount "
			"again\n", shown, strcmp(config, "--model") ? "`modelfs reload " : "",
			strcmp(config, "--model") ? mnt : "",
			strcmp(config, "--model") ? "` tries them again, or " : "", mnt);
	}
	free(o);
	return nfailed > 0 ? EXIT_PARTIAL : 0;
}

/* ---- mount options ---------------------------------------------------- */

/* -o for `modelfs mount` and the mount helpers, read by the one parser
 * (mountopts.h); modelfs's keys land where the command line's would, a
 * flag given as well winning. 0, or EXIT_USAGE with the message printed.
 * o points into mo afterwards. */
static int apply_mount_opts(struct cli_opts *o, struct mount_opts *mo)
{
	char err[512];

	if (mountopts_parse(o->fuse_opts, mo, err, sizeof(err)) != 0) {
		fprintf(stderr, "modelfs mount: -o: %s\n", err);
		return EXIT_USAGE;
	}
	if (!o->cache_dir)
		o->cache_dir = mo->cache_dir;
	if (!o->log_file)
		o->log_file = mo->log_file;
	o->layout = mo->layout;
	o->debug |= mo->debug;
	return 0;
}

/* Whether /etc/fuse.conf has the line user_allow_other. */
static bool fuse_conf_allows_other(void)
{
	FILE *fp = fopen("/etc/fuse.conf", "re");
	char line[256];
	bool yes = false;

	while (fp && !yes && fgets(line, sizeof(line), fp)) {
		char *w = line + strspn(line, " \t");

		w[strcspn(w, " \t\r\n#")] = '\0';
		yes = strcmp(w, "user_allow_other") == 0;
	}
	if (fp)
		fclose(fp);
	return yes;
}

/* fusermount3 refuses allow_other to a user other than root unless
 * /etc/fuse.conf allows it, with a line that names neither modelfs nor a
 * fix: check first and say what to do. 0 or EXIT_USAGE. */
static int check_allow_other(const struct mount_opts *mo)
{
	if (!mo->allow_other || geteuid() == 0 || fuse_conf_allows_other())
		return 0;
	fputs("modelfs mount: -o allow_other is for root only unless /etc/fuse.conf has the line "
	      "user_allow_other: add that line (as root), or mount without allow_other (then only "
	      "your user can read the mount)\n", stderr);
	return EXIT_USAGE;
}

/* "modelfs:CONFIG", the source findmnt and df show: the config's full
 * path, or its URL without query (a token may be there). NULL when out of
 * memory; the caller frees. */
static char *mount_fsname(const char *config)
{
	char real[PATH_MAX], *pub = NULL, *out = NULL;

	if (config_is_url(config)) {
		pub = log_url_public(config);
		if (!pub)
			return NULL;
		config = pub;
	} else if (realpath(config, real)) {
		config = real;
	}
	if (asprintf(&out, "modelfs:%s", config) < 0)
		out = NULL;
	free(pub);
	return out;
}

/* libfuse mounts on /dev/fd/N as on an open /dev/fuse (mount.fuse3's
 * drop_privileges, CSI drivers): no folder to prepare there. */
static bool is_fd_mountpoint(const char *mnt)
{
	return strncmp(mnt, "/dev/fd/", 8) == 0;
}

/* ---- systemd ------------------------------------------------------------ */

/* READY=1 for a Type=notify unit, sent only now that the mount is live,
 * with the cache's figures as its STATUS. */
static void notify_ready(struct engine *e, const char *mnt, int code)
{
	uint64_t size = 0, cached = 0;
	char a[32], b[32], msg[PATH_MAX + 256];
	int rc;

	for (size_t i = 0; i < engine_nfiles(e); i++) {
		size += engine_file_size(engine_file_at(e, i));
		cached += engine_file_cached(engine_file_at(e, i));
	}
	humanize_bytes(cached, a, sizeof(a));
	humanize_bytes(size, b, sizeof(b));
	snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%ld\nSTATUS=Mounted %s: %zu files, %s of %s "
		 "cached%s", (long)getpid(), mnt, engine_nfiles(e), a, b,
		 code == EXIT_PARTIAL ? "; some entries failed (see the log)" : "");
	rc = sdnotify(msg);
	if (rc < 0)
		log_warn("event=sd_notify_failed error=\"%s\"", strerror(-rc));
}

/* `modelfs mount`, and the mount helpers (helper: exit as mount(8)
 * expects, see helper_exit_code()). */
/* [modelfs] serve: the daemon also answers the Hub's download protocol,
 * on the mount's engine, so both share one cache and one fetch of each
 * block. 0 (nothing asked, or serving), or -errno (logged). */
static int start_serving(struct engine *engine, const struct config *cfg,
			 struct metrics_daemon *md, struct serve **out)
{
	struct serve_opts so = { .listen = cfg->serve, .prefix = cfg->serve_prefix,
				 .hub = cfg->hf_endpoint, .metrics = metrics_serve_hook,
				 .metrics_arg = md, .allow = cfg->serve_allow,
				 .allow_max = cfg->serve_allow_max };
	char *token = NULL;
	int rc;

	*out = NULL;
	if (!cfg->serve)
		return 0;
	/* Checked before mounting too (do_mount): a file gone since is an error here. */
	if (cli_serve_token(cfg->serve_token_file, cfg->serve, "modelfs", &token) != 0) {
		log_error("event=serve_failed listen=%s error=\"cannot read serve_token_file\"",
			  cfg->serve);
		return -EACCES;
	}
	so.access_token = token;
	rc = serve_open(engine, &so, out);
	secret_free(token);
	if (rc)
		log_error("event=serve_failed listen=%s error=\"%s\"", cfg->serve, strerror(-rc));
	else
		log_info("event=serving listen=%s prefix=%s files=%zu", cfg->serve,
			 cfg->serve_prefix ? cfg->serve_prefix : "", serve_nfiles(*out));
	return rc;
}

static int do_mount(int argc, char **argv, bool helper)
{
	struct cli_opts o;
	struct mount_opts mo = { 0 };
	struct config *cfg = NULL;
	struct cache *cache = NULL;
	struct engine *engine = NULL;
	struct tree *tree = NULL;
	struct fs *fs = NULL;
	struct control_server *control = NULL;
	struct prefetch_bg *warmup = NULL;
	struct retention *retention = NULL;
	struct engine_file **warm = NULL;
	struct cache_limits lim;
	struct fs_options fo = { 0 };
	struct lock *lock = NULL;
	struct serve *srv = NULL;
	struct reloader *reloader = NULL;
	struct metrics_daemon md = { 0 };
	char cache_buf[PATH_MAX], mnt_real[PATH_MAX], config_real[PATH_MAX], lock_real[PATH_MAX];
	char *fsname = NULL;
	const char *cache_dir, *mnt, *config;
	bool mnt_only;
	size_t nwarm = 0;
	int notify_fd = -1, log_fd = -1, code = EXIT_MODEL, rc;

	rc = cli_parse(argc, argv, "mount", &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	/* Decided once, now: config_arg() looks at the mountpoint, which
	 * once mounted leads to this very process. */
	config = config_arg(&o);
	mnt_only = only_mountpoint_given(&o);
	if (!config || o.nargs > (o.nmodels ? 1 : 2)) {
		fputs(o.nargs > 1 ? "modelfs mount: too many arguments (with --model, only the "
		      "MOUNTPOINT)\n" : "modelfs mount: CONFIG is missing (give a file or URL, "
		      "--model LINK, or set PROVISION_URL)\n", stderr);
		fputs(cli_usage_text, stderr);
		return EXIT_USAGE;
	}
	code = apply_mount_opts(&o, &mo);
	if (code == 0)
		code = check_allow_other(&mo);
	if (code) {
		mountopts_free(&mo);
		return code;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	rc = mount_config(&o, &cfg);
	if (rc) {
		mountopts_free(&mo);
		return cli_config_exit(rc);
	}
	/* A bad lock is a usage error before anything is mounted. */
	code = cli_mount_lock(&o, cfg, config, &lock, lock_real, sizeof(lock_real));
	if (code) {
		config_free(cfg);
		mountopts_free(&mo);
		return code;
	}
	if (cfg->serve) {
		char *token = NULL;

		code = cli_serve_token(cfg->serve_token_file, cfg->serve, "modelfs", &token);
		secret_free(token);
		if (code) {
			config_free(cfg);
			lock_free(lock);
			mountopts_free(&mo);
			return code;
		}
	}
	code = EXIT_MODEL;
	mnt = o.nargs == (o.nmodels ? 1 : 2) || mnt_only ? o.args[o.nargs - 1]
	    : cfg->mountpoint ? cfg->mountpoint : DEFAULT_MOUNTPOINT;
	cache_dir = cli_cache_dir(&o, cfg, cache_buf, sizeof(cache_buf));
	if (!is_fd_mountpoint(mnt) && prepare_mountpoint(mnt) != 0)
		goto out;
	/* Before mounting: afterwards realpath() would ask our own mount. */
	if (is_fd_mountpoint(mnt) || !realpath(mnt, mnt_real))
		snprintf(mnt_real, sizeof(mnt_real), "%s", mnt);
	/* Before the cache is opened: it would be made inside, and show up
	 * as local files at the next mount. */
	if (path_within(cache_dir, mnt_real)) {
		fprintf(stderr, "modelfs: the cache dir %s is inside the mountpoint %s; use "
			"--cache-dir elsewhere\n", cache_dir, mnt);
		code = EXIT_USAGE;
		goto out;
	}
	if (!local_entries_outside(cfg, mnt_real)) {
		code = EXIT_USAGE;
		goto out;
	}
	/* What a reload reads again, named so that it still works after the
	 * daemon's chdir("/"). */
	if (!o.nmodels && !config_is_url(config) && !realpath(config, config_real))
		snprintf(config_real, sizeof(config_real), "%s", config);
	log_set_json(o.log_json);
	if (o.log_file && !want_syslog(&o)) {
		log_fd = log_open_file(o.log_file);
		if (log_fd < 0) {
			fprintf(stderr, "modelfs: --log-file %s: %s\n", o.log_file, strerror(-log_fd));
			code = EXIT_USAGE;
			goto out;
		}
	}
	if (!o.foreground) {
		notify_fd = cli_daemonize(helper ? helper_exit_code : NULL);
		if (notify_fd < 0) {
			fprintf(stderr, "modelfs: cannot daemonize: %s\n", strerror(-notify_fd));
			goto out;
		}
	}
	/* Until the mount is live the terminal sees every line too. */
	log_init(log_fd >= 0 ? log_fd : (o.foreground ? 2 : -1), want_syslog(&o),
		 o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	log_set_console(o.foreground ? -1 : 2);
	raise_fd_limit();
	cli_limits(cfg, &lim);
	rc = cache_open(cache_dir, &lim, &cache);
	if (rc) {
		log_error("event=mount_failed error=\"cache dir %s: %s\"", cache_dir, strerror(-rc));
		goto out;
	}
	if (log_fd < 0 && !o.foreground && !want_syslog(&o)) {
		log_fd = cli_default_log(cache_dir);
		if (log_fd >= 0)
			log_init(log_fd, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	}
	/* Bound now, while the lock is ours and before the (slow) resolving:
	 * a command that connects meanwhile waits for its answer. */
	rc = control_server_open(cache_dir, &control);
	if (rc)
		log_warn("event=control_unavailable error=\"%s\" action=\"modelfs commands will not "
			 "reach this mount\"", strerror(-rc));
	rc = engine_open_locked(cfg, lock, cache, &engine);
	if (rc == 0)
		rc = tree_build(engine, cfg, cache_created(cache), NULL, &tree);
	if (rc) {
		log_error("event=mount_failed error=\"%s\"", strerror(-rc));
		goto out;
	}
	fsname = mount_fsname(config);
	fo.mountpoint = mnt_real;
	fo.cache_dir = cache_dir;
	fo.local_dir = mo.local_dir ? mo.local_dir : cfg->local_dir;
	fo.read_only = mo.read_only;
	fo.fsname = fsname;
	fo.fuse_opts = mo.fuse;
	fo.allow_other = geteuid() == 0;
	fo.uid = mo.uid >= 0 ? (uid_t)mo.uid : getuid();
	fo.gid = mo.gid >= 0 ? (gid_t)mo.gid : getgid();
	fo.umask = mo.umask >= 0 ? (mode_t)mo.umask : 0;
	fo.debug = o.debug && o.foreground;
	/* Before fs_mount(): libfuse then leaves SIGHUP to the reloader. */
	if (reload_catch_sighup() != 0)
		log_warn("event=sighup_unavailable action=\"use modelfs reload\"");
	rc = fs_mount(tree, engine, &fo, &fs);
	md = (struct metrics_daemon){ .engine = engine, .cache = cache, .cache_dir = cache_dir };
	if (rc == 0)
		rc = engine_start(engine);
	if (rc == 0 && engine_prefetch_headers(engine) != 0)
		log_warn("event=header_prefetch_failed error=\"cannot start its thread\"");
	if (rc == 0)
		rc = start_serving(engine, cfg, &md, &srv);
	if (rc == 0) {
		struct reload_opts ro = {
			.config = o.nmodels ? NULL : config_is_url(config) ? config : config_real,
			.layout = o.layout, .cache_dir = cache_dir,
			.lock = lock ? lock_real : NULL, .lock_now = lock,
			.serve = srv,
			.empty_mtime = cache_created(cache),
		};

		rc = reloader_new(&ro, cfg, engine, fs, &reloader);
		if (rc == 0 && reloader_listen(reloader) != 0)
			log_warn("event=sighup_unavailable action=\"use modelfs reload\"");
	}
	if (rc) {
		code = rc == -EINVAL ? EXIT_USAGE : EXIT_MODEL;
		goto out;
	}
	log_info("event=mounted mountpoint=%s files=%zu cache_dir=%s version=%s", mnt,
		 engine_nfiles(engine), cache_dir, MODELFS_VERSION);
	/* Said before the parent exits, while stderr is still the caller's. */
	code = report_mount(engine, cfg, config, mnt);
	cli_notify_parent(notify_fd, code);
	notify_ready(engine, mnt, code);
	log_set_console(-1);
	if (notify_fd >= 0) {
		close(notify_fd);
		notify_fd = -1;
		if (chdir("/") != 0)
			log_warn("event=chdir error=\"%s\"", strerror(errno));
		cli_detach_stdio(log_fd);
	}
	/* Their threads log: started once the log goes only where it stays
	 * (a connection made meanwhile waits in the socket's backlog). */
	if (control) {
		struct control_ctx ctx = { .engine = engine, .cache = cache, .mountpoint = mnt_real,
					   .cache_dir = cache_dir, .connections = cfg->connections,
					   .serve = srv, .serving = srv ? cfg->serve : NULL,
					   .reloader = reloader };

		rc = control_server_start(control, &ctx);
		if (rc)
			log_warn("event=control_unavailable error=\"%s\"", strerror(-rc));
	}
	if (cfg->cache_ttl_sec > 0 && retention_start(cache, cfg->cache_ttl_sec, &retention) != 0)
		log_warn("event=cache_ttl_unavailable error=\"cannot start the retention pass\"");
	if (warm_files(engine, cfg, mnt_real, &warm, &nwarm) == 0 && nwarm > 0 &&
	    prefetch_bg_start(engine, warm, nwarm, cfg->connections, &warmup) != 0)
		log_warn("event=warmup_failed error=\"cannot start the background prefetch\"");
	rc = fs_run(fs);
	code = rc ? EXIT_MODEL : 0;
	log_info("event=unmounting mountpoint=%s", mnt);
	sdnotify("STOPPING=1\nSTATUS=Unmounting");
out:
	cli_notify_parent(notify_fd, code);
	/* Commands, the server and the warmup use the engine: they go first. */
	control_server_stop(control);
	reloader_stop(reloader);
	serve_close(srv);
	prefetch_bg_stop(warmup);
	retention_stop(retention);
	/* Stop fetches first: their replies need the session. */
	if (engine)
		engine_close(engine);
	fs_unmount(fs);
	tree_free(tree);
	reloader_free(reloader);	/* the configs files and trees pointed into */
	cache_close(cache);
	config_free(cfg);
	lock_free(lock);
	free(warm);
	free(fsname);
	mountopts_free(&mo);
	if (log_fd >= 0)
		close(log_fd);
	return code;
}

static int cli_mount(int argc, char **argv)
{
	return do_mount(argc, argv, false);
}

/* ---- mount helpers -------------------------------------------------------- */

/* Called as mount.fuse.modelfs or mount.modelfs: mount(8) and fstab run
 *   mount.fuse.modelfs SOURCE MOUNTPOINT [-sfnvrw] [-N NS] [-o OPTS] [-t TYPE]
 * and mount.fuse3 runs `modelfs SOURCE MOUNTPOINT -o OPTS` (then we are
 * called as modelfs). SOURCE is modelfs:/abs/config.toml, or the path or
 * URL alone. Daemonizes, returns once the mount is live; exits 0 when it
 * is, even with failed entries (warned about), as mount(8) expects. */
static bool is_helper_name(const char *argv0)
{
	const char *base = strrchr(argv0, '/');

	base = base ? base + 1 : argv0;
	return strcmp(base, "mount.fuse.modelfs") == 0 || strcmp(base, "mount.modelfs") == 0;
}

static int helper_main(int argc, char **argv)
{
	const char *pos[2] = { NULL, NULL }, *opts = NULL, *source;
	char *margv[8];
	int margc = 0, npos = 0, ch;

	optind = 1;
	opterr = 1;
	/* '-' first: positionals come in order, wherever the options are. */
	while ((ch = getopt(argc, argv, "-sfnvrwo:t:N:h")) != -1) {
		switch (ch) {
		case 1:
			if (npos == 2) {
				fprintf(stderr, "%s: too many arguments: %s\n", argv[0], optarg);
				return 1;
			}
			pos[npos++] = optarg;
			break;
		case 'o':
			opts = optarg;	/* mount(8) gives one -o, already merged */
			break;
		case 'f':
			return 0;	/* mount -f: fake it */
		case 's': case 'n': case 'v': case 'r': case 'w': case 't': case 'N':
			break;		/* sloppy, no mtab, verbose, ro (always), type, ns */
		default:
			fprintf(stderr, "usage: %s modelfs:/path/to/models.toml MOUNTPOINT "
				"[-o OPTIONS]\n", argv[0]);
			return ch == 'h' ? 0 : 1;
		}
	}
	if (npos != 2) {
		fprintf(stderr, "usage: %s modelfs:/path/to/models.toml MOUNTPOINT [-o OPTIONS]\n",
			argv[0]);
		return 1;
	}
	source = strncmp(pos[0], "modelfs:", 8) == 0 ? pos[0] + 8 : pos[0];
	/* mount(8) and systemd run helpers from anywhere, "/" at boot. */
	if (source[0] != '/' && !config_is_url(source)) {
		fprintf(stderr, "%s: the source %s must be modelfs: and an absolute path to the "
			"config (modelfs:/etc/modelfs/models.toml), or an http(s) URL\n", argv[0],
			pos[0]);
		return 1;
	}
	margv[margc++] = "mount";
	if (opts) {
		margv[margc++] = "-o";
		margv[margc++] = (char *)opts;
	}
	margv[margc++] = "--";
	margv[margc++] = (char *)source;
	margv[margc++] = (char *)pos[1];
	margv[margc] = NULL;
	return helper_exit_code(do_mount(margc, margv, true));
}

/* ---- unmount ------------------------------------------------------------ */

/* The fstype of the topmost mount at path ("fuse.modelfs"), from
 * mountinfo: asking the mount itself may hang or fail when it is dead. */
static int mount_fstype(const char *path, char *type, size_t len)
{
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int rc = -ENOENT;

	if (!mi)
		return -errno;
	while (fgets(line, sizeof(line), mi)) {
		char mnt[4096], fstype[64], *sep = strstr(line, " - ");

		/* id parent MAJ:MIN root mountpoint ... - fstype source opts */
		if (sep && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 &&
		    sscanf(sep + 3, "%63s", fstype) == 1 && strcmp(mnt, path) == 0) {
			snprintf(type, len, "%s", fstype);
			rc = 0;
		}
	}
	fclose(mi);
	return rc;
}

/* Wait up to timeout_ms for the process pid to end. */
static bool wait_gone(long pid, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/* modelfs unmount [--lazy] MOUNTPOINT: fusermount3 -u (-uz with --lazy),
 * then wait for the daemon to finish, so that a script may start another
 * mount on the same cache at once. Only ever unmounts fuse.modelfs. */
static int cli_unmount(int argc, char **argv)
{
	char real[PATH_MAX], type[64], pidbuf[24] = "";
	const char *mnt = NULL;
	bool lazy = false;
	long pid = 0;
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--lazy") == 0 || strcmp(argv[i], "-z") == 0) {
			lazy = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			puts("usage: modelfs unmount [--lazy] MOUNTPOINT");
			return 0;
		} else if (argv[i][0] == '-' || mnt) {
			fputs("usage: modelfs unmount [--lazy] MOUNTPOINT\n", stderr);
			return EXIT_USAGE;
		} else {
			mnt = argv[i];
		}
	}
	if (!mnt) {
		fputs("usage: modelfs unmount [--lazy] MOUNTPOINT\n", stderr);
		return EXIT_USAGE;
	}
	/* realpath() of a dead mount fails with ENOTCONN: take it as given. */
	if (!realpath(mnt, real))
		snprintf(real, sizeof(real), "%s", mnt);
	if (mount_fstype(real, type, sizeof(type)) != 0) {
		fprintf(stderr, "modelfs unmount: %s is not mounted\n", mnt);
		return EXIT_MODEL;
	}
	if (strcmp(type, "fuse.modelfs") != 0) {
		fprintf(stderr, "modelfs unmount: %s is a %s mount, not a modelfs one; not touched\n",
			mnt, type);
		return EXIT_MODEL;
	}
	n = getxattr(real, "user.modelfs.pid", pidbuf, sizeof(pidbuf) - 1);
	if (n > 0) {
		pidbuf[n] = '\0';
		pid = atol(pidbuf);
	}
	if (fusermount(lazy ? "-uz" : "-u", real) != 0) {
		fprintf(stderr, "modelfs unmount: fusermount3 %s %s failed%s\n", lazy ? "-uz" : "-u",
			real, lazy ? "" : "; if it is busy, close what uses it, or detach it now "
			"with modelfs unmount --lazy");
		return EXIT_MODEL;
	}
	/* A lazy unmount leaves the daemon serving open files until they are
	 * closed: there is nothing to wait for. */
	if (!lazy && pid > 0 && !wait_gone(pid, 10000)) {
		fprintf(stderr, "modelfs unmount: %s is unmounted, but its daemon (pid %ld) is still "
			"running after 10 s\n", mnt, pid);
		return EXIT_MODEL;
	}
	return 0;
}

/* ---- check ------------------------------------------------------------ */

static void print_entry_row(const char *path, const char *source, int64_t size,
			    const char *state, const char *detail)
{
	char sz[32] = "?";

	if (size >= 0)
		humanize_bytes((uint64_t)size, sz, sizeof(sz));
	printf("%-48s %-11s %10s  %-8s %s\n", path, source, sz, state, detail ? detail : "");
}

/* What check --offline can say of an entry without asking its origin. */
static void print_entry_row_offline(const struct config_entry *e)
{
	char *path = NULL;
	const char *detail = e->sha256 ? "sha256 pinned" : "not resolved (--offline)";
	int rc;

	if (e->filename)
		rc = source_join_path(e->dir, e->filename, &path);
	else if (e->source == CONFIG_SOURCE_HUGGINGFACE && !e->file)
		rc = asprintf(&path, "%s/", e->dir) < 0 ? -ENOMEM : 0;	/* a repo as a folder */
	else
		rc = asprintf(&path, "%s%s(name from the source)", e->dir, e->dir[0] ? "/" : "") < 0
			? -ENOMEM : 0;
	if (rc == 0)
		print_entry_row(path, config_source_name(e->source), e->size, "ok", detail);
	free(path);
}

/* A source = "local" entry: its path, there or not (no network either
 * way). 1 when it failed. */
static int print_local_row(const struct config_entry *e)
{
	char *path = NULL, detail[PATH_MAX + 64];
	struct stat st;
	int err = local_entry_err(e);

	if (source_join_path(e->dir, e->filename, &path) != 0)
		return 1;
	if (err)
		snprintf(detail, sizeof(detail), "%s: %s", e->path, strerror(err));
	else
		snprintf(detail, sizeof(detail), "%s", e->path);
	print_entry_row(path, "local", err || stat(e->path, &st) != 0 ? -1 : st.st_size,
			err ? "error" : "ok", detail);
	free(path);
	return err != 0;
}

static int cli_check(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	struct http_client *http = NULL;
	struct source_ctx *sources = NULL;
	struct source_paths *paths = NULL;
	int failed = 0, rc;

	rc = cli_parse(argc, argv, "check", &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	if (!config_arg(&o) || o.nargs > (o.nmodels ? 0 : 1)) {
		fputs("modelfs check: give one CONFIG (a file or URL), --model LINKs, or set "
		      "PROVISION_URL\n", stderr);
		return EXIT_USAGE;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	rc = mount_config(&o, &cfg);
	if (rc)
		return cli_config_exit(rc);
	if (!o.offline && (http_client_new(&http) != 0 || source_ctx_new(cfg, &sources) != 0 ||
			   source_paths_new(&paths) != 0)) {
		fprintf(stderr, "modelfs check: cannot start the HTTP client\n");
		config_free(cfg);
		return EXIT_MODEL;
	}
	printf("%-48s %-11s %10s  %-8s %s\n", "PATH", "SOURCE", "SIZE", "STATE", "DETAIL");
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		struct source_file *files = NULL;
		size_t n = 0;

		if (e->source == CONFIG_SOURCE_LOCAL) {
			failed += print_local_row(e);
			continue;
		}
		if (o.offline) {
			print_entry_row_offline(e);
			continue;
		}
		source_resolve(sources, http, e, &files, &n);
		for (size_t k = 0; k < n; k++)
			source_paths_claim(paths, &files[k]);	/* as the mount: a clash is an error */
		for (size_t k = 0; k < n; k++) {
			const struct source_file *f = &files[k];
			char detail[400], auth[128];

			source_auth_describe(sources, f, auth, sizeof(auth));
			if (f->err)
				snprintf(detail, sizeof(detail), "%s", f->error);
			else
				snprintf(detail, sizeof(detail), "%s%.12s%s%s%.12s auth=%s",
					 f->revision ? "rev=" : "", f->revision ? f->revision : "",
					 f->revision ? " " : "",
					 f->sha256 ? "sha256=" : f->git_sha1 ? "git=" : "etag/date",
					 f->sha256 ? f->sha256 : f->git_sha1 ? f->git_sha1 : "", auth);
			print_entry_row(f->path, config_source_name(e->source), f->size,
					f->err ? "error" : "ok", detail);
			failed += f->err != 0;
		}
		source_files_free(files, n);
	}
	http_client_free(http);
	source_paths_free(paths);
	source_ctx_free(sources);
	config_free(cfg);
	if (failed)
		fprintf(stderr, "modelfs check: %d entr%s failed\n", failed, failed == 1 ? "y" : "ies");
	return failed ? EXIT_MODEL : 0;
}

/* Tokens live in this process's memory and environment: no core dump of
 * it, and no other process of the same user reads its memory or environ
 * (/proc/PID/mem, /proc/PID/environ become root's). Sanitizer builds keep
 * it dumpable: LeakSanitizer inspects the process through ptrace. For a
 * core to debug, MODELFS_DUMPABLE=1. */
static void protect_secrets(void)
{
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	const char *keep = getenv("MODELFS_DUMPABLE");

	if ((!keep || strcmp(keep, "1") != 0) && prctl(PR_SET_DUMPABLE, 0) != 0)
		fprintf(stderr, "modelfs: cannot make the process undumpable: %s\n", strerror(errno));
#endif
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
	{ "mount", cli_mount }, { "unmount", cli_unmount }, { "umount", cli_unmount },
	{ "check", cli_check }, { "prefetch", cli_prefetch }, { "status", cli_status },
	{ "mounts", cli_mounts }, { "reload", cli_reload }, { "webui", cli_webui },
	{ "verify", cli_verify },
	{ "evict", cli_evict }, { "info", cli_info }, { "serve", cli_serve }, { "lock", cli_lock },
	{ "manifest", cli_manifest }, { "catalog", cli_catalog }, { "tier", cli_tier },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* argv[0] is the command. An unknown one gets one line (with the nearest
 * command), not the whole usage under which it would be lost. */
static int run_command(int argc, char **argv)
{
	const char *names[N_COMMANDS];
	char hint[96];

	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(argv[0], commands[i].name) == 0)
			return commands[i].run(argc, argv);
		names[i] = commands[i].name;
	}
	fprintf(stderr, "modelfs: unknown command '%s'%s; modelfs --help lists them\n", argv[0],
		suggest_word(argv[0], names, N_COMMANDS, hint, sizeof(hint)));
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	int code = EXIT_USAGE;
	bool helper = is_helper_name(argv[0]);

	protect_secrets();

	/* mount.fuse3 runs "modelfs SOURCE MOUNTPOINT -o ...": a source, not
	 * a command, where the command goes. */
	if (!helper && argc >= 3 && (strncmp(argv[1], "modelfs:", 8) == 0 || argv[1][0] == '/'))
		helper = true;
	if (argc < 2 && !helper) {
		fputs(cli_usage_text, stderr);
		return EXIT_USAGE;
	}
	if (!helper && (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)) {
		printf("modelfs %s\n", MODELFS_VERSION);
		return 0;
	}
	if (!helper && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		fputs(cli_usage_text, stdout);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Once, before any thread: libcurl's global state. */
	if (http_global_init() != 0) {
		fputs("modelfs: cannot initialise libcurl\n", stderr);
		return EXIT_MODEL;
	}
	if (helper)
		code = helper_main(argc, argv);
	else
		code = run_command(argc - 1, argv + 1);
	http_global_cleanup();
	return code;
}
