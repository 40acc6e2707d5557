/*
 * server.c: libmicrohttpd glue. One handler, on_request(), routes each
 * request (route.c), finds what it names (index.c) and queues exactly
 * one response on every path: a streamed body (stream.c), a JSON answer
 * (api.c) or an error in the Hub's shape (reply_error()). The listening
 * socket is made here rather than by libmicrohttpd, so that a port in use
 * is a plain -EADDRINUSE with its cause, not a log line of the library's.
 *
 * libmicrohttpd would percent-decode the target before we see it, which
 * loses the difference between "refs%2Fpr%2F1" (one revision) and
 * "refs/pr/1" and hides an encoded "..": its unescaper is replaced by one
 * that leaves the target as sent, and route.c decodes segment by segment.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "modelfs/cache.h"
#include "modelfs/log.h"
#include "modelfs/tier.h"
#include "serve_i.h"

#define BODY_BLOCK (256u << 10)		/* libmicrohttpd's buffer per streamed body */
#define LISTEN_BACKLOG 128
#define JSON_TYPE "application/json; charset=utf-8"

struct serve {
	struct engine *engine;
	struct hub_index *index;
	struct access *access;
	struct MHD_Daemon *daemon;
	int fd;				/* the listening socket, -1 once libmicrohttpd has it */
	char *prefix;			/* "" or "/huggingface" (no trailing '/') */
	char host[80];			/* the listen address, for Link URLs without a Host */
	size_t tree_page;
	atomic_int stop;		/* set by serve_close(): waiting bodies give up */
	struct serve_counters counters;	/* atomics: no lock */
	serve_metrics_fn metrics;	/* GET /metrics, or NULL */
	void *metrics_arg;
};

unsigned serve_status(int err, const char **code)
{
	*code = NULL;
	switch (err) {
	case -ENOENT:
		*code = "EntryNotFound";
		return 404;
	case -ENXIO:
		*code = "RepoNotFound";
		return 404;
	case -ESRCH:
		*code = "RevisionNotFound";
		return 404;
	case -ENODEV:
		return 404;
	case -EACCES:
		return 403;
	case -EPERM:
		return 401;
	case -EKEYEXPIRED:
		*code = "GatedRepo";
		return 401;
	case -EKEYREJECTED:
		*code = "GatedRepo";
		return 403;
	case -EINVAL:
		return 400;
	case -ERANGE:
		return 416;
	case -ENOSYS:
		return 405;
	case -EAGAIN:
		return 503;
	default:
		return 500;
	}
}

/* ---- responses -------------------------------------------------------------- */

/* Add a header; a value from the client could hold CR/LF (decoded from
 * %0d%0a): every control byte becomes '?', so no header is ever split. */
static void header(struct MHD_Response *r, const char *name, const char *value)
{
	char safe[512];
	size_t i;

	for (i = 0; value[i] && i < sizeof(safe) - 1; i++)
		safe[i] = (unsigned char)value[i] < 0x20 || value[i] == 0x7f ? '?' : value[i];
	safe[i] = '\0';
	MHD_add_response_header(r, name, safe);
}

static enum MHD_Result queue(struct serve *s, struct MHD_Connection *c, unsigned status,
			     struct MHD_Response *r)
{
	enum MHD_Result ok;

	atomic_fetch_add(&s->counters.requests, 1);
	if (status / 100 < 6)
		atomic_fetch_add(&s->counters.status_class[status / 100], 1);
	if (!r)
		return MHD_NO;		/* out of memory: libmicrohttpd closes the connection */
	ok = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ok;
}

static struct MHD_Response *json_response(json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	struct MHD_Response *r;

	if (!text)
		return NULL;
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return NULL;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE);
	return r;
}

/* The Hub's error: status and X-Error-Code from serve_status(), the
 * message in the body and in X-Error-Message; commit when known (the
 * Hub's 404 for a missing file still names it). */
