"""The eval harness: datasets, evaluators, a result cache and the concurrent runner."""
