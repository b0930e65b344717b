/* An ALSA capture device that plays an audio file (for tests on machines without a sound
 * card; REFERENCES.md §5). The samples an application reads are exactly the file's
 * (libsndfile float conversion, channels averaged), paced in real time by CLOCK_MONOTONIC.
 *
 *   pcm_type.bsfile { lib "/abs/path/libasound_module_pcm_bsfile.so" }
 *   pcm.!default { type bsfile  file "/abs/path/recording.wav"  loop true }
 *
 * Options: file (required), loop (bool, default false: after the end the device delivers
 * nothing more, like an unplugged card), stall_after (seconds of audio after which it stops
 * delivering, default never), fail ("open", "hw_params" or "start": that step fails with
 * EIO, to test error handling; note that PortAudio 19.6 deadlocks in Pa_StartStream when the
 * start fails, so tests use "hw_params", which makes Pa_OpenStream fail), present (a path:
 * while no file exists there the device is unplugged: it delivers nothing and cannot be
 * opened, ENODEV; tests/integration/test_faults.py). Capture only, FLOAT_LE, mono, RW access, the file's sample rate. */
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>
#include <errno.h>
#include <poll.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef struct bsfile {
    snd_pcm_ioplug_t io;
    SNDFILE *sf;
    SF_INFO info;
    int loop, fail_start, fail_hw_params;
    char present[1024];   /* "" or the marker file whose absence unplugs the device */
    double stall_after;
    int tfd;
    double t0;            /* start time, monotonic seconds */
    uint64_t hw_at_start; /* frames captured before the last start */
    uint64_t hw;          /* frames "captured" since prepare */
    uint64_t consumed;    /* frames handed to the application */
    uint64_t file_pos;    /* frames read from the file (all loops) */
    int running;
    float *tmp;
    size_t tmp_frames;
} bsfile;

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int unplugged(const bsfile *p) { return p->present[0] && access(p->present, F_OK) != 0; }

static void update_hw(bsfile *p) {
    if (!p->running || unplugged(p)) return;
    double rate = p->io.rate;
    uint64_t target = p->hw_at_start + (uint64_t)((mono_now() - p->t0) * rate);
    if (p->stall_after > 0) {
        uint64_t lim = (uint64_t)(p->stall_after * rate);
        if (target > lim) target = lim;
    }
    if (!p->loop && target > (uint64_t)p->info.frames) target = (uint64_t)p->info.frames;
    /* Never overrun the application: a slow reader makes the device wait (no xrun). */
    uint64_t lim = p->consumed + p->io.buffer_size;
    if (target > lim) target = lim;
    if (target > p->hw) p->hw = target;
}

static int bs_start(snd_pcm_ioplug_t *io) {
    bsfile *p = io->private_data;
    if (p->fail_start) return -EIO;
    p->t0 = mono_now();
    p->hw_at_start = p->hw;
    p->running = 1;
    double period = (double)io->period_size / io->rate;
    struct itimerspec its;
    its.it_interval.tv_sec = (time_t)period;
    its.it_interval.tv_nsec = (long)((period - (double)(time_t)period) * 1e9);
    if (its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == 0) its.it_interval.tv_nsec = 1000000;
    its.it_value = its.it_interval;
    timerfd_settime(p->tfd, 0, &its, NULL);
    return 0;
}

static int bs_stop(snd_pcm_ioplug_t *io) {
    bsfile *p = io->private_data;
    update_hw(p);
    p->running = 0;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    timerfd_settime(p->tfd, 0, &its, NULL);
    return 0;
}

static int bs_hw_params(snd_pcm_ioplug_t *io, snd_pcm_hw_params_t *params) {
    bsfile *p = io->private_data;
    if (unplugged(p)) return -ENODEV;
    return p->fail_hw_params ? -EIO : 0;
}

static int bs_prepare(snd_pcm_ioplug_t *io) {
    bsfile *p = io->private_data;
    p->hw = p->consumed = p->hw_at_start = 0;
    p->running = 0;
    return 0;
}

static snd_pcm_sframes_t bs_pointer(snd_pcm_ioplug_t *io) {
    bsfile *p = io->private_data;
    update_hw(p);
    return (snd_pcm_sframes_t)(p->hw % io->buffer_size);
}

/* Reads n frames of mono float from the file into dst (looping if asked; zeros past the end). */
static void read_file(bsfile *p, float *dst, size_t n) {
    int ch = p->info.channels;
    while (n > 0) {
        size_t want = n < p->tmp_frames ? n : p->tmp_frames;
        sf_count_t got = sf_readf_float(p->sf, ch == 1 ? dst : p->tmp, (sf_count_t)want);
        if (got <= 0) {
            if (p->loop && sf_seek(p->sf, 0, SEEK_SET) == 0) continue;
            memset(dst, 0, n * sizeof(float));
            return;
        }
        if (ch > 1) {
            for (sf_count_t i = 0; i < got; i++) {
                float s = 0;
                for (int c = 0; c < ch; c++) s += p->tmp[i * ch + c];
                dst[i] = s / (float)ch;
            }
        }
        dst += got;
        n -= (size_t)got;
        p->file_pos += (uint64_t)got;
    }
}