static enum MHD_Result reply_error(struct serve *s, struct MHD_Connection *c, int err,
				   const char *commit, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result reply_error(struct serve *s, struct MHD_Connection *c, int err,
				   const char *commit, const char *fmt, ...)
{
	const char *code;
	unsigned status = serve_status(err, &code);
	struct MHD_Response *r;
	char msg[512];
	json_t *j;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	j = json_pack("{s:s}", "error", msg);
	r = json_response(j);
	json_decref(j);
	if (r) {
		header(r, "X-Error-Message", msg);
		if (code)
			header(r, "X-Error-Code", code);
		if (commit)
			header(r, "X-Repo-Commit", commit);
		if (status == 405)
			header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	}
	return queue(s, c, status, r);
}

static enum MHD_Result reply_json(struct serve *s, struct MHD_Connection *c, json_t *j,
				  const char *commit, const char *link)
{
	struct MHD_Response *r = json_response(j);

	if (!r)
		return reply_error(s, c, -ENOMEM, NULL, "out of memory");
	if (commit)
		header(r, "X-Repo-Commit", commit);
	if (link)
		header(r, "Link", link);
	return queue(s, c, MHD_HTTP_OK, r);
}

/* ---- a request's state ------------------------------------------------------ */

/* What a request leaves to its end (on_completed()): the blocks held for
 * a body sent straight from the data file. One per request, on its
 * connection's thread until libmicrohttpd says it is done. */
struct request {
	struct cache_file *held;	/* or NULL */
	uint64_t held_off, held_len;
};

/* ---- /resolve/ ---------------------------------------------------------------- */

/* A HEAD's body is never read: its length is all libmicrohttpd needs. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* What a file's answer says of it. */
struct body {
	struct engine_file *ef;
	uint64_t size;
	const char *etag;		/* the ETag, quoted: "sha256", "git blob id", the
					 * origin's strong ETag; or NULL */
	bool lfs;			/* an LFS file: X-Linked-* and octet-stream */
	const char *commit;		/* X-Repo-Commit, or NULL */
};

/* The body [first, last] of a file verified whole, sent from the data
 * file by the kernel (sendfile): its blocks are checked if this run has
 * not yet (cache.h (1)) and held until the request ends (on_completed()).
 * NULL when it cannot be: the body is then streamed through the engine,
 * which also waits for blocks that are not in. */
static struct MHD_Response *from_data_file(struct serve *s, struct request *rq,
					   struct engine_file *ef, uint64_t first, uint64_t last)
{
	struct cache_file *cf = engine_file_cache(ef);
	uint64_t len = last - first + 1;
	struct MHD_Response *r = NULL;
	int fd, copy = -1;

	if (!cf || rq->held || strcmp(engine_file_state(ef), "verified") != 0 ||
	    cache_range_hold(cf, first, len, &fd) != 0)
		return NULL;
	/* libmicrohttpd closes what it is given: a copy, of the same open file. */
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy >= 0)
		r = MHD_create_response_from_fd_at_offset64(len, copy, first);
	if (!r) {
		if (copy >= 0)
			close(copy);
		cache_range_release(cf, first, len);
		return NULL;
	}
	rq->held = cf;
	rq->held_off = first;
	rq->held_len = len;
	atomic_fetch_add(&s->counters.bytes_cache, len);
	return r;
}

