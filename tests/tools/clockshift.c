/* LD_PRELOAD test tool: shifts the wall clock (CLOCK_REALTIME, gettimeofday, time) of one
 * process by the number of seconds written in the file named by $BS_CLOCK_SHIFT_FILE,
 * re-read at most every 20 ms, so that a test can make the clock jump forward or back
 * while the process runs (tests/integration/test_faults.py). CLOCK_MONOTONIC and the
 * kernel's own timeouts are untouched — exactly what a real clock step does to a process
 * that measures waits on the monotonic clock. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*cg_fn)(clockid_t, struct timespec *);
static _Atomic long long shift_ns;
static _Atomic long long next_check_ns;

static cg_fn real_clock_gettime(void) {
    static cg_fn f;
    if (!f) f = (cg_fn)dlsym(RTLD_NEXT, "clock_gettime");
    return f;
}

static long long current_shift(void) {
    struct timespec m;
    real_clock_gettime()(CLOCK_MONOTONIC, &m);
    long long now = (long long)m.tv_sec * 1000000000LL + m.tv_nsec;
    if (now >= atomic_load(&next_check_ns)) {
        atomic_store(&next_check_ns, now + 20000000LL);
        const char *path = getenv("BS_CLOCK_SHIFT_FILE");
        FILE *f = path ? fopen(path, "re") : NULL;
        if (f) {
            double s = 0;
            if (fscanf(f, "%lf", &s) == 1) atomic_store(&shift_ns, (long long)(s * 1e9));
            fclose(f);
        }
    }
    return atomic_load(&shift_ns);
}

static void add_ns(struct timespec *ts, long long ns) {
    long long t = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + ns;
    ts->tv_sec = (time_t)(t / 1000000000LL);
    ts->tv_nsec = (long)(t % 1000000000LL);
    if (ts->tv_nsec < 0) ts->tv_sec--, ts->tv_nsec += 1000000000L;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int r = real_clock_gettime()(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) add_ns(ts, current_shift());
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
