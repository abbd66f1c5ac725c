/* SPDX-License-Identifier: MIT */
/* kqeq - command-line front end of kqeq.c: classical QEq, SOAP descriptors,
 * kQEq training, prediction, evaluation and learning curves.
 * Run `kqeq help` for the list of subcommands. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "kqeq_cmds.h"

static const char usage[] =
    "usage: kqeq COMMAND [options]\n"
    "  qeq FILE.xyz [--charge Q]          classical QEq charges and dipole per frame\n"
    "  soap --rcut R --nmax N --lmax L [--sigma S] --species H,C,N,O FILE.xyz [--repeat K]\n"
    "                                     raw SOAP vectors, one line per atom\n"
    "  train ... -o MODEL                 fit a kQEq (or classical QEq) model to dipoles\n"
    "  predict -m MODEL IN.xyz -o OUT.xyz charges, dipoles, polarizabilities\n"
    "  eval -m MODEL IN.xyz --key KEY --unit U   MAE and RRMSE\n"
    "  curve ...                          learning curves of kQEq and QEq (table + SVG)\n"
    "  --version                          print the version\n"
    "Units: positions angstrom; charges e; dipole labels --unit (default au =\n"
    "e*bohr), predicted dipoles debye unless --unit; polarizabilities bohr^3.\n"
    "Each command prints its own options with --help.\n";

int main(int argc, char **argv) {
    cli_set_prog("kqeq");
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return cli_exit(argc < 2 ? 2 : 0);
    }
    if (cli_print_version("kqeq", argv[1])) return cli_exit(0);
    const char *c = argv[1];
    if (!strcmp(c, "soap")) return cli_exit(kqeq_cmd_soap(argc - 1, argv + 1));
    if (!strcmp(c, "qeq")) return cli_exit(kqeq_cmd_qeq(argc - 1, argv + 1));
    if (!strcmp(c, "train")) return cli_exit(kqeq_cmd_train(argc - 1, argv + 1));
    if (!strcmp(c, "predict")) return cli_exit(kqeq_cmd_predict(argc - 1, argv + 1));
    if (!strcmp(c, "eval")) return cli_exit(kqeq_cmd_eval(argc - 1, argv + 1));
    if (!strcmp(c, "curve")) return cli_exit(kqeq_cmd_curve(argc - 1, argv + 1));
    cli_fail("unknown command '%s' (try 'kqeq help')", c);
}
