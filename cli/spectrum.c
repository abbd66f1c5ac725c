/* SPDX-License-Identifier: MIT */
/* spectrum - IR and Raman spectra from an extended XYZ trajectory (spectra.c),
 * with dipoles / polarizabilities from a per-frame key or predicted frame by
 * frame by an EANN or kQEq model. Frames are read one at a time
 * (xyz_stream_*), so memory is the series (3 or 9 numbers per frame), not the
 * trajectory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "eann.h"
#include "kqeq.h"
#include "spectra.h"
#include "spectrum_svg.h"
#include "xyz.h"

static const char usage[] =
    "usage: spectrum ir    TRAJ.xyz [--dt FS] (--key KEY [--unit au|debye|eA] | -m MODEL) [options] -o OUT.tsv\n"
    "       spectrum raman TRAJ.xyz [--dt FS] (--key KEY [--unit au|A3] | -m MODEL) [options] -o OUT.tsv\n"
    "\n"
    "TRAJ.xyz: extended XYZ trajectory, equally spaced frames, positions in angstrom.\n"
    "  --dt FS             time step between frames in fs. Without it every frame needs a key\n"
    "                      'dt' (fs, all equal) or 'time' (fs, equally spaced); with it such keys\n"
    "                      must agree (relative 1e-6).\n"
    "  --key KEY           per-frame key holding the dipole (ir: 3 numbers) or the\n"
    "                      polarizability (raman: 9 numbers, row-major 3x3)\n"
    "  --unit U            unit of the KEY values (or of the model's outputs):\n"
    "                      ir: au = e*bohr (default), debye, eA = e*angstrom;\n"
    "                      raman: au = bohr^3 (e^2 bohr^2/hartree, default), A3 = angstrom^3\n"
    "  -m MODEL            predict every frame with a model, kind read from the file: EANN\n"
    "                      (EANN_TEXT_V1; ir: a dipole model, raman: a polarizability model) or\n"
    "                      kQEq (KQEQ_MODEL_V1: dipole, or polarizability R A R^T); total charge\n"
    "                      from a frame key 'charge' if present, else 0\n"
    "  --temperature K     temperature (default 300): ir absolute intensities and quantum\n"
    "                      correction, raman Bose factor (0 switches the Bose factor off)\n"
    "  --correction Q      ir quantum correction factor (Ramirez et al., J. Chem. Phys. 121,\n"
    "                      3973 (2004)): harmonic (default; = the classical omega^2 spectrum),\n"
    "                      standard, schofield, none\n"
    "  --excitation NM     raman: excitation wavelength in nm, multiplies by ((nu0-nu)/nu0)^4\n"
    "                      (default: off)\n"
    "  --window W          lag window on the autocorrelation: hann (default), blackman, none\n"
    "  --max-wavenumber X  last row of the output, cm^-1 (default 4000)\n"
    "  --svg FILE          labelled plot of the spectrum\n"
    "  -o OUT.tsv          output (written atomically; '-' = stdout)\n"
    "\n"
    "Output: '#' header lines (input, units, window, correction, resolution 1/(N dt)), the\n"
    "last one naming the columns, then one row per wavenumber (grid spacing 1/(2 N dt)):\n"
    "  ir:    wavenumber (cm^-1), absorption in km mol^-1 per cm^-1: a band's integral\n"
    "         over wavenumber is its IR intensity in km/mol (harmonic-comparable)\n"
    "  raman: wavenumber (cm^-1), isotropic, anisotropic, total = iso + 7/4 aniso, in\n"
    "         bohr^6 per cm^-1 (iso + aniso: parallel-polarised, total: natural light at\n"
    "         90 degrees, proportional to 45 a'^2 + 7 gamma'^2), Stokes side\n"
    "Units: 1 THz = 33.356 cm^-1; nu~ [cm^-1] = f [fs^-1] / 2.99792458e-5.\n";

typedef struct {
    int raman;
    const char *traj, *key, *unit, *model, *svg, *out;
    double dt, temperature, excitation, max_wn;
    int window, qcf, have_dt;
} opts;

static void parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->temperature = 300;
    o->max_wn = 4000;
    o->window = SPECTRA_WINDOW_HANN;
    o->qcf = SPECTRA_QCF_HARMONIC;
    if (argc >= 2 && cli_print_version("spectrum", argv[1])) exit(cli_exit(0));
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        exit(argc < 2 ? 1 : 0);
    }
    if (!strcmp(argv[1], "raman")) o->raman = 1;
    else if (strcmp(argv[1], "ir")) cli_fail("unknown command '%s' (ir or raman; see spectrum --help)", argv[1]);
    int have_corr = 0, have_exc = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (a[0] == '-' && a[1] != '\0') {
            if (i + 1 >= argc) cli_fail("%s needs a value (see spectrum --help)", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--dt")) {
                o->dt = cli_parse_double(a, v);
                if (!(o->dt > 0)) cli_fail("--dt: '%s' is not a positive time step (fs)", v);
                o->have_dt = 1;
            } else if (!strcmp(a, "--key")) o->key = v;
            else if (!strcmp(a, "--unit")) o->unit = v;
            else if (!strcmp(a, "-m")) o->model = v;
            else if (!strcmp(a, "--svg")) o->svg = v;
            else if (!strcmp(a, "-o")) o->out = v;
            else if (!strcmp(a, "--temperature")) {
                o->temperature = cli_parse_double(a, v);
                if (o->temperature < 0) cli_fail("--temperature: '%s' is negative", v);
            } else if (!strcmp(a, "--excitation")) {
                o->excitation = cli_parse_double(a, v);
                if (!(o->excitation > 0)) cli_fail("--excitation: '%s' is not a positive wavelength (nm)", v);
                have_exc = 1;
            } else if (!strcmp(a, "--max-wavenumber")) {
                o->max_wn = cli_parse_double(a, v);
                if (!(o->max_wn > 0)) cli_fail("--max-wavenumber: '%s' is not positive", v);
            } else if (!strcmp(a, "--window")) {
                o->window = spectra_window_parse(v);
                if (o->window < 0) cli_fail("--window must be hann, blackman or none, not '%s'", v);
            } else if (!strcmp(a, "--correction")) {
                o->qcf = spectra_qcf_parse(v);
                if (o->qcf < 0) cli_fail("--correction must be harmonic, standard, schofield or none, not '%s'", v);
                have_corr = 1;
            } else cli_fail("unknown option '%s' (see spectrum --help)", a);
        } else {
            if (o->traj) cli_fail("more than one trajectory ('%s', '%s')", o->traj, a);
            o->traj = a;
        }
    }
    if (!o->traj) cli_fail("no trajectory file (see spectrum --help)");
    if (!o->out) cli_fail("-o OUT.tsv is required (see spectrum --help)");
    if (!o->key == !o->model) cli_fail("give exactly one of --key KEY and -m MODEL (see spectrum --help)");
    if (o->raman && have_corr) cli_fail("--correction is for ir (raman uses the Bose factor at --temperature)");
    if (!o->raman && have_exc) cli_fail("--excitation is for raman");
    if (!o->raman && !(o->temperature > 0)) cli_fail("ir needs --temperature > 0 K");
    if (o->svg && o->out && !strcmp(o->svg, o->out) && strcmp(o->out, "-"))
        cli_fail("--svg and -o name the same file '%s'", o->out);
    if (o->traj && o->out && !strcmp(o->traj, o->out)) cli_fail("-o would overwrite the trajectory '%s'", o->traj);
    if (o->model && o->out && !strcmp(o->model, o->out)) cli_fail("-o would overwrite the model '%s'", o->model);
}

/* factor from the --unit to atomic units */
static double unit_factor(const opts *o) {
    const char *u = o->unit ? o->unit : "au";
    if (!strcmp(u, "au")) return 1.0;
    if (!o->raman && !strcmp(u, "debye")) return 1.0 / SPECTRA_DEBYE_PER_AU;
    if (!o->raman && !strcmp(u, "eA")) return 1.0 / SPECTRA_EA_PER_AU;
    if (o->raman && !strcmp(u, "A3")) return 1.0 / SPECTRA_A3_PER_AU;
    cli_fail("--unit for %s must be %s, not '%s'", o->raman ? "raman" : "ir",
             o->raman ? "au or A3" : "au, debye or eA", u);
}

