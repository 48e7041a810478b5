"""`wavefoundry bento build`: a registered model version (the champion by default) into the
BentoML model store, then a Bento of `serving/service.py` carrying it, with pinned
dependencies. `bentoml serve TAG` runs it; `wavefoundry bento containerize TAG` makes an image (containerize.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from wavefoundry import containers, tracking
from wavefoundry.config import Config
from wavefoundry.errors import UserError
from wavefoundry.registry import candidates

SERVICE = "wavefoundry.serving.service:Wavefoundry"
VOICE_SERVICE = "wavefoundry.serving.voice:Voice"  # a tts model, with its dataset's vocoder
# BentoML's Dockerfile template for the Bento, relative to the build context (SOURCE).
DOCKERFILE_TEMPLATE = "wavefoundry/serving/bento.Dockerfile.j2"
SOURCE = Path(__file__).resolve().parents[2]  # the folder holding the wavefoundry package
# What the service imports at run time, pinned to the versions this environment runs.
RUNTIME_PACKAGES = (
    "torch",
    "torchaudio",
    "numpy",
    "soundfile",
    "soxr",  # audio.resample
    "safetensors",
    "pydantic",
    "pyyaml",
    "fastapi",
    "bentoml",
    "unidecode",  # the voice service's text front end
    "inflect",
)


@dataclass
class BuiltBento:
    tag: str
    model_tag: str
    registered_model: str
    version: str
    codec_tag: str = ""  # a code prior's VQ-VAE, the second BentoModel in the Bento


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
    cfg: Config, client: Any, registered_model: str, version: str | None, alias: str = "champion"
) -> tuple[str, candidates.Candidate]:
    """Version `version` of `registered_model` (None: the one `alias` points at now), copied
    into the BentoML model store with an info.json (registry facts and the serving limits);
    returns its BentoML tag and the version."""
    import bentoml

    from wavefoundry.families.io import copy_without_upstream
    from wavefoundry.tracking import download_logged_model

    by_alias = version is None
    if not by_alias:
        chosen = candidates.find(client, registered_model, version)  # one clear error if absent
    else:
        candidates.candidates(client, registered_model)  # one clear error for a missing model
        chosen = candidates.by_alias(client, registered_model, alias)
        if chosen is None:
            raise UserError(
                f"'{registered_model}' has no version with alias '{alias}': promote one first "
                f"(wavefoundry promote --model-name {registered_model})"
            )
    candidates.check_run(client, chosen, f"the {alias}" if by_alias else f"version {version}")
    version = chosen
    info = {
        "registered_model": registered_model,
        "version": version.version,
        "alias": alias if by_alias else "",  # "": chosen by its number
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
            # A code prior without its VQ-VAE's weights: that VQ-VAE is a BentoModel of its own.
            copy_without_upstream(folder, Path(model.path))
            (Path(model.path) / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return str(model.tag), version


def codec_model(
    cfg: Config, client: Any, chosen: candidates.Candidate
) -> tuple[str, candidates.Candidate] | None:
    """The registered VQ-VAE version a code prior was trained on (its upstream tags), into
    the model store as the Bento's second model: (its BentoML tag, the version); None for a
    model built on no other."""
    name = chosen.tags.get(tracking.TAG_CODEC_MODEL)
    number = chosen.tags.get(tracking.TAG_CODEC_VERSION)
    if not name or not number:
        return None
    return import_model(cfg, client, name, number)


def voice_models(
    cfg: Config, client: Any, registered_model: str, version: str | None, alias: str
) -> tuple[str, candidates.Candidate, dict[str, Any]]:
    """A tts model (version `version`, None: the one `alias` points at) and the vocoder
    champion of its dataset into the model store: (acoustic tag, its version, the voice
    service's build arguments). No vocoder champion, or one that reads other mel frames:
    Griffin-Lim voices it (vocoder_tag "")."""
    from wavefoundry.evaluation.voice import voice_for
    from wavefoundry.tracking import load_logged_model

    acoustic_tag, chosen = import_model(cfg, client, registered_model, version, alias)
    family, _ = load_logged_model(chosen.model_uri)
    voice = voice_for(cfg, client, family)
    vocoder_tag = ""
    if voice.name:
        vocoder_tag, _ = import_model(cfg, client, voice.name, voice.version, cfg.promotion.alias)
    return acoustic_tag, chosen, {"acoustic_tag": acoustic_tag, "vocoder_tag": vocoder_tag}


def build(
    cfg: Config, registered_model: str, version: str | None = None, alias: str = "champion"
) -> BuiltBento:
    """A Bento serving version `version` of `registered_model` (None: the version `alias`
    points at when it is built). A pipeline hands on the version its promotion decided on, so
    a promotion elsewhere in between does not change what it ships."""
    import bentoml

    client = candidates.client(cfg.tracking)
    if registered_model.endswith(f"-{tracking.REGISTERED_TASK_NAMES['acoustic']}"):
        model_tag, version, model_args = voice_models(cfg, client, registered_model, version, alias)
        service = VOICE_SERVICE
    else:
        model_tag, version = import_model(cfg, client, registered_model, version, alias)
        model_args, service = {"model_tag": model_tag, "task": version.task}, SERVICE
        codec = codec_model(cfg, client, version)
        if codec is not None:
            model_args["codec_tag"] = codec[0]
    # BentoML reads a Dockerfile template only from under the working directory, and builds a
    # Bento with one in its v1 layout, by design here: its warning says so at every build.
    build_log = logging.getLogger("bentoml.build")  # where _bentoml_sdk/images.py warns
    with contextlib.chdir(SOURCE), _without(build_log, "dockerfile_template is not supported"):
        bento = bentoml.bentos.build(
            service,
            name=bento_model_name(f"wavefoundry-{registered_model.removeprefix('wavefoundry-')}"),
            labels={"registered_model": registered_model, "version": version.version},
            description=f"{registered_model} version {version.version} ({version.family})",
            build_ctx=str(SOURCE),
            include=["wavefoundry/**/*.py"],
            exclude=["__pycache__"],
            python={"packages": pinned_requirements(), "lock_packages": False},
            # The component image is the base (it has every pinned package): see containerize.
            docker={"base_image": containers.IMAGE, "dockerfile_template": DOCKERFILE_TEMPLATE},
            args={
                **model_args,
                "max_concurrency": cfg.serving.max_concurrency,
                "timeout": cfg.serving.timeout,
                "max_upload_bytes": cfg.serving.max_upload_bytes,
            },
        )
    # The version says which Bento ships it: ops read it in the MLflow UI, the pipeline's summary too.
    client.set_model_version_tag(
        registered_model, version.version, tracking.TAG_BENTO, str(bento.tag)
    )
    return BuiltBento(
        str(bento.tag),
        model_tag,
        registered_model,
        version.version,
        model_args.get("codec_tag", ""),
    )


def existing(tag: str) -> str | None:
    """`tag` if the BentoML store has that Bento, else None."""
    import bentoml

    if not tag:
        return None
    try:
        return str(bentoml.bentos.get(tag).tag)
    except bentoml.exceptions.NotFound:
        return None


def export(tag: str, folder: Path) -> Path:
    """The Bento as one `.bento` archive in `folder` (a pipeline's Model artifact); on another
    machine `bentoml import FILE` puts it in that store, then `bentoml serve TAG`."""
    import bentoml

    folder.mkdir(parents=True, exist_ok=True)
    return Path(bentoml.export_bento(tag, str(folder / f"{tag.replace(':', '-')}.bento")))


@contextlib.contextmanager
def _without(logger: logging.Logger, text: str) -> Any:
    """`logger` drops the records whose message contains `text` while in the block."""

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return text not in record.getMessage()

    drop = Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
