#include "daemon/clips.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "birdsong/log.h"

enum { EMPTY = 0, WAITING, READY, WRITING };

typedef struct request {
    int state;
    int source;          /* whose audio */
    int64_t id;
    double t0, t1;       /* wanted times */
    uint64_t k0, k1;     /* sample indices once READY */
} request;

typedef struct clip_file {
    int64_t id;
    uint64_t bytes;
} clip_file;

/* one source's audio history */
typedef struct track {
    float *ring; /* [cap] */
    uint64_t n_total;
    double t_end;
} track;

struct bsd_clips {
    char *dir;
    bsd_clips_config cfg;
    /* every source's audio history, guarded by lock */
    track *tracks; /* [cfg.n_sources] */
    uint64_t cap;
    request *req;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* writer: a request is READY, or stop */
    pthread_cond_t idle; /* flush: the writer finished one */
    int stop;
    pthread_t writer;
    int writer_started;
    /* clip index: writer thread, open and quota calls, under lock */
    clip_file *files;
    int n_files, files_cap;
    uint64_t bytes;
    bsd_clips_stats stats;
    double (*probe)(const char *dir, void *user);
    void *probe_user;
};

static double statvfs_probe(const char *dir, void *user) {
    (void)user;
    struct statvfs v;
    if (statvfs(dir, &v) != 0 || v.f_blocks == 0) return 100.0;
    return 100.0 * (double)v.f_bavail / (double)v.f_blocks;
}


void bsd_clips_set_disk_probe(bsd_clips *c, double (*fn)(const char *, void *), void *user) {
    pthread_mutex_lock(&c->lock);
    c->probe = fn ? fn : statvfs_probe;
    c->probe_user = user;
    pthread_mutex_unlock(&c->lock);
}

static void clip_path(const bsd_clips *c, int64_t id, const char *suffix, char *out, size_t n) {
    snprintf(out, n, "%s/%" PRId64 ".flac%s", c->dir, id, suffix);
}

void bsd_clips_cached_path(const bsd_clips *c, int64_t id, char *out, size_t n) {
    snprintf(out, n, "%s/%" PRId64 ".png", c->dir, id);
}

static int add_file(bsd_clips *c, int64_t id, uint64_t bytes) {
    if (c->n_files == c->files_cap) {
        int cap = c->files_cap ? 2 * c->files_cap : 256;
        clip_file *f = realloc(c->files, (size_t)cap * sizeof *f);
        if (!f) return -1;
        c->files = f;
        c->files_cap = cap;
    }
    int i = c->n_files;
    while (i > 0 && c->files[i - 1].id > id) { /* keep sorted by id */
        c->files[i] = c->files[i - 1];
        i--;
    }
    c->files[i] = (clip_file){id, bytes};
    c->n_files++;
    c->bytes += bytes;
    return 0;
}

static void delete_oldest(bsd_clips *c) {
    char path[4096];
    clip_path(c, c->files[0].id, "", path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT) {
        bs_log_warn("clips: cannot delete %s: %s", path, strerror(errno));
        c->stats.errors++;
    }
    bsd_clips_cached_path(c, c->files[0].id, path, sizeof path); /* its cached spectrogram */
    unlink(path);
    c->bytes -= c->files[0].bytes;
    memmove(c->files, c->files + 1, (size_t)(c->n_files - 1) * sizeof *c->files);
    c->n_files--;
    c->stats.deleted++;
}

/* Deletes the oldest until `incoming` more bytes fit; lock held. Returns 1 when they fit. */
static int make_room(bsd_clips *c, uint64_t incoming, int *deleted) {
    uint64_t max_bytes = (uint64_t)(c->cfg.max_mb * 1024.0 * 1024.0);
    for (;;) {
        int fits = c->bytes + incoming <= max_bytes && c->probe(c->dir, c->probe_user) >= c->cfg.min_free_percent;
        if (fits) return 1;
        if (c->n_files == 0) return 0;
        delete_oldest(c);
        (*deleted)++;
    }
}

int bsd_clips_enforce_quota(bsd_clips *c) {
    int deleted = 0;
    pthread_mutex_lock(&c->lock);
    make_room(c, 0, &deleted);
    pthread_mutex_unlock(&c->lock);
    return deleted;
}

