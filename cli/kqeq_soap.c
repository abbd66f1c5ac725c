/* SPDX-License-Identifier: MIT */
/* kqeq_soap.c - `kqeq soap`: raw SOAP vectors (specs/soap.md) of every atom
 * of every frame of an XYZ file, one line per atom, or with --repeat K the
 * mean time per atom of K computations of the whole file. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kqeq.h"
#include "kqeq_cmds.h"
#include "xyz.h"

static const char soap_usage[] =
    "usage: kqeq soap --rcut R --nmax N --lmax L [--sigma S] --species H,C,N,O\n"
    "                 [--repeat K] [--simd auto|portable|avx2|avx512] FILE.xyz\n"
    "  Raw (unnormalised) SOAP power spectra as DScribe defines them (rbf 'gto',\n"
    "  no periodicity, every atom a centre; ../shared/specs/soap.md).\n"
    "  Prints one line per atom (all frames in file order), values %.17g.\n"
    "  --rcut R      cutoff radius in angstrom, > 1\n"
    "  --nmax N      radial basis functions, 1..64 (KQ_SOAP_MAX_NMAX)\n"
    "  --lmax L      maximum angular momentum, 0..20\n"
    "  --sigma S     Gaussian width in angstrom, >= 0.001 (default rcut/8)\n"
    "  --species L   comma-separated element symbols (any order; sorted by Z)\n"
    "  --repeat K    compute the whole file K times and print only timings,\n"
    "                processor-time microseconds per atom: 'us_per_atom X' (the\n"
    "                mean of the K passes), 'first_us_per_atom F' (the first pass:\n"
    "                the first call's cost included) and, if K >= 2,\n"
    "                'min_us_per_atom M' (the fastest of passes 2..K, as the\n"
    "                benchmark's peers are timed)\n"
    "  --simd M      inner-loop instruction set (default auto: AVX-512, else\n"
    "                AVX2, where the CPU has it); every choice gives the same bits\n";

/* "H,C,N,O" -> atomic numbers; cli_fail()s on a bad list. */
static void parse_species(const char *arg, kq_soap_params *p) {
    char buf[256];
    if (strlen(arg) >= sizeof buf) cli_fail("--species: list too long");
    strcpy(buf, arg);
    p->nspecies = 0;
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        int z = xyz_symbol_to_z(tok);
        if (z == 0) cli_fail("--species: unknown element '%s'", tok);
        for (int i = 0; i < p->nspecies; i++)
            if (p->species[i] == z) cli_fail("--species: '%s' given twice", tok);
        if (p->nspecies == KQ_MAX_SPECIES)
            cli_fail("--species: more than %d elements", KQ_MAX_SPECIES);
        p->species[p->nspecies++] = z;
    }
}

/* One line per atom: values %.17g separated by single spaces, formatted into
 * a 64 kB buffer that is written whole. Exact zeros (most of the vector when
 * species are absent) are copied as the "0" / "-0" that %.17g prints for
 * them, without a call to snprintf: the same bytes, several times faster.
 * A failed write stops the program with the system's reason (a full disk). */
static void put_bytes(const char *buf, size_t n) {
    if (fwrite(buf, 1, n, stdout) != n)
        cli_fail("standard output: write error: %s", strerror(errno));
}
static void print_rows(const double *v, int natoms, size_t len) {
    static char buf[1 << 16];
    size_t used = 0;
    for (int i = 0; i < natoms; i++) {
        const double *row = v + (size_t)i * len;
        for (size_t t = 0; t <= len; t++) {
            if (used > sizeof buf - 64) { /* room for the longest number, ~25 bytes */
                put_bytes(buf, used);
                used = 0;
            }
            if (t == len) {
                buf[used++] = '\n';
            } else if (row[t] == 0.0) {
                if (t) buf[used++] = ' ';
                if (signbit(row[t])) buf[used++] = '-';
                buf[used++] = '0';
            } else {
                used += (size_t)snprintf(buf + used, 64, t ? " %.17g" : "%.17g", row[t]);
            }
        }
    }
    put_bytes(buf, used);
}

