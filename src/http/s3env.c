/*
 * s3env.c: the AWS_* environment and S3 bucket names (s3env.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/log.h"
#include "modelfs/s3env.h"

const char *s3env_get(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] ? v : NULL;
}

const char *s3env_region(void)
{
	return s3env_get("AWS_REGION") ? s3env_get("AWS_REGION")
	     : s3env_get("AWS_DEFAULT_REGION") ? s3env_get("AWS_DEFAULT_REGION") : "us-east-1";
}

const char *s3env_endpoint(void)
{
	return s3env_get("AWS_ENDPOINT_URL_S3") ? s3env_get("AWS_ENDPOINT_URL_S3")
						: s3env_get("AWS_ENDPOINT_URL");
}

bool s3env_bucket_ok(const char *name, size_t len)
{
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '.' && name[i] != '-' &&
		    name[i] != '_')
			return false;
	return true;
}

int s3env_credentials(char **credentials, char **session_token, const char **why)
{
	const char *ak = s3env_get("AWS_ACCESS_KEY_ID"), *sk = s3env_get("AWS_SECRET_ACCESS_KEY");
	const char *token = s3env_get("AWS_SESSION_TOKEN");
	char *cred = NULL;

	*credentials = *session_token = NULL;
	if (!ak != !sk) {
		*why = ak ? "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
			  : "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not";
		return -EINVAL;
	}
	if (!ak)
		return 0;
	/* The key id names the account: kept out of logs with the rest. */
	log_add_secret(ak);
	log_add_secret(sk);
	if (asprintf(&cred, "%s:%s", ak, sk) < 0)
		return -ENOMEM;
	log_add_secret(cred);
	if (token) {
		log_add_secret(token);
		*session_token = strdup(token);
		if (!*session_token) {
			explicit_bzero(cred, strlen(cred));
			free(cred);
			return -ENOMEM;
		}
	}
	*credentials = cred;
	return 0;
}
