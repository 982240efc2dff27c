"""Registration of the built-in algorithms: ``pc`` (state PC and its variants), ``epc``, ``pcalm``, ``bp``.

``pc`` reads its parts from the ``algorithm`` config node: ``variant`` (``pc``: Equilibrium,
``fu``: ForwardUpdate, ``ipc``: Incremental), ``contrast`` (wraps the rule in Contrastive) and
``nudge`` (``clamp``: Clamp, ``soft``: SoftNudge). A combination that makes no sense fails in the
parts' own checks, naming both parts. ``epc`` is the same step with parameterisation ``Errors``: it
reads ``variant`` and ``contrast`` as ``pc`` does (``ipc`` is refused by the parameterisation) and its
target from ``algorithm.params.target``; ``nudge`` does not apply to it. ``pcalm`` (its parts are
fixed) and ``bp`` have no target or update-rule parts: setting ``variant``, ``contrast`` or ``nudge``
for them is refused, not ignored.
"""

from __future__ import annotations

from ..errors import ConfigError
from .alm import PCALM
from .bp import Backprop
from .epc import EPC
from .pc import PC, PCConfig
from .registry import BuildContext, algorithm_params, register_algorithm
from .targets import Clamp, SoftNudge
from .updates import Contrastive, Equilibrium, ForwardUpdate, Incremental

UPDATES = {"pc": Equilibrium, "fu": ForwardUpdate, "ipc": Incremental}
TARGETS = {"clamp": Clamp, "soft": SoftNudge}


def _choice(field: str, value: str, table: dict):
    try:
        return table[value]()
    except KeyError:
        raise ConfigError(f"{field} must be one of {', '.join(table)}; got {value!r}") from None


def update_rule(ctx: BuildContext):
    """The update rule of ``algorithm.variant`` (wrapped in ``Contrastive`` with ``algorithm.contrast``)."""
    a = ctx.algorithm
    update = _choice("algorithm.variant", a.get("variant", "pc"), UPDATES)
    return Contrastive(update) if a.get("contrast") else update


def pc_config(ctx: BuildContext) -> PCConfig:
    """The ``PCConfig`` (with its parts) of the ``algorithm`` config node."""
    a = ctx.algorithm
    update = update_rule(ctx)
    inf = ctx.inference
    return PCConfig(T=inf.T, latent=inf.optim, energy=ctx.energy, lalr=inf.lalr, lalr_weights=ctx.lalr_weights,
                    beta=a["beta"], latent_grad=inf.latent_grad, eval_steps=a.get("eval_steps", 0),
                    target=_choice("algorithm.nudge", a.get("nudge", "clamp"), TARGETS), update=update,
                    tol=inf.tol, tol_on=inf.tol_on, min_steps=inf.min_steps)


@register_algorithm("pc", hydra_config=False)
def build_pc(ctx: BuildContext) -> PC:
    """State PC from its parts (no ``algorithm.params``: its parts are chosen by named keys)."""
    algorithm_params(ctx)
    return PC(pc_config(ctx), ctx.weight_optim, ctx.total_steps, runtime=ctx.runtime)


PART_DEFAULTS = {"variant": "pc", "contrast": False, "nudge": "clamp"}


def refuse_parts(ctx: BuildContext, keys=tuple(PART_DEFAULTS)) -> None:
    """Refuse ``algorithm.variant/contrast/nudge`` (those of ``keys``) for an algorithm that has no such parts."""
    a, name = ctx.algorithm, ctx.algorithm["name"]
    for key in keys:
        default = PART_DEFAULTS[key]
        value = a.get(key, default)
        if value != default:
            raise ConfigError(f"algorithm.{key}={value!r} does not apply to algorithm {name!r}: it has no "
                              f"{'update-rule' if key != 'nudge' else 'target'} part to choose (remove the override; "
                              f"the update rules and targets belong to algorithm=pc)")


@register_algorithm("epc", hydra_config=False)
def build_epc(ctx: BuildContext) -> EPC:
    """ePC (errors as the free variables); ``algorithm.params.target``: ``weighted`` (beta weighs the output
    term toward y) or ``nudged`` (output term of weight 1 toward mu_L + beta (y - mu_L));
    ``algorithm.params.reuse_sweep`` (false): the energy reuses the sweep's predictions (``Errors``);
    ``algorithm.variant`` (``pc`` | ``fu``) and ``algorithm.contrast`` choose the update rule as for ``pc``."""
    a = ctx.algorithm
    if a.get("nudge", "clamp") != "clamp":
        raise ConfigError(f"algorithm.nudge={a['nudge']!r} does not apply to algorithm 'epc': its target is "
                          "algorithm.params.target (weighted | nudged); remove the override")
    p = algorithm_params(ctx, target="weighted", reuse_sweep=False)
    if not isinstance(p["reuse_sweep"], bool):
        raise ConfigError(f"algorithm.params.reuse_sweep must be true or false; got {p['reuse_sweep']!r}")
    return EPC(ctx.inference, ctx.energy, ctx.weight_optim, ctx.total_steps, beta=a["beta"],
               target=str(p["target"]), runtime=ctx.runtime, reuse_sweep=p["reuse_sweep"], update=update_rule(ctx),
               lalr_weights=ctx.lalr_weights, eval_steps=a.get("eval_steps", 0))


@register_algorithm("pcalm", hydra_config=False)
def build_pcalm(ctx: BuildContext) -> PCALM:
    """PC-ALM (states and duals freed); ``algorithm.params``: ``rho`` (penalty) and ``dual_lr`` (dual ascent).
    Its output is held at the label: ``algorithm.beta`` must be 1 (and not ``random_sign``-scheduled)."""
    refuse_parts(ctx)
    a = ctx.algorithm
    if float(a.get("beta", 1.0)) != 1.0 or a.get("beta_schedule", "constant") == "random_sign":
        raise ConfigError(f"algorithm.beta={a.get('beta')!r} (beta_schedule={a.get('beta_schedule', 'constant')!r}) "
                          "does not apply to algorithm 'pcalm': its energy holds the output at the label (beta = 1); "
                          "remove the override")
    p = algorithm_params(ctx, rho=1.0, dual_lr=1.0)
    return PCALM(ctx.inference, ctx.energy, ctx.weight_optim, ctx.total_steps, rho=float(p["rho"]),
                 dual_lr=float(p["dual_lr"]), runtime=ctx.runtime, lalr_weights=ctx.lalr_weights,
                 eval_steps=a.get("eval_steps", 0))


@register_algorithm("bp", hydra_config=False)
def build_bp(ctx: BuildContext) -> Backprop:
    """Backprop; its loss is ``algorithm.loss``, or the output energy term when that is unset."""
    refuse_parts(ctx)
    algorithm_params(ctx)
    loss = ctx.algorithm.get("loss") or ctx.energy.output
    return Backprop(ctx.weight_optim, ctx.total_steps, loss=loss, runtime=ctx.runtime)
