"""Allow ``python -m toolkit`` (also what Lightning re-runs when it relaunches processes)."""

from toolkit.cli import app

if __name__ == "__main__":
    app()
