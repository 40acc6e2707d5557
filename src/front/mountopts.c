/*
 * mountopts.c: a mount's -o list sorted into what mount(8) alone cares
 * about (dropped), what libfuse takes (passed on), and modelfs's own keys
 * (mapped), the rest refused (see mountopts.h). One table holds every
 * name, so the three callers (`modelfs mount -o`, mount.fuse.modelfs and
 * mount.modelfs) can never disagree.
 */
#include "modelfs/mountopts.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/config.h"

enum opt_class {
	OPT_IGNORE,		/* mount(8)'s, meaningless to a FUSE daemon */
	OPT_FUSE,		/* libfuse's: passed through */
	OPT_OURS,		/* modelfs's key */
	OPT_REFUSE,		/* known, and refused with a reason */
};

#define IGN(n) { n, OPT_IGNORE, NULL }
#define FUSE(n) { n, OPT_FUSE, NULL }
#define OURS(n) { n, OPT_OURS, NULL }

/* A name ending in '=' matches "name=value" and wants a value; any other
 * matches the word alone. */
static const struct opt_rule {
	const char *name;
	enum opt_class cls;
	const char *why;	/* OPT_REFUSE only */
} rules[] = {
	IGN("auto"), IGN("noauto"), IGN("user"), IGN("nouser"), IGN("users"), IGN("owner"),
	IGN("group"), IGN("_netdev"), IGN("nofail"), IGN("defaults"), IGN("comment="),
	IGN("user="),
	FUSE("allow_other"), FUSE("allow_root"), FUSE("auto_unmount"),
	FUSE("default_permissions"), FUSE("max_read="), FUSE("blksize="),
	FUSE("context="), FUSE("fscontext="), FUSE("defcontext="),
	FUSE("rootcontext="),
	FUSE("dev"), FUSE("nodev"), FUSE("suid"), FUSE("nosuid"),
	FUSE("exec"), FUSE("noexec"), FUSE("async"), FUSE("sync"),
	FUSE("dirsync"), FUSE("atime"), FUSE("noatime"),
	FUSE("diratime"), FUSE("nodiratime"), FUSE("lazytime"),
	FUSE("nolazytime"), FUSE("relatime"), FUSE("norelatime"),
	FUSE("strictatime"), FUSE("nostrictatime"),
	OURS("debug"), OURS("cache_dir="), OURS("layout="),
	OURS("uid="), OURS("gid="), OURS("umask="),
	OURS("log_file="), OURS("local_dir="), OURS("ro"), OURS("rw"),
	{ "fsname=", OPT_REFUSE, "modelfs sets it to modelfs:CONFIG, so that findmnt -t "
	  "fuse.modelfs finds the mount" },
	{ "subtype=", OPT_REFUSE, "modelfs sets it to modelfs, so that findmnt -t "
	  "fuse.modelfs finds the mount" },
	{ "blkdev", OPT_REFUSE, "modelfs is not a block device filesystem" },
};

/* The rule for opt: one of the same name and the same form (word, or
 * name=value) first, else one of the same name only, so that the caller
 * can say "needs a value" or "takes no value". NULL for an unknown name. */
static const struct opt_rule *find_rule(const char *opt, const char **value)
{
	const char *eq = strchr(opt, '=');
	size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
	const struct opt_rule *same_name = NULL;

	*value = eq ? eq + 1 : NULL;
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		const char *name = rules[i].name;
		size_t nlen = strcspn(name, "=");

		if (nlen != klen || strncmp(name, opt, klen) != 0)
			continue;
		if ((name[nlen] == '=') == (eq != NULL))
			return &rules[i];
		same_name = &rules[i];
	}
	return same_name;
}

/* Append opt to *list, comma-separated, as written (escapes kept, since
 * libfuse reads them the same way). */
static int list_add(char **list, const char *opt)
{
	size_t old = *list ? strlen(*list) : 0;
	char *grown = realloc(*list, old + strlen(opt) + 2);

	if (!grown)
		return -ENOMEM;
	sprintf(grown + old, "%s%s", old ? "," : "", opt);
	*list = grown;
	return 0;
}

/* Next option of *p (escapes kept) into a new string; NULL at the end
 * or when out of memory (*nomem set). */
static char *next_opt(const char **p, bool *nomem)
{
	const char *s = *p, *e = s;
	char *opt;

	if (!*s)
		return NULL;
	while (*e && *e != ',') {
		if (*e == '\\' && e[1])
			e++;
		e++;
	}
	opt = strndup(s, (size_t)(e - s));
	*nomem = !opt;
	*p = *e ? e + 1 : e;
	return opt;
}

/* A copy of v with its escapes undone. */
static char *unescape(const char *v)
{
	char *out = malloc(strlen(v) + 1), *o = out;

	if (!out)
		return NULL;
	for (; *v; v++) {
		if (*v == '\\' && v[1])
			v++;
		*o++ = *v;
	}
	*o = '\0';
	return out;
}

