/* SPDX-License-Identifier: MIT */
/* eann_train.c - `eann train` (fit an EANN dipole / transition-dipole /
 * polarizability model to labelled extended-XYZ frames) and `eann eval`
 * (per-component RMSE, correlation and an SVG parity plot of a model on
 * labelled frames). The numerics are in eann.c (section TRAINING). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <signal.h>

#include "common.h"
#include "eann_cmds.h"
#include "eann_train.h"

static const char train_usage[] =
    "usage: eann train --train T.xyz [--valid V.xyz] --target dipole|tdm|polarizability\n"
    "                  --key KEY -o MODEL [options]\n"
    "  Fits an EANN model (EANN chapter; FORMAT.md) to the per-frame label KEY\n"
    "  (3 numbers for dipole/tdm, 9 row-major for polarizability). Positions in\n"
    "  angstrom; labels converted to atomic units by --unit; the model maps angstrom\n"
    "  to atomic units like the published ones. Loss: per-component mean squared\n"
    "  error (tdm: phase-free, min over the label's sign per frame).\n"
    "  --unit U          label unit: au (default), debye, eA (dipole/tdm), A3 (polarizability)\n"
    "  --train, --valid  may be repeated (the frames of all files are used)\n"
    "  --valid V.xyz     validation frames (default: a seeded --valid-fraction of T)\n"
    "  --valid-fraction F  (default 0.1)\n"
    "  --species O,H,C,N element order of the model (default: order of appearance)\n"
    "  --nwave K         radial functions (default 8)\n"
    "  --nipsin P        angular groups L = 0..P-1 (default 3)\n"
    "  --cutoff R        cutoff radius, angstrom, 0.5..100 (default 6)\n"
    "  --hidden 64,64    hidden widths (default 64,64)\n"
    "  --epochs N        maximum epochs (default 100; L-BFGS: iterations)\n"
    "  --batch B         Adam mini-batch (default 32)\n"
    "  --lr X            Adam initial learning rate (default 1e-3)\n"
    "  --patience N      epochs without validation improvement before lr *= --decay\n"
    "                    (default 20); training stops when lr < --min-lr (1e-5)\n"
    "  --decay F         (default 0.5)    --min-lr X  (default 1e-5)\n"
    "  --optimizer adam|lbfgs  (default adam; lbfgs = full batch, stops after\n"
    "                    --patience iterations without improvement)\n"
    "  --charge-weight W dipole: weight of (sum q - Q)^2 (EANN chapter Eq. 6), Q from\n"
    "                    the frame key 'charge' if present, else 0 (default W = 0);\n"
    "                    Q must be an integer (|Q| <= 1000 e) unless --fractional-charge\n"
    "  --max-frames N    use only the first N frames of T (benchmarks)\n"
    "  --seed N          initialisation, split and shuffling (default 1)\n"
    "  --max-time S      stop after the epoch that passes S seconds of wall time\n"
    "                    (keeps the best model so far; the result then depends on\n"
    "                    the machine's speed, otherwise runs are bitwise reproducible)\n"
    "  --train-radial    also train the radial centres rs and exponents inta\n"
    "  --checkpoint FILE write the complete training state to FILE (atomically) every\n"
    "                    --checkpoint-every N epochs (default 1) and when stopped\n"
    "  --resume FILE     continue from a checkpoint; with the same data and options the\n"
    "                    result is bit for bit that of an uninterrupted run (--epochs may\n"
    "                    be raised to train longer)\n"
    "  --init MODEL      start from MODEL's parameters instead of random ones (fine-tuning,\n"
    "                    e.g. a PM7 model on a few DFT frames): its species, radial\n"
    "                    functions, cutoff, angular groups and layer widths are used, so\n"
    "                    --species, --nwave, --nipsin, --cutoff and --hidden are refused;\n"
    "                    its kind must be --target's; the normalisation is recomputed on\n"
    "                    the new training frames (the same function: only the split\n"
    "                    between the first layer and the statistics changes)\n"
    "  SIGINT/SIGTERM    stop after the current epoch: the checkpoint (if any) and the\n"
    "                    best model so far are written, exit status 130/143\n"
    "  Divergence (a non-finite RMSE, or a training RMSE 100x its start) stops the\n"
    "  run: exit 1 and no model, unless an earlier epoch improved on the start (then\n"
    "  that best model is written and its epoch named on stderr).\n"
    "  --quiet           no progress lines\n"
    "  -o MODEL          output model (EANN_TEXT_V1, replaced atomically; never an input)\n"
    "  Progress (stderr): epoch, RMSE per component (a.u.) on training (running)\n"
    "  and validation frames, learning rate, elapsed time, time left (upper bound).\n"
    "  Trained: network weights and orbital coefficients `params`; the radial\n"
    "  centres rs and exponents inta start on a grid (rs_k = k rc/K,\n"
    "  inta = K^2/(2 rc^2)), or at the --init model's values, and stay fixed\n"
    "  unless --train-radial.\n"
    "  Descriptor normalisation (per species mean/std of the training atoms) is\n"
    "  folded into the first layer: the model is a plain EANN_TEXT_V1 file; the\n"
    "  statistics are recorded in its header comments.\n";

static const char eval_usage[] =
    "usage: eann eval -m MODEL IN.xyz --key KEY [--unit U] [--svg parity.svg]\n"
    "  Prints the RMSE (a.u.) of each output component, the overall RMSE and MAE,\n"
    "  and the correlation coefficient of predictions and labels (all components\n"
    "  pooled). For a transition-dipole model each frame's prediction takes the\n"
    "  sign that fits its label best (the phase is arbitrary).\n"
    "  --unit U      label unit: au (default), debye, eA, A3\n"
    "  --svg FILE    parity plot (label vs prediction), written atomically\n"
    "  Positions in angstrom. A non-finite prediction is refused (FILE:LINE).\n";

/* Conversion factor from a label unit to atomic units. */
static double unit_factor(const char *u, int kind) {
    int pol = kind == EANN_POLARIZABILITY;
    if (!strcmp(u, "au")) return 1.0;
    if (!pol && !strcmp(u, "debye")) return 1.0 / 2.541746473; /* e bohr = 2.541746473 D */
    if (!pol && !strcmp(u, "eA")) return 1.0 / 0.529177210903; /* bohr = 0.529177210903 A */
    if (pol && !strcmp(u, "A3")) return 1.0 / 0.1481847114;    /* a.u. = 0.1481847114 A^3 */
    cli_fail("--unit '%s' is not valid for %s labels (use au%s)", u, eann_kind_name(kind),
             pol ? " or A3" : ", debye or eA");
}

