"""The error front: which energy terms and latent gradients can be non-zero at each inference step.

After the feed-forward init z_l = mu_l (l < L) and a clamped output z_L != mu_L, the only non-zero
prediction error is at the output; it moves down one edge (or skip edge) per inference step. Steps
before the front has reached the whole network may skip every term and gradient it has not reached:
they are exactly zero (Gaussian hidden energy: phi(mu, z) and its gradient vanish at z = mu; zero
gradients leave a fresh SGD/Adam state and the latent unchanged), so the result is the same.
"""

from __future__ import annotations

import math

from .inference import ActiveSet


def error_front_schedule(num_nodes: int, skip_edges, T: int) -> tuple[ActiveSet, ...]:
    """Active sets of the inference steps before the error front has reached the whole network.

    At step t, with C the set of latents moved so far, the error of node l can be non-zero iff
    l = L, l in C, or a source of l (z_{l-1} or a skip source) is in C; the gradient of free node l
    can be non-zero iff its own error or the error of a node it feeds can. Returns one ``ActiveSet``
    per step until every term and latent is active.
    """
    return _error_front(num_nodes, skip_edges, T)[0]


def coarsen_schedule(schedule: tuple[ActiveSet, ...], chunk: int | None = None) -> tuple[ActiveSet, ...]:
    """The schedule in chunks of ``chunk`` steps (default: ceil(sqrt(len))) that share the active set of
    their last step, a superset of their own (the sets only grow): the extra terms and gradients are
    exactly zero, so the result is the same, and a chunk's steps compile to one scanned body instead of
    one body per step (compile time ~sqrt(depth) bodies instead of depth)."""
    n = len(schedule)
    if n == 0:
        return schedule
    c = max(1, int(chunk) if chunk else math.ceil(math.sqrt(n)))
    return tuple(schedule[min(n, (t // c + 1) * c) - 1] for t in range(n))


def error_front_terms(num_nodes: int, skip_edges, T: int) -> tuple[int, ...] | None:
    """Nodes whose prediction error can be non-zero after T inference steps from the feed-forward init
    (None: all of them). Only these terms contribute to the weight gradient; the weights of the
    other blocks get an exactly zero gradient (deep networks with T < depth)."""
    return _error_front(num_nodes, skip_edges, T)[1]


def error_nodes(num_nodes: int, skip_edges, moved) -> frozenset[int]:
    """Nodes whose prediction error can be non-zero once the latents ``moved`` (node indices) have left
    the feed-forward init: the output L, each moved node, and each node with a moved source (z_{l-1}
    or a skip source), since eps_l = z_l - mu_l(sources of l) vanishes while none of them has moved."""
    return frozenset(_error_nodes(int(num_nodes), node_sources(num_nodes, skip_edges), set(moved)))


def node_sources(num_nodes: int, skip_edges) -> dict[int, frozenset[int]]:
    """The nodes each prediction mu_l reads, l = 1..L: z_{l-1} and the sources s of the skip edges (s, l)."""
    return {l: frozenset({l - 1} | {s for s, t in skip_edges if t == l}) for l in range(1, int(num_nodes) + 1)}


def _error_nodes(L: int, sources: dict[int, frozenset[int]], moved: set[int]) -> set[int]:
    return {L} | {l for l in range(1, L) if l in moved or sources[l] & moved}


def _error_front(num_nodes: int, skip_edges, T: int):
    L = int(num_nodes)
    sources = node_sources(L, skip_edges)
    feeds = {l: {k for k in range(1, L + 1) if l in sources[k]} for l in range(1, L)}
    all_terms, all_free = set(range(1, L + 1)), set(range(1, L))
    moved: set[int] = set()
    schedule = []

    def error_nodes():
        return _error_nodes(L, sources, moved)

    for _ in range(int(T)):
        terms = error_nodes()
        grads = {l for l in range(1, L) if l in terms or feeds[l] & terms}
        if terms == all_terms and grads == all_free:
            return tuple(schedule), None
        schedule.append(ActiveSet(tuple(sorted(terms)), tuple(l - 1 for l in sorted(grads))))
        moved |= grads
    final = error_nodes()
    return tuple(schedule), (None if final == all_terms else tuple(sorted(final)))
