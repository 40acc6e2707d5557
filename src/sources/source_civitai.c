/*
 * source_civitai.c: civitai entries (PROTOCOLS.md §2). A version's
 * metadata comes from the API: GET /api/v1/model-versions/{id}, or
 * /api/v1/models/{id} for a model's latest published version. It names
 * the file, its id and its SHA-256. The bytes come from the download
 * endpoint /api/download/models/{version}?fileId={file}, which answers
 * with a 307 to a signed URL on a storage host. Resolution follows that
 * redirect with one GET of bytes 0-0: the 206 proves Range works and its
 * Content-Range total is the exact size (the API's sizeKB is a rounded
 * float and is never used as the size). The signed URL becomes data_url;
 * when it expires (a 403 from storage) the engine calls refresh, which
 * asks the download endpoint again.
 *
 * The token (CIVITAI_TOKEN) is validated once per config with
 * GET /api/v1/me, then sent as "Authorization: Bearer" to the API's
 * origin only: the storage host is another origin, so http.c never sends
 * it there, and it is never put in a URL (CivitAI would accept ?token=,
 * but a query string travels with the redirect and into logs).
 *
 * Requests use http.c's "modelfs/VERSION" User-Agent: CivitAI answers a
 * non-browser client with JSON errors instead of a login page.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "modelfs/log.h"
#include "modelfs/text.h"
#include "source_i.h"

#define TOKEN_ENV	"CIVITAI_TOKEN"
#define ACCOUNT_URL	"https://civitai.com/user/account"
#define JSON_MAX	(32u << 20)	/* a model with hundreds of versions is a few MiB */
#define API_TIMEOUT	60		/* seconds per API request */

/* What one resolution (or refresh) knows about the token. */
struct civ {
	struct http_client *c;
	const char *endpoint;		/* cfg->civitai_endpoint, no trailing '/' */
	const struct config_header *headers;	/* the entry's own, for the API only */
	size_t n_headers;
	char *bearer;			/* Authorization value when usable, or NULL; secret */
	char *token_name;		/* "CIVITAI_TOKEN" when one is set, or NULL */
	int token_status;		/* 0, or -EACCES: the token was refused */
	char *token_error;		/* why it was refused */
};

/* ---- small helpers ----------------------------------------------------- */

static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A positive id, as a JSON integer (or a string of digits): 0 if none. */
static uint64_t jid(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	const char *s;

	if (json_is_integer(v))
		return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
	s = json_is_string(v) ? json_string_value(v) : NULL;
	if (s && s[0] && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 19)
		return strtoull(s, NULL, 10);
	return 0;
}

/* A config id ("58390", checked digits by config.c) as a number. */
static uint64_t cfg_id(const char *s)
{
	return s ? strtoull(s, NULL, 10) : 0;
}

/* "2024-05-01T12:00:00.000Z" -> epoch seconds, -1 if not that shape. */
static bool same_origin(const char *url, const char *base)
{
	char a[320], b[320];

	return url && http_url_origin(url, a, sizeof(a)) == 0 &&
	       http_url_origin(base, b, sizeof(b)) == 0 && strcmp(a, b) == 0;
}

/* The path of url ("/login" of "https://h/login?x"), or "". */
static const char *url_path(const char *url)
{
	const char *p = url ? strstr(url, "://") : NULL;

	p = p ? strchr(p + 3, '/') : NULL;
	return p ? p : "";
}

static bool contains(const char *hay, const char *needle)
{
	return hay && strcasestr(hay, needle) != NULL;
}

/*
 * The name a CivitAI file gets in the mount: the API's name made safe by
 * source_safe_name(), or fallback when nothing usable is left of it. A
 * new string, or NULL on ENOMEM.
 */
static char *mount_name(const char *api_name, const char *fallback)
{
	char *s = NULL;

	if (api_name && source_safe_name(api_name, &s) != 0)
		return NULL;
	return s ? s : strdup(fallback);
}

/* ---- the API ------------------------------------------------------------ */

