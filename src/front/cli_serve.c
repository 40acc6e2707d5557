/*
 * cli_serve.c: modelfs serve. Runs the engine on the cache as a mount
 * would, without FUSE, and serves its Hugging Face files over HTTP
 * (serve.h) in the foreground until SIGTERM or SIGINT.
 *
 * One cache has one owner: when a mount's daemon answers on the cache's
 * control socket, serve says so and exits instead of opening the cache a
 * second time; while serve runs it holds the cache's lock, so no mount or
 * standalone command starts on it meanwhile (cli_target_open()).
 *
 * Signals are blocked before the first thread starts (the resolvers of
 * engine_open(), the engine's workers, libmicrohttpd's), so every thread
 * inherits the mask and the main thread alone takes them, with
 * sigwait(): the stop is ordinary code, not a signal handler.
 *
 * Beyond loopback every client must show the access token
 * (cli_serve_token()): the check is made after the config is read, since
 * serve_token_file may name the file, and before the cache is opened.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/engine.h"
#include "modelfs/control.h"
#include "modelfs/log.h"
#include "modelfs/metrics.h"
#include "modelfs/secret.h"
#include "modelfs/serve.h"

#define DEFAULT_LISTEN "127.0.0.1:8080"

static int usage(const char *why)
{
	fprintf(stderr, "modelfs serve: %s\n", why);
	fputs(cli_usage_text, stderr);
	return EXIT_USAGE;
}

int cli_serve(int argc, char **argv)
{
	struct cli_opts o;
	struct cli_target t = { .fd = -1 };
	struct serve_opts so = { 0 };
	struct engine *engine = NULL;
	struct serve *srv = NULL;
	struct control_server *control = NULL;
	struct metrics_daemon md = { 0 };
	char *token = NULL;
	const char *env = getenv("PROVISION_URL");
	sigset_t stop_sigs;
	int code = EXIT_MODEL, rc, sig = 0, log_fd = -1, notify_fd = -1;

	rc = cli_parse(argc, argv, "serve", &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;
	if (o.nargs > 1 || (o.nargs == 1 && o.config))
		return usage("give one CONFIG (a file or URL), as --config CONFIG or alone");
	if (o.nargs == 1)
		o.config = o.args[0];
	if (!o.config && env && env[0])
		o.config = env;
	if (!o.config)
		return usage("CONFIG is missing (give a file or URL, or set PROVISION_URL)");
	so.listen = o.listen ? o.listen : DEFAULT_LISTEN;
	so.prefix = o.prefix;
	if (so.prefix && so.prefix[0] && so.prefix[0] != '/')
		return usage("--prefix is a path: /huggingface");
	/* A test knob: tree pages short enough to see the Link header. */
	if (getenv("MODELFS_SERVE_TREE_PAGE"))
		so.tree_page = atoi(getenv("MODELFS_SERVE_TREE_PAGE"));
	/* Another: the Hub's answers on access kept milliseconds, not minutes. */
	if (getenv("MODELFS_SERVE_ACCESS_TTL_MS"))
		so.access_ttl_ms = atoi(getenv("MODELFS_SERVE_ACCESS_TTL_MS"));
	if (o.log_file) {
		log_fd = open(o.log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (log_fd < 0) {
			fprintf(stderr, "modelfs serve: --log-file %s: %s\n", o.log_file,
				strerror(errno));
			return EXIT_USAGE;
		}
	}
	if (o.daemon) {
		notify_fd = cli_daemonize(NULL);
		if (notify_fd < 0) {
			fprintf(stderr, "modelfs serve: cannot go to the background: %s\n",
				strerror(-notify_fd));
			return EXIT_MODEL;
		}
	}
	log_init(log_fd >= 0 ? log_fd : 2, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	if (o.daemon && log_fd >= 0)
		log_set_console(2);	/* the terminal sees the start */
	sigemptyset(&stop_sigs);
	sigaddset(&stop_sigs, SIGTERM);
	sigaddset(&stop_sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);

	code = cli_target_open(&o, true, "serve", &t);
	if (code)
		goto out;
	if (o.daemon && log_fd < 0) {
		/* Once the terminal is gone the lines go to the cache's log;
		 * until the server listens the terminal sees them too. */
		log_fd = cli_default_log(t.cache_dir);
		log_init(log_fd, 0, o.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
		log_set_console(2);
	}
	if (t.fd >= 0) {
		fprintf(stderr, "modelfs serve: the cache %s belongs to %s%s (pid %ld); "
			"one cache has one owner, so serve does not open it too: stop that %s "
			"or give serve another --cache-dir\n", t.cache_dir,
			t.mountpoint ? "the mount at " : "another modelfs serve",
			t.mountpoint ? t.mountpoint : "", t.pid, t.mountpoint ? "mount" : "server");
		code = EXIT_USAGE;
		goto out;
	}
	code = cli_serve_token(o.token_file ? o.token_file : t.cfg->serve_token_file, so.listen,
			       "modelfs serve", &token);
	if (code)
		goto out;
	so.access_token = token;
	so.hub = t.cfg->hf_endpoint;
	so.allow = t.cfg->serve_allow;
	so.allow_max = t.cfg->serve_allow_max;
	md = (struct metrics_daemon){ .cache = t.cache, .cache_dir = t.cache_dir };
	so.metrics = metrics_serve_hook;
	so.metrics_arg = &md;
	/* Bound while the lock is ours, as a mount does: commands that find
	 * it (status, prefetch) wait for their answer until it starts. */
	rc = control_server_open(t.cache_dir, &control);
	if (rc)
		log_warn("event=control_unavailable error=\"%s\" action=\"modelfs commands will not "
			 "reach this server\"", strerror(-rc));
	code = EXIT_MODEL;
	rc = engine_open(t.cfg, t.cache, &engine);
	md.engine = engine;
	if (rc == 0)
		rc = engine_start(engine);
	if (rc) {
		fprintf(stderr, "modelfs serve: cannot start the engine: %s\n", strerror(-rc));
		goto out;
	}
	rc = serve_open(engine, &so, &srv);
	if (rc) {
		fprintf(stderr, "modelfs serve: cannot serve on %s: %s\n", so.listen,
			rc == -EINVAL ? "give --listen ADDR:PORT (127.0.0.1:8080, [::1]:8080) and "
			"--prefix /PATH" : strerror(-rc));
		code = rc == -EINVAL ? EXIT_USAGE : EXIT_MODEL;
		goto out;
	}
	if (control) {
		struct control_ctx ctx = { .engine = engine, .cache = t.cache,
					   .cache_dir = t.cache_dir, .connections = t.cfg->connections,
					   .serve = srv, .serving = so.listen };

		rc = control_server_start(control, &ctx);
		if (rc)
			log_warn("event=control_unavailable error=\"%s\"", strerror(-rc));
	}
	fprintf(stderr, "modelfs serve: %zu files on http://%s%s (HF_ENDPOINT); stop with "
		"SIGTERM or Ctrl-C\n", serve_nfiles(srv), so.listen, so.prefix ? so.prefix : "");
	if (notify_fd >= 0) {
		log_info("event=serve_daemon pid=%ld", (long)getpid());
		cli_notify_parent(notify_fd, 0);
		close(notify_fd);
		notify_fd = -1;
		log_set_console(-1);
		/* The cache names its files by the dir as given: a relative
		 * one keeps the working directory. */
		if (t.cache_dir[0] == '/' && chdir("/") != 0)
			log_warn("event=chdir error=\"%s\"", strerror(errno));
		cli_detach_stdio(log_fd);
	}
	while (sigwait(&stop_sigs, &sig) != 0)
		;
	log_info("event=serve_stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	code = 0;
out:
	cli_notify_parent(notify_fd, code);
	/* Commands and connections first: they read through the engine. */
	control_server_stop(control);
	serve_close(srv);
	engine_close(engine);
	cli_target_close(&t);
	secret_free(token);
	if (log_fd >= 0) {
		log_init(2, 0, LOG_LVL_WARN);
		close(log_fd);
	}
	return code;
}
