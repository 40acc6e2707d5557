/*
 * humanize.h: sizes and durations for people ("1.5 GiB", "2m05s").
 */
#ifndef MODELFS_HUMANIZE_H
#define MODELFS_HUMANIZE_H

#include <stddef.h>
#include <stdint.h>

/* "512 B", "8.0 MiB", "1.50 GiB" into out; returns out. */
char *humanize_bytes(uint64_t bytes, char *out, size_t outlen);

#endif
