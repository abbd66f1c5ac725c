/* xyz.h - extended XYZ reader and writer (ASE's dialect).
 *
 * Not part of the model libraries (kqeq.*, eann.*): it is the file I/O layer
 * that the command-line programs and tests use. libc and libm only.
 *
 * A file is a sequence of frames:
 *     line 1: atom count N
 *     line 2: comment line; extended XYZ puts key=value pairs here, e.g.
 *             Properties=species:S:1:pos:R:3:q:R:1 energy=-1.5 dipole="0.1 0.2 0.3"
 *             Lattice="10 0 0 0 10 0 0 0 10" pbc="F F F" name=water
 *     N lines: one atom each, columns as the Properties spec says.
 * Plain XYZ (no Properties key) reads as species:S:1:pos:R:3; any key=value
 * pairs on its comment line are still parsed when the line parses cleanly,
 * otherwise the comment is kept as the info key "comment".
 *
 * Units are whatever the file holds (positions conventionally angstrom); this
 * layer does not convert.
 *
 * Errors: every function that can fail returns 0 on success or -1 on error
 * and writes a one-line message "FILE:LINE: what is wrong" into err (size
 * errlen, always NUL-terminated). Nothing is printed.
 */
#ifndef XYZ_H
#define XYZ_H

#include <stddef.h>

/* Value types, as in the Properties spec letters S, R, I, L. */
typedef enum { XYZ_STR = 'S', XYZ_REAL = 'R', XYZ_INT = 'I', XYZ_BOOL = 'L' } xyz_type;

/* A per-frame key=value pair from the comment line.
 * Numbers (R, I) and booleans (L: 1 or 0) are stored in num[n]; strings in
 * str (n == 1). A quoted list of numbers "1 2 3" gives n = 3. Integers are
 * kept exactly in num because |i| < 2^53 is required. */
typedef struct {
    char *key;
    xyz_type type;
    int n;
    double *num;   /* [n] for R, I, L; NULL for S */
    char *str;     /* for S; NULL otherwise */
} xyz_info;

/* A per-atom column block from Properties (name:type:ncols), other than
 * species and pos which are held in xyz_frame directly. */
typedef struct {
    char *name;
    xyz_type type;
    int ncols;
    double *num;   /* [natoms * ncols] row-major for R, I, L; NULL for S */
    char **str;    /* [natoms * ncols] for S; NULL otherwise */
} xyz_array;

typedef struct {
    int natoms;
    int *z;            /* [natoms] atomic numbers (1..86) */
    double *pos;       /* [natoms * 3] row-major, as in the file */
    int ninfo;
    xyz_info *info;    /* [ninfo] in file order (Properties itself is not listed) */
    int narrays;
    xyz_array *arrays; /* [narrays] per-atom columns in file order, excluding species/pos */
    int line;          /* 1-based line number of this frame's count line */
} xyz_frame;

typedef struct {
    int nframes;
    xyz_frame *frames;
} xyz_file;

/* Element symbols H..Rn (Z = 1..86). Returns 0 for an unknown symbol.
 * Matching is exact (case-sensitive, "He" not "HE"). */
int xyz_symbol_to_z(const char *sym);
const char *xyz_z_to_symbol(int z); /* NULL outside 1..86 */

/* Read every frame of a file / of a memory buffer (name is used in error
 * messages only). On error *out is left empty (nothing to free). */
int xyz_read(const char *path, xyz_file *out, char *err, size_t errlen);
int xyz_parse(const char *buf, size_t len, const char *name, xyz_file *out,
              char *err, size_t errlen);

/* Write all frames, values with %.17g so a read gives identical bits.
 * Writes to "path.tmp.<pid>" and renames it over path, so an interrupted
 * write never leaves a half-written file under the final name.
 * path "-" writes to stdout. */
int xyz_write(const char *path, const xyz_file *f, char *err, size_t errlen);

void xyz_free(xyz_file *f);

/* Look-ups. Return NULL if absent. */
const xyz_info *xyz_find_info(const xyz_frame *fr, const char *key);
const xyz_array *xyz_find_array(const xyz_frame *fr, const char *name);

/* Fetch a numeric info value of exactly n numbers into out[n].
 * Error (-1, message naming file, frame line and key) if missing, not
 * numeric or of another length. file is the name used in the message. */
int xyz_get_info_real(const xyz_frame *fr, const char *file, const char *key,
                      int n, double *out, char *err, size_t errlen);

/* Set (add or replace) a numeric info value / a real per-atom column.
 * The data is copied. Return -1 only on allocation failure. */
int xyz_set_info_real(xyz_frame *fr, const char *key, const double *v, int n);
int xyz_set_info_str(xyz_frame *fr, const char *key, const char *s);
int xyz_set_array_real(xyz_frame *fr, const char *name, int ncols, const double *v);

#endif
