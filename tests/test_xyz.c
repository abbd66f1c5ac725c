/* SPDX-License-Identifier: MIT */
/* test_xyz.c - extended XYZ reader/writer (xyz.c): every syntax feature with
 * exact expected values, every error with its line, bit-exact round trips,
 * the tests/bad/xyz_*.xyz corpus (table in tests/bad/README.md) and a large
 * file. Runs from the repository root. */
#include "harness.h"
#include "xyz.h"

#include <dirent.h>
#include <float.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char err[512];

/* Parse text (given without its NUL, in an exact-size buffer so that a read
 * past the end is caught by valgrind/ASan). */
static int parse(const char *text, xyz_file *f) {
    size_t n = strlen(text);
    char *b = malloc(n + 1);
    if (n) memcpy(b, text, n);
    int rc = xyz_parse(b, n, "mem.xyz", f, err, sizeof err);
    free(b);
    return rc;
}

/* Expect a parse error on line `line` whose message contains `what`. */
static void expect_err(const char *text, long line, const char *what, const char *why) {
    xyz_file f = {5, (xyz_frame *)&f}; /* garbage: must be reset */
    char prefix[64];
    int rc = parse(text, &f);
    snprintf(prefix, sizeof prefix, "mem.xyz:%ld: ", line);
    CHECK(rc == -1, "%s: parse should fail", why);
    CHECK(f.nframes == 0 && f.frames == NULL, "%s: *out not empty after an error", why);
    CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "%s: message '%s' should start with '%s'", why, err, prefix);
    CHECK(strstr(err, what) != NULL, "%s: message '%s' should contain '%s'", why, err, what);
    CHECK(strchr(err, '\n') == NULL, "%s: message has a line break", why);
    if (rc == 0) xyz_free(&f);
}

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_symbols(void) {
    CHECK(strcmp(xyz_z_to_symbol(1), "H") == 0, "H");
    CHECK(strcmp(xyz_z_to_symbol(26), "Fe") == 0, "Fe");
    CHECK(strcmp(xyz_z_to_symbol(57), "La") == 0, "La");
    CHECK(strcmp(xyz_z_to_symbol(71), "Lu") == 0, "Lu");
    CHECK(strcmp(xyz_z_to_symbol(79), "Au") == 0, "Au");
    CHECK(strcmp(xyz_z_to_symbol(86), "Rn") == 0, "Rn");
    CHECK(xyz_z_to_symbol(0) == NULL && xyz_z_to_symbol(87) == NULL && xyz_z_to_symbol(-1) == NULL, "range");
    int ok = 1;
    for (int z = 1; z <= 86; z++) ok &= xyz_symbol_to_z(xyz_z_to_symbol(z)) == z;
    CHECK(ok, "symbol round trip 1..86");
    CHECK(xyz_symbol_to_z("He") == 2 && xyz_symbol_to_z("HE") == 0 && xyz_symbol_to_z("he") == 0, "exact case");
    CHECK(xyz_symbol_to_z("X") == 0 && xyz_symbol_to_z("") == 0 && xyz_symbol_to_z("Hee") == 0 &&
              xyz_symbol_to_z("Fr") == 0 && xyz_symbol_to_z(NULL) == 0,
          "unknown symbols");
}

static const xyz_info *info(const xyz_frame *fr, const char *k, xyz_type t, int n) {
    const xyz_info *in = xyz_find_info(fr, k);
    CHECK(in != NULL, "info '%s' missing", k);
    if (!in) return NULL;
    CHECK(in->type == t && in->n == n, "info '%s': type %c n %d, expected %c %d", k, in->type, in->n, t, n);
    return (in->type == t && in->n == n) ? in : NULL;
}

