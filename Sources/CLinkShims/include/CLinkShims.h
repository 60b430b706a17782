// Linux calls that Swift cannot import. The TUNSETIFF and SIOCSIFMTU ioctls take a struct
// ifreq, whose name field is in a union. Glibc's Swift module leaves out ppoll (declared only
// under _GNU_SOURCE) and signalfd, and prctl is variadic.
#ifndef CONCORD_LINK_SHIMS_H
#define CONCORD_LINK_SHIMS_H

#include <poll.h>
#include <stdint.h>

/// Opens the TUN device `name` (IFF_TUN | IFF_NO_PI, so every read and write is one bare
/// IP packet), creating it when it does not exist, and sets its MTU to `mtu` bytes.
/// The file descriptor is non-blocking and close-on-exec. The device lives until the
/// descriptor is closed, because it is not made persistent.
/// Returns the descriptor, or -1 with errno set.
int concord_tun_open(const char *name, int mtu);

/// Waits like poll, with a timeout in nanoseconds; a negative timeout waits without limit.
int concord_ppoll(struct pollfd *fds, nfds_t count, int64_t timeout_nanoseconds);

/// Blocks SIGTERM and SIGINT in this thread and returns a non-blocking signalfd that becomes
/// readable when one of them arrives, or -1 with errno set.
int concord_termination_signalfd(void);

/// Sets this thread's timer slack, the time by which the kernel may delay a timed wait
/// to group wake-ups (50 microseconds by default). Returns 0, or -1 with errno set.
int concord_set_timer_slack(unsigned long nanoseconds);

#endif
