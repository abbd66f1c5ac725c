/* SPDX-License-Identifier: MIT */
/* xyz.c - extended XYZ reader and writer (ASE's dialect); see xyz.h.
 *
 * Reading works on one private, NUL-terminated, writable copy of the input:
 * lines are cut in place, tokens are NUL-terminated in place for strtod, and
 * nothing proportional to a declared atom count is allocated before that
 * count is checked against the bytes that remain in the input.
 *
 * Numbers: integer literals ([+-]digits) are parsed by hand (exact); other
 * numbers by strtod, which rounds correctly (so "%.17g" text reads back to
 * the same bits) and also accepts hexadecimal floats (exact, accepted).
 * strtod also accepts nan/inf: every non-finite value is an error.
 * The C library must be in the "C" numeric locale (the default; do not call
 * setlocale(LC_NUMERIC, ...)), otherwise strtod/printf use another decimal
 * point.
 */
#include "xyz.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* elements                                                            */

static const char *const xyz_symbols[87] = {
    NULL, "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", /* 1-10 */
    "Na", "Mg", "Al", "Si", "P",  "S",  "Cl", "Ar",                   /* 11-18 */
    "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni",       /* 19-28 */
    "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",                   /* 29-36 */
    "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd",       /* 37-46 */
    "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe",                   /* 47-54 */
    "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd",       /* 55-64 */
    "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu",                         /* 65-71 */
    "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl",       /* 72-81 */
    "Pb", "Bi", "Po", "At", "Rn"};                                    /* 82-86 */

/* Atomic number of the symbol s[0..len-1], 0 if unknown. */
static int symbol_z(const char *s, size_t len) {
    if (len < 1 || len > 2) return 0;
    for (int z = 1; z <= 86; z++) {
        const char *t = xyz_symbols[z];
        if (t[0] != s[0]) continue;
        if (len == 1 ? t[1] == '\0' : (t[1] == s[1] && t[2] == '\0')) return z;
    }
    return 0;
}

int xyz_symbol_to_z(const char *sym) { return sym ? symbol_z(sym, strlen(sym)) : 0; }

const char *xyz_z_to_symbol(int z) { return (z >= 1 && z <= 86) ? xyz_symbols[z] : NULL; }

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

typedef struct {
    const char *name; /* file name for messages */
    char *err;
    size_t errlen;
} ectx;

static int fail(const ectx *e, long line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* A path for messages: paths longer than 200 bytes are shortened to
 * "...<last 197 bytes>" so that the reason after them is never cut off by
 * the caller's message buffer (buf >= 201 bytes). */
const char *xyz_short_path(const char *p, char *buf) {
    size_t n = strlen(p);
    if (n <= 200) return p;
    memcpy(buf, "...", 3);
    memcpy(buf + 3, p + n - 197, 198);
    return buf;
}

static int fail(const ectx *e, long line, const char *fmt, ...) {
    if (e->err && e->errlen) {
        char nb[208];
        int k = snprintf(e->err, e->errlen, "%s:%ld: ", xyz_short_path(e->name, nb), line);
        if (k >= 0 && (size_t)k < e->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(e->err + k, e->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
        for (char *c = e->err; *c; c++) /* one line, whatever the name holds */
            if (*c == '\n' || *c == '\r') *c = ' ';
    }
    return -1;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A printable, shortened copy of s[0..len-1] for messages (buf >= 48). */
static const char *show(const char *s, size_t len, char *buf) {
    size_t n = len > 40 ? 40 : len, i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > n) { memcpy(buf + i, "...", 3); i += 3; }
    buf[i] = '\0';
    return buf;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = '\0'; }
    return d;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

/* Integer literal [+-]?[0-9]+: 0 = ok (|v| < 2^53, stored in *v),
 * 1 = not an integer literal, 2 = integer literal too large for a double. */
static int parse_int(const char *s, size_t len, double *v) {
    size_t i = 0;
    int neg = 0, big = 0;
    uint64_t acc = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i == len) return 1;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 1;
        if (!big) {
            acc = acc * 10 + (uint64_t)(s[i] - '0');
            if (acc >= ((uint64_t)1 << 53)) big = 1;
        }
    }
    if (big) return 2;
    *v = neg ? -(double)acc : (double)acc;
    if (*v == 0) *v = 0; /* integers have no negative zero */
    return 0;
}

/* Clinger's fast path for short decimals (the common case, e.g. ASE's
 * "%16.8f" columns): [+-]digits[.digits][e[+-]digits] with a significand
 * M < 2^53 and a power of ten 10^|k| <= 10^22 (both exact doubles) gives
 * M * 10^k or M / 10^-k with one IEEE rounding, i.e. exactly strtod's
 * correctly rounded result. Returns 0 and sets *v, or -1: use strtod. */
static int parse_decimal_fast(const char *s, size_t len, double *v) {
#if FLT_EVAL_METHOD == 0
    static const double p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    int neg = 0, ndig = 0, any = 0;
    long k = 0;
    uint64_t m = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        any = 1;
        if (m == 0 && s[i] == '0') continue; /* leading zeros */
        if (++ndig > 19) return -1;
        m = m * 10 + (uint64_t)(s[i] - '0');
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            any = 1;
            k--;
            if (m == 0 && s[i] == '0') continue;
            if (++ndig > 19) return -1;
            m = m * 10 + (uint64_t)(s[i] - '0');
        }
    }
    if (!any) return -1;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        long ex = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i == len) return -1;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            if (ex > 10000) return -1;
            ex = ex * 10 + (s[i] - '0');
        }
        k += eneg ? -ex : ex;
    }
    if (i != len || m > ((uint64_t)1 << 53) || k < -22 || k > 22) return -1;
    double x = (double)m;
    x = k < 0 ? x / p10[-k] : x * p10[k];
    *v = neg ? -x : x;
    return 0;
#else
    (void)s, (void)len, (void)v;
    return -1;
#endif
}

/* Any number strtod takes, whole token: 0 = ok, 1 = not a number,
 * 2 = not finite (nan, inf, overflow). s[len] is temporarily overwritten. */
static int parse_real(char *s, size_t len, double *v) {
    if (len == 0 || is_ws(s[0])) return 1;
    if (parse_decimal_fast(s, len, v) == 0) return 0;
    char save = s[len], *end;
    s[len] = '\0';
    double x = strtod(s, &end);
    s[len] = save;
    if (end != s + len) return 1;
    if (!isfinite(x)) return 2;
    *v = x;
    return 0;
}

/* T F True False true false: 0 = ok (*v 1 or 0), 1 = not a boolean. */
static int parse_bool(const char *s, size_t len, double *v) {
    static const char *const t[] = {"T", "True", "true"}, *const f[] = {"F", "False", "false"};
    for (int i = 0; i < 3; i++) {
        if (strlen(t[i]) == len && memcmp(s, t[i], len) == 0) { *v = 1; return 0; }
        if (strlen(f[i]) == len && memcmp(s, f[i], len) == 0) { *v = 0; return 0; }
    }
    return 1;
}

static const char *type_name(xyz_type t) {
    switch (t) {
    case XYZ_STR: return "string";
    case XYZ_REAL: return "real";
    case XYZ_INT: return "integer";
    case XYZ_BOOL: return "boolean";
    }
    return "?";
}

/* ------------------------------------------------------------------ */
/* freeing                                                             */

static void info_free(xyz_info *in) {
    free(in->key);
    free(in->num);
    free(in->str);
    memset(in, 0, sizeof *in);
}

static void array_free(xyz_array *a, int natoms) {
    if (a->str) {
        size_t n = (size_t)natoms * (size_t)a->ncols;
        for (size_t i = 0; i < n; i++) free(a->str[i]);
    }
    free(a->name);
    free(a->num);
    free(a->str);
    memset(a, 0, sizeof *a);
}

void xyz_frame_free(xyz_frame *fr) {
    if (!fr) return;
    for (int i = 0; i < fr->ninfo; i++) info_free(&fr->info[i]);
    for (int i = 0; i < fr->narrays; i++) array_free(&fr->arrays[i], fr->natoms);
    free(fr->info);
    free(fr->arrays);
    free(fr->z);
    free(fr->pos);
    memset(fr, 0, sizeof *fr);
}

void xyz_free(xyz_file *f) {
    if (!f) return;
    for (int i = 0; i < f->nframes; i++) xyz_frame_free(&f->frames[i]);
    free(f->frames);
    f->frames = NULL;
    f->nframes = 0;
}

/* ------------------------------------------------------------------ */
/* the Properties spec                                                 */

typedef struct {
    char *name;
    xyz_type type;
    int ncols;
} pblock;

typedef struct {
    pblock *b;
    int nb;
    int ncols;   /* total columns of an atom line */
    int species; /* block index of species:S:1 */
    int pos;     /* block index of pos:R:3 */
    int plain;   /* no Properties key: extra columns are ignored */
} pspec;

static void spec_free(pspec *ps) {
    for (int i = 0; i < ps->nb; i++) free(ps->b[i].name);
    free(ps->b);
    memset(ps, 0, sizeof *ps);
}

/* Enough for any real file and keeps every ncols product far from overflow. */
#define XYZ_MAX_COLS (1 << 24)

