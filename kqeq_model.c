/* SPDX-License-Identifier: MIT */
/* kqeq_model.c - the kQEq model text (KQEQ_MODEL_V1): kq_model_write turns a
 * kq_model into text, kq_model_read / kq_model_read_msg parse it back (one
 * clear message naming the line on bad input), bit for bit (numbers written
 * with 17 significant digits). Part of kQEq (kqeq.h); uses the private
 * helpers of kqeq.c declared in kqeq_internal.h. C11, libc and libm only.
 */
#include "kqeq.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kqeq_internal.h"

/* ------------------------------------------------------------------------ */
/* Model text                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
    int bad;
} tbuf;

static void tb_put(tbuf *b, const char *str, size_t n) {
    if (b->bad) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->bad = 1;
                return;
            }
            cap *= 2;
        }
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->bad = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, str, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void tb_str(tbuf *b, const char *str) { tb_put(b, str, strlen(str)); }

static void tb_num(tbuf *b, double v) {
    /* zeros (half of a representative vector: species blocks) without
     * snprintf: the bytes of " %.17g" for +0 and -0 */
    if (v == 0.0) {
        if (signbit(v)) tb_put(b, " -0", 3);
        else tb_put(b, " 0", 2);
        return;
    }
    char t[40];
    int k = snprintf(t, sizeof t, " %.17g", v);
    tb_put(b, t, (size_t)k);
}

static void tb_int(tbuf *b, long v) {
    char t[32];
    int k = snprintf(t, sizeof t, " %ld", v);
    tb_put(b, t, (size_t)k);
}

/* "key value": a key (with its leading separator) and a number */
static void tb_key_int(tbuf *b, const char *key, long v) {
    tb_str(b, key);
    tb_int(b, v);
}
static void tb_key_num(tbuf *b, const char *key, double v) {
    tb_str(b, key);
    tb_num(b, v);
}

int kq_model_write(const kq_model *m, char **text, size_t *len) {
    if (!m || !text || !len) return KQ_EINVAL;
    /* every number finite, or the reader would refuse the text (kqeq.h) */
    if (m->nspecies < 0 || m->nspecies > KQ_MAX_SPECIES || m->ndesc < 0 ||
        m->ndesc > KQ_MAX_DESC || m->nrep < 0 || (m->nrep > 0 && !m->w))
        return KQ_EINVAL;
    int finite = isfinite(m->s_at) && isfinite(m->reg) &&
                 kqi_all_finite((size_t)m->nspecies, m->chi) &&
                 kqi_all_finite((size_t)m->nspecies, m->eta) &&
                 kqi_all_finite((size_t)m->nrep, m->w);
    for (int d = 0; d < m->ndesc; d++) {
        finite &= isfinite(m->soap[d].rcut) && isfinite(m->soap[d].sigma) &&
                  isfinite(m->delta[d]);
        if (m->nrep > 0) {
            if (!m->rep[d]) return KQ_EINVAL;
            finite &= kqi_all_finite((size_t)m->nrep * m->len[d], m->rep[d]);
        }
    }
    if (!finite) return KQ_EINVAL;
    tbuf b = {0};
    tb_str(&b, "KQEQ_MODEL_V1\n");
    tb_str(&b, m->kind == KQ_KIND_QEQ ? "kind qeq\n" : "kind kqeq\n");
    tb_str(&b, "# units: chi hartree/e, eta hartree/e^2, w hartree/e, reg (e*bohr)^2;"
               " rcut, sigma angstrom; kernel sum_d delta_d (p.p')^zeta\n");
    tb_key_num(&b, "s_at", m->s_at);
    tb_key_int(&b, "\nspecies", m->nspecies);
    for (int s = 0; s < m->nspecies; s++) tb_int(&b, m->species[s]);
    tb_key_int(&b, "\nchi", m->nspecies);
    for (int s = 0; s < m->nspecies; s++) tb_num(&b, m->chi[s]);
    tb_key_int(&b, "\neta", m->nspecies);
    for (int s = 0; s < m->nspecies; s++) tb_num(&b, m->eta[s]);
    tb_key_int(&b, "\nzeta", m->zeta);
    tb_key_num(&b, "\nreg", m->reg);
    tb_key_int(&b, "\nndesc", m->ndesc);
    tb_str(&b, "\n");
    for (int d = 0; d < m->ndesc; d++) {
        tb_key_int(&b, "desc", d);
        tb_key_num(&b, " rcut", m->soap[d].rcut);
        tb_key_int(&b, " nmax", m->soap[d].nmax);
        tb_key_int(&b, " lmax", m->soap[d].lmax);
        tb_key_num(&b, " sigma", m->soap[d].sigma);
        tb_key_num(&b, " delta", m->delta[d]);
        tb_key_int(&b, " length", (long)m->len[d]);
        tb_str(&b, "\n");
    }
    tb_key_int(&b, "nrep", m->nrep);
    tb_str(&b, "\n");
    for (int r = 0; r < m->nrep; r++) {
        tb_key_int(&b, "rep", r);
        tb_num(&b, m->w[r]);
        tb_str(&b, "\n");
        for (int d = 0; d < m->ndesc; d++) {
            tb_key_int(&b, "v", d);
            const double *v = m->rep[d] + (size_t)r * m->len[d];
            for (size_t i = 0; i < m->len[d]; i++) tb_num(&b, v[i]);
            tb_str(&b, "\n");
        }
    }
    tb_str(&b, "end\n");
    if (b.bad) {
        free(b.s);
        return KQ_ENOMEM;
    }
    *text = b.s;
    *len = b.len;
    return KQ_OK;
}