static snd_pcm_sframes_t bs_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
                                     snd_pcm_uframes_t offset, snd_pcm_uframes_t size) {
    bsfile *p = io->private_data;
    float *dst = (float *)((char *)areas[0].addr + (areas[0].first + areas[0].step * offset) / 8);
    read_file(p, dst, size);
    p->consumed += size;
    return (snd_pcm_sframes_t)size;
}

static int bs_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int nfds,
                           unsigned short *revents) {
    bsfile *p = io->private_data;
    uint64_t ticks;
    while (read(p->tfd, &ticks, sizeof ticks) > 0) {}
    update_hw(p);
    *revents = (p->hw - p->consumed >= io->period_size) ? POLLIN : 0;
    return 0;
}

static int bs_close(snd_pcm_ioplug_t *io) {
    bsfile *p = io->private_data;
    if (p->sf) sf_close(p->sf);
    if (p->tfd >= 0) close(p->tfd);
    free(p->tmp);
    free(p);
    return 0;
}

static const snd_pcm_ioplug_callback_t bs_callback = {
    .start = bs_start,
    .stop = bs_stop,
    .pointer = bs_pointer,
    .transfer = bs_transfer,
    .close = bs_close,
    .prepare = bs_prepare,
    .hw_params = bs_hw_params,
    .poll_revents = bs_poll_revents,
};

SND_PCM_PLUGIN_DEFINE_FUNC(bsfile) {
    snd_config_iterator_t i, next;
    const char *path = NULL, *fail = NULL, *present = NULL;
    int loop = 0;
    double stall_after = 0;
    snd_config_for_each(i, next, conf) {
        snd_config_t *n = snd_config_iterator_entry(i);
        const char *id;
        if (snd_config_get_id(n, &id) < 0) continue;
        if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint")) continue;
        if (!strcmp(id, "file")) {
            if (snd_config_get_string(n, &path) < 0) return -EINVAL;
        } else if (!strcmp(id, "loop")) {
            if ((loop = snd_config_get_bool(n)) < 0) return -EINVAL;
        } else if (!strcmp(id, "fail")) {
            if (snd_config_get_string(n, &fail) < 0) return -EINVAL;
        } else if (!strcmp(id, "present")) {
            if (snd_config_get_string(n, &present) < 0) return -EINVAL;
        } else if (!strcmp(id, "stall_after")) {
            long l;
            if (snd_config_get_real(n, &stall_after) < 0) {
                if (snd_config_get_integer(n, &l) < 0) return -EINVAL;
                stall_after = (double)l;
            }
        } else {
            SNDERR("bsfile: unknown field %s", id);
            return -EINVAL;
        }
    }
    if (!path) {
        SNDERR("bsfile: 'file' is required");
        return -EINVAL;
    }
    if (stream != SND_PCM_STREAM_CAPTURE) return -EINVAL;
    if (fail && !strcmp(fail, "open")) return -EIO;
    if (present && access(present, F_OK) != 0) return -ENODEV;
    bsfile *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->tfd = -1;
    p->sf = sf_open(path, SFM_READ, &p->info);
    if (!p->sf) {
        SNDERR("bsfile: %s: %s", path, sf_strerror(NULL));
        free(p);
        return -ENOENT;
    }
    p->loop = loop;
    p->stall_after = stall_after;
    snprintf(p->present, sizeof p->present, "%s", present ? present : "");
    p->fail_start = fail && !strcmp(fail, "start");
    p->fail_hw_params = fail && !strcmp(fail, "hw_params");
    p->tmp_frames = 4096;
    p->tmp = malloc(p->tmp_frames * (size_t)p->info.channels * sizeof(float));
    p->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!p->tmp || p->tfd < 0) {
        bs_close(&p->io);
        return -ENOMEM;
    }
    p->io.version = SND_PCM_IOPLUG_VERSION;
    p->io.name = "birdsong file capture (test device)";
    p->io.callback = &bs_callback;
    p->io.private_data = p;
    p->io.poll_fd = p->tfd;
    p->io.poll_events = POLLIN;
    p->io.mmap_rw = 0;
    int err = snd_pcm_ioplug_create(&p->io, name, stream, mode);
    if (err < 0) {
        bs_close(&p->io);
        return err;
    }
    static const unsigned int access[] = {SND_PCM_ACCESS_RW_INTERLEAVED};
    static const unsigned int formats[] = {SND_PCM_FORMAT_FLOAT_LE};
    unsigned int rate = (unsigned int)p->info.samplerate;
    if ((err = snd_pcm_ioplug_set_param_list(&p->io, SND_PCM_IOPLUG_HW_ACCESS, 1, access)) < 0 ||
        (err = snd_pcm_ioplug_set_param_list(&p->io, SND_PCM_IOPLUG_HW_FORMAT, 1, formats)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&p->io, SND_PCM_IOPLUG_HW_CHANNELS, 1, 1)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&p->io, SND_PCM_IOPLUG_HW_RATE, rate, rate)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&p->io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 64 * 4, 65536 * 4)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&p->io, SND_PCM_IOPLUG_HW_PERIODS, 2, 1024)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&p->io, SND_PCM_IOPLUG_HW_BUFFER_BYTES, 256 * 4, 1 << 22)) < 0) {
        snd_pcm_ioplug_delete(&p->io);
        return err;
    }
    *pcmp = p->io.pcm;
    return 0;
}

SND_PCM_PLUGIN_SYMBOL(bsfile);
