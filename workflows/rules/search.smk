# Structure search: every motif against a folder of structures, in chunks of `chunk_size`
# structures per job, then one ranked score table per motif and one for all motifs.
# With `index: true`: one `otbio index` shard per `shard_size` structures (one job each),
# then one `otbio align --index` job per motif over every shard (the prefilter ranks the
# whole database, then the `max_candidates` best structures are aligned): the same tables.

import re

SE = config["search"]
SE_DIR = f"{OUT}/search"
LOG_DIR = f"{OUT}/logs"

check_dir(SE["structures"], "search.structures")
_STRUCT_FILE = re.compile(r"^(.*?\.(?:pdb|cif|mmcif|ent)(?:\.gz)?)(?::.*)?$", re.IGNORECASE)
for _name, _query in SE["motifs"].items():
    _m = _STRUCT_FILE.match(_query)
    check_file(_m.group(1) if _m else _query, f"search.motifs.{_name}")

SE_TARGETS = sorted(
    f
    for f in glob.glob(os.path.join(SE["structures"], SE["pattern"]))
    if os.path.isfile(f) and os.path.basename(f) not in set(SE["exclude"])
)
if not SE_TARGETS:
    msg = f"config key 'search.pattern': no file matches '{SE['pattern']}' in '{SE['structures']}'"
    raise ConfigError(msg)
SE_CHUNKS = chunks(SE_TARGETS, SE["chunk_size"])
SE_CHUNK_IDS = [f"{i:04d}" for i in range(len(SE_CHUNKS))]
SE_MOTIFS = list(SE["motifs"])
FINAL = [f"{SE_DIR}/scores.tsv"] + [f"{SE_DIR}/{m}/scores.tsv" for m in SE_MOTIFS]


wildcard_constraints:
    motif="|".join(re.escape(m) for m in SE_MOTIFS),


# tiny shell steps run where snakemake runs, not as cluster jobs
localrules:
    search_merge,
    search_merge_all,


rule search_chunk:
    input:
        lambda wc: SE_CHUNKS[int(wc.chunk)],
    output:
        f"{SE_DIR}/{{motif}}/chunks/chunk_{{chunk}}.tsv",
    log:
        f"{LOG_DIR}/search_chunk/{{motif}}_{{chunk}}.log",
    params:
        query=lambda wc: SE["motifs"][wc.motif],
        extra=SE["extra"],
    threads: res("search_chunk", "threads")
    resources:
        mem_mb=res("search_chunk", "mem_mb"),
        runtime=res("search_chunk", "runtime"),
    shell:
        otbio_cmd()
        + " -v align {params.query:q} {input:q} {params.extra} --save-scores {output:q} > {log:q} 2>&1"


# merge: the header once, the rows sorted by the column "tm_score" (best first; ties by the
# PLASMA "score"), as otbio align ranks, and the column "rank" renumbered 1..n over all rows
_MERGE = r"""
(
set -e
tmp={output:q}.tmp
tab=$(printf '\t')
col=$(head -n 1 {input[0]:q} | tr '\t' '\n' | grep -n -x score | cut -d: -f1 || true)
rank=$(head -n 1 {input[0]:q} | tr '\t' '\n' | grep -n -x rank | cut -d: -f1 || true)
tm=$(head -n 1 {input[0]:q} | tr '\t' '\n' | grep -n -x tm_score | cut -d: -f1 || true)
if [ -z "$col" ]; then echo "no 'score' column in {input[0]}" >&2; exit 1; fi
ties=""
if [ -n "$tm" ]; then ties="-k$col,${{col}}gr"; col=$tm; fi
head -n 1 {input[0]:q} > "$tmp"
for f in {input:q}; do tail -n +2 "$f"; done \
  | sort -t "$tab" -s -k"$col","$col"gr $ties \
  | awk -F "$tab" -v OFS="$tab" -v r="${{rank:-0}}" '{{ if (r > 0) $r = NR; print }}' >> "$tmp"
mv "$tmp" {output:q}
) > {log:q} 2>&1
"""

# all motifs in one table: the per-motif tables one after another, each keeping its ranks
_CONCAT = r"""
(
set -e
tmp={output:q}.tmp
head -n 1 {input[0]:q} > "$tmp"
for f in {input:q}; do tail -n +2 "$f"; done >> "$tmp"
mv "$tmp" {output:q}
) > {log:q} 2>&1
"""


rule search_merge:
    input:
        expand(f"{SE_DIR}/{{{{motif}}}}/chunks/chunk_{{chunk}}.tsv", chunk=SE_CHUNK_IDS),
    output:
        f"{SE_DIR}/{{motif}}/scores.tsv",
    log:
        f"{LOG_DIR}/search_merge/{{motif}}.log",
    threads: res("search_merge", "threads")
    resources:
        mem_mb=res("search_merge", "mem_mb"),
        runtime=res("search_merge", "runtime"),
    shell:
        _MERGE


rule search_merge_all:
    input:
        expand(f"{SE_DIR}/{{motif}}/scores.tsv", motif=SE_MOTIFS),
    output:
        f"{SE_DIR}/scores.tsv",
    log:
        f"{LOG_DIR}/search_merge/all.log",
    threads: res("search_merge", "threads")
    resources:
        mem_mb=res("search_merge", "mem_mb"),
        runtime=res("search_merge", "runtime"),
    shell:
        _CONCAT


if SE["index"]:
    SE_SHARDS = chunks(SE_TARGETS, SE["shard_size"])
    SE_SHARD_IDS = [f"{i:04d}" for i in range(len(SE_SHARDS))]

    # the per-motif table comes from the index query, not from merged chunks
    ruleorder: search_index_query > search_merge

    # one index shard per job (built beside its final place, moved there when complete)
    rule search_index_shard:
        input:
            lambda wc: SE_SHARDS[int(wc.shard)],
        output:
            directory(f"{SE_DIR}/index/shard_{{shard}}.idx"),
        log:
            f"{LOG_DIR}/search_index_shard/{{shard}}.log",
        threads: res("search_index_shard", "threads")
        resources:
            mem_mb=res("search_index_shard", "mem_mb"),
            runtime=res("search_index_shard", "runtime"),
        shell:
            otbio_cmd() + " -v index {input:q} -o {output:q} > {log:q} 2>&1"

    rule search_index_query:
        input:
            expand(f"{SE_DIR}/index/shard_{{shard}}.idx", shard=SE_SHARD_IDS),
        output:
            f"{SE_DIR}/{{motif}}/scores.tsv",
        log:
            f"{LOG_DIR}/search_index_query/{{motif}}.log",
        params:
            query=lambda wc: SE["motifs"][wc.motif],
            shards=lambda wc, input: " ".join(f"--index {q(p)}" for p in input),
            max_candidates=SE["max_candidates"],
            extra=SE["extra"],
        threads: res("search_index_query", "threads")
        resources:
            mem_mb=res("search_index_query", "mem_mb"),
            runtime=res("search_index_query", "runtime"),
        shell:
            otbio_cmd()
            + " -v align {params.query:q} {params.shards} --max-candidates"
            + " {params.max_candidates} {params.extra} --save-scores {output:q} > {log:q} 2>&1"