/* Line reader over a memory buffer: copies each line NUL-terminated into
 * line, skipping '#' comment lines and blank lines. Every failing check
 * writes its reason into msg [msglen] (if not NULL), see pr_fail. */
typedef struct {
    const char *p, *end;
    int lineno;
    char *line;
    size_t cap;
    char *cur; /* token cursor in line */
    int nomem;
    int nul;   /* the current line holds a NUL byte */
    char *msg;
    size_t msglen;
} preader;

/* Record the reason of a failure (the first one wins); returns 0. */
static int pr_fail(preader *r, const char *fmt, ...) {
    if (r->msg && r->msglen > 0 && r->msg[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, r->msglen, fmt, ap);
        va_end(ap);
        /* quoted tokens may hold control bytes (a stray CR): keep one plain line */
        for (char *c = r->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f) *c = '?';
    }
    return 0;
}

static int pr_next(preader *r) {
    for (;;) {
        if (r->p >= r->end) return 0;
        const char *e = memchr(r->p, '\n', (size_t)(r->end - r->p));
        size_t n = e ? (size_t)(e - r->p) : (size_t)(r->end - r->p);
        r->lineno++;
        if (n + 1 > r->cap) {
            char *nl = realloc(r->line, n + 1);
            if (!nl) {
                r->nomem = 1;
                return 0;
            }
            r->line = nl;
            r->cap = n + 1;
        }
        memcpy(r->line, r->p, n);
        r->line[n] = '\0';
        r->p += n + (e ? 1 : 0);
        if (n > 0 && r->line[n - 1] == '\r') r->line[--n] = '\0';
        r->nul = 0;
        if (strlen(r->line) != n) {
            r->cur = NULL; /* an embedded NUL byte: damaged, no tokens */
            r->nul = 1;
            return 1;
        }
        r->cur = r->line;
        while (*r->cur == ' ' || *r->cur == '\t') r->cur++;
        if (*r->cur == '\0' || *r->cur == '#') continue;
        return 1;
    }
}

/* Next whitespace-separated token of the current line, or NULL. */
static const char *pr_tok(preader *r) {
    if (!r->cur) return NULL;
    char *s = r->cur;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\0') return NULL;
    char *e = s;
    while (*e && *e != ' ' && *e != '\t') e++;
    if (*e) *e++ = '\0';
    r->cur = e;
    return s;
}

/* The reason for a missing token: a NUL byte or the end of the line. */
static int pr_missing(preader *r, const char *what, const char *expected) {
    if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
    return pr_fail(r, "%s: expected %s, found the end of the line", what, expected);
}

static int pr_end_of_line(preader *r, const char *what) {
    if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
    const char *t = pr_tok(r);
    if (t) return pr_fail(r, "%s: unexpected text '%.40s' at the end of the line", what, t);
    return 1;
}

