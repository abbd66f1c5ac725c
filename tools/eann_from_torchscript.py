#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""eann_from_torchscript.py - convert a published TorchScript EANN model (.pt)
into the plain-text format EANN_TEXT_V1 that `eann` and eann.c read.

The published NMA models (Zhang et al., J. Phys. Chem. B 124, 7284 (2020);
repository zylustc/Learning-Dipole-Moments-and-Polarizabilities, files
potentials/.../EANN_*_DOUBLE.pt) are TorchScript modules. This script reads
one with torch.jit.load (Debian's python3-torch; no code of that repository is
used) and writes every number with %.17g, so the text holds exactly the same
IEEE-754 doubles (format: ../shared/eann_nma_published/FORMAT.md, "FORMAT.md").

    /usr/bin/python3 tools/eann_from_torchscript.py EANN_DM_DOUBLE.pt -o dm.txt
    build/eann predict -m dm.txt molecules.xyz -o out.xyz

What is read from the module (FORMAT.md sect. 2-3):
  kind          polarizability if it has nnmod1 and nnmod2 (three nets: grad_sym,
                grad_outer, trace); else tdm if the net has 3 outputs, dipole if 1
  species       the order of nnmod.elemental_nets (O H C N for the NMA models)
  cutoff        buffer density.cutoff (angstrom; must equal neigh_list.cutoff)
  min_distance  the constant in the neighbour list's `distances > dmin` test
  nipsin, index_para   buffers density.nipsin, density.index_para
  rs, inta, params     parameters density.* [S][K]
  nets          Sequential(Linear, LayerNorm, Relu_like, ..., Linear) per species;
                LayerNorm epsilon from its code, Relu_like = alpha * silu(beta * x)
  initpot       buffer nnmod*.initpot (unused by the forward pass; kept)
Not in the module: the masses for the centre-of-mass shift (the published code
takes them as an input). Default: the published README's values for O, H, C, N
(15.999 1.008 12.001 14.007; C = 12.001 as published); other species need
--masses.

Options:
  -o OUT.txt          output (written atomically; never the input file)
  --masses m0,m1,...  masses (amu) in the model's species order
  --comment TEXT      a header comment line (repeatable; '# ' is prepended
                      unless TEXT starts with '#'); default: two lines naming
                      this converter and the input file
Exit status 0 on success; 1 with one line on stderr naming the file otherwise.
"""

import math
import os
import re
import sys

PUBLISHED_MASSES = {"O": 15.999, "H": 1.008, "C": 12.001, "N": 14.007}
ROLES = {"dipole": ["charge"], "tdm": ["tdm3"],
         "polarizability": ["grad_sym", "grad_outer", "trace"]}


class ConvertError(Exception):
    pass


def g17(x):
    """A real as C's printf("%.17g") writes it (FORMAT.md sect. 1)."""
    x = float(x)
    if not math.isfinite(x):
        raise ConvertError("a parameter is not a finite number (%r)" % x)
    return "%.17g" % x


def values(t):
    """A tensor's numbers, row-major, as Python floats (float64, exact)."""
    import torch
    if t.dtype != torch.float64:
        raise ConvertError("parameters are %s, not float64 (use the *_DOUBLE.pt model)" % t.dtype)
    return [float(v) for v in t.detach().contiguous().view(-1).tolist()]


def layernorm_eps(ln):
    """epsilon of a scripted LayerNorm, from its code: layer_norm(input, [n], w, b, EPS, )."""
    m = re.search(r"layer_norm\b.*?\(input,\s*\[[^\]]*\],\s*weight,\s*bias,\s*([^,\s)]+)", ln.code, re.S)
    if not m:
        m = re.search(r"_0\(input,\s*\[[^\]]*\],\s*weight,\s*bias,\s*([^,\s)]+)", ln.code)
    if not m:
        raise ConvertError("cannot find the LayerNorm epsilon in its code")
    return float(m.group(1))


def min_distance(module):
    """dmin of the neighbour list: the constant of torch.gt(distances, DMIN)."""
    m = re.search(r"torch\.gt\(distances,\s*([0-9.eE+-]+)\)", module.neigh_list.code)
    if not m:
        raise ConvertError("cannot find the minimum pair distance in neigh_list's code")
    return float(m.group(1))


