/* Dataset discovery: species folders or a manifest, plus background entries. See dataset.h. */
#include "trainer/dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static char *path_join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *r = xrealloc(NULL, na + nb + 2);
    memcpy(r, a, na);
    size_t k = na;
    if (na && a[na - 1] != '/') r[k++] = '/';
    memcpy(r + k, b, nb + 1);
    return r;
}

int ts_is_audio_name(const char *name) {
    static const char *const ext[] = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t m = strlen(ext[i]);
        if (n > m && strcasecmp(name + n - m, ext[i]) == 0) return 1;
    }
    return 0;
}

void ts_dataset_skip(ts_dataset *ds, const char *path, const char *reason) {
    ds->skipped = xrealloc(ds->skipped, (size_t)(ds->n_skipped + 1) * sizeof *ds->skipped);
    ds->skipped[ds->n_skipped].path = xstrdup(path);
    ds->skipped[ds->n_skipped].reason = xstrdup(reason);
    ds->n_skipped++;
}

int ts_dataset_label_index(const ts_dataset *ds, const char *label) {
    for (int i = 0; i < ds->n_labels; i++)
        if (strcmp(ds->labels[i], label) == 0) return i;
    return -1;
}

static int add_label(ts_dataset *ds, const char *label) {
    int i = ts_dataset_label_index(ds, label);
    if (i >= 0) return i;
    ds->labels = xrealloc(ds->labels, (size_t)(ds->n_labels + 1) * sizeof *ds->labels);
    ds->labels[ds->n_labels] = xstrdup(label);
    return ds->n_labels++;
}

/* Items are appended with their label indices; targets are built at the end, once the label
 * count is final. */
typedef struct pending {
    int *labels;  /* per item: offset into label_idx */
    int *n_lab;
    int *label_idx;
    int n_label_idx;
} pending;

static int item_exists(const ts_dataset *ds, const char *path) {
    for (int i = 0; i < ds->n_items; i++)
        if (strcmp(ds->items[i].path, path) == 0) return 1;
    return 0;
}

