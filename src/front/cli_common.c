/*
 * cli_common.c: options, the cache's place, configs, and finding the
 * mount's daemon; shared by every subcommand (see cli.h).
 */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/config_fetch.h"
#include "modelfs/control.h"
#include "modelfs/log.h"
#include "modelfs/secret.h"

#define HELLO_TIMEOUT_MS 120000		/* a daemon answers once its mount is up */
#define BUSY_RETRIES 10			/* a daemon between its lock and its socket */

const char cli_usage_text[] =
	"usage: modelfs COMMAND [OPTIONS]\n"
	"\n"
	"  mount [-f] [-o OPTIONS] [--lock FILE] [CONFIG [MOUNTPOINT]]\n"
	"  mount [-f] [-o OPTIONS] --model LINK [--model LINK ...] [--category C] [MOUNTPOINT]\n"
	"        mount the models of CONFIG (default mountpoint " DEFAULT_MOUNTPOINT ");\n"
	"        returns when the mount is live (exit 3: live, but some entries failed)\n"
	"        CONFIG is a file or an http(s) URL; default $PROVISION_URL\n"
	"        --model: no config, just these (hf://ORG/REPO[/PATH], a Hugging Face\n"
	"        repo or file link, a CivitAI link, a URL) in category C (checkpoints)\n"
	"        OPTIONS: cache_dir=DIR,local_dir=DIR,layout=NAME,uid=U,gid=G,umask=M,\n"
	"        log_file=FILE,ro,rw,debug; libfuse's (allow_other, auto_unmount,\n"
	"        max_read=N, ...); mount(8)'s (_netdev, nofail, noauto, x-*, ...)\n"
	"        are ignored\n"
	"        --lock: exactly the files of the lock file, asking no source\n"
	"  unmount [--lazy] MOUNTPOINT\n"
	"        unmount (fusermount3 -u, or -uz with --lazy) and wait for the daemon\n"
	"  lock CONFIG [--output FILE]\n"
	"        resolve every entry and write a lock file (default models.lock):\n"
	"        commits, sizes and hashes; files without a hash are fetched to hash\n"
	"  lock --check CONFIG [--lock FILE]\n"
	"        list what changed at the sources since the lock; exit 1 if anything\n"
	"  lock --update CONFIG [ENTRY ...] [--lock FILE]\n"
	"        re-pin the named entries (all when none); the others stay as locked\n"
	"  manifest CONFIG ENTRY [--output FILE]\n"
	"        write ENTRY as a model manifest (YAML): its pinned source and every\n"
	"        file's sha256 (files whose source states none are fetched to hash)\n"
	"  catalog [search WORDS ...] [--json]\n"
	"        the built-in catalog of popular models, pinned; in a config:\n"
	"        NAME = { catalog = \"NAME\" }\n"
	"  catalog add NAME --config FILE [--category C]\n"
	"        write that entry into FILE (in the model's category unless told)\n"
	"  check [--offline] CONFIG | --model LINK [--model LINK ...] [--category C]\n"
	"        validate CONFIG and resolve every entry; exit 1 if any fails\n"
	"  prefetch [--pin] [-j N] [--json] [--config CONFIG] [PATH|ENTRY ...]\n"
	"        fetch and verify files (all when none named), through the mount\n"
	"        using the cache, or without one when --config is given\n"
	"  prefetch --into DIR [--keep-cache] --config CONFIG [PATH|ENTRY ...]\n"
	"        no FUSE: put each file, verified, under DIR in the layout\n"
	"  status [--json] [--history[=N]] [--metrics] [--config CONFIG] [PATH]\n"
	"        every file's size, cached bytes and state; cache totals;\n"
	"        what a serve served; --metrics: the Prometheus text\n"
	"  mounts [--json]\n"
	"        every modelfs mount on this machine, live or stale\n"
	"  reload [--json] [MOUNTPOINT]\n"
	"        the mount re-reads its config (as SIGHUP does): entries added\n"
	"        appear, removed ones go once closed; exit 1 if it does not load\n"
	"  webui comfyui|forge --config CONFIG [--base MOUNTPOINT]\n"
	"        ComfyUI's extra_model_paths.yaml, or Forge's folder flags, for the mount\n"
	"  webui forge-hashes|a1111-hashes DATA_DIR --config CONFIG [--base MOUNTPOINT]\n"
	"        fill the webui's hash cache (DATA_DIR/cache.json) from the mount\n"
	"        (A1111: checkpoints only; it hashes a LoRA's tensor data itself)\n"
	"  verify [--json] [--config CONFIG] [PATH|ENTRY ...]\n"
	"        re-check cached blocks and hashes; drop anything bad (exit 1)\n"
	"  evict [--force] [--json] [--config CONFIG] [PATH|ENTRY ...]\n"
	"        free the cache of files (pinned ones only with --force), or\n"
	"        with none named, trim the cache to its limits\n"
	"  evict --unused-for DURATION [PATH|ENTRY ...]\n"
	"        free the files not read for DURATION (\"30d\"), pinned ones excepted;\n"
	"        every file in the cache when none are named\n"
	"  info [--json] [--config CONFIG] FILE\n"
	"        tensors, dtypes, parameters and GPU memory of a .safetensors\n"
	"        or .gguf file, from its header only\n"
	"  serve [--listen ADDR:PORT] [--prefix /PATH] [--token-file FILE] [--daemon]\n"
	"        [--config] CONFIG\n"
	"        serve CONFIG's Hugging Face files over the Hub's download\n"
	"        protocol (HF_ENDPOINT=http://ADDR:PORT/PATH) until SIGTERM\n"
	"        (--daemon: in the background, exit 0 once listening);\n"
	"        default 127.0.0.1:8080; another address needs --token-file\n"
	"  tier nginx [--listen ADDR] [--cache DIR] [--max-size N] [--origin HOST ...]\n"
	"        print an nginx config for a shared cache tier (cache_proxy)\n"
	"\n"
	"common options:\n"
	"  --cache-dir DIR   cache location (default $MODELFS_CACHE_DIR, the config's\n"
	"                    cache_dir, /var/cache/modelfs, or ~/.cache/modelfs)\n"
	"  --log-file FILE   daemon log (default: CACHE_DIR/modelfs.log once in the\n"
	"                    background; \"syslog\" for syslog)\n"
	"  --log-format text|json  log lines as text (default) or JSON objects\n"
	"  -d, --debug       debug logging (also -o debug, MODELFS_LOG=debug)\n"
	"  -h, --help        this text;  -V, --version  the version\n"
	"\n"
	"status, prefetch, verify, evict, info and reload given a path inside a mount,\n"
	"or run from inside one, ask that mount whatever --cache-dir says.\n"
	"\n"
	"exit codes: 0 ok, 1 a model failed, 2 usage or config error, 3 mounted (or\n"
	"reloaded) with failed entries, 130 interrupted. As mount.fuse.modelfs (mount\n"
	"-t fuse.modelfs, fstab): 0 mounted (failed entries warned about), 1 usage,\n"
	"32 mount failed\n";