static void test_syntax(void) {
    const char *text =
        "3\n"
        "Properties=species:S:1:pos:R:3:q:R:1:idx:I:1:flag:L:1:tag:S:1:f:R:3 energy=-1.5 n=7 "
        "name=water title=\"hello world\" esc=\"a \\\"q\\\" b\\\\c\" dipole=\"0.1 0.2 0.3\" "
        "Lattice=\"10 0 0 0 10.5 0 0 0 11\" pbc=\"F F T\" have_e big=12345678901234567890 "
        "list=[1, 2, 3] old={1.5 2.5} bools=\"T F True false\" sq='single q' spaced = 4 "
        "hexv=0x1p-3 eq=\"a=b\" empty=\"\" csv=1,2 words=\"inf loop\" flag2=F Key=1 key=2 mixed=\"1 2.5\" "
        "neg0=-0 negr=-0.0 tiny=4.9406564584124654e-324 mz=\"-0 0.5\"\n"
        "O 0.0 0.0 0.1 -0 1 T x 1 2 3\n"
        "H 0.7 0.0 -0.5 0.4 -2 F y 4 5 6\n"
        "H\t-0.7   0.0  -0.5   0.4 3 True z 7e0 8 0x1p3\n";
    xyz_file f;
    int rc = parse(text, &f);
    CHECK(rc == 0, "syntax example: %s", err);
    if (rc) return;
    CHECK(f.nframes == 1, "nframes %d", f.nframes);
    xyz_frame *fr = &f.frames[0];
    CHECK(fr->natoms == 3 && fr->z[0] == 8 && fr->z[1] == 1 && fr->z[2] == 1, "z");
    CHECK(fr->line == 1, "line %d", fr->line);
    CHECK(fr->pos[2] == 0.1 && fr->pos[3] == 0.7 && fr->pos[5] == -0.5 && fr->pos[6] == -0.7, "pos");
    const xyz_info *in;
    if ((in = info(fr, "energy", XYZ_REAL, 1))) CHECK(in->num[0] == -1.5, "energy");
    if ((in = info(fr, "n", XYZ_INT, 1))) CHECK(in->num[0] == 7, "n");
    if ((in = info(fr, "name", XYZ_STR, 1))) CHECK(strcmp(in->str, "water") == 0, "name");
    if ((in = info(fr, "title", XYZ_STR, 1))) CHECK(strcmp(in->str, "hello world") == 0, "title '%s'", in->str);
    if ((in = info(fr, "esc", XYZ_STR, 1))) CHECK(strcmp(in->str, "a \"q\" b\\c") == 0, "esc '%s'", in->str);
    if ((in = info(fr, "dipole", XYZ_REAL, 3)))
        CHECK(in->num[0] == 0.1 && in->num[1] == 0.2 && in->num[2] == 0.3, "dipole");
    if ((in = info(fr, "Lattice", XYZ_REAL, 9)))
        CHECK(in->num[0] == 10 && in->num[4] == 10.5 && in->num[8] == 11 && in->num[1] == 0, "Lattice");
    if ((in = info(fr, "pbc", XYZ_BOOL, 3))) CHECK(in->num[0] == 0 && in->num[1] == 0 && in->num[2] == 1, "pbc");
    if ((in = info(fr, "have_e", XYZ_BOOL, 1))) CHECK(in->num[0] == 1, "bare key is true");
    if ((in = info(fr, "big", XYZ_STR, 1))) CHECK(strcmp(in->str, "12345678901234567890") == 0, "big int as text");
    if ((in = info(fr, "list", XYZ_INT, 3))) CHECK(in->num[0] == 1 && in->num[1] == 2 && in->num[2] == 3, "[list]");
    if ((in = info(fr, "old", XYZ_REAL, 2))) CHECK(in->num[0] == 1.5 && in->num[1] == 2.5, "{list}");
    if ((in = info(fr, "bools", XYZ_BOOL, 4)))
        CHECK(in->num[0] == 1 && in->num[1] == 0 && in->num[2] == 1 && in->num[3] == 0, "bools");
    if ((in = info(fr, "sq", XYZ_STR, 1))) CHECK(strcmp(in->str, "single q") == 0, "single quotes");
    if ((in = info(fr, "spaced", XYZ_INT, 1))) CHECK(in->num[0] == 4, "key = value");
    if ((in = info(fr, "hexv", XYZ_REAL, 1))) CHECK(in->num[0] == 0.125, "hex float");
    if ((in = info(fr, "eq", XYZ_STR, 1))) CHECK(strcmp(in->str, "a=b") == 0, "'=' in a string");
    if ((in = info(fr, "empty", XYZ_STR, 1))) CHECK(strcmp(in->str, "") == 0, "empty string");
    if ((in = info(fr, "csv", XYZ_INT, 2))) CHECK(in->num[0] == 1 && in->num[1] == 2, "comma list");
    if ((in = info(fr, "words", XYZ_STR, 1))) CHECK(strcmp(in->str, "inf loop") == 0, "words with inf");
    if ((in = info(fr, "flag2", XYZ_BOOL, 1))) CHECK(in->num[0] == 0, "F");
    if ((in = info(fr, "Key", XYZ_INT, 1))) CHECK(in->num[0] == 1, "case-sensitive Key");
    if ((in = info(fr, "key", XYZ_INT, 1))) CHECK(in->num[0] == 2, "case-sensitive key");
    if ((in = info(fr, "mixed", XYZ_REAL, 2))) CHECK(in->num[0] == 1 && in->num[1] == 2.5, "int+real -> real");
    if ((in = info(fr, "neg0", XYZ_INT, 1))) CHECK(same_bits(in->num[0], 0.0), "integer -0 is 0");
    if ((in = info(fr, "negr", XYZ_REAL, 1))) CHECK(same_bits(in->num[0], -0.0), "real -0.0 keeps its sign");
    if ((in = info(fr, "tiny", XYZ_REAL, 1))) CHECK(in->num[0] == 4.9406564584124654e-324, "subnormal");
    CHECK(xyz_find_info(fr, "Properties") == NULL, "Properties is not an info key");
    if ((in = info(fr, "mz", XYZ_REAL, 2))) CHECK(same_bits(in->num[0], -0.0), "-0 in a real list keeps its sign");
    CHECK(fr->ninfo == 28, "ninfo %d", fr->ninfo);
    CHECK(strcmp(fr->info[0].key, "energy") == 0 && strcmp(fr->info[fr->ninfo - 1].key, "mz") == 0, "order");
    /* arrays */
    CHECK(fr->narrays == 5, "narrays %d", fr->narrays);
    const xyz_array *a;
    if ((a = xyz_find_array(fr, "q")))
        CHECK(a->type == XYZ_REAL && a->ncols == 1 && same_bits(a->num[0], -0.0) && a->num[1] == 0.4 &&
                  a->num[2] == 0.4,
              "q (-0 in a real column keeps its sign)");
    else CHECK(0, "q missing");
    if ((a = xyz_find_array(fr, "idx")))
        CHECK(a->type == XYZ_INT && a->num[0] == 1 && a->num[1] == -2 && a->num[2] == 3, "idx");
    else CHECK(0, "idx missing");
    if ((a = xyz_find_array(fr, "flag")))
        CHECK(a->type == XYZ_BOOL && a->num[0] == 1 && a->num[1] == 0 && a->num[2] == 1, "flag");
    else CHECK(0, "flag missing");
    if ((a = xyz_find_array(fr, "tag")))
        CHECK(a->type == XYZ_STR && strcmp(a->str[0], "x") == 0 && strcmp(a->str[2], "z") == 0, "tag");
    else CHECK(0, "tag missing");
    if ((a = xyz_find_array(fr, "f")))
        CHECK(a->type == XYZ_REAL && a->ncols == 3 && a->num[5] == 6 && a->num[6] == 7 && a->num[8] == 8, "f");
    else CHECK(0, "f missing");
    CHECK(strcmp(fr->arrays[0].name, "q") == 0 && strcmp(fr->arrays[4].name, "f") == 0, "array order");
    CHECK(xyz_find_array(fr, "species") == NULL && xyz_find_array(fr, "pos") == NULL, "species/pos not arrays");
    /* get_info_real / get_array_real */
    double v[9];
    CHECK(xyz_get_info_real(fr, "w.xyz", "dipole", 3, v, err, sizeof err) == 0 && v[2] == 0.3, "get dipole");
    CHECK(xyz_get_info_real(fr, "w.xyz", "n", 1, v, err, sizeof err) == 0 && v[0] == 7, "get int as real");
    CHECK(xyz_get_info_real(fr, "w.xyz", "nope", 1, v, err, sizeof err) == -1 && strstr(err, "w.xyz:1:") &&
              strstr(err, "'nope'") && strstr(err, "missing"),
          "missing key: '%s'", err);
    CHECK(xyz_get_info_real(fr, "w.xyz", "dipole", 2, v, err, sizeof err) == -1 && strstr(err, "w.xyz:1:") &&
              strstr(err, "has 3 numbers, expected 2"),
          "wrong length: '%s'", err);
    CHECK(xyz_get_info_real(fr, "w.xyz", "name", 1, v, err, sizeof err) == -1 && strstr(err, "not a number"),
          "string key: '%s'", err);
    CHECK(xyz_get_info_real(fr, "w.xyz", "pbc", 3, v, err, sizeof err) == -1 && strstr(err, "boolean"),
          "bool key: '%s'", err);
    CHECK(xyz_get_array_real(fr, "w.xyz", "f", 3, v, err, sizeof err) == 0 && v[8] == 8, "get f");
    CHECK(xyz_get_array_real(fr, "w.xyz", "f", 1, v, err, sizeof err) == -1 && strstr(err, "w.xyz:1:"),
          "get f wrong ncols: '%s'", err);
    CHECK(xyz_get_array_real(fr, "w.xyz", "zz", 1, v, err, sizeof err) == -1 && strstr(err, "'zz' is missing"),
          "get missing array: '%s'", err);
    xyz_free(&f);
    CHECK(f.nframes == 0 && f.frames == NULL, "xyz_free empties");
    xyz_free(&f); /* twice is harmless */
}

