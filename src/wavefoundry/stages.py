"""Every stage as a library function. The CLI, dvc.yaml and the KFP components call these.

sample-data -> ingest (fetch, extract, list, probe: manifest) -> validate (GX suite,
quarantine) -> store (int16 memmaps + index, data version) -> train (training/) ->
evaluate (score a run on the held-out set, register it) -> promote (registry/).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wavefoundry import tracking
from wavefoundry.config import Config
from wavefoundry.data import get_adapter, schema
from wavefoundry.data.manifest import build_manifest, read_manifest, write_manifest
from wavefoundry.data.store import StoreResult, manifest_columns, store_dataset
from wavefoundry.errors import UserError
from wavefoundry.progress import progress_bar

if TYPE_CHECKING:
    import torch

    from wavefoundry.evaluation.baseline import Baseline
    from wavefoundry.evaluation.scorer import HeldOutSet, Score
    from wavefoundry.families.base import Family
    from wavefoundry.registry.candidates import Candidate
    from wavefoundry.registry.promotion import Contest, Outcome


def sample_data(cfg: Config, datasets: list[str], out: Path | None = None) -> dict[str, Path]:
    """Generate the sample corpora in each dataset's official layout."""
    from wavefoundry.samples import make_sample_data

    return make_sample_data(out or cfg.paths.samples, datasets, cfg.sample_data)


@dataclass
class IngestResult:
    dataset: str
    manifest_path: Path
    clips: int
    usable: int
    problems: dict[str, int]  # status -> count, for rows that are not "ok"
    hours: float
    os_junk: int = 0  # files ignored as OS junk (._*, __MACOSX/, .DS_Store, Thumbs.db, hidden)
    warnings: int = 0  # clips read despite what their header declares (manifest column `warning`)


def ingest(cfg: Config, dataset: str, sources: list[str] | None = None) -> IngestResult:
    """Fetch and unpack the sources, list every clip, probe its audio, write the manifest.
    OS junk in the sources is no clip; it is counted."""
    from wavefoundry.data.download import resolve_sources
    from wavefoundry.data.layout import count_os_junk

    adapter = get_adapter(dataset)
    dataset_cfg = cfg.datasets.for_dataset(dataset)
    sources = sources or dataset_cfg.source
    for source in sources:  # the default source on a fresh clone: say how to make it
        if cfg.paths.is_sample(source) and not Path(source).exists():
            raise UserError(
                f"source not found: {source}, the sample corpus: make it with "
                f"wavefoundry sample-data -d {dataset}, or point datasets.{dataset}.source at "
                "the real corpus"
            )
    dirs = resolve_sources(
        sources,
        cfg.paths.raw(dataset),
        cfg.paths.downloads,
        sha256=dataset_cfg.sha256,
        storage=cfg.storage,
        max_bytes=dataset_cfg.max_archive_bytes,
    )
    rows = adapter.list_clips(dirs, dataset_cfg)
    with progress_bar(f"probing {dataset} audio", len(rows)) as advance:
        manifest = build_manifest(dataset, rows, cfg.workers, advance)
    path = write_manifest(manifest, cfg.paths.manifest(dataset))
    problems = manifest.loc[manifest["status"] != schema.OK, "status"].value_counts().to_dict()
    usable = int((manifest["status"] == schema.OK).sum())
    return IngestResult(
        dataset,
        path,
        len(manifest),
        usable,
        problems,
        float(manifest["duration"].sum() / 3600),
        count_os_junk(dirs),
        int((manifest[schema.WARNING] != "").sum()),
    )


def validate(cfg: Config, dataset: str):
    """Run the dataset's Great Expectations suite over its manifest; write report and quarantine."""
    from wavefoundry.validation import validate_manifest

    get_adapter(dataset)
    manifest = read_manifest(cfg.paths.manifest(dataset))
    return validate_manifest(
        manifest, dataset, cfg.validation.for_dataset(dataset), cfg.paths.validated(dataset)
    )


def store(cfg: Config, dataset: str) -> StoreResult:
    """Write the usable, unquarantined clips into the training store and record the data version."""
    from wavefoundry.validation import quarantined_ids

    adapter = get_adapter(dataset)
    manifest = read_manifest(cfg.paths.manifest(dataset), manifest_columns(dataset))
    quarantined = quarantined_ids(cfg.paths.validated(dataset))
    sample_rate = cfg.datasets.for_dataset(dataset).store_sample_rate or adapter.SAMPLE_RATE
    with progress_bar(
        f"storing {dataset}", int((manifest["status"] == schema.OK).sum())
    ) as advance:
        return store_dataset(
            dataset,
            manifest,
            quarantined,
            cfg.paths.processed(dataset),
            cfg.paths.data_version(dataset),
            sample_rate,
            advance,
        )


