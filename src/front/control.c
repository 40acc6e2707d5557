/*
 * control.c: the control socket of a mount (server) and the few calls a
 * command uses to talk to it (client); the protocol is in control.h.
 *
 * The server: one thread polls the listening socket and a wake pipe;
 * each accepted connection gets a thread of its own, because a prefetch
 * holds its connection for as long as it runs while status must still
 * answer. Stopping writes to the wake pipe, shuts every connection down
 * (which ends their blocking reads and writes, and cancels a prefetch)
 * and joins them all before the engine they use goes away.
 *
 * Socket paths are limited to 108 bytes; a longer cache dir is reached
 * through /proc/self/fd/N of the opened folder instead.
 */
#include "modelfs/control.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "modelfs/log.h"
#include "modelfs/metrics.h"
#include "modelfs/ops.h"
#include "modelfs/prefetch_run.h"
#include "modelfs_config.h"

#define REQUEST_TIMEOUT_MS 10000
#define IDLE_TIMEOUT_MS (10 * 60 * 1000)
#define MAX_JOBS 64

struct client {
	struct control_server *srv;
	int fd;
	pthread_t thread;
	bool used;			/* protected by srv->lock */
	bool done;			/* the thread ended, join it; protected by srv->lock */
};

struct control_server {
	char *path;			/* the socket file, as created */
	int listen_fd;
	int wake[2];			/* a byte in wake[1] ends the accept loop */
	int dir_fd;			/* for a long path, else -1 */
	struct control_ctx ctx;
	pthread_t acceptor;
	bool started;
	atomic_int stopping;
	pthread_mutex_t lock;
	struct client clients[CONTROL_MAX_CLIENTS];	/* protected by lock */
};

/* How often the acceptor checks that its socket is still there. */
#define HOME_CHECK_MS 1000

/* ---- addresses ------------------------------------------------------------ */

/* The address of cache_dir's socket; a path too long for sun_path goes
 * through the folder opened as *dir_fd (closed by the caller). */
static int socket_addr(const char *cache_dir, struct sockaddr_un *sa, int *dir_fd)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	*dir_fd = -1;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", cache_dir, CONTROL_SOCKET);
	if (n >= 0 && (size_t)n < sizeof(sa->sun_path))
		return 0;
	*dir_fd = open(cache_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dir_fd < 0)
		return -errno;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dir_fd, CONTROL_SOCKET);
	return 0;
}

/* ---- lines ------------------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Lines on their way to fd, gathered into writes of about OUT_FLUSH
 * bytes: a reply in parts is thousands of short lines. */
#define OUT_FLUSH (64 * 1024)

struct out {
	int fd;
	char *buf;
	size_t len, cap;
};

static int out_flush(struct out *o)
{
	int rc = o->len ? write_all(o->fd, o->buf, o->len) : 0;

	o->len = 0;
	return rc;
}

