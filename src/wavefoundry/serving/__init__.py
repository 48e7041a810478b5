"""Serving the champion: the BentoML service, the Bento build, deployment files."""
