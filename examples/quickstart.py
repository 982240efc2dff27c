# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # pcjax quickstart: predictive coding vs backprop on digits
#
# Trains the same small MLP on scikit-learn's 8x8 digits (bundled, no download) twice — with
# predictive coding (PC: T inference steps on the latents, then one weight step along dE/dtheta)
# and with backprop (BP) — and plots
#
# * the per-layer energy over the inference steps of PC's last epoch (``record["inference_trace"]``,
#   shape ``(T + 1, L)``, the mean over that epoch's batches),
# * the per-layer energy at the end of inference, epoch by epoch (``layer_energy`` of each epoch),
# * the test accuracy per epoch of PC and BP.
#
# Open it as a notebook with jupytext (``jupytext --to notebook examples/quickstart.py``) or run it
# as a script; it takes a few seconds on a laptop CPU:
#
#     python examples/quickstart.py                    # figure in a fresh temporary folder
#     python examples/quickstart.py --out figures/ --epochs 10

# %%
import argparse
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a plain script: draw into files, never open a window
    matplotlib.use("Agg")
import jax
import matplotlib.pyplot as plt

import pcjax as pj
from pcjax.data import load_dataset
from pcjax.training import TrainerConfig, fit

parser = argparse.ArgumentParser(description="Train PC and BP on digits and plot per-layer energies.")
parser.add_argument("--out", default=None, help="folder for quickstart.png (default: a new temporary folder)")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--T", type=int, default=8, help="inference steps per batch")
parser.add_argument("--seed", type=int, default=0)
args, _ = parser.parse_known_args()  # a notebook kernel passes arguments of its own
out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pcjax_quickstart_"))
out_dir.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Data and training settings
#
# ``fit`` holds out a validation split (10 % of the training set) and evaluates on it and on the
# test set after every epoch; the learning-rate schedule needs the total number of weight steps.

# %%
data = load_dataset("digits")
trainer = TrainerConfig(epochs=args.epochs, batch_size=64, chunks_per_epoch=2, seed=args.seed,
                        progress=False, checkpoint=False)
steps_per_epoch = int(data.train_x.shape[0] * (1 - trainer.val_fraction)) // trainer.batch_size
total_steps = steps_per_epoch * trainer.epochs
weights = pj.WeightOptim(name="adamw", lr=1e-3, weight_decay=1e-4)
print(f"digits: {data.train_x.shape[0]} training images {data.image_shape}, {data.num_classes} classes; "
      f"{steps_per_epoch} batches of {trainer.batch_size} per epoch")


def new_model():
    """The same MLP (64 x 2 hidden units) and initial weights for both methods."""
    return pj.build_model("mlp", data.image_shape, data.num_classes, key=jax.random.PRNGKey(args.seed),
                          width=64, depth=2)


# %% [markdown]
# ## Predictive coding
#
# Standard PC: Gaussian energies, the output clamped to the label, ``T`` steps of SGD with
# momentum on the latents, then one AdamW step on the weights.

# %%
pc = pj.PC(pj.PCConfig(T=args.T, latent=pj.LatentOptim(lr=0.1, momentum=0.5)), weights, total_steps)
t0 = time.perf_counter()
_, pc_record = fit(pc, new_model(), data, trainer)
pc_seconds = time.perf_counter() - t0

# %% [markdown]
# ## Backprop on the same model

# %%
bp = pj.Backprop(weights, total_steps)
t0 = time.perf_counter()
_, bp_record = fit(bp, new_model(), data, trainer)
bp_seconds = time.perf_counter() - t0

# %% [markdown]
# ## Accuracy
#
# ``summary["test_acc"]`` is the test accuracy at the epoch with the best validation accuracy
# (the strict protocol of the results table).

# %%
for label, record, seconds in (("PC", pc_record, pc_seconds), ("BP", bp_record, bp_seconds)):
    s = record["summary"]
    print(f"{label}: test accuracy {100 * s['test_acc']:.2f} % (best validation epoch {s['best_epoch']} "
          f"of {len(record['epochs'])}), {s['seconds_per_epoch']:.2f} s/epoch, {seconds:.1f} s with compilation")

# %% [markdown]
# ## Energy per layer
#
# Right after the output is clamped only the top layer carries energy; inference spreads the
# prediction error down the network one layer per step. ``layer l`` is the energy of node l
# (``L`` is the output); the y axes are logarithmic, so energies of exactly zero are not drawn.

# %%
def positive(values):
    """Values for a log axis (zeros and negatives left out as NaN)."""
    return [v if v > 0 else float("nan") for v in values]


trace = pc_record["inference_trace"]  # (T + 1) x L
layers = len(trace[0])
fig, (ax_t, ax_e, ax_acc) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
for layer in range(layers):
    ax_t.plot(range(len(trace)), positive(step[layer] for step in trace), marker="o", ms=3,
              label=f"layer {layer + 1}")
    ax_e.plot([e["epoch"] for e in pc_record["epochs"]],
              positive(e["layer_energy"][layer] for e in pc_record["epochs"]), marker="o", ms=3)
ax_t.set(yscale="log", xlabel="inference step t", ylabel="energy",
         title=f"PC, last epoch: energy per layer over T = {len(trace) - 1} steps")
ax_e.set(yscale="log", xlabel="epoch", ylabel="energy at t = T", title="PC: energy at the end of inference")
for label, record in (("PC", pc_record), ("BP", bp_record)):
    ax_acc.plot([e["epoch"] for e in record["epochs"]], [100 * e["test_acc"] for e in record["epochs"]],
                marker="o", ms=3, label=label)
ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy, PC vs BP")
for ax in (ax_t, ax_e, ax_acc):
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
ax_t.legend(fontsize="small")
ax_acc.legend(fontsize="small")
figure_path = out_dir / "quickstart.png"
fig.savefig(figure_path, dpi=110)
print(f"wrote {figure_path}")
fig
