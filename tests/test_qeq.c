/* SPDX-License-Identifier: MIT */
/* test_qeq.c - classical QEq with Gaussian charges (kqeq.h):
 * closed-form two-atom solution, charge constraint, symmetries, the
 * constrained inverse A against a direct solve of the bordered system
 * (kQEq paper Eq. 10), error codes, and the factor path of large molecules
 * against the explicit inverse (kqeq.h, KQ_QEQ_DIRECT_MAX_ATOMS). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kqeq.h"
#include "linalg.h"

#define NM 9
/* An ethanol-like geometry (angstrom): C C O H H H H H H. */
static const int mol_z[NM] = {6, 6, 8, 1, 1, 1, 1, 1, 1};
static const double mol_pos[NM * 3] = {
    -0.0008, -0.4303, 0.0000,  1.2240,  0.4622,  0.0000, -1.1650,  0.3981,  0.0000,
    -0.0207, -1.0787, 0.8870, -0.0207, -1.0787, -0.8870, 2.1382, -0.1379,  0.0100,
    1.2097,  1.1064,  0.8850,  1.2097,  1.1064, -0.8850, -1.9400, -0.1700,  0.0200};

static void chi_of(int n, const int *z, double *chi) {
    for (int i = 0; i < n; i++) chi[i] = kq_qeq_default_chi_ev(z[i]) / KQ_HARTREE_EV;
}

/* Rotation matrix from Euler-like angles (row-major). */
static void rotation(double a, double b, double c, double *rm) {
    double ca = cos(a), sa = sin(a), cb = cos(b), sb = sin(b), cc = cos(c), sc = sin(c);
    double rz[9] = {ca, -sa, 0, sa, ca, 0, 0, 0, 1};
    double ry[9] = {cb, 0, sb, 0, 1, 0, -sb, 0, cb};
    double rx[9] = {1, 0, 0, 0, cc, -sc, 0, sc, cc};
    double t[9];
    la_matmul(3, 3, 3, rz, 3, ry, 3, t, 3);
    la_matmul(3, 3, 3, t, 3, rx, 3, rm, 3);
}

static void test_two_atoms(void) {
    /* H-F along x, 0.917 angstrom. */
    const int z[2] = {1, 9};
    const double d = 0.917;
    const double pos[6] = {0.3, -0.2, 0.1, 0.3 + d, -0.2, 0.1};
    double chi[2];
    chi_of(2, z, chi);
    const double b2a = 1.0 / KQ_BOHR_ANGSTROM;
    double a1 = 0.75 * 0.371 * b2a, a2 = 0.75 * 0.706 * b2a, r = d * b2a;
    double h1 = 2.0 / sqrt(3.14159265358979323846) / sqrt(2.0 * a1 * a1);
    double h2 = 2.0 / sqrt(3.14159265358979323846) / sqrt(2.0 * a2 * a2);
    double c = erf(r / sqrt(a1 * a1 + a2 * a2)) / r;
    for (int qt = -1; qt <= 1; qt++) {
        double q[2], mu[3], e;
        int rc = kq_qeq_solve(2, z, pos, qt, chi, NULL, 0.75, q, mu, &e, NULL, NULL);
        CHECK(rc == KQ_OK, "two atoms rc %d", rc);
        /* Minimise E(q1, Q - q1): q1 (h1 + h2 - 2c) = chi2 - chi1 + Q (h2 - c). */
        double q1 = (chi[1] - chi[0] + qt * (h2 - c)) / (h1 + h2 - 2.0 * c), q2 = qt - q1;
        CHECK_REL(q[0], q1, 1e-13, "q_H closed form");
        CHECK_REL(q[1], q2, 1e-13, "q_F closed form");
        double ee = chi[0] * q1 + chi[1] * q2 + 0.5 * h1 * q1 * q1 + 0.5 * h2 * q2 * q2 +
                    c * q1 * q2;
        CHECK_REL(e, ee, 1e-13, "energy closed form");
        /* dipole about the centre of mass, bohr */
        double mh = 1.008, mf = 18.998403163;
        double xcom = mf / (mh + mf) * r; /* from H */
        double mux = q1 * (0.0 - xcom) + q2 * (r - xcom);
        CHECK_REL(mu[0], mux, 1e-12, "two-atom dipole x");
        CHECK_CLOSE(mu[1], 0.0, 1e-14, "two-atom dipole y");
        CHECK_CLOSE(mu[2], 0.0, 1e-14, "two-atom dipole z");
    }
    /* neutral HF: H positive */
    double q[2];
    kq_qeq_solve(2, z, pos, 0.0, chi, NULL, 0.75, q, NULL, NULL, NULL, NULL);
    CHECK(q[0] > 0.0 && q[1] < 0.0, "HF polarity H+ F-: %g %g", q[0], q[1]);
}

