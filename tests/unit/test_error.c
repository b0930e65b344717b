#include <criterion/criterion.h>
#include <string.h>

#include "birdsong/error.h"
#include "birdsong/log.h"

Test(error, set_formats_and_returns_minus_one) {
    bs_error err = {{0}};
    cr_assert_eq(bs_error_set(&err, "tensor %s has %d values", "conv1.weight", 12), -1);
    cr_assert_str_eq(err.msg, "tensor conv1.weight has 12 values");
}

Test(error, null_error_is_allowed) { cr_assert_eq(bs_error_set(NULL, "x"), -1); }

Test(error, prefix_adds_file_name) {
    bs_error err;
    bs_error_set(&err, "not a model file");
    bs_error_prefix(&err, "demo.bsm");
    cr_assert_str_eq(err.msg, "demo.bsm: not a model file");
}

Test(error, long_message_is_truncated_not_overflowed) {
    bs_error err;
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    bs_error_set(&err, "%s", big);
    cr_assert_eq(strlen(err.msg), BS_ERROR_MSG_MAX - 1);
}

Test(log, level_names_parse) {
    bs_log_level l;
    cr_assert_eq(bs_log_level_parse("debug", &l), 0);
    cr_assert_eq(l, BS_LOG_DEBUG);
    cr_assert_eq(bs_log_level_parse("warning", &l), 0);
    cr_assert_eq(l, BS_LOG_WARN);
    cr_assert_eq(bs_log_level_parse("loud", &l), -1);
}
