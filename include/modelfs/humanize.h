/*
 * humanize.h: sizes and durations for people ("1.5 GiB", "2m05s").
 */
#ifndef MODELFS_HUMANIZE_H
#define MODELFS_HUMANIZE_H

#include <stddef.h>
#include <stdint.h>

/* "512 B", "8.0 MiB", "1.50 GiB" into out; returns out. */
char *humanize_bytes(uint64_t bytes, char *out, size_t outlen);

/* An age in whole units: "45s", "12m", "3h", "5d"; returns out. */
char *humanize_age(int64_t secs, char *out, size_t outlen);

#endif