/* Standard atomic masses (amu) for the centre of mass (FORMAT.md 4.1). */
static double element_mass(int z) {
    static const double mass[37] = {0,      1.008,  4.0026, 6.94,   9.0122, 10.81,  12.011, 14.007,
                                    15.999, 18.998, 20.180, 22.990, 24.305, 26.982, 28.085, 30.974,
                                    32.06,  35.45,  39.95,  39.098, 40.078, 44.956, 47.867, 50.942,
                                    51.996, 54.938, 55.845, 58.933, 58.693, 63.546, 65.38,  69.723,
                                    72.630, 74.922, 78.971, 79.904, 83.798};
    return z >= 1 && z <= 36 ? mass[z] : 0;
}

/* Frames of one or more files with labels converted to eann_samples
 * (species mapped to m). */
#define MAX_FILES 16
typedef struct {
    int nfiles;
    const char *file[MAX_FILES];
    xyz_file xf[MAX_FILES];
    int *species; /* concatenated */
    eann_sample *s;
    int n;
} labelled;

/* How attach_labels reads the frames' total charge: -1 not at all (it only
 * enters the charge penalty), 0 integers, 1 fractional allowed
 * (cli_frame_charge). Set by eann_cmd_train. */
static int charge_rule = -1;

static void load_labelled(const char *path, labelled *L) {
    if (L->nfiles == MAX_FILES) cli_fail("%s: more than %d files of one kind", path, MAX_FILES);
    xyz_file *xf = &L->xf[L->nfiles];
    cli_read_xyz(path, xf);
    if (xf->nframes == 0) cli_fail("%s: no frames", path);
    L->file[L->nfiles++] = path;
}

static void attach_labels(labelled *L, const eann_model *m, const char *model_name, const char *key,
                          double factor, int max_frames) {
    char err[1024];
    int n = 0;
    size_t tot = 0;
    for (int q = 0; q < L->nfiles; q++)
        for (int f = 0; f < L->xf[q].nframes && (max_frames <= 0 || n < max_frames); f++, n++)
            tot += (size_t)L->xf[q].frames[f].natoms;
    L->species = calloc(tot ? tot : 1, sizeof(int));
    L->s = calloc(n > 0 ? (size_t)n : 1, sizeof(eann_sample));
    if (!L->species || !L->s) cli_fail("out of memory");
    int nc = eann_kind_outputs(m->spec.kind);
    size_t off = 0;
    int k = 0;
    for (int q = 0; q < L->nfiles; q++)
        for (int f = 0; f < L->xf[q].nframes && k < n; f++, k++) {
            const xyz_frame *fr = &L->xf[q].frames[f];
            const char *file = L->file[q];
            if (fr->natoms < 1) cli_fail("%s:%d: frame has no atoms", file, fr->line);
            eann_cli_species(m, model_name, file, fr, L->species + off);
            eann_cli_check_distances(m, file, fr);
            eann_sample *s = &L->s[k];
            s->natoms = fr->natoms;
            s->species = L->species + off;
            s->pos = fr->pos;
            if (xyz_get_info_real(fr, file, key, nc, s->ref, err, sizeof err)) cli_fail("%s", err);
            for (int c = 0; c < nc; c++)
                s->ref[c] *= factor;
            if (charge_rule >= 0) s->charge = cli_frame_charge(fr, file, charge_rule);
            off += (size_t)fr->natoms;
        }
    L->n = n;
}

