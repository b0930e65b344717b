#include "daemon/spectrogram.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

enum { W = BSD_SPECTROGRAM_WIDTH, H = BSD_SPECTROGRAM_HEIGHT, PX = BSD_SPECTROGRAM_PLOT_X,
       PY = BSD_SPECTROGRAM_PLOT_Y, PW = BSD_SPECTROGRAM_PLOT_W, PH = BSD_SPECTROGRAM_PLOT_H, N_MELS = 128 };

/* matplotlib's viridis at 0, 0.1, ..., 1 (its published 11-step hex codes), interpolated
 * linearly in between. */
static const unsigned char VIRIDIS[11][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x24, 0x75}, {0x41, 0x44, 0x87}, {0x35, 0x5f, 0x8d}, {0x2a, 0x78, 0x8e}, {0x21, 0x91, 0x8c},
    {0x22, 0xa8, 0x84}, {0x44, 0xbf, 0x70}, {0x7a, 0xd1, 0x51}, {0xbd, 0xdf, 0x26}, {0xfd, 0xe7, 0x25}};

void bsd_viridis(double v, unsigned char rgb[3]) {
    if (!(v > 0)) v = 0; /* NaN too */
    if (v > 1) v = 1;
    double p = v * 10;
    int i = (int)p < 10 ? (int)p : 9;
    double f = p - i;
    for (int c = 0; c < 3; c++) rgb[c] = (unsigned char)lround(VIRIDIS[i][c] + f * (VIRIDIS[i + 1][c] - VIRIDIS[i][c]));
}

/* 5 x 7 glyphs, one byte per row, bit 4 = leftmost column. */
static const char GLYPH_CHARS[] = "0123456789.kHzs";
static const unsigned char GLYPHS[][7] = {
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F},
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}};

static const unsigned char BG[3] = {0x1d, 0x2a, 0x21}, FG[3] = {0xe8, 0xec, 0xe6};

static void put(unsigned char *img, int x, int y, const unsigned char c[3]) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    memcpy(img + ((size_t)y * W + (size_t)x) * 3, c, 3);
}

/* text at scale 2 (10 x 14 px per glyph, 2 px apart); x is the left edge, or the right edge
 * when right_align. */
static void text(unsigned char *img, int x, int y, const char *s, int right_align) {
    int n = (int)strlen(s);
    if (right_align) x -= n * 12 - 2;
    for (int k = 0; k < n; k++) {
        const char *g = strchr(GLYPH_CHARS, s[k]);
        if (!g || !s[k]) continue;
        const unsigned char *rows = GLYPHS[g - GLYPH_CHARS];
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++)
                if (rows[r] & (0x10 >> col))
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) put(img, x + k * 12 + col * 2 + dx, y + r * 2 + dy, FG);
    }
}

/* y of the plot row showing frequency hz (mel bands, lowest at the bottom). */
static int freq_y(double hz, double fmax) {
    double m0 = bs_mel_from_hz(0), m1 = bs_mel_from_hz(fmax);
    double band = (bs_mel_from_hz(hz) - m0) / (m1 - m0) * (N_MELS + 1) - 1; /* band centre index */
    return PY + PH - 1 - (int)lround((band + 0.5) * PH / N_MELS);
}

typedef struct png_mem {
    unsigned char *data;
    size_t len, cap;
    int failed;
} png_mem;

static void png_write(png_structp p, png_bytep d, png_size_t n) {
    png_mem *m = png_get_io_ptr(p);
    if (m->failed) return;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->len + n) cap *= 2;
        unsigned char *b = realloc(m->data, cap);
        if (!b) {
            m->failed = 1;
            return;
        }
        m->data = b;
        m->cap = cap;
    }
    memcpy(m->data + m->len, d, n);
    m->len += n;
}
static void png_flush(png_structp p) { (void)p; }