static void test_plain_and_layout(void) {
    xyz_file f;
    /* plain XYZ, free-text comment, extra columns ignored, CRLF, no final newline */
    int rc = parse("2\r\n  Cubic bulk silicon cell \r\nSi 0 0 0 extra 1\r\nSi 1.36 1.36 1.36\r\n"
                   "1\r\nenergy=-3.25 dipole=\"1 2 3\"\r\nC 1 2 3", &f);
    CHECK(rc == 0, "plain: %s", err);
    if (rc == 0) {
        CHECK(f.nframes == 2 && f.frames[0].natoms == 2 && f.frames[0].z[1] == 14, "plain frames");
        CHECK(f.frames[0].pos[5] == 1.36 && f.frames[0].narrays == 0, "plain pos");
        const xyz_info *in = info(&f.frames[0], "comment", XYZ_STR, 1);
        if (in) CHECK(strcmp(in->str, "Cubic bulk silicon cell") == 0, "comment '%s'", in->str);
        CHECK(f.frames[0].ninfo == 1, "plain ninfo");
        in = info(&f.frames[1], "energy", XYZ_REAL, 1);
        if (in) CHECK(in->num[0] == -3.25, "plain key=value");
        CHECK(f.frames[1].line == 5 && f.frames[1].pos[2] == 3, "second frame line %d", f.frames[1].line);
        xyz_free(&f);
    }
    /* plain comment that does not parse as key=value is kept as text */
    rc = parse("1\nE = \"unterminated, T=300K\nH 0 0 0\n", &f);
    CHECK(rc == 0 && err[0] == '\0', "plain unparseable comment: %s", err);
    if (rc == 0) {
        const xyz_info *in = info(&f.frames[0], "comment", XYZ_STR, 1);
        if (in) CHECK(strcmp(in->str, "E = \"unterminated, T=300K") == 0, "comment '%s'", in->str);
        xyz_free(&f);
    }
    /* lowercase properties=, quoted spec, Properties not first, species/pos anywhere */
    rc = parse("1\nenergy=1 properties=\"q:R:1:pos:R:3:species:S:1\"\n0.5 1 2 3 Fe\n", &f);
    CHECK(rc == 0, "properties=: %s", err);
    if (rc == 0) {
        xyz_frame *fr = &f.frames[0];
        CHECK(fr->z[0] == 26 && fr->pos[0] == 1 && fr->pos[2] == 3 && fr->narrays == 1 && fr->arrays[0].num[0] == 0.5,
              "reordered columns");
        xyz_free(&f);
    }
    /* frames with 0 atoms, empty comment lines, blank lines at the end */
    rc = parse("0\n\n0\nenergy=2\n1\n\nH 0 0 0\n\n\n  \n", &f);
    CHECK(rc == 0, "zero atoms: %s", err);
    if (rc == 0) {
        CHECK(f.nframes == 3 && f.frames[0].natoms == 0 && f.frames[0].ninfo == 0 && f.frames[1].natoms == 0, "0 atoms");
        CHECK(f.frames[1].line == 3 && f.frames[2].line == 5, "lines %d %d", f.frames[1].line, f.frames[2].line);
        xyz_free(&f);
    }
    /* count line with spaces around */
    rc = parse("  1  \n\nH 0 0 0\n", &f);
    CHECK(rc == 0, "spaced count: %s", err);
    if (rc == 0) xyz_free(&f);
    /* a very long line: 3696 SOAP-like columns */
    {
        size_t cap = 4000 * 32, n = 0;
        char *b = malloc(cap);
        n += (size_t)sprintf(b + n, "2\nProperties=species:S:1:pos:R:3:soap:R:3696\n");
        for (int a = 0; a < 2; a++) {
            n += (size_t)sprintf(b + n, "H %d 0 0", a);
            for (int k = 0; k < 3696; k++) n += (size_t)sprintf(b + n, " %.17g", (k + 1) * 1e-3 + a);
            b[n++] = '\n';
        }
        xyz_file g;
        rc = xyz_parse(b, n, "long.xyz", &g, err, sizeof err);
        CHECK(rc == 0, "long line: %s", err);
        if (rc == 0) {
            const xyz_array *s = xyz_find_array(&g.frames[0], "soap");
            CHECK(s && s->ncols == 3696 && s->num[3695] == 3.696 && s->num[3696 + 10] == 11e-3 + 1, "soap values");
            xyz_free(&g);
        }
        free(b);
    }
}

