# SPDX-License-Identifier: MIT
"""SOAP descriptors with DScribe's names and layout (kqeq.h, kq_soap_*).

    from tensorial import SOAP
    soap = SOAP(species=["H", "C", "N", "O"], r_cut=3.5, n_max=8, l_max=6)
    p = soap.create(atoms)            # float64 [natoms][soap.get_number_of_features()]

Definition: ../shared/specs/soap.md (DScribe's rbf='gto', average='off',
periodic=False, no weighting, no compression; every atom a centre; raw, not
normalised). Differences from DScribe: sigma defaults to r_cut/8 (the kQEq
paper's choice; DScribe's default is 1.0), and create() takes no `centers`.
The numbers are the bits `kqeq soap` prints for the same input.
"""

import ctypes

try:
    import numpy as np
except ImportError:  # `import tensorial` still works; using it says what is missing
    np = None

from . import _lib
from ._atoms import arrays, atomic_number, symbol


class SOAP:
    """SOAP(species, r_cut, n_max, l_max, sigma=None).

    species: element symbols or atomic numbers (any order; sorted by Z as
    DScribe does); r_cut angstrom (> 1); n_max >= 1; l_max 0..20; sigma the
    Gaussian width in angstrom (None: r_cut / 8)."""

    def __init__(self, species, r_cut, n_max, l_max, sigma=None):
        _lib.need_numpy()
        zs = sorted(set(atomic_number(s) for s in species))
        if len(zs) != len(list(species)):
            raise ValueError("species listed twice: %s" % list(species))
        if not 1 <= len(zs) <= _lib.KQ_MAX_SPECIES:
            raise ValueError("1..%d species, got %d" % (_lib.KQ_MAX_SPECIES, len(zs)))
        p = _lib.kq_soap_params()
        p.rcut = float(r_cut)
        p.nmax = int(n_max)
        p.lmax = int(l_max)
        p.sigma = 0.0 if sigma is None else float(sigma)
        if sigma is not None and not p.sigma > 0:
            raise ValueError("sigma must be positive (or None for r_cut / 8)")
        p.nspecies = len(zs)
        for i, z in enumerate(zs):
            p.species[i] = z
        h = ctypes.c_void_p()
        rc = _lib.kq_soap_new(ctypes.byref(p), ctypes.byref(h))
        if rc:
            raise ValueError("SOAP(r_cut=%r, n_max=%r, l_max=%r, sigma=%r): %s"
                             % (r_cut, n_max, l_max, sigma, _lib.kq_error(rc)))
        self._h = h
        self._free = _lib.kq_soap_free
        used = _lib.kq_soap_get_params(h).contents
        self.species = [symbol(z) for z in zs]   # sorted by Z
        self.r_cut = used.rcut
        self.n_max = used.nmax
        self.l_max = used.lmax
        self.sigma = used.sigma                  # resolved (r_cut / 8 when None)
        self._zs = zs
        self._len = int(_lib.kq_soap_length(h))

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            self._free(h)
            self._h = None

    def get_number_of_features(self):
        """Length of one atom's vector: (S n_max)(S n_max + 1)/2 (l_max + 1)."""
        return self._len

    def get_location(self, species_pair):
        """slice of the features of one species pair, e.g. ("H", "O"), in
        DScribe's layout (specs/soap.md): pairs (s1 <= s2 by Z), each
        (l_max + 1) blocks of n_max(n_max+1)/2 (same species) or n_max^2."""
        a, b = sorted(atomic_number(s) for s in species_pair)
        if a not in self._zs or b not in self._zs:
            raise ValueError("%s is not a pair of %s" % (tuple(species_pair), self.species))
        n, nl = self.n_max, self.l_max + 1
        off = 0
        for i, z1 in enumerate(self._zs):
            for z2 in self._zs[i:]:
                size = (n * (n + 1) // 2 if z1 == z2 else n * n) * nl
                if (z1, z2) == (a, b):
                    return slice(off, off + size)
                off += size
        raise AssertionError("unreachable")

    def _one(self, atoms):
        z, pos = arrays(atoms)
        out = np.zeros((len(z), self._len), dtype=np.float64)
        if len(z) == 0:
            return out
        rc = _lib.kq_soap_compute(self._h, len(z), z.ctypes.data_as(_lib.P_int),
                                  pos.ctypes.data_as(_lib.P_double),
                                  out.ctypes.data_as(_lib.P_double))
        if rc:
            unknown = sorted(set(int(v) for v in z) - set(self._zs))
            extra = " (%s not in species %s)" % (",".join(symbol(v) for v in unknown), self.species) \
                if unknown else ""
            raise ValueError("SOAP.create: %s%s" % (_lib.kq_error(rc), extra))
        return out

    def create(self, system):
        """Raw SOAP of every atom: float64 [natoms][n_features] for one Atoms
        (or (numbers, positions) pair); a list of such arrays for a list."""
        if isinstance(system, (list, tuple)) and system and not (
                len(system) == 2 and not hasattr(system[0], "positions")
                and np.ndim(system[1]) == 2):
            return [self._one(a) for a in system]
        return self._one(system)