static void free_labelled(labelled *L) {
    free(L->species);
    free(L->s);
    for (int q = 0; q < L->nfiles; q++)
        xyz_free(&L->xf[q]);
}

static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct {
    double t0;
    int quiet;
    int last_epoch;
    double max_time; /* stop after this many seconds (0: no limit) */
} progress_ctx;

static int progress(void *ctx, const eann_progress *p) {
    progress_ctx *c = ctx;
    c->last_epoch = p->epoch;
    double el = cli_now() - c->t0, left = el / p->epoch * (p->epochs - p->epoch);
    int stop = c->max_time > 0 && el >= c->max_time;
    if (c->max_time > 0 && left > c->max_time - el) left = stop ? 0 : c->max_time - el;
    if (c->quiet) return stop;
    char vb[32] = "-";
    if (p->valid_rmse >= 0) snprintf(vb, sizeof vb, "%.5g", p->valid_rmse);
    fprintf(
        stderr,
        "eann train: epoch %d/%d  RMSE train %.5g  valid %s%s  lr %.3g  %.1f s  left <= %.0f s\n",
        p->epoch, p->epochs, p->train_rmse, vb, p->improved ? " *" : "", p->lr, el, left);
    if (stop) fprintf(stderr, "eann train: --max-time %g s reached, stopping\n", c->max_time);
    return stop;
}

/* ---------------------------------------------------------------------- */
/* the training loop: checkpoints, resume, signals, divergence             */
/* ---------------------------------------------------------------------- */

/* SIGINT/SIGTERM set this; the loop stops after the current epoch. A second
 * signal gets the default action (the handler resets it). */
static volatile sig_atomic_t g_stop_signal;
static void on_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL);
}

static void write_checkpoint(const eann_trainer *tr, const char *path) {
    char *text, err[1024];
    size_t len;
    if (eann_trainer_save(tr, &text, &len)) cli_fail("out of memory");
    if (cli_write_atomic(path, text, len, err, sizeof err)) cli_fail("%s", err);
    free(text);
}

/* eann_train_run with the program's extras: resume from a checkpoint, write
 * one every ckpt_every epochs, stop on SIGINT/SIGTERM or --max-time, and
 * judge divergence. On return m->theta and phi hold the best parameters,
 * the model to write; exits with a message (writing nothing) when the run
 * diverged before any epoch improved on the start. A signal is reported by
 * the caller after writing the model (g_stop_signal). */
static void run_training(eann_model *m, eann_norm *nm, double *phi, const eann_sample *tr_s, int ntr,
                         const eann_sample *va, int nva, const eann_train_opts *o,
                         progress_ctx *pc, const char *ckpt, int ckpt_every, const char *resume,
                         int *epochs_run, long *ngrad) {
    eann_trainer *tr;
    int rc = eann_trainer_new(m, nm, phi, tr_s, ntr, va, nva, o, &tr);
    if (rc) cli_fail("train: %s", eann_strerror(rc));
    if (resume) {
        char err[1024], msg[1024];
        size_t len;
        char *text = cli_read_file(resume, &len, err, sizeof err);
        if (!text) cli_fail("%s", err);
        rc = eann_trainer_load(tr, nm, text, len, msg, sizeof msg);
        free(text);
        if (rc) cli_fail("%s: %s", resume, msg[0] ? msg : eann_strerror(rc));
        if (!pc->quiet) fprintf(stderr, "eann train: resuming from %s\n", resume);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int diverged = 0, last = 0;
    double div_rmse = 0, start = 0;
    while (!eann_trainer_done(tr) && !g_stop_signal) {
        eann_progress p;
        rc = eann_trainer_epoch(tr, &p);
        if (rc) cli_fail("train: %s", eann_strerror(rc));
        if (p.epoch == 0) break;
        last = p.epoch;
        if (p.diverged) {
            diverged = p.diverged;
            div_rmse = p.train_rmse;
            start = p.start_rmse;
            break;
        }
        int stop = progress(pc, &p);
        if (ckpt && (p.epoch % ckpt_every == 0 || stop || g_stop_signal || eann_trainer_done(tr)))
            write_checkpoint(tr, ckpt);
        if (stop) break;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (g_stop_signal && ckpt && last == 0) write_checkpoint(tr, ckpt);
    int best_epoch;
    double best_rmse;
    int keep = eann_trainer_best(tr, &best_epoch, &best_rmse, NULL);
    eann_trainer_finish(tr, epochs_run, ngrad);
    eann_trainer_free(tr);
    if (diverged) {
        char rb[32];
        if (isfinite(div_rmse)) snprintf(rb, sizeof rb, "%.3g a.u.", div_rmse);
        else snprintf(rb, sizeof rb, "not finite");
        if (!keep) {
            cli_fail("train: the training diverged at epoch %d (training RMSE %s, %.3g at the "
                     "start); no model written; try a smaller --lr",
                     diverged, rb, start);
        }
        fprintf(stderr,
                "eann train: the training diverged at epoch %d (training RMSE %s, %.3g at the "
                "start); writing the best model, from epoch %d (training RMSE %.3g)\n",
                diverged, rb, start, best_epoch, best_rmse);
    }
}

static int parse_hidden(const char *s, int *sizes) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536 || n >= EANN_MAX_HIDDEN)
            cli_fail("--hidden: '%s' is not a list of widths like 64,64", s);
        sizes[n++] = (int)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            cli_fail("--hidden: '%s' is not a list of widths like 64,64", s);
    }
    return n;
}

