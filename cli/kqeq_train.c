/* SPDX-License-Identifier: MIT */
/* kqeq_train.c - `kqeq qeq`, `kqeq train`, `kqeq predict`, `kqeq eval` and
 * `kqeq curve`: classical QEq and kQEq from the command line (kqeq.h;
 * equations: kQEq paper and ../shared/specs/kqeq.md).
 * File conventions: positions in angstrom; per-frame `charge` key (e,
 * default 0); reference dipoles under --dipole-key in --dipole-unit. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kqeq.h"
#include "kqeq_cmds.h"
#include "kqeq_svg.h"
#include "xyz.h"

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                            */
/* ------------------------------------------------------------------------ */

#define E_ANGSTROM_PER_AU KQ_BOHR_ANGSTROM /* 1 e*bohr = 0.529... e*angstrom */
/* Bounds of the inputs, far beyond anything chemical, so that no result
 * overflows: |total charge| (e), |chi| and |eta| (eV) of `kqeq qeq`, s_at. */
#define MAX_CHI_ETA_EV 1e4
#define MIN_S_AT 1e-3
#define MAX_S_AT 1e3

/* Factor that converts a dipole in unit u to e*bohr. */
static double dipole_unit_to_au(const char *u) {
    if (!strcmp(u, "au")) return 1.0;
    if (!strcmp(u, "debye")) return 1.0 / KQ_AU_DEBYE;
    if (!strcmp(u, "eA")) return 1.0 / E_ANGSTROM_PER_AU;
    cli_fail("--unit: '%s' is not one of au, debye, eA", u);
}

/* "H,C,N,O" -> atomic numbers. */
static int parse_species_list(const char *arg, int *sp) {
    char buf[256];
    int n = 0;
    if (strlen(arg) >= sizeof buf) cli_fail("--species: list too long");
    strcpy(buf, arg);
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        int z = xyz_symbol_to_z(tok);
        if (z == 0) cli_fail("--species: unknown element '%s'", tok);
        if (kq_qeq_radius(z) <= 0.0)
            cli_fail("--species: no QEq radius for %s (known: H C N O F S Cl)", tok);
        for (int i = 0; i < n; i++)
            if (sp[i] == z) cli_fail("--species: '%s' given twice", tok);
        if (n == KQ_MAX_SPECIES) cli_fail("--species: more than %d elements", KQ_MAX_SPECIES);
        sp[n++] = z;
    }
    return n;
}

/* "rcut=3.5,nmax=8,lmax=6[,sigma=S][,weight=W]" */
static void parse_soap(const char *arg, kq_soap_params *p, double *weight) {
    char buf[256];
    if (strlen(arg) >= sizeof buf) cli_fail("--soap: too long");
    strcpy(buf, arg);
    memset(p, 0, sizeof *p);
    *weight = 1.0;
    int have = 0, seen_sigma = 0, seen_weight = 0;
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        char *eq = strchr(tok, '=');
        if (!eq) cli_fail("--soap: '%s' is not key=value", tok);
        *eq = '\0';
        const char *v = eq + 1;
        /* each sub-key once: "rcut=3,rcut=4" is a typo, not "the last wins" */
        int bit = !strcmp(tok, "rcut") ? 1 : !strcmp(tok, "nmax") ? 2 : !strcmp(tok, "lmax") ? 4 : 0;
        if ((bit && (have & bit)) || (!strcmp(tok, "sigma") && seen_sigma++) ||
            (!strcmp(tok, "weight") && seen_weight++))
            cli_fail("--soap: '%s' given twice in '%s'", tok, arg);
        if (!strcmp(tok, "rcut")) {
            p->rcut = cli_parse_double("--soap rcut", v);
            if (!(p->rcut > 1.0)) cli_fail("--soap: rcut must be > 1 angstrom, got '%s'", v);
            have |= 1;
        } else if (!strcmp(tok, "nmax")) {
            p->nmax = (int)cli_parse_long("--soap nmax", v, 1, KQ_SOAP_MAX_NMAX);
            have |= 2;
        } else if (!strcmp(tok, "lmax")) {
            p->lmax = (int)cli_parse_long("--soap lmax", v, 0, KQ_MAX_LMAX);
            have |= 4;
        } else if (!strcmp(tok, "sigma")) {
            p->sigma = cli_parse_double("--soap sigma", v);
            /* far smaller widths overflow 1/sigma^2 in the basis (NaN
             * descriptors): kq_soap_new refuses them too */
            if (!(p->sigma >= KQ_SOAP_MIN_SIGMA))
                cli_fail("--soap: sigma must be >= %g angstrom, got '%s'", KQ_SOAP_MIN_SIGMA, v);
        } else if (!strcmp(tok, "weight")) {
            *weight = cli_parse_double("--soap weight", v);
            if (!(*weight > 0.0)) cli_fail("--soap: weight must be > 0, got '%s'", v);
        } else {
            cli_fail("--soap: unknown key '%s' (rcut, nmax, lmax, sigma, weight)", tok);
        }
    }
    if (have != 7)
        cli_fail("--soap: rcut, nmax and lmax are required, e.g. rcut=3.5,nmax=8,lmax=6");
}

/* Comma-separated list of positive numbers. */
static int parse_list(const char *opt, const char *arg, double *out, int maxn) {
    char buf[1024];
    int n = 0;
    if (strlen(arg) >= sizeof buf) cli_fail("%s: list too long", opt);
    strcpy(buf, arg);
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        if (n == maxn) cli_fail("%s: more than %d values", opt, maxn);
        out[n] = cli_parse_double(opt, tok);
        if (!(out[n] > 0.0)) cli_fail("%s: values must be > 0, got '%s'", opt, tok);
        n++;
    }
    return n;
}

/* Molecules of an XYZ file with total charge and (optional) reference dipole. */
typedef struct {
    const char *path;
    xyz_file xf;
    kq_mol *mols;
} dataset;

/* Reads path (cli_read_xyz: no empty or periodic frames), the total charge
 * of each frame (cli_frame_charge) and, with dipole_key, the reference
 * dipoles (converted to e*bohr by to_au). */
static void dataset_load(dataset *d, const char *path, const char *dipole_key, double to_au,
                         int fractional) {
    char err[1024];
    d->path = path;
    cli_read_xyz(path, &d->xf);
    d->mols = calloc((size_t)d->xf.nframes, sizeof *d->mols);
    if (!d->mols) cli_fail("%s: out of memory", path);
    for (int f = 0; f < d->xf.nframes; f++) {
        const xyz_frame *fr = &d->xf.frames[f];
        kq_mol *m = &d->mols[f];
        m->natoms = fr->natoms;
        m->z = fr->z;
        m->pos = fr->pos;
        m->charge = cli_frame_charge(fr, path, fractional);
        if (dipole_key) {
            double v[3];
            if (xyz_get_info_real(fr, path, dipole_key, 3, v, err, sizeof err)) cli_fail("%s", err);
            for (int c = 0; c < 3; c++) m->dipole_au[c] = v[c] * to_au;
        }
    }
}

static void dataset_free(dataset *d) {
    free(d->mols);
    xyz_free(&d->xf);
}

/* The frame and atom of a model problem, for error messages: find the first
 * frame with an element the model does not know. */
