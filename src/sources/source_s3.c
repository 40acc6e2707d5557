/*
 * source_s3.c: objects in S3-compatible storage (AWS S3, MinIO, R2, B2),
 * named "s3://bucket/key" (PROTOCOLS.md 4).
 *
 * (1) Where: the entry's endpoint, else $AWS_ENDPOINT_URL_S3, else
 *     $AWS_ENDPOINT_URL, addressed path-style ({endpoint}/{bucket}/{key});
 *     with none, AWS itself, virtual-hosted
 *     (https://{bucket}.s3.{region}.amazonaws.com/{key}; path-style on
 *     s3.{region}.amazonaws.com for a bucket with a '.', which no
 *     wildcard certificate covers). The key is written raw in the s3://
 *     URL, as the AWS CLI takes it, and percent-encoded here once per
 *     segment exactly as SigV4's canonical URI wants it (every byte but
 *     A-Z a-z 0-9 - . _ ~ and the '/' between segments): libcurl 7.88
 *     signs the path as it is sent.
 * (2) Region: the entry's, else $AWS_REGION, else $AWS_DEFAULT_REGION,
 *     else us-east-1. It is part of the signature, so it is always
 *     passed ("aws:amz:REGION:s3"), never guessed from a host name.
 * (3) Credentials: $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (and
 *     $AWS_SESSION_TOKEN for temporary ones), registered as log secrets.
 *     http.c signs origin hops with them (SigV4 by libcurl, plus
 *     x-amz-content-sha256 and x-amz-security-token). None set: anonymous
 *     requests, for public buckets. An entry's auth_header replaces SigV4.
 * (4) Resolution is one signed GET of bytes 0-0: size from Content-Range,
 *     the ETag as validator (an opaque change detector: a multipart or
 *     SSE ETag is no MD5, so it is never taken for a hash), mtime from
 *     Last-Modified. S3's XML <Code> (http.c puts "CODE: message" after
 *     "HTTP nnn: " in error_text) picks the errno and the advice.
 * Presigned https URLs are plain url entries (source_url.c): they carry
 * their signature and must not be signed again.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelfs/log.h"
#include "modelfs/s3env.h"
#include "source_i.h"

#define S3_CODE_MAX		64

/* An object's place, from the entry and the environment. */
struct s3_object {
	char *bucket;
	char *key;		/* raw, as written after the bucket */
	char *region;
	char *url;		/* where GETs go */
	char *credentials;	/* "KEY:SECRET", or NULL: anonymous; secret */
	char *session_token;	/* or NULL; secret */
};

static void object_clear(struct s3_object *o)
{
	free(o->bucket);
	free(o->key);
	free(o->region);
	free(o->url);
	if (o->credentials)
		explicit_bzero(o->credentials, strlen(o->credentials));
	free(o->credentials);
	if (o->session_token)
		explicit_bzero(o->session_token, strlen(o->session_token));
	free(o->session_token);
	memset(o, 0, sizeof(*o));
}

/* SigV4's UriEncode of a key: unreserved bytes as they are, '/' kept
 * between segments, everything else %XX with upper-case hex. */
static char *encode_key(const char *key)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(key) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || *p == '/') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static bool dns_bucket(const char *b)
{
	for (; *b; b++)
		if (!(islower((unsigned char)*b) || isdigit((unsigned char)*b) || *b == '-'))
			return false;
	return true;
}

/* Fill o from e and the environment: 0, or -EINVAL with *why set, or
 * -ENOMEM. */