/* A new model of kind `kind` from the architecture options (--species, or
 * the elements of the training frames in order of appearance; --cutoff,
 * --nipsin, --nwave, --hidden): eann_model_new's return code and message. */
static int new_model(int kind, const char *species, double cutoff, int nipsin, int nwave,
                     const char *hidden, const labelled *T, const char *train, eann_model **m,
                     char *msg, size_t msglen) {
    eann_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = kind;
    if (species) {
        const char *p = species;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n < 1 || n > 2 || sp.nspecies >= EANN_MAX_SPECIES)
                cli_fail("--species: '%s' is not a list of element symbols like O,H,C,N", species);
            memcpy(sp.species[sp.nspecies], p, n);
            sp.species[sp.nspecies][n] = '\0';
            if (!xyz_symbol_to_z(sp.species[sp.nspecies]))
                cli_fail("--species: '%s' is not an element symbol", sp.species[sp.nspecies]);
            sp.nspecies++;
            p += n;
            if (*p == ',') p++;
        }
    } else {
        for (int q = 0; q < T->nfiles; q++)
            for (int f = 0; f < T->xf[q].nframes; f++)
                for (int i = 0; i < T->xf[q].frames[f].natoms; i++) {
                    const char *sym = xyz_z_to_symbol(T->xf[q].frames[f].z[i]);
                    int k = 0; /* sym's index in the list so far */
                    while (k < sp.nspecies && strcmp(sp.species[k], sym))
                        k++;
                    if (k == sp.nspecies) {
                        if (k >= EANN_MAX_SPECIES)
                            cli_fail("%s: more than %d elements", train, EANN_MAX_SPECIES);
                        strcpy(sp.species[sp.nspecies++], sym);
                    }
                }
    }
    for (int s = 0; s < sp.nspecies; s++) {
        sp.mass[s] = element_mass(xyz_symbol_to_z(sp.species[s]));
        if (!(sp.mass[s] > 0)) cli_fail("--species: no mass known for element %s", sp.species[s]);
    }
    sp.cutoff = cutoff;
    sp.min_distance = 0.001;
    sp.nipsin = nipsin;
    sp.nwave = nwave;
    sp.nnets = kind == EANN_POLARIZABILITY ? 3 : 1;
    int hs[EANN_MAX_HIDDEN];
    int nh = parse_hidden(hidden, hs);
    static const char *pol_roles[3] = {"grad_sym", "grad_outer", "trace"};
    for (int t = 0; t < sp.nnets; t++) {
        eann_net_spec *ns = &sp.net[t];
        strcpy(ns->role, kind == EANN_DIPOLE ? "charge" : kind == EANN_TDM ? "tdm3" : pol_roles[t]);
        ns->nhidden = nh;
        ns->sizes[0] = sp.nipsin * sp.nwave;
        for (int h = 0; h < nh; h++)
            ns->sizes[h + 1] = hs[h];
        ns->sizes[nh + 1] = kind == EANN_TDM ? 3 : 1;
        ns->ln_eps = 1e-5;
    }
    return eann_model_new(&sp, m, msg, msglen);
}