static void check_species(const dataset *d, const int *species, int nspecies) {
    for (int f = 0; f < d->xf.nframes; f++) {
        const xyz_frame *fr = &d->xf.frames[f];
        for (int i = 0; i < fr->natoms; i++) {
            int ok = 0;
            for (int s = 0; s < nspecies; s++) ok |= species[s] == fr->z[i];
            if (!ok) {
                const char *sym = xyz_z_to_symbol(fr->z[i]);
                cli_fail("%s:%d: element %s (atom %d) is not known to the model", d->path,
                         fr->line, sym ? sym : "?", i + 1);
            }
        }
    }
}

/* Progress lines on stderr: at most one every 2 s per stage, plus the end. */
typedef struct {
    double t0, last;
    char stage[64];
    int quiet;
} progress_ctx;

static void progress_cb(void *vctx, const char *stage, size_t done, size_t total) {
    progress_ctx *p = vctx;
    if (p->quiet) return;
    double now = cli_now();
    int new_stage = strcmp(stage, p->stage) != 0;
    if (!new_stage && done < total && now - p->last < 2.0) return;
    if (new_stage && done == 0 && total > 1 && strcmp(stage, "solve") != 0) return;
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->last = now;
    fprintf(stderr, "kqeq: [%8.1f s] %s %zu/%zu\n", now - p->t0, stage, done, total);
}

/* Build a prepared set, failing with the file and frame on error. */
static void build_set(kq_model *m, const dataset *d, kq_set *s, progress_ctx *pc) {
    check_species(d, m->species, m->nspecies);
    int rc = kq_set_build(m, d->xf.nframes, d->mols, s, progress_cb, pc);
    if (rc) {
        /* find the frame to name it */
        for (int f = 0; f < d->xf.nframes; f++) {
            double mu[3];
            kq_model q = *m;
            q.nrep = 0;
            q.kind = KQ_KIND_QEQ;
            q.ndesc = 0;
            int r2 = kq_predict(&q, d->mols[f].natoms, d->mols[f].z, d->mols[f].pos,
                                d->mols[f].charge, NULL, mu, NULL, NULL);
            if (r2) cli_fail("%s:%d: %s", d->path, d->xf.frames[f].line, kq_strerror(r2));
        }
        cli_fail("%s: %s", d->path, kq_strerror(rc));
    }
}

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* Default regularisation grid (specs/kqeq.md: powers of ten), in (e*bohr)^2. */
static const double default_reg[] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0};
#define N_DEFAULT_REG 8

/* ------------------------------------------------------------------------ */
/* kqeq qeq                                                                  */
/* ------------------------------------------------------------------------ */

static const char qeq_usage[] =
    "usage: kqeq qeq FILE.xyz [--charge Q] [--chi El=v,...] [--eta El=v,...] [--s-at S]\n"
    "                [--fractional-charge] [--max-atoms N]\n"
    "  Classical QEq with Gaussian charges (kQEq paper Eqs. 1-10; specs/kqeq.md).\n"
    "  Positions in angstrom. Total charge: --charge Q for every frame, else the\n"
    "  frame's 'charge' key, else 0 (|Q| <= 1000 e, an integer unless\n"
    "  --fractional-charge). chi (eV) defaults to Rappe & Goddard 1991 (H 4.528\n"
    "  C 5.343 N 6.899 O 8.741 F 10.874 S 6.928 Cl 8.564); eta (eV/e^2, non-classical\n"
    "  hardness) defaults to 0; |chi|, |eta| <= 1e4 eV. Gaussian widths s_at * R_RG\n"
    "  (s_at in [0.001, 1000], default 0.75). A frame whose results are not finite\n"
    "  is refused before anything is printed.\n"
    "  --max-atoms N  refuse frames of more than N atoms (default 5000): the solve\n"
    "                 is O(N^3) in time (about 2.2e-11 N^3 s: 3 s at 5000 atoms,\n"
    "                 22 s at 10,000) and 8 N^2 bytes of memory (above 1000\n"
    "                 atoms, kqeq.h); frames above 5000 atoms get a warning\n"
    "  Output per frame: a line 'frame I natoms N charge Q dipole_debye X Y Z\n"
    "  abs_debye |mu| energy_eV E' (dipole about the centre of mass), then one line\n"
    "  'ELEMENT q' per atom (q in e).\n";

static void parse_elem_values(const char *opt, const char *arg, double *byz) {
    char buf[512];
    if (strlen(arg) >= sizeof buf) cli_fail("%s: too long", opt);
    strcpy(buf, arg);
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        char *eq = strchr(tok, '=');
        if (!eq) cli_fail("%s: '%s' is not El=value", opt, tok);
        *eq = '\0';
        int z = xyz_symbol_to_z(tok);
        if (z == 0 || kq_qeq_radius(z) <= 0.0)
            cli_fail("%s: element '%s' unknown or without QEq radius", opt, tok);
        byz[z] = cli_parse_double(opt, eq + 1);
        if (!(fabs(byz[z]) <= MAX_CHI_ETA_EV))
            cli_fail("%s: %s=%s is beyond +-%g eV", opt, tok, eq + 1, MAX_CHI_ETA_EV);
    }
}

/* Time of the dense O(N^3) QEq solve of one frame, for the warning and the
 * limit of `kqeq qeq`/`predict`/`eval`: above KQ_QEQ_DIRECT_MAX_ATOMS the
 * factor path, about 2.2e-11 N^3 s and N^2 doubles (kqeq.h: 4002 water atoms
 * 1.7 s, 10002 22 s, one core); below it the explicit inverse, ~10x the time
 * per N^3 and 3 N^2 doubles. */
#define QEQ_WARN_ATOMS 5000
#define QEQ_DEFAULT_MAX_ATOMS 5000
static void qeq_size_check(const char *file, int line, int n, long max_atoms, int quiet) {
    int big = n > KQ_QEQ_DIRECT_MAX_ATOMS;
    double sec = (big ? 2.2e-11 : 2.2e-10) * (double)n * n * n, mb = (big ? 1.0 : 3.0) * n * (double)n * 8 / 1e6;
    if (n > max_atoms)
        cli_fail("%s:%d: frame of %d atoms: the dense QEq solve is O(N^3), about %.0f s and "
                 "%.0f MB here; refused above --max-atoms %ld (raise it to run anyway)",
                 file, line, n, sec, mb, max_atoms);
    if (n > QEQ_WARN_ATOMS && !quiet)
        fprintf(stderr, "kqeq: %s:%d: %d atoms: O(N^3) solve, expect about %.0f s and %.0f MB\n",
                file, line, n, sec, mb);
}

