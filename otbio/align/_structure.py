"""Reading protein structures (PDB / mmCIF, gzip too) with gemmi, and residue selections."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def read_structure(spec: str | os.PathLike, *, model: int = 1) -> Structure:
    """Read the protein residues of a PDB or mmCIF file (gzip too), with an optional selection.

    Parameters
    ----------
    spec
        ``FILE``, ``FILE:CHAIN`` or ``FILE:CHAIN:10-55,80-95`` (several ranges make a
        discontiguous motif; an empty chain or ``*`` means every chain).
    model
        Model to read, 1-based (the first model of NMR or trajectory files by default).

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
    path, chain, ranges = parse_selection(spec)
    p = Path(path)
    if p.is_dir():
        msg = f"expected a structure file, got a directory: {p}"
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
    if not 1 <= model <= len(st):
        msg = f"{p} has {len(st)} model(s); --model must lie between 1 and {len(st)}"
        raise InputError(msg)
    mdl = st[model - 1]
    chains, nums, icodes, names, cas = [], [], [], [], []
    chain_names = set()
    for ch in mdl:
        chain_names.add(ch.name)
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
            if ca.element.name != "C" and not has_n:
                continue  # a calcium ion, or an element column read as Ca without backbone
            if name not in ONE_LETTER and not has_n:
                continue  # a ligand with a carbon called CA, not an amino acid
            ic = res.seqid.icode.strip()
            num = int(res.seqid.num)
            if ranges is not None and not _in_ranges(num, ic.upper(), ranges):
                continue
            chains.append(ch.name.strip())
            nums.append(num)
            icodes.append(ic)
            names.append(name)
            cas.append(ca.pos.tolist())
    if chain is not None and chain not in chain_names:
        have = ", ".join(sorted(repr(c) for c in chain_names)) or "none"
        msg = f"chain '{chain}' not found in {p} (chains: {have}); fix the selection '{spec}'"
        raise InputError(msg)
    if not cas:
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
    return Structure(
        name=Path(spec).name if ranges is None and chain is None else spec.split(os.sep)[-1],
        path=str(p),
        chain=np.array(chains, dtype=object),
        resnum=np.array(nums, dtype=np.int64),
        icode=np.array(icodes, dtype=object),
        resname=np.array(names, dtype=object),
        ca=np.ascontiguousarray(np.array(cas, dtype=np.float64)),
        selection=spec[len(path) :].lstrip(":"),
        model=model,
    )