static int spec_plain(pspec *ps) {
    memset(ps, 0, sizeof *ps);
    ps->b = calloc(2, sizeof *ps->b);
    if (!ps->b) return -1;
    ps->b[0].name = dup_s("species");
    ps->b[1].name = dup_s("pos");
    ps->nb = 2;
    if (!ps->b[0].name || !ps->b[1].name) { spec_free(ps); return -1; }
    ps->b[0].type = XYZ_STR;
    ps->b[0].ncols = 1;
    ps->b[1].type = XYZ_REAL;
    ps->b[1].ncols = 3;
    ps->ncols = 4;
    ps->species = 0;
    ps->pos = 1;
    ps->plain = 1;
    return 0;
}

/* Parse "name:T:n:name:T:n..." (s is the unquoted value). */
static int spec_parse(const ectx *e, long ln, const char *s, pspec *ps) {
    char sb[48];
    size_t len = strlen(s), nf = 1;
    memset(ps, 0, sizeof *ps);
    ps->species = ps->pos = -1;
    for (size_t i = 0; i < len; i++) nf += s[i] == ':';
    if (len == 0 || nf % 3 != 0)
        return fail(e, ln, "malformed Properties '%s': expected name:type:ncols triples",
                    show(s, len, sb));
    ps->b = calloc(nf / 3, sizeof *ps->b);
    if (!ps->b) return fail(e, ln, "out of memory");
    const char *p = s;
    for (size_t k = 0; k < nf / 3; k++) {
        const char *f[3];
        size_t fl[3];
        for (int j = 0; j < 3; j++) {
            const char *q = strchr(p, ':');
            if (!q) q = p + strlen(p);
            f[j] = p;
            fl[j] = (size_t)(q - p);
            p = *q ? q + 1 : q;
        }
        pblock *b = &ps->b[ps->nb];
        if (fl[0] == 0) {
            spec_free(ps);
            return fail(e, ln, "malformed Properties '%s': empty property name", show(s, len, sb));
        }
        for (size_t i = 0; i < fl[0]; i++)
            if (is_ws(f[0][i]) || f[0][i] == '\n') {
                spec_free(ps);
                return fail(e, ln, "malformed Properties '%s': space in a property name",
                            show(s, len, sb));
            }
        if (fl[1] != 1 || !strchr("SRIL", f[1][0])) {
            spec_free(ps);
            return fail(e, ln, "malformed Properties '%s': type of '%.*s' must be S, R, I or L",
                        show(s, len, sb), (int)(fl[0] > 40 ? 40 : fl[0]), f[0]);
        }
        double nc;
        if (parse_int(f[2], fl[2], &nc) != 0 || nc < 1 || nc > XYZ_MAX_COLS) {
            spec_free(ps);
            return fail(e, ln, "malformed Properties '%s': column count of '%.*s' must be an integer in 1..%d",
                        show(s, len, sb), (int)(fl[0] > 40 ? 40 : fl[0]), f[0], XYZ_MAX_COLS);
        }
        b->name = dup_n(f[0], fl[0]);
        if (!b->name) { spec_free(ps); return fail(e, ln, "out of memory"); }
        b->type = (xyz_type)f[1][0];
        b->ncols = (int)nc;
        ps->nb++;
        for (int i = 0; i < ps->nb - 1; i++)
            if (strcmp(ps->b[i].name, b->name) == 0) {
                int r = fail(e, ln, "malformed Properties: property '%s' appears twice",
                             show(b->name, strlen(b->name), sb));
                spec_free(ps);
                return r;
            }
        if (ps->ncols > XYZ_MAX_COLS - b->ncols) {
            spec_free(ps);
            return fail(e, ln, "malformed Properties: more than %d columns", XYZ_MAX_COLS);
        }
        ps->ncols += b->ncols;
        if (strcmp(b->name, "species") == 0) {
            if (b->type != XYZ_STR || b->ncols != 1) {
                spec_free(ps);
                return fail(e, ln, "malformed Properties: species must be species:S:1 (element symbols)");
            }
            ps->species = ps->nb - 1;
        } else if (strcmp(b->name, "pos") == 0) {
            if (b->type != XYZ_REAL || b->ncols != 3) {
                spec_free(ps);
                return fail(e, ln, "malformed Properties: pos must be pos:R:3");
            }
            ps->pos = ps->nb - 1;
        }
    }
    if (ps->species < 0 || ps->pos < 0) {
        spec_free(ps);
        return fail(e, ln, "malformed Properties '%s': species:S:1 and pos:R:3 are both required",
                    show(s, len, sb));
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the comment line                                                    */

typedef struct {
    xyz_info *v;
    int n, cap;
} infolist;

static void infolist_free(infolist *il) {
    for (int i = 0; i < il->n; i++) info_free(&il->v[i]);
    free(il->v);
    memset(il, 0, sizeof *il);
}

static xyz_info *infolist_add(infolist *il) {
    if (il->n == il->cap) {
        int nc = il->cap ? il->cap * 2 : 8;
        if (il->cap > INT_MAX / 2) return NULL;
        xyz_info *nv = realloc(il->v, (size_t)nc * sizeof *nv);
        if (!nv) return NULL;
        il->v = nv;
        il->cap = nc;
    }
    xyz_info *in = &il->v[il->n++];
    memset(in, 0, sizeof *in);
    return in;
}

static int is_sep(char c) { return is_ws(c) || c == ','; }

/* Turn the value text v (writable, owned: stored as the string or freed) into
 * in->type/n/num/str. list: the value came from [...] or {...} and must be
 * numbers or booleans. */
static int classify_value(const ectx *e, long ln, const char *key, char *v, int list, xyz_info *in) {
    char sb[48], kb[48];
    size_t len = strlen(v), ntok = 0;
    int all_int = 1, all_num = 1, all_bool = 1, nonfinite = 0, bigint = 0;
    double d;
    for (size_t i = 0; i < len;) {
        while (i < len && is_sep(v[i])) i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && !is_sep(v[j])) j++;
        ntok++;
        int ri = parse_int(v + i, j - i, &d);
        if (ri != 0) all_int = 0;
        if (ri == 2) bigint = 1;
        if (ri != 0) {
            int rr = parse_real(v + i, j - i, &d);
            if (rr == 2) nonfinite = 1; /* a number, but NaN/Inf: an error below */
            if (rr == 1) all_num = 0;
        }
        if (parse_bool(v + i, j - i, &d) != 0) all_bool = 0;
        i = j;
    }
    if (ntok == 0) {
        if (list) { free(v); return fail(e, ln, "key '%s': empty list", show(key, strlen(key), kb)); }
        in->type = XYZ_STR; /* "" */
        in->n = 1;
        in->str = v;
        return 0;
    }
    if (nonfinite && all_num) {
        int r = fail(e, ln, "key '%s': value '%s' is not a finite number", show(key, strlen(key), kb),
                     show(v, len, sb));
        free(v);
        return r;
    }
    if (bigint) all_num = 0; /* kept as its exact text rather than rounded */
    if (!all_num && !all_bool) {
        if (list) {
            int r = fail(e, ln, "key '%s': cannot read list '%s' (only lists of numbers or booleans are supported)",
                         show(key, strlen(key), kb), show(v, len, sb));
            free(v);
            return r;
        }
        in->type = XYZ_STR;
        in->n = 1;
        in->str = v;
        return 0;
    }
    in->num = malloc(ntok * sizeof *in->num);
    if (!in->num || ntok > INT_MAX) { free(v); return fail(e, ln, "out of memory"); }
    in->type = all_num ? (all_int ? XYZ_INT : XYZ_REAL) : XYZ_BOOL;
    in->n = (int)ntok;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && is_sep(v[i])) i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && !is_sep(v[j])) j++;
        if (in->type == XYZ_BOOL) parse_bool(v + i, j - i, &in->num[k]);
        else if (in->type == XYZ_INT) parse_int(v + i, j - i, &in->num[k]);
        else parse_real(v + i, j - i, &in->num[k]); /* "-0" in a real list keeps its sign */
        k++;
        i = j;
    }
    free(v);
    return 0;
}

/* A quoted string starting at *pp (the opening quote q); backslash takes the
 * next character literally (\" -> ", \\ -> \), as ASE does. */
static int read_quoted(const ectx *e, long ln, const char **pp, char **out) {
    const char *p = *pp;
    char q = *p++;
    size_t n = 0;
    const char *s = p;
    for (;; s++) {
        if (*s == '\0') return fail(e, ln, "unterminated quote (%c) in the comment line", q);
        if (*s == '\\') {
            if (s[1] == '\0') return fail(e, ln, "unterminated quote (%c) in the comment line", q);
            s++;
        } else if (*s == q) break;
        n++;
    }
    char *d = malloc(n + 1), *w = d;
    if (!d) return fail(e, ln, "out of memory");
    for (; p < s; p++) {
        if (*p == '\\') p++;
        *w++ = *p;
    }
    *w = '\0';
    *out = d;
    *pp = s + 1;
    return 0;
}

static int bad_bare_char(char c) {
    return c == '"' || c == '\'' || c == '[' || c == ']' || c == '{' || c == '}' || c == '\\';
}

