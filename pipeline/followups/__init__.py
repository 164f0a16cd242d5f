"""Closing the loop: follow-up tasks for detractors and the tracking of their status.

* :mod:`pipeline.followups.rules` — which answers get a task, priority, due time and
  revenue factors (a YAML file validated like the alert rules);
* :mod:`pipeline.followups.tasks` — scored event -> task record (pure; called by the
  scoring stage);
* :mod:`pipeline.followups.tracker` — tasks + status updates -> per-task state and
  per-segment figures (pure, batch-oriented; run by the ``followups`` agent);
* :mod:`pipeline.followups.api` and :mod:`pipeline.followups.metrics` — how they are
  exposed.
"""
