"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

Built from the running settings, so the limits it states (batch size, top_k range, body size, the
model window) are the ones the service enforces.
"""

from __future__ import annotations

from newsknn import __version__

from app.config import Settings


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def build_openapi(settings: Settings) -> dict:
    """The whole document, as a JSON-ready dict."""
    text_rule = (f"Non-empty, not only whitespace. Texts longer than {settings.max_text_chars} "
                 "characters are cut there, and the model reads only its first "
                 f"{settings.max_seq_length} tokens (model.max_seq_length): over-long text is "
                 "truncated, never refused.")
    top_k = {"type": "integer", "minimum": 1, "maximum": settings.max_top_k,
             "description": "Neighbours in the vote and neighbours returned "
                            f"(default knn.k = {settings.k})."}
    client_errors = {
        "400": _error("Invalid input: bad JSON, missing/empty/non-string text, bad top_k, "
                      "batch too large or with a bad element, unknown field."),
        "413": _error(f"Body larger than {settings.max_body_bytes} bytes."),
        "415": _error("Body not sent as Content-Type: application/json."),
        "500": _error("A fault in the server (never caused by input)."),
        "503": _error("Model and index not loaded yet."),
    }
    predict_get = {
        "summary": "Classify one short text given in the URL",
        "operationId": "predictGet",
        "parameters": [
            {"name": "query", "in": "query", "required": True,
             "schema": {"type": "string", "minLength": 1}, "description": text_rule +
             " Use POST for long texts: the request line is limited to about 8 KB."},
            {"name": "top_k", "in": "query", "required": False, "schema": top_k},
        ],
        "responses": {"200": _json("Prediction", "The prediction."),
                      **{code: client_errors[code] for code in ("400", "500", "503")}},
    }
    predict_post = {
        "summary": "Classify one text, or a batch of texts",
        "operationId": "predictPost",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [{"$ref": "#/components/schemas/PredictOne"},
                      {"$ref": "#/components/schemas/PredictBatch"}]}}}},
        "responses": {
            "200": {"description": "A prediction for `text`, or `{predictions: [...]}` for "
                                   "`texts` (in the order given).",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/Predictions"}]}}}},
            **client_errors,
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "newsknn prediction service",
            "version": __version__,
            "description": "Labels a text with one of the 20 Newsgroups groups by a "
                           f"{settings.weighting}-weighted vote of its k nearest training posts "
                           "(fine-tuned sentence embeddings, hnswlib index). Errors are always "
                           'JSON: {"error": "..."} with a 4xx status for bad input.',
        },
        "paths": {
            "/predict": {"get": predict_get, "post": predict_post},
            "/health": {"get": {
                "summary": "Readiness, and which model and index are served",
                "operationId": "health",
                "responses": {"200": _json("Health", "Model and index loaded."),
                              "503": _json("Health", "Not ready (still loading).")}}},
            "/labels": {"get": {
                "summary": "The label names and ids",
                "operationId": "labels",
                "responses": {"200": _json("Labels", "All labels, by id."),
                              "503": client_errors["503"]}}},
            "/openapi.json": {"get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "The OpenAPI document.",
                                      "content": {"application/json": {}}}}}},
        },
        "components": {"schemas": {
            "PredictOne": {
                "type": "object", "required": ["text"], "additionalProperties": False,
                "properties": {"text": {"type": "string", "minLength": 1,
                                        "description": text_rule},
                               "top_k": top_k}},
            "PredictBatch": {
                "type": "object", "required": ["texts"], "additionalProperties": False,
                "properties": {"texts": {"type": "array", "minItems": 1,
                                         "maxItems": settings.max_batch,
                                         "items": {"type": "string", "minLength": 1},
                                         "description": text_rule},
                               "top_k": top_k}},
            "Neighbor": {
                "type": "object", "required": ["doc_id", "label", "similarity"],
                "properties": {"doc_id": {"type": "string", "examples": ["sci.space/61091"]},
                               "label": {"type": "string"},
                               "similarity": {"type": "number",
                                              "description": "Cosine similarity."}}},
            "Prediction": {
                "type": "object", "required": ["label", "label_id", "score", "neighbors"],
                "properties": {
                    "label": {"type": "string", "examples": ["sci.space"]},
                    "label_id": {"type": "integer", "examples": [14]},
                    "score": {"type": "number",
                              "description": "The label's share of the weighted vote (0..1)."},
                    "neighbors": {"type": "array", "items": {"$ref": "#/components/schemas/"
                                                                      "Neighbor"},
                                  "description": "Nearest training posts, most similar first."}}},
            "Predictions": {
                "type": "object", "required": ["predictions"],
                "properties": {"predictions": {"type": "array", "items": {
                    "$ref": "#/components/schemas/Prediction"}}}},
            "Labels": {
                "type": "object", "required": ["labels"],
                "properties": {"count": {"type": "integer"}, "labels": {"type": "array", "items": {
                    "type": "object", "properties": {"label_id": {"type": "integer"},
                                                     "label": {"type": "string"}}}}}},
            "Health": {
                "type": "object", "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ready", "loading"]},
                    "version": {"type": "string"},
                    "model": {"type": "object", "description": "path, sha256 (short), "
                                                               "max_seq_length, precision"},
                    "index": {"type": "object", "description": "path, count, dimension, "
                              "model_sha256 and embeddings_sha256 (short) from meta.json"},
                    "knn": {"type": "object"}, "limits": {"type": "object"},
                    "labels": {"type": "integer"}}},
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
        }},
    }
