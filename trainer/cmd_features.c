/* `birdsong features FILE -o OUT.npy`: the log-mel dB windows of one audio file, exactly as
 * the network sees them before normalization, as float32 NPY (segments, n_mels, n_frames). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "birdsong/npy.h"
#include "trainer/commands.h"

static void features_usage(FILE *f) {
    bs_feature_config d = bs_feature_config_default();
    fprintf(f,
            "usage: birdsong features FILE -o OUT.npy [options]\n"
            "\n"
            "Decodes FILE (any format libsndfile reads), resamples it to the model rate, cuts\n"
            "windows and writes their log-mel dB as float32 NPY of shape (windows, mels, frames),\n"
            "before normalization. Defaults are librosa's.\n"
            "\n"
            "  -o, --output OUT.npy       where to write (required)\n"
            "      --times OUT.txt        also write each window's start time in seconds\n"
            "      --model MODEL          take every feature setting from a model file (.bsm);\n"
            "                             the setting options below may then not be given\n"
            "      --sample-rate HZ       model rate (%d)\n"
            "      --n-fft N              FFT size (%d)\n"
            "      --hop-length N         frame hop in samples (%d)\n"
            "      --n-mels N             mel bands (%d)\n"
            "      --fmin HZ              lowest mel edge (%g)\n"
            "      --fmax HZ              highest mel edge (sample-rate / 2)\n"
            "      --segment SECONDS      window length (%g)\n"
            "      --segment-hop SECONDS  window hop (= window length)\n"
            "      --min-residual SECONDS shortest tail padded to a window (%g)\n"
            "      --pad zero|noise       padding of the tail (zero)\n"
            "      --pad-noise-std X      noise padding standard deviation (%g)\n"
            "      --pad-seed N           noise padding seed (%llu)\n"
            "      --amin X               power floor before the log (%g)\n"
            "      --top-db DB            dynamic range per window, 0 = off (%g)\n"
            "      --db-ref REF           dB reference (librosa power_to_db ref): a power (1.0), or\n"
            "                             max: each window's loudest cell is 0 dB (ref=np.max)\n"
            "  -q, --quiet                no summary on stderr\n"
            "  -h, --help                 this text\n",
            d.sample_rate, d.n_fft, d.hop_length, d.n_mels, d.fmin, d.segment_seconds,
            d.min_residual_seconds, (double)d.pad_noise_std, (unsigned long long)d.pad_seed,
            (double)d.amin, (double)d.top_db);
}

static int parse_int(const char *opt, const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "birdsong features: %s expects an integer, found '%s'\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "birdsong features: %s expects a number, found '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int write_times(const char *path, const bs_feature_set *fs) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "birdsong features: %s: cannot create: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < fs->n_segments; i++) fprintf(f, "%.6f\n", fs->start_seconds[i]);
    if (fclose(f) != 0) {
        fprintf(stderr, "birdsong features: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

enum {
    OPT_SR = 1000, OPT_NFFT, OPT_HOP, OPT_NMELS, OPT_FMIN, OPT_FMAX, OPT_SEG, OPT_SEGHOP,
    OPT_MINRES, OPT_PAD, OPT_PADSTD, OPT_PADSEED, OPT_AMIN, OPT_TOPDB, OPT_DBREF, OPT_TIMES, OPT_MODEL,
};

int cmd_features(int argc, char **argv) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},     {"times", required_argument, 0, OPT_TIMES},
        {"sample-rate", required_argument, 0, OPT_SR}, {"n-fft", required_argument, 0, OPT_NFFT},
        {"hop-length", required_argument, 0, OPT_HOP}, {"n-mels", required_argument, 0, OPT_NMELS},
        {"fmin", required_argument, 0, OPT_FMIN},   {"fmax", required_argument, 0, OPT_FMAX},
        {"segment", required_argument, 0, OPT_SEG}, {"segment-hop", required_argument, 0, OPT_SEGHOP},
        {"min-residual", required_argument, 0, OPT_MINRES}, {"pad", required_argument, 0, OPT_PAD},
        {"pad-noise-std", required_argument, 0, OPT_PADSTD},
        {"pad-seed", required_argument, 0, OPT_PADSEED}, {"amin", required_argument, 0, OPT_AMIN},
        {"top-db", required_argument, 0, OPT_TOPDB}, {"db-ref", required_argument, 0, OPT_DBREF},
        {"quiet", no_argument, 0, 'q'},
        {"model", required_argument, 0, OPT_MODEL},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    bs_feature_config cfg = bs_feature_config_default();
    const char *out_path = NULL, *times_path = NULL, *model_path = NULL, *setting = NULL;
    int quiet = 0, fmax_set = 0, seghop_set = 0;
    double d;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:qh", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'o': out_path = optarg; break;
        case OPT_TIMES: times_path = optarg; break;
        case OPT_MODEL: model_path = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': features_usage(stdout); return 0;
        case OPT_SR: bad = parse_int("--sample-rate", optarg, &cfg.sample_rate); break;
        case OPT_NFFT: bad = parse_int("--n-fft", optarg, &cfg.n_fft); break;
        case OPT_HOP: bad = parse_int("--hop-length", optarg, &cfg.hop_length); break;
        case OPT_NMELS: bad = parse_int("--n-mels", optarg, &cfg.n_mels); break;
        case OPT_FMIN: bad = parse_double("--fmin", optarg, &cfg.fmin); break;
        case OPT_FMAX: bad = parse_double("--fmax", optarg, &cfg.fmax); fmax_set = 1; break;
        case OPT_SEG: bad = parse_double("--segment", optarg, &cfg.segment_seconds); break;
        case OPT_SEGHOP:
            bad = parse_double("--segment-hop", optarg, &cfg.segment_hop_seconds);
            seghop_set = 1;
            break;
        case OPT_MINRES: bad = parse_double("--min-residual", optarg, &cfg.min_residual_seconds); break;
        case OPT_PAD:
            if (strcmp(optarg, "zero") == 0) cfg.pad_mode = BS_PAD_ZERO;
            else if (strcmp(optarg, "noise") == 0) cfg.pad_mode = BS_PAD_NOISE;
            else {
                fprintf(stderr, "birdsong features: --pad expects zero or noise, found '%s'\n", optarg);
                bad = 1;
            }
            break;
        case OPT_PADSTD: bad = parse_double("--pad-noise-std", optarg, &d); cfg.pad_noise_std = (float)d; break;
        case OPT_PADSEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "birdsong features: --pad-seed expects a non-negative integer, found '%s'\n", optarg);
                bad = 1;
            }
            cfg.pad_seed = v;
            break;
        }
        case OPT_AMIN: bad = parse_double("--amin", optarg, &d); cfg.amin = (float)d; break;
        case OPT_TOPDB: bad = parse_double("--top-db", optarg, &d); cfg.top_db = (float)d; break;
        case OPT_DBREF:
            if ((bad = bs_db_ref_parse(optarg, &cfg.db_ref) != 0))
                fprintf(stderr, "birdsong features: --db-ref expects a reference power > 0 or max, found '%s'\n", optarg);
            break;
        case ':':
            fprintf(stderr, "birdsong features: option %s needs a value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "birdsong features: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
        if (bad) return 2;
        if (c >= OPT_SR && c <= OPT_DBREF)
            for (int k = 0; opts[k].name; k++)
                if (opts[k].val == c) setting = opts[k].name;
    }
    if (model_path && setting) {
        fprintf(stderr, "birdsong features: --%s cannot be combined with --model (the model fixes every "
                        "feature setting)\n", setting);
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "birdsong features: no input FILE given (see --help)\n");
        return 2;
    }
    if (argc - optind > 1) {
        fprintf(stderr, "birdsong features: one input FILE expected, found %d\n", argc - optind);
        return 2;
    }
    if (!out_path) {
        fprintf(stderr, "birdsong features: -o OUT.npy is required\n");
        return 2;
    }
    const char *in_path = argv[optind];
    if (!fmax_set) cfg.fmax = cfg.sample_rate / 2.0;
    if (!seghop_set) cfg.segment_hop_seconds = cfg.segment_seconds;
    if (model_path) {
        bs_error merr = {{0}};
        bs_model *model = bs_model_load(model_path, &merr);
        if (!model) {
            fprintf(stderr, "birdsong features: %s\n", merr.msg);
            return 1;
        }
        cfg = *bs_model_feature_config(model);
        int audio_ok = bs_model_check_audio_input(model, &merr) == 0; /* features it cannot take */
        bs_model_free(model);
        if (!audio_ok) {
            fprintf(stderr, "birdsong features: %s: %s\n", model_path, merr.msg);
            return 1;
        }
    }
    /* (A later `--model M` takes the whole bs_feature_config from the model file here, and
     * rejects the setting flags above, so that the features match what the model was trained
     * on.) */

    bs_error err = {{0}};
    if (bs_feature_config_validate(&cfg, &err)) {
        fprintf(stderr, "birdsong features: %s\n", err.msg);
        return 2;
    }
    bs_feature_set fs;
    if (bs_features_from_file(&cfg, in_path, &fs, &err)) {
        fprintf(stderr, "birdsong features: %s\n", err.msg);
        return 1;
    }
    size_t shape[3] = {fs.n_segments, (size_t)fs.n_mels, (size_t)fs.n_frames};
    int rc = 0;
    if (bs_npy_write_f32(out_path, fs.data, shape, 3, &err)) {
        fprintf(stderr, "birdsong features: %s\n", err.msg);
        rc = 1;
    } else if (times_path && write_times(times_path, &fs)) {
        rc = 1;
    }
    if (rc == 0 && !quiet)
        fprintf(stderr,
                "birdsong features: %s: %.3f s at %d Hz -> %zu window(s) of %d mels x %d frames "
                "at %d Hz -> %s\n",
                in_path, fs.duration_seconds, fs.source_rate, fs.n_segments, fs.n_mels,
                fs.n_frames, cfg.sample_rate, out_path);
    bs_feature_set_free(&fs);
    return rc;
}
