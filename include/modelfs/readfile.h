/*
 * readfile.h: a whole small file (a config, a lock, a manifest, the model
 * catalog) read into memory, with a bound, so that a path given by
 * mistake (a model, a device, a folder) fails at once with a clear errno
 * instead of filling memory or hanging.
 * Threads: no state.
 */
#ifndef MODELFS_READFILE_H
#define MODELFS_READFILE_H

#include <stddef.h>

/* Only a regular file: a FIFO or a terminal is refused (-EINVAL) rather
 * than waited on. Without it, pipes and /proc files are read to EOF too
 * (modelfs mount <(curl ...)). */
#define READFILE_REGULAR_ONLY 1u

/* Read path to its end into *text (NUL-terminated, len bytes; the caller
 * frees it). 0, or -EISDIR for a folder, -EFBIG past max bytes, -EINVAL
 * for what READFILE_REGULAR_ONLY refuses, -ENOMEM, or open()'s and
 * read()'s -errno; *text is NULL then. */
int read_small_file(const char *path, size_t max, unsigned flags, char **text, size_t *len);

#endif
