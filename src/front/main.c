/*
 * main.c: the modelfs command line. Each subcommand is a function
 * cli_<name>(argc, argv) returning the process exit code:
 *   0 ok, 1 a model (or the mount) failed, 2 usage or config error.
 * Nothing else in modelfs exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modelfs/cache.h"
#include "modelfs/config.h"
#include "modelfs/config_fetch.h"
#include "modelfs/engine.h"
#include "modelfs/fs.h"
#include "modelfs/http.h"
#include "modelfs/humanize.h"
#include "modelfs/log.h"
#include "modelfs/source.h"
#include "modelfs/tree.h"
#include "modelfs_config.h"

#define EXIT_MODEL 1
#define EXIT_USAGE 2
#define DEFAULT_MOUNTPOINT "/workspace/models"
#define FUSE_SUPER_MAGIC 0x65735546

extern char **environ;

static const char usage_text[] =
	"usage: modelfs COMMAND [OPTIONS]\n"
	"\n"
	"  mount [-f] [-o FUSEOPTS] [CONFIG [MOUNTPOINT]]\n"
	"        mount the models of CONFIG (default mountpoint " DEFAULT_MOUNTPOINT ");\n"
	"        returns when the mount is live; unmount with fusermount3 -u MOUNTPOINT\n"
	"        CONFIG is a file or an http(s) URL; default $PROVISION_URL\n"
	"  check [--offline] CONFIG\n"
	"        validate CONFIG and resolve every entry; exit 1 if any fails\n"
	"\n"
	"common options:\n"
	"  --cache-dir DIR   cache location (default $MODELFS_CACHE_DIR, the config's\n"
	"                    cache_dir, /var/cache/modelfs, or ~/.cache/modelfs)\n"
	"  --log-file FILE   daemon log (default: syslog once daemonized)\n"
	"  -d, --debug       debug logging (also MODELFS_LOG=debug)\n"
	"  -h, --help        this text;  -V, --version  the version\n"
	"\n"
	"exit codes: 0 ok, 1 a model failed, 2 usage or config error\n";

struct cli_opts {
	const char *cache_dir;
	const char *log_file;
	const char *fuse_opts;
	bool foreground;
	bool offline;
	bool debug;
	int nargs;
	char **args;
};

static int parse_opts(int argc, char **argv, struct cli_opts *o)
{
	static const struct option longopts[] = {
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "log-file", required_argument, NULL, 'l' },
		{ "offline", no_argument, NULL, 'n' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "fo:dh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->cache_dir = optarg; break;
		case 'l': o->log_file = optarg; break;
		case 'n': o->offline = true; break;
		case 'f': o->foreground = true; break;
		case 'd': o->debug = true; break;
		case 'o':
			if (o->fuse_opts) {
				fprintf(stderr, "modelfs: give -o once, with options separated by commas\n");
				return -EINVAL;
			}
			o->fuse_opts = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		default:
			fputs(usage_text, stderr);
			return -EINVAL;
		}
	}
	o->nargs = argc - optind;
	o->args = argv + optind;
	return 0;
}

/* --cache-dir, $MODELFS_CACHE_DIR, the config's cache_dir, then the
 * system or the user's cache. */
static const char *cache_dir_for(const struct cli_opts *o, const struct config *cfg,
				 char *buf, size_t len)
{
	const char *env = getenv("MODELFS_CACHE_DIR"), *home;

	if (o->cache_dir)
		return o->cache_dir;
	if (env && env[0])
		return env;
	if (cfg && cfg->cache_dir)
		return cfg->cache_dir;
	if (geteuid() == 0)
		return "/var/cache/modelfs";
	home = getenv("HOME");
	if (!home || !home[0]) {
		struct passwd *pw = getpwuid(geteuid());

		home = pw ? pw->pw_dir : "/tmp";
	}
	snprintf(buf, len, "%s/.cache/modelfs", home);
	return buf;
}

/* Load the config named on the command line (or by $PROVISION_URL): a
 * file, or a URL fetched into the cache dir. 0, -EINVAL for a bad config
 * (exit 2), other -errno when a URL could not be had (exit 1). */
static int load_config(const struct cli_opts *o, const char *arg, struct config **cfg)
{
	struct config_error err;
	char cache_buf[PATH_MAX], *fetched = NULL;
	const char *path = arg;
	int rc;

	if (config_is_url(arg)) {
		rc = config_fetch(arg, cache_dir_for(o, NULL, cache_buf, sizeof(cache_buf)), &fetched);
		if (rc)
			return -EIO;	/* not the config's fault: exit 1, not 2 */
		path = fetched;
	}
	rc = config_load(path, cfg, &err);
	if (rc)
		fprintf(stderr, "modelfs: %s\n", err.msg);
	free(fetched);
	return rc;
}

