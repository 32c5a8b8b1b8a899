"""kine-py: an etcd v3-compatible datastore that keeps its data in SQL."""

__version__ = "0.1.0"
__all__ = ["__version__"]