static int encode_png(const unsigned char *img, unsigned char **png, size_t *len, bs_error *err) {
    png_mem m = {0};
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!info) {
        png_destroy_write_struct(&p, NULL);
        return bs_error_set(err, "spectrogram: out of memory");
    }
    png_bytep rows[H];
    for (int y = 0; y < H; y++) rows[y] = (png_bytep)(img + (size_t)y * W * 3);
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        free(m.data);
        return bs_error_set(err, "spectrogram: libpng failed to encode the picture");
    }
    png_set_write_fn(p, &m, png_write, png_flush);
    png_set_IHDR(p, info, W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    png_write_image(p, rows);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    if (m.failed) {
        free(m.data);
        return bs_error_set(err, "spectrogram: out of memory");
    }
    *png = m.data;
    *len = m.len;
    return 0;
}

int bsd_spectrogram_png(const float *x, size_t n, int sr, unsigned char **png, size_t *len, bs_error *err) {
    if (n == 0 || sr < 1000) return bs_error_set(err, "spectrogram: no audio (%zu samples at %d Hz)", n, sr);
    bs_feature_config fc = bs_feature_config_default();
    fc.sample_rate = sr;
    fc.n_fft = sr >= 16000 ? 1024 : 512;
    fc.n_mels = N_MELS;
    fc.fmin = 0;
    fc.fmax = sr / 2.0;
    size_t len_in = n < (size_t)fc.n_fft ? (size_t)fc.n_fft : n; /* a short input is padded with zeros */
    fc.hop_length = (int)(len_in / PW) > 32 ? (int)(len_in / PW) : 32;
    if (fc.hop_length > fc.n_fft) fc.hop_length = fc.n_fft; /* long clips: more frames than columns */
    fc.segment_seconds = (double)len_in / sr;
    fc.segment_hop_seconds = fc.segment_seconds;
    fc.min_residual_seconds = 0;
    fc.top_db = 80;
    bs_melspec *ms = bs_melspec_create(&fc, err);
    if (!ms) return -1;
    int frames = bs_feature_n_frames(&fc);
    float *seg = calloc(len_in, sizeof *seg), *db = malloc((size_t)N_MELS * (size_t)frames * sizeof *db);
    unsigned char *img = malloc((size_t)W * H * 3);
    if (!seg || !db || !img) {
        free(seg), free(db), free(img);
        bs_melspec_free(ms);
        return bs_error_set(err, "spectrogram: out of memory");
    }
    memcpy(seg, x, n * sizeof *seg);
    bs_melspec_compute(ms, seg, db);
    bs_melspec_free(ms);
    float top = -INFINITY;
    for (size_t i = 0; i < (size_t)N_MELS * (size_t)frames; i++)
        if (db[i] > top) top = db[i];

    for (size_t i = 0; i < (size_t)W * H; i++) memcpy(img + 3 * i, BG, 3);
    for (int px = 0; px < PW; px++) { /* nearest frame per column, two rows per mel band */
        int f = (int)((long)px * frames / PW);
        for (int py = 0; py < PH; py++) {
            int m = N_MELS - 1 - py * N_MELS / PH;
            unsigned char c[3];
            bsd_viridis((db[(size_t)m * (size_t)frames + (size_t)f] - (top - 80.0)) / 80.0, c);
            put(img, PX + px, PY + py, c);
        }
    }
    for (int i = -1; i <= PW; i++) put(img, PX + i, PY - 1, FG), put(img, PX + i, PY + PH, FG); /* frame */
    for (int i = -1; i <= PH; i++) put(img, PX - 1, PY + i, FG), put(img, PX + PW, PY + i, FG);
    /* frequency ticks: 0.5, 1, 2, 4, 8, 16 kHz below fmax */
    static const double khz[] = {0.5, 1, 2, 4, 8, 16};
    for (size_t k = 0; k < sizeof khz / sizeof khz[0]; k++) {
        if (khz[k] * 1000 >= fc.fmax) break;
        int y = freq_y(khz[k] * 1000, fc.fmax);
        for (int i = 1; i <= 5; i++) put(img, PX - 1 - i, y, FG);
        char lab[16];
        snprintf(lab, sizeof lab, khz[k] < 1 ? "%.1f" : "%.0f", khz[k]);
        text(img, PX - 9, y - 7, lab, 1);
    }
    text(img, 2, 3, "kHz", 0); /* the units: above the frequency axis, right of the time axis */
    /* time ticks: every 0.5, 1, 2 or 5 s, from the start of the audio */
    double dur = (double)n / sr, step = dur <= 4 ? 0.5 : dur <= 8 ? 1 : dur <= 20 ? 2 : 5;
    for (double t = 0; t <= dur + 1e-9; t += step) {
        int xx = PX + (int)lround(t / (double)len_in * sr * PW);
        if (xx > PX + PW) break;
        for (int i = 1; i <= 5; i++) put(img, xx, PY + PH + i, FG);
        char lab[16];
        snprintf(lab, sizeof lab, step < 1 ? "%.1f" : "%.0f", t);
        int lx = xx - (int)strlen(lab) * 6 + 1;
        if (lx + (int)strlen(lab) * 12 < W - 14) text(img, lx, PY + PH + 8, lab, 0); /* clear of the "s" */
    }
    text(img, W - 12, PY + PH + 8, "s", 0);
    int rc = encode_png(img, png, len, err);
    free(seg), free(db), free(img);
    return rc;
}