static int cmp_info_ptr(const void *a, const void *b) {
    const xyz_info *x = *(const xyz_info *const *)a, *y = *(const xyz_info *const *)b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x < y ? -1 : x > y);
}

/* Name of a key that appears twice (the later one in file order), or NULL.
 * O(n log n). Returns (const char *)-1 when out of memory. */
static const char *find_duplicate(const xyz_info *v, int n) {
    if (n < 2) return NULL;
    if (n <= 16) {
        for (int i = 1; i < n; i++)
            for (int j = 0; j < i; j++)
                if (strcmp(v[i].key, v[j].key) == 0) return v[i].key;
        return NULL;
    }
    const xyz_info **p = malloc((size_t)n * sizeof *p);
    if (!p) return (const char *)-1;
    for (int i = 0; i < n; i++) p[i] = &v[i];
    qsort(p, (size_t)n, sizeof *p, cmp_info_ptr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(p[i]->key, p[i - 1]->key) == 0) dup = p[i]->key;
    free(p);
    return dup;
}

/* Parse the key=value pairs of comment line s into il; a Properties value is
 * parsed into ps (*has_props set). */
static int parse_comment(const ectx *e, long ln, const char *s, infolist *il, pspec *ps,
                         int *has_props) {
    char sb[48];
    const char *p = s;
    *has_props = 0;
    for (;;) {
        while (is_ws(*p)) p++;
        if (!*p) break;
        char *key = NULL, *val = NULL;
        int list = 0, has_val = 0;
        /* key */
        if (*p == '"' || *p == '\'') {
            if (read_quoted(e, ln, &p, &key) != 0) return -1;
        } else {
            const char *k = p;
            while (*p && !is_ws(*p) && *p != '=') {
                if (bad_bare_char(*p))
                    return fail(e, ln, "unexpected character '%c' in key '%s'", *p,
                                show(k, (size_t)(p - k) + 1, sb));
                p++;
            }
            if (p == k) return fail(e, ln, "'=' without a key before it");
            key = dup_n(k, (size_t)(p - k));
            if (!key) return fail(e, ln, "out of memory");
        }
        if (!*key) { free(key); return fail(e, ln, "empty key"); }
        /* = value */
        const char *q = p;
        while (is_ws(*q)) q++;
        if (*q == '=') {
            has_val = 1;
            q++;
            while (is_ws(*q)) q++;
            p = q;
            if (!*p) {
                int r = fail(e, ln, "key '%s': '=' without a value", show(key, strlen(key), sb));
                free(key);
                return r;
            }
            if (*p == '"' || *p == '\'') {
                if (read_quoted(e, ln, &p, &val) != 0) { free(key); return -1; }
                if (*p && !is_ws(*p)) {
                    int r = fail(e, ln, "key '%s': unexpected text after the closing quote",
                                 show(key, strlen(key), sb));
                    free(key);
                    free(val);
                    return r;
                }
            } else if (*p == '[' || *p == '{') {
                char close = *p == '[' ? ']' : '}';
                const char *v0 = ++p;
                while (*p && *p != close) {
                    if (*p == '[' || *p == '{') {
                        int r = fail(e, ln, "key '%s': nested lists are not supported",
                                     show(key, strlen(key), sb));
                        free(key);
                        return r;
                    }
                    if (*p == '"' || *p == '\'' || *p == '\\' || *p == ']' || *p == '}') {
                        int r = fail(e, ln, "key '%s': cannot read list (only lists of numbers or booleans are supported)",
                                     show(key, strlen(key), sb));
                        free(key);
                        return r;
                    }
                    p++;
                }
                if (!*p) {
                    int r = fail(e, ln, "key '%s': unterminated list (missing '%c')",
                                 show(key, strlen(key), sb), close);
                    free(key);
                    return r;
                }
                val = dup_n(v0, (size_t)(p - v0));
                if (!val) { free(key); return fail(e, ln, "out of memory"); }
                list = 1;
                p++;
                if (*p && !is_ws(*p)) {
                    int r = fail(e, ln, "key '%s': unexpected text after '%c'",
                                 show(key, strlen(key), sb), close);
                    free(key);
                    free(val);
                    return r;
                }
            } else {
                const char *v0 = p;
                while (*p && !is_ws(*p)) {
                    if (bad_bare_char(*p)) {
                        char vb[48];
                        int r = fail(e, ln, "key '%s': unexpected character '%c' in value '%s' (quote the value)",
                                     show(key, strlen(key), sb), *p, show(v0, (size_t)(p - v0) + 1, vb));
                        free(key);
                        return r;
                    }
                    p++;
                }
                val = dup_n(v0, (size_t)(p - v0));
                if (!val) { free(key); return fail(e, ln, "out of memory"); }
            }
        }
        /* Properties (ASE: case-insensitive for this key only) */
        if (strcmp(key, "Properties") == 0 || strcmp(key, "properties") == 0) {
            int r = 0;
            if (*has_props) r = fail(e, ln, "duplicate key '%s'", key);
            else if (!has_val || list)
                r = fail(e, ln, "malformed Properties: expected Properties=name:type:ncols:...");
            else if (spec_parse(e, ln, val, ps) == 0) *has_props = 1;
            else r = -1;
            free(key);
            free(val);
            if (r) return r;
            continue;
        }
        xyz_info *in = infolist_add(il);
        if (!in) { free(key); free(val); return fail(e, ln, "out of memory"); }
        in->key = key;
        if (!has_val) { /* a bare key means true */
            in->type = XYZ_BOOL;
            in->n = 1;
            in->num = malloc(sizeof *in->num);
            if (!in->num) return fail(e, ln, "out of memory");
            in->num[0] = 1;
        } else if (classify_value(e, ln, key, val, list, in) != 0) {
            return -1;
        }
        if (strcmp(key, "Lattice") == 0) {
            if ((in->type != XYZ_REAL && in->type != XYZ_INT) || in->n != 9)
                return fail(e, ln, "Lattice must be 9 numbers (3 cell vectors)");
            in->type = XYZ_REAL;
        } else if (strcmp(key, "pbc") == 0) {
            if (in->type != XYZ_BOOL || (in->n != 1 && in->n != 3))
                return fail(e, ln, "pbc must be 1 or 3 booleans (T or F)");
        }
    }
    const char *dup = find_duplicate(il->v, il->n);
    if (dup == (const char *)-1) return fail(e, ln, "out of memory");
    if (dup) return fail(e, ln, "duplicate key '%s'", show(dup, strlen(dup), sb));
    return 0;
}