/* json_dump_callback's sink: append to o->buf. */
static int out_append(const char *p, size_t n, void *arg)
{
	struct out *o = arg;

	if (o->cap - o->len < n) {
		size_t cap = o->cap ? o->cap : OUT_FLUSH + 4096;
		char *grown;

		while (cap - o->len < n)
			cap *= 2;
		grown = realloc(o->buf, cap);
		if (!grown)
			return -1;
		o->buf = grown;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

/* msg as one line into o, written out once OUT_FLUSH bytes wait. */
static int out_line(struct out *o, json_t *msg)
{
	if (json_dump_callback(msg, out_append, o, JSON_COMPACT | JSON_ENSURE_ASCII) != 0 ||
	    out_append("\n", 1, o) != 0)
		return -ENOMEM;
	return o->len >= OUT_FLUSH ? out_flush(o) : 0;
}

int control_send(int fd, json_t *msg)
{
	struct out o = { .fd = fd };
	int rc = out_line(&o, msg);

	if (rc == 0)
		rc = out_flush(&o);
	free(o.buf);
	return rc;
}

void control_reader_init(struct control_reader *r, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
}

void control_reader_clear(struct control_reader *r)
{
	json_decref(r->pending);
	free(r->buf);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int control_read(struct control_reader *r, int timeout_ms, json_t **out)
{
	int64_t deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : -1;

	for (;;) {
		char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		int wait = -1;
		ssize_t n;

		if (nl) {
			size_t line = (size_t)(nl - r->buf);
			json_error_t jerr;
			json_t *j = json_loadb(r->buf, line, 0, &jerr);

			memmove(r->buf, nl + 1, r->len - line - 1);
			r->len -= line + 1;
			if (!json_is_object(j)) {
				json_decref(j);
				return -EPROTO;
			}
			*out = j;
			return 0;
		}
		if (r->len >= CONTROL_LINE_MAX)
			return -EPROTO;
		if (r->cap - r->len < 4096) {
			size_t cap = r->cap ? r->cap * 2 : 8192;
			char *grown = realloc(r->buf, cap);

			if (!grown)
				return -ENOMEM;
			r->buf = grown;
			r->cap = cap;
		}
		if (deadline >= 0) {
			wait = (int)(deadline - mono_ms());
			if (wait <= 0)
				return -ETIMEDOUT;
		}
		n = poll(&pfd, 1, wait);
		if (n < 0)
			return errno == EINTR ? -EINTR : -errno;
		if (n == 0)
			return -ETIMEDOUT;
		n = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (n < 0 && errno == EINTR)
			return -EINTR;
		if (n < 0)
			return errno == ECONNRESET ? -EPIPE : -errno;
		if (n == 0)
			return -EPIPE;
		r->len += (size_t)n;
	}
}

/* Put one part line into the pending reply's result: 0 or -EPROTO. */
static int add_part(json_t *reply, json_t *line)
{
	const char *key = json_string_value(json_object_get(line, "part"));
	json_t *to = key ? json_object_get(json_object_get(reply, "result"), key) : NULL;
	json_t *item = json_object_get(line, "item");

	if (!json_is_array(to) || !item || json_array_append(to, item) != 0)
		return -EPROTO;
	return 0;
}

int control_read_reply(struct control_reader *r, int timeout_ms, json_t **out)
{
	json_t *line = NULL;
	json_int_t parts;
	int rc;

	if (!r->pending) {
		rc = control_read(r, timeout_ms, &r->pending);
		if (rc)
			return rc;
		parts = json_integer_value(json_object_get(r->pending, "parts"));
		r->parts_left = parts > 0 ? (uint64_t)parts : 0;
		json_object_del(r->pending, "parts");
	}
	/* After -EINTR or -ETIMEDOUT the reply stays pending: a call again
	 * goes on where this one stopped. */
	while (r->parts_left > 0) {
		rc = control_read(r, timeout_ms, &line);
		if (rc == 0)
			rc = add_part(r->pending, line);
		json_decref(line);
		line = NULL;
		if (rc)
			return rc;
		r->parts_left--;
	}
	*out = r->pending;
	r->pending = NULL;
	return 0;
}

int control_connect(const char *cache_dir, int *out)
{
	struct sockaddr_un sa;
	int fd, dir_fd, rc;

	rc = socket_addr(cache_dir, &sa, &dir_fd);
	if (rc)
		return rc == -ENOENT ? -ENOENT : rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		close(fd);
		goto out;
	}
	*out = fd;
	rc = 0;
out:
	if (dir_fd >= 0)
		close(dir_fd);
	return rc;
}

/* ---- requests ------------------------------------------------------------------ */

static int reply_error(int fd, int code, const char *msg)
{
	json_t *j = json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg, "code", code);
	int rc = j ? control_send(fd, j) : -ENOMEM;

	json_decref(j);
	return rc;
}

/*
 * The reply to req, in one line or, when req allows it ("parts": true),
 * in parts (control.h): a head with every array of the result emptied,
 * then one line per element. A line then holds one file, not all of
 * them, however many entries the config has. Takes result.
 */
static int reply_result(int fd, json_t *req, json_t *result)
{
	struct out o = { .fd = fd };
	json_t *head = NULL, *msg = NULL, *v;
	const char *key;
	size_t parts = 0;
	int rc = -ENOMEM;

	if (!result)
		goto out;
	if (!json_is_true(json_object_get(req, "parts"))) {
		msg = json_pack("{s:b, s:O}", "ok", 1, "result", result);
		rc = msg ? control_send(fd, msg) : -ENOMEM;
		goto out;
	}
	head = json_copy(result);	/* shallow: the elements stay result's */
	if (!head)
		goto out;
	json_object_foreach(result, key, v) {
		if (!json_is_array(v))
			continue;
		parts += json_array_size(v);
		if (json_object_set_new(head, key, json_array()) != 0)
			goto out;
	}
	msg = json_pack("{s:b, s:O, s:I}", "ok", 1, "result", head, "parts", (json_int_t)parts);
	rc = msg ? out_line(&o, msg) : -ENOMEM;
	json_object_foreach(result, key, v) {
		json_t *item;
		size_t i;

		if (!json_is_array(v))
			continue;
		json_array_foreach(v, i, item) {
			json_t *part = json_pack("{s:s, s:O}", "part", key, "item", item);

			rc = rc ? rc : part ? out_line(&o, part) : -ENOMEM;
			json_decref(part);
		}
	}
	if (rc == 0)
		rc = out_flush(&o);
out:
	free(o.buf);
	json_decref(msg);
	json_decref(head);
	json_decref(result);
	return rc;
}

/* The request's "paths" as a NULL-terminated argv (strings borrowed from
 * req); *n of them. */
static const char **paths_of(json_t *req, size_t *n)
{
	json_t *paths = json_object_get(req, "paths"), *v;
	const char **argv;
	size_t i;

	*n = json_is_array(paths) ? json_array_size(paths) : 0;
	argv = calloc(*n + 1, sizeof(*argv));
	if (!argv)
		return NULL;
	json_array_foreach(paths, i, v) {
		if (!json_is_string(v)) {
			free(argv);
			return NULL;
		}
		argv[i] = json_string_value(v);
	}
	return argv;
}

/* A list of the engine's files and the ones the request names; on
 * failure the reply has been sent. */
static int select_files(struct client *cl, json_t *req, struct ops_list *l, bool **chosen)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	size_t nargs;
	const char **argv = paths_of(req, &nargs);
	char err[512];
	int rc;

	if (!argv)
		return reply_error(cl->fd, 2, "\"paths\" must be an array of strings"), -EINVAL;
	rc = ops_list_engine(ctx->engine, ctx->cache, l);
	if (rc == 0) {
		rc = ops_select(l, (char *const *)argv, nargs, ctx->mountpoint, chosen, err,
				sizeof(err));
		if (rc)
			ops_list_free(l);
	}
	free(argv);
	if (rc == -ENOENT)
		reply_error(cl->fd, 2, err);
	else if (rc)
		reply_error(cl->fd, 1, strerror(-rc));
	return rc;
}

