"""One trainer for every model family: see family.py for how a family plugs in."""