/* uid=/gid=: a number, or a name looked up. */
static int parse_id(const char *key, const char *v, bool group, long long *out, char *err,
		    size_t errlen)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (*v && !*end && errno == 0 && n >= 0 && n < 4294967295LL) {
		*out = n;
		return 0;
	}
	if (group) {
		struct group *gr = getgrnam(v);

		if (gr) {
			*out = gr->gr_gid;
			return 0;
		}
	} else {
		struct passwd *pw = getpwnam(v);

		if (pw) {
			*out = pw->pw_uid;
			return 0;
		}
	}
	snprintf(err, errlen, "option %s=%s: not a number nor a known %s name", key, v,
		 group ? "group" : "user");
	return -EINVAL;
}

/* A modelfs key with its value (unescaped) into o. */
static int set_ours(struct mount_opts *o, const char *opt, const char *raw, char *err,
		    size_t errlen)
{
	char key[16], *v, *end, **slot = NULL;
	int rc = 0;

	snprintf(key, sizeof(key), "%.*s", (int)strcspn(opt, "="), opt);
	if (strcmp(key, "debug") == 0) {
		o->debug = true;
		return 0;
	}
	if (strcmp(key, "ro") == 0 || strcmp(key, "rw") == 0) {
		o->read_only = key[1] == 'o';
		return 0;
	}
	v = unescape(raw);
	if (!v)
		return -ENOMEM;
	if (!v[0]) {
		snprintf(err, errlen, "option %s= needs a value", key);
		rc = -EINVAL;
	} else if (strcmp(key, "uid") == 0) {
		rc = parse_id(key, v, false, &o->uid, err, errlen);
	} else if (strcmp(key, "gid") == 0) {
		rc = parse_id(key, v, true, &o->gid, err, errlen);
	} else if (strcmp(key, "umask") == 0) {
		long m = strtol(v, &end, 8);

		if (*end || m < 0 || m > 0777) {
			snprintf(err, errlen, "option umask=%s: give an octal mask from 0 to 0777, "
				 "e.g. umask=022", v);
			rc = -EINVAL;
		} else {
			o->umask = (int)m;
		}
	} else if (strcmp(key, "layout") == 0) {
		if (!config_layout_dir(v, "checkpoints")) {
			snprintf(err, errlen, "option layout=%s: not a layout; give forge, comfyui "
				 "or flat", v);
			rc = -EINVAL;
		} else {
			slot = &o->layout;
		}
	} else if (strcmp(key, "cache_dir") == 0) {
		slot = &o->cache_dir;
	} else if (strcmp(key, "local_dir") == 0) {
		slot = &o->local_dir;
	} else {
		slot = &o->log_file;
	}
	if (slot) {
		free(*slot);	/* the last one given wins */
		*slot = v;
		v = NULL;
	}
	free(v);
	return rc;
}

int mountopts_parse(const char *text, struct mount_opts *out, char *err, size_t errlen)
{
	const char *p = text ? text : "";
	bool nomem = false;
	char *opt;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->uid = out->gid = -1;
	out->umask = -1;
	err[0] = '\0';
	while (rc == 0 && (opt = next_opt(&p, &nomem)) != NULL) {
		const char *value;
		const struct opt_rule *r = find_rule(opt, &value);

		if (!opt[0]) {
			/* "a,,b": an empty option is harmless */
		} else if (strncmp(opt, "x-", 2) == 0) {
			/* x-systemd.*, x-gvfs-*: for mount(8) and systemd only */
		} else if (!r) {
			snprintf(err, errlen, "unknown mount option \"%s\"; modelfs takes cache_dir=, "
				 "layout=, uid=, gid=, umask=, log_file=, local_dir=, ro, rw, debug, libfuse's options "
				 "(allow_other, auto_unmount, max_read=, default_permissions, ...) "
				 "and ignores mount(8)'s (_netdev, nofail, noauto, x-*, ...)", opt);
			rc = -EINVAL;
		} else if ((r->name[strlen(r->name) - 1] == '=') != (value != NULL)) {
			snprintf(err, errlen, "mount option \"%s\" %s", opt,
				 value ? "takes no value" : "needs a value (NAME=VALUE)");
			rc = -EINVAL;
		} else if (r->cls == OPT_REFUSE) {
			snprintf(err, errlen, "mount option \"%s\" is not allowed: %s", opt, r->why);
			rc = -EINVAL;
		} else if (r->cls == OPT_FUSE) {
			out->allow_other |= strcmp(opt, "allow_other") == 0;
			rc = list_add(&out->fuse, opt);
		} else if (r->cls == OPT_OURS) {
			rc = set_ours(out, opt, value ? value : "", err, errlen);
		}
		free(opt);
	}
	if (nomem && rc == 0)
		rc = -ENOMEM;
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory while reading the mount options");
	if (rc)
		mountopts_free(out);
	return rc;
}

void mountopts_free(struct mount_opts *o)
{
	free(o->fuse);
	free(o->cache_dir);
	free(o->layout);
	free(o->log_file);
	free(o->local_dir);
	memset(o, 0, sizeof(*o));
	o->uid = o->gid = -1;
	o->umask = -1;
}
