/* SPDX-License-Identifier: MIT */
/* eann_cmds.h - subcommands of the `eann` program (cli/eann.c dispatches)
 * and helpers they share (defined in cli/eann.c). */
#ifndef EANN_CMDS_H
#define EANN_CMDS_H
#include "eann.h"
#include "xyz.h"

/* Each takes the arguments after the program name (argv[0] is the
 * subcommand) and returns the process exit status. */
int eann_cmd_predict(int argc, char **argv); /* cli/eann_predict.c */
int eann_cmd_check(int argc, char **argv);   /* cli/eann_predict.c */
int eann_cmd_train(int argc, char **argv);   /* cli/eann_train.c */
int eann_cmd_eval(int argc, char **argv);    /* cli/eann_train.c */

/* Read and parse a model file; cli_fail()s with "FILE:LINE: what" on error. */
eann_model *eann_cli_load_model(const char *path);
/* Species index of every atom of a frame; cli_fail()s naming the element,
 * the model file, the XYZ file and the atom's line if the model lacks it. */
void eann_cli_species(const eann_model *m, const char *model_path, const char *file,
                      const xyz_frame *fr, int *species);
/* Refuses (cli_fail, "FILE:LINE: atoms I and J ...") a frame with two atoms
 * not more than the model's min_distance (or 1e-6 A) apart: the model would
 * ignore the pair. Defined in cli/eann_predict.c. */
void eann_cli_check_distances(const eann_model *m, const char *file, const xyz_frame *fr);
/* Output key ("eann_dipole", ...) and units text of a model's kind. */
const char *eann_cli_key(const eann_model *m);
const char *eann_cli_units(const eann_model *m);
#endif
