# SPDX-License-Identifier: MIT
"""Turning an ASE Atoms object (or a (numbers, positions) pair) into the
arrays the C library takes: atomic numbers int32 [n], positions float64
[n][3] in angstrom, C-contiguous. Positions are passed through unchanged
(no copy of the bits is altered), so results equal the C programs' for the
same numbers."""

try:
    import numpy as np
except ImportError:  # `import tensorial` still works; using it says what is missing
    np = None

_SYMBOLS = ("X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni "
            "Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe "
            "Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg "
            "Tl Pb Bi Po At Rn").split()


def symbol(z):
    return _SYMBOLS[z] if 0 < z < len(_SYMBOLS) else str(z)


def atomic_number(s):
    """'O' or 8 -> 8 (element symbols H..Rn, as xyz.c accepts)."""
    if isinstance(s, (int, np.integer)):
        if not 1 <= int(s) < len(_SYMBOLS):
            raise ValueError("atomic number %d outside 1..%d" % (s, len(_SYMBOLS) - 1))
        return int(s)
    try:
        return _SYMBOLS.index(str(s), 1)
    except ValueError:
        raise ValueError("'%s' is not an element symbol (H..Rn)" % s) from None


def arrays(atoms):
    """(z int32 [n], pos float64 [n][3] angstrom) of an ASE Atoms or a
    (numbers or symbols, positions) pair. Periodic systems are refused (the
    models here are molecular: no periodic images)."""
    if hasattr(atoms, "numbers") and hasattr(atoms, "positions"):
        pbc = getattr(atoms, "pbc", None)
        if pbc is not None and np.any(pbc):
            raise ValueError("periodic systems are not supported (pbc must be all False)")
        numbers, positions = atoms.numbers, atoms.positions
    else:
        numbers, positions = atoms
    z = np.ascontiguousarray([atomic_number(v) for v in numbers], dtype=np.int32)
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    if pos.shape != (len(z), 3):
        raise ValueError("positions must have shape (%d, 3), not %s" % (len(z), pos.shape))
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions must be finite numbers")
    return z, pos
