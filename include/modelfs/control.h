/*
 * control.h: the mount daemon's control channel, and its client side.
 *
 * A mount listens on the unix socket CACHE_DIR/control.sock, mode 0600,
 * bound once the cache lock is held (so a socket file left by a dead
 * daemon is stale and replaced) and removed when the daemon exits. A
 * modelfs command that finds a daemon there asks it, so blocks are
 * shared with the mount and single-flight holds; otherwise it opens the
 * cache itself.
 *
 * Protocol: newline-delimited JSON, one object per line, each at most
 * CONTROL_LINE_MAX bytes. The client sends a request and reads its
 * answer: one reply, or for prefetch a stream of events (prefetch_run.h)
 * that ends with "end"; then it may send the next request on the same
 * connection (a command says hello first). Closing ends it.
 * Replies in parts: a STATUS, VERIFY or EVICT lists every file, so one
 * line would outgrow CONTROL_LINE_MAX at some thousands of entries. A
 * request with "parts": true gets its reply as a head, the reply with
 * every array of its result emptied and "parts": N, then N lines
 *   {"part": KEY, "item": ELEMENT}
 * whose elements, appended in order to result[KEY], give the reply as
 * one line would have. A line then grows with one file, not with the
 * config. A daemon that predates parts ignores the key and answers in
 * one line, which a reader of parts takes as it is; a request without
 * the key gets one line, as before.
 *   {"cmd": "hello"}
 *       -> {"ok": true, "version", "pid", "mountpoint", "cache_dir", "serving"}
 *       (mountpoint null for `modelfs serve`; serving its URL, or null)
 *   {"cmd": "status", "history": N}          -> {"ok": true, "result": STATUS}
 *       (with "serve": the server's counters, metrics.h, when it serves)
 *   {"cmd": "metrics"}                       -> {"ok": true, "result": {"text": T}}
 *       (T: metrics.h's Prometheus text)
 *   {"cmd": "verify", "paths": [...]}        -> {"ok": true, "result": VERIFY}
 *   {"cmd": "evict", "paths": [...], "force": B} -> {"ok": true, "result": EVICT}
 *   {"cmd": "prefetch", "paths": [...], "pin": B, "jobs": N} -> events
 *   {"cmd": "reload"}                        -> {"ok": true, "result": RELOAD}
 *       (RELOAD: reload.h's; a config that does not load: code 1, its
 *       error as "error"; `modelfs serve` has nothing to reload: code 2)
 *   any failure -> {"ok": false, "error": "one line", "code": 1 or 2}
 * STATUS, VERIFY and EVICT are ops.h's JSON. "paths" are arguments as
 * select.h takes them; a client makes those that exist where it runs
 * absolute (it may run inside the mount). Closing the connection
 * cancels a prefetch: no more blocks are asked for (blocks already
 * coming finish and stay cached).
 * Only the daemon's own user (and root) may connect.
 * Threads: one thread accepts; each connection is served on a thread of
 * its own (at most CONTROL_MAX_CLIENTS at a time).
 */
#ifndef MODELFS_CONTROL_H
#define MODELFS_CONTROL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "modelfs/cache.h"
#include "modelfs/engine.h"
#include "modelfs/reload.h"
#include "modelfs/serve.h"

#define CONTROL_SOCKET "control.sock"
#define CONTROL_LINE_MAX (1 << 20)
#define CONTROL_MAX_CLIENTS 16

/* What the daemon serves; the strings and objects must outlive the
 * server. */
struct control_ctx {
	struct engine *engine;
	struct cache *cache;
	const char *mountpoint;		/* canonical (realpath); NULL for modelfs serve */
	struct serve *serve;		/* the daemon's server, or NULL */
	const char *serving;		/* its listen address, or NULL */
	const char *cache_dir;
	int connections;		/* the engine's workers (prefetch windows) */
	struct reloader *reloader;	/* the mount's (reload.h), or NULL */
};

struct control_server;

/* Bind and listen on cache_dir's socket (replacing a stale one). A client
 * that connects before control_server_start() waits for its answer. */
int control_server_open(const char *cache_dir, struct control_server **out);
/* Start answering (one accepting thread). */
int control_server_start(struct control_server *s, const struct control_ctx *ctx);
/* Stop accepting, cancel and join every connection, remove the socket,
 * free. Call before the engine goes. NULL is fine. */
void control_server_stop(struct control_server *s);

/* ---- the client side ---- */

/* Connect to the daemon of cache_dir: 0 and *fd, -ENOENT or
 * -ECONNREFUSED when none listens there, other -errno. */
int control_connect(const char *cache_dir, int *fd);
/* Send msg as one line: 0 or -errno. */
int control_send(int fd, json_t *msg);

/* Reads lines from a connection. */
struct control_reader {
	int fd;
	char *buf;
	size_t len, cap;
	json_t *pending;		/* a reply whose parts are still coming */
	uint64_t parts_left;
};
void control_reader_init(struct control_reader *r, int fd);
void control_reader_clear(struct control_reader *r);
/* The next object: 0 and *out (a new reference); -ETIMEDOUT after
 * timeout_ms (< 0: no limit); -EPIPE at the end of the stream; -EINTR
 * when a signal came first; -EPROTO for a line that is not a JSON object
 * or is too long. */
int control_read(struct control_reader *r, int timeout_ms, json_t **out);
/* The next reply, its parts (if any) put back into its result: as
 * control_read(), with timeout_ms for each line. After -EINTR or
 * -ETIMEDOUT a reply begun stays in r: calling again goes on with it. */
int control_read_reply(struct control_reader *r, int timeout_ms, json_t **out);

#endif