/* Which options each command takes (by long name). */
static const struct {
	const char *cmd;
	const char *opts;
} allowed[] = {
	{ "mount", " foreground fuse-opts log-file log-format lock model category " },
	{ "lock", " output lock check update " },
	{ "manifest", " output " },
	{ "catalog", " json config category " },
	{ "check", " offline model category " },
	{ "prefetch", " pin jobs config json into keep-cache " },
	{ "status", " json history config metrics " },
	{ "mounts", " json " },
	{ "reload", " json " },
	{ "webui", " config base " },
	{ "verify", " json config " },
	{ "evict", " force json config unused-for " },
	{ "info", " json config " },
	{ "serve", " config listen prefix log-file token-file daemon " },
};

static bool takes(const char *cmd, const char *opt)
{
	char word[40];

	snprintf(word, sizeof(word), " %s ", opt);
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(allowed[i].cmd, cmd) == 0)
			return strstr(allowed[i].opts, word) != NULL;
	return false;
}

int cli_write_whole(const char *path, int (*fill)(FILE *f, void *arg), void *arg)
{
	char tmp[PATH_MAX];
	struct stat st;
	FILE *f;
	int rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	rc = fill(f, arg);
	if ((fflush(f) != 0 || fsync(fileno(f)) != 0) && !rc)
		rc = -errno;
	if (stat(path, &st) == 0)
		fchmod(fileno(f), st.st_mode & 07777);
	if (fclose(f) != 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* `modelfs CMD --help`: CMD's own lines of the usage text (each form of
 * it and the indented lines under them), then the common options and the
 * exit codes; the usage text stays the one place they are written. */
static void print_command_help(const char *cmd)
{
	size_t n = strlen(cmd);
	bool mine = false;

	fputs("usage:\n", stdout);
	for (const char *line = cli_usage_text; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
		bool form = len > 2 && line[0] == ' ' && line[1] == ' ' && line[2] != ' ';

		if (form)
			mine = strncmp(line + 2, cmd, n) == 0 && (line[2 + n] == ' ' ||
								  line[2 + n] == '\n');
		else if (len <= 1 || line[0] != ' ')
			mine = false;
		if (mine && form)
			printf("  modelfs %.*s", (int)len - 2, line + 2);
		else if (mine)
			fwrite(line, 1, len, stdout);
		line += len;
	}
	fputs(strstr(cli_usage_text, "\ncommon options:") ?: "", stdout);
}

int cli_parse(int argc, char **argv, const char *cmd, struct cli_opts *o)
{
	static const struct option longopts[] = {
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "config", required_argument, NULL, 'C' },
		{ "log-file", required_argument, NULL, 'l' },
		{ "offline", no_argument, NULL, 'n' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'J' },
		{ "pin", no_argument, NULL, 'p' },
		{ "force", no_argument, NULL, 'F' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "history", optional_argument, NULL, 'H' },
		{ "into", required_argument, NULL, 'I' },
		{ "keep-cache", no_argument, NULL, 'K' },
		{ "log-format", required_argument, NULL, 'G' },
		{ "base", required_argument, NULL, 'B' },
		{ "model", required_argument, NULL, 'M' },
		{ "category", required_argument, NULL, 'Y' },
		{ "listen", required_argument, NULL, 'L' },
		{ "prefix", required_argument, NULL, 'P' },
		{ "token-file", required_argument, NULL, 'k' },
		{ "metrics", no_argument, NULL, 'm' },
		{ "daemon", no_argument, NULL, 'D' },
		{ "output", required_argument, NULL, 'O' },
		{ "lock", required_argument, NULL, 'X' },
		{ "check", no_argument, NULL, 'Q' },
		{ "update", no_argument, NULL, 'U' },
		{ "unused-for", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct { int ch; const char *name; } names[] = {
		{ 'C', "config" }, { 'l', "log-file" }, { 'n', "offline" }, { 'f', "foreground" },
		{ 'o', "fuse-opts" }, { 'J', "json" }, { 'p', "pin" }, { 'F', "force" },
		{ 'j', "jobs" }, { 'H', "history" }, { 'I', "into" }, { 'K', "keep-cache" },
		{ 'G', "log-format" }, { 'B', "base" }, { 'M', "model" }, { 'Y', "category" },
		{ 'L', "listen" }, { 'P', "prefix" }, { 'k', "token-file" }, { 'm', "metrics" }, { 'D', "daemon" },
		{ 'O', "output" }, { 'X', "lock" }, { 'Q', "check" }, { 'U', "update" },
		{ 'T', "unused-for" },
	};
	char *end;
	int ch;

	memset(o, 0, sizeof(*o));
	o->unused_for = -1;
	optind = 1;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "fo:dhj:", longopts, NULL)) != -1) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (names[i].ch == ch && !takes(cmd, names[i].name)) {
				fprintf(stderr, "modelfs %s: --%s is not an option of %s\n", cmd,
					names[i].name, cmd);
				return -EINVAL;
			}
		switch (ch) {
		case 'c': o->cache_dir = optarg; break;
		case 'C': o->config = optarg; break;
		case 'l': o->log_file = optarg; break;
		case 'n': o->offline = true; break;
		case 'f': o->foreground = true; break;
		case 'd': o->debug = true; break;
		case 'J': o->json = true; break;
		case 'p': o->pin = true; break;
		case 'F': o->force = true; break;
		case 'I': o->into = optarg; break;
		case 'B': o->base = optarg; break;
		case 'M':
			if (o->nmodels == MAX_MODELS) {
				fprintf(stderr, "modelfs %s: at most %d --model; write a config for "
					"more\n", cmd, MAX_MODELS);
				return -EINVAL;
			}
			o->models[o->nmodels++] = optarg;
			break;
		case 'Y': o->category = optarg; break;
		case 'K': o->keep_cache = true; break;
		case 'G':
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
				fprintf(stderr, "modelfs %s: --log-format takes text or json\n", cmd);
				return -EINVAL;
			}
			o->log_json = strcmp(optarg, "json") == 0;
			break;
		case 'L': o->listen = optarg; break;
		case 'P': o->prefix = optarg; break;
		case 'k': o->token_file = optarg; break;
		case 'm': o->metrics = true; break;
		case 'D': o->daemon = true; break;
		case 'O': o->output = optarg; break;
		case 'X': o->lock = optarg; break;
		case 'Q': o->check = true; break;
		case 'U': o->update = true; break;
		case 'T':
			if (config_parse_duration(optarg, &o->unused_for) != 0) {
				fprintf(stderr, "modelfs %s: --unused-for takes a duration like "
					"\"30d\", \"12h\" or \"90m\", not \"%s\"\n", cmd, optarg);
				return -EINVAL;
			}
			break;
		case 'j':
			o->jobs = (int)strtol(optarg, &end, 10);
			if (*end || o->jobs < 1 || o->jobs > 64) {
				fprintf(stderr, "modelfs %s: -j takes a number of files from 1 to 64\n",
					cmd);
				return -EINVAL;
			}
			break;
		case 'H':
			o->history = DEFAULT_HISTORY;
			if (optarg) {
				o->history = (int)strtol(optarg, &end, 10);
				if (*end || o->history < 1 || o->history > 10000) {
					fprintf(stderr, "modelfs %s: --history=N takes 1 to 10000\n", cmd);
					return -EINVAL;
				}
			}
			break;
		case 'o': {
			size_t used = strlen(o->fuse_opts_buf);

			if (used + 1 + strlen(optarg) >= sizeof(o->fuse_opts_buf)) {
				fprintf(stderr, "modelfs: -o options longer than %zu bytes\n",
					sizeof(o->fuse_opts_buf) - 1);
				return -EINVAL;
			}
			snprintf(o->fuse_opts_buf + used, sizeof(o->fuse_opts_buf) - used, "%s%s",
				 used ? "," : "", optarg);
			o->fuse_opts = o->fuse_opts_buf;
			break;
		}
		case 'h':
			print_command_help(cmd);
			return 1;
		default:
			fputs(cli_usage_text, stderr);
			return -EINVAL;
		}
	}
	if (o->category && !o->nmodels && strcmp(cmd, "catalog") != 0) {
		fprintf(stderr, "modelfs %s: --category goes with --model LINK\n", cmd);
		return -EINVAL;
	}
	if (o->keep_cache && !o->into) {
		fprintf(stderr, "modelfs %s: --keep-cache goes with --into DIR\n", cmd);
		return -EINVAL;
	}
	o->nargs = argc - optind;
	o->args = argv + optind;
	return 0;
}