static int do_hello(struct client *cl)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	json_t *j = json_pack("{s:b, s:s, s:I, s:s?, s:s, s:s?}", "ok", 1, "version",
			      MODELFS_VERSION, "pid", (json_int_t)getpid(), "mountpoint",
			      ctx->mountpoint, "cache_dir", ctx->cache_dir, "serving", ctx->serving);
	int rc = control_send(cl->fd, j);

	json_decref(j);
	return rc;
}

static int do_status(struct client *cl, json_t *req)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	json_int_t history = json_integer_value(json_object_get(req, "history"));
	struct ops_list l;
	json_t *st;
	int rc = ops_list_engine(ctx->engine, ctx->cache, &l);

	if (rc)
		return reply_error(cl->fd, 1, strerror(-rc));
	st = ops_status(&l, ctx->mountpoint, ctx->cache_dir, (long)getpid(),
			history > 0 && history < 100000 ? (int)history : 0);
	ops_list_free(&l);
	if (st && !ctx->mountpoint)
		json_object_set_new(st, "mounted", json_false());	/* a modelfs serve */
	if (st && ctx->serve) {
		struct serve_stats ss;
		json_t *sj;

		serve_stats(ctx->serve, &ss);
		sj = metrics_serve_json(&ss);
		json_object_set_new(sj, "listen", json_string(ctx->serving));
		json_object_set_new(st, "serve", sj);
	}
	return reply_result(cl->fd, req, st);	/* takes st */
}