/* source: index in ds->sources for a background item, -1 for a labelled one. */
static void add_item(ts_dataset *ds, pending *pd, const char *path, const char *group,
                     const int *labels, int n_labels, int source) {
    if (item_exists(ds, path)) {
        ts_dataset_skip(ds, path, "listed twice; the first entry is used");
        return;
    }
    if (access(path, R_OK) != 0) {
        char reason[300];
        snprintf(reason, sizeof reason, "cannot be read: %s", strerror(errno));
        ts_dataset_skip(ds, path, reason);
        return;
    }
    int k = ds->n_items;
    ds->items = xrealloc(ds->items, (size_t)(k + 1) * sizeof *ds->items);
    pd->labels = xrealloc(pd->labels, (size_t)(k + 1) * sizeof *pd->labels);
    pd->n_lab = xrealloc(pd->n_lab, (size_t)(k + 1) * sizeof *pd->n_lab);
    pd->labels[k] = pd->n_label_idx;
    pd->n_lab[k] = n_labels;
    pd->label_idx = xrealloc(pd->label_idx, (size_t)(pd->n_label_idx + n_labels) * sizeof(int));
    for (int j = 0; j < n_labels; j++) pd->label_idx[pd->n_label_idx++] = labels[j];
    ds->items[k].path = xstrdup(path);
    ds->items[k].group = xstrdup(group ? group : path);
    ds->items[k].background = n_labels == 0;
    ds->items[k].source = source;
    ds->items[k].primary = n_labels > 0 ? labels[0] : -1;
    ds->n_items++;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of a directory (no hidden entries). want_dirs: 1 dirs, 0 non-dirs. */
static char **list_dir(const char *dir, int want_dirs, int *n_out) {
    DIR *d = opendir(dir);
    *n_out = 0;
    if (!d) return NULL;
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = path_join(dir, e->d_name);
        struct stat st;
        int is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        free(full);
        if (is_dir != want_dirs) continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *n_out = n;
    return names;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Adds every audio file of folder `dir` with the given labels; other files are skipped.
 * group: the group of every file (NULL: each file is its own). */
static void add_folder(ts_dataset *ds, pending *pd, const char *dir, const char *group, const int *labels,
                       int n_labels, int source) {
    int n;
    char **files = list_dir(dir, 0, &n);
    for (int i = 0; i < n; i++) {
        char *full = path_join(dir, files[i]);
        if (ts_is_audio_name(files[i]))
            add_item(ds, pd, full, group, labels, n_labels, source);
        else
            ts_dataset_skip(ds, full, "not an audio file name (expected .wav, .flac, .ogg, .mp3 or .aiff)");
        free(full);
    }
    free_names(files, n);
}

/* A background folder, recursively: its own files (one group each) and, in every sub-folder
 * at any depth, the files as one group named by the sub-folder (a species of other-birds/:
 * its recordings are never split between training and test, so a K-fold split is also a
 * leave-species-out one). Deeper than TS_BG_DEPTH levels is skipped, saying so. */
#define TS_BG_DEPTH 8
static void add_tree(ts_dataset *ds, pending *pd, const char *dir, const char *group, const int *labels,
                     int n_labels, int source, int depth) {
    add_folder(ds, pd, dir, group, labels, n_labels, source);
    int n;
    char **dirs = list_dir(dir, 1, &n);
    for (int i = 0; i < n; i++) {
        char *full = path_join(dir, dirs[i]);
        if (depth >= TS_BG_DEPTH)
            ts_dataset_skip(ds, full, "background folder nested more than 8 levels deep");
        else
            add_tree(ds, pd, full, group ? group : full, labels, n_labels, source, depth + 1);
        free(full);
    }
    free_names(dirs, n);
}

static int add_source(ts_dataset *ds, const char *name) {
    ds->sources = xrealloc(ds->sources, (size_t)(ds->n_sources + 1) * sizeof *ds->sources);
    ds->sources[ds->n_sources] = xstrdup(name);
    return ds->n_sources++;
}

/* Splits a line into fields in place; returns the count (at most max). */
static int split_fields(char *line, char sep, char **fields, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        fields[n++] = p;
        char *q = strchr(p, sep);
        if (!q) break;
        *q = 0;
        p = q + 1;
    }
    return n;
}

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    /* strip one pair of double quotes, as spreadsheet CSVs write them */
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

static int label_lookup(ts_dataset *ds, const char *label, int fixed) {
    if (fixed) return ts_dataset_label_index(ds, label);
    return add_label(ds, label);
}

static int load_manifest(ts_dataset *ds, pending *pd, const char *file, int fixed, bs_error *err) {
    FILE *f = fopen(file, "r");
    if (!f) return bs_error_set(err, "%s: cannot open the manifest: %s", file, strerror(errno));
    const char *ext = strrchr(file, '.');
    char sep = (ext && strcasecmp(ext, ".csv") == 0) ? ',' : '\t';
    char *dir = xstrdup(file);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else strcpy(dir, "./");
    int col_path = 0, col_labels = 1, col_group = 2, have_group_col = 1;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rows = 0, manifest_source = -1;
    enum { MAXF = 64 };
    char *fields[MAXF];
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *t = trim(line);
        if (*t == 0 || *t == '#') continue;
        int nf = split_fields(line, sep, fields, MAXF);
        for (int i = 0; i < nf; i++) fields[i] = trim(fields[i]);
        if (rows == 0 && lineno > 0 && strcasecmp(fields[0], "path") == 0) {
            col_labels = col_group = -1;
            for (int i = 1; i < nf; i++) {
                const char *h = fields[i];
                if (col_labels < 0 && (!strcasecmp(h, "labels") || !strcasecmp(h, "label") ||
                                       !strcasecmp(h, "species")))
                    col_labels = i;
                else if (col_group < 0 && (!strcasecmp(h, "group") || !strcasecmp(h, "recording") ||
                                           !strcasecmp(h, "recording_id") || !strcasecmp(h, "xc_id")))
                    col_group = i;
            }
            if (col_labels < 0) {
                free(line); free(dir); fclose(f);
                return bs_error_set(err, "%s: line %ld: the header has no labels column "
                                         "(expected one named labels, label or species)", file, lineno);
            }
            have_group_col = col_group >= 0;
            rows = -1; /* header seen; next row is the first data row */
            continue;
        }
        if (rows < 0) rows = 0;
        rows++;
        if (nf <= col_labels) {
            char where[300];
            snprintf(where, sizeof where, "%s:%ld", file, lineno);
            ts_dataset_skip(ds, where, "manifest row has no labels column (write an empty field for background)");
            continue;
        }
        const char *rel = fields[col_path];
        if (!*rel) continue;
        char *path = rel[0] == '/' ? xstrdup(rel) : path_join(dir, rel);
        const char *labstr = nf > col_labels ? fields[col_labels] : "";
        const char *group = (have_group_col && col_group < nf && *fields[col_group]) ? fields[col_group] : NULL;
        int labs[64], nl = 0, bad = 0;
        char *copy = xstrdup(labstr);
        for (char *tok = strtok(copy, ";"); tok; tok = strtok(NULL, ";")) {
            char *l = trim(tok);
            if (!*l) continue;
            int idx = label_lookup(ds, l, fixed);
            if (idx < 0) {
                char reason[300];
                snprintf(reason, sizeof reason, "label '%s' is not one of the model's species", l);
                ts_dataset_skip(ds, path, reason);
                bad = 1;
                break;
            }
            int dup = 0;
            for (int j = 0; j < nl; j++) dup |= labs[j] == idx;
            if (!dup && nl < 64) labs[nl++] = idx;
        }
        free(copy);
        if (!bad) {
            if (nl == 0 && manifest_source < 0) manifest_source = add_source(ds, file);
            add_item(ds, pd, path, group, labs, nl, nl == 0 ? manifest_source : -1);
        }
        free(path);
    }
    free(line);
    free(dir);
    fclose(f);
    if (rows <= 0) return bs_error_set(err, "%s: the manifest has no data rows", file);
    return 0;
}

