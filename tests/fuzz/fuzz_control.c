/*
 * fuzz_control.c: the control protocol's reader (control.h) on any bytes
 * a peer may send, through a socketpair as a daemon or a command gets
 * them.
 *
 * The input is written to one end (then shut down), and the other end is
 * read with control_read_reply() until the stream ends. Checks: every
 * answer is a JSON object whose parts were put back (no "parts" key left);
 * every call ends with 0, -EPROTO or -EPIPE (no timeout: all bytes are
 * there), and the reader stops, however the lines are cut.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "modelfs/control.h"

/* Beyond what fits in a socket buffer, writing would block this thread:
 * far more than the fuzzer makes, and the reader's 1 MiB limit is a
 * unit test's job. */
#define INPUT_MAX (128 * 1024)

static void read_all(int fd, size_t size)
{
	struct control_reader r;
	json_t *reply = NULL;
	size_t calls = 0;
	int rc;

	control_reader_init(&r, fd);
	do {
		rc = control_read_reply(&r, 5000, &reply);
		FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -EPIPE);
		if (rc == 0) {
			FUZZ_CHECK(json_is_object(reply));
			FUZZ_CHECK(!json_object_get(reply, "parts"));
			json_decref(reply);
			reply = NULL;
		}
		/* Every call takes at least one line, or ends the stream. */
		FUZZ_CHECK(++calls <= size + 2);
	} while (rc != -EPIPE && !(rc == -EPROTO && r.len >= CONTROL_LINE_MAX));
	control_reader_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	size_t off = 0;

	if (size > INPUT_MAX || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return 0;
	while (off < size) {
		ssize_t n = write(sv[1], data + off, size - off);

		FUZZ_CHECK(n > 0);
		off += (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);
	read_all(sv[0], size);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