/* HEAD or GET of b, with its Range (serve.h (2), (4)). */
static enum MHD_Result send_file(struct serve *s, struct MHD_Connection *c, struct request *rq,
				 bool head, const struct body *b)
{
	const char *range = head ? NULL
		: MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
	const char *if_range = head ? NULL
		: MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_RANGE);
	uint64_t first = 0, last = 0;
	struct MHD_Response *r;
	struct stream *st = NULL;
	char value[96];
	unsigned status = MHD_HTTP_OK;
	int rc, err;

	/* RFC 9110 §13.1.5: a validator that is not ours means the whole body. */
	if (if_range && (!b->etag || strcmp(if_range, b->etag) != 0))
		range = NULL;
	err = engine_file_open_error(b->ef);
	if (err) {
		char *why = engine_file_error(b->ef);

		log_warn("event=serve_refused path=%s error=\"%s\"", engine_file_path(b->ef),
			 why ? why : strerror(-err));
		free(why);
		return reply_error(s, c, err == -EACCES ? -EACCES : -EIO, b->commit,
				   err == -EACCES ? "The server's own access to this file was refused"
						  : "The server cannot read this file");
	}
	rc = serve_parse_range(range, b->size, &first, &last);
	if (rc == -ERANGE) {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (r) {
			snprintf(value, sizeof(value), "bytes */%llu", (unsigned long long)b->size);
			header(r, MHD_HTTP_HEADER_CONTENT_RANGE, value);
			if (b->commit)
				header(r, "X-Repo-Commit", b->commit);
		}
		return queue(s, c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
	}
	if (rc == 1) {
		status = MHD_HTTP_PARTIAL_CONTENT;
	} else {
		first = 0;
		last = b->size ? b->size - 1 : 0;
	}
	if (b->size == 0)
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	else if (head)
		r = MHD_create_response_from_callback(b->size, BODY_BLOCK, no_body, NULL, NULL);
	else if ((r = from_data_file(s, rq, b->ef, first, last)))
		;
	else if (stream_new(b->ef, first, last, &s->stop, &s->counters, &st) != 0)
		r = NULL;
	else {
		r = MHD_create_response_from_callback(last - first + 1, BODY_BLOCK, stream_read, st,
						      stream_release);
		if (!r)
			stream_release(st);
	}
	if (!r)
		return reply_error(s, c, -ENOMEM, b->commit, "out of memory");
	header(r, MHD_HTTP_HEADER_CONTENT_TYPE, b->lfs || !b->commit ? "application/octet-stream"
								   : "text/plain; charset=utf-8");
	if (b->etag)
		header(r, MHD_HTTP_HEADER_ETAG, b->etag);
	if (b->commit)
		header(r, "X-Repo-Commit", b->commit);
	header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	if (b->lfs) {
		/* What the Hub puts on an LFS file's answer, so that clients
		 * take the content's hash and size, not the pointer's. */
		snprintf(value, sizeof(value), "%llu", (unsigned long long)b->size);
		header(r, "X-Linked-Size", value);
		header(r, "X-Linked-Etag", b->etag);
	}
	if (status == MHD_HTTP_PARTIAL_CONTENT) {
		snprintf(value, sizeof(value), "bytes %llu-%llu/%llu", (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)b->size);
		header(r, MHD_HTTP_HEADER_CONTENT_RANGE, value);
	}
	log_debug("event=serve_file path=%s status=%u first=%llu last=%llu head=%d body=%s",
		  engine_file_path(b->ef), status, (unsigned long long)first,
		  (unsigned long long)last, head, head ? "none" : rq->held ? "data_file" : "engine");
	return queue(s, c, status, r);
}

/* A Hub file as the Hub answers it: ETag the content's sha256 or the
 * git blob id, X-Linked-* on LFS files, X-Repo-Commit. */
static enum MHD_Result send_hub_file(struct serve *s, struct MHD_Connection *c,
				     struct request *rq, bool head, const struct hub_pin *p,
				     const struct hub_file *f)
{
	char etag[80];
	struct body b = { .ef = f->ef, .size = f->size, .lfs = f->sha256 != NULL, .etag = etag,
			  .commit = p->commit };

	snprintf(etag, sizeof(etag), "\"%s\"", f->sha256 ? f->sha256 : f->blob_id);
	return send_file(s, c, rq, head, &b);
}

static enum MHD_Result resolve(struct serve *s, struct MHD_Connection *c, struct request *rq,
			       bool head, const struct hub_pin *p, const char *path)
{
	const struct hub_file *f = hub_pin_file(p, path);

	if (!f)
		return reply_error(s, c, -ENOENT, p->commit, "Entry not found");
	return send_hub_file(s, c, rq, head, p, f);
}

/* ---- /api/ -------------------------------------------------------------------- */

struct query {
	char *text;			/* "k=v&k=v" without cursor, as sent */
	size_t len, cap;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *value)
{
	struct query *q = cls;
	size_t need = strlen(key) + (value ? strlen(value) : 0) + 3;

	if (strcmp(key, "cursor") == 0)
		return MHD_YES;
	if (q->len + need > q->cap) {
		char *grown = realloc(q->text, q->cap = (q->len + need) * 2);

		if (!grown)
			return MHD_NO;
		q->text = grown;
	}
	q->len += (size_t)sprintf(q->text + q->len, "%s%s%s%s", q->len ? "&" : "", key,
				  value ? "=" : "", value ? value : "");
	return MHD_YES;
}