/* ---- audio history ----------------------------------------------------------------------- */

int bsd_audio_history_init(bsd_audio_history *h, int rate, double seconds) {
    memset(h, 0, sizeof *h);
    h->rate = rate;
    h->cap = (size_t)(seconds * rate);
    h->buf = h->cap ? malloc(h->cap * sizeof *h->buf) : NULL;
    pthread_mutex_init(&h->lock, NULL);
    return h->cap && !h->buf ? -1 : 0;
}

void bsd_audio_history_free(bsd_audio_history *h) {
    free(h->buf);
    h->buf = NULL;
    pthread_mutex_destroy(&h->lock);
}

/* Full scale as libsndfile writes 16-bit PCM from floats (x 0x7FFF), so the history and a
 * clip of the same audio hold the same numbers. */
#define HISTORY_SCALE 32767.0f

static void to_pcm16(int16_t *o, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * HISTORY_SCALE;
        o[i] = isnan(v) ? 0 : v >= HISTORY_SCALE ? 32767 : v <= -HISTORY_SCALE ? -32767 : (int16_t)lrintf(v);
    }
}

static void from_pcm16(float *o, const int16_t *x, size_t n) {
    for (size_t i = 0; i < n; i++) o[i] = (float)x[i] / HISTORY_SCALE;
}

void bsd_audio_history_feed(bsd_audio_history *h, const float *x, size_t n, double t_end) {
    if (!h->buf) return;
    pthread_mutex_lock(&h->lock);
    double expect = h->t_end + (double)n / h->rate;
    if (h->fill && fabs(t_end - expect) > 0.05) h->fill = 0; /* a gap: the old audio is not before this */
    if (n > h->cap) {
        x += n - h->cap;
        n = h->cap;
    }
    size_t first = h->cap - h->pos < n ? h->cap - h->pos : n;
    to_pcm16(h->buf + h->pos, x, first);
    to_pcm16(h->buf, x + first, n - first);
    h->pos = (h->pos + n) % h->cap;
    h->fill = h->fill + n < h->cap ? h->fill + n : h->cap;
    h->t_end = t_end;
    pthread_mutex_unlock(&h->lock);
}

int bsd_audio_history_copy(bsd_audio_history *h, double t0, double t1, float **out, size_t *n) {
    if (!h->buf || !(t1 > t0)) return -1;
    pthread_mutex_lock(&h->lock);
    double t_start = h->t_end - (double)h->fill / h->rate;
    if (t0 < t_start - 1e-3 || t1 > h->t_end + 1e-3) {
        pthread_mutex_unlock(&h->lock);
        return -1;
    }
    size_t skip = t0 > t_start ? (size_t)llround((t0 - t_start) * h->rate) : 0;
    size_t k = (size_t)llround((t1 - t0) * h->rate);
    if (skip > h->fill) skip = h->fill;
    if (k > h->fill - skip) k = h->fill - skip;
    float *o = k ? malloc(k * sizeof *o) : NULL;
    if (o) {
        size_t from = (h->pos + h->cap - h->fill + skip) % h->cap;
        size_t first = h->cap - from < k ? h->cap - from : k;
        from_pcm16(o, h->buf + from, first);
        from_pcm16(o + first, h->buf, k - first);
    }
    pthread_mutex_unlock(&h->lock);
    if (!o) return -1;
    *out = o;
    *n = k;
    return 0;
}
