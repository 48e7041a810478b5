"""Typed configuration: `params.yaml`, an optional recipe from `configs/`, and `--set` overrides.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key or a bad value
stops the run before any work, with one line naming the key (see `ConfigError`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from wavefoundry.errors import UserError

DatasetName = Literal["ljspeech", "vctk", "nsynth"]
DATASETS: tuple[str, ...] = ("ljspeech", "vctk", "nsynth")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
# The model families (models/<name>.py); their configs are dataclasses in those files.
FamilyName = Literal[
    "wavenet",
    "vqvae",
    "hifigan",
    "wavegan",
    "samplernn",
    "code_prior",
    "tacotron2",
    "waveglow",
    "vae",
    "vocos",
]
FAMILIES: tuple[str, ...] = get_args(FamilyName)
# What a model does, which decides how it is scored and which registered model it joins:
# audio from a mel (vocoder), audio through discrete codes (codec), audio from labels (generator),
# mel frames from text (acoustic: text-to-speech, voiced by the dataset's vocoder champion).
TASKS: tuple[str, ...] = ("vocoder", "codec", "generator", "acoustic")


class ConfigError(UserError):
    """A config file or override that does not fit the schema."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsConfig(Section):
    """Where each stage reads and writes, relative to the working directory."""

    data: Path = Path("data")
    runs: Path = Path("runs")  # checkpoints and exported models, one folder per dataset-model

    def run(self, dataset: str, model: str) -> Path:
        return self.runs / f"{dataset}-{model}"

    @property
    def samples(self) -> Path:
        return self.data / "sample"

    def is_sample(self, source: str) -> bool:
        """Whether `source` (a path or URL) lies in the sample corpora's folder."""
        return "://" not in source and self.samples.resolve() in Path(source).resolve().parents

    @property
    def downloads(self) -> Path:
        return self.data / "downloads"

    def raw(self, dataset: str) -> Path:
        return self.data / "raw" / dataset

    def manifest(self, dataset: str) -> Path:
        return self.data / "manifest" / f"{dataset}.parquet"

    def validated(self, dataset: str) -> Path:
        return self.data / "validated" / dataset

    def processed(self, dataset: str) -> Path:
        return self.data / "processed" / dataset

    def data_version(self, dataset: str) -> Path:
        # Beside the processed folder, not inside it: writing it inside would change the hash.
        return self.data / "processed" / f"{dataset}.version.json"


class StorageConfig(Section):
    """Object storage for `s3://` sources. Credentials come from boto3's usual chain."""

    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"


class SplitConfig(Section):
    """How clips are assigned to train/valid/test. NSynth always keeps its own splits."""

    by: Literal["hash", "speaker"] = "hash"
    valid_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    valid_speakers: list[str] = []
    test_speakers: list[str] = []

    @model_validator(mode="after")
    def _whole_speakers(self) -> SplitConfig:
        """A split by speaker names the speakers of both held-out splits, each in one: with
        none named, that split would be empty and training or scoring would have no data."""
        if self.by != "speaker":
            return self
        missing = [k for k in ("valid_speakers", "test_speakers") if not getattr(self, k)]
        if missing:
            raise ValueError(
                f"a split by speaker holds out whole speakers: name {' and '.join(missing)} "
                "(e.g. valid_speakers: [p226], test_speakers: [p225]), or that split is empty"
            )
        both = sorted(set(self.valid_speakers) & set(self.test_speakers))
        if both:
            raise ValueError(f"{', '.join(both)} in both valid_speakers and test_speakers")
        return self


