"""The HTTP face: a FastAPI app over a loaded :class:`cdrec.predict.Predictor` (``cdrec serve``)."""

from cdrec.serve.app import API_KEY_HEADER, create_app

__all__ = ["API_KEY_HEADER", "create_app"]
