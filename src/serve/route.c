/*
 * route.c: a request target, as the client sent it (percent-encoded),
 * to the route it asks for. The target is split on '/' before any
 * decoding, as the Hub does: "refs%2Fpr%2F1" is one revision, while a
 * repo id with an encoded '/' is refused (400, PROTOCOLS.md §1.1). A path
 * is decoded as a whole (the Python client sends a tree path as
 * "a%2Fb"), then its components are checked: "." and ".." are refused
 * whatever their spelling, so "%2e%2e" never walks out of a repo.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/text.h"
#include "serve_i.h"

#define MAX_SEGS 64

struct segs {
	const char *s[MAX_SEGS];
	size_t len[MAX_SEGS];
	size_t n;
};

int route_unescape(const char *s, size_t len, char **out)
{
	char *d = malloc(len + 1);
	size_t k = 0;

	if (!d)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] != '%') {
			if (s[i] == '\0')
				break;
			d[k++] = s[i];
			continue;
		}
		hi = i + 1 < len ? text_hex_digit(s[i + 1]) : -1;
		lo = i + 2 < len ? text_hex_digit(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(d);
			return -EINVAL;
		}
		d[k++] = (char)(hi * 16 + lo);
		i += 2;
	}
	d[k] = '\0';
	*out = d;
	return 0;
}

/* Split target on '/', ignoring the leading one. -EINVAL past MAX_SEGS. */
static int split(const char *target, struct segs *g)
{
	const char *p = target;

	g->n = 0;
	if (*p == '/')
		p++;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if (g->n == MAX_SEGS)
			return -EINVAL;
		g->s[g->n] = p;
		g->len[g->n++] = len;
		if (!slash)
			return 0;
		p = slash + 1;
	}
}

static bool seg_is(const struct segs *g, size_t i, const char *word)
{
	return i < g->n && g->len[i] == strlen(word) && strncmp(g->s[i], word, g->len[i]) == 0;
}

/* A repo id segment: not empty and no encoded '/' in it. */
static int repo_seg_ok(const struct segs *g, size_t i)
{
	if (g->len[i] == 0)
		return -ENOENT;
	for (size_t k = 0; k + 2 < g->len[i]; k++)
		if (g->s[i][k] == '%' && g->s[i][k + 1] == '2' && (g->s[i][k + 2] | 0x20) == 'f')
			return -EINVAL;
	return 0;
}

