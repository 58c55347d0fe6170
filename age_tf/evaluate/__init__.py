"""Evaluation: metrics, test-set evaluation, label audit, report."""