/*
 * GET url (an API URL under cv->endpoint) and parse its JSON body into
 * *out: 0, or the -errno of http_get(), or -EPROTO for a body that is not
 * JSON (an HTML login or challenge page). why gets a short reason on
 * error; m is the answer's meta, which the caller clears.
 */
static int api_get_json(struct civ *cv, const char *url, json_t **out, struct http_meta *m,
			char *why, size_t whylen)
{
	struct http_body b = { .max = JSON_MAX };
	struct http_request rq = {
		.url = url,
		.origin_url = cv->endpoint,
		.headers = cv->headers,
		.n_headers = cv->n_headers,
		.authorization = cv->bearer,
		.follow_redirects = true,
		.timeout_sec = API_TIMEOUT,
	};
	int rc = http_get(cv->c, &rq, http_body_sink, &b, m);

	*out = NULL;
	why[0] = '\0';
	if (rc == 0 && contains(m->content_type, "text/html")) {
		snprintf(why, whylen, "an HTML page (HTTP %ld), not JSON: a login or challenge "
			 "page?", m->status);
		rc = -EPROTO;
	} else if (rc == 0) {
		json_error_t jerr;

		*out = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
		if (!*out || !json_is_object(*out)) {
			snprintf(why, whylen, "not a JSON object (HTTP %ld)", m->status);
			json_decref(*out);
			*out = NULL;
			rc = -EPROTO;
		}
	} else {
		snprintf(why, whylen, "%s", m->error_text ? m->error_text : strerror(-rc));
	}
	free(b.data);
	return rc;
}

/* ---- the token ---------------------------------------------------------- */

static int token_lookup(struct source_token *t)
{
	const char *v = getenv(TOKEN_ENV);
	size_t len = v ? strlen(v) : 0;

	/* "$(cat keyfile)" and copy-paste leave blanks at the ends. */
	while (len && strchr(" \t\r\n", v[len - 1]))
		len--;
	while (len && strchr(" \t\r\n", v[0])) {
		v++;
		len--;
	}
	if (len == 0)
		return 0;	/* no token: anonymous, fine for public files */
	t->value = strndup(v, len);
	t->name = strdup(TOKEN_ENV);
	if (!t->value || !t->name)
		return -ENOMEM;
	log_add_secret(t->value);
	return 0;
}

/* GET /api/v1/me with the token: 0 valid, -EACCES refused (t->error
 * says so), -EAGAIN unknown. Runs once per config, under t->lock. */
static int token_validate(struct source_ctx *ctx, struct http_client *c, struct source_token *t)
{
	struct civ cv = { .c = c, .endpoint = ctx->cfg->civitai_endpoint };
	struct http_meta m;
	json_t *me = NULL;
	char *url = NULL, why[200];
	int rc;

	if (asprintf(&cv.bearer, "Bearer %s", t->value) < 0)
		return -ENOMEM;
	if (asprintf(&url, "%s/api/v1/me", cv.endpoint) < 0) {
		free_secret(cv.bearer);
		return -ENOMEM;
	}
	rc = api_get_json(&cv, url, &me, &m, why, sizeof(why));
	if (rc == 0) {
		const char *user = jstr(me, "username");

		t->user = user ? strdup(user) : NULL;
		log_info("event=token_valid name=%s user=%s", t->name, user ? user : "?");
	} else if (rc == -EACCES) {
		if (asprintf(&t->error, "%s is invalid: CivitAI refused it (/api/v1/me: %s); "
			     "create a new API key at %s, or unset %s to fetch public models only",
			     t->name, why, ACCOUNT_URL, t->name) < 0)
			t->error = NULL;
		log_warn("event=token_invalid name=%s status=%ld", t->name, m.status);
	} else if (rc == -EAGAIN || rc == -ENOMEM) {
		log_warn("event=token_unchecked name=%s reason=\"%s\" action=\"used as is; checked "
			 "again by the next resolution\"", t->name, why);
	} else {
		/* A mirror without /me, or a page we cannot read: the downloads
		 * will tell whether the token works. */
		log_warn("event=token_unchecked name=%s reason=\"%s\" action=\"used as is\"",
			 t->name, why);
		rc = 0;
	}
	json_decref(me);
	http_meta_clear(&m);
	free(url);
	free_secret(cv.bearer);
	return rc;
}

