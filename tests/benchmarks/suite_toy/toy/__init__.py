"""A two-node toy for the suite runner's tests: a lookup whose timeout starts below the service's
latency (every run fails), then an answer that needs the detailed style and enough tokens."""

from .replay import replay  # noqa: F401

REQUEST = "toy fails too often; improve its accuracy"
