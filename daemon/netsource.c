#include "daemon/netsource.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dlfcn.h>
#include <pthread.h>

#include "birdsong/log.h"
#include "daemon/clock.h"

/* FFmpeg's libraries are loaded on first use (dlopen), not linked: they bring some 50
 * libraries (codecs, TLS, SVG...) and ~18 MB of resident memory that a station without a
 * network source should not pay. Their major versions are the ones built against. */
#define AV_STR2(x) #x
#define AV_STR(x) AV_STR2(x)
static const char *const av_libs[] = {
    "libavutil.so." AV_STR(LIBAVUTIL_VERSION_MAJOR), "libswresample.so." AV_STR(LIBSWRESAMPLE_VERSION_MAJOR),
    "libavcodec.so." AV_STR(LIBAVCODEC_VERSION_MAJOR), "libavformat.so." AV_STR(LIBAVFORMAT_VERSION_MAJOR),
};
#define AV_FUNCS(X)                                                                                        \
    X(avformat_alloc_context) X(avformat_open_input) X(avformat_find_stream_info) X(av_find_best_stream)   \
    X(avformat_close_input) X(av_read_frame) X(avcodec_alloc_context3) X(avcodec_parameters_to_context)    \
    X(avcodec_open2) X(avcodec_send_packet) X(avcodec_receive_frame) X(avcodec_free_context)              \
    X(av_packet_alloc) X(av_packet_unref) X(av_packet_free) X(av_log_set_level) X(av_dict_set)             \
    X(av_dict_free) X(av_strerror) X(av_frame_alloc) X(av_frame_unref) X(av_frame_free)                    \
    X(av_channel_layout_default) X(av_channel_layout_copy) X(av_channel_layout_uninit)                     \
    X(swr_alloc_set_opts2) X(swr_init) X(swr_free) X(swr_get_out_samples) X(swr_convert)
static struct {
#define AV_DECL(f) __typeof__(&f) f;
    AV_FUNCS(AV_DECL)
#undef AV_DECL
} av;
static pthread_once_t av_once = PTHREAD_ONCE_INIT;
static char av_error[300]; /* "" when loaded */

