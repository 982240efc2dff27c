"""The library core imports and trains without the application's dependencies (Hydra, OmegaConf, wandb,
matplotlib): they are needed by the command line, tracking and plots only."""

import subprocess
import sys

CODE = """
import sys
for m in ("hydra", "omegaconf", "wandb", "matplotlib"):
    sys.modules[m] = None  # any import of them raises ImportError
import jax, jax.numpy as jnp
import pcjax as pj
model = pj.build_model("mlp", (6,), 3, key=jax.random.PRNGKey(0), width=8, depth=2)
algo = pj.PCALM(pj.Inference(4), pj.EnergySpec(), pj.WeightOptim(), 10)
state, metrics = algo.train_step(algo.init(model), jnp.ones((4, 6)), jax.nn.one_hot(jnp.arange(4) % 3, 3))
print("ok", float(metrics["energy"]) >= 0)
"""


def test_core_imports_and_steps_without_hydra_wandb_matplotlib():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok True"
