/* Request policy: bearer token and CORS origins (daemon/auth.h). */
#include "daemon/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


/* Reads the token from path into out (first line, blanks trimmed). */
static int read_token_file(const char *path, char *out, size_t cap, bs_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return bs_error_set(err, "directive 'auth_token_file': %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return bs_error_set(err, "directive 'auth_token_file': %s: expected a regular file", path);
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return bs_error_set(err,
                            "directive 'auth_token_file': %s: expected a file only its owner can read (mode 0600 or "
                            "0400), found mode %04o",
                            path, (unsigned)(sb.st_mode & 07777));
    }
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return bs_error_set(err, "directive 'auth_token_file': %s: cannot read: %s", path, strerror(errno));
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl) *nl = '\0';
    char *s = buf;
    while (*s == ' ' || *s == '\t') s++;
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = '\0';
    if (len >= cap) {
        explicit_bzero(buf, sizeof buf);
        return bs_error_set(err, "directive 'auth_token_file': %s: expected a token of at most %zu characters, found %zu",
                            path, cap - 1, len);
    }
    memcpy(out, s, len + 1);
    explicit_bzero(buf, sizeof buf);
    return 0;
}

static int token_ok(const char *tok, const char *directive, bs_error *err) {
    size_t n = strlen(tok);
    if (n < BSD_AUTH_MIN_TOKEN)
        return bs_error_set(err, "directive '%s': expected a token of at least %d characters, found %zu", directive,
                            BSD_AUTH_MIN_TOKEN, n);
    for (const char *p = tok; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return bs_error_set(err, "directive '%s': expected printable ASCII without blanks in the token", directive);
    return 0;
}

static int resolve(const bsd_config *cfg, char *tok, size_t cap, bs_error *err) {
    tok[0] = '\0';
    if (cfg->auth_token_file[0]) {
        if (read_token_file(cfg->auth_token_file, tok, cap, err) != 0) return -1;
        return token_ok(tok, "auth_token_file", err);
    }
    if (cfg->auth_token[0]) {
        snprintf(tok, cap, "%s", cfg->auth_token);
        return token_ok(tok, "auth_token", err);
    }
    if (cfg->auth_read)
        return bs_error_set(err, "directive 'auth_read': needs a token (auth_token or auth_token_file)");
    return 0;
}

/* The cors_origins list: entries separated by commas, spaces or tabs. Sets *p past the entry
 * and returns its length, or 0 at the end of the list. */
static size_t next_origin(const char **p, const char **entry) {
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',') s++;
    const char *e = s;
    while (*e && *e != ',' && *e != ' ' && *e != '\t') e++;
    *entry = s;
    *p = e;
    return (size_t)(e - s);
}

static int check_origins(const char *list, bs_error *err) {
    const char *p;
    size_t n;
    for (const char *rest = list; (n = next_origin(&rest, &p)) > 0;) {
        int star = n == 1 && *p == '*';
        int scheme = (n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0);
        if (!star && (!scheme || p[n - 1] == '/'))
            return bs_error_set(err,
                                "directive 'cors_origins': expected origins like https://host[:port] (no path, no "
                                "trailing slash) or *, found '%.*s'",
                                (int)n, p);
    }
    return 0;
}

int bsd_auth_check_config(const bsd_config *cfg, bs_error *err) {
    char tok[256];
    int rc = resolve(cfg, tok, sizeof tok, err);
    explicit_bzero(tok, sizeof tok);
    if (rc != 0) return -1;
    return check_origins(cfg->cors_origins, err);
}

int bsd_policy_init(bsd_policy *p, const bsd_config *cfg, bs_error *err) {
    bsd_policy_clear(p);
    if (bsd_auth_check_config(cfg, err) != 0) return -1;
    if (resolve(cfg, p->token, sizeof p->token, err) != 0) return -1;
    p->token_len = strlen(p->token);
    p->has_token = p->token_len > 0;
    p->auth_read = cfg->auth_read;
    snprintf(p->cors, sizeof p->cors, "%s", cfg->cors_origins);
    return 0;
}

void bsd_policy_clear(bsd_policy *p) { explicit_bzero(p, sizeof *p); }

int bsd_auth_token_equal(const char *a, size_t len_a, const char *b, size_t len_b) {
    volatile unsigned char diff = (unsigned char)(len_a != len_b);
    for (size_t i = 0; i < len_b; i++) {
        unsigned char x = i < len_a ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

int bsd_auth_parse_bearer(const char *h, const char **tok, size_t *len) {
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return -1;
    const char *p = h + 6;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n == 0) return -1;
    *tok = p;
    *len = n;
    return 0;
}

int bsd_cors_origin_allowed(const char *list, const char *origin) {
    if (!list || !origin || !*origin) return 0;
    size_t on = strlen(origin);
    const char *p;
    size_t n;
    for (const char *rest = list; (n = next_origin(&rest, &p)) > 0;)
        if ((n == 1 && *p == '*') || (n == on && memcmp(p, origin, n) == 0)) return 1;
    return 0;
}

bsd_auth_verdict bsd_policy_authorize(const bsd_policy *p, int read, const char *authorization) {
    if (!p->has_token || (read && !p->auth_read)) return BSD_AUTH_OK;
    const char *tok;
    size_t len;
    if (bsd_auth_parse_bearer(authorization, &tok, &len) == 0 && bsd_auth_token_equal(tok, len, p->token, p->token_len))
        return BSD_AUTH_OK;
    return authorization ? BSD_AUTH_MISMATCH : BSD_AUTH_MISSING;
}

const char *bsd_auth_verdict_text(bsd_auth_verdict v) {
    switch (v) {
    case BSD_AUTH_OK: return "ok";
    case BSD_AUTH_MISSING: return "this request needs 'Authorization: Bearer <token>'";
    case BSD_AUTH_MISMATCH: break;
    }
    return "the bearer token does not match";
}
