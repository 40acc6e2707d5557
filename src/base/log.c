/*
 * log.c: the only place that writes log lines. Each line is formatted,
 * redacted (secrets, URL query strings) and written with one write(2).
 */
#include "modelfs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static int log_fd = 2;
/* A second copy of each line, e.g. the terminal while mounting; the mount
 * turns it off while engine threads already log. */
static atomic_int log_console = -1;
static int log_syslog;
static atomic_int log_level = LOG_LVL_INFO;
static atomic_int log_json;	/* lines as JSON objects (log_set_json) */

/* A log file of our own (log_open_file): its size is bounded by turning
 * it over to PATH.1 past LOG_FILE_MAX. protected by file_lock */
#define LOG_FILE_MAX (16 << 20)
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static char *file_path;
static bool file_is_stderr;	/* stderr is a copy of the file's fd: turned over too */
static atomic_llong file_size;

/* protected by secrets_lock */
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char **secrets;
static size_t n_secrets;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_init(int fd, int use_syslog, enum log_level level)
{
	const char *env = getenv("MODELFS_LOG");
	int from_env = env ? log_level_parse(env) : -1;

	log_fd = fd;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog("modelfs", LOG_PID, LOG_DAEMON);
	/* MODELFS_LOG sets the level unless the command line asked for debug. */
	atomic_store(&log_level, from_env >= 0 && level != LOG_LVL_DEBUG ? from_env : (int)level);
}

void log_set_console(int fd)
{
	atomic_store(&log_console, fd);
}

void log_set_json(bool json)
{
	atomic_store(&log_json, json);
}

int log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	struct stat st;

	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&file_lock);
	free(file_path);
	file_path = strdup(path);
	atomic_store(&file_size, fstat(fd, &st) == 0 ? (long long)st.st_size : 0);
	pthread_mutex_unlock(&file_lock);
	return fd;
}

void log_file_is_stderr(void)
{
	pthread_mutex_lock(&file_lock);
	file_is_stderr = true;
	pthread_mutex_unlock(&file_lock);
}

/* The log file grew past LOG_FILE_MAX: it becomes PATH.1 (the one before
 * goes) and a new one takes its fd number, so no writer sees a gap. */
static void turn_over(void)
{
	char old[PATH_MAX];
	int fd;

	pthread_mutex_lock(&file_lock);
	if (!file_path || atomic_load(&file_size) < LOG_FILE_MAX)
		goto out;
	snprintf(old, sizeof(old), "%s.1", file_path);
	fd = rename(file_path, old) == 0
		? open(file_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640) : -1;
	if (fd >= 0) {
		dup3(fd, log_fd, O_CLOEXEC);
		if (file_is_stderr)
			dup2(fd, 2);
		close(fd);
	}
	/* On failure the file keeps growing: no better place is left. */
	atomic_store(&file_size, 0);
out:
	pthread_mutex_unlock(&file_lock);
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, level);
}

enum log_level log_get_level(void)
{
	return atomic_load(&log_level);
}

void log_add_secret(const char *value)
{
	char **grown;
	char *copy;

	if (!value || strlen(value) < 4)
		return;
	pthread_mutex_lock(&secrets_lock);
	for (size_t i = 0; i < n_secrets; i++)
		if (strcmp(secrets[i], value) == 0)
			goto out;
	copy = strdup(value);
	grown = realloc(secrets, (n_secrets + 1) * sizeof(*secrets));
	if (!copy || !grown) {
		free(copy);
		if (grown)
			secrets = grown;
		goto out;
	}
	secrets = grown;
	secrets[n_secrets++] = copy;
out:
	pthread_mutex_unlock(&secrets_lock);
}

/* Length of the userinfo ("user:pass@") of the URL whose authority starts
 * at p, '@' included; 0 when it has none. The authority ends at the first
 * '/', '?', '#' or a byte that ends a URL in a log line. Not at a "'":
 * userinfo may hold one (RFC 3986 sub-delims), and a password cut there
 * would be shown. */
static size_t userinfo_len(const char *p)
{
	size_t at = 0;

	for (size_t i = 0; p[i] && !strchr("/?# \"\n", p[i]); i++)
		if (p[i] == '@')
			at = i + 1;
	return at;
}

/* Copy in to out, cutting the userinfo and the query of every http(s)
 * URL. */
static void redact_queries(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	int in_url = 0;

	for (const char *p = in; *p && o + 1 < outlen; p++) {
		if (!in_url && (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0)) {
			size_t scheme = p[4] == 's' ? 8 : 7, skip = userinfo_len(p + scheme);

			in_url = 1;
			if (skip) {
				o += (size_t)snprintf(out + o, outlen - o, "%.*s***@", (int)scheme, p);
				if (o >= outlen)
					o = outlen - 1;
				p += scheme + skip - 1;
				continue;
			}
		}
		if (in_url && (*p == ' ' || *p == '"' || *p == '\'' || *p == '\n'))
			in_url = 0;
		if (in_url && *p == '?') {
			static const char mark[] = "?<redacted>";
			for (size_t k = 0; mark[k] && o + 1 < outlen; k++)
				out[o++] = mark[k];
			while (p[1] && p[1] != ' ' && p[1] != '"' && p[1] != '\'' && p[1] != '\n')
				p++;
			in_url = 0;
			continue;
		}
		out[o++] = *p;
	}
	out[o] = '\0';
}

