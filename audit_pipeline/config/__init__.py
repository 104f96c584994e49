"""The configuration: one typed settings model (every section in ``sections/``), the YAML loader and the generated reference page."""
