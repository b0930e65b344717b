/* birdsong: the offline tool. One table of sub-commands; each lives in trainer/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "birdsong/nn.h"
#include "birdsong/switches.h"
#include "trainer/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"train", cmd_train, "train a model on a folder of species folders or a manifest"},
    {"eval", cmd_eval, "evaluate a model on labelled data (text, --json, --report FILE.html)"},
    {"classify", cmd_classify, "per-window species probabilities of audio files (csv or json)"},
    {"features", cmd_features, "write log-mel dB segments of an audio file as a float32 .npy"},
    {"inspect", cmd_inspect, "check a model file and print its metadata as JSON"},
    {"bench", cmd_bench, "time network inference and training against the sgemm ceiling"},
    {"import-keras", cmd_import_keras, "convert a Keras model (.h5 or .keras) into a birdsong model"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: birdsong COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'birdsong COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    bs_nn_blas_tune(argv); /* may re-exec with OPENBLAS_CORETYPE set (see nn.h) */
    bs_switches_from_env(); /* BIRDSONG_NO_AVX*, BIRDSONG_NN_WINOGRAD*: the library's options */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("birdsong %s\n", BIRDSONG_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "birdsong: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
