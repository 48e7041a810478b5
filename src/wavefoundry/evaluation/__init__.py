"""Scoring candidates on held-out audio: metrics, the scorer, the NSynth note classifier."""