/* Link: <http://HOST/...tree...?ARGS&cursor=N>; rel="next", on the URL the
 * client asked (as the Hub does, so a client follows it verbatim). */
static char *next_link(struct serve *s, struct MHD_Connection *c, const char *url, size_t next)
{
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	struct query q = { 0 };
	char *link = NULL;

	if (!host || !host[0] || strpbrk(host, " <>\"\\/"))
		host = s->host;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &q);
	if (asprintf(&link, "<http://%s%s?%s%scursor=%zu>; rel=\"next\"", host, url,
		     q.text ? q.text : "", q.len ? "&" : "", next) < 0)
		link = NULL;
	free(q.text);
	return link;
}

static bool arg_true(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);

	return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

static enum MHD_Result tree(struct serve *s, struct MHD_Connection *c, const char *url,
			    const struct hub_pin *p, const struct route *rt)
{
	const char *cursor = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
	size_t start = 0, next = 0;
	json_t *page = NULL;
	char *link = NULL, *end;
	enum MHD_Result ok;
	int rc;

	if (cursor) {
		errno = 0;
		start = strtoul(cursor, &end, 10);
		if (errno || *end || !cursor[0])
			return reply_error(s, c, -EINVAL, p->commit, "Invalid cursor");
	}
	rc = api_tree(p, rt->path, arg_true(c, "recursive"), start, s->tree_page, &page, &next);
	if (rc == -ENOENT)
		return reply_error(s, c, -ENOENT, p->commit, "%s does not exist on \"%s\"", rt->path,
				   rt->rev);
	if (rc)
		return reply_error(s, c, rc, p->commit, "cannot list the tree");
	if (next)
		link = next_link(s, c, url, next);
	ok = reply_json(s, c, page, p->commit, link);
	json_decref(page);
	free(link);
	return ok;
}

/* ---- access (serve.h (6)) ------------------------------------------------------ */

/* The token of "Authorization: Bearer T", or NULL. */
static const char *client_token(struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);

	if (!v || strncasecmp(v, "Bearer ", 7) != 0)
		return NULL;
	v += 7;
	while (*v == ' ')
		v++;
	return *v ? v : NULL;
}

/* 0 when the client may read p, else the answer has been queued into *ok. */
static int refused(struct serve *s, struct MHD_Connection *c, const struct hub_pin *p,
		   enum MHD_Result *ok)
{
	const char *token = client_token(c);
	int rc = access_check(s->access, token, p);

	if (rc == 0)
		return 0;
	if (rc == -EACCES && !token)
		*ok = reply_error(s, c, -EKEYEXPIRED, NULL, "Access to %s %s is restricted. You must "
				  "have access to it and be authenticated to access it. Please log "
				  "in.", p->type, p->repo);
	else if (rc == -EACCES)
		*ok = reply_error(s, c, -EKEYREJECTED, NULL, "Access to %s %s is restricted and the "
				  "Hub does not give it to your token.", p->type, p->repo);
	else if (rc == -EAGAIN)
		*ok = reply_error(s, c, -EAGAIN, NULL, "Access to %s %s cannot be checked now: the "
				  "Hub did not answer", p->type, p->repo);
	else
		*ok = reply_error(s, c, rc, NULL, "out of memory");
	return rc;
}

/* ---- /metrics ------------------------------------------------------------------- */

static enum MHD_Result metrics(struct serve *s, struct MHD_Connection *c)
{
	struct MHD_Response *r;
	char *text = NULL;
	int rc;

	if (!s->metrics)
		return reply_error(s, c, -ENODEV, NULL, "not found");
	rc = s->metrics(s->metrics_arg, s, &text);
	if (rc)
		return reply_error(s, c, rc, NULL, "cannot gather the metrics: %s", strerror(-rc));
	r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return reply_error(s, c, -ENOMEM, NULL, "out of memory");
	}
	header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
	return queue(s, c, MHD_HTTP_OK, r);
}

/* ---- dispatch ----------------------------------------------------------------- */

/* A neighbour's cache_proxy request (tier.h's scheme): the file by its
 * sha256, or the Hub path at the commit the key names. Only what this
 * server serves anyway is answered, by the same resolve(); anything else
 * is a 404, and the neighbour goes to the origin. */