static void test_constraint_and_inverse(void) {
    int n = NM;
    double chi[NM], eta[NM], q[NM], a[NM * NM], b[NM], mu[3];
    chi_of(n, mol_z, chi);
    for (int i = 0; i < n; i++) eta[i] = 0.01 * (i % 3);
    for (int qt = -2; qt <= 2; qt++) {
        int rc = kq_qeq_solve(n, mol_z, mol_pos, qt, chi, eta, 0.75, q, mu, NULL, a, b);
        CHECK(rc == KQ_OK, "rc %d", rc);
        double s = 0.0;
        for (int i = 0; i < n; i++) s += q[i];
        CHECK_CLOSE(s, (double)qt, 1e-12, "sum of charges = Q_tot");
    }
    /* A symmetric, A 1 = 0, sum b = 1 */
    int sym = 1;
    double maxrow = 0.0, amax = 0.0, bs = 0.0;
    for (int i = 0; i < n; i++) {
        double rs = 0.0;
        for (int j = 0; j < n; j++) {
            if (a[i * n + j] != a[j * n + i]) sym = 0;
            rs += a[i * n + j];
            amax = th_worst(amax, fabs(a[i * n + j]));
        }
        maxrow = th_worst(maxrow, fabs(rs));
        bs += b[i];
    }
    CHECK(sym, "A exactly symmetric");
    CHECK(maxrow <= 1e-13 * amax, "A 1 = 0: max |row sum| %g (max |A| %g)", maxrow, amax);
    CHECK_CLOSE(bs, 1.0, 1e-13, "sum b = 1");
    /* Direct solve of the bordered system (Eq. 10) by LU. */
    double r[NM * 3], h[NM * NM], hb[(NM + 1) * (NM + 1)], rhs[NM + 1];
    int piv[NM + 1];
    CHECK(kq_com_positions_au(n, mol_z, mol_pos, r) == KQ_OK, "com");
    CHECK(kq_qeq_hardness(n, mol_z, r, 0.75, eta, h) == KQ_OK, "hardness");
    for (int qt = -1; qt <= 1; qt++) {
        for (int i = 0; i <= n; i++)
            for (int j = 0; j <= n; j++)
                hb[i * (n + 1) + j] =
                    (i < n && j < n) ? h[i * n + j] : (i == n && j == n ? 0.0 : 1.0);
        for (int i = 0; i < n; i++) rhs[i] = -chi[i];
        rhs[n] = qt;
        CHECK(la_lu(n + 1, hb, n + 1, piv, NULL) == LA_OK, "bordered LU");
        la_lu_solve(n + 1, 1, hb, n + 1, piv, rhs, 1);
        kq_qeq_solve(n, mol_z, mol_pos, qt, chi, eta, 0.75, q, NULL, NULL, NULL, NULL);
        for (int i = 0; i < n; i++) {
            double qa = qt * b[i];
            for (int j = 0; j < n; j++) qa -= a[i * n + j] * chi[j];
            CHECK_CLOSE(qa, rhs[i], 1e-12, "-A chi + Q b vs bordered solve");
            CHECK_CLOSE(q[i], rhs[i], 1e-12, "solve vs bordered solve");
        }
        /* stationarity (Eq. 7): H q + chi = -lambda for every atom */
        for (int i = 0; i < n; i++) {
            double g = chi[i];
            for (int j = 0; j < n; j++) g += h[i * n + j] * q[j];
            CHECK_CLOSE(g, -rhs[n], 1e-12, "H q + chi = -lambda");
        }
    }
    /* H symmetric positive definite: Cholesky and eigenvalues */
    double hc[NM * NM], w[NM], v[NM * NM];
    memcpy(hc, h, sizeof hc);
    CHECK(la_cholesky(n, hc, n, NULL) == LA_OK, "H Cholesky");
    CHECK(la_sym_eig(n, h, n, w, v, n) == LA_OK, "H eig");
    CHECK(w[0] > 0.0, "H smallest eigenvalue %g > 0", w[0]);
    /* H of eta = 0 is still SPD (Gaussian Coulomb matrix) */
    CHECK(kq_qeq_hardness(n, mol_z, r, 0.75, NULL, h) == KQ_OK, "hardness eta=0");
    CHECK(la_sym_eig(n, h, n, w, v, n) == LA_OK && w[0] > 0.0, "H(eta=0) eigenvalue %g", w[0]);
}

