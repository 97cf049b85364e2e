"""The training half of each model kind, one module each, registered in one table.

Adding a kind: write its module (a TrainingKind named KIND) and add it to _MODULES.
"""

from __future__ import annotations

from service.core.kinds.base import ModelKind
from service.training.kinds import ich, weaning
from service.training.kinds.base import TrainingKind

TRAINING_KINDS: dict[str, TrainingKind] = {m.KIND.name: m.KIND for m in (weaning, ich)}


def of(kind: ModelKind | TrainingKind | str) -> TrainingKind:
    """The training kind for a core ModelKind (or its name)."""
    name = kind if isinstance(kind, str) else kind.name
    try:
        return TRAINING_KINDS[name]
    except KeyError:
        raise ValueError(
            f"no training recipe for model kind {name!r}; known: {sorted(TRAINING_KINDS)}"
        ) from None
