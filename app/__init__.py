"""The newsknn prediction service: a Flask app serving the pipeline's kNN classifier over HTTP.

``create_app`` is an application factory so that each gunicorn worker builds (and loads the model
into) its own app after it has been forked: loading torch in the master and forking afterwards
deadlocks PyTorch's thread pool (pytorch#49555, gunicorn#2478). Handlers stay thin: request rules
live in :mod:`app.validation`, the model in :mod:`app.service`, the API description in
:mod:`app.openapi`. Every error, including unknown routes and methods and oversized bodies, is
answered as JSON ``{"error": ...}``; only a genuine fault in the server gives a 500.

Nothing here imports torch at module level: gunicorn's master imports :mod:`app.artifacts` (and so
this package) for its start-up check.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from app.config import Settings, load_settings
from app.openapi import build_openapi
from app.service import PredictionService
from app.validation import (ApiError, decode_json_body, parse_json_request,
                            parse_query_args)

ROUTES = ("/predict", "/health", "/labels", "/openapi.json")
log = logging.getLogger("newsknn.app")


def create_app(config: dict[str, Any] | None = None, classifier=None) -> Flask:
    """Build the app; load the classifier from the artifacts unless one is given.

    ``config``: lower-case keys override :class:`app.config.Settings` fields (paths, limits,
    knn knobs; otherwise read from params.yaml and ``NEWSKNN_*``), upper-case keys go to Flask's
    config. ``LOAD_CLASSIFIER=False`` builds an app that is not ready yet (503 until loaded).
    ``classifier``: anything with ``label_names`` and ``predict`` (tests pass a stand-in).
    """
    config = dict(config or {})
    flask_config = {key: value for key, value in config.items() if key.isupper()}
    settings = load_settings(overrides={key: value for key, value in config.items()
                                        if not key.isupper()})
    load_now = flask_config.pop("LOAD_CLASSIFIER", True)
    service = PredictionService(settings, classifier)
    if classifier is None and load_now:
        service.load()

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.config.update(flask_config)
    app.json.sort_keys = False  # keep "label" first, as documented
    app.extensions["newsknn"] = service
    register_routes(app, service, settings)
    register_error_handlers(app)
    return app


def register_routes(app: Flask, service: PredictionService, settings: Settings) -> None:
    """The four routes; each one validates, delegates, and shapes the JSON answer."""
    openapi = build_openapi(settings)

    def require_ready() -> None:
        if not service.ready:
            raise ApiError(503, "the model and index are still loading; retry shortly")

    @app.get("/health")
    def health() -> tuple[Response, int]:
        return jsonify(service.describe()), 200 if service.ready else 503

    @app.get("/labels")
    def labels() -> Response:
        require_ready()
        names = service.label_names
        return jsonify(count=len(names), labels=[{"label_id": i, "label": name}
                                                 for i, name in enumerate(names)])

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return jsonify(openapi)

    @app.route("/predict", methods=["GET", "POST"])
    def predict() -> Response:
        if request.method == "GET":
            parsed = parse_query_args(request.args.to_dict(flat=False), settings)
        else:
            payload = decode_json_body(read_body(), request.is_json)
            parsed = parse_json_request(payload, settings)
        require_ready()
        predictions = service.predict(parsed.texts, parsed.top_k)
        return jsonify(predictions=predictions) if parsed.batch else jsonify(predictions[0])


def read_body() -> bytes:
    """The raw request body; a body the server cannot read is the client's fault (400), not a 500.

    The stream belongs to the WSGI server, so its failures are server-specific (gunicorn raises
    its own ParseException for broken chunked encoding, OSError when the client hangs up); all of
    them mean the client sent something unreadable. The size limit stays a 413.
    """
    try:
        return request.get_data(cache=False)
    except HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise ApiError(400, f"the request body could not be read: {exc}") from None


def error_response(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """JSON for every error: client mistakes get their 4xx, faults a logged, bland 500."""

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        if error.code is None or error.code < 400:  # routing redirects keep their own answer
            return error.get_response()
        if error.code == 404:
            message = (f"no route {request.path}; the routes are {', '.join(ROUTES)} "
                       "(see /openapi.json)")
        elif error.code == 405:
            allowed = sorted(getattr(error, "valid_methods", None) or [])
            message = f"method {request.method} is not allowed on {request.path}; use " \
                      f"{', '.join(allowed)}"
        elif error.code == 413:
            message = (f"the request body is larger than the limit of "
                       f"{app.config['MAX_CONTENT_LENGTH']} bytes; send fewer or shorter texts")
        else:
            message = error.description or error.name
        response = error_response(error.code, message)
        for name, value in error.get_headers():
            if name.lower() != "content-type":  # keep Allow and the like
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def server_fault(error: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal server error (logged); the request was not at fault")
