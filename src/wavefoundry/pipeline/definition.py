"""The pipeline's definition (pipelines/training_pipeline.py in the checkout, over the
components in components/) and its compiled spec."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from wavefoundry.errors import UserError

REPO = Path(__file__).resolve().parents[3]
COMPILED = REPO / "pipelines" / "compiled" / "training_pipeline.yaml"


def pipeline_function() -> Any:
    """`training_pipeline`, imported from the checkout this package was installed from."""
    if not (REPO / "pipelines" / "training_pipeline.py").is_file():
        raise UserError(
            f"no pipelines/training_pipeline.py under {REPO}: the pipeline commands work in a "
            "checkout of wavefoundry (uv sync installs it from there)"
        )
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pipelines.training_pipeline import training_pipeline

    return training_pipeline


def compile_pipeline(out: Path = COMPILED, image: str | None = None) -> Path:
    """Compile the pipeline to `out`; `image` replaces the components' image (BASE_IMAGE)."""
    from kfp import compiler

    function = pipeline_function()
    from components.image import BASE_IMAGE  # importable once pipeline_function found the checkout

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(function, str(out))
    if image and image != BASE_IMAGE:
        text = out.read_text()
        out.write_text(text.replace(f"image: {BASE_IMAGE}\n", f"image: {image}\n"))
    return out


def load_spec(package: Path | None = None) -> Any:
    """The PipelineSpec of a compiled package, or of a fresh compile of the definition."""
    from kfp import components

    if package is not None:
        if not package.is_file():
            raise UserError(f"no compiled pipeline at {package}: run wavefoundry pipeline compile")
        return components.load_component_from_file(str(package)).pipeline_spec
    with tempfile.TemporaryDirectory() as tmp:
        return load_spec(compile_pipeline(Path(tmp) / "pipeline.yaml"))


def parameters(spec: Any) -> dict[str, Any]:
    """The pipeline's parameters and their defaults."""
    from kfp.local import executor_output_utils

    return {
        name: executor_output_utils.pb2_value_to_python(p.default_value)
        for name, p in spec.root.input_definitions.parameters.items()
    }