static enum MHD_Result peer(struct serve *s, struct MHD_Connection *c, struct request *rq,
			    bool head, char kind, const char *key, const char *path)
{
	const struct hub_pin *p = NULL;
	const struct hub_file *f = NULL;
	struct route rt;
	enum MHD_Result ok;

	if (kind == 's') {
		if (hub_index_find_sha256(s->index, key, &p, &f) != 0)
			return reply_error(s, c, -ENOENT, NULL, "Entry not found");
		if (refused(s, c, p, &ok))
			return ok;
		return resolve(s, c, rq, head, p, f->path);
	}
	if (route_parse(path, &rt) != 0)
		return reply_error(s, c, -ENOENT, NULL, "Entry not found");
	if (rt.kind != ROUTE_RESOLVE || strcmp(rt.rev, key) != 0 ||
	    hub_index_find(s->index, rt.type, rt.repo, rt.rev, &p) != 0 || strcmp(p->commit, key) != 0)
		ok = reply_error(s, c, -ENOENT, NULL, "Entry not found");
	else if (refused(s, c, p, &ok))
		;
	else
		ok = resolve(s, c, rq, head, p, rt.path);
	route_clear(&rt);
	return ok;
}

/* Another source's file as a mirror of its origin answers it: the
 * origin's strong ETag, so that a node's If-Range holds on either;
 * else the content's sha256 when known; else none. */
static enum MHD_Result send_origin_file(struct serve *s, struct MHD_Connection *c,
					struct request *rq, bool head, struct engine_file *ef)
{
	struct engine_origin o = { 0 };
	char *sha = NULL, etag[80];
	struct body b = { .ef = ef, .size = engine_file_size(ef) };
	enum MHD_Result ok;

	if (engine_file_origin(ef, &o) != 0)
		return reply_error(s, c, -ENOMEM, NULL, "out of memory");
	if (o.validator && o.validator[0] == '"') {
		b.etag = o.validator;
	} else if ((sha = engine_file_sha256(ef))) {
		snprintf(etag, sizeof(etag), "\"%s\"", sha);
		b.etag = etag;
	}
	ok = send_file(s, c, rq, head, &b);
	free(sha);
	engine_origin_clear(&o);
	return ok;
}

/* A file whose source takes no credential: a plain URL with no header,
 * no auth_header, no query (a presigned URL's signature is one), no user
 * info, and ${VAR}s (which may hold a secret) only in its host ("${HUB}"
 * naming a mirror). Any other non-Hub file may have been fetched with the
 * server's credentials. */
static bool public_source(const struct config_entry *e)
{
	const char *u = e->url_written, *authority, *path;

	if (e->source != CONFIG_SOURCE_URL || e->auth_header || e->n_headers || !u ||
	    strpbrk(u, "?#"))
		return false;
	authority = strstr(u, "://");
	authority = authority ? authority + 3 : u;
	path = strchr(authority, '/');
	if (!path || memchr(authority, '@', (size_t)(path - authority)))
		return false;	/* "${URL}" alone may be a whole presigned URL */
	return !strstr(path, "${");
}

/* GET|HEAD /files/{mount path}: any configured file, as a mirror serves
 * it. A Hub file follows its repo's access (serve.h (6)); another one
 * goes to holders of the access token unless its source is public. */
