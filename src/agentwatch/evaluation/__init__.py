"""Evaluation of detection against labels (pure metrics, readers of labels and scores)."""
