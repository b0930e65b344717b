/* libFuzzer target: the species_calendar parser (daemon/calendar.h) on arbitrary text. Must
 * never crash, leak or read out of bounds; every refusal must say why; what it accepts must
 * answer 0 or 1 for every day of the year. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/calendar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0; /* the loader refuses files over 64 KiB */
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0; /* the loader refuses a NUL inside: the text ends at the first one */
    bs_error err;
    err.msg[0] = 0;
    bsd_calendar *c = bsd_calendar_parse(text, "fuzz", &err);
    free(text);
    if (!c) {
        if (err.msg[0] == 0) abort();
        return 0;
    }
    for (int d = 1; d <= 366; d++) {
        int a = bsd_calendar_allows_day(c, "Parus_major", d);
        if (a != 0 && a != 1) abort();
    }
    const char *labels[] = {"Parus_major"};
    if (bsd_calendar_check(c, labels, 1, &err) != 0 && err.msg[0] == 0) abort();
    bsd_calendar_free(c);
    return 0;
}
