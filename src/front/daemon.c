/*
 * daemon.c: going to the background, for a mount and for `modelfs serve
 * --daemon` alike. The parent stays until the child says how the start
 * went (one byte on a pipe: the exit code) and exits with it, so that a
 * script sees failure as a status, and success only once the daemon is
 * live.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "modelfs/log.h"

void cli_notify_parent(int fd, int code)
{
	unsigned char c = (unsigned char)code;

	if (fd >= 0 && write(fd, &c, 1) != 1)
		log_warn("event=notify_parent error=\"%s\"", strerror(errno));
}

int cli_daemonize(int (*parent_code)(int code))
{
	int pfd[2];
	pid_t pid;
	unsigned char code = EXIT_MODEL;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &code, 1) != 1)
			code = EXIT_MODEL;	/* the child died before it could say */
		_exit(parent_code ? parent_code(code) : code);
	}
	close(pfd[0]);
	setsid();
	return pfd[1];
}

/* A daemon keeps no terminal; its stderr goes to the log file when there
 * is one, so that a crash or a sanitizer report is not lost. */
void cli_detach_stdio(int log_fd)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(log_fd >= 0 ? log_fd : fd, 2);
	if (log_fd >= 0)
		log_file_is_stderr();
	if (fd > 2)
		close(fd);
}

int cli_default_log(const char *cache_dir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", cache_dir, "modelfs.log");
	fd = log_open_file(path);
	if (fd < 0)
		fprintf(stderr, "modelfs: cannot write the log %s: %s; give --log-file\n", path,
			strerror(-fd));
	return fd < 0 ? -1 : fd;
}
