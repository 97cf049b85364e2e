"""The model kinds the service knows, in ONE table: MODEL_KINDS (kind name -> ModelKind).

Each kind is one module here (weaning.py, ich.py) that builds its ModelKind; a manifest's "kind"
is looked up in this table when a model is loaded, and everything downstream reads the kind
from the loaded model. To add a kind: a module with its ModelKind, one line below, a FHIR
mapping file (service/cds_mappings/) for CDS Hooks, and its tests.
"""

from __future__ import annotations

from service.core.kinds import ich, weaning
from service.core.kinds.base import FeatureSpec, InputField, ModelKind

WEANING = weaning.KIND
ICH = ich.KIND

MODEL_KINDS: dict[str, ModelKind] = {k.name: k for k in (WEANING, ICH)}

__all__ = ["ICH", "MODEL_KINDS", "WEANING", "FeatureSpec", "InputField", "ModelKind"]
