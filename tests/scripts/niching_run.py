"""niching on a tiny architecture search, checkpointed every generation, slow enough to be
killed mid-way: python niching_run.py OUT_DIR [--resume].

omega = 1 so that every worse child opens a niche: the run spends most generations inside
one, and a kill lands there (tests/test_niching_architecture.py)."""

import json
import sys

import torch

import evoreg

# Digits, 200 training and 100 validation images, one epoch per child: about 0.3 s a
# generation on one core. Small channels keep it so; lr 0.01 so the losses differ.
PROBLEM = {"dataset": "digits", "train_size": 200, "val_size": 100, "batch_size": 32,
           "epochs_per_eval": 1, "final_epochs": 1, "channels": (8, 16, 32), "lr": 0.01}
OPTIMIZER = {"omega": 1.0, "niche_steps": 3}
BUDGET = 16  # training epochs, one per generation

if __name__ == "__main__":
    out_dir = sys.argv[1]
    result = evoreg.run(
        "architecture", "niching", budget=BUDGET, seed=3, out_dir=out_dir, checkpoint_every=1,
        resume="--resume" in sys.argv, problem_config=PROBLEM, optimizer_config=OPTIMIZER,
        progress=False, plot=False,
    )
    with open(f"{out_dir}/final.json", "w") as final:
        json.dump({"best_loss": result.best_loss, "report": result.report,
                   "blocks": [list(b) for b in result.recommendation["blocks"]],
                   "generations": result.generations, "cost": result.cost}, final)
    # The trained weights too: a resumed run must end with the very same network.
    torch.save(result.recommendation["weights"], f"{out_dir}/final_weights.pt")