static void test_symmetries(void) {
    int n = NM;
    double chi[NM], q0[NM], q1[NM], mu0[3], mu1[3], e0, e1;
    double p1[NM * 3];
    chi_of(n, mol_z, chi);
    kq_qeq_solve(n, mol_z, mol_pos, 0.0, chi, NULL, 0.75, q0, mu0, &e0, NULL, NULL);
    /* translation */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) p1[3 * i + k] = mol_pos[3 * i + k] + (k + 1) * 3.7;
    kq_qeq_solve(n, mol_z, p1, 0.0, chi, NULL, 0.75, q1, mu1, &e1, NULL, NULL);
    for (int k = 0; k < 3; k++) CHECK_CLOSE(mu1[k], mu0[k], 1e-12, "dipole translation");
    CHECK_CLOSE(e1, e0, 1e-12, "energy translation");
    /* rotation (about an arbitrary point) */
    double rm[9];
    rotation(0.7, -1.3, 2.1, rm);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            double s = 1.5 * k;
            for (int l = 0; l < 3; l++) s += rm[3 * k + l] * mol_pos[3 * i + l];
            p1[3 * i + k] = s;
        }
    kq_qeq_solve(n, mol_z, p1, 0.0, chi, NULL, 0.75, q1, mu1, NULL, NULL, NULL);
    for (int k = 0; k < 3; k++) {
        double s = 0.0;
        for (int l = 0; l < 3; l++) s += rm[3 * k + l] * mu0[l];
        CHECK_CLOSE(mu1[k], s, 1e-12, "dipole rotation");
    }
    for (int i = 0; i < n; i++) CHECK_CLOSE(q1[i], q0[i], 1e-12, "charges rotation");
    /* charged molecule: dipole about the centre of mass is translation invariant too */
    kq_qeq_solve(n, mol_z, mol_pos, 1.0, chi, NULL, 0.75, q0, mu0, NULL, NULL, NULL);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) p1[3 * i + k] = mol_pos[3 * i + k] - 11.0 + k;
    kq_qeq_solve(n, mol_z, p1, 1.0, chi, NULL, 0.75, q1, mu1, NULL, NULL, NULL);
    for (int k = 0; k < 3; k++)
        CHECK_CLOSE(mu1[k], mu0[k], 1e-11, "cation dipole (COM) translation");
    /* permutation */
    const int perm[NM] = {4, 8, 0, 2, 7, 1, 3, 6, 5};
    int zp[NM];
    double cp[NM];
    for (int i = 0; i < n; i++) {
        zp[i] = mol_z[perm[i]];
        cp[i] = chi[perm[i]];
        for (int k = 0; k < 3; k++) p1[3 * i + k] = mol_pos[3 * perm[i] + k];
    }
    kq_qeq_solve(n, mol_z, mol_pos, 0.0, chi, NULL, 0.75, q0, mu0, NULL, NULL, NULL);
    kq_qeq_solve(n, zp, p1, 0.0, cp, NULL, 0.75, q1, mu1, NULL, NULL, NULL);
    for (int i = 0; i < n; i++) CHECK_CLOSE(q1[i], q0[perm[i]], 1e-12, "charges permutation");
    for (int k = 0; k < 3; k++) CHECK_CLOSE(mu1[k], mu0[k], 1e-12, "dipole permutation");
}