static int do_metrics(struct client *cl, json_t *req)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	char *text = NULL;
	json_t *res;
	int rc = metrics_for_daemon(ctx->engine, ctx->cache, ctx->cache_dir, ctx->serve, &text);

	if (rc)
		return reply_error(cl->fd, 1, strerror(-rc));
	res = json_pack("{s:s}", "text", text);
	free(text);
	return reply_result(cl->fd, req, res);	/* takes res */
}

static int do_verify(struct client *cl, json_t *req)
{
	struct ops_list l;
	bool *chosen = NULL;
	int rc = select_files(cl, req, &l, &chosen);

	if (rc)
		return rc;
	rc = reply_result(cl->fd, req, ops_verify(&l, chosen, &cl->srv->stopping));
	free(chosen);
	ops_list_free(&l);
	return rc;
}

static int do_evict(struct client *cl, json_t *req)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	json_t *paths = json_object_get(req, "paths");
	json_t *unused_for = json_object_get(req, "unused_for");
	int64_t before = 0;
	struct ops_list l;
	bool *chosen = NULL;
	int rc;

	if (json_is_integer(unused_for)) {
		json_int_t secs = json_integer_value(unused_for);

		if (secs < 0 || secs > INT_MAX)
			return reply_error(cl->fd, 2, "unused_for is out of range");
		before = ops_unused_before((int)secs);
	}
	if ((!json_is_array(paths) || json_array_size(paths) == 0) && before > 0) {
		json_t *res = ops_retain(ctx->cache, before, &rc);

		return res ? reply_result(cl->fd, req, res) : reply_error(cl->fd, 1, strerror(-rc));
	}
	if (!json_is_array(paths) || json_array_size(paths) == 0)
		return reply_result(cl->fd, req, ops_trim(ctx->cache));
	rc = select_files(cl, req, &l, &chosen);
	if (rc)
		return rc;
	rc = reply_result(cl->fd, req, ops_evict(&l, chosen, json_is_true(json_object_get(req,
			  "force")), before));
	free(chosen);
	ops_list_free(&l);
	return rc;
}

static int do_reload(struct client *cl, json_t *req)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	char err[600];
	json_t *res = NULL;
	int rc;

	if (!ctx->reloader)
		return reply_error(cl->fd, 2, "modelfs serve has no mount to reload: restart it to "
				   "read its config again");
	rc = reloader_run(ctx->reloader, &res, err, sizeof(err));
	if (rc)
		return reply_error(cl->fd, 1, err);
	return reply_result(cl->fd, req, res);	/* takes res */
}

/* prefetch_run callbacks: events go to the client; the client closing
 * its end, or the daemon stopping, cancels. */
static int emit_to_client(void *arg, json_t *ev)
{
	struct client *cl = arg;

	return control_send(cl->fd, ev) != 0;
}