/* ---- models ---- */
typedef struct {
    eann_model *eann;
    eann_work *work;
    int work_atoms;
    int *species;
    kq_model kq;
    int is_kq;
    char desc[128];
} model;

static void model_load(const opts *o, model *md) {
    memset(md, 0, sizeof *md);
    char err[1024];
    size_t len;
    char *text = cli_read_file(o->model, &len, err, sizeof err);
    if (!text) cli_fail("%s", err);
    if (!strncmp(text, "EANN_TEXT", 9)) {
        eann_parse_error pe;
        int rc = eann_model_parse(text, len, &md->eann, &pe);
        free(text);
        if (rc) {
            if (pe.line > 0) cli_fail("%s:%d: %s", o->model, pe.line, pe.msg);
            cli_fail("%s: %s", o->model, pe.msg[0] ? pe.msg : eann_strerror(rc));
        }
        int want = o->raman ? EANN_POLARIZABILITY : EANN_DIPOLE;
        if (md->eann->spec.kind != want)
            cli_fail("%s: an EANN %s model; spectrum %s needs a %s model", o->model,
                     eann_kind_name(md->eann->spec.kind), o->raman ? "raman" : "ir", eann_kind_name(want));
        snprintf(md->desc, sizeof md->desc, "EANN %s model", eann_kind_name(want));
    } else if (!strncmp(text, "KQEQ_MODEL", 10)) {
        int line = 0;
        char msg[512] = "";
        int rc = kq_model_read_msg(text, len, &md->kq, &line, msg, sizeof msg);
        free(text);
        if (rc) cli_fail("%s:%d: %s", o->model, line, msg[0] ? msg : "not a valid kQEq model");
        md->is_kq = 1;
        snprintf(md->desc, sizeof md->desc, "%s model (%s)", md->kq.kind == KQ_KIND_QEQ ? "QEq" : "kQEq",
                 o->raman ? "polarizability R A R^T" : "dipole");
    } else {
        free(text);
        cli_fail("%s:1: not an EANN (EANN_TEXT_V1) or kQEq (KQEQ_MODEL_V1) model", o->model);
    }
}

