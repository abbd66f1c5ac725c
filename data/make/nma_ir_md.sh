#!/bin/sh
# SPDX-License-Identifier: MIT
# xtb GFN2 molecular dynamics of trans N-methylacetamide (NMA) for the IR/Raman spectra
# of issue 15, plus the harmonic reference (xtb --ohess) at the GFN2 minimum.
# Usage (from the repository root): sh data/make/nma_ir_md.sh
# Program: xtb 6.5.1 (Debian package), GFN2-xTB, gas phase, one thread (OMP_NUM_THREADS=1).
# Start geometry: data/make/nma_start.xyz (trans NMA, already `xtb --opt` GFN2, see
#   nma_start.py).
# Stage 1 (equilibration, NVT): Berendsen-type thermostat of xtb at 300 K, time step
#   0.5 fs, hydrogen mass 1 amu (hmass=1), no SHAKE (shake=0), 10 ps, initial velocities
#   drawn by xtb itself (xtb 6.5.1 has no seed keyword: the shipped trajectory, not this
#   script, is the reference; a rerun gives a statistically equivalent, different one).
# Stage 2 (production, NVE): restart from stage 1's mdrestart (positions + velocities),
#   no thermostat (nvt=false), time step 0.5 fs, 20 ps, a frame every 2 fs (dump=2.0) ->
#   10000 frames written to xtb.trj (positions in Angstrom).
# Stage 3: `xtb --ohess` at nma_start.xyz: tight optimisation + numerical Hessian ->
#   harmonic wavenumbers (cm^-1) and IR intensities (km/mol) in the file vibspectrum.
# Output (scratch, not shipped): data/make/work/nma_ir/{nvt,nve,ohess}/. Resumable: a
#   stage whose xtbmdok (MD) or vibspectrum (ohess) exists is skipped.
# Next: python3 data/make/nma_ir_collect.py  (rounds positions, writes data/nma_ir/...)
set -e
here=$(cd "$(dirname "$0")" && pwd)
w="$here/work/nma_ir"
mkdir -p "$w"
run_xtb() { OMP_NUM_THREADS=1 OMP_STACKSIZE=256M nice -n 19 xtb "$@"; }

if [ ! -f "$w/nvt/xtbmdok" ]; then
    rm -rf "$w/nvt"; mkdir -p "$w/nvt"
    cp "$here/nma_start.xyz" "$w/nvt/nma.xyz"
    cat > "$w/nvt/md.inp" <<EOT
\$md
   temp=300.0
   time=10.0
   dump=50.0
   step=0.5
   hmass=1
   shake=0
   velo=false
   nvt=true
\$end
EOT
    (cd "$w/nvt" && run_xtb nma.xyz --gfn 2 --input md.inp --md > md.out 2>&1)
    echo "nma_ir_md: NVT equilibration done"
fi

if [ ! -f "$w/nve/xtbmdok" ]; then
    rm -rf "$w/nve"; mkdir -p "$w/nve"
    cp "$here/nma_start.xyz" "$w/nve/nma.xyz"
    cp "$w/nvt/mdrestart" "$w/nve/mdrestart"
    cat > "$w/nve/md.inp" <<EOT
\$md
   temp=300.0
   time=20.0
   dump=2.0
   step=0.5
   hmass=1
   shake=0
   velo=false
   nvt=false
   restart=true
\$end
EOT
    (cd "$w/nve" && run_xtb nma.xyz --gfn 2 --input md.inp --md > md.out 2>&1)
    echo "nma_ir_md: NVE production done"
fi

if [ ! -f "$w/ohess/vibspectrum" ]; then
    rm -rf "$w/ohess"; mkdir -p "$w/ohess"
    cp "$here/nma_start.xyz" "$w/ohess/nma.xyz"
    (cd "$w/ohess" && run_xtb nma.xyz --gfn 2 --ohess > ohess.out 2>&1)
    echo "nma_ir_md: ohess done"
fi
