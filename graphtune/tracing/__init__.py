"""Recording trajectories: event model, trace context, redaction, the recorder and its pipeline."""