static void test_errors(void) {
    int z[3] = {1, 8, 1};
    double pos[9] = {0, 0, 0, 0.96, 0, 0, 0.96, 0, 0.0000005};
    double chi[3] = {0.1, 0.2, 0.1}, q[3];
    CHECK(kq_qeq_solve(3, z, pos, 0.0, chi, NULL, 0.75, q, NULL, NULL, NULL, NULL) ==
              KQ_EOVERLAP,
          "overlap (5e-7 A) is KQ_EOVERLAP");
    pos[8] = 0.9;
    CHECK(kq_qeq_solve(3, z, pos, 0.0, chi, NULL, 0.75, q, NULL, NULL, NULL, NULL) == KQ_OK,
          "separated atoms ok");
    CHECK(isfinite(q[0]) && isfinite(q[1]), "finite charges");
    z[1] = 14; /* Si: no radius in our table */
    CHECK(kq_qeq_solve(3, z, pos, 0.0, chi, NULL, 0.75, q, NULL, NULL, NULL, NULL) ==
              KQ_ESPECIES,
          "unknown element is KQ_ESPECIES");
    z[1] = 8;
    pos[0] = NAN;
    CHECK(kq_qeq_solve(3, z, pos, 0.0, chi, NULL, 0.75, q, NULL, NULL, NULL, NULL) == KQ_EINVAL,
          "NaN position is KQ_EINVAL");
    pos[0] = 0.0;
    CHECK(kq_qeq_solve(3, z, pos, 0.0, chi, NULL, -1.0, q, NULL, NULL, NULL, NULL) == KQ_EINVAL,
          "negative s_at is KQ_EINVAL");
    CHECK(kq_qeq_radius(6) == 0.759 && kq_qeq_radius(17) == 0.994 && kq_qeq_radius(3) == 0.0,
          "radius table");

    /* F9: results that are not finite are refused (KQ_ERANGE), never
     * returned, and the outputs stay untouched */
    {
        double mu[3] = {42, 42, 42}, e = 42, qq[3] = {42, 42, 42};
        double big[3] = {1e300, -1e300, 0.1};
        CHECK(kq_qeq_solve(3, z, pos, 0.0, big, NULL, 0.75, qq, mu, &e, NULL, NULL) == KQ_ERANGE,
              "chi 1e300: KQ_ERANGE");
        CHECK(qq[0] == 42 && mu[0] == 42 && e == 42, "outputs untouched on KQ_ERANGE");
        CHECK(kq_qeq_solve(3, z, pos, 1e300, chi, NULL, 0.75, qq, mu, &e, NULL, NULL) ==
                  KQ_ERANGE,
              "total charge 1e300: KQ_ERANGE (energy overflows)");
        CHECK(kq_qeq_solve(3, z, pos, 1000.0, chi, NULL, 0.75, qq, mu, &e, NULL, NULL) == KQ_OK &&
                  isfinite(e) && isfinite(mu[0]) && isfinite(qq[1]),
              "total charge 1000 (the CLI bound) is finite");
        double ev[3] = {1e4 / KQ_HARTREE_EV, -1e4 / KQ_HARTREE_EV, 1e4 / KQ_HARTREE_EV};
        double eta4[3] = {1e4 / KQ_HARTREE_EV, 1e4 / KQ_HARTREE_EV, 1e4 / KQ_HARTREE_EV};
        CHECK(kq_qeq_solve(3, z, pos, 0.0, ev, eta4, 0.75, qq, mu, &e, NULL, NULL) == KQ_OK &&
                  isfinite(e),
              "chi and eta +-1e4 eV (the CLI bounds) are finite");
        CHECK(strcmp(kq_strerror(KQ_ERANGE), "unknown error code") != 0, "KQ_ERANGE text");
    }
}

