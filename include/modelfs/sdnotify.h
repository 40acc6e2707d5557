/*
 * sdnotify.h: telling systemd how a Type=notify service is doing, over
 * the datagram socket it names in $NOTIFY_SOCKET (sd_notify(3)'s
 * protocol: one datagram of "KEY=VALUE" lines), without libsystemd.
 *
 * (1) Without $NOTIFY_SOCKET (not started by systemd, or by a unit of
 *     another Type) nothing is sent and nothing fails.
 * (2) A path socket ("/run/systemd/notify") and an abstract one
 *     ("@name") are both understood.
 * Threads: no shared state; never blocks (a full socket gives -EAGAIN).
 */
#ifndef MODELFS_SDNOTIFY_H
#define MODELFS_SDNOTIFY_H

/* Send state, e.g. "READY=1\nSTATUS=Mounted". 0 when sent, 1 when there
 * is no $NOTIFY_SOCKET, -errno when it could not be sent. */
int sdnotify(const char *state);

#endif