/* Does the comment line try to be extended XYZ (a Properties key)? */
static int mentions_properties(const char *s) {
    for (const char *p = s; (p = strstr(p, "roperties")) != NULL; p++) {
        if (p == s || (p[-1] != 'P' && p[-1] != 'p')) continue;
        const char *k = p - 1, *q = p + 9;
        if (k != s && !is_ws(k[-1])) continue;
        while (is_ws(*q)) q++;
        if (*q == '=') return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

typedef struct {
    char *p, *end; /* unread part of the writable copy; *end == '\0' */
    long line;     /* number of the last line returned */
} reader;

/* Next line (cut in place at '\n', trailing '\r' removed), NULL at the end. */
static char *next_line(reader *r) {
    if (r->p >= r->end) return NULL;
    char *s = r->p, *nl = memchr(s, '\n', (size_t)(r->end - s));
    if (nl) { *nl = '\0'; r->p = nl + 1; }
    else { nl = r->end; r->p = r->end; }
    if (nl > s && nl[-1] == '\r') nl[-1] = '\0';
    r->line++;
    return s;
}

static int is_blank(const char *s) {
    while (is_ws(*s)) s++;
    return *s == '\0';
}

/* Tokens left on an atom line from s on. */
static long count_tokens(const char *s) {
    long n = 0;
    for (;;) {
        while (is_ws(*s)) s++;
        if (!*s) return n;
        n++;
        while (*s && !is_ws(*s)) s++;
    }
}

static int parse_count(const ectx *e, long ln, const char *s, int *natoms) {
    char sb[48];
    while (is_ws(*s)) s++;
    const char *t = s;
    while (*s && !is_ws(*s)) s++;
    size_t tl = (size_t)(s - t);
    const char *rest = s;
    while (is_ws(*rest)) rest++;
    double v;
    int r = parse_int(t, tl, &v);
    if (r == 1) return fail(e, ln, "expected an atom count, found '%s'", show(t, tl, sb));
    if (t[0] == '-' && (r == 2 || v != 0)) return fail(e, ln, "negative atom count '%s'", show(t, tl, sb));
    if (r == 2 || v > INT_MAX) return fail(e, ln, "atom count '%s' is too large", show(t, tl, sb));
    if (*rest)
        return fail(e, ln, "unexpected text '%s' after the atom count", show(rest, strlen(rest), sb));
    *natoms = (int)v;
    return 0;
}

/* Can natoms atom lines of at least ncols one-character tokens each fit in
 * the remaining bytes? Each line needs 2*ncols bytes (tokens, separators,
 * newline) except that the last needs no newline. */
static int count_fits(int natoms, int ncols, size_t remain) {
    if (natoms == 0) return 1;
    size_t per = 2 * (size_t)ncols;
    return (size_t)natoms <= (remain + 1) / per;
}

typedef struct {
    xyz_frame *v;
    int n, cap;
} framelist;

static int parse_atom_line(const ectx *e, long ln, char *s, const pspec *ps, xyz_frame *fr,
                           const int *arr_of_block, int atom) {
    char sb[48];
    int col = 0;
    for (int b = 0; b < ps->nb; b++) {
        const pblock *pb = &ps->b[b];
        for (int c = 0; c < pb->ncols; c++) {
            while (is_ws(*s)) s++;
            if (!*s) {
                if (ps->plain)
                    return fail(e, ln, "atom line has %d column%s, expected 4 (symbol x y z)", col,
                                col == 1 ? "" : "s");
                return fail(e, ln, "atom line has %d column%s, Properties needs %d", col,
                            col == 1 ? "" : "s", ps->ncols);
            }
            char *t = s;
            while (*s && !is_ws(*s)) s++;
            size_t tl = (size_t)(s - t);
            col++;
            if (b == ps->species) {
                int z = symbol_z(t, tl);
                if (!z) return fail(e, ln, "unknown element '%s' (element symbols H..Rn expected)", show(t, tl, sb));
                fr->z[atom] = z;
                continue;
            }
            double *dst = NULL;
            if (b == ps->pos) dst = &fr->pos[(size_t)atom * 3 + (size_t)c];
            else {
                xyz_array *a = &fr->arrays[arr_of_block[b]];
                size_t k = (size_t)atom * (size_t)pb->ncols + (size_t)c;
                if (pb->type == XYZ_STR) {
                    a->str[k] = dup_n(t, tl);
                    if (!a->str[k]) return fail(e, ln, "out of memory");
                    continue;
                }
                dst = &a->num[k];
            }
            int r = 0;
            if (pb->type == XYZ_REAL) {
                r = parse_real(t, tl, dst); /* not parse_int: "-0" keeps its sign */
                if (r == 1)
                    return fail(e, ln, "column %d (%s): expected a number, found '%s'", col, pb->name, show(t, tl, sb));
                if (r == 2)
                    return fail(e, ln, "column %d (%s): '%s' is not a finite number", col, pb->name, show(t, tl, sb));
                if (b == ps->pos && !(fabs(*dst) <= XYZ_MAX_COORD))
                    return fail(e, ln, "column %d (pos): coordinate '%s' is beyond %g angstrom (|x| <= %g required)",
                                col, show(t, tl, sb), XYZ_MAX_COORD, XYZ_MAX_COORD);
            } else if (pb->type == XYZ_INT) {
                r = parse_int(t, tl, dst);
                if (r == 1)
                    return fail(e, ln, "column %d (%s): expected an integer, found '%s'", col, pb->name, show(t, tl, sb));
                if (r == 2)
                    return fail(e, ln, "column %d (%s): integer '%s' is too large (|i| < 2^53 required)", col, pb->name,
                                show(t, tl, sb));
            } else if (parse_bool(t, tl, dst) != 0) {
                return fail(e, ln, "column %d (%s): expected a boolean (T or F), found '%s'", col, pb->name,
                            show(t, tl, sb));
            }
        }
    }
    if (!ps->plain) {
        long extra = count_tokens(s);
        if (extra)
            return fail(e, ln, "atom line has %ld columns, Properties needs %d", (long)ps->ncols + extra, ps->ncols);
    }
    return 0;
}

/* One frame; the count line (number ln) has been read. */
static int parse_frame(const ectx *e, reader *r, const char *countline, xyz_frame *fr) {
    long ln = r->line;
    int natoms = 0;
    memset(fr, 0, sizeof *fr);
    if (parse_count(e, ln, countline, &natoms) != 0) return -1;
    char *cm = next_line(r);
    if (!cm) return fail(e, ln, "frame declares %d atoms but the file ends before its comment line", natoms);
    long cln = r->line;
    infolist il = {0};
    pspec ps;
    int has_props = 0;
    memset(&ps, 0, sizeof ps);
    if (parse_comment(e, cln, cm, &il, &ps, &has_props) != 0) {
        infolist_free(&il);
        spec_free(&ps);
        if (mentions_properties(cm)) return -1;
        has_props = 0; /* plain XYZ: keep the text as "comment" */
    }
    if (!has_props && (!strchr(cm, '=') || il.n == 0)) {
        /* plain XYZ comment without key=value pairs (or unparseable) */
        infolist_free(&il);
        const char *a = cm, *b = cm + strlen(cm);
        while (is_ws(*a)) a++;
        while (b > a && is_ws(b[-1])) b--;
        if (b > a) {
            xyz_info *in = infolist_add(&il);
            if (!in || !(in->key = dup_s("comment")) || !(in->str = dup_n(a, (size_t)(b - a)))) {
                infolist_free(&il);
                return fail(e, cln, "out of memory");
            }
            in->type = XYZ_STR;
            in->n = 1;
        }
    }
    if (!has_props && spec_plain(&ps) != 0) {
        infolist_free(&il);
        return fail(e, cln, "out of memory");
    }
    fr->line = ln > INT_MAX ? INT_MAX : (int)ln;
    fr->info = il.v;
    fr->ninfo = il.n;
    /* Find the natoms atom lines before allocating anything for them: a
     * count larger than the file is a truncated frame, found in at most
     * O(file size) steps. */
    {
        const char *p = r->p, *p0 = r->p;
        for (int i = 0; i < natoms; i++) {
            if (p >= r->end) {
                spec_free(&ps);
                return fail(e, ln, "frame declares %d atoms but the file ends after %d atom line%s", natoms, i,
                            i == 1 ? "" : "s");
            }
            const char *nl = memchr(p, '\n', (size_t)(r->end - p));
            p = nl ? nl + 1 : r->end;
        }
        /* every line with ncols tokens has 2*ncols-1 bytes plus its newline,
         * so this bounds natoms*ncols (all allocations) by the input size */
        if (!count_fits(natoms, ps.ncols, (size_t)(p - p0))) {
            long bad_line = r->line;
            for (const char *q = p0; q < p; bad_line++) {
                const char *nl = memchr(q, '\n', (size_t)(p - q));
                size_t ll = nl ? (size_t)(nl - q) : (size_t)(p - q);
                char *tmp = dup_n(q, ll);
                long nt = tmp ? count_tokens(tmp) : 0;
                free(tmp);
                if (nt < ps.ncols) {
                    int plain = ps.plain, need = ps.ncols;
                    spec_free(&ps);
                    if (plain)
                        return fail(e, bad_line + 1, "atom line has %ld column%s, expected 4 (symbol x y z)", nt,
                                    nt == 1 ? "" : "s");
                    return fail(e, bad_line + 1, "atom line has %ld column%s, Properties needs %d", nt,
                                nt == 1 ? "" : "s", need);
                }
                q = nl ? nl + 1 : p;
            }
            spec_free(&ps);
            return fail(e, ln, "atom count %d does not fit in the rest of the file", natoms);
        }
    }
    /* allocate (sizes are bounded by the input length, checked above) */
    int *arr_of_block = malloc((size_t)ps.nb * sizeof *arr_of_block);
    fr->natoms = natoms;
    fr->z = malloc((size_t)natoms * sizeof *fr->z + 1);
    fr->pos = malloc((size_t)natoms * 3 * sizeof *fr->pos + 1);
    fr->arrays = calloc((size_t)ps.nb, sizeof *fr->arrays);
    if (!arr_of_block || !fr->z || !fr->pos || !fr->arrays) goto oom;
    for (int b = 0; b < ps.nb; b++) {
        arr_of_block[b] = -1;
        if (b == ps.species || b == ps.pos) continue;
        xyz_array *a = &fr->arrays[fr->narrays];
        size_t n = (size_t)natoms * (size_t)ps.b[b].ncols;
        a->name = dup_s(ps.b[b].name);
        a->type = ps.b[b].type;
        a->ncols = ps.b[b].ncols;
        arr_of_block[b] = fr->narrays++;
        if (!a->name) goto oom;
        if (a->type == XYZ_STR) a->str = calloc(n + 1, sizeof *a->str);
        else a->num = calloc(n + 1, sizeof *a->num);
        if (!a->str && !a->num) goto oom;
    }
    for (int i = 0; i < natoms; i++) {
        char *s = next_line(r);
        if (!s) {
            fail(e, ln, "frame declares %d atoms but the file ends after %d atom line%s", natoms, i, i == 1 ? "" : "s");
            goto bad;
        }
        if (parse_atom_line(e, r->line, s, &ps, fr, arr_of_block, i) != 0) goto bad;
    }
    free(arr_of_block);
    spec_free(&ps);
    return 0;
oom:
    fail(e, ln, "out of memory");
bad:
    free(arr_of_block);
    spec_free(&ps);
    return -1;
}

int xyz_parse(const char *buf, size_t len, const char *name, xyz_file *out, char *err, size_t errlen) {
    ectx e = {name ? name : "(buffer)", err, errlen};
    framelist fl = {0};
    if (err && errlen) err[0] = '\0';
    if (!out) return fail(&e, 0, "no output");
    out->nframes = 0;
    out->frames = NULL;
    if (len && !buf) return fail(&e, 1, "no input buffer");
    const char *nul = len ? memchr(buf, '\0', len) : NULL;
    if (nul) {
        long ln = 1;
        for (const char *c = buf; c < nul; c++) ln += *c == '\n';
        return fail(&e, ln, "NUL byte in the file (not a text file)");
    }
    {
        long ln = 1;
        for (const char *c = buf, *end = buf + len; c < end; ln++) {
            const char *nl = memchr(c, '\n', (size_t)(end - c));
            size_t ll = nl ? (size_t)(nl - c) : (size_t)(end - c);
            if (ll > XYZ_MAX_LINE) return fail(&e, ln, "line longer than %d bytes", XYZ_MAX_LINE);
            if (!nl) break;
            c = nl + 1;
        }
    }
    char *copy = malloc(len + 1);
    if (!copy) return fail(&e, 0, "out of memory");
    if (len) memcpy(copy, buf, len);
    copy[len] = '\0';
    reader r = {copy, copy + len, 0};
    int rc = 0;
    for (;;) {
        char *s = next_line(&r);
        if (!s) break;
        if (is_blank(s)) {
            long bl = r.line;
            while ((s = next_line(&r)) != NULL && is_blank(s)) {}
            if (!s) break; /* blank lines at the end are fine */
            rc = fail(&e, bl, "blank line where an atom count was expected");
            break;
        }
        if (fl.n == fl.cap) {
            int nc = fl.cap ? fl.cap * 2 : 16;
            xyz_frame *nv = fl.cap > INT_MAX / 2 ? NULL : realloc(fl.v, (size_t)nc * sizeof *nv);
            if (!nv) { rc = fail(&e, r.line, "out of memory"); break; }
            fl.v = nv;
            fl.cap = nc;
        }
        if (parse_frame(&e, &r, s, &fl.v[fl.n]) != 0) {
            xyz_frame_free(&fl.v[fl.n]);
            rc = -1;
            break;
        }
        fl.n++;
    }
    free(copy);
    if (rc == 0 && fl.n == 0) rc = fail(&e, 1, "empty file (no atom count found)");
    if (rc != 0) {
        for (int i = 0; i < fl.n; i++) xyz_frame_free(&fl.v[i]);
        free(fl.v);
        return -1;
    }
    out->nframes = fl.n;
    out->frames = fl.v;
    if (err && errlen) err[0] = '\0'; /* a plain comment that failed to parse is not an error */
    return 0;
}

int xyz_read(const char *path, xyz_file *out, char *err, size_t errlen) {
    if (out) { out->nframes = 0; out->frames = NULL; }
    if (!path) { set_err(err, errlen, "(null): no file name"); return -1; }
    char nb[208];
    const char *name = xyz_short_path(path, nb);
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: cannot open: %s", name, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        if (f != stdin) fclose(f);
        set_err(err, errlen, "%s: is a directory, not an XYZ file", name);
        return -1;
    }
    /* Read in chunks, stopping at the first NUL byte (not a text file: e.g.
     * /dev/zero would otherwise be read forever) and at a line longer than
     * XYZ_MAX_LINE bytes; both name the line. */
    size_t cap = 1 << 16, n = 0, line_start = 0;
    long lines = 1;
    char *buf = malloc(cap);
    const char *stop = NULL;
    while (buf) {
        if (n == cap) {
            char *nb2 = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb2) { free(buf); buf = NULL; break; }
            buf = nb2;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        const char *p = buf + n, *end = buf + n + got, *nul = memchr(p, '\0', got);
        if (nul) end = nul;
        for (const char *nl; p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL; p = nl + 1) {
            lines++;
            line_start = (size_t)(nl + 1 - buf);
        }
        n += got;
        if (nul) { stop = "NUL byte in the file (not a text file)"; break; }
        if (n - line_start > XYZ_MAX_LINE) { stop = "line too long"; break; }
    }
    int bad = ferror(f);
    int e1 = errno;
    if (f != stdin) fclose(f);
    if (!buf || bad || stop) {
        free(buf);
        if (stop && stop[0] == 'N') set_err(err, errlen, "%s:%ld: %s", name, lines, stop);
        else if (stop) set_err(err, errlen, "%s:%ld: line longer than %d bytes", name, lines, XYZ_MAX_LINE);
        else if (bad) set_err(err, errlen, "%s: read error: %s", name, strerror(e1));
        else set_err(err, errlen, "%s: out of memory", name);
        return -1;
    }
    int rc = xyz_parse(buf, n, path, out, err, errlen);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ */
/* look-ups and edits                                                  */

const xyz_info *xyz_find_info(const xyz_frame *fr, const char *key) {
    if (!fr || !key) return NULL;
    for (int i = 0; i < fr->ninfo; i++)
        if (strcmp(fr->info[i].key, key) == 0) return &fr->info[i];
    return NULL;
}

const xyz_array *xyz_find_array(const xyz_frame *fr, const char *name) {
    if (!fr || !name) return NULL;
    for (int i = 0; i < fr->narrays; i++)
        if (strcmp(fr->arrays[i].name, name) == 0) return &fr->arrays[i];
    return NULL;
}

/* Shared checks of xyz_get_info_real and xyz_get_array_real: the entry exists
 * (found != 0), holds numbers, and has `want` of them. `what` names the entry in
 * the message ("key" or "per-atom property"); `article` ("a " or "") and `not_num`
 * ("not a number" or "not numbers") word the type message; `unit` is "number" or
 * "column". */
static int check_real_entry(const char *fn, long ln, const char *what, const char *name,
                            int found, xyz_type type, int have, int want, const char *article,
                            const char *not_num,
                            const char *unit, char *err, size_t errlen) {
    if (!found) {
        set_err(err, errlen, "%s:%ld: %s '%s' is missing", fn, ln, what, name ? name : "(null)");
        return -1;
    }
    if (type != XYZ_REAL && type != XYZ_INT) {
        set_err(err, errlen, "%s:%ld: %s '%s' is %s%s, %s", fn, ln, what, name, article,
                type_name(type), not_num);
        return -1;
    }
    if (have != want) {
        set_err(err, errlen, "%s:%ld: %s '%s' has %d %s%s, expected %d", fn, ln, what, name, have,
                unit, have == 1 ? "" : "s", want);
        return -1;
    }
    return 0;
}

int xyz_get_info_real(const xyz_frame *fr, const char *file, const char *key, int n, double *out,
                      char *err, size_t errlen) {
    const xyz_info *in = xyz_find_info(fr, key);
    if (check_real_entry(file ? file : "(frame)", fr ? fr->line : 0, "key", key, in != NULL,
                         in ? in->type : XYZ_REAL, in ? in->n : 0, n, "a ", "not a number",
                         "number", err, errlen))
        return -1;
    for (int i = 0; i < n; i++) out[i] = in->num[i];
    return 0;
}

int xyz_get_array_real(const xyz_frame *fr, const char *file, const char *name, int ncols, double *out,
                       char *err, size_t errlen) {
    const xyz_array *a = xyz_find_array(fr, name);
    if (check_real_entry(file ? file : "(frame)", fr ? fr->line : 0, "per-atom property", name,
                         a != NULL, a ? a->type : XYZ_REAL, a ? a->ncols : 0, ncols,
                         "", "not numbers", "column", err, errlen))
        return -1;
    size_t n = (size_t)fr->natoms * (size_t)ncols;
    if (n) memcpy(out, a->num, n * sizeof *out);
    return 0;
}

/* Slot for key: the existing entry (cleared) or a new one at the end. */
static xyz_info *info_slot(xyz_frame *fr, const char *key) {
    for (int i = 0; i < fr->ninfo; i++)
        if (strcmp(fr->info[i].key, key) == 0) {
            free(fr->info[i].num);
            free(fr->info[i].str);
            fr->info[i].num = NULL;
            fr->info[i].str = NULL;
            return &fr->info[i];
        }
    if (fr->ninfo == INT_MAX) return NULL;
    char *k = dup_s(key);
    if (!k) return NULL;
    xyz_info *nv = realloc(fr->info, ((size_t)fr->ninfo + 1) * sizeof *nv);
    if (!nv) { free(k); return NULL; }
    fr->info = nv;
    xyz_info *in = &fr->info[fr->ninfo++];
    memset(in, 0, sizeof *in);
    in->key = k;
    return in;
}

int xyz_set_info_num(xyz_frame *fr, const char *key, xyz_type type, const double *v, int n) {
    if (!fr || !key || !*key || !v || n < 1 || type == XYZ_STR) return -1;
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) return -1;
    memcpy(c, v, (size_t)n * sizeof *c);
    xyz_info *in = info_slot(fr, key);
    if (!in) { free(c); return -1; }
    in->type = type;
    in->n = n;
    in->num = c;
    return 0;
}

int xyz_set_info_real(xyz_frame *fr, const char *key, const double *v, int n) {
    return xyz_set_info_num(fr, key, XYZ_REAL, v, n);
}

int xyz_set_info_str(xyz_frame *fr, const char *key, const char *s) {
    if (!fr || !key || !*key || !s) return -1;
    char *c = dup_s(s);
    if (!c) return -1;
    xyz_info *in = info_slot(fr, key);
    if (!in) { free(c); return -1; }
    in->type = XYZ_STR;
    in->n = 1;
    in->str = c;
    return 0;
}

int xyz_remove_info(xyz_frame *fr, const char *key) {
    if (!fr || !key) return 0;
    for (int i = 0; i < fr->ninfo; i++)
        if (strcmp(fr->info[i].key, key) == 0) {
            info_free(&fr->info[i]);
            memmove(&fr->info[i], &fr->info[i + 1], (size_t)(fr->ninfo - i - 1) * sizeof *fr->info);
            fr->ninfo--;
            return 1;
        }
    return 0;
}

int xyz_set_array_num(xyz_frame *fr, const char *name, xyz_type type, int ncols, const double *v) {
    if (!fr || !name || !*name || ncols < 1 || type == XYZ_STR || fr->natoms < 0) return -1;
    if (strcmp(name, "species") == 0) return -1;
    if (strcmp(name, "pos") == 0) {
        if (type != XYZ_REAL || ncols != 3) return -1;
        if (fr->natoms) memcpy(fr->pos, v, (size_t)fr->natoms * 3 * sizeof *v);
        return 0;
    }
    size_t n = (size_t)fr->natoms * (size_t)ncols;
    if (fr->natoms && (size_t)ncols > SIZE_MAX / sizeof(double) / (size_t)fr->natoms) return -1;
    if (n && !v) return -1;
    double *c = malloc(n * sizeof *c + 1);
    if (!c) return -1;
    if (n) memcpy(c, v, n * sizeof *c);
    xyz_array *a = (xyz_array *)xyz_find_array(fr, name);
    if (a) {
        char *nm = a->name;
        a->name = NULL;
        array_free(a, fr->natoms);
        a->name = nm;
    } else {
        char *nm = dup_s(name);
        xyz_array *nv = nm && fr->narrays < INT_MAX
                            ? realloc(fr->arrays, ((size_t)fr->narrays + 1) * sizeof *nv)
                            : NULL;
        if (!nv) { free(nm); free(c); return -1; }
        fr->arrays = nv;
        a = &fr->arrays[fr->narrays++];
        memset(a, 0, sizeof *a);
        a->name = nm;
    }
    a->type = type;
    a->ncols = ncols;
    a->num = c;
    return 0;
}

int xyz_set_array_real(xyz_frame *fr, const char *name, int ncols, const double *v) {
    return xyz_set_array_num(fr, name, XYZ_REAL, ncols, v);
}

int xyz_remove_array(xyz_frame *fr, const char *name) {
    if (!fr || !name) return 0;
    for (int i = 0; i < fr->narrays; i++)
        if (strcmp(fr->arrays[i].name, name) == 0) {
            array_free(&fr->arrays[i], fr->natoms);
            memmove(&fr->arrays[i], &fr->arrays[i + 1], (size_t)(fr->narrays - i - 1) * sizeof *fr->arrays);
            fr->narrays--;
            return 1;
        }
    return 0;
}

int xyz_frame_init(xyz_frame *fr, int natoms, const int *z, const double *pos) {
    if (!fr) return -1;
    memset(fr, 0, sizeof *fr);
    if (natoms < 0 || (size_t)natoms > SIZE_MAX / (3 * sizeof(double)) - 1) return -1;
    fr->z = calloc((size_t)natoms + 1, sizeof *fr->z);
    fr->pos = calloc((size_t)natoms * 3 + 1, sizeof *fr->pos);
    if (!fr->z || !fr->pos) { xyz_frame_free(fr); return -1; }
    fr->natoms = natoms;
    if (z && natoms) memcpy(fr->z, z, (size_t)natoms * sizeof *z);
    if (pos && natoms) memcpy(fr->pos, pos, (size_t)natoms * 3 * sizeof *pos);
    return 0;
}

int xyz_append_frame(xyz_file *f, xyz_frame *fr) {
    if (!f || !fr || f->nframes == INT_MAX) return -1;
    xyz_frame *nv = realloc(f->frames, ((size_t)f->nframes + 1) * sizeof *nv);
    if (!nv) return -1;
    f->frames = nv;
    f->frames[f->nframes++] = *fr;
    memset(fr, 0, sizeof *fr);
    return 0;
}

/* ------------------------------------------------------------------ */
/* writing                                                             */

/* A key or property name that reads back as itself, unquoted. */
static int plain_name(const char *s, int colon_ok) {
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (is_ws(*s) || *s == '\n' || *s == '=' || bad_bare_char(*s) || (!colon_ok && *s == ':'))
            return 0;
    return 1;
}

static int check_nums(const char *file, const char *what, const char *name, int fi, xyz_type t,
                      const double *v, size_t n, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        const char *why = NULL;
        if (!isfinite(x)) why = "is not finite";
        else if (t == XYZ_INT && (x != floor(x) || fabs(x) >= 9007199254740992.0))
            why = "is not an integer below 2^53";
        else if (t == XYZ_BOOL && x != 0 && x != 1) why = "is not a boolean (0 or 1)";
        if (why) {
            set_err(err, errlen, "%s: frame %d: %s '%s' value %zu (%.17g) %s", file, fi + 1, what, name, i + 1, x,
                    why);
            return -1;
        }
    }
    return 0;
}