int eann_cmd_train(int argc, char **argv) {
    const char *train = NULL, *target = NULL, *key = NULL, *unit = "au";
    const char *species = NULL, *out = NULL, *hidden = "64,64", *opt = "adam";
    double vfrac = 0.1, cutoff = 6.0, max_time = 0;
    const char *ckpt = NULL, *resume = NULL, *init = NULL;
    const char *arch_opt = NULL; /* an architecture option given (refused with --init) */
    int ckpt_every = 1;
    long nwave = 8, nipsin = 3, max_frames = 0;
    int quiet = 0, fractional = 0;
    eann_train_opts o;
    eann_train_opts_default(&o);
    static labelled T, V;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(train_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "--train-radial")) {
            o.train_radial = 1;
            continue;
        }
        if (!strcmp(a, "--fractional-charge")) {
            fractional = 1;
            continue;
        }
        if (i + 1 >= argc) cli_fail("train: %s needs a value (see eann train --help)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--train"))
            load_labelled(train = v, &T);
        else if (!strcmp(a, "--valid"))
            load_labelled(v, &V);
        else if (!strcmp(a, "--valid-fraction")) {
            vfrac = cli_parse_double(a, v);
            if (!(vfrac > 0 && vfrac < 1)) cli_fail("--valid-fraction must be in (0, 1)");
        } else if (!strcmp(a, "--target"))
            target = v;
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--unit"))
            unit = v;
        else if (!strcmp(a, "--species"))
            species = v, arch_opt = a;
        else if (!strcmp(a, "--nwave"))
            nwave = cli_parse_long(a, v, 1, 4096), arch_opt = a;
        else if (!strcmp(a, "--nipsin"))
            nipsin = cli_parse_long(a, v, 1, EANN_MAX_NIPSIN), arch_opt = a;
        else if (!strcmp(a, "--cutoff")) {
            cutoff = cli_parse_double(a, v);
            arch_opt = a;
            if (!(cutoff >= 0.5 && cutoff <= 100))
                cli_fail("--cutoff must be in [0.5, 100] angstrom");
        } else if (!strcmp(a, "--hidden"))
            hidden = v, arch_opt = a;
        else if (!strcmp(a, "--init"))
            init = v;
        else if (!strcmp(a, "--epochs"))
            o.epochs = (int)cli_parse_long(a, v, 1, 100000000);
        else if (!strcmp(a, "--batch"))
            o.batch = (int)cli_parse_long(a, v, 1, 100000000);
        else if (!strcmp(a, "--lr")) {
            o.lr = cli_parse_double(a, v);
            if (!(o.lr > 0)) cli_fail("--lr must be positive");
        } else if (!strcmp(a, "--patience"))
            o.patience = (int)cli_parse_long(a, v, 0, 100000000);
        else if (!strcmp(a, "--decay")) {
            o.lr_decay = cli_parse_double(a, v);
            if (!(o.lr_decay > 0 && o.lr_decay < 1)) cli_fail("--decay must be in (0, 1)");
        } else if (!strcmp(a, "--min-lr"))
            o.lr_min = cli_parse_double(a, v);
        else if (!strcmp(a, "--optimizer"))
            opt = v;
        else if (!strcmp(a, "--charge-weight")) {
            o.charge_weight = cli_parse_double(a, v);
            if (o.charge_weight < 0) cli_fail("--charge-weight must be >= 0");
        } else if (!strcmp(a, "--max-frames"))
            max_frames = cli_parse_long(a, v, 1, 2000000000);
        else if (!strcmp(a, "--max-time")) {
            max_time = cli_parse_double(a, v);
            if (!(max_time > 0)) cli_fail("--max-time must be positive (seconds)");
        } else if (!strcmp(a, "--seed"))
            o.seed = (uint64_t)cli_parse_long(a, v, 0, 0x7fffffffL);
        else if (!strcmp(a, "-o"))
            out = v;
        else if (!strcmp(a, "--checkpoint"))
            ckpt = v;
        else if (!strcmp(a, "--checkpoint-every"))
            ckpt_every = (int)cli_parse_long(a, v, 1, 100000000);
        else if (!strcmp(a, "--resume"))
            resume = v;
        else
            cli_fail("train: unknown option '%s' (see eann train --help)", a);
    }
    if (!train || !target || !key || !out)
        cli_fail("train: --train, --target, --key and -o are required (see eann train --help)");
    if (ckpt && !strcmp(ckpt, out)) cli_fail("train: --checkpoint and -o must be different files");
    int kind = !strcmp(target, "dipole")           ? EANN_DIPOLE
               : !strcmp(target, "tdm")            ? EANN_TDM
               : !strcmp(target, "polarizability") ? EANN_POLARIZABILITY
                                                   : 0;
    if (!kind) cli_fail("--target '%s': use dipole, tdm or polarizability", target);
    if (init && arch_opt)
        cli_fail("train: %s cannot be combined with --init: the architecture is that of %s", arch_opt,
                 init);
    if (!strcmp(opt, "adam"))
        o.optimizer = EANN_OPT_ADAM;
    else if (!strcmp(opt, "lbfgs"))
        o.optimizer = EANN_OPT_LBFGS;
    else
        cli_fail("--optimizer '%s': use adam or lbfgs", opt);
    double factor = unit_factor(unit, kind);
    {
        /* never overwrite an input; fail now (not after the training) if -o
         * cannot be written */
        const char *ins[2 * MAX_FILES + 3];
        int nin = 0;
        for (int q = 0; q < T.nfiles; q++) ins[nin++] = T.file[q];
        for (int q = 0; q < V.nfiles; q++) ins[nin++] = V.file[q];
        if (init) ins[nin++] = init;
        /* the checkpoint may be the file we resume from (that is how a run is
         * continued), but never a data file or the model */
        if (ckpt) cli_check_output("--checkpoint", ckpt, ins, nin);
        if (resume) ins[nin++] = resume;
        if (ckpt) ins[nin++] = ckpt;
        cli_check_output("-o", out, ins, nin);
        cli_check_writable("-o", out);
    }
    charge_rule = o.charge_weight > 0 ? fractional : -1;

    const int valid = V.nfiles > 0;
    /* the model: read (--init), or its header built from the options */
    eann_model *m = NULL;
    char msg[256];
    int rc = 0;
    if (init) {
        m = eann_cli_load_model(init);
        if (m->spec.kind != kind)
            cli_fail("--init %s: a %s model cannot be trained as --target %s", init,
                     eann_kind_name(m->spec.kind), target);
    } else {
        rc = new_model(kind, species, cutoff, (int)nipsin, (int)nwave, hidden, &T, train, &m, msg,
                       sizeof msg);
    }
    if (rc) cli_fail("train: %s", msg[0] ? msg : eann_strerror(rc));
    attach_labels(&T, m, "being trained", key, factor, (int)max_frames);

    /* validation data: a file, or a seeded fraction of the training frames */
    eann_sample *tr = T.s, *va = NULL;
    int ntr = T.n, nva = 0;
    eann_sample *split = NULL;
    if (valid) {
        attach_labels(&V, m, "being trained", key, factor, 0);
        va = V.s;
        nva = V.n;
    } else {
        nva = (int)ceil(vfrac * T.n);
        if (T.n < 2) cli_fail("%s: need at least 2 frames to split off validation data", train);
        if (nva >= T.n) nva = T.n - 1;
        int *perm = malloc(sizeof(int) * (size_t)T.n);
        char *isv = calloc((size_t)T.n, 1);
        split = malloc(sizeof(eann_sample) * (size_t)T.n);
        if (!perm || !isv || !split) cli_fail("out of memory");
        for (int i = 0; i < T.n; i++)
            perm[i] = i;
        uint64_t st = o.seed ^ 0xA5A5A5A5ULL;
        for (int i = T.n - 1; i > 0; i--) {
            int j = (int)(sm64(&st) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int i = 0; i < nva; i++)
            isv[perm[i]] = 1;
        int a = 0, b = T.n - nva;
        for (int i = 0; i < T.n; i++)
            split[isv[i] ? b++ : a++] = T.s[i];
        tr = split;
        ntr = T.n - nva;
        va = split + ntr;
        free(perm);
        free(isv);
    }

    double t0 = cli_now();
    eann_norm nm;
    double *phi = malloc(sizeof(double) * m->ntheta);
    if (!phi) cli_fail("out of memory");
    if (init) {
        /* --init: the model's parameters as they are; the normalisation of
         * the new training frames, and phi = unfold(theta) with it, so that
         * fold(phi) gives back theta (the same model) */
        rc = eann_norm_compute(m, tr, ntr, &nm);
        if (!rc) eann_norm_unfold(m, &nm, m->theta, phi);
    } else {
        rc = eann_train_init(m, tr, ntr, &o, &nm, phi);
    }
    if (rc) cli_fail("train: initialisation failed: %s", eann_strerror(rc));
    progress_ctx pc = {t0, quiet, 0, max_time};
    if (!quiet)
        fprintf(stderr,
                "eann train: %d training, %d validation frames; %s, key %s, %zu parameters\n", ntr,
                nva, eann_kind_name(kind), key, m->ntheta);
    double t1 = cli_now();
    clock_t c1 = clock();
    int epochs_run = 0;
    long ngrad = 0;
    run_training(m, &nm, phi, tr, ntr, va, nva, &o, &pc, ckpt, ckpt_every, resume, &epochs_run,
                 &ngrad);
    double t2 = cli_now(), cpu = (double)(clock() - c1) / CLOCKS_PER_SEC;

    /* final errors (best parameters) */
    eann_trainws *tw;
    int mx = 1;
    for (int f = 0; f < ntr; f++)
        mx = tr[f].natoms > mx ? tr[f].natoms : mx;
    for (int f = 0; f < nva; f++)
        mx = va[f].natoms > mx ? va[f].natoms : mx;
    if (eann_trainws_new(m, mx, &tw)) cli_fail("out of memory");
    double rt, rv = -1;
    eann_evaluate(m, tw, tr, ntr, o.charge_weight, NULL, &rt);
    if (nva) eann_evaluate(m, tw, va, nva, o.charge_weight, NULL, &rv);
    eann_trainws_free(tw);

    int finite = isfinite(rt) && (nva == 0 || isfinite(rv));
    for (size_t q = 0; q < m->ntheta && finite; q++)
        if (!isfinite(m->theta[q])) finite = 0;
    if (!finite)
        cli_fail("train: the training diverged (the loss or a parameter is not finite; try a "
                 "smaller --lr); no model written");

    /* provenance comments, then the normalisation statistics */
    cli_buf pre = {0};
    cli_buf_printf(
        &pre, "# trained by `eann train` (tensorial): target %s, label key %s (unit %s -> a.u.)\n",
        eann_kind_name(kind), key, unit);
    cli_buf_printf(
        &pre, "# training file%s %s%s: %d training + %d validation frames%s; seed %llu\n",
        T.nfiles > 1 ? "s" : "", T.file[0], T.nfiles > 1 ? " ..." : "", ntr, nva,
        valid ? " (validation from --valid)" : " (seeded split)", (unsigned long long)o.seed);
    cli_buf_printf(
        &pre, "# optimizer %s, %d epochs run, lr %g, batch %d; RMSE (a.u.) train %.6g valid %.6g\n",
        opt, epochs_run, o.lr, o.batch, rt, rv);
    if (init)
        cli_buf_printf(&pre, "# started from the parameters of %s (--init); trained: network "
                             "weights and params%s\n",
                       init, o.train_radial ? ", rs and inta" : "; rs and inta as there");
    else if (o.train_radial)
        cli_buf_printf(&pre, "# trained: network weights, params, rs and inta (start: rs_k = k "
                             "rc/K, inta = K^2/(2 rc^2))\n");
    else
        cli_buf_printf(&pre, "# trained: network weights and params; rs and inta fixed (rs_k = k "
                             "rc/K, inta = K^2/(2 rc^2))\n");
    if (eann_norm_to_comments(m, &nm, pre.s)) cli_fail("out of memory");
    cli_buf_free(&pre);
    char *text;
    size_t len;
    if (eann_model_write(m, &text, &len)) cli_fail("out of memory");
    char err[1024];
    if (cli_write_atomic(out, text, len, err, sizeof err)) cli_fail("%s", err);
    free(text);
    double tt = t2 - t1;
    fprintf(stderr,
            "eann train: %d epochs in %.1f s (initialisation %.1f s); RMSE (a.u.) train %.6g valid "
            "%.6g\n",
            epochs_run, tt, t1 - t0, rt, rv);
    fprintf(stderr,
            "eann train: throughput %.1f molecule-gradients/s wall, %.1f per CPU second "
            "(%ld gradients, one thread; includes the validation passes)\n",
            tt > 0 ? ngrad / tt : 0.0, cpu > 0 ? ngrad / cpu : 0.0, ngrad);
    eann_norm_free(&nm);
    free(phi);
    free(split);
    if (valid) free_labelled(&V);
    free_labelled(&T);
    eann_model_free(m);
    if (g_stop_signal) {
        fprintf(stderr, "eann train: stopped by %s after epoch %d; wrote the best model so far to %s%s%s\n",
                g_stop_signal == SIGINT ? "SIGINT" : "SIGTERM", epochs_run, out,
                ckpt ? "; continue with --resume " : "", ckpt ? ckpt : "");
        return 128 + g_stop_signal;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* eval and the parity plot                                                */
/* ---------------------------------------------------------------------- */

/* A "nice" tick step for a range. */
static double nice_step(double range) {
    double e = pow(10, floor(log10(range / 5))), r = range / 5 / e;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : 5) * e;
}

static void svg_parity(cli_buf *b, const char *title, const char *label, const double *x,
                       const double *y, size_t n) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, fmin(x[i], y[i]));
        hi = fmax(hi, fmax(x[i], y[i]));
    }
    if (!(hi > lo)) {
        lo -= 1;
        hi += 1;
    }
    double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
    const double W = 480, X0 = 70, Y0 = 40, P = 380; /* plot square [X0, X0+P] x [Y0, Y0+P] */