static enum MHD_Result mount_file(struct serve *s, struct MHD_Connection *c, struct request *rq,
				  bool head, const char *target)
{
	const struct hub_pin *p = NULL;
	const struct hub_file *hf = NULL;
	struct engine_file *ef = NULL;
	char *path = NULL;
	enum MHD_Result ok;
	int rc = route_mount_path(target, &path);

	if (rc == -EINVAL)
		return reply_error(s, c, -EINVAL, NULL, "Invalid path: \".\", \"..\" or a bad escape");
	if (rc)
		return reply_error(s, c, rc, NULL, "cannot read the request");
	for (size_t i = 0; !ef && i < engine_nfiles(s->engine); i++)
		if (strcmp(engine_file_path(engine_file_at(s->engine, i)), path) == 0)
			ef = engine_file_at(s->engine, i);
	if (!ef) {
		ok = reply_error(s, c, -ENOENT, NULL, "Entry not found");
		goto out;
	}
	if (engine_file_entry(ef)->source == CONFIG_SOURCE_HUGGINGFACE) {
		if (hub_index_find_file(s->index, ef, &p, &hf) != 0) {
			ok = reply_error(s, c, -ENOENT, NULL, "Entry not found");
			goto out;
		}
		if (!refused(s, c, p, &ok))
			ok = send_hub_file(s, c, rq, head, p, hf);
	} else if (!public_source(engine_file_entry(ef)) &&
		   !access_server_token(s->access, client_token(c))) {
		ok = reply_error(s, c, -EACCES, NULL, "This file's source needs credentials: the "
				 "server gives it only to clients with its access token");
	} else {
		ok = send_origin_file(s, c, rq, head, ef);
	}
out:
	free(path);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct serve *s = cls;
	struct request *rq;
	bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	size_t plen = strlen(s->prefix);
	const struct hub_pin *p = NULL;
	struct route rt;
	enum MHD_Result ok;
	json_t *info;
	const char *path;
	char kind, key[65];
	int rc;

	/* The first call has the headers only. Answering then would make
	 * libmicrohttpd discard the rest of the request and close the
	 * connection: the answer waits for the second call, so that clients
	 * keep their connection for the next request. */
	if (!*con_cls) {
		*con_cls = calloc(1, sizeof(struct request));
		return *con_cls ? MHD_YES : MHD_NO;
	}
	rq = *con_cls;
	if (*upload_data_size) {
		*upload_data_size = 0;	/* a body to a GET or HEAD: ignored */
		return MHD_YES;
	}
	if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
		return reply_error(s, c, -ENOSYS, NULL, "Method not allowed");
	if (access_required(s->access) && !access_server_token(s->access, client_token(c)))
		return reply_error(s, c, -EPERM, NULL, "Invalid credentials in Authorization header: "
				   "this server needs its access token (HF_TOKEN)");
	if (strncmp(url, s->prefix, plen) != 0 || (url[plen] != '/' && url[plen] != '\0'))
		return reply_error(s, c, -ENODEV, NULL, "not found");
	if (strcmp(url + plen, "/metrics") == 0)
		return metrics(s, c);
	if (strncmp(url + plen, "/files/", 7) == 0)
		return mount_file(s, c, rq, head, url + plen + 7);
	if (tier_parse_target(url + plen, &kind, key, &path) == 0)
		return peer(s, c, rq, head, kind, key, path);
	rc = route_parse(url + plen, &rt);
	if (rc == -ENOENT)
		return reply_error(s, c, -ENODEV, NULL,
				   "Sorry, we can't find the page you are looking for.");
	if (rc == -EINVAL)
		return reply_error(s, c, -EINVAL, NULL, "Invalid request: the repo id must not be "
				   "url-encoded and paths may not hold \".\" or \"..\"");
	if (rc)
		return reply_error(s, c, rc, NULL, "cannot read the request");
	rc = hub_index_find(s->index, rt.type, rt.repo, rt.rev, &p);
	if (rc == -ENXIO)
		ok = reply_error(s, c, rc, NULL, "Repository not found");
	else if (rc == -ESRCH)
		ok = reply_error(s, c, rc, NULL, "Invalid rev id: %s", rt.rev);
	else if (refused(s, c, p, &ok))
		;
	else if (rt.kind == ROUTE_RESOLVE)
		ok = resolve(s, c, rq, head, p, rt.path);
	else if (rt.kind == ROUTE_TREE)
		ok = tree(s, c, url, p, &rt);
	else {
		info = api_info(p, arg_true(c, "blobs"));
		ok = info ? reply_json(s, c, info, p->commit, NULL)
			  : reply_error(s, c, -ENOMEM, NULL, "out of memory");
		json_decref(info);
	}
	route_clear(&rt);
	return ok;
}

/* The request is done (answered, cut or the server stopping): let go of
 * what it held. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct request *rq = *con_cls;

	if (!rq)
		return;
	if (rq->held)
		cache_range_release(rq->held, rq->held_off, rq->held_len);
	free(rq);
	*con_cls = NULL;
}

/* Leave the target as the client sent it (see the top of the file). */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
	return strlen(s);
}

