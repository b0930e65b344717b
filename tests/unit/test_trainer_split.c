/* Dataset discovery and splits: no recording in two folds, stratified, manifest groups kept. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/dataset.h"
#include "trainer/split.h"

static char root[256];

static void touch(const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "cannot create %s", p);
    fputs("x", f);
    fclose(f);
}

static void mk(const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    mkdir(p, 0755);
}

static void setup(void) {
    snprintf(root, sizeof root, "/tmp/bs-split-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    const char *sp[] = {"alpha", "beta", "gamma"};
    int counts[] = {12, 7, 5};
    for (int s = 0; s < 3; s++) {
        char d[64];
        snprintf(d, sizeof d, "%s", sp[s]);
        mk(d);
        for (int i = 0; i < counts[s]; i++) {
            char f[128];
            snprintf(f, sizeof f, "%s/r%02d.flac", sp[s], i);
            touch(f);
        }
    }
    touch("alpha/notes.txt");
    mk("noise");
    touch("noise/n1.wav");
    touch("noise/n2.wav");
    touch("noise/n3.wav");
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(split, .init = setup, .fini = teardown);

Test(split, folder_discovery_with_background_and_skips) {
    ts_dataset ds;
    bs_error err = {{0}};
    int rc = ts_dataset_load(&ds, root, "noise", NULL, 0, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(ds.n_labels, 3);
    cr_assert_str_eq(ds.labels[0], "alpha");
    cr_assert_str_eq(ds.labels[2], "gamma");
    cr_assert_eq(ds.n_items, 12 + 7 + 5 + 3);
    cr_assert_eq(ds.n_skipped, 1);
    cr_assert(strstr(ds.skipped[0].path, "notes.txt"));
    int bg = 0;
    for (int i = 0; i < ds.n_items; i++) {
        int sum = 0;
        for (int c = 0; c < 3; c++) sum += ds.targets[i * 3 + c];
        if (ds.items[i].background) {
            bg++;
            cr_assert_eq(sum, 0);
            cr_assert_eq(ds.items[i].primary, -1);
        } else {
            cr_assert_eq(sum, 1);
            cr_assert_eq(ds.targets[i * 3 + ds.items[i].primary], 1);
        }
    }
    cr_assert_eq(bg, 3);
    ts_dataset_free(&ds);
}

Test(split, kfold_no_group_in_two_folds_and_stratified) {
    ts_dataset ds;
    bs_error err;
    cr_assert_eq(ts_dataset_load(&ds, root, "noise", NULL, 0, &err), 0, "%s", err.msg);
    int *fold = malloc(sizeof(int) * ds.n_items);
    for (uint64_t seed = 1; seed < 6; seed++) {
        cr_assert_eq(ts_split_kfold(&ds, 5, seed, fold, &err), 0, "%s", err.msg);
        for (int i = 0; i < ds.n_items; i++) {
            cr_assert(fold[i] >= 0 && fold[i] < 5);
            for (int j = 0; j < ds.n_items; j++)
                if (strcmp(ds.items[i].group, ds.items[j].group) == 0) cr_assert_eq(fold[i], fold[j]);
        }
        /* every species with >= 5 recordings is in every fold; alpha (12) is 2 or 3 per fold */
        for (int f = 0; f < 5; f++) {
            int per[4] = {0};
            for (int i = 0; i < ds.n_items; i++)
                if (fold[i] == f) per[ds.items[i].primary < 0 ? 3 : ds.items[i].primary]++;
            cr_assert(per[0] >= 2 && per[0] <= 3, "fold %d has %d alpha", f, per[0]);
            cr_assert(per[1] >= 1 && per[1] <= 2);
            cr_assert_eq(per[2], 1);
        }
    }
    cr_assert_eq(ts_split_kfold(&ds, 1, 1, fold, &err), -1);
    cr_assert(strstr(err.msg, "at least 2"));
    cr_assert_eq(ts_split_kfold(&ds, 100, 1, fold, &err), -1);
    cr_assert(strstr(err.msg, "recordings"));
    free(fold);
    ts_dataset_free(&ds);
}

