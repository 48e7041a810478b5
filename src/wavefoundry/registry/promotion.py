"""Promotion: a challenger takes the champion alias only through the gate.

The gate (params `promotion`): every metric finite; the real-time factor under its bound; the
primary metric better than the champion's by at least a minimum relative change; each
secondary metric no worse than the champion's by more than a tolerance. The primary and
secondary metrics are the task's on the challenger's dataset (`PromotionConfig.gate_for`:
`promotion.datasets.DATASET.TASK` where set, else `promotion.tasks.TASK`). Both are scored on
the same held-out set (the caller re-scores a champion whose score is from other data). A
vocoder or codec must also beat the floor, Griffin-Lim from the same mel scored on that same
set (evaluation/baseline.py), on each of `floor_metrics`: else it is refused as "below the
griffin_lim floor", champion or not. `floor: null` turns that off, and the decision says so.

Promotions and rollbacks of one registered model run one at a time: each holds a lock, a
registered model named `<name>-promotion-lock` that only one caller can create (the tracking
server's database enforces it). Every decision, passed or refused, is an audit record: a
registered-model tag `audit.<UTC time>-<id>` holding the decision as JSON.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wavefoundry import tracking
from wavefoundry.config import Config, PromotionConfig
from wavefoundry.errors import UserError
from wavefoundry.evaluation.names import check_names
from wavefoundry.registry import candidates
from wavefoundry.registry.candidates import Candidate


@dataclass(frozen=True)
class Check:
    name: str
    challenger: str
    champion: str  # the value it is held against: the champion's, or the floor's
    requirement: str
    passed: bool
    reason: str = ""  # why it failed, when the name and requirement do not say it best


@dataclass(frozen=True)
class Decision:
    model: str
    challenger: Candidate
    champion: Candidate | None
    checks: tuple[Check, ...]
    # Where the primary and secondary metrics came from: promotion.tasks.TASK, or
    # promotion.datasets.DATASET.TASK where the challenger's dataset has its own.
    rules_key: str = ""
    primary: str = ""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [
            c.reason or f"{c.name}: {c.challenger} (needs {c.requirement})"
            for c in self.checks
            if not c.passed
        ]


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def relative_gain(challenger: float, champion: float, higher_is_better: bool) -> float:
    """How much better the challenger is, as a fraction of the champion's magnitude."""
    gain = challenger - champion if higher_is_better else champion - challenger
    return gain / max(abs(champion), 1e-12)


def floor_checks(
    challenger: Candidate, floor: dict[str, float] | None, rules: PromotionConfig
) -> list[Check]:
    """The challenger against the floor's scores on the same held-out set (`floor` is None
    when the floor is off or does not apply to the task): strictly better on every metric
    of `rules.floor_metrics`."""
    from wavefoundry.evaluation.baseline import TASKS
    from wavefoundry.evaluation.metrics import METRICS

    if challenger.task not in TASKS:
        return []
    if rules.floor is None:
        return [Check("floor", "off", "-", "promotion.floor: null (no floor)", True)]
    name = rules.floor
    checks = []
    for metric in rules.floor_metrics:
        mine, theirs = challenger.metrics.get(metric), (floor or {}).get(metric)
        if mine is None or theirs is None or not math.isfinite(theirs):
            missing = "the challenger" if mine is None else name
            checks.append(
                Check(
                    f"{name} floor {metric}",
                    _format(mine),
                    _format(theirs),
                    f"better than {name}",
                    False,
                    f"{name} floor: no {metric} score for {missing}, so the floor cannot be "
                    "checked (is its judge in evaluation.judges?)",
                )
            )
            continue
        better = mine > theirs if METRICS[metric].higher_is_better else mine < theirs
        checks.append(
            Check(
                f"{name} floor {metric}",
                _format(mine),
                f"{_format(theirs)} ({name})",
                f"better than {name}",
                better and math.isfinite(mine),
                f"below the {name} floor: {metric} {_format(mine)} against {name}'s "
                f"{_format(theirs)}",
            )
        )
    return checks


