/*
 * stub_modelfs.c: a stand-in for the modelfs binary, used only to test the
 * pytest mount harness (tests/integration/conftest.py) on its own.
 *
 *   stub_modelfs mount --cache-dir DIR --log-file LOG [-f] CONFIG MOUNTPOINT
 *
 * Mounts a read-only filesystem holding one file, "config.toml", with
 * CONFIG's bytes, and daemonizes once the mount is live, as modelfs does.
 * Words in CONFIG steer it:
 *   FAIL       print a message on stderr and exit 2 without mounting
 *   PARTIAL    mount, print a summary on stderr and exit 3, as modelfs
 *              does when some entries failed
 *   LOGERROR   write an `error` line to the log
 *   SANITIZER  write a fake UBSan "runtime error:" line to the log
 *   LINGER     linger 0.7 s after being unmounted (a clean but slow exit)
 *   SLOWEXIT   linger 30 s after being unmounted
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *content;
static size_t content_len;
static FILE *logf;

static void log_line(const char *level, const char *msg)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	fprintf(logf, "%s %s %s\n", ts, level, msg);
	fflush(logf);
}

static int stub_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	memset(st, 0, sizeof(*st));
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (strcmp(path, "/config.toml") == 0) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)content_len;
		return 0;
	}
	return -ENOENT;
}

static int stub_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
			struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	if (strcmp(path, "/") != 0)
		return -ENOENT;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	filler(buf, "config.toml", NULL, 0, 0);
	return 0;
}

static int stub_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, "/config.toml") != 0)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	return 0;
}

static int stub_read(const char *path, char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	if (off < 0 || (size_t)off >= content_len)
		return 0;
	if (size > content_len - (size_t)off)
		size = content_len - (size_t)off;
	memcpy(buf, content + off, size);
	return (int)size;
}

/* As fuse_daemonize(), but the parent exits 3 after a summary, as
 * modelfs's does when some entries failed (fuse_daemonize()'s parent
 * always exits 0). */
static int daemonize_partial(void)
{
	int pfd[2], fd;
	unsigned char code = 1;

	if (pipe(pfd) != 0)
		return -1;
	switch (fork()) {
	case -1:
		return -1;
	case 0:
		break;
	default:
		close(pfd[1]);
		if (read(pfd[0], &code, 1) != 1)
			code = 1;
		_exit(code);
	}
	close(pfd[0]);
	setsid();
	if (chdir("/") != 0)
		return -1;
	fprintf(stderr, "stub_modelfs: mounted, but 1 of 2 entries failed\n");
	code = 3;
	if (write(pfd[1], &code, 1) != 1)
		return -1;
	close(pfd[1]);
	fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return -1;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
	return 0;
}

static const struct fuse_operations stub_ops = {
	.getattr = stub_getattr,
	.readdir = stub_readdir,
	.open = stub_open,
	.read = stub_read,
};

static int read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	content = malloc((size_t)n + 1);
	if (!content || fread(content, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		return -1;
	}
	content[n] = '\0';
	content_len = (size_t)n;
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	const char *log_file = NULL, *config = NULL, *mnt = NULL;
	int foreground = 0, rc;
	struct fuse *fuse;

	if (argc < 2 || strcmp(argv[1], "mount") != 0) {
		fprintf(stderr, "usage: %s mount --cache-dir DIR --log-file LOG [-f] CONFIG MNT\n",
			argv[0]);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--cache-dir") == 0 && i + 1 < argc)
			i++;
		else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc)
			log_file = argv[++i];
		else if (strcmp(argv[i], "-f") == 0)
			foreground = 1;
		else if (!config)
			config = argv[i];
		else if (!mnt)
			mnt = argv[i];
		else {
			fprintf(stderr, "stub_modelfs: unexpected argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!log_file || !config || !mnt) {
		fprintf(stderr, "stub_modelfs: need --log-file, CONFIG and MOUNTPOINT\n");
		return 2;
	}
	if (read_file(config) < 0) {
		fprintf(stderr, "stub_modelfs: cannot read %s\n", config);
		return 2;
	}
	logf = fopen(log_file, "a");
	if (!logf) {
		fprintf(stderr, "stub_modelfs: cannot open %s\n", log_file);
		return 2;
	}
	if (strstr(content, "FAIL")) {
		fprintf(stderr, "stub_modelfs: the config says FAIL\n");
		log_line("error", "the config says FAIL");
		return 2;
	}
	fuse_opt_add_arg(&args, argv[0]);
	fuse_opt_add_arg(&args, "-ofsname=stub_modelfs");
	fuse = fuse_new(&args, &stub_ops, sizeof(stub_ops), NULL);
	if (!fuse || fuse_mount(fuse, mnt) != 0) {
		fprintf(stderr, "stub_modelfs: cannot mount %s\n", mnt);
		return 1;
	}
	fuse_set_signal_handlers(fuse_get_session(fuse));
	if (strstr(content, "PARTIAL") && !foreground) {
		if (daemonize_partial() != 0)
			return 1;
	} else if (fuse_daemonize(foreground) != 0) {
		return 1;
	}
	log_line("info", "mounted");
	if (strstr(content, "LOGERROR"))
		log_line("error", "stub asked to log an error");
	if (strstr(content, "SANITIZER")) {
		fprintf(logf, "stub_modelfs.c:1:1: runtime error: pretend undefined behaviour\n");
		fflush(logf);
	}
	rc = fuse_loop(fuse);
	fuse_remove_signal_handlers(fuse_get_session(fuse));
	fuse_unmount(fuse);
	fuse_destroy(fuse);
	fuse_opt_free_args(&args);
	log_line("info", "unmounted");
	if (strstr(content, "LINGER"))
		usleep(700 * 1000);
	if (strstr(content, "SLOWEXIT"))
		sleep(30);
	fclose(logf);
	free(content);
	return rc ? 1 : 0;
}
