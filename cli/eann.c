/* SPDX-License-Identifier: MIT */
/* eann - command-line front end of eann.c: predictions of the EANN dipole,
 * transition-dipole and polarizability models, symmetry checks, training
 * and evaluation. Run `eann help` for the list of subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "eann_cmds.h"

static const char usage[] =
    "usage: eann COMMAND [options]\n"
    "  predict -m MODEL IN.xyz -o OUT.xyz [--repeat K]\n"
    "                          per-frame eann_dipole / eann_tdm / eann_polarizability\n"
    "  check -m MODEL IN.xyz [--trials N] [--seed S]\n"
    "                          largest rotation / translation / permutation violation\n"
    "  train --train T.xyz --target dipole|tdm|polarizability --key KEY -o MODEL\n"
    "                          fit a model to labelled frames (exact gradients, Adam/L-BFGS)\n"
    "  eval -m MODEL IN.xyz --key KEY [--svg parity.svg]\n"
    "                          per-component RMSE, correlation, parity plot\n"
    "  --version               print the version\n"
    "Units: positions angstrom; outputs and labels atomic units (e*bohr,\n"
    "bohr^3) unless --unit. Models are EANN_TEXT_V1 files (FORMAT.md).\n"
    "Each command prints its own options with --help.\n";

eann_model *eann_cli_load_model(const char *path) {
    char err[1024];
    size_t len;
    char *text = cli_read_file(path, &len, err, sizeof err);
    if (!text) cli_fail("%s", err);
    eann_model *m = NULL;
    eann_parse_error pe;
    int rc = eann_model_parse(text, len, &m, &pe);
    free(text);
    if (rc) {
        if (pe.line > 0) cli_fail("%s:%d: %s", path, pe.line, pe.msg);
        cli_fail("%s: %s", path, pe.msg[0] ? pe.msg : eann_strerror(rc));
    }
    return m;
}

void eann_cli_species(const eann_model *m, const char *model_path, const char *file,
                      const xyz_frame *fr, int *species) {
    for (int i = 0; i < fr->natoms; i++) {
        const char *sym = xyz_z_to_symbol(fr->z[i]);
        int s = eann_species_index(m, sym ? sym : "");
        if (s < 0) {
            char list[EANN_MAX_SPECIES * 4 + 1] = "";
            for (int q = 0; q < m->spec.nspecies; q++) {
                if (q) strcat(list, " ");
                strcat(list, m->spec.species[q]);
            }
            cli_fail("%s:%d: element %s (atom %d of the frame) is not in model %s (species %s)",
                     file, fr->line + 2 + i, sym ? sym : "?", i + 1, model_path, list);
        }
        species[i] = s;
    }
}

const char *eann_cli_key(const eann_model *m) {
    switch (m->spec.kind) {
    case EANN_DIPOLE: return "eann_dipole";
    case EANN_TDM: return "eann_tdm";
    default: return "eann_polarizability";
    }
}

const char *eann_cli_units(const eann_model *m) {
    /* The published NMA models map angstrom coordinates to atomic units. */
    switch (m->spec.kind) {
    case EANN_DIPOLE: return "dipole:e*bohr";
    case EANN_TDM: return "tdm:e*bohr";
    default: return "polarizability:e^2*bohr^2/hartree";
    }
}

int main(int argc, char **argv) {
    cli_set_prog("eann");
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return cli_exit(argc < 2 ? 2 : 0);
    }
    if (cli_print_version("eann", argv[1])) return cli_exit(0);
    const char *c = argv[1];
    if (!strcmp(c, "predict")) return cli_exit(eann_cmd_predict(argc - 1, argv + 1));
    if (!strcmp(c, "check")) return cli_exit(eann_cmd_check(argc - 1, argv + 1));
    if (!strcmp(c, "train")) return cli_exit(eann_cmd_train(argc - 1, argv + 1));
    if (!strcmp(c, "eval")) return cli_exit(eann_cmd_eval(argc - 1, argv + 1));
    cli_fail("unknown command '%s' (try 'eann help')", c);
}