const char *cli_cache_dir(const struct cli_opts *o, const struct config *cfg, char *buf,
			  size_t len)
{
	const char *env = getenv("MODELFS_CACHE_DIR"), *home;

	if (o->cache_dir)
		return o->cache_dir;
	if (o->into) {
		snprintf(buf, len, "%s/%s", o->into, INTO_CACHE);
		return buf;
	}
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

int cli_load_config(const struct cli_opts *o, const char *arg, struct config **cfg)
{
	struct config_error err;
	char cache_buf[PATH_MAX], *fetched = NULL;
	const char *path = arg;
	int rc;

	if (config_is_url(arg)) {
		rc = config_fetch(arg, cli_cache_dir(o, NULL, cache_buf, sizeof(cache_buf)), &fetched);
		/* Not there, refused, or a web page: the URL is wrong (exit 2);
		 * else the network or the server failed (exit 1). */
		if (rc)
			return rc == -ENOENT || rc == -EACCES || rc == -EPROTO ? -EINVAL : -EIO;
		path = fetched;
	}
	rc = config_load_layout(path, o->layout, cfg, &err);
	if (rc)
		fprintf(stderr, "modelfs: %s\n", err.msg);
	free(fetched);
	return rc;
}

int cli_config_exit(int rc)
{
	return rc == -EINVAL || rc == -ENOENT || rc == -EISDIR ? EXIT_USAGE : EXIT_MODEL;
}

void cli_limits(const struct config *cfg, struct cache_limits *lim)
{
	lim->max_bytes = cfg->cache_max_size;
	lim->max_percent = cfg->cache_max_percent;
	lim->min_free_bytes = cfg->cache_min_free;
	lim->min_free_percent = cfg->cache_min_free_percent;
}

/* ---- finding the daemon ------------------------------------------------------ */

/* Connected: say hello, learn where it is mounted. 0 or -errno. */
static int hello(struct cli_target *t)
{
	struct control_reader r;
	json_t *req = json_pack("{s:s}", "cmd", "hello"), *reply = NULL;
	int rc = control_send(t->fd, req);

	json_decref(req);
	control_reader_init(&r, t->fd);
	if (rc == 0)
		rc = control_read(&r, HELLO_TIMEOUT_MS, &reply);
	control_reader_clear(&r);
	if (rc)
		return rc;
	if (!json_is_true(json_object_get(reply, "ok"))) {
		fprintf(stderr, "modelfs: the mount using %s refused: %s\n", t->cache_dir,
			json_string_value(json_object_get(reply, "error")) ?: "no reason given");
		json_decref(reply);
		return -EACCES;
	}
	t->mountpoint = json_string_value(json_object_get(reply, "mountpoint"))
		? strdup(json_string_value(json_object_get(reply, "mountpoint"))) : NULL;
	t->pid = (long)json_integer_value(json_object_get(reply, "pid"));
	json_decref(reply);
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Whether addr ("127.0.0.1:8080", "[::1]:8080") is a loopback address.
 * Anything else would offer the cache, and what the server's tokens
 * fetched, to the network: that waits for client tokens (issue 14, 4). */
bool cli_listen_is_loopback(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	struct in_addr a4;
	char host[64];
	size_t n = colon ? (size_t)(colon - addr) : 0;

	if (!colon || n == 0 || n >= sizeof(host))
		return true;	/* not an address: serve_open() says so */
	memcpy(host, addr, n);
	host[n] = '\0';
	if (strcmp(host, "[::1]") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return host[0] != '[';	/* a name or garbage: serve_open() refuses it */
}

/* An access token other local users can read is anyone's on this box. */
static void warn_if_shared(const char *path, const char *who)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "%s: warning: the token file %s can be read by other users (mode "
			"%04o): chmod 600 %s\n", who, path, (unsigned)(st.st_mode & 07777), path);
}

int cli_serve_token(const char *path, const char *listen, const char *who, char **out)
{
	int rc;

	*out = NULL;
	if (!path) {
		if (cli_listen_is_loopback(listen))
			return 0;
		fprintf(stderr, "%s: %s is not a loopback address: serving beyond this machine "
			"needs an access token that clients send as their HF_TOKEN; give "
			"--token-file FILE (serve_token_file in [modelfs])\n", who, listen);
		return EXIT_USAGE;
	}
	rc = secret_read_file(path, out);
	if (rc == 0 && strlen(*out) < 16) {
		secret_free(*out);
		*out = NULL;
		fprintf(stderr, "%s: the token in %s is too short: use at least 16 characters "
			"(openssl rand -hex 32)\n", who, path);
		return EXIT_USAGE;
	}
	if (rc)
		fprintf(stderr, "%s: cannot read the token file %s: %s\n", who, path,
			rc == -ENODATA ? "it is empty" : strerror(-rc));
	else
		warn_if_shared(path, who);
	return rc ? EXIT_USAGE : 0;
}

/* ---- finding the mount a path lies in -------------------------------------- */

static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

int cli_mounts_list(char ***out, size_t *n)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL, **list = NULL;
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *fields[10], *save = NULL, *tok, **grown;
		int nf = 0;
		char *dash = strstr(line, " - ");

		if (!dash || strncmp(dash + 3, MOUNT_FSTYPE " ", strlen(MOUNT_FSTYPE) + 1) != 0)
			continue;
		*dash = '\0';
		for (tok = strtok_r(line, " ", &save); tok && nf < 10; tok = strtok_r(NULL, " ", &save))
			fields[nf++] = tok;
		if (nf < 5)
			continue;
		unescape_mountinfo(fields[4]);
		grown = realloc(list, (*n + 1) * sizeof(*list));
		if (!grown || !(grown[*n] = strdup(fields[4]))) {
			list = grown ? grown : list;
			rc = -ENOMEM;
			break;
		}
		list = grown;
		(*n)++;
	}
	free(line);
	fclose(f);
	*out = list;
	return rc;
}

