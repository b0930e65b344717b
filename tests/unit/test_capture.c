/* Unit tests of the capture's device naming (daemon/capture.c): the ALSA card number in a
 * PortAudio device name, which maps a stable card id to whatever number the card has now. */
#include <criterion/criterion.h>

#include "daemon/capture.h"

Test(capture, alsa_card_number_from_portaudio_names) {
    cr_assert_eq(bsd_alsa_card_of_name("USB Audio Device: - (hw:2,0)"), 2);
    cr_assert_eq(bsd_alsa_card_of_name("HDA Intel PCH: ALC3246 Analog (hw:0,0)"), 0);
    cr_assert_eq(bsd_alsa_card_of_name("Card (hw:12,3)"), 12);
    cr_assert_eq(bsd_alsa_card_of_name("Card (hw:7)"), 7);
    cr_assert_eq(bsd_alsa_card_of_name("default"), -1);
    cr_assert_eq(bsd_alsa_card_of_name("pulse"), -1);
    cr_assert_eq(bsd_alsa_card_of_name("odd (hw:x,0)"), -1);
    cr_assert_eq(bsd_alsa_card_of_name("odd (hw:3x)"), -1);
    cr_assert_eq(bsd_alsa_card_of_name("odd (hw:99999,0)"), -1);
    cr_assert_eq(bsd_alsa_card_of_name(""), -1);
}

#include "daemon/netsource.h"

Test(capture, url_passwords_are_redacted) {
    static const char *const cases[][2] = {
        {"rtsp://birds:secret@192.168.1.20:554/stream1", "rtsp://birds:***@192.168.1.20:554/stream1"},
        {"http://u:p:q@h/x", "http://u:***@h/x"},
        {"http://h/path@not-userinfo", "http://h/path@not-userinfo"},
        {"http://user@h/x", "http://user@h/x"},
        {"udp://@:1234", "udp://@:1234"},
        {"plain/file.wav", "plain/file.wav"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        bsd_netsource_redact(cases[i][0], out, sizeof out);
        cr_assert_str_eq(out, cases[i][1], "%s", cases[i][0]);
    }
}
