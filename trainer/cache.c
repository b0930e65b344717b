/* Feature cache. See cache.h. */
#include "trainer/cache.h"
#include "trainer/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "birdsong/file.h"

uint64_t ts_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t ts_feature_config_hash(const bs_feature_config *cfg) {
    json_t *j = ts_xcheck(bs_feature_config_to_json(cfg));
    /* The cache holds windows before normalization: window_norm does not change them. */
    json_object_del(j, "window_norm");
    char *s = ts_xcheck(json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS));
    json_decref(j);
    uint64_t h = ts_fnv1a(TS_FNV_OFFSET, s, strlen(s));
    free(s);
    return h;
}

char *ts_cache_default_dir(void) {
    const char *x = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char buf[4096];
    if (x && *x) snprintf(buf, sizeof buf, "%s/birdsong/features", x);
    else if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/birdsong/features", home);
    else snprintf(buf, sizeof buf, "/tmp/birdsong-cache/features");
    return ts_xstrdup(buf);
}

static int mkdir_p(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}


static const char MAGIC[8] = {'B', 'S', 'F', 'E', 'A', 'T', '1', 0};
enum { HEADER_BYTES = 36 }; /* magic, u64 n, i32 n_mels, i32 n_frames, f64 duration, i32 rate */

/* Maps a cache file read-only: out->data points into the mapping (page cache, not anonymous
 * memory), out->start_seconds is a malloc'd copy. The file's size must be exactly what its
 * header says. */
static int cache_map(const char *file, int n_mels, int n_frames, bs_feature_set *out, void **map, size_t *map_len) {
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    unsigned char h[HEADER_BYTES];
    struct stat st;
    uint64_t n;
    int32_t m, t, rate;
    double dur;
    int ok = pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && memcmp(h, MAGIC, 8) == 0 && fstat(fd, &st) == 0;
    if (ok) {
        memcpy(&n, h + 8, 8);
        memcpy(&m, h + 16, 4);
        memcpy(&t, h + 20, 4);
        memcpy(&dur, h + 24, 8);
        memcpy(&rate, h + 32, 4);
        ok = m == n_mels && t == n_frames && n < (1u << 24) &&
             (uint64_t)st.st_size == HEADER_BYTES + 8 * n + 4 * n * (uint64_t)m * (uint64_t)t;
    }
    void *p = ok ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (p == MAP_FAILED) return -1;
    memset(out, 0, sizeof *out);
    out->n_segments = (size_t)n;
    out->n_mels = m;
    out->n_frames = t;
    out->duration_seconds = dur;
    out->source_rate = rate;
    out->start_seconds = ts_xmalloc(sizeof(double) * (n + 1));
    memcpy(out->start_seconds, (unsigned char *)p + HEADER_BYTES, 8 * n);
    out->data = (float *)(void *)((unsigned char *)p + HEADER_BYTES + 8 * n); /* 4-byte aligned */
    *map = p;
    *map_len = (size_t)st.st_size;
    return 0;
}

static int cache_store(const char *file, const bs_feature_set *s) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lx", file, (long)getpid(), (unsigned long)pthread_self());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    uint64_t n = s->n_segments;
    int32_t m = s->n_mels, t = s->n_frames, rate = s->source_rate;
    size_t vals = (size_t)n * (size_t)m * (size_t)t;
    int ok = fwrite(MAGIC, 8, 1, f) == 1 && fwrite(&n, 8, 1, f) == 1 && fwrite(&m, 4, 1, f) == 1 &&
             fwrite(&t, 4, 1, f) == 1 && fwrite(&s->duration_seconds, 8, 1, f) == 1 &&
             fwrite(&rate, 4, 1, f) == 1 && fwrite(s->start_seconds, sizeof(double), n, f) == n &&
             fwrite(s->data, sizeof(float), vals, f) == vals;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, file) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

typedef struct job {
    const bs_feature_config *cfg;
    const char *dir;
    uint64_t cfg_hash;
    char *const *paths;
    int n;
    ts_file_features *out;
    pthread_mutex_t lock;
    int next, done;
    ts_cache_stats stats;
    void (*progress)(int, int, void *);
    void *ctx;
} job;