static void test_errors(void) {
    expect_err("", 1, "empty file", "empty");
    expect_err("\n\n \n", 1, "empty file", "only blank lines");
    expect_err("abc\nx\n", 1, "expected an atom count, found 'abc'", "count not a number");
    expect_err("1.5\nx\nH 0 0 0\n", 1, "expected an atom count", "real count");
    expect_err("-2\nx\n", 1, "negative atom count", "negative count");
    expect_err("2 atoms\nx\n", 1, "unexpected text 'atoms'", "count trailing garbage");
    expect_err("99999999999\nx\n", 1, "too large", "count > INT_MAX");
    expect_err("123456789012345678901234567890\nx\n", 1, "too large", "count > 2^64");
    expect_err("2000000000\nx\nH 0 0 0\n", 1, "declares 2000000000 atoms but the file ends after 1 atom line",
               "huge count");
    expect_err("3\nx\nH 0 0 0\nH 0 0 0\n", 1, "ends after 2 atom lines", "count just too large");
    expect_err("3\nProperties=species:S:1:pos:R:3:f:R:9\nH 0 0 0 1 2 3 4 5 6 7 8 9\nH 1\nH 2 0 0\n", 4,
               "has 2 columns, Properties needs 13", "short line found before allocating");
    expect_err("2\nx\nH 0 0 0\n", 1, "declares 2 atoms but the file ends after 1 atom line", "truncated");
    expect_err("1\nx\nH 0 0 0\n3\nx\nH 0 0 0\nH 0 0 0\n", 4, "declares 3 atoms but the file ends after 2 atom lines",
               "truncated second frame");
    expect_err("1\n", 1, "before its comment line", "no comment line");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:1\nH 0 0 0\n", 3, "has 4 columns, Properties needs 5", "too few");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:1\nH 0 0 0 1 2 3\n", 3, "has 7 columns, Properties needs 5",
               "too many");
    expect_err("1\nplain\nH 0 0\n", 3, "has 3 columns, expected 4", "plain too few");
    expect_err("2\nx\nH 0 0 0\n\n", 4, "has 0 columns", "blank atom line");
    expect_err("1\nx\nH 0 zero 0\n", 3, "column 3 (pos): expected a number, found 'zero'", "non-number");
    expect_err("1\nx\nH 0 0 1.5.2\n", 3, "expected a number", "bad number");
    expect_err("1\nx\nH 0 nan 0\n", 3, "column 3 (pos): 'nan' is not a finite number", "nan coordinate");
    expect_err("1\nx\nH 0 0 -Infinity\n", 3, "not a finite number", "inf coordinate");
    expect_err("1\nx\nH 0 0 1e999\n", 3, "not a finite number", "overflowing coordinate");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:1\nH 0 0 0 inf\n", 3, "column 5 (q): 'inf' is not a finite",
               "inf property");
    expect_err("1\nProperties=species:S:1:pos:R:3 energy=nan\nH 0 0 0\n", 2, "key 'energy': value 'nan' is not a finite",
               "nan energy");
    expect_err("1\nProperties=species:S:1:pos:R:3 dipole=\"1 NaN 2\"\nH 0 0 0\n", 2, "not a finite", "nan in a list");
    expect_err("1\nProperties=species:S:1:pos:R:3 Lattice=\"1 0 0 0 1 0 0 0 inf\"\nH 0 0 0\n", 2, "not a finite",
               "inf in Lattice");
    expect_err("1\nProperties=species:S:1:pos:R:3 e=1e400\nH 0 0 0\n", 2, "not a finite", "overflow in info");
    expect_err("1\nx\nXx 0 0 0\n", 3, "unknown element 'Xx'", "unknown element");
    expect_err("1\nx\nSI 0 0 0\n", 3, "unknown element 'SI'", "wrong case");
    expect_err("1\nx\n8 0 0 0\n", 3, "unknown element '8'", "atomic number");
    expect_err("1\nProperties=species:S:1:pos:R\nH 0 0 0\n", 2, "malformed Properties", "spec not triples");
    expect_err("1\nProperties=species:S:1:pos:Q:3\nH 0 0 0\n", 2, "must be S, R, I or L", "spec bad type");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:0\nH 0 0 0\n", 2, "column count of 'q'", "spec 0 cols");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:x\nH 0 0 0\n", 2, "column count", "spec bad cols");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:99999999\nH 0 0 0\n", 2, "column count", "spec huge cols");
    expect_err("1\nProperties=species:S:1\nH\n", 2, "species:S:1 and pos:R:3 are both required", "spec no pos");
    expect_err("1\nProperties=species:S:1:pos:R:2\nH 0 0\n", 2, "pos must be pos:R:3", "pos 2 cols");
    expect_err("1\nProperties=species:I:1:pos:R:3\nH 0 0 0\n", 2, "species must be species:S:1", "species int");
    expect_err("1\nProperties=species:S:1:pos:R:3:q:R:1:q:R:1\nH 0 0 0 1 1\n", 2, "'q' appears twice", "spec dup");
    expect_err("1\nProperties=species:S:1::R:1:pos:R:3\nH 0 0 0\n", 2, "empty property name", "spec empty name");
    expect_err("1\nProperties=[1,2]\nH 0 0 0\n", 2, "malformed Properties", "spec as list");
    expect_err("1\nProperties=\nH 0 0 0\n", 2, "'=' without a value", "spec without value");
    expect_err("1\nProperties=species:S:1:pos:R:3 a=1 b=2 a=3\nH 0 0 0\n", 2, "duplicate key 'a'", "dup key");
    expect_err("1\nProperties=species:S:1:pos:R:3 properties=species:S:1:pos:R:3\nH 0 0 0\n", 2,
               "duplicate key 'properties'", "dup Properties");
    expect_err("1\nProperties=species:S:1:pos:R:3 k0 k1 k2 k3 k4 k5 k6 k7 k8 k9 k10 k11 k12 k13 k14 k15 k16 k17 k18 "
               "k19 k20 k7=F\nH 0 0 0\n",
               2, "duplicate key 'k7'", "dup key among many");
    expect_err("1\nProperties=species:S:1:pos:R:3 name=\"abc\nH 0 0 0\n", 2, "unterminated quote", "unterminated");
    expect_err("1\nProperties=species:S:1:pos:R:3 name='abc\\'\nH 0 0 0\n", 2, "unterminated quote",
               "unterminated after escape");
    expect_err("1\nProperties=species:S:1:pos:R:3 m=[[1,2],[3,4]]\nH 0 0 0\n", 2, "nested lists", "nested");
    expect_err("1\nProperties=species:S:1:pos:R:3 m=[a, b]\nH 0 0 0\n", 2, "only lists of numbers or booleans",
               "list of words");
    expect_err("1\nProperties=species:S:1:pos:R:3 m={\"a\": 1}\nH 0 0 0\n", 2, "cannot read list", "json dict");
    expect_err("1\nProperties=species:S:1:pos:R:3 m=[1, 2\nH 0 0 0\n", 2, "unterminated list", "open list");
    expect_err("1\nProperties=species:S:1:pos:R:3 m=[]\nH 0 0 0\n", 2, "empty list", "empty list");
    expect_err("1\nProperties=species:S:1:pos:R:3 =5\nH 0 0 0\n", 2, "without a key", "no key");
    expect_err("1\nProperties=species:S:1:pos:R:3 a=\nH 0 0 0\n", 2, "without a value", "no value");
    expect_err("1\nProperties=species:S:1:pos:R:3 a=\"x\"y\nH 0 0 0\n", 2, "after the closing quote", "after quote");
    expect_err("1\nProperties=species:S:1:pos:R:3 a=b\"c\nH 0 0 0\n", 2, "unexpected character '\"'", "quote mid");
    expect_err("1\nProperties=species:S:1:pos:R:3 a[1]=2\nH 0 0 0\n", 2, "unexpected character '['", "bracket key");
    expect_err("1\nProperties=species:S:1:pos:R:3 Lattice=\"1 2 3\"\nH 0 0 0\n", 2, "Lattice must be 9 numbers",
               "short Lattice");
    expect_err("1\nProperties=species:S:1:pos:R:3 pbc=\"T T\"\nH 0 0 0\n", 2, "pbc must be 1 or 3 booleans", "pbc");
    expect_err("1\nProperties=species:S:1:pos:R:3:i:I:1\nH 0 0 0 1.5\n", 3, "column 5 (i): expected an integer",
               "int column");
    expect_err("1\nProperties=species:S:1:pos:R:3:i:I:1\nH 0 0 0 9007199254740993\n", 3, "too large", "big int column");
    expect_err("1\nProperties=species:S:1:pos:R:3:b:L:1\nH 0 0 0 yes\n", 3, "expected a boolean", "bool column");
    expect_err("1\nx\nH 0 0 0\n\n1\nx\nH 0 0 0\n", 4, "blank line where an atom count was expected", "blank mid");
    expect_err("\n1\nx\nH 0 0 0\n", 1, "blank line where an atom count", "blank first line");
    expect_err("1\r\nx\r\nH 0 0 0\r\n1\r\nx\r\nH 0 0 q\r\n", 6, "found 'q'", "CRLF line numbers");
    {
        const char bin[] = "1\nx\nH 0\0 0 0\n";
        xyz_file f;
        int rc = xyz_parse(bin, sizeof bin - 1, "nul.xyz", &f, err, sizeof err);
        CHECK(rc == -1 && strstr(err, "nul.xyz:3:") && strstr(err, "NUL byte"), "NUL byte: '%s'", err);
    }
    /* long tokens are shortened in messages, control characters hidden */
    {
        char t[400] = "1\nx\nH 0 0 ";
        size_t n = strlen(t);
        for (int i = 0; i < 300; i++) t[n++] = 'a';
        t[n++] = '\x01';
        t[n] = '\0';
        xyz_file f;
        int rc = parse(t, &f);
        CHECK(rc == -1 && strlen(err) < 200 && strstr(err, "...") && !strchr(err, '\x01'), "long token: '%s'", err);
    }
    /* xyz_read: missing file */
    xyz_file f;
    CHECK(xyz_read("/nonexistent/dir/x.xyz", &f, err, sizeof err) == -1 && strstr(err, "/nonexistent/dir/x.xyz") &&
              f.nframes == 0,
          "missing file: '%s'", err);
    /* tiny error buffer: truncated, still NUL-terminated */
    char small[8];
    CHECK(xyz_parse("x", 1, "name.xyz", &f, small, sizeof small) == -1 && strlen(small) == 7, "small err buffer");
    CHECK(xyz_parse("x", 1, "name.xyz", &f, NULL, 0) == -1, "NULL err buffer");
}

