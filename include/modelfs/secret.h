/*
 * secret.h: tokens kept in files (an HF token file, serve_token_file,
 * cache_proxy_token_file), read the one way huggingface_hub reads its
 * token: CR and LF dropped, surrounding white space stripped.
 *
 * (1) A value read is registered with log_add_secret() before it is
 *     returned, so no later log line can show it.
 * (2) The buffer the file was read into is wiped.
 * Ownership: the caller frees a value with secret_free() (it wipes).
 * Threads: no shared state but log.h's.
 */
#ifndef MODELFS_SECRET_H
#define MODELFS_SECRET_H

#define SECRET_FILE_MAX 4096	/* bytes read of a token file */

/* raw without CR and LF, stripped: a new string, or NULL when nothing is
 * left or out of memory. */
char *secret_clean(const char *raw);

/* The token in path: 0 and *out; -ENODATA for a file with nothing in it;
 * -errno of open(2) or read(2). */
int secret_read_file(const char *path, char **out);

/* Wipe and free; NULL is a no-op. */
void secret_free(char *value);

#endif
