"""The pipeline package: one module per DVC stage (fetch, convert, patch, validate) over shared
modules for configuration, sources, model families, preprocessing and validation."""
