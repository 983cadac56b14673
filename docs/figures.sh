#!/usr/bin/env bash
# Re-draw the figures of the README's worked examples into docs/ (run from the repository root
# after `pip install -e .`): the same commands as the README, in a scratch folder.
set -euo pipefail
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
ln -s "$root/test_data" test_data
D=test_data/pbmc_cohort.h5ad
otbio reference $D --sample-key donor --use-rep X_pca --size 128 -o ref.h5ad
otbio embed $D --sample-key donor --reference ref.h5ad -o emb.h5ad --plot emb.png --color-key condition
python -c "import otbio.lot as L; L.state_shift_cohort(shift=1.0, seed=0).write_h5ad('state.h5ad')"
otbio reference state.h5ad --sample-key donor --use-rep X_pca --size 64 -o sref.h5ad
otbio embed state.h5ad --sample-key donor --reference sref.h5ad -o semb.h5ad
otbio classify semb.h5ad --groupby condition --cells state.h5ad --celltype-key bulk_labels -o sclassify
otbio --seed 0 register test_data/spatial/breast_st_slice1.h5ad test_data/spatial/breast_st_slice2.h5ad \
    -o slice1_on_2.h5ad --plot before_after.png --evaluate
P=test_data/protein
otbio align $P/adk_open.pdb::122-159 $P/adk_closed.pdb $P/1hvr.pdb --save-scores lid_scores.tsv \
    --plot lid_plan.png
cp emb.png "$root/docs/lot_embedding.png"
cp sclassify/classify.png "$root/docs/lot_classify.png"
cp before_after.png "$root/docs/register_before_after.png"
cp lid_plan.png "$root/docs/align_plan.png"
echo "figures written to docs/" >&2
