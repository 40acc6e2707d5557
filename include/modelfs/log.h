/*
 * log.h: one line per event, "LEVEL key=value ...", with secrets removed.
 *
 * (1) Every registered secret (tokens, expanded ${VAR}s, header values)
 *     is replaced by "***" in every line before it is written.
 * (2) The query string of every http(s) URL in a line is replaced by
 *     "?<redacted>": signed URLs carry their signature there; its
 *     userinfo ("user:pass@") by "***@".
 * (3) A line is written with one write(2), so lines from threads never mix.
 * Threads: all functions are thread-safe.
 */
#ifndef MODELFS_LOG_H
#define MODELFS_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Where lines go: fd (default 2) and/or syslog; the least level written.
 * MODELFS_LOG=debug|info|warn|error in the environment sets the level. */
void log_init(int fd, int use_syslog, enum log_level level);
/* Also write every line to fd (-1: stop); for the terminal of a mount
 * command until its daemon is live. */
void log_set_console(int fd);
void log_set_level(enum log_level level);
/* Lines as JSON objects, one a line ({"time", "level", each key=value}). */
void log_set_json(bool json);
/* Open path to append log lines to (give the fd to log_init): past 16 MiB
 * it is turned over to PATH.1, on the same fd. The fd, or -errno. */
int log_open_file(const char *path);
/* stderr is a copy of that file's fd (a daemon's): turn it over too. */
void log_file_is_stderr(void);
enum log_level log_get_level(void);
/* "debug" ... -> level; -1 when unknown. */
int log_level_parse(const char *name);

/* Remember a secret to redact; values shorter than 4 bytes are ignored
 * (they would redact ordinary words). Copies value. */
void log_add_secret(const char *value);

/* Redact secrets and URL queries from in into out (always terminated). */
void log_redact(const char *in, char *out, size_t outlen);

/* A URL in the form anyone may see (an xattr, status): no query or
 * fragment, userinfo as "***@", registered secrets as "***". NULL when
 * out of memory; the caller frees. */
char *log_url_public(const char *url);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
