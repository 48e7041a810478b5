"""`wavefoundry bento containerize`: a Bento as an OCI image, built with BentoML's own
containerize (its Dockerfile, our template `bento.Dockerfile.j2`) on the podman backend.

The image starts from the component image (`make image`), which already holds Python 3.11 and
every package the Bento pins, so the build copies the Bento (code, model, BentoML's entry
point) and checks those pins offline; it downloads nothing. `podman run -p 3000:3000 TAG`
serves it (BentoML's `bentoml serve` on port 3000).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from wavefoundry import containers
from wavefoundry.errors import UserError


def containerize(bento_tag: str, image_tag: str | None = None) -> str:
    """Build the Bento `bento_tag` (NAME:VERSION, or NAME for the latest) into an image named
    `image_tag` (default: the Bento's own tag); returns the image's name.

    Raises UserError when podman, the component image or the Bento is missing, or the build
    fails."""
    import bentoml
    from bentoml.exceptions import NotFound

    reason = containers.podman_missing()
    if reason:
        raise UserError(reason)
    try:
        bento = bentoml.get(bento_tag)
    except NotFound:
        raise UserError(
            f"no Bento {bento_tag} in {os.environ.get('BENTOML_HOME', '~/bentoml')}: "
            "wavefoundry bento build first"
        ) from None
    base = bento.info.docker.base_image
    if base and not containers.image_exists(base):
        raise UserError(f"the Bento starts from {base}, which is not built here: make image")
    name = image_tag or str(bento.tag)
    before = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = containers.env()["CONTAINERS_CONF"]
    try:
        # BentoML copies the Bento to a temporary build context and reads the Dockerfile
        # template there only from under the working directory: both go in one scratch folder.
        with (
            tempfile.TemporaryDirectory(prefix="wavefoundry-containerize-") as scratch,
            contextlib.chdir(scratch),
            _temporary_files_in(Path(scratch)),
        ):
            bentoml.container.build(
                str(bento.tag),
                backend="podman",
                image_tag=(name,),
                ulimit=containers.BUILD_ULIMIT,
            )
    finally:
        if before is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = before
    # BentoML logs a failed build and returns; the image is the proof.
    if not containers.image_exists(name):
        raise UserError(f"podman could not build {name} (its output is above)")
    return name


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = before
