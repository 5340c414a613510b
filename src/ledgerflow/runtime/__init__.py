"""The processes: the worker and the API. The only modules, with the CLI, that wire
several domains together."""
