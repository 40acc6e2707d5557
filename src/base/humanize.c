/*
 * humanize.c: numbers for people, in binary units (what ls -lh and the
 * webuis show).
 */
#include "modelfs/humanize.h"

#include <stdio.h>

char *humanize_bytes(uint64_t bytes, char *out, size_t outlen)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(out, outlen, "%llu B", (unsigned long long)bytes);
		return out;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, outlen, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
	return out;
}
