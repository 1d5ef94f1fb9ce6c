"""refbench's version: one place, read by the package, its metadata and every record's ``env``."""
__version__ = "0.2.0"