void cli_mounts_free(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* A question put to a mount (a stat, a realpath, a getxattr) waits for
 * ever when its daemon is stopped or stuck, and so would a script calling
 * modelfs status. Each is asked in a child with a deadline: a FUSE wait
 * ends at SIGKILL. fn writes at most len bytes to out; its rc, or
 * -ETIMEDOUT. */
#define MOUNT_ANSWER_MS 3000

static int ask_within(int (*fn)(const void *arg, char *out, size_t len), const void *arg,
		      char *out, size_t len)
{
	struct pollfd p = { .events = POLLIN };
	int fds[2], rc = -ETIMEDOUT, answer;
	size_t got = 0;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		answer = fn(arg, out, len);
		if (write(fds[1], &answer, sizeof(answer)) == (ssize_t)sizeof(answer) &&
		    write(fds[1], out, len) == (ssize_t)len)
			_exit(0);
		_exit(1);
	}
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		return -errno;
	}
	p.fd = fds[0];
	/* The child writes well under a pipe's capacity, then exits. */
	while (poll(&p, 1, MOUNT_ANSWER_MS) > 0) {
		ssize_t n = got < sizeof(answer) ? read(fds[0], (char *)&answer + got,
							 sizeof(answer) - got)
						 : read(fds[0], out + got - sizeof(answer),
							 len - (got - sizeof(answer)));

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(answer) + len) {
			rc = answer;
			break;
		}
	}
	close(fds[0]);
	if (got != sizeof(answer) + len) {
		kill(pid, SIGKILL);
		rc = got ? -EIO : -ETIMEDOUT;
	}
	waitpid(pid, NULL, 0);
	return rc;
}

