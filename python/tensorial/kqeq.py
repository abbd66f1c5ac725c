# SPDX-License-Identifier: MIT
"""kQEq / QEq models trained by `kqeq train` (kqeq.h: kq_model_read, kq_predict).

    from tensorial import KQEq
    m = KQEq.load("models/qm9like_kqeq_xtb.kqeq")
    r = m.predict(atoms)          # total charge: atoms.info["charge"], else 0
    r["charges"]                  # [natoms] e
    r["dipole"]                   # [3] e*bohr, about the centre of mass
    r["polarizability"]           # [3][3] bohr^3 (atomic units)

Units are those of kq_predict (atomic units; kqeq.h): the same numbers
`kqeq predict --dipole-unit au` writes, bit for bit. kQEq's polarizability is
the charge-flow response R A R^T of the QEq model (specs/kqeq.md): it has no
atomic (intra-atomic) part, so for a planar molecule it is exactly zero
perpendicular to the plane.
"""

import ctypes

try:
    import numpy as np
except ImportError:  # `import tensorial` still works; using it says what is missing
    np = None

from . import _lib
from ._atoms import arrays, symbol

UNITS = {"charges": "e", "dipole": "e*bohr", "polarizability": "bohr^3", "chi": "hartree/e"}


class KQEq:
    """A kQEq or QEq model (KQEQ_MODEL_V1 text). Use KQEq.load(path)."""

    units = UNITS

    def __init__(self, text, name="<text>"):
        _lib.need_numpy()
        if isinstance(text, str):
            text = text.encode("utf-8")
        self._buf = ctypes.create_string_buffer(_lib.KQ_MODEL_BYTES)
        line = ctypes.c_int(0)
        msg = ctypes.create_string_buffer(512)
        rc = _lib.kq_model_read_msg(text, len(text), self._buf, ctypes.byref(line), msg, len(msg))
        if rc:
            why = msg.value.decode("utf-8", "replace") or _lib.kq_error(rc)
            where = "%s:%d" % (name, line.value) if line.value > 0 else name
            self._buf = None
            raise ValueError("%s: %s" % (where, why))
        self._free = _lib.kq_model_free
        head = _lib.kq_model_head.from_buffer(self._buf)
        self.kind = "qeq" if head.kind == 1 else "kqeq"
        self.species = [symbol(head.species[i]) for i in range(head.nspecies)]
        self.name = name

    @classmethod
    def load(cls, path):
        """Read a model file written by `kqeq train`."""
        with open(path, "rb") as f:
            return cls(f.read(), name=str(path))

    def __del__(self):
        if getattr(self, "_buf", None) is not None:
            self._free(self._buf)
            self._buf = None

    def __repr__(self):
        return "KQEq(%s, kind=%s, species=%s)" % (self.name, self.kind, ",".join(self.species))

    def predict(self, atoms, charge=None):
        """Charges, dipole and polarizability of one molecule.

        atoms: ASE Atoms (or a (numbers, positions) pair), positions in
        angstrom. charge: total charge in e; default atoms.info["charge"] if
        present, else 0 (as `kqeq predict` reads the frame's 'charge' key).
        Returns a dict of NumPy arrays: charges [n] e, dipole [3] e*bohr
        (about the centre of mass), polarizability [3][3] bohr^3, chi [n]
        hartree/e (the atoms' electronegativities)."""
        z, pos = arrays(atoms)
        if charge is None:
            info = getattr(atoms, "info", {}) or {}
            charge = float(info.get("charge", 0.0))
        n = len(z)
        q = np.zeros(n)
        chi = np.zeros(n)
        mu = np.zeros(3)
        al = np.zeros(9)
        P = _lib.P_double
        rc = _lib.kq_predict(self._buf, n, z.ctypes.data_as(_lib.P_int), pos.ctypes.data_as(P),
                             float(charge), q.ctypes.data_as(P), mu.ctypes.data_as(P),
                             al.ctypes.data_as(P), chi.ctypes.data_as(P))
        if rc:
            unknown = sorted(set(symbol(int(v)) for v in z) - set(self.species))
            extra = " (%s not in the model's species %s)" % (",".join(unknown), ",".join(self.species)) \
                if unknown else ""
            raise ValueError("%s: %s%s" % (self.name, _lib.kq_error(rc), extra))
        return {"charges": q, "dipole": mu, "polarizability": al.reshape(3, 3), "chi": chi}
