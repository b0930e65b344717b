#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dashboard.h"

Test(dashboard, the_embedded_page_is_the_html_file) {
    size_t len;
    const char *html = bsd_dashboard_html(&len);
    FILE *f = fopen("daemon/dashboard.html", "rb");
    if (!f) cr_skip_test("daemon/dashboard.html not found from %s", getenv("PWD"));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    cr_assert_eq(len, (size_t)n);
    cr_assert(memcmp(buf, html, len) == 0);
    free(buf);
    cr_assert(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    /* nothing from a CDN */
    cr_assert_null(memmem(html, len, "https://", 8));
    cr_assert_null(memmem(html, len, "http://", 7));
    cr_assert_not_null(memmem(html, len, "/api/v1/stream", 14));
}