static int locate(const struct config_entry *e, struct s3_object *o, const char **why)
{
	const char *slash, *endpoint;
	char *enc = NULL, origin[300];
	size_t elen;
	int n = -1;

	memset(o, 0, sizeof(*o));
	*why = NULL;
	/* config.c checked the form "s3://bucket/key". */
	slash = strchr(e->url + 5, '/');
	if (strncasecmp(e->url, "s3://", 5) != 0 || !slash) {
		*why = "the url must be s3://bucket/key";
		return -EINVAL;
	}
	o->bucket = strndup(e->url + 5, (size_t)(slash - e->url - 5));
	o->key = strdup(slash + 1);
	o->region = strdup(e->region ? e->region : s3env_region());
	if (!o->bucket || !o->key || !o->region)
		goto nomem;
	/* Upper case and '_' (older buckets) go path-style: dns_bucket(). */
	if (!s3env_bucket_ok(o->bucket, strlen(o->bucket))) {
		*why = "that is not an S3 bucket name (letters, digits, '.', '-', '_')";
		return -EINVAL;
	}
	if (!o->key[0]) {
		*why = "the url names no key: s3://bucket/key";
		return -EINVAL;
	}
	enc = encode_key(o->key);
	if (!enc)
		goto nomem;
	endpoint = e->endpoint ? e->endpoint : s3env_endpoint();
	if (endpoint) {
		if (http_url_origin(endpoint, origin, sizeof(origin)) < 0) {
			*why = e->endpoint ? "endpoint is not an http(s) URL"
					   : "AWS_ENDPOINT_URL(_S3) is not an http(s) URL";
			free(enc);
			return -EINVAL;
		}
		elen = strlen(endpoint);
		while (elen > 0 && endpoint[elen - 1] == '/')
			elen--;
		n = asprintf(&o->url, "%.*s/%s/%s", (int)elen, endpoint, o->bucket, enc);
	} else if (dns_bucket(o->bucket)) {
		n = asprintf(&o->url, "https://%s.s3.%s.amazonaws.com/%s", o->bucket, o->region, enc);
	} else {
		n = asprintf(&o->url, "https://s3.%s.amazonaws.com/%s/%s", o->region, o->bucket, enc);
	}
	free(enc);
	if (n < 0) {
		o->url = NULL;
		goto nomem;
	}

	return s3env_credentials(&o->credentials, &o->session_token, why);
nomem:
	return -ENOMEM;
}

/* What f sends: SigV4 for the object's own host, or the entry's
 * auth_header, or nothing. */
static int fill_auth(struct source_file *f, const struct s3_object *o)
{
	const struct config_entry *e = f->entry;
	char sigv4[96];
	bool sign = o->credentials && !e->auth_header;
	struct source_auth a = {
		.origin_url = o->url,
		.authorization = e->auth_header,
		.headers = e->headers,
		.n_headers = e->n_headers,
		.aws_sigv4 = sign ? sigv4 : NULL,
		.aws_credentials = sign ? o->credentials : NULL,
		.aws_session_token = sign ? o->session_token : NULL,
		.token_name = sign ? "AWS_ACCESS_KEY_ID" : NULL,
	};

	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", o->region);
	return source_auth_copy(&f->auth, &a);
}

/* The S3 error code of a failed request ("NoSuchKey"), from error_text
 * "HTTP 404: NoSuchKey: The specified key does not exist."; "" if none. */
static void error_code(const struct http_meta *m, char code[S3_CODE_MAX])
{
	const char *p = m->error_text ? strstr(m->error_text, ": ") : NULL;
	size_t n = 0;

	code[0] = '\0';
	if (!p || strncmp(m->error_text, "HTTP ", 5) != 0)
		return;
	for (p += 2; isalnum((unsigned char)p[n]) && n + 1 < S3_CODE_MAX; n++)
		code[n] = p[n];
	code[p[n] == ':' || p[n] == '\0' ? n : 0] = '\0';
}

/* The probe's failure as f's errno and advice. */
static int apply_error(struct source_file *f, const struct s3_object *o, int rc,
		       const struct http_meta *m)
{
	const char *text = m->error_text ? m->error_text : strerror(-rc);
	char code[S3_CODE_MAX];

	error_code(m, code);
	if (rc == -EAGAIN) {
		source_set_error(f, -EAGAIN, "S3 unreachable or busy: %s", text);
		return -EAGAIN;
	}
	if (strcmp(code, "NoSuchBucket") == 0)
		source_set_error(f, -ENOENT, "no bucket %s at the endpoint (NoSuchBucket)", o->bucket);
	else if (rc == -ENOENT)
		source_set_error(f, -ENOENT, "no object s3://%s/%s (%s)", o->bucket, o->key,
				 code[0] ? code : "HTTP 404");
	else if (strcmp(code, "RequestTimeTooSkewed") == 0)
		source_set_error(f, -EACCES, "clock skew: this machine's clock differs from the S3 "
				 "server's by more than 15 minutes (RequestTimeTooSkewed); set the "
				 "time (NTP)");
	else if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
		 strcmp(code, "TokenRefreshRequired") == 0)
		source_set_error(f, -EACCES, "the temporary credentials were refused (%s): renew "
				 "AWS_SESSION_TOKEN with its AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
				 code);
	else if (rc == -EACCES && !o->credentials && !f->entry->auth_header)
		source_set_error(f, -EACCES, "access denied to s3://%s/%s (%s) for an anonymous "
				 "request: the bucket is not public; set AWS_ACCESS_KEY_ID/"
				 "AWS_SECRET_ACCESS_KEY", o->bucket, o->key, code[0] ? code : "HTTP 403");
	else if (rc == -EACCES)
		source_set_error(f, -EACCES, "access denied to s3://%s/%s (%s): check "
				 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY%s", o->bucket, o->key,
				 code[0] ? code : text,
				 f->entry->auth_header ? " (or the entry's auth_header)" : "");
	else if (strcmp(code, "AuthorizationHeaderMalformed") == 0 ||
		 strcmp(code, "PermanentRedirect") == 0 || m->status == 301)
		source_set_error(f, -EINVAL, "bucket %s is not in region %s at this endpoint "
				 "(%s): set region (or endpoint) for this entry", o->bucket,
				 o->region, code[0] ? code : "HTTP 301");
	else if (rc == -EPROTO && m->range_ignored)
		source_set_error(f, -EPROTO, "the S3 endpoint ignores Range requests, so modelfs "
				 "cannot read it lazily");
	else
		source_set_error(f, rc == -ENOMEM ? -ENOMEM : rc, "resolution of s3://%s/%s "
				 "failed: %s", o->bucket, o->key, text);
	return rc == -ENOMEM ? -ENOMEM : 0;
}

