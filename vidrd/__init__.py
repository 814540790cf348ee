"""VidRD: the ``vidrd`` command line and the demo that runs the whole system on synthetic data."""

__version__ = "0.1.0"
