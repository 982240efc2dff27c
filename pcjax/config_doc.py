"""One-line descriptions of every configuration key, and the help text built from them.

``python experiments/train.py --help`` prints ``help_text()`` (written into the Hydra help template
``conf/hydra/help/pcjax.yaml`` by ``python -m pcjax.config_doc``); a test checks that every key of
the typed schema (``pcjax.config.Config``) has a description and that the template is current.
"""

from __future__ import annotations

import textwrap
from dataclasses import fields, is_dataclass
from pathlib import Path

DESCRIPTIONS: dict[str, str] = {
    "dataset.name": "digits (bundled, no download) | mnist | fashion_mnist | cifar10 | cifar100 | tiny_imagenet | synthetic",
    "dataset.root": "data folder (default: $PCJAX_DATA_DIR, else ~/.cache/pcjax)",
    "dataset.download": "download missing canonical files (SHA-256 verified); false: fail with the file and URL named",
    "dataset.limit_train": "use only the first N training images (null: all)",
    "dataset.limit_test": "use only the first N test images (null: all)",
    "dataset.label_mode": "CIFAR-100 labels: fine (100 classes) | coarse (20 superclasses)",
    "dataset.augment.crop_padding": "random-crop padding in pixels (0: no crop); applied on the device every epoch",
    "dataset.augment.flip": "random horizontal flips",
    "dataset.augment.crop_size": "random crop to this size in training, centre crop in evaluation (null: none)",
    "model.name": "mlp | vgg5 | vgg7 | vgg9 ... vgg19 | resnet18 | mnist_cnn | a registered model",
    "model.act": "activation: gelu | relu | tanh | leaky_relu | hard_tanh | identity | ...",
    "model.width": "MLP hidden width",
    "model.depth": "MLP hidden layers",
    "model.residual": "MLP identity skip edges between hidden layers (deep residual MLPs)",
    "model.backward": "top-down predictors for the bidirectional energy: auto (learned when energy.lam > 0) | learned | tied | none",
    "model.backward_from": "lowest node with a top-down predictor (0 reaches the input: needed for generation)",
    "model.init": "default | mup (muPC parameterisation for deep residual MLPs)",
    "model.preact": "activation before each linear map (muPC's pre-activation ResNet)",
    "model.width_multiplier": "channel multiplier of the convnets (0.25: quarter width)",
    "model.skip": "convnet skip edges: none | long (a learned skip into the output node)",
    "model.stem": "ResNet stem: cifar (3x3) | imagenet (7x7 + pool)",
    "model.norm": "convnet normalisation: none | ...",
    "model.fc_hidden": "VGG hidden fully connected width (0: none)",
    "model.aux_neurons": "ResNet: two auxiliary value nodes on each block's skip path, at the depths of the main path's two convolutions (Qi et al. 2026); VGG with skip=long: auxiliary values in every node the long skip passes",
    "algorithm.name": "pc (state PC) | epc (error-optimised PC) | bp (backprop) | a registered algorithm",
    "algorithm.label": "short label used in run names (set by the algorithm group)",
    "algorithm.variant": "update rule of pc and epc: pc (equilibrium) | fu (forward update) | ipc (incremental; pc only)",
    "algorithm.T": "inference steps per batch",
    "algorithm.beta": "how strongly the label pulls, by target: nudge=clamp: z_L = mu_L - beta (mu_L - y) (1: clamped); nudge=soft: F = E + beta C(z_L, y); epc: weight of the output term toward y (params.target=nudged: weight 1 toward mu_L + beta (y - mu_L))",
    "algorithm.latent.name": "latent (or error) optimiser: sgd | adam | guarded_sgd (GD that returns a sample to its last point and halves its rate when a step raises its energy) (state reset every batch)",
    "algorithm.latent.lr": "inference learning rate",
    "algorithm.latent.momentum": "inference SGD momentum",
    "algorithm.latent.nesterov": "Nesterov momentum for the inference SGD",
    "algorithm.latent_grad": "sample (each sample follows its own energy's gradient) | mean (gradient of the batch mean)",
    "algorithm.eval_steps": "evaluation readout after this many free inference steps (0: feed-forward mu_L)",
    "algorithm.nudge": "target part: clamp (output held at the nudged target) | soft (output free, F = E + beta C)",
    "algorithm.contrast": "contrastive update: subtract the free-phase weight gradient (with top-down terms)",
    "algorithm.unroll": "unroll the inference loop: auto (convnets on CPU) | true | false | an integer",
    "algorithm.xla_fusion": "XLA's CPU fusion pass for the training step: auto (off for ePC on CPU from 32 layers, where it makes steps quadratic in depth) | true | false",
    "algorithm.error_front": "skip inference work the output's error has not reached: auto (convnets on CPU) | true | false",
    "algorithm.lalr_weights": "also scale block l's weight update by its LALR multiplier rho_l",
    "algorithm.loss": "backprop loss: gaussian | cross_entropy (null: the output energy term)",
    "algorithm.beta_schedule": "per-epoch nudging: constant | linear (beta + beta_increase * epoch) | random_sign (centred)",
    "algorithm.beta_increase": "beta's increase per epoch for beta_schedule=linear",
    "algorithm.compute_dtype": "predictions in this dtype (bfloat16), latents/energies/master weights in float32 (null: float32)",
    "algorithm.tol": "stop inference early once converged (null: always T steps); see algorithm.tol_on",
    "algorithm.tol_on": "convergence test: energy (relative energy change < tol) | update (largest RMS latent update < tol)",
    "algorithm.min_steps": "inference steps before the convergence test applies",
    "algorithm.params": "a registered algorithm's own hyper-parameters (free-form: +algorithm.params.k=2)",
    "energy.hidden": "energy term of the hidden nodes: gaussian | cross_entropy | a registered term",
    "energy.output": "energy term of the output node: gaussian (SE) | cross_entropy (CE)",
    "energy.backward": "energy term of the top-down errors",
    "energy.alpha": "forward-term weights alpha_l (a scalar or one per node), >= 0",
    "energy.lam": "top-down-term weights lambda_l (0: standard PC exactly), >= 0",
    "energy.params": "keyword parameters of the energy terms (free-form: +energy.params.delta=0.1)",
    "lalr.rule": "layer-adaptive rates: constant | geometric | error_normalised | precision | log_normalised | registered",
    "lalr.params": "the rule's parameters (free-form: lalr.params.r=2.0, +lalr.params.power=0.5)",
    "optim.name": "weight optimiser: adamw | adam | sgd | lamb | lars (the same for PC and BP)",
    "optim.lr": "weight learning rate",
    "optim.weight_decay": "weight decay",
    "optim.schedule": "learning-rate schedule: warmup_cosine | constant",
    "optim.warmup": "warmup fraction of all weight updates (warmup_cosine)",
    "optim.peak_factor": "peak learning rate / lr (warmup_cosine)",
    "optim.end_factor": "final learning rate / lr (warmup_cosine)",
    "optim.momentum": "SGD momentum (optim.name=sgd)",
    "optim.grad_clip": "clip the weight gradient's global norm (null: no clipping)",
    "optim.b1": "Adam's first-moment decay (adam, adamw, lamb)",
    "optim.b2": "Adam's second-moment decay (adam, adamw, lamb)",
    "optim.layerwise": "layer-wise weight rates: none | trust_ratio (each layer moves lr x its weight norm) | normalized (each layer's update has RMS lr)",
    "trainer.epochs": "training epochs",
    "trainer.batch_size": "training batch size",
    "trainer.eval_batch_size": "evaluation batch size",
    "trainer.val_fraction": "fraction of the training set held out for validation (the strict protocol's model selection)",
    "trainer.chunks_per_epoch": "compiled chunks per epoch (how often the progress bar advances)",
    "trainer.devices": "data-parallel devices: 1 | an integer | all (batch split over them, weights replicated; batch sizes must divide evenly)",
    "trainer.loop": "epoch loop: auto | scan (all steps in one compiled scan) | step (one dispatch per batch)",
    "trainer.progress": "show a progress bar",
    "trainer.resume": "continue a run: false | true/latest (newest sibling run with a checkpoint) | a run directory",
    "trainer.checkpoint": "checkpoint the full training state after every epoch",
    "trainer.checkpoint_minutes": "within-epoch checkpoint after the first chunk that ends this many minutes after the last one (0: every chunk; null: only at epoch ends); resume continues the epoch there",
    "trainer.extend_epochs": "resume: allow a larger trainer.epochs than the run started with (the lr schedule keeps its length)",
    "trainer.compile_cache": "JAX's persistent compilation cache: auto (~/.cache/pcjax/jax-compile, or $PCJAX_COMPILE_CACHE) | a folder | null (off)",
    "trainer.replicas": "train K independent replicas (seeds seed..seed+K-1) as one vmapped program, one run record each",
    "trainer.diagnostics": "record per-layer update norms, backprop gradient norms and their cosines every epoch",
    "trainer.divergence_threshold": "stop when |energy| or |loss| of a step exceeds this (null: only non-finite values stop)",
    "trainer.placement": "where the dataset lives: auto (host when larger than the memory budget) | device | host (batches stream from host memory)",
    "trainer.device_memory_budget": "bytes of device memory the dataset may use before auto streams it from the host (default: 60 % of a GPU's memory; no limit on CPU)",
    "trainer.distributed": "several processes: off | auto (jax.distributed under SLURM / MPI or with a coordinator) | on",
    "trainer.coordinator": "host:port of process 0 for a multi-process run (or PCJAX_COORDINATOR)",
    "trainer.num_processes": "number of processes of a multi-process run (or PCJAX_NUM_PROCESSES)",
    "trainer.process_id": "this process's index in a multi-process run (or PCJAX_PROCESS_ID)",
    "tracking.backends": "trackers: jsonl | console | wandb (default jsonl + wandb, offline unless tracking.wandb.mode says otherwise)",
    "tracking.wandb.mode": "wandb mode: offline (no network) | online | disabled",
    "tracking.wandb.project": "wandb project",
    "tracking.wandb.entity": "wandb entity (team or user)",
    "tracking.wandb.name": "wandb run name (default: the run's name, its overrides and seed)",
    "tracking.wandb.group": "wandb group (default: the run's name; in a sweep, the name and the sweep folder)",
    "tracking.wandb.tags": "extra wandb tags (dataset, model and algorithm are always tagged)",
    "reference.value": "published accuracy this row reproduces (%, for the tables)",
    "reference.source": "where the reference number comes from",
    "reference.protocol": "protocol of the reference number: pcx | strict",
    "name": "run name (default: dataset_model_algorithm)",
    "seed": "random seed (model init, data order, augmentation)",
    "run_dir": "run directory (set by Hydra: outputs/NAME/seedS/TIME)",
    "plugins": "modules or .py files to import first (they register energies, models, LALR rules, algorithms)",
}