static int client_gone(void *arg)
{
	struct client *cl = arg;
	struct pollfd pfd = { .fd = cl->fd, .events = POLLIN | POLLRDHUP };
	char c;

	if (atomic_load(&cl->srv->stopping))
		return 1;
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))
		return 1;
	/* A client has nothing more to say; bytes mean it is confused: stop. */
	return recv(cl->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

static int do_prefetch(struct client *cl, json_t *req)
{
	const struct control_ctx *ctx = &cl->srv->ctx;
	json_int_t jobs = json_integer_value(json_object_get(req, "jobs"));
	struct prefetch_run_opts o = {
		.jobs = jobs > 0 && jobs <= MAX_JOBS ? (int)jobs : 0,
		.connections = ctx->connections,
		.pin = json_is_true(json_object_get(req, "pin")),
		.cancel = &cl->srv->stopping,
		.emit = emit_to_client, .tick = client_gone, .arg = cl,
	};
	struct engine_file **files;
	struct ops_list l;
	bool *chosen = NULL;
	size_t n = 0;
	int rc = select_files(cl, req, &l, &chosen);

	if (rc)
		return rc;
	files = calloc(l.n ? l.n : 1, sizeof(*files));
	for (size_t i = 0; files && i < l.n; i++)
		if (chosen[i])
			files[n++] = l.items[i].ef;
	if (!files)
		rc = reply_error(cl->fd, 1, strerror(ENOMEM));
	else
		rc = prefetch_run(ctx->engine, files, n, &o);
	log_info("event=control_prefetch files=%zu result=%s", n,
		 rc == -ECANCELED ? "cancelled" : rc < 0 ? strerror(-rc) : rc ? "failed" : "ok");
	free(files);
	free(chosen);
	ops_list_free(&l);
	return rc;
}

/* Answer one request: 0 to go on with the next, -1 to close. */
static int serve_one(struct client *cl, struct control_reader *r, int timeout_ms)
{
	json_t *req = NULL;
	const char *cmd;
	int rc = control_read(r, timeout_ms, &req);

	if (rc) {
		if (rc == -EPROTO)
			reply_error(cl->fd, 2, "a request is one JSON object on one line");
		return -1;
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	log_debug("event=control_request cmd=%s", cmd ? cmd : "?");
	if (!cmd)
		rc = reply_error(cl->fd, 2, "the request has no \"cmd\"");
	else if (strcmp(cmd, "hello") == 0)
		rc = do_hello(cl);
	else if (strcmp(cmd, "status") == 0)
		rc = do_status(cl, req);
	else if (strcmp(cmd, "metrics") == 0)
		rc = do_metrics(cl, req);
	else if (strcmp(cmd, "prefetch") == 0)
		rc = do_prefetch(cl, req) == -ECANCELED ? -1 : 0;
	else if (strcmp(cmd, "verify") == 0)
		rc = do_verify(cl, req);
	else if (strcmp(cmd, "evict") == 0)
		rc = do_evict(cl, req);
	else if (strcmp(cmd, "reload") == 0)
		rc = do_reload(cl, req);
	else
		rc = reply_error(cl->fd, 2, "unknown command");
	json_decref(req);
	return rc < 0 && rc != -ENOENT && rc != -EINVAL ? -1 : 0;
}

static void serve(struct client *cl)
{
	struct control_reader r;
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(cl->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		reply_error(cl->fd, 2, "permission denied: this mount belongs to another user");
		return;
	}
	/* Requests one after the other (hello, then the command) until the
	 * client closes; a client that says nothing for long is dropped. */
	control_reader_init(&r, cl->fd);
	if (serve_one(cl, &r, REQUEST_TIMEOUT_MS) == 0)
		while (!atomic_load(&cl->srv->stopping) && serve_one(cl, &r, IDLE_TIMEOUT_MS) == 0)
			;
	control_reader_clear(&r);
}

static void *client_main(void *arg)
{
	struct client *cl = arg;

	serve(cl);
	shutdown(cl->fd, SHUT_RDWR);	/* the client sees the end now; closed at reaping */
	pthread_mutex_lock(&cl->srv->lock);
	cl->done = true;
	pthread_mutex_unlock(&cl->srv->lock);
	return NULL;
}

/* Join the threads of connections that ended; the caller holds s->lock. */
static void reap_locked(struct control_server *s)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *cl = &s->clients[i];

		if (cl->used && cl->done) {
			pthread_join(cl->thread, NULL);
			close(cl->fd);
			cl->used = cl->done = false;
			cl->fd = -1;
		}
	}
}