/* ---- round trips ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rand_double(void) {
    static const double special[] = {0.0, -0.0, 4.9406564584124654e-324, -4.9406564584124654e-324, DBL_MIN,
                                     2.2250738585072009e-308, DBL_MAX, -DBL_MAX, 1e-300, 1e300, 0.1, 1.0 / 3, 2.0,
                                     -7.0, 1e22, 9007199254740993.0, 0.30000000000000004};
    uint64_t r = rng();
    if (r % 5 == 0) return special[(r >> 8) % (sizeof special / sizeof *special)];
    for (;;) {
        uint64_t b = rng();
        double d;
        memcpy(&d, &b, sizeof d);
        if (isfinite(d)) return d;
    }
}

static void build_random(xyz_file *f, int nframes) {
    f->nframes = 0;
    f->frames = NULL;
    for (int k = 0; k < nframes; k++) {
        int n = k == 1 ? 0 : (int)(rng() % 6) + 1;
        int z[8];
        double pos[24], v[64];
        for (int i = 0; i < n; i++) z[i] = (int)(rng() % 86) + 1;
        /* positions within the reader's bound (|x| <= XYZ_MAX_COORD) */
        for (int i = 0; i < 3 * n; i++) pos[i] = fmod(rand_double(), XYZ_MAX_COORD);
        xyz_frame fr;
        CHECK(xyz_frame_init(&fr, n, z, pos) == 0, "frame_init");
        for (int i = 0; i < 9; i++) v[i] = rand_double();
        xyz_set_info_real(&fr, "energy", v, 1);
        xyz_set_info_real(&fr, "Lattice", v, 9);
        double pbc[3] = {1, 0, 1}, ints[3] = {-3, 0, 9007199254740991.0}, one = 2.0, negz = -0.0;
        xyz_set_info_num(&fr, "pbc", XYZ_BOOL, pbc, 3);
        xyz_set_info_num(&fr, "steps", XYZ_INT, ints, 3);
        xyz_set_info_num(&fr, "nsteps", XYZ_INT, ints, 1);
        xyz_set_info_real(&fr, "two", &one, 1);
        xyz_set_info_real(&fr, "negzero", &negz, 1);
        xyz_set_info_str(&fr, "name", k % 2 ? "plain" : "with \"quotes\", spaces = and \\ [x] {y}");
        xyz_set_info_str(&fr, "empty", "");
        double b1 = 1;
        xyz_set_info_num(&fr, "flag", XYZ_BOOL, &b1, 1);
        for (int i = 0; i < 3 * n; i++) v[i] = rand_double();
        xyz_set_array_real(&fr, "forces_ref", 3, v);
        for (int i = 0; i < n; i++) v[i] = rand_double();
        xyz_set_array_real(&fr, "q", 1, v);
        for (int i = 0; i < n; i++) v[i] = (double)((int64_t)(rng() % 2001) - 1000);
        xyz_set_array_num(&fr, "idx", XYZ_INT, 1, v);
        for (int i = 0; i < 2 * n; i++) v[i] = (double)(rng() % 2);
        xyz_set_array_num(&fr, "mask", XYZ_BOOL, 2, v);
        CHECK(xyz_append_frame(f, &fr) == 0 && fr.z == NULL, "append_frame");
    }
}

static int frames_identical(const xyz_frame *a, const xyz_frame *b) {
    if (a->natoms != b->natoms || a->ninfo != b->ninfo || a->narrays != b->narrays) return 0;
    for (int i = 0; i < a->natoms; i++)
        if (a->z[i] != b->z[i]) return 0;
    if (a->natoms && memcmp(a->pos, b->pos, (size_t)a->natoms * 3 * sizeof(double)) != 0) return 0;
    for (int k = 0; k < a->ninfo; k++) {
        const xyz_info *x = &a->info[k], *y = &b->info[k];
        if (strcmp(x->key, y->key) || x->type != y->type || x->n != y->n) return 0;
        if (x->type == XYZ_STR ? strcmp(x->str, y->str) != 0 : memcmp(x->num, y->num, (size_t)x->n * 8) != 0)
            return 0;
    }
    for (int k = 0; k < a->narrays; k++) {
        const xyz_array *x = &a->arrays[k], *y = &b->arrays[k];
        size_t n = (size_t)a->natoms * (size_t)x->ncols;
        if (strcmp(x->name, y->name) || x->type != y->type || x->ncols != y->ncols) return 0;
        if (x->type == XYZ_STR) {
            for (size_t i = 0; i < n; i++)
                if (strcmp(x->str[i], y->str[i])) return 0;
        } else if (n && memcmp(x->num, y->num, n * 8) != 0) return 0;
    }
    return 1;
}

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    b[got] = '\0';
    *len = got;
    return b;
}

