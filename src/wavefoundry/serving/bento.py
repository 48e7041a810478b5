"""`wavefoundry bento build`: a registered model version (the champion by default) into the
BentoML model store, then a Bento of `serving/service.py` carrying it, with pinned
dependencies. `bentoml serve TAG` runs it; `bentoml containerize TAG` makes an image."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from wavefoundry import tracking
from wavefoundry.config import Config
from wavefoundry.errors import UserError
from wavefoundry.registry import candidates

SERVICE = "wavefoundry.serving.service:Wavefoundry"
SOURCE = Path(__file__).resolve().parents[2]  # the folder holding the wavefoundry package
# What the service imports at run time, pinned to the versions this environment runs.
RUNTIME_PACKAGES = (
    "torch",
    "torchaudio",
    "numpy",
    "soundfile",
    "safetensors",
    "pydantic",
    "pyyaml",
    "fastapi",
    "bentoml",
)


@dataclass
class BuiltBento:
    tag: str
    model_tag: str
    registered_model: str
    version: str


def pinned_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def bento_model_name(registered_model: str) -> str:
    """A BentoML name for a registered model: lower case letters, digits and `-._`, at most
    63 characters (BentoML's tag rule; MLflow allows spaces, capitals and more)."""
    ascii_name = unicodedata.normalize("NFKD", registered_model).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9._-]+", "-", ascii_name.replace("_", "-").lower())
    name = name.strip("-._")[:63].rstrip("-._")
    if not name:
        raise UserError(
            f"registered model name {registered_model!r} has nothing a BentoML name can hold "
            "(letters, digits, '-', '.', '_'): rename it in MLflow"
        )
    return name


def import_model(
    cfg: Config, client: Any, registered_model: str, alias: str
) -> tuple[str, candidates.Candidate]:
    """The version `alias` points at, copied into the BentoML model store with an info.json
    (registry facts and the serving limits); returns its BentoML tag."""
    import bentoml

    from wavefoundry.tracking import download_logged_model

    candidates.candidates(client, registered_model)  # one clear error for a missing model
    version = candidates.by_alias(client, registered_model, alias)
    if version is None:
        raise UserError(
            f"'{registered_model}' has no version with alias '{alias}': promote one first "
            f"(wavefoundry promote --model-name {registered_model})"
        )
    candidates.check_run(client, version, f"the {alias}")
    info = {
        "registered_model": registered_model,
        "version": version.version,
        "alias": alias,
        "run_id": version.run_id,
        "model_uri": version.model_uri,
        "tracking_uri": cfg.tracking.uri,
        "data_version": version.tags.get(tracking.TAG_DATA_VERSION, ""),
        "eval_data_version": version.tags.get(tracking.TAG_EVAL_DATA_VERSION, ""),
        "metrics": version.metrics,
        # The registered models this one is built on (a code prior's VQ-VAE), by version.
        "upstream": {k: version.tags[k] for k in tracking.UPSTREAM_TAGS if k in version.tags},
        "limits": cfg.serving.model_dump(mode="json"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_logged_model(version.model_uri, Path(tmp))
        with bentoml.models.create(
            bento_model_name(registered_model),
            labels={"registered_model": registered_model, "version": version.version},
            metadata={k: v for k, v in info.items() if k != "metrics"},
        ) as model:
            for name in ("model.safetensors", "config.json"):
                shutil.copy2(folder / name, Path(model.path) / name)
            (Path(model.path) / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return str(model.tag), version


def build(cfg: Config, registered_model: str, alias: str = "champion") -> BuiltBento:
    import bentoml

    client = candidates.client(cfg.tracking)
    model_tag, version = import_model(cfg, client, registered_model, alias)
    bento = bentoml.bentos.build(
        SERVICE,
        name=bento_model_name(f"wavefoundry-{registered_model.removeprefix('wavefoundry-')}"),
        labels={"registered_model": registered_model, "version": version.version},
        description=f"{registered_model} version {version.version} ({version.family})",
        build_ctx=str(SOURCE),
        include=["wavefoundry/**/*.py"],
        exclude=["__pycache__"],
        python={"packages": pinned_requirements(), "lock_packages": False},
        docker={"python_version": "3.11"},
        args={
            "model_tag": model_tag,
            "max_concurrency": cfg.serving.max_concurrency,
            "timeout": cfg.serving.timeout,
            "max_upload_bytes": cfg.serving.max_upload_bytes,
        },
    )
    # The version says which Bento ships it: ops read it in the MLflow UI, the pipeline's summary too.
    client.set_model_version_tag(
        registered_model, version.version, tracking.TAG_BENTO, str(bento.tag)
    )
    return BuiltBento(str(bento.tag), model_tag, registered_model, version.version)


def export(tag: str, folder: Path) -> Path:
    """The Bento as one `.bento` archive in `folder` (a pipeline's Model artifact); on another
    machine `bentoml import FILE` puts it in that store, then `bentoml serve TAG`."""
    import bentoml

    folder.mkdir(parents=True, exist_ok=True)
    return Path(bentoml.export_bento(tag, str(folder / f"{tag.replace(':', '-')}.bento")))