static int pr_word(preader *r, const char *w) {
    const char *t = pr_tok(r);
    if (!t) {
        if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
        return pr_fail(r, "expected '%s', found the end of the line", w);
    }
    if (strcmp(t, w) != 0) return pr_fail(r, "expected '%s', found '%.40s'", w, t);
    return 1;
}

static int pr_double(preader *r, const char *what, double *v) {
    const char *t = pr_tok(r);
    if (!t) return pr_missing(r, what, "a number");
    char *e;
    double x = strtod(t, &e);
    if (e == t || *e != '\0') return pr_fail(r, "%s: '%.40s' is not a number", what, t);
    if (!isfinite(x)) return pr_fail(r, "%s: '%.40s' is not a finite number", what, t);
    *v = x;
    return 1;
}

/* The integer token t (not NULL) in [lo, hi]. */
static int pr_long_tok(preader *r, const char *what, const char *t, long lo, long hi, long *v) {
    char *e;
    errno = 0;
    long x = strtol(t, &e, 10);
    if (lo == hi && (e == t || *e != '\0' || x != lo))
        return pr_fail(r, "%s: expected %ld, found '%.40s'", what, lo, t);
    if (e != t && *e == '\0' && errno == ERANGE)
        return pr_fail(r, "%s: '%.40s' is out of range", what, t);
    if (e == t || *e != '\0' || x < lo || x > hi)
        return pr_fail(r, "%s: '%.40s' is not an integer in [%ld, %ld]", what, t, lo, hi);
    *v = x;
    return 1;
}

static int pr_long(preader *r, const char *what, long lo, long hi, long *v) {
    const char *t = pr_tok(r);
    if (!t) return pr_missing(r, what, "an integer");
    return pr_long_tok(r, what, t, lo, hi, v);
}

/* n numbers, and nothing more on the line: "expected n values, found k". */
static int pr_values(preader *r, const char *what, size_t n, double *v) {
    for (size_t i = 0; i < n; i++) {
        const char *t = pr_tok(r);
        if (!t) {
            if (r->nul) return pr_fail(r, "NUL byte in the line (binary file?)");
            return pr_fail(r, "%s: expected %zu values, found %zu", what, n, i);
        }
        if (t[0] == '0' && t[1] == '\0') { /* the common zero, as strtod reads it */
            v[i] = 0.0;
            continue;
        }
        char *e;
        double x = strtod(t, &e);
        if (e == t || *e != '\0') return pr_fail(r, "%s: '%.40s' is not a number", what, t);
        if (!isfinite(x)) return pr_fail(r, "%s: '%.40s' is not a finite number", what, t);
        v[i] = x;
    }
    size_t extra = 0;
    while (pr_tok(r)) extra++;
    if (extra) return pr_fail(r, "%s: expected %zu values, found %zu", what, n, n + extra);
    return 1;
}

/* A representative vector must have unit length (kq_normalize_rows), or be
 * all zero (a zero row stays zero): anything else is not a model that
 * kq_train wrote, and a huge value would give NaN or Inf predictions. */
#define KQ_REP_NORM_TOL 1e-8

int kq_model_read(const char *text, size_t len, kq_model *m, int *line) {
    return kq_model_read_msg(text, len, m, line, NULL, 0);
}

/* The model reader's checks: each returns KQ_EFORMAT (or KQ_ENOMEM) from the
 * function it is in, with the reason recorded by pr_fail (if not already). */
#define PR_REQUIRE(cond)              \
    do {                              \
        if (!(cond)) return KQ_EFORMAT; \
    } while (0)
#define PR_REQUIRE_MSG(r, cond, ...)  \
    do {                              \
        if (!(cond)) {                \
            pr_fail((r), __VA_ARGS__); \
            return KQ_EFORMAT;        \
        }                             \
    } while (0)
#define PR_NEXT(r, expected)                    \
    do {                                        \
        int pr_rc_ = pr_need_line((r), (expected)); \
        if (pr_rc_) return pr_rc_;              \
    } while (0)

/* The next line, or KQ_EFORMAT at the end of the text ("expected ...") or
 * KQ_ENOMEM; the error's line number is the one after the last line. */