/* The credential for a resolution of e: 0 or -ENOMEM. An entry's own
 * auth_header wins over CIVITAI_TOKEN and is not validated. A refused
 * token is not an error here; resolve_file() reports it once it has named
 * the file. */
static int civ_open(struct civ *cv, struct source_ctx *ctx, struct http_client *c,
		    const struct config_entry *e)
{
	char *value = NULL, *name = NULL, *error = NULL;
	int rc;

	memset(cv, 0, sizeof(*cv));
	cv->c = c;
	cv->endpoint = ctx->cfg->civitai_endpoint;
	cv->headers = e->headers;
	cv->n_headers = e->n_headers;
	if (e->auth_header) {
		cv->bearer = strdup(e->auth_header);
		return cv->bearer ? 0 : -ENOMEM;
	}
	rc = source_token_get(&ctx->civitai, token_lookup, token_validate, ctx, c,
			      &value, &name, &error);
	if (rc == -ENOMEM)
		goto out;
	cv->token_name = name;
	name = NULL;
	if (rc == -EACCES) {
		cv->token_status = -EACCES;
		cv->token_error = error ? error : strdup(TOKEN_ENV " was refused by CivitAI");
		error = NULL;
		rc = cv->token_error ? 0 : -ENOMEM;
		goto out;
	}
	/* Valid, none, or unchecked (-EAGAIN: /me did not answer): use it. */
	rc = 0;
	if (value && asprintf(&cv->bearer, "Bearer %s", value) < 0) {
		cv->bearer = NULL;
		rc = -ENOMEM;
	}
out:
	free_secret(value);
	free(name);
	free(error);
	return rc;
}

static void civ_close(struct civ *cv)
{
	free_secret(cv->bearer);
	free(cv->token_name);
	free(cv->token_error);
	memset(cv, 0, sizeof(*cv));
}

/* ---- which version, which file ----------------------------------------- */

/* Turn a failed metadata request into f's error: the err it set. */
static int api_error(struct civ *cv, struct source_file *f, int rc, const char *what,
		     const char *id, const char *why)
{
	switch (rc) {
	case -EAGAIN:
		source_set_error(f, -EAGAIN, "CivitAI API unreachable or busy (%s), asking for "
				 "%s %s", why, what, id);
		return -EAGAIN;
	case -ENOENT:
		source_set_error(f, -ENOENT, "CivitAI has no %s %s (%s): check %s", what, id, why,
				 strcmp(what, "model") == 0 ? "model_id" : "version_id");
		return -ENOENT;
	case -EACCES:
		source_set_error(f, -EACCES, "CivitAI refused %s %s (%s)%s", what, id, why,
				 cv->bearer ? "" : ": set " TOKEN_ENV " to an API key from "
				 ACCOUNT_URL);
		return -EACCES;
	case -ENOMEM:
		return -ENOMEM;
	default:
		source_set_error(f, rc, "CivitAI gave an unusable answer for %s %s: %s", what, id,
				 why);
		return rc;
	}
}

/* Which version of a model body: see source_i.h. */
json_t *source_civitai_model_version(const json_t *model, uint64_t vid)
{
	json_t *versions = json_object_get(model, "modelVersions"), *v;
	size_t i;

	json_array_foreach(versions, i, v) {
		const char *status = jstr(v, "status");

		if (vid ? jid(v, "id") == vid
			: jid(v, "id") && (!status || strcmp(status, "Published") == 0))
			return v;
	}
	return NULL;
}

/*
 * A version of model e->model_id from GET /api/v1/models/{id}, into *out
 * (the caller json_decref()s it): version vid, or with vid 0 the latest
 * published one (the API lists them newest first). 0, or f's err.
 */