def read_net(nnmod, species):
    """One element-wise network set: per species the list of layers
    [(W [out][in], b, ln_gamma, ln_beta, alpha, beta), ..., (W, b)]."""
    nets = dict(nnmod.elemental_nets.named_children())
    if list(nets) != species:
        raise ConvertError("networks for species %s, expected %s" % (list(nets), species))
    sizes = None
    eps = None
    per_species = []
    for sp in species:
        mods = list(nets[sp].named_children())
        names = [m.original_name for _, m in mods]
        if len(mods) < 1 or (len(mods) - 1) % 3 != 0 or names[-1] != "Linear" or any(
                names[3 * h:3 * h + 3] != ["Linear", "LayerNorm", "Relu_like"]
                for h in range((len(mods) - 1) // 3)):
            raise ConvertError("net %s: layers %s, expected (Linear, LayerNorm, Relu_like)* Linear"
                               % (sp, names))
        nhidden = (len(mods) - 1) // 3
        layers = []
        sz = []
        for h in range(nhidden):
            lin, ln, act = mods[3 * h][1], mods[3 * h + 1][1], mods[3 * h + 2][1]
            if "silu" not in act.code or "alpha" not in act.code or "beta" not in act.code:
                raise ConvertError("net %s: activation %d is not alpha*silu(beta*x)" % (sp, h))
            e = layernorm_eps(ln)
            if eps is None:
                eps = e
            elif e != eps:
                raise ConvertError("net %s: LayerNorm epsilon %r differs from %r" % (sp, e, eps))
            w = lin.weight
            if h == 0:
                sz.append(int(w.shape[1]))
            sz.append(int(w.shape[0]))
            layers.append((w, lin.bias, ln.weight, ln.bias, act.alpha, act.beta))
        last = mods[-1][1]
        if nhidden == 0:
            sz.append(int(last.weight.shape[1]))
        sz.append(int(last.weight.shape[0]))
        layers.append((last.weight, last.bias))
        if sizes is None:
            sizes = sz
        elif sz != sizes:
            raise ConvertError("net %s: sizes %s differ from %s" % (sp, sz, sizes))
        per_species.append(layers)
    initpot = values(nnmod.initpot)[0] if hasattr(nnmod, "initpot") else 0.0
    return {"sizes": sizes, "eps": eps, "layers": per_species, "initpot": initpot}


def convert(path, masses=None, comments=None):
    """Read a TorchScript EANN model; return the EANN_TEXT_V1 text."""
    import torch
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds; one line is enough
        raise ConvertError("cannot load as TorchScript: %s" % str(e).strip().splitlines()[0])
    children = dict(module.named_children())
    for need in ("density", "nnmod", "neigh_list"):
        if need not in children:
            raise ConvertError("not an EANN model: no '%s' submodule (has %s)" % (need, list(children)))
    species = list(dict(module.nnmod.elemental_nets.named_children()))
    if "nnmod1" in children and "nnmod2" in children:
        kind = "polarizability"
        nnmods = [module.nnmod, module.nnmod1, module.nnmod2]
    else:
        nnmods = [module.nnmod]
        nout = int(module.nnmod.outputneuron)
        kind = {1: "dipole", 3: "tdm"}.get(nout)
        if kind is None:
            raise ConvertError("%d outputs per atom: neither dipole (1) nor tdm (3)" % nout)
        if kind == "tdm" and "cross" not in module.code:
            raise ConvertError("3 outputs per atom but no cross product in forward(): not a tdm model")
    nets = [read_net(nm, species) for nm in nnmods]

    d = module.density
    cutoff = values(d.cutoff)[0]
    if hasattr(module.neigh_list, "cutoff") and float(module.neigh_list.cutoff) != cutoff:
        raise ConvertError("density cutoff %r differs from neighbour-list cutoff %r"
                           % (cutoff, float(module.neigh_list.cutoff)))
    nipsin = int(d.nipsin.view(-1)[0])
    index_para = [int(v) for v in d.index_para.view(-1).tolist()]
    rs, inta, params = d.rs, d.inta, d.params
    S, K = int(rs.shape[0]), int(rs.shape[1])
    if S != len(species) or tuple(inta.shape) != (S, K) or tuple(params.shape) != (S, K):
        raise ConvertError("rs/inta/params shapes %s %s %s do not match %d species"
                           % (tuple(rs.shape), tuple(inta.shape), tuple(params.shape), len(species)))
    norbital = sum(3 ** L for L in range(nipsin))
    if len(index_para) != norbital:
        raise ConvertError("index_para has %d entries, expected %d for nipsin %d"
                           % (len(index_para), norbital, nipsin))
    ndensity = nipsin * K
    for t, n in enumerate(nets):
        if n["sizes"][0] != ndensity:
            raise ConvertError("net %d takes %d inputs, the descriptor has %d" % (t, n["sizes"][0], ndensity))
    if masses is None:
        missing = [s for s in species if s not in PUBLISHED_MASSES]
        if missing:
            raise ConvertError("no default mass for %s: give --masses" % ",".join(missing))
        masses = [PUBLISHED_MASSES[s] for s in species]
    if len(masses) != S:
        raise ConvertError("--masses: %d values for %d species" % (len(masses), S))
    if comments is None:
        comments = ["# plain-text EANN model (EANN_TEXT_V1); converted by tools/eann_from_torchscript.py",
                    "# source: " + os.path.basename(path)]

    out = ["EANN_TEXT_V1"]
    out += comments
    out.append("kind " + kind)
    out.append("nspecies %d" % S)
    out.append("species " + " ".join(species))
    out.append("masses " + " ".join(g17(m) for m in masses))
    out.append("cutoff " + g17(cutoff))
    out.append("min_distance " + g17(min_distance(module)))
    out.append("nipsin %d" % nipsin)
    out.append("nwave %d" % K)
    out.append("norbital %d" % norbital)
    out.append("index_para " + " ".join(str(v) for v in index_para))
    out.append("ndensity %d" % ndensity)
    out.append("activation alpha_silu_beta")
    out.append("nnets %d" % len(nets))
    for t, n in enumerate(nets):
        out.append("net %d role %s nhidden %d sizes %s layernorm_eps %s initpot %s"
                   % (t, ROLES[kind][t], len(n["sizes"]) - 2, " ".join(str(s) for s in n["sizes"]),
                      g17(n["eps"]), g17(n["initpot"])))
    arrays = [("rs", [S, K], rs), ("inta", [S, K], inta), ("params", [S, K], params)]
    for t, n in enumerate(nets):
        H = len(n["sizes"]) - 2
        for s, sp in enumerate(species):
            layers = n["layers"][s]
            for h in range(H):
                w, b, g, bb, al, be = layers[h]
                pre = "net%d.%s." % (t, sp)
                nout = n["sizes"][h + 1]
                arrays += [(pre + "linear%d.weight" % h, [nout, n["sizes"][h]], w),
                           (pre + "linear%d.bias" % h, [nout], b),
                           (pre + "layernorm%d.weight" % h, [nout], g),
                           (pre + "layernorm%d.bias" % h, [nout], bb),
                           (pre + "act%d.alpha" % h, [nout], al),
                           (pre + "act%d.beta" % h, [nout], be)]
            w, b = layers[H]
            arrays += [("net%d.%s.linear%d.weight" % (t, sp, H), [n["sizes"][H + 1], n["sizes"][H]], w),
                       ("net%d.%s.linear%d.bias" % (t, sp, H), [n["sizes"][H + 1]], b)]
    out.append("narrays %d" % len(arrays))
    for name, shape, tensor in arrays:
        v = values(tensor)
        if len(v) != math.prod(shape):
            raise ConvertError("array %s: %d values, expected shape %s" % (name, len(v), shape))
        out.append("array %s %d %s" % (name, len(shape), " ".join(str(x) for x in shape)))
        out += [g17(x) for x in v]
    out.append("end")
    return "\n".join(out) + "\n"


def write_atomic(path, text):
    """Write to PATH.tmp.PID, then rename over PATH (never a half-written file)."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv):
    usage = "usage: eann_from_torchscript.py MODEL.pt -o OUT.txt [--masses m0,m1,...] [--comment TEXT]..."
    src = out = None
    masses = None
    comments = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(usage)
            print(__doc__.split("Options:")[1].split("Exit status")[0].rstrip())
            return 0
        if a in ("-o", "--masses", "--comment"):
            if i + 1 >= len(argv):
                sys.stderr.write("eann_from_torchscript: %s needs a value\n" % a)
                return 1
            v = argv[i + 1]
            i += 2
            if a == "-o":
                out = v
            elif a == "--masses":
                try:
                    masses = [float(x) for x in v.split(",")]
                except ValueError:
                    sys.stderr.write("eann_from_torchscript: --masses: '%s' is not a list of numbers\n" % v)
                    return 1
                if not all(math.isfinite(m) and m > 0 for m in masses):
                    sys.stderr.write("eann_from_torchscript: --masses must be positive numbers\n")
                    return 1
            else:
                comments = (comments or []) + [v if v.startswith("#") else "# " + v]
            continue
        if a.startswith("-"):
            sys.stderr.write("eann_from_torchscript: unknown option '%s'\n%s\n" % (a, usage))
            return 1
        if src is not None:
            sys.stderr.write("eann_from_torchscript: more than one input file\n")
            return 1
        src = a
        i += 1
    if src is None or out is None:
        sys.stderr.write(usage + "\n")
        return 1
    if os.path.exists(out) and os.path.exists(src) and os.path.samefile(src, out):
        sys.stderr.write("eann_from_torchscript: %s: refusing to overwrite the input\n" % out)
        return 1
    if not os.path.isfile(src):
        sys.stderr.write("eann_from_torchscript: %s: no such file\n" % src)
        return 1
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.stderr.write("eann_from_torchscript: needs PyTorch (Debian: apt-get install python3-torch)\n")
        return 1
    try:
        text = convert(src, masses, comments)
    except ConvertError as e:
        sys.stderr.write("eann_from_torchscript: %s: %s\n" % (src, e))
        return 1
    try:
        write_atomic(out, text)
    except OSError as e:
        sys.stderr.write("eann_from_torchscript: %s: %s\n" % (out, e.strerror or e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
