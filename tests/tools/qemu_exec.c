/* LD_PRELOAD shim for programs emulated by qemu-user (make test-arm64): an exec of an arm64
 * ELF goes through qemu-aarch64 again.
 *
 * Criterion runs every test in a child that re-executes the test binary (BoxFort: fork, then
 * execl of /proc/self/exe's target). Under qemu-user that execve reaches the host kernel,
 * which cannot run an arm64 ELF without a binfmt_misc registration (absent in containers and
 * not ours to add), and every test "could not spawn". Loaded into the emulated program,
 * this shim turns exec(arm64 file, argv, env) into exec(qemu-aarch64 -L SYSROOT -0 argv[0]
 * -E LD_PRELOAD=<this shim> file argv[1..]), with LD_PRELOAD removed from the host
 * environment of the new qemu. Other execs (host programs, shell scripts) are untouched.
 *
 * Environment: BS_QEMU (the host qemu-aarch64) and BS_QEMU_LD_PREFIX (the sysroot); without
 * them the shim does nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

typedef int execve_fn(const char *, char *const[], char *const[]);

static int real_execve(const char *path, char *const argv[], char *const envp[]) {
    execve_fn *f = (execve_fn *)dlsym(RTLD_NEXT, "execve");
    if (!f) {
        errno = ENOSYS;
        return -1;
    }
    return f(path, argv, envp);
}

/* 1 when path is an ELF file for AArch64 (e_machine 183), little-endian. */
static int is_arm64_elf(const char *path) {
    unsigned char h[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    return n == (ssize_t)sizeof h && memcmp(h, "\177ELF", 4) == 0 && h[5] == 1 &&
           (h[18] | h[19] << 8) == 183;
}

int execve(const char *path, char *const argv[], char *const envp[]) {
    const char *qemu = getenv("BS_QEMU"), *prefix = getenv("BS_QEMU_LD_PREFIX");
    const char *preload = getenv("LD_PRELOAD");
    if (!qemu || !prefix || !preload || !is_arm64_elf(path)) return real_execve(path, argv, envp);
    size_t na = 0, ne = 0;
    while (argv[na]) na++;
    while (envp && envp[ne]) ne++;
    char **a = calloc(na + 10, sizeof *a), **e = calloc(ne + 1, sizeof *e);
    char *pre = malloc(strlen(preload) + sizeof "LD_PRELOAD=");
    if (!a || !e || !pre) {
        free(a), free(e), free(pre);
        errno = ENOMEM;
        return -1;
    }
    strcpy(pre, "LD_PRELOAD=");
    strcat(pre, preload);
    size_t k = 0;
    a[k++] = (char *)qemu;
    a[k++] = "-L";
    a[k++] = (char *)prefix;
    a[k++] = "-0";
    a[k++] = na ? argv[0] : (char *)path;
    a[k++] = "-E";
    a[k++] = pre;
    a[k++] = (char *)path;
    for (size_t i = 1; i < na; i++) a[k++] = argv[i];
    a[k] = NULL;
    size_t m = 0;
    for (size_t i = 0; i < ne; i++)
        if (strncmp(envp[i], "LD_PRELOAD=", 11) != 0) e[m++] = envp[i];
    e[m] = NULL;
    real_execve(qemu, a, e);
    int err = errno;
    free(a), free(e), free(pre);
    errno = err;
    return -1;
}

/* glibc's exec* family calls its internal execve, not the interposable one: route them. */
int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execl(const char *path, const char *arg, ...) {
    va_list ap;
    size_t n = 1; /* arg: glibc declares it non-null */
    va_start(ap, arg);
    while (va_arg(ap, const char *)) n++;
    va_end(ap);
    char **argv = calloc(n + 1, sizeof *argv);
    if (!argv) {
        errno = ENOMEM;
        return -1;
    }
    argv[0] = (char *)arg;
    va_start(ap, arg);
    for (size_t i = 1; i < n; i++) argv[i] = va_arg(ap, char *);
    va_end(ap);
    int r = execve(path, argv, environ);
    int err = errno;
    free(argv);
    errno = err;
    return r;
}
