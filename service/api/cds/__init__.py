"""CDS Hooks 2.0: hooks.py (the /cds-services blueprint), schemas.py (wire formats), auth.py (JWT)."""