/* The absolute form of path, resolved where it can be (a path inside a
 * stale or hung mount cannot: then it is taken as written, from the cwd). */
static void absolute(const char *path, bool resolve, char *out, size_t len)
{
	char cwd[PATH_MAX];

	if (resolve && realpath(path, out))
		return;
	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(out, len, "%s", path);
	else if (snprintf(out, len, "%s/%s", cwd, path) >= (int)len)
		out[0] = '\0';		/* too long to lie in any mount we could name */
}

static int mount_of(const char *path, bool resolve, char *mnt, size_t mntlen)
{
	char abs[PATH_MAX], **list = NULL;
	size_t n = 0, best = 0;
	int rc;

	absolute(path, resolve, abs, sizeof(abs));
	rc = cli_mounts_list(&list, &n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		size_t len = strlen(list[i]);

		if (len > best && strncmp(abs, list[i], len) == 0 &&
		    (abs[len] == '/' || abs[len] == '\0' || len == 1)) {
			best = len;
			snprintf(mnt, mntlen, "%s", list[i]);
		}
	}
	cli_mounts_free(list, n);
	return rc ? rc : best ? 0 : -ENOENT;
}

static int mount_of_resolved(const void *path, char *mnt, size_t mntlen)
{
	return mount_of(path, true, mnt, mntlen);
}

