/* libFuzzer target: the source SPEC parser (file, device[:NAME], URL) and --source NAME=SPEC
 * on arbitrary bytes. Must never crash; what it accepts resolves to a source configuration
 * whose target fits its field, and what it refuses gets a sentence. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    bs_error err;
    bsd_source_kind kind;
    char target[BSD_PATH_MAX];
    if (bsd_source_parse_spec(text, &kind, target, sizeof target, &err) == 0) {
        if (kind != BSD_SRC_FILE && kind != BSD_SRC_DEVICE && kind != BSD_SRC_URL) abort();
        if (strlen(target) > strlen(text)) abort();
    } else if (err.msg[0] == '\0') {
        abort();
    }
    static bsd_config cfg, out;
    bsd_config_defaults(&cfg);
    char *eq = strchr(text, '=');
    if (eq) {
        *eq = '\0';
        if (bsd_config_add_source(&cfg, text, eq + 1, &err) == 0) {
            /* without a top-level input or device the named source is the only one */
            if (cfg.n_sources != 1 || bsd_config_n_sources(&cfg) != 1) abort();
            char name[BSD_SOURCE_NAME_MAX];
            if (bsd_config_source(&cfg, 0, name, &kind, &out, &err) == 0) {
                if (strcmp(name, text) != 0 || out.n_sources != 0) abort();
                if (kind == BSD_SRC_DEVICE ? out.input[0] != '\0' : out.device[0] != '\0') abort();
            } else if (kind != BSD_SRC_DEVICE || strlen(eq + 1) < sizeof out.device) {
                abort(); /* only a device name longer than its field may be refused here */
            }
        }
    }
    free(text);
    return 0;
}
