"""Graph nodes: TrajectoryNode now; the controller's steps join it."""
