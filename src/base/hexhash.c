/*
 * hexhash.c: SHA-256 through OpenSSL's EVP interface, as lowercase hex.
 */
#include "modelfs/hexhash.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>

struct hexhash {
	EVP_MD_CTX *ctx;
};

static int hexhash_new_md(const EVP_MD *md, struct hexhash **out)
{
	struct hexhash *h = malloc(sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, md, NULL) != 1) {
		hexhash_free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

int hexhash_new(struct hexhash **out)
{
	return hexhash_new_md(EVP_sha256(), out);
}

int hexhash_new_sha1(struct hexhash **out)
{
	return hexhash_new_md(EVP_sha1(), out);
}

void hexhash_update(struct hexhash *h, const void *data, size_t len)
{
	EVP_DigestUpdate(h->ctx, data, len);
}

void hexhash_final(struct hexhash *h, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(h->ctx, md, &n);
	for (unsigned int i = 0; i < n && i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * (n < 32 ? n : 32)] = '\0';
	hexhash_free(h);
}

void hexhash_free(struct hexhash *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

int hexhash_sha256(const void *data, size_t len, char out[65])
{
	struct hexhash *h;
	int rc = hexhash_new(&h);

	if (rc)
		return rc;
	hexhash_update(h, data, len);
	hexhash_final(h, out);
	return 0;
}
