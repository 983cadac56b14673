# LOT cohort: reference from a subsample -> embedding in shards -> concat -> classify and
# distances -> Markdown report with the figures.
#
# Shards: with one cells file (or an explicit `samples` list), a shard is a chunk of
# `shard_size` sample ids passed to `otbio embed --samples`; with one file per sample and no
# `samples`, a shard is a chunk of `shard_size` files.

LOT = config["lot"]
LOT_DIR = f"{OUT}/lot"
LOG_DIR = f"{OUT}/logs"

for _i, _f in enumerate(LOT["cells"]):
    check_file(_f, f"lot.cells[{_i}]")


def _read_sample_ids(path, key):
    """Sample ids of one .h5ad, read from its obs column `key` only (no cells are loaded)."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as fh:
        if key not in fh["obs"]:
            msg = f"config key 'lot.sample_key': obs column '{key}' not found in {path}"
            raise ConfigError(msg)
        col = read_elem(fh["obs"][key])
    return sorted({str(v) for v in col})


def _lot_samples():
    s = LOT["samples"]
    if len(LOT["cells"]) == 1 and not LOT.get("sample_key"):
        msg = "config key 'lot.sample_key' is missing; one cells file needs the obs column naming the samples"
        raise ConfigError(msg)
    if isinstance(s, list):
        ids = [str(v) for v in s]
    elif isinstance(s, str):
        check_file(s, "lot.samples")
        with open(s) as fh:
            ids = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
        if not ids:
            msg = f"config key 'lot.samples': file '{s}' lists no samples"
            raise ConfigError(msg)
    elif len(LOT["cells"]) == 1:
        return _read_sample_ids(LOT["cells"][0], LOT["sample_key"])
    else:
        return None  # one file per sample: shards are chunks of files
    if len(set(ids)) != len(ids):
        msg = "config key 'lot.samples' lists a sample twice"
        raise ConfigError(msg)
    if any("," in v for v in ids):
        msg = "config key 'lot.samples': sample ids must not contain ',' (otbio embed --samples splits on it)"
        raise ConfigError(msg)
    # cheap check against the files (obs column or file stems), so that no shard fails later
    if LOT.get("sample_key"):
        known = set()
        for f in LOT["cells"]:
            known.update(_read_sample_ids(f, LOT["sample_key"]))
        where = f"obs['{LOT['sample_key']}'] of {', '.join(LOT['cells'][:3])}"
    else:  # one file per sample, named by its file stem
        known = {os.path.basename(f).removesuffix(".h5ad") for f in LOT["cells"]}
        where = "the stems of the lot.cells files"
    missing = sorted(set(ids) - known)
    if missing:
        msg = f"config key 'lot.samples': {len(missing)} sample(s) not in {where}, e.g. '{missing[0]}'"
        raise ConfigError(msg)
    return ids


LOT_SAMPLES = _lot_samples()
if LOT_SAMPLES is None:
    LOT_SHARDS = chunks(list(LOT["cells"]), LOT["shard_size"])
else:
    LOT_SHARDS = chunks(LOT_SAMPLES, LOT["shard_size"])
if LOT_SAMPLES is not None and LOT["reference"]["subsample"] is not None:
    msg = (
        "config key 'lot.reference.subsample' needs one file per sample (lot.cells) and no "
        "lot.samples; with one cells file use lot.reference.cells_per_sample"
    )
    raise ConfigError(msg)
if CLASSIFY_CELLTYPE := (LOT["classify"] or {}).get("celltype_key"):
    if len(LOT["cells"]) != 1:
        msg = (
            "config key 'lot.classify.celltype_key' needs one cells file (otbio classify "
            "--cells reads one); set it to null with one file per sample"
        )
        raise ConfigError(msg)
LOT_SHARD_IDS = [f"{i:04d}" for i in range(len(LOT_SHARDS))]
CLASSIFY = LOT["classify"]
if CLASSIFY is not None and CLASSIFY.get("label"):  # the old key: one line, then as groupby
    print(
        "otbio workflow: warning: config lot.classify.label is deprecated and will be removed; "
        "use lot.classify.groupby (the name of otbio classify's option)",
        file=sys.stderr,
    )
    CLASSIFY["groupby"] = CLASSIFY.pop("label")

FINAL = [f"{LOT_DIR}/embedding.h5ad", f"{LOT_DIR}/distances.tsv", f"{LOT_DIR}/report.md"]
if CLASSIFY is not None:
    FINAL.append(f"{LOT_DIR}/classify/metrics.tsv")


def _common_opts():
    opts = f"--use-rep {q(LOT['use_rep'])}"
    if LOT.get("sample_key"):
        opts += f" --sample-key {q(LOT['sample_key'])}"
    return opts


def _reference_inputs():
    k = LOT["reference"]["subsample"]
    if LOT_SAMPLES is None:  # files: a subsample of files
        return spread(list(LOT["cells"]), k)
    return list(LOT["cells"])


def _reference_opts():
    r = LOT["reference"]
    opts = f"{_common_opts()} --method {r['method']} --size {int(r['size'])}"
    if r["cells_per_sample"] is not None:
        opts += f" --cells-per-sample {int(r['cells_per_sample'])}"
    if CLASSIFY is not None and CLASSIFY.get("celltype_key"):
        opts += f" --celltype-key {q(CLASSIFY['celltype_key'])}"
    return f"{opts} {r['extra']}".strip()


def _embed_opts(wildcards):
    e = LOT["embed"]
    opts = f"{_common_opts()} --solver {e['solver']}"
    if e["epsilon"] is not None:
        opts += f" --epsilon {e['epsilon']}"
    if LOT_SAMPLES is not None:
        opts += f" --samples {q(','.join(LOT_SHARDS[int(wildcards.shard)]))}"
    return f"{opts} {e['extra']}".strip()


def _embed_inputs(wildcards):
    if LOT_SAMPLES is None:
        return LOT_SHARDS[int(wildcards.shard)]
    return list(LOT["cells"])


# tiny shell steps run where snakemake runs, not as cluster jobs
localrules:
    lot_report,


rule lot_reference:
    input:
        _reference_inputs(),
    output:
        f"{LOT_DIR}/reference.h5ad",
    log:
        f"{LOG_DIR}/lot_reference.log",
    params:
        opts=_reference_opts(),
    threads: res("lot_reference", "threads")
    resources:
        mem_mb=res("lot_reference", "mem_mb"),
        runtime=res("lot_reference", "runtime"),
    shell:
        otbio_cmd() + " -v reference {input:q} {params.opts} -o {output:q} > {log:q} 2>&1"


rule lot_embed:
    input:
        cells=_embed_inputs,
        reference=f"{LOT_DIR}/reference.h5ad",
    output:
        f"{LOT_DIR}/shards/shard_{{shard}}.h5ad",
    log:
        f"{LOG_DIR}/lot_embed/shard_{{shard}}.log",
    params:
        opts=_embed_opts,
    threads: res("lot_embed", "threads")
    resources:
        mem_mb=res("lot_embed", "mem_mb"),
        runtime=res("lot_embed", "runtime"),
    shell:
        otbio_cmd()
        + " -v embed {input.cells:q} --reference {input.reference:q} {params.opts}"
        " -o {output:q} > {log:q} 2>&1"


rule lot_concat:
    input:
        expand(f"{LOT_DIR}/shards/shard_{{shard}}.h5ad", shard=LOT_SHARD_IDS),
    output:
        f"{LOT_DIR}/embedding.h5ad",
    log:
        f"{LOG_DIR}/lot_concat.log",
    threads: res("lot_concat", "threads")
    resources:
        mem_mb=res("lot_concat", "mem_mb"),
        runtime=res("lot_concat", "runtime"),
    shell:
        otbio_cmd() + " -v concat {input:q} -o {output:q} > {log:q} 2>&1"


rule lot_distances:
    input:
        f"{LOT_DIR}/embedding.h5ad",
    output:
        f"{LOT_DIR}/distances.tsv",
    log:
        f"{LOG_DIR}/lot_distances.log",
    params:
        extra=LOT["distances"]["extra"],
    threads: res("lot_distances", "threads")
    resources:
        mem_mb=res("lot_distances", "mem_mb"),
        runtime=res("lot_distances", "runtime"),
    shell:
        otbio_cmd() + " -v distances {input:q} {params.extra} -o {output:q} > {log:q} 2>&1"


if CLASSIFY is not None:

    rule lot_classify:
        input:
            emb=f"{LOT_DIR}/embedding.h5ad",
            cells=list(LOT["cells"]) if CLASSIFY.get("celltype_key") else [],
        output:
            metrics=f"{LOT_DIR}/classify/metrics.tsv",
            points=f"{LOT_DIR}/classify/reference_points.tsv",
            figure=f"{LOT_DIR}/classify/classify.png",
        log:
            f"{LOG_DIR}/lot_classify.log",
        params:
            opts=lambda wc, input: (
                f"--groupby {q(CLASSIFY['groupby'])}"
                + (
                    f" --cells {q(input.cells[0])} --celltype-key {q(CLASSIFY['celltype_key'])}"
                    if CLASSIFY.get("celltype_key")
                    else ""
                )
                + f" {CLASSIFY['extra']}"
            ).strip(),
            outdir=f"{LOT_DIR}/classify",
        threads: res("lot_classify", "threads")
        resources:
            mem_mb=res("lot_classify", "mem_mb"),
            runtime=res("lot_classify", "runtime"),
        shell:
            otbio_cmd()
            + " -v classify {input.emb:q} {params.opts} -o {params.outdir:q}"
            " > {log:q} 2>&1"


# the columns of reference_points.tsv shown in the report (those present, in this order)
_POINT_COLUMNS = "rank,ref_point,weight_norm,celltype,celltype_change,top_genes,top_features"


rule lot_report:
    input:
        emb=f"{LOT_DIR}/embedding.h5ad",
        dist=f"{LOT_DIR}/distances.tsv",
        metrics=[f"{LOT_DIR}/classify/metrics.tsv"] if CLASSIFY is not None else [],
        points=[f"{LOT_DIR}/classify/reference_points.tsv"] if CLASSIFY is not None else [],
        figure=[f"{LOT_DIR}/classify/classify.png"] if CLASSIFY is not None else [],
    output:
        f"{LOT_DIR}/report.md",
    log:
        f"{LOG_DIR}/lot_report.log",
    params:
        n_samples=len(LOT_SAMPLES) if LOT_SAMPLES is not None else len(LOT["cells"]),
        n_shards=len(LOT_SHARD_IDS),
        label=(CLASSIFY or {}).get("groupby", ""),
        columns=_POINT_COLUMNS,
    threads: res("lot_report", "threads")
    resources:
        mem_mb=res("lot_report", "mem_mb"),
        runtime=res("lot_report", "runtime"),
    shell:
        r"""
        (
        set -e
        tmp={output:q}.tmp
        tab=$(printf '\t')
        {{
          echo "# otbio LOT cohort report"
          echo
          echo "{params.n_samples} samples embedded in {params.n_shards} shards against one reference."
          echo "Files next to this report: \`reference.h5ad\`, \`embedding.h5ad\` (one row per sample),"
          echo "\`distances.tsv\` (pairwise LOT distances) and \`classify/\`; logs in \`../logs/\`."
          echo
          for m in {input.metrics:q}; do
            echo "## Classification of '{params.label}' (cross-validated, \`classify/metrics.tsv\`)"
            echo
            echo '```'
            cat "$m"
            echo '```'
            echo
          done
          for p in {input.points:q}; do
            echo "## Reference points with the largest weights (\`classify/reference_points.tsv\`)"
            echo
            echo '```'
            awk -F "$tab" -v OFS="$tab" -v want={params.columns:q} '
              NR == 1 {{ n = split(want, w, ","); for (i = 1; i <= NF; i++) h[$i] = i
                         for (j = 1; j <= n; j++) if (w[j] in h) c[++m] = h[w[j]] }}
              NR <= 11 {{ line = $c[1]; for (j = 2; j <= m; j++) line = line OFS $c[j]; print line }}
            ' "$p"
            echo '```'
            echo
          done
          for f in {input.figure:q}; do
            echo "## Classifier weights in cell space"
            echo
            echo "![classifier weights](classify/$(basename "$f"))"
            echo
          done
          echo "## Closest sample pairs (LOT distance)"
          echo
          echo '```'
          head -n 1 {input.dist:q}
          tail -n +2 {input.dist:q} | sort -t "$tab" -k3,3g | awk 'NR <= 10'
          echo '```'
        }} > "$tmp"
        mv "$tmp" {output:q}
        ) > {log:q} 2>&1
        """
