"""The one image every component runs in: components/Dockerfile, built and pushed by you.
WAVEFOUNDRY_IMAGE overrides it when the pipeline is compiled (`wavefoundry pipeline compile
--image` does the same)."""

import os

from wavefoundry import __version__

DEFAULT_IMAGE = f"ghcr.io/wavefoundry/wavefoundry:{__version__}"
BASE_IMAGE = os.environ.get("WAVEFOUNDRY_IMAGE", DEFAULT_IMAGE)