static void test_roundtrip(const char *dir) {
    char path[512], path2[512];
    snprintf(path, sizeof path, "%s/rt.xyz", dir);
    snprintf(path2, sizeof path2, "%s/rt2.xyz", dir);
    xyz_file f, g, h;
    build_random(&f, 40);
    int rc = xyz_write(path, &f, err, sizeof err);
    CHECK(rc == 0, "write: %s", err);
    rc = xyz_read(path, &g, err, sizeof err);
    CHECK(rc == 0, "read back: %s", err);
    if (rc == 0) {
        int same = g.nframes == f.nframes;
        for (int k = 0; same && k < f.nframes; k++) {
            same = frames_identical(&f.frames[k], &g.frames[k]);
            CHECK(same, "frame %d differs after write+read", k);
        }
        CHECK(same, "round trip bit-identical (%d frames)", f.nframes);
        CHECK(g.frames[2].line > 1, "frame lines set");
        /* write again: same bytes */
        CHECK(xyz_write(path2, &g, err, sizeof err) == 0, "write 2: %s", err);
        size_t n1 = 0, n2 = 0;
        char *a = slurp(path, &n1), *b = slurp(path2, &n2);
        CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "write(read(write(x))) gives the same bytes");
        /* a look at the text */
        CHECK(a && strstr(a, " two=2.0 ") && strstr(a, " negzero=-0.0 ") && strstr(a, "pbc=\"T F T\"") &&
                  strstr(a, "steps=\"-3 0 9007199254740991\" nsteps=-3 ") && strstr(a, " empty=\"\" flag=T") &&
                  strstr(a, "name=\"with \\\"quotes\\\", spaces = and \\\\ [x] {y}\""),
              "written text");
        CHECK(a && strstr(a, "\nProperties=species:S:1:pos:R:3:forces_ref:R:3:q:R:1:idx:I:1:mask:L:2 energy="),
              "Properties first, then info in order");
        free(a);
        free(b);
        xyz_free(&g);
    }
    /* edits: replace keeps order, remove */
    xyz_frame *fr = &f.frames[0];
    double e2 = 42.5;
    int ninfo = fr->ninfo;
    CHECK(xyz_set_info_real(fr, "energy", &e2, 1) == 0 && fr->ninfo == ninfo && strcmp(fr->info[0].key, "energy") == 0 &&
              fr->info[0].num[0] == 42.5,
          "replace keeps place");
    CHECK(xyz_set_info_str(fr, "energy", "x") == 0 && fr->info[0].type == XYZ_STR, "replace with string");
    CHECK(xyz_remove_info(fr, "energy") == 1 && fr->ninfo == ninfo - 1 && xyz_find_info(fr, "energy") == NULL &&
              xyz_remove_info(fr, "energy") == 0,
          "remove info");
    CHECK(xyz_remove_array(fr, "q") == 1 && xyz_find_array(fr, "q") == NULL && xyz_find_array(fr, "idx"), "remove array");
    double p[24] = {0};
    for (int i = 0; i < 3 * fr->natoms; i++) p[i] = i + 0.5;
    CHECK(xyz_set_array_real(fr, "pos", 3, p) == 0 && fr->pos[1] == 1.5, "set pos");
    CHECK(xyz_set_array_real(fr, "species", 1, p) == -1 && xyz_set_array_real(fr, "x", 0, p) == -1 &&
              xyz_set_info_real(fr, "", p, 1) == -1 && xyz_set_info_real(fr, "k", p, 0) == -1,
          "bad set arguments");
    CHECK(xyz_set_array_real(fr, "forces_ref", 1, p) == 0 && xyz_find_array(fr, "forces_ref")->ncols == 1,
          "replace array with other width");

    /* write errors: nothing under the final name, no temporary left */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.xyz", dir);
    fr->pos[0] = NAN;
    CHECK(xyz_write(bad, &f, err, sizeof err) == -1 && strstr(err, "frame 1") && strstr(err, "not finite"),
          "NaN write: '%s'", err);
    CHECK(access(bad, F_OK) != 0, "no file after a failed write");
    fr->pos[0] = 0;
    xyz_set_info_str(fr, "bad key", "x");
    CHECK(xyz_write(bad, &f, err, sizeof err) == -1 && strstr(err, "'bad key'"), "bad key: '%s'", err);
    xyz_remove_info(fr, "bad key");
    xyz_set_info_str(fr, "nl", "a\nb");
    CHECK(xyz_write(bad, &f, err, sizeof err) == -1 && strstr(err, "line break"), "newline: '%s'", err);
    xyz_remove_info(fr, "nl");
    fr->z[0] = 87;
    CHECK(xyz_write(bad, &f, err, sizeof err) == -1 && strstr(err, "atomic number 87"), "Z 87: '%s'", err);
    fr->z[0] = 1;
    double half = 0.5;
    xyz_set_info_num(fr, "i", XYZ_INT, &half, 1);
    CHECK(xyz_write(bad, &f, err, sizeof err) == -1 && strstr(err, "not an integer"), "int 0.5: '%s'", err);
    xyz_remove_info(fr, "i");
    xyz_set_info_str(fr, "properties", "x");
    CHECK(xyz_write(bad, &f, err, sizeof err) == -1, "properties as info key");
    xyz_remove_info(fr, "properties");
    CHECK(xyz_write("/nonexistent/dir/out.xyz", &f, err, sizeof err) == -1 && strstr(err, "/nonexistent/dir/out.xyz"),
          "unwritable: '%s'", err);
    CHECK(access(bad, F_OK) != 0, "still no file");
    {
        DIR *d = opendir(dir);
        int tmps = 0;
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) tmps += strstr(de->d_name, ".tmp.") != NULL;
        if (d) closedir(d);
        CHECK(tmps == 0, "%d temporary files left", tmps);
    }
    CHECK(xyz_write(bad, &f, err, sizeof err) == 0, "valid again: %s", err);
    rc = xyz_read(bad, &h, err, sizeof err);
    CHECK(rc == 0 && h.frames[0].pos[1] == 1.5 && xyz_find_array(&h.frames[0], "q") == NULL, "edited frame read back");
    if (rc == 0) xyz_free(&h);
    remove(bad);
    remove(path);
    remove(path2);
    xyz_free(&f);
}

/* ---- the bad-input corpus: table in tests/bad/README.md ---- */

static char *trim(char *s) {
    while (*s == ' ' || *s == '`') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '`' || e[-1] == '\n' || e[-1] == '\r')) e--;
    *e = '\0';
    return s;
}