static int pr_need_line(preader *r, const char *expected) {
    if (pr_next(r)) return KQ_OK;
    int rc = r->nomem ? KQ_ENOMEM : KQ_EFORMAT;
    if (r->nomem)
        pr_fail(r, "out of memory");
    else
        pr_fail(r, "unexpected end of text: expected %s", expected);
    r->lineno++;
    return rc;
}

/* A line "WORD COUNT" (0 <= COUNT <= hi) whose count is 0 for a kind qeq
 * model and in kqeq_range ("1..4", ">= 1") for a kind kqeq model. */
static int read_kind_count(preader *r, const kq_model *m, const char *word, long hi,
                           const char *kqeq_range, long *v) {
    char what[32];
    snprintf(what, sizeof what, "the '%s' line", word);
    PR_NEXT(r, what);
    PR_REQUIRE(pr_word(r, word) && pr_long(r, word, 0, hi, v) && pr_end_of_line(r, word));
    if (m->kind == KQ_KIND_QEQ)
        PR_REQUIRE_MSG(r, *v == 0, "%s: a kind qeq model has %s 0, found %ld", word, word, *v);
    else
        PR_REQUIRE_MSG(r, *v != 0, "%s: a kind kqeq model has %s %s, found %ld", word, word,
                       kqeq_range, *v);
    return KQ_OK;
}

/* The lines from KQEQ_MODEL_V1 to ndesc (specs/kqeq.md parameters). */
static int read_head(preader *r, kq_model *m, size_t len) {
    long v;
    double x;
    /* version line: must be the very first line. The wording names what the
     * text is not, for programs handed the wrong kind of file. */
    if (len == 0) {
        r->lineno = 1;
        PR_REQUIRE_MSG(r, 0, "empty text: not a kqeq model (damaged or truncated kqeq model text, "
                       "expected first line 'KQEQ_MODEL_V1')");
    }
    PR_NEXT(r, "the line 'KQEQ_MODEL_V1'");
    {
        const char *t = r->lineno == 1 ? pr_tok(r) : NULL;
        PR_REQUIRE_MSG(r, r->lineno == 1 && t && !strcmp(t, "KQEQ_MODEL_V1") && !pr_tok(r),
                    "first line must be exactly 'KQEQ_MODEL_V1': not a kqeq model "
                    "(damaged or truncated kqeq model text)");
    }
    PR_NEXT(r, "'kind kqeq' or 'kind qeq'");
    PR_REQUIRE(pr_word(r, "kind"));
    {
        const char *k = pr_tok(r);
        if (!k) PR_REQUIRE(pr_missing(r, "kind", "kqeq or qeq"));
        PR_REQUIRE_MSG(r, !strcmp(k, "kqeq") || !strcmp(k, "qeq"),
                    "kind: unknown kind '%.40s' (kqeq or qeq)", k);
        m->kind = !strcmp(k, "qeq") ? KQ_KIND_QEQ : KQ_KIND_KQEQ;
        PR_REQUIRE(pr_end_of_line(r, "kind"));
    }
    PR_NEXT(r, "the 's_at' line");
    PR_REQUIRE(pr_word(r, "s_at") && pr_double(r, "s_at", &x));
    PR_REQUIRE_MSG(r, x > 0.0, "s_at: %g is not positive", x);
    PR_REQUIRE(pr_end_of_line(r, "s_at"));
    m->s_at = x;
    PR_NEXT(r, "the 'species' line");
    PR_REQUIRE(pr_word(r, "species") && pr_long(r, "species count", 1, KQ_MAX_SPECIES, &v));
    m->nspecies = (int)v;
    for (int s = 0; s < m->nspecies; s++) {
        const char *t = pr_tok(r);
        if (!t && r->nul) PR_REQUIRE(pr_missing(r, "species", "an atomic number"));
        PR_REQUIRE_MSG(r, t, "species: expected %d atomic numbers, found %d", m->nspecies, s);
        PR_REQUIRE(pr_long_tok(r, "species", t, 1, 118, &v));
        PR_REQUIRE_MSG(r, kq_qeq_radius((int)v) > 0.0,
                    "species: element %ld has no QEq radius (known: 1 6 7 8 9 16 17)", v);
        PR_REQUIRE_MSG(r, s == 0 || v > m->species[s - 1],
                    "species: atomic numbers must be ascending and distinct (%ld after %d)", v,
                    m->species[s - 1]);
        m->species[s] = (int)v;
    }
    {
        size_t extra = 0;
        while (pr_tok(r)) extra++;
        PR_REQUIRE_MSG(r, extra == 0, "species: expected %d atomic numbers, found %zu", m->nspecies,
                    (size_t)m->nspecies + extra);
    }
    PR_NEXT(r, "the 'chi' line");
    PR_REQUIRE(pr_word(r, "chi") && pr_long(r, "chi count", m->nspecies, m->nspecies, &v));
    PR_REQUIRE(pr_values(r, "chi", (size_t)m->nspecies, m->chi));
    PR_NEXT(r, "the 'eta' line");
    PR_REQUIRE(pr_word(r, "eta") && pr_long(r, "eta count", m->nspecies, m->nspecies, &v));
    PR_REQUIRE(pr_values(r, "eta", (size_t)m->nspecies, m->eta));
    PR_NEXT(r, "the 'zeta' line");
    PR_REQUIRE(pr_word(r, "zeta") && pr_long(r, "zeta", 1, 16, &v) && pr_end_of_line(r, "zeta"));
    m->zeta = (int)v;
    PR_NEXT(r, "the 'reg' line");
    PR_REQUIRE(pr_word(r, "reg") && pr_double(r, "reg", &x));
    PR_REQUIRE_MSG(r, x >= 0.0, "reg: %g is negative", x);
    PR_REQUIRE(pr_end_of_line(r, "reg"));
    m->reg = x;
    int rc = read_kind_count(r, m, "ndesc", KQ_MAX_DESC, "1..4", &v);
    if (rc) return rc;
    m->ndesc = (int)v;
    return KQ_OK;
}

