"""The lifecycle as one pipeline: what each task does (steps), the pipeline's definition and
spec (definition), running it here (local), and sending it to a Kubeflow host (kfp_host)."""