/* Everything xyz_write would write must read back identically. */
/* What the reader (classify_value) would make of string s as a value:
 * 1 if it would refuse it because every item is a number and one is NaN or
 * Inf ("nan", "1 inf"), 0 if not, -1 if out of memory. Such strings (only
 * the plain-comment fallback makes them) cannot be written: quoting does
 * not make "nan" a string. */
static int str_reads_nonfinite(const char *s) {
    char *v = dup_s(s);
    if (!v) return -1;
    size_t len = strlen(v), ntok = 0;
    int all_num = 1, nonfinite = 0;
    double d;
    for (size_t i = 0; i < len;) {
        while (i < len && is_sep(v[i])) i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && !is_sep(v[j])) j++;
        ntok++;
        if (parse_int(v + i, j - i, &d) != 0) {
            int rr = parse_real(v + i, j - i, &d);
            if (rr == 2) nonfinite = 1;
            if (rr == 1) all_num = 0;
        }
        i = j;
    }
    free(v);
    return ntok > 0 && all_num && nonfinite;
}

static int cmp_name_ptr(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int c = strcmp(x, y);
    return c ? c : (x < y ? -1 : x > y);
}

/* A name that appears twice among names[n] (non-NULL), or NULL; the same
 * sort-based O(n log n) check as the reader's find_duplicate.
 * (const char *)-1 when out of memory. */
