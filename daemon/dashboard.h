/* birdsongd: the dashboard page served at GET /, compiled into the binary from
 * daemon/dashboard.html (assembler .incbin; mk/station.mk makes the object depend on the
 * HTML). It uses /api/v1/stream (SSE) and falls back to polling /api/v1/predictions. */
#ifndef BIRDSONG_DAEMON_DASHBOARD_H
#define BIRDSONG_DAEMON_DASHBOARD_H

#include <stddef.h>

/* The page (UTF-8 HTML, not NUL-terminated) and its length in bytes. */
const char *bsd_dashboard_html(size_t *len);

#endif
