"""A run slow enough to be killed mid-way: python slow_run.py OUT_DIR OPTIMIZER [--resume]."""

import json
import sys
import time

import torch

import evoreg
from evoreg.problems.sphere import Sphere
from evoreg.runner import derive_seeds


class SlowSphere(Sphere):
    name = "sphere"

    def evaluate(self, pop):
        time.sleep(0.03)
        return super().evaluate(pop)


out_dir, optimizer = sys.argv[1], sys.argv[2]
problem_seed, _ = derive_seeds(5)
problem = SlowSphere(seed=problem_seed, dim=6, noise=0.5)
result = evoreg.run(
    problem, optimizer, budget=240, seed=5, out_dir=out_dir, checkpoint_every=4,
    resume="--resume" in sys.argv, optimizer_config={"popsize": 4}, progress=False, plot=False,
)
with open(f"{out_dir}/final.json", "w") as final:
    json.dump({"best_loss": result.best_loss,
               "recommendation": torch.as_tensor(result.recommendation).tolist(),
               "generations": result.generations, "report": result.report}, final)