int kqeq_cmd_qeq(int argc, char **argv) {
    const char *file = NULL, *qarg = NULL;
    double qforce = 0.0, s_at = 0.75;
    int have_q = 0, fractional = 0;
    long max_atoms = QEQ_DEFAULT_MAX_ATOMS;
    double chi_ev[119], eta_ev[119];
    for (int z = 0; z < 119; z++) {
        chi_ev[z] = kq_qeq_default_chi_ev(z);
        eta_ev[z] = 0.0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(qeq_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--fractional-charge")) {
            fractional = 1;
            continue;
        }
        if (!strncmp(a, "--", 2)) {
            if (i + 1 >= argc) cli_fail("qeq: %s needs a value (see kqeq qeq --help)", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--charge")) {
                qarg = v;
                have_q = 1;
            } else if (!strcmp(a, "--max-atoms")) {
                max_atoms = cli_parse_long(a, v, 1, 1000000);
            } else if (!strcmp(a, "--chi")) {
                parse_elem_values(a, v, chi_ev);
            } else if (!strcmp(a, "--eta")) {
                parse_elem_values(a, v, eta_ev);
            } else if (!strcmp(a, "--s-at")) {
                s_at = cli_parse_double(a, v);
                if (!(s_at >= MIN_S_AT && s_at <= MAX_S_AT))
                    cli_fail("--s-at: must be in [%g, %g], got '%s'", MIN_S_AT, MAX_S_AT, v);
            } else {
                cli_fail("qeq: unknown option '%s' (see kqeq qeq --help)", a);
            }
        } else {
            if (file) cli_fail("qeq: more than one input file");
            file = a;
        }
    }
    if (!file) cli_fail("qeq: no input file (see kqeq qeq --help)");
    if (have_q) qforce = cli_parse_charge("--charge", qarg, fractional);
    char err[1024];
    xyz_file xf;
    cli_read_xyz(file, &xf);
    cli_buf out = {0};
    cli_buf_printf(&out,
                   "# kqeq qeq: Gaussian-charge QEq, s_at %.17g; charges e, dipole debye about "
                   "the centre of mass, energy eV (E_0 = 0)\n",
                   s_at);
    for (int f = 0; f < xf.nframes; f++) {
        const xyz_frame *fr = &xf.frames[f];
        int n = fr->natoms;
        double qt = have_q ? qforce : cli_frame_charge(fr, file, fractional);
        qeq_size_check(file, fr->line, n, max_atoms, 0);
        double *chi = malloc((size_t)(n ? n : 1) * sizeof *chi);
        double *eta = malloc((size_t)(n ? n : 1) * sizeof *eta);
        double *q = malloc((size_t)(n ? n : 1) * sizeof *q);
        if (!chi || !eta || !q) cli_fail("qeq: out of memory");
        for (int i = 0; i < n; i++) {
            int z = fr->z[i];
            if (kq_qeq_radius(z) <= 0.0)
                cli_fail("%s:%d: element %s (atom %d) has no QEq radius (known: H C N O F S Cl)",
                         file, fr->line, xyz_z_to_symbol(z), i + 1);
            chi[i] = chi_ev[z] / KQ_HARTREE_EV;
            eta[i] = eta_ev[z] / KQ_HARTREE_EV;
        }
        double mu[3], e;
        int rc = kq_qeq_solve(n, fr->z, fr->pos, qt, chi, eta, s_at, q, mu, &e, NULL, NULL);
        if (rc) cli_fail("%s:%d: %s", file, fr->line, kq_strerror(rc));
        double d[3] = {mu[0] * KQ_AU_DEBYE, mu[1] * KQ_AU_DEBYE, mu[2] * KQ_AU_DEBYE};
        /* never print a wrong number: refuse the frame before any output */
        if (!isfinite(sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])) ||
            !isfinite(e * KQ_HARTREE_EV))
            cli_fail("%s:%d: %s", file, fr->line, kq_strerror(KQ_ERANGE));
        cli_buf_printf(&out, "frame %d natoms %d charge %.17g dipole_debye %.10f %.10f %.10f "
                             "abs_debye %.10f energy_eV %.10f\n",
                       f + 1, n, qt, d[0], d[1], d[2],
                       sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), e * KQ_HARTREE_EV);
        for (int i = 0; i < n; i++)
            cli_buf_printf(&out, "%-2s %.10f\n", xyz_z_to_symbol(fr->z[i]), q[i]);
        free(chi);
        free(eta);
        free(q);
    }
    if (cli_write_atomic("-", out.s ? out.s : "", out.len, err, sizeof err)) cli_fail("%s", err);
    cli_buf_free(&out);
    xyz_free(&xf);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Shared model setup for train and curve                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *train, *valid, *test, *out, *dipole_key, *dipole_unit, *svg;
    int kind;
    int nsoap;
    kq_soap_params soap[KQ_MAX_DESC];
    double weight[KQ_MAX_DESC];
    int nspecies, species[KQ_MAX_SPECIES];
    long sparse; /* -1 = default */
    int nreg;
    double reg[64];
    double s_at;
    int stats, quiet, fit_eta, fractional;
    double max_memory; /* bytes; 0 = MemAvailable */
    double sizes[64];
    int nsizes;
    long draws, seed;
} train_args;

/* Species: --species, else every element in the given datasets. */
static void default_species(train_args *a, const dataset *const *ds, int nds) {
    if (a->nspecies > 0) return;
    int seen[119] = {0};
    for (int k = 0; k < nds; k++)
        if (ds[k])
            for (int f = 0; f < ds[k]->xf.nframes; f++)
                for (int i = 0; i < ds[k]->xf.frames[f].natoms; i++) {
                    int z = ds[k]->xf.frames[f].z[i];
                    if (z < 1 || z > 118) continue;
                    if (kq_qeq_radius(z) <= 0.0)
                        cli_fail("%s:%d: element %s has no QEq radius (known: H C N O F S Cl)",
                                 ds[k]->path, ds[k]->xf.frames[f].line, xyz_z_to_symbol(z));
                    seen[z] = 1;
                }
    for (int z = 1; z <= 118; z++)
        if (seen[z]) {
            if (a->nspecies == KQ_MAX_SPECIES) cli_fail("more than %d elements", KQ_MAX_SPECIES);
            a->species[a->nspecies++] = z;
        }
}

static void make_model(const train_args *a, int kind, kq_model *m) {
    kq_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.s_at = a->s_at;
    c.nspecies = a->nspecies;
    for (int i = 0; i < a->nspecies; i++) c.species[i] = a->species[i];
    c.zeta = 2;
    c.ndesc = a->nsoap;
    for (int d = 0; d < a->nsoap; d++) {
        c.soap[d] = a->soap[d];
        c.delta[d] = a->weight[d];
    }
    int rc = kq_model_init(m, &c);
    if (rc) cli_fail("model setup: %s", kq_strerror(rc));
}

/* Default: the full form (Eq. 20, an N x N LU solve) up to 500 training
 * atoms, else the sparse form with M = min(N, 1000) (Cholesky, and equal to
 * the full form when M = N). */
static int sparse_for(const train_args *a, size_t natoms) {
    if (a->sparse >= 0) return (int)a->sparse;
    return natoms <= 500 ? 0 : 1000;
}

