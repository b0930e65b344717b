/* Unit tests of the webhook sender's checks and signature (daemon/webhook.c); delivery,
 * retries and drops are tested end to end in tests/integration/test_station.py. */
#include <criterion/criterion.h>
#include <string.h>

#include "daemon/webhook.h"

/* RFC 4231 test cases 1 and 2 (HMAC-SHA-256). */
Test(webhook, signature_is_hmac_sha256_of_rfc_4231) {
    char sig[72];
    bsd_webhook_signature("Jefe", "what do ya want for nothing?", 28, sig);
    cr_assert_str_eq(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    char key[21];
    memset(key, 0x0b, 20);
    key[20] = '\0';
    bsd_webhook_signature(key, "Hi There", 8, sig);
    cr_assert_str_eq(sig, "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

Test(webhook, bad_urls_are_refused_naming_the_directive) {
    const char *bad[] = {"", "   ", "ftp://example.org/x", "http://", "example.org/hook", "file:///etc/passwd",
                         "http://a/1 http://a/2 http://a/3 http://a/4 http://a/5 http://a/6 http://a/7 http://a/8 http://a/9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bs_error err;
        bsd_webhook_config c = {.urls = bad[i]};
        cr_assert_null(bsd_webhooks_start(&c, &err), "%s", bad[i]);
        cr_assert(strstr(err.msg, "webhook_url") != NULL, "%s", err.msg);
    }
}

/* A full queue refuses (and counts) at once, without waiting on the network. */
Test(webhook, a_full_queue_drops_and_counts) {
    bs_error err;
    bsd_webhook_config c = {.urls = "http://127.0.0.1:1/a https://127.0.0.1:1/b", .queue = 2, .max_payload = 64,
                            .retries = 1000, .retry_max_seconds = 30};
    bsd_webhooks *w = bsd_webhooks_start(&c, &err);
    cr_assert_not_null(w, "%s", err.msg);
    for (int i = 0; i < 5; i++) bsd_webhooks_post(w, "{}", 2);
    cr_assert_eq(bsd_webhooks_post(w, "{}", 2), -1);
    char big[65];
    memset(big, 'x', sizeof big);
    cr_assert_eq(bsd_webhooks_post(w, big, sizeof big), -1, "longer than max_payload");
    bsd_webhook_stats s = bsd_webhooks_get_stats(w);
    cr_assert_eq(s.urls, 2);
    cr_assert_eq(s.queued, 4u, "2 per URL");
    cr_assert_eq(s.dropped, 2u * 6 - 4 + 2, "the rest, per URL");
    cr_assert_eq(s.delivered, 0u);
    bsd_webhooks_stop(w, 0);
}