class DatasetConfig(Section):
    """One dataset: where it comes from and how it is stored."""

    source: list[str] = Field(
        default_factory=list,
        description="Directory, archive, http(s) URL or s3:// URI; several for NSynth's split archives.",
    )
    sha256: dict[str, str] = Field(
        default_factory=dict, description="Expected sha256 per source (file name or URL)."
    )
    mic: Literal["mic1", "mic2"] = "mic1"
    split: SplitConfig = SplitConfig()
    store_sample_rate: int | None = Field(
        None, gt=0, description="Resample when storing; None keeps the dataset's own rate."
    )
    max_archive_bytes: int = Field(
        64 * 2**30, gt=0, description="Refuse archives expanding past this."
    )

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ValidationRules(Section):
    """Thresholds of one dataset's Great Expectations suite.

    `*_mostly` is the fraction of clips that must pass a per-clip expectation for the suite
    to pass; the clips that fail are quarantined either way.
    """

    sample_rate: int = Field(gt=0)
    channels: int = 1
    subtypes: list[str] = ["PCM_16"]
    min_duration: float = Field(0.5, ge=0.0)
    max_duration: float = Field(12.0, gt=0.0)
    duration_mostly: float = Field(0.98, ge=0.0, le=1.0)
    max_clipping: float = Field(0.001, ge=0.0, le=1.0)
    clipping_mostly: float = Field(0.95, ge=0.0, le=1.0)
    max_silence: float = Field(0.6, ge=0.0, le=1.0)
    silence_mostly: float = Field(0.95, ge=0.0, le=1.0)
    max_dc_offset: float = Field(0.05, ge=0.0, le=1.0)  # |mean sample value|, full scale 1.0
    dc_offset_mostly: float = Field(0.95, ge=0.0, le=1.0)
    readable_mostly: float = Field(0.95, ge=0.0, le=1.0)
    format_mostly: float = Field(0.95, ge=0.0, le=1.0)
    require_text: bool = False
    text_mostly: float = Field(0.98, ge=0.0, le=1.0)
    pitch_range: tuple[int, int] | None = None
    velocities: list[int] | None = None
    min_clips: int = Field(1, ge=0)


class ValidationConfig(Section):
    ljspeech: ValidationRules = ValidationRules(
        sample_rate=22050, min_duration=0.5, max_duration=12.0, require_text=True
    )
    vctk: ValidationRules = ValidationRules(
        sample_rate=48000,
        min_duration=0.5,
        max_duration=20.0,
        require_text=True,
        # VCTK 0.92 ships p315 with no transcripts: those clips are quarantined, not the suite.
        text_mostly=0.8,
    )
    nsynth: ValidationRules = ValidationRules(
        sample_rate=16000,
        min_duration=3.99,
        max_duration=4.01,
        # Notes decay to silence in their last second, and some instruments are quiet.
        max_silence=0.9,
        pitch_range=(21, 108),
        velocities=[25, 50, 75, 100, 127],
    )

    def for_dataset(self, name: str) -> ValidationRules:
        return getattr(self, name)


class SampleDataConfig(Section):
    """Sizes of the generated sample corpora (the demo's and the tests' data)."""

    seed: int = 0
    ljspeech_clips: int = Field(48, ge=1)
    vctk_speakers: int = Field(6, ge=2)
    vctk_clips_per_speaker: int = Field(8, ge=1)
    nsynth_instruments_per_split: dict[str, int] = {"train": 6, "valid": 2, "test": 2}
    nsynth_notes_per_instrument: int = Field(4, ge=1)


class DatasetsConfig(Section):
    ljspeech: DatasetConfig = DatasetConfig(source=["data/sample/LJSpeech-1.1"])
    vctk: DatasetConfig = DatasetConfig(source=["data/sample/VCTK-Corpus-0.92"])
    nsynth: DatasetConfig = DatasetConfig(source=["data/sample/nsynth"])

    def for_dataset(self, name: str) -> DatasetConfig:
        return getattr(self, name)


