"""Reading protein structures (PDB / mmCIF, gzip too) with gemmi, and residue selections."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from otbio._errors import InputError

__all__ = ["Structure", "parse_selection", "read_structure"]

#: Non-standard residue names mapped to their parent amino acid (CHARMM, AMBER, PDB).
RESIDUE_ALIASES: dict[str, str] = {
    "HSD": "HIS",
    "HSE": "HIS",
    "HSP": "HIS",
    "HID": "HIS",
    "HIE": "HIS",
    "HIP": "HIS",
    "HISD": "HIS",
    "HISE": "HIS",
    "HISP": "HIS",
    "MSE": "MET",
    "CYX": "CYS",
    "CYM": "CYS",
    "CSO": "CYS",
    "ASH": "ASP",
    "GLH": "GLU",
    "LYN": "LYS",
    "SEP": "SER",
    "TPO": "THR",
    "PTR": "TYR",
}

ONE_LETTER: dict[str, str] = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E",
    "GLY": "G", "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F",
    "PRO": "P", "SER": "S", "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V",
}  # fmt: skip

#: Fewest protein residues a structure may have (the features look 4 residues either way).
MIN_RESIDUES = 5

_MODEL = re.compile(r"^(.+?)@(\d+)((?::.*)?)$")
_RANGE = re.compile(r"^\s*(-?\d+)([A-Za-z]?)\s*(?:-\s*(-?\d+)([A-Za-z]?))?\s*$")


@dataclass(frozen=True, eq=False)
class Structure:
    """The protein residues of one structure (or of a selection of it).

    Attributes
    ----------
    name
        A label: the file name plus the selection, as given.
    path
        The file it was read from ("" for structures built in memory).
    chain, resnum, icode, resname
        Per residue (L,): chain ID ("" when the file has none), sequence number, insertion
        code ("" when none) and the residue name after mapping (HSD -> HIS, MSE -> MET).
    ca
        CA coordinates (L, 3), float64.
    selection
        The selection string that chose these residues ("" for all).
    model
        The model number read (1-based).
    """

    name: str
    path: str
    chain: np.ndarray
    resnum: np.ndarray
    icode: np.ndarray
    resname: np.ndarray
    ca: np.ndarray
    selection: str = ""
    model: int = 1
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.ca.shape[0])

    @property
    def sequence(self) -> str:
        """One-letter sequence ("X" for residues without a standard parent)."""
        return "".join(ONE_LETTER.get(r, "X") for r in self.resname)

    def subset(self, index: np.ndarray, *, name: str | None = None) -> Structure:
        """The residues at ``index`` (an integer array), as a new structure."""
        index = np.asarray(index, dtype=np.intp)
        return Structure(
            name=name or self.name,
            path=self.path,
            chain=self.chain[index],
            resnum=self.resnum[index],
            icode=self.icode[index],
            resname=self.resname[index],
            ca=np.ascontiguousarray(self.ca[index]),
            selection=self.selection,
            model=self.model,
        )

    def with_coordinates(self, ca: np.ndarray) -> Structure:
        """The same residues at new CA coordinates (L, 3)."""
        ca = np.ascontiguousarray(ca, dtype=np.float64)
        if ca.shape != self.ca.shape:
            msg = f"coordinates must have shape {self.ca.shape}, got {ca.shape}"
            raise InputError(msg)
        return Structure(
            self.name,
            self.path,
            self.chain,
            self.resnum,
            self.icode,
            self.resname,
            ca,
            self.selection,
            self.model,
        )

    def labels(self) -> list[str]:
        """Residue labels such as ``A:57`` or ``A:57B`` (``57`` when there is no chain ID)."""
        out = []
        for c, n, i in zip(self.chain, self.resnum, self.icode, strict=True):
            out.append(f"{c}:{n}{i}" if c else f"{n}{i}")
        return out


def _parse_ranges(text: str, spec: str) -> list[tuple[int, str, int, str]]:
    ranges = []
    for part in text.split(","):
        m = _RANGE.match(part)
        if m is None:
            msg = (
                f"cannot read residue range '{part}' in '{spec}'; "
                "write FILE:CHAIN:START-END[,START-END...], e.g. 1abc.pdb:A:10-55,80-95"
            )
            raise InputError(msg)
        s, si, e, ei = m.groups()
        if e is None:
            e, ei = s, si
        if int(e) < int(s):
            msg = f"residue range '{part}' in '{spec}' ends before it starts"
            raise InputError(msg)
        ranges.append((int(s), si.upper(), int(e), ei.upper()))
    return ranges


def split_model(spec: str) -> tuple[str, int | None]:
    """Split a per-structure model number off a spec: ``FILE@2[:CHAIN[:RANGES]]`` ->
    (``FILE[:CHAIN[:RANGES]]``, 2); (spec, None) when there is none (or the whole spec is
    an existing file whose name contains ``@``)."""
    spec = str(spec)
    if os.path.exists(spec):
        return spec, None
    m = _MODEL.match(spec)
    if m is None or not os.path.exists(m.group(1)):
        return spec, None
    return m.group(1) + m.group(3), int(m.group(2))


def parse_selection(spec: str) -> tuple[str, str | None, list | None]:
    """Split ``FILE[:CHAIN[:RANGES]]`` into the path, the chain and the residue ranges.

    ``CHAIN`` may be empty or ``*`` for every chain (files without chain IDs); ``RANGES`` is
    a comma-separated list of ``START-END`` (inclusive, insertion codes allowed: ``52A-60``)
    or single residue numbers.
    """
    spec = str(spec)
    if os.path.exists(spec):
        return spec, None, None
    parts = spec.split(":")
    # allow drive letters / colons in the path: take the longest prefix that exists
    for k in range(len(parts) - 1, 0, -1):
        path = ":".join(parts[:k])
        rest = parts[k:]
        if os.path.exists(path) and len(rest) <= 2:
            chain = rest[0].strip()
            chain = None if chain in ("", "*") else chain
            ranges = _parse_ranges(rest[1], spec) if len(rest) == 2 and rest[1].strip() else None
            return path, chain, ranges
    if len(parts) > 1 and not os.path.exists(parts[0]):
        msg = f"file not found: {parts[0]} (from '{spec}')"
    else:
        msg = f"file not found: {spec}"
    raise InputError(msg)


def _in_ranges(num: int, icode: str, ranges: list) -> bool:
    for s, si, e, ei in ranges:
        lo = (s, si)
        hi = (e, ei or "~")
        if lo <= (num, icode) <= hi:
            return True
    return False


def _keep_residue(name: str, is_carbon: bool, has_n: bool) -> bool:
    """A residue with a CA atom is an amino acid unless the CA is not a carbon (a calcium
    ion, or an element column read as Ca) or the name is unknown, both without backbone N."""
    return has_n or (is_carbon and name in ONE_LETTER)


def _pack(chains, nums, icodes, names, cas):
    return (
        np.array(chains, dtype=object),
        np.array(nums, dtype=np.int64),
        np.array(icodes, dtype=object),
        np.array(names, dtype=object),
        np.ascontiguousarray(np.array(cas, dtype=np.float64).reshape(-1, 3)),
    )


def _residues_loop(mdl, chain: str | None):
    """Protein residues of one gemmi model, residue by residue (the reference route)."""
    chains, nums, icodes, names, cas = [], [], [], [], []
    for ch in mdl:
        if chain is not None and ch.name != chain:
            continue
        for res in ch:
            ca = None
            for atom in res:
                if atom.name == "CA":
                    ca = atom  # the first alternate location comes first
                    break
            if ca is None:
                continue
            name = res.name.upper()
            name = RESIDUE_ALIASES.get(name, name)
            has_n = res.find_atom("N", "*") is not None
            if not _keep_residue(name, ca.element.name == "C", has_n):
                continue
            chains.append(ch.name.strip())
            nums.append(int(res.seqid.num))
            icodes.append(res.seqid.icode.strip())
            names.append(name)
            cas.append(ca.pos.tolist())
    return _pack(chains, nums, icodes, names, cas)


def _codes(arr: np.ndarray) -> np.ndarray:
    """(N, 8) int8 characters as one int64 per row (fast equality tests)."""
    return np.ascontiguousarray(arr).view(np.int64).reshape(-1)


def _code(name: str) -> int:
    return int(np.frombuffer(name.encode().ljust(8, b"\0"), dtype=np.int64)[0])


def _decode(code: int) -> str:
    return np.array([code], dtype=np.int64).view("S8")[0].decode()


_NAMES: dict[int, tuple[str, bool]] = {}


def _name_of(code: int) -> tuple[str, bool]:
    """Residue name of an 8-character code (upper case, aliases mapped) and whether it is a
    standard amino acid; cached."""
    name = _decode(code).upper()
    name = RESIDUE_ALIASES.get(name, name)
    out = (name, name in ONE_LETTER)
    if len(_NAMES) < 100_000:
        _NAMES[code] = out
    return out


_CA, _N = _code("CA"), _code("N")


@njit(cache=True, nogil=True)
def _scan_atoms(model_num, mnum, chains, chain, use_chain, rn, ic, nm, an, ca_code, n_code):
    """One pass over gemmi's flat atom table: for each residue of model ``mnum`` (and chain
    ``chain`` when ``use_chain``), the index of its first CA atom and whether it has an N.

    A residue is a run of atoms with the same chain, number, insertion code and name.
    """
    n_atoms = model_num.shape[0]
    first_ca = np.empty(n_atoms, dtype=np.int64)
    has_n = np.empty(n_atoms, dtype=np.bool_)
    k = 0
    started = False
    cur_ca = -1
    cur_n = False
    pch = pn = pic = pnm = 0
    for t in range(n_atoms):
        if model_num[t] != mnum or (use_chain and chains[t] != chain):
            continue
        if not started or chains[t] != pch or rn[t] != pn or ic[t] != pic or nm[t] != pnm:
            if cur_ca >= 0:
                first_ca[k] = cur_ca
                has_n[k] = cur_n
                k += 1
            started = True
            cur_ca = -1
            cur_n = False
            pch, pn, pic, pnm = chains[t], rn[t], ic[t], nm[t]
        if an[t] == ca_code and cur_ca < 0:
            cur_ca = t  # the first alternate location comes first
        elif an[t] == n_code:
            cur_n = True
    if cur_ca >= 0:
        first_ca[k] = cur_ca
        has_n[k] = cur_n
        k += 1
    return first_ca[:k], has_n[:k]


def _residues_flat(st, index: int, chain: str | None):
    """The same as :func:`_residues_loop` from gemmi's flat (NumPy) view of the atoms, about
    ten times faster; None when the flat view cannot tell residues or models apart exactly
    (a chain or residue name of 8 characters or more, repeated model numbers, non-ASCII
    names)."""
    import gemmi

    mdl = st[index]
    if [m.num for m in st].count(mdl.num) != 1 or any(len(ch.name) >= 8 for ch in mdl):
        return None
    if chain is not None and (len(chain.encode()) >= 8 or not chain.isascii()):
        return None
    fs = gemmi.FlatStructure(st)
    fs.strings_as_numbers = True
    ch = _codes(fs.chain_ids)
    nm = _codes(fs.residue_names)
    ca, has_n = _scan_atoms(
        fs.model_num, mdl.num, ch, _code(chain) if chain is not None else 0, chain is not None,
        fs.resnums, fs.icodes, nm, _codes(fs.atom_names), _CA, _N,
    )  # fmt: skip
    if ca.size == 0:
        return _pack([], [], [], [], [])
    try:
        named = [_NAMES.get(c) or _name_of(c) for c in nm[ca].tolist()]
        chs = ch[ca]
        if (chs == chs[0]).all():
            chains = np.full(ca.size, _decode(chs[0]).strip(), dtype=object)
        else:
            chains = np.array([_decode(c).strip() for c in chs.tolist()], dtype=object)
    except UnicodeDecodeError:
        return None
    names, known = zip(*named, strict=True)
    if any(len(x) >= 8 for x in set(names)):
        return None
    ok = has_n | ((fs.elements[ca] == 6) & np.array(known, dtype=bool))  # see _keep_residue
    sel = ca[ok]
    ic = fs.icodes[sel]
    blank = (ic == 32) | (ic == 0)
    icodes = np.full(sel.size, "", dtype=object)
    if not blank.all():
        icodes[~blank] = [chr(c).strip() for c in ic[~blank].tolist()]
    return (
        chains[ok],
        fs.resnums[sel].astype(np.int64),
        icodes,
        np.array(names, dtype=object)[ok],
        np.ascontiguousarray(fs.pos[sel], dtype=np.float64),
    )


def read_structure(spec: str | os.PathLike, *, pdb_model: int = 1) -> Structure:
    """Read the protein residues of a PDB or mmCIF file (gzip too), with an optional selection.

    Parameters
    ----------
    spec
        ``FILE``, ``FILE:CHAIN`` or ``FILE:CHAIN:10-55,80-95`` (several ranges make a
        discontiguous motif; an empty chain or ``*`` means every chain). ``FILE@3``
        (``FILE@3:A:10-55``) reads model 3 of that file, whatever ``pdb_model`` says: so a
        motif of model 1 can be aligned onto every model of an NMR ensemble.
    pdb_model
        Model to read, 1-based (the first model of NMR or trajectory files by default),
        unless the spec names one.

    Returns
    -------
    Structure
        Residues with a CA atom (carbon), in file order. Alternate locations: the first is
        kept. Residue names HSD/HSE/HSP/HID/HIE -> HIS, MSE -> MET (see ``RESIDUE_ALIASES``).

    Raises
    ------
    InputError
        Missing or unreadable file, a model that does not exist, a selection that matches no
        residue, or fewer than 5 protein residues.
    """
    import gemmi

    spec = str(spec)
    sel, spec_model = split_model(spec)
    if spec_model is not None:
        pdb_model = spec_model
    path, chain, ranges = parse_selection(sel)
    p = Path(path)
    if os.path.isdir(path):
        msg = (
            f"expected a structure file, got a directory: {p}; to search every structure in "
            f"it, pass it with --targets {p}"
        )
        raise InputError(msg)
    try:
        st = gemmi.read_structure(str(p), merge_chain_parts=True)
    except Exception as exc:  # gemmi raises RuntimeError/ValueError for bad files
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        msg = f"cannot read {p} as PDB or mmCIF: {text}"
        raise InputError(msg) from exc
    if len(st) == 0:
        msg = f"{p} contains no atoms; is it a PDB or mmCIF file?"
        raise InputError(msg)
    if not 1 <= pdb_model <= len(st):
        msg = (
            f"{p} has {len(st)} model(s); the model (pdb_model or FILE@N) must lie between "
            f"1 and {len(st)}, got {pdb_model}"
        )
        raise InputError(msg)
    mdl = st[pdb_model - 1]
    found = _residues_flat(st, pdb_model - 1, chain)
    if found is None:  # unusual files (long names, repeated model numbers): residue by residue
        found = _residues_loop(mdl, chain)
    chains, nums, icodes, names, cas = found
    if ranges is not None and len(nums):
        keep = np.array(
            [_in_ranges(int(n), ic.upper(), ranges) for n, ic in zip(nums, icodes, strict=True)],
            dtype=bool,
        )
        chains, nums, icodes, names, cas = (
            chains[keep], nums[keep], icodes[keep], names[keep], cas[keep]
        )  # fmt: skip
    chain_names = {ch.name for ch in mdl} if chain is not None else set()
    if chain is not None and chain not in chain_names:
        have = ", ".join(sorted(repr(c) if c else "one unnamed chain" for c in chain_names))
        msg = f"chain '{chain}' not found in {p} (chains: {have or 'none'}); "
        if re.fullmatch(r"-?\d+[A-Za-z]?(-\d+[A-Za-z]?)?(,-?\d+[A-Za-z]?(-\d+[A-Za-z]?)?)*", chain):
            # FILE:122-159 reads '122-159' as a chain: residue ranges go after two colons
            msg += f"for residues {chain} of every chain write '{path}::{chain}'"
        else:
            msg += f"fix the selection '{spec}'"
        raise InputError(msg)
    if len(cas) == 0:
        if chain is None and ranges is None:
            msg = f"{p} has no protein residues (no residue with a CA atom)"
        else:
            msg = f"selection '{spec}' matches no protein residue; check the chain and numbers"
        raise InputError(msg)
    if len(cas) < MIN_RESIDUES:
        msg = (
            f"{spec} has only {len(cas)} protein residue(s); "
            f"at least {MIN_RESIDUES} are needed to describe local geometry"
        )
        raise InputError(msg)
    step = np.linalg.norm(np.diff(np.asarray(cas, dtype=float), axis=0), axis=1)
    same = np.flatnonzero((step < 1e-3) & (chains[1:] == chains[:-1]))
    if same.size:  # local geometry (bond angles) is undefined for coinciding atoms
        i = int(same[0])
        msg = f"{spec}: CA atoms of residues {nums[i]} and {nums[i + 1]} coincide; fix the coordinates"
        raise InputError(msg)
    return Structure(
        name=os.path.basename(spec) if ranges is None and chain is None else spec.split(os.sep)[-1],
        path=str(p),
        chain=chains,
        resnum=nums,
        icode=icodes,
        resname=names,
        ca=cas,
        selection=sel[len(path) :].lstrip(":"),
        model=pdb_model,
    )
