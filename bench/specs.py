"""What the benchmark runs: the timed entries of :mod:`bench.registry`, keyed by name.

The registry is the one table of every public loss (the tests read it too); this module is the
bench's view of it. An entry is timed unless it says why not (``not_timed``) or is a second
configuration of a loss (``variant``). Each entry builds its positional inputs (float32) from a
jax key at the "quick" or "full" size, gives the keyword arguments shared by jaxloss, optax and
torch (``bench_kwargs``, else ``kwargs``), its PyTorch counterpart in ``torch.nn.functional``
(``torch(F, *inputs)``, the unreduced loss) and its speed targets (issue 7). Names in
``jaxloss.__all__`` that are not timed are reported as "not benchmarked", with the reason.

The optax reference is ``optax.losses.<name>`` unless the entry names another function; a loss
compared with optax's function of the same name has the default target ``ratio <= 1.05``.
"""

from __future__ import annotations

from bench import registry

Spec = registry.Loss  # one class: a registry entry is what the bench times

# Forward+backward targets from issue 7 (ratio jaxloss / optax, same run).
SHARED_WITH_OPTAX_TARGET = registry.SHARED_WITH_OPTAX_TARGET
# Elementwise losses at full size: forward+backward time within this factor of the floor.
FLOOR_TARGET = registry.FLOOR_TARGET

SPECS: dict[str, Spec] = {entry.name: entry for entry in registry.LOSSES if entry.timed}

# Names in ``jaxloss.__all__`` that are deliberately not timed, and why.
NOT_TIMED: dict[str, str] = {
    **registry.NON_LOSSES,
    **{entry.name: entry.not_timed for entry in registry.LOSSES
       if entry.not_timed and not entry.variant},
}
