#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Start geometry of the NMA molecular dynamics (data/make/nma_start.xyz).

trans N-methylacetamide from SMILES CC(=O)NC: RDKit 2022.09 ETKDGv3 (randomSeed=42),
MMFF94 optimisation, then xtb 6.5.1 GFN2 optimisation (`xtb nma.xyz --opt`, default
'normal' level); the xtbopt.xyz written by xtb is nma_start.xyz (atom order
C C O N C H H H H H H H: methyl C, carbonyl C, O, N, N-methyl C, 3 H on the C-methyl,
H on N, 3 H on the N-methyl).  The peptide unit is trans (O=C-N-H about 180 deg).
Run from the repository root: /usr/bin/python3 data/make/nma_start.py
"""
import os
import shutil
import subprocess
import tempfile

from rdkit import Chem
from rdkit.Chem import AllChem

here = os.path.dirname(os.path.abspath(__file__))
m = Chem.AddHs(Chem.MolFromSmiles('CC(=O)NC'))
p = AllChem.ETKDGv3()
p.randomSeed = 42
AllChem.EmbedMolecule(m, p)
AllChem.MMFFOptimizeMolecule(m)
d = tempfile.mkdtemp()
Chem.MolToXYZFile(m, os.path.join(d, 'nma.xyz'))
subprocess.run(['xtb', 'nma.xyz', '--opt'], cwd=d, check=True, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS='1'))
shutil.copy(os.path.join(d, 'xtbopt.xyz'), os.path.join(here, 'nma_start.xyz.tmp'))
os.rename(os.path.join(here, 'nma_start.xyz.tmp'), os.path.join(here, 'nma_start.xyz'))
shutil.rmtree(d)
