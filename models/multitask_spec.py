"""MultiTask's fixed definition (weights, features, classes, example inputs) and its outputs computed in numpy.

The weights are constants here, not from the json. The numpy computation is the reference that ``--check``
and the tests compare the saved model with.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MultiTaskModel:
    name: str = "MultiTask"
    version: int = 1

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


# MultiTask's weights, chosen by hand so its outputs are easy to check:
#   x = [age, income]                         float32 [batch, 2]
#   h = relu(x @ W1 + b1)                     shared layer, [batch, 3]
#   scores = softmax(h @ W2 + b2)             classes low, medium, high, [batch, 3]
#   prediction = h @ W3 + b3                  regression, [batch, 1]
# For (age=31, income=5.2): h = [0.15, 2.65, 5.7] (all units active), logits
# [-0.5875, 2.5875, 1.675], prediction 2.05; for (age=45, income=1.0):
# h = [5.75, 0 (relu of -9.25), 1.5], logits [2.875, 0.875, -3.5], prediction 7.375.
MULTITASK = MultiTaskModel()
MULTITASK_FEATURES = ("age", "income")
MULTITASK_CLASSES = ("low", "medium", "high")
MULTITASK_W1 = ((0.25, -0.25, 0.0),
                (-0.5, 2.0, 1.0))
MULTITASK_B1 = (-5.0, 0.0, 0.5)
MULTITASK_W2 = ((0.5, 0.0, -0.5),
                (-0.25, 0.25, 0.5),
                (0.0, 0.25, 0.25))
MULTITASK_B2 = (0.0, 0.5, -1.0)
MULTITASK_W3 = ((1.0,),
                (0.5,),
                (-0.25,))
MULTITASK_B3 = (2.0,)
MULTITASK_EXAMPLES = ({"age": 31.0, "income": 5.2}, {"age": 45.0, "income": 1.0})


def multitask_numpy(age, income) -> dict:
    """MultiTask's outputs computed in numpy (float32): {'scores', 'classes', 'prediction'}."""
    import numpy as np

    f32 = np.float32
    x = np.stack([np.asarray(age, f32).reshape(-1), np.asarray(income, f32).reshape(-1)], axis=1)
    h = np.maximum(x @ np.array(MULTITASK_W1, f32) + np.array(MULTITASK_B1, f32), f32(0))
    logits = h @ np.array(MULTITASK_W2, f32) + np.array(MULTITASK_B2, f32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = (e / e.sum(axis=1, keepdims=True)).astype(f32)
    prediction = (h @ np.array(MULTITASK_W3, f32) + np.array(MULTITASK_B3, f32)).astype(f32)
    classes = np.tile(np.array([c.encode() for c in MULTITASK_CLASSES], dtype=object), (len(x), 1))
    return {"scores": scores, "classes": classes, "prediction": prediction}