/* CONFIG from the command line, else $PROVISION_URL; NULL when neither. */
static const char *config_arg(const struct cli_opts *o)
{
	const char *env = getenv("PROVISION_URL");

	if (o->nargs >= 1)
		return o->args[0];
	return env && env[0] ? env : NULL;
}

static void limits_from_config(const struct config *cfg, struct cache_limits *lim)
{
	lim->max_bytes = cfg->cache_max_size;
	lim->max_percent = cfg->cache_max_percent;
	lim->min_free_bytes = cfg->cache_min_free;
	lim->min_free_percent = cfg->cache_min_free_percent;
}

/* ---- mount ------------------------------------------------------------ */

/* Run fusermount3 -uz on a mountpoint whose daemon died; 0 if it worked. */
static int lazy_unmount(const char *mnt)
{
	char *const argv[] = { "fusermount3", "-uz", (char *)mnt, NULL };
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
		if (lazy_unmount(mnt) != 0 || statfs(mnt, &sfs) != 0) {
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
static bool path_within(const char *inner, const char *outer)
{
	char a[PATH_MAX], b[PATH_MAX];
	size_t n;

	if (!realpath(inner, a) || !realpath(outer, b))
		return false;
	n = strlen(b);
	return strncmp(a, b, n) == 0 && (a[n] == '/' || a[n] == '\0');
}

/* Tell the waiting parent how the mount went: one byte, the exit code. */
static void notify_parent(int fd, int code)
{
	unsigned char c = (unsigned char)code;

	if (fd >= 0 && write(fd, &c, 1) != 1)
		log_warn("event=notify_parent error=\"%s\"", strerror(errno));
}

/* Fork; the parent waits until the child says the mount is live (or
 * failed) and exits with that code. Returns the pipe end in the child. */
static int daemonize(void)
{
	int pfd[2];
	pid_t pid;
	unsigned char code = EXIT_MODEL;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &code, 1) != 1)
			code = EXIT_MODEL;	/* the child died before it could say */
		_exit(code);
	}
	close(pfd[0]);
	setsid();
	return pfd[1];
}

/* A daemon keeps no terminal; its stderr goes to the log file when there
 * is one, so that a crash or a sanitizer report is not lost. */
