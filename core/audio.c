/* Audio decode (libsndfile) to mono float, and the streaming soxr resampler. */
#include "birdsong/audio.h"

#include <errno.h>
#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BS_AUDIO_MIN_RATE 1000
#define BS_AUDIO_MAX_RATE 768000
/* Refuse to decode more than this many frames (about 6.2 hours at 48 kHz): a header that
 * claims more is either broken or not something the tools should hold in memory. */
#define BS_AUDIO_MAX_FRAMES ((sf_count_t)1 << 30)
#define BS_AUDIO_CHUNK_FRAMES 8192

void bs_audio_free(bs_audio *a) {
    if (!a) return;
    free(a->samples);
    memset(a, 0, sizeof *a);
}

/* Reads every frame of an open SNDFILE, mixing down to mono. */
static int read_open_file(SNDFILE *sf, const SF_INFO *info, const char *name, bs_audio *out,
                          bs_error *err) {
    if (info->channels < 1 || info->channels > 1024)
        return bs_error_set(err, "%s: unsupported channel count %d (expected 1..1024)", name,
                            info->channels);
    if (info->samplerate < BS_AUDIO_MIN_RATE || info->samplerate > BS_AUDIO_MAX_RATE)
        return bs_error_set(err, "%s: sample rate %d Hz is outside %d..%d Hz", name,
                            info->samplerate, BS_AUDIO_MIN_RATE, BS_AUDIO_MAX_RATE);
    if (info->frames > BS_AUDIO_MAX_FRAMES)
        return bs_error_set(err, "%s: %lld frames is more than the %lld this tool decodes", name,
                            (long long)info->frames, (long long)BS_AUDIO_MAX_FRAMES);

    const int ch = info->channels;
    /* The header's frame count is a hint only (it may lie, or be unknown): grow as we read. */
    size_t cap = info->frames > 0 ? (size_t)info->frames : BS_AUDIO_CHUNK_FRAMES;
    if (cap > ((size_t)1 << 24)) cap = (size_t)1 << 24; /* grow beyond this on demand */
    float *mono = malloc(cap * sizeof *mono);
    float *chunk = malloc((size_t)BS_AUDIO_CHUNK_FRAMES * (size_t)ch * sizeof *chunk);
    if (!mono || !chunk) {
        free(mono);
        free(chunk);
        return bs_error_set(err, "%s: out of memory decoding %d channels", name, ch);
    }
    size_t n = 0;
    const double inv_ch = 1.0 / (double)ch;
    for (;;) {
        sf_count_t got = sf_readf_float(sf, chunk, BS_AUDIO_CHUNK_FRAMES);
        if (got <= 0) break;
        if ((sf_count_t)n + got > BS_AUDIO_MAX_FRAMES) {
            free(mono);
            free(chunk);
            return bs_error_set(err, "%s: more than %lld frames of audio, refusing to decode",
                                name, (long long)BS_AUDIO_MAX_FRAMES);
        }
        if (n + (size_t)got > cap) {
            size_t ncap = cap * 2;
            while (ncap < n + (size_t)got) ncap *= 2;
            float *p = realloc(mono, ncap * sizeof *p);
            if (!p) {
                free(mono);
                free(chunk);
                return bs_error_set(err, "%s: out of memory after %zu frames", name, n);
            }
            mono = p;
            cap = ncap;
        }
        for (sf_count_t f = 0; f < got; f++) {
            const float *fr = chunk + (size_t)f * (size_t)ch;
            double acc = 0.0; /* in double: the sum of two finite floats near FLT_MAX is Inf in float */
            for (int c = 0; c < ch; c++) {
                if (!isfinite(fr[c])) {
                    const char *what = isnan(fr[c]) ? "NaN" : "Inf";
                    free(mono);
                    free(chunk);
                    return bs_error_set(err,
                                        "%s: sample at frame %zu, channel %d is %s; refusing "
                                        "audio with non-finite samples",
                                        name, n + (size_t)f, c, what);
                }
                acc += fr[c];
            }
            mono[n + (size_t)f] = ch == 1 ? (float)acc : (float)(acc * inv_ch);
        }
        n += (size_t)got;
    }
    free(chunk);
    int e = sf_error(sf);
    if (e != SF_ERR_NO_ERROR) {
        free(mono);
        return bs_error_set(err, "%s: decode error after %zu frames: %s", name, n,
                            sf_error_number(e));
    }
    if (info->frames > 0 && info->frames != SF_COUNT_MAX && (sf_count_t)n < info->frames) {
        free(mono);
        return bs_error_set(err, "%s: truncated: the header announces %lld frames, only %zu "
                                 "could be decoded",
                            name, (long long)info->frames, n);
    }
    if (n == 0) {
        free(mono);
        return bs_error_set(err, "%s: the file holds no audio samples", name);
    }
    out->samples = mono;
    out->n_samples = n;
    out->sample_rate = info->samplerate;
    out->channels = ch;
    return 0;
}