def gate(
    challenger: Candidate,
    champion: Candidate | None,
    rules: PromotionConfig,
    floor: dict[str, float] | None = None,
) -> Decision:
    """The decision table of `challenger` against `champion` (None: there is no champion)
    and against `floor`, the baseline's scores on the challenger's held-out set."""
    from wavefoundry.evaluation.metrics import METRICS

    key, task = rules.gate_for(challenger.task, challenger.dataset)
    if task is None:
        raise UserError(
            f"no promotion rules for task '{challenger.task}' (promotion.tasks has: "
            f"{', '.join(rules.tasks)})"
        )
    check_names(promotion=rules)
    ours = challenger.metrics
    theirs = champion.metrics if champion else {}
    bad = sorted(name for name, value in ours.items() if not math.isfinite(value))
    checks = [
        Check(
            "finite metrics",
            "non-finite: " + ", ".join(bad) if bad else f"{len(ours)} finite",
            "-",
            "every metric finite",
            not bad,
        )
    ]
    rtf = ours.get("rtf")
    checks.append(
        Check(
            "real-time factor",
            _format(rtf),
            _format(theirs.get("rtf")),
            f"<= {rules.max_real_time_factor:g}",
            rtf is not None and rtf <= rules.max_real_time_factor,
        )
    )
    if champion is not None and champion.version == challenger.version:
        checks.append(
            Check(
                "not the champion already",
                f"v{challenger.version}",
                f"v{champion.version}",
                "a different version",
                False,
            )
        )
    for role, name in [("primary", task.primary), *(("secondary", n) for n in task.secondary)]:
        higher = METRICS[name].higher_is_better
        mine, best = ours.get(name), theirs.get(name)
        if mine is None:
            checks.append(
                Check(
                    f"{role} {name}",
                    "missing",
                    _format(best),
                    "a score",
                    False,
                    f"{role} {name}: no score ({key} names it; {_why_missing(name, challenger)})",
                )
            )
            continue
        if champion is None or best is None or not math.isfinite(best):
            checks.append(
                Check(
                    f"{role} {name}",
                    _format(mine),
                    _format(best),
                    "no champion to beat",
                    math.isfinite(mine),
                )
            )
            continue
        gain = relative_gain(mine, best, higher)
        if role == "primary":
            requirement = f"at least {rules.min_relative_improvement:.1%} better"
            passed = gain >= rules.min_relative_improvement
        else:
            requirement = f"at most {rules.secondary_tolerance:.1%} worse"
            passed = gain >= -rules.secondary_tolerance
        change = f"{abs(gain):.1%} {'better' if gain >= 0 else 'worse'}"
        checks.append(
            Check(
                f"{role} {name}",
                f"{_format(mine)} ({change})",
                _format(best),
                requirement,
                passed and math.isfinite(mine),
                # The refusal names what it was measured against.
                f"{role} {name}: {_format(mine)}, {change} than the champion's {_format(best)} "
                f"(needs {requirement})",
            )
        )
    checks.extend(floor_checks(challenger, floor, rules))
    return Decision(challenger.name, challenger, champion, tuple(checks), key, task.primary)


def _why_missing(metric: str, challenger: Candidate) -> str:
    """What may have left `metric` out of a challenger's score, for the refusal's reason."""
    from wavefoundry.evaluation.judges import JUDGES

    judge = next((j.name for j in JUDGES.values() if metric in j.scores), None)
    if judge is None:
        return f"a {challenger.family} {challenger.task} on {challenger.dataset} does not report it"
    return f"is {judge} in evaluation.judges? the run's eval/clips.json says why a clip has none"


# --- the lock and the audit record ----------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