class TrainingKeys(Section):
    """How a training run goes, for every family. The model's own sizes, learning rate and
    segment length are under `models.<name>` (the dataclass at the top of models/<name>.py)."""

    steps: int = Field(
        200, gt=0, description="Optimisation steps in all (a resumed run counts on)."
    )
    batch_size: int = Field(
        4, gt=0, description="Segments per step and per process (DDP: per GPU)."
    )
    lr_schedule: Literal["constant", "cosine", "exponential"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    lr_decay: float = Field(
        0.999, gt=0.0, le=1.0, description="Per step, for the exponential schedule."
    )
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Where the cosine schedule ends.")
    grad_clip: float | None = Field(
        None, gt=0.0, description="Max gradient norm; None: no clipping."
    )
    amp: bool = Field(
        True, description="Mixed precision on CUDA (bf16 where supported); no effect on CPU."
    )
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0, description="Keep an EMA of the weights.")
    checkpoint_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, ge=1)
    validate_every: int = Field(100, gt=0)
    validation_batches: int = Field(2, ge=1)
    log_every: int = Field(10, gt=0)
    seed: int = 0
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class _Partial(Section):
    """Some keys of a section: only those given are kept (and written back out)."""

    @model_serializer(mode="wrap")
    def _only_given(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


def _optional(section: type[Section], name: str) -> type[Section]:
    """`section` with every key optional, each checked as in `section` when given."""
    fields = {
        key: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None))
        for key, info in section.model_fields.items()
    }
    return create_model(name, __base__=_Partial, **fields)


# Some of TrainingKeys, for one family: only the keys given are applied.
TrainingOverrides = _optional(TrainingKeys, "TrainingOverrides")