static void test_corpus(void) {
    FILE *fp = fopen("tests/bad/README.md", "r");
    if (!fp) {
        CHECK(0, "tests/bad/README.md missing (run from the repository root)");
        return;
    }
    char line[1024], names[64][64];
    int nrows = 0, nfail = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "| xyz_", 6) != 0 && strncmp(line, "| `xyz_", 7) != 0) continue;
        char *cell[5] = {0};
        int nc = 0;
        char *p = line + 1;
        while (nc < 5 && p && *p) {
            char *bar = strchr(p, '|');
            if (!bar) break;
            *bar = '\0';
            cell[nc++] = trim(p);
            p = bar + 1;
        }
        CHECK(nc == 4, "README row with %d cells", nc);
        if (nc != 4) continue;
        const char *file = cell[0], *want = cell[2], *lines = cell[3];
        char path[256];
        snprintf(path, sizeof path, "tests/bad/%s", file);
        if (nrows < 64) snprintf(names[nrows], sizeof names[0], "%s", file);
        nrows++;
        xyz_file f;
        int rc = xyz_read(path, &f, err, sizeof err);
        if (strcmp(lines, "-") == 0) {
            CHECK(rc == 0, "%s should parse at the XYZ level: %s", file, err);
            if (rc == 0) xyz_free(&f);
            continue;
        }
        char prefix[300];
        snprintf(prefix, sizeof prefix, "%s:%s: ", path, lines);
        CHECK(rc == -1, "%s should fail", file);
        CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "%s: message '%s' should start with '%s'", file, err, prefix);
        CHECK(strstr(err, want) != NULL, "%s: message '%s' should contain '%s'", file, err, want);
        CHECK(f.nframes == 0 && f.frames == NULL, "%s: *out not empty", file);
        if (rc == 0) xyz_free(&f);
        nfail++;
    }
    fclose(fp);
    CHECK(nfail >= 20, "only %d failing corpus files in the README table", nfail);
    /* every tests/bad/xyz_*.xyz has a row */
    DIR *d = opendir("tests/bad");
    struct dirent *de;
    int nfiles = 0;
    while (d && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "xyz_", 4) != 0 || l < 5 || strcmp(de->d_name + l - 4, ".xyz") != 0) continue;
        nfiles++;
        int found = 0;
        for (int i = 0; i < nrows && i < 64; i++) found |= strcmp(names[i], de->d_name) == 0;
        CHECK(found, "tests/bad/%s has no row in tests/bad/README.md", de->d_name);
    }
    if (d) closedir(d);
    CHECK(nfiles == nrows, "%d corpus files, %d README rows", nfiles, nrows);
}

/* ---- robustness: mutated inputs must fail cleanly or parse ---- */
static void test_mutations(void) {
    const char *base = "2\nProperties=species:S:1:pos:R:3:q:R:1:t:S:1 e=-1.5 d=\"1 2 3\" s='a b' l=[1,2] pbc=\"T F T\"\n"
                       "O 0.0 0.1 0.2 0.5 x\nH 1 2 3 -0.5 y\n0\n\n";
    const char alphabet[] = "0123456789 \n\r\t\"'=[]{}\\:.-+eEnaT F,Properties";
    size_t n = strlen(base);
    char *b = malloc(n + 8);
    int bad_msg = 0, ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, base, n);
        size_t m = n;
        int edits = 1 + (int)(rng() % 3);
        for (int k = 0; k < edits; k++) {
            size_t at = (size_t)(rng() % m);
            switch (rng() % 3) {
            case 0: b[at] = alphabet[rng() % (sizeof alphabet - 1)]; break;
            case 1: m = at; break; /* truncate */
            default: memmove(b + at, b + at + 1, m - at - 1); m--; break;
            }
            if (m == 0) break;
        }
        xyz_file f;
        int rc = xyz_parse(b, m, "mut.xyz", &f, err, sizeof err);
        if (rc == 0) { ok++; xyz_free(&f); }
        else if (strncmp(err, "mut.xyz:", 8) != 0 || strchr(err, '\n') || f.nframes || f.frames) bad_msg++;
    }
    free(b);
    CHECK(bad_msg == 0, "%d mutated inputs gave a malformed error", bad_msg);
    CHECK(ok > 0, "some mutated inputs still parse (%d)", ok);
}

/* ---- decimal reading agrees bit for bit with strtod (the reader has a fast
 * path for short decimals; this pins it to the correctly rounded result) ---- */
static void test_decimals(void) {
    int n = 20000;
    size_t cap = (size_t)n * 48 + 128, len = 0;
    char *b = malloc(cap), (*tok)[48] = malloc((size_t)n * sizeof *tok);
    len += (size_t)snprintf(b, cap, "1\nProperties=species:S:1:pos:R:3:x:R:%d\nH 0 0 0", n);
    for (int i = 0; i < n; i++) {
        char *t = tok[i];
        size_t m = 0;
        uint64_t r = rng();
        if (r & 1) t[m++] = '-';
        else if (r & 2) t[m++] = '+';
        int ni = (int)(rng() % 12), nf = (int)(rng() % 14);
        if (ni == 0 && nf == 0) ni = 1;
        for (int k = 0; k < ni; k++) t[m++] = (char)('0' + rng() % 10);
        if (nf || (r & 4)) t[m++] = '.';
        for (int k = 0; k < nf; k++) t[m++] = (char)('0' + (rng() % 3 == 0 ? 0 : rng() % 10));
        if (r & 8) m += (size_t)sprintf(t + m, "%c%d", (r & 16) ? 'e' : 'E', (int)(rng() % 61) - 30);
        t[m] = '\0';
        len += (size_t)snprintf(b + len, cap - len, " %s", t);
    }
    xyz_file f;
    int rc = xyz_parse(b, len, "dec.xyz", &f, err, sizeof err);
    CHECK(rc == 0, "decimals: %s", err);
    if (rc == 0) {
        const xyz_array *x = xyz_find_array(&f.frames[0], "x");
        int bad = 0;
        for (int i = 0; i < n && x; i++) {
            double want = strtod(tok[i], NULL);
            if (!same_bits(x->num[i], want)) {
                if (bad++ < 5) CHECK(0, "'%s' read as %.17g, strtod gives %.17g", tok[i], x->num[i], want);
            }
        }
        CHECK(x && bad == 0, "%d of %d decimals differ from strtod", bad, n);
        xyz_free(&f);
    }
    free(b);
    free(tok);
}

