/* The sub-commands of `birdsong`. Each takes argc/argv starting at the command name and
 * returns the process exit code: 0 success, 1 failure on input, 2 usage error. */
#ifndef BIRDSONG_TRAINER_COMMANDS_H
#define BIRDSONG_TRAINER_COMMANDS_H

#include "birdsong/version.h"

int cmd_features(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_import_keras(int argc, char **argv);

#endif
