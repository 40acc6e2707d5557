/*
 * test_mountopts.c: the -o parser shared by `modelfs mount` and the mount
 * helpers: fstab-only options dropped, libfuse's passed through in order,
 * modelfs's keys mapped (names resolved, octal masks, escapes undone),
 * anything else refused with a message naming it.
 */
#include "modelfs/mountopts.h"

#include <errno.h>
#include <string.h>

#include "check.h"

static char err[512];

static int parse(const char *text, struct mount_opts *o)
{
	return mountopts_parse(text, o, err, sizeof(err));
}

static void test_empty(void)
{
	struct mount_opts o;

	CHECK(parse(NULL, &o) == 0);
	CHECK(o.fuse == NULL && o.cache_dir == NULL && o.layout == NULL && o.log_file == NULL);
	CHECK(o.uid == -1 && o.gid == -1 && o.umask == -1 && !o.debug && !o.allow_other);
	mountopts_free(&o);
	CHECK(parse("", &o) == 0 && o.fuse == NULL);
	mountopts_free(&o);
}

/* What an fstab line and mount(8) hand the helper. */
static void test_fstab_line(void)
{
	struct mount_opts o;

	CHECK(parse("rw,auto,noauto,user,nouser,users,_netdev,nofail,defaults,ro,owner,"
		    "x-systemd.automount,x-systemd.idle-timeout=60,comment=systemd.x,"
		    "cache_dir=/var/cache/models,allow_other,uid=1000,gid=0,umask=027", &o) == 0);
	CHECK_STR(o.fuse, "allow_other");
	CHECK(o.allow_other);
	CHECK_STR(o.cache_dir, "/var/cache/models");
	CHECK(o.uid == 1000 && o.gid == 0 && o.umask == 027);
	CHECK(o.read_only);		/* ro, after rw: the last one wins */
	mountopts_free(&o);
}

static void test_fuse_passthrough(void)
{
	struct mount_opts o;

	/* mount.fuse3 appends dev,suid; order is kept. */
	CHECK(parse("auto_unmount,max_read=131072,default_permissions,dev,suid,noatime,"
		    "allow_root,debug", &o) == 0);
	CHECK_STR(o.fuse, "auto_unmount,max_read=131072,default_permissions,dev,suid,noatime,"
		  "allow_root");
	CHECK(o.debug && !o.allow_other);
	mountopts_free(&o);
}

static void test_ours(void)
{
	struct mount_opts o;

	CHECK(parse("layout=comfyui,log_file=/var/log/m.log,cache_dir=/a\\,b,cache_dir=/c,"
		    "uid=root,gid=root,umask=0", &o) == 0);
	CHECK_STR(o.layout, "comfyui");
	CHECK_STR(o.log_file, "/var/log/m.log");
	CHECK_STR(o.cache_dir, "/c");			/* the last one wins */
	CHECK(o.uid == 0 && o.gid == 0 && o.umask == 0);
	CHECK(o.fuse == NULL);
	mountopts_free(&o);
	CHECK(parse("cache_dir=/a\\,b", &o) == 0);
	CHECK_STR(o.cache_dir, "/a,b");		/* an escaped comma is the value's */
	mountopts_free(&o);
	CHECK(parse("layout=FLAT", &o) == 0);
	CHECK(!o.read_only && o.local_dir == NULL);	/* local files writable by default */
	mountopts_free(&o);
	CHECK(parse("ro,local_dir=/srv/a\\,b,rw", &o) == 0);
	CHECK_STR(o.local_dir, "/srv/a,b");
	CHECK(!o.read_only && o.fuse == NULL);
	mountopts_free(&o);
}

static void refused(const char *text, const char *named)
{
	struct mount_opts o;

	CHECK(parse(text, &o) == -EINVAL);
	if (!strstr(err, named)) {
		failed++;
		fprintf(stderr, "-o %s: message \"%s\" does not name \"%s\"\n", text, err, named);
	}
	CHECK(o.fuse == NULL && o.cache_dir == NULL);	/* nothing left to free */
}

static void test_refused(void)
{
	refused("allow_other,bogus,nofail", "\"bogus\"");
	refused("cache_dir=/x,nonempty", "\"nonempty\"");
	refused("fsname=mine", "findmnt");
	refused("subtype=x", "subtype");
	refused("uid=no-such-user-here", "uid=no-such-user-here");
	refused("gid=-1", "gid=-1");
	refused("umask=999", "umask=999");
	refused("umask=01000", "octal");
	refused("layout=a1111", "forge, comfyui or flat");
	refused("cache_dir", "needs a value");
	refused("cache_dir=", "needs a value");
	refused("allow_other=1", "takes no value");
	refused("max_read", "needs a value");
}

int main(void)
{
	test_empty();
	test_fstab_line();
	test_fuse_passthrough();
	test_ours();
	test_refused();
	return check_summary();
}