/* Replace every registered secret in s by "***" in place: secrets have
 * 4 bytes or more, so s only shrinks. */
static void redact_secrets(char *s)
{
	pthread_mutex_lock(&secrets_lock);
	for (size_t i = 0; i < n_secrets; i++) {
		size_t slen = strlen(secrets[i]);
		char *hit;

		while ((hit = strstr(s, secrets[i])) != NULL) {
			memmove(hit + 3, hit + slen, strlen(hit + slen) + 1);
			memcpy(hit, "***", 3);
		}
	}
	pthread_mutex_unlock(&secrets_lock);
}

char *log_url_public(const char *url)
{
	const char *auth = strstr(url, "://");
	size_t end = strcspn(url, "?#"), skip = 0, head;
	char *out;

	if (auth && (size_t)(auth - url) < end) {
		head = (size_t)(auth - url) + 3;
		skip = userinfo_len(url + head);
	} else {
		head = 0;
	}
	/* "***@" may be longer than a short userinfo it replaces. */
	out = malloc(end + 4);
	if (!out)
		return NULL;
	snprintf(out, end + 4, "%.*s%s%.*s", (int)head, url, skip ? "***@" : "",
		 (int)(end - head - skip), url + head + skip);
	redact_secrets(out);
	return out;
}

void log_redact(const char *in, char *out, size_t outlen)
{
	char *work;

	if (!outlen)
		return;		/* before malloc: malloc(0) may give memory to free */
	work = malloc(outlen);
	if (!work) {
		snprintf(out, outlen, "<log line dropped: out of memory>");
		return;
	}
	redact_queries(in, work, outlen);
	redact_secrets(work);
	snprintf(out, outlen, "%s", work);
	free(work);
}

static bool file_path_set(void)
{
	bool set;

	pthread_mutex_lock(&file_lock);
	set = file_path != NULL;
	pthread_mutex_unlock(&file_lock);
	return set;
}

/* Append s (n bytes) to out as JSON string content; returns the new o. */
static size_t json_escape(char *out, size_t cap, size_t o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && o + 7 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	return o;
}

/* One JSON object per line for log shippers: "time", "level", then each
 * key=value of the message ("k=v" or k="v w"), or "msg" for what is not
 * one. Returns the length. */
static int json_line(char *out, size_t cap, const char *stamp, const char *level, const char *msg)
{
	size_t o = (size_t)snprintf(out, cap, "{\"time\":\"%s\",\"level\":\"%s\"", stamp, level);
	const char *p = msg;

	while (*p && o + 16 < cap) {
		size_t klen = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_.");
		const char *v, *end;

		if (klen == 0 || p[klen] != '=') {
			o += (size_t)snprintf(out + o, cap - o, ",\"msg\":\"");
			o = json_escape(out, cap, o, p, strlen(p));
			o += (size_t)snprintf(out + o, cap - o, "\"");
			break;
		}
		v = p + klen + 1;
		if (*v == '"') {
			for (end = ++v; *end && *end != '"'; end++)
				if (*end == '\\' && end[1])
					end++;
		} else {
			end = v + strcspn(v, " ");
		}
		o += (size_t)snprintf(out + o, cap - o, ",\"%.*s\":\"", (int)klen, p);
		o = json_escape(out, cap, o, v, (size_t)(end - v));
		o += (size_t)snprintf(out + o, cap - o, "\"");
		p = *end == '"' ? end + 1 : end;
		p += strspn(p, " ");
	}
	if (o + 3 > cap)
		o = cap - 3;
	out[o++] = '}';
	out[o++] = '\n';
	out[o] = '\0';
	return (int)o;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2 * LOG_LINE_MAX + 64], stamp[64], *raw = NULL, *clean;
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t cap;
	int n, console;

	if ((int)level > atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	n = vasprintf(&raw, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* Redacted whole, then cut: a secret across the cut would otherwise
	 * leave its first bytes. Redaction may lengthen a URL ("?<redacted>"). */
	cap = 2 * (size_t)n + 64;
	clean = malloc(cap);
	if (!clean) {
		free(raw);
		return;
	}
	log_redact(raw, clean, cap);
	free(raw);
	if (strlen(clean) >= LOG_LINE_MAX)
		clean[LOG_LINE_MAX - 1] = '\0';
	if (log_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		syslog(prio[level], "%s", clean);
	}
	console = atomic_load(&log_console);
	if (log_fd < 0 && console < 0) {
		free(clean);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	if (atomic_load(&log_json))
		n = json_line(line, sizeof(line), stamp, level_names[level], clean);
	else
		n = snprintf(line, sizeof(line), "%s %s %s\n", stamp, level_names[level], clean);
	free(clean);
	if (n > (int)sizeof(line) - 1) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (file_path_set() && atomic_fetch_add(&file_size, n) + n >= LOG_FILE_MAX)
		turn_over();
	/* A failed write has nowhere left to be reported. */
	if (log_fd >= 0 && write(log_fd, line, n) < 0)
		return;
	if (console >= 0 && console != log_fd && write(console, line, n) < 0)
		return;
}
