"""FHIR R4 for facilities and national systems: resources built and validated with `fhir.resources` (R4B models)."""
