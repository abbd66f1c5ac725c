/* eann_train.c - `eann train` and `eann eval`: placeholders until training
 * is implemented (they print a message and fail). */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "eann_cmds.h"

int eann_cmd_train(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: eann train ...\n  not yet implemented");
        return 0;
    }
    cli_fail("train: not yet implemented");
}

int eann_cmd_eval(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: eann eval ...\n  not yet implemented");
        return 0;
    }
    cli_fail("eval: not yet implemented");
}