static const char *find_duplicate_name(const char *(*name_of)(const xyz_frame *, int), const xyz_frame *fr,
                                       int n) {
    if (n < 2) return NULL;
    const char **p = malloc((size_t)n * sizeof *p);
    if (!p) return (const char *)-1;
    for (int i = 0; i < n; i++) p[i] = name_of(fr, i);
    qsort(p, (size_t)n, sizeof *p, cmp_name_ptr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(p[i], p[i - 1]) == 0) dup = p[i];
    free(p);
    return dup;
}
static const char *info_key_of(const xyz_frame *fr, int i) { return fr->info[i].key; }
static const char *array_name_of(const xyz_frame *fr, int i) { return fr->arrays[i].name; }

static int check_frame(const char *file, const xyz_frame *fr, int fi, char *err, size_t errlen) {
    if (fr->natoms < 0 || (fr->natoms > 0 && (!fr->z || !fr->pos))) {
        set_err(err, errlen, "%s: frame %d: bad atom count or missing z/pos", file, fi + 1);
        return -1;
    }
    for (int i = 0; i < fr->natoms; i++)
        if (!xyz_z_to_symbol(fr->z[i])) {
            set_err(err, errlen, "%s: frame %d: atom %d has atomic number %d (1..86 supported)", file, fi + 1, i + 1,
                    fr->z[i]);
            return -1;
        }
    if (check_nums(file, "array", "pos", fi, XYZ_REAL, fr->pos, (size_t)fr->natoms * 3, err, errlen)) return -1;
    for (size_t i = 0; i < (size_t)fr->natoms * 3; i++)
        if (!(fabs(fr->pos[i]) <= XYZ_MAX_COORD)) { /* the reader would refuse it */
            set_err(err, errlen, "%s: frame %d: atom %zu coordinate %.17g is beyond %g angstrom", file, fi + 1,
                    i / 3 + 1, fr->pos[i], XYZ_MAX_COORD);
            return -1;
        }
    for (int k = 0; k < fr->ninfo; k++) {
        const xyz_info *in = &fr->info[k];
        if (!plain_name(in->key, 1) || strcmp(in->key, "Properties") == 0 || strcmp(in->key, "properties") == 0) {
            set_err(err, errlen, "%s: frame %d: cannot write info key '%s'", file, fi + 1, in->key ? in->key : "");
            return -1;
        }
        if (in->type == XYZ_STR) {
            if (!in->str || strpbrk(in->str, "\n\r")) {
                set_err(err, errlen, "%s: frame %d: info '%s' is missing or holds a line break", file, fi + 1,
                        in->key);
                return -1;
            }
            int nf = str_reads_nonfinite(in->str);
            if (nf != 0) {
                if (nf < 0) set_err(err, errlen, "%s: out of memory", file);
                else {
                    char sb[48];
                    set_err(err, errlen, "%s: frame %d: info '%s': string '%s' would read back as a "
                            "non-finite number", file, fi + 1, in->key,
                            show(in->str, strlen(in->str), sb));
                }
                return -1;
            }
        } else if (in->type == XYZ_REAL || in->type == XYZ_INT || in->type == XYZ_BOOL) {
            if (in->n < 1 || !in->num) {
                set_err(err, errlen, "%s: frame %d: info '%s' has no values", file, fi + 1, in->key);
                return -1;
            }
            if (check_nums(file, "info", in->key, fi, in->type, in->num, (size_t)in->n, err, errlen)) return -1;
        } else {
            set_err(err, errlen, "%s: frame %d: info '%s' has an unknown type", file, fi + 1, in->key);
            return -1;
        }
    }
    const char *dup = find_duplicate_name(info_key_of, fr, fr->ninfo);
    if (dup) {
        if (dup == (const char *)-1) set_err(err, errlen, "%s: out of memory", file);
        else set_err(err, errlen, "%s: frame %d: info key '%s' appears twice", file, fi + 1, dup);
        return -1;
    }
    for (int k = 0; k < fr->narrays; k++) {
        const xyz_array *a = &fr->arrays[k];
        if (!plain_name(a->name, 0) || strcmp(a->name, "species") == 0 || strcmp(a->name, "pos") == 0 ||
            a->ncols < 1 || a->ncols > XYZ_MAX_COLS) {
            set_err(err, errlen, "%s: frame %d: cannot write per-atom property '%s'", file, fi + 1,
                    a->name ? a->name : "");
            return -1;
        }
        size_t n = (size_t)fr->natoms * (size_t)a->ncols;
        if (a->type == XYZ_STR) {
            for (size_t i = 0; i < n; i++) {
                const char *s = a->str ? a->str[i] : NULL;
                int ok = s && *s;
                for (const char *c = s; ok && *c; c++) ok = !is_ws(*c) && *c != '\n';
                if (!ok) {
                    set_err(err, errlen, "%s: frame %d: per-atom string '%s' value %zu is empty or has spaces", file,
                            fi + 1, a->name, i + 1);
                    return -1;
                }
            }
        } else if (a->type == XYZ_REAL || a->type == XYZ_INT || a->type == XYZ_BOOL) {
            if (n && !a->num) {
                set_err(err, errlen, "%s: frame %d: per-atom property '%s' has no values", file, fi + 1, a->name);
                return -1;
            }
            if (check_nums(file, "per-atom property", a->name, fi, a->type, a->num, n, err, errlen)) return -1;
        } else {
            set_err(err, errlen, "%s: frame %d: per-atom property '%s' has an unknown type", file, fi + 1, a->name);
            return -1;
        }
    }
    dup = find_duplicate_name(array_name_of, fr, fr->narrays);
    if (dup) {
        if (dup == (const char *)-1) set_err(err, errlen, "%s: out of memory", file);
        else set_err(err, errlen, "%s: frame %d: per-atom property '%s' appears twice", file, fi + 1, dup);
        return -1;
    }
    return 0;
}

