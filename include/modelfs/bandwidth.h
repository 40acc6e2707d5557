/*
 * bandwidth.h: one cap on the process's total download rate
 * (bandwidth_limit: a shared uplink, a polite fleet), whatever the number
 * of connections. libcurl's CURLOPT_MAX_RECV_SPEED_LARGE caps one
 * transfer; this is a token bucket every transfer's body takes from.
 *
 * (1) bandwidth_take(n) returns once n more bytes fit the rate: it sleeps
 *     the caller (a body callback: the connection's window fills and the
 *     sender slows down, which is how a receiver caps a TCP stream).
 * (2) A burst of up to one second's worth passes at once after idling.
 * (3) Waiters are served in arrival order of their reservations, so no
 *     connection starves.
 * Threads: any; a process-wide setting.
 */
#ifndef MODELFS_BANDWIDTH_H
#define MODELFS_BANDWIDTH_H

#include <stddef.h>
#include <stdint.h>

/* bytes_per_sec 0: no cap (the default). */
void bandwidth_set(uint64_t bytes_per_sec);
void bandwidth_take(size_t n);

#endif