static int parse_train_opt(train_args *a, int argc, char **argv, int *i, const char *cmd) {
    const char *o = argv[*i];
    if (!strcmp(o, "--stats")) {
        a->stats = 1;
        return 1;
    }
    if (!strcmp(o, "--quiet")) {
        a->quiet = 1;
        return 1;
    }
    if (!strcmp(o, "--fit-eta")) {
        a->fit_eta = 1;
        return 1;
    }
    if (!strcmp(o, "--fractional-charge")) {
        a->fractional = 1;
        return 1;
    }
    if (*i + 1 >= argc) cli_fail("%s: %s needs a value (see kqeq %s --help)", cmd, o, cmd);
    const char *v = argv[++*i];
    if (!strcmp(o, "--train")) a->train = v;
    else if (!strcmp(o, "--valid")) a->valid = v;
    else if (!strcmp(o, "--test")) a->test = v;
    else if (!strcmp(o, "-o")) a->out = v;
    else if (!strcmp(o, "--key") || !strcmp(o, "--dipole-key")) a->dipole_key = v;
    else if (!strcmp(o, "--unit") || !strcmp(o, "--dipole-unit")) {
        a->dipole_unit = v;
        (void)dipole_unit_to_au(v);
    } else if (!strcmp(o, "--model")) {
        if (!strcmp(v, "kqeq")) a->kind = KQ_KIND_KQEQ;
        else if (!strcmp(v, "qeq")) a->kind = KQ_KIND_QEQ;
        else cli_fail("--model: '%s' is not kqeq or qeq", v);
    } else if (!strcmp(o, "--soap")) {
        if (a->nsoap == KQ_MAX_DESC) cli_fail("--soap: at most %d descriptors", KQ_MAX_DESC);
        parse_soap(v, &a->soap[a->nsoap], &a->weight[a->nsoap]);
        a->nsoap++;
    } else if (!strcmp(o, "--species")) a->nspecies = parse_species_list(v, a->species);
    else if (!strcmp(o, "--sparse")) a->sparse = cli_parse_long(o, v, 0, 1000000);
    else if (!strcmp(o, "--reg")) a->nreg = parse_list(o, v, a->reg, 64);
    else if (!strcmp(o, "--s-at")) {
        a->s_at = cli_parse_double(o, v);
        if (!(a->s_at >= MIN_S_AT && a->s_at <= MAX_S_AT))
            cli_fail("--s-at: must be in [%g, %g], got '%s'", MIN_S_AT, MAX_S_AT, v);
    } else if (!strcmp(o, "--sizes")) {
        a->nsizes = parse_list(o, v, a->sizes, 64);
        for (int k = 0; k < a->nsizes; k++)
            if (a->sizes[k] != floor(a->sizes[k])) cli_fail("--sizes: '%s' has a non-integer", v);
    } else if (!strcmp(o, "--draws")) a->draws = cli_parse_long(o, v, 1, 1000);
    else if (!strcmp(o, "--seed")) a->seed = cli_parse_long(o, v, 0, 2147483647L);
    else if (!strcmp(o, "--max-memory")) a->max_memory = cli_parse_bytes(o, v);
    else cli_fail("%s: unknown option '%s' (see kqeq %s --help)", cmd, o, cmd);
    return 1;
}

static void train_args_init(train_args *a) {
    memset(a, 0, sizeof *a);
    a->kind = KQ_KIND_KQEQ;
    a->sparse = -1;
    a->s_at = 0.75;
    a->dipole_unit = "au";
    a->draws = 3;
    a->seed = 1;
}

static void default_soap(train_args *a) {
    if (a->nsoap > 0) return;
    /* the paper's single-SOAP setting: rcut 3.5 A, nmax 8, lmax 6, sigma rcut/8 */
    a->soap[0].rcut = 3.5;
    a->soap[0].nmax = 8;
    a->soap[0].lmax = 6;
    a->weight[0] = 1.0;
    a->nsoap = 1;
}

/* ------------------------------------------------------------------------ */
/* kqeq train                                                                */
/* ------------------------------------------------------------------------ */

/* Bytes of the large arrays of a kQEq fit (kqeq.h: kq_set_build, kq_train),
 * estimated from the sizes before anything is allocated for them:
 *   SOAP matrices   (N_train + N_valid) x sum_d len_d        (kq_set.p)
 *   kernel blocks   N_train x M (K_NM) + 3 n_mol x M (P = R A K)
 *                   + 4 M x M (P^T P, K_MM, the system, its copy)
 *                   + N_valid x M + 3 n_mol,valid x M (validation)
 *   geometry        (N_train + N_valid) x 7 doubles (positions, R A blocks)
 * M = N_train for the full form. Returns the total, and the SOAP and kernel
 * parts in *soap and *kern. */
static double fit_memory(const kq_model *m, int kind, size_t ntr, size_t nmol, size_t nv,
                         size_t nmolv, size_t mrep, double *soap, double *kern) {
    double len = 0;
    if (kind == KQ_KIND_KQEQ)
        for (int d = 0; d < m->ndesc; d++) len += (double)m->len[d];
    else mrep = 0;
    double M = (double)mrep;
    *soap = 8.0 * (double)(ntr + nv) * len;
    *kern = 8.0 * ((double)ntr * M + 3.0 * (double)nmol * M + 4.0 * M * M + (double)nv * M +
                   3.0 * (double)nmolv * M);
    return *soap + *kern + 8.0 * 7.0 * (double)(ntr + nv);
}

/* Prints the estimate (--stats, or above 0.5 GB) and refuses it above the limit:
 * --max-memory if given, else MemAvailable of /proc/meminfo. */
static void check_memory(const train_args *a, const char *what, double need, double soap,
                         double kern) {
    double avail = cli_mem_available();
    double limit = a->max_memory > 0 ? a->max_memory : avail;
    /* printed with --stats, and always when it is large (a long run follows) */
    if (!a->quiet && (a->stats || need > 0.5e9))
        fprintf(stderr, "kqeq: %s: memory estimate %.3g GB (SOAP %.3g GB, kernel %.3g GB); "
                "available %.3g GB\n", what, need / 1e9, soap / 1e9, kern / 1e9, avail / 1e9);
    if (limit > 0 && need > limit)
        cli_fail("%s: needs about %.3g GB (SOAP matrices %.3g GB, kernel blocks %.3g GB) but "
                 "the limit is %.3g GB (%s); use fewer frames, a smaller --sparse M or smaller "
                 "--soap settings, or raise --max-memory", what, need / 1e9, soap / 1e9,
                 kern / 1e9, limit / 1e9, a->max_memory > 0 ? "--max-memory" : "MemAvailable");
}

static size_t total_atoms(const dataset *d) {
    size_t n = 0;
    if (d)
        for (int f = 0; f < d->xf.nframes; f++) n += (size_t)d->xf.frames[f].natoms;
    return n;
}

/* A failed fit: one line saying what to change; no model is written. */
static void train_fail(int rc) {
    if (rc == KQ_ERANGE)
        cli_fail("train: the fit gives numbers that are not finite (NaN or Inf); no model "
                 "written (check --soap, --reg, --s-at and the reference dipoles)");
    if (rc == KQ_ELINALG)
        cli_fail("train: %s; no model written (try a larger --reg)", kq_strerror(rc));
    cli_fail("train: %s", kq_strerror(rc));
}