Test(split, manifest_groups_stay_together) {
    char man[512];
    snprintf(man, sizeof man, "%s/m.tsv", root);
    FILE *f = fopen(man, "w");
    fprintf(f, "path\tlabels\tgroup\n");
    /* 4 recordings of alpha, each cut in 3 files; one multi-label row; one background row */
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 3; k++) fprintf(f, "alpha/r%02d.flac\talpha\trec%d\n", r * 3 + k, r);
    fprintf(f, "beta/r00.flac\tbeta;gamma\tb0\n");
    fprintf(f, "beta/r01.flac\tbeta\tb1\n");
    fprintf(f, "beta/r02.flac\tbeta\tb2\n");
    fprintf(f, "noise/n1.wav\t\tn\n");
    fprintf(f, "missing.flac\talpha\tz\n");
    fclose(f);
    ts_dataset ds;
    bs_error err;
    cr_assert_eq(ts_dataset_load(&ds, man, NULL, NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(ds.n_labels, 3);
    cr_assert_eq(ds.n_items, 12 + 3 + 1);
    cr_assert_eq(ds.n_skipped, 1);
    cr_assert(strstr(ds.skipped[0].reason, "cannot be read"));
    int bi = 12;
    cr_assert_eq(ds.targets[bi * 3 + 1], 1);
    cr_assert_eq(ds.targets[bi * 3 + 2], 1);
    cr_assert(ds.items[15].background);
    int fold[16];
    cr_assert_eq(ts_split_kfold(&ds, 3, 7, fold, &err), 0, "%s", err.msg);
    for (int r = 0; r < 4; r++) {
        cr_assert_eq(fold[r * 3], fold[r * 3 + 1]);
        cr_assert_eq(fold[r * 3], fold[r * 3 + 2]);
    }
    int is_val[16];
    cr_assert_eq(ts_split_val_fraction(&ds, 0.25, 3, is_val, &err), 0, "%s", err.msg);
    int nval = 0;
    for (int r = 0; r < 4; r++) {
        cr_assert_eq(is_val[r * 3], is_val[r * 3 + 2]);
        nval += is_val[r * 3];
    }
    cr_assert_eq(nval, 1); /* a quarter of alpha's 4 recordings */
    cr_assert_eq(ts_split_val_fraction(&ds, 1.5, 3, is_val, &err), -1);
    ts_dataset_free(&ds);
}

Test(split, fixed_labels_skip_unknown_and_errors) {
    ts_dataset ds;
    bs_error err;
    char *fixed[] = {"gamma", "alpha"};
    cr_assert_eq(ts_dataset_load(&ds, root, "noise", fixed, 2, &err), 0, "%s", err.msg);
    cr_assert_str_eq(ds.labels[0], "gamma");
    cr_assert_eq(ds.n_items, 12 + 5 + 3);
    int found = 0;
    for (int i = 0; i < ds.n_skipped; i++) found |= strstr(ds.skipped[i].reason, "not one of the model") != NULL;
    cr_assert(found);
    ts_dataset_free(&ds);
    cr_assert_eq(ts_dataset_load(&ds, "/nonexistent/bs", NULL, NULL, 0, &err), -1);
    cr_assert(strstr(err.msg, "no such file"));
    cr_assert_eq(ts_dataset_load(&ds, root, "nothere", NULL, 0, &err), -1);
    cr_assert(strstr(err.msg, "--background nothere"));
}

/* --background takes folders recursively: each sub-folder (a species of other birds) is one
 * group, never split between folds; each entry is a source of its own (issue 16). */
Test(split, background_folder_of_folders_is_read_recursively) {
    mk("others");
    mk("others/sp1");
    mk("others/sp2");
    mk("others/sp2/deep");
    touch("others/top.wav");
    touch("others/sp1/a.flac");
    touch("others/sp1/b.flac");
    touch("others/sp2/c.flac");
    touch("others/sp2/deep/d.flac");
    touch("others/sp2/readme.txt");
    ts_dataset ds;
    bs_error err = {{0}};
    cr_assert_eq(ts_dataset_load(&ds, root, "noise,others", NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(ds.n_labels, 3, "a background folder is not a species");
    cr_assert_eq(ds.n_sources, 2);
    cr_assert_str_eq(ds.sources[0], "noise");
    cr_assert_str_eq(ds.sources[1], "others");
    int n_bg = 0, n_others = 0;
    const char *g_sp1 = NULL, *g_sp2 = NULL;
    for (int i = 0; i < ds.n_items; i++) {
        const ts_item *it = &ds.items[i];
        if (!it->background) {
            cr_assert_eq(it->source, -1);
            continue;
        }
        n_bg++;
        if (it->source != 1) continue;
        n_others++;
        if (strstr(it->path, "/sp1/")) {
            if (!g_sp1) g_sp1 = it->group;
            cr_assert_str_eq(it->group, g_sp1, "the files of one sub-folder are one group");
        } else if (strstr(it->path, "/sp2/")) {
            if (!g_sp2) g_sp2 = it->group;
            cr_assert_str_eq(it->group, g_sp2, "a sub-folder's own sub-folders join its group");
        } else {
            cr_assert_str_eq(it->group, it->path, "a file directly in the folder is its own group");
        }
    }
    cr_assert_eq(n_others, 5);
    cr_assert_eq(n_bg, 8);
    cr_assert(g_sp1 && g_sp2 && strcmp(g_sp1, g_sp2) != 0);
    int skipped_txt = 0;
    for (int k = 0; k < ds.n_skipped; k++) skipped_txt += strstr(ds.skipped[k].path, "readme.txt") != NULL;
    cr_assert_eq(skipped_txt, 1, "a non-audio file in a background sub-folder is reported as skipped");
    int *fold = malloc(sizeof(int) * ds.n_items);
    cr_assert_eq(ts_split_kfold(&ds, 3, 1, fold, &err), 0, "%s", err.msg);
    for (int i = 0; i < ds.n_items; i++)
        for (int j = 0; j < ds.n_items; j++)
            if (strcmp(ds.items[i].group, ds.items[j].group) == 0) cr_assert_eq(fold[i], fold[j]);
    free(fold);
    ts_dataset_free(&ds);
}

/* --filter-class NAME=DIR (issue 16): one more label after the species, its files labelled
 * with it only, each folder a source; a bad spec or a label of the data is refused. */
Test(split, filter_class_appends_a_label_and_its_recordings) {
    /* the voices live beside the data folder (inside it they would be a species folder) */
    char vroot[300], cmd[1400];
    snprintf(vroot, sizeof vroot, "%s.voices", root);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/anna' && touch '%s/anna/a1.wav' '%s/anna/a2.wav' '%s/b.wav'", vroot, vroot,
             vroot, vroot);
    cr_assert_eq(system(cmd), 0);
    char spec[320];
    snprintf(spec, sizeof spec, "human=%s", vroot);
    ts_dataset ds;
    bs_error err = {{0}};
    cr_assert_eq(ts_dataset_load(&ds, root, "noise", NULL, 0, &err), 0, "%s", err.msg);
    int n0 = ds.n_items, src0 = ds.n_sources;
    cr_assert_eq(ts_dataset_add_filter_class(&ds, spec, &err), 0, "%s", err.msg);
    cr_assert_eq(ds.n_labels, 4);
    cr_assert_eq(ds.n_filters, 1);
    cr_assert_str_eq(ds.labels[3], "human");
    cr_assert_eq(ds.n_items, n0 + 3);
    cr_assert_eq(ds.n_sources, src0 + 1);
    for (int i = 0; i < ds.n_items; i++) {
        int human = ds.targets[i * 4 + 3];
        cr_assert_eq(human, i >= n0, "item %d", i);
        if (i >= n0) {
            cr_assert_eq(ds.items[i].background, 0, "a filter-class file is labelled");
            cr_assert_eq(ds.items[i].source, src0);
            for (int c = 0; c < 3; c++) cr_assert_eq(ds.targets[i * 4 + c], 0);
        } else {
            /* the earlier rows keep their targets */
            int sum = 0;
            for (int c = 0; c < 3; c++) sum += ds.targets[i * 4 + c];
            cr_assert_eq(sum, ds.items[i].background ? 0 : 1);
        }
    }
    cr_assert_eq(ts_dataset_add_filter_class(&ds, "alpha=x", &err), -1);
    cr_assert(strstr(err.msg, "already a label"), "%s", err.msg);
    cr_assert_eq(ts_dataset_add_filter_class(&ds, "human", &err), -1);
    cr_assert(strstr(err.msg, "expected NAME=DIR"), "%s", err.msg);
    cr_assert_eq(ts_dataset_add_filter_class(&ds, "car=/nonexistent/bs", &err), -1);
    cr_assert(strstr(err.msg, "no such folder or file"), "%s", err.msg);
    cr_assert_eq(ds.n_labels, 4, "a refused class adds no label");
    ts_dataset_free(&ds);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", vroot);
    cr_assert_eq(system(cmd), 0);
}