/* A real that reads back as a real, not an integer: "2" -> "2.0", "-0" -> "-0.0". */
static void put_real_info(FILE *f, double x) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", x);
    fputs(b, f);
    if (!strpbrk(b, ".eEn")) fputs(".0", f);
}

static void put_num(FILE *f, xyz_type t, double x) {
    if (t == XYZ_BOOL) fputc(x != 0 ? 'T' : 'F', f);
    else if (t == XYZ_INT) fprintf(f, "%lld", (long long)x);
    else fprintf(f, "%.17g", x);
}

static void put_str_value(FILE *f, const char *s) {
    int quote = *s == '\0';
    for (const char *c = s; *c && !quote; c++) quote = is_ws(*c) || *c == '=' || bad_bare_char(*c);
    if (!quote) { fputs(s, f); return; }
    fputc('"', f);
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') fputc('\\', f);
        fputc(*c, f);
    }
    fputc('"', f);
}

static void write_frame(FILE *f, const xyz_frame *fr) {
    fprintf(f, "%d\nProperties=species:S:1:pos:R:3", fr->natoms);
    for (int k = 0; k < fr->narrays; k++)
        fprintf(f, ":%s:%c:%d", fr->arrays[k].name, (char)fr->arrays[k].type, fr->arrays[k].ncols);
    for (int k = 0; k < fr->ninfo; k++) {
        const xyz_info *in = &fr->info[k];
        fprintf(f, " %s=", in->key);
        if (in->type == XYZ_STR) { put_str_value(f, in->str); continue; }
        if (in->n > 1) fputc('"', f);
        for (int i = 0; i < in->n; i++) {
            if (i) fputc(' ', f);
            if (in->type == XYZ_REAL) put_real_info(f, in->num[i]);
            else put_num(f, in->type, in->num[i]);
        }
        if (in->n > 1) fputc('"', f);
    }
    fputc('\n', f);
    for (int i = 0; i < fr->natoms; i++) {
        const double *p = &fr->pos[(size_t)i * 3];
        fprintf(f, "%-2s %.17g %.17g %.17g", xyz_symbols[fr->z[i]], p[0], p[1], p[2]);
        for (int k = 0; k < fr->narrays; k++) {
            const xyz_array *a = &fr->arrays[k];
            size_t o = (size_t)i * (size_t)a->ncols;
            for (int c = 0; c < a->ncols; c++) {
                fputc(' ', f);
                if (a->type == XYZ_STR) fputs(a->str[o + (size_t)c], f);
                else put_num(f, a->type, a->num[o + (size_t)c]);
            }
        }
        fputc('\n', f);
    }
}

/* ------------------------------------------------------------------ */
/* output files: the rules of xyz.h (xyz_write)                        */

typedef struct {
    FILE *f;
    int to_stdout; /* "-" or /dev/stdout */
    int direct;    /* an existing non-regular file (device, FIFO): written in place */
    char *target;  /* regular file: the final path (a symlink's target) */
    char *tmp;     /* the temporary file beside target, renamed over it at the end */
    char name[208];/* path for messages (shortened) */
} outfile;

/* The path a chain of symbolic links starting at path ends at (path itself
 * if it is not a link; at most 40 links, like the kernel), malloc'd; NULL
 * on error (errno set). Relative link texts are taken relative to the
 * link's own directory. */
static char *resolve_links(const char *path) {
    char *cur = dup_s(path);
    for (int hop = 0; cur && hop <= 40; hop++) {
        struct stat lst;
        if (lstat(cur, &lst) != 0 || !S_ISLNK(lst.st_mode)) return cur; /* not a link (or absent) */
        size_t cap = (size_t)lst.st_size + 2;
        if (cap < 256) cap = 256;
        char *link = malloc(cap);
        ssize_t n = link ? readlink(cur, link, cap - 1) : -1;
        if (n < 0 || (size_t)n >= cap - 1) { free(link); free(cur); if (n >= 0) errno = ENAMETOOLONG; return NULL; }
        link[n] = '\0';
        char *next;
        const char *slash = strrchr(cur, '/');
        if (link[0] == '/' || !slash) next = dup_s(link);
        else {
            size_t dl = (size_t)(slash - cur) + 1;
            next = malloc(dl + (size_t)n + 1);
            if (next) { memcpy(next, cur, dl); memcpy(next + dl, link, (size_t)n + 1); }
        }
        free(link);
        free(cur);
        cur = next;
    }
    if (cur) { free(cur); errno = ELOOP; }
    return NULL;
}

/* Opens the output; 0 or -1 with "PATH: reason" in err. */
static int out_open(outfile *o, const char *path, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    {
        char nb[208];
        snprintf(o->name, sizeof o->name, "%s", xyz_short_path(path, nb));
    }
    if (strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0) {
        o->f = stdout;
        o->to_stdout = 1;
        snprintf(o->name, sizeof o->name, "<stdout>");
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            set_err(err, errlen, "%s: is a directory", o->name);
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            /* a device or FIFO: never replaced, written in place (errors such
             * as a full device are reported) */
            int fd = open(path, O_WRONLY | O_NOCTTY);
            if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
                set_err(err, errlen, "%s: cannot open for writing: %s", o->name, strerror(errno));
                if (fd >= 0) close(fd);
                return -1;
            }
            o->direct = 1;
            return 0;
        }
    } else if (errno != ENOENT) {
        set_err(err, errlen, "%s: cannot write: %s", o->name, strerror(errno));
        return -1;
    }
    /* a regular file or a new one, perhaps through symbolic links: replace
     * (or create) the file the links point to; the links stay */
    o->target = resolve_links(path);
    if (!o->target) {
        set_err(err, errlen, "%s: cannot resolve the path: %s", o->name, strerror(errno));
        return -1;
    }
    /* TARGET.tmp.PID.XXXXXXXX: created with O_EXCL (never follows or reuses
     * an existing file), mode 0666 minus the umask, like fopen */
    size_t tl = strlen(o->target) + 48;
    o->tmp = malloc(tl);
    if (!o->tmp) {
        set_err(err, errlen, "%s: out of memory", o->name);
        free(o->target);
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t r = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)o;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(o->tmp, tl, "%s.tmp.%ld.%08lx", o->target, (long)getpid(), (unsigned long)(r >> 32));
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
        set_err(err, errlen, "%s: cannot create a temporary file beside it: %s", o->name, strerror(errno));
        if (fd >= 0) { close(fd); unlink(o->tmp); }
        free(o->tmp);
        free(o->target);
        return -1;
    }
    setvbuf(o->f, NULL, _IOFBF, 1 << 16);
    return 0;
}