static const char train_usage[] =
    "usage: kqeq train [--model kqeq|qeq] --train T.xyz [--valid V.xyz] --key KEY\n"
    "                  [--unit au|debye|eA] [--fractional-charge] [--max-memory SIZE]\n"
    "                  [--soap rcut=R,nmax=N,lmax=L[,sigma=S][,weight=W]]...\n"
    "                  [--species H,C,N,O,F] [--sparse M] [--reg GRID] [--s-at S] [--fit-eta]\n"
    "                  [--stats] [--quiet] -o MODEL\n"
    "  Fits kQEq (kQEq paper Eq. 20, or its sparse form) or classical QEq (per-element\n"
    "  chi by linear least squares, eta = 0) to reference dipoles (about the centre of\n"
    "  mass; total charge from the frame's 'charge' key, default 0). Without\n"
    "  --fit-eta, QEq keeps eta = 0 (as kQEq does).\n"
    "  --soap       one per descriptor; several give K = sum_d weight_d k_d (default\n"
    "               rcut=3.5,nmax=8,lmax=6; sigma default rcut/8; weight default 1)\n"
    "  --species    elements the model knows (default: those in the training/validation files)\n"
    "  --sparse M   M representative atoms by farthest point sampling (0 = full form;\n"
    "               default: full form up to 500 training atoms, else M = min(N, 1000))\n"
    "  --reg GRID   regularisation sigma values, (e*bohr)^2, comma-separated; with --valid\n"
    "               the value with the lowest validation MAE of |mu| is kept (default\n"
    "               1e-6,1e-5,...,10; without --valid the first value, default 1e-3)\n"
    "  --s-at S     Gaussian width scale of the Rappe-Goddard radii (default 0.75)\n"
    "  --fit-eta    (--model qeq) fit the per-element hardness eta >= 0 too\n"
    "               (Levenberg-Marquardt, chi eliminated by least squares; deterministic)\n"
    "  --key KEY    per-frame reference dipole (3 numbers; alias --dipole-key)\n"
    "  --unit U     unit of the reference dipoles: au = e*bohr (default), debye, eA\n"
    "               (alias --dipole-unit). Positions are read in angstrom.\n"
    "  --fractional-charge  allow non-integer 'charge' keys (default: integers,\n"
    "               |Q| <= 1000 e; charge=T and other non-numbers are refused)\n"
    "  --max-memory SIZE  refuse a fit whose SOAP matrices and kernel blocks need\n"
    "               more (e.g. 8G; default: MemAvailable of /proc/meminfo); the\n"
    "               estimate is printed with --stats or when above 0.5 GB\n"
    "  --stats      print wall time, peak memory (VmHWM) and the memory estimate\n"
    "  -o MODEL     output model (replaced atomically; never one of the inputs)\n"
    "  Progress lines go to stderr; a summary goes to stdout.\n";

int kqeq_cmd_train(int argc, char **argv) {
    train_args a;
    train_args_init(&a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(train_usage, stdout);
            return 0;
        }
        parse_train_opt(&a, argc, argv, &i, "train");
    }
    if (!a.train) cli_fail("train: --train is required (see kqeq train --help)");
    if (!a.dipole_key) cli_fail("train: --key KEY is required (see kqeq train --help)");
    if (!a.out) cli_fail("train: -o MODEL is required (see kqeq train --help)");
    if (a.test || a.nsizes) cli_fail("train: --test/--sizes belong to 'kqeq curve'");
    {
        const char *ins[2] = {a.train, a.valid};
        cli_check_output("-o", a.out, ins, 2);
        cli_check_writable("-o", a.out); /* now, not after the fit */
    }
    double to_au = dipole_unit_to_au(a.dipole_unit);
    progress_ctx pc = {cli_now(), 0.0, "", a.quiet};
    dataset dt, dv;
    dataset_load(&dt, a.train, a.dipole_key, to_au, a.fractional);
    if (a.valid) dataset_load(&dv, a.valid, a.dipole_key, to_au, a.fractional);
    const dataset *all[2] = {&dt, a.valid ? &dv : NULL};
    default_species(&a, all, 2);
    if (a.kind == KQ_KIND_KQEQ) default_soap(&a);
    if (a.nreg == 0) {
        if (a.valid) {
            a.nreg = N_DEFAULT_REG;
            memcpy(a.reg, default_reg, sizeof default_reg);
        } else {
            a.nreg = 1;
            a.reg[0] = 1e-3;
        }
    } else if (!a.valid && a.nreg > 1) {
        cli_fail("train: --reg with several values needs --valid to choose among them");
    }
    kq_model m;
    make_model(&a, a.kind, &m);
    kq_set st, sv;
    kq_train_opts o = {0, a.nreg, a.reg};
    kq_train_report rep;
    int rc;
    if (a.kind == KQ_KIND_QEQ && a.fit_eta) {
        /* chi and eta: eta changes A, so the sets are built after the fit */
        check_species(&dt, m.species, m.nspecies);
        rc = kq_train_qeq_eta(&m, dt.xf.nframes, dt.mols, NULL, 0, 50, &rep, progress_cb, &pc);
        if (rc) train_fail(rc);
        build_set(&m, &dt, &st, &pc);
        if (a.valid) {
            build_set(&m, &dv, &sv, &pc);
            double *pv = malloc((size_t)sv.nmol * 3 * sizeof *pv);
            if (!pv || kq_set_predict(&m, &sv, pv)) cli_fail("train: validation prediction failed");
            kq_dipole_metrics(sv.nmol, pv, sv.dipole_au, &rep.valid_mae_debye,
                              &rep.valid_rrmse_percent);
            free(pv);
        }
    } else {
        size_t ntr = total_atoms(&dt), nv = a.valid ? total_atoms(&dv) : 0;
        int sp = sparse_for(&a, ntr);
        size_t mrep = sp == 0 || (size_t)sp > ntr ? ntr : (size_t)sp;
        double soap, kern;
        double need = fit_memory(&m, m.kind, ntr, (size_t)dt.xf.nframes, nv,
                                 a.valid ? (size_t)dv.xf.nframes : 0, mrep, &soap, &kern);
        check_memory(&a, "train", need, soap, kern);
        build_set(&m, &dt, &st, &pc);
        if (a.valid) build_set(&m, &dv, &sv, &pc);
        o.sparse = sparse_for(&a, st.natoms);
        rc = kq_train(&m, &st, NULL, 0, a.valid ? &sv : NULL, &o, &rep, progress_cb, &pc);
        if (rc) train_fail(rc);
    }
    /* never print (or save) a wrong number */
    if (!isfinite(rep.train_mae_debye) || !isfinite(rep.train_rrmse_percent) ||
        (a.valid && (!isfinite(rep.valid_mae_debye) || !isfinite(rep.valid_rrmse_percent))))
        train_fail(KQ_ERANGE);
    char *text = NULL;
    size_t len = 0;
    rc = kq_model_write(&m, &text, &len);
    if (rc == KQ_EINVAL) train_fail(KQ_ERANGE); /* a non-finite number in the model */
    if (rc) cli_fail("train: %s", kq_strerror(rc));
    char err[1024];
    if (cli_write_atomic(a.out, text, len, err, sizeof err)) cli_fail("%s", err);
    free(text);
    /* summary: training and validation errors */
    printf("model %s (%s), %d training molecules, %zu atoms", a.out,
           m.kind == KQ_KIND_QEQ ? "qeq" : "kqeq", st.nmol, st.natoms);
    if (m.kind == KQ_KIND_KQEQ)
        printf(", %s form, %d representative atoms, sigma %g", o.sparse ? "sparse" : "full",
               m.nrep, m.reg);
    printf("\ntrain MAE %.4f D  RRMSE %.2f %%\n", rep.train_mae_debye, rep.train_rrmse_percent);
    if (a.valid) {
        printf("valid MAE %.4f D  RRMSE %.2f %%\n", rep.valid_mae_debye, rep.valid_rrmse_percent);
        kq_set_free(&sv);
        dataset_free(&dv);
    }
    if (m.kind == KQ_KIND_QEQ) {
        printf("chi (eV, common shift arbitrary):");
        for (int s = 0; s < m.nspecies; s++)
            printf(" %s %.4f", xyz_z_to_symbol(m.species[s]), m.chi[s] * KQ_HARTREE_EV);
        printf("\neta (eV/e^2):");
        for (int s = 0; s < m.nspecies; s++)
            printf(" %s %.4f", xyz_z_to_symbol(m.species[s]), m.eta[s] * KQ_HARTREE_EV);
        printf("\n");
    }
    if (a.stats)
        fprintf(stderr, "kqeq: stats wall_s %.2f peak_rss_MB %.1f\n", cli_now() - pc.t0,
                peak_rss_kb() / 1024.0);
    kq_set_free(&st);
    kq_model_free(&m);
    dataset_free(&dt);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* kqeq predict / eval                                                       */
