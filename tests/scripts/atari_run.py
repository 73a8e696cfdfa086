"""An atari-ga run on Pong to kill mid-way: python atari_run.py OUT_DIR [--resume]."""

import json
import sys

import evoreg

out_dir = sys.argv[1]
result = evoreg.run(
    "atari", "atari-ga", budget=4_000, seed=3, out_dir=out_dir, checkpoint_every=1,
    resume="--resume" in sys.argv, progress=False, plot=False,
    problem_config={"game": "pong", "max_steps": 40, "num_envs": 4, "report_episodes": 2,
                    "num_threads": 1, "noops": "steps"},  # cheap, still deterministic
    optimizer_config={"popsize": 4, "parents": 3, "elites": 1, "max_evals": 2},
)
with open(f"{out_dir}/final.json", "w") as final:
    json.dump({"best_loss": result.best_loss, "generations": result.generations,
               "report": result.report, "cost": result.cost}, final)