int kqeq_cmd_soap(int argc, char **argv) {
    kq_soap_params p;
    memset(&p, 0, sizeof p);
    int have_rcut = 0, have_nmax = 0, have_lmax = 0;
    long repeat = 0;
    int simd = KQ_SIMD_AUTO;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(soap_usage, stdout);
            return 0;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) cli_fail("soap: %s needs a value (see kqeq soap --help)", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--rcut")) {
                p.rcut = cli_parse_double(a, v);
                if (!(p.rcut > 1.0)) cli_fail("--rcut: must be > 1 angstrom, got '%s'", v);
                have_rcut = 1;
            } else if (!strcmp(a, "--nmax")) {
                p.nmax = (int)cli_parse_long(a, v, 1, KQ_SOAP_MAX_NMAX);
                have_nmax = 1;
            } else if (!strcmp(a, "--lmax")) {
                p.lmax = (int)cli_parse_long(a, v, 0, KQ_MAX_LMAX);
                have_lmax = 1;
            } else if (!strcmp(a, "--sigma")) {
                p.sigma = cli_parse_double(a, v);
                /* far smaller widths overflow 1/sigma^2 inside the basis
                 * (NaN descriptors at 1e-100); nothing physical needs them */
                if (!(p.sigma >= KQ_SOAP_MIN_SIGMA))
                    cli_fail("--sigma: must be >= %g angstrom, got '%s'", KQ_SOAP_MIN_SIGMA, v);
            } else if (!strcmp(a, "--species")) {
                parse_species(v, &p);
            } else if (!strcmp(a, "--simd")) {
                if (!strcmp(v, "auto")) simd = KQ_SIMD_AUTO;
                else if (!strcmp(v, "portable")) simd = KQ_SIMD_PORTABLE;
                else if (!strcmp(v, "avx2")) simd = KQ_SIMD_AVX2;
                else if (!strcmp(v, "avx512")) simd = KQ_SIMD_AVX512;
                else cli_fail("--simd: expected auto, portable, avx2 or avx512, got '%s'", v);
            } else if (!strcmp(a, "--repeat")) {
                repeat = cli_parse_long(a, v, 1, 100000000);
            } else {
                cli_fail("soap: unknown option '%s' (see kqeq soap --help)", a);
            }
        } else {
            if (file) cli_fail("soap: more than one input file ('%s', '%s')", file, a);
            file = a;
        }
    }
    if (!have_rcut || !have_nmax || !have_lmax || p.nspecies == 0)
        cli_fail("soap: --rcut, --nmax, --lmax and --species are required (see kqeq soap --help)");
    if (!file) cli_fail("soap: no input file (see kqeq soap --help)");

    kq_soap *s = NULL;
    int rc = kq_soap_new(&p, &s);
    if (rc) cli_fail("soap: SOAP parameters: %s", kq_strerror(rc));
    if (kq_soap_set_simd(s, simd) != KQ_OK)
        cli_fail("--simd: this build or CPU has no %s path", simd == KQ_SIMD_AVX2 ? "AVX2" : "AVX-512");

    xyz_file xf;
    cli_read_xyz(file, &xf);

    /* Check every frame first, so that a bad frame gives no output at all. */
    int maxat = 0;
    long total_atoms = 0;
    for (int f = 0; f < xf.nframes; f++) {
        const xyz_frame *fr = &xf.frames[f];
        for (int i = 0; i < fr->natoms; i++) {
            int t = 0;
            while (t < p.nspecies && p.species[t] != fr->z[i]) t++;
            if (t == p.nspecies) {
                const char *sym = xyz_z_to_symbol(fr->z[i]);
                cli_fail("%s:%d: element %s (atom %d of the frame) is not in --species", file,
                         fr->line, sym ? sym : "?", i + 1);
            }
        }
        rc = kq_soap_check(s, fr->natoms, fr->z, fr->pos);
        if (rc == KQ_EOVERLAP) { /* name the pair (error path only, so O(N^2) is fine) */
            for (int i = 0; i < fr->natoms; i++)
                for (int j = i + 1; j < fr->natoms; j++) {
                    const double *a = fr->pos + 3 * i, *b = fr->pos + 3 * j;
                    double d2 = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) +
                                (a[2] - b[2]) * (a[2] - b[2]);
                    if (d2 < 1e-12)
                        cli_fail("%s:%d: atoms %d and %d of the frame are closer than 1e-6 "
                                 "angstrom", file, fr->line, i + 1, j + 1);
                }
        }
        if (rc) cli_fail("%s:%d: %s", file, fr->line, kq_strerror(rc));
        if (fr->natoms > maxat) maxat = fr->natoms;
        total_atoms += fr->natoms;
    }
    size_t len = kq_soap_length(s);
    size_t rows = (size_t)(maxat > 0 ? maxat : 1);
    if (len > SIZE_MAX / sizeof(double) / rows)
        cli_fail("soap: %d atoms x %zu values do not fit in memory", maxat, len);
    double *out = malloc(rows * len * sizeof(double));
    if (!out) cli_fail("soap: out of memory for %d atoms x %zu values", maxat, len);

    if (repeat > 0) {
        /* Touch every page of the output array before the clock starts: the
         * array is the caller's (allocated once and reused, as kqeq train
         * does), and the first touch of fresh memory costs page faults (about
         * 4 ms per MB on a virtual machine, 30 MB for 1000 atoms) that are no
         * SOAP work; the library's own first-call cost stays in the figure.
         * (Filled with 0xff bytes, not 0: malloc + memset 0 may become calloc,
         * which touches nothing.) */
        memset(out, 0xff, rows * len * sizeof(double));
        /* processor time of this process (not wall time), so that the figure
         * stays meaningful on a machine shared with other jobs; each pass over
         * the file timed on its own (first, fastest of the rest, total) */
        const double t0 = cli_cpu_now();
        double tp = t0, first = 0.0, best = HUGE_VAL;
        for (long r = 0; r < repeat; r++) {
            for (int f = 0; f < xf.nframes; f++) {
                const xyz_frame *fr = &xf.frames[f];
                rc = kq_soap_compute(s, fr->natoms, fr->z, fr->pos, out);
                if (rc) cli_fail("%s:%d: %s", file, fr->line, kq_strerror(rc));
            }
            const double t = cli_cpu_now();
            if (r == 0) first = t - tp;
            else if (t - tp < best) best = t - tp;
            tp = t;
        }
        const double us = total_atoms > 0 ? 1e6 / (double)total_atoms : 0.0;
        printf("us_per_atom %.3f\n", (tp - t0) * us / (double)repeat);
        printf("first_us_per_atom %.3f\n", first * us);
        if (repeat >= 2) printf("min_us_per_atom %.3f\n", best * us);
    } else {
        for (int f = 0; f < xf.nframes; f++) {
            const xyz_frame *fr = &xf.frames[f];
            rc = kq_soap_compute(s, fr->natoms, fr->z, fr->pos, out);
            if (rc) cli_fail("%s:%d: %s", file, fr->line, kq_strerror(rc));
            /* never print a wrong number: a non-finite value means settings
             * outside the range the basis handles */
            for (size_t t = 0; t < (size_t)fr->natoms * len; t++)
                if (!isfinite(out[t]))
                    cli_fail("%s:%d: SOAP value %zu of atom %zu of the frame is not finite "
                             "(--rcut/--nmax/--lmax/--sigma out of range)", file, fr->line,
                             t % len + 1, t / len + 1);
            print_rows(out, fr->natoms, len);
        }
    }
    free(out);
    xyz_free(&xf);
    kq_soap_free(s);
    return 0;
}
