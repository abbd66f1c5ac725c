# SPDX-License-Identifier: MIT
"""An ASE calculator for kQEq and EANN models.

    import ase.io
    from tensorial.ase import Calculator
    atoms = ase.io.read("data/nma/test.xyz", 0)
    atoms.calc = Calculator("models/nma_dipole_pm7.eann", "models/nma_polarizability_pm7.eann")
    atoms.get_dipole_moment()                 # [3] e*angstrom (ASE's unit)
    atoms.calc.results["polarizability"]      # [3][3] angstrom^3
    atoms.calc.results["polarizability_au"]   # [3][3] bohr^3 (as `eann predict` writes)

Models: KQEq / EANN objects or paths (a file whose first line is
KQEQ_MODEL_V1 is a kQEq model, else EANN). Each property may come from one
model only. What lands in atoms.calc.results:
  kQEq:             charges [n] (e), dipole, polarizability
  EANN dipole:      dipole;   EANN tdm: tdm;   EANN polarizability: polarizability
  dipole, tdm       e*angstrom = (e*bohr value) * 0.529177210903
  polarizability    angstrom^3 = (bohr^3 value) * (0.529177210903 * 0.529177210903 * 0.529177210903)
  *_au              the atomic-unit values the models return (e*bohr, bohr^3),
                    bit for bit those of `kqeq predict --dipole-unit au` / `eann predict`
The conversions are exactly these float64 multiplications, so
results["dipole"] == results["dipole_au"] * 0.529177210903 holds bitwise.
Total charge for kQEq: Calculator(..., charge=Q), else atoms.info["charge"],
else 0. No energies or forces: these are property models.
"""

import numpy as np
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes

from ._lib import BOHR_ANGSTROM
from .eann import EANN
from .kqeq import KQEq

# angstrom^3 per bohr^3, written as the product the docs state
BOHR3_ANGSTROM3 = BOHR_ANGSTROM * BOHR_ANGSTROM * BOHR_ANGSTROM


def _load(model):
    if isinstance(model, (KQEq, EANN)):
        return model
    with open(model, "rb") as f:
        first = f.readline().strip()
    return KQEq.load(model) if first == b"KQEQ_MODEL_V1" else EANN.load(model)


class Calculator(_AseCalculator):
    """Calculator(*models, charge=None): dipoles, charges, polarizabilities
    (and transition dipoles) of kQEq and EANN models for ASE."""

    def __init__(self, *models, charge=None, **kwargs):
        super().__init__(**kwargs)
        if not models:
            raise ValueError("tensorial.ase.Calculator: give at least one model (KQEq, EANN or a path)")
        self.models = [_load(m) for m in models]
        self.charge = charge
        self._source = {}
        for m in self.models:
            props = ["charges", "dipole", "polarizability"] if isinstance(m, KQEq) else [m.kind]
            for p in props:
                if p in self._source:
                    raise ValueError("two models give '%s': %s and %s" % (p, self._source[p].name, m.name))
                self._source[p] = m
        self.implemented_properties = list(self._source)
        self._charge_used = None

    def _total_charge(self, atoms):
        if self.charge is not None:
            return float(self.charge)
        return float(atoms.info.get("charge", 0.0))

    def check_state(self, atoms, tol=1e-15):
        changes = super().check_state(atoms, tol)
        if self._charge_used is not None and self._total_charge(atoms) != self._charge_used:
            changes.append("initial_charges")
        return changes

    def calculate(self, atoms=None, properties=("dipole",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        q = self._total_charge(atoms)
        res = {}
        for m in self.models:
            if isinstance(m, KQEq):
                r = m.predict(atoms, charge=q)
                res["charges"] = r["charges"]
                res["dipole_au"] = r["dipole"]
                res["polarizability_au"] = r["polarizability"]
            else:
                r = m.predict(atoms)
                res[m.kind + "_au"] = r[m.kind]
        for k in ("dipole", "tdm"):
            if k + "_au" in res:
                res[k] = res[k + "_au"] * BOHR_ANGSTROM
        if "polarizability_au" in res:
            res["polarizability"] = res["polarizability_au"] * BOHR3_ANGSTROM3
        self._charge_used = q
        self.results.update(res)