static int load_folder(ts_dataset *ds, pending *pd, const char *data, int fixed,
                       char **bg, int n_bg, bs_error *err) {
    int n;
    char **dirs = list_dir(data, 1, &n);
    int used = 0;
    for (int i = 0; i < n; i++) {
        int is_bg = 0;
        for (int j = 0; j < n_bg; j++) is_bg |= strcmp(dirs[i], bg[j]) == 0;
        if (is_bg) continue;
        char *full = path_join(data, dirs[i]);
        int idx = label_lookup(ds, dirs[i], fixed);
        if (idx < 0) {
            char reason[300];
            snprintf(reason, sizeof reason, "folder '%s' is not one of the model's species", dirs[i]);
            ts_dataset_skip(ds, full, reason);
        } else {
            add_folder(ds, pd, full, NULL, &idx, 1, -1);
            used++;
        }
        free(full);
    }
    free_names(dirs, n);
    if (used == 0)
        return bs_error_set(err, "%s: no species sub-folders found (expected one folder per species)", data);
    return 0;
}

int ts_dataset_load(ts_dataset *ds, const char *data, const char *background,
                    char *const *fixed_labels, int n_fixed, bs_error *err) {
    memset(ds, 0, sizeof *ds);
    pending pd = {0};
    int fixed = fixed_labels != NULL;
    for (int i = 0; i < n_fixed; i++) add_label(ds, fixed_labels[i]);

    char **bg = NULL;
    int n_bg = 0;
    if (background && *background) {
        char *copy = xstrdup(background);
        for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
            if (!*tok) continue;
            bg = xrealloc(bg, (size_t)(n_bg + 1) * sizeof *bg);
            bg[n_bg++] = xstrdup(tok);
        }
        free(copy);
    }

    int rc;
    int data_is_dir = is_dir(data);
    if (!exists(data)) {
        rc = bs_error_set(err, "%s: no such file or folder (expected a folder of species folders or a manifest)", data);
    } else if (data_is_dir) {
        rc = load_folder(ds, &pd, data, fixed, bg, n_bg, err);
    } else {
        rc = load_manifest(ds, &pd, data, fixed, err);
    }

    /* background entries: relative to the data folder (or the manifest's folder), else as given */
    for (int j = 0; rc == 0 && j < n_bg; j++) {
        char *base = xstrdup(data);
        if (!data_is_dir) {
            char *slash = strrchr(base, '/');
            if (slash) slash[1] = 0; else strcpy(base, ".");
        }
        char *cand = bg[j][0] == '/' ? xstrdup(bg[j]) : path_join(base, bg[j]);
        free(base);
        if (!exists(cand)) {
            free(cand);
            cand = xstrdup(bg[j]);
        }
        if (is_dir(cand)) {
            add_tree(ds, &pd, cand, NULL, NULL, 0, add_source(ds, bg[j]), 0);
        } else if (exists(cand)) {
            add_item(ds, &pd, cand, NULL, NULL, 0, add_source(ds, bg[j]));
        } else {
            rc = bs_error_set(err, "--background %s: no such folder or file, neither under %s nor in the working directory",
                              bg[j], data);
        }
        free(cand);
    }
    if (rc == 0 && ds->n_labels == 0)
        rc = bs_error_set(err, "%s: no species labels found", data);
    if (rc == 0) {
        int n_lab_items = 0;
        for (int i = 0; i < ds->n_items; i++) n_lab_items += !ds->items[i].background;
        if (n_lab_items == 0) rc = bs_error_set(err, "%s: no readable labelled audio files found", data);
    }
    if (rc == 0 && !fixed && ds->n_labels > 1) {
        /* labels in sorted order whatever the row order: rank[old] = new index */
        int L = ds->n_labels;
        int *rank = calloc((size_t)L, sizeof(int));
        char **sorted = malloc(sizeof(char *) * (size_t)L);
        if (!rank || !sorted) abort();
        memcpy(sorted, ds->labels, sizeof(char *) * (size_t)L);
        qsort(sorted, (size_t)L, sizeof(char *), cmp_str);
        for (int a = 0; a < L; a++)
            for (int b = 0; b < L; b++)
                if (sorted[b] == ds->labels[a]) rank[a] = b;
        for (int k = 0; k < pd.n_label_idx; k++) pd.label_idx[k] = rank[pd.label_idx[k]];
        for (int i = 0; i < ds->n_items; i++)
            if (ds->items[i].primary >= 0) ds->items[i].primary = rank[ds->items[i].primary];
        memcpy(ds->labels, sorted, sizeof(char *) * (size_t)L);
        free(sorted);
        free(rank);
    }
    if (rc == 0) {
        ds->targets = calloc((size_t)ds->n_items * (size_t)ds->n_labels + 1, 1);
        if (!ds->targets) abort();
        for (int i = 0; i < ds->n_items; i++)
            for (int j = 0; j < pd.n_lab[i]; j++)
                ds->targets[(size_t)i * ds->n_labels + pd.label_idx[pd.labels[i] + j]] = 1;
    }
    free(pd.labels);
    free(pd.n_lab);
    free(pd.label_idx);
    free_names(bg, n_bg);
    if (rc != 0) ts_dataset_free(ds);
    return rc;
}