int cli_mount_of(const char *path, char *mnt, size_t mntlen)
{
	int rc = ask_within(mount_of_resolved, path, mnt, mntlen);

	return rc == -ETIMEDOUT ? mount_of(path, false, mnt, mntlen) : rc;
}

static int mount_cache_dir(const void *mnt, char *out, size_t len)
{
	ssize_t n = getxattr(mnt, "user.modelfs.cache_dir", out, len - 1);

	if (n < 0)
		return -errno;
	out[n] = '\0';
	return 0;
}

int cli_mount_cache_dir(const char *mnt, char *out, size_t len)
{
	return ask_within(mount_cache_dir, mnt, out, len);
}

static int path_there(const void *path, char *out, size_t len)
{
	struct stat st;

	(void)out;
	(void)len;
	return stat(path, &st) == 0 ? 0 : -errno;
}

/* A path among the arguments, or the working directory: the mount it lies
 * in overrides --cache-dir. 0 with t->cache_dir set, -ENOENT when none is
 * in a modelfs mount, or an exit code with a message printed (a stale
 * mount). */
static int target_from_path(const struct cli_opts *o, const char *cmd, struct cli_target *t)
{
	char mnt[PATH_MAX], cwd[PATH_MAX];
	const char *path = NULL;
	bool hung = false;
	int rc;

	for (int i = 0; i < o->nargs && !path; i++) {
		rc = ask_within(path_there, o->args[i], NULL, 0);
		if (rc == 0 || rc == -ENOTCONN || rc == -ETIMEDOUT)
			path = o->args[i];
		hung = rc == -ETIMEDOUT;
	}
	if (!path)
		path = getcwd(cwd, sizeof(cwd)) ? cwd : NULL;
	/* A path that did not answer is in a hung mount: asked no more. */
	if (!path || (hung ? mount_of(path, false, mnt, sizeof(mnt))
			   : cli_mount_of(path, mnt, sizeof(mnt))) != 0)
		return -ENOENT;
	rc = hung ? -ETIMEDOUT : cli_mount_cache_dir(mnt, t->cache_buf, sizeof(t->cache_buf));
	if (rc == -ENOTCONN) {
		fprintf(stderr, "modelfs %s: the mount at %s is stale (its daemon is gone); recover "
			"with: fusermount3 -uz %s, then mount it again\n", cmd, mnt, mnt);
		return EXIT_MODEL;
	}
	if (rc == -ETIMEDOUT) {
		fprintf(stderr, "modelfs %s: the mount at %s does not answer (its daemon is stopped "
			"or stuck); %s\n", cmd, mnt, CLI_HUNG_RECOVER);
		return EXIT_MODEL;
	}
	if (rc)
		return -ENOENT;		/* an older modelfs: fall back to --cache-dir */
	t->cache_dir = t->cache_buf;
	return 0;
}