/* Every per-element constant kqeq.c holds, value by value, typed here from
 * the cited sources (a wrong table entry, e.g. a carbon mass of 12.5, fails):
 *   QEq radius R_A (angstrom) and electronegativity chi (eV): Rappe &
 *     Goddard, J. Phys. Chem. 95, 3358 (1991), Table I (columns R and chi;
 *     the radii are also in ../shared/specs/kqeq.md);
 *   masses: IUPAC/CIAAW standard atomic weights, conventional (abridged)
 *     values, as kqeq.h states: H 1.008, C 12.011, N 14.007, O 15.999,
 *     F 18.998403163, S 32.06, Cl 35.45.
 * Any other element has none of them (0). */
static void test_element_tables(void) {
    static const struct { int z; double radius, chi_ev, mass; } src[] = {
        {1, 0.371, 4.528, 1.008},   {6, 0.759, 5.343, 12.011},  {7, 0.715, 6.899, 14.007},
        {8, 0.669, 8.741, 15.999},  {9, 0.706, 10.874, 18.998403163},
        {16, 1.047, 6.928, 32.06},  {17, 0.994, 8.564, 35.45},
    };
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) {
        int z = src[i].z;
        CHECK(kq_qeq_radius(z) == src[i].radius, "Z %d: radius %.17g, Rappe-Goddard Table I %g", z,
              kq_qeq_radius(z), src[i].radius);
        CHECK(kq_qeq_default_chi_ev(z) == src[i].chi_ev, "Z %d: chi %.17g eV, Table I %g", z,
              kq_qeq_default_chi_ev(z), src[i].chi_ev);
        CHECK(kq_atomic_mass(z) == src[i].mass, "Z %d: mass %.17g, IUPAC %g", z,
              kq_atomic_mass(z), src[i].mass);
    }
    const int none[] = {0, 2, 3, 5, 10, 14, 15, 18, 35, 118, -1};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        CHECK(kq_qeq_radius(none[i]) == 0.0 && kq_qeq_default_chi_ev(none[i]) == 0.0 &&
                  kq_atomic_mass(none[i]) == 0.0,
              "Z %d: no element data expected", none[i]);
    /* the mass enters the dipole of a charged molecule through the centre of
     * mass (Eq. 17): an ion's dipole about the mass-weighted centre, checked
     * with the typed masses */
    int z[2] = {6, 8};
    double pos[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 1.2}, chi[2] = {0.2, 0.3}, q[2], mu[3];
    CHECK(kq_qeq_solve(2, z, pos, 1.0, chi, NULL, 0.75, q, mu, NULL, NULL, NULL) == KQ_OK,
          "CO+ solve");
    double zc = 1.2 * 15.999 / (12.011 + 15.999); /* angstrom */
    double want = (q[0] * (0.0 - zc) + q[1] * (1.2 - zc)) / KQ_BOHR_ANGSTROM;
    CHECK_CLOSE(mu[2], want, 1e-13, "CO+ dipole about the centre of mass (typed masses)");
}

/* ---------------------------------------------------------------------- */
/* Water cluster of nw molecules (3 nw atoms): oxygens on a cubic lattice of
 * 3.1 angstrom, the first nw sites in lattice order, each molecule (O-H
 * 0.9572 A, H-O-H 104.52 deg) turned by a rotation from a fixed LCG, so the
 * same nw always gives the same geometry. */
static void water_cluster(int nw, int *z, double *pos) {
    int side = 1;
    while (side * side * side < nw) side++;
    uint64_t st = 12345;
    const double ang = 104.52 * 3.14159265358979323846 / 180.0, roh = 0.9572;
    const double hl[2][3] = {{roh * sin(ang / 2), 0.0, roh * cos(ang / 2)},
                             {-roh * sin(ang / 2), 0.0, roh * cos(ang / 2)}};
    for (int k = 0; k < nw; k++) {
        double o[3] = {3.1 * (k % side), 3.1 * ((k / side) % side), 3.1 * (k / (side * side))};
        double e[3], rm[9];
        for (int t = 0; t < 3; t++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            e[t] = 6.283185307179586 * (double)(st >> 11) * 0x1.0p-53;
        }
        rotation(e[0], e[1], e[2], rm);
        z[3 * k] = 8;
        z[3 * k + 1] = z[3 * k + 2] = 1;
        for (int c = 0; c < 3; c++) pos[9 * k + c] = o[c];
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 3; c++) {
                double v = 0.0;
                for (int d = 0; d < 3; d++) v += rm[3 * c + d] * hl[h][d];
                pos[9 * k + 3 * (h + 1) + c] = o[c] + v;
            }
    }
}