int ts_dataset_add_filter_class(ts_dataset *ds, const char *spec, bs_error *err) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return bs_error_set(err, "--filter-class '%s': expected NAME=DIR[,DIR...]", spec);
    char *name = xstrdup(spec);
    name[eq - spec] = 0;
    /* a label already there is accepted when nothing has it yet: a model's filter class,
     * given as a fixed label to eval */
    int idx = ts_dataset_label_index(ds, name), grow = idx < 0;
    for (int i = 0; idx >= 0 && i < ds->n_items; i++)
        if (ds->targets[(size_t)i * ds->n_labels + idx]) {
            bs_error_set(err, "--filter-class %s: '%s' is already a label of the data", spec, name);
            free(name);
            return -1;
        }
    int L = ds->n_labels, first = ds->n_items, rc = 0;
    if (grow) idx = add_label(ds, name);
    pending pd = {0};
    char *dirs = xstrdup(eq + 1);
    for (char *tok = strtok(dirs, ","); tok && rc == 0; tok = strtok(NULL, ",")) {
        if (!*tok) continue;
        char *src = malloc(strlen(name) + strlen(tok) + 2);
        if (!src) abort();
        sprintf(src, "%s=%s", name, tok);
        if (is_dir(tok)) add_tree(ds, &pd, tok, NULL, &idx, 1, add_source(ds, src), 0);
        else if (exists(tok)) add_item(ds, &pd, tok, NULL, &idx, 1, add_source(ds, src));
        else rc = bs_error_set(err, "--filter-class %s: %s: no such folder or file", spec, tok);
        free(src);
    }
    free(dirs);
    free(pd.labels);
    free(pd.n_lab);
    free(pd.label_idx);
    if (rc == 0 && ds->n_items == first)
        rc = bs_error_set(err, "--filter-class %s: no audio files found", spec);
    if (rc == 0) {
        /* one more target column (unless the label was there); the new items have exactly it */
        int L2 = L + grow;
        uint8_t *t = calloc((size_t)ds->n_items * (size_t)L2 + 1, 1);
        if (!t) abort();
        for (int i = 0; i < first; i++) memcpy(t + (size_t)i * L2, ds->targets + (size_t)i * L, (size_t)L);
        for (int i = first; i < ds->n_items; i++) t[(size_t)i * L2 + idx] = 1;
        free(ds->targets);
        ds->targets = t;
        if (grow) ds->n_filters++;
    } else if (grow) {
        free(ds->labels[--ds->n_labels]);
    }
    free(name);
    return rc;
}

void ts_dataset_free(ts_dataset *ds) {
    for (int i = 0; i < ds->n_labels; i++) free(ds->labels[i]);
    free(ds->labels);
    for (int i = 0; i < ds->n_items; i++) {
        free(ds->items[i].path);
        free(ds->items[i].group);
    }
    free(ds->items);
    free(ds->targets);
    for (int i = 0; i < ds->n_skipped; i++) {
        free(ds->skipped[i].path);
        free(ds->skipped[i].reason);
    }
    free(ds->skipped);
    for (int i = 0; i < ds->n_sources; i++) free(ds->sources[i]);
    free(ds->sources);
    memset(ds, 0, sizeof *ds);
}
