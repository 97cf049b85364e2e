"""Open Inference Protocol (KServe V2) REST face: tensors.py (wire format and tensor checks),
routes.py (the /v2 blueprint)."""

from service.api.oip.routes import create_oip_blueprint

__all__ = ["create_oip_blueprint"]
