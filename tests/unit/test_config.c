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

/* ---- sources ------------------------------------------------------------------------------ */

Test(config, source_spec_kinds_and_targets) {
    static const struct { const char *spec; bsd_source_kind kind; const char *target; } ok[] = {
        {"device", BSD_SRC_DEVICE, ""},
        {"device:USB Audio", BSD_SRC_DEVICE, "USB Audio"},
        {"device:hw:CARD=Device", BSD_SRC_DEVICE, "hw:CARD=Device"},
        {"file:/srv/a.flac", BSD_SRC_FILE, "/srv/a.flac"},
        {"recordings/a.wav", BSD_SRC_FILE, "recordings/a.wav"},
        {"C:odd.wav", BSD_SRC_FILE, "C:odd.wav"},
        {"rtsp://192.168.1.20:554/stream1", BSD_SRC_URL, "rtsp://192.168.1.20:554/stream1"},
        {"HTTPS://radio.example.org/live.mp3", BSD_SRC_URL, "HTTPS://radio.example.org/live.mp3"},
        {"udp://@:1234", BSD_SRC_URL, "udp://@:1234"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bsd_source_kind k;
        char t[BSD_PATH_MAX];
        bs_error e;
        cr_assert_eq(bsd_source_parse_spec(ok[i].spec, &k, t, sizeof t, &e), 0, "%s: %s", ok[i].spec, e.msg);
        cr_assert_eq(k, ok[i].kind, "%s", ok[i].spec);
        cr_assert_str_eq(t, ok[i].target);
    }
    static const struct { const char *spec, *needle; } bad[] = {
        {"", "empty"}, {"file:", "without a path"}, {"ftp://h/x", "unknown URL scheme 'ftp'"},
        {"rtsp:///x", "no host"}, {"http://", "no host"}, {"http://a b/", "space"}, {"a\nb.wav", "control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bsd_source_kind k;
        char t[BSD_PATH_MAX];
        bs_error e;
        cr_assert_eq(bsd_source_parse_spec(bad[i].spec, &k, t, sizeof t, &e), -1, "%s", bad[i].spec);
        cr_assert(strstr(e.msg, bad[i].needle), "%s: %s", bad[i].spec, e.msg);
    }
    char small[8];
    bsd_source_kind k;
    bs_error e;
    cr_assert_eq(bsd_source_parse_spec("long-file.wav", &k, small, sizeof small, &e), -1);
}

Test(config, source_sections_override_per_source_directives_only) {
    bsd_config c;
    bs_error e;
    bsd_config_defaults(&c);
    const char *path = write_tmp("model = m.bsm\nhop_seconds = 0.5\n"
                                 "[source cam]\ninput = rtsp://10.0.0.2/s\nhop_seconds = 1\n"
                                 "[source mic]\ninput = device:USB Audio\n");
    cr_assert_eq(bsd_config_load(&c, path, &e), 0, "%s", e.msg);
    unlink(path);
    cr_assert_eq(c.n_sources, 2);
    cr_assert_eq(bsd_config_n_sources(&c), 2, "no top-level input or device: only the sections");
    static bsd_config s;
    char name[BSD_SOURCE_NAME_MAX];
    bsd_source_kind k;
    cr_assert_eq(bsd_config_source(&c, 0, name, &k, &s, &e), 0, "%s", e.msg);
    cr_assert_str_eq(name, "cam");
    cr_assert_eq(k, BSD_SRC_URL);
    cr_assert_str_eq(s.input, "rtsp://10.0.0.2/s");
    cr_assert_float_eq(s.hop_seconds, 1.0, 1e-12);
    cr_assert_eq(bsd_config_source(&c, 1, name, &k, &s, &e), 0, "%s", e.msg);
    cr_assert_str_eq(name, "mic");
    cr_assert_eq(k, BSD_SRC_DEVICE);
    cr_assert_str_eq(s.device, "USB Audio");
    cr_assert_str_eq(s.input, "");
    cr_assert_float_eq(s.hop_seconds, 0.5, 1e-12, "the top level's where the section says nothing");
    cr_assert_eq(bsd_config_source(&c, 2, name, &k, &s, &e), -1);

    /* a top-level input makes "default" the first source */
    cr_assert_eq(bsd_config_set(&c, "input", "a.wav", &e), 0);
    cr_assert_eq(bsd_config_n_sources(&c), 3);
    cr_assert_eq(bsd_config_source(&c, 0, name, &k, &s, &e), 0);
    cr_assert_str_eq(name, BSD_DEFAULT_SOURCE);
    cr_assert_eq(k, BSD_SRC_FILE);
    cr_assert_str_eq(s.input, "a.wav");

    static const struct { const char *text, *needle; } bad[] = {
        {"[source x]\nmodel = other.bsm\n", "cannot be set per source"},
        {"[source x]\nhop_seconds = fast\n", "hop_seconds"},
        {"[source x]\nhop_seconds = 1\n", "no 'input ='"},
        {"[source]\ninput = a.wav\n", "[source NAME]"},
        {"[source bad/name]\ninput = a.wav\n", "letters, digits"},
        {"[source default]\ninput = a.wav\n", "top-level"},
        {"[source x]\ninput = gopher://h/\n", "unknown URL scheme"},
        {"[other]\nx = 1\n", "before any section"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bsd_config_defaults(&c);
        path = write_tmp(bad[i].text);
        cr_assert_eq(bsd_config_load(&c, path, &e), -1, "%s", bad[i].text);
        unlink(path);
        cr_assert(strstr(e.msg, bad[i].needle), "%s -> %s", bad[i].text, e.msg);
    }
}

Test(config, add_source_checks_names_duplicates_and_the_limit) {
    static bsd_config c;
    bs_error e;
    bsd_config_defaults(&c);
    cr_assert_eq(bsd_config_add_source(&c, "a", "device", &e), 0);
    cr_assert_eq(bsd_config_add_source(&c, "a", "device", &e), -1);
    cr_assert(strstr(e.msg, "twice"), "%s", e.msg);
    cr_assert_eq(bsd_config_add_source(&c, "", "device", &e), -1);
    cr_assert_eq(bsd_config_add_source(&c, "b", "", &e), -1);
    cr_assert(strstr(e.msg, "source 'b'") && strstr(e.msg, "empty"), "%s", e.msg);
    for (int i = 1; i < BSD_MAX_SOURCES; i++) {
        char n[16];
        snprintf(n, sizeof n, "s%d", i);
        cr_assert_eq(bsd_config_add_source(&c, n, "x.wav", &e), 0, "%s", e.msg);
    }
    cr_assert_eq(bsd_config_add_source(&c, "more", "x.wav", &e), -1);
    cr_assert(strstr(e.msg, "at most"), "%s", e.msg);
    cr_assert_eq(bsd_config_validate(&c, &e), 0, "%s", e.msg);
    cr_assert_eq(bsd_config_set(&c, "hop_seconds", "0.05", &e), 0);
    cr_assert_eq(bsd_config_set(&c, "history_seconds", "604800", &e), 0);
    cr_assert_eq(bsd_config_validate(&c, &e), -1);
    cr_assert(strstr(e.msg, "source 'a'") && strstr(e.msg, "history_seconds"), "%s", e.msg);
}
