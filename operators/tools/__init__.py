"""Tools that orders run: the registry of allowed images (include/tools.yaml) and the container run."""
