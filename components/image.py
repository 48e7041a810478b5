"""The one image every component runs in: components/Dockerfile (`make image` builds it here;
on a cluster, build and push it yourself). WAVEFOUNDRY_IMAGE overrides it when the pipeline is
compiled (`wavefoundry pipeline compile --image` does the same). Named in wavefoundry.containers."""

from wavefoundry.containers import DEFAULT_IMAGE
from wavefoundry.containers import IMAGE as BASE_IMAGE

__all__ = ["BASE_IMAGE", "DEFAULT_IMAGE"]