/* Has dir ever held a cache (its index)? */
static bool cache_exists(const char *dir)
{
	char index[PATH_MAX];

	snprintf(index, sizeof(index), "%s/index.sqlite", dir);
	return access(index, F_OK) == 0;
}

/* cli_target_open() without the cleanup of a failure. */
static int target_open(const struct cli_opts *o, bool need_config, const char *cmd,
		       struct cli_target *t)
{
	struct config_error err;
	struct cache_limits lim;
	enum log_level level;
	int rc;

	memset(t, 0, sizeof(*t));
	t->fd = -1;
	if (o->config) {
		rc = cli_load_config(o, o->config, &t->cfg);
		if (rc)
			return cli_config_exit(rc);
	} else if (config_parse("", 0, "(defaults)", &t->defaults, &err) != 0) {
		fprintf(stderr, "modelfs: %s\n", err.msg);
		return EXIT_MODEL;
	}
	rc = o->into ? -ENOENT : target_from_path(o, cmd, t);
	if (rc > 0)
		return rc;
	if (rc < 0)
		t->cache_dir = cli_cache_dir(o, t->cfg, t->cache_buf, sizeof(t->cache_buf));
	for (int attempt = 0;; attempt++) {
		rc = control_connect(t->cache_dir, &t->fd);
		if (rc == 0) {
			rc = hello(t);
			if (rc == 0)
				return 0;
			close(t->fd);
			t->fd = -1;
			if (rc == -EACCES)
				return EXIT_MODEL;
			fprintf(stderr, "modelfs %s: the mount using %s does not answer: %s\n", cmd,
				t->cache_dir, strerror(-rc));
			return EXIT_MODEL;
		}
		if (rc != -ENOENT && rc != -ECONNREFUSED && rc != -ENOTDIR) {
			fprintf(stderr, "modelfs %s: %s/%s: %s\n", cmd, t->cache_dir, CONTROL_SOCKET,
				strerror(-rc));
			return EXIT_MODEL;
		}
		/* No daemon: the cache is ours, unless a process holds its lock. */
		if (!need_config && !cache_exists(t->cache_dir)) {
			/* status, verify and evict only look at a cache: one that is
			 * not there is a mistyped --cache-dir, not an empty cache. */
			fprintf(stderr, "modelfs %s: no cache at %s: nothing is mounted or cached "
				"with it (is --cache-dir right? modelfs mounts lists the mounts and "
				"their caches)\n", cmd, t->cache_dir);
			return EXIT_MODEL;
		}
		if (need_config && !t->cfg) {
			fprintf(stderr, "modelfs %s: nothing is mounted with the cache %s; give "
				"--config CONFIG to %s without a mount (or --cache-dir of the mount)\n",
				cmd, t->cache_dir, cmd);
			return EXIT_USAGE;
		}
		cli_limits(cli_target_config(t), &lim);
		if (o->into && !o->cache_dir) {
			/* The files leave this cache as they are placed: its size is
			 * theirs, bounded by the disk alone. */
			lim.max_bytes = -1;
			lim.max_percent = 0;
		}
		/* Below the least level: cache_open's own line about a busy cache
		 * would come before the retries; the message below says it. */
		level = log_get_level();
		log_set_level((enum log_level)(LOG_LVL_ERROR - 1));
		rc = cache_open(t->cache_dir, &lim, &t->cache);
		log_set_level(level);
		if (rc == 0)
			return 0;
		if (rc != -EBUSY || attempt >= BUSY_RETRIES) {
			if (rc == -EBUSY)
				fprintf(stderr, "modelfs %s: the cache %s is in use by another modelfs "
					"command (its pid is in %s/lock); wait for it to finish\n", cmd,
					t->cache_dir, t->cache_dir);
			else
				fprintf(stderr, "modelfs %s: cannot open the cache %s: %s\n", cmd,
					t->cache_dir, strerror(-rc));
			return EXIT_MODEL;
		}
		sleep_ms(200);	/* perhaps a mount starting: its socket comes next */
	}
}