int bs_audio_read(const char *path, bs_audio *out, bs_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return bs_error_set(err, "(null): no audio file name given");
    struct stat st;
    if (stat(path, &st) != 0)
        return bs_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return bs_error_set(err, "%s: is a directory, not an audio file", path);
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return bs_error_set(err, "%s: empty file (0 bytes)", path);
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) {
        /* sf_strerror(NULL) is libsndfile's last open error ("Format not recognised", "No
         * such file or directory", ...). It is global: good enough for a message. */
        return bs_error_set(err, "%s: cannot read as audio (%s)", path, sf_strerror(NULL));
    }
    int rc = read_open_file(sf, &info, path, out, err);
    sf_close(sf);
    return rc;
}

/* ---- libsndfile virtual I/O over a memory image ---------------------------------------- */

typedef struct {
    const unsigned char *data;
    sf_count_t size, pos;
} mem_file;

static sf_count_t mem_len(void *u) { return ((mem_file *)u)->size; }
static sf_count_t mem_seek(sf_count_t off, int whence, void *u) {
    mem_file *m = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->size;
    sf_count_t np = base + off;
    if (np < 0 || np > m->size) return -1;
    m->pos = np;
    return np;
}
static sf_count_t mem_read(void *ptr, sf_count_t count, void *u) {
    mem_file *m = u;
    if (count <= 0) return 0;
    sf_count_t left = m->size - m->pos;
    if (count > left) count = left;
    memcpy(ptr, m->data + m->pos, (size_t)count);
    m->pos += count;
    return count;
}
static sf_count_t mem_write(const void *ptr, sf_count_t count, void *u) { return 0; }
static sf_count_t mem_tell(void *u) { return ((mem_file *)u)->pos; }

int bs_audio_read_memory(const void *data, size_t size, const char *name, bs_audio *out,
                         bs_error *err) {
    memset(out, 0, sizeof *out);
    if (!name) name = "(memory)";
    if (!data || size == 0) return bs_error_set(err, "%s: empty file (0 bytes)", name);
    SF_VIRTUAL_IO vio = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
    mem_file m = {data, (sf_count_t)size, 0};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &m);
    if (!sf) return bs_error_set(err, "%s: cannot read as audio (%s)", name, sf_strerror(NULL));
    int rc = read_open_file(sf, &info, name, out, err);
    sf_close(sf);
    return rc;
}

/* ---- streaming resampler ----------------------------------------------------------------- */

struct bs_resampler {
    double in_rate, out_rate, ratio;
    soxr_t soxr; /* NULL when in_rate == out_rate: exact copy */
};

static int check_rate(double r, const char *what, bs_error *err) {
    if (!(r >= BS_AUDIO_MIN_RATE && r <= BS_AUDIO_MAX_RATE))
        return bs_error_set(err, "resampler: %s rate %g Hz is outside %d..%d Hz", what, r,
                            BS_AUDIO_MIN_RATE, BS_AUDIO_MAX_RATE);
    return 0;
}