#define SX(v) (X0 + ((v)-lo) / (hi - lo) * P)
#define SY(v) (Y0 + P - ((v)-lo) / (hi - lo) * P)
    cli_buf_printf(b,
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
                   "viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"12\">\n",
                   W, W, W, W);
    cli_buf_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    cli_buf_printf(b, "<text x=\"%g\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
                   X0 + P / 2, title);
    cli_buf_printf(
        b, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"black\"/>\n",
        X0, Y0, P, P);
    double st = nice_step(hi - lo);
    for (double v = ceil(lo / st) * st; v <= hi; v += st) {
        double vv = fabs(v) < st * 1e-9 ? 0 : v;
        cli_buf_printf(b,
                       "<line x1=\"%.2f\" y1=\"%g\" x2=\"%.2f\" y2=\"%g\" stroke=\"black\"/>"
                       "<text x=\"%.2f\" y=\"%g\" text-anchor=\"middle\">%g</text>\n",
                       SX(vv), Y0 + P, SX(vv), Y0 + P + 5, SX(vv), Y0 + P + 18, vv);
        cli_buf_printf(b,
                       "<line x1=\"%g\" y1=\"%.2f\" x2=\"%g\" y2=\"%.2f\" stroke=\"black\"/>"
                       "<text x=\"%g\" y=\"%.2f\" text-anchor=\"end\">%g</text>\n",
                       X0 - 5, SY(vv), X0, SY(vv), X0 - 8, SY(vv) + 4, vv);
    }
    cli_buf_printf(b,
                   "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#888\" "
                   "stroke-dasharray=\"4 3\"/>\n",
                   SX(lo), SY(lo), SX(hi), SY(hi));
    for (size_t i = 0; i < n; i++)
        cli_buf_printf(
            b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2\" fill=\"#1f77b4\" fill-opacity=\"0.6\"/>\n",
            SX(x[i]), SY(y[i]));
    cli_buf_printf(b, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">label %s (a.u.)</text>\n",
                   X0 + P / 2, Y0 + P + 36, label);
    cli_buf_printf(b,
                   "<text x=\"18\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 18 %g)\">"
                   "EANN prediction (a.u.)</text>\n</svg>\n",
                   Y0 + P / 2, Y0 + P / 2);