/* One frame's dipole [3] or polarizability [9], in the model's units. */
static void model_predict(const opts *o, model *md, const xyz_frame *fr, double *out) {
    if (md->is_kq) {
        double charge = 0;
        const xyz_info *ci = xyz_find_info(fr, "charge");
        if (ci && ci->num && ci->n == 1) charge = ci->num[0];
        int rc = kq_predict(&md->kq, fr->natoms, fr->z, fr->pos, charge, NULL, o->raman ? NULL : out,
                            o->raman ? out : NULL, NULL);
        if (rc) cli_fail("%s:%d: the kQEq model cannot predict this frame (error %d: unknown element or bad geometry)",
                         o->traj, fr->line, rc);
        return;
    }
    if (fr->natoms > md->work_atoms) {
        eann_work_free(md->work);
        free(md->species);
        md->species = malloc(sizeof(int) * (size_t)fr->natoms);
        if (!md->species || eann_work_new(md->eann, fr->natoms, &md->work)) cli_fail("out of memory");
        md->work_atoms = fr->natoms;
    }
    for (int i = 0; i < fr->natoms; i++) {
        const char *sym = xyz_z_to_symbol(fr->z[i]);
        int s = eann_species_index(md->eann, sym ? sym : "");
        if (s < 0) cli_fail("%s:%d: element %s is not in model %s", o->traj, fr->line + 2 + i, sym ? sym : "?", o->model);
        md->species[i] = s;
    }
    int rc = eann_predict(md->eann, md->work, fr->natoms, md->species, fr->pos, out);
    if (rc) cli_fail("%s:%d: %s", o->traj, fr->line, eann_strerror(rc));
}

static void model_free(model *md) {
    if (md->is_kq) kq_model_free(&md->kq);
    eann_work_free(md->work);
    eann_model_free(md->eann);
    free(md->species);
}

/* ---- the series ---- */
typedef struct {
    double *v;        /* [n][ncomp] atomic units */
    size_t n, cap;
    int ncomp;
    double dt;        /* fs, from the frames' time / dt keys (0 if none) */
    int keys;         /* time (1) and dt (2) keys of the first frame: every frame must have the same */
} series;

