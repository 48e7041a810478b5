"""wavefoundry: the lifecycle of audio generation models."""

__version__ = "0.1.0"
