"""Allow ``python -m toolkit`` (also what Lightning re-runs when it relaunches processes)."""

from toolkit.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