static void accept_one(struct control_server *s)
{
	struct client *cl = NULL;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	pthread_mutex_lock(&s->lock);
	reap_locked(s);
	for (int i = 0; !cl && i < CONTROL_MAX_CLIENTS; i++)
		if (!s->clients[i].used)
			cl = &s->clients[i];
	if (cl) {
		cl->srv = s;
		cl->fd = fd;
		cl->used = true;
		cl->done = false;
		if (pthread_create(&cl->thread, NULL, client_main, cl) != 0) {
			cl->used = false;
			cl = NULL;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!cl) {
		reply_error(fd, 1, "the mount is busy with other modelfs commands; try again");
		close(fd);
	}
}

/* Bind and listen at s->path (through s->dir_fd for a long path), in
 * place of whatever socket was there: 0 or -errno (logged). */
static int listen_at(struct control_server *s, const char *cache_dir)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd, rc;

	if (s->dir_fd >= 0)
		close(s->dir_fd);
	rc = socket_addr(cache_dir, &sa, &s->dir_fd);
	if (rc)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The caller holds the cache lock: any socket file here is a dead
	 * daemon's. */
	unlink(s->path);
	old = umask(0177);	/* 0600 from the start: no window with a wider mode */
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	umask(old);
	if (rc == 0 && listen(fd, 16) != 0)
		rc = -errno;
	if (rc) {
		log_error("event=control_socket path=%s error=\"%s\"", s->path, strerror(-rc));
		close(fd);
		return rc;
	}
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = fd;
	return 0;
}

/* The cache directory deleted under a live mount takes the socket with
 * it: commands would find no mount and open a second, empty cache there.
 * Make the directory again, hold its lock, and listen there again. */
static void keep_socket(struct control_server *s)
{
	struct stat st;

	if (stat(s->path, &st) == 0 || cache_rehome(s->ctx.cache) != 0)
		return;
	if (listen_at(s, s->ctx.cache_dir) == 0)
		log_warn("event=control_socket_recreated path=%s", s->path);
}

static void *accept_main(void *arg)
{
	struct control_server *s = arg;

	for (;;) {
		struct pollfd pfd[2] = { { .fd = s->listen_fd, .events = POLLIN },
					 { .fd = s->wake[0], .events = POLLIN } };
		int n = poll(pfd, 2, HOME_CHECK_MS);

		if (n < 0 && errno != EINTR)
			break;
		if (pfd[1].revents || atomic_load(&s->stopping))
			break;
		if (n > 0 && (pfd[0].revents & POLLIN))
			accept_one(s);
		else if (n == 0)
			keep_socket(s);
	}
	return NULL;
}

int control_server_open(const char *cache_dir, struct control_server **out)
{
	struct control_server *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->listen_fd = s->wake[0] = s->wake[1] = s->dir_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->stopping, 0);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		s->clients[i].fd = -1;
	if (asprintf(&s->path, "%s/%s", cache_dir, CONTROL_SOCKET) < 0) {
		s->path = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	if (pipe2(s->wake, O_CLOEXEC) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = listen_at(s, cache_dir);
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	control_server_stop(s);
	return rc;
}

int control_server_start(struct control_server *s, const struct control_ctx *ctx)
{
	int rc;

	s->ctx = *ctx;
	rc = pthread_create(&s->acceptor, NULL, accept_main, s);
	if (rc)
		return -rc;
	s->started = true;
	log_debug("event=control_listening path=%s", s->path);
	return 0;
}

void control_server_stop(struct control_server *s)
{
	char c = 1;

	if (!s)
		return;
	atomic_store(&s->stopping, 1);
	if (s->started) {
		if (write(s->wake[1], &c, 1) != 1)
			log_warn("event=control_stop error=\"%s\"", strerror(errno));
		pthread_join(s->acceptor, NULL);
	}
	/* No more connections come; end the ones there are. */
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (s->clients[i].used)
			shutdown(s->clients[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *cl = &s->clients[i];

		if (!cl->used)
			continue;
		pthread_join(cl->thread, NULL);
		close(cl->fd);
		cl->used = false;
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		if (s->path)
			unlink(s->path);
	}
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}
