// Connection-rate tool for bench/network/run: a tiny TCP server and a client loop.
//   connrate serve PORT            accept, write "ok\n", close; forever (one thread)
//   connrate client IP PORT N      N times: connect, read to EOF, close; prints JSON
//                                  {"conns": N, "seconds": S, "per_s": R, "errors": E,
//                                   "p50_us": ..., "p99_us": ...}
// The server closes first, so TIME_WAIT stays on its side and the client's ports are
// free again at once.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && !strcmp(argv[1], "serve")) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4096)) {
      perror("bind/listen");
      return 1;
    }
    for (;;) {
      int c = accept(s, NULL, NULL);
      if (c < 0) continue;
      (void)!write(c, "ok\n", 3);
      close(c);
    }
  }
  if (argc == 5 && !strcmp(argv[1], "client")) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) return 2;
    long n = atol(argv[4]), errors = 0;
    double *lat = calloc(n, sizeof *lat);
    char buf[64];
    double t0 = now();
    for (long i = 0; i < n; i++) {
      double t = now();
      int s = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(s, (struct sockaddr *)&a, sizeof a)) {
        errors++;
        close(s);
        lat[i] = now() - t;
        continue;
      }
      ssize_t r, got = 0;
      while ((r = read(s, buf, sizeof buf)) > 0) got += r;
      if (got != 3) errors++;
      close(s);
      lat[i] = now() - t;
    }
    double secs = now() - t0;
    qsort(lat, n, sizeof *lat, cmp);
    printf("{\"conns\": %ld, \"seconds\": %.6f, \"per_s\": %.1f, \"errors\": %ld, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
           n, secs, n / secs, errors, lat[n / 2] * 1e6, lat[(long)(n * 0.99)] * 1e6);
    return 0;
  }
  fprintf(stderr, "usage: connrate serve PORT | connrate client IP PORT N\n");
  return 2;
}
