"""Do the ``<image>`` and ``<|endofchunk|>`` embeddings need to learn? (paper, open question)

``trainable`` learns only those two rows, in a small table beside the frozen matrix, on the input
and the output side; ``input_only`` learns them on the input side only and leaves the head's
rows as the LM's resize made them (what the reference's training does, which also trains the
rest of the input matrix); ``frozen`` keeps the rows the resize gave them. The new rows start as
the resize leaves them, or as ``init_mean`` (the mean of the vocabulary's rows), ``init_random``
(normal around it) or ``init_copy`` (the end-of-text token's row); ``lr_x10`` and ``lr_x0.1``
give them their own learning rate (10 and 0.1 times the run's).
"""

from workbench.axes import Axis
from workbench.spec import RunSpec

AXIS = Axis("special_embeddings", __doc__.splitlines()[0], baseline="trainable")


@AXIS.variant("trainable")
def trainable(spec: RunSpec) -> RunSpec:
    return spec.override({"model.special_embeddings": "trainable"})


@AXIS.variant("frozen")
def frozen(spec: RunSpec) -> RunSpec:
    return spec.override({"model.special_embeddings": "frozen"})


def _trainable(**options: object):
    def apply(spec: RunSpec) -> RunSpec:
        changes = {f"model.special_embeddings.{k}": v for k, v in options.items()}
        return spec.override({"model.special_embeddings": "trainable", **changes})

    return apply


AXIS.variant("input_only")(_trainable(output=False))
for _init in ("mean", "random", "copy"):
    AXIS.variant(f"init_{_init}")(_trainable(init=_init))
AXIS.variant("lr_x10")(_trainable(lr_scale=10.0))
AXIS.variant("lr_x0.1")(_trainable(lr_scale=0.1))
