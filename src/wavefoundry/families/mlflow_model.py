"""A trained network as an MLflow pyfunc model, logged as code: nothing in it is pickled.

MLflow runs this file when the model loads; the weights come from the logged `model/`
artifact (safetensors + config.json). Input: 1-D float32 audio at the model's sample rate
(empty for generators); params: speaker, pitch, seed, seconds. Output: 1-D float32 audio.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class WavefoundryModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from wavefoundry.families.io import load_model

        self.family, self.net = load_model(context.artifacts["model"])

    # np.ndarray is a hint MLflow takes as "no signature to infer" (mlflow.types.type_hints):
    # without any hint it warns at every load, with others it would validate against a schema.
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        import torch

        audio = torch.as_tensor(np.asarray(model_input, dtype=np.float32)).flatten()
        conditions = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        generated = self.family.synthesize(self.net, audio if audio.numel() else None, conditions)
        return generated.detach().cpu().numpy().astype(np.float32)


mlflow.models.set_model(WavefoundryModel())
