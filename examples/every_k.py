"""An algorithm variant: predictive coding that updates the weights every k inference steps.

Standard PC relaxes the latents for T steps and then updates the weights once (k = T);
incremental PC updates them at every step. ``EveryK`` sits in between: the T inference steps are
cut into T / k rounds of k steps, and after every round the weights take one optimiser step from
(1/beta) dE/dtheta at the current latents; the latents keep relaxing (with their optimiser state)
under the new weights. With k = T it is exactly standard PC.

It is an *update rule*, one part of ``pj.PC``; registering the algorithm ``pc_every_k`` makes it
selectable from the command line (``algorithm=pc_every_k algorithm.params.k=2``).

    python examples/every_k.py --k 2
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

import pcjax as pj
from pcjax.algorithms import Step, pc_config, weight_gradient
from pcjax.inference import latent_step


@dataclasses.dataclass(frozen=True)
class EveryK(pj.UpdateRule):
    """Update rule: a weight step after every k of the T inference steps (k must divide T)."""

    k: int = 2
    label: ClassVar[str] = "pc-everyk"
    steps_during_inference: ClassVar[bool] = True

    def check(self, target: pj.Target, runtime: pj.Runtime) -> None:
        if not target.holds_output or runtime.compute_dtype is not None:
            raise pj.ConfigError("update rule EveryK needs a target that holds the output (Clamp) and float32 compute")

    def updates_per_step(self, T: int) -> int:
        if self.k < 1 or T % self.k:
            raise pj.ConfigError(f"k={self.k} must be a positive divisor of T={T}")
        return T // self.k

    def step(self, ctx) -> Step:
        """T inference steps in rounds of k, one weight step after each round."""
        inf, L = ctx.inference, ctx.state.model.num_nodes
        optimizer = inf.optim.make()

        def round_(carry, r):
            st, z, zstate = carry
            problem = ctx.problem(st.model)  # the energy under the current weights

            def inference(c, t):
                z, zstate = c
                z, zstate, info = latent_step(problem.energy_fn, z, zstate, t, T=inf.T, optimizer=optimizer,
                                              rule=inf.lalr, free_nodes=problem.free_nodes, num_nodes=L,
                                              latent_grad=inf.latent_grad)
                return (z, zstate), info

            (z, zstate), infos = jax.lax.scan(inference, (z, zstate), r * self.k + jnp.arange(self.k))
            energy, terms, grads = weight_gradient(st.model, ctx.x, problem.latents(z), problem.spec, st.beta)
            st = ctx.apply(st, grads, infos.step_scale[-1])
            return (st, z, zstate), (infos, energy, terms)

        free0 = ctx.problem(ctx.state.model).init
        (state, free, _), (infos, energy, terms) = jax.lax.scan(
            round_, (ctx.state, free0, optimizer.init(free0)), jnp.arange(inf.T // self.k))
        infos = jax.tree_util.tree_map(lambda a: a.reshape((inf.T,) + a.shape[2:]), infos)
        last = jax.tree_util.tree_map(lambda a: a[-1], terms)  # the last round's energies
        return Step(state, free, infos, energy[-1], last, None)


@pj.register_algorithm("pc_every_k", defaults={"T": 8, "latent": {"name": "sgd", "lr": 0.1, "momentum": 0.5},
                                               "params": {"k": 2}})
def build_every_k(ctx: pj.BuildContext) -> pj.PC:
    """``algorithm=pc_every_k``: standard PC's parts with the EveryK update rule."""
    k = pj.algorithm_params(ctx, k=2)["k"]
    return pj.PC(dataclasses.replace(pc_config(ctx), update=EveryK(k)), ctx.weight_optim, ctx.total_steps,
                 runtime=ctx.runtime, name=f"pc-every{k}")


def main(argv=None):
    """Train an MLP on digits with EveryK and print the test accuracy."""
    from pcjax.data import load_dataset
    from pcjax.training import TrainerConfig, fit

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = load_dataset("digits")
    trainer = TrainerConfig(epochs=args.epochs, batch_size=64, chunks_per_epoch=4, seed=args.seed, progress=False)
    steps = int(data.train_x.shape[0] * (1 - trainer.val_fraction)) // trainer.batch_size * trainer.epochs
    config = pj.PCConfig(T=args.T, latent=pj.LatentOptim(lr=0.1, momentum=0.5), update=EveryK(args.k))
    algo = pj.PC(config, pj.WeightOptim(name="adamw", lr=1e-3, weight_decay=1e-4), steps)
    model = pj.build_model("mlp", data.image_shape, data.num_classes, key=jax.random.PRNGKey(args.seed))
    _, record = fit(algo, model, data, trainer)
    print(f"EveryK(k={args.k}, T={args.T}): test accuracy {record['summary']['test_acc']:.4f} "
          f"(best validation epoch {record['summary']['best_epoch']} of {args.epochs})")


if __name__ == "__main__":
    main()