/* Time keys: 'dt' must be equal in every frame, 'time' equally spaced. */
static void check_time(const opts *o, const xyz_frame *fr, size_t k, double *t0, double *dtk, series *s) {
    const xyz_info *ti = xyz_find_info(fr, "time"), *di = xyz_find_info(fr, "dt");
    double dt = 0;
    const int cur = (ti ? 1 : 0) | (di ? 2 : 0); /* every frame has the keys of the first */
    if (k == 0) s->keys = cur;
    else if (cur != s->keys) {
        int bit = ((cur ^ s->keys) & 1) ? 1 : 2;
        cli_fail("%s:%d: key '%s' is %s", o->traj, fr->line + 1, bit == 1 ? "time" : "dt",
                 (s->keys & bit) ? "missing in this frame (the first frame has it)" : "in this frame but not in the first");
    }
    if (di) {
        if (!di->num || di->n != 1 || !(di->num[0] > 0))
            cli_fail("%s:%d: key 'dt' must be one positive number (fs)", o->traj, fr->line + 1);
        dt = di->num[0];
    }
    if (ti) {
        if (!ti->num || ti->n != 1) cli_fail("%s:%d: key 'time' must be one number (fs)", o->traj, fr->line + 1);
        if (k == 0) *t0 = ti->num[0];
        else {
            double step = (ti->num[0] - *t0) / (double)k;
            if (!(step > 0)) cli_fail("%s:%d: key 'time' does not increase (%.17g after %.17g)", o->traj, fr->line + 1,
                                      ti->num[0], *t0);
            if (k == 1) *dtk = step;
            /* equal spacing: time_k = t0 + k dt, to 1e-6 of dt */
            if (fabs(ti->num[0] - (*t0 + (double)k * *dtk)) > 1e-6 * *dtk)
                cli_fail("%s:%d: frames are not equally spaced in 'time': %.17g fs, expected %.17g (step %.17g fs)",
                         o->traj, fr->line + 1, ti->num[0], *t0 + (double)k * *dtk, *dtk);
            if (!di) dt = *dtk;
        }
    }
    if (dt > 0) {
        if (s->dt == 0) s->dt = dt;
        else if (fabs(dt - s->dt) > 1e-6 * s->dt)
            cli_fail("%s:%d: time step %.17g fs differs from %.17g fs of the earlier frames", o->traj, fr->line + 1, dt,
                     s->dt);
        if (o->have_dt && fabs(dt - o->dt) > 1e-6 * o->dt)
            cli_fail("%s:%d: the frame's time step %.17g fs differs from --dt %.17g fs", o->traj, fr->line + 1, dt,
                     o->dt);
    }
}

static void read_series(const opts *o, model *md, series *s) {
    char err[1024];
    xyz_stream *st;
    if (xyz_stream_open(o->traj, &st, err, sizeof err)) cli_fail("%s", err);
    const double uf = unit_factor(o);
    s->ncomp = o->raman ? 9 : 3;
    double t0 = 0, dtk = 0, t_start = cli_now(), t_last = t_start;
    xyz_frame fr;
    int rc;
    while ((rc = xyz_stream_next(st, &fr, err, sizeof err)) == 1) {
        if (s->n == s->cap) {
            size_t nc = s->cap ? 2 * s->cap : 1024;
            double *nv = realloc(s->v, nc * (size_t)s->ncomp * sizeof *nv);
            if (!nv) cli_fail("out of memory");
            s->v = nv;
            s->cap = nc;
        }
        double *out = s->v + s->n * (size_t)s->ncomp;
        cli_check_frame(&fr, o->traj);
        check_time(o, &fr, s->n, &t0, &dtk, s);
        if (o->key) {
            if (xyz_get_info_real(&fr, o->traj, o->key, s->ncomp, out, err, sizeof err)) cli_fail("%s", err);
        } else model_predict(o, md, &fr, out);
        for (int c = 0; c < s->ncomp; c++) {
            out[c] *= uf;
            if (!isfinite(out[c])) cli_fail("%s:%d: the %s is not finite", o->traj, fr.line, o->key ? o->key : "prediction");
        }
        s->n++;
        xyz_frame_free(&fr);
        double now = cli_now();
        if (now - t_last > 2.0) {
            long long sz = xyz_stream_size(st);
            if (sz > 0)
                fprintf(stderr, "spectrum: %zu frames read (%.0f %%, %.1f s)\n", s->n,
                        100.0 * (double)xyz_stream_bytes(st) / (double)sz, now - t_start);
            else fprintf(stderr, "spectrum: %zu frames read (%.1f s)\n", s->n, now - t_start);
            t_last = now;
        }
    }
    if (rc < 0) cli_fail("%s", err);
    xyz_stream_close(st);
    if (s->n < 2) cli_fail("%s: %zu frame; a spectrum needs at least 2 frames", o->traj, s->n);
}