static int version_from_model(struct civ *cv, struct source_file *f, uint64_t vid, json_t **out)
{
	const struct config_entry *e = f->entry;
	struct http_meta m;
	json_t *root = NULL, *v = NULL;
	char *url = NULL, why[200];
	int rc;

	if (asprintf(&url, "%s/api/v1/models/%" PRIu64, cv->endpoint, cfg_id(e->model_id)) < 0)
		return -ENOMEM;
	rc = api_get_json(cv, url, &root, &m, why, sizeof(why));
	http_meta_clear(&m);
	free(url);
	if (rc)
		return api_error(cv, f, rc, "model", e->model_id, why);
	v = source_civitai_model_version(root, vid);
	if (!v) {
		if (vid)
			source_set_error(f, -ENOENT, "CivitAI model %s has no published version %"
					 PRIu64, e->model_id, vid);
		else
			source_set_error(f, -ENOENT, "CivitAI model %s has no published version",
					 e->model_id);
		json_decref(root);
		return -ENOENT;
	}
	*out = json_incref(v);
	json_decref(root);
	return 0;
}

/*
 * The version the entry means, into *out (the caller json_decref()s it):
 * version_id names it; model_id alone means the model's latest published
 * version. 0, or f's err.
 */
static int get_version(struct civ *cv, struct source_file *f, json_t **out)
{
	const struct config_entry *e = f->entry;
	struct http_meta m;
	json_t *root = NULL;
	char *url = NULL, why[200];
	int rc;

	*out = NULL;
	if (!e->version_id)
		return version_from_model(cv, f, 0, out);
	if (asprintf(&url, "%s/api/v1/model-versions/%" PRIu64, cv->endpoint,
		     cfg_id(e->version_id)) < 0)
		return -ENOMEM;
	rc = api_get_json(cv, url, &root, &m, why, sizeof(why));
	http_meta_clear(&m);
	free(url);
	/* A version whose files have no primary one is a 404 here, yet the
	 * model's listing shows its files. */
	if (rc == -ENOENT && e->model_id && contains(why, "Missing model file"))
		return version_from_model(cv, f, cfg_id(e->version_id), out);
	if (rc == -ENOENT && contains(why, "Missing model file")) {
		source_set_error(f, -ENOENT, "CivitAI model version %s has no primary file (%s): "
				 "give its model_id too, so that modelfs can list its files", e->version_id,
				 why);
		return -ENOENT;
	}
	if (rc)
		return api_error(cv, f, rc, "model version", e->version_id, why);
	if (e->model_id && jid(root, "modelId") && jid(root, "modelId") != cfg_id(e->model_id)) {
		source_set_error(f, -ENOENT, "CivitAI model version %s belongs to model %" PRIu64
				 ", not to model_id %s: fix one of them", e->version_id,
				 jid(root, "modelId"), e->model_id);
		json_decref(root);
		return -ENOENT;
	}
	*out = root;
	return 0;
}

/* The id of a version body (the entry's version_id if the body has none). */
static uint64_t version_id(const json_t *version, const struct config_entry *e)
{
	return jid(version, "id") ? jid(version, "id") : cfg_id(e->version_id);
}

