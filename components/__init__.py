"""Kubeflow lightweight components, one per stage of the lifecycle. Each is a few lines that
call `wavefoundry.pipeline.steps`; every one runs in the image `BASE_IMAGE` names
(components/Dockerfile), or, on a local run, in this project's own environment."""

from components.bento import build_bento
from components.data_revision import resolve_data_revision
from components.evaluate import evaluate
from components.image import BASE_IMAGE
from components.ingest import ingest
from components.outcome import record_outcome
from components.promote import promote
from components.train import train
from components.validate import validate

__all__ = [
    "BASE_IMAGE",
    "build_bento",
    "resolve_data_revision",
    "evaluate",
    "ingest",
    "promote",
    "record_outcome",
    "train",
    "validate",
]
