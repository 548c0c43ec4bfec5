"""The pipeline package: one module per step (fetch, convert, patch, validate, vectors, variants), run
by the DVC stages fetch, convert (convert, then patch), validate and derive (vectors, then
variants), over shared modules for configuration, sources, model families, preprocessing and
validation."""
