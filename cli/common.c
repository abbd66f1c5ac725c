/* SPDX-License-Identifier: MIT */
/* common.c - helpers shared by the command-line programs. */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *cli_prog = "tensorial";

const char *cli_version(void) { return "tensorial " TENSORIAL_VERSION; }

int cli_print_version(const char *prog, const char *arg) {
    if (!arg || strcmp(arg, "--version") != 0) return 0;
    printf("%s (%s)\n", prog, cli_version());
    return 1;
}

void cli_set_prog(const char *name) { cli_prog = name; }

void cli_fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

char *cli_read_file(const char *path, size_t *len, char *err, size_t errlen) {
    char nb[208];
    const char *name = xyz_short_path(path, nb);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", name, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        snprintf(err, errlen, "%s: is a directory, not a file", name);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb2 = realloc(buf, cap * 2);
            if (!nb2) { free(buf); buf = NULL; break; }
            buf = nb2;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        /* a model file is text: stop at the first NUL byte (e.g. /dev/zero),
         * the model readers refuse it with its line */
        if (got && memchr(buf + n, '\0', got)) { n += got; break; }
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int e1 = errno;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        if (bad) snprintf(err, errlen, "%s: read error: %s", name, strerror(e1));
        else snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cli_write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen) {
    return xyz_write_bytes(path, data, len, err, errlen);
}

void cli_check_output(const char *opt, const char *out, const char *const *inputs, int n) {
    struct stat so, si;
    if (!out || !strcmp(out, "-") || stat(out, &so) != 0) return;
    if (S_ISDIR(so.st_mode)) cli_fail("%s %s: is a directory", opt, out);
    for (int k = 0; k < n; k++) {
        const char *in = inputs[k];
        if (!in || !strcmp(in, "-") || stat(in, &si) != 0) continue;
        if (si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            cli_fail("%s %s is the same file as the input %s: refusing to overwrite an input "
                     "(choose another output name)", opt, out, in);
    }
}

void cli_check_writable(const char *opt, const char *out) {
    struct stat st;
    if (!out || !strcmp(out, "-") || !strcmp(out, "/dev/stdout")) return;
    char nb[208];
    const char *name = xyz_short_path(out, nb);
    if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) cli_fail("%s %s: is a directory", opt, name);
        if (access(out, W_OK) != 0) cli_fail("%s %s: cannot write: %s", opt, name, strerror(errno));
        return;
    }
    const char *slash = strrchr(out, '/');
    size_t dl = slash ? (size_t)(slash - out) : 0;
    char *dir = malloc(dl + 2);
    if (!dir) cli_fail("out of memory");
    if (!slash) strcpy(dir, ".");
    else if (dl == 0) strcpy(dir, "/");
    else { memcpy(dir, out, dl); dir[dl] = '\0'; }
    if (access(dir, W_OK | X_OK) != 0)
        cli_fail("%s %s: cannot create files in its directory: %s", opt, name, strerror(errno));
    free(dir);
}

/* The frame rules every command applies after reading: at least one atom, and
 * no periodic cell (pbc with a T, or an ASE Lattice without pbc). */
void cli_check_frame(const xyz_frame *fr, const char *path) {
    char nb[208];
    const char *name = xyz_short_path(path, nb);
    if (fr->natoms < 1)
        cli_fail("%s:%d: frame without atoms (every frame needs at least one atom)", name,
                 fr->line);
    const xyz_info *pbc = xyz_find_info(fr, "pbc");
    int periodic = 0;
    if (pbc && pbc->type == XYZ_BOOL)
        for (int k = 0; k < pbc->n; k++) periodic |= pbc->num[k] != 0;
    else if (pbc)
        periodic = 1; /* the reader accepts only booleans; be safe */
    if (!pbc && xyz_find_info(fr, "Lattice")) periodic = 1; /* ASE: Lattice alone means pbc */
    if (periodic)
        cli_fail("%s:%d: periodic frame (%s): periodic systems are not supported "
                 "(molecules only; pbc=\"F F F\" or no pbc/Lattice keys)", name, fr->line,
                 pbc ? "pbc has T" : "Lattice without pbc");
}

void cli_read_xyz(const char *path, xyz_file *xf) {
    char err[1024];
    if (xyz_read(path, xf, err, sizeof err)) cli_fail("%s", err);
    for (int f = 0; f < xf->nframes; f++) cli_check_frame(&xf->frames[f], path);
}

static int is_integer(double q) { return q == floor(q); }