/* One QEq solve by a chosen path; returns the kq code. */
static int solve_path(int path, int n, const int *z, const double *pos, double qt,
                      const double *chi, const double *eta, double *q, double *mu, double *e) {
    return kq_qeq_solve_path(path, n, z, pos, qt, chi, eta, 0.75, q, mu, e, NULL, NULL);
}

/* Largest relative difference of the factor path from the inverse path:
 * charges relative to max |q|, dipole relative to |mu|, energy relative. */
static double path_difference(int n, const int *z, const double *pos, double qt,
                              const double *chi, const double *eta, double *qsum_err) {
    double *qi = malloc(sizeof(double) * n), *qf = malloc(sizeof(double) * n);
    double mi[3], mf[3], ei = 0.0, ef = 0.0;
    int ri = solve_path(KQ_QEQ_PATH_INVERSE, n, z, pos, qt, chi, eta, qi, mi, &ei);
    int rf = solve_path(KQ_QEQ_PATH_FACTOR, n, z, pos, qt, chi, eta, qf, mf, &ef);
    double worst = NAN;
    if (ri == KQ_OK && rf == KQ_OK) {
        double qmax = 0.0, s = 0.0, mabs = sqrt(mi[0] * mi[0] + mi[1] * mi[1] + mi[2] * mi[2]);
        for (int i = 0; i < n; i++) qmax = th_worst(qmax, fabs(qi[i]));
        worst = th_max_abs_diff(qi, qf, (size_t)n) / qmax;
        worst = th_worst(worst, th_max_abs_diff(mi, mf, 3) / mabs);
        worst = th_worst(worst, fabs(ei - ef) / fabs(ei));
        for (int i = 0; i < n; i++) s += qf[i];
        *qsum_err = fabs(s - qt);
    }
    free(qi);
    free(qf);
    return worst;
}

/* The two paths of kqeq.h (KQ_QEQ_DIRECT_MAX_ATOMS): the factor path against
 * the explicit inverse on water clusters of a few hundred atoms, neutral and
 * charged, default and random chi (the dipole then tests every entry of RA
 * and Rb), with eta; and at the crossover, that the automatic choice gives
 * exactly the bits of the path it names. Measured: worst relative
 * difference 1.3e-13 (at 1002 atoms), |sum q - Q| <= 5e-15 e; tolerances 1e-12
 * and 1e-13 (about 10x). A failed solve gives NaN, which fails. */