/* segs [from, from + n) decoded into "a/b". */
static int join_repo(const struct segs *g, size_t from, size_t n, char **out)
{
	char *a = NULL, *b = NULL;
	int rc;

	for (size_t i = from; i < from + n; i++) {
		rc = repo_seg_ok(g, i);
		if (rc)
			return rc;
	}
	rc = route_unescape(g->s[from], g->len[from], &a);
	if (rc == 0 && n == 2)
		rc = route_unescape(g->s[from + 1], g->len[from + 1], &b);
	if (rc == 0 && n == 2) {
		char *j = malloc(strlen(a) + strlen(b) + 2);

		if (!j)
			rc = -ENOMEM;
		else {
			strcpy(j, a);
			strcat(j, "/");
			strcat(j, b);
			free(a);
			a = j;
		}
	}
	free(b);
	if (rc) {
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

/* Everything from segment i on, decoded, as a path: no component "." or
 * ".." (-EINVAL), no leading or trailing '/'. "" when there is none. */
static int rest_path(const struct segs *g, size_t i, char **out)
{
	const char *start, *end;
	char *p, *save = NULL, *copy;
	int rc;

	if (i >= g->n) {
		*out = strdup("");
		return *out ? 0 : -ENOMEM;
	}
	start = g->s[i];
	end = g->s[g->n - 1] + g->len[g->n - 1];
	rc = route_unescape(start, (size_t)(end - start), &p);
	if (rc)
		return rc;
	copy = strdup(p);
	if (!copy) {
		free(p);
		return -ENOMEM;
	}
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
		if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0 || strchr(c, '\\'))
			rc = -EINVAL;
	free(copy);
	if (rc) {
		free(p);
		return rc;
	}
	while (p[0] == '/')
		memmove(p, p + 1, strlen(p));
	for (size_t n = strlen(p); n > 0 && p[n - 1] == '/'; n--)
		p[n - 1] = '\0';
	*out = p;
	return 0;
}

int route_mount_path(const char *target, char **out)
{
	struct segs g;
	int rc = split(target, &g);

	if (rc == 0)
		rc = rest_path(&g, 0, out);
	if (rc == 0 && !(*out)[0]) {
		free(*out);
		*out = NULL;
		rc = -EINVAL;
	}
	return rc;
}

static const char *type_of_prefix(const struct segs *g, size_t i)
{
	if (seg_is(g, i, "datasets"))
		return "dataset";
	if (seg_is(g, i, "spaces"))
		return "space";
	return NULL;
}

static const char *type_of_plural(const struct segs *g, size_t i)
{
	if (seg_is(g, i, "models"))
		return "model";
	return type_of_prefix(g, i);
}

/* /[datasets/]{repo}/resolve/{rev}/{path}; the repo is one segment
 * ("gpt2") or two ("org/name"). */
static int parse_resolve(const struct segs *g, struct route *r)
{
	size_t at = 0, nrepo;
	int rc;

	r->type = type_of_prefix(g, 0);
	if (r->type)
		at = 1;
	else
		r->type = "model";
	if (seg_is(g, at + 2, "resolve") && g->n >= at + 5)
		nrepo = 2;
	else if (seg_is(g, at + 1, "resolve") && g->n >= at + 4)
		nrepo = 1;
	else
		return -ENOENT;
	r->kind = ROUTE_RESOLVE;
	rc = join_repo(g, at, nrepo, &r->repo);
	if (rc == 0)
		rc = route_unescape(g->s[at + nrepo + 1], g->len[at + nrepo + 1], &r->rev);
	if (rc == 0)
		rc = rest_path(g, at + nrepo + 2, &r->path);
	if (rc == 0 && !r->path[0])
		rc = -ENOENT;
	return rc;
}

/* /api/{models|datasets|spaces}/{repo}[/revision/{rev} | /tree/{rev}[/{path}]] */
static int parse_api(const struct segs *g, struct route *r)
{
	size_t at = 2, nrepo, left;
	int rc;

	r->type = type_of_plural(g, 1);
	if (!r->type || g->n < 3)
		return -ENOENT;
	left = g->n - at;
	/* Two segments unless the second is a keyword of a one-segment id. */
	if (left == 2 || (left > 2 && (seg_is(g, at + 2, "revision") || seg_is(g, at + 2, "tree"))))
		nrepo = 2;
	else if (left == 1 || seg_is(g, at + 1, "revision") || seg_is(g, at + 1, "tree"))
		nrepo = 1;
	else
		return -ENOENT;
	rc = join_repo(g, at, nrepo, &r->repo);
	if (rc)
		return rc;
	at += nrepo;
	if (at == g->n) {
		r->kind = ROUTE_INFO;
		r->rev = strdup("main");
		r->path = strdup("");
		return r->rev && r->path ? 0 : -ENOMEM;
	}
	if (at + 1 >= g->n || g->len[at + 1] == 0)
		return -ENOENT;
	if (seg_is(g, at, "revision")) {
		r->kind = ROUTE_INFO;
		r->path = strdup("");
		/* huggingface_hub encodes it; a client that does not may send
		 * refs/pr/1 raw: the rest is the revision. */
		rc = r->path ? rest_path(g, at + 1, &r->rev) : -ENOMEM;
		return rc;
	}
	if (seg_is(g, at, "tree")) {
		r->kind = ROUTE_TREE;
		rc = route_unescape(g->s[at + 1], g->len[at + 1], &r->rev);
		if (rc == 0)
			rc = rest_path(g, at + 2, &r->path);
		return rc;
	}
	return -ENOENT;
}

int route_parse(const char *target, struct route *r)
{
	struct segs g;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = split(target, &g);
	if (rc == 0)
		rc = seg_is(&g, 0, "api") ? parse_api(&g, r) : parse_resolve(&g, r);
	if (rc)
		route_clear(r);
	return rc;
}

void route_clear(struct route *r)
{
	free(r->repo);
	free(r->rev);
	free(r->path);
	memset(r, 0, sizeof(*r));
}
