# SPDX-License-Identifier: MIT
"""EANN models (EANN_TEXT_V1: `eann train`, the published NMA models;
eann.h: eann_model_parse, eann_work_new, eann_predict).

    from tensorial import EANN
    m = EANN.load("models/nma_dipole_pm7.eann")
    m.kind                        # "dipole", "tdm" or "polarizability"
    r = m.predict(atoms)
    r["dipole"]                   # [3] e*bohr           (kind dipole)
    r["tdm"]                      # [3] e*bohr           (kind tdm; overall sign arbitrary)
    r["polarizability"]           # [3][3] e^2 bohr^2 / hartree = bohr^3 (kind polarizability)

Units: positions in angstrom in, atomic units out, as the models are trained
(eann.h); the same numbers `eann predict` writes, bit for bit.
"""

import ctypes

try:
    import numpy as np
except ImportError:  # `import tensorial` still works; using it says what is missing
    np = None

from . import _lib
from ._atoms import arrays, symbol

UNITS = {"dipole": "e*bohr", "tdm": "e*bohr", "polarizability": "bohr^3"}


class EANN:
    """An EANN model. Use EANN.load(path). One object must not be used by
    two threads at once (it keeps a workspace)."""

    units = UNITS

    def __init__(self, text, name="<text>"):
        _lib.need_numpy()
        if isinstance(text, str):
            text = text.encode("utf-8")
        h = ctypes.c_void_p()
        err = _lib.eann_parse_error()
        rc = _lib.eann_model_parse(text, len(text), ctypes.byref(h), ctypes.byref(err))
        if rc:
            where = "%s:%d" % (name, err.line) if err.line > 0 else name
            raise ValueError("%s: %s" % (where, err.msg.decode("utf-8", "replace") or _lib.eann_error(rc)))
        self._h = h
        self._work = None
        self._cap = 0
        self._free_model = _lib.eann_model_free
        self._free_work = _lib.eann_work_free
        head = ctypes.cast(h, ctypes.POINTER(_lib.eann_spec_head)).contents
        self._kind = head.kind
        self.kind = _lib.eann_kind_name(head.kind).decode("ascii")
        self.species = [head.species[i].value.decode("ascii") for i in range(head.nspecies)]
        self.noutputs = _lib.eann_kind_outputs(head.kind)
        self.name = name

    @classmethod
    def load(cls, path):
        """Read an EANN_TEXT_V1 model file."""
        with open(path, "rb") as f:
            return cls(f.read(), name=str(path))

    def __del__(self):
        if getattr(self, "_work", None):
            self._free_work(self._work)
            self._work = None
        if getattr(self, "_h", None):
            self._free_model(self._h)
            self._h = None

    def __repr__(self):
        return "EANN(%s, kind=%s, species=%s)" % (self.name, self.kind, ",".join(self.species))

    def _workspace(self, n):
        if self._work is None or n > self._cap:
            if self._work:
                self._free_work(self._work)
                self._work = None
            w = ctypes.c_void_p()
            cap = max(n, 16)
            rc = _lib.eann_work_new(self._h, cap, ctypes.byref(w))
            if rc:
                raise MemoryError("%s: workspace for %d atoms: %s" % (self.name, cap, _lib.eann_error(rc)))
            self._work, self._cap = w, cap
        return self._work

    def predict(self, atoms):
        """The model's output for one molecule (ASE Atoms or a (numbers,
        positions) pair; positions in angstrom), as a dict with one key, the
        model's kind: "dipole" [3], "tdm" [3] or "polarizability" [3][3], in
        atomic units."""
        z, pos = arrays(atoms)
        n = len(z)
        sp = np.empty(n, dtype=np.int32)
        for i, v in enumerate(z):
            s = _lib.eann_species_index(self._h, symbol(int(v)).encode("ascii"))
            if s < 0:
                raise ValueError("%s: element %s is not in the model's species %s"
                                 % (self.name, symbol(int(v)), ",".join(self.species)))
            sp[i] = s
        out = np.zeros(self.noutputs)
        w = self._workspace(n)
        rc = _lib.eann_predict(self._h, w, n, sp.ctypes.data_as(_lib.P_int),
                               pos.ctypes.data_as(_lib.P_double), out.ctypes.data_as(_lib.P_double))
        if rc:
            raise ValueError("%s: %s" % (self.name, _lib.eann_error(rc)))
        if self.kind == "polarizability":
            out = out.reshape(3, 3)
        return {self.kind: out}