/* ---- a large file ---- */
static void test_large(void) {
    int nframes = 2000, nat = 32;
    size_t cap = (size_t)nframes * (size_t)(nat + 2) * 140, n = 0;
    char *b = malloc(cap);
    for (int k = 0; k < nframes; k++) {
        n += (size_t)snprintf(b + n, cap - n, "%d\nProperties=species:S:1:pos:R:3:q:R:1 energy=%.17g dipole=\"%d 0.5 -1\"\n",
                              nat, -k * 0.001, k);
        for (int i = 0; i < nat; i++)
            n += (size_t)snprintf(b + n, cap - n, "%s %.17g %.17g %.17g %.17g\n", i % 3 ? "H" : "O", k + i * 0.1,
                                  -i * 1e-3, i * 3.0e-7, i % 2 ? 0.25 : -0.5);
    }
    xyz_file f;
    clock_t t0 = clock();
    int rc = xyz_parse(b, n, "large.xyz", &f, err, sizeof err);
    double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(rc == 0, "large: %s", err);
    if (rc == 0) {
        const xyz_frame *fr = &f.frames[nframes - 1];
        CHECK(f.nframes == nframes && fr->natoms == nat && fr->z[0] == 8 && fr->z[1] == 1, "large shape");
        CHECK(fr->pos[3 * 31] == (nframes - 1) + 31 * 0.1 && fr->info[1].num[0] == nframes - 1, "large values");
        CHECK(fr->line == (nframes - 1) * (nat + 2) + 1, "large line %d", fr->line);
        xyz_free(&f);
    }
    printf("test_xyz: parsed %.1f MB in %.3f s (%.0f MB/s)\n", n / 1e6, dt, n / 1e6 / (dt > 0 ? dt : 1e-9));
    free(b);
}

/* Many comment keys (issue 12/13): the writer's duplicate-key check is the
 * reader's sort-based one. Checked functionally, not by timing: 200,000 keys
 * read, write and read back, and a duplicate among them is found by both the
 * reader and the writer (the one key named). */
static void test_many_keys(const char *dir) {
    char err[512], path[256];
    const int nk = 200000;
    size_t cap = (size_t)nk * 24 + 256, n = 0;
    char *b = malloc(cap);
    CHECK(b != NULL, "many keys: malloc");
    if (!b) return;
    n += (size_t)snprintf(b + n, cap - n, "1\nProperties=species:S:1:pos:R:3");
    for (int k = 0; k < nk; k++) n += (size_t)snprintf(b + n, cap - n, " k%d=%d", (k * 7919) % nk, k);
    n += (size_t)snprintf(b + n, cap - n, "\nH 0 0 0\n");
    xyz_file f;
    int rc = xyz_parse(b, n, "keys.xyz", &f, err, sizeof err);
    CHECK(rc == 0 && f.frames[0].ninfo == nk, "many keys parse: %s", err);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/keys.xyz", dir);
        CHECK(xyz_write(path, &f, err, sizeof err) == 0, "many keys write: %s", err);
        xyz_file g;
        rc = xyz_read(path, &g, err, sizeof err);
        CHECK(rc == 0 && g.frames[0].ninfo == nk && strcmp(g.frames[0].info[nk - 1].key, f.frames[0].info[nk - 1].key) == 0,
              "many keys read back: %s", err);
        if (rc == 0) xyz_free(&g);
        /* the writer finds a duplicate anywhere among them */
        free(f.frames[0].info[nk - 1].key);
        f.frames[0].info[nk - 1].key = malloc(16);
        strcpy(f.frames[0].info[nk - 1].key, f.frames[0].info[12345].key);
        char want[64];
        snprintf(want, sizeof want, "info key '%s' appears twice", f.frames[0].info[12345].key);
        CHECK(xyz_write(path, &f, err, sizeof err) == -1 && strstr(err, want), "writer duplicate: '%s'", err);
        xyz_free(&f);
        remove(path);
    }
    /* the reader too */
    n -= strlen("\nH 0 0 0\n");
    n += (size_t)snprintf(b + n, cap - n, " k%d=1\nH 0 0 0\n", (123 * 7919) % nk);
    rc = xyz_parse(b, n, "keys.xyz", &f, err, sizeof err);
    char want[64];
    snprintf(want, sizeof want, "'k%d'", (123 * 7919) % nk);
    CHECK(rc == -1 && strstr(err, "keys.xyz:2:") && strstr(err, want), "reader duplicate: '%s'", err);
    if (rc == 0) xyz_free(&f);
    free(b);
}

/* Issue 13 limits of the reader and writer: coordinates beyond
 * XYZ_MAX_COORD, NUL bytes (xyz_read stops there), directories. */
static void test_limits(const char *dir) {
    char err[512], path[256];
    xyz_file f;
    const char *far = "1\n\nH 0 1000000.5 0\n", *ok = "1\n\nH 0 -1000000 0\n";
    int rc = xyz_parse(far, strlen(far), "far.xyz", &f, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "far.xyz:3:") && strstr(err, "beyond"), "far coordinate: '%s'", err);
    rc = xyz_parse(ok, strlen(ok), "ok.xyz", &f, err, sizeof err);
    CHECK(rc == 0 && f.frames[0].pos[1] == -1e6, "coordinate at the bound: '%s'", err);
    if (rc == 0) {
        f.frames[0].pos[2] = 1e300;
        snprintf(path, sizeof path, "%s/far.xyz", dir);
        CHECK(xyz_write(path, &f, err, sizeof err) == -1 && strstr(err, "beyond") && access(path, F_OK) != 0,
              "writer refuses a far coordinate: '%s'", err);
        xyz_free(&f);
    }
    CHECK(xyz_read(dir, &f, err, sizeof err) == -1 && strstr(err, "is a directory"), "directory: '%s'", err);
    snprintf(path, sizeof path, "%s/nul.xyz", dir);
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fputs("1\ncomment\nH 0 0 0\n1\n", fp);
        for (int i = 0; i < 200000; i++) fputc('\0', fp); /* read stops at the first */
        fclose(fp);
    }
    CHECK(xyz_read(path, &f, err, sizeof err) == -1 && strstr(err, "nul.xyz:5: NUL byte"), "NUL: '%s'", err);
    remove(path);
}

/* A file name with line breaks in it (a name may hold any byte but '/' and
 * NUL) still gives a one-line message that names the line: the breaks
 * become spaces. */
static void test_name_breaks(void) {
    const char text[] = "2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 0 0 x\n";
    char e[256];
    xyz_file f;
    int rc = xyz_parse(text, sizeof text - 1, "a\nb\rc.xyz", &f, e, sizeof e);
    CHECK(rc == -1 && !strchr(e, '\n') && !strchr(e, '\r') && strstr(e, "c.xyz:4:"),
          "a name with line breaks: message '%s'", e);
    if (rc == 0) xyz_free(&f);
}

int main(void) {
    char dir[] = "/tmp/test_xyz.XXXXXX";
    (void)shared_dir; /* harness helpers this test does not need */
    (void)th_skip;
    test_symbols();
    test_syntax();
    test_plain_and_layout();
    test_errors();
    test_name_breaks();
    if (mkdtemp(dir)) {
        test_roundtrip(dir);
        test_many_keys(dir);
        test_limits(dir);
        rmdir(dir);
    } else {
        CHECK(0, "mkdtemp failed");
    }
    test_corpus();
    test_mutations();
    test_decimals();
    test_large();
    return th_done("test_xyz");
}
