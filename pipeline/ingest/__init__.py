"""HTTP ingest service: feedback from HTTP clients and survey-tool webhooks into Kafka.

``nps-pipeline ingest`` runs it as its own process (not on a worker's web server), so
that it can be scaled and exposed independently of the stream processors. Every
accepted event is written to the raw topic keyed by its event id, and a request is
answered 202 only after the broker acknowledged all of its accepted events
(``acks="all"``).
"""

from pipeline.ingest.app import create_app, serve

__all__ = ["create_app", "serve"]