/* ------------------------------------------------------------------------ */

static void load_model(const char *path, kq_model *m) {
    char err[1024];
    size_t len;
    char *text = cli_read_file(path, &len, err, sizeof err);
    if (!text) cli_fail("%s", err);
    int line = 0;
    char msg[512];
    int rc = kq_model_read_msg(text, len, m, &line, msg, sizeof msg);
    free(text);
    if (rc && line > 0) cli_fail("%s:%d: %s", path, line, msg);
    if (rc) cli_fail("%s: %s", path, kq_strerror(rc));
}

static const char predict_usage[] =
    "usage: kqeq predict -m MODEL IN.xyz -o OUT.xyz [--unit debye|au|eA] [--prefix P]\n"
    "                    [--overwrite] [--fractional-charge] [--max-atoms N]\n"
    "  Writes IN.xyz with per-frame kqeq_dipole (3, about the centre of mass, in the\n"
    "  --unit, default debye; alias --dipole-unit) and kqeq_polarizability (9,\n"
    "  row-major, bohr^3 = atomic units; the field response R A R^T of\n"
    "  specs/kqeq.md), per-atom kqeq_charge (e), and kqeq_units naming the units\n"
    "  (\"dipole:debye,polarizability:bohr^3,charge:e\"). Positions in angstrom.\n"
    "  Total charge per frame from its 'charge' key (default 0; an integer unless\n"
    "  --fractional-charge).\n"
    "  -o OUT.xyz   '-' or /dev/stdout = standard output; an existing device or\n"
    "               FIFO is written in place; a regular file (or the file a\n"
    "               symlink points to) is replaced atomically; never an input\n"
    "  --prefix P   name the keys P_dipole, P_polarizability, P_charge, P_units\n"
    "               (default kqeq), e.g. to keep two models' predictions apart\n"
    "  --overwrite  replace those keys if the input frame already has them\n"
    "               (default: refused, naming the frame)\n"
    "  --max-atoms N  refuse larger frames (default 5000; O(N^3) solve)\n";

int kqeq_cmd_predict(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL, *unit = "debye", *prefix = "kqeq";
    int fractional = 0, overwrite = 0;
    long max_atoms = QEQ_DEFAULT_MAX_ATOMS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(predict_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--fractional-charge")) {
            fractional = 1;
            continue;
        }
        if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            if (i + 1 >= argc) cli_fail("predict: %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "-m")) model = v;
            else if (!strcmp(a, "-o")) out = v;
            else if (!strcmp(a, "--unit") || !strcmp(a, "--dipole-unit")) unit = v;
            else if (!strcmp(a, "--prefix")) {
                cli_check_prefix(v);
                prefix = v;
            }
            else if (!strcmp(a, "--max-atoms")) max_atoms = cli_parse_long(a, v, 1, 1000000);
            else cli_fail("predict: unknown option '%s' (see kqeq predict --help)", a);
        } else {
            if (in) cli_fail("predict: more than one input file");
            in = a;
        }
    }
    if (!model || !in || !out) cli_fail("predict: -m MODEL, IN.xyz and -o OUT.xyz are required");
    {
        const char *ins[2] = {model, in};
        cli_check_output("-o", out, ins, 2);
    }
    double from_au = 1.0 / dipole_unit_to_au(unit);
    kq_model m;
    load_model(model, &m);
    dataset d;
    dataset_load(&d, in, NULL, 1.0, fractional);
    check_species(&d, m.species, m.nspecies);
    char units[128], kdip[80], kpol[96], kq[80], ku[80];
    snprintf(units, sizeof units, "dipole:%s,polarizability:bohr^3,charge:e", unit);
    snprintf(kdip, sizeof kdip, "%s_dipole", prefix);
    snprintf(kpol, sizeof kpol, "%s_polarizability", prefix);
    snprintf(kq, sizeof kq, "%s_charge", prefix);
    snprintf(ku, sizeof ku, "%s_units", prefix);
    for (int f = 0; f < d.xf.nframes; f++) {
        cli_check_new_key(&d.xf.frames[f], in, kdip, overwrite);
        cli_check_new_key(&d.xf.frames[f], in, kpol, overwrite);
        cli_check_new_key(&d.xf.frames[f], in, kq, overwrite);
    }
    /* all frames before the first one refused by the size check in one call
     * (kq_predict_many: the same numbers as kq_predict per frame); then the
     * checks and messages frame by frame, in the order of a per-frame loop */
    int nf = d.xf.nframes, nok = nf, bad = -1;
    size_t nat = 0;
    for (int f = 0; f < nf && nok == nf; f++) {
        if (d.mols[f].natoms > max_atoms) nok = f;
        else nat += (size_t)d.mols[f].natoms;
    }
    double *qall = malloc((nat + 1) * sizeof *qall);
    double *muall = malloc(((size_t)nok * 3 + 1) * sizeof *muall);
    double *alall = malloc(((size_t)nok * 9 + 1) * sizeof *alall);
    if (!qall || !muall || !alall) cli_fail("predict: out of memory");
    int prc = kq_predict_many(&m, nok, d.mols, qall, muall, alall, &bad);
    if (!prc) bad = -1;
    size_t qat = 0;
    for (int f = 0; f < nf; f++) {
        xyz_frame *fr = &d.xf.frames[f];
        int n = fr->natoms;
        double *q = malloc((size_t)n * sizeof *q), mu[3], al[9];
        if (!q) cli_fail("predict: out of memory");
        qeq_size_check(in, fr->line, n, max_atoms, 0);
        if (f == bad) cli_fail("%s:%d: %s", in, fr->line, kq_strerror(prc));
        memcpy(q, qall + qat, (size_t)n * sizeof *q);
        memcpy(mu, muall + 3 * (size_t)f, sizeof mu);
        memcpy(al, alall + 9 * (size_t)f, sizeof al);
        qat += (size_t)n;
        for (int c = 0; c < 3; c++) mu[c] *= from_au;
        cli_check_finite(mu, 3, in, fr->line, "the predicted dipole");
        cli_check_finite(al, 9, in, fr->line, "the predicted polarizability");
        cli_check_finite(q, (size_t)n, in, fr->line, "a predicted charge");
        if (xyz_set_info_real(fr, kdip, mu, 3) || xyz_set_info_real(fr, kpol, al, 9))
            cli_fail("predict: out of memory");
        cli_merge_units(fr, ku, units);
        if (xyz_set_array_real(fr, kq, 1, q)) cli_fail("predict: out of memory");
        free(q);
    }
    free(qall);
    free(muall);
    free(alall);
    char err[1024];
    if (xyz_write(out, &d.xf, err, sizeof err)) cli_fail("%s", err);
    dataset_free(&d);
    kq_model_free(&m);
    return 0;
}

