/*
 * ondemand.c: Hub repos a client asks for that the config does not name,
 * added to the running engine when [modelfs] serve_allow allows them
 * (serve.h (7)). Each (repo, revision) becomes one config entry of its
 * own, a repo folder like a configured `{ repo = "org/name" }`, resolved
 * by the engine's own resolver and then served and cached as configured
 * repos are. The config made for it is the engine's (engine_keep_config()).
 */
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/config.h"
#include "modelfs/log.h"
#include "serve_i.h"

/* The folder on-demand repos live under in the engine's paths (and in
 * /files/): a category of its own. */
#define ONDEMAND_CATEGORY "hub"
#define REV_MAX 128

struct ondemand {
	struct engine *engine;
	char **allow;			/* NULL-terminated */
	int max;
	int added;			/* protected by lock */
	int failed;			/* protected by lock */
	bool full_said;			/* protected by lock */
	pthread_mutex_t lock;		/* one add at a time */
};

int ondemand_new(struct engine *e, char *const *allow, int max, struct ondemand **out)
{
	struct ondemand *o;
	size_t n = 0;

	*out = NULL;
	while (allow && allow[n])
		n++;
	if (n == 0)
		return 0;	/* off */
	o = calloc(1, sizeof(*o));
	if (!o || !(o->allow = calloc(n + 1, sizeof(*o->allow)))) {
		free(o);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (!(o->allow[i] = strdup(allow[i]))) {
			ondemand_free(o);
			return -ENOMEM;
		}
	o->engine = e;
	o->max = max > 0 ? max : CONFIG_SERVE_ALLOW_MAX;
	pthread_mutex_init(&o->lock, NULL);
	*out = o;
	return 0;
}

void ondemand_free(struct ondemand *o)
{
	if (!o)
		return;
	for (size_t i = 0; o->allow && o->allow[i]; i++)
		free(o->allow[i]);
	free(o->allow);
	if (o->engine)
		pthread_mutex_destroy(&o->lock);
	free(o);
}

bool ondemand_allowed(const struct ondemand *o, const char *type, const char *repo)
{
	char name[512];

	if (!o || strcmp(type, "space") == 0 || !config_valid_repo(repo))
		return false;
	snprintf(name, sizeof(name), "%s%s", strcmp(type, "dataset") == 0 ? "datasets/" : "", repo);
	for (size_t i = 0; o->allow[i]; i++)
		if (fnmatch(o->allow[i], name, FNM_PATHNAME) == 0)
			return true;
	return false;
}

/* A revision as a branch, tag or commit is written: written into the
 * config text between quotes, so nothing that TOML would read otherwise. */
static bool plain_revision(const char *rev)
{
	size_t n = strlen(rev);

	if (n == 0 || n > REV_MAX || strstr(rev, "..") || rev[0] == '/' || rev[n - 1] == '/')
		return false;
	for (const char *c = rev; *c; c++)
		if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') &&
		    !(*c >= '0' && *c <= '9') && !strchr("._-/", *c))
			return false;
	return true;
}

/* s into name at *k, each '/' as "--" (room is checked by the caller). */
static void put_dashed(char *name, size_t *k, const char *s)
{
	for (; *s; s++) {
		if (*s == '/')
			name[(*k)++] = '-';
		name[(*k)++] = *s == '/' ? '-' : *s;
	}
	name[*k] = '\0';
}

/* The one-entry config of repo at rev: 0 and *out, or -errno. */
static int make_config(const char *type, const char *repo, const char *rev, struct config **out)
{
	struct config_error err;
	char name[2 * (256 + REV_MAX) + 32], *text = NULL;
	size_t k = 0;
	int rc;

	if (strlen(repo) > 256)
		return -ENXIO;
	/* models--org--name@rev, as the Hub's own cache names a repo */
	k = (size_t)snprintf(name, sizeof(name), "%ss--", type);
	put_dashed(name, &k, repo);
	name[k++] = '@';
	put_dashed(name, &k, rev);
	if (asprintf(&text, "[models.%s]\n\"%s\" = { repo = \"%s\", revision = \"%s\"%s }\n",
		     ONDEMAND_CATEGORY, name, repo, rev,
		     strcmp(type, "dataset") == 0 ? ", repo_type = \"dataset\"" : "") < 0)
		return -ENOMEM;
	rc = config_parse(text, strlen(text), "serve_allow", out, &err);
	if (rc)
		log_warn("event=serve_ondemand_refused repo=%s revision=%s error=\"%s\"", repo, rev,
			 err.msg);
	free(text);
	return rc == -ENOMEM ? rc : rc ? -ESRCH : 0;
}

/* Files added at [first, first + n): 0 when one of them can be read, else
 * drop them all and say why not (logged). */
static int keep_if_readable(struct engine *e, size_t first, size_t n, const char *repo,
			    const char *rev)
{
	char *why = NULL;

	for (size_t i = first; i < first + n; i++)
		if (engine_file_open_error(engine_file_at(e, i)) == 0)
			return 0;
	for (size_t i = first; i < first + n; i++) {
		if (!why)
			why = engine_file_error(engine_file_at(e, i));
		engine_file_drop(engine_file_at(e, i));
	}
	log_warn("event=serve_ondemand_failed repo=%s revision=%s error=\"%s\"", repo, rev,
		 why ? why : "the Hub lists no file");
	free(why);
	return -ENOENT;
}

int ondemand_add(struct ondemand *o, const char *type, const char *repo, const char *rev)
{
	struct config *cfg = NULL;
	bool add = true;
	size_t first, n = 0;
	int rc;

	if (!plain_revision(rev))
		return -ESRCH;
	pthread_mutex_lock(&o->lock);
	if (o->added >= o->max || o->failed >= o->max) {
		if (!o->full_said)
			log_warn("event=serve_ondemand_full max=%d added=%d failed=%d action=\"raise "
				 "serve_allow_max, or name the repos in the config\"", o->max, o->added,
				 o->failed);
		o->full_said = true;
		rc = -EDQUOT;
		goto out;
	}
	rc = make_config(type, repo, rev, &cfg);
	if (rc)
		goto out;
	rc = engine_keep_config(o->engine, cfg);
	if (rc) {
		config_free(cfg);
		goto out;
	}
	rc = engine_add_entries(o->engine, cfg, NULL, &add, &first, &n);
	if (rc == 0)
		rc = keep_if_readable(o->engine, first, n, repo, rev);
	if (rc == 0) {
		o->added++;
		log_info("event=serve_ondemand_added type=%s repo=%s revision=%s files=%zu", type, repo,
			 rev, n);
	} else {
		o->failed++;
	}
out:
	pthread_mutex_unlock(&o->lock);
	return rc;
}