@dataclass
class Evaluated:
    candidate: Candidate
    score: Score
    run_name: str
    baseline: Baseline | None = None  # Griffin-Lim on the same held-out set (vocoders, codecs)


def device(cfg: Config) -> torch.device:
    """The device models are scored on (`evaluation.device`)."""
    from wavefoundry.training.step import choose_device

    return choose_device(cfg.evaluation.device, "evaluation.device")


def latest_run(client: Any, cfg: Config, model: str, dataset: str) -> str:
    """The newest finished run of `model` on `dataset` in the experiment that logged a model."""
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = []
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.family = '{model}' and tags.dataset = '{dataset}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
    runs = [run for run in runs if run.data.tags.get(tracking.TAG_MODEL_URI)]
    if not runs:
        raise UserError(
            f"no finished {model} run on {dataset} with a model in experiment "
            f"'{cfg.tracking.experiment}' at {cfg.tracking.uri}: train one first "
            f"(wavefoundry train -m {model} -d {dataset})"
        )
    return runs[0].info.run_id


def score_model(cfg: Config, family: Family, net: torch.nn.Module, held_out: HeldOutSet) -> Score:
    """Score a loaded model, training or loading the note classifier when it is a generator."""
    from wavefoundry.evaluation.scorer import score

    if family.task == "acoustic":
        from wavefoundry.evaluation.voice import voice_for
        from wavefoundry.registry import candidates

        voice = voice_for(cfg, candidates.client(cfg.tracking), family, device(cfg))
        return score(family, net, held_out, None, cfg.evaluation.audio_examples, voice.vocode)
    if family.task != "generator" or held_out.dataset != "nsynth":
        return score(family, net, held_out, None, cfg.evaluation.audio_examples)
    from wavefoundry.evaluation.note_classifier import note_classifier

    classifier, accuracy = note_classifier(cfg)
    result = score(family, net, held_out, classifier, cfg.evaluation.audio_examples)
    result.metrics["classifier_pitch_accuracy"] = accuracy["pitch_accuracy"]
    return result


def held_out_for(cfg: Config, client: Any, family: Family) -> HeldOutSet:
    """The held-out set `family`'s candidates are scored on: whole sentences voiced by the
    current vocoder for an acoustic model, clips cut to evaluation.max_seconds otherwise."""
    from wavefoundry.evaluation.scorer import held_out_set
    from wavefoundry.evaluation.voice import voice_for

    if family.task != "acoustic":
        return held_out_set(cfg, family.data.dataset)
    voice = voice_for(cfg, client, family)
    return held_out_set(cfg, family.data.dataset, whole_clips=True, vocoder=voice.label)


def evaluate(
    cfg: Config,
    run_id: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
) -> Evaluated:
    """Score run `run_id` (else the latest run of `model` on `dataset`) and register it."""
    from mlflow.exceptions import MlflowException

    from wavefoundry.registry import candidates
    from wavefoundry.tracking import load_logged_model

    client = candidates.client(cfg.tracking)
    if run_id is None:
        if not (model and dataset):
            raise UserError("give a run (--run-id) or a model and a dataset (-m, -d)")
        run_id = latest_run(client, cfg, model, dataset)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run {run_id} at {cfg.tracking.uri}") from None
    if run.info.lifecycle_stage == "deleted":
        raise UserError(
            f"run {run_id} was deleted in MLflow: restore it (MLflow UI, the experiment's "
            "deleted runs) to score it"
        )
    model_uri = run.data.tags.get(tracking.TAG_MODEL_URI)
    if not model_uri:
        raise UserError(f"run {run_id} logged no model: it did not finish training")
    family, net = load_logged_model(model_uri, device(cfg))
    from wavefoundry.evaluation import baseline
    from wavefoundry.evaluation.scorer import log_score

    held_out = held_out_for(cfg, client, family)
    result = score_model(cfg, family, net, held_out)
    log_score(run_id, result, held_out.sample_rate)
    floor = None
    if family.task in baseline.TASKS:  # its floor, scored once per held-out set
        floor = baseline.griffin_lim_baseline(cfg, held_out.dataset, held_out.fingerprint)
    candidate = candidates.register(
        client,
        run,
        family.task,
        dataclasses.asdict(family.config),
        result,
    )
    return Evaluated(candidate, result, run.info.run_name, floor)


