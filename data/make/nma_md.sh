#!/bin/sh
# SPDX-License-Identifier: MIT
# xtb GFN2 molecular dynamics of trans N-methylacetamide (NMA) at one temperature.
# Usage (from the repository root): sh data/make/nma_md.sh T   (T = 300 or 500)
# Program: xtb 6.5.1 (Debian package), GFN2-xTB, gas phase, one thread.
# Start geometry: data/make/nma_start.xyz (trans NMA: RDKit ETKDGv3 randomSeed=42 from
#   SMILES CC(=O)NC, MMFF94 pre-optimised, then `xtb --opt` GFN2, see nma_start.py).
# MD settings ($md block below): Berendsen-type NVT thermostat of xtb at T, time step
#   0.5 fs, hydrogen mass 1 amu (hmass=1), no SHAKE (shake=0), 260 ps, a snapshot every
#   50 fs written to xtb.trj (5200 snapshots). The first 5 ps (100 snapshots) are
#   equilibration and are dropped by nma_md_collect.py, leaving 5100 frames.
# Output: data/make/work/nma_md_T$T/xtb.trj (scratch, not shipped). Resumable: skips
#   a temperature whose run finished (file xtbmdok present).
set -e
T=$1
here=$(cd "$(dirname "$0")" && pwd)
d="$here/work/nma_md_T$T"
if [ -f "$d/xtbmdok" ]; then echo "nma_md T=$T: already done"; exit 0; fi
if [ -f "$d/xtb.trj" ] && [ "${FORCE:-0}" != 1 ]; then
    # a stopped run: its frames may already be labelled and shipped; xtb 6.5.1 cannot
    # continue it (no restart file is written during the run, and new initial velocities
    # are random), so a new run gives different frames.
    echo "nma_md T=$T: $d/xtb.trj exists from a stopped run; FORCE=1 to start over" >&2
    exit 1
fi
rm -rf "$d"; mkdir -p "$d"
cp "$here/nma_start.xyz" "$d/nma.xyz"
cat > "$d/md.inp" <<EOT
\$md
   temp=$T.0
   time=260.0
   dump=50.0
   step=0.5
   hmass=1
   shake=0
   velo=false
   nvt=true
\$end
EOT
cd "$d"
OMP_NUM_THREADS=1 OMP_STACKSIZE=256M nice -n 19 xtb nma.xyz --gfn 2 --input md.inp --md > md.out 2>&1