bool cli_start(int argc, char **argv, const char *cmd, bool need_config, bool takes_args,
	       struct cli_opts *o, struct cli_target *t, int *code)
{
	int rc = cli_parse(argc, argv, cmd, o);

	if (rc) {
		*code = rc > 0 ? 0 : EXIT_USAGE;	/* --help, or a bad option */
		return false;
	}
	if (!takes_args && o->nargs) {
		fprintf(stderr, "modelfs %s: takes no arguments (it lists every file)\n", cmd);
		*code = EXIT_USAGE;
		return false;
	}
	log_init(2, 0, o->debug ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	*code = cli_target_open(o, need_config, cmd, t);
	return *code == 0;
}

int cli_target_open(const struct cli_opts *o, bool need_config, const char *cmd,
		    struct cli_target *t)
{
	int code = target_open(o, need_config, cmd, t);

	if (code)
		cli_target_close(t);
	return code;
}

void cli_target_close(struct cli_target *t)
{
	if (t->fd >= 0)
		close(t->fd);
	cache_close(t->cache);
	config_free(t->cfg);
	config_free(t->defaults);
	free(t->mountpoint);
	memset(t, 0, sizeof(*t));
	t->fd = -1;
}

const struct config *cli_target_config(const struct cli_target *t)
{
	return t->cfg ? t->cfg : t->defaults;
}

int cli_call(struct cli_target *t, json_t *req, json_t **result)
{
	struct control_reader r;
	json_t *reply = NULL;
	int rc, code = 0;

	/* A reply listing thousands of files comes a line per file. */
	rc = json_object_set_new(req, "parts", json_true()) ? -ENOMEM : control_send(t->fd, req);
	control_reader_init(&r, t->fd);
	while (rc == 0) {
		rc = control_read_reply(&r, -1, &reply);
		if (rc != -EINTR)
			break;
		if (atomic_load(&cli_interrupted)) {
			control_reader_clear(&r);
			return EXIT_INTERRUPTED;
		}
		rc = 0;
	}
	control_reader_clear(&r);
	if (rc) {
		fprintf(stderr, "modelfs: the mount did not answer: %s\n",
			rc == -EPIPE ? "it closed the connection" : strerror(-rc));
		return EXIT_MODEL;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		json_int_t c = json_integer_value(json_object_get(reply, "code"));

		fprintf(stderr, "modelfs: %s\n",
			json_string_value(json_object_get(reply, "error")) ?: "the mount refused");
		code = c == EXIT_USAGE ? EXIT_USAGE : EXIT_MODEL;
	} else {
		*result = json_incref(json_object_get(reply, "result"));
	}
	json_decref(reply);
	return code;
}

json_t *cli_paths_json(char *const *args, int n)
{
	json_t *a = json_array();

	for (int i = 0; i < n; i++) {
		char real[PATH_MAX];
		struct stat st;

		/* Run inside the mount, "x.safetensors" means the file here. */
		if (stat(args[i], &st) == 0 && realpath(args[i], real))
			json_array_append_new(a, json_string(real));
		else
			json_array_append_new(a, json_string(args[i]));
	}
	return a;
}

void cli_print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	fputc('\n', stdout);
	fflush(stdout);
}

/* ---- Ctrl-C ------------------------------------------------------------------- */

atomic_int cli_interrupted;

static void on_interrupt(int sig)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	atomic_store(&cli_interrupted, 1);
	sigaction(sig, &dfl, NULL);	/* a second Ctrl-C ends it at once */
}

void cli_catch_interrupt(void)
{
	struct sigaction sa = { .sa_handler = on_interrupt };

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;		/* no SA_RESTART: a blocked poll returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}