static void one_file(job *jb, bs_melspec *ms, int i) {
    ts_file_features *o = &jb->out[i];
    unsigned char *bytes = NULL;
    size_t size = 0;
    int hit = 0, miss = 0, wrote = 0;
    bs_error rerr;
    if (bs_read_file(jb->paths[i], &bytes, &size, &rerr) != 0) {
        o->error = ts_xstrdup(rerr.msg);
        goto done;
    }
    char file[4200] = "";
    if (jb->dir) {
        uint64_t h = ts_fnv1a(TS_FNV_OFFSET, bytes, size);
        snprintf(file, sizeof file, "%s/%016" PRIx64 "-%016" PRIx64 ".bsf", jb->dir, h, jb->cfg_hash);
        if (cache_map(file, jb->cfg->n_mels, bs_feature_n_frames(jb->cfg), &o->set, &o->map, &o->map_len) == 0) {
            o->ok = 1;
            hit = 1;
            goto done;
        }
    }
    miss = 1;
    bs_audio audio;
    bs_error err = {{0}};
    if (bs_audio_read_memory(bytes, size, jb->paths[i], &audio, &err) != 0) {
        o->error = ts_xstrdup(err.msg);
        goto done;
    }
    int rc = bs_features_from_audio(ms, &audio, &o->set, &err);
    bs_audio_free(&audio);
    if (rc != 0) {
        bs_error_prefix(&err, jb->paths[i]);
        o->error = ts_xstrdup(err.msg);
        goto done;
    }
    o->ok = 1;
    if (jb->dir && cache_store(file, &o->set) == 0) {
        wrote = 1;
        /* train from the file just written, not from this process's memory */
        bs_feature_set mapped;
        if (cache_map(file, o->set.n_mels, o->set.n_frames, &mapped, &o->map, &o->map_len) == 0) {
            bs_feature_set_free(&o->set);
            o->set = mapped;
        }
    }
done:
    free(bytes);
    pthread_mutex_lock(&jb->lock);
    jb->stats.hits += hit;
    jb->stats.misses += miss;
    jb->stats.writes += wrote;
    jb->stats.failures += !o->ok;
    jb->done++;
    if (jb->progress) jb->progress(jb->done, jb->n, jb->ctx);
    pthread_mutex_unlock(&jb->lock);
}

static void *worker(void *arg) {
    job *jb = arg;
    bs_error err;
    bs_melspec *ms = bs_melspec_create(jb->cfg, &err);
    for (;;) {
        pthread_mutex_lock(&jb->lock);
        int i = jb->next++;
        pthread_mutex_unlock(&jb->lock);
        if (i >= jb->n) break;
        if (!ms) {
            jb->out[i].error = ts_xstrdup(err.msg);
            continue;
        }
        one_file(jb, ms, i);
    }
    if (ms) bs_melspec_free(ms);
    return NULL;
}

int ts_cache_compute(const bs_feature_config *cfg, const char *cache_dir, char *const *paths, int n,
                     int threads, ts_file_features *out, ts_cache_stats *stats,
                     void (*progress)(int done, int total, void *ctx), void *ctx, bs_error *err) {
    if (bs_feature_config_validate(cfg, err) != 0) return -1;
    memset(out, 0, sizeof *out * (size_t)n);
    job jb = {.cfg = cfg, .dir = NULL, .paths = paths, .n = n, .out = out, .progress = progress, .ctx = ctx};
    jb.cfg_hash = ts_feature_config_hash(cfg);
    if (cache_dir) {
        if (mkdir_p(cache_dir) != 0)
            return bs_error_set(err, "%s: cannot create the feature cache folder: %s", cache_dir, strerror(errno));
        jb.dir = cache_dir;
    }
    pthread_mutex_init(&jb.lock, NULL);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (threads > n) threads = n > 0 ? n : 1;
    pthread_t tid[64];
    int started = 0;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&tid[started], NULL, worker, &jb) == 0) started++;
    worker(&jb);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&jb.lock);
    if (stats) *stats = jb.stats;
    return 0;
}

void ts_file_features_free(ts_file_features *f) {
    if (f->map) {
        munmap(f->map, f->map_len);
        f->set.data = NULL;
    }
    if (f->ok) bs_feature_set_free(&f->set);
    free(f->error);
    memset(f, 0, sizeof *f);
}
