/*
 * select.c: matching command-line arguments to the files of a mount;
 * see select.h for the forms an argument takes.
 */
#include "modelfs/select.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* arg as a path relative to the mount root: the mountpoint stripped from
 * an absolute one (which stays absolute, and so matches no path, when it
 * lies elsewhere), "./" and repeated or trailing slashes dropped. */
static char *mount_relative(const char *arg, const char *mnt)
{
	size_t mlen = mnt ? strlen(mnt) : 0;
	char *out, *o;
	const char *p = arg;

	while (mlen > 1 && mnt[mlen - 1] == '/')
		mlen--;
	if (mnt && arg[0] == '/' && mlen > 0 && strncmp(arg, mnt, mlen) == 0 &&
	    (arg[mlen] == '/' || arg[mlen] == '\0'))
		p = arg + mlen;
	else if (arg[0] == '/' && !(arg[1] == '\0'))
		return strdup(arg);
	out = malloc(strlen(p) + 1);
	if (!out)
		return NULL;
	o = out;
	while (*p) {
		while (*p == '/')
			p++;
		if (p[0] == '.' && (p[1] == '/' || p[1] == '\0')) {
			p++;
			continue;
		}
		if (o != out && *p)
			*o++ = '/';
		while (*p && *p != '/')
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

static bool names(const struct select_item *it, const char *arg, const char *rel)
{
	size_t n = strlen(rel);

	if (it->path && (n == 0 || (strncmp(it->path, rel, n) == 0 &&
				    (it->path[n] == '\0' || it->path[n] == '/'))))
		return true;
	return (it->entry_id && strcmp(it->entry_id, arg) == 0) ||
	       (it->entry_name && strcmp(it->entry_name, arg) == 0);
}

int select_match(const struct select_item *items, size_t n, char *const *args, size_t nargs,
		 const char *mountpoint, bool *chosen, const char **unmatched)
{
	for (size_t i = 0; i < n; i++)
		chosen[i] = nargs == 0;
	for (size_t a = 0; a < nargs; a++) {
		char *rel = mount_relative(args[a], mountpoint);
		bool any = false;

		if (!rel)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			if (names(&items[i], args[a], rel)) {
				chosen[i] = true;
				any = true;
			}
		free(rel);
		if (!any) {
			*unmatched = args[a];
			return -ENOENT;
		}
	}
	return 0;
}
