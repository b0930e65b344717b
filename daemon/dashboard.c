#include "daemon/dashboard.h"

/* The HTML file is assembled into .rodata between two symbols; the path is relative to
 * the repository root, where every compiler call of the Makefile runs. */
__asm__(".section .rodata\n"
        ".balign 16\n"
        "bsd_dashboard_html_start:\n"
        ".incbin \"daemon/dashboard.html\"\n"
        "bsd_dashboard_html_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char bsd_dashboard_html_start[] __asm__("bsd_dashboard_html_start");
extern const char bsd_dashboard_html_end[] __asm__("bsd_dashboard_html_end");

const char *bsd_dashboard_html(size_t *len) {
    *len = (size_t)(bsd_dashboard_html_end - bsd_dashboard_html_start);
    return bsd_dashboard_html_start;
}