/* The desc lines (SOAP settings of each descriptor) and the SOAP calculators. */
static int read_descs(preader *r, kq_model *m) {
    long v;
    long lens[KQ_MAX_DESC];
    int desc_line[KQ_MAX_DESC];
    for (int d = 0; d < m->ndesc; d++) {
        PR_NEXT(r, "a 'desc' line");
        desc_line[d] = r->lineno;
        kq_soap_params *sp = &m->soap[d];
        PR_REQUIRE(pr_word(r, "desc") && pr_long(r, "desc", d, d, &v));
        PR_REQUIRE(pr_word(r, "rcut") && pr_double(r, "rcut", &sp->rcut));
        PR_REQUIRE_MSG(r, sp->rcut > 1.0, "rcut: %g angstrom is not > 1", sp->rcut);
        PR_REQUIRE(pr_word(r, "nmax") && pr_long(r, "nmax", 1, KQ_SOAP_MAX_NMAX, &v));
        sp->nmax = (int)v;
        PR_REQUIRE(pr_word(r, "lmax") && pr_long(r, "lmax", 0, KQ_MAX_LMAX, &v));
        sp->lmax = (int)v;
        PR_REQUIRE(pr_word(r, "sigma") && pr_double(r, "sigma", &sp->sigma));
        PR_REQUIRE_MSG(r, sp->sigma >= KQ_SOAP_MIN_SIGMA, "sigma: %g angstrom is below %g",
                    sp->sigma, KQ_SOAP_MIN_SIGMA);
        PR_REQUIRE(pr_word(r, "delta") && pr_double(r, "delta", &m->delta[d]));
        PR_REQUIRE_MSG(r, m->delta[d] > 0.0, "delta: %g is not positive", m->delta[d]);
        PR_REQUIRE(pr_word(r, "length") && pr_long(r, "length", 1, LONG_MAX, &lens[d]));
        PR_REQUIRE(pr_end_of_line(r, "desc"));
    }
    {
        int mc = kqi_model_make_calcs(m);
        if (mc == KQ_ENOMEM) {
            pr_fail(r, "out of memory for the SOAP tables");
            return KQ_ENOMEM;
        }
        if (mc) {
            /* the calculators are made in order: the first without one failed */
            int d = 0;
            while (d < m->ndesc - 1 && m->calc[d]) d++;
            r->lineno = m->ndesc ? desc_line[d] : r->lineno;
            PR_REQUIRE_MSG(r, 0, "desc %d: SOAP settings rcut %g nmax %d lmax %d sigma %g refused (%s)",
                        d, m->soap[d].rcut, m->soap[d].nmax, m->soap[d].lmax, m->soap[d].sigma,
                        kq_strerror(mc));
        }
        for (int d = 0; d < m->ndesc; d++)
            if ((long)m->len[d] != lens[d]) {
                r->lineno = desc_line[d];
                PR_REQUIRE_MSG(r, 0,
                            "desc %d: length %ld does not match nmax, lmax and %d species "
                            "(%zu)",
                            d, lens[d], m->nspecies, m->len[d]);
            }
    }
    return KQ_OK;
}

