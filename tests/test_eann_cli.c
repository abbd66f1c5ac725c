/* SPDX-License-Identifier: MIT */
/* test_eann_cli.c - the `eann` program: predict writes what the library
 * computes (same bits), errors name the file and line and leave no output
 * file, --repeat prints a timing, check reports small violations.
 * Uses a small random model written here, so it needs no ../shared.
 * Runs $B/eann (B from the environment, default build). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eann.h"
#include "harness.h"
#include "xyz.h"

static char dir[256], prog[512];

static int run(const char *args, const char *out, const char *err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s/%s 2> %s/%s", prog, args, dir, out, dir, err);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int exists(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void put(const char *name, const char *text, size_t len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
}

int main(void) {
    (void)shared_dir; /* harness helper not needed here */
    const char *B = getenv("B");
    snprintf(prog, sizeof prog, "%s/eann", B ? B : "build");
    if (access(prog, X_OK) != 0) {
        th_skip("eann program not built");
        return th_done("test_eann_cli");
    }
    snprintf(dir, sizeof dir, "/tmp/test_eann_cli.XXXXXX");
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return th_done("test_eann_cli"); }

    /* a random dipole model with species H C O */
    eann_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = EANN_DIPOLE;
    sp.nspecies = 3;
    strcpy(sp.species[0], "H"); strcpy(sp.species[1], "C"); strcpy(sp.species[2], "O");
    sp.mass[0] = 1.008; sp.mass[1] = 12.011; sp.mass[2] = 15.999;
    sp.cutoff = 4.0; sp.min_distance = 0.001; sp.nipsin = 3; sp.nwave = 3; sp.nnets = 1;
    strcpy(sp.net[0].role, "charge");
    sp.net[0].nhidden = 2;
    sp.net[0].sizes[0] = 9; sp.net[0].sizes[1] = 10; sp.net[0].sizes[2] = 6; sp.net[0].sizes[3] = 1;
    sp.net[0].ln_eps = 1e-5;
    eann_model *m;
    CHECK(eann_model_new(&sp, &m, NULL, 0) == 0, "model_new");
    eann_model_init_random(m, 7);
    char *text;
    size_t len;
    eann_model_write(m, &text, &len);
    put("m.txt", text, len);

    const char *xyz =
        "3\nProperties=species:S:1:pos:R:3 name=water\n"
        "O 0.0 0.0 0.1\nH 0.0 0.76 -0.47\nH 0.0 -0.76 -0.47\n"
        "4\nname=formaldehyde\n"
        "C 0 0 0\nO 0 0 1.21\nH 0 0.94 -0.59\nH 0 -0.94 -0.59\n";
    put("in.xyz", xyz, strlen(xyz));
    char args[2048];
    snprintf(args, sizeof args, "predict -m %s/m.txt %s/in.xyz -o %s/out.xyz", dir, dir, dir);
    CHECK(run(args, "o1", "e1") == 0, "predict failed: %s", slurp("e1"));
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/out.xyz", dir);
    xyz_file in, out;
    snprintf(args, sizeof args, "%s/in.xyz", dir);
    CHECK(xyz_read(args, &in, err, sizeof err) == 0, "%s", err);
    if (xyz_read(path, &out, err, sizeof err) == 0) {
        CHECK(out.nframes == 2, "frames %d", out.nframes);
        eann_work *w;
        eann_work_new(m, 8, &w);
        for (int f = 0; f < 2 && f < out.nframes; f++) {
            int s[8];
            for (int i = 0; i < in.frames[f].natoms; i++)
                s[i] = eann_species_index(m, xyz_z_to_symbol(in.frames[f].z[i]));
            double mu[3], got[3];
            eann_predict(m, w, in.frames[f].natoms, s, in.frames[f].pos, mu);
            CHECK(xyz_get_info_real(&out.frames[f], "out.xyz", "eann_dipole", 3, got, err, sizeof err) == 0,
                  "%s", err);
            CHECK(!memcmp(got, mu, sizeof mu), "frame %d: file dipole differs from the library's", f);
            const xyz_info *u = xyz_find_info(&out.frames[f], "eann_units");
            CHECK(u && u->str && !strcmp(u->str, "dipole:e*bohr"), "eann_units missing or wrong");
        }
        eann_work_free(w);
        xyz_free(&out);
    } else {
        CHECK(0, "reading predict output: %s", err);
    }
    xyz_free(&in);

    /* an element the model lacks: named with file and line, no output file */
    const char *bad = "2\n\nH 0 0 0\nN 0 0 1.0\n";
    put("bad.xyz", bad, strlen(bad));
    snprintf(args, sizeof args, "predict -m %s/m.txt %s/bad.xyz -o %s/out2.xyz", dir, dir, dir);
    CHECK(run(args, "o2", "e2") != 0, "unknown element accepted");
    const char *e = slurp("e2");
    CHECK(e && strstr(e, "bad.xyz:4:") && strstr(e, "element N") && strstr(e, "m.txt"),
          "unknown element message: %s", e ? e : "");
    CHECK(!exists("out2.xyz"), "output file left behind after an error");

    /* damaged model: FILE:LINE and no output */
    char *dmg = malloc(len + 16);
    memcpy(dmg, text, len + 1);
    char *p = strstr(dmg, "array inta");
    p = strchr(p, '\n') + 1; /* first value of inta */
    int line = 1;
    for (char *q = dmg; q < p; q++) line += *q == '\n';
    memcpy(p, "nan", 3);
    char *nl = strchr(p, '\n');
    memmove(p + 3, nl, strlen(nl) + 1);
    put("dmg.txt", dmg, strlen(dmg));
    snprintf(args, sizeof args, "predict -m %s/dmg.txt %s/in.xyz -o %s/out3.xyz", dir, dir, dir);
    CHECK(run(args, "o3", "e3") != 0, "damaged model accepted");
    char want[64];
    snprintf(want, sizeof want, "dmg.txt:%d:", line);
    e = slurp("e3");
    CHECK(e && strstr(e, want) && strstr(e, "inta"), "damaged model message (want %s): %s", want, e ? e : "");
    CHECK(!exists("out3.xyz"), "output file left behind after a model error");
    free(dmg);

    /* --repeat prints only the timings: the mean (wall) and the fastest pass
     * after the first (processor time), both positive; a single-threaded
     * pass takes no more processor time than wall time, so min <= mean
     * (with room for the clocks' rounding) */
    snprintf(args, sizeof args, "predict -m %s/m.txt %s/in.xyz --repeat 3", dir, dir);
    CHECK(run(args, "o4", "e4") == 0, "--repeat failed");
    e = slurp("o4");
    double us = -1, usmin = -1;
    int nread = -1;
    CHECK(e && sscanf(e, "us_per_molecule %lf\nmin_cpu_us_per_molecule %lf\n%n", &us, &usmin, &nread) == 2 &&
              nread == (int)strlen(e) && us > 0 && usmin > 0 && usmin <= 1.5 * us + 1.0,
          "--repeat output: %s", e ? e : "");

    /* --simd portable and auto write the same bytes; an unknown copy is refused */
    snprintf(args, sizeof args, "predict -m %s/m.txt %s/in.xyz -o %s/sp.xyz --simd portable", dir, dir, dir);
    CHECK(run(args, "o9", "e9") == 0, "--simd portable failed: %s", slurp("e9"));
    snprintf(args, sizeof args, "predict -m %s/m.txt %s/in.xyz -o %s/sa.xyz --simd auto", dir, dir, dir);
    CHECK(run(args, "o9", "e9") == 0, "--simd auto failed: %s", slurp("e9"));
    {
        char *ta = slurp("sp.xyz"), *tb = ta ? strdup(ta) : NULL; /* slurp's buffer is reused */
        char *tc = slurp("sa.xyz");
        CHECK(tb && tc && strstr(tb, "eann_dipole") && !strcmp(tb, tc),
              "--simd portable and auto outputs differ");
        free(tb);
    }
    snprintf(args, sizeof args, "predict -m %s/m.txt %s/in.xyz -o %s/sx.xyz --simd sse9", dir, dir, dir);
    CHECK(run(args, "o9", "e9") != 0 && strstr(slurp("e9"), "--simd must be") && !exists("sx.xyz"),
          "unknown --simd accepted or message wrong: %s", slurp("e9"));

    /* check: small violations */
    snprintf(args, sizeof args, "check -m %s/m.txt %s/in.xyz --trials 3 --seed 5", dir, dir);
    CHECK(run(args, "o5", "e5") == 0, "check failed: %s", slurp("e5"));
    e = slurp("o5");
    const char *ov = e ? strstr(e, "overall rotation ") : NULL;
    double r1 = 1, t1 = 1, p1 = 1;
    CHECK(ov && sscanf(ov, "overall rotation %lf translation %lf permutation %lf", &r1, &t1, &p1) == 3,
          "check output: %s", e ? e : "");
    CHECK(r1 <= 1e-12 && t1 <= 1e-12 && p1 <= 1e-12, "check violations %g %g %g", r1, t1, p1);

    /* help; train without its required options fails with a message */
    CHECK(run("predict --help", "o6", "e6") == 0 && strstr(slurp("o6"), "usage: eann predict"), "predict --help");
    CHECK(run("check --help", "o7", "e7") == 0 && strstr(slurp("o7"), "usage: eann check"), "check --help");
    CHECK(run("train", "o8", "e8") != 0 && strstr(slurp("e8"), "required"), "train without options");

    free(text);
    eann_model_free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return th_done("test_eann_cli");
}
