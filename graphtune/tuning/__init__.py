"""The tuning domain without I/O: configs, search space, mutations, statistics, proposers."""