/* nrep, then each representative: weight and normalised SOAP vectors. */
static int read_reps(preader *r, kq_model *m, size_t len) {
    long v;
    int rc = read_kind_count(r, m, "nrep", LONG_MAX, ">= 1", &v);
    if (rc) return rc;
    {
        /* Every value takes at least two characters of text: a larger count
         * cannot be true, so refuse it before allocating. */
        size_t per = 1;
        for (int d = 0; d < m->ndesc; d++) per += m->len[d];
        PR_REQUIRE_MSG(r, (unsigned long)v <= len / 2 / per,
                    "nrep %ld is larger than the text can hold", v);
        PR_REQUIRE_MSG(r, v <= INT_MAX / 4, "nrep %ld is more than %d", v, INT_MAX / 4);
    }
    m->nrep = (int)v;
    if (m->nrep > 0) {
        m->w = malloc((size_t)m->nrep * sizeof *m->w);
        if (!m->w) {
            pr_fail(r, "out of memory for %d representatives", m->nrep);
            return KQ_ENOMEM;
        }
        for (int d = 0; d < m->ndesc; d++) {
            m->rep[d] = malloc((size_t)m->nrep * m->len[d] * sizeof(double));
            if (!m->rep[d]) {
                pr_fail(r, "out of memory for %d representatives", m->nrep);
                return KQ_ENOMEM;
            }
        }
    }
    for (int rr = 0; rr < m->nrep; rr++) {
        PR_NEXT(r, "a 'rep' line");
        PR_REQUIRE(pr_word(r, "rep") && pr_long(r, "rep", rr, rr, &v) &&
                pr_double(r, "weight", &m->w[rr]) && pr_end_of_line(r, "rep"));
        for (int d = 0; d < m->ndesc; d++) {
            PR_NEXT(r, "a 'v' line");
            PR_REQUIRE(pr_word(r, "v") && pr_long(r, "v", d, d, &v));
            double *vec = m->rep[d] + (size_t)rr * m->len[d];
            PR_REQUIRE(pr_values(r, "v", m->len[d], vec));
            /* unit length or zero (see KQ_REP_NORM_TOL); sum as kq_normalize_rows */
            double nrm = sqrt(kqi_dot(vec, vec, m->len[d]));
            PR_REQUIRE_MSG(r, nrm == 0.0 || fabs(nrm - 1.0) <= KQ_REP_NORM_TOL,
                        "v %d of representative %d: Euclidean length %.17g, not 1 (nor 0)", d,
                        rr, nrm);
        }
    }
    return KQ_OK;
}

int kq_model_read_msg(const char *text, size_t len, kq_model *m, int *line, char *msg,
                      size_t msglen) {
    if (line) *line = 0;
    if (msg && msglen > 0) msg[0] = '\0';
    if (!text || !m) return KQ_EINVAL;
    memset(m, 0, sizeof *m);
    preader r = {text, text + len, 0, NULL, 0, NULL, 0, 0, msg, msglen};
    int rc = read_head(&r, m, len);
    if (!rc) rc = read_descs(&r, m);
    if (!rc) rc = read_reps(&r, m, len);
    if (!rc) rc = pr_need_line(&r, "the line 'end'");
    if (!rc && !(pr_word(&r, "end") && pr_end_of_line(&r, "end"))) rc = KQ_EFORMAT;
    /* nothing but comments after "end" */
    if (!rc && pr_next(&r)) {
        pr_fail(&r, "text after 'end'");
        rc = KQ_EFORMAT;
    }
    if (rc) {
        if (line) *line = r.lineno;
        pr_fail(&r, "damaged kqeq model text"); /* only if no reason was recorded */
        kq_model_free(m);
    }
    free(r.line);
    return rc;
}
