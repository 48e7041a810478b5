"""One training family per model: how its batches, steps and samples go. Registered in models/registry.py."""
