"""Soak run (``python -m tests.soak.soak``) and the ground truth it shares with tests."""
