"""Lineage: every message traced, stage counts, comparisons by message id, reports."""
