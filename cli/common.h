/* common.h - small helpers shared by the command-line programs (not part of
 * the model libraries). POSIX is allowed here. */
#ifndef CLI_COMMON_H
#define CLI_COMMON_H
#include <stddef.h>

/* Print "PROG: message" (one line) on stderr and exit(1). PROG is set by
 * cli_set_prog(argv[0]-like name) at the start of main. */
void cli_set_prog(const char *name);
void cli_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((noreturn, format(printf, 1, 2)))
#endif
    ;

/* Read a whole file into a NUL-terminated malloc'd buffer (*len excludes the
 * NUL). Returns NULL and writes "PATH: reason" into err on failure. */
char *cli_read_file(const char *path, size_t *len, char *err, size_t errlen);

/* Write len bytes to path atomically: write "path.tmp.<pid>", fsync-free
 * fclose check, then rename(2) over path. On failure the temporary file is
 * removed, nothing exists under path that was not there before, and -1 is
 * returned with "PATH: reason" in err. path "-" writes to stdout. */
int cli_write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen);

/* Parse a number argument of option opt; cli_fail()s with a clear message
 * if s is not entirely a finite number / an integer in [lo, hi]. */
double cli_parse_double(const char *opt, const char *s);
long cli_parse_long(const char *opt, const char *s, long lo, long hi);

/* Growable string buffer for building text outputs (model files, SVG). */
typedef struct { char *s; size_t len, cap; } cli_buf;
void cli_buf_printf(cli_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void cli_buf_free(cli_buf *b);

/* Monotonic wall-clock seconds (for progress lines and --repeat timings). */
double cli_now(void);
#endif
