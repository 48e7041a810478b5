"""Kubeflow pipelines over the components in components/; compiled specs in compiled/."""