double cli_frame_charge(const xyz_frame *fr, const char *path, int fractional_ok) {
    const xyz_info *in = xyz_find_info(fr, "charge");
    if (!in) return 0.0;
    char nb[208];
    const char *name = xyz_short_path(path, nb);
    if (in->type == XYZ_BOOL)
        cli_fail("%s:%d: key 'charge' is a boolean (charge=T/F), not a number of e", name, fr->line);
    if (in->type == XYZ_STR || in->n != 1 || !in->num || !isfinite(in->num[0]))
        cli_fail("%s:%d: key 'charge' must be one finite number (e)", name, fr->line);
    double q = in->num[0];
    if (!(fabs(q) <= CLI_MAX_CHARGE))
        cli_fail("%s:%d: key 'charge': %.17g e is beyond +-%g e", name, fr->line, q, CLI_MAX_CHARGE);
    if (!fractional_ok && !is_integer(q))
        cli_fail("%s:%d: key 'charge': %.17g e is not an integer (use --fractional-charge to "
                 "allow fractional total charges)", name, fr->line, q);
    return q;
}

double cli_parse_charge(const char *opt, const char *s, int fractional_ok) {
    double q = cli_parse_double(opt, s);
    if (!(fabs(q) <= CLI_MAX_CHARGE))
        cli_fail("%s: must be within +-%g e, got '%s'", opt, CLI_MAX_CHARGE, s);
    if (!fractional_ok && !is_integer(q))
        cli_fail("%s: '%s' is not an integer (use --fractional-charge to allow fractional total "
                 "charges)", opt, s);
    return q;
}

void cli_check_finite(const double *v, size_t n, const char *file, int line, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            char nb[208];
            cli_fail("%s:%d: %s is not finite (NaN or Inf)", xyz_short_path(file, nb),
                     line, what);
        }
}

int cli_exit(int rc) {
    errno = 0;
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e1 = errno;
    if (fclose(stdout) != 0 && !bad) {
        bad = 1;
        e1 = errno;
    }
    if (bad) {
        fprintf(stderr, "%s: standard output: write error: %s\n", cli_prog,
                e1 ? strerror(e1) : "I/O error");
        return 1;
    }
    return rc;
}

void cli_check_prefix(const char *prefix) {
    size_t n = strlen(prefix);
    int ok = n >= 1 && n <= 64;
    for (const char *c = prefix; ok && *c; c++)
        ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
             *c == '_' || *c == '-' || *c == '.';
    if (!ok) cli_fail("--prefix: '%s' is not a plain name (letters, digits, _ - .; at most 64)", prefix);
}

void cli_check_new_key(const xyz_frame *fr, const char *file, const char *key, int overwrite) {
    if (overwrite || (!xyz_find_info(fr, key) && !xyz_find_array(fr, key))) return;
    char nb[208];
    cli_fail("%s:%d: key '%s' is already in the frame (an earlier prediction?); use --prefix NAME "
             "to write other keys, or --overwrite to replace it", xyz_short_path(file, nb), fr->line, key);
}

void cli_merge_units(xyz_frame *fr, const char *ukey, const char *entries) {
    const xyz_info *old = xyz_find_info(fr, ukey);
    cli_buf b = {0};
    if (old && old->type == XYZ_STR && old->str) {
        /* keep the old entries whose name is not among the new ones */
        const char *p = old->str;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            const char *colon = memchr(p, ':', len);
            size_t nl = colon ? (size_t)(colon - p) : len;
            int replaced = 0;
            for (const char *q = entries; *q;) {
                const char *qe = strchr(q, ',');
                size_t ql = qe ? (size_t)(qe - q) : strlen(q);
                const char *qc = memchr(q, ':', ql);
                size_t qn = qc ? (size_t)(qc - q) : ql;
                if (qn == nl && !strncmp(q, p, nl)) replaced = 1;
                q += ql + (qe != NULL);
            }
            if (!replaced && len) cli_buf_printf(&b, "%.*s,", (int)len, p);
            p += len + (e != NULL);
        }
    }
    cli_buf_printf(&b, "%s", entries);
    if (xyz_set_info_str(fr, ukey, b.s)) cli_fail("out of memory");
    cli_buf_free(&b);
}

double cli_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "MemAvailable:", 13)) kb = strtod(line + 13, NULL);
    fclose(f);
    return kb * 1024.0;
}

double cli_parse_bytes(const char *opt, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
    else if (*end == 'M') mul = 1024.0 * 1024, end++;
    else if (*end == 'G') mul = 1024.0 * 1024 * 1024, end++;
    else if (*end == 'T') mul = 1024.0 * 1024 * 1024 * 1024, end++;
    if (*end == 'B') end++;
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || !(v > 0))
        cli_fail("%s: '%s' is not a size like 500M, 4G or 123456 (bytes)", opt, s);
    return v * mul;
}

double cli_parse_double(const char *opt, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        cli_fail("%s: '%s' is not a finite number", opt, s);
    return v;
}

long cli_parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        cli_fail("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    return v;
}

void cli_buf_printf(cli_buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) cli_fail("formatting error");
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) cli_fail("out of memory");
        b->s = ns;
        b->cap = cap;
    }
}

void cli_buf_free(cli_buf *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