static void test_paths(void) {
    const int nws[] = {1, 2, 7, 50, 101, 167};
    double worst = 0.0, worst_qsum = 0.0;
    uint64_t st = 99;
    for (size_t t = 0; t < sizeof nws / sizeof nws[0]; t++) {
        int nw = nws[t], n = 3 * nw;
        int *z = malloc(sizeof(int) * n);
        double *pos = malloc(sizeof(double) * 3 * n), *chi = malloc(sizeof(double) * n),
               *eta = malloc(sizeof(double) * n);
        water_cluster(nw, z, pos);
        for (int trial = 0; trial < 3; trial++) {
            chi_of(n, z, chi);
            for (int i = 0; i < n; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                double u = (double)(st >> 11) * 0x1.0p-53;
                if (trial > 0) chi[i] += 0.1 * (u - 0.5); /* hartree/e */
                eta[i] = 0.05 * u;
            }
            double qt = trial == 0 ? 0.0 : (trial == 1 ? 1.0 : -2.0), qsum = NAN;
            double d = path_difference(n, z, pos, qt, chi, trial == 2 ? eta : NULL, &qsum);
            CHECK(d <= 1e-12, "factor vs inverse path, %d atoms, Q %g: relative difference %.3g",
                  n, qt, d);
            CHECK(qsum <= 1e-13, "factor path, %d atoms: sum q - Q = %.3g", n, qsum);
            worst = th_worst(worst, d);
            worst_qsum = th_worst(worst_qsum, qsum);
        }
        free(z); free(pos); free(chi); free(eta);
    }
    printf("QEq factor path vs explicit inverse, 3..501 atoms: worst relative difference %.2g, "
           "worst |sum q - Q| %.2g e\n", worst, worst_qsum);

    /* Near the crossover: AUTO is the inverse path at KQ_QEQ_DIRECT_MAX_ATOMS
     * atoms (bit for bit) and the factor path just above; both agree. */
    int nw = (KQ_QEQ_DIRECT_MAX_ATOMS + 3) / 3, nmax = 3 * nw;
    int *z = malloc(sizeof(int) * nmax);
    double *pos = malloc(sizeof(double) * 3 * nmax), *chi = malloc(sizeof(double) * nmax);
    double *qa = malloc(sizeof(double) * nmax), *qp = malloc(sizeof(double) * nmax);
    water_cluster(nw, z, pos);
    chi_of(nmax, z, chi);
    const int sizes[2] = {KQ_QEQ_DIRECT_MAX_ATOMS, nmax};
    for (int k = 0; k < 2; k++) {
        int n = sizes[k], expect = n <= KQ_QEQ_DIRECT_MAX_ATOMS ? KQ_QEQ_PATH_INVERSE
                                                                : KQ_QEQ_PATH_FACTOR;
        double ma[3], mp[3], ea = 0, ep = 0, qsum = NAN;
        int ra = kq_qeq_solve(n, z, pos, 1.0, chi, NULL, 0.75, qa, ma, &ea, NULL, NULL);
        int rp = solve_path(expect, n, z, pos, 1.0, chi, NULL, qp, mp, &ep);
        CHECK(ra == KQ_OK && rp == KQ_OK && memcmp(qa, qp, sizeof(double) * n) == 0 &&
                  memcmp(ma, mp, sizeof ma) == 0 && memcmp(&ea, &ep, sizeof ea) == 0,
              "%d atoms: kq_qeq_solve is not bit for bit the %s path", n,
              expect == KQ_QEQ_PATH_INVERSE ? "inverse" : "factor");
        double d = path_difference(n, z, pos, 1.0, chi, NULL, &qsum);
        CHECK(d <= 1e-12, "%d atoms (crossover): paths differ by %.3g relative", n, d);
        CHECK(qsum <= 1e-13, "%d atoms (crossover): sum q - Q = %.3g", n, qsum);
        printf("crossover, %d atoms: automatic = %s path bit for bit; paths differ by %.2g "
               "relative, |sum q - Q| %.2g e\n", n, expect == KQ_QEQ_PATH_INVERSE ? "inverse" : "factor",
               d, qsum);
    }
    /* a and b exist only on the inverse path */
    double *a = malloc(sizeof(double) * 9 * 9), b[9];
    CHECK(kq_qeq_solve_path(KQ_QEQ_PATH_FACTOR, NM, mol_z, mol_pos, 0.0, chi, NULL, 0.75, qa,
                            NULL, NULL, a, b) == KQ_EINVAL, "factor path refuses a, b");
    CHECK(kq_qeq_solve_path(7, NM, mol_z, mol_pos, 0.0, chi, NULL, 0.75, qa, NULL, NULL, NULL,
                            NULL) == KQ_EINVAL, "unknown path");
    free(a); free(z); free(pos); free(chi); free(qa); free(qp);
}

int main(void) {
    (void)shared_dir; /* harness helpers this test does not need */
    (void)th_skip;
    test_two_atoms();
    test_constraint_and_inverse();
    test_symmetries();
    test_errors();
    test_element_tables();
    test_paths();
    return th_done("test_qeq");
}
