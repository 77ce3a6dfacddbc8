#!/usr/bin/env bash
# Trains torchtitan's Llama 3 debug model on npusim under torchrun.
#
#   bash examples/torchtitan/run.sh fsdp            # FSDP2, 2 ranks
#   bash examples/torchtitan/run.sh fsdp_tp         # FSDP2 x TP, 2x2 on 4 ranks
#   bash examples/torchtitan/run.sh pp              # pipeline parallel, 2 stages
#   bash examples/torchtitan/run.sh compile         # FSDP2, 2 ranks, --compile.enable
#   TITAN_DEVICE=cpu bash examples/torchtitan/run.sh fsdp   # the same on the CPU with gloo
#
# Extra arguments go to torchtitan (e.g. --training.steps 20). WORK (default
# /tmp/npusim_titan) holds the offline tokenizer and dataset, the seed checkpoint and
# one dump folder per run; losses land in $WORK/<config>-<device>/losses.jsonl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
config="${1:-fsdp}"; shift || true
work="${WORK:-/tmp/npusim_titan}"
device="${TITAN_DEVICE:-npusim}"
mkdir -p "$work"
python "$here/prepare_assets.py" "$work/assets" >/dev/null

common=(--module llama3 --config llama3_debugmodel
        --parallelism.spmd_backend partial_dtensor   # torchtitan's default needs torch > 2.13
        --hf_assets_path "$work/assets/tokenizer"
        --dataloader.dataset_path "$work/assets/dataset"
        --training.seq_len "${SEQ_LEN:-128}" --training.local_batch_size "${BATCH:-2}"
        --training.steps "${STEPS:-5}" --debug.seed 0)

# one seed checkpoint (unsharded, single process) that every run starts from
seed="$work/seed/checkpoint/step-0"
if [ ! -d "$seed" ]; then
    torchrun --nproc-per-node 1 "$here/train.py" "${common[@]}" --dump_folder "$work/seed" \
        --checkpoint.enable --checkpoint.create_seed_checkpoint
fi

case "$config" in
    fsdp)    nproc=2; parallel=(--parallelism.data_parallel_shard_degree 2) ;;
    fsdp_tp) nproc=4; parallel=(--parallelism.data_parallel_shard_degree 2
                                --parallelism.tensor_parallel_degree 2) ;;
    pp)      nproc=2; parallel=(--parallelism.pipeline_parallel_degree 2
                                --parallelism.pipeline_parallel_schedule 1F1B
                                --training.disable_cuda_graphs  # torchtitan refuses PP otherwise
                                --parallelism.data_parallel_shard_degree 1) ;;
    compile) nproc=2; parallel=(--parallelism.data_parallel_shard_degree 2 --compile.enable) ;;
    *) echo "unknown config $config (fsdp, fsdp_tp, pp, compile)" >&2; exit 2 ;;
esac

out="$work/$config-$device"
rm -rf "$out"; mkdir -p "$out"
TITAN_DEVICE="$device" TITAN_LOSS_FILE="$out/losses.jsonl" \
torchrun --nproc-per-node "$nproc" --master-port "${MASTER_PORT:-29511}" "$here/train.py" \
    "${common[@]}" "${parallel[@]}" --dump_folder "$out" \
    --checkpoint.enable --checkpoint.initial_load_path "$seed" --checkpoint.load_only "$@"
cat "$out/losses.jsonl"
