#include "daemon/dashboard.h"

/* The HTML file is assembled into .rodata between two symbols; the path is relative to
 * the repository root, where every compiler call of the Makefile runs. */
/* The labels are global and hidden, not local: a local label is referenced as .rodata plus an
 * offset, and on arm64 (GOT-relative loads in PIE) the linker gave start and end one GOT slot,
 * so the page had length 0 there. Hidden: direct PC-relative addresses, nothing exported. */
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl bsd_dashboard_html_start\n"
        ".hidden bsd_dashboard_html_start\n"
        ".globl bsd_dashboard_html_end\n"
        ".hidden bsd_dashboard_html_end\n"
        "bsd_dashboard_html_start:\n"
        ".incbin \"daemon/dashboard.html\"\n"
        "bsd_dashboard_html_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const char bsd_dashboard_html_start[] __asm__("bsd_dashboard_html_start")
    __attribute__((visibility("hidden")));
extern const char bsd_dashboard_html_end[] __asm__("bsd_dashboard_html_end")
    __attribute__((visibility("hidden")));

const char *bsd_dashboard_html(size_t *len) {
    *len = (size_t)(bsd_dashboard_html_end - bsd_dashboard_html_start);
    return bsd_dashboard_html_start;
}
