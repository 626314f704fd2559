"""biofm: pretrain, diagnose, evaluate and use transformer foundation models on biological data."""

__version__ = "0.1.0"
