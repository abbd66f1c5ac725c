/* SPDX-License-Identifier: MIT */
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
 * Plain XYZ (no Properties key) reads as species:S:1:pos:R:3 (extra columns
 * on its atom lines are ignored). Its comment line is parsed as key=value
 * pairs when it contains an '=' and parses cleanly; otherwise the whole
 * (trimmed) comment is kept as the string info key "comment".
 *
 * Comment line syntax (ASE's): pairs separated by whitespace; key=value,
 * key = value, or a bare key (boolean true). Keys are case-sensitive, except
 * that "properties" is accepted for "Properties". Values are bare words,
 * "double" or 'single' quoted text (backslash takes the next character
 * literally: \" and \\), or a list [1, 2, 3] / {1 2 3} of numbers or
 * booleans (nested lists, strings in lists and JSON are rejected). A value is
 * split at whitespace and commas and stored as
 *   XYZ_INT  if every item is an integer literal [+-]digits (|i| < 2^53),
 *   XYZ_REAL if every item is a number (strtod syntax, hex floats included),
 *   XYZ_BOOL if every item is T, F, True, False, true or false (1 / 0),
 *   XYZ_STR  otherwise (the unescaped text; integers beyond 2^53 are kept as
 *            their exact text rather than rounded).
 * So quoting does not make "12" a string (as in ASE). Lattice must be 9
 * numbers (stored as XYZ_REAL), pbc 1 or 3 booleans. Duplicate keys, NaN or
 * Inf values and unterminated quotes are errors.
 * Properties: name:type:ncols triples, types S R I L, ncols >= 1; it must hold
 * species:S:1 and pos:R:3 (in any position). The species column holds
 * element symbols H..Rn, matched exactly ("Si", not "SI" or "14"): atomic
 * numbers are not accepted there. Atom lines must have exactly the declared
 * number of columns: R columns take any finite number (as above), I columns
 * integer literals (|i| < 2^53), L columns T/F/True/False/true/false, S
 * columns any word. Lines may end in \r\n and be of any length.
 * Blank lines after the last frame are ignored; a blank line where an atom
 * count is expected before more text is an error. A frame may have 0 atoms.
 *
 * Units are whatever the file holds (positions conventionally angstrom); this
 * layer does not convert.
 *
 * Errors: every function that can fail returns 0 on success or -1 on error
 * and writes a one-line message "FILE:LINE: what is wrong" into err (size
 * errlen, always NUL-terminated). Nothing is printed.
 * Parse errors name the line where the problem is, except a truncated frame
 * (its message says how many atom lines were found) and a count larger than
 * the file, which name the frame's count line. A file that cannot be opened
 * or read gives "PATH: cannot open: reason" (no line).
 *
 * Numbers are read with strtod and written with printf: keep the C library
 * in the "C" numeric locale (do not setlocale(LC_NUMERIC, ...)).
 */
#ifndef XYZ_H
#define XYZ_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

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
 * messages only; path "-" reads stdin). On error *out is left empty (nothing
 * to free). A count that cannot fit in the bytes left is rejected before
 * anything is allocated for it; NUL bytes are rejected (not a text file:
 * xyz_read stops reading at the first one), as are lines longer than
 * XYZ_MAX_LINE, coordinates beyond XYZ_MAX_COORD and directories. */
int xyz_read(const char *path, xyz_file *out, char *err, size_t errlen);
int xyz_parse(const char *buf, size_t len, const char *name, xyz_file *out,
              char *err, size_t errlen);

/* Write all frames, values with %.17g so a read gives identical bits.
 * Output rules: see xyz_write_bytes below (a regular file is replaced
 * atomically through a temporary file beside it, so an interrupted write
 * never leaves a half-written file under the final name; devices and FIFOs
 * are written in place; symbolic links are followed; "-" and /dev/stdout
 * are standard output).
 * Each frame: the count, then "Properties=species:S:1:pos:R:3[:arrays...]"
 * and the info keys in stored order; strings are quoted when needed (spaces,
 * quotes, '=', brackets, backslash, empty), numeric and boolean lists are
 * quoted, booleans are T/F, integers are written as integers and reals
 * always with a '.' or exponent (2.0, -0.0) so they read back as reals.
 * Everything is checked before the first byte is written; errors (message
 * "PATH: frame N: what"): non-finite numbers, Z outside 1..86, keys or names
 * that cannot be written (empty, spaces, quotes, '=', brackets, ':' in array
 * names, Properties as an info key, species/pos as array names, duplicates),
 * line breaks in strings, per-atom strings that are empty or hold spaces,
 * XYZ_INT values that are not integers below 2^53, XYZ_BOOL not 0/1,
 * strings that would read back as NaN or Inf ("nan", "1 inf": only a plain
 * comment line gives such a string; the reader refuses non-finite values).
 * A string that looks like a number or boolean ("12", "T") reads back as one,
 * as in ASE. */
int xyz_write(const char *path, const xyz_file *f, char *err, size_t errlen);

/* Write len bytes (any text, e.g. a model file or an SVG) to path by the
 * same rules as xyz_write: "-" and "/dev/stdout" are standard output; an
 * existing device or FIFO is written in place (never replaced) and its
 * write errors reported (a full disk, /dev/full); a regular file, or the
 * regular file a symbolic link points to, is replaced atomically:
 * "TARGET.tmp.PID.RANDOM" is created beside it with O_CREAT|O_EXCL (mode
 * 0666 minus the umask), written, fsync'ed and renamed over TARGET, so the
 * target holds either the old or the complete new contents. A process
 * killed with SIGKILL mid-write may leave that temporary file behind (it
 * never touches TARGET). A symbolic link is followed (also a dangling one:
 * the file it names is created); the link itself stays. A directory is
 * refused. Returns 0, or -1 with "PATH: reason" in err. */
int xyz_write_bytes(const char *path, const char *data, size_t len, char *err, size_t errlen);

/* Limits of the reader (xyz_read / xyz_parse refuse beyond them with
 * FILE:LINE): a line longer than XYZ_MAX_LINE bytes (so that a stream
 * without newlines is not read forever), and a coordinate with |x| >
 * XYZ_MAX_COORD angstrom (nothing chemical is that far away; such numbers
 * overflow distances). xyz_write refuses such coordinates too. */
#define XYZ_MAX_LINE (1 << 27)
#define XYZ_MAX_COORD 1e6

void xyz_free(xyz_file *f);
void xyz_frame_free(xyz_frame *fr); /* one frame, e.g. one not (yet) appended */

/* Building frames. xyz_frame_init: natoms atoms, z and pos copied when not
 * NULL (zeros otherwise), no info or arrays. xyz_append_frame moves *fr into
 * f (fr is zeroed: f owns the data now). Both return -1 only on allocation
 * failure or bad arguments. */
int xyz_frame_init(xyz_frame *fr, int natoms, const int *z, const double *pos);
int xyz_append_frame(xyz_file *f, xyz_frame *fr);

/* Look-ups. Return NULL if absent. */
const xyz_info *xyz_find_info(const xyz_frame *fr, const char *key);
const xyz_array *xyz_find_array(const xyz_frame *fr, const char *name);

/* Fetch a numeric info value of exactly n numbers into out[n].
 * Error (-1, message naming file, frame line and key) if missing, not
 * numeric or of another length. file is the name used in the message. */
int xyz_get_info_real(const xyz_frame *fr, const char *file, const char *key,
                      int n, double *out, char *err, size_t errlen);

/* Same for a per-atom numeric column (XYZ_REAL or XYZ_INT) of exactly ncols
 * columns: copies natoms*ncols values into out. */
int xyz_get_array_real(const xyz_frame *fr, const char *file, const char *name, int ncols,
                       double *out, char *err, size_t errlen);

/* Set (add or replace) a numeric info value / a real per-atom column.
 * The data is copied (v: [n] / [natoms * ncols] row-major). An existing key
 * keeps its place in the order; a new one goes last. Return -1 only on
 * allocation failure or bad arguments (NULL or empty key, n or ncols < 1).
 * xyz_set_array_real(fr, "pos", 3, v) overwrites the positions; "species"
 * cannot be set this way (write fr->z). */
int xyz_set_info_real(xyz_frame *fr, const char *key, const double *v, int n);
int xyz_set_info_str(xyz_frame *fr, const char *key, const char *s);
int xyz_set_array_real(xyz_frame *fr, const char *name, int ncols, const double *v);
/* The same with an explicit type XYZ_REAL, XYZ_INT or XYZ_BOOL (values 1/0). */
int xyz_set_info_num(xyz_frame *fr, const char *key, xyz_type type, const double *v, int n);
int xyz_set_array_num(xyz_frame *fr, const char *name, xyz_type type, int ncols, const double *v);
/* Remove a key / per-atom column; return 1 if it was there, else 0. */
int xyz_remove_info(xyz_frame *fr, const char *key);
int xyz_remove_array(xyz_frame *fr, const char *name);

/* ================================================================== */
/* Streaming reader: one frame at a time, for long trajectories.       */
/* ================================================================== */
/* Memory holds one frame (its text and the parsed frame), whatever the
 * number of frames. Frames are parsed by the same code as xyz_read, so the
 * accepted syntax, the values and the "FILE:LINE: what" messages are the same
 * (line numbers count from the start of the file).
 *     xyz_stream *s; xyz_frame fr;
 *     if (xyz_stream_open(path, &s, err, sizeof err) != 0) ...;   // "-" = stdin
 *     while ((rc = xyz_stream_next(s, &fr, err, sizeof err)) == 1) {
 *         ... use fr ...; xyz_frame_free(&fr);
 *     }
 *     if (rc < 0) ... err ...;
 *     xyz_stream_close(s);
 * xyz_stream_next returns 1 with a frame in *fr (the caller frees it), 0 when
 * there are no more frames, -1 on error (message in err, nothing in *fr;
 * further calls return 0). A file with no frame at all is an error, as in
 * xyz_read. xyz_stream_bytes / xyz_stream_size (-1 if unknown, e.g. stdin)
 * are for progress reports; xyz_stream_frames counts the frames returned. */
typedef struct xyz_stream xyz_stream;
int xyz_stream_open(const char *path, xyz_stream **out, char *err, size_t errlen);
int xyz_stream_next(xyz_stream *s, xyz_frame *fr, char *err, size_t errlen);
long xyz_stream_frames(const xyz_stream *s);
long long xyz_stream_bytes(const xyz_stream *s);
long long xyz_stream_size(const xyz_stream *s);
void xyz_stream_close(xyz_stream *s);

/* A path for messages: at most 200 bytes ("..." + its last 197 bytes) so that the
 * reason after it is never cut off; buf must hold >= 201 bytes. Returns p or buf. */
const char *xyz_short_path(const char *p, char *buf);

#ifdef __cplusplus
}
#endif
#endif
