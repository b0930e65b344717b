/* libFuzzer target: the birdsongd config reader (inih + the directive table) and the listen
 * address parser on arbitrary bytes. Must never crash; errors are sentences. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[] = "/tmp/fuzz_config_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    bsd_config cfg;
    bs_error err;
    bsd_config_defaults(&cfg);
    if (bsd_config_load(&cfg, path, &err) != 0 && strstr(err.msg, path) != err.msg) abort();
    unlink(path);

    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char host[64];
    int port;
    if (bsd_parse_listen(text, host, sizeof host, &port, &err) == 0 && (port < 1 || port > 65535)) abort();
    /* every directive with the input as its value */
    for (size_t i = 0; i < bsd_n_directives; i++) bsd_config_set(&cfg, bsd_directives[i].name, text, &err);
    free(text);
    return 0;
}
