"""Evaluation of frozen representations: multi-task linear probes and test-time feature averaging."""
