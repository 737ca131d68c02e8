/*
 * The C baseline of `python -m bench.peers`: how fast this machine starts processes when
 * nothing but posix_spawn stands in the way.
 *
 *     spawn COUNT PROGRAM [ARG...]
 *
 * Starts COUNT copies of PROGRAM ARG... with posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)
 * + exec), each in its own session like a supervisor's children, prints how many it
 * started, then waits for SIGTERM or SIGINT; on either it SIGKILLs and reaps every child
 * and exits. The harness times it exactly like a supervisor daemon: from this program's
 * launch until /proc shows COUNT running children.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s COUNT PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[1], NULL, 10);
    if (count <= 0) {
        fprintf(stderr, "spawn: COUNT must be a positive number\n");
        return 2;
    }

    /* Block the signals that end us: sigwait() takes them below. The children get an
     * empty mask and default dispositions. */
    sigset_t stop, empty;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigemptyset(&empty);
    if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0) {
        perror("spawn: sigprocmask");
        return 1;
    }

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
#ifdef POSIX_SPAWN_SETSID
    flags |= POSIX_SPAWN_SETSID;
#endif
    posix_spawnattr_setflags(&attr, flags);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &stop);

    pid_t *pids = calloc((size_t)count, sizeof(pid_t));
    if (pids == NULL) {
        perror("spawn: calloc");
        return 1;
    }
    long started = 0;
    for (long i = 0; i < count; i++) {
        int err = posix_spawn(&pids[i], argv[2], NULL, &attr, argv + 2, environ);
        if (err != 0) {
            fprintf(stderr, "spawn: posix_spawn %s: %s\n", argv[2], strerror(err));
            break;
        }
        started++;
    }
    posix_spawnattr_destroy(&attr);
    printf("%ld\n", started);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    for (long i = 0; i < started; i++)
        kill(pids[i], SIGKILL);
    for (long i = 0; i < started; i++) {
        while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    }
    free(pids);
    return started == count ? 0 : 1;
}