@contextmanager
def exclusive(client: Any, name: str, stale_after: float, wait: float = 120.0) -> Iterator[None]:
    """Hold `<name>-promotion-lock` while inside. A lock older than `stale_after` seconds
    (a promotion that died) is broken; waiting longer than `wait` is an error."""
    from mlflow.exceptions import MlflowException

    lock = f"{name}-promotion-lock"
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={"owner": owner, "since": str(time.time())},
                description=f"promotion of {name} in progress ({_who()}); deleted when it ends",
            )
            break
        except MlflowException as err:
            # RESOURCE_DOES_NOT_EXIST: the server made the lock and lost it to a release or a
            # stale-lock break in the same instant (seen with two promotions at once); whether
            # ours exists now is read below, like any other holder's.
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released between our two calls: try again at once
        if held.tags.get("owner") == owner:
            break  # our create went through after all
        since = float(held.tags.get("since", 0.0))
        if time.time() - since > stale_after:
            _delete_quietly(client, lock)
            continue
        if time.monotonic() > deadline:
            raise UserError(
                f"another promotion of '{name}' has held its lock for {time.time() - since:.0f} s "
                f"({held.description}); try again later"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        held = client.get_registered_model(lock)
        if held.tags.get("owner") == owner:
            _delete_quietly(client, lock)


def _delete_quietly(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    with suppress(MlflowException):  # someone else removed it first
        client.delete_registered_model(name)


def record(client: Any, name: str, action: str, **details: Any) -> dict[str, Any]:
    """Append one audit record to registered model `name`."""
    moment = _now()
    entry = {"time": moment.isoformat(), "action": action, "by": _who(), **details}
    key = f"{tracking.TAG_AUDIT_PREFIX}{moment:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}"
    client.set_registered_model_tag(name, key, json.dumps(entry, sort_keys=True))
    return entry


def audit_records(client: Any, name: str) -> list[dict[str, Any]]:
    """The audit records of `name`, oldest first."""
    tags = client.get_registered_model(name).tags
    return [
        json.loads(tags[key]) for key in sorted(tags) if key.startswith(tracking.TAG_AUDIT_PREFIX)
    ]


def apply(client: Any, decision: Decision, alias: str) -> dict[str, Any]:
    """Act on a decision: a passing challenger takes `alias` and remembers the champion it
    replaced (a version tag and a registered-model tag); either way the decision is audited."""
    challenger, champion = decision.challenger, decision.champion
    previous = champion.version if champion else ""
    if decision.passed:
        client.set_model_version_tag(
            decision.model, challenger.version, tracking.TAG_PREVIOUS_CHAMPION, previous
        )
        client.set_model_version_tag(
            decision.model, challenger.version, "promoted_at", _now().isoformat()
        )
        client.set_registered_model_alias(decision.model, alias, challenger.version)
        client.set_registered_model_tag(decision.model, tracking.TAG_PREVIOUS_CHAMPION, previous)
    return record(
        client,
        decision.model,
        "promote",
        challenger=challenger.version,
        champion_before=previous,
        champion_after=challenger.version if decision.passed else previous,
        passed=decision.passed,
        reasons=decision.reasons,
        floor={c.name: c.champion for c in decision.checks if "floor" in c.name},
        metrics={k: v for k, v in challenger.metrics.items() if math.isfinite(v)},
    )


def roll_back(client: Any, name: str, alias: str, current: Candidate) -> dict[str, Any]:
    """Move `alias` from `current` back to the version it replaced."""
    previous = current.tags.get(tracking.TAG_PREVIOUS_CHAMPION, "")
    if not previous:
        raise UserError(
            f"'{name}' v{current.version} is {alias} but replaced no earlier version: nothing to roll back to"
        )
    before = f"the {alias} before v{current.version}; nothing to roll back to"
    candidates.check_run(client, candidates.version(client, name, previous, before), before)
    client.set_registered_model_alias(name, alias, previous)
    client.set_model_version_tag(name, current.version, "rolled_back_at", _now().isoformat())
    client.set_registered_model_tag(name, tracking.TAG_PREVIOUS_CHAMPION, current.version)
    return record(
        client,
        name,
        "rollback",
        champion_before=current.version,
        champion_after=previous,
        passed=True,
    )


# --- the commands ---------------------------------------------------------------------------


@dataclass
class Outcome:
    decision: Decision
    record: dict[str, Any] | None  # the audit record; None for a dry run
    rescored: bool  # the champion was scored again on the challenger's held-out set
    note: str = ""  # e.g. the speed target was not applied: scored on another device
    # The challenger (a voice) was scored again, voiced by its dataset's vocoder champion now.
    revoiced: bool = False


def speed_rules(rules: PromotionConfig, challenger: Candidate) -> tuple[PromotionConfig, str]:
    """The rules for `challenger`: `max_real_time_factor` is a serving target on
    `real_time_factor_device`, so a candidate scored elsewhere (a CPU demo's) is not held to
    it. Returns the rules and a note saying so ("" when the target applies). A version scored
    before the device was recorded is held to it."""
    device = challenger.tags.get(tracking.TAG_EVAL_DEVICE, "")
    if not device or device == rules.real_time_factor_device:
        return rules, ""
    note = (
        f"speed target off: scored on {device}, and promotion.max_real_time_factor "
        f"({rules.max_real_time_factor:g}) is for {rules.real_time_factor_device}"
    )
    return rules.model_copy(update={"max_real_time_factor": math.inf}), note


# Scores a champion again on the challenger's held-out set (named by its fingerprint); with
# `save`, the new score replaces the old on the run and the version. The promote stage hands
# it in (stages.rescore): scoring is a layer above the registry.
Rescore = Callable[[Candidate, str, bool], Candidate]
# Scores an acoustic challenger again when the vocoder that voiced its sentences is no longer
# its dataset's vocoder champion (with `save`, the new score replaces the old); any other
# candidate comes back as it is (stages.revoice).
Revoice = Callable[[Candidate, bool], Candidate]


def promote(
    cfg: Config,
    name: str,
    version: str | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    *,
    rescore: Rescore,
    revoice: Revoice,
) -> Outcome:
    """Face the challenger (a version, the version of a run, else the newest) with the current
    champion through the gate; with a pass, move the alias. A dry run changes nothing. A
    champion scored on other held-out data, or with no score for a gate metric the challenger
    has (`unscored`), is scored again with `rescore` first; an acoustic challenger voiced
    by another vocoder than its dataset's champion now, with `revoice`."""
    client = candidates.client(cfg.tracking)
    challenger = candidates.find(client, name, version, run_id)
    candidates.check_run(client, challenger, "the challenger")
    if not challenger.metrics:
        raise UserError(
            f"'{name}' v{challenger.version} (run {challenger.run_id}) has no eval metrics: "
            f"score it first with: wavefoundry evaluate --run-id {challenger.run_id}"
        )
    voiced = revoice(challenger, not dry_run)
    revoiced, challenger = voiced.fingerprint != challenger.fingerprint, voiced
    alias = cfg.promotion.alias
    lock = nullcontext() if dry_run else exclusive(client, name, cfg.promotion.lock_timeout)
    with lock:
        champion = candidates.by_alias(client, name, alias)
        rescored = False
        if champion is not None and (
            champion.fingerprint != challenger.fingerprint
            or unscored(cfg.promotion, challenger, champion)
        ):
            candidates.check_run(client, champion, f"the {alias}, to be scored again")
            champion = rescore(champion, challenger.fingerprint, not dry_run)
            rescored = True
        rules, note = speed_rules(cfg.promotion, challenger)
        decision = gate(challenger, champion, rules, floor_scores(cfg, challenger))
        entry = None if dry_run else apply(client, decision, alias)
    return Outcome(decision, entry, rescored, note, revoiced)


def unscored(rules: PromotionConfig, challenger: Candidate, champion: Candidate) -> list[str]:
    """The gate's metrics the challenger has a score for and the champion has not: a champion
    scored before the gate judged its task by them (a speech generator before DNSMOS), which
    promotion scores again rather than wave the challenger through."""
    _, task = rules.gate_for(challenger.task, challenger.dataset)
    names = [task.primary, *task.secondary] if task else []
    return [n for n in names if n in challenger.metrics and n not in champion.metrics]


def floor_scores(cfg: Config, challenger: Candidate) -> dict[str, float] | None:
    """The floor's scores on the challenger's held-out set (scored now when no run has them);
    None when the floor is off or not for the challenger's task."""
    from wavefoundry.evaluation.baseline import TASKS, griffin_lim_baseline

    if cfg.promotion.floor is None or challenger.task not in TASKS:
        return None
    dataset = challenger.tags.get(tracking.TAG_DATASET, "")
    return griffin_lim_baseline(cfg, dataset, challenger.fingerprint).metrics


def rollback(cfg: Config, name: str) -> dict[str, Any]:
    """Move the alias back to the version the current champion replaced."""
    client = candidates.client(cfg.tracking)
    candidates.candidates(client, name)  # one clear error for a missing model
    alias = cfg.promotion.alias
    with exclusive(client, name, cfg.promotion.lock_timeout):
        current = candidates.by_alias(client, name, alias)
        if current is None:
            raise UserError(f"'{name}' has no {alias}: nothing to roll back")
        return roll_back(client, name, alias, current)


@dataclass
class Contest:
    """One challenger of a run with several (a pipeline's families): what became of it."""

    name: str
    version: str
    outcome: Outcome | None  # None: it already held the alias, so it was not faced with itself
    revoiced: bool = False  # a voice scored again through the vocoder champion just decided

    @property
    def champion(self) -> str | None:
        """The version that held the alias when this contest was decided (None: none did)."""
        if self.outcome is None or self.outcome.decision.passed:
            return self.version
        held = self.outcome.decision.champion
        return held.version if held else None

    @property
    def promoted(self) -> bool:
        return self.outcome is not None and self.outcome.decision.passed

    @property
    def verdict(self) -> str:
        if self.outcome is None:
            return "already champion"
        if self.outcome.decision.passed:
            return "champion"
        return "refused: " + "; ".join(self.outcome.decision.reasons)

    @property
    def note(self) -> str:
        """What the gate left out for this challenger (e.g. the speed target), "" if nothing:
        the same for every challenger scored alike, so said once per run (`notes`)."""
        return self.outcome.note if self.outcome is not None else ""


def notes(contests: list[Contest]) -> list[str]:
    """The contests' notes, each once, in order."""
    return list(dict.fromkeys(c.note for c in contests if c.note))


def promote_best(
    cfg: Config, challengers: list[tuple[str, str]], *, rescore: Rescore, revoice: Revoice
) -> list[Contest]:
    """Promote several challengers (registered model, version): per registered model, best
    primary metric first, each through the gate. The best one that passes takes the alias and
    the rest face it, so the order of training does not decide the champion. Acoustic models
    go last, voiced again (`revoice`) by the vocoder champion the others have just decided.
    The decision is in the contests: `champions(contests)` is what each registered model's
    alias was left on."""
    from wavefoundry.evaluation.metrics import METRICS

    client = candidates.client(cfg.tracking)
    found = [candidates.find(client, name, version) for name, version in challengers]

    def best_first(c: Candidate) -> tuple[bool, float]:
        _, rules = cfg.promotion.gate_for(c.task, c.dataset)
        if rules is None or rules.primary not in METRICS:
            return (True, 0.0)  # the gate says what is wrong when it faces it
        metric = rules.primary
        value = c.metrics.get(metric, math.nan)
        sign = -1.0 if METRICS[metric].higher_is_better else 1.0
        return (not math.isfinite(value), sign * value if math.isfinite(value) else 0.0)

    revoiced: set[tuple[str, str]] = set()

    def face(group: list[Candidate]) -> list[Contest]:
        contests = []
        for challenger in sorted(group, key=lambda c: (c.name, best_first(c))):
            which = (challenger.name, challenger.version)
            champion = candidates.by_alias(client, challenger.name, cfg.promotion.alias)
            if champion is not None and champion.version == challenger.version:
                contests.append(Contest(*which, None, which in revoiced))
                continue
            outcome = promote(
                cfg, challenger.name, challenger.version, rescore=rescore, revoice=revoice
            )
            contests.append(Contest(*which, outcome, which in revoiced))
        return contests

    contests = face([c for c in found if c.task != "acoustic"])
    voices = []
    for voice in (c for c in found if c.task == "acoustic"):
        candidates.check_run(client, voice, "the challenger")
        voiced = revoice(voice, True) if voice.metrics else voice
        if voiced.fingerprint != voice.fingerprint:
            revoiced.add((voice.name, voice.version))
        voices.append(voiced)
    return contests + face(voices)


def champions(contests: list[Contest]) -> list[dict[str, Any]]:
    """Per registered model, the version its alias was left on by these contests (the last
    one decided), and whether one of them took it: `{registered_model, version, promoted}`.
    A registered model with no champion at all is left out."""
    decided: dict[str, dict[str, Any]] = {}
    for contest in contests:
        promoted = contest.promoted or decided.get(contest.name, {}).get("promoted", False)
        decided[contest.name] = {
            "registered_model": contest.name,
            "version": contest.champion,
            "promoted": promoted,
        }
    return [d for _, d in sorted(decided.items()) if d["version"] is not None]
