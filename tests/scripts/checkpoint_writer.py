"""Writes checkpoints in a loop until killed: python checkpoint_writer.py PATH."""

import sys

import torch

from evoreg.checkpoint import save_checkpoint

path = sys.argv[1]
step = 0
while True:
    step += 1
    # ~16 MB, so a kill often lands in the middle of a write.
    save_checkpoint({"step": step, "weights": torch.full((4_000_000,), float(step))}, path)
    print(step, flush=True)
