"""`ModelSpec`: what a worker loads for one row of the table."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A row, its `.weights.h5` (None: seeded random init) and the weights' identity."""

    name: str
    weights: str | None
    key: str  # identity of the weights, recorded with every shard
    seed: int = 0  # of Keras' initialisers, when `weights` is None