/* ---- bands: maxima above 10 % of the largest value in [400, max] cm^-1, each
 * the largest value within +-w cm^-1 (w = max(10 cm^-1, 3 grid spacings)) ---- */
int spectrum_bands(const double *nu, const double *y, size_t n1, double lo, double hi, int maxb, double *pos) {
    double ymax = 0;
    for (size_t m = 0; m < n1; m++)
        if (nu[m] >= lo && nu[m] <= hi && y[m] > ymax) ymax = y[m];
    double d = n1 > 1 ? nu[1] - nu[0] : 1;
    double w = fmax(10.0, 3 * d);
    size_t hw = (size_t)ceil(w / d);
    int nb = 0;
    for (size_t m = 0; m < n1 && nb < maxb; m++) {
        if (nu[m] < lo || nu[m] > hi || !(y[m] > 0.1 * ymax)) continue;
        int best = 1;
        for (size_t j = m > hw ? m - hw : 0; j <= m + hw && j < n1 && best; j++)
            if (y[j] > y[m] || (y[j] == y[m] && j < m)) best = 0;
        if (best) pos[nb++] = nu[m];
    }
    return nb;
}

/* Outputs go through cli_write_atomic: a regular file is replaced atomically
 * (temporary file + rename); an existing device or FIFO (/dev/null, a pipe) is
 * written in place; "-" and /dev/stdout are standard output (cli/common.c). */
static void write_output(const char *path, const char *data, size_t len) {
    char err[1024];
    if (cli_write_atomic(path, data, len, err, sizeof err)) cli_fail("%s", err);
}

