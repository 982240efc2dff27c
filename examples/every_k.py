"""An algorithm variant: predictive coding that updates the weights every k inference steps.

Standard PC relaxes the latents for T steps and then updates the weights once (k = T);
incremental PC updates them at every step. ``EveryK`` sits in between: the T inference steps are
cut into T / k rounds of k steps, and after every round the weights take one optimiser step from
(1/beta) dE/dtheta at the current latents; the latents keep relaxing (with their optimiser state)
under the new weights. With k = T it is exactly ``PC``.

    python examples/every_k.py --k 2
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import pcjax as pj
from pcjax.energies import get_energy
from pcjax.inference import latent_step, mean_layer_energy
from pcjax.network import nudged_target


class EveryK(pj.PC):
    """PC with a weight update after every k of the T inference steps (k must divide T)."""

    def __init__(self, config: pj.PCConfig, weight_optim: pj.WeightOptim, total_steps: int, k: int = 2):
        if config.variant != "pc" or config.nudge != "clamp":
            raise pj.ConfigError("EveryK builds on the standard PC step (variant=pc, nudge=clamp)")
        if k < 1 or config.T % k:
            raise pj.ConfigError(f"k={k} must be a positive divisor of T={config.T}")
        super().__init__(config, weight_optim, total_steps, name=f"pc-every{k}")
        self.k = k

    @property
    def total_updates(self) -> int:
        """Weight updates over the run (sets the length of the learning-rate schedule)."""
        return self.total_steps * (self.config.T // self.k)

    def train_step(self, state, x, y):
        """T inference steps in rounds of k, one weight update after each round."""
        cfg, L = self.config, state.model.num_nodes
        mus = state.model.feedforward(x)
        latents0 = tuple(jax.lax.stop_gradient(m) for m in mus)
        target = nudged_target(mus[-1], y.astype(mus[-1].dtype), state.beta, cfg.energy.output)
        loss = get_energy(cfg.energy.output)(latents0[-1], y).mean()
        optimizer = cfg.latent.make()
        step = dict(T=cfg.T, optimizer=optimizer, rule=cfg.lalr, free_nodes=tuple(range(L - 1)),
                    num_nodes=L, latent_grad=cfg.latent_grad)

        def round_(carry, r):
            st, z, zstate = carry

            def energy_fn(free, precision):
                return st.model.energy(x, free + (target,), cfg.energy, precision=precision)

            def inference(c, t):
                z, zstate = c
                z, zstate, info = latent_step(energy_fn, z, zstate, t, **step)
                return (z, zstate), info

            (z, zstate), infos = jax.lax.scan(inference, (z, zstate), r * self.k + jnp.arange(self.k))
            energy, terms, grads = self._weight_grads(st.model, x, z + (target,), latents0, st.beta)
            st = self._apply(st, grads, self._weight_scaler(infos.step_scale[-1]))
            return (st, z, zstate), (infos, energy, mean_layer_energy(terms), terms.error_norm)

        free0 = latents0[:-1]
        rounds = jnp.arange(cfg.T // self.k)
        (state, _, _), (infos, energy, layer_energy, error_norm) = jax.lax.scan(
            round_, (state, free0, optimizer.init(free0)), rounds)
        infos = jax.tree_util.tree_map(lambda a: a.reshape((cfg.T,) + a.shape[2:]), infos)
        # energies of the last round: at the relaxed latents, under the weights that were updated
        trace = jnp.concatenate([infos.layer_energy, layer_energy[-1:]], axis=0)
        acc = jnp.mean(jnp.argmax(latents0[-1], -1) == jnp.argmax(y, -1))
        metrics = {"loss": loss, "energy": energy[-1], "acc": acc, "layer_energy": trace,
                   "error_norm": error_norm[-1], "step_scale": infos.step_scale[-1]}
        return state, metrics


def main(argv=None):
    """Train an MLP on digits with EveryK and print the test accuracy."""
    from pcjax.data import load_dataset
    from pcjax.train import TrainerConfig, fit

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = load_dataset("digits")
    trainer = TrainerConfig(epochs=args.epochs, batch_size=64, chunks_per_epoch=4, seed=args.seed, progress=False)
    steps = int(data.train_x.shape[0] * (1 - trainer.val_fraction)) // trainer.batch_size * trainer.epochs
    config = pj.PCConfig(T=args.T, latent=pj.LatentOptim(lr=0.1, momentum=0.5))
    algo = EveryK(config, pj.WeightOptim(name="adamw", lr=1e-3, weight_decay=1e-4), steps, k=args.k)
    model = pj.build_model("mlp", data.image_shape, data.num_classes, key=jax.random.PRNGKey(args.seed))
    _, record = fit(algo, model, data, trainer)
    print(f"EveryK(k={args.k}, T={args.T}): test accuracy {record['summary']['test_acc']:.4f} "
          f"(best validation epoch {record['summary']['best_epoch']} of {args.epochs})")


if __name__ == "__main__":
    main()
