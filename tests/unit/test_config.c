/* Unit tests of the birdsongd directive table (daemon/config.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"

static char *write_tmp(const char *text) {
    static char path[64];
    strcpy(path, "/tmp/bsd-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(config, every_default_parses_and_lies_in_its_range) {
    bsd_config c;
    bsd_config_defaults(&c);
    cr_assert_str_eq(c.listen, "127.0.0.1:8080");
    cr_assert_float_eq(c.hop_seconds, 0.5, 1e-12);
    cr_assert_float_eq(c.history_seconds, 3600, 1e-12);
    cr_assert(c.ring_seconds >= 10);
    for (size_t i = 0; i < bsd_n_directives; i++) {
        const bsd_directive *d = &bsd_directives[i];
        cr_assert_not_null(d->help);
        cr_assert(strlen(d->help) > 10, "directive %s needs a help text", d->name);
        cr_assert_eq(bsd_config_find(d->name), d);
        for (size_t j = 0; j < i; j++) cr_assert_str_neq(bsd_directives[j].name, d->name);
    }
}

Test(config, set_checks_type_and_range_and_names_the_directive) {
    bsd_config c;
    bs_error e;
    bsd_config_defaults(&c);
    cr_assert_eq(bsd_config_set(&c, "hop_seconds", "0.25", &e), 0);
    cr_assert_float_eq(c.hop_seconds, 0.25, 1e-12);
    cr_assert_eq(bsd_config_set(&c, "hop_seconds", "fast", &e), -1);
    cr_assert(strstr(e.msg, "hop_seconds") && strstr(e.msg, "fast"), "%s", e.msg);
    cr_assert_eq(bsd_config_set(&c, "hop_seconds", "0", &e), -1);
    cr_assert(strstr(e.msg, "[0.05, 60]"), "%s", e.msg);
    cr_assert_float_eq(c.hop_seconds, 0.25, 1e-12, "a refused value must not change the field");
    cr_assert_eq(bsd_config_set(&c, "http_threads", "3x", &e), -1);
    cr_assert_eq(bsd_config_set(&c, "http_threads", "4", &e), 0);
    cr_assert_eq(c.http_threads, 4);
    cr_assert_eq(bsd_config_set(&c, "input_loop", "yes", &e), 0);
    cr_assert_eq(c.input_loop, 1);
    cr_assert_eq(bsd_config_set(&c, "input_loop", "maybe", &e), -1);
    cr_assert_eq(bsd_config_set(&c, "ring_seconds", "5", &e), -1, "the ring must hold >= 10 s");
    cr_assert_eq(bsd_config_set(&c, "listen", "0.0.0.0:99999", &e), -1);
    cr_assert_eq(bsd_config_set(&c, "listen", "localhost:80", &e), -1);
    cr_assert_eq(bsd_config_set(&c, "listen", "[::1]:8081", &e), 0);
    cr_assert_eq(bsd_config_set(&c, "log_level", "loud", &e), -1);
    cr_assert_eq(bsd_config_set(&c, "no_such_thing", "1", &e), -1);
    cr_assert(strstr(e.msg, "no_such_thing") && strstr(e.msg, "unknown"), "%s", e.msg);
}

Test(config, file_errors_name_file_line_and_directive) {
    bsd_config c;
    bs_error e;
    bsd_config_defaults(&c);
    char *p = write_tmp("# comment\nmodel = m.bsm\n\nhop_seconds = 0.25\nhistory_seconds = -3\n");
    cr_assert_eq(bsd_config_load(&c, p, &e), -1);
    char want[128];
    snprintf(want, sizeof want, "%s:5: directive 'history_seconds'", p);
    cr_assert(strstr(e.msg, want), "got: %s", e.msg);
    unlink(p);

    bsd_config_defaults(&c);
    p = write_tmp("model = m.bsm\nthis line has no equals sign\n");
    cr_assert_eq(bsd_config_load(&c, p, &e), -1);
    snprintf(want, sizeof want, "%s:2: syntax error", p);
    cr_assert(strstr(e.msg, want), "got: %s", e.msg);
    unlink(p);

    bsd_config_defaults(&c);
    p = write_tmp("[audio]\ndevice = hw:1\n");
    cr_assert_eq(bsd_config_load(&c, p, &e), -1);
    cr_assert(strstr(e.msg, ":2: directive 'device'") && strstr(e.msg, "[audio]"), "got: %s", e.msg);
    unlink(p);

    cr_assert_eq(bsd_config_load(&c, "/nonexistent/birdsongd.conf", &e), -1);
    cr_assert(strstr(e.msg, "/nonexistent/birdsongd.conf"), "%s", e.msg);
}

Test(config, file_values_override_defaults) {
    bsd_config c;
    bs_error e;
    bsd_config_defaults(&c);
    char *p = write_tmp("model = /x/y.bsm   ; inline comment\nlisten = 127.0.0.1:9999\ninput_speed = 4\n");
    cr_assert_eq(bsd_config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_str_eq(c.model, "/x/y.bsm");
    cr_assert_str_eq(c.listen, "127.0.0.1:9999");
    cr_assert_float_eq(c.input_speed, 4.0, 1e-12);
    cr_assert_float_eq(c.hop_seconds, 0.5, 1e-12);
    unlink(p);
}

Test(config, shipped_config_file_matches_the_table) {
    /* etc/birdsongd.conf documents every directive and sets each to its default. */
    bsd_config c, d;
    bs_error e;
    bsd_config_defaults(&c);
    bsd_config_defaults(&d);
    cr_assert_eq(bsd_config_load(&c, "etc/birdsongd.conf", &e), 0, "%s", e.msg);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0, "etc/birdsongd.conf must set the built-in defaults");
    FILE *f = fopen("etc/birdsongd.conf", "r");
    cr_assert_not_null(f);
    char text[32768];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    for (size_t i = 0; i < bsd_n_directives; i++) {
        char key[80];
        snprintf(key, sizeof key, "\n%s = ", bsd_directives[i].name);
        cr_assert(strstr(text, key), "etc/birdsongd.conf lacks directive %s", bsd_directives[i].name);
    }
}

Test(config, validate_bounds_the_history_and_requires_a_model) {
    bsd_config c;
    bs_error e;
    bsd_config_defaults(&c);
    cr_assert_eq(bsd_config_validate(&c, &e), 0);
    bsd_config_set(&c, "history_seconds", "604800", &e);
    bsd_config_set(&c, "hop_seconds", "0.05", &e);
    cr_assert_eq(bsd_config_validate(&c, &e), -1);
    cr_assert(strstr(e.msg, "history_seconds") && strstr(e.msg, "12096000"), "%s", e.msg);
    bsd_config_set(&c, "hop_seconds", "1", &e);
    cr_assert_eq(bsd_config_validate(&c, &e), 0);
    bsd_config_set(&c, "model", "", &e);
    cr_assert_eq(bsd_config_validate(&c, &e), -1);
    cr_assert(strstr(e.msg, "'model'"), "%s", e.msg);
}