/* Turn the probe's outcome into f's fields or its error. */
static int apply_probe(struct source_file *f, const struct s3_object *o, int rc,
		       const struct http_meta *m)
{
	const struct config_entry *e = f->entry;

	if (rc == -ERANGE && m->total_size == 0)
		rc = 0;		/* an empty object: bytes 0-0 is unsatisfiable */
	if (rc)
		return apply_error(f, o, rc, m);
	if (m->total_size < 0) {
		source_set_error(f, -EPROTO, "the S3 endpoint gave no size (no Content-Range total)");
		return 0;
	}
	if (e->size >= 0 && e->size != m->total_size) {
		source_set_error(f, -EPROTO, "size mismatch: s3://%s/%s has %lld bytes but the "
				 "config says %lld", o->bucket, o->key, (long long)m->total_size,
				 (long long)e->size);
		return 0;
	}
	source_take_probe(f, m);
	free(f->data_url);
	free(f->remote_path);
	/* Always the object's URL: a redirect elsewhere is followed per
	 * request, and only the object's host is ever signed for. */
	f->data_url = strdup(o->url);
	f->remote_path = strdup(o->key);
	if (!f->data_url || !f->remote_path || fill_auth(f, o) != 0)
		return -ENOMEM;
	f->err = 0;
	free(f->error);
	f->error = NULL;
	return 0;
}

/* One signed GET of bytes 0-0: 0 (f's own err tells), -EAGAIN or -ENOMEM. */
static int probe(struct source_ctx *ctx, struct http_client *c, struct source_file *f)
{
	const struct config_entry *e = f->entry;
	struct s3_object o;
	struct http_meta m;
	const char *why;
	char sigv4[96];
	int rc = locate(e, &o, &why);

	if (rc) {
		if (rc == -EINVAL)
			source_set_error(f, -EINVAL, "%s", why);
		object_clear(&o);
		return rc == -EINVAL ? 0 : rc;
	}
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", o.region);
	{
		bool sign = o.credentials && !e->auth_header;
		struct http_request rq = {
			.url = o.url,
			.origin_url = o.url,
			.headers = e->headers,
			.n_headers = e->n_headers,
			.authorization = e->auth_header,
			.aws_sigv4 = sign ? sigv4 : NULL,
			.aws_credentials = sign ? o.credentials : NULL,
			.aws_session_token = sign ? o.session_token : NULL,
			.range_first = 0,
			.range_len = 1,
			.follow_redirects = true,
			.timeout_sec = 30,
		};

		rc = http_get(c, &rq, http_discard_sink, NULL, &m);
	}
	rc = apply_probe(f, &o, rc, &m);
	log_debug("event=resolve entry=%s source=s3 bucket=%s region=%s signed=%d status=%ld "
		  "size=%lld rc=%d", e->id, o.bucket, o.region, o.credentials != NULL, m.status,
		  (long long)f->size, f->err);
	http_meta_clear(&m);
	object_clear(&o);
	return rc;
}

const struct source_ops source_s3_ops = {
	.kind = CONFIG_SOURCE_S3,
	.probe = probe,
};