static void av_load(void) {
    void *h[sizeof av_libs / sizeof av_libs[0]];
    for (size_t i = 0; i < sizeof av_libs / sizeof av_libs[0]; i++) {
        h[i] = dlopen(av_libs[i], RTLD_NOW | RTLD_LOCAL);
        if (!h[i]) {
            snprintf(av_error, sizeof av_error, "network sources need FFmpeg's %s (Debian: apt install %.*s%s): %s",
                     av_libs[i], (int)(strstr(av_libs[i], ".so.") - av_libs[i]), av_libs[i],
                     strstr(av_libs[i], ".so.") + 4, dlerror());
            return;
        }
    }
    void *p;
#define AV_RESOLVE(f)                                                                                      \
    p = NULL;                                                                                              \
    for (size_t i = 0; !p && i < sizeof h / sizeof h[0]; i++) p = dlsym(h[i], #f);                         \
    if (!p) {                                                                                              \
        snprintf(av_error, sizeof av_error, "FFmpeg's libraries lack %s (built against other versions)", #f); \
        return;                                                                                            \
    }                                                                                                      \
    memcpy(&av.f, &p, sizeof p);
    AV_FUNCS(AV_RESOLVE)
#undef AV_RESOLVE
}

int bsd_netsource_available(char *why, size_t why_size) {
    pthread_once(&av_once, av_load);
    if (av_error[0]) {
        snprintf(why, why_size, "%s", av_error);
        return 0;
    }
    return 1;
}

/* Messages quote URLs into fixed buffers; truncating them is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

void bsd_netsource_redact(const char *url, char *out, size_t size) {
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    const char *colon = at ? memchr(host, ':', (size_t)(at - host)) : NULL;
    if (!at || (slash && slash < at) || !colon) {
        snprintf(out, size, "%s", url);
        return;
    }
    snprintf(out, size, "%.*s:***%s", (int)(colon - url), url, at);
}

/* The watchdog: libavformat calls this while it blocks (connect, read, probe). */
typedef struct watch {
    const bsd_netsource_io *io;
    const AVFormatContext *fmt; /* its pb: the bytes received */
    int64_t since_ns;           /* start of this attempt */
    int timed_out;
    int64_t bytes;              /* received when the watchdog fired */
    int audio;                  /* a frame was decoded in this attempt */
    int bad_packets, bad_err;   /* packets the decoder rejected since the last frame, the last error */
} watch;

static int interrupt_cb(void *arg) {
    watch *w = arg;
    if (atomic_load(w->io->stop)) return 1;
    int64_t last = atomic_load(w->io->last_frames_mono_ns);
    if (last < w->since_ns) last = w->since_ns;
    if ((double)(bsd_mono_ns() - last) / 1e9 > w->io->timeout) {
        w->timed_out = 1;
        w->bytes = w->fmt && w->fmt->pb ? w->fmt->pb->bytes_read : 0;
        return 1;
    }
    return 0;
}

/* why = "<url>: <what>: <av error>" or, when the watchdog fired, why there was no audio:
 * packets the decoder rejected, bytes in which no audio was found (the probe), or silence. */
static int fail(char *why, size_t size, const char *url, const watch *w, const char *what, int averr) {
    char e[AV_ERROR_MAX_STRING_SIZE] = "";
    if (w->timed_out && w->bad_packets > 0)
        snprintf(why, size, "%s: %s: %s: the decoder rejected %d packet(s) in a row (%s) and nothing decoded in %.1f s (source_timeout)",
                 url, what, w->bad_err == AVERROR_INVALIDDATA ? "invalid data" : "undecodable", w->bad_packets,
                 (av.av_strerror(w->bad_err, e, sizeof e), e), w->io->timeout);
    else if (w->timed_out && w->bytes > 0 && !w->audio)
        snprintf(why, size, "%s: %s: invalid data: no audio found in the %lld bytes received in %.1f s (source_timeout)",
                 url, what, (long long)w->bytes, w->io->timeout);
    else if (w->timed_out)
        snprintf(why, size, "%s: %s: no audio for %.1f s (source_timeout)", url, what, w->io->timeout);
    else if (averr)
        snprintf(why, size, "%s: %s: %s", url, what, (av.av_strerror(averr, e, sizeof e), e));
    else
        snprintf(why, size, "%s: %s", url, what);
    return -1;
}

int bsd_netsource_run(const char *url, const bsd_netsource_io *io, char *why, size_t why_size) {
    char shown[1024];
    bsd_netsource_redact(url, shown, sizeof shown);
    if (!bsd_netsource_available(why, why_size)) return -1;
    av.av_log_set_level(AV_LOG_QUIET); /* every failure is reported here, in one sentence */
    watch w = {.io = io, .since_ns = bsd_mono_ns()};
    AVFormatContext *fmt = av.avformat_alloc_context();
    w.fmt = fmt;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = av.av_packet_alloc();
    AVFrame *frame = av.av_frame_alloc();
    SwrContext *swr = NULL;
    float *inter = NULL, *mono = NULL;
    size_t cap = 0;
    int rc = -1, averr, st_index, swr_rate = 0, swr_fmt = -1, swr_ch = 0, opened = 0;
    if (!fmt || !pkt || !frame) {
        fail(why, why_size, shown, &w, "out of memory", 0);
        goto done;
    }
    fmt->interrupt_callback = (AVIOInterruptCB){interrupt_cb, &w};
    AVDictionary *opts = NULL;
    if (strncasecmp(url, "rtsp", 4) == 0) /* tcp unless asked: no UDP loss */
        av.av_dict_set(&opts, "rtsp_transport", io->rtsp_transport ? io->rtsp_transport : "tcp", 0);
    /* probe little: a live stream arrives at its own pace, and the watchdog is running */
    av.av_dict_set(&opts, "probesize", "65536", 0);
    av.av_dict_set(&opts, "analyzeduration", "1000000", 0);
    averr = av.avformat_open_input(&fmt, url, NULL, &opts);
    av.av_dict_free(&opts);
    if (averr < 0) {
        fmt = NULL; /* freed by avformat_open_input */
        w.fmt = NULL;
        fail(why, why_size, shown, &w, "cannot open", averr);
        goto done;
    }
    if ((averr = av.avformat_find_stream_info(fmt, NULL)) < 0) {
        fail(why, why_size, shown, &w, "cannot read the stream's format", averr);
        goto done;
    }
    const AVCodec *codec = NULL;
    st_index = av.av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (st_index < 0) {
        fail(why, why_size, shown, &w,
             st_index == AVERROR_DECODER_NOT_FOUND ? "no decoder for its audio" : "no audio stream in it", 0);
        goto done;
    }
    dec = av.avcodec_alloc_context3(codec);
    if (!dec || av.avcodec_parameters_to_context(dec, fmt->streams[st_index]->codecpar) < 0 ||
        (averr = av.avcodec_open2(dec, codec, NULL)) < 0) {
        fail(why, why_size, shown, &w, "cannot open the audio decoder", dec ? averr : 0);
        goto done;
    }
    for (;;) {
        if ((averr = av.av_read_frame(fmt, pkt)) < 0) {
            if (atomic_load(io->stop)) rc = 0;
            else fail(why, why_size, shown, &w, averr == AVERROR_EOF ? "the stream ended" : "read failed",
                      averr == AVERROR_EOF ? 0 : averr);
            goto done;
        }
        if (pkt->stream_index != st_index) {
            av.av_packet_unref(pkt);
            continue;
        }
        averr = av.avcodec_send_packet(dec, pkt);
        av.av_packet_unref(pkt);
        if (averr < 0 && averr != AVERROR(EAGAIN)) {
            /* a corrupt packet: count on the watchdog if nothing decodes any more (and say
             * why then) */
            w.bad_packets++;
            w.bad_err = averr;
            continue;
        }
        while (av.avcodec_receive_frame(dec, frame) == 0) {
            int ch = frame->ch_layout.nb_channels, n = frame->nb_samples, rate = frame->sample_rate;
            if (ch < 1 || ch > 64 || rate < 1000 || rate > 768000 || n < 1) {
                fail(why, why_size, shown, &w, "decoded audio has an impossible shape", 0);
                goto done;
            }
            if (!swr || rate != swr_rate || frame->format != swr_fmt || ch != swr_ch) {
                AVChannelLayout layout;
                if (frame->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) av.av_channel_layout_default(&layout, ch);
                else if (av.av_channel_layout_copy(&layout, &frame->ch_layout) < 0) av.av_channel_layout_default(&layout, ch);
                av.swr_free(&swr);
                /* sample format only (interleaved float, same channels, same rate): the
                 * channels are averaged below, as the file source does */
                averr = av.swr_alloc_set_opts2(&swr, &layout, AV_SAMPLE_FMT_FLT, rate, &layout, frame->format, rate, 0, NULL);
                av.av_channel_layout_uninit(&layout);
                if (averr < 0 || (averr = av.swr_init(swr)) < 0) {
                    fail(why, why_size, shown, &w, "cannot convert the decoded audio", averr);
                    goto done;
                }
                if (swr_rate && rate != swr_rate) bs_ring_discontinuity(io->ring); /* a new rate: a new mark */
                swr_rate = rate, swr_fmt = frame->format, swr_ch = ch;
            }
            int out_n = av.swr_get_out_samples(swr, n);
            if ((size_t)out_n * (size_t)ch > cap) {
                cap = (size_t)out_n * (size_t)ch;
                float *a = realloc(inter, cap * sizeof *a), *b = a ? realloc(mono, cap * sizeof *b) : NULL;
                if (a) inter = a;
                if (b) mono = b;
                if (!a || !b) {
                    fail(why, why_size, shown, &w, "out of memory", 0);
                    goto done;
                }
            }
            uint8_t *outp = (uint8_t *)inter;
            int got = av.swr_convert(swr, &outp, out_n, (const uint8_t **)frame->extended_data, n);
            av.av_frame_unref(frame);
            if (got <= 0) continue;
            for (int i = 0; i < got; i++) {
                float s = 0;
                for (int c = 0; c < ch; c++) s += inter[(size_t)i * (size_t)ch + (size_t)c];
                mono[i] = ch == 1 ? s : s / (float)ch;
            }
            if (!opened) {
                char desc[160];
                snprintf(desc, sizeof desc, "%s, %d Hz, %d channel(s)", codec->name, rate, ch);
                bs_ring_discontinuity(io->ring);
                if (io->on_open) io->on_open(io->user, rate, desc);
                opened = 1;
            }
            int64_t t0 = bsd_realtime_ns() - (int64_t)((double)got / rate * 1e9);
            bs_ring_write(io->ring, mono, (size_t)got, t0, rate);
            atomic_fetch_add_explicit(io->frames, (uint64_t)got, memory_order_relaxed);
            atomic_store_explicit(io->last_frames_mono_ns, bsd_mono_ns(), memory_order_relaxed);
            w.timed_out = 0; /* audio came: an earlier interrupt was not the silence */
            w.audio = 1;
            w.bad_packets = 0;
        }
    }
done:
    av.swr_free(&swr);
    av.avcodec_free_context(&dec);
    av.avformat_close_input(&fmt);
    av.av_packet_free(&pkt);
    av.av_frame_free(&frame);
    free(inter);
    free(mono);
    return rc;
}
