/* SPDX-License-Identifier: MIT */
/* kqeq_cmds.h - subcommands of the `kqeq` program (cli/kqeq.c dispatches). */
#ifndef KQEQ_CMDS_H
#define KQEQ_CMDS_H
/* Each takes the arguments after the subcommand name (argv[0] is the
 * subcommand) and returns the process exit status. */
int kqeq_cmd_soap(int argc, char **argv);     /* cli/kqeq_soap.c */
int kqeq_cmd_qeq(int argc, char **argv);      /* cli/kqeq_train.c */
int kqeq_cmd_train(int argc, char **argv);    /* cli/kqeq_train.c */
int kqeq_cmd_predict(int argc, char **argv);  /* cli/kqeq_train.c */
int kqeq_cmd_eval(int argc, char **argv);     /* cli/kqeq_train.c */
int kqeq_cmd_curve(int argc, char **argv);    /* cli/kqeq_train.c */
#endif
