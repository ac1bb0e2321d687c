"""The HTTP API's routes, one APIRouter per area; `api.server.create_app` includes them.

They hold no state: what they need comes from `app.state` through api/dependencies.py,
their response bodies are declared in api/responses.py, their request bodies in
api/schemas.py.
"""
