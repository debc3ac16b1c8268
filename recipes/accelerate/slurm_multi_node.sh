#!/bin/bash
# Launch a recipe across SLURM nodes with accelerate (one launcher per node, 8 GPUs each):
#   sbatch --nodes 8 recipes/accelerate/slurm_multi_node.sh recipes/lora_176b_zero3.yaml [section.key=value ...]
# Each node's machine_rank is its SLURM_NODEID; machine 0's host is main_process_ip. The accelerate config is
# recipes/accelerate/multi_node_zero3.yaml (ACCELERATE_CONFIG to change it); its machine and process counts are
# replaced by SLURM's. DRY_RUN=1 prints each node's accelerate command instead of running it.
#SBATCH --job-name=bloomz_tune
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --output=%x-%j.out
set -euo pipefail
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CONFIG=${ACCELERATE_CONFIG:-recipes/accelerate/multi_node_zero3.yaml}
# (awk reads every host: `head -n 1` would close the pipe early, and scontrol's SIGPIPE would fail the job)
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk 'NR == 1')
export MAIN_HOST GPUS_PER_NODE CONFIG DRY_RUN=${DRY_RUN:-}
srun --kill-on-bad-exit=1 bash -c '${DRY_RUN:+echo} accelerate launch --config_file "$CONFIG" \
    --num_machines "$SLURM_NNODES" --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
    --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN_HOST" --main_process_port 29500 \
    bloomz_tune/finetune.py "$@"' _ "$@"
