/*
 * model_links.c: modelfs mount --model LINK, a config made of links. Each
 * link becomes one entry of the config text that config_parse() then
 * checks like any other, so a link means what it would mean written in a
 * config: a Hugging Face file link (/blob/ or /resolve/) or a CivitAI link
 * is recognised there; this adds what only a command line needs, a whole
 * repository as a folder: hf://ORG/REPO[/PATH], hf://datasets/..., and a
 * Hub page link https://huggingface.co/ORG/REPO[/tree/REV].
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct text {
	char *s;
	size_t len;
	int err;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char *piece = NULL;
	int n;

	if (t->err)
		return;
	va_start(ap, fmt);
	n = vasprintf(&piece, fmt, ap);
	va_end(ap);
	if (n < 0 || !(t->s = realloc(t->s, t->len + (size_t)n + 1))) {
		free(piece);
		t->err = -ENOMEM;
		return;
	}
	memcpy(t->s + t->len, piece, (size_t)n + 1);
	t->len += (size_t)n;
	free(piece);
}

/* s as a TOML basic string, quotes included. */
static void add_string(struct text *t, const char *s, size_t n)
{
	add(t, "\"");
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			add(t, "\\%c", s[i]);
		else
			add(t, "%c", s[i]);
	}
	add(t, "\"");
}

/* After "hf://" or a Hub host: [datasets/|spaces/]ORG/REPO[/tree/REV][/PATH].
 * 1 with the entry written when it names a repo (or a file in it by path),
 * *folder set to the repo's name for a whole repo (the folder it shows
 * as); 0 when it is a file link config.c knows (/blob/, /resolve/). */
static int hub_entry(struct text *t, const char *p, bool hf_scheme, char **folder)
{
	const char *type = "model", *org, *slash, *rest;
	size_t repo_len;

	if (strncmp(p, "datasets/", 9) == 0 || strncmp(p, "spaces/", 7) == 0) {
		type = p[0] == 'd' ? "dataset" : "space";
		p += p[0] == 'd' ? 9 : 7;
	}
	org = p;
	slash = strchr(org, '/');
	if (!slash || slash == org)
		return -EINVAL;
	rest = strchr(slash + 1, '/');
	repo_len = rest ? (size_t)(rest - org) : strcspn(org, "?#");
	if (repo_len == (size_t)(slash + 1 - org))
		return -EINVAL;
	if (rest && !hf_scheme && (strncmp(rest, "/blob/", 6) == 0 ||
				   strncmp(rest, "/resolve/", 9) == 0))
		return 0;
	add(t, "{ source = \"huggingface\", repo_type = \"%s\", repo = ", type);
	add_string(t, org, repo_len);
	if (rest && strncmp(rest, "/tree/", 6) == 0) {
		const char *rev = rest + 6;

		add(t, ", revision = ");
		add_string(t, rev, strcspn(rev, "/?#"));
	} else if (rest && rest[1]) {
		add(t, ", file = ");
		add_string(t, rest + 1, strcspn(rest + 1, "?#"));
	}
	add(t, " }");
	if (!rest || strncmp(rest, "/tree/", 6) == 0 || !rest[1])
		*folder = strndup(slash + 1, repo_len - (size_t)(slash + 1 - org));
	return 1;
}

static bool on_hub_host(const char *link, const char **path)
{
	static const char *const hosts[] = { "https://huggingface.co/", "https://hf.co/",
					     "https://www.huggingface.co/", NULL };
	const char *env = getenv("HF_ENDPOINT");

	for (int i = 0; hosts[i]; i++)
		if (strncmp(link, hosts[i], strlen(hosts[i])) == 0) {
			*path = link + strlen(hosts[i]);
			return true;
		}
	if (env && env[0] && strncmp(link, env, strlen(env)) == 0 && link[strlen(env)] == '/') {
		*path = link + strlen(env) + 1;
		return true;
	}
	return false;
}

int models_config(char *const *links, size_t n, const char *category, char **out, char *err,
		  size_t errlen)
{
	struct text t = { 0 };

	*out = NULL;
	add(&t, "# Made by modelfs mount --model.\n[models.");
	add_string(&t, category, strlen(category));
	add(&t, "]\n");
	for (size_t i = 0; i < n && !t.err; i++) {
		struct text val = { 0 };
		const char *link = links[i], *path;
		char *folder = NULL;
		int rc = 0;

		if (strncmp(link, "hf://", 5) == 0)
			rc = hub_entry(&val, link + 5, true, &folder);
		else if (on_hub_host(link, &path))
			rc = hub_entry(&val, path, false, &folder);
		if (rc < 0) {
			snprintf(err, errlen, "--model %s: not a Hugging Face repository (write "
				 "hf://ORG/REPO, hf://ORG/REPO/PATH or a link to the repo or a file)",
				 link);
			free(val.s);
			free(t.s);
			return -EINVAL;
		}
		if (rc == 0)
			add_string(&val, link, strlen(link));	/* a link config.c knows, or a URL */
		/* A repo is a folder named as its key; a file keeps its own name. */
		if (folder)
			add_string(&t, folder, strlen(folder));
		else
			add(&t, "\"m%zu\"", i + 1);
		add(&t, " = %s\n", val.s ? val.s : "\"\"");
		t.err = t.err ? t.err : val.err;
		free(val.s);
		free(folder);
	}
	if (t.err) {
		free(t.s);
		snprintf(err, errlen, "out of memory");
		return t.err;
	}
	*out = t.s;
	return 0;
}