static void detach_stdio(int log_fd)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(log_fd >= 0 ? log_fd : fd, 2);
	if (fd > 2)
		close(fd);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int cli_mount(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	struct cache *cache = NULL;
	struct engine *engine = NULL;
	struct tree *tree = NULL;
	struct fs *fs = NULL;
	struct cache_limits lim;
	struct fs_options fo = { 0 };
	char cache_buf[PATH_MAX];
	const char *cache_dir, *mnt;
	int notify_fd = -1, log_fd = -1, code = EXIT_MODEL, rc;

	if (parse_opts(argc, argv, &o) != 0)
		return EXIT_USAGE;
	if (!config_arg(&o) || o.nargs > 2) {
		fputs(o.nargs > 2 ? "modelfs mount: too many arguments\n" : "modelfs mount: CONFIG is "
		      "missing (give a file or URL, or set PROVISION_URL)\n", stderr);
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	rc = load_config(&o, config_arg(&o), &cfg);
	if (rc)
		return rc == -EINVAL || rc == -ENOENT || rc == -EISDIR ? EXIT_USAGE : EXIT_MODEL;
	mnt = o.nargs == 2 ? o.args[1] : cfg->mountpoint ? cfg->mountpoint : DEFAULT_MOUNTPOINT;
	cache_dir = cache_dir_for(&o, cfg, cache_buf, sizeof(cache_buf));
	if (prepare_mountpoint(mnt) != 0)
		goto out;
	if (o.log_file) {
		log_fd = open(o.log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (log_fd < 0) {
			fprintf(stderr, "modelfs: --log-file %s: %s\n", o.log_file, strerror(errno));
			code = EXIT_USAGE;
			goto out;
		}
	}
	if (!o.foreground) {
		notify_fd = daemonize();
		if (notify_fd < 0) {
			fprintf(stderr, "modelfs: cannot daemonize: %s\n", strerror(-notify_fd));
			goto out;
		}
	}
	/* Until the mount is live the terminal sees every line too. */
	log_init(log_fd >= 0 ? log_fd : (o.foreground ? 2 : -1), log_fd < 0 && !o.foreground,
		 o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	log_set_console(o.foreground ? -1 : 2);
	raise_fd_limit();
	limits_from_config(cfg, &lim);
	rc = cache_open(cache_dir, &lim, &cache);
	if (rc) {
		log_error("event=mount_failed error=\"cache dir %s: %s\"", cache_dir, strerror(-rc));
		goto out;
	}
	if (path_within(cache_dir, mnt)) {
		log_error("event=mount_failed error=\"the cache dir %s is inside the mountpoint %s; "
			  "use --cache-dir elsewhere\"", cache_dir, mnt);
		code = EXIT_USAGE;
		goto out;
	}
	rc = engine_open(cfg, cache, &engine);
	if (rc == 0)
		rc = tree_build(engine, cfg->dirs, store_created(cache_store(cache)), &tree);
	if (rc) {
		log_error("event=mount_failed error=\"%s\"", strerror(-rc));
		goto out;
	}
	fo.mountpoint = mnt;
	fo.fuse_opts = o.fuse_opts;
	fo.allow_other = geteuid() == 0;
	fo.debug = o.debug && o.foreground;
	rc = fs_mount(tree, engine, &fo, &fs);
	if (rc == 0)
		rc = engine_start(engine);
	if (rc) {
		code = rc == -EINVAL ? EXIT_USAGE : EXIT_MODEL;
		goto out;
	}
	log_info("event=mounted mountpoint=%s files=%zu cache_dir=%s version=%s", mnt,
		 engine_nfiles(engine), cache_dir, MODELFS_VERSION);
	notify_parent(notify_fd, 0);
	log_set_console(-1);
	if (notify_fd >= 0) {
		close(notify_fd);
		notify_fd = -1;
		if (chdir("/") != 0)
			log_warn("event=chdir error=\"%s\"", strerror(errno));
		detach_stdio(log_fd);
	}
	rc = fs_run(fs);
	code = rc ? EXIT_MODEL : 0;
	log_info("event=unmounting mountpoint=%s", mnt);
out:
	notify_parent(notify_fd, code);
	/* Stop fetches first: their replies need the session. */
	if (engine)
		engine_close(engine);
	fs_unmount(fs);
	tree_free(tree);
	cache_close(cache);
	config_free(cfg);
	if (log_fd >= 0)
		close(log_fd);
	return code;
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
	if (!source_supported(e->source))
		detail = "valid; this build does not fetch this source yet";
	if (rc == 0)
		print_entry_row(path, config_source_name(e->source), e->size, "ok", detail);
	free(path);
}

static int cli_check(int argc, char **argv)
{
	struct cli_opts o;
	struct config *cfg = NULL;
	struct http_client *http = NULL;
	struct source_ctx *sources = NULL;
	int failed = 0, rc;

	if (parse_opts(argc, argv, &o) != 0)
		return EXIT_USAGE;
	if (!config_arg(&o) || o.nargs > 1) {
		fputs("modelfs check: give one CONFIG (a file or URL), or set PROVISION_URL\n", stderr);
		return EXIT_USAGE;
	}
	log_init(2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	rc = load_config(&o, config_arg(&o), &cfg);
	if (rc)
		return rc == -EINVAL || rc == -ENOENT || rc == -EISDIR ? EXIT_USAGE : EXIT_MODEL;
	if (!o.offline && (http_client_new(&http) != 0 || source_ctx_new(cfg, &sources) != 0)) {
		fprintf(stderr, "modelfs check: cannot start the HTTP client\n");
		config_free(cfg);
		return EXIT_MODEL;
	}
	printf("%-48s %-11s %10s  %-8s %s\n", "PATH", "SOURCE", "SIZE", "STATE", "DETAIL");
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		struct source_file *files = NULL;
		size_t n = 0;

		if (o.offline) {
			print_entry_row_offline(e);
			continue;
		}
		source_resolve(sources, http, e, &files, &n);
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
	source_ctx_free(sources);
	config_free(cfg);
	if (failed)
		fprintf(stderr, "modelfs check: %d entr%s failed\n", failed, failed == 1 ? "y" : "ies");
	return failed ? EXIT_MODEL : 0;
}

int main(int argc, char **argv)
{
	int code = EXIT_USAGE;

	if (argc < 2) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("modelfs %s\n", MODELFS_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Once, before any thread: libcurl's global state. */
	if (http_global_init() != 0) {
		fputs("modelfs: cannot initialise libcurl\n", stderr);
		return EXIT_MODEL;
	}
	if (strcmp(argv[1], "mount") == 0)
		code = cli_mount(argc - 1, argv + 1);
	else if (strcmp(argv[1], "check") == 0)
		code = cli_check(argc - 1, argv + 1);
	else {
		fprintf(stderr, "modelfs: unknown command '%s'\n\n", argv[1]);
		fputs(usage_text, stderr);
	}
	http_global_cleanup();
	return code;
}