/* Finishes the output. keep = 1: flush, and for a regular file fsync,
 * close and rename the temporary file over the target; returns 0, or -1 with
 * "PATH: write error: reason" in err (the temporary file is removed, the
 * target untouched). keep = 0 abandons the output (returns -1, err unset). */
static int out_close(outfile *o, int keep, char *err, size_t errlen) {
    int e1 = 0;
    errno = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) e1 = errno ? errno : EIO;
    if (keep && !e1 && o->tmp && fsync(fileno(o->f)) != 0) e1 = errno;
    if (!o->to_stdout && fclose(o->f) != 0 && !e1) e1 = errno ? errno : EIO;
    if (o->tmp) {
        if (keep && !e1 && rename(o->tmp, o->target) != 0) e1 = errno;
        if (!keep || e1) unlink(o->tmp);
        free(o->tmp);
        free(o->target);
    }
    if (!keep) return -1;
    if (e1) {
        set_err(err, errlen, "%s: write error: %s", o->name, strerror(e1));
        return -1;
    }
    return 0;
}

int xyz_write_bytes(const char *path, const char *data, size_t len, char *err, size_t errlen) {
    outfile o;
    if (!path || (len && !data)) {
        set_err(err, errlen, "%s: nothing to write", path ? path : "(null)");
        return -1;
    }
    if (out_open(&o, path, err, errlen) != 0) return -1;
    int ok = fwrite(data, 1, len, o.f) == len;
    if (!ok) {
        int e1 = errno ? errno : EIO;
        out_close(&o, 0, NULL, 0);
        set_err(err, errlen, "%s: write error: %s", o.name, strerror(e1));
        return -1;
    }
    return out_close(&o, 1, err, errlen);
}

int xyz_write(const char *path, const xyz_file *xf, char *err, size_t errlen) {
    if (!path || !xf || (xf->nframes > 0 && !xf->frames)) {
        set_err(err, errlen, "%s: nothing to write", path ? path : "(null)");
        return -1;
    }
    char nb[208];
    const char *name = xyz_short_path(path, nb);
    for (int i = 0; i < xf->nframes; i++)
        if (check_frame(name, &xf->frames[i], i, err, errlen) != 0) return -1;
    outfile o;
    if (out_open(&o, path, err, errlen) != 0) return -1;
    for (int i = 0; i < xf->nframes; i++) write_frame(o.f, &xf->frames[i]);
    return out_close(&o, 1, err, errlen);
}

/* ================================================================== */
/* streaming reader (xyz_stream_*): one frame at a time                */
/* ================================================================== */
/* Memory is one frame's text plus the frame itself, independent of the
 * number of frames. Each frame is cut out of the file (its count line, its
 * comment line and its atom lines) and handed to the same frame parser as
 * xyz_parse (parse_frame above, with the reader's line counter set to the
 * count line's number), so both readers accept the same files and give the
 * same values and the same "FILE:LINE: what" messages. */

struct xyz_stream {
    FILE *f;
    int own;            /* close f at the end (not stdin) */
    char *name;         /* for messages */
    long line;          /* lines read so far */
    long nframes;       /* frames returned so far */
    long long bytes;    /* bytes read so far */
    long long size;     /* file size, -1 if unknown (a pipe, stdin) */
    char *count;        /* the current count line */
    size_t count_cap;
    char *buf;          /* the current frame's comment and atom lines */
    size_t len, cap;
    int ended;
};

/* Append one line (with its '\n' when present) of s->f to *b at *len.
 * Returns 1 if a line was read, 0 at the end of the file, -1 on a NUL byte
 * (not a text file), -2 out of memory, -3 read error. */
static int stream_line(xyz_stream *s, char **b, size_t *len, size_t *cap) {
    int c, got = 0;
    while ((c = getc(s->f)) != EOF) {
        got = 1;
        s->bytes++;
        if (c == '\0') return -1;
        if (*len + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            char *nb = nc < *cap ? NULL : realloc(*b, nc);
            if (!nb) return -2;
            *b = nb;
            *cap = nc;
        }
        (*b)[(*len)++] = (char)c;
        if (c == '\n') break;
    }
    if (ferror(s->f)) return -3;
    if (!got) return 0;
    (*b)[*len] = '\0';
    s->line++;
    return 1;
}

int xyz_stream_open(const char *path, xyz_stream **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) { set_err(err, errlen, "(null): no output"); return -1; }
    *out = NULL;
    if (!path) { set_err(err, errlen, "(null): no file name"); return -1; }
    xyz_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->name = dup_s(path))) {
        free(s);
        set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    s->own = strcmp(path, "-") != 0;
    s->f = s->own ? fopen(path, "rb") : stdin;
    if (!s->f) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        free(s->name);
        free(s);
        return -1;
    }
    s->size = -1;
    if (s->own && fseek(s->f, 0, SEEK_END) == 0) {
        long sz = ftell(s->f);
        if (sz >= 0) s->size = sz;
        if (fseek(s->f, 0, SEEK_SET) != 0) s->size = -1;
    }
    *out = s;
    return 0;
}

/* 1: a frame was read into *fr (free it with xyz_frame_free); 0: no more
 * frames (blank lines at the end are fine); -1: error in err (the stream
 * stays at the end). A file without any frame is an error, as in xyz_read. */
int xyz_stream_next(xyz_stream *s, xyz_frame *fr, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (fr) memset(fr, 0, sizeof *fr);
    if (!s || !fr) { set_err(err, errlen, "(null): no stream or frame"); return -1; }
    ectx e = {s->name, err, errlen};
    if (s->ended) return 0;
    s->ended = 1; /* until a frame is complete */
    size_t clen = 0;
    int rc;
#define STREAM_IO_FAIL(rc)                                                                   \
    ((rc) == -1 ? fail(&e, s->line + 1, "NUL byte in the file (not a text file)")            \
     : (rc) == -2 ? fail(&e, s->line + 1, "out of memory")                                   \
                 : (set_err(err, errlen, "%s: read error", s->name), -1))
    /* the count line, after skipping blank lines (only allowed at the end) */
    long blank = 0;
    for (;;) {
        clen = 0;
        rc = stream_line(s, &s->count, &clen, &s->count_cap);
        if (rc < 0) return STREAM_IO_FAIL(rc);
        if (rc == 0) {
            if (s->nframes == 0) return fail(&e, 1, "empty file (no atom count found)");
            return 0;
        }
        if (clen && s->count[clen - 1] == '\n') s->count[--clen] = '\0';
        if (clen && s->count[clen - 1] == '\r') s->count[--clen] = '\0';
        if (!is_blank(s->count)) break;
        if (!blank) blank = s->line;
    }
    if (blank) return fail(&e, blank, "blank line where an atom count was expected");
    long countline = s->line;
    int natoms = 0;
    if (parse_count(&e, countline, s->count, &natoms) != 0) return -1;
    /* the comment line and natoms atom lines (fewer at the end of a truncated file:
     * parse_frame then reports it as xyz_parse does) */
    s->len = 0;
    for (long i = 0; i <= (long)natoms; i++) {
        rc = stream_line(s, &s->buf, &s->len, &s->cap);
        if (rc < 0) return STREAM_IO_FAIL(rc);
        if (rc == 0) break;
    }
#undef STREAM_IO_FAIL
    if (!s->buf) { /* nothing after the count line */
        if (!(s->buf = malloc(1))) return fail(&e, countline, "out of memory");
        s->cap = 1;
    }
    s->buf[s->len] = '\0';
    reader r = {s->buf, s->buf + s->len, countline};
    if (parse_frame(&e, &r, s->count, fr) != 0) {
        xyz_frame_free(fr);
        return -1;
    }
    s->nframes++;
    s->ended = 0;
    if (err && errlen) err[0] = '\0'; /* a plain comment that failed to parse is not an error */
    return 1;
}

long xyz_stream_frames(const xyz_stream *s) { return s ? s->nframes : 0; }
long long xyz_stream_bytes(const xyz_stream *s) { return s ? s->bytes : 0; }
long long xyz_stream_size(const xyz_stream *s) { return s ? s->size : -1; }

void xyz_stream_close(xyz_stream *s) {
    if (!s) return;
    if (s->own && s->f) fclose(s->f);
    free(s->name);
    free(s->count);
    free(s->buf);
    free(s);
}