class TrainingConfig(TrainingKeys):
    __doc__ = TrainingKeys.__doc__

    per_family: dict[FamilyName, TrainingOverrides] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="Per family, overrides of the keys above, e.g. {vocos: {steps: 1500}}: "
        "a family that needs a longer (or shorter) run than the others gets its own.",
    )

    @field_validator("per_family", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # `--set training.per_family=null`: no family has its own (a mapping would be merged).
        return {} if value is None else value

    def set_steps(self, family: str, steps: int) -> None:
        """Make `family`'s run `steps` long, whatever `steps` and `per_family` said."""
        own = self.per_family[family].model_dump() if family in self.per_family else {}
        self.per_family = {**self.per_family, family: {**own, "steps": steps}}

    def for_family(self, family: str) -> TrainingKeys:
        """The keys as `family` trains: its `per_family` entry (the keys it sets) over these."""
        base = self.model_dump(exclude={"per_family"})
        overrides = self.per_family.get(family)
        if overrides is not None:
            base.update(overrides.model_dump())
        return TrainingKeys.model_validate(base)


class TrackingConfig(Section):
    """Where runs are logged: a local SQLite file by default, an `mlflow server` at scale."""

    uri: str = "sqlite:///.wavefoundry/mlflow.db"
    experiment: str = "wavefoundry"
    artifact_location: str | None = Field(
        None,
        description="For a new experiment: s3://... or a folder; None: .wavefoundry/mlartifacts "
        "for a local store, the server's default for a server.",
    )


class EvaluationConfig(Section):
    """The held-out set every candidate renders: the same clips, seed and length for all, so
    scores with the same data version and these settings are comparable."""

    split: Literal["test", "valid"] = "test"
    clips: int = Field(8, gt=0, description="Held-out clips (notes) per candidate.")
    max_seconds: float = Field(1.0, gt=0.0, description="Each clip cut to this, from its start.")
    seed: int = Field(0, description="Which clips are drawn, and the generators' latents.")
    pitches: list[int] | None = Field(
        None,
        description="Generators: MIDI pitches to request in turn; None: the held-out notes' own.",
    )
    audio_examples: int = Field(
        4, ge=0, description="Reference/generated pairs and spectrograms logged per candidate."
    )
    judges: list[str] = Field(
        default_factory=lambda: ["pesq", "stoi", "mcd", "f0", "dnsmos"],
        description="Offline judges (evaluation/judges.py) run on every reconstructed clip.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TaskGate(Section):
    """The metrics a task's candidates are judged by (names from evaluation/metrics.py)."""

    primary: str
    secondary: list[str] = []


def _known_tasks(gates: dict[str, TaskGate]) -> dict[str, TaskGate]:
    for name in gates:
        if name not in TASKS:
            raise ValueError(f"unknown task '{name}' (known: {', '.join(TASKS)})")
    return gates


class PromotionConfig(Section):
    """The gate a challenger passes to take the alias from the champion."""

    alias: str = "champion"
    min_relative_improvement: float = Field(
        0.01, ge=0.0, description="The primary metric better by at least this fraction."
    )
    max_real_time_factor: float = Field(
        1.0, gt=0.0, description="Seconds of compute per second of audio, as scored."
    )
    real_time_factor_device: str = Field(
        "cuda",
        description="The device max_real_time_factor is a serving target on: a candidate "
        "scored on another device (a CPU demo) is not held to it, and the promotion says so.",
    )
    secondary_tolerance: float = Field(
        0.05, ge=0.0, description="A secondary metric may be worse by at most this fraction."
    )
    lock_timeout: float = Field(
        600.0, gt=0.0, description="Seconds after which another promotion's lock is stale."
    )
    floor: Literal["griffin_lim"] | None = Field(
        "griffin_lim",
        description="A vocoder or codec must beat this baseline on floor_metrics; off (or "
        "null): no floor, and the decision says so.",
    )
    floor_metrics: list[str] = Field(
        default_factory=lambda: ["mrstft", "pesq"],
        min_length=1,
        description="The metrics (evaluation/metrics.py) a challenger must beat the floor on.",
    )

    @field_validator("floor", mode="before")
    @classmethod
    def _off_is_none(cls, value: Any) -> Any:
        """`off` (YAML reads it as false), "off" and null mean the same; unlike null, `off`
        can travel as a pipeline parameter."""
        return None if value is False or value == "off" else value

    tasks: dict[str, TaskGate] = {
        "vocoder": TaskGate(primary="mel_l1", secondary=["mrstft"]),
        "codec": TaskGate(primary="mel_l1", secondary=["mrstft"]),
        "generator": TaskGate(primary="frechet_distance", secondary=["pitch_accuracy"]),
        "acoustic": TaskGate(primary="mcd_dtw"),
    }
    # A dataset's own gate for a task whose metrics differ by dataset: the note classifier's
    # Fréchet distance needs NSynth notes, so generators on speech are judged by DNSMOS, which
    # needs no reference and which every generator on speech reports (evaluation/scorer.py).
    datasets: dict[DatasetName, dict[str, TaskGate]] = {
        "ljspeech": {"generator": TaskGate(primary="dnsmos_ovrl")},
        "vctk": {"generator": TaskGate(primary="dnsmos_ovrl")},
    }

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: dict[str, TaskGate]) -> dict[str, TaskGate]:
        return _known_tasks(value)

    @field_validator("datasets", mode="before")
    @classmethod
    def _null_is_no_override(cls, value: Any) -> Any:
        """`promotion.datasets.vctk.generator: null` (or `vctk: null`) drops that override, so
        the task's gate in `tasks` applies (an override cannot be removed by merging over it)."""
        if not isinstance(value, dict):
            return value
        kept = {}
        for dataset, gates in value.items():
            if isinstance(gates, dict):
                gates = {task: gate for task, gate in gates.items() if gate is not None}
            if gates:
                kept[dataset] = gates
        return kept

    @field_validator("datasets")
    @classmethod
    def _known_dataset_tasks(
        cls, value: dict[str, dict[str, TaskGate]]
    ) -> dict[str, dict[str, TaskGate]]:
        for gates in value.values():
            _known_tasks(gates)
        return value

    def gate_for(self, task: str, dataset: str) -> tuple[str, TaskGate | None]:
        """The metrics a `task` candidate on `dataset` is judged by: `datasets.DATASET.TASK`
        where it is set, else `tasks.TASK` (None when neither is). Returns the key it came from
        (e.g. "promotion.datasets.vctk.generator") with it, for tables and errors to name."""
        own = self.datasets.get(dataset, {}).get(task)  # type: ignore[call-overload]
        if own is not None:
            return f"promotion.datasets.{dataset}.{task}", own
        return f"promotion.tasks.{task}", self.tasks.get(task)


class ServingConfig(Section):
    """The BentoML service's limits; `wavefoundry bento build` writes them into the Bento."""

    max_input_seconds: float = Field(30.0, gt=0.0, description="Longest audio /vocode takes.")
    max_upload_bytes: int = Field(16 * 2**20, gt=0, description="Largest upload /vocode takes.")
    min_sample_rate: int = Field(4000, gt=0, description="Lowest rate (Hz) /vocode takes.")
    max_sample_rate: int = Field(384000, gt=0, description="Highest rate (Hz) /vocode takes.")
    max_generate_seconds: float = Field(10.0, gt=0.0, description="Longest audio /generate makes.")
    max_text_chars: int = Field(
        1000, gt=0, description="Longest text /synthesize speaks, in characters."
    )
    max_sentence_chars: int = Field(
        200, gt=0, description="/synthesize splits text at sentence ends into pieces this long."
    )
    max_concurrency: int = Field(
        32, gt=0, description="Requests a replica takes at once; more get HTTP 429."
    )
    timeout: float = Field(120.0, gt=0.0, description="Seconds before a request is abandoned.")

    @field_validator("max_sample_rate")
    @classmethod
    def _rate_range(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_sample_rate", 0)
        if value < low:
            raise ValueError(f"max_sample_rate ({value}) is below min_sample_rate ({low})")
        return value


# The families that train in `make demo` and in a pipeline run that names none: the vocoders
# that train in the demo's CPU minutes, and the voice (Tacotron 2) that the vocoder champion
# speaks for (params.yaml's pipeline.families says the same).
DEMO_FAMILIES: tuple[str, ...] = ("vocos", "hifigan", "tacotron2")


class PipelineConfig(Section):
    """The lifecycle as one run (`wavefoundry pipeline ...`, and dvc.yaml's model stages): which
    dataset, which families compete, where a local run keeps its artifacts, and the Kubeflow
    host that `submit` and `schedule` talk to."""

    dataset: DatasetName = "ljspeech"
    families: list[FamilyName] = Field(default_factory=lambda: list(DEMO_FAMILIES), min_length=1)
    root: Path = Field(
        Path(".wavefoundry/kfp"),
        description="Local runs: task artifacts, the task cache and a record of each run.",
    )
    parallelism: int = Field(
        1,
        ge=1,
        le=2,
        description="Local runs: training tasks at once (each uses every core); kfp.local "
        "runs at most 2.",
    )
    host: str | None = Field(None, description="Kubeflow Pipelines API, e.g. https://kfp.example")
    namespace: str | None = Field(None, description="Multi-user Kubeflow: the profile namespace.")
    experiment: str = "wavefoundry"

    @field_validator("families")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"a family is listed twice: {value}")
        return value


# The sections about data, which a pipeline's data tasks take (and whose changes re-ingest);
# the others go to the model tasks.
DATA_SECTIONS: tuple[str, ...] = (
    "storage",
    "workers",
    "sample_data",
    "datasets",
    "validation",
)


class Config(Section):
    """The whole configuration of a run."""

    paths: PathsConfig = PathsConfig()
    storage: StorageConfig = StorageConfig()
    workers: int = Field(0, ge=0, description="Processes for per-clip work; 0 means one per core.")
    sample_data: SampleDataConfig = SampleDataConfig()
    datasets: DatasetsConfig = DatasetsConfig()
    validation: ValidationConfig = ValidationConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    promotion: PromotionConfig = PromotionConfig()
    serving: ServingConfig = ServingConfig()
    pipeline: PipelineConfig = PipelineConfig()
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per family, overrides of its config dataclass."
    )

    @field_validator("models")
    @classmethod
    def _known_families(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in value:
            if name not in FAMILIES:
                raise ValueError(f"unknown model family '{name}' (known: {', '.join(FAMILIES)})")
        return value


ModelConfigT = TypeVar("ModelConfigT")


def model_config(cfg: Config, family: str, config_class: type[ModelConfigT]) -> ModelConfigT:
    """`models.<family>` validated against the family's config dataclass, naming a bad key."""
    return parse_model_config(cfg.models.get(family) or {}, config_class, f"models.{family}")


def parse_model_config(
    data: dict[str, Any], config_class: type[ModelConfigT], where: str
) -> ModelConfigT:
    """A model config dataclass from plain data (YAML, JSON); unknown keys are refused."""
    known = {f.name for f in dataclasses.fields(config_class)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key '{where}.{key}' (known: {', '.join(sorted(known))})")
    try:
        return TypeAdapter(config_class).validate_python(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, "config", prefix=where)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}): "
            "save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    if data is None:  # an empty recipe replaced the tiny one with the papers' sizes, silently
        raise ConfigError(f"{path} is empty: a params file or recipe sets at least one key")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, found {type(data).__name__}"
        )
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where (it prints four, with context)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" {err.context}" if err.context else ""
        return f"{err.problem}{context}{where}".strip()
    return " ".join(str(err).split())


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=value` to `{"a": {"b": {"c": value}}}`, the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set workers=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def _describe(err: ValidationError, source: str, prefix: str = "") -> str:
    first = err.errors()[0]
    key = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    return f"{source}: bad value for '{key}': {first['msg']} (got {first.get('input')!r})"


RECIPE_KEY = "recipe"  # in a params file: the recipe used when --config names none


def _layers(
    params: Path | None, recipe: Path | None, overrides: list[str] | tuple[str, ...]
) -> list[tuple[str, dict[str, Any]]]:
    """(source, data) of each layer, lowest first: `params`, the recipe (`recipe`, else the
    one the params file names under `recipe:`, relative to that file), each `--set`."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if params is not None:
        data = _read_yaml(Path(params))
        default = data.pop(RECIPE_KEY, None)
        layers.append((str(params), data))
        if recipe is None and default:
            recipe = Path(params).parent / str(default)
    if recipe is not None:
        data = _read_yaml(Path(recipe))
        if RECIPE_KEY in data:
            raise ConfigError(f"{recipe}: a recipe cannot name another recipe ('{RECIPE_KEY}:')")
        layers.append((str(recipe), data))
    layers += [(f"--set {text}", parse_override(text)) for text in overrides]
    return layers


def read_layer(
    params: Path | None = None,
    recipe: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """What `params`, the recipe and `--set` say, merged in that order, as plain data (not
    checked against the schema: `load_config` does that). With no `recipe`, the params file's
    own `recipe:` (configs/tiny.yaml in this repo) is the recipe, so a recipe given on the
    command line replaces the tiny sizes instead of being merged over them."""
    data: dict[str, Any] = {}
    for _, layer in _layers(params, recipe, overrides):
        data = _merge(data, layer)
    return data


def model_sources(
    params: Path | None = None,
    recipe: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, dict[str, str]]:
    """For each family and each `models.<family>` key that a layer sets, the layer that set it
    last (a file path or `--set KEY=VALUE`); keys not listed keep the model file's defaults."""
    sources: dict[str, dict[str, str]] = {}
    for source, layer in _layers(params, recipe, overrides):
        for family, keys in (layer.get("models") or {}).items():
            for key in keys or {}:
                sources.setdefault(family, {})[key] = source
    return sources


def split_layer(layer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A layer's data sections (DATA_SECTIONS) and the rest."""
    data = {k: v for k, v in layer.items() if k in DATA_SECTIONS}
    return data, {k: v for k, v in layer.items() if k not in DATA_SECTIONS}


def load_config(
    params: Path | None = Path("params.yaml"),
    recipe: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    layers: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
) -> Config:
    """Defaults, then `params` (if present), then `recipe` (else the one `params` names), then
    each `--set` override, then each layer (plain data, as a pipeline task receives its
    configuration, already resolved: give `params=None` there)."""
    if params is not None and not Path(params).exists():
        params = None
    # Start from the defaults as plain data so a partial section keeps its other defaults.
    data = _merge(Config().model_dump(mode="json"), read_layer(params, recipe, overrides))
    for layer in layers:
        data = _merge(data, layer)
    sources = [str(params)] * bool(params) + [str(recipe)] * bool(recipe)
    sources += ["--set"] * bool(overrides) + ["pipeline config"] * bool(layers)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, " + ".join(sources) or "config")) from None