/* The index of clip id in c->files (sorted by id), or -1; lock held. */
static int find_file(const bsd_clips *c, int64_t id) {
    int lo = 0, hi = c->n_files - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->files[mid].id == id) return mid;
        if (c->files[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* The cached spectrograms: each counted in its clip's size, deleted with it; one without its
 * clip (a crash between the two deletes) or a write cut short is deleted. */
static void scan_cached(bsd_clips *c) {
    DIR *d = opendir(c->dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long long id = strtoll(e->d_name, &end, 10);
        if (end == e->d_name || id <= 0 || strncmp(end, ".png", 4) != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", c->dir, e->d_name);
        struct stat st;
        int i = strcmp(end, ".png") == 0 ? find_file(c, id) : -1;
        if (i < 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            unlink(path);
            continue;
        }
        c->files[i].bytes += (uint64_t)st.st_size;
        c->bytes += (uint64_t)st.st_size;
    }
    closedir(d);
}

int bsd_clips_put_cached(bsd_clips *c, int64_t id, const void *data, size_t len) {
    char path[4096], tmp[4200];
    bsd_clips_cached_path(c, id, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%lu.tmp", path, (unsigned long)pthread_self());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok) {
        int e = errno ? errno : EIO;
        unlink(tmp);
        errno = e;
        return -1;
    }
    int rc = 0, deleted = 0, e = 0;
    pthread_mutex_lock(&c->lock);
    int i = find_file(c, id);
    struct stat old;
    uint64_t before = stat(path, &old) == 0 ? (uint64_t)old.st_size : 0; /* drawn twice at once */
    if (i < 0) { /* deleted by the quota meanwhile */
        e = ENOENT;
        rc = -1;
    } else if (rename(tmp, path) != 0) {
        e = errno;
        rc = -1;
    } else {
        if (before > c->files[i].bytes) before = c->files[i].bytes;
        c->files[i].bytes += (uint64_t)len - before;
        c->bytes += (uint64_t)len - before;
        make_room(c, 0, &deleted); /* the spectrogram may push the clips over the quota */
    }
    pthread_mutex_unlock(&c->lock);
    if (rc != 0) {
        unlink(tmp);
        errno = e;
    }
    return rc;
}

static int scan_dir(bsd_clips *c, bs_error *err) {
    DIR *d = opendir(c->dir);
    if (!d) return bs_error_set(err, "clips: cannot read directory %s: %s", c->dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long long id = strtoll(e->d_name, &end, 10);
        if (end == e->d_name || id <= 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", c->dir, e->d_name);
        if (strcmp(end, ".flac.tmp") == 0) { /* a write cut short by a crash */
            unlink(path);
            continue;
        }
        if (strcmp(end, ".flac") != 0) continue;
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (add_file(c, id, (uint64_t)st.st_size)) {
            closedir(d);
            return bs_error_set(err, "clips: out of memory indexing %s", c->dir);
        }
    }
    closedir(d);
    scan_cached(c);
    return 0;
}

/* Writes request r (READY) to disk; called on the writer thread without the lock. */
static void write_clip(bsd_clips *c, request *r) {
    char tmp[4096], final[4096];
    clip_path(c, r->id, ".tmp", tmp, sizeof tmp);
    clip_path(c, r->id, "", final, sizeof final);
    uint64_t n = r->k1 > r->k0 ? r->k1 - r->k0 : 0;
    if (n == 0) return;
    int deleted = 0;
    pthread_mutex_lock(&c->lock);
    int fits = make_room(c, n * 2, &deleted); /* 16-bit PCM: an upper bound for FLAC */
    if (!fits) c->stats.skipped_disk++;
    pthread_mutex_unlock(&c->lock);
    if (!fits) {
        bs_log_warn("clips: no room for the clip of detection %" PRId64 " (quota %.1f MB, %.1f%% disk kept free)",
                    r->id, c->cfg.max_mb, c->cfg.min_free_percent);
        return;
    }
    SF_INFO info = {.samplerate = c->cfg.sample_rate, .channels = 1, .format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(tmp, SFM_WRITE, &info);
    if (!sf) {
        bs_log_error("clips: cannot create %s: %s", tmp, sf_strerror(NULL));
        pthread_mutex_lock(&c->lock);
        c->stats.errors++;
        pthread_mutex_unlock(&c->lock);
        return;
    }
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    float chunk[4096];
    int ok = 1;
    const track *t = &c->tracks[r->source];
    for (uint64_t k = r->k0; ok && k < r->k1;) {
        uint64_t m = r->k1 - k < 4096 ? r->k1 - k : 4096;
        pthread_mutex_lock(&c->lock);
        if (t->n_total - k > c->cap) {
            ok = 0; /* the worker overwrote it: the writer fell too far behind */
        } else {
            for (uint64_t j = 0; j < m; j++) chunk[j] = t->ring[(k + j) % c->cap];
        }
        pthread_mutex_unlock(&c->lock);
        if (ok && sf_writef_float(sf, chunk, (sf_count_t)m) != (sf_count_t)m) ok = 0;
        k += m;
    }
    if (sf_close(sf) != 0) ok = 0;
    struct stat st;
    if (ok && (stat(tmp, &st) != 0 || rename(tmp, final) != 0)) ok = 0;
    pthread_mutex_lock(&c->lock);
    if (ok) {
        add_file(c, r->id, (uint64_t)st.st_size);
        c->stats.saved++;
        make_room(c, 0, &deleted);
    } else {
        c->stats.errors++;
    }
    pthread_mutex_unlock(&c->lock);
    if (!ok) {
        bs_log_error("clips: could not write %s (disk full, or audio overwritten before it was saved)", final);
        unlink(tmp);
    }
}

static void *writer_main(void *arg) {
    bsd_clips *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        request *r = NULL;
        for (int i = 0; i < c->cfg.max_pending; i++)
            if (c->req[i].state == READY && (!r || c->req[i].id < r->id)) r = &c->req[i];
        if (!r) {
            if (c->stop) break;
            pthread_cond_wait(&c->wake, &c->lock);
            continue;
        }
        r->state = WRITING;
        request copy = *r;
        pthread_mutex_unlock(&c->lock);
        write_clip(c, &copy);
        pthread_mutex_lock(&c->lock);
        r->state = EMPTY;
        pthread_cond_broadcast(&c->idle);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

bsd_clips *bsd_clips_open(const char *dir, const bsd_clips_config *cfg, bs_error *err) {
    bsd_clips_config k = cfg ? *cfg : (bsd_clips_config){0};
    if (k.sample_rate <= 0 || k.sample_rate > 384000) {
        bs_error_set(err, "clips: sample rate must be 1..384000 Hz, found %d", k.sample_rate);
        return NULL;
    }
    if (k.pre_roll == 0) k.pre_roll = 1.0;
    if (k.post_roll == 0) k.post_roll = 1.0;
    if (k.max_event_seconds == 0) k.max_event_seconds = 60.0;
    if (k.max_mb == 0) k.max_mb = 500.0;
    if (k.min_free_percent == 0) k.min_free_percent = 10.0;
    if (k.max_pending == 0) k.max_pending = 16;
    if (k.n_sources == 0) k.n_sources = 1;
    if (k.pre_roll < 0 || k.pre_roll > 60 || k.post_roll < 0 || k.post_roll > 60 || k.max_event_seconds < 0 ||
        k.max_event_seconds > 3600 || k.max_mb < 0 || k.min_free_percent < 0 || k.min_free_percent > 100 ||
        k.max_pending < 0 || k.max_pending > 4096 || k.n_sources < 0 || k.n_sources > BSD_CLIPS_SOURCES_MAX) {
        bs_error_set(err, "clips: settings out of range (pre/post roll 0..60 s, max event 0..3600 s, max_mb >= 0, "
                          "min_free_percent 0..100, 1..%d sources)", BSD_CLIPS_SOURCES_MAX);
        return NULL;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        bs_error_set(err, "clips: cannot create directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    bsd_clips *c = calloc(1, sizeof *c);
    if (!c) {
        bs_error_set(err, "clips: out of memory");
        return NULL;
    }
    c->cfg = k;
    c->dir = strdup(dir);
    /* pre + event + post, plus 10 s for the writer to catch up */
    c->cap = (uint64_t)((k.pre_roll + k.max_event_seconds + k.post_roll + 10.0) * k.sample_rate);
    c->tracks = calloc((size_t)k.n_sources, sizeof *c->tracks);
    int rings = c->tracks != NULL;
    for (int i = 0; rings && i < k.n_sources; i++) rings = (c->tracks[i].ring = calloc(c->cap, sizeof(float))) != NULL;
    c->req = calloc((size_t)k.max_pending, sizeof *c->req);
    c->probe = statvfs_probe;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->idle, NULL);
    if (!c->dir || !rings || !c->req) {
        bs_error_set(err, "clips: out of memory for %d x %" PRIu64 " samples of history", k.n_sources, c->cap);
        bsd_clips_close(c);
        return NULL;
    }
    if (scan_dir(c, err)) {
        bsd_clips_close(c);
        return NULL;
    }
    int deleted = bsd_clips_enforce_quota(c);
    if (deleted > 0) bs_log_info("clips: quota: deleted the %d oldest clip(s) in %s", deleted, dir);
    if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
        bs_error_set(err, "clips: cannot start the writer thread");
        bsd_clips_close(c);
        return NULL;
    }
    c->writer_started = 1;
    return c;
}

void bsd_clips_close(bsd_clips *c) {
    if (!c) return;
    if (c->writer_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = 1;
        pthread_cond_broadcast(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->writer, NULL);
    }
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    free(c->files);
    free(c->req);
    for (int i = 0; c->tracks && i < c->cfg.n_sources; i++) free(c->tracks[i].ring);
    free(c->tracks);
    free(c->dir);
    free(c);
}

/* Lock held: marks source's WAITING requests whose audio is complete as READY. */
static void promote(bsd_clips *c, int source) {
    int any = 0;
    double rate = c->cfg.sample_rate;
    const track *t = &c->tracks[source];
    for (int i = 0; i < c->cfg.max_pending; i++) {
        request *r = &c->req[i];
        if (r->state != WAITING || r->source != source || r->t1 > t->t_end) continue;
        uint64_t oldest = t->n_total > c->cap ? t->n_total - c->cap : 0;
        double k0 = (double)t->n_total - (t->t_end - r->t0) * rate;
        double k1 = (double)t->n_total - (t->t_end - r->t1) * rate;
        r->k0 = k0 < (double)oldest ? oldest : (uint64_t)k0;
        r->k1 = k1 < (double)r->k0 ? r->k0 : (uint64_t)k1;
        r->state = READY;
        any = 1;
    }
    if (any) pthread_cond_signal(&c->wake);
}

void bsd_clips_feed(bsd_clips *c, int source, const float *x, size_t n, double t_end) {
    if (source < 0 || source >= c->cfg.n_sources) return;
    pthread_mutex_lock(&c->lock);
    track *t = &c->tracks[source];
    if (n > c->cap) { /* only the newest cap samples matter */
        x += n - c->cap;
        t->n_total += n - c->cap;
        n = c->cap;
    }
    uint64_t at = t->n_total % c->cap;
    size_t first = c->cap - at < n ? (size_t)(c->cap - at) : n;
    memcpy(t->ring + at, x, first * sizeof *x);
    memcpy(t->ring, x + first, (n - first) * sizeof *x);
    t->n_total += n;
    t->t_end = t_end;
    promote(c, source);
    pthread_mutex_unlock(&c->lock);
}

int bsd_clips_request(bsd_clips *c, int source, const bsd_detection *d) {
    if (source < 0 || source >= c->cfg.n_sources) return -1;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->cfg.max_pending; i++) {
        if (c->req[i].state != EMPTY) continue;
        double t0 = d->start - c->cfg.pre_roll, t1 = d->end + c->cfg.post_roll;
        if (t1 - t0 > (double)c->cap / c->cfg.sample_rate - 10.0) t0 = t1 - ((double)c->cap / c->cfg.sample_rate - 10.0);
        c->req[i] = (request){.state = WAITING, .source = source, .id = d->id, .t0 = t0, .t1 = t1};
        promote(c, source);
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    c->stats.skipped_busy++;
    pthread_mutex_unlock(&c->lock);
    return -1;
}

int bsd_clips_flush(bsd_clips *c, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)(timeout_ms % 1000) * 1000000L;
    ts.tv_sec += timeout_ms / 1000 + ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < c->cfg.max_pending; i++) busy |= c->req[i].state == READY || c->req[i].state == WRITING;
        if (!busy) break;
        if (pthread_cond_clockwait(&c->idle, &c->lock, CLOCK_MONOTONIC, &ts) == ETIMEDOUT) {
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int bsd_clips_path(bsd_clips *c, int64_t id, char *out, size_t n) {
    clip_path(c, id, "", out, n);
    struct stat st;
    return stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

bsd_clips_stats bsd_clips_get_stats(bsd_clips *c) {
    pthread_mutex_lock(&c->lock);
    bsd_clips_stats s = c->stats;
    s.files = (uint64_t)c->n_files;
    s.bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
    return s;
}