__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("event=serve_http message=\"%s\"", line);
}

/* ---- life cycle --------------------------------------------------------------- */

/* "127.0.0.1:8080" or "[::1]:8080" into a bound, listening socket. */
static int listen_on(const char *addr, char *host, size_t hostlen, int *out)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	const char *colon = strrchr(addr, ':');
	char name[64], *end;
	unsigned long port;
	socklen_t len;
	int fd, one = 1, rc;
	size_t n;

	if (!colon || colon == addr)
		return -EINVAL;
	port = strtoul(colon + 1, &end, 10);
	n = (size_t)(colon - addr);
	if (*end || !colon[1] || port > 65535 || n >= sizeof(name))
		return -EINVAL;
	memcpy(name, addr, n);
	name[n] = '\0';
	if (name[0] == '[' && name[n - 1] == ']') {
		name[n - 1] = '\0';
		if (inet_pton(AF_INET6, name + 1, &v6->sin6_addr) != 1)
			return -EINVAL;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		len = sizeof(*v6);
	} else if (inet_pton(AF_INET, name, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		len = sizeof(*v4);
	} else {
		return -EINVAL;
	}
	snprintf(host, hostlen, "%s", addr);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int serve_open(struct engine *e, const struct serve_opts *o, struct serve **out)
{
	struct serve *s = calloc(1, sizeof(*s));
	const char *prefix = o->prefix ? o->prefix : "";
	size_t plen = strlen(prefix);
	int rc;

	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->engine = e;
	s->tree_page = o->tree_page > 0 ? (size_t)o->tree_page : SERVE_TREE_PAGE;
	s->metrics = o->metrics;
	s->metrics_arg = o->metrics_arg;
	while (plen > 0 && prefix[plen - 1] == '/')
		plen--;
	if (plen && prefix[0] != '/') {
		rc = -EINVAL;
		goto out;
	}
	s->prefix = strndup(prefix, plen);
	if (!s->prefix) {
		rc = -ENOMEM;
		goto out;
	}
	rc = hub_index_build(e, &s->index);
	if (rc == 0)
		rc = access_new(o->hub, o->access_token, o->access_ttl_ms, &s->access);
	if (rc)
		goto out;
	rc = listen_on(o->listen, s->host, sizeof(s->host), &s->fd);
	if (rc) {
		log_error("event=serve_failed listen=%s error=\"%s\"", o->listen,
			  rc == -EINVAL ? "not an address:port (127.0.0.1:8080, [::1]:8080)"
					: strerror(-rc));
		goto out;
	}
	s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				     MHD_USE_POLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
				     MHD_OPTION_LISTEN_SOCKET, s->fd,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_MAX_CONNECTIONS,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_IDLE_TIMEOUT_SEC,
				     MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL,
				     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				     MHD_OPTION_END);
	if (!s->daemon) {
		rc = -EIO;
		log_error("event=serve_failed listen=%s error=\"libmicrohttpd did not start\"",
			  o->listen);
		goto out;
	}
	s->fd = -1;	/* libmicrohttpd's now: MHD_stop_daemon() closes it */
	log_info("event=serving listen=%s prefix=%s repos=%zu files=%zu", o->listen,
		 s->prefix[0] ? s->prefix : "/", s->index->npins, s->index->nfiles);
	*out = s;
	return 0;
out:
	serve_close(s);
	return rc;
}

void serve_close(struct serve *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, 1);
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	if (s->fd >= 0)
		close(s->fd);
	hub_index_free(s->index);
	access_free(s->access);
	free(s->prefix);
	free(s);
}

void serve_stats(struct serve *s, struct serve_stats *out)
{
	struct serve_counters *k = &s->counters;

	memset(out, 0, sizeof(*out));
	out->requests = atomic_load(&k->requests);
	for (int i = 0; i < 6; i++)
		out->status_class[i] = atomic_load(&k->status_class[i]);
	out->bytes_cache = atomic_load(&k->bytes_cache);
	out->bytes_origin = atomic_load(&k->bytes_origin);
	out->bodies_cut = atomic_load(&k->bodies_cut);
}

size_t serve_nfiles(const struct serve *s)
{
	return s->index->nfiles;
}
