"""The pipeline's compiled spec: `dag.training_pipeline` compiled by the KFP compiler, from
the installed package (no checkout needed), and the checked-in package other tools read."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from wavefoundry.errors import UserError

# The checked-in compile, relative to the project folder (as params.yaml is).
COMPILED = Path("pipelines") / "compiled" / "training_pipeline.yaml"


def compile_pipeline(out: Path = COMPILED, image: str | None = None) -> Path:
    """Compile the pipeline to `out`; `image` replaces the components' image (BASE_IMAGE)."""
    from kfp import compiler

    from wavefoundry.containers import check_image_reference
    from wavefoundry.pipeline.components import BASE_IMAGE
    from wavefoundry.pipeline.dag import training_pipeline

    if image:  # before the checked-in compile is overwritten
        check_image_reference(image)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(out))
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
    """The pipeline's parameters and their defaults (None: it has none, a value is needed)."""
    from kfp.local import executor_output_utils

    return {
        name: executor_output_utils.pb2_value_to_python(p.default_value)
        if p.HasField("default_value")
        else None
        for name, p in spec.root.input_definitions.parameters.items()
    }


# What a value of each KFP parameter type must be (pipeline_spec ParameterType numbers).
_PARAMETER_TYPES: dict[int, tuple[tuple[type, ...], str]] = {
    1: ((int, float), "a number"),  # NUMBER_DOUBLE
    2: ((int,), "a whole number"),  # NUMBER_INTEGER
    3: ((str,), "a string"),  # STRING
    4: ((bool,), "true or false"),  # BOOLEAN
    5: ((list,), "a list, e.g. [a, b]"),  # LIST
    6: ((dict,), "a mapping, e.g. {key: value}"),  # STRUCT
}


def check_arguments(spec: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` as the pipeline takes them, or a UserError naming each name the pipeline has
    no parameter for (with the parameters it has, sorted: the spec's own order changes from one
    load to the next), or the first value of the wrong type. A number or true/false given for
    a string parameter becomes its text (`--param gpu_type=4090`)."""
    known = parameters(spec)
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise UserError(
            f"the pipeline has no parameter {', '.join(unknown)} (it has: {', '.join(sorted(known))})"
        )
    checked = dict(arguments)
    definitions = spec.root.input_definitions.parameters
    for name, value in sorted(arguments.items()):
        kind = definitions[name].parameter_type
        if kind not in _PARAMETER_TYPES:
            continue
        types, what = _PARAMETER_TYPES[kind]
        if str in types and isinstance(value, int | float | bool):
            checked[name] = str(value).lower() if isinstance(value, bool) else str(value)
        elif not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UserError(f"pipeline parameter {name} takes {what}, got {value!r}")
    return checked