int main(int argc, char **argv) {
    cli_set_prog("spectrum");
    opts o;
    parse_opts(argc, argv, &o);
    model md;
    memset(&md, 0, sizeof md);
    if (o.model) model_load(&o, &md);
    series s;
    memset(&s, 0, sizeof s);
    read_series(&o, &md, &s);
    double dt = o.have_dt ? o.dt : s.dt;
    if (!(dt > 0)) cli_fail("%s: no time step: give --dt FS (or a 'time' / 'dt' key in every frame)", o.traj);

    size_t n = s.n;
    double *nu = malloc((n + 1) * sizeof *nu), *y1 = malloc((n + 1) * sizeof *y1);
    double *y2 = o.raman ? malloc((n + 1) * sizeof *y2) : NULL, *y3 = o.raman ? malloc((n + 1) * sizeof *y3) : NULL;
    if (!nu || !y1 || (o.raman && (!y2 || !y3))) cli_fail("out of memory");
    int rc = o.raman ? spectra_raman(s.v, n, dt, o.temperature, o.excitation, o.window, nu, y1, y2, y3)
                     : spectra_ir(s.v, n, dt, o.temperature, o.window, o.qcf, nu, y1);
    if (rc) cli_fail("%s: %s", o.traj, spectra_strerror(rc));

    size_t rows = 0;
    while (rows <= n && nu[rows] <= o.max_wn * (1 + 1e-12)) rows++;
    double bands[64];
    int nb = spectrum_bands(nu, o.raman ? y3 : y1, rows, 400, o.max_wn, 64, bands);

    cli_buf b = {0};
    const char *src = o.key ? o.key : o.model;
    cli_buf_printf(&b, "# spectrum %s: %s, %zu frames, dt %.17g fs (%s), %.6g fs in all\n", o.raman ? "raman" : "ir",
                   o.traj, n, dt, o.have_dt ? "--dt" : "frame keys", dt * (double)n);
    if (o.key)
        cli_buf_printf(&b, "# %s from key '%s' in %s (converted to atomic units)\n",
                       o.raman ? "polarizabilities" : "dipoles", src, o.unit ? o.unit : "au");
    else cli_buf_printf(&b, "# %s predicted by %s %s (outputs taken as %s)\n", o.raman ? "polarizabilities" : "dipoles",
                        md.desc, o.model, o.unit ? o.unit : "au");
    cli_buf_printf(&b, "# window %s on the lag (unbiased mean-removed autocorrelation); resolution 1/(N dt) = %.6g "
                       "cm^-1, grid spacing %.6g cm^-1, Nyquist %.6g cm^-1\n",
                   spectra_window_name(o.window), spectra_resolution_cm(n, dt), nu[1] - nu[0], nu[n]);
    if (o.raman) {
        if (o.temperature > 0)
            cli_buf_printf(&b, "# Stokes side: Bose factor x/(1-exp(-x)), x = hc nu/kT, temperature %.6g K\n",
                           o.temperature);
        else cli_buf_printf(&b, "# Bose factor off (--temperature 0): classical spectrum\n");
        if (o.excitation > 0)
            cli_buf_printf(&b, "# excitation %.6g nm (nu0 %.6g cm^-1): factor ((nu0-nu)/nu0)^4\n", o.excitation,
                           1e7 / o.excitation);
        else cli_buf_printf(&b, "# excitation factor off (no --excitation)\n");
        cli_buf_printf(&b, "# iso = FT<a a>, aniso = (2/15) FT<tr beta beta>, total = iso + 7/4 aniso (a = tr alpha/3, "
                           "beta = alpha - a 1)\n");
    } else {
        cli_buf_printf(&b, "# temperature %.6g K; quantum correction %s (Ramirez et al., J. Chem. Phys. 121, 3973 "
                           "(2004)); a band's integral over wavenumber is its intensity in km/mol\n",
                       o.temperature, spectra_qcf_name(o.qcf));
    }
    cli_buf_printf(&b, "# bands (maxima above 10 %% of the largest in 400-%.6g cm^-1):", o.max_wn);
    for (int i = 0; i < nb; i++) cli_buf_printf(&b, " %.1f", bands[i]);
    cli_buf_printf(&b, "\n");
    if (o.raman)
        cli_buf_printf(&b, "# wavenumber_cm-1\tiso_bohr6_per_cm-1\taniso_bohr6_per_cm-1\ttotal_bohr6_per_cm-1\n");
    else cli_buf_printf(&b, "# wavenumber_cm-1\tir_km_mol-1_per_cm-1\n");
    for (size_t m = 0; m < rows; m++) {
        /* + 0.0: no "-0" (omega^2 = 0 times a negative density at nu = 0) */
        if (o.raman) cli_buf_printf(&b, "%.6f\t%.10g\t%.10g\t%.10g\n", nu[m], y1[m] + 0.0, y2[m] + 0.0, y3[m] + 0.0);
        else cli_buf_printf(&b, "%.6f\t%.10g\n", nu[m], y1[m] + 0.0);
    }
    if (o.svg) {
        cli_buf svg = {0};
        char title[512];
        snprintf(title, sizeof title, "%s spectrum of %s (%s; %zu frames, dt %g fs, %s window)",
                 o.raman ? "Raman" : "IR", o.traj, o.key ? o.key : md.desc, n, dt, spectra_window_name(o.window));
        const double *ys[3] = {o.raman ? y3 : y1, y1, y2};
        const char *names[3] = {o.raman ? "total" : "IR", "isotropic", "anisotropic"};
        spectrum_svg(&svg, title, o.raman ? "Raman intensity (bohr^6 per cm^-1)" : "absorption (km/mol per cm^-1)",
                     nu, ys, names, o.raman ? 3 : 1, rows, bands, nb);
        write_output(o.svg, svg.s, svg.len);
        cli_buf_free(&svg);
    }
    write_output(o.out, b.s, b.len);
    fprintf(stderr, "spectrum: %zu frames, dt %g fs, resolution %.4g cm^-1; bands:", n, dt,
            spectra_resolution_cm(n, dt));
    for (int i = 0; i < nb; i++) fprintf(stderr, " %.1f", bands[i]);
    fprintf(stderr, " cm^-1\n");
    cli_buf_free(&b);
    free(nu); free(y1); free(y2); free(y3); free(s.v);
    model_free(&md);
    return 0;
}