static const char eval_usage[] =
    "usage: kqeq eval -m MODEL IN.xyz --key KEY [--unit au|debye|eA]\n"
    "                 [--fractional-charge] [--max-atoms N]\n"
    "  Prints the number of molecules, the MAE of |mu| (debye) and the RRMSE (%,\n"
    "  Hait & Head-Gordon, threshold 1 D) against the reference dipoles under KEY\n"
    "  (alias --dipole-key) in --unit (default au = e*bohr; alias --dipole-unit).\n"
    "  Positions in angstrom; total charge from the 'charge' key as in predict.\n";

int kqeq_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *key = NULL, *unit = "au";
    int fractional = 0;
    long max_atoms = QEQ_DEFAULT_MAX_ATOMS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--fractional-charge")) {
            fractional = 1;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            if (i + 1 >= argc) cli_fail("eval: %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "-m")) model = v;
            else if (!strcmp(a, "--key") || !strcmp(a, "--dipole-key")) key = v;
            else if (!strcmp(a, "--unit") || !strcmp(a, "--dipole-unit")) unit = v;
            else if (!strcmp(a, "--max-atoms")) max_atoms = cli_parse_long(a, v, 1, 1000000);
            else cli_fail("eval: unknown option '%s' (see kqeq eval --help)", a);
        } else {
            if (in) cli_fail("eval: more than one input file");
            in = a;
        }
    }
    if (!model || !in || !key) cli_fail("eval: -m MODEL, IN.xyz and --key KEY are required");
    double to_au = dipole_unit_to_au(unit);
    kq_model m;
    load_model(model, &m);
    dataset d;
    dataset_load(&d, in, key, to_au, fractional);
    check_species(&d, m.species, m.nspecies);
    int nm = d.xf.nframes;
    double *pred = malloc((size_t)nm * 3 * sizeof *pred);
    double *ref = malloc((size_t)nm * 3 * sizeof *ref);
    if (!pred || !ref) cli_fail("eval: out of memory");
    /* all frames before the first one refused by the size check in one call
     * (kq_predict_many: the same numbers as kq_predict per frame); then the
     * checks and messages frame by frame, in the order of a per-frame loop */
    int nok = nm, bad = -1;
    for (int f = 0; f < nm && nok == nm; f++)
        if (d.mols[f].natoms > max_atoms) nok = f;
    int prc = kq_predict_many(&m, nok, d.mols, NULL, pred, NULL, &bad);
    if (!prc) bad = -1;
    for (int f = 0; f < nm; f++) {
        const kq_mol *mo = &d.mols[f];
        qeq_size_check(in, d.xf.frames[f].line, mo->natoms, max_atoms, 0);
        if (f == bad) cli_fail("%s:%d: %s", in, d.xf.frames[f].line, kq_strerror(prc));
        cli_check_finite(pred + 3 * f, 3, in, d.xf.frames[f].line, "the predicted dipole");
        for (int c = 0; c < 3; c++) ref[3 * f + c] = mo->dipole_au[c];
        /* never print a wrong number: this frame's error must be finite */
        double fm, fr;
        kq_dipole_metrics(1, pred + 3 * f, ref + 3 * f, &fm, &fr);
        if (!isfinite(fm) || !isfinite(fr))
            cli_fail("%s:%d: key '%s': the error of the predicted dipole is not finite "
                     "(reference dipole out of range)", in, d.xf.frames[f].line, key);
    }
    double mae, rr;
    kq_dipole_metrics(nm, pred, ref, &mae, &rr);
    /* never print a wrong number (each prediction is finite: kq_predict) */
    if (!isfinite(mae) || !isfinite(rr))
        cli_fail("%s: MAE or RRMSE is not finite (reference dipoles out of range?)", in);
    printf("molecules %d\nMAE_debye %.6f\nRRMSE_percent %.4f\n", nm, mae, rr);
    free(pred);
    free(ref);
    dataset_free(&d);
    kq_model_free(&m);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* kqeq curve                                                                */
/* ------------------------------------------------------------------------ */

/* splitmix64: our own seeded PRNG (bitwise reproducible everywhere). */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform integer in [0, n) by rejection (no modulo bias). */
static int rng_below(uint64_t *s, int n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % (uint64_t)n;
    uint64_t x;
    do x = rng_next(s);
    while (x >= lim);
    return (int)(x % (uint64_t)n);
}

static const char curve_usage[] =
    "usage: kqeq curve --train T.xyz --valid V.xyz --test X.xyz --key KEY\n"
    "                  [--unit au|debye|eA] --sizes 100,200,400 [--draws 3] [--seed 1]\n"
    "                  [--soap ...]... [--species ...] [--sparse M] [--reg GRID] [--fit-eta]\n"
    "                  [-o curve.svg]\n"
    "  Learning curves of kQEq and classical QEq: for each size, --draws random\n"
    "  training subsets (splitmix64 PRNG seeded with --seed, partial Fisher-Yates),\n"
    "  sigma chosen on the validation set, errors on the test set. Prints a table\n"
    "  (mean over draws, +- standard deviation) and writes an SVG plot (log-log).\n"
    "  QEq fits chi per element (and eta with --fit-eta). Positions in angstrom;\n"
    "  MAE in debye.\n"
    "  Other options (--unit default au, --fractional-charge, --max-memory, ...)\n"
    "  as in kqeq train.\n";

typedef struct {
    double mae[2], mae_sd[2], rr[2], rr_sd[2], reg;
} curve_row;