def rescore(
    cfg: Config, client: Any, candidate: Candidate, fingerprint: str, save: bool
) -> Candidate:
    """`candidate` scored again on the local held-out set, which must be the one `fingerprint`
    names (the challenger's); with `save`, the new score replaces the old on the run and the
    version."""
    from wavefoundry.evaluation.scorer import held_out_set
    from wavefoundry.tracking import load_logged_model

    dataset = candidate.tags.get(tracking.TAG_DATASET, "")
    family, net = load_logged_model(candidate.model_uri, device(cfg))
    held_out = held_out_for(cfg, client, family) if family.task == "acoustic" else None
    held_out = held_out or held_out_set(cfg, dataset)
    if held_out.fingerprint != fingerprint:
        raise UserError(
            f"the challenger was scored on held-out set {fingerprint}, but the {dataset} data "
            f"here gives {held_out.fingerprint} (data version {held_out.data_version[:12]}): "
            "evaluate the challenger again on this data, then promote"
        )
    return _scored_again(cfg, client, candidate, family, net, held_out, save)


def revoice(cfg: Config, client: Any, candidate: Candidate, save: bool) -> Candidate:
    """`candidate` as it is, unless it is an acoustic model whose sentences were voiced by
    another vocoder than its dataset's vocoder champion now: then it is scored again on the
    same data, voiced by that champion (with `save`, the new score replaces the old on the
    run and the version). A pipeline scores its voice before it promotes the vocoder trained
    beside it, so without this its first voice is judged through Griffin-Lim and served
    through the vocoder. A candidate scored on other data than the local is left as it is."""
    from wavefoundry.evaluation.voice import GRIFFIN_LIM, vocoder_label
    from wavefoundry.tracking import load_logged_model

    if candidate.task != "acoustic":
        return candidate
    voiced_by = candidate.tags.get(tracking.TAG_EVAL_VOCODER, "")
    name = tracking.registered_model_name(candidate.dataset, "vocoder")
    champion = tracking.version_by_alias(client, name, cfg.promotion.alias)
    if voiced_by == (vocoder_label(name, str(champion.version)) if champion else GRIFFIN_LIM):
        return candidate  # already voiced by the champion, or there is none to voice it
    family, net = load_logged_model(candidate.model_uri, device(cfg))
    held_out = held_out_for(cfg, client, family)
    # The same clips voiced as it was scored: its fingerprint tells whether the data is the same.
    as_scored = dataclasses.replace(held_out, settings={**held_out.settings, "vocoder": voiced_by})
    if held_out.settings["vocoder"] == voiced_by or as_scored.fingerprint != candidate.fingerprint:
        return candidate  # the champion cannot voice it (other mel), or the data differs
    return _scored_again(cfg, client, candidate, family, net, held_out, save)


def _scored_again(
    cfg: Config,
    client: Any,
    candidate: Candidate,
    family: Family,
    net: torch.nn.Module,
    held_out: HeldOutSet,
    save: bool,
) -> Candidate:
    from wavefoundry.evaluation.scorer import log_score
    from wavefoundry.registry import candidates

    result = score_model(cfg, family, net, held_out)
    if not save:
        tags = {
            k: v for k, v in candidate.tags.items() if not k.startswith(tracking.TAG_EVAL_PREFIX)
        }
        tags.update(candidates.tags_of(result))
        return dataclasses.replace(candidate, tags=tags)
    log_score(candidate.run_id, result, held_out.sample_rate)
    return candidates.update_scores(client, candidate, result)


def _scorers(cfg: Config) -> dict[str, Any]:
    """`rescore` and `revoice` as promotion takes them (registry.promotion.Rescore, Revoice)."""
    from wavefoundry.registry import candidates

    def again(champion: Candidate, fingerprint: str, save: bool) -> Candidate:
        return rescore(cfg, candidates.client(cfg.tracking), champion, fingerprint, save)

    def voiced(challenger: Candidate, save: bool) -> Candidate:
        return revoice(cfg, candidates.client(cfg.tracking), challenger, save)

    return {"rescore": again, "revoice": voiced}


def promote(
    cfg: Config,
    name: str,
    version: str | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Face a challenger with the champion through the gate (registry.promotion.promote); a
    champion scored on other held-out data is scored again here first."""
    from wavefoundry.registry import promotion

    return promotion.promote(cfg, name, version, run_id, dry_run, **_scorers(cfg))


def promote_best(cfg: Config, challengers: list[tuple[str, str]]) -> list[Contest]:
    """Several challengers (registered model, version), best first (registry.promotion.
    promote_best), a stale champion scored again here."""
    from wavefoundry.registry import promotion

    return promotion.promote_best(cfg, challengers, **_scorers(cfg))