/* "123 (a.safetensors, Model), 124 (...)" into buf: what file_id may be. */
static void list_files(const json_t *files, char *buf, size_t len)
{
	const json_t *file;
	size_t i, o = 0;

	buf[0] = '\0';
	json_array_foreach(files, i, file) {
		int n = snprintf(buf + o, len - o, "%s%" PRIu64 " (%s, %s)", i ? ", " : "",
				 jid(file, "id"), jstr(file, "name") ? jstr(file, "name") : "?",
				 jstr(file, "type") ? jstr(file, "type") : "?");

		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
}

/*
 * Which file of the version the entry means:
 *  1. file_id, when given: that file, or an error (never a guess);
 *  2. a file whose name is the entry's filename: the user wrote the name
 *     CivitAI gives it (a version with fp16 and fp32 files, say);
 *  3. the primary file (primary: true; /models marks only that one);
 *  4. the first file of type "Model".
 * filename is the file's name in the mount, so a filename that matches no
 * file only renames the pick of 3-4. With none of these, the error lists
 * the files so that file_id can choose one: a VAE or a config is never
 * taken for the model.
 */
static int pick_file(struct source_file *f, const json_t *version, const json_t **out)
{
	const struct config_entry *e = f->entry;
	const json_t *files = json_object_get(version, "files"), *file, *by_name = NULL,
		     *primary = NULL, *model = NULL;
	uint64_t vid = version_id(version, e);
	char list[300];
	size_t i;

	if (!json_is_array(files) || json_array_size(files) == 0) {
		source_set_error(f, -ENOENT, "CivitAI model version %" PRIu64 " has no files to "
				 "download (archived or removed)", vid);
		return -ENOENT;
	}
	json_array_foreach(files, i, file) {
		const char *name = jstr(file, "name"), *type = jstr(file, "type");

		if (!jid(file, "id"))
			continue;
		if (e->file_id && jid(file, "id") == cfg_id(e->file_id)) {
			*out = file;
			return 0;
		}
		if (!by_name && e->filename && name && strcmp(name, e->filename) == 0)
			by_name = file;
		if (!primary && json_is_true(json_object_get(file, "primary")))
			primary = file;
		if (!model && type && strcmp(type, "Model") == 0)
			model = file;
	}
	list_files(files, list, sizeof(list));
	if (e->file_id) {
		source_set_error(f, -ENOENT, "CivitAI model version %" PRIu64 " has no file %s; its "
				 "files: %s", vid, e->file_id, list);
		return -ENOENT;
	}
	*out = by_name ? by_name : primary ? primary : model;
	if (!*out) {
		source_set_error(f, -ENOENT, "CivitAI model version %" PRIu64 " has no primary or "
				 "Model file; choose one with file_id: %s", vid, list);
		return -ENOENT;
	}
	return 0;
}

/* f's path, hash and pins from the chosen file: 0, f's err, or -ENOMEM. */
static int describe_file(struct source_file *f, const json_t *version, const json_t *file)
{
	const struct config_entry *e = f->entry;
	const char *sha = jstr(json_object_get(file, "hashes"), "SHA256");
	uint64_t vid = version_id(version, e), fid = jid(file, "id");
	char *name;
	int rc;

	name = e->filename ? strdup(e->filename) : mount_name(jstr(file, "name"), e->name);
	if (!name)
		return -ENOMEM;
	free(f->path);
	f->path = NULL;
	rc = source_join_path(e->dir, name, &f->path);
	free(name);
	if (rc)
		return rc;
	free(f->revision);
	free(f->remote_path);
	if (asprintf(&f->revision, "%" PRIu64, vid) < 0)
		f->revision = NULL;
	if (asprintf(&f->remote_path, "api/download/models/%" PRIu64 "?fileId=%" PRIu64,
		     vid, fid) < 0)
		f->remote_path = NULL;
	if (!f->revision || !f->remote_path)
		return -ENOMEM;
	/* A version never changes its bytes: its publication time is a stable
	 * mtime (Forge keys its hash cache by mtime). */
	f->mtime = text_iso_time(jstr(version, "publishedAt"));
	if (f->mtime < 0)
		f->mtime = text_iso_time(jstr(version, "createdAt"));

	if (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64))
		sha = NULL;		/* not a SHA-256: verify with the config's, if any */
	if (sha && e->sha256 && strcasecmp(sha, e->sha256) != 0) {
		source_set_error(f, -EPROTO, "sha256 mismatch: CivitAI lists %.64s for file %" PRIu64
				 " of version %" PRIu64 " but the config pins %s", sha, fid, vid,
				 e->sha256);
		return -EPROTO;
	}
	free(f->sha256);
	f->sha256 = strdup(sha ? sha : e->sha256 ? e->sha256 : "");
	if (!f->sha256)
		return -ENOMEM;
	if (!f->sha256[0]) {
		free(f->sha256);
		f->sha256 = NULL;
	}
	for (char *p = f->sha256; p && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* The file of a version body, and f's fields from it: see source_i.h. */
int source_civitai_version_file(struct source_file *f, const json_t *version,
				const json_t **file)
{
	int rc = pick_file(f, version, file);

	return rc ? rc : describe_file(f, version, *file);
}

/* ---- the download ------------------------------------------------------- */

/* The auth a block fetch carries: the token and the entry's headers, for
 * the API's origin only (the storage host and mirrors see none). */
static int fill_auth(struct civ *cv, struct source_file *f)
{
	struct source_auth a = {
		.origin_url = (char *)cv->endpoint,
		.authorization = cv->bearer,
		.headers = cv->headers,
		.n_headers = cv->n_headers,
		.token_name = cv->bearer ? cv->token_name : NULL,
	};

	return source_auth_copy(&f->auth, &a);
}

/* Where the credential in use came from, for messages. */
static const char *cred_name(const struct civ *cv)
{
	return cv->token_name ? cv->token_name : "the entry's auth_header";
}

/* Turn a failed download probe into f's error: the err it set. usage is
 * the version's usageControl, or NULL. */
static int download_error(struct civ *cv, struct source_file *f, int rc, const struct http_meta *m,
			  const char *usage)
{
	const char *why = m->error_text ? m->error_text : strerror(-rc);
	bool api = !m->final_url || same_origin(m->final_url, cv->endpoint);
	const char *vid = f->revision;

	/* A browser-like client is sent to the login page instead of a 401. */
	if (api && strncmp(url_path(m->final_url), "/login", 6) == 0)
		rc = -EACCES;
	switch (rc) {
	case -EAGAIN:
		if (api && m->status == 429)
			source_set_error(f, -EAGAIN, "CivitAI refuses downloads for now (%s): quota "
					 "or rate limit; retried later", why);
		else
			source_set_error(f, -EAGAIN, "CivitAI download unreachable (%s)", why);
		return -EAGAIN;
	case -EACCES:
		if (!api)
			source_set_error(f, -EACCES, "CivitAI's storage host refused the signed "
					 "download URL (%s)", why);
		else if (m->status == 401 && (contains(why, "disabled") ||
					      (usage && strcmp(usage, "Download") != 0)))
			source_set_error(f, -EACCES, "the creator has disabled downloads of this "
					 "file (%s)", why);
		else if (m->status == 403 && contains(why, "early access") && cv->bearer)
			source_set_error(f, -EACCES, "model version %s is in early access (%s): the "
					 "account of %s has no access to it yet", vid, why,
					 cred_name(cv));
		else if (m->status == 403 && contains(why, "early access"))
			source_set_error(f, -EACCES, "model version %s is in early access (%s): only "
					 "supporters can download it until early access ends; set "
					 TOKEN_ENV " to an account that has access", vid, why);
		else if (!cv->bearer && m->status != 403)
			source_set_error(f, -EACCES, "the creator requires you to be logged in to "
					 "download it: set " TOKEN_ENV " to an API key from "
					 ACCOUNT_URL);
		else if (cv->bearer)
			source_set_error(f, -EACCES, "CivitAI denied the download to the account of "
					 "%s (%s)", cred_name(cv), why);
		else
			source_set_error(f, -EACCES, "CivitAI denied the download (%s)", why);
		f->gated = api && m->status == 403 && contains(why, "early access");
		return -EACCES;
	case -ENOENT:
		if (!api)
			source_set_error(f, -ENOENT, "the file is missing from CivitAI's storage "
					 "(%s)", why);
		else if (m->status == 410)
			source_set_error(f, -ENOENT, "model version %s is archived on CivitAI: no "
					 "longer available for download (%s)", vid, why);
		else
			source_set_error(f, -ENOENT, "CivitAI has no download for %s (%s)",
					 f->remote_path, why);
		return -ENOENT;
	case -EPROTO:
		if (contains(m->content_type, "text/html"))
			source_set_error(f, -EPROTO, "CivitAI's download gave an HTML page (HTTP %ld "
					 "from %s), not the file: a login or error page?", m->status,
					 api ? "the API" : "storage");
		else if (m->range_ignored)
			source_set_error(f, -EPROTO, "CivitAI's storage host ignores Range requests, "
					 "so modelfs cannot read it lazily");
		else
			source_set_error(f, -EPROTO, "CivitAI's download gave no file (%s)", why);
		return -EPROTO;
	case -ENOMEM:
		return -ENOMEM;
	default:
		source_set_error(f, rc, "CivitAI download failed (%s)", why);
		return rc;
	}
}

/*
 * Ask the download endpoint for f (f->remote_path) and follow its
 * redirect with a GET of bytes 0-0: f's data_url, auth and exact size.
 * 0, or f's err. version and file (NULL in a refresh) only explain a
 * refusal and check the size: sizeKB is never taken for it.
 */
static int probe_download(struct civ *cv, struct source_file *f, const json_t *version,
			  const json_t *file)
{
	const json_t *kb = json_object_get(file, "sizeKB");
	double sizekb = json_is_number(kb) ? json_number_value(kb) : NAN;
	const struct config_entry *e = f->entry;
	struct http_meta m;
	char *url = NULL;
	struct http_request rq = {
		.origin_url = cv->endpoint,
		.headers = cv->headers,
		.n_headers = cv->n_headers,
		.authorization = cv->bearer,
		.range_first = 0,
		.range_len = 1,
		.follow_redirects = true,	/* the 307 goes to another origin: no token there */
		.timeout_sec = API_TIMEOUT,
	};
	int rc;

	if (asprintf(&url, "%s/%s", cv->endpoint, f->remote_path) < 0)
		return -ENOMEM;
	rq.url = url;
	rc = http_get(cv->c, &rq, http_discard_sink, NULL, &m);
	if (rc == -ERANGE && m.total_size == 0)
		rc = 0;		/* an empty file: bytes 0-0 is unsatisfiable */
	log_debug("event=resolve entry=%s status=%ld size=%lld rc=%d", e->id, m.status,
		  (long long)m.total_size, rc);
	if (rc) {
		rc = download_error(cv, f, rc, &m, jstr(version, "usageControl"));
		goto out;
	}
	if (m.total_size < 0) {
		source_set_error(f, -EPROTO, "CivitAI's storage gave no size (no Content-Range total)");
		rc = -EPROTO;
		goto out;
	}
	if (e->size >= 0 && e->size != m.total_size) {
		source_set_error(f, -EPROTO, "size mismatch: CivitAI serves %lld bytes but the config "
				 "says %lld", (long long)m.total_size, (long long)e->size);
		rc = -EPROTO;
		goto out;
	}
	if (!isnan(sizekb) && fabs(sizekb * 1024 - (double)m.total_size) >
	    1024 + (double)m.total_size / 100)
		log_warn("event=size_differs entry=%s size=%lld sizeKB=%.2f action=\"the storage's "
			 "size is used\"", e->id, (long long)m.total_size, sizekb);
	f->size = m.total_size;
	if (f->mtime < 0)
		f->mtime = m.mtime;
	/* With a SHA-256 the content is pinned by its hash, and the signed URL
	 * may come from another storage backend (another ETag) at each
	 * refresh. Without one, the storage's ETag guards against a change. */
	free(f->validator);
	f->validator = NULL;
	if (!f->sha256 && m.etag && http_etag_is_strong(m.etag)) {
		f->validator = strdup(m.etag);
		if (!f->validator) {
			rc = -ENOMEM;
			goto out;
		}
	}
	free_secret(f->data_url);
	f->data_url = strdup(m.final_url ? m.final_url : url);
	/* The download endpoint (its 307 to storage followed by the tier),
	 * keyed by the file's SHA-256: the signed storage URL expires. */
	free(f->stable_url);
	f->stable_url = NULL;
	if (f->sha256 && !(f->stable_url = strdup(url))) {
		rc = -ENOMEM;
		goto out;
	}
	if (!f->data_url || fill_auth(cv, f) != 0 || source_fill_mirrors(f) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	f->err = 0;
	free(f->error);
	f->error = NULL;
out:
	http_meta_clear(&m);
	free(url);
	return rc;
}

/*
 * Resolve f from its entry: version, file, then the download probe.
 * Returns 0 (f->err tells the outcome), -EAGAIN (f->err too) or -ENOMEM.
 */
static int resolve_file(struct civ *cv, struct source_file *f)
{
	json_t *version = NULL;
	const json_t *file = NULL;
	int rc;

	rc = get_version(cv, f, &version);
	if (rc == 0)
		rc = source_civitai_version_file(f, version, &file);
	if (rc != -ENOMEM && cv->token_status == -EACCES) {
		/* Named (anonymously) as far as it went; nothing is fetched with a
		 * token the user believes in but CivitAI refused. */
		source_set_error(f, -EACCES, "%s", cv->token_error);
		rc = -EACCES;
	} else if (rc == 0) {
		rc = probe_download(cv, f, version, file);
	}
	json_decref(version);
	if (rc == -ENOMEM || rc == -EAGAIN)
		return rc;
	return 0;
}

static int civ_resolve(struct source_ctx *ctx, struct http_client *c,
		       const struct config_entry *e, struct source_file **files, size_t *n)
{
	struct source_file *f;
	struct civ cv;
	int rc = source_files_new(e, 1, &f);

	if (rc)
		return rc;
	f->size = e->size;
	rc = source_join_path(e->dir, e->filename ? e->filename : e->name, &f->path);
	if (rc == 0)
		rc = civ_open(&cv, ctx, c, e);
	if (rc) {
		source_files_free(f, 1);
		return rc;
	}
	rc = resolve_file(&cv, f);
	civ_close(&cv);
	if (rc == -ENOMEM) {
		source_files_free(f, 1);
		return rc;
	}
	*files = f;
	*n = 1;
	return rc;
}

/*
 * A fresh signed URL for f. A file resolved before carries its version
 * (revision) and download path (remote_path): one request to the download
 * endpoint, no metadata. A file listed without a resolution (CivitAI was
 * down at mount) is resolved from its entry, keeping its path.
 */
static int civ_refresh(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	int64_t size = f->size;
	char *sha = f->sha256 ? strdup(f->sha256) : NULL;
	struct civ cv;
	int rc;

	if (f->sha256 && !sha)
		return -ENOMEM;
	rc = civ_open(&cv, ctx, c, f->entry);
	if (rc) {
		free(sha);
		return rc;
	}
	if (cv.token_status == -EACCES) {
		source_set_error(f, -EACCES, "%s", cv.token_error);
		rc = -EACCES;
	} else if (f->revision && f->remote_path) {
		rc = probe_download(&cv, f, NULL, NULL);
	} else {
		char *path = f->path;

		f->path = NULL;
		rc = resolve_file(&cv, f);
		free(f->path);
		f->path = path;		/* the mount keeps the name it listed */
		if (rc == 0)
			rc = f->err;
	}
	civ_close(&cv);
	/* The same name must still mean the same bytes. */
	if (rc == 0 && size >= 0 && f->size != size) {
		source_set_error(f, -ESTALE, "%s changed at its origin: it was %lld bytes, CivitAI "
				 "now says %lld", f->path, (long long)size, (long long)f->size);
		rc = -ESTALE;
	} else if (rc == 0 && sha && (!f->sha256 || strcmp(sha, f->sha256) != 0)) {
		source_set_error(f, -ESTALE, "%s changed at its origin: its sha256 was %s, CivitAI "
				 "now says %s", f->path, sha, f->sha256 ? f->sha256 : "none");
		rc = -ESTALE;
	}
	free(sha);
	return rc;
}

const struct source_ops source_civitai_ops = {
	.kind = CONFIG_SOURCE_CIVITAI,
	.resolve = civ_resolve,
	.refresh = civ_refresh,
};
