/* SPDX-License-Identifier: MIT */
/* common.h - small helpers shared by the command-line programs (not part of
 * the model libraries). POSIX is allowed here. */
#ifndef CLI_COMMON_H
#define CLI_COMMON_H
#include <stddef.h>

#include "xyz.h"

/* Version of the programs (kqeq, eann, spectrum): `PROG --version` prints
 * cli_version(), e.g. "tensorial 0.1.0". */
#define TENSORIAL_VERSION "0.1.0" /* keep equal to Version in tensorial.pc.in */
const char *cli_version(void);
/* If arg is "--version": prints "PROG (tensorial VERSION)" on stdout and
 * returns 1, else 0. */
int cli_print_version(const char *prog, const char *arg);

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

/* Write len bytes to path by the rules of xyz_write_bytes (xyz.h): "-" and
 * /dev/stdout are standard output; an existing device or FIFO is written in
 * place and its write errors reported; a regular file (or the file a
 * symbolic link points to) is replaced atomically (temporary file created
 * with O_EXCL beside it, fsync, rename). Returns 0, or -1 with
 * "PATH: reason" in err. */
int cli_write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen);

/* Refuses (cli_fail) an output path that would destroy an input: the same
 * file (device and inode, after following symbolic links) as any of
 * inputs[n] (NULL entries and "-" are skipped), or a directory. Call it
 * before any work, with every file the command reads. */
void cli_check_output(const char *opt, const char *out, const char *const *inputs, int n);

/* cli_fail()s now (not after a long run) if out cannot be written: an
 * existing non-regular file without write permission, or a directory that
 * does not exist or does not allow creating the temporary file. */
void cli_check_writable(const char *opt, const char *out);

/* Reads an XYZ file (xyz_read) and applies the rules every command shares;
 * cli_fail()s with "FILE:LINE: what" on: a read or parse error, a frame
 * without atoms, a periodic frame (pbc with a T, or a Lattice without pbc,
 * which ASE reads as periodic): periodic systems are not supported. */
void cli_read_xyz(const char *path, xyz_file *xf);
/* One frame: refuse 0 atoms and periodic cells with FILE:LINE (cli_read_xyz applies it to
 * every frame; streaming readers call it per frame). */
void cli_check_frame(const xyz_frame *fr, const char *path);

/* Total charge (e) of a frame from its 'charge' key, 0 if absent. The one
 * check of both programs: a single finite number (not a boolean such as
 * charge=T, not a string or a vector), |Q| <= CLI_MAX_CHARGE, and an
 * integer unless fractional_ok (--fractional-charge). cli_fail()s with
 * "FILE:LINE: key 'charge' ..." otherwise. */
#define CLI_MAX_CHARGE 1000.0
double cli_frame_charge(const xyz_frame *fr, const char *path, int fractional_ok);
/* The same rule for a --charge Q command-line value. */
double cli_parse_charge(const char *opt, const char *s, int fractional_ok);

/* cli_fail()s with "FILE:LINE: <what> is not finite (NaN or Inf)" if any of
 * v[n] is not finite: no command prints or writes a non-finite prediction. */
void cli_check_finite(const double *v, size_t n, const char *file, int line, const char *what);

/* End of a command: flushes and closes standard output and returns rc, or
 * prints "PROG: standard output: write error: reason" and returns 1 (so a
 * full disk or /dev/full never passes as success). main() returns
 * cli_exit(cmd(...)). */
int cli_exit(int rc);

/* Output keys of the predicting commands (kqeq predict, eann predict).
 * cli_check_prefix: --prefix P must be a plain name (letters, digits, '_',
 * '-', '.'; 1..64 bytes). cli_check_new_key: refuses (unless overwrite) a
 * key or per-atom column already in the input frame, so that chained
 * predictions never silently replace each other's results.
 * cli_merge_units: sets the string key ukey to entries ("dipole:debye,..."),
 * keeping the entries of an existing ukey for other names (so two models'
 * units both survive a chain); the text is exactly entries when ukey is new. */
void cli_check_prefix(const char *prefix);
void cli_check_new_key(const xyz_frame *fr, const char *file, const char *key, int overwrite);
void cli_merge_units(xyz_frame *fr, const char *ukey, const char *entries);

/* Bytes of memory available (MemAvailable of /proc/meminfo), or 0 if
 * unknown. cli_parse_bytes: "500M", "4G", "1.5G", "123456" (bytes;
 * K, M, G, T powers of 1024). */
double cli_mem_available(void);
double cli_parse_bytes(const char *opt, const char *s);

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
/* Processor time of this process in seconds (CLOCK_PROCESS_CPUTIME_ID,
 * nanosecond resolution; clock() has microseconds): the clock of the
 * per-pass --repeat figures, as the peers' time.process_time(). */
double cli_cpu_now(void);
#endif
