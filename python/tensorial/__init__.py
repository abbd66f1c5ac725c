# SPDX-License-Identifier: MIT
"""tensorial: Python access to the tensorial C library (ctypes + NumPy).

    import sys; sys.path.insert(0, "python")     # from the repository root
    import tensorial
    soap = tensorial.SOAP(species=["H", "C", "N", "O"], r_cut=3.5, n_max=8, l_max=6)
    kq = tensorial.KQEq.load("models/qm9like_kqeq_xtb.kqeq")
    nn = tensorial.EANN.load("models/nma_dipole_pm7.eann")
    from tensorial.ase import Calculator           # needs ASE

Needs libtensorial.so (`make` builds build/libtensorial.so; or set
TENSORIAL_LIB). Results are NumPy float64 arrays in atomic units (dipoles
e*bohr, polarizabilities bohr^3, charges e); the ASE calculator converts to
ASE's units (see tensorial.ase). They equal the C programs' outputs bit for bit.
"""

from ._lib import BOHR_ANGSTROM, LibraryNotFound  # noqa: F401
from ._lib import path as library_path  # noqa: F401
from .eann import EANN  # noqa: F401
from .kqeq import KQEq  # noqa: F401
from .soap import SOAP  # noqa: F401

__all__ = ["SOAP", "KQEq", "EANN", "BOHR_ANGSTROM", "library_path", "LibraryNotFound"]