bs_resampler *bs_resampler_create(double in_rate, double out_rate, bs_error *err) {
    if (check_rate(in_rate, "input", err) || check_rate(out_rate, "output", err)) return NULL;
    bs_resampler *r = calloc(1, sizeof *r);
    if (!r) {
        bs_error_set(err, "resampler: out of memory");
        return NULL;
    }
    r->in_rate = in_rate;
    r->out_rate = out_rate;
    r->ratio = out_rate / in_rate;
    if (in_rate != out_rate) {
        soxr_error_t e = NULL;
        soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        soxr_runtime_spec_t rt = soxr_runtime_spec(1); /* one thread: callers own threading */
        r->soxr = soxr_create(in_rate, out_rate, 1, &e, &io, &q, &rt);
        if (!r->soxr || e) {
            bs_error_set(err, "resampler: soxr cannot convert %g Hz to %g Hz: %s", in_rate,
                         out_rate, e ? e : "unknown error");
            if (r->soxr) soxr_delete(r->soxr);
            free(r);
            return NULL;
        }
    }
    return r;
}

void bs_resampler_free(bs_resampler *r) {
    if (!r) return;
    if (r->soxr) soxr_delete(r->soxr);
    free(r);
}

double bs_resampler_in_rate(const bs_resampler *r) { return r->in_rate; }
double bs_resampler_out_rate(const bs_resampler *r) { return r->out_rate; }

/* soxr holds back at most about one filter length plus one processing block; the margin
 * covers it with room to spare (checked by the unit tests with random chunk sizes). */
size_t bs_resampler_output_bound(const bs_resampler *r, size_t n_in) {
    if (!r->soxr) return n_in;
    double m = r->ratio > 1.0 ? r->ratio : 1.0;
    return (size_t)ceil((double)n_in * r->ratio) + (size_t)ceil(8192.0 * m) + 64;
}

long bs_resampler_push(bs_resampler *r, const float *in, size_t n_in, float *out,
                       size_t out_cap, bs_error *err) {
    if (n_in == 0) return 0;
    if (out_cap < bs_resampler_output_bound(r, n_in))
        return bs_error_set(err, "resampler: output capacity %zu is below the bound %zu for %zu "
                                 "input samples",
                            out_cap, bs_resampler_output_bound(r, n_in), n_in);
    if (!r->soxr) {
        memcpy(out, in, n_in * sizeof *in);
        return (long)n_in;
    }
    size_t idone = 0, odone = 0;
    soxr_error_t e = soxr_process(r->soxr, in, n_in, &idone, out, out_cap, &odone);
    if (e) return bs_error_set(err, "resampler: soxr failed: %s", e);
    if (idone != n_in)
        return bs_error_set(err, "resampler: soxr consumed %zu of %zu input samples", idone,
                            n_in);
    return (long)odone;
}

long bs_resampler_flush(bs_resampler *r, float *out, size_t out_cap, bs_error *err) {
    if (!r->soxr) return 0;
    size_t odone = 0;
    soxr_error_t e = soxr_process(r->soxr, NULL, 0, NULL, out, out_cap, &odone);
    if (e) return bs_error_set(err, "resampler: soxr flush failed: %s", e);
    return (long)odone;
}

void bs_resampler_reset(bs_resampler *r) {
    if (r->soxr) soxr_clear(r->soxr);
}

int bs_resample_all(const float *in, size_t n_in, double in_rate, double out_rate, float **out,
                    size_t *n_out, bs_error *err) {
    *out = NULL;
    *n_out = 0;
    bs_resampler *r = bs_resampler_create(in_rate, out_rate, err);
    if (!r) return -1;
    size_t cap = bs_resampler_output_bound(r, n_in) + 1;
    float *buf = malloc(cap * sizeof *buf);
    if (!buf) {
        bs_resampler_free(r);
        return bs_error_set(err, "resampler: out of memory for %zu samples", cap);
    }
    long got = bs_resampler_push(r, in, n_in, buf, cap, err);
    if (got < 0) goto fail;
    size_t n = (size_t)got;
    for (;;) {
        if (n >= cap) {
            size_t ncap = cap * 2;
            float *p = realloc(buf, ncap * sizeof *p);
            if (!p) {
                bs_error_set(err, "resampler: out of memory for %zu samples", ncap);
                goto fail;
            }
            buf = p;
            cap = ncap;
        }
        long f = bs_resampler_flush(r, buf + n, cap - n, err);
        if (f < 0) goto fail;
        if (f == 0) break;
        n += (size_t)f;
    }
    bs_resampler_free(r);
    *out = buf;
    *n_out = n;
    return 0;
fail:
    free(buf);
    bs_resampler_free(r);
    return -1;
}
