"""Evidence: offline evaluation of models on labelled data, and the A/B test (plan, arms,
assignment, analysis)."""
