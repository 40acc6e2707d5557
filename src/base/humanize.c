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

char *humanize_age(int64_t secs, char *out, size_t outlen)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(out, outlen, "%llds", (long long)secs);
	else if (secs < 2 * 3600)
		snprintf(out, outlen, "%lldm", (long long)(secs / 60));
	else if (secs < 2 * 86400)
		snprintf(out, outlen, "%lldh", (long long)(secs / 3600));
	else
		snprintf(out, outlen, "%lldd", (long long)(secs / 86400));
	return out;
}