def schema_keys(node=None, prefix: str = "") -> list[str]:
    """Every leaf key of the typed schema, dotted."""
    from .config import Config

    node = Config() if node is None else node
    keys = []
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            keys += schema_keys(value, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def help_text() -> str:
    """The configuration keys, grouped, each with its description."""
    lines, group = [], None
    for key in schema_keys():
        head = key.split(".")[0] if "." in key else "run"
        if head != group:
            group = head
            lines.append(f"\n{group}:")
        desc = DESCRIPTIONS.get(key, "(no description)")
        lines.append(textwrap.fill(desc, width=112, initial_indent=f"  {key:<32} ", subsequent_indent=" " * 35))
    return "\n".join(lines).lstrip("\n")


TEMPLATE = Path(__file__).resolve().parents[1] / "conf" / "hydra" / "help" / "pcjax.yaml"


def help_template() -> str:
    """The Hydra help template (``hydra/help=pcjax``): usage, config groups, every key described."""
    body = help_text().replace("$", "$$")
    return ("# Generated by `python -m pcjax.config_doc` from pcjax/config_doc.py; do not edit.\n"
            "app_name: pcjax\nheader: |\n  pcjax: energy-based predictive-coding networks in JAX.\n\n"
            "  python experiments/train.py [group=option ...] [key=value ...]   (-m: sweep)\n"
            "footer: |\n  Compose with --cfg job to see the resolved config; docs: README.md, docs/extending.md.\n"
            "template: |\n  ${hydra.help.header}\n  Config groups (choose with group=option):\n\n  $APP_CONFIG_GROUPS\n\n"
            "  Keys:\n\n" + textwrap.indent(body, "  ") + "\n\n  ${hydra.help.footer}\n")


if __name__ == "__main__":
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(help_template())
    print(f"wrote {TEMPLATE}")