int kqeq_cmd_curve(int argc, char **argv) {
    train_args a;
    train_args_init(&a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(curve_usage, stdout);
            return 0;
        }
        parse_train_opt(&a, argc, argv, &i, "curve");
    }
    if (!a.train || !a.valid || !a.test)
        cli_fail("curve: --train, --valid and --test are required (see kqeq curve --help)");
    if (!a.dipole_key) cli_fail("curve: --key KEY is required");
    if (a.nsizes == 0) cli_fail("curve: --sizes is required, e.g. --sizes 100,200,400");
    {
        const char *ins[3] = {a.train, a.valid, a.test};
        cli_check_output(a.out ? "-o" : "--svg", a.out ? a.out : a.svg, ins, 3);
        cli_check_writable("-o", a.out ? a.out : a.svg);
    }
    double to_au = dipole_unit_to_au(a.dipole_unit);
    progress_ctx pc = {cli_now(), 0.0, "", a.quiet};
    dataset dt, dv, dx;
    dataset_load(&dt, a.train, a.dipole_key, to_au, a.fractional);
    dataset_load(&dv, a.valid, a.dipole_key, to_au, a.fractional);
    dataset_load(&dx, a.test, a.dipole_key, to_au, a.fractional);
    for (int k = 0; k < a.nsizes; k++)
        if (a.sizes[k] > dt.xf.nframes)
            cli_fail("curve: size %.0f exceeds the %d training molecules", a.sizes[k],
                     dt.xf.nframes);
    const dataset *all[3] = {&dt, &dv, &dx};
    default_species(&a, all, 3);
    default_soap(&a);
    if (a.nreg == 0) {
        a.nreg = N_DEFAULT_REG;
        memcpy(a.reg, default_reg, sizeof default_reg);
    }
    kq_model mk, mq;
    make_model(&a, KQ_KIND_KQEQ, &mk);
    make_model(&a, KQ_KIND_QEQ, &mq);
    {
        /* the largest fit: all training atoms, test as the second set */
        size_t ntr = total_atoms(&dt), nv = total_atoms(&dv) + total_atoms(&dx);
        int sp = sparse_for(&a, ntr);
        size_t mrep = sp == 0 || (size_t)sp > ntr ? ntr : (size_t)sp;
        double soap, kern;
        double need = fit_memory(&mk, KQ_KIND_KQEQ, ntr, (size_t)dt.xf.nframes, nv,
                                 (size_t)(dv.xf.nframes + dx.xf.nframes), mrep, &soap, &kern);
        check_memory(&a, "curve", need, soap, kern);
    }
    kq_set st, sv, sx;
    build_set(&mk, &dt, &st, &pc);
    build_set(&mk, &dv, &sv, &pc);
    build_set(&mk, &dx, &sx, &pc);
    int ntr = st.nmol;
    int *perm = malloc((size_t)ntr * sizeof *perm);
    double *px = malloc((size_t)sx.nmol * 3 * sizeof *px);
    curve_row *rows = calloc((size_t)a.nsizes, sizeof *rows);
    if (!perm || !px || !rows) cli_fail("curve: out of memory");
    uint64_t rng = (uint64_t)a.seed;
    printf("# kqeq curve: %d train / %d valid / %d test molecules, %ld draws, seed %ld\n", ntr,
           sv.nmol, sx.nmol, a.draws, a.seed);
    printf("# %8s %16s %16s %14s %14s %10s\n", "size", "kQEq_MAE_D", "QEq_MAE_D", "kQEq_RRMSE_%",
           "QEq_RRMSE_%", "sigma_last");
    for (int si = 0; si < a.nsizes; si++) {
        int size = (int)a.sizes[si];
        double s1[2][2] = {{0}}, s2[2][2] = {{0}};
        for (long dr = 0; dr < a.draws; dr++) {
            /* partial Fisher-Yates: the first `size` entries are the draw */
            for (int i = 0; i < ntr; i++) perm[i] = i;
            for (int i = 0; i < size; i++) {
                int j = i + rng_below(&rng, ntr - i);
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
            size_t natoms = 0;
            for (int i = 0; i < size; i++) natoms += st.first[perm[i] + 1] - st.first[perm[i]];
            kq_train_opts o = {sparse_for(&a, natoms), a.nreg, a.reg};
            for (int kind = 0; kind < 2; kind++) {
                kq_model *m = kind == 0 ? &mk : &mq;
                int rc;
                if (kind == 1 && a.fit_eta) {
                    for (int sp = 0; sp < mq.nspecies; sp++) mq.eta[sp] = 0.0;
                    rc = kq_train_qeq_eta(&mq, dt.xf.nframes, dt.mols, perm, size, 50, NULL, NULL,
                                          NULL);
                } else {
                    rc = kq_train(m, &st, perm, size, &sv, &o, NULL, NULL, NULL);
                }
                if (rc) cli_fail("curve: training (size %d): %s", size, kq_strerror(rc));
                if (kind == 0) {
                    rc = kq_set_predict(m, &sx, px);
                } else {
                    /* QEq: per molecule (its eta may differ from the set's) */
                    for (int k = 0; k < sx.nmol && !rc; k++)
                        rc = kq_predict(m, dx.mols[k].natoms, dx.mols[k].z, dx.mols[k].pos,
                                        dx.mols[k].charge, NULL, px + 3 * k, NULL, NULL);
                }
                if (rc) cli_fail("curve: %s", kq_strerror(rc));
                for (int k = 0; k < sx.nmol; k++)
                    cli_check_finite(px + 3 * k, 3, a.test, dx.xf.frames[k].line,
                                     "the predicted dipole");
                double mae, rr;
                kq_dipole_metrics(sx.nmol, px, sx.dipole_au, &mae, &rr);
                s1[kind][0] += mae;
                s2[kind][0] += mae * mae;
                s1[kind][1] += rr;
                s2[kind][1] += rr * rr;
                if (kind == 0) rows[si].reg = m->reg;
            }
        }
        double nd = (double)a.draws;
        for (int kind = 0; kind < 2; kind++) {
            double mm = s1[kind][0] / nd, mr = s1[kind][1] / nd;
            rows[si].mae[kind] = mm;
            rows[si].rr[kind] = mr;
            /* sample standard deviation over the draws */
            double vm = a.draws > 1 ? (s2[kind][0] - nd * mm * mm) / (nd - 1) : 0.0;
            double vr = a.draws > 1 ? (s2[kind][1] - nd * mr * mr) / (nd - 1) : 0.0;
            rows[si].mae_sd[kind] = sqrt(fmax(0.0, vm));
            rows[si].rr_sd[kind] = sqrt(fmax(0.0, vr));
        }
        printf("  %8d %8.4f+-%.4f %8.4f+-%.4f %14.2f %14.2f %10.0e\n", size, rows[si].mae[0],
               rows[si].mae_sd[0], rows[si].mae[1], rows[si].mae_sd[1], rows[si].rr[0],
               rows[si].rr[1], rows[si].reg);
        fflush(stdout);
    }
    if (a.out || a.svg) {
        const char *path = a.out ? a.out : a.svg;
        svg_series ser[2];
        double xs[64], y0[64], e0[64], y1[64], e1[64], r0[64], f0[64], r1[64], f1[64];
        for (int si = 0; si < a.nsizes; si++) {
            xs[si] = a.sizes[si];
            y0[si] = rows[si].mae[0];
            e0[si] = rows[si].mae_sd[0];
            y1[si] = rows[si].mae[1];
            e1[si] = rows[si].mae_sd[1];
            r0[si] = rows[si].rr[0];
            f0[si] = rows[si].rr_sd[0];
            r1[si] = rows[si].rr[1];
            f1[si] = rows[si].rr_sd[1];
        }
        cli_buf svg = {0};
        char title[256];
        snprintf(title, sizeof title,
                 "Learning curves (%d test molecules, mean and s.d. of %ld draws)", sx.nmol,
                 a.draws);
        svg_begin(&svg, 2);
        ser[0] = (svg_series){"kQEq", "#1f77b4", a.nsizes, xs, y0, e0};
        ser[1] = (svg_series){"QEq", "#d62728", a.nsizes, xs, y1, e1};
        svg_loglog(&svg, 0, title, "training molecules", "MAE of |\xce\xbc| (D)", ser, 2);
        ser[0] = (svg_series){"kQEq", "#1f77b4", a.nsizes, xs, r0, f0};
        ser[1] = (svg_series){"QEq", "#d62728", a.nsizes, xs, r1, f1};
        svg_loglog(&svg, 1, "", "training molecules", "RRMSE (%)", ser, 2);
        svg_end(&svg);
        char err[1024];
        if (cli_write_atomic(path, svg.s, svg.len, err, sizeof err)) cli_fail("%s", err);
        cli_buf_free(&svg);
        if (!a.quiet) fprintf(stderr, "kqeq: wrote %s\n", path);
    }
    free(perm);
    free(px);
    free(rows);
    kq_set_free(&st);
    kq_set_free(&sv);
    kq_set_free(&sx);
    kq_model_free(&mk);
    kq_model_free(&mq);
    dataset_free(&dt);
    dataset_free(&dv);
    dataset_free(&dx);
    return 0;
}
