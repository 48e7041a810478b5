"""`wavefoundry pipeline submit` and `schedule`: the compiled pipeline, sent to a Kubeflow
Pipelines host through kfp's own client (the v2beta1 REST API)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from wavefoundry.errors import UserError

# KFP's cron (robfig/cron with seconds): second minute hour day-of-month month day-of-week.
_CRON_FIELD = re.compile(r"^[\d*?/,\-A-Za-z]+$")


@dataclass
class Host:
    url: str
    namespace: str | None = None
    token: str | None = None

    def client(self) -> Any:
        """A kfp.Client, once the host has answered: an address that is wrong, unreachable or
        refuses us fails here in seconds with one line, not after the client's retries."""
        self._check()
        import kfp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2"
            return kfp.Client(
                host=self.url, namespace=self.namespace or "kubeflow", existing_token=self.token
            )

    def _check(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            answer = requests.get(
                f"{self.url.rstrip('/')}/apis/v2beta1/healthz", headers=headers, timeout=10
            )
        except requests.RequestException as err:
            reason = type(err).__name__.replace("Error", " error").lower()
            raise UserError(f"Kubeflow Pipelines at {self.url} unreachable ({reason})") from None
        if answer.status_code in (401, 403):
            raise UserError(
                f"Kubeflow Pipelines at {self.url} refused us (HTTP {answer.status_code}): "
                "give a token with --token or KF_PIPELINES_TOKEN"
            )
        if answer.status_code >= 400:
            raise UserError(
                f"Kubeflow Pipelines at {self.url} answered /healthz with HTTP {answer.status_code}"
            )

    def refused(self, what: str, err: Exception) -> UserError:
        status = getattr(err, "status", "?")
        body = str(getattr(err, "body", "") or getattr(err, "reason", "") or err)
        return UserError(
            f"Kubeflow Pipelines at {self.url} refused the {what} (HTTP {status}): {body[:300]}"
        )


def check_cron(cron: str) -> str:
    """KFP's six-field cron, seconds first ('0 0 2 * * *': 02:00 every day), or @every/@daily."""
    fields = cron.split()
    if cron.startswith("@") or (len(fields) == 6 and all(_CRON_FIELD.match(f) for f in fields)):
        return cron
    hint = f"; for '{cron}' that is '0 {cron}'" if len(fields) == 5 else ""
    raise UserError(
        f"--cron {cron!r}: KFP's cron has six fields, seconds first "
        f"(second minute hour day month weekday){hint}"
    )


def submit(
    host: Host, package: Path, arguments: dict[str, Any], experiment: str, run_name: str
) -> str:
    """One run of the package; its run id."""
    from kfp_server_api import ApiException

    client = host.client()
    try:
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            namespace=host.namespace,
        )
    except ApiException as err:
        raise host.refused("run", err) from None
    return run.run_id


def schedule(
    host: Host,
    package: Path,
    arguments: dict[str, Any],
    experiment: str,
    name: str,
    cron: str,
) -> str:
    """A recurring run of the package on `cron`: one run at a time, no catching up on missed
    times after a pause. Its recurring run id."""
    from kfp_server_api import ApiException

    cron = check_cron(cron)
    client = host.client()
    try:
        found = client.create_experiment(name=experiment, namespace=host.namespace)
        recurring = client.create_recurring_run(
            experiment_id=found.experiment_id,
            job_name=name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=arguments,
            pipeline_package_path=str(package),
            enabled=True,
        )
    except ApiException as err:
        raise host.refused("recurring run", err) from None
    return recurring.recurring_run_id
