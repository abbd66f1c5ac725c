# SPDX-License-Identifier: MIT
"""Loading libtensorial.so and declaring the C functions (ctypes only).

Where the library is looked for, first found wins:
  1. $TENSORIAL_LIB (path of libtensorial.so);
  2. next to this package: python/tensorial/libtensorial.so;
  3. the repository's build folder: python/../build/libtensorial.so
     (`make` in the repository root builds it).
The C API used is the public one of kqeq.h and eann.h; the structures mirrored
here (kq_soap_params, the start of eann_spec, eann_parse_error) are copied
from those headers field by field.
"""

import ctypes
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# kqeq.h / eann.h constants (same values as the headers)
KQ_MAX_SPECIES = 16
EANN_MAX_SPECIES = 16
# Units (kqeq.h: KQ_BOHR_ANGSTROM, CODATA 2018): 1 bohr in angstrom.
BOHR_ANGSTROM = 0.529177210903


class LibraryNotFound(ImportError):
    pass


def _candidates():
    env = os.environ.get("TENSORIAL_LIB")
    if env:
        return [env]
    return [os.path.join(_HERE, "libtensorial.so"),
            os.path.normpath(os.path.join(_HERE, "..", "..", "build", "libtensorial.so"))]


def _load():
    tried = _candidates()
    for path in tried:
        if os.path.isfile(path):
            try:
                return ctypes.CDLL(path), path
            except OSError as e:
                raise LibraryNotFound("tensorial: cannot load %s: %s" % (path, e)) from None
    if os.environ.get("TENSORIAL_LIB"):
        raise LibraryNotFound("tensorial: TENSORIAL_LIB=%s: no such file" % tried[0])
    raise LibraryNotFound(
        "tensorial: libtensorial.so not found (looked in %s). Build it with `make` in the "
        "repository root, or set TENSORIAL_LIB=/path/to/libtensorial.so" % ", ".join(tried))


lib, path = _load()

c_int = ctypes.c_int
c_double = ctypes.c_double
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
P_int = ctypes.POINTER(c_int)
P_double = ctypes.POINTER(c_double)


class kq_soap_params(ctypes.Structure):
    """kqeq.h: kq_soap_params."""
    _fields_ = [("rcut", c_double), ("nmax", c_int), ("lmax", c_int), ("sigma", c_double),
                ("nspecies", c_int), ("species", c_int * KQ_MAX_SPECIES)]


class kq_model_head(ctypes.Structure):
    """kqeq.h: the first fields of kq_model (kind, s_at, nspecies, species)."""
    _fields_ = [("kind", c_int), ("s_at", c_double), ("nspecies", c_int),
                ("species", c_int * KQ_MAX_SPECIES)]


class eann_spec_head(ctypes.Structure):
    """eann.h: the first fields of eann_spec, which is the first member of
    eann_model (kind, nspecies, species symbols)."""
    _fields_ = [("kind", c_int), ("nspecies", c_int),
                ("species", (ctypes.c_char * 4) * EANN_MAX_SPECIES)]


class eann_parse_error(ctypes.Structure):
    """eann.h: eann_parse_error."""
    _fields_ = [("line", c_int), ("msg", ctypes.c_char * 256)]


# A kq_model is a plain struct the caller owns (kq_model_read fills it,
# kq_model_free releases what it points to). Its full size is not exported,
# so the Python side gives it a buffer far larger than the struct (about
# 1.4 kB in kqeq.h today).
KQ_MODEL_BYTES = 1 << 16


def _decl(name, restype, argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


# --- kqeq.h -----------------------------------------------------------------
kq_strerror = _decl("kq_strerror", c_char_p, [c_int])
kq_soap_new = _decl("kq_soap_new", c_int, [ctypes.POINTER(kq_soap_params), ctypes.POINTER(c_void_p)])
kq_soap_free = _decl("kq_soap_free", None, [c_void_p])
kq_soap_length = _decl("kq_soap_length", c_size_t, [c_void_p])
kq_soap_get_params = _decl("kq_soap_get_params", ctypes.POINTER(kq_soap_params), [c_void_p])
kq_soap_compute = _decl("kq_soap_compute", c_int, [c_void_p, c_int, P_int, P_double, P_double])
kq_model_read_msg = _decl("kq_model_read_msg", c_int,
                          [c_char_p, c_size_t, c_void_p, P_int, ctypes.c_char_p, c_size_t])
kq_model_free = _decl("kq_model_free", None, [c_void_p])
kq_predict = _decl("kq_predict", c_int, [c_void_p, c_int, P_int, P_double, c_double,
                                         P_double, P_double, P_double, P_double])

# --- eann.h -----------------------------------------------------------------
eann_strerror = _decl("eann_strerror", c_char_p, [c_int])
eann_kind_name = _decl("eann_kind_name", c_char_p, [c_int])
eann_kind_outputs = _decl("eann_kind_outputs", c_int, [c_int])
eann_model_parse = _decl("eann_model_parse", c_int,
                         [c_char_p, c_size_t, ctypes.POINTER(c_void_p), ctypes.POINTER(eann_parse_error)])
eann_model_free = _decl("eann_model_free", None, [c_void_p])
eann_species_index = _decl("eann_species_index", c_int, [c_void_p, c_char_p])
eann_work_new = _decl("eann_work_new", c_int, [c_void_p, c_int, ctypes.POINTER(c_void_p)])
eann_work_free = _decl("eann_work_free", None, [c_void_p])
eann_predict = _decl("eann_predict", c_int, [c_void_p, c_void_p, c_int, P_int, P_double, P_double])


def need_numpy():
    """NumPy is imported lazily so that `import tensorial` works without it;
    every class calls this first."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise ImportError("tensorial needs NumPy for its arrays: apt-get install python3-numpy "
                          "(or pip install numpy)") from None


def kq_error(code):
    return kq_strerror(code).decode("ascii", "replace")


def eann_error(code):
    return eann_strerror(code).decode("ascii", "replace")