#undef SX
#undef SY
}

/* Escape &, <, > for SVG text. */
static void xml_text(char *out, size_t cap, const char *s) {
    size_t n = 0;
    for (; *s && n + 6 < cap; s++) {
        const char *r = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (r) {
            memcpy(out + n, r, strlen(r));
            n += strlen(r);
        } else
            out[n++] = *s;
    }
    out[n] = '\0';
}

int eann_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *key = NULL, *unit = "au", *svg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        }
        if (a[0] == '-' && a[1]) {
            if (i + 1 >= argc) cli_fail("eval: %s needs a value (see eann eval --help)", a);
            const char *v = argv[++i];
            if (!strcmp(a, "-m"))
                model = v;
            else if (!strcmp(a, "--key"))
                key = v;
            else if (!strcmp(a, "--unit"))
                unit = v;
            else if (!strcmp(a, "--svg"))
                svg = v;
            else
                cli_fail("eval: unknown option '%s' (see eann eval --help)", a);
        } else {
            if (in) cli_fail("eval: more than one input file ('%s', '%s')", in, a);
            in = a;
        }
    }
    if (!model || !in || !key) cli_fail("eval: -m MODEL, IN.xyz and --key are required");
    {
        const char *ins[2] = {model, in};
        cli_check_output("--svg", svg, ins, 2);
        cli_check_writable("--svg", svg);
    }
    eann_model *m = eann_cli_load_model(model);
    double factor = unit_factor(unit, m->spec.kind);
    static labelled L;
    load_labelled(in, &L);
    attach_labels(&L, m, model, key, factor, 0);
    const int nc = eann_kind_outputs(m->spec.kind);
    int mx = 1;
    for (int f = 0; f < L.n; f++)
        mx = L.s[f].natoms > mx ? L.s[f].natoms : mx;
    eann_trainws *tw;
    if (eann_trainws_new(m, mx, &tw)) cli_fail("out of memory");
    size_t np = (size_t)L.n * nc;
    double *px = malloc(sizeof(double) * np), *py = malloc(sizeof(double) * np);
    if (!px || !py) cli_fail("out of memory");
    double sq[9] = {0}, mae = 0;
    for (int f = 0; f < L.n; f++) {
        double pred[9];
        int rc = eann_sample_loss(m, tw, &L.s[f], 0, 0, NULL, pred, NULL, NULL);
        if (rc) cli_fail("%s:%d: %s", in, L.xf[0].frames[f].line, eann_strerror(rc));
        /* never print (or plot) a non-finite prediction */
        cli_check_finite(pred, (size_t)nc, in, L.xf[0].frames[f].line, "the model's output");
        for (int c = 0; c < nc; c++) {
            double e = pred[c] - L.s[f].ref[c];
            sq[c] += e * e;
            mae += fabs(e);
            px[(size_t)f * nc + c] = L.s[f].ref[c];
            py[(size_t)f * nc + c] = pred[c];
        }
    }
    /* Pearson correlation of all (label, prediction) pairs */
    double mxv = 0, myv = 0, sxx = 0, syy = 0, sxy = 0, tot = 0;
    for (size_t i = 0; i < np; i++) {
        mxv += px[i];
        myv += py[i];
    }
    mxv /= np;
    myv /= np;
    for (size_t i = 0; i < np; i++) {
        sxx += (px[i] - mxv) * (px[i] - mxv);
        syy += (py[i] - myv) * (py[i] - myv);
        sxy += (px[i] - mxv) * (py[i] - myv);
    }
    double r = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
    for (int c = 0; c < nc; c++) tot += sq[c];
    if (!isfinite(tot) || !isfinite(mae) || !isfinite(r))
        cli_fail("%s: the errors are not finite (labels under '%s' out of range?)", in, key);
    tot = 0;
    static const char *cn3[3] = {"x", "y", "z"};
    static const char *cn9[9] = {"xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"};
    printf("eann eval: %d frames of %s, model %s (kind %s), label %s (unit %s -> a.u.)%s\n", L.n,
           in, model, eann_kind_name(m->spec.kind), key, unit,
           m->spec.kind == EANN_TDM ? ", sign chosen per frame" : "");
    printf("component  rmse_au\n");
    for (int c = 0; c < nc; c++) {
        printf("%-9s  %.6g\n", nc == 3 ? cn3[c] : cn9[c], sqrt(sq[c] / L.n));
        tot += sq[c];
    }
    printf("all        %.6g\n", sqrt(tot / np));
    printf("mae_au     %.6g\n", mae / np);
    printf("r          %.6f\n", r);
    if (svg) {
        cli_buf b = {0};
        char title[512], t1[256], t2[256];
        xml_text(t1, sizeof t1, key);
        const char *base = strrchr(in, '/');
        xml_text(t2, sizeof t2, base ? base + 1 : in);
        snprintf(title, sizeof title, "%s: %s, RMSE %.4g a.u., r = %.4f",
                 eann_kind_name(m->spec.kind), t2, sqrt(tot / np), r);
        svg_parity(&b, title, t1, px, py, np);
        char err[1024];
        if (cli_write_atomic(svg, b.s, b.len, err, sizeof err)) cli_fail("%s", err);
        cli_buf_free(&b);
    }
    free(px);
    free(py);
    eann_trainws_free(tw);
    free_labelled(&L);
    eann_model_free(m);
    return 0;
}
