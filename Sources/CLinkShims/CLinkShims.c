#define _GNU_SOURCE
#include "CLinkShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int concord_tun_open(const char *name, int mtu) {
  if (strlen(name) >= IFNAMSIZ) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  int saved;

  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, name, IFNAMSIZ - 1);
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (ioctl(fd, TUNSETIFF, &request) < 0) goto fail;

  // SIOCSIFMTU works on any socket of the namespace that contains the device.
  int socket_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (socket_fd < 0) goto fail;
  request.ifr_mtu = mtu;
  int status = ioctl(socket_fd, SIOCSIFMTU, &request);
  saved = errno;
  close(socket_fd);
  errno = saved;
  if (status < 0) goto fail;
  return fd;

fail:
  saved = errno;
  close(fd);
  errno = saved;
  return -1;
}

int concord_ppoll(struct pollfd *fds, nfds_t count, int64_t timeout_nanoseconds) {
  if (timeout_nanoseconds < 0) return ppoll(fds, count, NULL, NULL);
  struct timespec timeout = {
      .tv_sec = (time_t)(timeout_nanoseconds / 1000000000),
      .tv_nsec = (long)(timeout_nanoseconds % 1000000000),
  };
  return ppoll(fds, count, &timeout, NULL);
}

int concord_termination_signalfd(void) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &signals, NULL) < 0) return -1;
  return signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
}

int concord_set_timer_slack(unsigned long nanoseconds) {
  return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}
