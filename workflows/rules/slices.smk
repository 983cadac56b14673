# Slice series: register every section into the frame of one reference section, then stack
# the sections into one AnnData with 3-D coordinates.
#
# mode "neighbour": section i is registered onto its neighbour towards the reference section,
# as that neighbour already sits in the common frame (its obsm['spatial_registered']); the
# maps compose along the chain, one registration per job, the chain runs in order.
# mode "reference": every section is registered directly onto the reference section (all
# jobs run at once).

import re

SL = config["slices"]
SL_DIR = f"{OUT}/slices"
LOG_DIR = f"{OUT}/logs"

for _i, _f in enumerate(SL["sections"]):
    check_file(_f, f"slices.sections[{_i}]")

_n = len(SL["sections"])
if SL["names"] is None:
    SL_NAMES = [os.path.basename(f).split(".")[0] for f in SL["sections"]]
else:
    SL_NAMES = [str(v) for v in SL["names"]]
    if len(SL_NAMES) != _n:
        msg = f"config key 'slices.names' has {len(SL_NAMES)} names for {_n} sections"
        raise ConfigError(msg)
if len(set(SL_NAMES)) != _n:
    msg = "config key 'slices.names': section names must be unique (set them explicitly)"
    raise ConfigError(msg)
if SL["reference"] >= _n:
    msg = f"config key 'slices.reference' must be < {_n}, the number of sections (got {SL['reference']})"
    raise ConfigError(msg)
if isinstance(SL["z"], list):
    if len(SL["z"]) != _n:
        msg = f"config key 'slices.z' has {len(SL['z'])} values for {_n} sections"
        raise ConfigError(msg)
    SL_Z = [float(v) for v in SL["z"]]
else:
    SL_Z = [i * float(SL["z"]) for i in range(_n)]

SL_REF = SL["reference"]
SL_INDEX = {name: i for i, name in enumerate(SL_NAMES)}
SL_MOVING = [name for i, name in enumerate(SL_NAMES) if i != SL_REF]
FINAL = [f"{SL_DIR}/stack.h5ad"]


wildcard_constraints:
    name="|".join(re.escape(n) for n in SL_MOVING),



def _placed(i):
    """The file holding section i in the common frame, and its coordinate key there."""
    if i == SL_REF:
        return SL["sections"][i], SL["spatial_key"]
    return f"{SL_DIR}/registered/{SL_NAMES[i]}.h5ad", "spatial_registered"


def _target(wildcards):
    i = SL_INDEX[wildcards.name]
    if SL["mode"] == "reference":
        return _placed(SL_REF)
    return _placed(i - 1 if i > SL_REF else i + 1)


def _target_opt(wildcards):
    """--target-spatial-key when the target's frame coordinates are not under spatial_key."""
    key = _target(wildcards)[1]
    return "" if key == SL["spatial_key"] else f"--target-spatial-key {q(key)}"


rule slices_register:
    input:
        source=lambda wc: SL["sections"][SL_INDEX[wc.name]],
        target=lambda wc: _target(wc)[0],
    output:
        f"{SL_DIR}/registered/{{name}}.h5ad",
    log:
        f"{LOG_DIR}/slices_register/{{name}}.log",
    params:
        target_opt=_target_opt,
        spatial_key=SL["spatial_key"],
        extra=SL["register"]["extra"],
    threads: res("slices_register", "threads")
    resources:
        mem_mb=res("slices_register", "mem_mb"),
        runtime=res("slices_register", "runtime"),
    shell:
        otbio_cmd()
        + " -v register {input.source:q} {input.target:q} --spatial-key {params.spatial_key:q}"
        " {params.target_opt} {params.extra} -o {output:q} > {log:q} 2>&1"


rule slices_stack:
    input:
        [_placed(i)[0] for i in range(_n)],
    output:
        f"{SL_DIR}/stack.h5ad",
    log:
        f"{LOG_DIR}/slices_stack.log",
    params:
        coord_keys=",".join(_placed(i)[1] for i in range(_n)),
        z=",".join(f"{v:g}" for v in SL_Z),
        names=",".join(SL_NAMES),
    threads: res("slices_stack", "threads")
    resources:
        mem_mb=res("slices_stack", "mem_mb"),
        runtime=res("slices_stack", "runtime"),
    shell:
        otbio_cmd()
        + " -v stack {input:q} --spatial-keys {params.coord_keys:q} --z {params.z:q}"
        " --names {params.names:q} -o {output:q} > {log:q} 2>&1"
